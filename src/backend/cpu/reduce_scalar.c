/* Scalar reference kernels for reductions along one axis, softmax, cumsum
 * and sort. Values are loaded as doubles and accumulated in double in axis
 * order; results are rounded once to the output dtype. NaN: max/min give
 * NaN and argmax/argmin the index of the first NaN when a lane holds one. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_loop.h"

typedef struct reduce_ctx {
    lmc_reduce_op op;
    lmc_dtype out_dt, in_dt;
} reduce_ctx;

/* The index of the first extreme (greatest when `greatest`), or of the first
 * NaN; 0 for an empty lane (the ops layer rejects those for max/min/arg*). */
static int64_t arg_extreme(const char *p, int64_t n, int64_t step, lmc_dtype dt, bool greatest) {
    int64_t best = 0;
    if (n == 0) return 0;
    double bv = lmc_load_f64(p, dt);
    if (isnan(bv)) return 0;
    for (int64_t i = 1; i < n; i++) {
        double v = lmc_load_f64(p + i * step, dt);
        if (isnan(v)) return i;
        if (greatest ? v > bv : v < bv) best = i, bv = v;
    }
    return best;
}

static void reduce_lane(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    reduce_ctx *c = ctx;
    const char *x = p[1];
    int64_t n = ln->len[1], step = ln->step[1];
    double r = 0.0;
    switch (c->op) {
    case LMC_REDUCE_SUM:
    case LMC_REDUCE_MEAN:
        for (int64_t i = 0; i < n; i++) r += lmc_load_f64(x + i * step, c->in_dt);
        if (c->op == LMC_REDUCE_MEAN) r = n ? r / (double)n : NAN;
        break;
    case LMC_REDUCE_MAX:
    case LMC_REDUCE_MIN:
        r = n ? lmc_load_f64(x + arg_extreme(x, n, step, c->in_dt, c->op == LMC_REDUCE_MAX) * step, c->in_dt) : NAN;
        break;
    case LMC_REDUCE_ARGMAX:
    case LMC_REDUCE_ARGMIN:
        r = (double)arg_extreme(x, n, step, c->in_dt, c->op == LMC_REDUCE_ARGMAX);
        break;
    case LMC_REDUCE_LOGSUMEXP: {
        /* Shift by the maximum when it is finite (an all -inf lane gives -inf). */
        double m = n ? lmc_load_f64(x + arg_extreme(x, n, step, c->in_dt, true) * step, c->in_dt) : -INFINITY;
        double shift = isfinite(m) ? m : 0.0, s = 0.0;
        for (int64_t i = 0; i < n; i++) s += exp(lmc_load_f64(x + i * step, c->in_dt) - shift);
        r = log(s) + shift;
        break;
    }
    default: r = NAN;
    }
    lmc_cpu_store_rounded(p[0], c->out_dt, r);
}

lmc_status lmc_cpu_reduce_scalar(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis) {
    if ((unsigned)op >= LMC_REDUCE_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "reduce: invalid op %d", (int)op);
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, 2, ops, axis);
    reduce_ctx c = {op, out->dtype, in->dtype};
    lmc_cpu_lanes_run(&ln, reduce_lane, &c);
    return LMC_OK;
}

/* --- softmax ------------------------------------------------------------------- */

typedef struct softmax_ctx {
    bool log;
    lmc_dtype out_dt, in_dt;
} softmax_ctx;

static void softmax_lane(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    softmax_ctx *c = ctx;
    const char *x = p[1];
    int64_t n = ln->len[1], step = ln->step[1];
    if (n == 0) return;
    double m = lmc_load_f64(x + arg_extreme(x, n, step, c->in_dt, true) * step, c->in_dt);
    double shift = isfinite(m) ? m : 0.0, s = 0.0;
    for (int64_t i = 0; i < n; i++) s += exp(lmc_load_f64(x + i * step, c->in_dt) - shift);
    double logs = log(s);
    for (int64_t i = 0; i < n; i++) {
        double v = lmc_load_f64(x + i * step, c->in_dt) - shift;
        lmc_cpu_store_rounded(p[0] + i * ln->step[0], c->out_dt, c->log ? v - logs : exp(v) / s);
    }
}

lmc_status lmc_cpu_softmax_scalar(lmc_array *out, const lmc_array *in, int axis, bool log) {
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, 2, ops, axis);
    softmax_ctx c = {log, out->dtype, in->dtype};
    lmc_cpu_lanes_run(&ln, softmax_lane, &c);
    return LMC_OK;
}

/* --- cumsum -------------------------------------------------------------------- */

typedef struct cumsum_ctx {
    bool reverse;
    lmc_dtype out_dt, in_dt;
} cumsum_ctx;

static void cumsum_lane(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    cumsum_ctx *c = ctx;
    int64_t n = ln->len[1];
    double acc = 0.0;
    for (int64_t j = 0; j < n; j++) {
        int64_t i = c->reverse ? n - 1 - j : j;
        acc += lmc_load_f64(p[1] + i * ln->step[1], c->in_dt);
        lmc_cpu_store_rounded(p[0] + i * ln->step[0], c->out_dt, acc);
    }
}

lmc_status lmc_cpu_cumsum_scalar(lmc_array *out, const lmc_array *in, int axis, bool reverse) {
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, 2, ops, axis);
    cumsum_ctx c = {reverse, out->dtype, in->dtype};
    lmc_cpu_lanes_run(&ln, cumsum_lane, &c);
    return LMC_OK;
}

/* --- sort: stable merge sort of (key, index) pairs, NaN after everything --- */

typedef struct sort_item {
    double key;
    int64_t index;
} sort_item;

static bool key_less(double a, double b) {
    if (isnan(a)) return false;
    if (isnan(b)) return true;
    return a < b;
}

/* Sorts v[0..n) using tmp[0..n) as scratch. */
static void merge_sort(sort_item *v, sort_item *tmp, int64_t n) {
    for (int64_t i = 0; i + 1 < n; i += 2) /* runs of 2 */
        if (key_less(v[i + 1].key, v[i].key)) {
            sort_item t = v[i];
            v[i] = v[i + 1];
            v[i + 1] = t;
        }
    for (int64_t width = 2; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, o = lo;
            /* Take from the left run unless the right element is strictly smaller: stable. */
            while (i < mid && j < hi) tmp[o++] = key_less(v[j].key, v[i].key) ? v[j++] : v[i++];
            while (i < mid) tmp[o++] = v[i++];
            while (j < hi) tmp[o++] = v[j++];
        }
        memcpy(v, tmp, (size_t)n * sizeof *v);
    }
}

typedef struct sort_ctx {
    lmc_dtype in_dt;
    int vals_op, idx_op, in_op; /* operand slots; -1 when absent */
    int64_t esize;
    atomic_bool oom;
} sort_ctx;

static void sort_lane(void *ctx, const lmc_cpu_lanes *ln, char *const *p) {
    sort_ctx *c = ctx;
    int64_t n = ln->len[c->in_op], step = ln->step[c->in_op];
    if (n == 0) return;
    sort_item *v = malloc(2 * (size_t)n * sizeof *v);
    if (!v) {
        atomic_store(&c->oom, true);
        return;
    }
    for (int64_t i = 0; i < n; i++) v[i] = (sort_item){lmc_load_f64(p[c->in_op] + i * step, c->in_dt), i};
    merge_sort(v, v + n, n);
    for (int64_t i = 0; i < n; i++) {
        if (c->vals_op >= 0) /* copy the element's bytes: NaN payloads and -0 survive */
            memcpy(p[c->vals_op] + i * ln->step[c->vals_op], p[c->in_op] + v[i].index * step, (size_t)c->esize);
        if (c->idx_op >= 0) lmc_store_f64(p[c->idx_op] + i * ln->step[c->idx_op], LMC_I32, (double)v[i].index);
    }
    free(v);
}

lmc_status lmc_cpu_sort_scalar(lmc_array *values, lmc_array *indices, const lmc_array *in, int axis) {
    if (values && values->dtype != in->dtype)
        return lmc_set_error(LMC_ERR_INTERNAL, "sort: values dtype %s differs from input %s", lmc_dtype_name(values->dtype),
                             lmc_dtype_name(in->dtype));
    if (indices && indices->dtype != LMC_I32)
        return lmc_set_error(LMC_ERR_INTERNAL, "sort: indices must be int32");
    if (in->ndim && in->shape[axis] > INT32_MAX)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sort: axis of %lld elements is too long for int32 indices",
                             (long long)in->shape[axis]);
    const lmc_array *ops[3];
    int n = 0;
    sort_ctx c = {.in_dt = in->dtype, .vals_op = -1, .idx_op = -1, .esize = (int64_t)lmc_dtype_size(in->dtype)};
    atomic_init(&c.oom, false);
    ops[n] = in, c.in_op = n++;
    if (values) ops[n] = values, c.vals_op = n++;
    if (indices) ops[n] = indices, c.idx_op = n++;
    lmc_cpu_lanes ln;
    lmc_cpu_lanes_init(&ln, n, ops, axis);
    lmc_cpu_lanes_run(&ln, sort_lane, &c);
    if (atomic_load(&c.oom)) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "sort: out of memory for scratch space");
    return LMC_OK;
}
