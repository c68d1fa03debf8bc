/* Matrix products through cuBLAS.
 *
 * cuBLAS is column-major, lmc row-major: out[M, N] = a @ b is computed as
 * outᵀ = bᵀ aᵀ, each operand passed as it lies (a row-major [M, K] with row
 * stride lda *is* the column-major K x M matrix aᵀ; a column-major one is
 * passed transposed). Operands whose last two axes are neither get copied.
 *
 * Precision: f32 products run in full f32 (no TF32). f32 activations against
 * bf16 weights — the decoder's common case — are split exactly into three
 * bf16 parts (hi + mid + lo, 24 significant bits, as the CPU's AMX path
 * does) stacked as 3M rows of one product: the tensor cores read each weight
 * once, as stored, and the three partial results add up in f32 to what f32
 * arithmetic gives (the extra rows cost arithmetic the GPU has to spare, not
 * bandwidth). f16 weights, whose range a split of the activations could
 * overflow, and mixed 16-bit pairs go through f32 copies instead (slower). */
#include "backend/cuda/cuda_common.cuh"

namespace {

enum { PARTS = 3 };

struct mat {
    bool row_major; /* else column-major */
    int64_t ld;
};

/* How the last two axes of v lie; false when neither way fits cuBLAS. */
bool classify(const lmc_cuda_view *v, mat *m) {
    int n = v->ndim;
    int64_t rows = v->shape[n - 2], cols = v->shape[n - 1], rs = v->strides[n - 2], cs = v->strides[n - 1];
    if ((cs == 1 || cols == 1) && (rows == 1 || rs >= (cols > 1 ? cols : 1))) {
        m->row_major = true;
        m->ld = rows == 1 ? (cols > 1 ? cols : 1) : rs;
        return true;
    }
    if ((rs == 1 || rows == 1) && (cols == 1 || cs >= (rows > 1 ? rows : 1))) {
        m->row_major = false;
        m->ld = cols == 1 ? (rows > 1 ? rows : 1) : cs;
        return true;
    }
    return false;
}

cudaDataType cuda_type(int dt) {
    switch (dt) {
    case LMC_CU_F16: return CUDA_R_16F;
    case LMC_CU_BF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
    }
}

int64_t size_of(const lmc_cuda_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

/* Row-major contiguous strides for v's shape, with the row axis (nd-2)
 * holding `parts` stacked copies of the matrix. */
lmc_cuda_view packed_view(const lmc_cuda_view *v, void *data, int dt, int parts) {
    lmc_cuda_view p = *v;
    p.ptr = data;
    p.dtype = dt;
    p.shape[p.ndim - 2] *= parts;
    int64_t s = 1;
    for (int d = p.ndim - 1; d >= 0; d--) {
        p.strides[d] = s;
        s *= p.shape[d];
    }
    p.shape[p.ndim - 2] /= parts;
    return p;
}

/* v ([batch..., r, c], any strides, any dtype) into dst, row-major; with
 * split, as bf16 parts hi, mid, lo stacked per matrix ([batch, 3r, c]). */
__global__ void pack_kernel(lmc_cuda_view v, int dt, void *dst, bool split, int64_t n) {
    int64_t rc = v.shape[v.ndim - 2] * v.shape[v.ndim - 1];
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float x = lmc_ld(v.ptr, v.dtype, lmc_offset(v, i));
        if (split) {
            int64_t base = (i / rc) * PARTS * rc + i % rc;
            __nv_bfloat16 *d = (__nv_bfloat16 *)dst;
            for (int p = 0; p < PARTS; p++) {
                __nv_bfloat16 h = __float2bfloat16_rn(x);
                d[base + p * rc] = h;
                x -= __bfloat162float(h); /* exact: the residual of a bf16 rounding of an f32 */
            }
        } else if (dt == LMC_CU_BF16) {
            ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(x);
        } else if (dt == LMC_CU_F16) {
            ((__half *)dst)[i] = __float2half_rn(x);
        } else {
            ((float *)dst)[i] = x;
        }
    }
}

/* out[b, m, n] = (lo + mid) + hi of the stacked partial products c[b, p*M + m, n]. */
__global__ void combine_kernel(lmc_cuda_view out, const float *c, int64_t M, int64_t N, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / (M * N), mn = i % (M * N);
        const float *p = c + b * PARTS * M * N + mn;
        float v = p[0];
        float rest = 0.0f;
        for (int k = PARTS - 1; k >= 1; k--) rest += p[k * M * N];
        lmc_st(out.ptr, out.dtype, lmc_offset(out, i), (double)(v + rest));
    }
}

/* --- decode: a few rows of f32 x against weights in the Linear layout ------
 *
 * out[r, n] = sum_k x[r, k] * W[n, k] for up to GEMV_ROWS rows r, W [N, K]
 * row-major in its stored dtype. Memory-bound: one warp per weight row
 * streams it once in 16-byte loads and applies it to every row of x (L1/L2
 * resident), in f32 arithmetic like the CPU (no split, no cuBLAS call, one
 * launch). */

enum { GEMV_ROWS = 8 };

/* The products of one launch: each job its own W and out, all over the same
 * rows of x (a layer's q, k and v read one x); job j owns blocks [first[j],
 * first[j+1]). NJ is 1 for a lone product, so its launch carries one job. */
struct gemv_job {
    float *out;
    int64_t orow[GEMV_ROWS]; /* element offset of each output row */
    const void *w;
    int64_t ldw, N;
};

template <int NJ> struct gemv_jobs {
    const float *x;
    int64_t xrow[GEMV_ROWS]; /* element offset of each row of x */
    int64_t K;
    gemv_job job[NJ];
    unsigned first[NJ + 1];
    int n;
};

__device__ __forceinline__ void widen(const uint4 &raw, float *w, const float *) {
    const float *f = (const float *)&raw;
    for (int j = 0; j < 4; j++) w[j] = f[j];
}
__device__ __forceinline__ void widen(const uint4 &raw, float *w, const __nv_bfloat16 *) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
    for (int j = 0; j < 4; j++) {
        float2 f = __bfloat1622float2(h[j]);
        w[2 * j] = f.x, w[2 * j + 1] = f.y;
    }
}
__device__ __forceinline__ void widen(const uint4 &raw, float *w, const __half *) {
    const __half2 *h = (const __half2 *)&raw;
    for (int j = 0; j < 4; j++) {
        float2 f = __half22float2(h[j]);
        w[2 * j] = f.x, w[2 * j + 1] = f.y;
    }
}

template <typename T, int R, int NJ> __global__ void gemv_kernel(const gemv_jobs<NJ> J) {
    constexpr int V = 16 / sizeof(T);
    gemv_job g;
    unsigned block;
    lmc_block_job(J.job, J.first, J.n, g, block);
    int64_t n = (block * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (n >= g.N) return;
    const T *row = (const T *)g.w + n * g.ldw;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    for (int64_t k = (int64_t)lane * V; k < J.K; k += 32 * V) {
        float wv[V];
        widen(__ldg((const uint4 *)(row + k)), wv, (const T *)nullptr);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const float4 *xp = (const float4 *)(J.x + J.xrow[r] + k);
#pragma unroll
            for (int j = 0; j < V / 4; j++) {
                float4 xv = xp[j];
                acc[r] = fmaf(wv[4 * j], xv.x, acc[r]);
                acc[r] = fmaf(wv[4 * j + 1], xv.y, acc[r]);
                acc[r] = fmaf(wv[4 * j + 2], xv.z, acc[r]);
                acc[r] = fmaf(wv[4 * j + 3], xv.w, acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) g.out[g.orow[r] + n] = v;
    }
}

template <typename T, int NJ> int launch_gemv(int R, gemv_jobs<NJ> &J) {
    J.first[0] = 0;
    for (int j = 0; j < J.n; j++) J.first[j + 1] = J.first[j] + (unsigned)((J.job[j].N * 32 + 255) / 256);
    unsigned blocks = J.first[J.n];
    cudaStream_t st = lmc_cuda_stream();
    switch (R) {
#define CASE(r) case r: gemv_kernel<T, r, NJ><<<blocks, 256, 0, st>>>(J); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    }
    return (int)cudaGetLastError();
}

template <int NJ> int launch_gemv_dt(int tb, int R, gemv_jobs<NJ> &J) {
    if (tb == LMC_CU_BF16) return launch_gemv<__nv_bfloat16>(R, J);
    if (tb == LMC_CU_F16) return launch_gemv<__half>(R, J);
    return launch_gemv<float>(R, J);
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* One product as a GEMV job: when out = x @ Wᵀ fits the kernel (f32 x and
 * out, few rows, W the same [N, K] row-major matrix for every row, b its
 * transposed view, K a whole number of 16-byte vectors) fills job j of J
 * (x and its rows too) and returns the number of rows of x; else -1. */
template <int NJ> int gemv_plan(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b, gemv_jobs<NJ> &J, int j) {
    int nd = out->ndim;
    int64_t N = out->shape[nd - 1], K = a->shape[nd - 1];
    int64_t R = 1;
    for (int d = 0; d < nd - 1; d++) R *= out->shape[d];
    int tb = b->dtype;
    if (a->dtype != LMC_CU_F32 || out->dtype != LMC_CU_F32 || R > GEMV_ROWS || R < 1 || K < 1) return -1;
    if (tb != LMC_CU_BF16 && tb != LMC_CU_F16 && tb != LMC_CU_F32) return -1;
    int V = 16 / (tb == LMC_CU_F32 ? 4 : 2);
    int64_t ldw = b->strides[nd - 1];
    if (K % V || b->strides[nd - 2] != 1 || (N > 1 && ldw < K) || a->strides[nd - 1] != 1 || out->strides[nd - 1] != 1)
        return -1;
    for (int d = 0; d < nd - 2; d++)
        if (b->shape[d] > 1 && b->strides[d] != 0) return -1; /* a different W per batch */
    if (!aligned16(b->ptr) || !aligned16(a->ptr) || (N > 1 && (ldw * (tb == LMC_CU_F32 ? 4 : 2)) % 16)) return -1;
    for (int64_t r = 0; r < R; r++) {
        int64_t rem = r, xo = 0, oo = 0;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t k = rem % out->shape[d];
            rem /= out->shape[d];
            xo += k * a->strides[d];
            oo += k * out->strides[d];
        }
        if (xo % 4) return -1; /* x rows 16-byte aligned */
        J.xrow[r] = xo;
        J.job[j].orow[r] = oo;
    }
    J.x = (const float *)a->ptr;
    J.K = K;
    J.job[j].out = (float *)out->ptr;
    J.job[j].w = b->ptr;
    J.job[j].ldw = ldw;
    J.job[j].N = N;
    return (int)R;
}

/* The GEMV for one product, or -1 when it does not apply. */
int try_gemv(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b) {
    gemv_jobs<1> J;
    J.n = 1;
    int R = gemv_plan(out, a, b, J, 0);
    return R < 0 ? -1 : launch_gemv_dt(b->dtype, R, J);
}

} // namespace

/* Products over the same x (a layer's q, k and v), one GEMV launch for all
 * when each fits it with the same rows of x and weight dtype; -1 (nothing
 * run) otherwise. Each result is what the product gives alone. */
extern "C" int lmc_cu_matmul_gemv_many(int n, const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b) {
    if (n < 1 || n > LMC_CUDA_MM_JOBS) return -1;
    gemv_jobs<LMC_CUDA_MM_JOBS> J;
    J.n = n;
    int R = -1;
    int64_t xrow[GEMV_ROWS], K = 0;
    for (int j = 0; j < n; j++) {
        int r = gemv_plan(&out[j], &a[j], &b[j], J, j);
        if (r < 0 || b[j].dtype != b[0].dtype)
            return -1;
        if (j && (r != R || J.K != K || J.x != (const float *)a[0].ptr || memcmp(xrow, J.xrow, sizeof(int64_t) * r)))
            return -1;
        R = r;
        K = J.K;
        memcpy(xrow, J.xrow, sizeof(int64_t) * r);
    }
    return launch_gemv_dt(b[0].dtype, R, J);
}


extern "C" int lmc_cu_matmul(const lmc_cuda_view *out, const lmc_cuda_view *a_in, const lmc_cuda_view *b_in) {
    cublasHandle_t h = lmc_cuda_cublas();
    if (!h) return (int)cudaErrorNotReady;
    int nd = out->ndim;
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a_in->shape[nd - 1];
    int64_t total = size_of(out);
    if (!total) return 0;
    int g = try_gemv(out, a_in, b_in);
    if (g >= 0) return g;
    cudaStream_t st = lmc_cuda_stream();

    /* The dtypes the operands go to cuBLAS in. */
    int ta = a_in->dtype, tb = b_in->dtype;
    bool split = ta == LMC_CU_F32 && tb == LMC_CU_BF16;
    int want_a, want_b;
    if (split) want_a = want_b = LMC_CU_BF16;
    else if (ta == tb && (ta == LMC_CU_BF16 || ta == LMC_CU_F16 || ta == LMC_CU_F32)) want_a = want_b = ta;
    else want_a = want_b = LMC_CU_F32;
    int parts = split ? PARTS : 1;

    mat ma, mb;
    bool pack_a = split || want_a != ta || !classify(a_in, &ma);
    bool pack_b = want_b != tb || !classify(b_in, &mb);
    /* The result goes to out directly, unless parts must be combined or out
     * is not row-major contiguous per matrix (then an f32 scratch). */
    bool c_direct = !split && out->strides[nd - 1] == 1 && (M == 1 || out->strides[nd - 2] == N);
    size_t na = pack_a ? (size_t)size_of(a_in) : 0, nb = pack_b ? (size_t)size_of(b_in) : 0;
    size_t bytes_a = na * lmc_cu_dtype_size(want_a) * parts, bytes_b = nb * lmc_cu_dtype_size(want_b);
    size_t bytes_c = c_direct ? 0 : (size_t)total * parts * 4;
    const size_t al = 256;
    size_t off_b = (bytes_a + al - 1) / al * al, off_c = off_b + (bytes_b + al - 1) / al * al;
    char *scratch = NULL;
    if (bytes_a + bytes_b + bytes_c) {
        scratch = (char *)lmc_cuda_scratch(off_c + bytes_c);
        if (!scratch) return (int)cudaErrorMemoryAllocation;
    }
    lmc_cuda_view pa = *a_in, pb = *b_in;
    if (pack_a) {
        pack_kernel<<<lmc_blocks((int64_t)na, 256), 256, 0, st>>>(*a_in, want_a, scratch, split, (int64_t)na);
        pa = packed_view(a_in, scratch, want_a, parts);
        ma.row_major = true;
        ma.ld = K;
    }
    if (pack_b) {
        pack_kernel<<<lmc_blocks((int64_t)nb, 256), 256, 0, st>>>(*b_in, want_b, scratch + off_b, false, (int64_t)nb);
        pb = packed_view(b_in, scratch + off_b, want_b, 1);
        mb.row_major = true;
        mb.ld = N;
    }
    int err = (int)cudaGetLastError();
    if (err) return err;
    lmc_cuda_view c = c_direct ? *out : packed_view(out, scratch + off_c, LMC_CU_F32, parts);
    int64_t ldc = N;

    /* Batches: one GEMM call per combination of all but the last batch axis,
     * strided-batched over that one. */
    int nb_axes = nd - 2;
    int64_t inner = nb_axes ? out->shape[nd - 3] : 1, outer = 1;
    for (int d = 0; d < nb_axes - 1; d++) outer *= out->shape[d];
    int64_t sa = nb_axes ? pa.strides[nd - 3] : 0, sb = nb_axes ? pb.strides[nd - 3] : 0, sc = nb_axes ? c.strides[nd - 3] : 0;
    cublasOperation_t opA = ma.row_major ? CUBLAS_OP_N : CUBLAS_OP_T; /* a is cuBLAS's B */
    cublasOperation_t opB = mb.row_major ? CUBLAS_OP_N : CUBLAS_OP_T; /* b is cuBLAS's A */
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, oa = 0, ob = 0, oc = 0;
        for (int d = nb_axes - 2; d >= 0; d--) {
            int64_t k = rem % out->shape[d];
            rem /= out->shape[d];
            oa += k * pa.strides[d];
            ob += k * pb.strides[d];
            oc += k * c.strides[d];
        }
        const float alpha = 1.0f, beta = 0.0f;
        cublasStatus_t s = cublasGemmStridedBatchedEx(
            h, opB, opA, (int)N, (int)(M * parts), (int)K, &alpha, (const char *)pb.ptr + ob * lmc_cu_dtype_size(want_b),
            cuda_type(want_b), (int)mb.ld, sb, (const char *)pa.ptr + oa * lmc_cu_dtype_size(want_a), cuda_type(want_a), (int)ma.ld, sa,
            &beta, (char *)c.ptr + oc * lmc_cu_dtype_size(c.dtype), cuda_type(c.dtype), (int)ldc, sc, (int)inner, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) return (int)cudaErrorUnknown;
    }
    if (c_direct) return (int)cudaGetLastError();
    if (split) {
        combine_kernel<<<lmc_blocks(total, 256), 256, 0, st>>>(*out, (const float *)c.ptr, M, N, total);
        return (int)cudaGetLastError();
    }
    lmc_cuda_view cv = packed_view(out, c.ptr, LMC_CU_F32, 1);
    return lmc_cu_copy(out, &cv);
}
