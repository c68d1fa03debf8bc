/* SIMD element-wise, reduction and softmax kernels, written once over a small
 * vector vocabulary and compiled per instruction set: elementwise_avx2.c and
 * elementwise_avx512.c define the vocabulary (V, M, W, v_* functions) and SFX
 * (the function name suffix), then include this file.
 *
 * What runs here: contiguous f32/bf16 operands (broadcast operands of stride
 * 0 too) for add, sub, mul, div, maximum, minimum and for neg, abs, square,
 * sqrt, rsqrt, exp, tanh, sigmoid, silu, gelu_tanh; f32 sum, mean, max,
 * argmax, logsumexp and softmax/log_softmax along a contiguous last axis.
 * Everything else goes to the scalar kernels. Math is f32; bf16 is widened
 * on load and rounded to nearest even on store exactly as lmc_f32_to_bf16.
 *
 * Accuracy against double precision (tested in test_ops_elementwise): exp
 * within 2e-6 relative for results in the normal f32 range (measured
 * 7.7e-8 on [-87, 88]); tanh, sigmoid, silu within 2e-6 (measured <= 1.5e-7
 * on [-12, 12]); gelu_tanh within 1e-5 (measured 5.2e-6: the f32 rounding of
 * its argument grows with |x|, and matters only for x < -5 where results are
 * below 1e-10). Tails shorter than a
 * vector go through the same vector code via a small buffer, so an element's
 * value does not depend on where it sits in a row. */

#include <math.h>
#include <string.h>

#define SIMD_CAT_(a, b) a##b
#define SIMD_CAT(a, b) SIMD_CAT_(a, b)
#define SIMD_FN(name) SIMD_CAT(name, SFX)

/* --- math ----------------------------------------------------------------- */

/* exp(x): x = n*ln2 + r with |r| <= ln2/2, exp(r) by its degree-7 Taylor
 * polynomial (truncation < 6e-9), times 2^n applied in two halves so that
 * results down to the denormal range come out right. The clamp keeps NaN
 * (max/min return their second operand when one is NaN). */
static inline V v_exp(V x) {
    x = v_min(v_set1(89.0f), v_max(v_set1(-110.0f), x));
    V n = v_round(v_mul(x, v_set1(1.44269504088896341f)));
    V r = v_fma(n, v_set1(-0.693359375f), x);
    r = v_fma(n, v_set1(2.12194440054690583e-4f), r);
    V p = v_set1(1.0f / 5040.0f);
    p = v_fma(p, r, v_set1(1.0f / 720.0f));
    p = v_fma(p, r, v_set1(1.0f / 120.0f));
    p = v_fma(p, r, v_set1(1.0f / 24.0f));
    p = v_fma(p, r, v_set1(1.0f / 6.0f));
    p = v_fma(p, r, v_set1(0.5f));
    p = v_fma(p, r, v_set1(1.0f));
    p = v_fma(p, r, v_set1(1.0f));
    V n1 = v_floor(v_mul(n, v_set1(0.5f)));
    return v_mul(v_mul(p, v_pow2i(n1)), v_pow2i(v_sub(n, n1)));
}

/* tanh: odd Taylor series to x^13 below |x| = 0.4 (where 1 - e^-2|x| would
 * cancel), (1 - e)/(1 + e) with e = exp(-2|x|) above. */
static inline V v_tanh(V x) {
    V ax = v_abs(x);
    V e = v_exp(v_mul(ax, v_set1(-2.0f)));
    V t = v_div(v_sub(v_set1(1.0f), e), v_add(v_set1(1.0f), e));
    t = v_select(v_lt(x, v_set1(0.0f)), v_sub(v_set1(0.0f), t), t);
    V x2 = v_mul(x, x);
    V p = v_set1(21844.0f / 6081075.0f);
    p = v_fma(p, x2, v_set1(-1382.0f / 155925.0f));
    p = v_fma(p, x2, v_set1(62.0f / 2835.0f));
    p = v_fma(p, x2, v_set1(-17.0f / 315.0f));
    p = v_fma(p, x2, v_set1(2.0f / 15.0f));
    p = v_fma(p, x2, v_set1(-1.0f / 3.0f));
    V small = v_fma(v_mul(x, x2), p, x);
    return v_select(v_lt(ax, v_set1(0.4f)), small, t);
}

static inline V v_unary(lmc_unary_op op, V x) {
    V one = v_set1(1.0f);
    switch (op) {
    case LMC_UNARY_NEG: return v_sub(v_set1(0.0f), x);
    case LMC_UNARY_ABS: return v_abs(x);
    case LMC_UNARY_SQUARE: return v_mul(x, x);
    case LMC_UNARY_SQRT: return v_sqrt(x);
    case LMC_UNARY_RSQRT: return v_div(one, v_sqrt(x));
    case LMC_UNARY_EXP: return v_exp(x);
    case LMC_UNARY_TANH: return v_tanh(x);
    case LMC_UNARY_SIGMOID: return v_div(one, v_add(one, v_exp(v_sub(v_set1(0.0f), x))));
    case LMC_UNARY_SILU: return v_div(x, v_add(one, v_exp(v_sub(v_set1(0.0f), x))));
    case LMC_UNARY_GELU_TANH: {
        /* 0.5x(1 + tanh(u)) = x / (1 + exp(-2u)), 2u = x(2c + 2c*0.044715 x^2), c = sqrt(2/pi) */
        V two_u = v_mul(x, v_fma(v_set1(0.0713548162726008f), v_mul(x, x), v_set1(1.5957691216057308f)));
        return v_div(x, v_add(one, v_exp(v_sub(v_set1(0.0f), two_u))));
    }
    default: return x; /* not reached: see simd_unary_op */
    }
}

static bool simd_unary_op(lmc_unary_op op) {
    switch (op) {
    case LMC_UNARY_NEG: case LMC_UNARY_ABS: case LMC_UNARY_SQUARE: case LMC_UNARY_SQRT: case LMC_UNARY_RSQRT:
    case LMC_UNARY_EXP: case LMC_UNARY_TANH: case LMC_UNARY_SIGMOID: case LMC_UNARY_SILU: case LMC_UNARY_GELU_TANH:
        return true;
    default: return false;
    }
}

static inline V v_binary(lmc_binary_op op, V a, V b) {
    switch (op) {
    case LMC_BINARY_ADD: return v_add(a, b);
    case LMC_BINARY_SUB: return v_sub(a, b);
    case LMC_BINARY_MUL: return v_mul(a, b);
    case LMC_BINARY_DIV: return v_div(a, b);
    /* NaN in either gives NaN (a + b is NaN exactly then). */
    case LMC_BINARY_MAXIMUM: return v_select(v_unord(a, b), v_add(a, b), v_max(a, b));
    case LMC_BINARY_MINIMUM: return v_select(v_unord(a, b), v_add(a, b), v_min(a, b));
    default: return a; /* not reached */
    }
}

static bool simd_binary_op(lmc_binary_op op) { return op <= LMC_BINARY_DIV || op == LMC_BINARY_MAXIMUM || op == LMC_BINARY_MINIMUM; }
static bool simd_dtype(lmc_dtype dt) { return dt == LMC_F32 || dt == LMC_BF16; }

/* --- loads and stores by dtype (f32 or bf16) ----------------------------------- */

static inline V load_v(lmc_dtype dt, const char *p, int64_t i) {
    return dt == LMC_F32 ? v_loadf((const float *)p + i) : v_loadbf((const uint16_t *)p + i);
}
static inline void store_v(lmc_dtype dt, char *p, int64_t i, V v) {
    if (dt == LMC_F32) v_storef((float *)p + i, v);
    else v_storebf((uint16_t *)p + i, v);
}
static inline float load_1(lmc_dtype dt, const char *p, int64_t i) {
    return dt == LMC_F32 ? ((const float *)p)[i] : lmc_bf16_to_f32(((const uint16_t *)p)[i]);
}
static inline void store_1(lmc_dtype dt, char *p, int64_t i, float v) {
    if (dt == LMC_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = lmc_f32_to_bf16(v);
}

/* --- unary and binary rows ---------------------------------------------------------- */

typedef struct simd_ctx {
    int op;
    lmc_dtype out_dt, a_dt, b_dt;
} simd_ctx;

static void SIMD_FN(unary_row_)(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    (void)inner;
    const simd_ctx *c = ctx;
    lmc_unary_op op = (lmc_unary_op)c->op;
    int64_t i = 0;
    for (; i + W <= n; i += W) store_v(c->out_dt, p[0], i, v_unary(op, load_v(c->a_dt, p[1], i)));
    if (i < n) {
        float buf[W] = {0};
        for (int64_t j = i; j < n; j++) buf[j - i] = load_1(c->a_dt, p[1], j);
        v_storef(buf, v_unary(op, v_loadf(buf)));
        for (int64_t j = i; j < n; j++) store_1(c->out_dt, p[0], j, buf[j - i]);
    }
}

/* Operands a and b are contiguous (inner = element size) or broadcast (inner = 0). */
static void SIMD_FN(binary_row_)(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    const simd_ctx *c = ctx;
    lmc_binary_op op = (lmc_binary_op)c->op;
    bool sa = inner[1] == 0, sb = inner[2] == 0;
    V a1 = v_set1(load_1(c->a_dt, p[1], 0)), b1 = v_set1(load_1(c->b_dt, p[2], 0));
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        V a = sa ? a1 : load_v(c->a_dt, p[1], i), b = sb ? b1 : load_v(c->b_dt, p[2], i);
        store_v(c->out_dt, p[0], i, v_binary(op, a, b));
    }
    if (i < n) {
        float ba[W] = {0}, bb[W] = {0};
        for (int64_t j = i; j < n; j++) {
            ba[j - i] = load_1(c->a_dt, p[1], sa ? 0 : j);
            bb[j - i] = load_1(c->b_dt, p[2], sb ? 0 : j);
        }
        v_storef(ba, v_binary(op, v_loadf(ba), v_loadf(bb)));
        for (int64_t j = i; j < n; j++) store_1(c->out_dt, p[0], j, ba[j - i]);
    }
}

lmc_status SIMD_FN(lmc_cpu_unary_)(lmc_unary_op op, lmc_array *out, const lmc_array *in) {
    if (!simd_unary_op(op) || !simd_dtype(out->dtype) || !simd_dtype(in->dtype)) return lmc_cpu_unary_scalar(op, out, in);
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 2, ops);
    int last = l.ndim - 1;
    if (l.shape[last] > 1 && (l.strides[0][last] != l.esize[0] || l.strides[1][last] != l.esize[1]))
        return lmc_cpu_unary_scalar(op, out, in);
    simd_ctx c = {op, out->dtype, in->dtype, in->dtype};
    lmc_cpu_loop_run(&l, SIMD_FN(unary_row_), &c, LMC_CPU_PARALLEL_MIN);
    return LMC_OK;
}

lmc_status SIMD_FN(lmc_cpu_binary_)(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b) {
    if (!simd_binary_op(op) || !simd_dtype(out->dtype) || !simd_dtype(a->dtype) || !simd_dtype(b->dtype))
        return lmc_cpu_binary_scalar(op, out, a, b);
    const lmc_array *ops[3] = {out, a, b};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 3, ops);
    int last = l.ndim - 1;
    bool fits = l.shape[last] <= 1 || (l.strides[0][last] == l.esize[0] &&
                                       (l.strides[1][last] == l.esize[1] || l.strides[1][last] == 0) &&
                                       (l.strides[2][last] == l.esize[2] || l.strides[2][last] == 0));
    if (!fits) return lmc_cpu_binary_scalar(op, out, a, b);
    simd_ctx c = {op, out->dtype, a->dtype, b->dtype};
    lmc_cpu_loop_run(&l, SIMD_FN(binary_row_), &c, LMC_CPU_PARALLEL_MIN);
    return LMC_OK;
}

/* out = act(gate) * up in one pass: on each vector unary's arithmetic, then
 * binary's multiply, so the bits are those of the two ops (kernels.h). */
static void SIMD_FN(gated_row_)(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    (void)inner;
    const simd_ctx *c = ctx;
    lmc_unary_op op = (lmc_unary_op)c->op;
    float *o = (float *)p[0];
    const float *g = (const float *)p[1], *u = (const float *)p[2];
    int64_t i = 0;
    for (; i + W <= n; i += W) v_storef(o + i, v_mul(v_unary(op, v_loadf(g + i)), v_loadf(u + i)));
    if (i < n) {
        float bg[W] = {0}, bu[W] = {0};
        for (int64_t j = i; j < n; j++) {
            bg[j - i] = g[j];
            bu[j - i] = u[j];
        }
        v_storef(bg, v_mul(v_unary(op, v_loadf(bg)), v_loadf(bu)));
        for (int64_t j = i; j < n; j++) o[j] = bg[j - i];
    }
}

lmc_status SIMD_FN(lmc_cpu_gated_act_)(lmc_unary_op act, lmc_array *out, const lmc_array *gate, const lmc_array *up) {
    const lmc_array *ops[3] = {out, gate, up};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 3, ops);
    int last = l.ndim - 1;
    bool rows = l.shape[last] <= 1 || (l.strides[0][last] == 4 && l.strides[1][last] == 4 && l.strides[2][last] == 4);
    if (!simd_unary_op(act) || !rows) { /* the two ops, the second in place */
        LMC_CHECK(SIMD_FN(lmc_cpu_unary_)(act, out, gate));
        return SIMD_FN(lmc_cpu_binary_)(LMC_BINARY_MUL, out, out, up);
    }
    simd_ctx c = {act, LMC_F32, LMC_F32, LMC_F32};
    /* An exp and a divide an element: a decode step's 6912-8192 (Gemma 3,
     * Llama 3.2 1B) took 8-13 us on one core of an AMX Xeon, so the threads
     * share it, in chunks of 4096, from 4096 elements on (the results do
     * not depend on the split). */
    lmc_cpu_loop_run(&l, SIMD_FN(gated_row_), &c, 4096);
    return LMC_OK;
}

void SIMD_FN(lmc_cpu_exp_f32_)(float *y, const float *x, int64_t n) {
    char *p[2] = {(char *)y, (char *)x};
    int64_t inner[2] = {4, 4};
    simd_ctx c = {LMC_UNARY_EXP, LMC_F32, LMC_F32, LMC_F32};
    SIMD_FN(unary_row_)(&c, p, inner, n);
}

/* --- reductions along a contiguous f32 row ----------------------------------------- */

/* Sum in a fixed order: four vector accumulators, then the leftovers in sequence. */
static float row_sum(const float *x, int64_t n) {
    V a0 = v_set1(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        a0 = v_add(a0, v_loadf(x + i));
        a1 = v_add(a1, v_loadf(x + i + W));
        a2 = v_add(a2, v_loadf(x + i + 2 * W));
        a3 = v_add(a3, v_loadf(x + i + 3 * W));
    }
    for (; i + W <= n; i += W) a0 = v_add(a0, v_loadf(x + i));
    float s = v_hsum(v_add(v_add(a0, a1), v_add(a2, a3)));
    for (; i < n; i++) s += x[i];
    return s;
}

/* The maximum, NaN when the row holds one. */
static float row_max(const float *x, int64_t n) {
    V m = v_set1(-INFINITY);
    M nan = v_unord(m, m);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        V v = v_loadf(x + i);
        nan = m_or(nan, v_unord(v, v));
        m = v_max(m, v);
    }
    if (m_any(nan)) return NAN;
    float r = v_hmax(m);
    for (; i < n; i++) {
        if (isnan(x[i])) return NAN;
        if (x[i] > r) r = x[i];
    }
    return r;
}

/* Index of the first maximum, or of the first NaN. Lane k tracks elements
 * k, k+W, ...; a strictly greater value replaces the lane's best, so each
 * lane keeps its first maximum and the lowest index among lanes wins ties. */
static int64_t row_argmax(const float *x, int64_t n) {
    int64_t i = 0, best = 0;
    float bv = -INFINITY;
    if (n >= W) {
        float lane_idx[W];
        for (int k = 0; k < W; k++) lane_idx[k] = (float)k;
        V bvals = v_loadf(x), bidx = v_loadf(lane_idx), idx = bidx, step = v_set1((float)W);
        M nan = v_unord(bvals, bvals);
        for (i = W; i + W <= n; i += W) {
            idx = v_add(idx, step);
            V v = v_loadf(x + i);
            nan = m_or(nan, v_unord(v, v));
            M gt = v_gt(v, bvals);
            bvals = v_select(gt, v, bvals);
            bidx = v_select(gt, idx, bidx);
        }
        if (m_any(nan)) {
            for (int64_t j = 0; j < n; j++)
                if (isnan(x[j])) return j;
        }
        float vals[W], idxs[W];
        v_storef(vals, bvals);
        v_storef(idxs, bidx);
        bv = vals[0], best = (int64_t)idxs[0];
        for (int k = 1; k < W; k++)
            if (vals[k] > bv || (vals[k] == bv && (int64_t)idxs[k] < best)) bv = vals[k], best = (int64_t)idxs[k];
    } else if (n > 0) {
        bv = x[0];
        if (isnan(bv)) return 0;
        i = 1;
    }
    for (; i < n; i++) {
        if (isnan(x[i])) return i;
        if (x[i] > bv) bv = x[i], best = i;
    }
    return best;
}

/* Sum of exp(x - shift), and optionally the terms written to y. */
static float row_sum_exp(const float *x, int64_t n, float shift, float *y) {
    V s = v_set1(0.0f), sh = v_set1(shift);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        V e = v_exp(v_sub(v_loadf(x + i), sh));
        if (y) v_storef(y + i, e);
        s = v_add(s, e);
    }
    float total = v_hsum(s);
    if (i < n) {
        float buf[W];
        for (int k = 0; k < W; k++) buf[k] = i + k < n ? x[i + k] - shift : -INFINITY;
        v_storef(buf, v_exp(v_loadf(buf)));
        for (int64_t j = i; j < n; j++) {
            if (y) y[j] = buf[j - i];
            total += buf[j - i];
        }
    }
    return total;
}

/* The shift for exp: the maximum when finite (all -inf gives -inf / NaN as the oracle). */
static float exp_shift(float m) { return isfinite(m) ? m : 0.0f; }

typedef struct simd_reduce_ctx {
    lmc_reduce_op op;
} simd_reduce_ctx;

static void SIMD_FN(reduce_lane_)(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    const simd_reduce_ctx *c = ctx;
    const float *x = (const float *)p[1];
    int64_t n = ln->len[1];
    switch (c->op) {
    case LMC_REDUCE_SUM: *(float *)p[0] = row_sum(x, n); break;
    case LMC_REDUCE_MEAN: *(float *)p[0] = n ? (float)((double)row_sum(x, n) / (double)n) : NAN; break;
    case LMC_REDUCE_MAX: *(float *)p[0] = row_max(x, n); break;
    case LMC_REDUCE_ARGMAX: *(int32_t *)p[0] = (int32_t)row_argmax(x, n); break;
    case LMC_REDUCE_LOGSUMEXP: {
        float m = n ? row_max(x, n) : -INFINITY, sh = exp_shift(m);
        *(float *)p[0] = (float)(log((double)row_sum_exp(x, n, sh, NULL)) + (double)sh);
        break;
    }
    default: break;
    }
}

/* True when `axis` is the last one and contiguous in every array given. */
static bool last_axis_contiguous(int axis, const lmc_array *a, const lmc_array *b) {
    if (axis != a->ndim - 1) return false;
    if (a->shape[axis] > 1 && a->strides[axis] != 1) return false;
    return !b || b->shape[axis] <= 1 || b->strides[axis] == 1;
}

lmc_status SIMD_FN(lmc_cpu_reduce_)(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis) {
    bool fast = in->dtype == LMC_F32 && last_axis_contiguous(axis, in, NULL) && in->shape[axis] < (1 << 24);
    if (op == LMC_REDUCE_ARGMAX) fast = fast && out->dtype == LMC_I32;
    else if (op == LMC_REDUCE_SUM || op == LMC_REDUCE_MEAN || op == LMC_REDUCE_MAX || op == LMC_REDUCE_LOGSUMEXP)
        fast = fast && out->dtype == LMC_F32;
    else fast = false;
    if (!fast) return lmc_cpu_reduce_scalar(op, out, in, axis);
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, 2, ops, axis);
    simd_reduce_ctx c = {op};
    lmc_cpu_lanes_run(&ln, SIMD_FN(reduce_lane_), &c);
    return LMC_OK;
}

static void SIMD_FN(softmax_lane_)(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    bool log_out = *(const bool *)ctx;
    float *y = (float *)p[0];
    const float *x = (const float *)p[1];
    int64_t n = ln->len[1];
    if (n == 0) return;
    float sh = exp_shift(row_max(x, n));
    if (log_out) {
        float o = (float)((double)sh + log((double)row_sum_exp(x, n, sh, NULL)));
        V off = v_set1(o);
        int64_t i = 0;
        for (; i + W <= n; i += W) v_storef(y + i, v_sub(v_loadf(x + i), off));
        for (; i < n; i++) y[i] = x[i] - o;
        return;
    }
    float s = 1.0f / row_sum_exp(x, n, sh, y);
    V inv = v_set1(s);
    int64_t i = 0;
    for (; i + W <= n; i += W) v_storef(y + i, v_mul(v_loadf(y + i), inv));
    for (; i < n; i++) y[i] *= s;
}

lmc_status SIMD_FN(lmc_cpu_softmax_)(lmc_array *out, const lmc_array *in, int axis, bool log) {
    if (in->dtype != LMC_F32 || out->dtype != LMC_F32 || !last_axis_contiguous(axis, in, out))
        return lmc_cpu_softmax_scalar(out, in, axis, log);
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, 2, ops, axis);
    lmc_cpu_lanes_run(&ln, SIMD_FN(softmax_lane_), &log);
    return LMC_OK;
}
