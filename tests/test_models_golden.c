/* The four architectures against transformers: logits at every position of
 * two prompts and greedy continuations, for the bf16 and MLX 4-bit form of
 * each golden model, on every CPU kernel path this machine has.
 *
 * Tolerances (from scripts/make_golden_models.py): logits within 2e-3
 * absolute (f32 arithmetic on the same weights; only summation order and
 * libm differ); greedy ids equal at every step while the reference's top-2
 * margin has stayed >= 5e-3, and at least 32 such steps per prompt. The
 * 4-bit models also run with int8 activations (check_int8_activations). */
#include <math.h>

#include "core/cpu.h"
#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

static const char *variants[] = {"llama", "qwen2", "qwen3", "gemma3", "gemma3_softcap",
                                 "llama_mlx4", "qwen2_mlx4", "qwen3_mlx4", "gemma3_mlx4", "gemma3_softcap_mlx4"};

enum { NPROMPTS = 2 };

typedef struct golden {
    lmc_safetensors *st;
    int32_t *prompt[NPROMPTS], *greedy[NPROMPTS];
    float *logits[NPROMPTS], *margin[NPROMPTS];
    int64_t T[NPROMPTS], N[NPROMPTS], V;
} golden;

static bool golden_load(const char *name, golden *g) {
    memset(g, 0, sizeof *g);
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s/golden.safetensors", LMC_TEST_DATA, name);
    if (lmc_safetensors_open(path, &g->st) != LMC_OK) {
        fprintf(stderr, "%s\n", lmc_last_error());
        return false;
    }
    for (int k = 0; k < NPROMPTS; k++) {
        char n[64];
        snprintf(n, sizeof n, "prompt_ids_%d", k);
        g->prompt[k] = fixture_read_i32(g->st, n, &g->T[k]);
        snprintf(n, sizeof n, "greedy_ids_%d", k);
        g->greedy[k] = fixture_read_i32(g->st, n, &g->N[k]);
        snprintf(n, sizeof n, "logits_%d", k);
        int64_t t;
        g->logits[k] = fixture_read_f32(g->st, n, &t, &g->V);
        snprintf(n, sizeof n, "greedy_margin_%d", k);
        g->margin[k] = fixture_read_f32(g->st, n, NULL, NULL);
        if (!g->prompt[k] || !g->greedy[k] || !g->logits[k] || !g->margin[k]) return false;
    }
    return true;
}

static void golden_free(golden *g) {
    for (int k = 0; k < NPROMPTS; k++) {
        free(g->prompt[k]);
        free(g->greedy[k]);
        free(g->logits[k]);
        free(g->margin[k]);
    }
    lmc_safetensors_close(g->st);
}

static double max_abs_diff(const lmc_array *a, const float *ref, int64_t n) {
    float *v = malloc((size_t)n * sizeof *v);
    double worst = INFINITY;
    if (lmc_array_read(a, LMC_F32, v, (size_t)n) == LMC_OK) {
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)v[i] - ref[i]);
            if (!(d <= worst)) worst = d; /* NaN becomes the worst */
        }
    }
    free(v);
    return worst;
}

/* Logits and greedy continuations of one loaded model against the golden data. */
static void check_model(const char *name, lmc_model *m, const golden *g, int64_t prefill_chunk) {
    for (int k = 0; k < NPROMPTS; k++) {
        lmc_array *lg = lmc_model_logits(m, g->prompt[k], (size_t)g->T[k], true);
        CHECKF(lg && lmc_array_dim(lg, 0) == g->T[k] && lmc_array_dim(lg, 1) == g->V, "%s: logits shape", name);
        if (lg) {
            double d = max_abs_diff(lg, g->logits[k], g->T[k] * g->V);
            CHECKF(d <= 2e-3, "%s prompt %d (path %s, chunk %lld): max |logits - transformers| = %.3g", name, k,
                   lmc_cpu_path_name(lmc_cpu_path_active()), (long long)prefill_chunk, d);
        }
        lmc_array_free(lg);

        lmc_generate_options o = lmc_generate_options_default();
        o.sampler.temperature = 0;
        o.ignore_eos = true;
        o.max_tokens = (int)g->N[k];
        lmc_generation out;
        lmc_status s = lmc_generate_ids(m, g->prompt[k], (size_t)g->T[k], &o, &out);
        CHECKF(s == LMC_OK && (int64_t)out.n_ids == g->N[k], "%s prompt %d: greedy run: %s", name, k, lmc_last_error());
        int clear = 0, mismatch = -1;
        for (int64_t i = 0; i < (int64_t)out.n_ids && i < g->N[k]; i++) {
            if (g->margin[k][i] < 5e-3f) break;
            if (out.ids[i] != g->greedy[k][i]) {
                mismatch = (int)i;
                break;
            }
            clear++;
        }
        CHECKF(mismatch < 0, "%s prompt %d (path %s): greedy token %d is %d, transformers gave %d", name, k,
               lmc_cpu_path_name(lmc_cpu_path_active()), mismatch, mismatch >= 0 ? out.ids[mismatch] : 0,
               mismatch >= 0 ? g->greedy[k][mismatch] : 0);
        CHECKF(clear >= 32, "%s prompt %d: only %d clear greedy steps compared", name, k, clear);
        lmc_generation_clear(&out);
    }
}

/* The variant's model folder (false: none) and golden data (*have). */
static bool open_variant(const char *name, golden *g, char **dir, bool *have) {
    *dir = model_fixture_dir(name);
    CHECKF(*dir != NULL, "%s: fixture folder", name);
    if (!*dir) return false;
    *have = golden_load(name, g);
    CHECKF(*have, "%s: golden.safetensors", name);
    return true;
}

/* Every kernel path with the default prefill chunk, then chunked prefill
 * (7: shorter than Gemma's sliding window and not dividing the prompts). */
static void check_variant(const char *name) {
    golden g;
    char *dir;
    bool have;
    if (!open_variant(name, &g, &dir, &have)) return;
    int64_t chunks[2] = {512, 7};
    for (int c = 0; have && c < 2; c++) {
        lmc_load_options lo = lmc_load_options_default();
        lo.prefill_chunk = chunks[c];
        lmc_model *m = NULL;
        lmc_status s = lmc_model_load(dir, &lo, &m);
        CHECKF(s == LMC_OK, "%s: load: %s", name, lmc_last_error());
        lmc_model_info info = {0};
        /* exact by default; a width other than 4 bits has no activation setting */
        CHECK(m && lmc_model_get_info(m, &info) == LMC_OK && info.activation_bits == (info.quant_bits ? 24 : 0));
        lmc_cpu_path max = lmc_cpu_path_max();
        /* Every path in normal builds; under the sanitizers (10x slower) only the
         * best one: the kernel tests already run every path there. */
#ifdef LMC_SANITIZED
        int first = (int)max;
#else
        int first = c == 0 ? LMC_PATH_SCALAR : (int)max;
#endif
        for (int p = first; m && p <= (int)max; p++) {
            lmc_cpu_path_set((lmc_cpu_path)p);
            check_model(name, m, &g, chunks[c]);
        }
        lmc_cpu_path_set(max);
        lmc_model_free(m);
    }
    if (have) golden_free(&g);
    model_fixture_cleanup(dir);
}

/* int8 activations (load option activation_bits 8) on the MLX 4-bit
 * models, every path: x rounded to int8 per block of 64 moves the logits by
 * far more than the exact tolerance (so the option is in effect), but by
 * at most 6 % of their range at any position (measured 1.3-4.1 % on these
 * models, whose activations have the outliers real ones have), and the top
 * token stays where transformers' top-2 margin is at least 0.05 at 75 % of
 * those positions or more (measured 86-100 %). */
static void check_int8_activations(const char *name) {
    golden g;
    char *dir;
    bool have;
    if (!open_variant(name, &g, &dir, &have)) return;
    lmc_load_options lo = lmc_load_options_default();
    lo.activation_bits = 8;
    lmc_model *m = NULL;
    if (have) CHECKF(lmc_model_load(dir, &lo, &m) == LMC_OK, "%s: load: %s", name, lmc_last_error());
    lmc_model_info info = {0};
    CHECK(m && lmc_model_get_info(m, &info) == LMC_OK && info.activation_bits == 8);
    for (int p = LMC_PATH_SCALAR; m && p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        for (int k = 0; k < NPROMPTS; k++) {
            const int64_t T = g.T[k], V = g.V;
            lmc_array *lg = lmc_model_logits(m, g.prompt[k], (size_t)T, true);
            float *v = malloc((size_t)(T * V) * sizeof *v);
            CHECKF(lg && v && lmc_array_read(lg, LMC_F32, v, (size_t)(T * V)) == LMC_OK, "%s: logits: %s", name,
                   lmc_last_error());
            double worst = 0, worst_rel = 0;
            int agree = 0, clear = 0;
            for (int64_t t = 0; lg && v && t < T; t++) {
                const float *r = g.logits[k] + t * V, *x = v + t * V;
                int64_t top = 0, got = 0;
                double d = 0, lo_ = r[0], hi_ = r[0];
                for (int64_t i = 0; i < V; i++) {
                    double e = fabs((double)x[i] - r[i]);
                    if (!(e <= d)) d = e; /* NaN becomes the worst */
                    if (r[i] > r[top]) top = i;
                    if (x[i] > x[got]) got = i;
                    lo_ = fmin(lo_, r[i]);
                    hi_ = fmax(hi_, r[i]);
                }
                double second = -INFINITY;
                for (int64_t i = 0; i < V; i++)
                    if (i != top) second = fmax(second, r[i]);
                worst = fmax(worst, d);
                worst_rel = fmax(worst_rel, d / (hi_ - lo_));
                if (r[top] - second >= 0.05) {
                    clear++;
                    agree += top == got;
                }
            }
            const char *path = lmc_cpu_path_name((lmc_cpu_path)p);
            CHECKF(worst > 2e-3, "%s prompt %d (path %s): int8 activations changed no logit beyond 2e-3", name, k, path);
            CHECKF(worst_rel <= 0.06, "%s prompt %d (path %s): a logit moved by %.1f %% of its position's range", name, k,
                   path, 100 * worst_rel);
            CHECKF(clear > 0 && agree >= 0.75 * clear, "%s prompt %d (path %s): top token kept at %d of %d clear positions",
                   name, k, path, agree, clear);
            free(v);
            lmc_array_free(lg);
        }
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_model_free(m);
    if (have) golden_free(&g);
    model_fixture_cleanup(dir);
}

int main(void) {
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        fprintf(stderr, "%s\n", variants[i]);
        check_variant(variants[i]);
        if (strstr(variants[i], "_mlx4")) check_int8_activations(variants[i]);
    }
    return TEST_REPORT();
}
