/* Helpers shared by the op implementations in src/ops. */
#ifndef LMC_OPS_INTERNAL_H
#define LMC_OPS_INTERNAL_H

#include "backend/kernels.h"
#include "lmc/ops.h"

/* The kernel table for the inputs' device (all non-NULL inputs must share
 * one device); NULL with an error otherwise. `op` names the op in errors. */
const lmc_kernels *lmc_ops_kernels(const char *op, int n, const lmc_array *const *inputs);
/* Errors out when a kernel entry is missing: returns false. */
bool lmc_ops_have(const char *op, const void *fn);
/* Type promotion of two dtypes (see lmc/ops.h). */
lmc_dtype lmc_promote(lmc_dtype a, lmc_dtype b);
/* Broadcast shape of two shapes; LMC_ERR_SHAPE naming op when incompatible. */
lmc_status lmc_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                                int64_t *out);
/* A view of a with shape `shape` (ndim >= a's): stride 0 on stretched axes. */
lmc_array *lmc_broadcast_view(const lmc_array *a, int ndim, const int64_t *shape);
/* The region of dst that write_slice(dst, start, src) writes, as a view of
 * src's shape; NULL with an error naming op when src does not fit there. */
lmc_array *lmc_slice_region(const char *op, lmc_array *dst, const int64_t *start, const lmc_array *src);
/* Returns the first NULL input's error (true if any input is NULL). */
bool lmc_ops_null_input(const char *op, int n, const lmc_array *const *inputs);

#endif
