/* Fused sequences of ops (see fusion.h). Each takes its one-kernel path
 * only for inputs that kernel is written for (f32, equal shapes, parameters
 * in range); anything else, and every error message, comes from the parts. */
#include "ops/fusion.h"

#include "ops/ops_internal.h"
#include "train/tape.h"

/* The kernel table to fuse on: NULL while a tape records, or when an input
 * is missing or the inputs are on different devices (the parts say which). */
static const lmc_kernels *fusing_kernels(int n, const lmc_array *const *in) {
    if (lmc_tape_current) return NULL;
    lmc_device dev = LMC_CPU;
    bool have = false;
    for (int i = 0; i < n; i++) {
        if (!in[i]) continue;
        if (have && in[i]->buf->device != dev) return NULL;
        dev = in[i]->buf->device;
        have = true;
    }
    return have ? lmc_kernels_for(dev) : NULL;
}

static bool same_shape(const lmc_array *a, const lmc_array *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* A norm weight the kernels take: NULL, or float [d]. */
static bool norm_weight_ok(const lmc_array *w, int64_t d) {
    return !w || (w->ndim == 1 && w->shape[0] == d && lmc_dtype_is_float(w->dtype));
}

lmc_array *lmc_add_rms_norm(const lmc_array *a, const lmc_array *b, const lmc_array *w, float eps,
                            bool one_plus_weight, lmc_array **sum) {
    *sum = NULL;
    const lmc_array *in[3] = {a, b, w};
    const lmc_kernels *k = a && b ? fusing_kernels(3, in) : NULL;
    if (k && k->add_rms_norm && a->dtype == LMC_F32 && b->dtype == LMC_F32 && a->ndim >= 1 && same_shape(a, b) &&
        norm_weight_ok(w, a->shape[a->ndim - 1]) && eps >= 0.0f) {
        lmc_device dev = a->buf->device;
        lmc_array *s = lmc_array_new(LMC_F32, a->ndim, a->shape, dev);
        lmc_array *out = s ? lmc_array_new(LMC_F32, a->ndim, a->shape, dev) : NULL;
        if (out && (out->size == 0 || k->add_rms_norm(out, s, a, b, w, eps, one_plus_weight) == LMC_OK)) {
            *sum = s;
            return out;
        }
        lmc_array_free(out);
        lmc_array_free(s);
        return NULL;
    }
    lmc_array *s = lmc_add(a, b);
    lmc_array *out = lmc_rms_norm(s, w, eps, one_plus_weight);
    if (!out) {
        lmc_array_free(s);
        return NULL;
    }
    *sum = s;
    return out;
}

static lmc_array *norm_rope(const lmc_array *x, bool norm, const lmc_array *w, float eps, bool one_plus_weight,
                            const lmc_rope_params *p, const lmc_array *positions, int64_t offset) {
    lmc_array *n = norm ? lmc_rms_norm(x, w, eps, one_plus_weight) : NULL;
    if (norm && !n) return NULL;
    const lmc_array *src = norm ? n : x;
    lmc_array *out = positions ? lmc_rope_positions(src, p, positions) : lmc_rope(src, p, offset);
    lmc_array_free(n);
    return out;
}

/* q and k as the rope_qk kernel takes them: f32 [B, H, T, D] sharing B, T
 * and D; positions i32 [T] or [B, T]; the model's own inverse frequencies. */
static bool rope_qk_fits(const lmc_array *q, const lmc_array *k, bool norm, const lmc_array *wq, const lmc_array *wk,
                         float eps, const lmc_rope_params *p, const lmc_array *positions) {
    if (!positions || !p || !p->inv_freqs || q->dtype != LMC_F32 || k->dtype != LMC_F32 || q->ndim != 4 || k->ndim != 4)
        return false;
    int64_t B = q->shape[0], T = q->shape[2], D = q->shape[3];
    if (k->shape[0] != B || k->shape[2] != T || k->shape[3] != D || D > LMC_ROPE_QK_MAX_D) return false;
    if (norm && (!norm_weight_ok(wq, D) || !norm_weight_ok(wk, D) || !(eps >= 0.0f))) return false;
    const lmc_array *f = p->inv_freqs;
    if (p->dims <= 0 || p->dims % 2 || p->dims > D || f->ndim != 1 || f->shape[0] != p->dims / 2 || f->dtype != LMC_F32)
        return false;
    return positions->dtype == LMC_I32 && ((positions->ndim == 1 && positions->shape[0] == T) ||
                                           (positions->ndim == 2 && positions->shape[0] == B && positions->shape[1] == T));
}

lmc_status lmc_rope_qk(const lmc_array *q, const lmc_array *k, bool norm, const lmc_array *wq, const lmc_array *wk,
                       float eps, bool one_plus_weight, const lmc_rope_params *p, const lmc_array *positions,
                       int64_t offset, lmc_array **q_out, lmc_array **k_out) {
    /* the outputs are set last: a caller may pass &q, &k */
    const lmc_array *in[6] = {q, k, norm ? wq : NULL, norm ? wk : NULL, positions, p ? p->inv_freqs : NULL};
    const lmc_kernels *kt = q && k ? fusing_kernels(6, in) : NULL;
    if (kt && kt->rope_qk && rope_qk_fits(q, k, norm, wq, wk, eps, p, positions)) {
        lmc_device dev = q->buf->device;
        lmc_array *qo = lmc_array_new(LMC_F32, 4, q->shape, dev);
        lmc_array *ko = qo ? lmc_array_new(LMC_F32, 4, k->shape, dev) : NULL;
        lmc_array *const out[2] = {qo, ko};
        const lmc_array *const x[2] = {q, k}, *const w[2] = {wq, wk};
        if (ko && kt->rope_qk(out, x, norm, w, eps, one_plus_weight, p, p->inv_freqs, positions) == LMC_OK) {
            *q_out = qo;
            *k_out = ko;
            return LMC_OK;
        }
        lmc_array_free(qo);
        lmc_array_free(ko);
        *q_out = *k_out = NULL;
        return lmc_last_status();
    }
    lmc_array *qo = norm_rope(q, norm, wq, eps, one_plus_weight, p, positions, offset);
    lmc_array *ko = qo ? norm_rope(k, norm, wk, eps, one_plus_weight, p, positions, offset) : NULL;
    if (!ko) {
        lmc_array_free(qo);
        *q_out = *k_out = NULL;
        return lmc_last_status();
    }
    *q_out = qo;
    *k_out = ko;
    return LMC_OK;
}

static lmc_array *activation(lmc_unary_op act, const lmc_array *x) {
    switch (act) {
    case LMC_UNARY_SILU: return lmc_silu(x);
    case LMC_UNARY_GELU: return lmc_gelu(x);
    case LMC_UNARY_GELU_TANH: return lmc_gelu_tanh(x);
    default: break;
    }
    lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "gated activation: op %d is not silu, gelu or gelu_tanh", (int)act);
    return NULL;
}

lmc_array *lmc_gated_act(lmc_unary_op act, const lmc_array *gate, const lmc_array *up) {
    const lmc_array *in[2] = {gate, up};
    const lmc_kernels *k = gate && up ? fusing_kernels(2, in) : NULL;
    if (k && k->gated_act && gate->dtype == LMC_F32 && up->dtype == LMC_F32 && same_shape(gate, up) &&
        (act == LMC_UNARY_SILU || act == LMC_UNARY_GELU || act == LMC_UNARY_GELU_TANH)) {
        lmc_array *out = lmc_array_new(LMC_F32, gate->ndim, gate->shape, gate->buf->device);
        if (out && (out->size == 0 || k->gated_act(act, out, gate, up) == LMC_OK)) return out;
        lmc_array_free(out);
        return NULL;
    }
    if (lmc_ops_null_input("gated activation", 2, in)) return NULL;
    lmc_array *g = activation(act, gate);
    lmc_array *out = g ? lmc_mul(g, up) : NULL;
    lmc_array_free(g);
    return out;
}

lmc_status lmc_write_slices(int n, lmc_array *const *dst, const int64_t *start, const lmc_array *const *src) {
    if (n < 1 || n > LMC_COPY_MANY_MAX)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "write_slices: %d writes (1..%d)", n, LMC_COPY_MANY_MAX);
    lmc_array *region[LMC_COPY_MANY_MAX] = {0};
    lmc_status s = LMC_OK;
    for (int i = 0; i < n && s == LMC_OK; i++)
        if (!(region[i] = lmc_slice_region("write_slice", dst[i], start, src[i]))) s = lmc_last_status();
    const lmc_kernels *k = s == LMC_OK ? lmc_ops_kernels("write_slice", n, (const lmc_array *const *)region) : NULL;
    if (s == LMC_OK && !k) s = lmc_last_status();
    if (s == LMC_OK && k->copy_many) {
        s = k->copy_many(n, region, src);
    } else if (s == LMC_OK && lmc_ops_have("write_slice", k->copy)) {
        for (int i = 0; i < n && s == LMC_OK; i++) s = k->copy(region[i], src[i]);
    } else if (s == LMC_OK) {
        s = lmc_last_status();
    }
    for (int i = 0; i < n; i++) lmc_array_free(region[i]);
    return s;
}
