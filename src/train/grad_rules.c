/* Backward rules: for each recorded op, the gradients of its inputs from
 * g = d(result)/d(output), written with the forward ops so they run on any
 * device. The caller (tape.c) runs each rule inside a scope, so temporaries
 * need no freeing; the large ones (attention probabilities, dequantised
 * weight blocks) are freed early to keep the peak down. Gradients are
 * computed in f32: inputs in bf16/f16 are widened first. */
#include <math.h>
#include <string.h>

#include "backend/kernels.h"
#include "train/tape.h"

/* A new view of a (so the scope owns one more array, not one more reference). */
static lmc_array *alias(const lmc_array *a) {
    return a ? lmc_array_view(a->buf, a->offset, a->dtype, a->ndim, a->shape, a->strides) : NULL;
}

static lmc_array *f32(const lmc_array *a) {
    if (!a) return NULL;
    return a->dtype == LMC_F32 ? alias(a) : lmc_astype(a, LMC_F32);
}

static lmc_array *scalar(double v) { return lmc_scalar(v, LMC_F32); }

/* Sums a gradient of a broadcast result back to the shape of `like`. */
static lmc_array *unbroadcast(lmc_array *g, const lmc_array *like) {
    while (g && g->ndim > like->ndim) g = lmc_sum(g, 0, false);
    for (int d = 0; g && d < like->ndim; d++)
        if (like->shape[d] == 1 && g->shape[d] != 1) g = lmc_sum(g, d, true);
    return g;
}

static lmc_array *reshape_like(const lmc_array *g, const lmc_array *like) {
    return lmc_reshape(g, like->ndim, like->shape);
}

/* --- element-wise --------------------------------------------------------------- */

static lmc_array *unary_grad(int code, const lmc_array *x, const lmc_array *out, lmc_array *g) {
    lmc_array *a = f32(x), *y = f32(out);
    switch ((lmc_unary_op)code) {
    case LMC_UNARY_NEG: return lmc_neg(g);
    case LMC_UNARY_ABS: /* sign(a), 0 at 0 */
        return lmc_mul(g, lmc_sub(lmc_astype(lmc_greater(a, scalar(0)), LMC_F32),
                                  lmc_astype(lmc_less(a, scalar(0)), LMC_F32)));
    case LMC_UNARY_EXP: return lmc_mul(g, y);
    case LMC_UNARY_LOG: return lmc_div(g, a);
    case LMC_UNARY_SQRT: return lmc_mul_scalar(lmc_div(g, y), 0.5);
    case LMC_UNARY_RSQRT: return lmc_mul_scalar(lmc_mul(g, lmc_mul(y, lmc_square(y))), -0.5); /* -y³/2 */
    case LMC_UNARY_SQUARE: return lmc_mul_scalar(lmc_mul(g, a), 2.0);
    case LMC_UNARY_SIN: return lmc_mul(g, lmc_cos(a));
    case LMC_UNARY_COS: return lmc_neg(lmc_mul(g, lmc_sin(a)));
    case LMC_UNARY_TANH: return lmc_mul(g, lmc_add_scalar(lmc_neg(lmc_square(y)), 1.0));
    case LMC_UNARY_SIGMOID: return lmc_mul(g, lmc_mul(y, lmc_add_scalar(lmc_neg(y), 1.0)));
    case LMC_UNARY_SILU: { /* s (1 + a (1 - s)) */
        lmc_array *s = lmc_sigmoid(a);
        return lmc_mul(g, lmc_mul(s, lmc_add_scalar(lmc_mul(a, lmc_add_scalar(lmc_neg(s), 1.0)), 1.0)));
    }
    case LMC_UNARY_GELU: { /* Φ(a) + a φ(a); Φ(a) = gelu(a) / a (no erf op needed), 1/2 at 0 */
        lmc_array *cdf = lmc_where(lmc_equal(a, scalar(0)), scalar(0.5), lmc_div(lmc_gelu(a), a));
        lmc_array *pdf = lmc_mul_scalar(lmc_exp(lmc_mul_scalar(lmc_square(a), -0.5)), 0.3989422804014327);
        return lmc_mul(g, lmc_add(cdf, lmc_mul(a, pdf)));
    }
    case LMC_UNARY_GELU_TANH: { /* u = c (a + 0.044715 a³), t = tanh u: ½(1+t) + ½ a (1-t²) c (1 + 3·0.044715 a²) */
        const double c = 0.7978845608028654;
        lmc_array *a2 = lmc_square(a);
        lmc_array *t = lmc_tanh(lmc_mul_scalar(lmc_mul(a, lmc_add_scalar(lmc_mul_scalar(a2, 0.044715), 1.0)), c));
        lmc_array *left = lmc_mul_scalar(lmc_add_scalar(t, 1.0), 0.5);
        lmc_array *du = lmc_mul_scalar(lmc_add_scalar(lmc_mul_scalar(a2, 3.0 * 0.044715), 1.0), 0.5 * c);
        lmc_array *right = lmc_mul(lmc_mul(a, lmc_add_scalar(lmc_neg(lmc_square(t)), 1.0)), du);
        return lmc_mul(g, lmc_add(left, right));
    }
    default: break;
    }
    lmc_set_error(LMC_ERR_UNSUPPORTED, "autograd: unary op %d has no gradient", code);
    return NULL;
}

static void binary_grad(int code, const lmc_grad_node *nd, lmc_array *g, const bool *needs, lmc_array **gin) {
    const lmc_array *a = nd->in[0], *b = nd->in[1];
    lmc_array *ga = NULL, *gb = NULL;
    lmc_array *a32 = f32(a), *b32 = f32(b), *zero = scalar(0);
    switch ((lmc_binary_op)code) {
    case LMC_BINARY_ADD: ga = g, gb = g; break;
    case LMC_BINARY_SUB: ga = g, gb = needs[1] ? lmc_neg(g) : NULL; break;
    case LMC_BINARY_MUL:
        if (needs[0]) ga = lmc_mul(g, b32);
        if (needs[1]) gb = lmc_mul(g, a32);
        break;
    case LMC_BINARY_DIV:
        if (needs[0]) ga = lmc_div(g, b32);
        if (needs[1]) gb = lmc_neg(lmc_div(lmc_mul(g, f32(nd->out)), b32)); /* -g a / b² = -g y / b */
        break;
    case LMC_BINARY_POW:
        if (needs[0]) ga = lmc_mul(g, lmc_mul(b32, lmc_pow(a32, lmc_add_scalar(b32, -1.0))));
        if (needs[1]) /* d/db a^b = a^b log a, taken as 0 where a <= 0 */
            gb = lmc_mul(g, lmc_mul(f32(nd->out), lmc_where(lmc_greater(a32, zero), lmc_log(a32), zero)));
        break;
    case LMC_BINARY_MAXIMUM:
    case LMC_BINARY_MINIMUM: { /* to the winner; ties split evenly (as PyTorch) */
        lmc_array *half = lmc_mul_scalar(g, 0.5), *tie = lmc_equal(a32, b32);
        lmc_array *a_wins = code == LMC_BINARY_MAXIMUM ? lmc_greater(a32, b32) : lmc_less(a32, b32);
        lmc_array *b_wins = code == LMC_BINARY_MAXIMUM ? lmc_less(a32, b32) : lmc_greater(a32, b32);
        if (needs[0]) ga = lmc_where(a_wins, g, lmc_where(tie, half, zero));
        if (needs[1]) gb = lmc_where(b_wins, g, lmc_where(tie, half, zero));
        break;
    }
    default: lmc_set_error(LMC_ERR_UNSUPPORTED, "autograd: binary op %d has no gradient", code); return;
    }
    if (needs[0]) gin[0] = unbroadcast(ga, a);
    if (needs[1]) gin[1] = unbroadcast(gb, b);
}

/* --- reductions ------------------------------------------------------------------- */

static lmc_array *reduce_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *a = nd->in[0];
    int ax = nd->p.axis;
    bool all = ax == LMC_ALL_AXES;
    int64_t kshape[LMC_MAX_DIMS]; /* a's shape with the reduced axes kept as 1 */
    for (int d = 0; d < a->ndim; d++) kshape[d] = all || d == ax ? 1 : a->shape[d];
    lmc_array *gk = lmc_reshape(g, a->ndim, kshape);
    switch ((lmc_reduce_op)nd->p.code) {
    case LMC_REDUCE_SUM: return lmc_broadcast_to(gk, a->ndim, a->shape);
    case LMC_REDUCE_MEAN: {
        int64_t n = all ? a->size : a->shape[ax];
        return lmc_broadcast_to(lmc_mul_scalar(gk, n ? 1.0 / (double)n : 0.0), a->ndim, a->shape);
    }
    case LMC_REDUCE_MAX:
    case LMC_REDUCE_MIN: { /* shared evenly between equal extremes */
        lmc_array *yk = lmc_reshape(nd->out, a->ndim, kshape);
        lmc_array *hit = lmc_astype(lmc_equal(a, yk), LMC_F32);
        lmc_array *count = lmc_sum(hit, ax, true);
        return lmc_mul(hit, lmc_div(gk, count));
    }
    case LMC_REDUCE_LOGSUMEXP: {
        lmc_array *yk = lmc_reshape(f32(nd->out), a->ndim, kshape);
        return lmc_mul(gk, lmc_exp(lmc_sub(f32(a), yk)));
    }
    default: break;
    }
    lmc_set_error(LMC_ERR_UNSUPPORTED, "autograd: reduction %d has no gradient", nd->p.code);
    return NULL;
}

static lmc_array *softmax_grad(const lmc_grad_node *nd, lmc_array *g) {
    lmc_array *y = f32(nd->out);
    int ax = nd->p.axis;
    if (nd->p.flag) /* log_softmax: g - softmax * sum(g) */
        return lmc_sub(g, lmc_mul(lmc_exp(y), lmc_sum(g, ax, true)));
    return lmc_mul(y, lmc_sub(g, lmc_sum(lmc_mul(g, y), ax, true)));
}

/* --- shape and indexing ---------------------------------------------------------- */

static lmc_array *slice_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *a = nd->in[0];
    lmc_array *z = lmc_zeros(LMC_F32, a->ndim, a->shape);
    lmc_array *region = lmc_slice(z, nd->p.axis, nd->p.start, nd->p.stop, nd->p.step);
    int64_t start[LMC_MAX_DIMS] = {0};
    if (!region || lmc_write_slice(region, start, g) != LMC_OK) return NULL;
    return z;
}

static lmc_array *take_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *a = nd->in[0], *idx = nd->in[1];
    int ax = nd->p.axis;
    int64_t pre = 1, post = 1;
    for (int d = 0; d < ax; d++) pre *= a->shape[d];
    for (int d = ax + 1; d < a->ndim; d++) post *= a->shape[d];
    int64_t gshape[3] = {pre, idx->size, post}, ishape[3] = {1, idx->size, 1}, zshape[3] = {pre, a->shape[ax], post};
    lmc_array *sum = lmc_scatter_add_along_axis(lmc_zeros(LMC_F32, 3, zshape), lmc_reshape(idx, 3, ishape),
                                                lmc_reshape(g, 3, gshape), 1);
    return reshape_like(sum, a);
}

static lmc_array *take_along_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *a = nd->in[0], *idx = nd->in[1];
    int ax = nd->p.axis;
    int64_t zshape[LMC_MAX_DIMS];
    memcpy(zshape, g->shape, sizeof zshape);
    zshape[ax] = a->shape[ax];
    lmc_array *z = lmc_zeros(LMC_F32, g->ndim, zshape);
    return unbroadcast(lmc_scatter_add_along_axis(z, idx, g, ax), a);
}

/* --- linear algebra ------------------------------------------------------------------ */

static void matmul_grad(const lmc_grad_node *nd, lmc_array *g, const bool *needs, lmc_array **gin) {
    const lmc_array *a = nd->in[0], *b = nd->in[1];
    /* As the forward op: 1-d operands are a row [1, K] and a column [K, 1]. */
    int64_t K = a->shape[a->ndim - 1];
    int64_t row[2] = {1, K}, col[2] = {K, 1};
    lmc_array *a2 = a->ndim == 1 ? lmc_reshape(a, 2, row) : alias(a);
    lmc_array *b2 = b->ndim == 1 ? lmc_reshape(b, 2, col) : alias(b);
    if (!a2 || !b2) return;
    int64_t gshape[LMC_MAX_DIMS];
    /* g's batch axes, then M and N (re-inserting the unit axes of 1-d operands). */
    int nb = g->ndim - (a->ndim > 1) - (b->ndim > 1), gnd = 0;
    for (int d = 0; d < nb; d++) gshape[gnd++] = g->shape[d];
    gshape[gnd++] = a2->shape[a2->ndim - 2];
    gshape[gnd++] = b2->shape[b2->ndim - 1];
    lmc_array *g2 = lmc_reshape(g, gnd, gshape);
    if (needs[0]) gin[0] = reshape_like(unbroadcast(lmc_matmul(g2, lmc_swapaxes(b2, -1, -2)), a2), a);
    if (needs[1]) gin[1] = reshape_like(unbroadcast(lmc_matmul(lmc_swapaxes(a2, -1, -2), g2), b2), b);
}

int64_t lmc_grad_dequant_block = INT64_C(1) << 22;

/* dx = g @ W for y = x @ Wᵀ with W quantised [N, K]: dequantised a block of
 * rows at a time (lmc_grad_dequant_block weights), so W is never held whole
 * in float. */
static lmc_array *quantized_matmul_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *x = nd->in[0], *wq = nd->in[1], *scales = nd->in[2], *biases = nd->in[3];
    int64_t K = x->shape[x->ndim - 1], N = wq->shape[0];
    int64_t M = N ? g->size / N : 0;
    int64_t g2shape[2] = {M, N};
    lmc_array *g2 = lmc_reshape(g, 2, g2shape);
    int64_t rows = K ? lmc_grad_dequant_block / K : N;
    if (rows < 1) rows = 1;
    lmc_array *acc = NULL;
    for (int64_t n0 = 0; n0 < N && g2; n0 += rows) {
        int64_t n1 = n0 + rows < N ? n0 + rows : N;
        /* In f32, as the forward product computes scale·q + bias: dequantising
         * in the scales' dtype (bf16) would round every weight first. */
        lmc_array *wb = lmc_dequantize(lmc_slice(wq, 0, n0, n1, 1), lmc_astype(lmc_slice(scales, 0, n0, n1, 1), LMC_F32),
                                       lmc_astype(lmc_slice(biases, 0, n0, n1, 1), LMC_F32), nd->p.group_size, nd->p.bits);
        lmc_array *part = lmc_matmul(lmc_slice(g2, 1, n0, n1, 1), wb);
        lmc_array_free(wb);
        if (!part) return NULL;
        if (acc) {
            lmc_array *sum = lmc_add(acc, part);
            lmc_array_free(acc);
            lmc_array_free(part);
            acc = sum;
        } else {
            acc = part;
        }
    }
    if (!acc) acc = lmc_zeros(LMC_F32, 2, (int64_t[]){M, K});
    return reshape_like(acc, x);
}

/* --- fused ------------------------------------------------------------------------------ */

/* Sum over every axis but the last: [..., D] -> [D]. */
static lmc_array *sum_rows(lmc_array *a) {
    int64_t shape[2] = {-1, a ? a->shape[a->ndim - 1] : 0};
    return lmc_sum(lmc_reshape(a, 2, shape), 0, false);
}

static void rms_norm_grad(const lmc_grad_node *nd, lmc_array *g, const bool *needs, lmc_array **gin) {
    const lmc_array *w = nd->in[1];
    lmc_array *x = f32(nd->in[0]);
    lmc_array *r = lmc_rsqrt(lmc_add_scalar(lmc_mean(lmc_square(x), -1, true), nd->p.eps));
    lmc_array *xh = lmc_mul(x, r);
    if (needs[0]) {
        lmc_array *gw = g; /* g times the effective scale */
        if (w) gw = lmc_mul(g, nd->p.flag ? lmc_add_scalar(f32(w), 1.0) : f32(w));
        gin[0] = lmc_mul(r, lmc_sub(gw, lmc_mul(xh, lmc_mean(lmc_mul(gw, xh), -1, true))));
    }
    if (w && needs[1]) gin[1] = sum_rows(lmc_mul(g, xh)); /* the same for w and 1 + w */
}

static void layer_norm_grad(const lmc_grad_node *nd, lmc_array *g, const bool *needs, lmc_array **gin) {
    const lmc_array *w = nd->in[1], *b = nd->in[2];
    lmc_array *x = f32(nd->in[0]);
    lmc_array *xc = lmc_sub(x, lmc_mean(x, -1, true));
    lmc_array *r = lmc_rsqrt(lmc_add_scalar(lmc_mean(lmc_square(xc), -1, true), nd->p.eps));
    lmc_array *xh = lmc_mul(xc, r);
    if (needs[0]) {
        lmc_array *gh = w ? lmc_mul(g, f32(w)) : g;
        lmc_array *inner = lmc_sub(lmc_sub(gh, lmc_mean(gh, -1, true)), lmc_mul(xh, lmc_mean(lmc_mul(gh, xh), -1, true)));
        gin[0] = lmc_mul(r, inner);
    }
    if (w && needs[1]) gin[1] = sum_rows(lmc_mul(g, xh));
    if (b && needs[2]) gin[2] = sum_rows(g);
}

/* RoPE rotates each pair by angle pos · scale · inv_freq; its transpose
 * rotates back, which is the same op with the frequencies negated. */
static lmc_array *rope_grad(const lmc_grad_node *nd, lmc_array *g) {
    lmc_rope_params p = nd->p.rope;
    p.inv_freqs = lmc_neg(nd->in[2]);
    if (!p.inv_freqs) return NULL;
    return lmc_rope_positions(g, &p, nd->in[1]);
}

/* Attention backward, recomputing the probabilities. With G = Hq / Hkv
 * query heads per key/value head, q [B, Hq, Tq, D] is viewed as
 * [B, Hkv, G·Tq, D], so products with k and v sum over each group. */
static void sdpa_grad(const lmc_grad_node *nd, lmc_array *g, const bool *needs, lmc_array **gin) {
    const lmc_sdpa_params *p = &nd->p.sdpa;
    const lmc_array *mask = nd->in[3];
    lmc_array *q = f32(nd->in[0]), *k = f32(nd->in[1]), *v = f32(nd->in[2]);
    if (!q || !k || !v) return;
    int64_t B = q->shape[0], Hq = q->shape[1], Tq = q->shape[2], D = q->shape[3];
    int64_t Hkv = k->shape[1], Tk = k->shape[2], Dv = v->shape[3], G = Hq / Hkv;
    int64_t qg_shape[4] = {B, Hkv, G * Tq, D}, gg_shape[4] = {B, Hkv, G * Tq, Dv};
    int64_t s_shape[4] = {B, Hq, Tq, Tk}, sg_shape[4] = {B, Hkv, G * Tq, Tk};
    lmc_array *qg = lmc_reshape(q, 4, qg_shape);

    /* Scores as the forward op: scale, soft-cap, additive mask, hidden keys. */
    lmc_array *s = lmc_reshape(lmc_mul_scalar(lmc_matmul(qg, lmc_swapaxes(k, -1, -2)), p->scale), 4, s_shape);
    lmc_array *t = NULL;
    if (p->softcap > 0.0f) {
        t = lmc_tanh(lmc_mul_scalar(s, 1.0 / p->softcap));
        s = lmc_mul_scalar(t, p->softcap);
    }
    lmc_array *ninf = scalar(-INFINITY);
    if (mask && mask->dtype != LMC_BOOL) s = lmc_add(s, f32(mask));
    if (mask && mask->dtype == LMC_BOOL) s = lmc_where(mask, s, ninf);
    if (p->causal || p->window > 0) {
        int64_t col[2] = {Tq, 1};
        lmc_array *qpos = lmc_reshape(lmc_arange((double)(Tk - Tq), (double)Tk, 1, LMC_I32), 2, col);
        lmc_array *kpos = lmc_arange(0, (double)Tk, 1, LMC_I32);
        if (p->causal) s = lmc_where(lmc_greater(kpos, qpos), ninf, s);
        if (p->window > 0)
            s = lmc_where(lmc_greater_equal(lmc_sub(qpos, kpos), lmc_scalar((double)p->window, LMC_I32)), ninf, s);
    }
    /* A row that sees no key gives zeros, as the forward op. */
    lmc_array *seen = lmc_greater(lmc_max(s, -1, true), ninf);
    lmc_array *probs = lmc_where(seen, lmc_softmax(s, -1), scalar(0));
    lmc_array *P = lmc_reshape(probs, 4, sg_shape);
    lmc_array *gg = lmc_reshape(g, 4, gg_shape);
    if (needs[2]) gin[2] = lmc_matmul(lmc_swapaxes(P, -1, -2), gg);
    if (!needs[0] && !needs[1]) return;

    lmc_array *gP = lmc_matmul(gg, lmc_swapaxes(v, -1, -2));
    lmc_array *gs = lmc_mul(P, lmc_sub(gP, lmc_sum(lmc_mul(gP, P), -1, true)));
    lmc_array_free(gP);
    if (t) gs = lmc_mul(gs, lmc_reshape(lmc_add_scalar(lmc_neg(lmc_square(t)), 1.0), 4, sg_shape));
    gs = lmc_mul_scalar(gs, p->scale);
    if (needs[0]) gin[0] = lmc_reshape(lmc_matmul(gs, k), 4, q->shape);
    if (needs[1]) gin[1] = lmc_matmul(lmc_swapaxes(gs, -1, -2), qg);
}

/* --- loss ----------------------------------------------------------------------------- */

/* d/dlogits of sum(w · (logsumexp(l) - l[target])) / total = (softmax(l) - onehot) · w / total. */
static lmc_array *cross_entropy_grad(const lmc_grad_node *nd, lmc_array *g) {
    const lmc_array *targets = nd->in[1], *weights = nd->in[2];
    lmc_array *p = lmc_softmax(f32(nd->in[0]), -1);
    lmc_array *d = lmc_scatter_add_along_axis(p, lmc_expand_dims(targets, -1), scalar(-1.0), -1);
    lmc_array_free(p);
    lmc_array *w = lmc_expand_dims(lmc_mul_scalar(lmc_mul(weights, g), 1.0 / nd->p.scalar), -1);
    return lmc_mul(d, w);
}

/* --- dispatch ------------------------------------------------------------------------ */

bool lmc_grad_rule_uses_output(const lmc_grad_node *nd) {
    switch (nd->op) {
    case LMC_OP_UNARY:
        return nd->p.code == LMC_UNARY_EXP || nd->p.code == LMC_UNARY_SQRT || nd->p.code == LMC_UNARY_RSQRT ||
               nd->p.code == LMC_UNARY_TANH || nd->p.code == LMC_UNARY_SIGMOID;
    case LMC_OP_BINARY: return nd->p.code == LMC_BINARY_DIV || nd->p.code == LMC_BINARY_POW;
    case LMC_OP_REDUCE: return nd->p.code == LMC_REDUCE_MAX || nd->p.code == LMC_REDUCE_MIN || nd->p.code == LMC_REDUCE_LOGSUMEXP;
    case LMC_OP_SOFTMAX: return true;
    default: return false;
    }
}

lmc_status lmc_grad_rule(const lmc_grad_node *nd, const lmc_array *g_in, const bool *needs, lmc_array **gin) {
    const lmc_op_params *p = &nd->p;
    lmc_array *g = alias(g_in);
    if (!g) return lmc_last_status();
    switch (nd->op) {
    case LMC_OP_UNARY: gin[0] = unary_grad(p->code, nd->in[0], nd->out, g); break;
    case LMC_OP_BINARY: binary_grad(p->code, nd, g, needs, gin); break;
    case LMC_OP_ADD_SCALAR: gin[0] = g; break;
    case LMC_OP_MUL_SCALAR: gin[0] = lmc_mul_scalar(g, p->scalar); break;
    case LMC_OP_WHERE: {
        lmc_array *zero = scalar(0);
        if (needs[1]) gin[1] = unbroadcast(lmc_where(nd->in[0], g, zero), nd->in[1]);
        if (needs[2]) gin[2] = unbroadcast(lmc_where(nd->in[0], zero, g), nd->in[2]);
        break;
    }
    case LMC_OP_ASTYPE: /* gradients stay f32 whatever the forward dtypes */
    case LMC_OP_COPY: gin[0] = g; break;
    case LMC_OP_RESHAPE: gin[0] = reshape_like(g, nd->in[0]); break;
    case LMC_OP_PERMUTE: {
        int inv[LMC_MAX_DIMS];
        for (int d = 0; d < g->ndim; d++) inv[p->perm[d]] = d;
        gin[0] = lmc_permute(g, inv);
        break;
    }
    case LMC_OP_BROADCAST_TO: gin[0] = unbroadcast(g, nd->in[0]); break;
    case LMC_OP_SLICE: gin[0] = slice_grad(nd, g); break;
    case LMC_OP_CONCATENATE: {
        int64_t pos = 0;
        for (int i = 0; i < nd->n; i++) {
            int64_t len = nd->in[i]->shape[p->axis];
            if (needs[i]) gin[i] = lmc_slice(g, p->axis, pos, pos + len, 1);
            pos += len;
        }
        break;
    }
    case LMC_OP_TAKE: gin[0] = take_grad(nd, g); break;
    case LMC_OP_TAKE_ALONG_AXIS: gin[0] = take_along_grad(nd, g); break;
    case LMC_OP_REDUCE: gin[0] = reduce_grad(nd, g); break;
    case LMC_OP_SOFTMAX: gin[0] = softmax_grad(nd, g); break;
    case LMC_OP_CUMSUM: gin[0] = lmc_cumsum(g, p->axis, !p->flag); break;
    case LMC_OP_MATMUL: matmul_grad(nd, g, needs, gin); break;
    case LMC_OP_RMS_NORM: rms_norm_grad(nd, g, needs, gin); break;
    case LMC_OP_LAYER_NORM: layer_norm_grad(nd, g, needs, gin); break;
    case LMC_OP_ROPE: gin[0] = rope_grad(nd, g); break;
    case LMC_OP_SDPA: sdpa_grad(nd, g, needs, gin); break;
    case LMC_OP_QUANTIZED_MATMUL: gin[0] = quantized_matmul_grad(nd, g); break;
    case LMC_OP_CROSS_ENTROPY: gin[0] = cross_entropy_grad(nd, g); break;
    case LMC_OP_CHECKPOINT: {
        lmc_status s = lmc_checkpoint_backward(nd, g, needs, gin);
        if (s != LMC_OK) return s;
        break;
    }
    case LMC_OP_NONDIFF:
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "autograd: %s is not differentiable",
                             p->name ? p->name : "an op");
    default: return lmc_set_error(LMC_ERR_INTERNAL, "autograd: op %d has no backward rule", (int)nd->op);
    }
    for (int i = 0; i < nd->n; i++)
        if (needs[i] && !gin[i]) {
            lmc_status s = lmc_last_status();
            return s != LMC_OK ? s : lmc_set_error(LMC_ERR_INTERNAL, "autograd: no gradient for input %d", i);
        }
    return LMC_OK;
}
