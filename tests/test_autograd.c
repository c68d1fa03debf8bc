/* Autograd: every backward rule against central finite differences, plus
 * gradient accumulation, checkpointing, cross-entropy, errors and leaks.
 *
 * Method: for a function f of f32 inputs and a fixed random cotangent R,
 * lmc_vjp gives d<R, f>/d input; each checked element is perturbed by ±h
 * (h = 1e-2 unless stated) and <R, f> is summed in double on the host, so
 * the finite difference has truncation error O(h²) and rounding error about
 * 1e-5. Tolerance: |analytic - numeric| <= 5e-4 + 2e-3·|numeric| (all
 * checks pass at 2e-4 + 1e-3 on every CPU path; a rule off by 1% fails). Inputs avoid kinks (|x| away from 0 for abs, ties
 * for max/min) by more than h. Inputs larger than 40 elements are checked
 * on 40 seeded random elements. */
#include <stdint.h>

#include "core/array.h"
#include "core/cpu.h"
#include "lmc/ops.h"
#include "lmc/train.h"
#include "test_util.h"
#include "train/tape.h"

#define FD_ATOL 5e-4
#define FD_RTOL 2e-3

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) * 0x1p-53;
}

static lmc_array *rnd(int ndim, const int64_t *shape, double lo, double hi) {
    lmc_array *a = lmc_zeros(LMC_F32, ndim, shape);
    float *p = lmc_array_ptr(a);
    for (int64_t i = 0; i < a->size; i++) p[i] = (float)(lo + (hi - lo) * urand());
    return a;
}
#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

static lmc_array *ints(const int32_t *v, int ndim, const int64_t *shape) { return lmc_array_from_data(v, LMC_I32, ndim, shape); }

static float *read_f32(const lmc_array *a) {
    float *v = malloc((size_t)(a->size ? a->size : 1) * sizeof(float));
    if (lmc_array_read(a, LMC_F32, v, (size_t)a->size) != LMC_OK) memset(v, 0, (size_t)a->size * sizeof(float));
    return v;
}

/* --- the function under test ------------------------------------------------------ */

enum {
    F_UNARY, F_BINARY, F_ADD_SCALAR, F_MUL_SCALAR, F_WHERE, F_RESHAPE, F_PERMUTE, F_TRANSPOSE, F_SWAPAXES,
    F_BROADCAST, F_EXPAND, F_SQUEEZE, F_SLICE, F_CONCAT, F_CONTIGUOUS, F_COPY, F_TAKE, F_TAKE_ALONG, F_REDUCE,
    F_SOFTMAX, F_LOG_SOFTMAX, F_CUMSUM, F_MATMUL, F_MATMUL_AT, F_MATMUL_BT, F_RMS, F_LN, F_ROPE, F_SDPA, F_QMM,
    F_XENT, F_REUSE,
};

typedef struct fcase {
    int f, code, axis;
    bool flag;
    double s;
    int64_t start, stop, step;
    const lmc_array *aux, *aux2, *aux3; /* indices, cond, mask, positions, quantised weight parts */
    lmc_rope_params rope;
    lmc_sdpa_params sdpa;
} fcase;

static lmc_array *unary_op(int code, const lmc_array *a) {
    switch (code) {
    case 0: return lmc_neg(a);
    case 1: return lmc_abs(a);
    case 2: return lmc_exp(a);
    case 3: return lmc_log(a);
    case 4: return lmc_sqrt(a);
    case 5: return lmc_rsqrt(a);
    case 6: return lmc_square(a);
    case 7: return lmc_sin(a);
    case 8: return lmc_cos(a);
    case 9: return lmc_tanh(a);
    case 10: return lmc_sigmoid(a);
    case 11: return lmc_silu(a);
    case 12: return lmc_gelu(a);
    case 13: return lmc_gelu_tanh(a);
    }
    return NULL;
}
static const char *const UNARY_NAMES[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "square",
                                          "sin", "cos", "tanh", "sigmoid", "silu", "gelu", "gelu_tanh"};

static lmc_array *binary_op(int code, const lmc_array *a, const lmc_array *b) {
    switch (code) {
    case 0: return lmc_add(a, b);
    case 1: return lmc_sub(a, b);
    case 2: return lmc_mul(a, b);
    case 3: return lmc_div(a, b);
    case 4: return lmc_pow(a, b);
    case 5: return lmc_maximum(a, b);
    case 6: return lmc_minimum(a, b);
    }
    return NULL;
}

static lmc_array *reduce_op(int code, const lmc_array *a, int axis, bool keep) {
    switch (code) {
    case 0: return lmc_sum(a, axis, keep);
    case 1: return lmc_mean(a, axis, keep);
    case 2: return lmc_max(a, axis, keep);
    case 3: return lmc_min(a, axis, keep);
    case 4: return lmc_logsumexp(a, axis, keep);
    }
    return NULL;
}

/* Every function runs in its own scope, freeing intermediates early where
 * it can (as the decoder does), to exercise the tape's ownership rules. */
static lmc_array *apply(void *ctx, int n, lmc_array *const *x) {
    const fcase *c = ctx;
    (void)n;
    lmc_scope_begin();
    lmc_array *y = NULL;
    switch (c->f) {
    case F_UNARY: y = unary_op(c->code, x[0]); break;
    case F_BINARY: y = binary_op(c->code, x[0], x[1]); break;
    case F_ADD_SCALAR: y = lmc_add_scalar(x[0], c->s); break;
    case F_MUL_SCALAR: y = lmc_mul_scalar(x[0], c->s); break;
    case F_WHERE: y = lmc_where(c->aux, x[0], x[1]); break;
    case F_RESHAPE: y = lmc_mul(lmc_reshape(x[0], SHAPE(2, -1)), lmc_reshape(x[0], SHAPE(2, -1))); break;
    case F_PERMUTE: y = lmc_permute(x[0], (int[]){2, 0, 1}); break;
    case F_TRANSPOSE: y = lmc_mul(lmc_transpose(x[0]), x[1]); break;
    case F_SWAPAXES: y = lmc_swapaxes(x[0], 0, 2); break;
    case F_BROADCAST: y = lmc_broadcast_to(x[0], SHAPE(2, 3, 4)); break;
    case F_EXPAND: y = lmc_add(lmc_expand_dims(x[0], 1), x[1]); break;
    case F_SQUEEZE: y = lmc_squeeze(x[0], 1); break;
    case F_SLICE: y = lmc_slice(x[0], c->axis, c->start, c->stop, c->step); break;
    case F_CONCAT: y = lmc_concatenate(2, (const lmc_array *const *)x, c->axis); break;
    case F_CONTIGUOUS: y = lmc_contiguous(lmc_transpose(x[0])); break;
    case F_COPY: y = lmc_mul(lmc_copy(x[0]), x[0]); break;
    case F_TAKE: y = lmc_take(x[0], c->aux, c->axis); break;
    case F_TAKE_ALONG: y = lmc_take_along_axis(x[0], c->aux, c->axis); break;
    case F_REDUCE: y = reduce_op(c->code, x[0], c->axis, c->flag); break;
    case F_SOFTMAX: y = lmc_softmax(x[0], c->axis); break;
    case F_LOG_SOFTMAX: y = lmc_log_softmax(x[0], c->axis); break;
    case F_CUMSUM: y = lmc_cumsum(x[0], c->axis, c->flag); break;
    case F_MATMUL: y = lmc_matmul(x[0], x[1]); break;
    case F_MATMUL_AT: y = lmc_matmul(lmc_transpose(x[0]), x[1]); break;
    case F_MATMUL_BT: { /* the nn.Linear pattern: x @ Wᵀ with W [out, in] */
        lmc_array *wt = lmc_transpose(x[1]);
        y = lmc_matmul(x[0], wt);
        lmc_array_free(wt);
        break;
    }
    case F_RMS: y = lmc_rms_norm(x[0], n > 1 ? x[1] : NULL, 1e-5f, c->flag); break;
    case F_LN: y = lmc_layer_norm(x[0], n > 1 ? x[1] : NULL, n > 2 ? x[2] : NULL, 1e-5f); break;
    case F_ROPE: y = c->aux ? lmc_rope_positions(x[0], &c->rope, c->aux) : lmc_rope(x[0], &c->rope, c->start); break;
    case F_SDPA: y = lmc_sdpa(x[0], x[1], x[2], &c->sdpa); break;
    case F_QMM: y = lmc_quantized_matmul(x[0], c->aux, c->aux2, c->aux3, 32, 4); break;
    case F_XENT: y = lmc_cross_entropy(x[0], c->aux, c->aux2); break;
    case F_REUSE: { /* x used four times: x·x + x - x·3 */
        lmc_array *sq = lmc_mul(x[0], x[0]);
        lmc_array *t = lmc_add(sq, x[0]);
        lmc_array_free(sq);
        y = lmc_sub(t, lmc_mul_scalar(x[0], 3.0));
        lmc_array_free(t);
        break;
    }
    }
    y = lmc_scope_keep(y);
    lmc_scope_end();
    return y;
}

/* <r, f(x)> in double. */
static double dot_eval(fcase *c, int n, lmc_array **x, const float *r) {
    lmc_array *y = apply(c, n, x);
    if (!y) return NAN;
    float *v = read_f32(y);
    double s = 0.0;
    for (int64_t i = 0; i < y->size; i++) s += (double)v[i] * r[i];
    free(v);
    lmc_array_free(y);
    return s;
}

/* Checks d<R, f>/dx[i] for the inputs with check[i] (NULL: all). */
static void fd_check(const char *name, fcase *c, int n, lmc_array **x, const bool *check, double h) {
    int64_t live0 = lmc_live_arrays();
    lmc_array *y0 = apply(c, n, x);
    CHECKF(y0 != NULL, "%s: forward failed: %s", name, lmc_last_error());
    if (!y0) return;
    lmc_array *r = rnd(y0->ndim, y0->shape, -1.0, 1.0);
    float *rv = read_f32(r);
    lmc_array *out = NULL, *grads[8] = {0};
    lmc_status s = lmc_vjp(apply, c, n, x, r, &out, grads);
    CHECKF(s == LMC_OK, "%s: vjp failed: %s", name, lmc_last_error());
    if (s == LMC_OK) {
        float *a = read_f32(y0), *b = read_f32(out);
        bool same = out->size == y0->size;
        for (int64_t i = 0; same && i < y0->size; i++) same = a[i] == b[i] || (isnan(a[i]) && isnan(b[i]));
        CHECKF(same, "%s: vjp's result differs from a plain call", name);
        free(a);
        free(b);
    }
    for (int i = 0; i < n && s == LMC_OK; i++) {
        if ((check && !check[i]) || x[i]->dtype != LMC_F32) continue;
        CHECKF(grads[i] && grads[i]->dtype == LMC_F32 && grads[i]->size == x[i]->size, "%s: gradient %d", name, i);
        if (!grads[i]) continue;
        float *g = read_f32(grads[i]);
        float *p = lmc_array_ptr(x[i]);
        int64_t count = x[i]->size <= 40 ? x[i]->size : 40;
        int bad = 0;
        double worst = 0.0;
        for (int64_t k = 0; k < count; k++) {
            int64_t e = x[i]->size <= 40 ? k : (int64_t)(urand() * (double)x[i]->size);
            float old = p[e];
            p[e] = old + (float)h;
            double dp = (double)p[e] - old, fp = dot_eval(c, n, x, rv);
            p[e] = old - (float)h;
            double dm = old - (double)p[e], fm = dot_eval(c, n, x, rv);
            p[e] = old;
            double num = (fp - fm) / (dp + dm), err = fabs(g[e] - num);
            if (err > worst) worst = err;
            if (!(err <= FD_ATOL + FD_RTOL * fabs(num))) {
                if (bad < 3)
                    fprintf(stderr, "%s: d/dx%d[%lld]: autograd %.6g, finite difference %.6g\n", name, i, (long long)e,
                            g[e], num);
                bad++;
            }
        }
        CHECKF(bad == 0, "%s: input %d: %d of %lld elements off (worst error %.3g)", name, i, bad, (long long)count,
               worst);
        free(g);
    }
    for (int i = 0; i < n; i++) lmc_array_free(grads[i]);
    lmc_array_free(out);
    lmc_array_free(y0);
    lmc_array_free(r);
    free(rv);
    CHECKF(lmc_live_arrays() == live0, "%s: %lld arrays leaked", name, (long long)(lmc_live_arrays() - live0));
}

static void free_all(int n, lmc_array **x) {
    for (int i = 0; i < n; i++) lmc_array_free(x[i]);
}

/* --- element-wise --------------------------------------------------------------------- */

static void test_unary(void) {
    for (int code = 0; code < 14; code++) {
        fcase c = {.f = F_UNARY, .code = code};
        bool positive = code >= 3 && code <= 5; /* log, sqrt, rsqrt */
        lmc_array *x = positive ? rnd(SHAPE(3, 4), 0.3, 2.0) : rnd(SHAPE(3, 4), -2.0, 2.0);
        if (code == 1) { /* abs: keep away from the kink at 0 */
            float *p = lmc_array_ptr(x);
            for (int64_t i = 0; i < x->size; i++)
                if (fabsf(p[i]) < 0.1f) p[i] += p[i] < 0 ? -0.2f : 0.2f;
        }
        if (code == 12) ((float *)lmc_array_ptr(x))[0] = 0.0f; /* gelu at exactly 0 */
        fd_check(UNARY_NAMES[code], &c, 1, &x, NULL, 1e-2);
        lmc_array_free(x);
    }
}

static void test_binary_broadcast(void) {
    static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
    for (int code = 0; code < 7; code++) {
        fcase c = {.f = F_BINARY, .code = code};
        /* a [2, 3, 4] against b [3, 1]; and a [3, 1] against b [1, 4] (both broadcast). */
        for (int layout = 0; layout < 2; layout++) {
            lmc_array *x[2];
            if (layout == 0) x[0] = rnd(SHAPE(2, 3, 4), 0.5, 2.0), x[1] = rnd(SHAPE(3, 1), 0.5, 2.0);
            else x[0] = rnd(SHAPE(3, 1), 0.5, 2.0), x[1] = rnd(SHAPE(1, 4), 0.5, 2.0);
            if (code >= 5) { /* max/min: values on two interleaved grids, never within 0.1 of each other */
                for (int k = 0; k < 2; k++) {
                    float *p = lmc_array_ptr(x[k]);
                    for (int64_t i = 0; i < x[k]->size; i++) p[i] = (float)(0.25 * floor(urand() * 12) + (k ? 0.1 : 0.0));
                }
            }
            char name[64];
            snprintf(name, sizeof name, "%s (layout %d)", names[code], layout);
            fd_check(name, &c, 2, x, NULL, 1e-2);
            free_all(2, x);
        }
    }
    /* Equal inputs: maximum/minimum split the gradient evenly (as PyTorch). */
    lmc_array *a = rnd(SHAPE(4), -1, 1), *ones = lmc_ones(LMC_F32, SHAPE(4));
    lmc_array *x[2] = {a, a}, *out, *g[2];
    fcase c = {.f = F_BINARY, .code = 5};
    CHECK(lmc_vjp(apply, &c, 2, x, ones, &out, g) == LMC_OK);
    float *gv = read_f32(g[0]);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(gv[i], 1.0, 0, 0); /* 0.5 + 0.5: the same array twice */
    free(gv);
    lmc_array_free(out);
    free_all(2, g);
    lmc_array_free(a);
    lmc_array_free(ones);
}

static void test_scalar_where_astype(void) {
    fcase c = {.f = F_ADD_SCALAR, .s = 1.5};
    lmc_array *x = rnd(SHAPE(3, 4), -1, 1);
    fd_check("add_scalar", &c, 1, &x, NULL, 1e-2);
    c.f = F_MUL_SCALAR;
    c.s = -2.5;
    fd_check("mul_scalar", &c, 1, &x, NULL, 1e-2);

    bool cond[12] = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
    lmc_array *cv = lmc_array_from_data(cond, LMC_BOOL, SHAPE(3, 4));
    lmc_array *xy[2] = {x, rnd(SHAPE(4), -1, 1)}; /* y broadcast along rows */
    c = (fcase){.f = F_WHERE, .aux = cv};
    fd_check("where", &c, 2, xy, NULL, 1e-2);
    lmc_array_free(xy[1]);
    lmc_array_free(cv);

    /* astype: the gradient passes through the cast unchanged, in f32 (a
     * bf16 round trip has no useful finite difference, so this one is exact). */
    lmc_array *r = rnd(SHAPE(3, 4), -1, 1), *out, *g;
    c = (fcase){.f = F_UNARY, .code = 0};
    lmc_array *xb = lmc_astype(x, LMC_BF16);
    CHECK(lmc_vjp(apply, &c, 1, &xb, r, &out, &g) == LMC_OK);
    CHECK(g && g->dtype == LMC_F32 && out->dtype == LMC_BF16);
    float *gv = read_f32(g), *rv = read_f32(r);
    for (int i = 0; i < 12; i++) CHECK_CLOSE(gv[i], -rv[i], 0, 0);
    free(gv);
    free(rv);
    lmc_array_free(out);
    lmc_array_free(g);
    lmc_array_free(xb);
    lmc_array_free(r);
    lmc_array_free(x);
}

/* d/dx sum(r · astype(x, bf16)) = r exactly. */
static lmc_array *cast_fn(void *ctx, int n, lmc_array *const *x) {
    (void)ctx, (void)n;
    return lmc_astype(x[0], LMC_BF16);
}

static void test_astype_exact(void) {
    lmc_array *x = rnd(SHAPE(5), -1, 1), *r = rnd(SHAPE(5), -1, 1), *out, *g;
    CHECK(lmc_vjp(cast_fn, NULL, 1, &x, r, &out, &g) == LMC_OK);
    float *gv = read_f32(g), *rv = read_f32(r);
    for (int i = 0; i < 5; i++) CHECK_CLOSE(gv[i], rv[i], 0, 0);
    free(gv);
    free(rv);
    lmc_array_free(out);
    lmc_array_free(g);
    lmc_array_free(x);
    lmc_array_free(r);
}

/* --- shape ops ---------------------------------------------------------------------- */

static void test_shape_ops(void) {
    lmc_array *x = rnd(SHAPE(2, 3, 4), -1, 1);
    fcase c = {.f = F_RESHAPE};
    fd_check("reshape", &c, 1, &x, NULL, 1e-2);
    c.f = F_PERMUTE;
    fd_check("permute", &c, 1, &x, NULL, 1e-2);
    c.f = F_SWAPAXES;
    fd_check("swapaxes", &c, 1, &x, NULL, 1e-2);
    lmc_array *t2[2] = {rnd(SHAPE(4, 3), -1, 1), rnd(SHAPE(3, 4), -1, 1)};
    c.f = F_TRANSPOSE;
    fd_check("transpose", &c, 2, t2, NULL, 1e-2);
    c.f = F_CONTIGUOUS;
    fd_check("contiguous of a transposed view", &c, 1, t2, NULL, 1e-2);
    c.f = F_COPY;
    fd_check("copy", &c, 1, t2, NULL, 1e-2);
    free_all(2, t2);

    lmc_array *b = rnd(SHAPE(3, 1), -1, 1);
    c.f = F_BROADCAST;
    fd_check("broadcast_to", &c, 1, &b, NULL, 1e-2);
    lmc_array_free(b);
    lmc_array *e[2] = {rnd(SHAPE(2, 4), -1, 1), rnd(SHAPE(3, 4), -1, 1)};
    c.f = F_EXPAND;
    fd_check("expand_dims", &c, 2, e, NULL, 1e-2);
    free_all(2, e);
    lmc_array *q = rnd(SHAPE(3, 1, 2), -1, 1);
    c.f = F_SQUEEZE;
    fd_check("squeeze", &c, 1, &q, NULL, 1e-2);
    lmc_array_free(q);

    c = (fcase){.f = F_SLICE, .axis = 2, .start = 1, .stop = LMC_END, .step = 2};
    fd_check("slice step 2", &c, 1, &x, NULL, 1e-2);
    c = (fcase){.f = F_SLICE, .axis = -2, .start = -1, .stop = LMC_END, .step = -2};
    fd_check("slice negative step", &c, 1, &x, NULL, 1e-2);
    lmc_array *cat[2] = {rnd(SHAPE(2, 3, 4), -1, 1), rnd(SHAPE(2, 2, 4), -1, 1)};
    c = (fcase){.f = F_CONCAT, .axis = 1};
    fd_check("concatenate", &c, 2, cat, NULL, 1e-2);
    free_all(2, cat);
    lmc_array_free(x);
}

static void test_indexing(void) {
    /* Embedding rows with a repeated id and a negative one: the table's gradient accumulates. */
    lmc_array *table = rnd(SHAPE(5, 3), -1, 1);
    int32_t ids[6] = {1, 4, 1, 0, -1, 1};
    lmc_array *iv = ints(ids, SHAPE(2, 3));
    fcase c = {.f = F_TAKE, .axis = 0, .aux = iv};
    fd_check("take axis 0", &c, 1, &table, NULL, 1e-2);
    int32_t cols[2] = {2, 2};
    lmc_array *cv = ints(cols, SHAPE(2));
    c = (fcase){.f = F_TAKE, .axis = 1, .aux = cv};
    fd_check("take axis 1 (repeated)", &c, 1, &table, NULL, 1e-2);
    int32_t along[10] = {0, 2, 2, 1, 0, 1, 1, 1, 2, 0};
    lmc_array *av = ints(along, SHAPE(5, 2));
    c = (fcase){.f = F_TAKE_ALONG, .axis = 1, .aux = av};
    fd_check("take_along_axis", &c, 1, &table, NULL, 1e-2);
    lmc_array *bcast = rnd(SHAPE(1, 3), -1, 1); /* a broadcast against the indices */
    fd_check("take_along_axis broadcast", &c, 1, &bcast, NULL, 1e-2);
    lmc_array_free(bcast);
    lmc_array_free(av);
    lmc_array_free(cv);
    lmc_array_free(iv);
    lmc_array_free(table);
}

/* --- reductions -------------------------------------------------------------------- */

static void test_reductions(void) {
    static const char *names[] = {"sum", "mean", "max", "min", "logsumexp"};
    lmc_array *x = rnd(SHAPE(3, 4, 5), -2, 2);
    for (int code = 0; code < 5; code++) {
        int axes[3] = {1, -1, LMC_ALL_AXES};
        for (int k = 0; k < 3; k++) {
            fcase c = {.f = F_REDUCE, .code = code, .axis = axes[k], .flag = k == 0};
            char name[64];
            snprintf(name, sizeof name, "%s axis %d keepdims %d", names[code], axes[k] == LMC_ALL_AXES ? 99 : axes[k], k == 0);
            fd_check(name, &c, 1, &x, NULL, 1e-2);
        }
    }
    /* Max with ties shares the gradient: d max([2, 2, 1]) = [1/2, 1/2, 0]. */
    float tv[3] = {2, 2, 1};
    lmc_array *t = lmc_array_from_data(tv, LMC_F32, SHAPE(3)), *one = lmc_ones(LMC_F32, 0, NULL), *out, *g;
    fcase c = {.f = F_REDUCE, .code = 2, .axis = 0};
    CHECK(lmc_vjp(apply, &c, 1, &t, one, &out, &g) == LMC_OK);
    float *gv = read_f32(g);
    CHECK(gv[0] == 0.5f && gv[1] == 0.5f && gv[2] == 0.0f);
    free(gv);
    lmc_array_free(out);
    lmc_array_free(g);
    lmc_array_free(t);
    lmc_array_free(one);

    fcase s = {.f = F_SOFTMAX, .axis = -1};
    fd_check("softmax", &s, 1, &x, NULL, 1e-2);
    s.axis = 0;
    fd_check("softmax axis 0", &s, 1, &x, NULL, 1e-2);
    s.f = F_LOG_SOFTMAX;
    s.axis = 1;
    fd_check("log_softmax", &s, 1, &x, NULL, 1e-2);
    s = (fcase){.f = F_CUMSUM, .axis = 1, .flag = false};
    fd_check("cumsum", &s, 1, &x, NULL, 1e-2);
    s.flag = true;
    fd_check("cumsum reverse", &s, 1, &x, NULL, 1e-2);
    lmc_array_free(x);
}

/* --- matmul ----------------------------------------------------------------------- */

static void test_matmul(void) {
    struct {
        const char *name;
        int f;
        int na, nb;
        int64_t sa[4], sb[4];
    } cases[] = {
        {"matmul 2-d", F_MATMUL, 2, 2, {3, 4}, {4, 5}},
        {"matmul batched", F_MATMUL, 3, 2, {2, 3, 4}, {4, 5}},
        {"matmul broadcast batch", F_MATMUL, 4, 3, {2, 1, 3, 4}, {3, 4, 2}},
        {"matmul 1-d @ 2-d", F_MATMUL, 1, 2, {4}, {4, 5}},
        {"matmul 2-d @ 1-d", F_MATMUL, 2, 1, {3, 4}, {4}},
        {"matmul transposed a", F_MATMUL_AT, 2, 2, {4, 3}, {4, 5}},
        {"matmul transposed b (x Wt)", F_MATMUL_BT, 3, 2, {2, 3, 4}, {5, 4}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lmc_array *x[2] = {rnd(cases[i].na, cases[i].sa, -1, 1), rnd(cases[i].nb, cases[i].sb, -1, 1)};
        fcase c = {.f = cases[i].f};
        fd_check(cases[i].name, &c, 2, x, NULL, 1e-2);
        free_all(2, x);
    }
}

/* --- fused ------------------------------------------------------------------------- */

static void test_norms(void) {
    lmc_array *x[3] = {rnd(SHAPE(2, 3, 8), -2, 2), rnd(SHAPE(8), 0.5, 1.5), rnd(SHAPE(8), -0.5, 0.5)};
    fcase c = {.f = F_RMS};
    fd_check("rms_norm", &c, 2, x, NULL, 1e-2);
    c.flag = true;
    fd_check("rms_norm (1 + w)", &c, 2, x, NULL, 1e-2);
    fd_check("rms_norm without w", &c, 1, x, NULL, 1e-2);
    c = (fcase){.f = F_LN};
    fd_check("layer_norm", &c, 3, x, NULL, 1e-2);
    fd_check("layer_norm without w, b", &c, 1, x, NULL, 1e-2);
    free_all(3, x);
}

static void test_rope(void) {
    lmc_array *x = rnd(SHAPE(2, 2, 5, 8), -1, 1);
    fcase c = {.f = F_ROPE, .start = 3, .rope = lmc_rope_params_default(8, 10000.0f)};
    fd_check("rope (halves)", &c, 1, &x, NULL, 1e-2);
    c.rope.traditional = true;
    c.rope.dims = 6; /* two features pass through */
    c.rope.scale = 0.5f;
    fd_check("rope (pairs, partial, scaled)", &c, 1, &x, NULL, 1e-2);
    float fv[4] = {1.0f, 0.3f, 0.05f, 0.01f};
    lmc_array *freqs = lmc_array_from_data(fv, LMC_F32, SHAPE(4));
    int32_t pv[10] = {0, 1, 2, 3, 4, 7, 3, 9, 2, 1};
    lmc_array *pos = ints(pv, SHAPE(2, 5));
    c = (fcase){.f = F_ROPE, .aux = pos, .rope = lmc_rope_params_default(8, 10000.0f)};
    c.rope.inv_freqs = freqs;
    fd_check("rope (positions [B, T], inv_freqs)", &c, 1, &x, NULL, 1e-2);
    lmc_array_free(pos);
    lmc_array_free(freqs);
    lmc_array_free(x);
}

static void test_sdpa(void) {
    /* GQA: 4 query heads over 2 key/value heads; Tq = 3 queries at the end of Tk = 5 keys. */
    lmc_array *x[3] = {rnd(SHAPE(2, 4, 3, 4), -1, 1), rnd(SHAPE(2, 2, 5, 4), -1, 1), rnd(SHAPE(2, 2, 5, 3), -1, 1)};
    fcase c = {.f = F_SDPA, .sdpa = lmc_sdpa_params_default(0.5f)};
    fd_check("sdpa GQA", &c, 3, x, NULL, 1e-2);
    c.sdpa.causal = true;
    fd_check("sdpa GQA causal", &c, 3, x, NULL, 1e-2);
    c.sdpa.window = 2;
    fd_check("sdpa GQA causal window 2", &c, 3, x, NULL, 1e-2);
    c.sdpa.softcap = 1.5f;
    fd_check("sdpa soft-capped", &c, 3, x, NULL, 1e-2);
    /* A bool mask that hides every key from one query row (zeros, no NaN). */
    bool keep[15] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1};
    lmc_array *mask = lmc_array_from_data(keep, LMC_BOOL, SHAPE(1, 1, 3, 5));
    c = (fcase){.f = F_SDPA, .sdpa = lmc_sdpa_params_default(0.5f)};
    c.sdpa.mask = mask;
    fd_check("sdpa bool mask with an empty row", &c, 3, x, NULL, 1e-2);
    lmc_array *add = rnd(SHAPE(2, 1, 3, 5), -2, 0);
    c.sdpa.mask = add;
    c.sdpa.causal = true;
    fd_check("sdpa additive mask", &c, 3, x, NULL, 1e-2);
    lmc_array_free(add);
    lmc_array_free(mask);
    /* Multi-query: one key/value head for three query heads. */
    lmc_array *m[3] = {rnd(SHAPE(1, 3, 4, 4), -1, 1), rnd(SHAPE(1, 1, 4, 4), -1, 1), rnd(SHAPE(1, 1, 4, 4), -1, 1)};
    c = (fcase){.f = F_SDPA, .sdpa = lmc_sdpa_params_default(0.5f)};
    c.sdpa.causal = true;
    fd_check("sdpa multi-query causal", &c, 3, m, NULL, 1e-2);
    free_all(3, m);
    free_all(3, x);
}

/* The fast 4-bit kernels round x to int16 per block, so the forward op is a
 * step function at that scale: finite differences run on the scalar path
 * (exact float products); on the active path the gradient is compared with
 * its definition R @ dequantize(W). */
static void test_quantized_matmul(void) {
    lmc_array *w = rnd(SHAPE(6, 64), -1, 1), *scales, *biases;
    lmc_array *wq = lmc_quantize(w, 32, 4, &scales, &biases);
    lmc_array *x = rnd(SHAPE(2, 3, 64), -1, 1);
    fcase c = {.f = F_QMM, .aux = wq, .aux2 = scales, .aux3 = biases};
    lmc_cpu_path path = lmc_cpu_path_active();
    lmc_cpu_path_set(LMC_PATH_SCALAR);
    int64_t saved = lmc_grad_dequant_block;
    lmc_grad_dequant_block = 128; /* two rows at a time: three blocks */
    fd_check("quantized_matmul (blocks of 2 rows)", &c, 1, &x, NULL, 1e-2);
    lmc_grad_dequant_block = saved;
    fd_check("quantized_matmul", &c, 1, &x, NULL, 1e-2);
    lmc_cpu_path_set(path);

    lmc_array *r = rnd(SHAPE(2, 3, 6), -1, 1), *out, *g;
    CHECK(lmc_vjp(apply, &c, 1, &x, r, &out, &g) == LMC_OK);
    lmc_array *wd = lmc_dequantize(wq, scales, biases, 32, 4), *want = lmc_matmul(r, wd);
    float *gv = read_f32(g), *wv = read_f32(want);
    for (int64_t i = 0; i < want->size; i++) CHECK_CLOSE(gv[i], wv[i], 1e-5, 1e-5);
    free(gv), free(wv);
    lmc_array_free(out), lmc_array_free(g), lmc_array_free(want), lmc_array_free(wd), lmc_array_free(r);
    lmc_array_free(x);
    lmc_array_free(wq);
    lmc_array_free(scales);
    lmc_array_free(biases);
    lmc_array_free(w);
}

/* --- cross-entropy ---------------------------------------------------------------- */

static void test_cross_entropy(void) {
    /* Hand-checked: logits [1, 2, 3] for two positions, targets 0 and 2, mask 1 and 0.
     * loss = logsumexp([1,2,3]) - 1 = log(e + e² + e³) - 1 = log(30.19287485) - 1 = 2.40760596;
     * d/dlogits at position 0 = softmax - onehot(0) = [0.09003057 - 1, 0.24472847, 0.66524096];
     * position 1 is masked: zero gradient. */
    float lv[6] = {1, 2, 3, 1, 2, 3};
    int32_t tv[2] = {0, 2};
    float mv[2] = {1, 0};
    lmc_array *logits = lmc_array_from_data(lv, LMC_F32, SHAPE(1, 2, 3));
    lmc_array *targets = ints(tv, SHAPE(1, 2)), *mask = lmc_array_from_data(mv, LMC_F32, SHAPE(1, 2));
    fcase c = {.f = F_XENT, .aux = targets, .aux2 = mask};
    lmc_array *loss, *g;
    CHECK(lmc_value_and_grad(apply, &c, 1, &logits, &loss, &g) == LMC_OK);
    double lval = 0;
    CHECK(lmc_array_item(loss, &lval) == LMC_OK);
    CHECK_CLOSE(lval, 2.40760596, 1e-6, 0);
    float *gv = read_f32(g);
    double want[6] = {0.09003057 - 1, 0.24472847, 0.66524096, 0, 0, 0};
    for (int i = 0; i < 6; i++) CHECK_CLOSE(gv[i], want[i], 1e-6, 0);
    free(gv);
    lmc_array_free(loss);
    lmc_array_free(g);

    /* Nothing to learn: loss 0 and zero gradients, no NaN; masked targets may be -100. */
    float zero[2] = {0, 0};
    int32_t ignored[2] = {-100, 7};
    lmc_array *m0 = lmc_array_from_data(zero, LMC_F32, SHAPE(1, 2)), *t0 = ints(ignored, SHAPE(1, 2));
    fcase c0 = {.f = F_XENT, .aux = t0, .aux2 = m0};
    CHECK(lmc_value_and_grad(apply, &c0, 1, &logits, &loss, &g) == LMC_OK);
    CHECK(lmc_array_item(loss, &lval) == LMC_OK && lval == 0.0);
    gv = read_f32(g);
    for (int i = 0; i < 6; i++) CHECK(gv[i] == 0.0f);
    free(gv);
    lmc_array_free(loss);
    lmc_array_free(g);
    lmc_array_free(m0);
    lmc_array_free(t0);
    lmc_array_free(logits);
    lmc_array_free(targets);
    lmc_array_free(mask);

    /* Finite differences on random logits [2, 3, 7], bool mask, large logits (stability). */
    lmc_array *big = rnd(SHAPE(2, 3, 7), -3, 3);
    int32_t tt[6] = {0, 6, 3, 3, 1, 5};
    bool mb[6] = {1, 1, 0, 1, 0, 1};
    lmc_array *t = ints(tt, SHAPE(2, 3)), *mk = lmc_array_from_data(mb, LMC_BOOL, SHAPE(2, 3));
    c = (fcase){.f = F_XENT, .aux = t, .aux2 = mk};
    fd_check("cross_entropy", &c, 1, &big, NULL, 1e-2);
    c.aux2 = NULL;
    fd_check("cross_entropy without mask", &c, 1, &big, NULL, 1e-2);
    float *bp = lmc_array_ptr(big);
    for (int64_t i = 0; i < big->size; i++) bp[i] += 1000.0f; /* exp would overflow without logsumexp */
    CHECK(lmc_value_and_grad(apply, &c, 1, &big, &loss, &g) == LMC_OK);
    CHECK(lmc_array_item(loss, &lval) == LMC_OK && isfinite(lval) && lval > 0 && lval < 10);
    lmc_array_free(loss);
    lmc_array_free(g);
    lmc_array_free(big);
    lmc_array_free(t);
    lmc_array_free(mk);
}

/* --- accumulation, composition ------------------------------------------------------- */

static void test_accumulation(void) {
    lmc_array *x = rnd(SHAPE(7), -2, 2), *r = lmc_ones(LMC_F32, SHAPE(7)), *out, *g;
    fcase c = {.f = F_REUSE};
    CHECK(lmc_vjp(apply, &c, 1, &x, r, &out, &g) == LMC_OK);
    float *xv = read_f32(x), *gv = read_f32(g);
    for (int i = 0; i < 7; i++) CHECK_CLOSE(gv[i], 2.0 * xv[i] + 1.0 - 3.0, 1e-6, 0); /* d(x² + x - 3x) */
    free(xv);
    free(gv);
    lmc_array_free(out);
    lmc_array_free(g);
    fd_check("array used several times", &c, 1, &x, NULL, 1e-2);
    /* The same array passed twice: each entry gets the full gradient, in its own buffer. */
    lmc_array *xx[2] = {x, x}, *gg[2];
    c = (fcase){.f = F_BINARY, .code = 2};
    CHECK(lmc_vjp(apply, &c, 2, xx, r, &out, gg) == LMC_OK);
    CHECK(gg[0] && gg[1] && gg[0]->buf != gg[1]->buf);
    xv = read_f32(x);
    float *g0 = read_f32(gg[0]), *g1 = read_f32(gg[1]);
    for (int i = 0; i < 7; i++) CHECK(g0[i] == g1[i] && fabsf(g0[i] - 2 * xv[i]) < 1e-6f);
    free(xv);
    free(g0);
    free(g1);
    free_all(2, gg);
    lmc_array_free(out);
    lmc_array_free(r);
    lmc_array_free(x);
}

/* A small pre-norm attention + MLP block with a loss, GQA, causal, RoPE. */
typedef struct block_ctx {
    const lmc_array *h, *targets, *mask;
    int64_t B, T, H, Hq, Hkv, D;
} block_ctx;

enum { P_NORM, P_WQ, P_WK, P_WV, P_WO, P_UP, P_DOWN, P_HEAD, P_COUNT };

static lmc_array *linear_t(const lmc_array *x, const lmc_array *w) {
    lmc_array *wt = lmc_transpose(w);
    lmc_array *y = lmc_matmul(x, wt);
    lmc_array_free(wt);
    return y;
}

static lmc_array *heads(const lmc_array *x, int64_t B, int64_t T, int64_t H, int64_t D) {
    lmc_array *r = lmc_reshape(x, 4, (int64_t[]){B, T, H, D});
    lmc_array *t = lmc_swapaxes(r, 1, 2);
    lmc_array_free(r);
    return t;
}

static lmc_array *block_loss(void *ctx, int n, lmc_array *const *p) {
    const block_ctx *b = ctx;
    (void)n;
    lmc_scope_begin();
    lmc_array *x = lmc_rms_norm(b->h, p[P_NORM], 1e-6f, true);
    lmc_array *q = heads(linear_t(x, p[P_WQ]), b->B, b->T, b->Hq, b->D);
    lmc_array *k = heads(linear_t(x, p[P_WK]), b->B, b->T, b->Hkv, b->D);
    lmc_array *v = heads(linear_t(x, p[P_WV]), b->B, b->T, b->Hkv, b->D);
    lmc_rope_params rp = lmc_rope_params_default((int)b->D, 10000.0f);
    q = lmc_rope(q, &rp, 0);
    k = lmc_rope(k, &rp, 0);
    lmc_sdpa_params sp = lmc_sdpa_params_default(1.0f / sqrtf((float)b->D));
    sp.causal = true;
    lmc_array *a = lmc_reshape(lmc_swapaxes(lmc_sdpa(q, k, v, &sp), 1, 2), 3, (int64_t[]){b->B, b->T, b->Hq * b->D});
    lmc_array *h = lmc_add(b->h, linear_t(a, p[P_WO]));
    lmc_array *m = linear_t(lmc_silu(linear_t(h, p[P_UP])), p[P_DOWN]);
    h = lmc_add(h, m);
    lmc_array *loss = lmc_scope_keep(lmc_cross_entropy(linear_t(h, p[P_HEAD]), b->targets, b->mask));
    lmc_scope_end();
    return loss;
}

static void test_block(void) {
    block_ctx b = {.B = 2, .T = 5, .H = 8, .Hq = 4, .Hkv = 2, .D = 4};
    const int64_t V = 11, F = 12;
    lmc_array *h = rnd(SHAPE(2, 5, 8), -1, 1);
    int32_t tv[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float mv[10] = {0, 1, 1, 1, 1, 0, 0, 1, 1, 0};
    lmc_array *t = ints(tv, SHAPE(2, 5)), *mk = lmc_array_from_data(mv, LMC_F32, SHAPE(2, 5));
    b.h = h, b.targets = t, b.mask = mk;
    lmc_array *p[P_COUNT] = {
        rnd(SHAPE(8), -0.2, 0.2),    rnd(SHAPE(16, 8), -0.5, 0.5), rnd(SHAPE(8, 8), -0.5, 0.5), rnd(SHAPE(8, 8), -0.5, 0.5),
        rnd(SHAPE(8, 16), -0.5, 0.5), rnd(SHAPE(F, 8), -0.5, 0.5),  rnd(SHAPE(8, F), -0.5, 0.5), rnd(SHAPE(V, 8), -0.5, 0.5),
    };
    /* fd_check wants an fcase: check the block through a wrapper case. */
    int64_t live0 = lmc_live_arrays();
    lmc_array *loss, *g[P_COUNT];
    CHECK(lmc_value_and_grad(block_loss, &b, P_COUNT, p, &loss, g) == LMC_OK);
    for (int i = 0; i < P_COUNT; i++) {
        float *gv = read_f32(g[i]), *pp = lmc_array_ptr(p[i]);
        int bad = 0;
        for (int k = 0; k < 6; k++) {
            int64_t e = (int64_t)(urand() * (double)p[i]->size);
            float old = pp[e];
            double lp, lm;
            pp[e] = old + 1e-2f;
            lmc_array *y = block_loss(&b, P_COUNT, p);
            lmc_array_item(y, &lp);
            lmc_array_free(y);
            pp[e] = old - 1e-2f;
            y = block_loss(&b, P_COUNT, p);
            lmc_array_item(y, &lm);
            lmc_array_free(y);
            pp[e] = old;
            double num = (lp - lm) / 2e-2;
            if (!(fabs(gv[e] - num) <= 1e-3 + 5e-3 * fabs(num))) {
                fprintf(stderr, "block param %d [%lld]: autograd %.6g, finite difference %.6g\n", i, (long long)e, gv[e], num);
                bad++;
            }
        }
        CHECKF(bad == 0, "block: parameter %d", i);
        free(gv);
        lmc_array_free(g[i]);
    }
    lmc_array_free(loss);
    CHECK(lmc_live_arrays() == live0);
    free_all(P_COUNT, p);
    lmc_array_free(h);
    lmc_array_free(t);
    lmc_array_free(mk);
}

/* --- checkpointing ----------------------------------------------------------------- */

typedef struct deep_ctx {
    int layers;
    bool checkpoint;
    const lmc_array *x;
} deep_ctx;

/* One layer: h + tanh(h @ W) · 0.5, with W = inputs[1]. */
static lmc_array *deep_layer(void *ctx, int n, lmc_array *const *in) {
    (void)ctx, (void)n;
    lmc_array *a = lmc_matmul(in[0], in[1]);
    lmc_array *t = lmc_tanh(a);
    lmc_array_free(a);
    lmc_array *s = lmc_mul_scalar(t, 0.5);
    lmc_array_free(t);
    lmc_array *y = lmc_add(in[0], s);
    lmc_array_free(s);
    return y;
}

static lmc_array *deep_loss(void *ctx, int n, lmc_array *const *w) {
    const deep_ctx *d = ctx;
    (void)n;
    lmc_array *h = lmc_array_retain((lmc_array *)d->x);
    for (int i = 0; i < d->layers && h; i++) {
        lmc_array *in[2] = {h, w[i]};
        lmc_array *nh = d->checkpoint ? lmc_grad_checkpoint(deep_layer, NULL, 2, in) : deep_layer(NULL, 2, in);
        lmc_array_free(h);
        h = nh;
    }
    lmc_array *sq = lmc_square(h);
    lmc_array *loss = lmc_mean(sq, LMC_ALL_AXES, false);
    lmc_array_free(sq);
    lmc_array_free(h);
    return loss;
}

static void test_checkpoint(void) {
    enum { L = 6 };
    lmc_array *x = rnd(SHAPE(256, 64), -1, 1), *w[L];
    for (int i = 0; i < L; i++) w[i] = rnd(SHAPE(64, 64), -0.2, 0.2);
    double loss_v[2];
    size_t peak[2];
    float *grads[2][L];
    int64_t live0 = lmc_live_arrays();
    for (int ck = 0; ck < 2; ck++) {
        deep_ctx d = {.layers = L, .checkpoint = ck == 1, .x = x};
        lmc_array *loss, *g[L];
        lmc_memory_stats before = lmc_memory(LMC_CPU);
        lmc_memory_reset_peak(LMC_CPU);
        CHECK(lmc_value_and_grad(deep_loss, &d, L, w, &loss, g) == LMC_OK);
        peak[ck] = lmc_memory(LMC_CPU).peak_bytes - before.active_bytes;
        lmc_array_item(loss, &loss_v[ck]);
        for (int i = 0; i < L; i++) {
            grads[ck][i] = read_f32(g[i]);
            lmc_array_free(g[i]);
        }
        lmc_array_free(loss);
    }
    CHECK(lmc_live_arrays() == live0);
    CHECK(loss_v[0] == loss_v[1]);
    int diff = 0;
    for (int i = 0; i < L; i++)
        for (int64_t e = 0; e < 64 * 64; e++) diff += grads[0][i][e] != grads[1][i][e];
    CHECKF(diff == 0, "checkpointed gradients differ in %d elements", diff);
    CHECKF(peak[1] < peak[0] * 2 / 3, "peak memory: %zu bytes plain, %zu checkpointed", peak[0], peak[1]);
    fprintf(stderr, "checkpoint: peak %zu bytes plain, %zu checkpointed (%d layers)\n", peak[0], peak[1], L);
    for (int ck = 0; ck < 2; ck++)
        for (int i = 0; i < L; i++) free(grads[ck][i]);
    free_all(L, w);
    lmc_array_free(x);
}

/* A checkpointed function that reaches a differentiated array through its context. */
static lmc_array *sneaky_layer(void *ctx, int n, lmc_array *const *in) {
    (void)n;
    return lmc_mul(in[0], (const lmc_array *)ctx);
}
static lmc_array *sneaky_loss(void *ctx, int n, lmc_array *const *w) {
    (void)ctx, (void)n;
    lmc_array *y = lmc_grad_checkpoint(sneaky_layer, w[1], 1, w);
    lmc_array *s = lmc_sum(y, LMC_ALL_AXES, false);
    lmc_array_free(y);
    return s;
}
/* ...and one that passes it as an input, using it through the context too. */
static lmc_array *honest_loss(void *ctx, int n, lmc_array *const *w) {
    (void)ctx, (void)n;
    lmc_array *y = lmc_grad_checkpoint(sneaky_layer, w[1], 2, w);
    lmc_array *s = lmc_sum(y, LMC_ALL_AXES, false);
    lmc_array_free(y);
    return s;
}

static void test_checkpoint_inputs(void) {
    lmc_array *w[2] = {rnd(SHAPE(3), -1, 1), rnd(SHAPE(3), -1, 1)}, *loss, *g[2];
    int64_t live0 = lmc_live_arrays();
    CHECK(lmc_value_and_grad(sneaky_loss, NULL, 2, w, &loss, g) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "not one of its inputs") != NULL);
    CHECK(lmc_value_and_grad(honest_loss, NULL, 2, w, &loss, g) == LMC_OK);
    float *a = read_f32(w[0]), *b = read_f32(w[1]), *ga = read_f32(g[0]), *gb = read_f32(g[1]);
    for (int i = 0; i < 3; i++) CHECK(ga[i] == b[i] && gb[i] == a[i]);
    free(a), free(b), free(ga), free(gb);
    free_all(2, g);
    lmc_array_free(loss);
    CHECK(lmc_live_arrays() == live0);
    free_all(2, w);
}

/* --- errors ------------------------------------------------------------------------ */

static lmc_array *nested_fn(void *ctx, int n, lmc_array *const *x) {
    (void)ctx;
    lmc_array *v, *g;
    fcase c = {.f = F_REDUCE, .code = 0, .axis = LMC_ALL_AXES};
    if (lmc_value_and_grad(apply, &c, n, x, &v, &g) != LMC_OK) return NULL;
    lmc_array_free(g);
    return v;
}
static lmc_array *sort_fn(void *ctx, int n, lmc_array *const *x) {
    (void)ctx, (void)n;
    lmc_array *s = lmc_sort(x[0], 0);
    lmc_array *r = lmc_sum(s, LMC_ALL_AXES, false);
    lmc_array_free(s);
    return r;
}
static lmc_array *write_fn(void *ctx, int n, lmc_array *const *x) {
    (void)n;
    int64_t start[1] = {0};
    if (lmc_write_slice((lmc_array *)ctx, start, x[0]) != LMC_OK) return NULL;
    return lmc_sum(x[0], LMC_ALL_AXES, false);
}

static void test_errors(void) {
    int64_t live0 = lmc_live_arrays();
    lmc_array *x = rnd(SHAPE(4), -1, 1), *buf = lmc_zeros(LMC_F32, SHAPE(4)), *v = NULL, *g = NULL;
    CHECK(lmc_value_and_grad(nested_fn, NULL, 1, &x, &v, &g) == LMC_ERR_UNSUPPORTED);
    CHECK(strstr(lmc_last_error(), "nested") != NULL);
    CHECK(lmc_value_and_grad(sort_fn, NULL, 1, &x, &v, &g) == LMC_ERR_UNSUPPORTED);
    CHECK(strstr(lmc_last_error(), "sort") != NULL);
    CHECK(lmc_value_and_grad(write_fn, buf, 1, &x, &v, &g) == LMC_ERR_UNSUPPORTED);
    fcase id = {.f = F_ADD_SCALAR, .s = 0};
    CHECK(lmc_value_and_grad(apply, &id, 1, &x, &v, &g) == LMC_ERR_SHAPE); /* not a scalar */
    CHECK(v == NULL && g == NULL);
    CHECK(lmc_value_and_grad(NULL, NULL, 1, &x, &v, &g) == LMC_ERR_INVALID_ARGUMENT);
    lmc_array *bad_r = lmc_ones(LMC_F32, SHAPE(5));
    CHECK(lmc_vjp(apply, &id, 1, &x, bad_r, &v, &g) == LMC_ERR_SHAPE);
    /* Cross-entropy argument checks. */
    int32_t tv[3] = {0, 1, 2};
    lmc_array *t = ints(tv, SHAPE(3)), *l = rnd(SHAPE(3, 4), -1, 1), *lw = rnd(SHAPE(4, 4), -1, 1);
    CHECK(lmc_cross_entropy(lw, t, NULL) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_cross_entropy(l, l, NULL) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_cross_entropy(l, t, lw) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    int32_t oob[3] = {0, 1, 9};
    lmc_array *to = ints(oob, SHAPE(3));
    CHECK(lmc_cross_entropy(l, to, NULL) == NULL);
    free_all(1, &to);
    free_all(1, &t);
    free_all(1, &l);
    free_all(1, &lw);
    lmc_array_free(bad_r);
    lmc_array_free(x);
    lmc_array_free(buf);
    CHECK(lmc_live_arrays() == live0);
    /* No tape outside differentiation: ops record nothing and grad_node stays empty. */
    lmc_array *a = rnd(SHAPE(3), -1, 1), *e = lmc_exp(a);
    CHECK(a->grad_node == NULL && e->grad_node == NULL);
    lmc_array_free(e);
    lmc_array_free(a);
}

/* bf16 parameters get f32 gradients that match the f32 computation on the same (rounded) values. */
static void test_bf16_params(void) {
    lmc_array *x = rnd(SHAPE(3, 4), -1, 1), *w32 = rnd(SHAPE(4, 5), -1, 1);
    lmc_array *wb = lmc_astype(w32, LMC_BF16), *wr = lmc_astype(wb, LMC_F32);
    lmc_array *r = rnd(SHAPE(3, 5), -1, 1), *in_b[2] = {x, wb}, *in_r[2] = {x, wr}, *ob, *orr, *gb[2], *gr[2];
    fcase c = {.f = F_MATMUL};
    CHECK(lmc_vjp(apply, &c, 2, in_b, r, &ob, gb) == LMC_OK);
    CHECK(lmc_vjp(apply, &c, 2, in_r, r, &orr, gr) == LMC_OK);
    CHECK(gb[1]->dtype == LMC_F32);
    for (int i = 0; i < 2; i++) {
        float *a = read_f32(gb[i]), *b = read_f32(gr[i]);
        for (int64_t e = 0; e < gb[i]->size; e++) CHECK_CLOSE(a[e], b[e], 1e-5, 1e-5);
        free(a), free(b);
    }
    free_all(2, gb), free_all(2, gr);
    lmc_array_free(ob), lmc_array_free(orr);
    lmc_array_free(x), lmc_array_free(w32), lmc_array_free(wb), lmc_array_free(wr), lmc_array_free(r);
}

int main(void) {
    int64_t live0 = lmc_live_arrays();
    RUN(test_unary);
    RUN(test_binary_broadcast);
    RUN(test_scalar_where_astype);
    RUN(test_astype_exact);
    RUN(test_shape_ops);
    RUN(test_indexing);
    RUN(test_reductions);
    RUN(test_matmul);
    RUN(test_norms);
    RUN(test_rope);
    RUN(test_sdpa);
    RUN(test_quantized_matmul);
    RUN(test_cross_entropy);
    RUN(test_accumulation);
    RUN(test_block);
    RUN(test_checkpoint);
    RUN(test_checkpoint_inputs);
    RUN(test_errors);
    RUN(test_bf16_params);
    CHECKF(lmc_live_arrays() == live0, "%lld arrays leaked", (long long)(lmc_live_arrays() - live0));
    return TEST_REPORT();
}
