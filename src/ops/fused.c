/* Fused ops: rms_norm, layer_norm, rope, scaled-dot-product attention.
 * The ops layer checks shapes and parameters, computes the rope inverse
 * frequencies and positions, broadcasts the attention mask to
 * [B, Hq, Tq, Tk], and hands the kernels views whose shapes agree. */
#include <math.h>
#include <string.h>

#include "ops/ops_internal.h"
#include "train/tape.h"

/* w (or b) must be a float 1-d array of the normalised axis' size. */
static bool check_norm_param(const char *op, const char *what, const lmc_array *p, int64_t d) {
    if (!p) return true;
    if (p->ndim != 1 || p->shape[0] != d || !lmc_dtype_is_float(p->dtype)) {
        char s[128];
        lmc_set_error(LMC_ERR_SHAPE, "%s: %s must be a float array of shape [%lld], got %s %s", op, what, (long long)d,
                      lmc_dtype_name(p->dtype), lmc_shape_str(p->ndim, p->shape, s, sizeof s));
        return false;
    }
    return true;
}

static bool check_float_input(const char *op, const lmc_array *x) {
    if (x->ndim < 1 || !lmc_dtype_is_float(x->dtype)) {
        char s[128];
        lmc_set_error(LMC_ERR_SHAPE, "%s: x must be a float array with at least 1 dimension, got %s %s", op,
                      lmc_dtype_name(x->dtype), lmc_shape_str(x->ndim, x->shape, s, sizeof s));
        return false;
    }
    return true;
}

lmc_array *lmc_rms_norm(const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight) {
    if (lmc_ops_null_input("lmc_rms_norm", 1, &x)) return NULL;
    const lmc_array *in[2] = {x, w};
    const lmc_kernels *k = lmc_ops_kernels("lmc_rms_norm", 2, in);
    if (!k || !lmc_ops_have("lmc_rms_norm", (const void *)k->rms_norm)) return NULL;
    if (!check_float_input("lmc_rms_norm", x) || !check_norm_param("lmc_rms_norm", "w", w, x->shape[x->ndim - 1]))
        return NULL;
    if (!(eps >= 0.0f)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_rms_norm: eps must be >= 0, got %g", (double)eps);
        return NULL;
    }
    lmc_array *out = lmc_array_new(x->dtype, x->ndim, x->shape, x->buf->device);
    if (out && out->size > 0 && k->rms_norm(out, x, w, eps, one_plus_weight) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    lmc_tape_record(LMC_OP_RMS_NORM, out, 2, in, &(lmc_op_params){.eps = eps, .flag = one_plus_weight});
    return out;
}

lmc_array *lmc_layer_norm(const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps) {
    if (lmc_ops_null_input("lmc_layer_norm", 1, &x)) return NULL;
    const lmc_array *in[3] = {x, w, b};
    const lmc_kernels *k = lmc_ops_kernels("lmc_layer_norm", 3, in);
    if (!k || !lmc_ops_have("lmc_layer_norm", (const void *)k->layer_norm)) return NULL;
    int64_t d = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (!check_float_input("lmc_layer_norm", x) || !check_norm_param("lmc_layer_norm", "w", w, d) ||
        !check_norm_param("lmc_layer_norm", "b", b, d))
        return NULL;
    if (!(eps >= 0.0f)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_layer_norm: eps must be >= 0, got %g", (double)eps);
        return NULL;
    }
    lmc_array *out = lmc_array_new(x->dtype, x->ndim, x->shape, x->buf->device);
    if (out && out->size > 0 && k->layer_norm(out, x, w, b, eps) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    lmc_tape_record(LMC_OP_LAYER_NORM, out, 3, in, &(lmc_op_params){.eps = eps});
    return out;
}

/* --- rope ------------------------------------------------------------------- */

lmc_rope_params lmc_rope_params_default(int dims, float base) {
    lmc_rope_params p = {.dims = dims, .traditional = false, .base = base, .scale = 1.0f, .inv_freqs = NULL};
    return p;
}

/* Shared by lmc_rope and lmc_rope_positions; positions is i32 [T] or [B, T]. */
static lmc_array *rope_common(const lmc_array *x, const lmc_rope_params *p, const lmc_array *positions) {
    const char *op = "lmc_rope";
    char s1[128], s2[128];
    /* x's device decides: positions and inv_freqs are brought to it below. */
    const lmc_kernels *k = lmc_ops_kernels(op, 1, &x);
    if (!k || !lmc_ops_have(op, (const void *)k->rope)) return NULL;
    if (!p) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: params are NULL", op);
        return NULL;
    }
    if (x->ndim < 2 || !lmc_dtype_is_float(x->dtype)) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: x must be a float array [..., T, D], got %s %s", op, lmc_dtype_name(x->dtype),
                      lmc_shape_str(x->ndim, x->shape, s1, sizeof s1));
        return NULL;
    }
    int64_t T = x->shape[x->ndim - 2], D = x->shape[x->ndim - 1];
    if (p->dims <= 0 || p->dims % 2 != 0 || p->dims > D) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: dims must be even and in 2..%lld (the head dim of x %s), got %d", op,
                      (long long)D, lmc_shape_str(x->ndim, x->shape, s1, sizeof s1), p->dims);
        return NULL;
    }
    if (positions->dtype != LMC_I32 ||
        !((positions->ndim == 1 && positions->shape[0] == T) ||
          (positions->ndim == 2 && positions->shape[1] == T && x->ndim >= 3 && positions->shape[0] == x->shape[0]))) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: positions must be int32 [T] or [B, T] for x %s, got %s %s", op,
                      lmc_shape_str(x->ndim, x->shape, s1, sizeof s1), lmc_dtype_name(positions->dtype),
                      lmc_shape_str(positions->ndim, positions->shape, s2, sizeof s2));
        return NULL;
    }
    int64_t half = p->dims / 2;
    lmc_array *inv = NULL;
    if (p->inv_freqs) {
        const lmc_array *f = p->inv_freqs;
        if (f->ndim != 1 || f->shape[0] != half || f->dtype != LMC_F32) {
            lmc_set_error(LMC_ERR_SHAPE, "%s: inv_freqs must be float32 [%lld] (dims/2), got %s %s", op, (long long)half,
                          lmc_dtype_name(f->dtype), lmc_shape_str(f->ndim, f->shape, s1, sizeof s1));
            return NULL;
        }
        /* On x's device (a model keeps its own there; this copies only a stray one). */
        inv = lmc_array_to(f, x->buf->device);
        if (!inv) return NULL;
    } else {
        if (!(p->base > 0.0f)) {
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: base must be > 0, got %g", op, (double)p->base);
            return NULL;
        }
        lmc_array *host = lmc_array_new(LMC_F32, 1, &half, LMC_CPU);
        if (!host) return NULL;
        /* As HF: 1.0 / (base ** (arange(0, dims, 2).float() / dims)), all in f32. */
        float *fv = lmc_array_ptr(host);
        for (int64_t i = 0; i < half; i++) fv[i] = 1.0f / powf(p->base, (float)(2 * i) / (float)p->dims);
        inv = lmc_array_to(host, x->buf->device);
        lmc_array_free(host);
        if (!inv) return NULL;
    }
    lmc_array *pos_here = lmc_array_to(positions, x->buf->device);
    if (!pos_here) {
        lmc_array_free(inv);
        return NULL;
    }
    positions = pos_here;
    lmc_array *out = lmc_array_new(x->dtype, x->ndim, x->shape, x->buf->device);
    if (out && out->size > 0 && k->rope(out, x, p, inv, positions) != LMC_OK) {
        lmc_array_free(out);
        out = NULL;
    }
    const lmc_array *saved[3] = {x, positions, inv};
    lmc_tape_record(LMC_OP_ROPE, out, 3, saved, &(lmc_op_params){.rope = *p});
    lmc_array_free(inv);
    lmc_array_free(pos_here);
    return out;
}

lmc_array *lmc_rope(const lmc_array *x, const lmc_rope_params *p, int64_t offset) {
    if (lmc_ops_null_input("lmc_rope", 1, &x)) return NULL;
    if (x->ndim < 2) return rope_common(x, p, x); /* reports the shape error */
    int64_t T = x->shape[x->ndim - 2];
    if (offset < 0 || offset + T > INT32_MAX) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_rope: offset %lld out of range", (long long)offset);
        return NULL;
    }
    lmc_array *pos = lmc_array_new(LMC_I32, 1, &T, x->buf->device);
    if (!pos) return NULL;
    if (x->buf->device == LMC_CPU) {
        int32_t *pv = lmc_array_ptr(pos);
        for (int64_t t = 0; t < T; t++) pv[t] = (int32_t)(offset + t);
    } else { /* made where x lives: no copy from the host to wait for */
        const lmc_kernels *k = lmc_ops_kernels("lmc_rope", 1, &x);
        if (!k || !lmc_ops_have("lmc_rope", k->arange) || k->arange(pos, (double)offset, 1.0) != LMC_OK) {
            lmc_array_free(pos);
            return NULL;
        }
    }
    lmc_array *out = rope_common(x, p, pos);
    lmc_array_free(pos);
    return out;
}

lmc_array *lmc_rope_positions(const lmc_array *x, const lmc_rope_params *p, const lmc_array *positions) {
    const lmc_array *in[2] = {x, positions};
    if (lmc_ops_null_input("lmc_rope_positions", 2, in)) return NULL;
    return rope_common(x, p, positions);
}

/* --- attention -------------------------------------------------------------- */

lmc_sdpa_params lmc_sdpa_params_default(float scale) {
    lmc_sdpa_params p = {.scale = scale, .causal = false, .window = 0, .mask = NULL, .softcap = 0.0f};
    return p;
}

lmc_array *lmc_sdpa(const lmc_array *q, const lmc_array *k, const lmc_array *v, const lmc_sdpa_params *p) {
    const char *op = "lmc_sdpa";
    const lmc_array *in[3] = {q, k, v};
    if (lmc_ops_null_input(op, 3, in)) return NULL;
    const lmc_array *all[4] = {q, k, v, p ? p->mask : NULL};
    const lmc_kernels *kt = lmc_ops_kernels(op, 4, all);
    if (!kt || !lmc_ops_have(op, (const void *)kt->sdpa)) return NULL;
    if (!p) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: params are NULL", op);
        return NULL;
    }
    char s1[128], s2[128], s3[128];
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || !lmc_dtype_is_float(q->dtype) || !lmc_dtype_is_float(k->dtype) ||
        !lmc_dtype_is_float(v->dtype)) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: q, k, v must be float arrays [B, H, T, D], got %s, %s, %s", op,
                      lmc_shape_str(q->ndim, q->shape, s1, sizeof s1), lmc_shape_str(k->ndim, k->shape, s2, sizeof s2),
                      lmc_shape_str(v->ndim, v->shape, s3, sizeof s3));
        return NULL;
    }
    int64_t B = q->shape[0], Hq = q->shape[1], Tq = q->shape[2], D = q->shape[3];
    int64_t Hkv = k->shape[1], Tk = k->shape[2], Dv = v->shape[3];
    if (k->shape[0] != B || v->shape[0] != B || k->shape[3] != D || v->shape[1] != Hkv || v->shape[2] != Tk) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: shapes do not fit: q %s, k %s, v %s (need k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv])",
                      op, lmc_shape_str(4, q->shape, s1, sizeof s1), lmc_shape_str(4, k->shape, s2, sizeof s2),
                      lmc_shape_str(4, v->shape, s3, sizeof s3));
        return NULL;
    }
    if (Hkv == 0 || Hq % Hkv != 0) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: query heads (%lld) must be a multiple of key/value heads (%lld)", op,
                      (long long)Hq, (long long)Hkv);
        return NULL;
    }
    if (p->window < 0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: window must be >= 0, got %lld", op, (long long)p->window);
        return NULL;
    }
    if (!(p->softcap >= 0.0f) || !isfinite(p->scale)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: softcap must be >= 0 and scale finite (got %g, %g)", op,
                      (double)p->softcap, (double)p->scale);
        return NULL;
    }
    lmc_sdpa_params kp = *p;
    lmc_array *maskv = NULL;
    if (p->mask) {
        const lmc_array *m = p->mask;
        if (!(m->dtype == LMC_BOOL || lmc_dtype_is_float(m->dtype)) || m->ndim > 4) {
            lmc_set_error(LMC_ERR_SHAPE, "%s: mask must be bool or float with at most 4 dimensions, got %s %s", op,
                          lmc_dtype_name(m->dtype), lmc_shape_str(m->ndim, m->shape, s1, sizeof s1));
            return NULL;
        }
        int64_t full[4] = {B, Hq, Tq, Tk};
        maskv = lmc_broadcast_view(m, 4, full);
        if (!maskv) {
            lmc_error_prefix("%s: mask", op);
            return NULL;
        }
        kp.mask = maskv;
    }
    int64_t oshape[4] = {B, Hq, Tq, Dv};
    lmc_dtype dt = lmc_promote(lmc_promote(q->dtype, k->dtype), v->dtype);
    lmc_array *out = lmc_array_new(dt, 4, oshape, q->buf->device);
    if (out && out->size > 0 && kt->sdpa(out, q, k, v, &kp) != LMC_OK) {
        lmc_array_free(out);
        out = NULL;
    }
    lmc_tape_record(LMC_OP_SDPA, out, 4, all, &(lmc_op_params){.sdpa = *p});
    lmc_array_free(maskv);
    return out;
}
