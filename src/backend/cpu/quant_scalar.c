/* Scalar reference kernels for MLX affine quantisation (see quant.h). */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "core/scratch.h"
#include "core/threadpool.h"
#include "ops/quant_internal.h"

/* --- quantize ----------------------------------------------------------------
 *
 * The computation follows MLX's CPU kernel `quantize<T, U>` in
 * mlx/backend/cpu/quantized.cpp (ml-explore/mlx; the fallback in
 * mlx/ops.cpp `affine_quantize` computes the same), all in f32:
 *   n_bins = 2^bits - 1, eps = 1e-7
 *   scale  = max((max - min) / n_bins, eps), negated unless |min| > |max|
 *   edge   = min if |min| > |max| else max   (the end farther from zero)
 *   q0     = rint(edge / scale)
 *   if q0 != 0: scale = edge / q0, bias = edge   (the edge value is then exact)
 *   else:       bias = 0                          (zero is exactly representable)
 *   q      = clip(rint((w - bias) / scale), 0, n_bins)   (rint: ties to even)
 * q is computed with the f32 scale; the stored scale and bias are then
 * rounded to w's dtype. So with bias = max, scale < 0 and q counts down from
 * the maximum. Packing: element i of a row at bits [i*bits, (i+1)*bits) of the
 * row's little-endian byte stream (u32 words for 2/4/8 bits; 3/5/6 bits are
 * packed 8/8/4 elements to 3/5/3 bytes, the same stream).
 *
 * MLX's Metal kernel (mlx/backend/metal/kernels/quantized.h, affine_quantize)
 * starts its running max at 0 instead of -inf, so for a group whose values are
 * all negative the GPU gives different scales; we match the CPU kernel. */

typedef struct quantize_ctx {
    const void *w;
    lmc_dtype dt;
    uint8_t *wq;
    void *scales, *biases;
    int group_size, bits;
} quantize_ctx;

static void store_float(void *p, lmc_dtype dt, int64_t i, float v) {
    switch (dt) {
    case LMC_F32: ((float *)p)[i] = v; break;
    case LMC_BF16: ((uint16_t *)p)[i] = lmc_f32_to_bf16(v); break;
    default: ((uint16_t *)p)[i] = lmc_f32_to_f16(v); break;
    }
}

static void quantize_groups(void *vctx, int64_t g0, int64_t g1, int thread) {
    (void)thread;
    const quantize_ctx *c = vctx;
    const int gs = c->group_size, bits = c->bits;
    const float n_bins = (float)((1 << bits) - 1);
    const float eps = (float)1e-7;
    const size_t group_bytes = (size_t)gs * (size_t)bits / 8;
    for (int64_t g = g0; g < g1; g++) {
        int64_t base = g * gs;
        float w_min = INFINITY, w_max = -INFINITY;
        for (int j = 0; j < gs; j++) {
            float v = lmc_quant_load(c->w, c->dt, base + j);
            w_max = w_max < v ? v : w_max; /* std::max / std::min argument order */
            w_min = v < w_min ? v : w_min;
        }
        bool mask = fabsf(w_min) > fabsf(w_max);
        float scale = (w_max - w_min) / n_bins;
        scale = scale < eps ? eps : scale;
        scale = mask ? scale : -scale;
        float edge = mask ? w_min : w_max;
        float q0 = rintf(edge / scale);
        float bias = 0.0f;
        if (q0 != 0.0f) {
            scale = edge / q0;
            bias = edge;
        }
        uint8_t *out = c->wq + (size_t)g * group_bytes;
        memset(out, 0, group_bytes);
        for (int j = 0; j < gs; j++) {
            float v = rintf((lmc_quant_load(c->w, c->dt, base + j) - bias) / scale);
            v = v < 0.0f ? 0.0f : v;
            v = v > n_bins ? n_bins : v;
            uint32_t q = (uint32_t)v;
            size_t bit = (size_t)j * (size_t)bits;
            uint32_t shifted = q << (bit & 7); /* at most 15 bits: spans two bytes */
            out[bit >> 3] |= (uint8_t)shifted;
            if ((bit & 7) + (size_t)bits > 8) out[(bit >> 3) + 1] |= (uint8_t)(shifted >> 8);
        }
        store_float(c->scales, c->dt, g, scale);
        store_float(c->biases, c->dt, g, bias);
    }
}

lmc_status lmc_quantize_scalar(lmc_array *wq, lmc_array *scales, lmc_array *biases, const lmc_array *w, int group_size,
                               int bits) {
    quantize_ctx c = {lmc_array_ptr(w), w->dtype, lmc_array_ptr(wq), lmc_array_ptr(scales), lmc_array_ptr(biases),
                      group_size, bits};
    int64_t groups = w->size / group_size;
    lmc_parallel_for(groups, 64, quantize_groups, &c);
    return LMC_OK;
}

/* --- dequantize -------------------------------------------------------------
 *
 * MLX's CPU dequantize (the fallback in mlx/ops.cpp `affine_dequantize`)
 * is multiply(q, scale) then add(bias), two ops in the scales' dtype, each
 * rounded to it; we do the same so the result matches bit for bit. */

/* q of element i of a packed row (little-endian bit stream). */
static inline uint32_t unpack(const uint8_t *row, int64_t i, int bits) {
    size_t bit = (size_t)i * (size_t)bits;
    uint32_t two = row[bit >> 3];
    if ((bit & 7) + (size_t)bits > 8) two |= (uint32_t)row[(bit >> 3) + 1] << 8;
    return (two >> (bit & 7)) & ((1u << bits) - 1);
}

typedef struct dequantize_ctx {
    const uint8_t *wq;
    const void *scales, *biases;
    void *out;
    lmc_dtype dt, odt; /* scales' dtype, out's dtype (the arithmetic's) */
    int group_size, bits;
} dequantize_ctx;

static void dequantize_groups(void *vctx, int64_t g0, int64_t g1, int thread) {
    (void)thread;
    const dequantize_ctx *c = vctx;
    const int gs = c->group_size;
    const size_t group_bytes = (size_t)gs * (size_t)c->bits / 8;
    for (int64_t g = g0; g < g1; g++) {
        float s = lmc_quant_load(c->scales, c->dt, g), b = lmc_quant_load(c->biases, c->dt, g);
        const uint8_t *row = c->wq + (size_t)g * group_bytes;
        float *o = c->odt == LMC_F32 ? (float *)c->out + g * gs : NULL;
        /* f32 from 4 or 8 bits, the common case (QLoRA's backward
         * dequantises every frozen weight each step), without the general
         * unpack and store: the same two roundings, q·s then + b */
        if (c->odt == LMC_F32 && c->bits == 4) {
            for (int i = 0; i < gs / 2; i++) {
                float lo = (float)(row[i] & 15) * s, hi = (float)(row[i] >> 4) * s;
                o[2 * i] = lo + b;
                o[2 * i + 1] = hi + b;
            }
        } else if (c->odt == LMC_F32 && c->bits == 8) {
            for (int j = 0; j < gs; j++) {
                float v = (float)row[j] * s;
                o[j] = v + b;
            }
        } else {
            for (int j = 0; j < gs; j++) {
                float v = lmc_quant_round((float)unpack(row, j, c->bits) * s, c->odt);
                store_float(c->out, c->odt, g * gs + j, v + b);
            }
        }
    }
}

lmc_status lmc_dequantize_scalar(lmc_array *out, const lmc_array *wq, const lmc_array *scales,
                                 const lmc_array *biases, int group_size, int bits) {
    dequantize_ctx c = {lmc_array_ptr(wq), lmc_array_ptr(scales), lmc_array_ptr(biases), lmc_array_ptr(out),
                        scales->dtype, out->dtype, group_size, bits};
    lmc_parallel_for(scales->size, 64, dequantize_groups, &c);
    return LMC_OK;
}

/* --- quantized matmul -------------------------------------------------------
 *
 * out[m, n] = sum_g (s_g * sum_{k in g} q_k x_k + b_g * sum_{k in g} x_k),
 * accumulated in f32, parallel over n. */

typedef struct qmm_ctx {
    const float *x; /* [M, K] f32 */
    const uint8_t *wq;
    const void *scales, *biases;
    lmc_dtype sdt;
    void *out;
    lmc_dtype odt;
    int64_t M, N, K;
    int group_size, bits;
} qmm_ctx;

static void qmm_rows(void *vctx, int64_t n0, int64_t n1, int thread) {
    (void)thread;
    const qmm_ctx *c = vctx;
    const int64_t G = c->K / c->group_size;
    const size_t row_bytes = (size_t)c->K * (size_t)c->bits / 8;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = c->wq + (size_t)n * row_bytes;
        for (int64_t m = 0; m < c->M; m++) {
            const float *x = c->x + m * c->K;
            float acc = 0.0f;
            for (int64_t g = 0; g < G; g++) {
                float sq = 0.0f, sx = 0.0f;
                for (int64_t k = g * c->group_size; k < (g + 1) * c->group_size; k++) {
                    sq += (float)unpack(row, k, c->bits) * x[k];
                    sx += x[k];
                }
                acc += lmc_quant_load(c->scales, c->sdt, n * G + g) * sq + lmc_quant_load(c->biases, c->sdt, n * G + g) * sx;
            }
            store_float(c->out, c->odt, m * c->N + n, acc);
        }
    }
}

float lmc_quant_x8_scalar(const float *x, int n, int32_t *q) {
    float m = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = m > a ? m : a; /* as vmaxps(m, a): a NaN wins */
    }
    float scale = m / 127.0f, inv = m > 0.0f ? 127.0f / m : 0.0f;
    for (int i = 0; i < n; i++) {
        float r = rintf(x[i] * inv);
        if (!(r >= -127.0f)) r = -127.0f; /* NaN too, as the SIMD conversion's clamp */
        else if (r > 127.0f) r = 127.0f;
        q[i] = (int32_t)r;
    }
    return scale;
}

void lmc_quant_x8_round(float *v, int n) {
    int32_t q[LMC_QMM_X8_BLOCK];
    float scale = lmc_quant_x8_scalar(v, n, q);
    for (int i = 0; i < n; i++) v[i] = scale * (float)q[i];
}

/* x [M, K] in f32 as the SIMD kernels see it with int8 activations: each
 * block of LMC_QMM_X8_BLOCK rounded, in place. */
static void round_x8(float *x, int64_t M, int64_t K) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t k0 = 0; k0 < K; k0 += LMC_QMM_X8_BLOCK)
            lmc_quant_x8_round(x + m * K + k0, K - k0 < LMC_QMM_X8_BLOCK ? (int)(K - k0) : LMC_QMM_X8_BLOCK);
}

lmc_status lmc_quantized_matmul_scalar(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    int64_t M = x->shape[0], K = x->shape[1], N = out->shape[1];
    float *xf = NULL;
    const float *xp = lmc_array_ptr(x);
    bool x8 = lmc_quant_has_activation_bits(bits) && lmc_quant_activation_bits() == 8;
    if (x->dtype != LMC_F32 || x8) {
        xf = malloc((size_t)(M * K) * sizeof(float) + 1);
        if (!xf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "quantized_matmul: out of memory");
        lmc_convert(xf, LMC_F32, lmc_array_ptr(x), x->dtype, (size_t)(M * K));
        if (x8) round_x8(xf, M, K);
        xp = xf;
    }
    qmm_ctx c = {xp, lmc_array_ptr(wq), lmc_array_ptr(scales), lmc_array_ptr(biases), scales->dtype,
                 lmc_array_ptr(out), out->dtype, M, N, K, group_size, bits};
    lmc_parallel_for(N, 16, qmm_rows, &c);
    free(xf);
    return LMC_OK;
}

/* --- the driver of the SIMD paths (see lmc_qmm_plan in quant.h) ----------
 *
 * One parallel region per call (or per batch of calls sharing x): x is
 * prepared first, on the calling thread when it has few rows (a few
 * microseconds at decode, less than waking the workers), and all weight rows
 * are then cut into one contiguous part per thread, which other threads
 * help with from its back once their own is done (lmc_parallel_split). A row's result does not depend
 * on how the rows are cut, so outputs are the same for any thread count.
 * Work space comes from per-thread scratch buffers: decode calls this
 * hundreds of times per token. */

enum {
    QMM_NB = 32,           /* weight rows a block of the results (tasks are multiples of it) */
    QMM_PREP_SERIAL = 4,   /* x rows prepared on the calling thread alone */
    QMM_BATCH_MAX = 8,
};

/* Plans queued while a batch is open on this thread (lmc_qmm_batch_begin). */
static _Thread_local struct {
    bool open;
    int n;
    lmc_qmm_plan plans[QMM_BATCH_MAX];
} t_batch;

static void qmm_prep_rows(void *vctx, int64_t m0, int64_t m1, int thread) {
    (void)thread;
    const lmc_qmm_plan *p = vctx;
    size_t xs = lmc_dtype_size(p->xdt);
    for (int64_t m = m0; m < m1; m++)
        p->prep_x(p, (const char *)p->x + (size_t)(m * p->K) * xs, p->xp + (size_t)m * p->xp_bytes, p->sx + m * p->G_pad);
}

/* Stores v[n - n0] (n0 <= n < n1) into row m of out. */
static void qmm_store_row(const lmc_qmm_plan *p, int64_t m, int64_t n0, int64_t n1, const float *v) {
    int64_t i = m * p->N;
    switch (p->odt) {
    case LMC_F32: /* as one copy: element by element, the stores to lines not in cache cost ~5 % of a prefill */
        memcpy((float *)p->out + i + n0, v, (size_t)(n1 - n0) * sizeof(float));
        break;
    case LMC_BF16:
        for (int64_t n = n0; n < n1; n++) ((uint16_t *)p->out)[i + n] = lmc_f32_to_bf16(v[n - n0]);
        break;
    default:
        for (int64_t n = n0; n < n1; n++) ((uint16_t *)p->out)[i + n] = lmc_f32_to_f16(v[n - n0]);
        break;
    }
}

/* Stores res[m][n - n0] (m < mr, n0 <= n < n1) into rows m0.. of out. */
static void qmm_store(const lmc_qmm_plan *p, int64_t m0, int mr, int64_t n0, int64_t n1, float (*res)[QMM_NB]) {
    for (int r = 0; r < mr; r++) qmm_store_row(p, m0 + r, n0, n1, res[r]);
}

/* Weight rows [n0, n0 + LMC_QMM_STREAMS*q) with the one row of x, as
 * LMC_QMM_STREAMS runs of q rows read side by side (kernel_streams). */
static void qmm_run_streams(const lmc_qmm_plan *p, int64_t n0, int64_t q) {
    enum { STEP = 8 }; /* rows of each stream a call */
    float res[LMC_QMM_STREAMS * STEP];
    for (int64_t i = 0; i < q; i += STEP) {
        int nn = q - i < STEP ? (int)(q - i) : STEP;
        p->kernel_streams(p, n0 + i, q, nn, p->xp, p->sx, res);
        for (int s = 0; s < LMC_QMM_STREAMS; s++) qmm_store_row(p, 0, n0 + s * q + i, n0 + s * q + i + nn, res + s * nn);
    }
}

/* Weight rows [n0, n1) of one plan. */
static void qmm_run_rows(const lmc_qmm_plan *p, int64_t n0, int64_t n1) {
    float res[4 * QMM_NB], block[4][QMM_NB]; /* kernel results (mr <= 4 x rows by nr <= QMM_NB weight rows), and by x row */
    if (p->kernel_streams && p->M == 1 && n1 - n0 >= LMC_QMM_STREAMS * LMC_QMM_STREAM_ROWS) {
        int64_t q = (n1 - n0) / LMC_QMM_STREAMS;
        qmm_run_streams(p, n0, q);
        n0 += LMC_QMM_STREAMS * q; /* fewer than LMC_QMM_STREAMS rows are left, for the loop below */
    }
    for (int64_t nb = n0; nb < n1; nb += QMM_NB) {
        int64_t ne = nb + QMM_NB < n1 ? nb + QMM_NB : n1;
        /* x rows outside, weight rows inside: the block's weights stay in cache across x rows. */
        for (int64_t m0 = 0; m0 < p->M; m0 += p->mr) {
            int mr = p->M - m0 < p->mr ? (int)(p->M - m0) : p->mr;
            for (int64_t n = nb; n < ne; n += p->nr) {
                int nn = ne - n < p->nr ? (int)(ne - n) : p->nr;
                /* one x row: res[j] is block[0][n + j - nb], so the kernel writes there */
                float *dst = mr == 1 ? &block[0][n - nb] : res;
                p->kernel(p, n, nn, p->wq + (size_t)n * p->row_bytes, p->xp + (size_t)m0 * p->xp_bytes,
                          p->sx + m0 * p->G_pad, mr, dst);
                if (mr > 1)
                    for (int j = 0; j < nn; j++)
                        for (int r = 0; r < mr; r++) block[r][n + j - nb] = res[j * mr + r];
            }
            qmm_store(p, m0, mr, nb, ne, block);
        }
    }
}

/* The weight rows of several plans, numbered one after another. */
typedef struct qmm_job {
    const lmc_qmm_plan *plans;
    int n;
    int64_t first[QMM_BATCH_MAX + 1];  /* plan i has rows [first[i], first[i+1]) */
    _Atomic bool out_of_memory;        /* a plan's run_many found no work space */
} qmm_job;

/* Rows [r0, r1) of the job (a piece of lmc_parallel_split, or all of them with one thread). */
static void qmm_job_rows(void *vctx, int64_t r0, int64_t r1, int run) {
    (void)run;
    qmm_job *j = vctx;
    for (int i = 0; i < j->n; i++) {
        int64_t lo = r0 > j->first[i] ? r0 : j->first[i], hi = r1 < j->first[i + 1] ? r1 : j->first[i + 1];
        if (lo >= hi) continue;
        const lmc_qmm_plan *p = &j->plans[i];
        if (!p->run_many) qmm_run_rows(p, lo - j->first[i], hi - j->first[i]);
        else if (!p->run_many(p, lo - j->first[i], hi - j->first[i])) atomic_store(&j->out_of_memory, true);
    }
}

/* Plans a and b prepare x the same way (so b may use a's prepared x). */
static bool same_prepared_x(const lmc_qmm_plan *a, const lmc_qmm_plan *b) {
    return a->x == b->x && a->xdt == b->xdt && a->M == b->M && a->K == b->K && a->prep_x == b->prep_x &&
           a->xp_bytes == b->xp_bytes && a->group_size == b->group_size && a->G_pad == b->G_pad;
}

/* Runs plans[0..n) in one parallel region over all their rows. */
static lmc_status qmm_run_plans(lmc_qmm_plan *plans, int n) {
    /* Lay out the prepared x of each distinct x in one scratch buffer. */
    size_t offset[QMM_BATCH_MAX], total = 0;
    int owner[QMM_BATCH_MAX];
    for (int i = 0; i < n; i++) {
        lmc_qmm_plan *p = &plans[i];
        p->G_pad = (p->G + 15) / 16 * 16 + 16;
        owner[i] = i;
        for (int j = 0; j < i; j++)
            if (owner[j] == j && same_prepared_x(&plans[j], p)) {
                owner[i] = j;
                break;
            }
        if (owner[i] != i) continue;
        offset[i] = total;
        total += (size_t)p->M * p->xp_bytes + ((size_t)(p->M * p->G_pad) * sizeof(float) + 63) / 64 * 64;
    }
    uint8_t *space = lmc_scratch(LMC_SCRATCH_QMM_X, total);
    if (!space) return lmc_last_status();
    qmm_job job = {.plans = plans, .n = n};
    for (int i = 0; i < n; i++) {
        lmc_qmm_plan *p = &plans[i];
        if (owner[i] == i) {
            p->xp = space + offset[i];
            p->sx = (float *)(p->xp + (size_t)p->M * p->xp_bytes);
            /* prep_x writes only the used part of a row and adds into sx */
            memset(p->xp, 0, (size_t)p->M * p->xp_bytes + (size_t)(p->M * p->G_pad) * sizeof(float));
            if (p->M <= QMM_PREP_SERIAL) qmm_prep_rows(p, 0, p->M, 0);
            else lmc_parallel_for(p->M, QMM_PREP_SERIAL, qmm_prep_rows, p);
        } else {
            p->xp = plans[owner[i]].xp;
            p->sx = plans[owner[i]].sx;
        }
        job.first[i + 1] = job.first[i] + p->N;
    }
    /* one contiguous part of whole QMM_NB blocks per thread, helped from its
     * back at the end: each thread streams its weights start to end */
    lmc_parallel_split(job.first[n], QMM_NB, qmm_job_rows, &job);
    if (atomic_load(&job.out_of_memory))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "quantized_matmul: out of memory for the %lld x %lld product's work space",
                             (long long)plans[0].M, (long long)plans[0].K);
    return LMC_OK;
}

void lmc_qmm_plan_init(lmc_qmm_plan *p, const lmc_array *out, const lmc_array *x, const lmc_array *wq,
                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    memset(p, 0, sizeof *p);
    p->M = x->shape[0];
    p->K = x->shape[1];
    p->N = out->shape[1];
    p->G = p->K / group_size;
    p->group_size = group_size;
    p->bits = bits;
    p->wq = lmc_array_ptr(wq);
    p->row_bytes = (size_t)p->K * (size_t)bits / 8;
    p->scales = lmc_array_ptr(scales);
    p->biases = lmc_array_ptr(biases);
    p->sdt = scales->dtype;
    p->x = lmc_array_ptr(x);
    p->xdt = x->dtype;
    p->out = lmc_array_ptr(out);
    p->odt = out->dtype;
    p->mr = 4;
    p->nr = 1;
    p->xbits = lmc_quant_has_activation_bits(bits) ? lmc_quant_activation_bits() : 24;
    p->gshift = __builtin_ctz((unsigned)group_size);
    for (int l = 0; l < 16; l++) p->gidx[l] = l * (32 / bits) / group_size;
}

lmc_status lmc_qmm_run(lmc_qmm_plan *p) {
    if (t_batch.open && t_batch.n < QMM_BATCH_MAX) {
        t_batch.plans[t_batch.n++] = *p;
        return LMC_OK;
    }
    return qmm_run_plans(p, 1);
}

void lmc_qmm_batch_begin(void) {
    t_batch.open = true;
    t_batch.n = 0;
}

bool lmc_qmm_batch_is_open(void) { return t_batch.open; }

lmc_status lmc_qmm_batch_end(void) {
    t_batch.open = false;
    lmc_status st = t_batch.n ? qmm_run_plans(t_batch.plans, t_batch.n) : LMC_OK;
    t_batch.n = 0;
    /* queued only where the CPU has AMX; runs even after a failure, so the queue ends empty */
    lmc_status st_amx = lmc_quantized_matmul_amx_flush();
    return st != LMC_OK ? st : st_amx;
}
