/* Checks shared by the quantisation ops and the nn layers. */
#ifndef LMC_OPS_QUANT_INTERNAL_H
#define LMC_OPS_QUANT_INTERNAL_H

#include "core/array.h"

/* group_size in {32, 64, 128} and bits in {2, 3, 4, 5, 6, 8}; op names the caller in errors. */
lmc_status lmc_quant_check_params(const char *op, int group_size, int bits);
/* Checks wq [..., K*bits/32] u32 against scales/biases [..., K/group_size]
 * (same leading dims, one float dtype); returns K, or -1 with the error set. */
int64_t lmc_quant_check(const char *op, const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                        int group_size, int bits);

#endif
