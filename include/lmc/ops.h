/* lmc/ops.h — operations on arrays.
 *
 * Every op returns a new array (see lmc/array.h for ownership) or NULL with
 * the error recorded. Inputs may be any views (transposed, broadcast,
 * sliced); ops that need contiguous memory make a copy internally.
 *
 * Broadcasting follows NumPy: shapes are aligned at the last axis and a
 * dimension of 1 stretches. Type promotion for binary ops: equal dtypes
 * keep their dtype; any float with an integer gives the float; f16 with
 * bf16 gives f32; f32 with f16/bf16 gives f32; bool with X gives X;
 * mixed integers give i32. Float arithmetic on f16/bf16 is done in f32 and
 * rounded once to the output dtype. Integer results saturate at the output
 * dtype's range (u8 200 + 100 = 255).
 */
#ifndef LMC_OPS_H
#define LMC_OPS_H

#include "lmc/array.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- element-wise ------------------------------------------------------- */

LMC_API lmc_array *lmc_neg(const lmc_array *a);
LMC_API lmc_array *lmc_abs(const lmc_array *a);
LMC_API lmc_array *lmc_exp(const lmc_array *a);
LMC_API lmc_array *lmc_log(const lmc_array *a);
LMC_API lmc_array *lmc_sqrt(const lmc_array *a);
LMC_API lmc_array *lmc_rsqrt(const lmc_array *a);
LMC_API lmc_array *lmc_square(const lmc_array *a);
LMC_API lmc_array *lmc_sin(const lmc_array *a);
LMC_API lmc_array *lmc_cos(const lmc_array *a);
LMC_API lmc_array *lmc_tanh(const lmc_array *a);
LMC_API lmc_array *lmc_sigmoid(const lmc_array *a);
LMC_API lmc_array *lmc_silu(const lmc_array *a);
/* GELU: exact (erf) form. */
LMC_API lmc_array *lmc_gelu(const lmc_array *a);
/* GELU with the tanh approximation (PyTorch's approximate="tanh"). */
LMC_API lmc_array *lmc_gelu_tanh(const lmc_array *a);
/* Integer and bool inputs of unary float functions give f32. */

LMC_API lmc_array *lmc_add(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_sub(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_mul(const lmc_array *a, const lmc_array *b);
/* True division; integer inputs give f32. */
LMC_API lmc_array *lmc_div(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_pow(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_maximum(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_minimum(const lmc_array *a, const lmc_array *b);
/* a op scalar, keeping a's dtype. */
LMC_API lmc_array *lmc_add_scalar(const lmc_array *a, double s);
LMC_API lmc_array *lmc_mul_scalar(const lmc_array *a, double s);

/* Comparisons give bool arrays. */
LMC_API lmc_array *lmc_equal(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_not_equal(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_less(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_less_equal(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_greater(const lmc_array *a, const lmc_array *b);
LMC_API lmc_array *lmc_greater_equal(const lmc_array *a, const lmc_array *b);
/* cond ? x : y, all three broadcast together; dtype is promote(x, y). */
LMC_API lmc_array *lmc_where(const lmc_array *cond, const lmc_array *x, const lmc_array *y);
/* Conversion to another dtype (float to int truncates toward zero and saturates; NaN gives 0). */
LMC_API lmc_array *lmc_astype(const lmc_array *a, lmc_dtype dt);

/* --- shape (views where possible, never copies unless stated) ----------- */

/* One dimension may be -1 (inferred). A view when the layout allows, else a copy. */
LMC_API lmc_array *lmc_reshape(const lmc_array *a, int ndim, const int64_t *shape);
/* axes is a permutation of 0..ndim-1. */
LMC_API lmc_array *lmc_permute(const lmc_array *a, const int *axes);
/* Swaps two axes. */
LMC_API lmc_array *lmc_swapaxes(const lmc_array *a, int axis1, int axis2);
/* Reverses all axes (matrix transpose for 2-d). */
LMC_API lmc_array *lmc_transpose(const lmc_array *a);
LMC_API lmc_array *lmc_broadcast_to(const lmc_array *a, int ndim, const int64_t *shape);
LMC_API lmc_array *lmc_expand_dims(const lmc_array *a, int axis);
/* Removes one axis of size 1. */
LMC_API lmc_array *lmc_squeeze(const lmc_array *a, int axis);
/* Elements start, start+step, ... before stop along one axis (Python slice
 * semantics: negative start/stop count from the end and are clamped; step may
 * be negative; LMC_END as stop means "to the end" in the step's direction). */
#define LMC_END INT64_MAX
LMC_API lmc_array *lmc_slice(const lmc_array *a, int axis, int64_t start, int64_t stop, int64_t step);
/* A copy laid out row-major (a new reference to `a` when already contiguous). */
LMC_API lmc_array *lmc_contiguous(const lmc_array *a);
/* Always a fresh contiguous copy. */
LMC_API lmc_array *lmc_copy(const lmc_array *a);
/* Joins arrays of equal shape except along `axis`; dtype is promoted. */
LMC_API lmc_array *lmc_concatenate(int n, const lmc_array *const *arrays, int axis);
/* Copies `src` into the region of `dst` starting at `start` along each axis
 * (in place; shapes must fit; dtype converted). For KV caches. */
LMC_API lmc_status lmc_write_slice(lmc_array *dst, const int64_t *start, const lmc_array *src);

/* --- indexing --------------------------------------------------------- */

/* Gathers along `axis` with integer indices of any shape: the output shape is
 * a.shape[:axis] + indices.shape + a.shape[axis+1:]. Negative indices count
 * from the end; out-of-range indices are an error. */
LMC_API lmc_array *lmc_take(const lmc_array *a, const lmc_array *indices, int axis);
/* out[..i..] = a[..indices[..i..]..] along axis; indices broadcast with a except on axis. */
LMC_API lmc_array *lmc_take_along_axis(const lmc_array *a, const lmc_array *indices, int axis);
/* A copy of a with values written at indices along axis (put_along_axis). */
LMC_API lmc_array *lmc_put_along_axis(const lmc_array *a, const lmc_array *indices, const lmc_array *values, int axis);
/* Like put_along_axis but adds (duplicates accumulate): the backward of take. */
LMC_API lmc_array *lmc_scatter_add_along_axis(const lmc_array *a, const lmc_array *indices, const lmc_array *values, int axis);

/* --- reductions ------------------------------------------------------- */

/* Reduce one axis (negative counts from the end), or all axes with LMC_ALL_AXES.
 * Output dtypes: sum of bool/integers gives i32 (floats keep theirs); mean
 * and logsumexp of bool/integers give f32; max/min keep the dtype. Sums
 * accumulate in f32 or better in a fixed order (same result for a given
 * thread count). max/min of an empty axis is an error, sum gives 0, mean NaN. */
#define LMC_ALL_AXES INT32_MIN
LMC_API lmc_array *lmc_sum(const lmc_array *a, int axis, bool keepdims);
LMC_API lmc_array *lmc_mean(const lmc_array *a, int axis, bool keepdims);
/* max/min propagate NaN: a lane holding NaN gives NaN. */
LMC_API lmc_array *lmc_max(const lmc_array *a, int axis, bool keepdims);
LMC_API lmc_array *lmc_min(const lmc_array *a, int axis, bool keepdims);
/* Index of the first maximum / minimum, as i32 (ties: the first index); a
 * lane holding NaN gives the index of its first NaN (as NumPy). */
LMC_API lmc_array *lmc_argmax(const lmc_array *a, int axis, bool keepdims);
LMC_API lmc_array *lmc_argmin(const lmc_array *a, int axis, bool keepdims);
LMC_API lmc_array *lmc_logsumexp(const lmc_array *a, int axis, bool keepdims);
/* Softmax in f32 or better; integer inputs give f32. A lane of all -inf gives NaN. */
LMC_API lmc_array *lmc_softmax(const lmc_array *a, int axis);
LMC_API lmc_array *lmc_log_softmax(const lmc_array *a, int axis);
/* Inclusive cumulative sum; reverse sums from the end. Bool/integers give i32. */
LMC_API lmc_array *lmc_cumsum(const lmc_array *a, int axis, bool reverse);
/* Ascending stable sort along axis (NaN last). */
LMC_API lmc_array *lmc_sort(const lmc_array *a, int axis);
/* Indices (i32) that sort along axis, ascending and stable. */
LMC_API lmc_array *lmc_argsort(const lmc_array *a, int axis);
/* The k largest along axis in descending order (ties: lower index first;
 * NaN counts as the largest); indices (i32) go to *indices when it is not
 * NULL. k outside [0, axis size] is an error. */
LMC_API lmc_array *lmc_topk(const lmc_array *a, int64_t k, int axis, lmc_array **indices);

/* --- linear algebra ----------------------------------------------------- */

/* a[..., M, K] @ b[..., K, N] with broadcasting batch dimensions; 1-d
 * operands are promoted as in NumPy. Either operand may be a transposed view
 * (lmc_transpose / lmc_swapaxes): no copy is made for it. Float dtypes only;
 * accumulation in f32. bf16/f16 weights are widened to f32 in registers (an
 * f32 x times bf16 W gives f32, without converting W). bf16 @ bf16 products
 * with 32 or more rows use AMX bf16 tiles where the CPU has them: a caller
 * with f32 activations opts in by casting them to bf16 first (which rounds
 * the activations; the result is then bf16). */
LMC_API lmc_array *lmc_matmul(const lmc_array *a, const lmc_array *b);

/* --- fused ------------------------------------------------------------ */

/* x / sqrt(mean(x^2, last axis) + eps) * w, or * (1 + w) when one_plus_weight
 * (Gemma). w may be NULL (no scale). Computed in f32; output dtype of x. */
LMC_API lmc_array *lmc_rms_norm(const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight);
/* (x - mean) / sqrt(var + eps) * w + b over the last axis; w, b may be NULL. */
LMC_API lmc_array *lmc_layer_norm(const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps);

typedef struct lmc_rope_params {
    int dims;                   /* leading features of each head that rotate (<= head dim, even) */
    bool traditional;           /* true: rotate pairs (2i, 2i+1); false: split halves (i, i + dims/2) as HF does */
    float base;                 /* theta base; inverse frequency i = base^(-2i/dims) */
    float scale;                /* positions are multiplied by this (linear scaling: 1/factor) */
    const lmc_array *inv_freqs; /* optional [dims/2] f32: used instead of base (e.g. Llama 3 scaling) */
} lmc_rope_params;
LMC_API lmc_rope_params lmc_rope_params_default(int dims, float base);
/* Rotary embedding of x[..., T, D] at positions offset..offset+T-1. */
LMC_API lmc_array *lmc_rope(const lmc_array *x, const lmc_rope_params *p, int64_t offset);
/* Rotary embedding with explicit positions: i32 [T], or [B, T] with B = x's first dim. */
LMC_API lmc_array *lmc_rope_positions(const lmc_array *x, const lmc_rope_params *p, const lmc_array *positions);

typedef struct lmc_sdpa_params {
    float scale;                /* multiplies q·k (usually 1/sqrt(head_dim)) */
    bool causal;                /* query i sits at key position Tk - Tq + i and sees keys <= it */
    int64_t window;             /* > 0: also hide keys more than window-1 positions back (sliding window) */
    const lmc_array *mask;      /* optional additive f32 mask, or bool (true = keep), broadcastable to [B, Hq, Tq, Tk] */
    float softcap;              /* > 0: scores = softcap * tanh(scores / softcap) before masking */
} lmc_sdpa_params;
LMC_API lmc_sdpa_params lmc_sdpa_params_default(float scale);
/* softmax(q·kᵀ·scale + mask)·v with q [B, Hq, Tq, D], k [B, Hkv, Tk, D],
 * v [B, Hkv, Tk, Dv], Hq a multiple of Hkv (grouped-query attention).
 * A query row that sees no key gives zeros. Output [B, Hq, Tq, Dv]. */
LMC_API lmc_array *lmc_sdpa(const lmc_array *q, const lmc_array *k, const lmc_array *v, const lmc_sdpa_params *p);

/* --- MLX affine quantisation ---------------------------------------------- */

/* Quantises w[..., K] (float) in groups of group_size (32, 64, 128) along the
 * last axis to `bits` (4 or 8): returns the packed u32 weights
 * [..., K * bits / 32] and sets *scales and *biases ([..., K / group_size],
 * dtype of w), bit for bit as MLX's mx.quantize. w = scale * q + bias. */
LMC_API lmc_array *lmc_quantize(const lmc_array *w, int group_size, int bits, lmc_array **scales, lmc_array **biases);
/* The inverse: float array of the scales' dtype, shape [..., K]. */
LMC_API lmc_array *lmc_dequantize(const lmc_array *wq, const lmc_array *scales, const lmc_array *biases, int group_size,
                                  int bits);
/* x[..., K] @ Wᵀ where W [N, K] is given quantised (wq [N, K*bits/32],
 * scales/biases [N, K/group_size]): the nn.Linear product, without
 * dequantising W as a whole. Output [..., N] in x's float dtype (f32 accumulation). */
LMC_API lmc_array *lmc_quantized_matmul(const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                                        const lmc_array *biases, int group_size, int bits);

#ifdef __cplusplus
}
#endif
#endif
