/* Shared by the CUDA kernel files (CUDA C++ only): the stream, cuBLAS,
 * dtype loads/stores and strided indexing over lmc_cuda_view. */
#ifndef LMC_BACKEND_CUDA_COMMON_CUH
#define LMC_BACKEND_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <stdint.h>

#include "backend/cuda/cuda_launch.h"

/* The one stream every launch goes on (created on first use). */
cudaStream_t lmc_cuda_stream(void);
/* The cuBLAS handle bound to that stream (NULL when it could not be made). */
cublasHandle_t lmc_cuda_cublas(void);
/* A device scratch buffer of at least n bytes, the calling thread's own,
 * reused in stream order (valid until this thread's next call). NULL on failure. */
void *lmc_cuda_scratch(size_t n);

/* Element i of a view of any dtype, as float (integers converted). */
__device__ __forceinline__ float lmc_ld(const void *p, int dt, int64_t i) {
    switch (dt) {
    case LMC_CU_F32: return ((const float *)p)[i];
    case LMC_CU_F16: return __half2float(((const __half *)p)[i]);
    case LMC_CU_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case LMC_CU_I32: return (float)((const int32_t *)p)[i];
    case LMC_CU_U32: return (float)((const uint32_t *)p)[i];
    case LMC_CU_U8: return (float)((const uint8_t *)p)[i];
    case LMC_CU_BOOL: return ((const uint8_t *)p)[i] ? 1.0f : 0.0f;
    case LMC_CU_I64: return (float)((const int64_t *)p)[i];
    }
    return 0.0f;
}

/* Element i as double (exact for every integer dtype lmc stores). */
__device__ __forceinline__ double lmc_ld_f64(const void *p, int dt, int64_t i) {
    switch (dt) {
    case LMC_CU_I32: return (double)((const int32_t *)p)[i];
    case LMC_CU_U32: return (double)((const uint32_t *)p)[i];
    case LMC_CU_I64: return (double)((const int64_t *)p)[i];
    default: return (double)lmc_ld(p, dt, i);
    }
}

/* Stores v rounded to nearest-even in dt; integers saturate, NaN -> 0 (as lmc_store_f64). */
__device__ __forceinline__ void lmc_st(void *p, int dt, int64_t i, double v) {
    switch (dt) {
    case LMC_CU_F32: ((float *)p)[i] = (float)v; return;
    case LMC_CU_F16: ((__half *)p)[i] = __float2half_rn((float)v); return;
    case LMC_CU_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); return;
    case LMC_CU_BOOL: ((uint8_t *)p)[i] = v != 0.0; return;
    default: break;
    }
    if (v != v) v = 0.0;
    v = rint(v);
    switch (dt) {
    case LMC_CU_I32: ((int32_t *)p)[i] = (int32_t)fmin(fmax(v, -2147483648.0), 2147483647.0); return;
    case LMC_CU_U32: ((uint32_t *)p)[i] = (uint32_t)fmin(fmax(v, 0.0), 4294967295.0); return;
    case LMC_CU_U8: ((uint8_t *)p)[i] = (uint8_t)fmin(fmax(v, 0.0), 255.0); return;
    case LMC_CU_I64: ((int64_t *)p)[i] = (int64_t)fmin(fmax(v, -9223372036854775808.0), 9223372036854774784.0); return;
    }
}

/* Element i of a float array, the dtype known at compile time (otherwise at run time: dt). */
template <int DT> __device__ __forceinline__ float ld_as(const void *p, int dt, int64_t i) {
    if constexpr (DT == LMC_CU_F32) return ((const float *)p)[i];
    else if constexpr (DT == LMC_CU_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    else if constexpr (DT == LMC_CU_F16) return __half2float(((const __half *)p)[i]);
    else return lmc_ld(p, dt, i);
}

/* Stores a float value in a float (or other) dtype. */
__device__ __forceinline__ void st_f32(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case LMC_CU_F32: ((float *)p)[i] = v; return;
    case LMC_CU_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); return;
    case LMC_CU_F16: ((__half *)p)[i] = __float2half_rn(v); return;
    default: lmc_st(p, dt, i, (double)v); return;
    }
}

/* Bytes of one element of a dtype. */
__host__ __device__ __forceinline__ int lmc_cu_dtype_size(int dt) {
    switch (dt) {
    case LMC_CU_F32: case LMC_CU_I32: case LMC_CU_U32: return 4;
    case LMC_CU_F16: case LMC_CU_BF16: return 2;
    case LMC_CU_I64: return 8;
    default: return 1;
    }
}

/* Element offset of linear (row-major) index i over the first `axes` axes of
 * a view (all of them: an element; all but the last: a row). */
__device__ __forceinline__ int64_t lmc_offset_axes(const lmc_cuda_view &v, int64_t i, int axes) {
    int64_t off = 0;
    if (i <= (int64_t)UINT32_MAX) { /* 32-bit division: a few times cheaper than 64-bit on the GPU */
        uint32_t u = (uint32_t)i;
        for (int d = axes - 1; d >= 0 && u; d--) {
            const int64_t n = v.shape[d];
            const uint32_t q = n > (int64_t)UINT32_MAX ? 0 : u / (uint32_t)n;
            off += (int64_t)(u - q * (uint32_t)n) * v.strides[d];
            u = q;
        }
        return off;
    }
    for (int d = axes - 1; d >= 0; d--) {
        int64_t n = v.shape[d];
        off += (i % n) * v.strides[d];
        i /= n;
    }
    return off;
}

/* Element offset of linear (row-major) index i of shape in a view's strides. */
__device__ __forceinline__ int64_t lmc_offset(const lmc_cuda_view &v, int64_t i) { return lmc_offset_axes(v, i, v.ndim); }

/* A kernel that runs a table of jobs in one launch (products over one x):
 * job j of n owns blocks [first[j], first[j + 1]). Sets this block's job,
 * and its index within the job. The loop's constant indices keep the jobs
 * in the parameter bank (one computed at run time would copy them to local
 * memory). */
template <int NJ, typename Job>
__device__ __forceinline__ void lmc_block_job(const Job (&jobs)[NJ], const unsigned (&first)[NJ + 1], int n, Job &job,
                                              unsigned &block) {
    job = jobs[0];
    block = blockIdx.x;
#pragma unroll
    for (int j = 1; j < NJ; j++)
        if (j < n && blockIdx.x >= first[j]) {
            job = jobs[j];
            block = blockIdx.x - first[j];
        }
}

static inline int64_t lmc_view_size(const lmc_cuda_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

static inline unsigned lmc_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 1048576 ? 1048576 : b);
}

#define LMC_CU_RETURN_LAUNCH() return (int)cudaGetLastError()

#endif
