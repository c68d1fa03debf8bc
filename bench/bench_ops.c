/* `lmc bench ops`: throughput of the CPU kernels at the shapes of a 1B model
 * (Llama-3.2-1B: hidden 2048, intermediate 8192, 32 query heads and 8
 * key/value heads of 64), each printed beside the memory bandwidth measured
 * in the same run with the same thread count, and as a ratio to it.
 *
 * Decode (M = 1) reads every weight once, so its figure of merit is the
 * weight bytes read per second against the read bandwidth; batched decode
 * (M = 16 sequences) still reads the weights once per step; prefill
 * (M = 512) is compute-bound and reported in GFLOP/s. Matmuls use the
 * nn.Linear layout: x [M, K] @ Wᵀ with W [N, K] row-major.
 *
 * The sampler group times one token's sampling at real vocabulary sizes for
 * the usual settings, beside one read of the logits.
 *
 * `--only cores` runs register-only AMX and AVX-512 loops on one thread and
 * then on every thread at once, five times: the ratio is the most any
 * kernel on that unit can gain from the threads (see probe_amx.c). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/probe.h"
#include "backend/kernels.h"
#include "bench_ops.h"
#include "core/cpu.h"
#include "core/huge_pages.h"
#include "core/threadpool.h"
#include "lmc/ops.h"
#include "ops/quant_internal.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

typedef struct bench {
    bool json;
    int threads;
    double read_gbps;
} bench;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --best: each case's fastest call instead of the mean (on a shared host,
 * where other load slows some calls, the fastest is what the code can do). */
static bool g_fastest;

/* Seconds per call of fn after one warm-up call, the mean (or with --best
 * the fastest) of at least 3 calls and at least min_s in total (at most 200
 * calls). *cpu_per_call (when not NULL) gets the CPU seconds of all threads
 * per call, the mean. */
static double time_it_cpu(void (*fn)(void *), void *ctx, double min_s, double *cpu_per_call) {
    fn(ctx);
    int n = 0;
    double t0 = now(), c0 = cpu_now(), t, best = 1e300;
    do {
        double t1 = now();
        fn(ctx);
        double dt = now() - t1;
        best = dt < best ? dt : best;
        n++;
        t = now() - t0;
    } while ((n < 3 || t < min_s) && n < 200);
    if (cpu_per_call) *cpu_per_call = (cpu_now() - c0) / n;
    return g_fastest ? best : t / n;
}

static double time_it(void (*fn)(void *), void *ctx, double min_s) { return time_it_cpu(fn, ctx, min_s, NULL); }

static uint64_t g_rng = 88172645463325252ull;

/* A contiguous array of dtype dt filled with values in [-1, 1). */
static lmc_array *filled(lmc_dtype dt, int ndim, const int64_t *shape) {
    lmc_array *a = lmc_empty(dt, ndim, shape);
    if (!a) return NULL;
    int64_t n = lmc_array_size(a);
    void *p = lmc_array_data(a);
    for (int64_t i = 0; i < n; i++) {
        g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
        float v = (float)(g_rng >> 40) / 8388608.0f - 1.0f;
        if (dt == LMC_F32) ((float *)p)[i] = v;
        else if (dt == LMC_BF16) ((uint16_t *)p)[i] = lmc_f32_to_bf16(v);
        else ((uint16_t *)p)[i] = lmc_f32_to_f16(v);
    }
    return a;
}

void lmc_bench_cpu_name(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(buf, cap, "%s", c);
        break;
    }
    fclose(f);
}

void lmc_bench_load_average(double load[3]) {
    load[0] = load[1] = load[2] = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = load[1] = load[2] = 0;
    fclose(f);
}

void lmc_bench_print_machine(void) {
    char cpu[256];
    lmc_bench_cpu_name(cpu, sizeof cpu);
    double load[3];
    lmc_bench_load_average(load);
    printf("machine: %s, %d threads, kernel path %s, load average %.2f %.2f %.2f (lmc %s)\n", cpu, lmc_num_threads(),
           lmc_cpu().path, load[0], load[1], load[2], lmc_version());
}

/* --- memory bandwidth --------------------------------------------------------- */

typedef struct bw_ctx {
    uint64_t *buf;
    int64_t n; /* uint64 words */
    uint64_t sums[256];
    bool copy;
} bw_ctx;

/* Sums a thread's range as BW_STREAMS sequential streams read in lockstep
 * (the range cut into equal parts), with 256-bit loads where the CPU has AVX2
 * (the bench is built without ISA flags; a scalar loop cannot keep up with
 * memory). One stream leaves most of a core's memory parallelism unused: on
 * the project's machine one thread reads ~11 GB/s as one stream and ~21 GB/s
 * as 4-8, and the matmul kernels read several weight rows at once, so a
 * one-stream probe would put the decode bound too low. */
enum { BW_STREAMS = 8 };
typedef uint64_t u64x4 __attribute__((vector_size(32)));

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, int64_t n) {
    int64_t part = n / BW_STREAMS / 4 * 4; /* words per stream, whole 32-byte loads */
    u64x4 acc[BW_STREAMS] = {{0}};
    for (int64_t i = 0; i < part; i += 4)
        for (int s = 0; s < BW_STREAMS; s++) {
            u64x4 a;
            memcpy(&a, p + s * part + i, 32);
            acc[s] += a;
        }
    uint64_t sum = 0;
    for (int s = 0; s < BW_STREAMS; s++)
        for (int l = 0; l < 4; l++) sum += acc[s][l];
    for (int64_t i = part * BW_STREAMS; i < n; i++) sum += p[i];
    return sum;
}

static uint64_t sum_plain(const uint64_t *p, int64_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < n; i++) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

static void bw_range(void *ctx, int64_t b, int64_t e, int thread) {
    bw_ctx *c = ctx;
    if (c->copy) {
        /* first half -> second half */
        memcpy(c->buf + c->n / 2 + b, c->buf + b, (size_t)(e - b) * sizeof(uint64_t));
        return;
    }
    c->sums[thread & 255] += __builtin_cpu_supports("avx2") ? sum_avx2(c->buf + b, e - b) : sum_plain(c->buf + b, e - b);
}

static void bw_read(void *ctx) {
    bw_ctx *c = ctx;
    lmc_parallel_for(c->n, 4096, bw_range, c);
}

static void bw_copy(void *ctx) {
    bw_ctx *c = ctx;
    lmc_parallel_for(c->n / 2, 4096, bw_range, c);
}

int lmc_bench_bandwidth(double *read_gbps, double *read_gbps_cpu, double *copy_gbps) {
    bw_ctx c = {.n = (int64_t)(512u << 20) / 8};
    c.buf = aligned_alloc(64, (size_t)c.n * 8); /* whole lines: with loads split across two, one thread read ~25 % less */
    if (!c.buf) {
        fprintf(stderr, "lmc bench: out of memory for the bandwidth buffer\n");
        return 1;
    }
    /* On 2 MiB pages where the system gives them, as the weights are
     * (core/huge_pages.h): on 4 KiB pages one thread read ~8 % less here
     * (Zen 4, medians of 6), which would put the bound too low. */
    lmc_huge_pages_advise(c.buf, (size_t)c.n * 8);
    for (int64_t i = 0; i < c.n; i++) c.buf[i] = (uint64_t)i;
    double cr, tr = time_it_cpu(bw_read, &c, 1.0, &cr);
    *read_gbps = (double)c.n * 8 / tr / 1e9;
    if (read_gbps_cpu) *read_gbps_cpu = (double)c.n * 8 / cr / 1e9;
    if (copy_gbps) {
        c.copy = true;
        double tc = time_it(bw_copy, &c, 1.0);
        *copy_gbps = (double)c.n * 8 / tc / 1e9; /* bytes read + bytes written */
    }
    /* Keep the sums observable so the reads cannot be optimised away. */
    uint64_t sink = 0;
    for (int i = 0; i < 256; i++) sink += c.sums[i];
    __asm__ volatile("" : : "r"(sink));
    free(c.buf);
    return 0;
}

static int bench_bandwidth(bench *b) {
    double copy_gbps;
    if (lmc_bench_bandwidth(&b->read_gbps, NULL, &copy_gbps)) return 1;
    if (b->json)
        printf("{\"bench\":\"bandwidth\",\"threads\":%d,\"read_gbps\":%.2f,\"copy_gbps\":%.2f}\n", b->threads,
               b->read_gbps, copy_gbps);
    else
        printf("memory bandwidth (%d threads, 512 MiB): read %.1f GB/s, copy %.1f GB/s (read + write)\n\n", b->threads,
               b->read_gbps, copy_gbps);
    return 0;
}

/* One result line: time, GFLOP/s when flops > 0, bytes/s of `bytes`, and the
 * ratio of those bytes/s to the read bandwidth. */
static void report(const bench *b, const char *kind, const char *name, double secs, double flops, double bytes,
                   const char *bytes_what) {
    double gflops = flops / secs / 1e9, gbps = bytes / secs / 1e9;
    if (b->json) {
        printf("{\"bench\":\"%s\",\"name\":\"%s\",\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f,\"gbps\":%.2f,"
               "\"bytes\":\"%s\",\"read_gbps\":%.2f,\"bw_ratio\":%.3f}\n",
               kind, name, b->threads, secs * 1e3, flops > 0 ? gflops : 0.0, gbps, bytes_what, b->read_gbps,
               gbps / b->read_gbps);
        return;
    }
    char fl[32] = "";
    if (flops > 0) snprintf(fl, sizeof fl, "%8.1f GFLOP/s", gflops);
    printf("%-8s %-38s %9.3f ms %16s %7.1f GB/s %-8s %5.2fx bw\n", kind, name, secs * 1e3, fl, gbps, bytes_what,
           gbps / b->read_gbps);
    fflush(stdout);
}

/* --- matmul ----------------------------------------------------------------------- */

typedef struct mm_ctx {
    const lmc_array *x, *wt;
    bool failed;
} mm_ctx;

static void mm_run(void *ctx) {
    mm_ctx *c = ctx;
    lmc_array *y = lmc_matmul(c->x, c->wt);
    if (!y) c->failed = true;
    lmc_array_free(y);
}

static int bench_matmul(bench *b, int64_t M, int64_t K, int64_t N, lmc_dtype xdt, lmc_dtype wdt) {
    int64_t sx[2] = {M, K}, sw[2] = {N, K};
    lmc_array *x = filled(xdt, 2, sx), *w = filled(wdt, 2, sw);
    lmc_array *wt = w ? lmc_transpose(w) : NULL; /* the Linear layout: a view, no copy */
    if (!x || !w || !wt) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    mm_ctx c = {x, wt, false};
    double s = time_it(mm_run, &c, M == 1 ? 0.3 : 0.5);
    lmc_array_free(x);
    lmc_array_free(wt);
    lmc_array_free(w);
    if (c.failed) {
        fprintf(stderr, "lmc bench: matmul: %s\n", lmc_last_error());
        return 1;
    }
    char name[96];
    const char *what = M == 1 ? "decode" : M < 64 ? "batch" : "prefill";
    snprintf(name, sizeof name, "%s %lldx%lldx%lld %s x %s", what, (long long)M, (long long)K, (long long)N,
             lmc_dtype_name(xdt), lmc_dtype_name(wdt));
    report(b, "matmul", name, s, 2.0 * M * K * N, (double)(N * K) * lmc_dtype_size(wdt), "weights");
    return 0;
}

/* 4- and 8-bit MLX quantisation, group 64, with M rows of x: 1 (decode), 16
 * (batched decode) or 512 (prefill, bf16 x as the models pass it). Called through the kernel
 * table so the bench reports a missing kernel at run time instead of
 * failing to build. */
typedef struct qmm_ctx {
    const lmc_kernels *k;
    lmc_array *out, *x, *wq, *scales, *biases;
    int bits;
    lmc_status st;
} qmm_ctx;

static void qmm_run(void *ctx) {
    qmm_ctx *c = ctx;
    c->st = c->k->quantized_matmul(c->out, c->x, c->wq, c->scales, c->biases, 64, c->bits);
}

static int bench_qmatmul(bench *b, int64_t M, int64_t K, int64_t N, int bits) {
    const lmc_kernels *k = lmc_kernels_for(LMC_CPU);
    if (!k->quantize || !k->quantized_matmul) {
        if (b->json) printf("{\"bench\":\"qmatmul\",\"available\":false}\n");
        else printf("%-8s quantized matmul: not available (kernel missing)\n", "qmatmul");
        return 0;
    }
    int64_t sx[2] = {M, K}, sw[2] = {N, K}, sq[2] = {N, K * bits / 32}, ss[2] = {N, K / 64}, so[2] = {M, N};
    lmc_dtype xdt = M == 1 ? LMC_F32 : LMC_BF16;
    lmc_array *w = filled(LMC_BF16, 2, sw), *x = filled(xdt, 2, sx);
    qmm_ctx c = {.k = k, .x = x, .bits = bits};
    c.wq = lmc_empty(LMC_U32, 2, sq);
    c.scales = lmc_empty(LMC_BF16, 2, ss);
    c.biases = lmc_empty(LMC_BF16, 2, ss);
    c.out = lmc_empty(xdt, 2, so);
    int rc = 0;
    if (!w || !x || !c.wq || !c.scales || !c.biases || !c.out || k->quantize(c.wq, c.scales, c.biases, w, 64, bits) != LMC_OK) {
        fprintf(stderr, "lmc bench: quantize: %s\n", lmc_last_error());
        rc = 1;
    } else {
        /* x as 24-bit integers (the default), then as int8 (load option activation_bits 8) */
        double secs[2] = {0, 0};
        for (int i = 0; i < 2 && !rc; i++) {
            int old = lmc_quant_set_activation_bits(i ? 8 : 24);
            secs[i] = time_it(qmm_run, &c, 0.3);
            lmc_quant_set_activation_bits(old);
            if (c.st != LMC_OK) {
                fprintf(stderr, "lmc bench: quantized matmul: %s\n", lmc_last_error());
                rc = 1;
                break;
            }
            char name[96];
            snprintf(name, sizeof name, "%s %lldx%lldx%lld %s x%s q%d", M == 1 ? "decode" : M <= 64 ? "batch" : "prefill",
                     (long long)M, (long long)K, (long long)N, lmc_dtype_name(xdt), i ? " int8" : "", bits);
            double bytes = (double)(lmc_array_nbytes(c.wq) + lmc_array_nbytes(c.scales) + lmc_array_nbytes(c.biases));
            report(b, "qmatmul", name, secs[i], 2.0 * M * K * N, bytes, "weights");
        }
        if (!rc && !b->json) printf("%-8s %-38s %9.2fx\n", "qmatmul", "  int8 x against 24-bit x", secs[0] / secs[1]);
    }
    lmc_array *all[] = {w, x, c.wq, c.scales, c.biases, c.out};
    for (int i = 0; i < 6; i++) lmc_array_free(all[i]);
    return rc;
}

/* --- qdecode: a whole token's quantised products, kernel only ------------------------ */

/* Every 4-bit matrix one decode token of Qwen3-0.6B reads, in the decoder's
 * order (28 layers of q, k, v, o, gate, up, down, then the 151936-row
 * output), product by product on one row of x: the kernel's share of decode
 * without the rest of the model; the output matrix alone (87.5 MB, a long
 * run of rows: the streams of LMC_QMM_STREAMS). Beside it the same kernel on one layer's
 * matrices (8.8 MB, cache-resident after the first pass) and on two 1024 x
 * 1024 matrices (1.2 MB, L2-sized): how far the kernel's own arithmetic, not
 * DRAM, bounds it. Weights are random bytes (a q4 kernel's time does not
 * depend on them). */
typedef struct qdec_ctx {
    const lmc_kernels *k;
    lmc_array **wq, **s, **b, **out, *x[4]; /* x[j]: one row of K = 1024 * j */
    int n;
    lmc_status st;
} qdec_ctx;

static void qdec_run(void *ctx) {
    qdec_ctx *c = ctx;
    for (int i = 0; i < c->n && c->st == LMC_OK; i++) {
        int64_t K = lmc_array_dim(c->wq[i], 1) * 8;
        c->st = c->k->quantized_matmul(c->out[i], c->x[K / 1024], c->wq[i], c->s[i], c->b[i], 64, 4);
    }
}

static int bench_qdecode(bench *b) {
    const lmc_kernels *k = lmc_kernels_for(LMC_CPU);
    if (!k->quantized_matmul) return 0;
    static const int64_t layer[7][2] = {{2048, 1024}, {1024, 1024}, {1024, 1024}, {1024, 2048},
                                        {3072, 1024}, {3072, 1024}, {1024, 3072}}; /* N, K */
    enum { LAYERS = 28, MAX = LAYERS * 7 + 1 };
    qdec_ctx c = {.k = k, .st = LMC_OK};
    c.wq = calloc(MAX, sizeof *c.wq), c.s = calloc(MAX, sizeof *c.s), c.b = calloc(MAX, sizeof *c.b);
    c.out = calloc(MAX, sizeof *c.out);
    int rc = c.wq && c.s && c.b && c.out ? 0 : 1, made = 0;
    for (int j = 1; j <= 3 && !rc; j++) {
        int64_t sx[2] = {1, 1024 * j};
        if (!(c.x[j] = filled(LMC_F32, 2, sx))) rc = 1;
    }
    double bytes = 0;
    for (int i = 0; i < MAX && !rc; i++, made++) {
        int64_t N = i == MAX - 1 ? 151936 : layer[i % 7][0], K = i == MAX - 1 ? 1024 : layer[i % 7][1];
        int64_t sq[2] = {N, K / 8}, ss[2] = {N, K / 64}, so[2] = {1, N};
        c.wq[i] = lmc_empty(LMC_U32, 2, sq), c.out[i] = lmc_empty(LMC_F32, 2, so);
        c.s[i] = filled(LMC_BF16, 2, ss), c.b[i] = filled(LMC_BF16, 2, ss);
        if (!c.wq[i] || !c.out[i] || !c.s[i] || !c.b[i]) {
            rc = 1;
            break;
        }
        uint64_t *w = lmc_array_data(c.wq[i]);
        for (size_t e = 0; e < lmc_array_nbytes(c.wq[i]) / 8; e++) {
            g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
            w[e] = g_rng;
        }
        bytes += (double)(lmc_array_nbytes(c.wq[i]) + lmc_array_nbytes(c.s[i]) + lmc_array_nbytes(c.b[i]));
    }
    if (rc) fprintf(stderr, "lmc bench: qdecode: out of memory\n");
    /* the whole token, one layer, and the two 1024 x 1024 matrices (entries 1 and 2) */
    struct { const char *name; int first, n; double bytes; } runs[4] = {
        {"token 1x(Qwen3-0.6B) float32 x q4 g64", 0, MAX, bytes}, {"output 1x1024x151936 float32 x q4 g64", MAX - 1, 1, 0},
        {"one layer float32 x q4 g64", 0, 7, 0}, {"two 1024x1024 float32 x q4 g64", 1, 2, 0}};
    for (int r = 1; r < 4 && !rc; r++)
        for (int i = runs[r].first; i < runs[r].first + runs[r].n; i++)
            runs[r].bytes += (double)(lmc_array_nbytes(c.wq[i]) + lmc_array_nbytes(c.s[i]) + lmc_array_nbytes(c.b[i]));
    for (int r = 0; r < 4 && !rc; r++) {
        qdec_ctx v = c;
        v.wq += runs[r].first, v.s += runs[r].first, v.b += runs[r].first, v.out += runs[r].first;
        v.n = runs[r].n;
        double secs = time_it(qdec_run, &v, r < 2 ? 1.0 : 0.3);
        if (v.st != LMC_OK) {
            fprintf(stderr, "lmc bench: qdecode: %s\n", lmc_last_error());
            rc = 1;
        } else {
            report(b, "qdecode", runs[r].name, secs, 0, runs[r].bytes, "weights");
        }
    }
    for (int i = 0; i < made; i++) {
        lmc_array_free(c.wq[i]);
        lmc_array_free(c.s[i]);
        lmc_array_free(c.b[i]);
        lmc_array_free(c.out[i]);
    }
    for (int j = 1; j <= 3; j++) lmc_array_free(c.x[j]);
    free(c.wq), free(c.s), free(c.b), free(c.out);
    return rc;
}

/* --- fused ops ------------------------------------------------------------------------ */

typedef struct fused_ctx {
    int op; /* 0 rms_norm, 1 rope, 2 sdpa */
    const lmc_array *x, *w, *k, *v;
    lmc_rope_params rp;
    lmc_sdpa_params sp;
    bool failed;
} fused_ctx;

static void fused_run(void *ctx) {
    fused_ctx *c = ctx;
    lmc_array *y = c->op == 0 ? lmc_rms_norm(c->x, c->w, 1e-5f, false)
                 : c->op == 1 ? lmc_rope(c->x, &c->rp, 100)
                              : lmc_sdpa(c->x, c->k, c->v, &c->sp);
    if (!y) c->failed = true;
    lmc_array_free(y);
}

/* Causal attention q [1, Hq, T, D] against k/v [1, Hkv, Tk, D] (f32 q, k/v of
 * kv_dt). With T > 1 (prefill: T = Tk, or a chunk after Tk - T cached
 * keys) the flops are q·k and p·v over the visible keys and the bytes
 * q+k+v; with T = 1 (decode) every key is visible and the bytes are k+v
 * (the cache read). */
static int bench_sdpa(const bench *b, const char *name, const int64_t *sq, const int64_t *skv, lmc_dtype kv_dt,
                      float scale) {
    lmc_array *q = filled(LMC_F32, 4, sq), *k = filled(kv_dt, 4, skv), *v = filled(kv_dt, 4, skv);
    fused_ctx c = {.op = 2, .x = q, .k = k, .v = v, .sp = lmc_sdpa_params_default(scale)};
    c.sp.causal = true;
    bool prefill = sq[2] > 1;
    double s = time_it(fused_run, &c, prefill ? 0.3 : 0.2);
    double per_key = 4.0 * (double)sq[1] * (double)sq[3];
    /* query i of T sits at key Tk - T + i and sees the keys up to it */
    double keys = prefill ? (double)sq[2] * (double)(skv[2] - sq[2]) + (double)sq[2] * (double)(sq[2] + 1) / 2
                          : (double)skv[2];
    size_t kv_bytes = lmc_array_nbytes(k) + lmc_array_nbytes(v);
    report(b, "sdpa", name, s, per_key * keys, (double)(kv_bytes + (prefill ? lmc_array_nbytes(q) : 0)),
           prefill ? "q+k+v" : "k+v");
    lmc_array_free(q);
    lmc_array_free(k);
    lmc_array_free(v);
    return c.failed;
}

/* A decode step's attention over every layer's cache (Qwen3-0.6B: 28
 * layers, 16 query heads over 8 KV heads of 128) at Tk keys, the caches
 * in kv_dt and laid out as a generation's are (each head's rows in storage
 * of LMC_KV_GROW_STEP more positions, a view of the first Tk). The step
 * runs over enough distinct caches (whole steps of 28 layers, at least
 * 96 MB) that they stream from memory, as in a real step where the
 * weights evict them; the time reported is one step's. Bytes: the k+v read. */
enum { CACHE_LAYERS = 28, CACHE_STREAM_BYTES = 96 << 20, CACHE_MAX_STEPS = 16 };

typedef struct cache_ctx {
    const lmc_array *q, *k[CACHE_LAYERS * CACHE_MAX_STEPS], *v[CACHE_LAYERS * CACHE_MAX_STEPS];
    int layers;
    lmc_sdpa_params sp;
    bool failed;
} cache_ctx;

static void cache_run(void *ctx) {
    cache_ctx *c = ctx;
    for (int l = 0; l < c->layers; l++) {
        lmc_array *y = lmc_sdpa(c->q, c->k[l], c->v[l], &c->sp);
        if (!y) c->failed = true;
        lmc_array_free(y);
    }
}

/* Tk of cap positions of a [1, 8, cap, 128] cache's storage, filled. */
static lmc_array *cache_view(lmc_dtype dt, int64_t Tk) {
    int64_t s[4] = {1, 8, Tk + LMC_KV_GROW_STEP, 128};
    lmc_array *store = filled(dt, 4, s);
    lmc_array *view = store ? lmc_slice(store, 2, 0, Tk, 1) : NULL;
    lmc_array_free(store);
    return view;
}

static int bench_sdpa_caches(const bench *b, int64_t Tk, lmc_dtype kv_dt) {
    int64_t sq[4] = {1, 16, 1, 128};
    cache_ctx c = {.q = filled(LMC_F32, 4, sq), .sp = lmc_sdpa_params_default(0.088f)};
    size_t step_bytes = (size_t)CACHE_LAYERS * 2 * 8 * (size_t)Tk * 128 * lmc_dtype_size(kv_dt);
    int steps = (int)((CACHE_STREAM_BYTES + step_bytes - 1) / step_bytes);
    if (steps > CACHE_MAX_STEPS) steps = CACHE_MAX_STEPS;
    c.layers = steps * CACHE_LAYERS;
    for (int l = 0; l < c.layers; l++) {
        c.k[l] = cache_view(kv_dt, Tk);
        c.v[l] = cache_view(kv_dt, Tk);
        c.failed |= !c.k[l] || !c.v[l];
    }
    c.sp.causal = true;
    double s = c.failed ? 0 : time_it(cache_run, &c, 0.3) / steps;
    char name[64];
    snprintf(name, sizeof name, "decode 28 layers %s kv[1,8,%lld,128]", lmc_dtype_name(kv_dt), (long long)Tk);
    report(b, "sdpa", name, s, 4.0 * 16 * 128 * (double)Tk * CACHE_LAYERS, (double)step_bytes, "k+v");
    lmc_array_free((lmc_array *)c.q);
    for (int l = 0; l < c.layers; l++) {
        lmc_array_free((lmc_array *)c.k[l]);
        lmc_array_free((lmc_array *)c.v[l]);
    }
    return c.failed;
}

/* A KV cache of Qwen3-0.6B's shape (28 layers, 8 KV heads of 128, f32)
 * taking n one-token appends, grown as it fills or reserved ahead (as a
 * generation reserves it). */
typedef struct kv_ctx {
    int64_t n;
    bool reserve, failed;
    size_t bytes;
} kv_ctx;

static void kv_run(void *ctx) {
    kv_ctx *c = ctx;
    enum { LAYERS = 28 };
    lmc_kv_cache cache;
    int64_t s[4] = {1, 8, 1, 128};
    lmc_array *k = filled(LMC_F32, 4, s);
    bool ok = k && lmc_kv_cache_init(&cache, LAYERS, NULL, 1, 8, 128, c->n, LMC_F32) == LMC_OK;
    if (ok && c->reserve) ok = lmc_kv_cache_reserve(&cache, c->n) == LMC_OK;
    for (int64_t p = 0; ok && p < c->n; p++) {
        for (int l = 0; ok && l < LAYERS; l++) {
            lmc_array *ka = NULL, *va = NULL;
            ok = lmc_kv_cache_update(&cache, l, k, k, &ka, &va) == LMC_OK;
            lmc_array_free(ka);
            lmc_array_free(va);
        }
        lmc_kv_cache_advance(&cache, 1);
    }
    c->bytes = ok ? lmc_kv_cache_bytes(&cache) : 0;
    c->failed |= !ok;
    lmc_kv_cache_free(&cache);
    lmc_array_free(k);
}

static int bench_kv_cache(bench *b, int64_t n) {
    kv_ctx grown = {.n = n}, reserved = {.n = n, .reserve = true};
    double sg = time_it(kv_run, &grown, 0.2), sr = time_it(kv_run, &reserved, 0.2);
    char name[64];
    snprintf(name, sizeof name, "%lld appends, grown", (long long)n);
    report(b, "kv_cache", name, sg, 0, (double)reserved.bytes, "written");
    snprintf(name, sizeof name, "%lld appends, reserved (%.2fx)", (long long)n, sg / sr);
    report(b, "kv_cache", name, sr, 0, (double)reserved.bytes, "written");
    return grown.failed || reserved.failed;
}

static int bench_fused(bench *b) {
    int rc = 0;
    /* rms_norm over prefill activations [512, 2048] f32: read + write */
    int64_t sx[2] = {512, 2048}, sw[1] = {2048};
    lmc_array *x = filled(LMC_F32, 2, sx), *w = filled(LMC_F32, 1, sw);
    fused_ctx c = {.op = 0, .x = x, .w = w};
    double s = time_it(fused_run, &c, 0.2);
    report(b, "rms_norm", "[512, 2048] f32", s, 0, 2.0 * lmc_array_nbytes(x), "in+out");
    rc |= c.failed;
    lmc_array_free(x);
    lmc_array_free(w);

    /* rope on prefill queries [1, 32, 512, 64] f32, split-half */
    int64_t sq[4] = {1, 32, 512, 64};
    x = filled(LMC_F32, 4, sq);
    c = (fused_ctx){.op = 1, .x = x, .rp = lmc_rope_params_default(64, 500000.0f)};
    s = time_it(fused_run, &c, 0.2);
    report(b, "rope", "[1, 32, 512, 64] f32", s, 0, 2.0 * lmc_array_nbytes(x), "in+out");
    rc |= c.failed;
    lmc_array_free(x);

    /* Llama-3.2-1B shapes (32 query heads over 8 KV heads of 64): prefill of
     * 512 tokens, and decode against a 2048-token bf16 cache */
    int64_t skv[4] = {1, 8, 512, 64}, sq1[4] = {1, 32, 1, 64}, skv2[4] = {1, 8, 2048, 64};
    rc |= bench_sdpa(b, "prefill causal q[1,32,512,64] kv 8 heads", sq, skv, LMC_F32, 0.125f);
    rc |= bench_sdpa(b, "decode q[1,32,1,64] bf16 kv[1,8,2048,64]", sq1, skv2, LMC_BF16, 0.125f);
    /* Qwen3-0.6B shapes (16 query heads over 8 KV heads of 128), f32 */
    int64_t sq3[4] = {1, 16, 512, 128}, skv3[4] = {1, 8, 512, 128}, sq4[4] = {1, 16, 1, 128}, skv4[4] = {1, 8, 640, 128};
    rc |= bench_sdpa(b, "prefill causal q[1,16,512,128] kv 8 heads", sq3, skv3, LMC_F32, 0.088f);
    rc |= bench_sdpa(b, "decode q[1,16,1,128] kv[1,8,640,128]", sq4, skv4, LMC_F32, 0.088f);
    /* Gemma-3-1B's (4 query heads over one KV head of 256): a prefill
     * chunk of 64 queries after 64 cached keys, the model's four query blocks
     * of one head the only tasks the threads share */
    int64_t sq5[4] = {1, 4, 64, 256}, skv5[4] = {1, 1, 128, 256};
    rc |= bench_sdpa(b, "prefill chunk q[1,4,64,256] kv[1,1,128,256]", sq5, skv5, LMC_F32, 0.0625f);
    /* a whole decode step's attention at 2048 keys, each cache dtype
     * (kv_cache_dtype): the 16-bit caches are read in place */
    const lmc_dtype kv_dts[3] = {LMC_F32, LMC_BF16, LMC_F16};
    for (int i = 0; i < 3; i++) rc |= bench_sdpa_caches(b, 2048, kv_dts[i]);
    /* and a short generation's (tg128 sees 1-128 keys), still from memory */
    rc |= bench_sdpa_caches(b, 64, LMC_F32);
    /* a long generation's cache writes: growing storage copies what it holds */
    rc |= bench_kv_cache(b, 4096);
    if (rc) fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
    return rc;
}

/* --- sampler ---------------------------------------------------------------------- */

typedef struct samp_ctx {
    lmc_sampler *s;
    float *logits;
    int64_t vocab;
    bool failed;
} samp_ctx;

static void samp_run(void *ctx) {
    samp_ctx *c = ctx;
    int32_t tok;
    if (lmc_sampler_sample(c->s, c->logits, c->vocab, NULL, 0, &tok, NULL) != LMC_OK) c->failed = true;
}

/* One token's sampling over logits shaped like a model's (a normal body of
 * sd 2.5, twenty strong tokens at 18-24), at Qwen 3's and Gemma 3's
 * vocabulary sizes, for the usual sampler settings; the bytes are one read
 * of the logits, against the read bandwidth (the sampler runs on the
 * calling thread, between two decode steps). */
static int bench_sampler(const bench *b) {
    static const int64_t vocabs[2] = {151936, 262144};
    static const struct {
        const char *name;
        float t, top_p, min_p;
        int top_k;
    } cfgs[] = {{"greedy", 0, 1, 0, 0},
                {"temperature 0.8", 0.8f, 1, 0, 0},
                {"t 0.7, top-p 0.9", 0.7f, 0.9f, 0, 0},
                {"t 0.8, min-p 0.05", 0.8f, 1, 0.05f, 0},
                {"t 0.6, top-k 20/p 0.95", 0.6f, 0.95f, 0, 20}};
    for (int v = 0; v < 2; v++) {
        int64_t V = vocabs[v];
        float *l = malloc((size_t)V * sizeof *l);
        if (!l) return 1;
        uint64_t r = 12345;
        for (int64_t i = 0; i < V; i++) { /* Irwin-Hall: a normal body from 12 uniforms */
            double u = 0;
            for (int k = 0; k < 12; k++) {
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                u += (double)(r >> 11) / 9007199254740992.0;
            }
            l[i] = (float)(2.5 * (u - 6.0));
        }
        for (int k = 0; k < 20; k++) l[(k * 7919) % V] = 18.0f + 0.3f * (float)k;
        for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ci++) {
            lmc_sampler_config sc = lmc_sampler_config_default();
            sc.temperature = cfgs[ci].t;
            sc.top_p = cfgs[ci].top_p;
            sc.min_p = cfgs[ci].min_p;
            sc.top_k = cfgs[ci].top_k;
            samp_ctx c = {.logits = l, .vocab = V};
            if (lmc_sampler_create(&sc, &c.s) != LMC_OK) {
                free(l);
                return 1;
            }
            double secs = time_it(samp_run, &c, 0.2);
            char name[96];
            snprintf(name, sizeof name, "%s, vocab %lld", cfgs[ci].name, (long long)V);
            report(b, "sampler", name, secs, 0, (double)V * sizeof *l, "logits");
            lmc_sampler_free(c.s);
            if (c.failed) {
                fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
                free(l);
                return 1;
            }
        }
        free(l);
    }
    return 0;
}

typedef struct probe_job {
    lmc_probe_kind kind;
    int64_t iters;
    float sink;
} probe_job;

static void probe_thread(void *ctx, int64_t b, int64_t e, int thread) {
    (void)b, (void)e, (void)thread;
    probe_job *j = ctx;
    float r = lmc_cpu_probe(j->kind, j->iters);
    if (r == 12345.0f) j->sink = r; /* keeps the result alive; never true in practice */
}

/* Instructions per second of one thread alone and of all threads at once. */
static int bench_cores(const bench *b) {
    static const struct {
        lmc_probe_kind kind;
        const char *name;
        int64_t iters;
        lmc_cpu_path needs;
    } kinds[] = {
        {LMC_PROBE_AMX_BF16, "amx tdpbf16ps", 2000000, LMC_PATH_AMX},
        {LMC_PROBE_AMX_INT8, "amx tdpbusd", 2000000, LMC_PATH_AMX},
        {LMC_PROBE_AVX512_FMA, "avx512 fma", 100000000, LMC_PATH_AVX512},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        if (lmc_cpu_path_max() < kinds[k].needs) continue;
        probe_job j = {.kind = kinds[k].kind, .iters = kinds[k].iters};
        probe_thread(&j, 0, 1, 0); /* warm-up: AMX state, clocks */
        for (int round = 0; round < 5; round++) {
            double t0 = now();
            probe_thread(&j, 0, 1, 0);
            double one = now() - t0;
            t0 = now();
            lmc_parallel_run(b->threads, probe_thread, &j);
            double all = now() - t0;
            double r1 = (double)j.iters / one, rn = (double)j.iters * b->threads / all;
            if (b->json)
                printf("{\"bench\":\"cores\",\"unit\":\"%s\",\"round\":%d,\"threads\":%d,\"per_s_1\":%.4g,"
                       "\"per_s_all\":%.4g,\"scaling\":%.3f}\n",
                       kinds[k].name, round + 1, b->threads, r1, rn, rn / r1);
            else
                printf("cores    %-14s round %d   1 thread %7.3f G/s   %d threads %7.3f G/s   %.2fx\n", kinds[k].name,
                       round + 1, r1 * 1e-9, b->threads, rn * 1e-9, rn / r1);
        }
    }
    return 0;
}

int lmc_bench_ops(int argc, char **argv) {
    bench b = {0};
    int threads = 0;
    const char *only = NULL; /* matmul, qmatmul, qdecode, fused, sampler or cores: just that group */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) b.json = true;
        else if (!strcmp(argv[i], "--best")) g_fastest = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
            if (strcmp(only, "matmul") && strcmp(only, "qmatmul") && strcmp(only, "qdecode") && strcmp(only, "fused") &&
                strcmp(only, "sampler") && strcmp(only, "cores")) {
                fprintf(stderr, "lmc bench: --only needs matmul, qmatmul, qdecode, fused, sampler or cores, got '%s'\n",
                        only);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 256) {
                fprintf(stderr, "lmc bench: --threads needs a number from 1 to 256, got '%s'\n", argv[i]);
                return 2;
            }
            threads = (int)t;
        } else {
            fprintf(stderr, "lmc bench: unknown option '%s' (usage: lmc bench ops [--threads N] [--only GROUP] [--best] [--json])\n", argv[i]);
            return 2;
        }
    }
    if (threads && lmc_set_num_threads(threads) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    b.threads = lmc_num_threads();
    char model[256];
    lmc_bench_cpu_name(model, sizeof model);
    lmc_cpu_info info = lmc_cpu();
    const char *timing = g_fastest ? "fastest" : "mean";
    if (b.json)
        printf("{\"bench\":\"machine\",\"cpu\":\"%s\",\"threads\":%d,\"path\":\"%s\",\"version\":\"%s\",\"timing\":\"%s\"}\n",
               model, b.threads, info.path, lmc_version(), timing);
    else
        printf("machine: %s, %d threads, kernel path %s (lmc %s); times: each case's %s call\n", model, b.threads, info.path,
               lmc_version(), timing);
    if (only && !strcmp(only, "cores")) return bench_cores(&b);
    if (bench_bandwidth(&b)) return 1;

    /* Llama-3.2-1B: the MLP up/gate projection (K 2048 -> N 8192) and down projection (8192 -> 2048). */
    static const int64_t shapes[2][2] = {{2048, 8192}, {8192, 2048}};
    static const lmc_dtype pairs[3][2] = {{LMC_F32, LMC_F32}, {LMC_F32, LMC_BF16}, {LMC_BF16, LMC_BF16}};
    /* M: decode, batched decode at 16 sequences, prefill (a model prefills in chunks of 64) */
    static const int64_t Ms[4] = {1, 16, 64, 512};
    for (int m = 0; m < 4 && (!only || !strcmp(only, "matmul")); m++) {
        if (Ms[m] == 64) continue; /* the quantised products' case only */
        for (int s = 0; s < 2; s++)
            for (int p = 0; p < 3; p++)
                if (bench_matmul(&b, Ms[m], shapes[s][0], shapes[s][1], pairs[p][0], pairs[p][1])) return 1;
    }
    for (int bits = 4; bits <= 8 && (!only || !strcmp(only, "qmatmul")); bits += 4)
        for (int m = 0; m < 4; m++)
            for (int s = 0; s < 2; s++)
                if (bench_qmatmul(&b, Ms[m], shapes[s][0], shapes[s][1], bits)) return 1;
    if ((!only || !strcmp(only, "qdecode")) && bench_qdecode(&b)) return 1;
    if ((!only || !strcmp(only, "fused")) && bench_fused(&b)) return 1;
    if ((!only || !strcmp(only, "sampler")) && bench_sampler(&b)) return 1;
    return 0;
}
