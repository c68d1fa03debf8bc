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

/* One quantised weight matrix [N, K] for lmc_quantized_matmul_many. */
typedef struct lmc_qmm_weights {
    const lmc_array *wq, *scales, *biases;
    int group_size, bits;
} lmc_qmm_weights;

enum { LMC_QMM_MANY_MAX = 8 };

/* out[i] = lmc_quantized_matmul(x, w[i]...) for n (1..LMC_QMM_MANY_MAX)
 * weights that share x, each result exactly the same as that call's, run
 * as one batch of the device's kernels (one parallel region on the CPU,
 * which saves a start and a wait per matrix at decode). On failure every
 * out[i] is NULL and the status is returned. */
lmc_status lmc_quantized_matmul_many(const lmc_array *x, int n, const lmc_qmm_weights *w, lmc_array **out);

/* How this thread's quantised matmuls with 4- and 8-bit weights round x
 * on the CPU (other widths and backends keep x as it is):
 *   24 (the default): exact (4 bits: to 24-bit integers per block of 128,
 *      each element within 2^-24 of its block's largest |x|; 8 bits: f32);
 *   8: to int8 per block of 64 with one f32 scale, as llama.cpp's 8-bit
 *      activations: a third of the integer products, less exact.
 * Set by the decoder from lmc_load_options.activation_bits around each
 * forward pass; lmc_quant_set_activation_bits returns the previous value. */
int lmc_quant_activation_bits(void);
int lmc_quant_set_activation_bits(int bits);
/* Whether the setting applies to weights of this width. */
static inline bool lmc_quant_has_activation_bits(int bits) { return bits == 4 || bits == 8; }

#endif
