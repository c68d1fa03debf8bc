/* The CUDA kernel table: the C side of the backend.
 *
 * Each entry checks what the kernel cannot (dtypes it does not handle, index
 * ranges), turns its arrays into lmc_cuda_views and calls the launcher in
 * the *.cu files (cuda_launch.h). Launches are asynchronous on the backend's
 * one stream; an error a kernel hits while running surfaces at the next
 * synchronising call (a copy to the host), named there. Entries left NULL
 * (cumsum, sort, random, quantize, scatters) answer "not available on this
 * device" from the ops layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include "backend/cuda/cuda_launch.h"
#include "backend/kernels.h"

_Static_assert(LMC_CUDA_MAX_DIMS == LMC_MAX_DIMS, "view dims");
_Static_assert((int)LMC_CUDA_COPY_JOBS == (int)LMC_COPY_MANY_MAX, "copy_many jobs");
_Static_assert((int)LMC_CU_F32 == (int)LMC_F32 && (int)LMC_CU_F16 == (int)LMC_F16 && (int)LMC_CU_BF16 == (int)LMC_BF16 &&
                   (int)LMC_CU_I32 == (int)LMC_I32 && (int)LMC_CU_U32 == (int)LMC_U32 && (int)LMC_CU_U8 == (int)LMC_U8 &&
                   (int)LMC_CU_BOOL == (int)LMC_BOOL && (int)LMC_CU_I64 == (int)LMC_I64,
               "dtype codes");

static lmc_cuda_view view(const lmc_array *a) {
    lmc_cuda_view v;
    memset(&v, 0, sizeof v);
    v.ptr = lmc_array_ptr(a);
    v.dtype = (int)a->dtype;
    v.ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++) {
        v.shape[d] = a->shape[d];
        v.strides[d] = a->strides[d];
    }
    return v;
}

/* LMC_CUDA_PROFILE=1: each entry waits for its kernels and adds up, per
 * entry, the wall time (launch and host work included) and the time its
 * work took on the GPU, printed at exit: where a step's time goes. It
 * serialises host and GPU, so the totals run higher than a real step. */
enum { P_COPY, P_FILL, P_ARANGE, P_UNARY, P_BINARY, P_WHERE, P_REDUCE, P_SOFTMAX, P_TAKE, P_TAKE_ALONG, P_MATMUL,
       P_RMS_NORM, P_LAYER_NORM, P_ROPE, P_SDPA, P_DEQUANTIZE, P_QMM, P_ADD_RMS_NORM, P_ROPE_QK, P_GATED_ACT, P_COPY_MANY, P_COUNT };
static const char *const g_prof_names[P_COUNT] = {"copy", "fill", "arange", "unary", "binary", "where", "reduce",
                                                  "softmax", "take", "take_along", "matmul", "rms_norm", "layer_norm",
                                                  "rope", "sdpa", "dequantize", "quantized_matmul", "add_rms_norm",
                                                  "rope_qk", "gated_act", "copy_many"};
static bool g_prof;
static double g_prof_s[P_COUNT], g_prof_gpu_ms[P_COUNT];
static long g_prof_n[P_COUNT];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void prof_report(void) {
    double total = 0;
    for (int i = 0; i < P_COUNT; i++) total += g_prof_s[i];
    fprintf(stderr, "cuda profile (entry: calls, wall ms, wall us/call, GPU us/call, share of wall):\n");
    for (int i = 0; i < P_COUNT; i++)
        if (g_prof_n[i])
            fprintf(stderr, "  %-17s %8ld %10.2f %8.2f %8.2f %5.1f %%\n", g_prof_names[i], g_prof_n[i], g_prof_s[i] * 1e3,
                    g_prof_s[i] * 1e6 / (double)g_prof_n[i], g_prof_gpu_ms[i] * 1e3 / (double)g_prof_n[i],
                    100 * g_prof_s[i] / total);
}

#define PROF(id, expr)                                  \
    do {                                                \
        if (!g_prof) return (expr);                     \
        double t0_ = now_s(), gpu_ms_ = 0;              \
        lmc_cuda_timer_start();                         \
        lmc_status s_ = (expr);                         \
        lmc_cuda_timer_stop(&gpu_ms_);                  \
        g_prof_s[id] += now_s() - t0_;                  \
        g_prof_gpu_ms[id] += gpu_ms_;                   \
        g_prof_n[id]++;                                 \
        return s_;                                      \
    } while (0)

static lmc_status check(int err, const char *op) {
    if (!err) return LMC_OK;
    return lmc_set_error(err == 2 ? LMC_ERR_OUT_OF_MEMORY : LMC_ERR_INTERNAL, "cuda %s: %s", op, lmc_cuda_error_string(err));
}

static bool is_float(lmc_dtype dt) { return dt == LMC_F32 || dt == LMC_F16 || dt == LMC_BF16; }

static lmc_status k_copy(lmc_array *out, const lmc_array *in) {
    lmc_cuda_view o = view(out), i = view(in);
    PROF(P_COPY, check(lmc_cu_copy(&o, &i), "copy"));
}

static lmc_status k_copy_many(int n, lmc_array *const *out, const lmc_array *const *in) {
    lmc_cuda_view o[LMC_CUDA_COPY_JOBS], i[LMC_CUDA_COPY_JOBS];
    if (n < 1 || n > LMC_CUDA_COPY_JOBS) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "copy_many: %d copies", n);
    for (int t = 0; t < n; t++) {
        o[t] = view(out[t]);
        i[t] = view(in[t]);
    }
    PROF(P_COPY_MANY, check(lmc_cu_copy_many(n, o, i), "copy_many"));
}

static lmc_status k_fill(lmc_array *out, double value) {
    lmc_cuda_view o = view(out);
    PROF(P_FILL, check(lmc_cu_fill(&o, value), "fill"));
}

static lmc_status k_arange(lmc_array *out, double start, double step) {
    lmc_cuda_view o = view(out);
    PROF(P_ARANGE, check(lmc_cu_arange(&o, start, step), "arange"));
}

static lmc_status k_unary(lmc_unary_op op, lmc_array *out, const lmc_array *in) {
    if ((unsigned)op >= LMC_UNARY_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "unary: invalid op %d", (int)op);
    lmc_cuda_view o = view(out), i = view(in);
    PROF(P_UNARY, check(lmc_cu_unary((int)op, &o, &i), "unary"));
}

static lmc_status k_binary(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b) {
    if ((unsigned)op >= LMC_BINARY_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "binary: invalid op %d", (int)op);
    lmc_cuda_view o = view(out), x = view(a), y = view(b);
    PROF(P_BINARY, check(lmc_cu_binary((int)op, &o, &x, &y), "binary"));
}

static lmc_status k_where(lmc_array *out, const lmc_array *cond, const lmc_array *x, const lmc_array *y) {
    lmc_cuda_view o = view(out), c = view(cond), a = view(x), b = view(y);
    PROF(P_WHERE, check(lmc_cu_where(&o, &c, &a, &b), "where"));
}

static lmc_status k_reduce(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis) {
    if ((unsigned)op >= LMC_REDUCE_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "reduce: invalid op %d", (int)op);
    lmc_cuda_view o = view(out), i = view(in);
    PROF(P_REDUCE, check(lmc_cu_reduce((int)op, &o, &i, axis), "reduce"));
}

static lmc_status k_softmax(lmc_array *out, const lmc_array *in, int axis, bool log) {
    lmc_cuda_view o = view(out), i = view(in);
    PROF(P_SOFTMAX, check(lmc_cu_softmax(&o, &i, axis, log), "softmax"));
}

/* Indices live on the device: they are read back once to check their range
 * (a gather must not read outside its source), as the CPU kernels do before
 * any element moves. Token ids and row selections are small. */
static lmc_status check_indices(const char *op, const lmc_array *idx, int axis, int64_t n) {
    if (idx->dtype != LMC_I32 && idx->dtype != LMC_U32 && idx->dtype != LMC_U8 && idx->dtype != LMC_I64)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: indices must have an integer dtype, got %s", op,
                             lmc_dtype_name(idx->dtype));
    if (!idx->size) return LMC_OK;
    int64_t *v = malloc((size_t)idx->size * sizeof *v);
    if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", op);
    lmc_status s = lmc_array_read(idx, LMC_I64, v, (size_t)idx->size);
    for (int64_t i = 0; s == LMC_OK && i < idx->size; i++)
        if (v[i] < -n || v[i] >= n)
            s = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: index %lld is out of range for axis %d of size %lld", op,
                              (long long)v[i], axis, (long long)n);
    free(v);
    return s;
}

static lmc_status k_take(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis) {
    LMC_CHECK(check_indices("take", idx, axis, a->shape[axis]));
    lmc_cuda_view o = view(out), x = view(a), i = view(idx);
    PROF(P_TAKE, check(lmc_cu_take(&o, &x, &i, axis), "take"));
}

static lmc_status k_take_along(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis) {
    LMC_CHECK(check_indices("take_along_axis", idx, axis, a->shape[axis]));
    lmc_cuda_view o = view(out), x = view(a), i = view(idx);
    PROF(P_TAKE_ALONG, check(lmc_cu_take_along(&o, &x, &i, axis), "take_along_axis"));
}

/* A batch is open on this thread (batch_begin): products are queued. */
static _Thread_local bool t_batch_open;

/* Float products queued in a batch: at decode those over one x run as one
 * GEMV launch, anything else one by one, in order, when the batch ends. */
static _Thread_local struct {
    int n;
    lmc_cuda_view out[LMC_CUDA_MM_JOBS], a[LMC_CUDA_MM_JOBS], b[LMC_CUDA_MM_JOBS];
} t_mm;

static lmc_status mm_run(int n) {
    int e = n > 1 ? lmc_cu_matmul_gemv_many(n, t_mm.out, t_mm.a, t_mm.b) : -1;
    if (e < 0) /* not one GEMV launch: one by one */
        for (int i = e = 0; i < n && !e; i++) e = lmc_cu_matmul(&t_mm.out[i], &t_mm.a[i], &t_mm.b[i]);
    return check(e, "matmul");
}

static lmc_status mm_flush(void) {
    int n = t_mm.n;
    t_mm.n = 0;
    if (!n) return LMC_OK;
    PROF(P_MATMUL, mm_run(n));
}

static lmc_status k_matmul(lmc_array *out, const lmc_array *a, const lmc_array *b) {
    if (!is_float(out->dtype)) return lmc_set_error(LMC_ERR_UNSUPPORTED, "cuda matmul: %s output", lmc_dtype_name(out->dtype));
    lmc_cuda_view o = view(out), x = view(a), y = view(b);
    if (!t_batch_open) PROF(P_MATMUL, check(lmc_cu_matmul(&o, &x, &y), "matmul"));
    if (t_mm.n == LMC_CUDA_MM_JOBS) LMC_CHECK(mm_flush());
    t_mm.out[t_mm.n] = o;
    t_mm.a[t_mm.n] = x;
    t_mm.b[t_mm.n++] = y;
    return LMC_OK;
}

static lmc_status k_rms_norm(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight) {
    lmc_cuda_view o = view(out), a = view(x), g;
    if (w) g = view(w);
    PROF(P_RMS_NORM, check(lmc_cu_rms_norm(&o, &a, w ? &g : NULL, eps, one_plus_weight), "rms_norm"));
}

static lmc_status k_add_rms_norm(lmc_array *out, lmc_array *sum, const lmc_array *a, const lmc_array *b,
                                 const lmc_array *w, float eps, bool one_plus_weight) {
    lmc_cuda_view o = view(out), m = view(sum), x = view(a), r = view(b), g;
    if (w) g = view(w);
    PROF(P_ADD_RMS_NORM, check(lmc_cu_add_rms_norm(&o, &m, &x, &r, w ? &g : NULL, eps, one_plus_weight), "add_rms_norm"));
}

static lmc_status k_rope_qk(lmc_array *const out[2], const lmc_array *const x[2], bool norm, const lmc_array *const w[2],
                            float eps, bool one_plus_weight, const lmc_rope_params *p, const lmc_array *inv_freqs,
                            const lmc_array *positions) {
    lmc_cuda_view o[2] = {view(out[0]), view(out[1])}, a[2] = {view(x[0]), view(x[1])}, g[2];
    const lmc_cuda_view *gp[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (norm && w[i]) {
            g[i] = view(w[i]);
            gp[i] = &g[i];
        }
    lmc_cuda_view f = view(inv_freqs), pos = view(positions);
    PROF(P_ROPE_QK, check(lmc_cu_rope_qk(o, a, norm, gp, eps, one_plus_weight, p->dims, p->traditional, p->scale, &f, &pos),
                          "rope_qk"));
}

static lmc_status k_gated_act(lmc_unary_op act, lmc_array *out, const lmc_array *gate, const lmc_array *up) {
    lmc_cuda_view o = view(out), g = view(gate), u = view(up);
    PROF(P_GATED_ACT, check(lmc_cu_gated_act((int)act, &o, &g, &u), "gated_act"));
}

static lmc_status k_layer_norm(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps) {
    lmc_cuda_view o = view(out), a = view(x), g, c;
    if (w) g = view(w);
    if (b) c = view(b);
    PROF(P_LAYER_NORM, check(lmc_cu_layer_norm(&o, &a, w ? &g : NULL, b ? &c : NULL, eps), "layer_norm"));
}

static lmc_status k_rope(lmc_array *out, const lmc_array *x, const lmc_rope_params *p, const lmc_array *inv_freqs,
                         const lmc_array *positions) {
    lmc_cuda_view o = view(out), a = view(x), f = view(inv_freqs), pos = view(positions);
    PROF(P_ROPE, check(lmc_cu_rope(&o, &a, p->dims, p->traditional, p->scale, &f, &pos), "rope"));
}

static lmc_status k_sdpa(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,
                         const lmc_sdpa_params *p) {
    lmc_cuda_view o = view(out), a = view(q), b = view(k), c = view(v), m;
    if (p->mask) m = view(p->mask);
    PROF(P_SDPA, check(lmc_cu_sdpa(&o, &a, &b, &c, p->scale, p->causal, p->window, p->mask ? &m : NULL, p->softcap), "sdpa"));
}

static lmc_status k_dequantize(lmc_array *out, const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                               int group_size, int bits) {
    lmc_cuda_view o = view(out), w = view(wq), s = view(scales), b = view(biases);
    PROF(P_DEQUANTIZE, check(lmc_cu_dequantize(&o, &w, &s, &b, group_size, bits), "dequantize"));
}

/* Quantised products queued in a batch: those over one x run as one launch
 * at decode. */
static _Thread_local struct {
    int n;
    lmc_cuda_view x;
    lmc_cuda_qmm_job jobs[LMC_CUDA_QMM_JOBS];
} t_qmm;

static lmc_status qmm_flush(void) {
    int n = t_qmm.n;
    t_qmm.n = 0;
    if (!n) return LMC_OK;
    PROF(P_QMM, check(lmc_cu_quantized_matmul(&t_qmm.x, n, t_qmm.jobs), "quantized_matmul"));
}

static lmc_status k_quantized_matmul(lmc_array *out, const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                                     const lmc_array *biases, int group_size, int bits) {
    lmc_cuda_qmm_job j = {.out = view(out), .wq = view(wq), .scales = view(scales), .biases = view(biases),
                          .group_size = group_size, .bits = bits};
    lmc_cuda_view a = view(x);
    if (!t_batch_open) PROF(P_QMM, check(lmc_cu_quantized_matmul(&a, 1, &j), "quantized_matmul"));
    /* another x, or a full queue: what is queued runs first */
    if (t_qmm.n && (t_qmm.n == LMC_CUDA_QMM_JOBS || memcmp(&t_qmm.x, &a, sizeof a))) LMC_CHECK(qmm_flush());
    t_qmm.x = a;
    t_qmm.jobs[t_qmm.n++] = j;
    return LMC_OK;
}

static void k_batch_begin(void) {
    t_batch_open = true;
    t_qmm.n = t_mm.n = 0;
}

static lmc_status k_batch_end(void) {
    t_batch_open = false;
    lmc_status st = qmm_flush();
    if (st == LMC_OK) return mm_flush();
    t_mm.n = 0; /* the batch failed: its outputs are not read */
    return st;
}

static const lmc_kernels g_cuda = {
    .name = "cuda",
    .copy = k_copy,
    .fill = k_fill,
    .arange = k_arange,
    .unary = k_unary,
    .binary = k_binary,
    .where = k_where,
    .reduce = k_reduce,
    .softmax = k_softmax,
    .take = k_take,
    .take_along = k_take_along,
    .matmul = k_matmul,
    .rms_norm = k_rms_norm,
    .layer_norm = k_layer_norm,
    .rope = k_rope,
    .sdpa = k_sdpa,
    .dequantize = k_dequantize,
    .quantized_matmul = k_quantized_matmul,
    .batch_begin = k_batch_begin,
    .batch_end = k_batch_end,
    .add_rms_norm = k_add_rms_norm,
    .rope_qk = k_rope_qk,
    .gated_act = k_gated_act,
    .copy_many = k_copy_many,
};

static pthread_once_t g_prof_once = PTHREAD_ONCE_INIT;

static void prof_init(void) {
    const char *e = getenv("LMC_CUDA_PROFILE");
    g_prof = e && *e && strcmp(e, "0");
    if (g_prof) atexit(prof_report);
}

const lmc_kernels *lmc_cuda_kernels(void) {
    pthread_once(&g_prof_once, prof_init);
    if (lmc_cuda_device_count() <= 0) {
        lmc_set_error(LMC_ERR_UNSUPPORTED, "no CUDA device is usable on this machine (no GPU, or no driver)");
        return NULL;
    }
    return &g_cuda;
}
