/* CUDA kernels of the fused ops: rms_norm, layer_norm, rope, sdpa.
 *
 * How they are organised, and why:
 * - The norms run one block per row: a row is at most a few thousand
 *   features, so one block reduces it in shared memory without a second
 *   launch, and re-reading the row for the output pass hits L1/L2.
 * - rope is one thread per rotated pair (or copied feature): no reduction,
 *   so the flattest mapping keeps every SM busy whatever the shape.
 * - sdpa runs one warp per (query position, kv head, key split), serving
 *   all the query heads that share the kv head (GQA), so each key and value
 *   row is read once per group rather than once per query head. The lanes
 *   split the head dimension, so every key row is read coalesced, and the
 *   warp keeps each head's online softmax (running max, sum, output
 *   accumulator) in registers: no shared memory and no block-wide
 *   synchronisation. At decode there are few such warps, far too few to
 *   fill the GPU or its memory bandwidth, so the keys are split over
 *   several warps (flash-decoding) whose partial results a second kernel
 *   merges (one block per query row); with many query positions (prefill)
 *   each warp scans its keys alone. Causal and window limits shrink the
 *   key range scanned, not just mask it. Not a tiled flash kernel: prefill
 *   re-reads K/V per query position (from L2) and is well below what the
 *   tensor cores could do.
 * Everything is computed in f32 whatever the input dtype, like the CPU
 * reference kernels (src/backend/cpu/fused_scalar.c) these match. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

/* --- helpers ------------------------------------------------------------------ */

/* Offset of row r of a view whose rows are all axes but the last. */
__device__ __forceinline__ int64_t row_offset(const lmc_cuda_view &v, int64_t r) { return lmc_offset_axes(v, r, v.ndim - 1); }

static int64_t view_rows(const lmc_cuda_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->ndim - 1; d++) n *= v->shape[d];
    return n;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it. */
__device__ float block_sum(float v, float *red /* [32] shared */) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

/* Threads per row: NORM_UNROLL elements each in one pass where the row allows. */
static int norm_threads(int64_t D) {
    int64_t t = ((D + 3) / 4 + 31) / 32 * 32;
    return t < 32 ? 32 : t > 1024 ? 1024 : (int)t;
}

/* --- rms_norm / layer_norm: one block per row ---------------------------------- */

struct norm_args {
    lmc_cuda_view out, x;
    lmc_cuda_view res, sum; /* add_rms_norm: x + res is normed, and stored in sum */
    const void *w, *b;
    int wdt, bdt;
    int64_t ws, bs;
    float eps;
    bool one_plus_weight;
};

/* Rows are read NORM_UNROLL elements per thread at a time, loads first, so
 * that a thread has several in flight (one row per block is latency-bound
 * otherwise, e.g. at decode with a single row). */
enum { NORM_UNROLL = 4 };

/* The row's elements d0 + u * blockDim.x (u < NORM_UNROLL) as f32, 0 past
 * D; with ADD, x + res rounded to f32 as the binary add kernel rounds it. */
template <int XDT, bool ADD = false>
__device__ __forceinline__ void load_unrolled(const norm_args &a, int64_t xo, int64_t sx, int64_t D, int64_t d0, float *v,
                                              int64_t ro = 0, int64_t sr = 0) {
#pragma unroll
    for (int u = 0; u < NORM_UNROLL; u++) {
        int64_t d = d0 + u * (int64_t)blockDim.x;
        v[u] = d < D ? ld_as<XDT>(a.x.ptr, a.x.dtype, xo + d * sx) : 0.0f;
        if (ADD && d < D) v[u] = (float)((double)v[u] + (double)((const float *)a.res.ptr)[ro + d * sr]);
    }
}

/* The weight of feature d: w[d] (+ 1 for Gemma's one_plus_weight), 1 without w. */
__device__ __forceinline__ float norm_gain(const norm_args &a, int64_t d) {
    return a.w ? lmc_ld(a.w, a.wdt, d * a.ws) + (a.one_plus_weight ? 1.0f : 0.0f) : 1.0f;
}

/* 1 / rms of a row, every thread of the block taking part (with ADD the
 * row's sums are stored as they are read). rms_norm and the fused kernels
 * below share it, so a fused row is normed with the same bits. A row that
 * takes one pass (D <= blockDim.x * NORM_UNROLL: decode's) leaves the
 * thread's values in v, so the caller need not read them again. */
template <int XDT, bool ADD>
__device__ float rms_row_scale(const norm_args &a, int64_t row, float *red, float (&v)[NORM_UNROLL]) {
    const int nd = a.x.ndim;
    const int64_t D = a.x.shape[nd - 1], sx = a.x.strides[nd - 1];
    const int64_t xo = row_offset(a.x, row), step = (int64_t)blockDim.x * NORM_UNROLL;
    const int64_t ro = ADD ? row_offset(a.res, row) : 0, sr = ADD ? a.res.strides[nd - 1] : 0;
    const int64_t mo = ADD ? row_offset(a.sum, row) : 0, sm = ADD ? a.sum.strides[nd - 1] : 0;
    float ss = 0.0f;
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        load_unrolled<XDT, ADD>(a, xo, sx, D, d0, v, ro, sr);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            ss = fmaf(v[u], v[u], ss);
            int64_t d = d0 + u * (int64_t)blockDim.x;
            if (ADD && d < D) ((float *)a.sum.ptr)[mo + d * sm] = v[u];
        }
    }
    ss = block_sum(ss, red);
    return 1.0f / sqrtf(ss / (float)D + a.eps);
}

template <int XDT, bool ADD> __global__ void rms_norm_kernel(norm_args a) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const int nd = a.x.ndim;
    const int64_t D = a.x.shape[nd - 1], sx = a.x.strides[nd - 1], so = a.out.strides[a.out.ndim - 1];
    const int64_t xo = row_offset(a.x, row), oo = row_offset(a.out, row);
    const int64_t ro = ADD ? row_offset(a.res, row) : 0, sr = ADD ? a.res.strides[nd - 1] : 0;
    const int64_t step = (int64_t)blockDim.x * NORM_UNROLL;
    float v[NORM_UNROLL];
    const float r = rms_row_scale<XDT, ADD>(a, row, red, v);
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        if (D > step) load_unrolled<XDT, ADD>(a, xo, sx, D, d0, v, ro, sr);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            int64_t d = d0 + u * (int64_t)blockDim.x;
            if (d < D) st_f32(a.out.ptr, a.out.dtype, oo + d * so, v[u] * r * norm_gain(a, d));
        }
    }
}

template <int XDT> __global__ void layer_norm_kernel(norm_args a) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const int nd = a.x.ndim;
    const int64_t D = a.x.shape[nd - 1], sx = a.x.strides[nd - 1], so = a.out.strides[a.out.ndim - 1];
    const int64_t xo = row_offset(a.x, row), oo = row_offset(a.out, row);
    const int64_t step = (int64_t)blockDim.x * NORM_UNROLL;
    float s = 0.0f;
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        float v[NORM_UNROLL];
        load_unrolled<XDT>(a, xo, sx, D, d0, v);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) s += v[u];
    }
    const float mean = block_sum(s, red) / (float)D;
    float var = 0.0f;
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        float v[NORM_UNROLL];
        load_unrolled<XDT>(a, xo, sx, D, d0, v);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++)
            if (d0 + u * (int64_t)blockDim.x < D) v[u] -= mean;
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) var = fmaf(v[u], v[u], var);
    }
    var = block_sum(var, red);
    const float r = 1.0f / sqrtf(var / (float)D + a.eps);
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        float v[NORM_UNROLL];
        load_unrolled<XDT>(a, xo, sx, D, d0, v);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            int64_t d = d0 + u * (int64_t)blockDim.x;
            if (d >= D) continue;
            float o = (v[u] - mean) * r;
            if (a.w) o *= lmc_ld(a.w, a.wdt, d * a.ws);
            if (a.b) o += lmc_ld(a.b, a.bdt, d * a.bs);
            st_f32(a.out.ptr, a.out.dtype, oo + d * so, o);
        }
    }
}

static norm_args make_norm_args(const lmc_cuda_view *out, const lmc_cuda_view *x, const lmc_cuda_view *w,
                                const lmc_cuda_view *b, float eps, bool one_plus_weight) {
    norm_args a = {};
    a.out = *out;
    a.x = *x;
    a.w = w ? w->ptr : NULL;
    a.wdt = w ? w->dtype : 0;
    a.ws = w ? w->strides[0] : 0;
    a.b = b ? b->ptr : NULL;
    a.bdt = b ? b->dtype : 0;
    a.bs = b ? b->strides[0] : 0;
    a.eps = eps;
    a.one_plus_weight = one_plus_weight;
    return a;
}

extern "C" int lmc_cu_rms_norm(const lmc_cuda_view *out, const lmc_cuda_view *x, const lmc_cuda_view *w, float eps,
                               bool one_plus_weight) {
    int64_t rows = view_rows(x), D = x->shape[x->ndim - 1];
    if (rows == 0 || D == 0) return 0;
    if (rows > INT32_MAX) return (int)cudaErrorInvalidConfiguration;
    norm_args a = make_norm_args(out, x, w, NULL, eps, one_plus_weight);
    cudaStream_t st = lmc_cuda_stream();
    int th = norm_threads(D);
    switch (x->dtype) {
    case LMC_CU_F32: rms_norm_kernel<LMC_CU_F32, false><<<(unsigned)rows, th, 0, st>>>(a); break;
    case LMC_CU_BF16: rms_norm_kernel<LMC_CU_BF16, false><<<(unsigned)rows, th, 0, st>>>(a); break;
    case LMC_CU_F16: rms_norm_kernel<LMC_CU_F16, false><<<(unsigned)rows, th, 0, st>>>(a); break;
    default: rms_norm_kernel<-1, false><<<(unsigned)rows, th, 0, st>>>(a); break;
    }
    LMC_CU_RETURN_LAUNCH();
}

extern "C" int lmc_cu_add_rms_norm(const lmc_cuda_view *out, const lmc_cuda_view *sum, const lmc_cuda_view *x,
                                   const lmc_cuda_view *res, const lmc_cuda_view *w, float eps, bool one_plus_weight) {
    int64_t rows = view_rows(x), D = x->shape[x->ndim - 1];
    if (rows == 0 || D == 0) return 0;
    if (rows > INT32_MAX || x->dtype != LMC_CU_F32 || res->dtype != LMC_CU_F32 || sum->dtype != LMC_CU_F32)
        return (int)cudaErrorInvalidValue;
    norm_args a = make_norm_args(out, x, w, NULL, eps, one_plus_weight);
    a.res = *res;
    a.sum = *sum;
    rms_norm_kernel<LMC_CU_F32, true><<<(unsigned)rows, norm_threads(D), 0, lmc_cuda_stream()>>>(a);
    LMC_CU_RETURN_LAUNCH();
}

extern "C" int lmc_cu_layer_norm(const lmc_cuda_view *out, const lmc_cuda_view *x, const lmc_cuda_view *w,
                                 const lmc_cuda_view *b, float eps) {
    int64_t rows = view_rows(x), D = x->shape[x->ndim - 1];
    if (rows == 0 || D == 0) return 0;
    if (rows > INT32_MAX) return (int)cudaErrorInvalidConfiguration;
    norm_args a = make_norm_args(out, x, w, b, eps, false);
    cudaStream_t st = lmc_cuda_stream();
    int th = norm_threads(D);
    switch (x->dtype) {
    case LMC_CU_F32: layer_norm_kernel<LMC_CU_F32><<<(unsigned)rows, th, 0, st>>>(a); break;
    case LMC_CU_BF16: layer_norm_kernel<LMC_CU_BF16><<<(unsigned)rows, th, 0, st>>>(a); break;
    case LMC_CU_F16: layer_norm_kernel<LMC_CU_F16><<<(unsigned)rows, th, 0, st>>>(a); break;
    default: layer_norm_kernel<-1><<<(unsigned)rows, th, 0, st>>>(a); break;
    }
    LMC_CU_RETURN_LAUNCH();
}

/* --- rope: one thread per rotated pair or copied feature -------------------- */

struct rope_args {
    lmc_cuda_view out, x;
    const float *inv;
    int64_t sinv;
    const int32_t *pos;
    int pos_ndim;
    int64_t ps0, ps1;
    int64_t half, dims, ncopy, per_row; /* per_row = half + ncopy work items */
    int64_t rows_per_batch;             /* rows (all axes but the last) per index of x's first axis */
    float scale;
    bool traditional;
};

/* Pair j of row `row` of an nd-axis x [..., T, D]: its rotation (c, s) and
 * the features it rotates (i0, i1). */
__device__ __forceinline__ void rope_pair(const rope_args &a, int64_t row, int nd, int64_t j, float *c, float *s,
                                          int64_t *i0, int64_t *i1) {
    int64_t t = row % a.x.shape[nd - 2], bi = nd >= 3 ? row / a.rows_per_batch : 0;
    int32_t pos = a.pos_ndim == 1 ? a.pos[t * a.ps0] : a.pos[bi * a.ps0 + t * a.ps1];
    float ang = ((float)pos * a.scale) * a.inv[j * a.sinv];
    *c = cosf(ang);
    *s = sinf(ang);
    *i0 = a.traditional ? 2 * j : j;
    *i1 = a.traditional ? 2 * j + 1 : j + a.half;
}

__global__ void rope_kernel(rope_args a, int64_t total) {
    int nd = a.x.ndim;
    int64_t D_sx = a.x.strides[nd - 1], so = a.out.strides[a.out.ndim - 1];
    for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = it / a.per_row, j = it % a.per_row;
        int64_t xo = row_offset(a.x, row), oo = row_offset(a.out, row);
        if (j >= a.half) { /* features past dims are copied */
            int64_t d = a.dims + (j - a.half);
            st_f32(a.out.ptr, a.out.dtype, oo + d * so, lmc_ld(a.x.ptr, a.x.dtype, xo + d * D_sx));
            continue;
        }
        float c, s;
        int64_t i0, i1;
        rope_pair(a, row, nd, j, &c, &s, &i0, &i1);
        float x0 = lmc_ld(a.x.ptr, a.x.dtype, xo + i0 * D_sx), x1 = lmc_ld(a.x.ptr, a.x.dtype, xo + i1 * D_sx);
        st_f32(a.out.ptr, a.out.dtype, oo + i0 * so, x0 * c - x1 * s);
        st_f32(a.out.ptr, a.out.dtype, oo + i1 * so, x1 * c + x0 * s);
    }
}

static rope_args make_rope_args(const lmc_cuda_view *out, const lmc_cuda_view *x, int dims, bool traditional,
                                float scale, const lmc_cuda_view *inv_freqs, const lmc_cuda_view *positions) {
    int nd = x->ndim;
    int64_t D = x->shape[nd - 1], rows = view_rows(x);
    rope_args a;
    a.out = *out;
    a.x = *x;
    a.inv = (const float *)inv_freqs->ptr;
    a.sinv = inv_freqs->strides[0];
    a.pos = (const int32_t *)positions->ptr;
    a.pos_ndim = positions->ndim;
    a.ps0 = positions->strides[0];
    a.ps1 = positions->ndim >= 2 ? positions->strides[1] : 0;
    a.dims = dims;
    a.half = dims / 2;
    a.ncopy = D > dims ? D - dims : 0;
    a.per_row = a.half + a.ncopy;
    a.rows_per_batch = x->shape[0] ? rows / x->shape[0] : 1;
    a.scale = scale;
    a.traditional = traditional;
    return a;
}

extern "C" int lmc_cu_rope(const lmc_cuda_view *out, const lmc_cuda_view *x, int dims, bool traditional, float scale,
                           const lmc_cuda_view *inv_freqs, const lmc_cuda_view *positions) {
    if (x->ndim < 2) return (int)cudaErrorInvalidValue;
    rope_args a = make_rope_args(out, x, dims, traditional, scale, inv_freqs, positions);
    int64_t total = view_rows(x) * a.per_row;
    if (total == 0) return 0;
    rope_kernel<<<lmc_blocks(total, 256), 256, 0, lmc_cuda_stream()>>>(a, total);
    LMC_CU_RETURN_LAUNCH();
}

/* --- rope_qk: q and k, each row normed (or not) and rotated, one block a row --- */

struct rope_qk_args {
    rope_args r[2]; /* q, k */
    norm_args n[2];
    int64_t rows0;  /* rows of q: blocks past them do k's */
    bool norm;
};

/* The row goes through shared memory (f32, as the parts store it between
 * the two ops); the norm is rms_norm's own code on the same thread count. */
__global__ void rope_qk_kernel(rope_qk_args a) {
    extern __shared__ float y[]; /* [D] */
    __shared__ float red[32];
    const int which = blockIdx.x >= a.rows0;
    const int64_t row = which ? blockIdx.x - a.rows0 : blockIdx.x;
    const rope_args &r = a.r[which];
    const norm_args &n = a.n[which];
    const int nd = r.x.ndim;
    const int64_t D = r.x.shape[nd - 1], sx = r.x.strides[nd - 1], so = r.out.strides[nd - 1];
    const int64_t xo = row_offset(r.x, row), oo = row_offset(r.out, row);
    float v[NORM_UNROLL];
    const float scale = a.norm ? rms_row_scale<LMC_CU_F32, false>(n, row, red, v) : 1.0f;
    const int64_t step = (int64_t)blockDim.x * NORM_UNROLL;
    for (int64_t d0 = threadIdx.x; d0 < D; d0 += step) {
        if (!a.norm || D > step) load_unrolled<LMC_CU_F32>(n, xo, sx, D, d0, v);
#pragma unroll
        for (int u = 0; u < NORM_UNROLL; u++) {
            int64_t d = d0 + u * (int64_t)blockDim.x;
            if (d < D) y[d] = a.norm ? v[u] * scale * norm_gain(n, d) : v[u];
        }
    }
    __syncthreads();
    for (int64_t j = threadIdx.x; j < r.per_row; j += blockDim.x) {
        if (j >= r.half) { /* features past dims are copied */
            int64_t d = r.dims + (j - r.half);
            ((float *)r.out.ptr)[oo + d * so] = y[d];
            continue;
        }
        float c, s;
        int64_t i0, i1;
        rope_pair(r, row, nd, j, &c, &s, &i0, &i1);
        float x0 = y[i0], x1 = y[i1];
        ((float *)r.out.ptr)[oo + i0 * so] = x0 * c - x1 * s;
        ((float *)r.out.ptr)[oo + i1 * so] = x1 * c + x0 * s;
    }
}

extern "C" int lmc_cu_rope_qk(const lmc_cuda_view out[2], const lmc_cuda_view x[2], bool norm, const lmc_cuda_view *w[2],
                              float eps, bool one_plus_weight, int dims, bool traditional, float scale,
                              const lmc_cuda_view *inv_freqs, const lmc_cuda_view *positions) {
    rope_qk_args a = {};
    int64_t D = x[0].shape[x[0].ndim - 1], rows = 0;
    for (int i = 0; i < 2; i++) {
        if (x[i].ndim < 2 || x[i].dtype != LMC_CU_F32 || out[i].dtype != LMC_CU_F32 || x[i].shape[x[i].ndim - 1] != D)
            return (int)cudaErrorInvalidValue;
        a.r[i] = make_rope_args(&out[i], &x[i], dims, traditional, scale, inv_freqs, positions);
        a.n[i] = make_norm_args(&out[i], &x[i], w[i], NULL, eps, one_plus_weight);
        rows += view_rows(&x[i]);
    }
    a.rows0 = view_rows(&x[0]);
    a.norm = norm;
    if (rows == 0 || D == 0) return 0;
    if (rows > INT32_MAX) return (int)cudaErrorInvalidConfiguration;
    rope_qk_kernel<<<(unsigned)rows, norm_threads(D), (size_t)D * sizeof(float), lmc_cuda_stream()>>>(a);
    LMC_CU_RETURN_LAUNCH();
}

/* --- sdpa: one warp per (query heads sharing a kv head, query position, key split)
 *
 * Lane l holds q[g][d] and the output accumulators acc[g][e] of the warp's
 * GQ query heads for d, e = l + 32u (u < U). The heads that share a kv
 * head (GQA) share the warp, so each key and value row is read once for
 * all of them instead of once per head. Keys are taken KB at a time so
 * their loads are in flight together; the GQ*KB partial dot products are
 * reduced across the warp with interleaved shuffles, and every lane then
 * runs the same online softmax update. */

struct sdpa_args {
    lmc_cuda_view q, k, v, out, mask;
    bool has_mask, mask_bool, causal;
    float scale, softcap;
    int64_t window;
    int64_t B, Hq, Tq, Hkv, Tk, D, Dv, group;
    int64_t kesz, vesz; /* bytes per element of k, v */
    int64_t nsub;       /* warps' head groups per kv head: ceil(group / GQ) */
    int splits;
    float *part; /* splits > 1: [B*Hq*Tq query rows][splits][Dv + 2]: acc[Dv], max, sum */
};

/* The keys [lo, hi) that query row i may see at all (causal and window limits). */
__device__ __forceinline__ void sdpa_key_range(const sdpa_args &a, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t qpos = a.Tk - a.Tq + i;
    int64_t l = 0, h = a.Tk;
    if (a.window > 0 && qpos - a.window + 1 > l) l = qpos - a.window + 1;
    if (a.causal && qpos + 1 < h) h = qpos + 1;
    *lo = l;
    *hi = h > l ? h : l;
}

template <int U, int KB, int GQ, int DT, bool UNIT>
__global__ void __launch_bounds__(128, 1) sdpa_kernel(sdpa_args a) {
    const int lane = threadIdx.x & 31;
    const int64_t w = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (w >= a.B * a.Hkv * a.nsub * a.Tq * a.splits) return; /* whole warps only */
    const int split = (int)(w % a.splits);
    int64_t t = w / a.splits;
    const int64_t i = t % a.Tq;
    t /= a.Tq;
    const int64_t sub = t % a.nsub;
    t /= a.nsub;
    const int64_t hk = t % a.Hkv, b = t / a.Hkv;
    const int64_t h0 = hk * a.group + sub * GQ; /* first query head of the warp */
    const int ng = (int)(a.group - sub * GQ < GQ ? a.group - sub * GQ : GQ);

    int64_t lo, hi;
    sdpa_key_range(a, i, &lo, &hi);
    int64_t chunk = (hi - lo + a.splits - 1) / a.splits;
    int64_t j0 = lo + split * chunk, j1 = j0 + chunk < hi ? j0 + chunk : hi;

    /* Byte pointers of this lane's first element in key row 0 of k and v;
     * with unit last-dim strides the per-u offsets are compile-time constants. */
    const int64_t ks = UNIT ? 1 : a.k.strides[3], vs = UNIT ? 1 : a.v.strides[3];
    const char *kp = (const char *)a.k.ptr + (b * a.k.strides[0] + hk * a.k.strides[1] + lane * ks) * a.kesz;
    const char *vp = (const char *)a.v.ptr + (b * a.v.strides[0] + hk * a.v.strides[1] + lane * vs) * a.vesz;
    const int64_t ktb = a.k.strides[2] * a.kesz, vtb = a.v.strides[2] * a.vesz;
    const int64_t mt = a.has_mask ? a.mask.strides[3] : 0;

    float q[GQ][U], acc[GQ][U], m[GQ], l[GQ];
#pragma unroll
    for (int g = 0; g < GQ; g++) {
        const int64_t qo = b * a.q.strides[0] + (h0 + g) * a.q.strides[1] + i * a.q.strides[2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int64_t d = lane + 32 * u;
            q[g][u] = g < ng && d < a.D ? lmc_ld(a.q.ptr, a.q.dtype, qo + d * a.q.strides[3]) : 0.0f;
            acc[g][u] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }

    for (int64_t j = j0; j < j1; j += KB) {
        float s[GQ][KB], vv[KB][U];
#pragma unroll
        for (int c = 0; c < KB; c++) {
            int64_t jj = j + c;
            bool in = jj < j1;
            const char *kr = kp + jj * ktb, *vr = vp + jj * vtb;
            float kv[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int d = lane + 32 * u;
                kv[u] = in && d < a.D ? ld_as<DT>(kr, a.k.dtype, 32 * u * ks) : 0.0f;
                vv[c][u] = in && d < a.Dv ? ld_as<DT>(vr, a.v.dtype, 32 * u * vs) : 0.0f;
            }
#pragma unroll
            for (int g = 0; g < GQ; g++) {
                float dot = 0.0f;
#pragma unroll
                for (int u = 0; u < U; u++) dot = fmaf(q[g][u], kv[u], dot);
                s[g][c] = dot;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int g = 0; g < GQ; g++)
#pragma unroll
                for (int c = 0; c < KB; c++) s[g][c] += __shfl_xor_sync(0xffffffffu, s[g][c], o);

#pragma unroll
        for (int g = 0; g < GQ; g++) {
            if (g >= ng) break;
            const int64_t mo = a.has_mask ? b * a.mask.strides[0] + (h0 + g) * a.mask.strides[1] + i * a.mask.strides[2] : 0;
            float mnew = m[g];
#pragma unroll
            for (int c = 0; c < KB; c++) {
                int64_t jj = j + c;
                float sc = s[g][c] * a.scale;
                if (a.softcap > 0.0f) sc = a.softcap * tanhf(sc / a.softcap);
                bool vis = jj < j1;
                if (vis && a.has_mask) {
                    float mv = lmc_ld(a.mask.ptr, a.mask.dtype, mo + jj * mt);
                    if (a.mask_bool) vis = mv != 0.0f;
                    else sc += mv;
                }
                /* a score of -inf weighs nothing (exp(-inf - max) = 0 in the reference) */
                s[g][c] = vis ? sc : -INFINITY;
                mnew = fmaxf(mnew, s[g][c]);
            }
            if (mnew == -INFINITY) continue; /* nothing visible yet */
            float corr = expf(m[g] - mnew); /* m = -inf: 0, and acc, l are 0 anyway */
            l[g] *= corr;
#pragma unroll
            for (int u = 0; u < U; u++) acc[g][u] *= corr;
#pragma unroll
            for (int c = 0; c < KB; c++) {
                float p = expf(s[g][c] - mnew);
                l[g] += p;
#pragma unroll
                for (int u = 0; u < U; u++) acc[g][u] = fmaf(p, vv[c][u], acc[g][u]);
            }
            m[g] = mnew;
        }
    }

#pragma unroll
    for (int g = 0; g < GQ; g++) {
        if (g >= ng) break;
        const int64_t h = h0 + g;
        if (a.splits == 1) {
            const int64_t oo = b * a.out.strides[0] + h * a.out.strides[1] + i * a.out.strides[2], os = a.out.strides[3];
            float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
#pragma unroll
            for (int u = 0; u < U; u++) {
                int64_t e = lane + 32 * u;
                if (e < a.Dv) st_f32(a.out.ptr, a.out.dtype, oo + e * os, l[g] > 0.0f ? acc[g][u] * inv : 0.0f);
            }
        } else {
            const int64_t row = (b * a.Hq + h) * a.Tq + i;
            float *p = a.part + (row * a.splits + split) * (a.Dv + 2);
#pragma unroll
            for (int u = 0; u < U; u++) {
                int64_t e = lane + 32 * u;
                if (e < a.Dv) p[e] = acc[g][u];
            }
            if (lane == 0) {
                p[a.Dv] = m[g];
                p[a.Dv + 1] = l[g];
            }
        }
    }
}

/* Merges the splits of each query row: one block per row. Each split's
 * weight exp(m_s - max) is computed once into shared memory; then every
 * thread sums its output features over the splits with independent loads
 * (a chain of dependent loads per feature would leave it latency-bound). */
enum { SDPA_MAX_SPLITS = 256 };

__global__ void __launch_bounds__(128) sdpa_combine_kernel(sdpa_args a) {
    __shared__ float wsplit[SDPA_MAX_SPLITS], red[32];
    const int64_t row = blockIdx.x;
    const int64_t i = row % a.Tq, h = (row / a.Tq) % a.Hq, b = row / (a.Tq * a.Hq);
    const int64_t stride = a.Dv + 2;
    const float *p = a.part + row * a.splits * stride;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < a.splits; s += blockDim.x) mx = fmaxf(mx, p[s * stride + a.Dv]);
    mx = warp_max(mx);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) mx = fmaxf(mx, red[w]);
    float l = 0.0f;
    for (int s = threadIdx.x; s < a.splits; s += blockDim.x) {
        float ms = p[s * stride + a.Dv];
        float wgt = mx > -INFINITY && ms > -INFINITY ? expf(ms - mx) : 0.0f;
        wsplit[s] = wgt;
        l += p[s * stride + a.Dv + 1] * wgt;
    }
    __syncthreads(); /* red is reused below */
    l = block_sum(l, red);
    const int64_t oo = b * a.out.strides[0] + h * a.out.strides[1] + i * a.out.strides[2], os = a.out.strides[3];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t e = threadIdx.x; e < a.Dv; e += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int s = 0; s < a.splits; s++) acc = fmaf(p[s * stride + e], wsplit[s], acc);
        st_f32(a.out.ptr, a.out.dtype, oo + e * os, l > 0.0f ? acc * inv : 0.0f);
    }
}

/* Typed loads and constant offsets for the usual case (k, v of one float
 * dtype, unit last-dim strides); the generic kernel, one head per warp, for
 * the rest. GQ: query heads per warp. */
template <int U, int KB, int GQ> static void sdpa_launch_dt(const sdpa_args &a, unsigned blocks, int dt) {
    cudaStream_t st = lmc_cuda_stream();
    switch (dt) {
    case LMC_CU_F32: sdpa_kernel<U, KB, GQ, LMC_CU_F32, true><<<blocks, 128, 0, st>>>(a); break;
    case LMC_CU_BF16: sdpa_kernel<U, KB, GQ, LMC_CU_BF16, true><<<blocks, 128, 0, st>>>(a); break;
    default: sdpa_kernel<U, KB, GQ, LMC_CU_F16, true><<<blocks, 128, 0, st>>>(a); break;
    }
}

/* Keys per step: as many as the registers allow (q, acc: 2*GQ*U; keys in flight: 2*KB*U). */
template <int U> static void sdpa_launch_gq(const sdpa_args &a, unsigned blocks, int dt, int gq) {
    switch (gq) {
    case 1: sdpa_launch_dt<U, (U <= 4 ? 4 : 1), 1>(a, blocks, dt); break;
    case 2: sdpa_launch_dt<U, (U <= 4 ? 4 : 1), 2>(a, blocks, dt); break;
    case 4: sdpa_launch_dt<U, (U <= 2 ? 4 : U <= 4 ? 2 : 1), 4>(a, blocks, dt); break;
    default: sdpa_launch_dt<U, (U <= 2 ? 2 : 1), 8>(a, blocks, dt); break;
    }
}

extern "C" int lmc_cu_sdpa(const lmc_cuda_view *out, const lmc_cuda_view *q, const lmc_cuda_view *k,
                           const lmc_cuda_view *v, float scale, bool causal, int64_t window, const lmc_cuda_view *mask,
                           float softcap) {
    sdpa_args a;
    a.q = *q;
    a.k = *k;
    a.v = *v;
    a.out = *out;
    a.has_mask = mask != NULL;
    if (mask) a.mask = *mask;
    else a.mask = *q; /* unused */
    a.mask_bool = mask && mask->dtype == LMC_CU_BOOL;
    a.causal = causal;
    a.scale = scale;
    a.softcap = softcap;
    a.window = window;
    a.B = q->shape[0];
    a.Hq = q->shape[1];
    a.Tq = q->shape[2];
    a.D = q->shape[3];
    a.Hkv = k->shape[1];
    a.Tk = k->shape[2];
    a.Dv = v->shape[3];
    a.kesz = lmc_cu_dtype_size(k->dtype);
    a.vesz = lmc_cu_dtype_size(v->dtype);
    if (a.Hkv <= 0 || a.Hq % a.Hkv != 0) return (int)cudaErrorInvalidValue;
    a.group = a.Hq / a.Hkv;
    int64_t rows = a.B * a.Hq * a.Tq;
    if (rows == 0 || a.Dv == 0) return 0;
    int64_t dmax = a.D > a.Dv ? a.D : a.Dv;
    if (dmax > 512) return (int)cudaErrorNotSupported;
    int dt = k->dtype == v->dtype ? k->dtype : -1;
    if (dt != LMC_CU_F32 && dt != LMC_CU_BF16 && dt != LMC_CU_F16) dt = -1;
    bool fast = dt >= 0 && k->strides[3] == 1 && v->strides[3] == 1;
    /* query heads per warp: the whole GQA group up to 8 (2 for the widest heads, for registers) */
    int gq = 1;
    if (fast)
        while (gq < a.group && gq < (dmax > 256 ? 2 : 8)) gq *= 2;
    a.nsub = (a.group + gq - 1) / gq;
    int64_t wrows = a.B * a.Hkv * a.nsub * a.Tq; /* warps per key split */

    /* Enough warps to cover the GPU a few times over: split the keys of a
     * row when there are few rows, but give each split at least 64 keys. */
    int64_t splits = 1;
    if (wrows < 2048) {
        int64_t want = (2048 + wrows - 1) / wrows, most = (a.Tk + 63) / 64;
        splits = want < most ? want : most;
        if (splits > SDPA_MAX_SPLITS) splits = SDPA_MAX_SPLITS;
        if (splits < 1) splits = 1;
    }
    a.splits = (int)splits;
    a.part = NULL;
    if (splits > 1) {
        a.part = (float *)lmc_cuda_scratch((size_t)(rows * splits * (a.Dv + 2)) * sizeof(float));
        if (!a.part) return (int)cudaErrorMemoryAllocation;
    }
    int64_t warps = wrows * splits, blocks = (warps + 3) / 4;
    if (blocks > INT32_MAX) return (int)cudaErrorInvalidConfiguration;
    cudaStream_t st = lmc_cuda_stream();
    if (!fast) {
        if (dmax <= 128) sdpa_kernel<4, 1, 1, -1, false><<<(unsigned)blocks, 128, 0, st>>>(a);
        else if (dmax <= 256) sdpa_kernel<8, 1, 1, -1, false><<<(unsigned)blocks, 128, 0, st>>>(a);
        else sdpa_kernel<16, 1, 1, -1, false><<<(unsigned)blocks, 128, 0, st>>>(a);
    } else if (dmax <= 64) sdpa_launch_gq<2>(a, (unsigned)blocks, dt, gq);
    else if (dmax <= 128) sdpa_launch_gq<4>(a, (unsigned)blocks, dt, gq);
    else if (dmax <= 256) sdpa_launch_gq<8>(a, (unsigned)blocks, dt, gq);
    else if (gq == 1) sdpa_launch_dt<16, 1, 1>(a, (unsigned)blocks, dt);
    else sdpa_launch_dt<16, 1, 2>(a, (unsigned)blocks, dt);
    if (splits > 1) {
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return (int)e;
        sdpa_combine_kernel<<<(unsigned)rows, 128, 0, st>>>(a);
    }
    LMC_CU_RETURN_LAUNCH();
}
