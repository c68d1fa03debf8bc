/* Gathers and scatters along an axis. The kernels check every index (dtype
 * and range) and report the offending value. */
#include <string.h>

#include "ops/ops_internal.h"
#include "train/tape.h"

static lmc_array *finish(lmc_array *out, lmc_status s) {
    if (s == LMC_OK) return out;
    lmc_array_free(out);
    return NULL;
}

static bool index_dtype(const char *op, const lmc_array *idx) {
    lmc_dtype dt = idx->dtype;
    if (dt == LMC_I32 || dt == LMC_U32 || dt == LMC_U8 || dt == LMC_I64) return true;
    lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: indices must have an integer dtype, got %s", op, lmc_dtype_name(dt));
    return false;
}

lmc_array *lmc_take(const lmc_array *a, const lmc_array *indices, int axis) {
    const lmc_array *in[2] = {a, indices};
    if (lmc_ops_null_input("take", 2, in)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels("take", 2, in);
    if (!k || !lmc_ops_have("take", k->take) || !index_dtype("take", indices)) return NULL;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) {
        lmc_error_prefix("take");
        return NULL;
    }
    int nd = a->ndim - 1 + indices->ndim;
    if (nd > LMC_MAX_DIMS) {
        lmc_set_error(LMC_ERR_SHAPE, "take: result would have %d dimensions (at most %d)", nd, LMC_MAX_DIMS);
        return NULL;
    }
    int64_t shape[LMC_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < ax; d++) shape[n++] = a->shape[d];
    for (int d = 0; d < indices->ndim; d++) shape[n++] = indices->shape[d];
    for (int d = ax + 1; d < a->ndim; d++) shape[n++] = a->shape[d];
    lmc_array *out = lmc_array_new(a->dtype, nd, shape, a->buf->device);
    if (!out) return NULL;
    /* Called even for an empty result: the indices are still checked. */
    out = finish(out, k->take(out, a, indices, ax));
    lmc_tape_record(LMC_OP_TAKE, out, 2, in, &(lmc_op_params){.axis = ax});
    return out;
}

/* Checks that idx has a's rank and fits a except along ax. */
static bool along_shapes(const char *op, const lmc_array *a, const lmc_array *idx, int ax, bool idx_may_grow) {
    char b1[128], b2[128];
    if (idx->ndim != a->ndim) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: indices %s must have as many dimensions as the array %s", op,
                      lmc_shape_str(idx->ndim, idx->shape, b1, sizeof b1), lmc_shape_str(a->ndim, a->shape, b2, sizeof b2));
        return false;
    }
    for (int d = 0; d < a->ndim; d++) {
        if (d == ax || idx->shape[d] == a->shape[d] || idx->shape[d] == 1 || (idx_may_grow && a->shape[d] == 1)) continue;
        lmc_set_error(LMC_ERR_SHAPE, "%s: indices %s do not fit the array %s outside axis %d", op,
                      lmc_shape_str(idx->ndim, idx->shape, b1, sizeof b1), lmc_shape_str(a->ndim, a->shape, b2, sizeof b2),
                      ax);
        return false;
    }
    return true;
}

lmc_array *lmc_take_along_axis(const lmc_array *a, const lmc_array *indices, int axis) {
    const lmc_array *in[2] = {a, indices};
    if (lmc_ops_null_input("take_along_axis", 2, in)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels("take_along_axis", 2, in);
    if (!k || !lmc_ops_have("take_along_axis", k->take_along) || !index_dtype("take_along_axis", indices)) return NULL;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) {
        lmc_error_prefix("take_along_axis");
        return NULL;
    }
    if (!along_shapes("take_along_axis", a, indices, ax, true)) return NULL;
    /* Output: broadcast of a and indices except along ax, which is the indices'. */
    int64_t shape[LMC_MAX_DIMS], astrides[LMC_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        shape[d] = d == ax ? indices->shape[d] : (a->shape[d] == 1 ? indices->shape[d] : a->shape[d]);
        astrides[d] = d != ax && a->shape[d] != shape[d] ? 0 : a->strides[d];
    }
    int64_t ashape[LMC_MAX_DIMS];
    memcpy(ashape, shape, sizeof ashape);
    ashape[ax] = a->shape[ax];
    lmc_array *out = lmc_array_new(a->dtype, a->ndim, shape, a->buf->device);
    lmc_array *av = out ? lmc_array_view(a->buf, a->offset, a->dtype, a->ndim, ashape, astrides) : NULL;
    lmc_array *iv = av ? lmc_broadcast_view(indices, a->ndim, shape) : NULL;
    lmc_status s = iv ? k->take_along(out, av, iv, ax) : lmc_last_status();
    lmc_array_free(av);
    lmc_array_free(iv);
    if (!out) return NULL;
    out = finish(out, s);
    lmc_tape_record(LMC_OP_TAKE_ALONG_AXIS, out, 2, in, &(lmc_op_params){.axis = ax});
    return out;
}

static lmc_array *put_along(const char *op, const lmc_array *a, const lmc_array *indices, const lmc_array *values, int axis,
                            bool add) {
    const lmc_array *in[3] = {a, indices, values};
    if (lmc_ops_null_input(op, 3, in)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels(op, 3, in);
    if (!k || !lmc_ops_have(op, k->put_along) || !lmc_ops_have(op, k->copy) || !index_dtype(op, indices)) return NULL;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) {
        lmc_error_prefix("%s", op);
        return NULL;
    }
    if (!along_shapes(op, a, indices, ax, false)) return NULL;
    /* The positions written: a's shape with the indices' length along ax. */
    int64_t shape[LMC_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[ax] = indices->shape[ax];
    lmc_array *out = lmc_array_new(a->dtype, a->ndim, a->shape, a->buf->device);
    lmc_array *iv = out ? lmc_broadcast_view(indices, a->ndim, shape) : NULL;
    lmc_array *vv = iv ? lmc_broadcast_view(values, a->ndim, shape) : NULL;
    if (iv && !vv) lmc_error_prefix("%s: values", op);
    lmc_status s = vv ? (out->size ? k->copy(out, a) : LMC_OK) : lmc_last_status();
    if (s == LMC_OK) s = k->put_along(out, iv, vv, ax, add);
    lmc_array_free(iv);
    lmc_array_free(vv);
    if (!out) return NULL;
    out = finish(out, s);
    lmc_tape_record(LMC_OP_NONDIFF, out, 3, in, &(lmc_op_params){.name = op});
    return out;
}

lmc_array *lmc_put_along_axis(const lmc_array *a, const lmc_array *indices, const lmc_array *values, int axis) {
    return put_along("put_along_axis", a, indices, values, axis, false);
}

lmc_array *lmc_scatter_add_along_axis(const lmc_array *a, const lmc_array *indices, const lmc_array *values, int axis) {
    return put_along("scatter_add_along_axis", a, indices, values, axis, true);
}
