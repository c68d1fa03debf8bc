/* Matrix products through cuBLAS.
 *
 * cuBLAS is column-major, lmc row-major: out[M, N] = a @ b is computed as
 * outᵀ = bᵀ aᵀ, each operand passed as it lies (a row-major [M, K] with row
 * stride lda *is* the column-major K x M matrix aᵀ; a column-major one is
 * passed transposed). Operands whose last two axes are neither get copied.
 *
 * Precision: f32 products run in full f32 (no TF32). An f32 operand against
 * a bf16 or f16 one — activations against stored weights, the common case —
 * is split into two 16-bit parts, hi = round(x) and lo = round(x - hi), and
 * both go through the tensor cores with f32 accumulation: x keeps ~16
 * significant bits (relative error ~2^-17), so the result matches the CPU's
 * f32 arithmetic to ~1e-5 while the weights are read in their stored dtype. */
#include "backend/cuda/cuda_common.cuh"

namespace {

struct mat {
    const lmc_cuda_view *v;
    bool row_major; /* else column-major */
    int64_t ld;
};

/* How the last two axes of v lie (rows x cols); false when neither way fits cuBLAS. */
bool classify(const lmc_cuda_view *v, mat *m) {
    int n = v->ndim;
    int64_t rows = v->shape[n - 2], cols = v->shape[n - 1], rs = v->strides[n - 2], cs = v->strides[n - 1];
    m->v = v;
    if ((cs == 1 || cols == 1) && (rows == 1 || rs >= (cols > 1 ? cols : 1))) {
        m->row_major = true;
        m->ld = rows == 1 ? (cols > 1 ? cols : 1) : rs;
        return m->ld >= 1;
    }
    if ((rs == 1 || rows == 1) && (cols == 1 || cs >= (rows > 1 ? rows : 1))) {
        m->row_major = false;
        m->ld = cols == 1 ? (rows > 1 ? rows : 1) : cs;
        return m->ld >= 1;
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

/* Copies view v ([batch..., r, c], any strides) into dst as contiguous [batch, r, c]
 * in dtype dt; with lo != NULL, also writes the residual x - hi in dt (the split). */
__global__ void pack_kernel(lmc_cuda_view v, int dt, void *dst, void *lo, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float x = lmc_ld(v.ptr, v.dtype, lmc_offset(v, i));
        if (dt == LMC_CU_BF16) {
            __nv_bfloat16 h = __float2bfloat16_rn(x);
            ((__nv_bfloat16 *)dst)[i] = h;
            if (lo) ((__nv_bfloat16 *)lo)[i] = __float2bfloat16_rn(x - __bfloat162float(h));
        } else if (dt == LMC_CU_F16) {
            __half h = __float2half_rn(x);
            ((__half *)dst)[i] = h;
            if (lo) ((__half *)lo)[i] = __float2half_rn(x - __half2float(h));
        } else {
            ((float *)dst)[i] = x;
        }
    }
}

int64_t size_of(const lmc_cuda_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

int esize(int dt) { return dt == LMC_CU_F32 ? 4 : 2; }

/* A view's matrices packed contiguously: the view made of the packed data. */
lmc_cuda_view packed_view(const lmc_cuda_view *v, void *data, int dt) {
    lmc_cuda_view p = *v;
    p.ptr = data;
    p.dtype = dt;
    int64_t s = 1;
    for (int d = p.ndim - 1; d >= 0; d--) {
        p.strides[d] = s;
        s *= p.shape[d];
    }
    return p;
}

} // namespace

extern "C" int lmc_cu_matmul(const lmc_cuda_view *out, const lmc_cuda_view *a_in, const lmc_cuda_view *b_in) {
    cublasHandle_t h = lmc_cuda_cublas();
    if (!h) return (int)cudaErrorNotReady;
    int nd = out->ndim;
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a_in->shape[nd - 1];
    int64_t total = size_of(out);
    if (!total) return 0;
    cudaStream_t st = lmc_cuda_stream();

    /* Which dtype each operand goes to cuBLAS in, and whether an f32 one is split. */
    int ta = a_in->dtype, tb = b_in->dtype;
    bool a16 = ta == LMC_CU_BF16 || ta == LMC_CU_F16, b16 = tb == LMC_CU_BF16 || tb == LMC_CU_F16;
    int want_a = ta, want_b = tb;
    bool split_a = false, split_b = false;
    if (a16 && b16 && ta != tb) want_a = want_b = LMC_CU_F32;
    else if (a16 && !b16) want_b = ta, split_b = true;
    else if (b16 && !a16) want_a = tb, split_a = true;
    else if (!a16 && !b16) want_a = want_b = LMC_CU_F32;
    if (ta != LMC_CU_F32 && !a16) want_a = LMC_CU_F32; /* integers: as f32 */
    if (tb != LMC_CU_F32 && !b16) want_b = LMC_CU_F32;
    if (want_a == LMC_CU_F32 && want_b == LMC_CU_F32) split_a = split_b = false;

    mat ma, mb;
    bool pack_a = want_a != ta || split_a || !classify(a_in, &ma);
    bool pack_b = want_b != tb || split_b || !classify(b_in, &mb);
    /* Scratch for packed operands (parts side by side) and an f32 result when out is not f32 but parts accumulate. */
    size_t na = pack_a ? (size_t)size_of(a_in) : 0, nb = pack_b ? (size_t)size_of(b_in) : 0;
    size_t bytes_a = na * esize(want_a) * (split_a ? 2 : 1), bytes_b = nb * esize(want_b) * (split_b ? 2 : 1);
    bool split = split_a || split_b;
    bool f32_out = out->dtype == LMC_CU_F32;
    size_t bytes_c = split && !f32_out ? (size_t)total * 4 : 0;
    size_t al = 256, off_b = (bytes_a + al - 1) / al * al, off_c = off_b + (bytes_b + al - 1) / al * al;
    char *scratch = NULL;
    if (bytes_a + bytes_b + bytes_c) {
        scratch = (char *)lmc_cuda_scratch(off_c + bytes_c);
        if (!scratch) return (int)cudaErrorMemoryAllocation;
    }
    lmc_cuda_view pa = *a_in, pa_lo = *a_in, pb = *b_in, pb_lo = *b_in;
    if (pack_a) {
        void *lo = split_a ? scratch + na * esize(want_a) : NULL;
        pack_kernel<<<lmc_blocks((int64_t)na, 256), 256, 0, st>>>(*a_in, want_a, scratch, lo, (int64_t)na);
        pa = packed_view(a_in, scratch, want_a);
        if (lo) pa_lo = packed_view(a_in, lo, want_a);
        classify(&pa, &ma);
    }
    if (pack_b) {
        void *lo = split_b ? scratch + off_b + nb * esize(want_b) : NULL;
        pack_kernel<<<lmc_blocks((int64_t)nb, 256), 256, 0, st>>>(*b_in, want_b, scratch + off_b, lo, (int64_t)nb);
        pb = packed_view(b_in, scratch + off_b, want_b);
        if (lo) pb_lo = packed_view(b_in, lo, want_b);
        classify(&pb, &mb);
    }
    int err = (int)cudaGetLastError();
    if (err) return err;

    /* The result: out itself, or f32 scratch when split parts must add up in f32 first. */
    lmc_cuda_view c = *out;
    if (bytes_c) c = packed_view(out, scratch + off_c, LMC_CU_F32);
    int64_t ldc = c.strides[nd - 2] > 0 && M > 1 ? c.strides[nd - 2] : N;

    /* Batches: every combination of the leading axes, one GEMM call per
     * combination of all but the last batch axis, strided-batched over it. */
    int nb_axes = nd - 2;
    int64_t inner = nb_axes ? out->shape[nd - 3] : 1, outer = 1;
    for (int d = 0; d < nb_axes - 1; d++) outer *= out->shape[d];
    int64_t sa = nb_axes ? pa.strides[nd - 3] : 0, sb = nb_axes ? pb.strides[nd - 3] : 0, sc = nb_axes ? c.strides[nd - 3] : 0;
    cublasOperation_t opA = ma.row_major ? CUBLAS_OP_N : CUBLAS_OP_T; /* a's role: cuBLAS's B */
    cublasOperation_t opB = mb.row_major ? CUBLAS_OP_N : CUBLAS_OP_T; /* b's role: cuBLAS's A */
    int parts = split ? 2 : 1;
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, oa = 0, ob = 0, oc = 0;
        for (int d = nb_axes - 2; d >= 0; d--) {
            int64_t k = rem % out->shape[d];
            rem /= out->shape[d];
            oa += k * pa.strides[d];
            ob += k * pb.strides[d];
            oc += k * c.strides[d];
        }
        for (int part = 0; part < parts; part++) {
            const lmc_cuda_view &A = split_a && part ? pa_lo : pa, &B = split_b && part ? pb_lo : pb;
            float alpha = 1.0f, beta = part ? 1.0f : 0.0f;
            cublasStatus_t s = cublasGemmStridedBatchedEx(
                h, opB, opA, (int)N, (int)M, (int)K, &alpha, (const char *)B.ptr + ob * esize(want_b), cuda_type(want_b),
                (int)mb.ld, sb, (const char *)A.ptr + oa * esize(want_a), cuda_type(want_a), (int)ma.ld, sa, &beta,
                (char *)c.ptr + oc * esize(c.dtype), cuda_type(c.dtype), (int)ldc, sc, (int)inner, CUBLAS_COMPUTE_32F,
                CUBLAS_GEMM_DEFAULT);
            if (s != CUBLAS_STATUS_SUCCESS) return (int)cudaErrorUnknown;
        }
    }
    if (bytes_c) {
        extern int lmc_cu_copy(const lmc_cuda_view *, const lmc_cuda_view *);
        return lmc_cu_copy(out, &c);
    }
    return (int)cudaGetLastError();
}
