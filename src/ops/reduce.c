/* Reductions along an axis, softmax, cumsum, sort and top-k: argument
 * checks, output shapes and dtypes; the device kernels do the work. */
#include <string.h>

#include "ops/ops_internal.h"
#include "train/tape.h"

static lmc_array *finish(lmc_array *out, lmc_status s) {
    if (s == LMC_OK) return out;
    lmc_array_free(out);
    return NULL;
}

/* A new reference to a with its axes flattened into one (a copy when a is
 * not contiguous). */
static lmc_array *flatten(const char *op, const lmc_kernels *k, const lmc_array *a) {
    int64_t n = a->size, stride = 1;
    if (lmc_array_is_contiguous(a)) return lmc_array_view(a->buf, a->offset, a->dtype, 1, &n, &stride);
    if (!lmc_ops_have(op, k->copy)) return NULL;
    lmc_array *c = lmc_array_new(a->dtype, a->ndim, a->shape, a->buf->device);
    if (!c) return NULL;
    if (k->copy(c, a) != LMC_OK) {
        lmc_array_free(c);
        return NULL;
    }
    lmc_array *flat = lmc_array_view(c->buf, c->offset, c->dtype, 1, &n, &stride);
    lmc_array_free(c);
    return flat;
}

/* A view of the contiguous array r with a new shape (same element count). */
static lmc_array *reshaped(lmc_array *r, int ndim, const int64_t *shape) {
    int64_t strides[LMC_MAX_DIMS];
    lmc_contiguous_strides(ndim, shape, strides);
    lmc_array *v = lmc_array_view(r->buf, r->offset, r->dtype, ndim, shape, strides);
    lmc_array_free(r);
    return v;
}

static lmc_dtype float_or_f32(lmc_dtype dt) { return lmc_dtype_is_float(dt) ? dt : LMC_F32; }

static lmc_array *reduce(const char *name, lmc_reduce_op op, const lmc_array *a, int axis, bool keepdims) {
    if (lmc_ops_null_input(name, 1, &a)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels(name, 1, &a);
    if (!k || !lmc_ops_have(name, k->reduce)) return NULL;
    lmc_array *src;
    int ax;
    /* The final shape: a's with the axis removed (or kept as 1). */
    int fnd = 0;
    int64_t fshape[LMC_MAX_DIMS];
    if (axis == LMC_ALL_AXES) {
        if (keepdims)
            for (int d = 0; d < a->ndim; d++) fshape[fnd++] = 1;
        src = flatten(name, k, a);
        ax = 0;
    } else {
        ax = lmc_normalize_axis(axis, a->ndim);
        if (ax < 0) {
            lmc_error_prefix("%s", name);
            return NULL;
        }
        for (int d = 0; d < a->ndim; d++)
            if (d != ax || keepdims) fshape[fnd++] = d == ax ? 1 : a->shape[d];
        src = lmc_array_retain((lmc_array *)a);
    }
    if (!src) return NULL;
    bool needs_element = op == LMC_REDUCE_MAX || op == LMC_REDUCE_MIN || op == LMC_REDUCE_ARGMAX || op == LMC_REDUCE_ARGMIN;
    if (needs_element && src->shape[ax] == 0) {
        lmc_array_free(src);
        lmc_set_error(LMC_ERR_SHAPE, "%s: cannot reduce an empty axis", name);
        return NULL;
    }
    lmc_dtype dt = a->dtype;
    if (op == LMC_REDUCE_SUM && !lmc_dtype_is_float(dt)) dt = LMC_I32;
    if (op == LMC_REDUCE_MEAN || op == LMC_REDUCE_LOGSUMEXP) dt = float_or_f32(dt);
    if (op == LMC_REDUCE_ARGMAX || op == LMC_REDUCE_ARGMIN) dt = LMC_I32;
    int64_t oshape[LMC_MAX_DIMS];
    memcpy(oshape, src->shape, sizeof oshape);
    oshape[ax] = 1;
    lmc_array *out = lmc_array_new(dt, src->ndim, oshape, src->buf->device);
    lmc_status s = out ? (out->size ? k->reduce(op, out, src, ax) : LMC_OK) : lmc_last_status();
    lmc_array_free(src);
    if (!out || !finish(out, s)) return NULL;
    out = reshaped(out, fnd, fshape);
    lmc_op_params p = {.code = op, .axis = axis == LMC_ALL_AXES ? LMC_ALL_AXES : ax, .flag = keepdims};
    lmc_tape_record(LMC_OP_REDUCE, out, 1, &a, &p);
    return out;
}

lmc_array *lmc_sum(const lmc_array *a, int axis, bool keepdims) { return reduce("sum", LMC_REDUCE_SUM, a, axis, keepdims); }
lmc_array *lmc_mean(const lmc_array *a, int axis, bool keepdims) { return reduce("mean", LMC_REDUCE_MEAN, a, axis, keepdims); }
lmc_array *lmc_max(const lmc_array *a, int axis, bool keepdims) { return reduce("max", LMC_REDUCE_MAX, a, axis, keepdims); }
lmc_array *lmc_min(const lmc_array *a, int axis, bool keepdims) { return reduce("min", LMC_REDUCE_MIN, a, axis, keepdims); }
lmc_array *lmc_argmax(const lmc_array *a, int axis, bool keepdims) {
    return reduce("argmax", LMC_REDUCE_ARGMAX, a, axis, keepdims);
}
lmc_array *lmc_argmin(const lmc_array *a, int axis, bool keepdims) {
    return reduce("argmin", LMC_REDUCE_ARGMIN, a, axis, keepdims);
}
lmc_array *lmc_logsumexp(const lmc_array *a, int axis, bool keepdims) {
    return reduce("logsumexp", LMC_REDUCE_LOGSUMEXP, a, axis, keepdims);
}

/* --- axis-preserving ops -------------------------------------------------------- */

/* Common checks for ops along one axis: the kernel table and the
 * normalised axis; -1 with the error recorded otherwise. */
static int axis_op(const char *name, const lmc_array *a, int axis, const lmc_kernels **k) {
    if (lmc_ops_null_input(name, 1, &a)) return -1;
    *k = lmc_ops_kernels(name, 1, &a);
    if (!*k) return -1;
    int ax = lmc_normalize_axis(axis, a->ndim);
    if (ax < 0) lmc_error_prefix("%s", name);
    return ax;
}

static lmc_array *softmax(const char *name, const lmc_array *a, int axis, bool log) {
    const lmc_kernels *k;
    int ax = axis_op(name, a, axis, &k);
    if (ax < 0 || !lmc_ops_have(name, (const void *)k->softmax)) return NULL;
    lmc_array *out = lmc_array_new(float_or_f32(a->dtype), a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    out = finish(out, out->size ? k->softmax(out, a, ax, log) : LMC_OK);
    lmc_tape_record(LMC_OP_SOFTMAX, out, 1, &a, &(lmc_op_params){.axis = ax, .flag = log});
    return out;
}

lmc_array *lmc_softmax(const lmc_array *a, int axis) { return softmax("softmax", a, axis, false); }
lmc_array *lmc_log_softmax(const lmc_array *a, int axis) { return softmax("log_softmax", a, axis, true); }

lmc_array *lmc_cumsum(const lmc_array *a, int axis, bool reverse) {
    const lmc_kernels *k;
    int ax = axis_op("cumsum", a, axis, &k);
    if (ax < 0 || !lmc_ops_have("cumsum", (const void *)k->cumsum)) return NULL;
    lmc_dtype dt = lmc_dtype_is_float(a->dtype) ? a->dtype : LMC_I32;
    lmc_array *out = lmc_array_new(dt, a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    out = finish(out, out->size ? k->cumsum(out, a, ax, reverse) : LMC_OK);
    lmc_tape_record(LMC_OP_CUMSUM, out, 1, &a, &(lmc_op_params){.axis = ax, .flag = reverse});
    return out;
}

static lmc_array *sort(const char *name, const lmc_array *a, int axis, bool want_indices) {
    const lmc_kernels *k;
    int ax = axis_op(name, a, axis, &k);
    if (ax < 0 || !lmc_ops_have(name, (const void *)k->sort)) return NULL;
    lmc_array *out = lmc_array_new(want_indices ? LMC_I32 : a->dtype, a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    lmc_status s = LMC_OK;
    if (out->size) s = want_indices ? k->sort(NULL, out, a, ax) : k->sort(out, NULL, a, ax);
    out = finish(out, s);
    lmc_tape_record(LMC_OP_NONDIFF, out, 1, &a, &(lmc_op_params){.name = name});
    return out;
}

lmc_array *lmc_sort(const lmc_array *a, int axis) { return sort("sort", a, axis, false); }
lmc_array *lmc_argsort(const lmc_array *a, int axis) { return sort("argsort", a, axis, true); }

/* Top-k from the stable ascending sort: sorting a reversed along the axis
 * puts equal values in descending index order, so reading that sort from
 * its end gives values in descending order with ties in ascending index
 * order (NaN, sorted last, counts as the largest). */
lmc_array *lmc_topk(const lmc_array *a, int64_t kk, int axis, lmc_array **indices) {
    if (indices) *indices = NULL;
    const lmc_kernels *k;
    int ax = axis_op("topk", a, axis, &k);
    if (ax < 0 || !lmc_ops_have("topk", (const void *)k->sort)) return NULL;
    int64_t n = a->shape[ax];
    if (kk < 0 || kk > n) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "topk: k = %lld is out of range for axis %d of size %lld", (long long)kk,
                      axis, (long long)n);
        return NULL;
    }
    int64_t es = (int64_t)lmc_dtype_size(a->dtype);
    int64_t rstrides[LMC_MAX_DIMS];
    memcpy(rstrides, a->strides, sizeof rstrides);
    rstrides[ax] = -a->strides[ax];
    size_t roff = a->offset + (size_t)((n ? n - 1 : 0) * a->strides[ax] * es);
    lmc_array *rev = lmc_array_view(a->buf, roff, a->dtype, a->ndim, a->shape, rstrides);
    lmc_array *sorted = rev ? lmc_array_new(LMC_I32, a->ndim, a->shape, a->buf->device) : NULL;
    lmc_status s = sorted ? (sorted->size ? k->sort(NULL, sorted, rev, ax) : LMC_OK) : lmc_last_status();
    lmc_array_free(rev);
    if (!sorted || !finish(sorted, s)) return NULL;
    /* The last kk sorted positions, last first: positions into rev, j -> n-1-j in a. */
    int64_t tshape[LMC_MAX_DIMS], tstrides[LMC_MAX_DIMS];
    memcpy(tshape, sorted->shape, sizeof tshape);
    memcpy(tstrides, sorted->strides, sizeof tstrides);
    tshape[ax] = kk;
    tstrides[ax] = -sorted->strides[ax];
    size_t toff = sorted->offset + (size_t)((n ? n - 1 : 0) * sorted->strides[ax] * 4);
    lmc_array *tail = lmc_array_view(sorted->buf, toff, LMC_I32, a->ndim, tshape, tstrides);
    lmc_array_free(sorted);
    lmc_array *neg = lmc_neg(tail);
    lmc_array *idx = lmc_add_scalar(neg, (double)(n - 1));
    lmc_array_free(tail);
    lmc_array_free(neg);
    lmc_array *values = lmc_take_along_axis(a, idx, ax);
    if (values && indices) *indices = idx;
    else lmc_array_free(idx);
    return values;
}
