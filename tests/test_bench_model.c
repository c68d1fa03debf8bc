/* Smoke test of `lmc bench -m DIR` on the tiny golden Qwen 3 model: the JSON
 * rows parse, name the right tests, agree with the model's own info and with
 * each other (the bound fraction is tokens/s over bandwidth / weight bytes),
 * --ttft reports a consistent breakdown, and bad options give exit 2. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

/* Runs `lmc bench ARGS`, stdout into out; returns the exit status. */
static int run_bench(const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/lmc' bench %s 2>/dev/null", LMC_BUILD_DIR, args);
    return run_command(cmd, out, cap);
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static const char *dir; /* the fixture folder */

/* The fixture model's info (loaded and freed again). */
static lmc_model_info fixture_info(void) {
    lmc_model *m;
    lmc_model_info info = {0};
    CHECK(lmc_model_load(dir, NULL, &m) == LMC_OK);
    CHECK(lmc_model_get_info(m, &info) == LMC_OK);
    lmc_model_free(m);
    return info;
}

static void test_bench_json(void) {
    lmc_model_info info = fixture_info();
    const char *name = strrchr(dir, '/') + 1;

    char out[16384], args[4096];
    snprintf(args, sizeof args, "-m '%s' -p 8 -n 4 -r 2 -t 1 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    int rows = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        cJSON *o = cJSON_Parse(line);
        CHECKF(o != NULL, "not JSON: %s", line);
        if (!o) continue;
        const char *test = str(o, "test");
        bool decode = !strcmp(test, "tg4");
        CHECKF(rows == 0 ? !strcmp(test, "pp8") : decode, "row %d is %s", rows, test);
        double tps = num(o, "tokens_per_s"), mean = num(o, "mean"), sd = num(o, "sd");
        CHECKF(tps > 0 && mean > 0 && sd >= 0, "%s: tokens/s %g, mean %g, sd %g", test, tps, mean, sd);
        CHECK(num(o, "cpu_tokens_per_s") > 0);
        CHECK(num(o, "threads") == 1);
        CHECK(num(o, "repeats") == 2);
        CHECK(num(o, "weight_bytes") == (double)info.weight_bytes && info.weight_bytes > 0);
        CHECK_STR(str(o, "model"), name);
        double bw = num(o, "bandwidth_gbs");
        CHECK(bw > 0);
        CHECK(num(o, "peak_rss_bytes") > 0);
        /* the memory goal's budget: weights + the largest KV cache (here pp8's) + 64 MiB */
        double kv = num(o, "rss_budget_bytes") - (double)info.weight_bytes - 64.0 * (1 << 20);
        CHECKF(kv > 0 && kv < 64.0 * (1 << 20), "KV cache part of the budget: %g bytes", kv);
        CHECK(num(o, "prefill_chunk") == LMC_PREFILL_CHUNK_CPU); /* the CPU's default (load option 0) */
        CHECK(num(o, "load_s") > 0);
        const cJSON *frac = cJSON_GetObjectItemCaseSensitive(o, "bound_fraction");
        if (decode) {
            /* tokens/s over the bound implied by the same row's bandwidth */
            double bound = bw * 1e9 / (double)info.weight_bytes;
            CHECK_CLOSE(num(o, "bound_tokens_per_s"), bound, 0, 1e-9);
            CHECK(cJSON_IsNumber(frac));
            CHECK_CLOSE(num(o, "bound_fraction"), tps / bound, 0, 1e-9);
            double cpu_bound = num(o, "cpu_bandwidth_gbs") * 1e9 / (double)info.weight_bytes;
            CHECK(cpu_bound > 0);
            CHECK_CLOSE(num(o, "cpu_bound_fraction"), num(o, "cpu_tokens_per_s") / cpu_bound, 0, 1e-9);
        } else {
            CHECK(cJSON_IsNull(frac));
        }
        cJSON_Delete(o);
    }
    CHECK(rows == 2);

    /* Two threads: the parallel regions a token and where the calling thread's time goes around them. */
    snprintf(args, sizeof args, "-m '%s' -p 8 -n 4 -r 1 -t 2 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    rows = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        cJSON *o = cJSON_Parse(line);
        CHECKF(o != NULL, "not JSON: %s", line);
        if (!o) continue;
        double regions = num(o, "regions_per_token"), serial = num(o, "serial_fraction"), wait = num(o, "wait_fraction");
        /* every token runs at least its layers' matmuls as parallel regions */
        CHECKF(regions >= 1, "%s: %g regions a token", str(o, "test"), regions);
        CHECKF(serial >= 0 && wait >= 0 && serial + wait <= 1, "%s: serial %g, wait %g", str(o, "test"), serial, wait);
        cJSON_Delete(o);
    }
    CHECK(rows == 2);

    /* -n 0 skips decode. */
    snprintf(args, sizeof args, "-m '%s' -p 4 -n 0 -r 1 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    CHECK(strstr(out, "\"pp4\"") && !strstr(out, "\"tg"));

    /* -d: both tests after 5 cached tokens, in a bf16 cache; decode's cache
     * read: steps 0..2 attend to 7, 8 and 9 keys, every layer full */
    snprintf(args, sizeof args, "-m '%s' -p 4 -n 3 -d 5 -r 1 -t 1 --kv-cache-dtype bf16 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    rows = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        cJSON *d = cJSON_Parse(line);
        CHECKF(d != NULL, "not JSON: %s", line);
        if (!d) continue;
        CHECK_STR(str(d, "test"), rows == 0 ? "pp4 @ d5" : "tg3 @ d5");
        CHECK(num(d, "depth") == 5 && num(d, "tokens_per_s") > 0);
        CHECK_STR(str(d, "kv_cache_dtype"), "bfloat16");
        if (rows == 1) {
            double kv = 8.0 * 2 * (double)info.num_kv_heads * (double)info.head_dim * 2 * (double)info.num_layers;
            CHECK(info.sliding_window == 0);
            CHECK_CLOSE(num(d, "kv_read_bytes_per_token"), kv, 0, 1e-12);
            CHECK_CLOSE(num(d, "bound_with_kv_tokens_per_s"),
                        num(d, "bandwidth_gbs") * 1e9 / ((double)info.weight_bytes + kv), 0, 1e-9);
        }
        /* the budget's cache held at least the depth and pp4's tokens (5 + 4
         * positions), bf16: 2 bytes a value */
        double kv_budget = num(d, "rss_budget_bytes") - (double)info.weight_bytes - 64.0 * (1 << 20);
        double kv9 = 9.0 * 2 * (double)info.num_kv_heads * (double)info.head_dim * 2 * (double)info.num_layers;
        CHECKF(kv_budget >= kv9 && kv_budget < 64.0 * (1 << 20), "KV cache part of the budget: %g bytes (>= %g)",
               kv_budget, kv9);
        cJSON_Delete(d);
    }
    CHECK(rows == 2);
    /* the text table names the depth and what the cache adds to decode */
    snprintf(args, sizeof args, "-m '%s' -p 4 -n 3 -d 5 -r 1 -t 1", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    CHECKF(strstr(out, " tg3 @ d5 | ") && strstr(out, "tg3 @ d5: the float32 KV cache adds"), "%s", out);

    /* -c: prefill in passes of 3 tokens */
    snprintf(args, sizeof args, "-m '%s' -p 8 -n 0 -r 1 -c 3 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    cJSON *o = cJSON_Parse(out);
    CHECKF(o && num(o, "prefill_chunk") == 3 && num(o, "tokens_per_s") > 0, "%s", out);
    cJSON_Delete(o);
}

static void test_ttft(void) {
    char out[4096], args[4096];
    snprintf(args, sizeof args, "-m '%s' --ttft -t 1 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    cJSON *o = cJSON_Parse(out);
    CHECKF(o != NULL, "not JSON: %s", out);
    if (!o) return;
    CHECK_STR(str(o, "test"), "ttft16");
    double total = num(o, "seconds"), load = num(o, "load_s"), first = num(o, "first_token_s");
    CHECKF(load > 0 && first > 0 && total >= load + first, "total %g, load %g, first token %g", total, load, first);
    CHECK(num(o, "peak_rss_bytes") > 0);
    CHECK(num(o, "cpu_s") > 0);
    cJSON_Delete(o);
}

static void test_usage_errors(void) {
    char out[4096], args[4096];
    CHECK(run_bench("-p 8", out, sizeof out) == 2); /* no -m */
    snprintf(args, sizeof args, "-m '%s' -p x", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' -r 0", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' -c 0", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' -p 0 -n 0", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' --frobnicate", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' --kv-cache-dtype int8", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' -d -1", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    /* a depth the context cannot hold: refused, naming the limit */
    snprintf(args, sizeof args, "-m '%s' -p 4 -n 4 -d 1000000", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    CHECK(run_bench("-m /nonexistent/model -p 4 -n 4", out, sizeof out) == 1);
    /* --ttft is one start from an empty cache: options of the pp/tg tests are refused, not ignored */
    const char *tests_only[] = {"-d 4", "-n 8", "-r 2", "-c 4"};
    for (int i = 0; i < 4; i++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s/lmc' bench -m '%s' --ttft %s 2>&1", LMC_BUILD_DIR, dir, tests_only[i]);
        char flag[4] = {tests_only[i][0], tests_only[i][1], 0};
        CHECKF(run_command(cmd, out, sizeof out) == 2 && strstr(out, flag) && strstr(out, "--ttft"), "%s: %s",
               tests_only[i], out);
    }
}

/* A 4-bit model: the JSON rows carry the activation setting, 24 by
 * default and 8 with --activation-bits 8 (bf16 models carry none). */
static void test_activation_bits(void) {
    char *q4 = model_fixture_dir("qwen3_mlx4");
    CHECK(q4 != NULL);
    if (!q4) return;
    char out[16384], args[4096];
    for (int ab = 24; ab >= 8; ab -= 16) {
        snprintf(args, sizeof args, "-m '%s' -p 8 -n 4 -r 1 -t 1 --activation-bits %d --json", q4, ab);
        CHECK(run_bench(args, out, sizeof out) == 0);
        int rows = 0;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), rows++) {
            cJSON *o = cJSON_Parse(line);
            CHECKF(o && num(o, "activation_bits") == ab && num(o, "tokens_per_s") > 0, "%d: %s", ab, line);
            cJSON_Delete(o);
        }
        CHECK(rows == 2);
    }
    snprintf(args, sizeof args, "-m '%s' -p 8 -n 4 -r 1 -t 1 --activation-bits 8 --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0 && !strstr(out, "activation_bits"));
    model_fixture_cleanup(q4);
}

/* One --ops line (test "of"): every layer op once a layer and pass (add +
 * norm twice), the embedding once a pass, the lm_head once a pass that
 * needs logits (a prefill's last), shares that add up with what lies
 * between ops to the token's time. */
static void check_ops_line(const cJSON *line, const lmc_model_info *info, int tokens, int passes, int heads) {
    CHECKF(num(line, "tokens") == tokens && num(line, "token_us") > 0, "%s", str(line, "of"));
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(line, "ops");
    CHECK(cJSON_GetArraySize(ops) == 11);
    double shares = num(line, "between_ops_share");
    CHECK(shares >= 0 && shares < 1);
    const cJSON *e;
    cJSON_ArrayForEach(e, ops) {
        const char *op = str(e, "op");
        double calls = num(e, "calls_per_token"), want = (double)info->num_layers * passes;
        if (!strcmp(op, "embedding")) want = passes;
        if (!strcmp(op, "lm_head")) want = heads;
        if (!strcmp(op, "add + norm")) want = 2.0 * (double)info->num_layers * passes;
        CHECKF(fabs(calls - want / tokens) < 1e-9, "%s %s: %g calls a token, expected %g", str(line, "of"), op, calls,
               want / tokens);
        CHECKF(num(e, "us_per_call") >= 0 && num(e, "share") >= 0, "%s", op);
        shares += num(e, "share");
    }
    CHECKF(shares > 0.5 && shares < 1.0 + 1e-9, "%s: shares add up to %g", str(line, "of"), shares);
}

/* --ops: one more run of each test timed by decoder op, as one JSON line
 * each after the tests' rows: a prefill of 8 tokens in passes of 3 (three
 * passes, one head) and 6 decode steps. */
static void test_ops(void) {
    lmc_model_info info = fixture_info();
    char out[16384], args[4096];
    snprintf(args, sizeof args, "-m '%s' -p 8 -c 3 -n 6 -r 1 -t 1 --ops --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0);
    cJSON *pp = NULL, *tg = NULL;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (o && !strcmp(str(o, "test"), "ops") && !strcmp(str(o, "of"), "pp8") && !pp) pp = o;
        else if (o && !strcmp(str(o, "test"), "ops") && !strcmp(str(o, "of"), "tg6") && !tg) tg = o;
        else cJSON_Delete(o);
    }
    CHECK(pp && tg);
    if (pp) check_ops_line(pp, &info, 8, 3, 1);
    if (tg) check_ops_line(tg, &info, 6, 6, 6);
    cJSON_Delete(pp);
    cJSON_Delete(tg);
    /* one test, one profile */
    snprintf(args, sizeof args, "-m '%s' -p 4 -n 0 -r 1 -t 1 --ops --json", dir);
    CHECK(run_bench(args, out, sizeof out) == 0 && strstr(out, "\"of\":\"pp4\"") && !strstr(out, "\"of\":\"tg"));
    /* a backend whose ops only queue work, or --ttft: refused */
    snprintf(args, sizeof args, "-m '%s' -b cuda --ops", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s' --ttft --ops", dir);
    CHECK(run_bench(args, out, sizeof out) == 2);
}

int main(void) {
    char lmc[4096];
    struct stat st;
    snprintf(lmc, sizeof lmc, "%s/lmc", LMC_BUILD_DIR);
    if (stat(lmc, &st) != 0) {
        fprintf(stderr, "%s not built\n", lmc);
        return 1;
    }
    char *fixture = model_fixture_dir("qwen3");
    CHECK(fixture != NULL);
    if (!fixture) return TEST_REPORT();
    dir = fixture;
    RUN(test_bench_json);
    RUN(test_ttft);
    RUN(test_usage_errors);
    RUN(test_activation_bits);
    RUN(test_ops);
    model_fixture_cleanup(fixture);
    return TEST_REPORT();
}
