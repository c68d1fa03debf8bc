/* Creation ops: constant fills, ranges and seeded random arrays (CPU). */
#include <math.h>

#include "ops/ops_internal.h"

/* The CPU table, or NULL with an error naming op. */
static const lmc_kernels *cpu_kernels(const char *op) {
    const lmc_kernels *k = lmc_kernels_for(LMC_CPU);
    if (!k) lmc_error_prefix("%s", op);
    return k;
}

lmc_array *lmc_full(double value, lmc_dtype dt, int ndim, const int64_t *shape) {
    const lmc_kernels *k = cpu_kernels("full");
    if (!k || !lmc_ops_have("full", k->fill)) return NULL;
    lmc_array *out = lmc_array_new(dt, ndim, shape, LMC_CPU);
    if (!out) return NULL;
    if (out->size && k->fill(out, value) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    return out;
}

lmc_array *lmc_zeros(lmc_dtype dt, int ndim, const int64_t *shape) { return lmc_full(0.0, dt, ndim, shape); }
lmc_array *lmc_ones(lmc_dtype dt, int ndim, const int64_t *shape) { return lmc_full(1.0, dt, ndim, shape); }
lmc_array *lmc_scalar(double value, lmc_dtype dt) { return lmc_full(value, dt, 0, NULL); }

lmc_array *lmc_arange(double start, double stop, double step, lmc_dtype dt) {
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step) || step == 0.0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "arange: start, stop and step must be finite and step non-zero (got %g, %g, %g)",
                      start, stop, step);
        return NULL;
    }
    double count = ceil((stop - start) / step);
    if (count < 0) count = 0;
    if (count > 9.0e15) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "arange: %g elements is too many", count);
        return NULL;
    }
    const lmc_kernels *k = cpu_kernels("arange");
    if (!k || !lmc_ops_have("arange", k->arange)) return NULL;
    int64_t n = (int64_t)count;
    lmc_array *out = lmc_array_new(dt, 1, &n, LMC_CPU);
    if (!out) return NULL;
    if (n && k->arange(out, start, step) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    return out;
}

static lmc_array *random_array(const char *op, lmc_random_kind kind, lmc_dtype dt, int ndim, const int64_t *shape,
                               double p0, double p1, uint64_t seed) {
    if (!lmc_dtype_is_float(dt)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: dtype %s is not a float dtype", op, lmc_dtype_name(dt));
        return NULL;
    }
    const lmc_kernels *k = cpu_kernels(op);
    if (!k || !lmc_ops_have(op, k->random)) return NULL;
    lmc_array *out = lmc_array_new(dt, ndim, shape, LMC_CPU);
    if (!out) return NULL;
    if (out->size && k->random(out, kind, p0, p1, seed) != LMC_OK) {
        lmc_array_free(out);
        return NULL;
    }
    return out;
}

lmc_array *lmc_random_normal(lmc_dtype dt, int ndim, const int64_t *shape, double mean, double std, uint64_t seed) {
    if (!isfinite(mean) || !isfinite(std) || std < 0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "random_normal: mean must be finite and std finite and >= 0 (got %g, %g)",
                      mean, std);
        return NULL;
    }
    return random_array("random_normal", LMC_RANDOM_NORMAL, dt, ndim, shape, mean, std, seed);
}

lmc_array *lmc_random_uniform(lmc_dtype dt, int ndim, const int64_t *shape, double low, double high, uint64_t seed) {
    if (!isfinite(low) || !isfinite(high) || low > high) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "random_uniform: need finite low <= high (got %g, %g)", low, high);
        return NULL;
    }
    return random_array("random_uniform", LMC_RANDOM_UNIFORM, dt, ndim, shape, low, high, seed);
}
