/* MLX affine quantisation ops: argument checks, output shapes and dtypes.
 * The kernels (src/backend/cpu/quant_*.c) see contiguous arrays only. */
#include "ops/quant_internal.h"

#include "ops/ops_internal.h"
#include "train/tape.h"

static bool float_dtype(lmc_dtype dt) { return dt == LMC_F32 || dt == LMC_F16 || dt == LMC_BF16; }

lmc_status lmc_quant_check_params(const char *op, int group_size, int bits) {
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: group size %d is not supported (32, 64 or 128)", op,
                             group_size);
    if (bits < 2 || bits > 8 || bits == 7)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: %d bits are not supported (2, 3, 4, 5, 6 or 8)", op, bits);
    return LMC_OK;
}

lmc_array *lmc_quantize(const lmc_array *w, int group_size, int bits, lmc_array **scales, lmc_array **biases) {
    const char *op = "quantize";
    if (scales) *scales = NULL;
    if (biases) *biases = NULL;
    if (lmc_ops_null_input(op, 1, &w)) return NULL;
    if (!scales || !biases) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "quantize: scales and biases outputs must not be NULL");
        return NULL;
    }
    if (lmc_quant_check_params(op, group_size, bits) != LMC_OK) return NULL;
    char sb[128];
    if (!float_dtype(w->dtype) || w->ndim < 1) {
        lmc_set_error(LMC_ERR_SHAPE, "quantize: w must be a float array with at least 1 dimension (got %s %s)",
                      lmc_dtype_name(w->dtype), lmc_shape_str(w->ndim, w->shape, sb, sizeof sb));
        return NULL;
    }
    int64_t K = w->shape[w->ndim - 1];
    if (K == 0 || K % group_size != 0) {
        lmc_set_error(LMC_ERR_SHAPE, "quantize: the last dimension of w %s (%lld) is not a multiple of the group size %d",
                      lmc_shape_str(w->ndim, w->shape, sb, sizeof sb), (long long)K, group_size);
        return NULL;
    }
    const lmc_kernels *k = lmc_ops_kernels(op, 1, &w);
    if (!k || !lmc_ops_have(op, (const void *)k->quantize)) return NULL;

    int64_t qshape[LMC_MAX_DIMS], sshape[LMC_MAX_DIMS];
    for (int i = 0; i < w->ndim; i++) qshape[i] = sshape[i] = w->shape[i];
    qshape[w->ndim - 1] = K * bits / 32;
    sshape[w->ndim - 1] = K / group_size;
    lmc_device dev = w->buf->device;
    lmc_array *wc = lmc_contiguous(w);
    lmc_array *wq = lmc_array_new(LMC_U32, w->ndim, qshape, dev);
    lmc_array *s = lmc_array_new(w->dtype, w->ndim, sshape, dev);
    lmc_array *b = lmc_array_new(w->dtype, w->ndim, sshape, dev);
    if (!wc || !wq || !s || !b || k->quantize(wq, s, b, wc, group_size, bits) != LMC_OK) {
        lmc_array_free(wc);
        lmc_array_free(wq);
        lmc_array_free(s);
        lmc_array_free(b);
        return NULL;
    }
    lmc_array_free(wc);
    *scales = s;
    *biases = b;
    return wq;
}

int64_t lmc_quant_check(const char *op, const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                               int group_size, int bits) {
    if (lmc_quant_check_params(op, group_size, bits) != LMC_OK) return -1;
    char b1[128], b2[128], b3[128];
    if (wq->dtype != LMC_U32) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: packed weights must be u32, got %s", op, lmc_dtype_name(wq->dtype));
        return -1;
    }
    if (!float_dtype(scales->dtype) || biases->dtype != scales->dtype) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: scales (%s) and biases (%s) must share one float dtype", op,
                      lmc_dtype_name(scales->dtype), lmc_dtype_name(biases->dtype));
        return -1;
    }
    bool ok = wq->ndim >= 1 && wq->ndim == scales->ndim && wq->ndim == biases->ndim;
    for (int i = 0; ok && i < wq->ndim; i++) {
        ok = scales->shape[i] == biases->shape[i];
        if (i < wq->ndim - 1) ok = ok && wq->shape[i] == scales->shape[i];
    }
    int64_t K = ok ? wq->shape[wq->ndim - 1] * 32 / bits : 0;
    if (!ok || (wq->shape[wq->ndim - 1] * 32) % bits != 0 || scales->shape[wq->ndim - 1] * group_size != K) {
        lmc_set_error(LMC_ERR_SHAPE,
                      "%s: packed weights %s do not match scales %s and biases %s for group size %d and %d bits", op,
                      lmc_shape_str(wq->ndim, wq->shape, b1, sizeof b1),
                      lmc_shape_str(scales->ndim, scales->shape, b2, sizeof b2),
                      lmc_shape_str(biases->ndim, biases->shape, b3, sizeof b3), group_size, bits);
        return -1;
    }
    return K;
}

lmc_array *lmc_dequantize(const lmc_array *wq, const lmc_array *scales, const lmc_array *biases, int group_size,
                          int bits) {
    const char *op = "dequantize";
    const lmc_array *in[3] = {wq, scales, biases};
    if (lmc_ops_null_input(op, 3, in)) return NULL;
    int64_t K = lmc_quant_check(op, wq, scales, biases, group_size, bits);
    if (K < 0) return NULL;
    const lmc_kernels *k = lmc_ops_kernels(op, 3, in);
    if (!k || !lmc_ops_have(op, (const void *)k->dequantize)) return NULL;
    int64_t shape[LMC_MAX_DIMS];
    for (int i = 0; i < wq->ndim; i++) shape[i] = wq->shape[i];
    shape[wq->ndim - 1] = K;
    lmc_array *wc = lmc_contiguous(wq), *sc = lmc_contiguous(scales), *bc = lmc_contiguous(biases);
    lmc_array *out = lmc_array_new(scales->dtype, wq->ndim, shape, wq->buf->device);
    if (wc && sc && bc && out && k->dequantize(out, wc, sc, bc, group_size, bits) != LMC_OK) {
        lmc_array_free(out);
        out = NULL;
    }
    if (!wc || !sc || !bc) {
        lmc_array_free(out);
        out = NULL;
    }
    lmc_array_free(wc);
    lmc_array_free(sc);
    lmc_array_free(bc);
    lmc_tape_record(LMC_OP_NONDIFF, out, 3, in, &(lmc_op_params){.name = op});
    return out;
}

/* One quantized_matmul between its checks and its result: the output and
 * the contiguous views the kernel reads, which must live until the kernel
 * has run (for a batch, until the batch ends). */
typedef struct qmm_call {
    const lmc_array *in[4]; /* x, wq, scales, biases as given */
    int group_size, bits;
    const lmc_kernels *k;
    lmc_array *out, *xc, *wc, *sc, *bc, *x2, *o2;
} qmm_call;

/* Checks the arguments and allocates the output and views; false (with the
 * error set and nothing held) when the call cannot run. */
static bool qmm_setup(qmm_call *c, const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                      const lmc_array *biases, int group_size, int bits) {
    const char *op = "quantized_matmul";
    *c = (qmm_call){.in = {x, wq, scales, biases}, .group_size = group_size, .bits = bits};
    if (lmc_ops_null_input(op, 4, c->in)) return false;
    int64_t K = lmc_quant_check(op, wq, scales, biases, group_size, bits);
    if (K < 0) return false;
    char b1[128], b2[128];
    if (wq->ndim != 2) {
        lmc_set_error(LMC_ERR_SHAPE, "quantized_matmul: packed weights must be 2-d [N, K*bits/32], got %s",
                      lmc_shape_str(wq->ndim, wq->shape, b1, sizeof b1));
        return false;
    }
    if (!float_dtype(x->dtype) || x->ndim < 1 || x->shape[x->ndim - 1] != K) {
        lmc_set_error(LMC_ERR_SHAPE, "quantized_matmul: x %s %s does not match quantised weights %s (K = %lld)",
                      lmc_dtype_name(x->dtype), lmc_shape_str(x->ndim, x->shape, b1, sizeof b1),
                      lmc_shape_str(wq->ndim, wq->shape, b2, sizeof b2), (long long)K);
        return false;
    }
    c->k = lmc_ops_kernels(op, 4, c->in);
    if (!c->k || !lmc_ops_have(op, (const void *)c->k->quantized_matmul)) return false;

    int64_t N = wq->shape[0], M = x->size / K;
    int64_t oshape[LMC_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) oshape[i] = x->shape[i];
    oshape[x->ndim - 1] = N;
    c->out = lmc_array_new(x->dtype, x->ndim, oshape, x->buf->device);
    c->xc = lmc_contiguous(x);
    c->wc = lmc_contiguous(wq);
    c->sc = lmc_contiguous(scales);
    c->bc = lmc_contiguous(biases);
    if (c->out && c->xc && c->wc && c->sc && c->bc) {
        /* The kernel sees x as [M, K] and out as [M, N]. */
        int64_t xs[2] = {M, K}, os[2] = {M, N}, st[2];
        lmc_contiguous_strides(2, xs, st);
        c->x2 = lmc_array_view(c->xc->buf, c->xc->offset, c->xc->dtype, 2, xs, st);
        lmc_contiguous_strides(2, os, st);
        c->o2 = lmc_array_view(c->out->buf, c->out->offset, c->out->dtype, 2, os, st);
    }
    if (!c->x2 || !c->o2) {
        lmc_array_free(c->out);
        c->out = NULL;
    }
    return c->out != NULL;
}

static lmc_status qmm_launch(const qmm_call *c) {
    if (c->o2->shape[0] == 0 || c->o2->shape[1] == 0) return LMC_OK;
    return c->k->quantized_matmul(c->o2, c->x2, c->wc, c->sc, c->bc, c->group_size, c->bits);
}

/* Drops the views and records the op; the output, or NULL when !ok. */
static lmc_array *qmm_finish(qmm_call *c, bool ok) {
    if (!ok) {
        lmc_array_free(c->out);
        c->out = NULL;
    }
    lmc_array *views[] = {c->x2, c->o2, c->xc, c->wc, c->sc, c->bc};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) lmc_array_free(views[i]);
    lmc_tape_record(LMC_OP_QUANTIZED_MATMUL, c->out, 4, c->in,
                    &(lmc_op_params){.group_size = c->group_size, .bits = c->bits});
    return c->out;
}

static _Thread_local int t_activation_bits = 24;

int lmc_quant_activation_bits(void) { return t_activation_bits; }

int lmc_quant_set_activation_bits(int bits) {
    int old = t_activation_bits;
    t_activation_bits = bits == 8 ? 8 : 24;
    return old;
}

lmc_array *lmc_quantized_matmul(const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                                const lmc_array *biases, int group_size, int bits) {
    qmm_call c;
    bool ok = qmm_setup(&c, x, wq, scales, biases, group_size, bits) && qmm_launch(&c) == LMC_OK;
    return qmm_finish(&c, ok);
}

lmc_status lmc_quantized_matmul_many(const lmc_array *x, int n, const lmc_qmm_weights *w, lmc_array **out) {
    qmm_call c[LMC_QMM_MANY_MAX];
    bool ok = n >= 1 && n <= LMC_QMM_MANY_MAX;
    if (!ok) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "quantized_matmul: %d weights (1 to %d)", n, LMC_QMM_MANY_MAX);
    int set = 0;
    for (; ok && set < n; set++) ok = qmm_setup(&c[set], x, w[set].wq, w[set].scales, w[set].biases, w[set].group_size, w[set].bits);
    /* Batched where every weight resolved to one device with batches. */
    const lmc_kernels *k = ok ? c[0].k : NULL;
    for (int i = 1; i < set; i++)
        if (c[i].k != k) k = NULL;
    bool batch = k && k->batch_begin && k->batch_end;
    if (batch) k->batch_begin();
    for (int i = 0; ok && i < n; i++) ok = qmm_launch(&c[i]) == LMC_OK;
    if (batch) {
        lmc_status st = k->batch_end(); /* ends it even after a failed launch */
        ok = ok && st == LMC_OK;
    }
    for (int i = 0; i < set; i++) { /* c[set-1] may be a failed setup: it holds nothing but views */
        lmc_array *y = qmm_finish(&c[i], ok);
        if (ok) out[i] = y;
    }
    if (!ok)
        for (int i = 0; i < n; i++) out[i] = NULL;
    return ok ? LMC_OK : lmc_last_status();
}
