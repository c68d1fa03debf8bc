/* The lmc CLI end to end on a golden model: generate (text and --json),
 * logits (checked against transformers' golden logits), info, discover,
 * and usage errors. Runs build/lmc as a subprocess. */
#include <cjson/cJSON.h>
#include <unistd.h>
#include <math.h>
#include <sys/wait.h>

#include "core/cpu.h"
#include "lmc/lmc.h"
#include "lmc/lora.h"
#include "model_fixture.h"
#include "runtime/json_constraint.h"
#include "test_util.h"

static char *g_dir;

/* Runs a shell command; returns its exit status and stdout (malloc'd). */
static int run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_generate_json(void) {
    char cmd[8192], *out;
    /* Prompt ids of golden prompt 0 for qwen3, greedy: the ids must equal transformers' greedy ids. */
    char path[4096];
    snprintf(path, sizeof path, "%s/models/qwen3/golden.safetensors", LMC_TEST_DATA);
    lmc_safetensors *st;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    lmc_array *p = lmc_safetensors_get(st, "prompt_ids_0"), *gr = lmc_safetensors_get(st, "greedy_ids_0");
    int64_t T = lmc_array_size(p);
    int32_t ids[64], greedy[64];
    lmc_array_read(p, LMC_I32, ids, (size_t)T);
    CHECK(lmc_array_size(gr) <= 64 && lmc_array_read(gr, LMC_I32, greedy, (size_t)lmc_array_size(gr)) == LMC_OK);
    char list[1024] = {0};
    for (int64_t i = 0; i < T; i++) snprintf(list + strlen(list), sizeof list - strlen(list), i ? ",%d" : "%d", ids[i]);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids %s --max-tokens 8 --temperature 0 --ignore-eos --json",
             LMC_BUILD_DIR, g_dir, list);
    CHECK(run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    CHECKF(j != NULL, "not JSON: %s", out);
    const cJSON *jids = cJSON_GetObjectItem(j, "ids"), *pids = cJSON_GetObjectItem(j, "prompt_ids");
    CHECK(cJSON_GetArraySize(jids) == 8 && cJSON_GetArraySize(pids) == T);
    for (int i = 0; i < 8 && i < cJSON_GetArraySize(jids); i++)
        CHECKF(cJSON_GetArrayItem(jids, i)->valueint == greedy[i], "token %d", i);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "stop_reason")), "max_tokens");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "text")));
    const cJSON *mt = cJSON_GetObjectItem(j, "metrics");
    CHECK(cJSON_GetObjectItem(mt, "generated_tokens")->valueint == 8);
    CHECK(cJSON_GetObjectItem(mt, "decode_tokens_per_second")->valuedouble > 0);
    cJSON_Delete(j);
    free(out);
    lmc_array_free(p);
    lmc_array_free(gr);
    lmc_safetensors_close(st);
    /* Streaming text mode with a text prompt. */
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s -p 'The people in the world' --max-tokens 5 --seed 3 2>/dev/null",
             LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 0 && strlen(out) > 0);
    free(out);
}

/* generate --logprobs and classify --labels against transformers' golden
 * logits (the log-softmax of the last prompt position, within 4e-3). */
static void test_logprobs_and_labels(void) {
    char path[4096], cmd[8192], list[1024] = {0}, *out = NULL;
    snprintf(path, sizeof path, "%s/models/qwen3/golden.safetensors", LMC_TEST_DATA);
    lmc_safetensors *st;
    if (lmc_safetensors_open(path, &st) != LMC_OK) {
        CHECK(0);
        return;
    }
    lmc_array *p = lmc_safetensors_get(st, "prompt_ids_0"), *lg = lmc_safetensors_get(st, "logits_0");
    int64_t T = lmc_array_size(p), V = lmc_array_dim(lg, 1);
    int32_t ids[64];
    float *row = malloc((size_t)V * sizeof *row), *all = malloc((size_t)(T * V) * sizeof *all);
    CHECK(T <= 64 && lmc_array_read(p, LMC_I32, ids, (size_t)T) == LMC_OK);
    CHECK(lmc_array_read(lg, LMC_F32, all, (size_t)(T * V)) == LMC_OK);
    memcpy(row, all + (T - 1) * V, (size_t)V * sizeof *row);
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int64_t i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    double lse = mx + log(sum);
    for (int64_t i = 0; i < T; i++) snprintf(list + strlen(list), sizeof list - strlen(list), i ? ",%d" : "%d", ids[i]);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids %s --max-tokens 1 --temperature 0 --ignore-eos --json "
             "--logprobs 3", LMC_BUILD_DIR, g_dir, list);
    CHECK(run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    const cJSON *lps = cJSON_GetObjectItem(j, "logprobs"), *tops = cJSON_GetObjectItem(j, "top_logprobs");
    int tok = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0) ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0)->valueint : -1;
    CHECKF(cJSON_GetArraySize(lps) == 1 && cJSON_GetArraySize(cJSON_GetArrayItem(tops, 0)) == 3 && tok >= 0 && tok < V,
           "%s", out);
    if (tok >= 0 && tok < V && cJSON_GetArraySize(lps) == 1) {
        CHECK_CLOSE(cJSON_GetArrayItem(lps, 0)->valuedouble, row[tok] - lse, 4e-3, 0);
        for (const cJSON *e = cJSON_GetArrayItem(tops, 0)->child; e; e = e->next) {
            int id = cJSON_GetObjectItem(e, "id")->valueint;
            CHECK(id >= 0 && id < V && cJSON_IsString(cJSON_GetObjectItem(e, "text")));
            if (id >= 0 && id < V) CHECK_CLOSE(cJSON_GetObjectItem(e, "logprob")->valuedouble, row[id] - lse, 4e-3, 0);
            /* "bytes": the token's own bytes */
            lmc_tokenizer *bt = NULL;
            char *raw = NULL;
            size_t bl = 0;
            const cJSON *b = cJSON_GetObjectItem(e, "bytes");
            CHECK(lmc_tokenizer_load(g_dir, &bt) == LMC_OK && lmc_tokenizer_token_bytes(bt, id, &raw, &bl) == LMC_OK);
            CHECK(cJSON_GetArraySize(b) == (int)bl);
            for (size_t k = 0; raw && k < bl && k < (size_t)cJSON_GetArraySize(b); k++)
                CHECK(cJSON_GetArrayItem(b, (int)k)->valueint == (unsigned char)raw[k]);
            lmc_tokenizer_free_text(raw);
            lmc_tokenizer_free(bt);
        }
    }
    cJSON_Delete(j);
    free(out);
    /* classify: " the" and " a", scored by their tokens */
    lmc_tokenizer *tk = NULL;
    CHECK(lmc_tokenizer_load(g_dir, &tk) == LMC_OK);
    int32_t lab[2] = {-1, -1};
    const char *names[2] = {" the", " a"};
    for (int k = 0; tk && k < 2; k++) {
        int32_t *e = NULL;
        size_t n = 0;
        CHECK(lmc_tokenizer_encode(tk, names[k], strlen(names[k]), false, &e, &n) == LMC_OK && n == 1);
        lab[k] = n ? e[0] : -1;
        lmc_tokenizer_free_ids(e);
    }
    lmc_tokenizer_free(tk);
    snprintf(cmd, sizeof cmd, "echo '{\"prompt_ids\": [%s]}' | %s/lmc classify -m %s --labels ' the, a' 2>/dev/null", list,
             LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    const cJSON *labels = cJSON_GetObjectItem(j, "labels");
    CHECKF(cJSON_GetArraySize(labels) == 2, "%s", out);
    for (int k = 0; k < 2 && lab[k] >= 0 && lab[k] < V; k++) {
        const cJSON *v = cJSON_GetObjectItem(labels, names[k]);
        CHECK(cJSON_IsNumber(v));
        if (cJSON_IsNumber(v)) CHECK_CLOSE(v->valuedouble, row[lab[k]] - lse, 4e-3, 0);
    }
    if (lab[0] >= 0 && lab[1] >= 0 && lab[0] < V && lab[1] < V)
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "label")), row[lab[0]] >= row[lab[1]] ? names[0] : names[1]);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "echo '{\"prompt\": \"x\"}' | %s/lmc classify -m %s --labels ' the, the' 2>&1", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 2 && strstr(out, "begin with the same token"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s -p x --logprobs 21 2>&1", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 2 && strstr(out, "--logprobs"));
    free(out);
    free(row);
    free(all);
    lmc_array_free(p);
    lmc_array_free(lg);
    lmc_safetensors_close(st);
}

/* lmc embed prints lmc_embed's vectors, one line per input line. */
static void test_embed(void) {
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "printf '{\"prompt_ids\": [785, 1251, 304]}\\n{\"oops\": 1}\\n' | %s/lmc embed -m %s --pooling mean 2>/dev/null",
             LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 0);
    char *nl = out ? strchr(out, '\n') : NULL;
    if (nl) *nl = 0;
    cJSON *j = cJSON_Parse(out ? out : "");
    cJSON *j2 = nl ? cJSON_Parse(nl + 1) : NULL;
    lmc_model *m = NULL;
    CHECK(lmc_model_load(g_dir, NULL, &m) == LMC_OK);
    int32_t ids[] = {785, 1251, 304};
    lmc_batch_prompt p = {.ids = ids, .n_ids = 3};
    lmc_embed_options o = lmc_embed_options_default();
    o.pooling = LMC_POOLING_MEAN;
    lmc_embedding *e = NULL;
    CHECK(m && lmc_embed(m, &p, 1, &o, &e, NULL) == LMC_OK);
    const cJSON *v = cJSON_GetObjectItem(j, "embedding");
    CHECKF(e && e[0].values && cJSON_GetArraySize(v) == e[0].dim, "%s", out ? out : "");
    for (int k = 0; e && e[0].values && k < cJSON_GetArraySize(v); k++)
        CHECK_CLOSE(cJSON_GetArrayItem(v, k)->valuedouble, e[0].values[k], 1e-6, 0);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j2, "error")) && strstr(cJSON_GetObjectItem(j2, "error")->valuestring, "line 2"));
    lmc_embeddings_free(e, 1);
    lmc_model_free(m);
    cJSON_Delete(j);
    cJSON_Delete(j2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc embed -m %s --pooling bogus </dev/null 2>&1", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 2 && strstr(out, "--pooling must be last or mean"));
    free(out);
}

/* Sampling options not given come from generation_config.json: with
 * do_sample false there, a run without --temperature is greedy (transformers'
 * greedy ids); --temperature on the command line still wins. */
static void test_generation_config_defaults(void) {
    char *dir = model_fixture_dir("qwen3"), cmd[8192], *out = NULL, path[4200];
    if (!dir) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    unlink(path);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"do_sample\": false, \"temperature\": 0.9}", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/models/qwen3/golden.safetensors", LMC_TEST_DATA);
    lmc_safetensors *st = NULL;
    int64_t T = 0, N = 0;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    int32_t *ids = st ? fixture_read_i32(st, "prompt_ids_0", &T) : NULL, *greedy = st ? fixture_read_i32(st, "greedy_ids_0", &N) : NULL;
    char list[1024] = {0};
    for (int64_t i = 0; ids && i < T; i++) snprintf(list + strlen(list), sizeof list - strlen(list), i ? ",%d" : "%d", ids[i]);
    for (int pass = 0; pass < 2 && ids && greedy && N >= 8; pass++) {
        snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids %s --max-tokens 8 --seed 5 --ignore-eos --json %s", LMC_BUILD_DIR,
                 dir, list, pass ? "--temperature 1.5" : "");
        CHECK(run(cmd, &out) == 0);
        cJSON *j = cJSON_Parse(out ? out : "");
        const cJSON *got = cJSON_GetObjectItem(j, "ids");
        int same = 0;
        for (int i = 0; i < 8 && cJSON_GetArraySize(got) == 8; i++) same += cJSON_GetArrayItem(got, i)->valueint == greedy[i];
        if (pass == 0) CHECKF(same == 8, "without --temperature: %d of 8 greedy ids (%s)", same, out ? out : "");
        else CHECKF(same < 8, "--temperature 1.5 gave the greedy ids");
        cJSON_Delete(j);
        free(out);
    }
    free(ids);
    free(greedy);
    lmc_safetensors_close(st);
    model_fixture_cleanup(dir);
}

static void test_logits_file(void) {
    char cmd[8192], path[4096], outp[4096];
    snprintf(path, sizeof path, "%s/models/gemma3/golden.safetensors", LMC_TEST_DATA);
    char *gdir = model_fixture_dir("gemma3");
    lmc_safetensors *st;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    lmc_array *p = lmc_safetensors_get(st, "prompt_ids_1"), *lg = lmc_safetensors_get(st, "logits_1");
    int64_t T = lmc_array_size(p), V = lmc_array_dim(lg, 1);
    int32_t ids[128];
    lmc_array_read(p, LMC_I32, ids, (size_t)T);
    char list[2048] = {0};
    for (int64_t i = 0; i < T; i++) snprintf(list + strlen(list), sizeof list - strlen(list), i ? ",%d" : "%d", ids[i]);
    snprintf(outp, sizeof outp, "%s/logits.safetensors", gdir);
    snprintf(cmd, sizeof cmd, "%s/lmc logits -m %s --ids %s --all -o %s", LMC_BUILD_DIR, gdir, list, outp);
    CHECK(run(cmd, NULL) == 0);
    lmc_safetensors *o;
    CHECK(lmc_safetensors_open(outp, &o) == LMC_OK);
    lmc_array *got = o ? lmc_safetensors_get(o, "logits") : NULL;
    CHECK(got && lmc_array_dim(got, 0) == T && lmc_array_dim(got, 1) == V && lmc_array_dtype(got) == LMC_F32);
    if (got) {
        float *a = malloc((size_t)(T * V) * sizeof *a), *b = malloc((size_t)(T * V) * sizeof *b);
        lmc_array_read(got, LMC_F32, a, (size_t)(T * V));
        lmc_array_read(lg, LMC_F32, b, (size_t)(T * V));
        double worst = 0;
        for (int64_t i = 0; i < T * V; i++) worst = fmax(worst, fabs(a[i] - b[i]));
        CHECKF(worst <= 2e-3, "max diff %g", worst);
        free(a);
        free(b);
    }
    lmc_array_free(got);
    lmc_safetensors_close(o);
    /* Last position only: shape [V]. */
    snprintf(cmd, sizeof cmd, "%s/lmc logits -m %s --ids 5,6,7 -o %s", LMC_BUILD_DIR, gdir, outp);
    CHECK(run(cmd, NULL) == 0);
    CHECK(lmc_safetensors_open(outp, &o) == LMC_OK);
    got = o ? lmc_safetensors_get(o, "logits") : NULL;
    CHECK(got && lmc_array_ndim(got) == 1 && lmc_array_dim(got, 0) == V);
    lmc_array_free(got);
    lmc_safetensors_close(o);
    lmc_array_free(p);
    lmc_array_free(lg);
    lmc_safetensors_close(st);
    model_fixture_cleanup(gdir);
}

static void test_info_and_discover(void) {
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s/lmc info -m %s --json", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "architecture")), "qwen3");
    CHECK(cJSON_GetObjectItem(j, "head_dim")->valueint == 32 && cJSON_GetObjectItem(j, "num_layers")->valueint == 3);
    CHECK(cJSON_GetObjectItem(j, "num_parameters")->valuedouble > 0 && cJSON_GetObjectItem(j, "weight_bytes")->valuedouble > 0);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc discover %s/models --json", LMC_BUILD_DIR, LMC_TEST_DATA);
    CHECK(run(cmd, &out) == 0);
    int lines = 0, quantised = 0;
    for (char *s = strtok(out, "\n"); s; s = strtok(NULL, "\n")) {
        cJSON *e = cJSON_Parse(s);
        lines++;
        quantised += cJSON_GetObjectItem(e, "quant_bits") && cJSON_GetObjectItem(e, "quant_bits")->valueint == 4;
        cJSON_Delete(e);
    }
    CHECK(lines == 10 && quantised == 5);
    free(out);
}

static void test_usage_errors(void) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s 2>/dev/null", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, NULL) == 2); /* no prompt */
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s -p x --temperature -1 2>/dev/null", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s -p x --top-p 2 2>/dev/null", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m /nonexistent -p x 2>&1", LMC_BUILD_DIR);
    char *out;
    CHECK(run(cmd, &out) == 1 && strstr(out, "config.json") != NULL);
    free(out);
    const char *bad_bits[] = {"generate -m %s -p x --activation-bits 12", "bench -m %s --activation-bits 16",
                              "bench batch -m %s --activation-bits 4"};
    for (int i = 0; i < 3; i++) {
        char args[4096];
        snprintf(args, sizeof args, bad_bits[i], g_dir);
        snprintf(cmd, sizeof cmd, "%s/lmc %s 2>&1", LMC_BUILD_DIR, args);
        CHECKF(run(cmd, &out) == 2 && strstr(out, "--activation-bits"), "lmc %s", args);
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s/lmc nosuchcommand 2>/dev/null", LMC_BUILD_DIR);
    CHECK(run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s/lmc --help", LMC_BUILD_DIR);
    CHECK(run(cmd, &out) == 0 && strstr(out, "generate") && strstr(out, "tokenize"));
    free(out);
}

/* `lmc bench ops --only cores`: five rounds per unit the CPU has, each with
 * positive rates of one thread and of all threads. */
static void test_bench_cores(void) {
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s/lmc bench ops --only cores --threads 2 --json", LMC_BUILD_DIR);
    CHECK(run(cmd, &out) == 0);
    int rounds = 0, expected = lmc_cpu_path_max() >= LMC_PATH_AMX ? 15 : lmc_cpu_path_max() >= LMC_PATH_AVX512 ? 5 : 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        CHECKF(j != NULL, "not JSON: %s", line);
        const cJSON *bench = cJSON_GetObjectItemCaseSensitive(j, "bench");
        if (cJSON_IsString(bench) && !strcmp(bench->valuestring, "cores")) {
            rounds++;
            const cJSON *r1 = cJSON_GetObjectItemCaseSensitive(j, "per_s_1"), *sc = cJSON_GetObjectItemCaseSensitive(j, "scaling");
            CHECK(cJSON_IsNumber(r1) && r1->valuedouble > 0 && cJSON_IsNumber(sc) && sc->valuedouble > 0);
            CHECK(cJSON_GetObjectItemCaseSensitive(j, "threads")->valueint == 2);
        }
        cJSON_Delete(j);
    }
    CHECKF(rounds == expected, "%d rounds, expected %d", rounds, expected);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc bench ops --only nosuchgroup 2>/dev/null", LMC_BUILD_DIR);
    CHECK(run(cmd, NULL) == 2);
    /* --best says so on the machine line (the mean is the default) */
    for (int best = 0; best < 2; best++) {
        snprintf(cmd, sizeof cmd, "%s/lmc bench ops --only cores --threads 1 --json%s", LMC_BUILD_DIR, best ? " --best" : "");
        char *o = NULL;
        CHECK(run(cmd, &o) == 0);
        CHECKF(o && strstr(o, best ? "\"timing\":\"fastest\"" : "\"timing\":\"mean\""), "%s", o ? o : "");
        free(o);
    }
}

static char *tmp_dir(void) {
    char tmpl[] = "/tmp/lmc-cli-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static lmc_array *read_logits(const char *path) {
    lmc_safetensors *o = NULL;
    if (lmc_safetensors_open(path, &o) != LMC_OK) return NULL;
    lmc_array *a = lmc_safetensors_get(o, "logits");
    lmc_safetensors_close(o);
    return a;
}

/* Max |a - b| (and max |b|) of two f32 arrays of the same size. */
static double max_abs_diff(const lmc_array *a, const lmc_array *b, double *bmax) {
    int64_t n = lmc_array_size(a);
    float *va = malloc((size_t)n * sizeof *va), *vb = malloc((size_t)n * sizeof *vb);
    lmc_array_read(a, LMC_F32, va, (size_t)n);
    lmc_array_read(b, LMC_F32, vb, (size_t)n);
    double d = 0;
    *bmax = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)va[i] - vb[i]));
        *bmax = fmax(*bmax, fabs(vb[i]));
    }
    free(va);
    free(vb);
    return d;
}

/* --adapter on every model command, and lmc fuse. The adapter is made here
 * through the C API (B random, so it changes the outputs). */
static void test_adapter_and_fuse(void) {
    static const int32_t ids[6] = {5, 6, 7, 8, 900, 31};
    char *work = tmp_dir(), adir[4200], fdir[4200], outp[4200], cmd[16384], *out;
    snprintf(adir, sizeof adir, "%s/adapter", work);
    snprintf(fdir, sizeof fdir, "%s/fused", work);
    snprintf(outp, sizeof outp, "%s/logits.safetensors", work);
    lmc_model *m = NULL;
    CHECK(lmc_model_load(g_dir, NULL, &m) == LMC_OK);
    lmc_array *base = lmc_model_logits(m, ids, 6, true);
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "q_proj,v_proj,down_proj";
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    for (int i = 1; l && i < lmc_lora_num_params(l); i += 2) {
        lmc_array *b = lmc_lora_params(l)[i];
        float *v = lmc_array_data(b);
        for (int64_t k = 0; k < lmc_array_size(b); k++) v[k] = (float)(((k * 37 + i * 11) % 19) - 9) * 0.01f;
    }
    lmc_array *want = lmc_model_logits(m, ids, 6, true);
    int32_t want_next = 0;
    float best = -INFINITY;
    for (int64_t v = 0; want && v < lmc_array_dim(want, 1); v++) {
        float x = ((const float *)lmc_array_data(want))[5 * lmc_array_dim(want, 1) + v];
        if (x > best) best = x, want_next = (int32_t)v;
    }
    lmc_generate_options go = lmc_generate_options_default();
    go.sampler.temperature = 0;
    go.ignore_eos = true;
    go.max_tokens = 4;
    lmc_generation gen;
    CHECK(lmc_generate_ids(m, ids, 6, &go, &gen) == LMC_OK);
    CHECK(lmc_lora_save(l, adir) == LMC_OK);
    lmc_lora_free(l);
    lmc_model_free(m);

    /* logits: the same numbers as the C API with the adapter attached. */
    snprintf(cmd, sizeof cmd, "%s/lmc logits -m %s --adapter %s --ids 5,6,7,8,900,31 --all -o %s", LMC_BUILD_DIR, g_dir,
             adir, outp);
    CHECK(run(cmd, NULL) == 0);
    lmc_array *got = read_logits(outp);
    double bmax, d = got && want ? max_abs_diff(got, want, &bmax) : INFINITY;
    CHECKF(d == 0, "logits with --adapter differ by %g", d);
    CHECK(got && base && max_abs_diff(got, base, &bmax) > 1e-3); /* the adapter matters */
    lmc_array_free(got);
    /* generate: the C API's greedy ids. */
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --adapter %s --prompt-ids 5,6,7,8,900,31 --max-tokens 4 "
             "--temperature 0 --ignore-eos --json", LMC_BUILD_DIR, g_dir, adir);
    CHECK(run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    const cJSON *jids = cJSON_GetObjectItem(j, "ids");
    CHECK(cJSON_GetArraySize(jids) == 4);
    for (int i = 0; i < 4 && i < cJSON_GetArraySize(jids); i++) CHECK(cJSON_GetArrayItem(jids, i)->valueint == gen.ids[i]);
    cJSON_Delete(j);
    free(out);
    /* batch: the same ids; classify: the adapter model's next token. */
    snprintf(cmd, sizeof cmd, "echo '{\"prompt_ids\": [5, 6, 7, 8, 900, 31]}' | %s/lmc batch -m %s --adapter %s "
             "--max-tokens 4 --temperature 0 --ignore-eos 2>/dev/null", LMC_BUILD_DIR, g_dir, adir);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    jids = cJSON_GetObjectItem(j, "ids");
    CHECK(cJSON_GetArraySize(jids) == 4);
    for (int i = 0; i < 4 && i < cJSON_GetArraySize(jids); i++) CHECK(cJSON_GetArrayItem(jids, i)->valueint == gen.ids[i]);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "echo '{\"prompt_ids\": [5, 6, 7, 8, 900, 31]}' | %s/lmc classify -m %s --adapter %s 2>/dev/null",
             LMC_BUILD_DIR, g_dir, adir);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECK(cJSON_GetObjectItem(j, "token_id") && cJSON_GetObjectItem(j, "token_id")->valueint == want_next);
    cJSON_Delete(j);
    free(out);
    /* chat takes the option (the golden models' 2048-token vocabulary has no
     * chat-template tokens, so a bad adapter shows it is read). */
    snprintf(cmd, sizeof cmd, "%s/lmc chat -m %s --adapter %s/none --message hi </dev/null 2>&1", LMC_BUILD_DIR, g_dir, work);
    CHECK(run(cmd, &out) == 1 && strstr(out, "/none/adapter_config.json"));
    free(out);
    /* info names the adapter. */
    snprintf(cmd, sizeof cmd, "%s/lmc info -m %s --adapter %s --json", LMC_BUILD_DIR, g_dir, adir);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    const cJSON *ad = cJSON_GetObjectItem(j, "adapter");
    CHECK(ad && cJSON_GetObjectItem(ad, "rank")->valueint == 8);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(ad, "targets")), "q_proj,v_proj,down_proj");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(ad, "path")), adir);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc info -m %s --adapter %s", LMC_BUILD_DIR, g_dir, adir);
    CHECK(run(cmd, &out) == 0 && strstr(out, "LoRA adapter") && strstr(out, "rank 8"));
    free(out);
    /* A missing adapter is a runtime error naming it. */
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --adapter %s/none -p x 2>&1", LMC_BUILD_DIR, g_dir, work);
    CHECK(run(cmd, &out) == 1 && strstr(out, "/none/adapter_config.json"));
    free(out);

    /* fuse: a bf16 folder lmc loads, with logits within bf16 rounding of the
     * adapter model's (see test_lora's test_fuse: ~1% of max |logit|). */
    snprintf(cmd, sizeof cmd, "%s/lmc fuse -m %s --adapter %s -o %s 2>/dev/null", LMC_BUILD_DIR, g_dir, adir, fdir);
    CHECK(run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s/lmc logits -m %s --ids 5,6,7,8,900,31 --all -o %s", LMC_BUILD_DIR, fdir, outp);
    CHECK(run(cmd, NULL) == 0);
    got = read_logits(outp);
    d = got && want ? max_abs_diff(got, want, &bmax) : INFINITY;
    CHECKF(d <= 0.02 * bmax, "fused logits differ by %g (max |logit| %g)", d, bmax);
    lmc_array_free(got);
    snprintf(cmd, sizeof cmd, "%s/lmc info -m %s --json", LMC_BUILD_DIR, fdir);
    CHECK(run(cmd, &out) == 0 && strstr(out, "\"dtype\":\"bfloat16\""));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc fuse -m %s --adapter %s -o %s 2>&1", LMC_BUILD_DIR, g_dir, adir, g_dir);
    CHECK(run(cmd, &out) == 1 && strstr(out, "own folder"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/lmc fuse -m %s -o %s 2>/dev/null", LMC_BUILD_DIR, g_dir, fdir);
    CHECK(run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s/lmc fuse -m %s --adapter 2>/dev/null", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, NULL) == 2);

    lmc_generation_clear(&gen);
    lmc_array_free(want);
    lmc_array_free(base);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    CHECK(system(cmd) == 0);
    free(work);
}

/* lmc make-model --q8 and --f16: the checkpoints say so (lmc info) and
 * generate; --f16 with a quantisation is refused before anything is
 * written. */
static void test_make_model_kinds(void) {
    char tmpl[] = "/tmp/lmc-cli-kinds-XXXXXX";
    char *dir = mkdtemp(tmpl), cmd[8192];
    CHECK(dir != NULL);
    if (!dir) return;
    const char *flag[2] = {"--q8", "--f16"}, *want[2] = {"8-bit, group size 32", "(float16)"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 %s --group-size 32 --tokenizer %s/qwen3 -o %s/m%d >/dev/null 2>&1",
                 LMC_BUILD_DIR, flag[k], LMC_TOKENIZER_DIR, dir, k);
        CHECK(system(cmd) == 0);
        char *out = NULL;
        snprintf(cmd, sizeof cmd, "%s/lmc info -m %s/m%d 2>&1", LMC_BUILD_DIR, dir, k);
        CHECK(run(cmd, &out) == 0);
        CHECKF(out && strstr(out, want[k]), "%s: %s", flag[k], out ? out : "");
        free(out);
        out = NULL;
        snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s/m%d --prompt-ids 1,2,3 --max-tokens 4 --temperature 0 --ignore-eos 2>&1",
                 LMC_BUILD_DIR, dir, k);
        CHECKF(run(cmd, &out) == 0, "%s: %s", flag[k], out ? out : "");
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 --q4 --f16 -o %s/bad 2>/dev/null; test $? -eq 2 && test ! -e %s/bad",
             LMC_BUILD_DIR, dir, dir);
    CHECK(system(cmd) == 0);
    /* a missing tokenizer is refused before the output folder is made */
    snprintf(cmd, sizeof cmd,
             "%s/lmc make-model --preset tiny-qwen3 --tokenizer %s/none -o %s/notok 2>&1 | grep -q 'cannot read %s/none/tokenizer.json'"
             " && test ! -e %s/notok",
             LMC_BUILD_DIR, dir, dir, dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Two chat turns on a tiny model with Qwen 3's vocabulary: the second
 * computes only what is new (the prompt cache), and --no-prompt-cache
 * computes it all; the replies are the same. */
static void test_chat_turns(void) {
    char tmpl[] = "/tmp/lmc-cli-chat-XXXXXX";
    char *dir = mkdtemp(tmpl), cmd[8192], *out[2] = {NULL, NULL};
    CHECK(dir != NULL);
    if (!dir) return;
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 --tokenizer %s/qwen3 -o %s/m >/dev/null 2>&1",
             LMC_BUILD_DIR, LMC_TOKENIZER_DIR, dir);
    CHECK(system(cmd) == 0);
    const char *flags[2] = {"", "--no-prompt-cache"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "printf 'Hello there\\nAnd again\\n' | %s/lmc chat -m %s/m --temperature 0 --max-tokens 6 --stats %s "
                 "--system 'Be brief.' 2>&1",
                 LMC_BUILD_DIR, dir, flags[k]);
        CHECK(run(cmd, &out[k]) == 0);
    }
    if (out[0] && out[1]) {
        const char *second = strstr(out[0], "[prompt");
        second = second ? strstr(second + 1, "[prompt") : NULL;
        CHECKF(second && strstr(second, "from the prompt cache"), "%s", out[0]);
        CHECKF(!strstr(out[1], "from the prompt cache"), "%s", out[1]);
        /* the same text apart from the figures lines */
        char *texts[2];
        for (int k = 0; k < 2; k++) {
            texts[k] = strdup(out[k]);
            char *w = texts[k];
            for (const char *r = out[k]; *r;) {
                if (r[0] == '[' && !strncmp(r, "[prompt", 7)) {
                    while (*r && *r != '\n') r++;
                    continue;
                }
                *w++ = *r++;
            }
            *w = 0;
        }
        CHECK_STR(texts[0], texts[1]);
        free(texts[0]);
        free(texts[1]);
    }
    free(out[0]);
    free(out[1]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* lmc chat --tools: the template gets the tools (text or @FILE), --tool-choice
 * required makes the reply one call (in Qwen's tags on standard output) that
 * standard error names with its arguments; the refusals name the option. */
static void test_chat_tools(void) {
    char tmpl[] = "/tmp/lmc-cli-tools-XXXXXX";
    char *dir = mkdtemp(tmpl), cmd[8192], *out = NULL, *err = NULL;
    CHECK(dir != NULL);
    if (!dir) return;
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 --tokenizer %s/qwen3 -o %s/m >/dev/null 2>&1",
             LMC_BUILD_DIR, LMC_TOKENIZER_DIR, dir);
    CHECK(system(cmd) == 0);
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":6}},\"required\":[\"city\"]}}},"
                        "{\"type\":\"function\",\"function\":{\"name\":\"toggle\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"on\":{\"type\":\"boolean\"}},\"required\":[\"on\"]}}}]";
    char path[4200];
    snprintf(path, sizeof path, "%s/tools.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(tools, f) >= 0);
    if (f) fclose(f);
    for (int k = 0; k < 2; k++) {
        /* the tools inline, then from the file: the same reply */
        snprintf(cmd, sizeof cmd, "%s/lmc chat -m %s/m --tools %s%s%s --tool-choice required --message 'Paris?' --seed 3 "
                 "--max-tokens 400 2>%s/err", LMC_BUILD_DIR, dir, k ? "@" : "'", k ? path : tools, k ? "" : "'", dir);
        char *o = NULL;
        CHECK(run(cmd, &o) == 0);
        size_t n = o ? strlen(o) : 0;
        CHECKF(o && !strncmp(o, "<tool_call>\n", 12) && n > 14 && !strcmp(o + n - 14, "\n</tool_call>\n"), "%s", o ? o : "");
        if (k == 0) out = o;
        else {
            CHECK_STR(o, out);
            free(o);
        }
    }
    snprintf(cmd, sizeof cmd, "cat %s/err", dir);
    CHECK(run(cmd, &err) == 0);
    const char *w = "[tool call] get_weather {\"city\":", *t = "[tool call] toggle {\"on\":";
    CHECKF(err && (!strncmp(err, w, strlen(w)) || !strncmp(err, t, strlen(t))),
           "%s", err ? err : "");
    free(out);
    free(err);
    /* Interactive: /tool TEXT sends TEXT back as a tool message (Qwen's
     * template wraps it in <tool_response> tags), and the model replies: the
     * second turn's prompt is longer than with TEXT as a user message, and
     * than with an empty result. */
    const char *second_turn[3] = {"/tool {\\\"temp_c\\\": 21}", "{\\\"temp_c\\\": 21}", "/tool"};
    long prompt2[3] = {-1, -1, -1};
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "printf 'Paris?\\n%s\\n' | %s/lmc chat -m %s/m --tools '%s' --temperature 0 --max-tokens 6 --stats 2>&1 >/dev/null",
                 second_turn[k], LMC_BUILD_DIR, dir, tools);
        char *o = NULL;
        CHECK(run(cmd, &o) == 0);
        const char *p2 = o ? strstr(o, "[prompt ") : NULL;
        p2 = p2 ? strstr(p2 + 1, "[prompt ") : NULL;
        if (p2) prompt2[k] = strtol(p2 + 8, NULL, 10);
        CHECKF(p2 != NULL, "%s: %s", second_turn[k], o ? o : "");
        free(o);
    }
    CHECKF(prompt2[0] > prompt2[1] && prompt2[0] > prompt2[2], "second prompts: tool %ld, user %ld, empty tool %ld", prompt2[0],
           prompt2[1], prompt2[2]);
    /* without --tools the line is refused and the chat goes on */
    snprintf(cmd, sizeof cmd, "printf 'hi\\n/tool x\\nagain\\n' | %s/lmc chat -m %s/m --temperature 0 --max-tokens 2 --stats 2>&1 >/dev/null",
             LMC_BUILD_DIR, dir);
    char *o2 = NULL;
    CHECK(run(cmd, &o2) == 0);
    const char *q2 = o2 ? strstr(o2, "start the chat with --tools") : NULL;
    CHECKF(q2 && strstr(q2, "[prompt "), "%s", o2 ? o2 : "");
    free(o2);
    const char *bad[][2] = {
        {"--tool-choice required", "--tool-choice needs --tools"},
        {"--tools @/nonexistent/tools.json", "--tools: /nonexistent/tools.json"},
        {"--tools '{}'", "tools must be a JSON array"},
        {"--tools '[]' --tool-choice nowhere", "'nowhere'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s/lmc chat -m %s/m %s --message hi 2>&1", LMC_BUILD_DIR, dir, bad[i][0]);
        char *o = NULL;
        int rc = run(cmd, &o);
        CHECKF(rc != 0 && o && strstr(o, bad[i][1]), "%s: rc %d: %s", bad[i][0], rc, o ? o : "");
        free(o);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* --json-schema, inline and @FILE: the same reply, one the schema allows;
 * a schema lmc cannot follow fails before generating, naming the keyword. */
static void test_json_schema_option(void) {
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"enum\":[\"x\",\"yz\"]}},"
                         "\"required\":[\"a\",\"b\"]}";
    char path[] = "/tmp/lmc-cli-schema-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, schema, strlen(schema)) == (ssize_t)strlen(schema));
    if (fd >= 0) close(fd);
    char cmd[8192], *out1 = NULL, *out2 = NULL;
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids 1,2,3 --max-tokens 300 --temperature 0 --json --json-schema '%s'",
             LMC_BUILD_DIR, g_dir, schema);
    CHECK(run(cmd, &out1) == 0);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids 1,2,3 --max-tokens 300 --temperature 0 --json --json-schema @%s",
             LMC_BUILD_DIR, g_dir, path);
    CHECK(run(cmd, &out2) == 0);
    cJSON *j1 = cJSON_Parse(out1), *j2 = cJSON_Parse(out2);
    const char *t1 = cJSON_GetStringValue(cJSON_GetObjectItem(j1, "text")), *t2 = cJSON_GetStringValue(cJSON_GetObjectItem(j2, "text"));
    CHECKF(t1 && t2 && !strcmp(t1, t2), "inline and @FILE differ: %s / %s", out1, out2);
    lmc_json_schema *s = NULL;
    CHECK(lmc_json_schema_compile(schema, &s) == LMC_OK);
    lmc_json_state st;
    lmc_json_init(&st, s);
    bool ok = t1 != NULL;
    for (const char *c = t1; ok && *c; c++) ok = lmc_json_step(&st, (unsigned char)*c);
    CHECKF(ok, "not a prefix the schema allows: %s", t1 ? t1 : "(none)");
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(j1, "stop_reason"));
    CHECKF(why && (!strcmp(why, "eos") ? lmc_json_done(&st) : !strcmp(why, "max_tokens")), "stop %s, text %s", why ? why : "?", t1);
    lmc_json_schema_free(s);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    free(out1);
    free(out2);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids 1,2,3 --json-schema '{\"type\":\"object\",\"minProperties\":1}' 2>&1",
             LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out1) != 0);
    CHECKF(out1 && strstr(out1, "minProperties"), "%s", out1 ? out1 : "");
    free(out1);
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --prompt-ids 1,2,3 --json-schema @/nonexistent/s.json 2>&1", LMC_BUILD_DIR, g_dir);
    CHECK(run(cmd, &out1) != 0);
    CHECKF(out1 && strstr(out1, "/nonexistent/s.json"), "%s", out1 ? out1 : "");
    free(out1);
    unlink(path);
}

int main(void) {
    g_dir = model_fixture_dir("qwen3");
    if (!g_dir) return 1;
    RUN(test_generate_json);
    RUN(test_json_schema_option);
    RUN(test_logprobs_and_labels);
    RUN(test_embed);
    RUN(test_generation_config_defaults);
    RUN(test_logits_file);
    RUN(test_info_and_discover);
    RUN(test_usage_errors);
    RUN(test_bench_cores);
    RUN(test_adapter_and_fuse);
    RUN(test_make_model_kinds);
    RUN(test_chat_turns);
    RUN(test_chat_tools);
    model_fixture_cleanup(g_dir);
    return TEST_REPORT();
}
