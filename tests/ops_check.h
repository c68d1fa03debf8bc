/* Helpers for the op tests: seeded test data, strided views of it (transposed,
 * stepped slices, broadcast), element read-back and tolerant comparison. */
#ifndef LMC_TEST_OPS_CHECK_H
#define LMC_TEST_OPS_CHECK_H

#include "backend/cpu/cpu_loop.h"
#include "ops/ops_internal.h"
#include "core/array.h"
#include "lmc/ops.h"
#include "test_util.h"

static uint64_t t_rng = 0x1234567887654321ull;

static uint64_t rnd_u64(void) { /* splitmix64 */
    uint64_t z = (t_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double rnd_unit(void) { return (double)(rnd_u64() >> 11) * 0x1p-53; }
static inline int64_t rnd_int(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd_u64() % (uint64_t)(hi - lo + 1)); }

__attribute__((unused)) static const lmc_dtype ALL_DTYPES[] = {LMC_F32, LMC_F16, LMC_BF16, LMC_I32, LMC_U32, LMC_U8, LMC_BOOL};
#define N_ALL_DTYPES 7

/* A random value suited to dt in [lo, hi] (integers rounded, bool 0/1). */
static inline double rnd_value(lmc_dtype dt, double lo, double hi) {
    double v = lo + (hi - lo) * rnd_unit();
    if (dt == LMC_BOOL) return rnd_u64() & 1;
    if (!lmc_dtype_is_float(dt)) {
        v = floor(v);
        if (dt == LMC_U8 || dt == LMC_U32) v = fabs(v);
        if (dt == LMC_U8 && v > 255) v = 255;
    }
    return v;
}

/* Layouts a test array can have. */
enum { VIEW_CONTIGUOUS, VIEW_TRANSPOSED, VIEW_STEPPED, VIEW_BROADCAST, VIEW_COUNT };
__attribute__((unused)) static const char *VIEW_NAMES[] = {"contiguous", "transposed", "stepped", "broadcast"};

/* A random array of `shape` laid out as `view`: transposed stores the
 * reversed shape and reverses the strides; stepped takes every second element
 * (from an offset) of a larger array along each axis, the last one reversed;
 * broadcast gives axes of even index stride 0 where the size is > 1. */
static inline lmc_array *rnd_array(lmc_dtype dt, int ndim, const int64_t *shape, int view, double lo, double hi) {
    int64_t bshape[LMC_MAX_DIMS], strides[LMC_MAX_DIMS], bstrides[LMC_MAX_DIMS];
    size_t offset = 0;
    for (int d = 0; d < ndim; d++) {
        bshape[d] = shape[d];
        if (view == VIEW_STEPPED) bshape[d] = 2 * shape[d] + 1;
        if (view == VIEW_BROADCAST && d % 2 == 0) bshape[d] = 1;
    }
    if (view == VIEW_TRANSPOSED)
        for (int d = 0; d < ndim; d++) bshape[d] = shape[ndim - 1 - d];
    int64_t n = lmc_contiguous_strides(ndim, bshape, bstrides);
    lmc_array *base = lmc_array_new(dt, ndim, bshape, LMC_CPU);
    if (!base) return NULL;
    size_t es = lmc_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) lmc_store_f64((char *)lmc_array_ptr(base) + i * es, dt, rnd_value(dt, lo, hi));
    for (int d = 0; d < ndim; d++) {
        switch (view) {
        case VIEW_TRANSPOSED: strides[d] = bstrides[ndim - 1 - d]; break;
        case VIEW_STEPPED:
            if (d == ndim - 1 && shape[d] > 0) {
                strides[d] = -2 * bstrides[d];
                offset += (size_t)(2 * shape[d] - 1) * bstrides[d] * es;
            } else {
                strides[d] = 2 * bstrides[d];
                offset += (size_t)bstrides[d] * es;
            }
            break;
        case VIEW_BROADCAST: strides[d] = bshape[d] == 1 ? 0 : bstrides[d]; break;
        default: strides[d] = bstrides[d];
        }
    }
    lmc_array *v = lmc_array_view(base->buf, offset, dt, ndim, shape, strides);
    lmc_array_free(base);
    return v;
}

/* A random shape of 0..maxdim axes with sizes 1..maxsize (sometimes 0 when allow_empty). */
static inline int rnd_shape(int64_t *shape, int maxdim, int64_t maxsize, bool allow_empty) {
    int nd = (int)rnd_int(0, maxdim);
    for (int d = 0; d < nd; d++) shape[d] = rnd_int(1, maxsize);
    if (allow_empty && nd && rnd_int(0, 9) == 0) shape[rnd_int(0, nd - 1)] = 0;
    return nd;
}

/* The elements of a, row-major, as doubles (caller frees). */
static inline double *to_doubles(const lmc_array *a) {
    double *v = malloc(((size_t)a->size + 1) * sizeof *v);
    if (!v || a->size == 0) return v;
    lmc_index_iter it;
    lmc_index_init(&it, a->ndim, a->shape, 1, &a);
    const char *p = lmc_array_ptr(a);
    size_t es = lmc_dtype_size(a->dtype);
    int64_t i = 0;
    do v[i++] = lmc_load_f64(p + it.off[0] * (int64_t)es, a->dtype);
    while (lmc_index_next(&it));
    return v;
}

/* Relative tolerance for a result computed in f32 and rounded to dt. */
static inline double dtype_rtol(lmc_dtype dt) {
    switch (dt) {
    case LMC_F32: return 4e-6;
    case LMC_F16: return 2e-3;
    case LMC_BF16: return 1.6e-2;
    default: return 0;
    }
}

/* Element-wise |a-b| <= atol + rtol*|b| (NaN matches NaN, equal infinities
 * match); reports the first mismatch with `what`. Returns true when close. */
static inline bool arrays_close(const lmc_array *a, const lmc_array *b, double atol, double rtol, const char *what) {
    t_checks++;
    if (!a || !b) {
        t_failures++;
        fprintf(stderr, "%s: missing array (%s)\n", what, lmc_last_error());
        return false;
    }
    if (a->ndim != b->ndim || a->size != b->size || a->dtype != b->dtype || memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim)) {
        t_failures++;
        fprintf(stderr, "%s: shape/dtype differ (%s vs %s)\n", what, lmc_dtype_name(a->dtype), lmc_dtype_name(b->dtype));
        return false;
    }
    double *x = to_doubles(a), *y = to_doubles(b);
    bool ok = true;
    for (int64_t i = 0; i < a->size && ok; i++) {
        if (isnan(x[i]) && isnan(y[i])) continue;
        if (x[i] == y[i]) continue;
        if (fabs(x[i] - y[i]) <= atol + rtol * fabs(y[i])) continue;
        t_failures++;
        fprintf(stderr, "%s: element %lld: %.9g vs %.9g\n", what, (long long)i, x[i], y[i]);
        ok = false;
    }
    free(x);
    free(y);
    return ok;
}

/* The paths this machine can run. */
static inline int max_path(void) { return (int)lmc_cpu_path_max(); }

#endif
