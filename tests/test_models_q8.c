/* 8-bit MLX checkpoints: the golden bf16 models quantised by lmc to 8 bits
 * must compute exactly what the float decoder computes on the dequantised
 * weights (the quantised matmul and embedding paths against the float
 * ones), within the golden tolerance of 2e-3; with int8 activations, within
 * 6 % of the logits' range. transformers' own 4-bit fixtures are covered by
 * test_models_golden. */
#include <math.h>
#include <sys/stat.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

static bool is_quantisable(const char *name, const lmc_array *a, int group) {
    size_t n = strlen(name);
    return lmc_array_ndim(a) == 2 && n > 7 && !strcmp(name + n - 7, ".weight") && lmc_array_dim(a, 1) % group == 0;
}

/* Writes DIR_q (8-bit) and DIR_f (f32 dequantised) from the bf16 golden model. */
static bool make_pair(const char *variant, int group, const char *qdir, const char *fdir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s/model.safetensors", LMC_TEST_DATA, variant);
    lmc_safetensors *st;
    if (lmc_safetensors_open(path, &st) != LMC_OK) return false;
    size_t n = lmc_safetensors_count(st), nq = 0, nf = 0;
    const char **qn = calloc(3 * n, sizeof *qn), **fn = calloc(n, sizeof *fn);
    char (*names)[256] = calloc(3 * n, sizeof *names);
    lmc_array **qa = calloc(3 * n, sizeof *qa), **fa = calloc(n, sizeof *fa);
    for (size_t i = 0; i < n; i++) {
        const char *name = lmc_safetensors_name(st, i);
        lmc_array *w = lmc_safetensors_get(st, name);
        if (!is_quantisable(name, w, group)) {
            qn[nq] = name;
            qa[nq++] = lmc_array_retain(w);
            fn[nf] = name;
            fa[nf++] = w;
            continue;
        }
        lmc_array *s, *b;
        lmc_array *wq = lmc_quantize(w, group, 8, &s, &b);
        size_t base = strlen(name) - 7;
        snprintf(names[nq], 256, "%s", name);
        qn[nq] = names[nq];
        qa[nq++] = wq;
        snprintf(names[nq], 256, "%.*s.scales", (int)base, name);
        qn[nq] = names[nq];
        qa[nq++] = s;
        snprintf(names[nq], 256, "%.*s.biases", (int)base, name);
        qn[nq] = names[nq];
        qa[nq++] = b;
        lmc_array *s32 = lmc_astype(s, LMC_F32), *b32 = lmc_astype(b, LMC_F32);
        fn[nf] = name;
        fa[nf++] = lmc_dequantize(wq, s32, b32, group, 8);
        lmc_array_free(s32);
        lmc_array_free(b32);
        lmc_array_free(w);
    }
    char out[4400];
    snprintf(out, sizeof out, "%s/model.safetensors", qdir);
    bool ok = lmc_safetensors_write(out, nq, qn, (const lmc_array *const *)qa, 0, NULL, NULL) == LMC_OK;
    snprintf(out, sizeof out, "%s/model.safetensors", fdir);
    ok = ok && lmc_safetensors_write(out, nf, fn, (const lmc_array *const *)fa, 0, NULL, NULL) == LMC_OK;
    for (size_t i = 0; i < nq; i++) lmc_array_free(qa[i]);
    for (size_t i = 0; i < nf; i++) lmc_array_free(fa[i]);
    free(qa);
    free(fa);
    free(qn);
    free(fn);
    free(names);
    lmc_safetensors_close(st);
    return ok;
}

/* config.json with a "quantization" entry added (or not). */
static void write_config(const char *variant, const char *dir, int group, bool quantised) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s/config.json", LMC_TEST_DATA, variant);
    FILE *f = fopen(path, "r");
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *brace = strchr(buf, '{');
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (quantised) fprintf(f, "{\"quantization\": {\"group_size\": %d, \"bits\": 8},%s", group, brace + 1);
    else fputs(buf, f);
    fclose(f);
}

static void link_tokenizer(const char *variant, const char *dir) {
    char ref[64] = {0}, src[4096];
    snprintf(src, sizeof src, "%s/models/%s/tokenizer.json.ref", LMC_TEST_DATA, variant);
    FILE *f = fopen(src, "r");
    if (f && fgets(ref, sizeof ref, f)) ref[strcspn(ref, "\r\n ")] = 0;
    if (f) fclose(f);
    const char *tok[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", LMC_TOKENIZER_DIR, ref, tok[i]);
        fixture_link(src, dir, tok[i]);
    }
}

static void check(const char *variant, int group) {
    char tmpl[] = "/tmp/lmc-q8-XXXXXX";
    char *root = mkdtemp(tmpl);
    char qdir[4200], fdir[4200];
    snprintf(qdir, sizeof qdir, "%s/q8", root);
    snprintf(fdir, sizeof fdir, "%s/f32", root);
    mkdir(qdir, 0755);
    mkdir(fdir, 0755);
    CHECKF(make_pair(variant, group, qdir, fdir), "%s: %s", variant, lmc_last_error());
    write_config(variant, qdir, group, true);
    write_config(variant, fdir, group, false);
    link_tokenizer(variant, qdir);
    link_tokenizer(variant, fdir);
    lmc_model *mq = NULL, *mf = NULL;
    CHECKF(lmc_model_load(qdir, NULL, &mq) == LMC_OK, "%s q8: %s", variant, lmc_last_error());
    CHECKF(lmc_model_load(fdir, NULL, &mf) == LMC_OK, "%s f32: %s", variant, lmc_last_error());
    lmc_model_info info;
    if (mq && lmc_model_get_info(mq, &info) == LMC_OK)
        CHECK(info.quant_bits == 8 && info.quant_group_size == group && info.activation_bits == 24);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (int32_t)((17 + 53 * i) % 2000);
    lmc_array *a = mq ? lmc_model_logits(mq, ids, 40, true) : NULL, *b = mf ? lmc_model_logits(mf, ids, 40, true) : NULL;
    CHECK(a && b);
    if (a && b) {
        int64_t n = lmc_array_size(a);
        float *va = malloc((size_t)n * sizeof *va), *vb = malloc((size_t)n * sizeof *vb);
        lmc_array_read(a, LMC_F32, va, (size_t)n);
        lmc_array_read(b, LMC_F32, vb, (size_t)n);
        double worst = 0, spread = 0;
        for (int64_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs(va[i] - vb[i]));
            spread = fmax(spread, fabs(vb[i]));
        }
        CHECKF(worst <= 2e-3 && spread > 0.5, "%s: 8-bit vs dequantised float: max diff %g (logit scale %g)", variant, worst, spread);
        free(va);
        free(vb);
    }
    /* int8 activations (load option activation_bits 8): the logits move,
     * by at most 6 % of their range, and the top token mostly stays */
    lmc_load_options lo = lmc_load_options_default();
    lo.activation_bits = 8;
    lmc_model *m8 = NULL;
    CHECKF(lmc_model_load(qdir, &lo, &m8) == LMC_OK, "%s q8, int8 x: %s", variant, lmc_last_error());
    lmc_model_info i8 = {0};
    CHECK(m8 && lmc_model_get_info(m8, &i8) == LMC_OK && i8.activation_bits == 8);
    lmc_array *c = m8 ? lmc_model_logits(m8, ids, 40, true) : NULL;
    if (b && c) {
        int64_t n = lmc_array_size(b), V = n / 40;
        float *vb = malloc((size_t)n * sizeof *vb), *vc = malloc((size_t)n * sizeof *vc);
        lmc_array_read(b, LMC_F32, vb, (size_t)n);
        lmc_array_read(c, LMC_F32, vc, (size_t)n);
        double worst = 0, lo_ = INFINITY, hi_ = -INFINITY;
        int agree = 0;
        for (int64_t t = 0; t < 40; t++) {
            int64_t tb = 0, tc = 0;
            for (int64_t i = 0; i < V; i++) {
                double d = fabs((double)vc[t * V + i] - vb[t * V + i]);
                if (!(d <= worst)) worst = d;
                lo_ = fmin(lo_, vb[t * V + i]);
                hi_ = fmax(hi_, vb[t * V + i]);
                if (vb[t * V + i] > vb[t * V + tb]) tb = i;
                if (vc[t * V + i] > vc[t * V + tc]) tc = i;
            }
            agree += tb == tc;
        }
        fprintf(stderr, "%s int8 x: max diff %.3f of range %.2f (%.1f %%), top token kept at %d of 40\n", variant, worst,
                hi_ - lo_, 100 * worst / (hi_ - lo_), agree);
        CHECKF(worst > 2e-3 && worst <= 0.06 * (hi_ - lo_) && agree >= 30, "%s int8 x: max diff %g, range %g, top %d / 40",
               variant, worst, hi_ - lo_, agree);
        free(vb);
        free(vc);
    }
    CHECK(c != NULL);
    lmc_array_free(c);
    lmc_model_free(m8);
    lmc_array_free(a);
    lmc_array_free(b);
    lmc_model_free(mq);
    lmc_model_free(mf);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
}

int main(void) {
    check("qwen3", 64);
    check("gemma3", 32);
    check("qwen2", 32);
    return TEST_REPORT();
}
