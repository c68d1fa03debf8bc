/* Scalar kernels for gathers and scatters along an axis.
 *
 * Indices are checked in one serial pass before any element moves, so an
 * out-of-range index is reported on the calling thread with its value and
 * the output is never half written by a failing call. Negative indices
 * count from the end of the axis. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_loop.h"

static bool index_dtype_ok(lmc_dtype dt) { return dt == LMC_I32 || dt == LMC_U32 || dt == LMC_U8 || dt == LMC_I64; }

static int64_t load_index(const char *p, lmc_dtype dt) {
    switch (dt) {
    case LMC_I32: return *(const int32_t *)p;
    case LMC_U32: return *(const uint32_t *)p;
    case LMC_U8: return *(const uint8_t *)p;
    case LMC_I64: return *(const int64_t *)p;
    default: return 0;
    }
}

typedef struct check_ctx {
    lmc_dtype dt;
    int64_t n;
    bool bad;
    int64_t bad_value;
} check_ctx;

static void check_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    check_ctx *c = ctx;
    for (int64_t i = 0; i < n && !c->bad; i++) {
        int64_t v = load_index(p[0] + i * inner[0], c->dt);
        if (v < -c->n || v >= c->n) c->bad = true, c->bad_value = v;
    }
}

/* Checks dtype and range of every index (idx walked in its own shape). */
static lmc_status check_indices(const char *op, const lmc_array *idx, int axis, int64_t n) {
    if (!index_dtype_ok(idx->dtype))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: indices must have an integer dtype, got %s", op,
                             lmc_dtype_name(idx->dtype));
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 1, &idx);
    check_ctx c = {idx->dtype, n, false, 0};
    lmc_cpu_loop_run(&l, check_row, &c, 0);
    if (c.bad)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: index %lld is out of range for axis %d of size %lld", op,
                             (long long)c.bad_value, axis, (long long)n);
    return LMC_OK;
}

/* Gather: operands out, src (stride 0 on the gathered axis), idx; each output
 * element reads src + index * step. */
typedef struct gather_ctx {
    lmc_dtype idx_dt;
    int64_t n, step, esize;
} gather_ctx;

static void gather_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    gather_ctx *c = ctx;
    if (inner[2] == 0 && inner[0] == c->esize && inner[1] == c->esize) {
        /* One index for a contiguous run (e.g. an embedding row): one copy. */
        int64_t j = load_index(p[2], c->idx_dt);
        if (j < 0) j += c->n;
        memcpy(p[0], p[1] + j * c->step, (size_t)(n * c->esize));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t j = load_index(p[2] + i * inner[2], c->idx_dt);
        if (j < 0) j += c->n;
        memcpy(p[0] + i * inner[0], p[1] + i * inner[1] + j * c->step, (size_t)c->esize);
    }
}

lmc_status lmc_cpu_take_scalar(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis) {
    if (out->dtype != a->dtype) return lmc_set_error(LMC_ERR_INTERNAL, "take: output dtype differs from input");
    int64_t n = a->shape[axis];
    LMC_CHECK(check_indices("take", idx, axis, n));
    /* Strides of the three operands over out's axes:
     * a[:axis] | idx's axes | a[axis+1:]. */
    int64_t strides[3][LMC_MAX_DIMS] = {{0}};
    int nd = out->ndim;
    for (int d = 0; d < nd; d++) strides[0][d] = out->strides[d];
    for (int d = 0; d < axis; d++) strides[1][d] = a->strides[d];
    for (int d = 0; d < idx->ndim; d++) strides[2][axis + d] = idx->strides[d];
    for (int d = axis + 1; d < a->ndim; d++) strides[1][d - 1 + idx->ndim] = a->strides[d];
    int64_t es = (int64_t)lmc_dtype_size(a->dtype);
    char *base[3] = {lmc_array_ptr(out), lmc_array_ptr(a), lmc_array_ptr(idx)};
    int64_t esize[3] = {es, es, (int64_t)lmc_dtype_size(idx->dtype)};
    lmc_cpu_loop l;
    lmc_cpu_loop_init_raw(&l, nd, out->shape, 3, base, esize, (const int64_t(*)[LMC_MAX_DIMS])strides);
    gather_ctx c = {idx->dtype, n, a->strides[axis] * es, es};
    lmc_cpu_loop_run(&l, gather_row, &c, LMC_CPU_PARALLEL_MIN);
    return LMC_OK;
}

lmc_status lmc_cpu_take_along_scalar(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis) {
    if (out->dtype != a->dtype) return lmc_set_error(LMC_ERR_INTERNAL, "take_along_axis: output dtype differs from input");
    int64_t n = a->shape[axis];
    LMC_CHECK(check_indices("take_along_axis", idx, axis, n));
    int64_t strides[3][LMC_MAX_DIMS];
    int nd = out->ndim;
    for (int d = 0; d < nd; d++) {
        strides[0][d] = out->strides[d];
        strides[1][d] = d == axis ? 0 : a->strides[d];
        strides[2][d] = idx->strides[d];
    }
    int64_t es = (int64_t)lmc_dtype_size(a->dtype);
    char *base[3] = {lmc_array_ptr(out), lmc_array_ptr(a), lmc_array_ptr(idx)};
    int64_t esize[3] = {es, es, (int64_t)lmc_dtype_size(idx->dtype)};
    lmc_cpu_loop l;
    lmc_cpu_loop_init_raw(&l, nd, out->shape, 3, base, esize, (const int64_t(*)[LMC_MAX_DIMS])strides);
    gather_ctx c = {idx->dtype, n, a->strides[axis] * es, es};
    lmc_cpu_loop_run(&l, gather_row, &c, LMC_CPU_PARALLEL_MIN);
    return LMC_OK;
}

/* Scatter: operands out (stride 0 on the axis), idx, vals over idx's shape. */
typedef struct scatter_ctx {
    lmc_dtype idx_dt, out_dt, val_dt;
    int64_t n, step;
    bool add;
} scatter_ctx;

static void scatter_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    scatter_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = load_index(p[1] + i * inner[1], c->idx_dt);
        if (j < 0) j += c->n;
        char *dst = p[0] + i * inner[0] + j * c->step;
        double v = lmc_load_f64(p[2] + i * inner[2], c->val_dt);
        if (c->add) v += lmc_load_f64(dst, c->out_dt);
        lmc_cpu_store_rounded(dst, c->out_dt, v);
    }
}

lmc_status lmc_cpu_put_along_scalar(lmc_array *out, const lmc_array *idx, const lmc_array *vals, int axis, bool add) {
    const char *op = add ? "scatter_add_along_axis" : "put_along_axis";
    int64_t n = out->shape[axis];
    LMC_CHECK(check_indices(op, idx, axis, n));
    int64_t strides[3][LMC_MAX_DIMS];
    int nd = idx->ndim;
    for (int d = 0; d < nd; d++) {
        strides[0][d] = d == axis ? 0 : out->strides[d];
        strides[1][d] = idx->strides[d];
        strides[2][d] = vals->strides[d];
    }
    int64_t es = (int64_t)lmc_dtype_size(out->dtype);
    char *base[3] = {lmc_array_ptr(out), lmc_array_ptr(idx), lmc_array_ptr(vals)};
    int64_t esize[3] = {es, (int64_t)lmc_dtype_size(idx->dtype), (int64_t)lmc_dtype_size(vals->dtype)};
    lmc_cpu_loop l;
    lmc_cpu_loop_init_raw(&l, nd, idx->shape, 3, base, esize, (const int64_t(*)[LMC_MAX_DIMS])strides);
    scatter_ctx c = {idx->dtype, out->dtype, vals->dtype, n, out->strides[axis] * es, add};
    /* Serial: duplicate indices then accumulate (or overwrite) in a fixed order. */
    lmc_cpu_loop_run(&l, scatter_row, &c, 0);
    return LMC_OK;
}
