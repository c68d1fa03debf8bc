/* `lmc bench -m DIR`: prefill and decode speed of a whole model, printed as
 * llama-bench prints them (pp512 and tg128 rows, mean ± sd over repeats),
 * beside the model's weight bytes and the decode bound those bytes imply at
 * the read bandwidth measured in the same run with the same threads.
 *
 *   prefill (ppP): P random in-vocabulary tokens from an empty cache, in
 *                  forward passes of the model's prefill chunk (the
 *                  backend's by default: 64 on the CPU, 512 on cuda; -c),
 *                  as generation does; tokens/s = P / time.
 *   decode (tgN):  after a one-token prompt, N single-token forward passes,
 *                  each fed the argmax of the previous logits; tokens/s =
 *                  N / time. Greedy argmax only: no sampler, no detokeniser.
 *   depth (-d D):  both tests run on a cache that already holds D random
 *                  tokens (filled untimed before each repeat, as llama-bench's
 *                  -d does; rows "pp512 @ d2048"). Decode then also reads the
 *                  cache every step: the bytes it adds per token are printed
 *                  beside the weights-only bound, and a bound with them.
 *
 * Both call the decoder directly (runtime/model_internal.h: the bench is
 * built into the CLI) so that only forward passes are timed; the model is
 * loaded with the public lmc_model_load. An untimed warm-up runs before
 * each test (decode: one step; prefill: up to 64 tokens), which also pages
 * in the mmap'd weights. Besides wall time, each test records the CPU time
 * of all threads: tokens per CPU-second are far less disturbed by other
 * work on a busy machine than tokens per second. Decode reads every
 * weight once per token, so weight bytes ÷ read bandwidth is its bound.
 *
 * --ttft measures what a user waits for instead: from main() entry (the
 * CLI's lmc_cli_t0) through loading the model, a 16-token prompt and the
 * first generated token, through the public lmc_generate_ids. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_model.h"
#include "bench_ops.h"
#include "core/huge_pages.h"
#include "core/threadpool.h"
#include "io/safetensors_internal.h"
#include "lmc/ops.h"
#include "runtime/model_internal.h"
#include "tools/cli.h"
#include "tools/cli_options.h"
#ifdef LMC_HAVE_CUDA
#include "backend/cuda/cuda_launch.h"
#endif

typedef struct bm_opts {
    const char *dir;
    const char *backend; /* NULL: the default (cpu) */
    int n_prompt, n_gen, threads, reps, chunk; /* chunk: prefill tokens per forward pass, 0 = the model's */
    int depth;                                 /* tokens in the cache before each test */
    lmc_dtype kv_dtype;                        /* the KV cache's dtype (load option kv_cache_dtype) */
    int act_bits;                              /* load option activation_bits (24 or 8) */
    bool json, ttft;
    bool ops;                                  /* --ops: one more decode run, profiled by decoder op */
    bool no_huge_pages;                        /* --no-huge-pages: load option huge_pages off */
    size_t huge_bytes;                         /* weight file bytes moved onto 2 MiB pages before the tests */
    double huge_wait_s;                        /* time waited for that move after loading */
} bm_opts;

typedef struct bm_stats {
    double median, mean, sd; /* tokens/s over the repeats */
} bm_stats;

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double seconds(void) { return clock_s(CLOCK_MONOTONIC); }

/* A timed region: wall seconds, and CPU seconds of every thread of the
 * process (which a busy machine does not inflate the way it does wall time). */
typedef struct bm_time {
    double wall, cpu;
} bm_time;

static bm_time time_now(void) { return (bm_time){seconds(), clock_s(CLOCK_PROCESS_CPUTIME_ID)}; }

static bm_time time_since(bm_time t0) {
    bm_time t = time_now();
    return (bm_time){t.wall - t0.wall, t.cpu - t0.cpu};
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, mean and sample standard deviation (0 for one value). Sorts v. */
static bm_stats stats_of(double *v, int n) {
    bm_stats s = {0};
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
    return s;
}

static size_t peak_rss_bytes(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (size_t)ru.ru_maxrss * 1024 : 0;
}

/* User + system CPU seconds of the process since it started. */
static double process_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* The folder's last path component, without trailing slashes. */
static void folder_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), dir + b);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static int32_t random_token(int64_t vocab) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (int32_t)(g_rng % (uint64_t)vocab);
}

/* One forward pass over ids[0..n) appending to cache; with next != NULL the
 * argmax of the last position's logits (ties to the lowest id). */
static lmc_status forward(const lmc_decoder *dec, lmc_kv_cache *cache, const int32_t *ids, int64_t n, bool logits,
                          int32_t *next) {
    lmc_status st = LMC_OK;
    lmc_scope_begin();
    int64_t shape[2] = {1, n};
    lmc_array *x = lmc_array_from_data(ids, LMC_I32, 2, shape);
    lmc_forward_args args = {.last_only = true, .hidden = !logits}; /* as a generation's earlier chunks */
    lmc_array *lg = lmc_decoder_forward(dec, cache, x, &args);
    if (!lg) st = lmc_last_status();
    else if (next) {
        const float *p = lmc_array_data(lg); /* f32 [1, 1, V], contiguous */
        int64_t V = dec->cfg.vocab_size, best = 0;
        for (int64_t i = 1; i < V; i++)
            if (p[i] > p[best]) best = i;
        *next = (int32_t)best;
    }
    lmc_scope_end();
    return st;
}

/* The largest KV cache a test held, in bytes (for the peak RSS budget). */
static size_t g_kv_peak;

static void note_kv(const lmc_kv_cache *c) {
    size_t b = lmc_kv_cache_bytes(c);
    if (b > g_kv_peak) g_kv_peak = b;
}

/* The timed part of a test: wall and CPU time, and the parallel regions
 * run inside it added to *pool (the untimed fill of a cache is not counted). */
static bm_time timed_begin(void) {
    lmc_pool_stats_enable(true);
    return time_now();
}

static bm_time timed_end(bm_time t0, lmc_pool_stats *pool) {
    bm_time t = time_since(t0);
    lmc_pool_stats s = lmc_pool_stats_get();
    lmc_pool_stats_enable(false);
    pool->regions += s.regions;
    pool->region_s += s.region_s;
    pool->wait_s += s.wait_s;
    pool->serial_s += s.serial_s;
    return t;
}

/* A cache for depth + n more tokens, holding depth random tokens (fed in
 * passes of chunk tokens, untimed). */
static lmc_status filled_cache(const lmc_decoder *dec, int depth, int n, int chunk, lmc_kv_cache *cache) {
    LMC_CHECK(lmc_decoder_cache_init(dec, cache, 1, (int64_t)depth + n));
    lmc_status st = lmc_kv_cache_reserve(cache, (int64_t)depth + n); /* as a generation does */
    int32_t ids[256];
    for (int at = 0; at < depth && st == LMC_OK;) {
        int k = depth - at < chunk ? depth - at : chunk;
        k = k < 256 ? k : 256;
        for (int i = 0; i < k; i++) ids[i] = random_token(dec->cfg.vocab_size);
        st = forward(dec, cache, ids, k, false, NULL);
        at += k;
    }
    if (st != LMC_OK) lmc_kv_cache_free(cache);
    return st;
}

/* Time of one prefill of n_prompt random tokens after depth cached ones, in
 * forward passes of at most chunk tokens; with prof, also profiled by decoder op. */
static lmc_status run_prefill(const lmc_decoder *dec, int depth, int n_prompt, int chunk, bm_time *secs,
                              lmc_pool_stats *pool, lmc_decoder_profile *prof) {
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    if (!ids) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n_prompt; i++) ids[i] = random_token(dec->cfg.vocab_size);
    lmc_kv_cache cache;
    lmc_status st = filled_cache(dec, depth, n_prompt, chunk, &cache);
    if (st == LMC_OK) {
        if (prof) lmc_decoder_profile_start();
        bm_time t0 = timed_begin();
        for (int at = 0; at < n_prompt && st == LMC_OK; at += chunk)
            st = forward(dec, &cache, ids + at, n_prompt - at < chunk ? n_prompt - at : chunk, at + chunk >= n_prompt, NULL);
        *secs = timed_end(t0, pool);
        if (prof) *prof = lmc_decoder_profile_stop();
        note_kv(&cache);
        lmc_kv_cache_free(&cache);
    }
    free(ids);
    return st;
}

/* Time of n_gen greedy single-token steps after depth cached tokens and a
 * one-token prompt; with prof, the steps are also profiled by decoder op. */
static lmc_status run_decode(const lmc_decoder *dec, int depth, int n_gen, int chunk, bm_time *secs,
                             lmc_pool_stats *pool, lmc_decoder_profile *prof) {
    lmc_kv_cache cache;
    LMC_CHECK(filled_cache(dec, depth, n_gen + 1, chunk, &cache));
    int32_t tok = random_token(dec->cfg.vocab_size);
    lmc_status st = forward(dec, &cache, &tok, 1, true, &tok);
    if (prof) lmc_decoder_profile_start();
    bm_time t0 = timed_begin();
    for (int i = 0; i < n_gen && st == LMC_OK; i++) st = forward(dec, &cache, &tok, 1, true, &tok);
    *secs = timed_end(t0, pool);
    if (prof) *prof = lmc_decoder_profile_stop();
    note_kv(&cache);
    lmc_kv_cache_free(&cache);
    return st;
}

/* Bytes of keys and values a decode step reads, averaged over the n_gen
 * steps of a test at this depth: step i attends to depth + 2 + i keys (the
 * filled ones, the prompt token, the steps before it and its own), a
 * sliding layer to at most its window. */
static double kv_read_per_token(const lmc_decoder *dec, int depth, int n_gen, lmc_dtype dt) {
    double per_key = 2.0 * (double)dec->cfg.num_kv_heads * (double)dec->cfg.head_dim * (double)lmc_dtype_size(dt), total = 0;
    for (int i = 0; i < n_gen; i++) {
        int64_t keys = (int64_t)depth + 2 + i;
        for (int64_t l = 0; l < dec->cfg.num_layers; l++) {
            int64_t w = dec->layers[l].sliding ? dec->cfg.sliding_window : 0;
            total += per_key * (double)(w > 0 && keys > w ? w : keys);
        }
    }
    return n_gen > 0 ? total / n_gen : 0;
}

typedef struct bm_row {
    char test[32];
    bm_stats tps;
    double cpu_tps; /* median tokens per CPU-second (all threads) */
    bool decode;
    double kv_bytes; /* decode: bytes of the cache a step reads, on average */
    /* the timed repeats' parallel regions (lmc_pool_stats): per token, and
     * the calling thread's share of the time between them and waiting at their ends */
    double regions_per_token, serial_frac, wait_frac;
} bm_row;

/* Issue 8's memory goal: weights + the largest KV cache a test held + 64 MiB. */
static size_t rss_budget(const lmc_model_info *info) { return (size_t)info->weight_bytes + g_kv_peak + ((size_t)64 << 20); }

/* The GPU's name and memory bandwidth, for runs on backend "cuda". */
static char g_gpu_name[256] = "?";

static bool gpu_backend(const bm_opts *o) { return o->backend && !strcmp(o->backend, "cuda"); }

static int gpu_bandwidth(double *gbps) {
#ifdef LMC_HAVE_CUDA
    lmc_cuda_device_name(g_gpu_name, sizeof g_gpu_name);
    int e = lmc_cuda_copy_bandwidth(gbps);
    if (!e) return 0;
    fprintf(stderr, "lmc bench: measuring the GPU's bandwidth: %s\n", lmc_cuda_error_string(e));
#else
    (void)gbps;
    fprintf(stderr, "lmc bench: this lmc was built without CUDA\n");
#endif
    return 1;
}

/* Tokens/s if a step did nothing but read bytes_per_token at gbps. */
static double bytes_bound(double gbps, double bytes_per_token) { return gbps * 1e9 / bytes_per_token; }

static void print_rows(const bm_opts *o, const char *name, const lmc_model_info *info, const bm_row *rows, int n_rows,
                       double read_gbps, double read_gbps_cpu, size_t rss, size_t lmc_peak, double load_s) {
    char cpu[256];
    lmc_bench_cpu_name(cpu, sizeof cpu);
    double bound = bytes_bound(read_gbps, (double)info->weight_bytes); /* decode reading the weights alone */
    double cpu_bound = bytes_bound(read_gbps_cpu, (double)info->weight_bytes); /* the same per CPU-second */
    if (o->json) {
        for (int i = 0; i < n_rows; i++) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "test", rows[i].test);
            cJSON_AddNumberToObject(j, "tokens_per_s", rows[i].tps.median);
            cJSON_AddNumberToObject(j, "mean", rows[i].tps.mean);
            cJSON_AddNumberToObject(j, "sd", rows[i].tps.sd);
            cJSON_AddNumberToObject(j, "cpu_tokens_per_s", rows[i].cpu_tps);
            cJSON_AddNumberToObject(j, "repeats", o->reps);
            cJSON_AddNumberToObject(j, "threads", o->threads);
            cJSON_AddNumberToObject(j, "weight_bytes", (double)info->weight_bytes);
            cJSON_AddStringToObject(j, "model", name);
            cJSON_AddStringToObject(j, "architecture", info->architecture);
            cJSON_AddNumberToObject(j, "quant_bits", info->quant_bits);
            cJSON_AddNumberToObject(j, "bandwidth_gbs", read_gbps);
            cJSON_AddNumberToObject(j, "cpu_bandwidth_gbs", read_gbps_cpu);
            /* The bandwidth bound applies to decode; prefill is compute-bound. */
            cJSON_AddNumberToObject(j, "depth", o->depth);
            cJSON_AddStringToObject(j, "kv_cache_dtype", lmc_dtype_name(o->kv_dtype));
            if (info->activation_bits) cJSON_AddNumberToObject(j, "activation_bits", info->activation_bits);
            if (rows[i].decode) {
                cJSON_AddNumberToObject(j, "kv_read_bytes_per_token", rows[i].kv_bytes);
                cJSON_AddNumberToObject(j, "bound_with_kv_tokens_per_s",
                                        bytes_bound(read_gbps, (double)info->weight_bytes + rows[i].kv_bytes));
                cJSON_AddNumberToObject(j, "bound_tokens_per_s", bound);
                cJSON_AddNumberToObject(j, "bound_fraction", rows[i].tps.median / bound);
                cJSON_AddNumberToObject(j, "cpu_bound_fraction", rows[i].cpu_tps / cpu_bound);
            } else {
                cJSON_AddNullToObject(j, "bound_fraction");
                cJSON_AddNullToObject(j, "cpu_bound_fraction");
            }
            cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)rss);
            cJSON_AddNumberToObject(j, "lmc_peak_bytes", (double)lmc_peak);
            cJSON_AddNumberToObject(j, "rss_budget_bytes", (double)rss_budget(info));
            cJSON_AddNumberToObject(j, "regions_per_token", rows[i].regions_per_token);
            cJSON_AddNumberToObject(j, "serial_fraction", rows[i].serial_frac);
            cJSON_AddNumberToObject(j, "wait_fraction", rows[i].wait_frac);
            cJSON_AddNumberToObject(j, "prefill_chunk", o->chunk);
            cJSON_AddNumberToObject(j, "load_s", load_s);
            cJSON_AddNumberToObject(j, "huge_page_bytes", (double)o->huge_bytes);
            cJSON_AddStringToObject(j, "path", lmc_cpu().path);
            cJSON_AddStringToObject(j, "cpu", cpu);
            char *s = cJSON_PrintUnformatted(j);
            if (s) puts(s);
            free(s);
            cJSON_Delete(j);
        }
        return;
    }
    if (gpu_backend(o)) printf("machine: %s; GPU %s, backend cuda (lmc %s)\n", cpu, g_gpu_name, lmc_version());
    else printf("machine: %s, %d threads, kernel path %s (lmc %s)\n", cpu, o->threads, lmc_cpu().path, lmc_version());
    printf("model: %s (%s, %s%s), %.1f MB of weights, %.3f B parameters, loaded in %.2f s\n\n", name,
           info->architecture, info->quant_bits ? (info->quant_bits == 4 ? "4-bit" : "8-bit") : info->dtype,
           info->activation_bits == 8 ? ", int8 activations" : "", (double)info->weight_bytes / 1e6,
           (double)info->num_parameters / 1e9, load_s);
    if (o->huge_bytes)
        printf("weights on 2 MiB pages: %.1f MB of the files moved in the background; the tests waited %.2f s for it\n\n",
               (double)o->huge_bytes / 1e6, o->huge_wait_s);
    else if (!gpu_backend(o))
        printf("weights on the file mapping's 4 KiB pages (%s)\n\n",
               o->no_huge_pages ? "--no-huge-pages" : "transparent huge pages off, or too little memory free");
    int tw = o->depth ? 15 : 6; /* "pp512 @ d2048" */
    printf("| %-20s | %10s | %7s | %*s | %16s | %9s | %8s | %8s | %9s |\n", "model", "weights", "threads", tw, "test",
           "t/s", "bound t/s", "of bound", "t/CPU-s", "of bound*");
    printf("| %.20s | %.10s | %.7s | %.*s | %.16s | %.9s | %.8s | %.8s | %.9s |\n", "--------------------",
           "----------", "-------", tw, "---------------", "----------------", "---------", "--------", "--------",
           "---------");
    for (int i = 0; i < n_rows; i++) {
        char tps[32], b[16] = "", f[16] = "", fc[16] = "";
        snprintf(tps, sizeof tps, "%.2f ± %.2f", rows[i].tps.mean, rows[i].tps.sd);
        if (rows[i].decode) {
            snprintf(b, sizeof b, "%.2f", bound);
            snprintf(f, sizeof f, "%.1f %%", 100 * rows[i].tps.median / bound);
            snprintf(fc, sizeof fc, "%.1f %%", 100 * rows[i].cpu_tps / cpu_bound);
        }
        printf("| %-20.20s | %7.1f MB | %7d | %*s | %16s | %9s | %8s | %8.2f | %9s |\n", name,
               (double)info->weight_bytes / 1e6, o->threads, tw, rows[i].test, tps, b, f, rows[i].cpu_tps, fc);
    }
    if (gpu_backend(o))
        printf("\nGPU memory bandwidth %.0f GB/s (a 1 GiB device copy, bytes read + written, measured after the tests);\n"
               "bound = bandwidth / weight bytes. t/CPU-s counts the host's CPU time.\n",
               read_gbps);
    else
        printf("\nread bandwidth %.1f GB/s, %.1f GB per CPU-second (%d threads, 512 MiB, measured after the tests);\n"
               "bound = bandwidth / weight bytes. t/CPU-s: tokens per CPU-second of all threads, and of bound*: that\n"
               "against the bandwidth per CPU-second; both are less sensitive to other load on the machine than t/s.\n",
               read_gbps, read_gbps_cpu, o->threads);
    for (int i = 0; i < n_rows; i++)
        if (rows[i].decode && o->depth > 0) {
            double kb = bytes_bound(read_gbps, (double)info->weight_bytes + rows[i].kv_bytes);
            printf("%s: the %s KV cache adds %.1f MB a token to the weights' %.1f MB: bound with it %.2f t/s, %.1f %% of it\n",
                   rows[i].test, lmc_dtype_name(o->kv_dtype), rows[i].kv_bytes / 1e6, (double)info->weight_bytes / 1e6,
                   kb, 100 * rows[i].tps.median / kb);
        }
    for (int i = 0; i < n_rows && o->threads > 1; i++)
        printf("%s: %.0f parallel regions a token; the calling thread spends %.1f %% of the time between them (serial\n"
               "  work) and %.1f %% waiting at their ends for the other threads\n",
               rows[i].test, rows[i].regions_per_token, 100 * rows[i].serial_frac, 100 * rows[i].wait_frac);
    printf("peak RSS %.1f MiB (lmc allocations peak %.1f MiB; weights + largest KV cache %.1f MiB + 64 MiB = %.1f MiB);\n"
           "prefill in passes of %d tokens; %d repeats, median used for the bound\n",
           (double)rss / (1 << 20), (double)lmc_peak / (1 << 20), (double)g_kv_peak / (1 << 20),
           (double)rss_budget(info) / (1 << 20), o->chunk, o->reps);
}

/* Times reps runs (after one untimed warm-up) of prefill or decode. */
static lmc_status run_test(const lmc_decoder *dec, const bm_opts *o, bool decode, bm_row *row) {
    int n = decode ? o->n_gen : o->n_prompt;
    if (o->depth) snprintf(row->test, sizeof row->test, "%s%d @ d%d", decode ? "tg" : "pp", n, o->depth);
    else snprintf(row->test, sizeof row->test, "%s%d", decode ? "tg" : "pp", n);
    row->decode = decode;
    row->kv_bytes = decode ? kv_read_per_token(dec, o->depth, n, o->kv_dtype) : 0;
    double *tps = malloc(2 * (size_t)o->reps * sizeof *tps), *cpu = tps + o->reps;
    if (!tps) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    bm_time secs;
    /* Warm-up: pages in the weights and lets the allocator settle. */
    lmc_pool_stats ps = {0};
    lmc_status st = decode ? run_decode(dec, 0, 1, o->chunk, &secs, &ps, NULL)
                           : run_prefill(dec, 0, n < 64 ? n : 64, o->chunk, &secs, &ps, NULL);
    double wall = 0;
    ps = (lmc_pool_stats){0};
    for (int r = 0; r < o->reps && st == LMC_OK; r++) {
        st = decode ? run_decode(dec, o->depth, n, o->chunk, &secs, &ps, NULL)
                    : run_prefill(dec, o->depth, n, o->chunk, &secs, &ps, NULL);
        tps[r] = n / secs.wall;
        cpu[r] = n / secs.cpu;
        wall += secs.wall;
    }
    if (st == LMC_OK) {
        row->tps = stats_of(tps, o->reps);
        row->cpu_tps = stats_of(cpu, o->reps).median;
        row->regions_per_token = (double)ps.regions / ((double)n * o->reps);
        row->serial_frac = wall > 0 ? ps.serial_s / wall : 0;
        row->wait_frac = wall > 0 ? ps.wait_s / wall : 0;
    }
    free(tps);
    return st;
}

/* --ops: one more run of each test, profiled by decoder op, printed as where
 * a token's wall time goes (the calling thread's; "between ops" is what no
 * op holds: the layer loop, scopes, the logits' copy, the greedy pick). Run
 * at 1 and at N threads, an op whose time a call does not shrink is serial. */
static lmc_status run_ops(const lmc_decoder *dec, const bm_opts *o, bool decode, const char *name) {
    bm_time secs;
    lmc_pool_stats ps = {0};
    lmc_decoder_profile p;
    int n = decode ? o->n_gen : o->n_prompt;
    LMC_CHECK(decode ? run_decode(dec, o->depth, n, o->chunk, &secs, &ps, &p)
                     : run_prefill(dec, o->depth, n, o->chunk, &secs, &ps, &p));
    double tok_s = secs.wall / n, in_ops = 0;
    for (int i = 0; i < LMC_DOP_COUNT; i++) in_ops += p.seconds[i];
    double between = secs.wall > in_ops ? (secs.wall - in_ops) / secs.wall : 0;
    char test[32];
    snprintf(test, sizeof test, "%s%d", decode ? "tg" : "pp", n);
    if (o->json) {
        cJSON *j = cJSON_CreateObject(), *ops = cJSON_CreateArray();
        cJSON_AddStringToObject(j, "model", name);
        cJSON_AddStringToObject(j, "test", "ops");
        cJSON_AddStringToObject(j, "of", test);
        cJSON_AddNumberToObject(j, "tokens", n);
        cJSON_AddNumberToObject(j, "token_us", tok_s * 1e6);
        for (int i = 0; i < LMC_DOP_COUNT; i++) {
            if (!p.calls[i]) continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "op", lmc_decoder_op_name((lmc_decoder_op)i));
            cJSON_AddNumberToObject(e, "calls_per_token", (double)p.calls[i] / n);
            cJSON_AddNumberToObject(e, "us_per_call", p.seconds[i] * 1e6 / (double)p.calls[i]);
            cJSON_AddNumberToObject(e, "share", p.seconds[i] / secs.wall);
            cJSON_AddItemToArray(ops, e);
        }
        cJSON_AddItemToObject(j, "ops", ops);
        cJSON_AddNumberToObject(j, "between_ops_share", between);
        char *t = cJSON_PrintUnformatted(j);
        printf("%s\n", t);
        free(t);
        cJSON_Delete(j);
        return LMC_OK;
    }
    printf("\nwhere a %s token goes (%s, %s in one more run, %d threads, %.1f us a token, the calling thread's wall "
           "time):\n\n",
           decode ? "decode" : "prefill", name, test, o->threads, tok_s * 1e6);
    printf("| op                   | calls a token |  us a call | share of a token |\n");
    printf("| -------------------- | ------------- | ---------- | ---------------- |\n");
    for (int i = 0; i < LMC_DOP_COUNT; i++)
        if (p.calls[i])
            printf("| %-20s | %13.2f | %10.2f | %14.1f %% |\n", lmc_decoder_op_name((lmc_decoder_op)i),
                   (double)p.calls[i] / n, p.seconds[i] * 1e6 / (double)p.calls[i], 100 * p.seconds[i] / secs.wall);
    printf("| %-20s |               |            | %14.1f %% |\n", "between ops", 100 * between);
    return LMC_OK;
}

double lmc_bench_settle_weights(lmc_model *m) {
    double t0 = seconds();
    if (m && m->dec) lmc_decoder_promote_weights(m->dec);
    lmc_huge_pages_wait();
    return seconds() - t0;
}

/* --ttft: load, prefill n_prompt tokens, produce one token; time from main(). */
static int run_ttft(const bm_opts *o, const char *name) {
    double t_load0 = seconds();
    lmc_load_options lo = lmc_load_options_default();
    lo.threads = o->threads;
    lo.backend = o->backend;
    lo.huge_pages = !o->no_huge_pages;
    lo.kv_cache_dtype = o->kv_dtype;
    lo.activation_bits = o->act_bits;
    lmc_model *m;
    if (lmc_model_load(o->dir, &lo, &m) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    double t_load = seconds() - t_load0;
    int32_t *ids = malloc((size_t)o->n_prompt * sizeof *ids);
    lmc_generation g = {0};
    lmc_status st = ids ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; st == LMC_OK && i < o->n_prompt; i++) ids[i] = random_token(m->dec->cfg.vocab_size);
    lmc_generate_options go = lmc_generate_options_default();
    go.max_tokens = 1;
    go.ignore_eos = true;
    go.sampler.temperature = 0;
    double t_gen0 = seconds();
    if (st == LMC_OK) st = lmc_generate_ids(m, ids, (size_t)o->n_prompt, &go, &g);
    double t_end = seconds();
    int rc = 0;
    if (st != LMC_OK || g.n_ids != 1) {
        fprintf(stderr, "lmc bench: %s\n", st != LMC_OK ? lmc_last_error() : "no token was generated");
        rc = 1;
    } else {
        double total = t_end - lmc_cli_t0, cpu_s = process_cpu_s();
        size_t rss = peak_rss_bytes();
        lmc_model_info info;
        lmc_model_get_info(m, &info);
        if (o->json) {
            cJSON *j = cJSON_CreateObject();
            char test[32];
            snprintf(test, sizeof test, "ttft%d", o->n_prompt);
            cJSON_AddStringToObject(j, "test", test);
            cJSON_AddNumberToObject(j, "seconds", total);
            cJSON_AddNumberToObject(j, "cpu_s", cpu_s);
            cJSON_AddNumberToObject(j, "load_s", t_load);
            cJSON_AddNumberToObject(j, "first_token_s", t_end - t_gen0);
            cJSON_AddNumberToObject(j, "threads", o->threads);
            cJSON_AddNumberToObject(j, "weight_bytes", (double)info.weight_bytes);
            cJSON_AddStringToObject(j, "model", name);
            cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)rss);
            char *s = cJSON_PrintUnformatted(j);
            if (s) puts(s);
            free(s);
            cJSON_Delete(j);
        } else {
            printf("%s: time to first token for a %d-token prompt: %.3f s from process start "
                   "(load %.3f s, prefill + first token %.3f s, %d threads; %.3f CPU-s); peak RSS %.1f MiB\n",
                   name, o->n_prompt, total, t_load, t_end - t_gen0, o->threads, cpu_s, (double)rss / (1 << 20));
        }
    }
    lmc_generation_clear(&g);
    free(ids);
    lmc_model_free(m);
    return rc;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc bench -m DIR [-p 512] [-n 128] [-d DEPTH] [-c CHUNK] [-t THREADS] [-b BACKEND] [-r REPEATS]\n"
            "                 [--kv-cache-dtype f32|bf16|f16] [--activation-bits 24|8] [--no-huge-pages] [--ops] [--json]\n"
            "       lmc bench -m DIR --ttft [-p 16] [-t THREADS] [--json]\n\n"
            "  -p N       prefill test: N random tokens in forward passes of -c tokens (0: skip)\n"
            "  -n N       decode test: N greedy single-token steps (0: skip)\n"
            "  -d N       run both tests after N random tokens already in the KV cache (default 0)\n"
            "  --kv-cache-dtype T  f32 (default), bf16 or f16: the KV cache's dtype\n"
            "  --activation-bits N 24 (default) or 8: 4/8-bit products' input exact or int8 (load option)\n"
            "  -t N       worker threads (default: all CPUs, or LMC_NUM_THREADS)\n"
            "  -b NAME    backend: cpu (default) or cuda (the bound is then the GPU's memory bandwidth)\n"
            "  -r N       timed repeats of each test after one warm-up (default 5)\n"
            "  -c N       prefill tokens per forward pass (default: the model's prefill chunk, 64 on the CPU, 512 on cuda)\n"
            "  --no-huge-pages  keep the weights on the file mapping's 4 KiB pages (load option huge_pages off)\n"
            "  --ops      then one more run of each test, timed by the decoder's ops: where a token goes\n"
            "  --json     one JSON object per test and line\n"
            "  --ttft     time from process start to the first token of an N-token prompt\n");
}

static bool int_arg(const char *opt, const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "lmc bench: %s needs a number from %d to %d, got '%s'\n", opt, lo, hi, s);
        return false;
    }
    *out = (int)v;
    return true;
}

int lmc_bench_model(int argc, char **argv) {
    bm_opts o = {.n_prompt = -1, .n_gen = 128, .reps = 5, .kv_dtype = LMC_F32, .act_bits = 24};
    const char *tests_only = NULL; /* an option of the pp/tg tests that --ttft has no use for */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--json")) o.json = true;
        else if (!strcmp(a, "--ttft")) o.ttft = true;
        else if (!strcmp(a, "--no-huge-pages")) o.no_huge_pages = true;
        else if (!strcmp(a, "--ops")) tests_only = a, o.ops = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && has) o.dir = argv[++i];
        else if ((!strcmp(a, "-b") || !strcmp(a, "--backend")) && has) o.backend = argv[++i];
        else if (!strcmp(a, "-p") && has) { if (!int_arg(a, argv[++i], 0, 1 << 20, &o.n_prompt)) return 2; }
        else if (!strcmp(a, "-n") && has) { tests_only = a; if (!int_arg(a, argv[++i], 0, 1 << 20, &o.n_gen)) return 2; }
        else if (!strcmp(a, "-t") && has) { if (!int_arg(a, argv[++i], 1, 256, &o.threads)) return 2; }
        else if (!strcmp(a, "-r") && has) { tests_only = a; if (!int_arg(a, argv[++i], 1, 1000, &o.reps)) return 2; }
        else if (!strcmp(a, "-c") && has) { tests_only = a; if (!int_arg(a, argv[++i], 1, 1 << 20, &o.chunk)) return 2; }
        else if (!strcmp(a, "-d") && has) { tests_only = a; if (!int_arg(a, argv[++i], 0, 1 << 20, &o.depth)) return 2; }
        else if (!strcmp(a, "--activation-bits") && has) {
            if (!lmc_cli_activation_bits("bench", a, argv[++i], &o.act_bits)) return 2;
        } else if (!strcmp(a, "--kv-cache-dtype") && has) {
            if (!lmc_cli_float_dtype("bench", a, argv[++i], true, &o.kv_dtype)) return 2;
        } else {
            fprintf(stderr, "lmc bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.dir) {
        fprintf(stderr, "lmc bench: -m DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (o.ttft && tests_only) { /* one cold start from an empty cache: the option would be ignored */
        fprintf(stderr, "lmc bench: --ttft times one start from an empty cache; %s applies only to the pp/tg tests\n",
                tests_only);
        return 2;
    }
    if (o.n_prompt < 0) o.n_prompt = o.ttft ? 16 : 512;
    if (o.ttft && o.n_prompt == 0) {
        fprintf(stderr, "lmc bench: --ttft needs a prompt of at least one token\n");
        return 2;
    }
    if (o.ops && gpu_backend(&o)) { /* a GPU's ops only queue work: their host time says little */
        fprintf(stderr, "lmc bench: --ops times ops on the CPU backend; on cuda use LMC_CUDA_PROFILE=1\n");
        return 2;
    }
    if (!o.ttft && o.n_prompt == 0 && o.n_gen == 0) {
        fprintf(stderr, "lmc bench: -p 0 and -n 0 leave nothing to measure\n");
        return 2;
    }
    if (o.threads && lmc_set_num_threads(o.threads) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    o.threads = lmc_num_threads();
    char name[256];
    folder_name(o.dir, name, sizeof name);
    if (o.ttft) return run_ttft(&o, name);

    double t0 = seconds();
    lmc_model *m;
    lmc_load_options lo = lmc_load_options_default();
    lo.backend = o.backend;
    lo.kv_cache_dtype = o.kv_dtype;
    lo.activation_bits = o.act_bits;
    lo.huge_pages = !o.no_huge_pages;
    if (lmc_model_load(o.dir, &lo, &m) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    double load_s = seconds() - t0;
    /* The tests measure the steady state: the weights' move onto 2 MiB pages
     * (lmc_load_options.huge_pages) is finished first. */
    o.huge_wait_s = lmc_bench_settle_weights(m);
    o.huge_bytes = m->dec ? lmc_checkpoint_promoted(m->dec->ck) : 0;
    lmc_model_info info;
    lmc_model_get_info(m, &info);
    if (!o.chunk) o.chunk = (int)m->opt.prefill_chunk;
    if ((int64_t)o.depth + o.n_prompt + 1 > info.context_length || (int64_t)o.depth + o.n_gen + 2 > info.context_length) {
        fprintf(stderr, "lmc bench: -d %d with -p %d / -n %d does not fit the model's context length %lld\n", o.depth,
                o.n_prompt, o.n_gen, (long long)info.context_length);
        lmc_model_free(m);
        return 2;
    }
    lmc_memory_reset_peak(LMC_CPU);
    lmc_memory_reset_peak(LMC_CUDA);
    bm_row rows[2];
    int n_rows = 0;
    lmc_status st = LMC_OK;
    if (o.n_prompt > 0) st = run_test(m->dec, &o, false, &rows[n_rows++]);
    if (st == LMC_OK && o.n_gen > 0) st = run_test(m->dec, &o, true, &rows[n_rows++]);
    /* Read before the bandwidth buffer (512 MiB) is allocated. */
    size_t rss = peak_rss_bytes(), lmc_peak = lmc_memory(LMC_CPU).peak_bytes;
    double read_gbps = 0, read_gbps_cpu = 0;
    int rc = 0;
    if (st != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        rc = 1;
    } else if (gpu_backend(&o) ? gpu_bandwidth(&read_gbps) : lmc_bench_bandwidth(&read_gbps, &read_gbps_cpu, NULL)) {
        rc = 1;
    } else {
        print_rows(&o, name, &info, rows, n_rows, read_gbps, read_gbps_cpu, rss, lmc_peak, load_s);
        if (o.ops && ((o.n_prompt > 0 && run_ops(m->dec, &o, false, name) != LMC_OK) ||
                      (o.n_gen > 0 && run_ops(m->dec, &o, true, name) != LMC_OK))) {
            fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
            rc = 1;
        }
    }
    lmc_model_free(m);
    return rc;
}
