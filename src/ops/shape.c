/* Shape ops: views that share the buffer (reshape when the layout allows,
 * permute, broadcast, expand/squeeze, slice) and the copying ones
 * (contiguous, copy, concatenate, write_slice). */
#include <string.h>

#include "ops/ops_internal.h"
#include "train/tape.h"

static lmc_array *copy_as(const lmc_array *a, lmc_dtype dt);

static lmc_array *view_of(const lmc_array *a, int ndim, const int64_t *shape, const int64_t *strides, size_t offset) {
    return lmc_array_view(a->buf, offset, a->dtype, ndim, shape, strides);
}

/* Strides for viewing `a` with a new shape of the same size without copying,
 * or false when the layout does not allow it (NumPy's no-copy reshape rule:
 * each group of old axes that maps onto a group of new axes must be
 * contiguous within itself). */
static bool reshape_strides(const lmc_array *a, int ndim, const int64_t *shape, int64_t *strides) {
    int oi = 0, oj = 1, ni = 0, nj = 1;
    /* Drop size-1 old axes: they do not constrain the layout. */
    int64_t os[LMC_MAX_DIMS], ost[LMC_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != 1) {
            os[ond] = a->shape[i];
            ost[ond] = a->strides[i];
            ond++;
        }
    if (a->size == 0) {
        lmc_contiguous_strides(ndim, shape, strides);
        return true;
    }
    while (ni < ndim && oi < ond) {
        int64_t np = shape[ni], op = os[oi];
        while (np != op) {
            if (np < op) np *= shape[nj++];
            else op *= os[oj++];
        }
        for (int k = oi; k < oj - 1; k++)
            if (ost[k] != os[k + 1] * ost[k + 1]) return false;
        strides[nj - 1] = ost[oj - 1];
        for (int k = nj - 1; k > ni; k--) strides[k - 1] = strides[k] * shape[k];
        ni = nj++;
        oi = oj++;
    }
    /* Trailing new axes of size 1. */
    int64_t last = ni > 0 ? strides[ni - 1] : 1;
    for (int k = ni; k < ndim; k++) strides[k] = last;
    return true;
}

lmc_array *lmc_reshape(const lmc_array *a, int ndim, const int64_t *shape) {
    if (lmc_ops_null_input("reshape", 1, &a)) return NULL;
    if (ndim < 0 || ndim > LMC_MAX_DIMS || (ndim && !shape)) {
        lmc_set_error(LMC_ERR_SHAPE, "reshape: invalid number of dimensions %d", ndim);
        return NULL;
    }
    int64_t sh[LMC_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                lmc_set_error(LMC_ERR_SHAPE, "reshape: more than one dimension is -1");
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            lmc_set_error(LMC_ERR_SHAPE, "reshape: dimension %d is negative (%lld)", i, (long long)shape[i]);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || a->size % known) {
            char b1[128], b2[128];
            lmc_set_error(LMC_ERR_SHAPE, "reshape: cannot reshape %s into %s", lmc_shape_str(a->ndim, a->shape, b1, sizeof b1),
                          lmc_shape_str(ndim, shape, b2, sizeof b2));
            return NULL;
        }
        sh[infer] = a->size / known;
        known *= sh[infer];
    }
    if (known != a->size) {
        char b1[128], b2[128];
        lmc_set_error(LMC_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) into %s",
                      lmc_shape_str(a->ndim, a->shape, b1, sizeof b1), (long long)a->size,
                      lmc_shape_str(ndim, shape, b2, sizeof b2));
        return NULL;
    }
    int64_t strides[LMC_MAX_DIMS];
    lmc_array *v;
    if (reshape_strides(a, ndim, sh, strides)) {
        v = view_of(a, ndim, sh, strides, a->offset);
    } else {
        lmc_array *c = copy_as(a, a->dtype);
        if (!c) return NULL;
        lmc_contiguous_strides(ndim, sh, strides);
        v = view_of(c, ndim, sh, strides, c->offset);
        lmc_array_free(c);
    }
    lmc_tape_record(LMC_OP_RESHAPE, v, 1, &a, NULL);
    return v;
}

lmc_array *lmc_permute(const lmc_array *a, const int *axes) {
    if (lmc_ops_null_input("permute", 1, &a)) return NULL;
    int64_t shape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS];
    bool seen[LMC_MAX_DIMS] = {0};
    lmc_op_params p = {0};
    for (int i = 0; i < a->ndim; i++) {
        int ax = axes ? lmc_normalize_axis(axes[i], a->ndim) : -1;
        if (ax < 0 || seen[ax]) {
            lmc_set_error(LMC_ERR_SHAPE, "permute: axes are not a permutation of 0..%d", a->ndim - 1);
            return NULL;
        }
        seen[ax] = true;
        p.perm[i] = ax;
        shape[i] = a->shape[ax];
        strides[i] = a->strides[ax];
    }
    lmc_array *out = view_of(a, a->ndim, shape, strides, a->offset);
    lmc_tape_record(LMC_OP_PERMUTE, out, 1, &a, &p);
    return out;
}

lmc_array *lmc_swapaxes(const lmc_array *a, int axis1, int axis2) {
    if (lmc_ops_null_input("swapaxes", 1, &a)) return NULL;
    int x = lmc_normalize_axis(axis1, a->ndim), y = lmc_normalize_axis(axis2, a->ndim);
    if (x < 0 || y < 0) return NULL;
    int axes[LMC_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) axes[i] = i;
    axes[x] = y;
    axes[y] = x;
    return lmc_permute(a, axes);
}

lmc_array *lmc_transpose(const lmc_array *a) {
    if (lmc_ops_null_input("transpose", 1, &a)) return NULL;
    int axes[LMC_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) axes[i] = a->ndim - 1 - i;
    return lmc_permute(a, axes);
}

lmc_array *lmc_broadcast_to(const lmc_array *a, int ndim, const int64_t *shape) {
    if (lmc_ops_null_input("broadcast_to", 1, &a)) return NULL;
    if (lmc_check_shape(ndim, shape) != LMC_OK) return NULL;
    lmc_array *out = lmc_broadcast_view(a, ndim, shape);
    lmc_tape_record(LMC_OP_BROADCAST_TO, out, 1, &a, NULL);
    return out;
}

lmc_array *lmc_expand_dims(const lmc_array *a, int axis) {
    if (lmc_ops_null_input("expand_dims", 1, &a)) return NULL;
    if (a->ndim == LMC_MAX_DIMS) {
        lmc_set_error(LMC_ERR_SHAPE, "expand_dims: arrays have at most %d dimensions", LMC_MAX_DIMS);
        return NULL;
    }
    int ax = lmc_normalize_axis(axis, a->ndim + 1);
    if (ax < 0) return NULL;
    int64_t shape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS];
    for (int i = 0, j = 0; i <= a->ndim; i++) {
        if (i == ax) {
            shape[i] = 1;
            strides[i] = j < a->ndim ? a->strides[j] * a->shape[j] : 1;
        } else {
            shape[i] = a->shape[j];
            strides[i] = a->strides[j];
            j++;
        }
    }
    lmc_array *out = view_of(a, a->ndim + 1, shape, strides, a->offset);
    lmc_tape_record(LMC_OP_RESHAPE, out, 1, &a, NULL);
    return out;
}

lmc_array *lmc_squeeze(const lmc_array *a, int axis) {
    if (lmc_ops_null_input("squeeze", 1, &a)) return NULL;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) return NULL;
    if (a->shape[ax] != 1) {
        lmc_set_error(LMC_ERR_SHAPE, "squeeze: axis %d has size %lld, not 1", axis, (long long)a->shape[ax]);
        return NULL;
    }
    int64_t shape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS];
    for (int i = 0, j = 0; i < a->ndim; i++)
        if (i != ax) {
            shape[j] = a->shape[i];
            strides[j] = a->strides[i];
            j++;
        }
    lmc_array *out = view_of(a, a->ndim - 1, shape, strides, a->offset);
    lmc_tape_record(LMC_OP_RESHAPE, out, 1, &a, NULL);
    return out;
}

lmc_array *lmc_slice(const lmc_array *a, int axis, int64_t start, int64_t stop, int64_t step) {
    if (lmc_ops_null_input("slice", 1, &a)) return NULL;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) return NULL;
    if (step == 0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "slice: step must not be 0");
        return NULL;
    }
    lmc_op_params p = {.axis = ax, .start = start, .stop = stop, .step = step}; /* as given, to slice again */
    int64_t n = a->shape[ax];
    /* Python's slice.indices(n). */
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? n : n - 1;
    if (start == LMC_END) start = step > 0 ? hi : lo;
    else if (start < 0) start = start + n < lo ? lo : start + n;
    else start = start > hi ? hi : start;
    if (stop == LMC_END) stop = step > 0 ? hi : lo;
    else if (stop < 0) stop = stop + n < lo ? lo : stop + n;
    else stop = stop > hi ? hi : stop;
    int64_t len = 0;
    if (step > 0 && stop > start) len = (stop - start + step - 1) / step;
    if (step < 0 && start > stop) len = (start - stop + (-step) - 1) / (-step);
    int64_t shape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    memcpy(strides, a->strides, sizeof strides);
    shape[ax] = len;
    strides[ax] = a->strides[ax] * step;
    int64_t off = len ? start * a->strides[ax] : 0;
    lmc_array *out =
        view_of(a, a->ndim, shape, strides, (size_t)((int64_t)a->offset + off * (int64_t)lmc_dtype_size(a->dtype)));
    lmc_tape_record(LMC_OP_SLICE, out, 1, &a, &p);
    return out;
}

static lmc_array *copy_as(const lmc_array *a, lmc_dtype dt) {
    const lmc_kernels *k = lmc_ops_kernels("copy", 1, &a);
    if (!k || !lmc_ops_have("copy", k->copy)) return NULL;
    lmc_array *out = lmc_array_new(dt, a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    if (k->copy(out, a) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    return out;
}

lmc_array *lmc_copy(const lmc_array *a) {
    if (lmc_ops_null_input("copy", 1, &a)) return NULL;
    lmc_array *out = copy_as(a, a->dtype);
    lmc_tape_record(LMC_OP_COPY, out, 1, &a, NULL);
    return out;
}

lmc_array *lmc_contiguous(const lmc_array *a) {
    if (lmc_ops_null_input("contiguous", 1, &a)) return NULL;
    lmc_array *out =
        lmc_array_is_contiguous(a) ? view_of(a, a->ndim, a->shape, a->strides, a->offset) : copy_as(a, a->dtype);
    lmc_tape_record(LMC_OP_COPY, out, 1, &a, NULL);
    return out;
}

lmc_array *lmc_concatenate(int n, const lmc_array *const *arrays, int axis) {
    if (n <= 0 || !arrays) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "concatenate: no arrays given");
        return NULL;
    }
    if (lmc_ops_null_input("concatenate", n, arrays)) return NULL;
    const lmc_array *first = arrays[0];
    int ax = lmc_normalize_axis(axis, first->ndim);
    if (ax < 0) return NULL;
    const lmc_kernels *k = lmc_ops_kernels("concatenate", n, arrays);
    if (!k || !lmc_ops_have("concatenate", k->copy)) return NULL;
    int64_t shape[LMC_MAX_DIMS];
    memcpy(shape, first->shape, sizeof shape);
    shape[ax] = 0;
    lmc_dtype dt = first->dtype;
    for (int i = 0; i < n; i++) {
        const lmc_array *a = arrays[i];
        bool ok = a->ndim == first->ndim;
        for (int d = 0; ok && d < a->ndim; d++)
            if (d != ax && a->shape[d] != first->shape[d]) ok = false;
        if (!ok) {
            char b1[128], b2[128];
            lmc_set_error(LMC_ERR_SHAPE, "concatenate: array %d has shape %s, incompatible with %s along axis %d", i,
                          lmc_shape_str(a->ndim, a->shape, b1, sizeof b1),
                          lmc_shape_str(first->ndim, first->shape, b2, sizeof b2), axis);
            return NULL;
        }
        shape[ax] += a->shape[ax];
        dt = lmc_promote(dt, a->dtype);
    }
    lmc_array *out = lmc_array_new(dt, first->ndim, shape, first->buf->device);
    if (!out) return NULL;
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const lmc_array *a = arrays[i];
        lmc_array *dst = lmc_slice(out, ax, pos, pos + a->shape[ax], 1);
        lmc_status s = dst ? k->copy(dst, a) : lmc_last_status();
        lmc_array_free(dst);
        if (s != LMC_OK) {
            lmc_array_free(out);
            return NULL;
        }
        pos += a->shape[ax];
    }
    lmc_tape_record(LMC_OP_CONCATENATE, out, n, arrays, &(lmc_op_params){.axis = ax});
    return out;
}

lmc_array *lmc_slice_region(const char *op, lmc_array *dst, const int64_t *start, const lmc_array *src) {
    const lmc_array *ins[2] = {dst, src};
    if (lmc_ops_null_input(op, 2, ins)) return NULL;
    if (!start) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: start is NULL", op);
        return NULL;
    }
    if (src->ndim != dst->ndim) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: source has %d dimensions, destination %d", op, src->ndim, dst->ndim);
        return NULL;
    }
    if (lmc_tape_requires_grad(src) || lmc_tape_requires_grad(dst)) {
        lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: in-place writes of arrays being differentiated are not supported", op);
        return NULL;
    }
    int64_t strides[LMC_MAX_DIMS];
    int64_t off = 0;
    for (int d = 0; d < dst->ndim; d++) {
        if (start[d] < 0 || start[d] + src->shape[d] > dst->shape[d]) {
            char b1[128], b2[128];
            lmc_set_error(LMC_ERR_SHAPE, "%s: source %s at offset %lld on axis %d does not fit in %s", op,
                          lmc_shape_str(src->ndim, src->shape, b1, sizeof b1), (long long)start[d], d,
                          lmc_shape_str(dst->ndim, dst->shape, b2, sizeof b2));
            return NULL;
        }
        off += start[d] * dst->strides[d];
        strides[d] = dst->strides[d];
    }
    if (!lmc_ops_kernels(op, 2, ins)) return NULL; /* dst and src on different devices */
    return lmc_array_view(dst->buf, (size_t)((int64_t)dst->offset + off * (int64_t)lmc_dtype_size(dst->dtype)),
                          dst->dtype, dst->ndim, src->shape, strides);
}

lmc_status lmc_write_slice(lmc_array *dst, const int64_t *start, const lmc_array *src) {
    lmc_array *region = lmc_slice_region("write_slice", dst, start, src);
    if (!region) return lmc_last_status();
    const lmc_kernels *k = lmc_ops_kernels("write_slice", 1, (const lmc_array *const *)&region);
    lmc_status s = k && lmc_ops_have("write_slice", k->copy) ? k->copy(region, src) : lmc_last_status();
    lmc_array_free(region);
    return s;
}
