/* lmc/nn.h — Linear and Embedding layers, plain and MLX affine-quantised.
 *
 * One type, lmc_linear, holds a weight matrix W [out, in] either as a float
 * array or as MLX's quantised parts (packed u32 weights, per-group scales and
 * biases), plus an optional bias [out]. lmc_linear_forward computes
 * x @ Wᵀ + bias for either form (the quantised form never dequantises W).
 *
 * An embedding table is an lmc_linear of shape [vocab, dim] without bias:
 * lmc_embedding_lookup gathers its rows (dequantising only the rows it
 * reads), and lmc_linear_forward on the same table is the tied output head,
 * logits = h @ Eᵀ.
 *
 * Constructors take their own references to the arrays they are given (the
 * caller keeps its references); lmc_linear_free drops them.
 */
#ifndef LMC_NN_H
#define LMC_NN_H

#include "lmc/array.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_linear lmc_linear;

/* A float layer: weight [out, in] (f32, f16 or bf16), bias [out] or NULL. */
LMC_API lmc_linear *lmc_linear_new(const lmc_array *weight, const lmc_array *bias);
/* A quantised layer from MLX's parts: wq [out, in*bits/32] u32, scales and
 * biases [out, in/group_size] (one float dtype), bias [out] or NULL. */
LMC_API lmc_linear *lmc_linear_new_quantized(const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                                             const lmc_array *bias, int group_size, int bits);
/* A quantised copy of a float layer (mx.quantize of its weight; the bias is shared). */
LMC_API lmc_linear *lmc_linear_quantize(const lmc_linear *l, int group_size, int bits);
LMC_API void lmc_linear_free(lmc_linear *l);

/* x [..., in] -> x @ Wᵀ + bias, [..., out]. */
LMC_API lmc_array *lmc_linear_forward(const lmc_linear *l, const lmc_array *x);
/* Rows of W for integer ids of any shape: [*ids.shape, in], in the weight's
 * float dtype, or f32 when quantised (scale·q + bias computed and kept in f32). An id outside [0, out) is
 * an error naming it. */
LMC_API lmc_array *lmc_embedding_lookup(const lmc_linear *table, const lmc_array *ids);

LMC_API int64_t lmc_linear_in_features(const lmc_linear *l);
LMC_API int64_t lmc_linear_out_features(const lmc_linear *l);
/* 0 for a float layer, else the quantisation bits; group size likewise. */
LMC_API int lmc_linear_bits(const lmc_linear *l);
LMC_API int lmc_linear_group_size(const lmc_linear *l);
/* The float weight, or the packed u32 weights when quantised (borrowed). */
LMC_API const lmc_array *lmc_linear_weight(const lmc_linear *l);
/* Quantised parts (borrowed; NULL for a float layer). */
LMC_API const lmc_array *lmc_linear_scales(const lmc_linear *l);
LMC_API const lmc_array *lmc_linear_biases(const lmc_linear *l);
/* The bias (borrowed; NULL when none). */
LMC_API const lmc_array *lmc_linear_bias(const lmc_linear *l);

#ifdef __cplusplus
}
#endif
#endif
