/* The boundary between the CUDA backend's C side (cuda_backend.c: argument
 * marshalling, errors, the kernel table) and its kernels (*.cu, CUDA C++).
 *
 * This header is plain C that both compilers read, so it names no lmc_array:
 * the C side turns each array into an lmc_cuda_view (device pointer of
 * element 0, dtype, shape, element strides) and calls a launcher. Launchers
 * queue work on the backend's stream and return 0 or a cudaError_t value;
 * the C side turns that into an lmc error naming the op
 * (lmc_cuda_error_string). Dtype codes are lmc_dtype's values. */
#ifndef LMC_BACKEND_CUDA_LAUNCH_H
#define LMC_BACKEND_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMC_CUDA_MAX_DIMS 8 /* = LMC_MAX_DIMS */

/* lmc_dtype's values (checked against lmc/base.h in cuda_backend.c). */
enum { LMC_CU_F32 = 0, LMC_CU_F16 = 1, LMC_CU_BF16 = 2, LMC_CU_I32 = 3, LMC_CU_U32 = 4, LMC_CU_U8 = 5, LMC_CU_BOOL = 6,
       LMC_CU_I64 = 7 };

typedef struct lmc_cuda_view {
    void *ptr; /* element 0, on the device */
    int dtype;
    int ndim;
    int64_t shape[LMC_CUDA_MAX_DIMS];
    int64_t strides[LMC_CUDA_MAX_DIMS]; /* elements; 0 on broadcast axes */
} lmc_cuda_view;

/* --- runtime (cuda_runtime.cu) --------------------------------------------- */
int lmc_cuda_device_count(void);                 /* 0 when no usable GPU / driver */
int lmc_cuda_malloc(void **p, size_t n);
int lmc_cuda_free(void *p);
/* kind: 0 host->device, 1 device->host, 2 device->device; ordered on the stream, synchronous for device->host. */
int lmc_cuda_memcpy(void *dst, const void *src, size_t n, int kind);
int lmc_cuda_synchronize(void);
/* LMC_CUDA_PROFILE's GPU clock (one thread): start, queue work, then stop
 * waits for it and gives its time on the GPU in ms. */
int lmc_cuda_timer_start(void);
int lmc_cuda_timer_stop(double *ms);
const char *lmc_cuda_error_string(int err);
int lmc_cuda_last_launch_error(void);
int lmc_cuda_device_name(char *out, size_t cap);   /* "NAME (N SMs, X GiB)" of device 0 */
int lmc_cuda_copy_bandwidth(double *gbps);          /* a 1 GiB device copy: (read + written) bytes / s */

/* --- element-wise, copies, reductions, indexing (cuda_elementwise.cu) ------ */
/* Codes are lmc_unary_op / lmc_binary_op / lmc_reduce_op values. Every view
 * has out's shape (inputs are broadcast views) unless said otherwise. */
int lmc_cu_copy(const lmc_cuda_view *out, const lmc_cuda_view *in);
enum { LMC_CUDA_COPY_JOBS = 4 }; /* = LMC_COPY_MANY_MAX */
/* out[i] = in[i] for i < n as one launch (views of any layout and dtype). */
int lmc_cu_copy_many(int n, const lmc_cuda_view *out, const lmc_cuda_view *in);
int lmc_cu_fill(const lmc_cuda_view *out, double value);
int lmc_cu_arange(const lmc_cuda_view *out, double start, double step);
int lmc_cu_unary(int op, const lmc_cuda_view *out, const lmc_cuda_view *in);
int lmc_cu_binary(int op, const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b);
int lmc_cu_where(const lmc_cuda_view *out, const lmc_cuda_view *cond, const lmc_cuda_view *x, const lmc_cuda_view *y);
/* out: in's shape with axis of size 1. */
int lmc_cu_reduce(int op, const lmc_cuda_view *out, const lmc_cuda_view *in, int axis);
int lmc_cu_softmax(const lmc_cuda_view *out, const lmc_cuda_view *in, int axis, bool log);
/* out = act(gate) * up (act: silu, gelu, gelu_tanh), rounded as unary then binary mul; out f32. */
int lmc_cu_gated_act(int op, const lmc_cuda_view *out, const lmc_cuda_view *gate, const lmc_cuda_view *up);
/* out = take(a, idx, axis): out's shape is a's with axis replaced by idx's shape. */
int lmc_cu_take(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *idx, int axis);
/* idx already broadcast to out's shape. */
int lmc_cu_take_along(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *idx, int axis);

/* --- matmul (cuda_matmul.cu, cuBLAS) ----------------------------------------- */
/* out[..., M, N] = a[..., M, K] @ b[..., K, N]; batch dims broadcast already. */
int lmc_cu_matmul(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b);
enum { LMC_CUDA_MM_JOBS = 8 }; /* products of one lmc_cu_matmul_gemv_many call */
/* out[j] = a[j] @ b[j] for n products over the same rows of x (a layer's q,
 * k and v) as one decode GEMV launch, each result what lmc_cu_matmul gives
 * alone; -1, with nothing run, when they do not all fit that kernel alike. */
int lmc_cu_matmul_gemv_many(int n, const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b);

/* --- fused ops (cuda_fused.cu) ------------------------------------------------ */
/* Rows are all axes but the last; w (and b) 1-d of the last axis's size, or NULL. */
int lmc_cu_rms_norm(const lmc_cuda_view *out, const lmc_cuda_view *x, const lmc_cuda_view *w, float eps,
                    bool one_plus_weight);
/* sum = x + res, out = rms_norm(sum, w): what the binary add and rms_norm
 * kernels give, in one launch; x, res, sum f32. */
int lmc_cu_add_rms_norm(const lmc_cuda_view *out, const lmc_cuda_view *sum, const lmc_cuda_view *x,
                        const lmc_cuda_view *res, const lmc_cuda_view *w, float eps, bool one_plus_weight);
int lmc_cu_layer_norm(const lmc_cuda_view *out, const lmc_cuda_view *x, const lmc_cuda_view *w,
                      const lmc_cuda_view *b, float eps);
/* x [..., T, D]; positions i32 [T] or [B, T] (B = x's first dim); inv_freqs f32 [dims/2]. */
int lmc_cu_rope(const lmc_cuda_view *out, const lmc_cuda_view *x, int dims, bool traditional, float scale,
                const lmc_cuda_view *inv_freqs, const lmc_cuda_view *positions);
/* x[i] f32 [..., T, D], i = 0, 1 (same D): out[i] = rope(norm ? rms_norm(x[i], w[i]) : x[i]) in one
 * launch, what rms_norm and rope give; w[i] may be NULL. */
int lmc_cu_rope_qk(const lmc_cuda_view out[2], const lmc_cuda_view x[2], bool norm, const lmc_cuda_view *w[2],
                   float eps, bool one_plus_weight, int dims, bool traditional, float scale,
                   const lmc_cuda_view *inv_freqs, const lmc_cuda_view *positions);
/* q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv]; mask NULL or a view
 * broadcast to [B, Hq, Tq, Tk] (f32/bf16/f16 additive, or bool: true = keep). */
int lmc_cu_sdpa(const lmc_cuda_view *out, const lmc_cuda_view *q, const lmc_cuda_view *k, const lmc_cuda_view *v,
                float scale, bool causal, int64_t window, const lmc_cuda_view *mask, float softcap);

/* --- MLX affine quantisation (cuda_quant.cu) ------------------------------- */
/* One product of lmc_cu_quantized_matmul: out[M, N] = x[M, K] @ dequant(W)ᵀ;
 * out contiguous; wq u32 [N, K*bits/32]; scales, biases [N, K/group]
 * (f32/bf16/f16). */
typedef struct lmc_cuda_qmm_job {
    lmc_cuda_view out, wq, scales, biases;
    int group_size, bits;
} lmc_cuda_qmm_job;

enum { LMC_CUDA_QMM_JOBS = 8 }; /* products of one call (= LMC_QMM_MANY_MAX) */

/* jobs[0..n) over the same contiguous x: at decode one launch for all of
 * them (q, k and v; gate and up), each result the same as alone. */
int lmc_cu_quantized_matmul(const lmc_cuda_view *x, int n, const lmc_cuda_qmm_job *jobs);
/* out [..., K] float = dequant(wq [..., K*bits/32]); scales/biases [..., K/group]. All contiguous. */
int lmc_cu_dequantize(const lmc_cuda_view *out, const lmc_cuda_view *wq, const lmc_cuda_view *scales,
                      const lmc_cuda_view *biases, int group_size, int bits);

#ifdef __cplusplus
}
#endif
#endif
