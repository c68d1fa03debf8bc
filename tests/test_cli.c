/* The lmc CLI end to end on a golden model: generate (text and --json),
 * logits (checked against transformers' golden logits), info, discover,
 * and usage errors. Runs build/lmc as a subprocess. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/wait.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
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
    snprintf(cmd, sizeof cmd, "%s/lmc nosuchcommand 2>/dev/null", LMC_BUILD_DIR);
    CHECK(run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s/lmc --help", LMC_BUILD_DIR);
    CHECK(run(cmd, &out) == 0 && strstr(out, "generate") && strstr(out, "tokenize"));
    free(out);
}

int main(void) {
    g_dir = model_fixture_dir("qwen3");
    if (!g_dir) return 1;
    RUN(test_generate_json);
    RUN(test_logits_file);
    RUN(test_info_and_discover);
    RUN(test_usage_errors);
    model_fixture_cleanup(g_dir);
    return TEST_REPORT();
}
