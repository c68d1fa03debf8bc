/* Ops that one kernel does where the device has it, else their parts.
 *
 * A decode step on a GPU is bound by how many kernels the host launches, not
 * by their work; these four sequences of the decoder run as one launch
 * there, each giving bit for bit what its parts give. A device without the
 * kernel (the CPU, whose small ops cost little) runs the parts. While a tape
 * records they always run as their parts, so training sees only ops with
 * backward rules. Results belong to the caller's scope, as an op's do. */
#ifndef LMC_OPS_FUSION_H
#define LMC_OPS_FUSION_H

#include "backend/kernels.h"

/* rms_norm(a + b, w, eps); *sum gets a + b (the residual stream goes on).
 * On failure both are NULL. */
lmc_array *lmc_add_rms_norm(const lmc_array *a, const lmc_array *b, const lmc_array *w, float eps,
                            bool one_plus_weight, lmc_array **sum);

/* Attention's q and k [B, H, T, D] (their head counts may differ): when
 * norm, each row rms-normed with wq / wk; then both rotated by p at
 * positions (i32 [T] or [B, T]), or offset, offset + 1, ... when positions
 * is NULL. *q_out and *k_out are set when done (NULL on failure), so they
 * may be q's and k's own variables. */
lmc_status lmc_rope_qk(const lmc_array *q, const lmc_array *k, bool norm, const lmc_array *wq, const lmc_array *wk,
                       float eps, bool one_plus_weight, const lmc_rope_params *p, const lmc_array *positions,
                       int64_t offset, lmc_array **q_out, lmc_array **k_out);

/* act(gate) * up, act LMC_UNARY_SILU, _GELU or _GELU_TANH: the gated
 * feed-forward's activation. */
lmc_array *lmc_gated_act(lmc_unary_op act, const lmc_array *gate, const lmc_array *up);

/* write_slice(dst[i], start, src[i]) for i < n <= LMC_COPY_MANY_MAX: a
 * layer's new keys and values into its cache. Every write is checked
 * before any is made. */
lmc_status lmc_write_slices(int n, lmc_array *const *dst, const int64_t *start, const lmc_array *const *src);

#endif
