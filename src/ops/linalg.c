/* lmc_matmul: shape checks, NumPy 1-d promotion, batch broadcasting and the
 * output dtype; the kernels get 2+ dimensional views whose batch axes already
 * match the output's (stride 0 where an operand is broadcast). */
#include "ops/linalg_internal.h"
#include "ops/ops_internal.h"
#include "train/tape.h"

/* A view of `a` with `ndim` axes where axis `at` (of size 1) is inserted. */
static lmc_array *insert_unit_axis(const lmc_array *a, int at) {
    int64_t shape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS];
    for (int i = 0, j = 0; i <= a->ndim; i++) {
        if (i == at) {
            shape[i] = 1;
            strides[i] = 0;
        } else {
            shape[i] = a->shape[j];
            strides[i] = a->strides[j];
            j++;
        }
    }
    return lmc_array_view(a->buf, a->offset, a->dtype, a->ndim + 1, shape, strides);
}

void lmc_matmul_batch_begin(const lmc_array *x) {
    const lmc_kernels *k = x ? lmc_kernels_for(lmc_array_device(x)) : NULL;
    if (k && k->batch_begin && k->batch_end) k->batch_begin();
}

lmc_status lmc_matmul_batch_end(const lmc_array *x) {
    const lmc_kernels *k = x ? lmc_kernels_for(lmc_array_device(x)) : NULL;
    return k && k->batch_begin && k->batch_end ? k->batch_end() : LMC_OK;
}

lmc_array *lmc_matmul(const lmc_array *a, const lmc_array *b) {
    const lmc_array *in[2] = {a, b};
    if (lmc_ops_null_input("lmc_matmul", 2, in)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels("lmc_matmul", 2, in);
    if (!k || !lmc_ops_have("lmc_matmul", (const void *)k->matmul)) return NULL;
    char s1[160], s2[160];
    if (a->ndim < 1 || b->ndim < 1) {
        lmc_set_error(LMC_ERR_SHAPE, "lmc_matmul: operands need at least 1 dimension, got %s and %s",
                      lmc_shape_str(a->ndim, a->shape, s1, sizeof s1), lmc_shape_str(b->ndim, b->shape, s2, sizeof s2));
        return NULL;
    }
    if (!lmc_dtype_is_float(a->dtype) || !lmc_dtype_is_float(b->dtype)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_matmul: float operands only, got %s and %s",
                      lmc_dtype_name(a->dtype), lmc_dtype_name(b->dtype));
        return NULL;
    }
    int64_t ka = a->shape[a->ndim - 1];
    int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
    if (ka != kb) {
        lmc_set_error(LMC_ERR_SHAPE, "lmc_matmul: inner dimensions differ: a %s has %lld, b %s has %lld",
                      lmc_shape_str(a->ndim, a->shape, s1, sizeof s1), (long long)ka,
                      lmc_shape_str(b->ndim, b->shape, s2, sizeof s2), (long long)kb);
        return NULL;
    }

    /* NumPy: a 1-d a is a row [1, K], a 1-d b a column [K, 1]; the unit axis
     * is dropped from the result. */
    lmc_array *a2 = a->ndim == 1 ? insert_unit_axis(a, 0) : lmc_array_retain((lmc_array *)a);
    lmc_array *b2 = b->ndim == 1 ? insert_unit_axis(b, 1) : lmc_array_retain((lmc_array *)b);
    lmc_array *out = NULL, *av = NULL, *bv = NULL, *ov = NULL;
    if (!a2 || !b2) goto done;

    int64_t batch[LMC_MAX_DIMS];
    int nbatch;
    if (lmc_broadcast_shapes("lmc_matmul", a2->ndim - 2, a2->shape, b2->ndim - 2, b2->shape, &nbatch, batch) != LMC_OK)
        goto done;
    int64_t M = a2->shape[a2->ndim - 2], N = b2->shape[b2->ndim - 1];
    int nd = nbatch + 2;
    if (nd > LMC_MAX_DIMS) {
        lmc_set_error(LMC_ERR_SHAPE, "lmc_matmul: result would have more than %d dimensions", LMC_MAX_DIMS);
        goto done;
    }
    int64_t full[LMC_MAX_DIMS];
    for (int i = 0; i < nbatch; i++) full[i] = batch[i];

    /* The result as returned (unit axes of 1-d operands dropped). */
    int64_t oshape[LMC_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < nbatch; i++) oshape[ond++] = batch[i];
    if (a->ndim > 1) oshape[ond++] = M;
    if (b->ndim > 1) oshape[ond++] = N;
    out = lmc_array_new(lmc_promote(a->dtype, b->dtype), ond, oshape, a->buf->device);
    if (!out) goto done;

    full[nbatch] = M;
    full[nbatch + 1] = ka;
    av = lmc_broadcast_view(a2, nd, full);
    full[nbatch] = ka;
    full[nbatch + 1] = N;
    bv = lmc_broadcast_view(b2, nd, full);
    /* The kernel sees the output as [batch..., M, N]; the dropped unit axes
     * come back with stride 0. */
    int64_t ostr[LMC_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < nbatch; i++) ostr[i] = out->strides[j++];
    ostr[nbatch] = a->ndim > 1 ? out->strides[j++] : 0;
    ostr[nbatch + 1] = b->ndim > 1 ? out->strides[j++] : 0;
    full[nbatch] = M;
    full[nbatch + 1] = N;
    ov = lmc_array_view(out->buf, out->offset, out->dtype, nd, full, ostr);
    if (!av || !bv || !ov) goto fail;
    if (out->size > 0 && k->matmul(ov, av, bv) != LMC_OK) goto fail;
    goto done;
fail:
    lmc_array_free(out);
    out = NULL;
done:
    lmc_array_free(av);
    lmc_array_free(bv);
    lmc_array_free(ov);
    lmc_array_free(a2);
    lmc_array_free(b2);
    lmc_tape_record(LMC_OP_MATMUL, out, 2, in, NULL);
    return out;
}
