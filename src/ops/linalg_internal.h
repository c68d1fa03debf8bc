/* Matrix products for the nn layers beyond the public lmc_matmul. */
#ifndef LMC_OPS_LINALG_INTERNAL_H
#define LMC_OPS_LINALG_INTERNAL_H

#include "core/array.h"

/* Between these, lmc_matmul calls on x's device may run deferred, together,
 * at lmc_matmul_batch_end (on the GPU: the products of one x as one decode
 * launch); on devices without batches nothing changes. Until the end the
 * calls' inputs must stay alive and their results unread. end reports a
 * failure of a deferred product. */
void lmc_matmul_batch_begin(const lmc_array *x);
lmc_status lmc_matmul_batch_end(const lmc_array *x);

#endif
