/* The kernel interface every device backend implements.
 *
 * The ops layer (src/ops) checks arguments, works out output shapes and
 * dtypes, allocates outputs on the inputs' device and then calls the
 * device's kernel table. Kernels receive arrays whose shapes already agree:
 * element-wise inputs are broadcast views of the output's shape (stride 0 on
 * broadcast axes), so a kernel never re-derives shapes. A kernel returns
 * LMC_OK or records an error (e.g. an out-of-range index it found).
 *
 * The CPU table (src/backend/cpu) is built from a scalar reference
 * implementation of every kernel (kept forever as the oracle for tests) with
 * faster SIMD/AMX versions swapped in per entry after run-time detection.
 */
#ifndef LMC_BACKEND_KERNELS_H
#define LMC_BACKEND_KERNELS_H

#include "core/array.h"
#include "lmc/ops.h"

typedef enum lmc_unary_op {
    LMC_UNARY_NEG, LMC_UNARY_ABS, LMC_UNARY_EXP, LMC_UNARY_LOG, LMC_UNARY_SQRT, LMC_UNARY_RSQRT,
    LMC_UNARY_SQUARE, LMC_UNARY_SIN, LMC_UNARY_COS, LMC_UNARY_TANH, LMC_UNARY_SIGMOID, LMC_UNARY_SILU,
    LMC_UNARY_GELU, LMC_UNARY_GELU_TANH, LMC_UNARY_COUNT
} lmc_unary_op;

typedef enum lmc_binary_op {
    LMC_BINARY_ADD, LMC_BINARY_SUB, LMC_BINARY_MUL, LMC_BINARY_DIV, LMC_BINARY_POW, LMC_BINARY_MAXIMUM,
    LMC_BINARY_MINIMUM, LMC_BINARY_EQ, LMC_BINARY_NE, LMC_BINARY_LT, LMC_BINARY_LE, LMC_BINARY_GT,
    LMC_BINARY_GE, LMC_BINARY_COUNT
} lmc_binary_op;

typedef enum lmc_reduce_op {
    LMC_REDUCE_SUM, LMC_REDUCE_MEAN, LMC_REDUCE_MAX, LMC_REDUCE_MIN, LMC_REDUCE_ARGMAX, LMC_REDUCE_ARGMIN,
    LMC_REDUCE_LOGSUMEXP, LMC_REDUCE_COUNT
} lmc_reduce_op;

typedef enum lmc_random_kind { LMC_RANDOM_NORMAL, LMC_RANDOM_UNIFORM } lmc_random_kind;

typedef struct lmc_kernels {
    const char *name;
    /* out = in converted to out's dtype (in is a view of out's shape). */
    lmc_status (*copy)(lmc_array *out, const lmc_array *in);
    lmc_status (*fill)(lmc_array *out, double value);
    /* out[i] = start + i * step (1-d). */
    lmc_status (*arange)(lmc_array *out, double start, double step);
    /* Counter-based: element i of a seed's stream never depends on threads. */
    lmc_status (*random)(lmc_array *out, lmc_random_kind kind, double p0, double p1, uint64_t seed);
    lmc_status (*unary)(lmc_unary_op op, lmc_array *out, const lmc_array *in);
    lmc_status (*binary)(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b);
    lmc_status (*where)(lmc_array *out, const lmc_array *cond, const lmc_array *x, const lmc_array *y);
    /* out has in's shape with `axis` of size 1. */
    lmc_status (*reduce)(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis);
    lmc_status (*softmax)(lmc_array *out, const lmc_array *in, int axis, bool log);
    lmc_status (*cumsum)(lmc_array *out, const lmc_array *in, int axis, bool reverse);
    /* Stable ascending sort along axis; either output may be NULL. */
    lmc_status (*sort)(lmc_array *values, lmc_array *indices, const lmc_array *in, int axis);
    /* out = take(a, idx, axis) (see lmc_take for the output shape). */
    lmc_status (*take)(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis);
    /* out = take_along_axis(a, idx, axis); idx already broadcast to out's shape. */
    lmc_status (*take_along)(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis);
    /* out (already holding a copy of the source) gets vals at idx along axis; add accumulates. */
    lmc_status (*put_along)(lmc_array *out, const lmc_array *idx, const lmc_array *vals, int axis, bool add);
    /* out[..., M, N] = a[..., M, K] @ b[..., K, N]; batch dims already broadcast to out's. */
    lmc_status (*matmul)(lmc_array *out, const lmc_array *a, const lmc_array *b);
    lmc_status (*rms_norm)(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight);
    lmc_status (*layer_norm)(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps);
    /* positions: i32 [T] or [B, T]; inv_freqs: f32 [dims/2], always given (the ops layer computes it from base). */
    lmc_status (*rope)(lmc_array *out, const lmc_array *x, const lmc_rope_params *p, const lmc_array *inv_freqs,
                       const lmc_array *positions);
    lmc_status (*sdpa)(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,
                       const lmc_sdpa_params *p);
    lmc_status (*quantize)(lmc_array *wq, lmc_array *scales, lmc_array *biases, const lmc_array *w, int group_size,
                           int bits);
    lmc_status (*dequantize)(lmc_array *out, const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                             int group_size, int bits);
    /* out[M, N] = x[M, K] @ dequant(W)ᵀ, x and out contiguous 2-d. */
    lmc_status (*quantized_matmul)(lmc_array *out, const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                                   const lmc_array *biases, int group_size, int bits);
    /* Optional (NULL: no batches): between these, this thread's matmul and
     * quantized_matmul calls may be deferred to batch_end and run there
     * together (the CPU batches quantised products, CUDA both kinds); the
     * arrays they were given must stay alive and their outputs unread until
     * then. */
    void (*batch_begin)(void);
    lmc_status (*batch_end)(void);
    /* Optional fused sequences (NULL: src/ops/fusion.c runs the parts), for
     * devices that pay per launch; each gives bit for bit what its parts
     * give on that device. Arrays are f32 with equal shapes. */
    /* sum = a + b, out = rms_norm(sum, w). */
    lmc_status (*add_rms_norm)(lmc_array *out, lmc_array *sum, const lmc_array *a, const lmc_array *b,
                               const lmc_array *w, float eps, bool one_plus_weight);
    /* x[i] [B, H_i, T, D] (D <= LMC_ROPE_QK_MAX_D), i = 0, 1: out[i] =
     * rope(norm ? rms_norm(x[i], w[i]) : x[i]); inv_freqs and positions as
     * for rope. */
    lmc_status (*rope_qk)(lmc_array *const out[2], const lmc_array *const x[2], bool norm, const lmc_array *const w[2],
                          float eps, bool one_plus_weight, const lmc_rope_params *p, const lmc_array *inv_freqs,
                          const lmc_array *positions);
    /* out = act(gate) * up; act is silu, gelu or gelu_tanh. */
    lmc_status (*gated_act)(lmc_unary_op act, lmc_array *out, const lmc_array *gate, const lmc_array *up);
    /* copy(out[i], in[i]) for i < n <= LMC_COPY_MANY_MAX, shapes and dtypes
     * as copy takes them. */
    lmc_status (*copy_many)(int n, lmc_array *const *out, const lmc_array *const *in);
} lmc_kernels;

enum { LMC_ROPE_QK_MAX_D = 1024, LMC_COPY_MANY_MAX = 4 };

/* The kernel table for a device (NULL with an error when not built). */
const lmc_kernels *lmc_kernels_for(lmc_device dev);
/* The CPU tables: the scalar oracle, and the table for the active path. */
const lmc_kernels *lmc_cpu_kernels_scalar(void);
const lmc_kernels *lmc_cpu_kernels(void);
/* The CUDA table (builds with LMC_CUDA=ON; NULL with an error when no GPU is usable). */
const lmc_kernels *lmc_cuda_kernels(void);

#endif
