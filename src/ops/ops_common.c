#include "ops/ops_internal.h"

#include <string.h>

bool lmc_ops_null_input(const char *op, int n, const lmc_array *const *inputs) {
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) {
            /* Keep the error that produced the NULL, when there is one. */
            if (lmc_last_status() == LMC_OK) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: input %d is NULL", op, i);
            return true;
        }
    }
    return false;
}

const lmc_kernels *lmc_ops_kernels(const char *op, int n, const lmc_array *const *inputs) {
    lmc_device dev = LMC_CPU;
    bool have = false;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) continue;
        lmc_device d = inputs[i]->buf->device;
        if (have && d != dev) {
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: inputs are on different devices", op);
            return NULL;
        }
        dev = d;
        have = true;
    }
    return lmc_kernels_for(dev);
}

bool lmc_ops_have(const char *op, const void *fn) {
    if (fn) return true;
    lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: kernel not available on this device", op);
    return false;
}

lmc_dtype lmc_promote(lmc_dtype a, lmc_dtype b) {
    if (a == b) return a;
    if (a == LMC_BOOL) return b;
    if (b == LMC_BOOL) return a;
    bool fa = lmc_dtype_is_float(a), fb = lmc_dtype_is_float(b);
    if (fa && fb) return LMC_F32; /* f32 with anything, or f16 with bf16 */
    if (fa) return a;
    if (fb) return b;
    return LMC_I32;
}

lmc_status lmc_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                                int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : sa[i - (n - na)];
        int64_t db = i < n - nb ? 1 : sb[i - (n - nb)];
        if (da != db && da != 1 && db != 1) {
            char b1[128], b2[128];
            return lmc_set_error(LMC_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast together", op,
                                 lmc_shape_str(na, sa, b1, sizeof b1), lmc_shape_str(nb, sb, b2, sizeof b2));
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return LMC_OK;
}

lmc_array *lmc_broadcast_view(const lmc_array *a, int ndim, const int64_t *shape) {
    int64_t strides[LMC_MAX_DIMS];
    int lead = ndim - a->ndim;
    if (lead < 0) {
        lmc_set_error(LMC_ERR_SHAPE, "cannot broadcast %d dimensions to %d", a->ndim, ndim);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (i < lead) {
            strides[i] = 0;
            continue;
        }
        int64_t d = a->shape[i - lead];
        if (d == shape[i]) strides[i] = a->strides[i - lead];
        else if (d == 1) strides[i] = 0;
        else {
            char b1[128], b2[128];
            lmc_set_error(LMC_ERR_SHAPE, "cannot broadcast shape %s to %s", lmc_shape_str(a->ndim, a->shape, b1, sizeof b1),
                          lmc_shape_str(ndim, shape, b2, sizeof b2));
            return NULL;
        }
    }
    return lmc_array_view(a->buf, a->offset, a->dtype, ndim, shape, strides);
}
