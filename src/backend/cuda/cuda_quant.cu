/* CUDA kernels of MLX affine quantisation: quantized_matmul and dequantize
 * (layout and arithmetic: src/backend/cpu/quant.h and quant_scalar.c).
 *
 * How they are organised, and why:
 * - Decode (up to 32 rows of x, taken in passes of at most 8) is bound by
 *   reading the packed weights, read once per pass: each warp owns R weight rows and
 *   each lane reads 16 bytes of every row per step (one coalesced 512-byte
 *   line per row and warp), so R loads are in flight per lane. x is staged
 *   in shared memory one K-tile at a time, laid out so that the floats a
 *   lane needs for its 16 bytes are consecutive float4s across the lanes
 *   (no bank conflicts), and each x value read is used for all R rows.
 *   Packed integers become floats by OR-ing them into the mantissa of 2^23
 *   (exact, no integer-to-float conversions, which run at a quarter of the
 *   FMA rate and would make the kernel compute-bound). Per 16 bytes a lane
 *   computes s*sum(q*x) + b*sum(x) (the same identity as the CPU kernels);
 *   partial sums are reduced across the warp with shuffles at the end.
 *   This kernel serves 4 and 8 bits (16 bytes never straddle a group);
 *   2, 3, 5 and 6 bits, and weights not 16-byte aligned, go to a simple
 *   warp-per-row kernel that unpacks the bit stream element by element.
 * - Prefill (more rows) is bound by arithmetic: weights are dequantised in
 *   blocks of rows to f32 in scratch and multiplied by cuBLAS SGEMM (f32
 *   math), so it runs at the library's speed without a hand-written tiled
 *   GEMM. Dequantising once per block of rows costs far less than the GEMM.
 * - dequantize is one thread per element: it is not on a hot path, and it
 *   rounds like MLX's CPU fallback (q*s rounded to out's dtype, then + b). */
#include "backend/cuda/cuda_common.cuh"

/* --- helpers ------------------------------------------------------------------ */


/* q of element i of a packed little-endian bit stream (as the CPU's unpack). */
__device__ __forceinline__ uint32_t unpack(const uint8_t *row, int64_t i, int bits) {
    int64_t bit = i * bits;
    uint32_t two = row[bit >> 3];
    if ((bit & 7) + bits > 8) two |= (uint32_t)row[(bit >> 3) + 1] << 8;
    return (two >> (bit & 7)) & ((1u << bits) - 1);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static int log2_exact(int v) {
    int s = 0;
    while ((1 << s) < v) s++;
    return (1 << s) == v ? s : -1;
}

struct qmm_args {
    const void *wq;      /* [N, row_bytes] */
    int64_t row_bytes;   /* K * bits / 8 */
    const void *scales, *biases;
    int sdt;
    const void *x;       /* rows m0.. of x, [M, K] contiguous */
    int xdt;
    void *out;           /* rows m0.. of out, [M, N] contiguous */
    int odt;
    int64_t M, N, K, G;  /* M: rows in this pass; G = K / group_size */
    int group_size, gshift, bits;
};

/* --- decode: 4 and 8 bits, 16-byte loads --------------------------------------- */

enum {
    QMV_WARPS = 8,           /* warps per block */
    QMV_SMEM_FLOATS = 8192,  /* x tile: M * KT floats, 32 KiB */
};

/* Products that share x (q, k and v; gate and up) in one launch: job j owns
 * blocks [first[j], first[j+1]). NJ is 1 for a lone product, so its launch
 * carries one job's arguments. */
template <int NJ> struct qmv_jobs {
    qmm_args a[NJ];
    unsigned first[NJ + 1];
    int n;
};

/* The 128/BITS integers packed in 16 bytes, as exact floats, into y. */
template <int BITS> __device__ __forceinline__ void unpack16(const uint4 w, float *y) {
    const uint32_t wd[4] = {w.x, w.y, w.z, w.w};
    if constexpr (BITS == 4) {
        /* Nibble p of a word sits at bits 4p; (word & 0xF << 4p) | 2^23's bits
         * is the float 2^23 + q*16^p exactly for p <= 4, and
         * fma(that, 16^-p, -2^23*16^-p) = q exactly. Nibbles 5..7 are taken as
         * 2..4 of the word shifted right by 12. */
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const uint32_t lo = wd[t], hi = wd[t] >> 12;
#pragma unroll
            for (int p = 0; p < 8; p++) {
                const uint32_t src = p < 5 ? lo : hi;
                const int pp = p < 5 ? p : p - 3;
                const float f = __uint_as_float((src & (0xFu << (4 * pp))) | 0x4B000000u);
                const float inv = 1.0f / (float)(1u << (4 * pp));
                y[8 * t + p] = fmaf(f, inv, -8388608.0f * inv);
            }
        }
    } else {
        /* byte p of a word placed under 2^23's exponent with one byte permute */
#pragma unroll
        for (int t = 0; t < 4; t++)
#pragma unroll
            for (int p = 0; p < 4; p++)
                y[4 * t + p] = __uint_as_float(__byte_perm(wd[t], 0x4B000000u, 0x7440u + p)) - 8388608.0f;
    }
}

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

/* Copies x[:, k_tile .. k_tile + KT) into xs in the lanes' order (see
 * qmv_kernel). The reads are coalesced and STAGE_UNROLL per thread are in
 * flight at once: staged one by one, the loads' latency made the staging
 * cost more than streaming the weights. */
enum { STAGE_UNROLL = 8 };

template <int EPL, int M, typename XT>
__device__ __forceinline__ void stage_x(const qmm_args &a, float *xs, int64_t k_tile, int KT) {
    constexpr int SPAN = 32 * EPL;
    const XT *x = (const XT *)a.x;
#pragma unroll
    for (int m = 0; m < M; m++) {
        const XT *xm = x + (int64_t)m * a.K + k_tile;
        const int64_t kmax = a.K - k_tile; /* elements left in the row */
        for (int kk0 = threadIdx.x; kk0 < KT; kk0 += blockDim.x * STAGE_UNROLL) {
            float v[STAGE_UNROLL];
#pragma unroll
            for (int u = 0; u < STAGE_UNROLL; u++) {
                const int kk = kk0 + u * blockDim.x;
                v[u] = kk < KT && kk < kmax ? to_f32(xm[kk]) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < STAGE_UNROLL; u++) {
                const int kk = kk0 + u * blockDim.x;
                if (kk >= KT) break;
                const int s = kk / SPAN, r = kk % SPAN, l = r / EPL, q = r % EPL;
                xs[m * KT + ((s * (EPL / 4) + q / 4) * 32 + l) * 4 + (q & 3)] = v[u];
            }
        }
    }
}

/* Block: QMV_WARPS warps, warp w owns weight rows n0 + w*R .. +R (R = 1,
 * 4 or 16 by the number of rows, see QMV_FEW_BLOCKS; a row's sums are the
 * same for any R). x rows
 * [0, M) are staged per K-tile in xs as float4s: the float4 f (of EPL/4) that
 * lane l needs at step s of the tile is xs[m][(s * EPL/4 + f) * 32 + l]. */
/* With one x row two blocks fit an SM (registers capped at 128 a thread): more loads in flight, which is
 * what the lm_head's long walk needs (112 -> 95 us for Qwen3's on an H200); more x rows keep the registers. */
template <int BITS, int M, int SDT, int NJ, int R>
__global__ void __launch_bounds__(QMV_WARPS * 32, M == 1 ? 2 : 1) qmv_kernel(const qmv_jobs<NJ> jobs, int KT) {
    constexpr int EPL = 128 / BITS; /* elements per 16 bytes */
    constexpr int SPAN = 32 * EPL;  /* elements per warp step */
    __shared__ float4 xs[QMV_SMEM_FLOATS / 4];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    qmm_args a;
    unsigned block;
    lmc_block_job(jobs.a, jobs.first, jobs.n, a, block);
    const int64_t words16 = a.row_bytes / 16;
    const uint4 *wq = (const uint4 *)a.wq;
    /* A lone product whose x fits one tile (the lm_head's) runs on fewer
     * blocks than it has tiles of rows: each block takes tile after tile and
     * stages x once. Otherwise a block has one tile. */
    const unsigned tiles = NJ == 1 ? jobs.first[1] : block + 1, stride = NJ == 1 ? gridDim.x : 1;
    bool staged = false;
    for (unsigned tile = block; tile < tiles; tile += stride) {
        const int64_t nbase = ((int64_t)tile * QMV_WARPS + warp) * R;

        float acc[M][R];
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < R; r++) acc[m][r] = 0.0f;

        for (int64_t k_tile = 0; k_tile < a.K; k_tile += KT) {
            if (!staged || KT < a.K) {
                __syncthreads(); /* the previous tile is no longer read */
                switch (a.xdt) {
                case LMC_CU_F32: stage_x<EPL, M, float>(a, (float *)xs, k_tile, KT); break;
                case LMC_CU_BF16: stage_x<EPL, M, __nv_bfloat16>(a, (float *)xs, k_tile, KT); break;
                default: stage_x<EPL, M, __half>(a, (float *)xs, k_tile, KT); break;
                }
                __syncthreads();
                staged = true;
            }
            const int steps = KT / SPAN;
            for (int s = 0; s < steps; s++) {
                const int64_t k0 = k_tile + (int64_t)s * SPAN + lane * EPL;
                if (k0 >= a.K) break; /* K is a multiple of EPL: a lane's 16 bytes are all in or all out */
                const int64_t g = k0 >> a.gshift;
                uint4 w[R];
                float sc[R], bi[R];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const int64_t n = nbase + r;
                    if (n < a.N) {
                        w[r] = __ldg(wq + n * words16 + k0 / EPL);
                        sc[r] = ld_as<SDT>(a.scales, a.sdt, n * a.G + g);
                        bi[r] = ld_as<SDT>(a.biases, a.sdt, n * a.G + g);
                    } else {
                        w[r] = make_uint4(0, 0, 0, 0);
                        sc[r] = bi[r] = 0.0f;
                    }
                }
#pragma unroll
                for (int m = 0; m < M; m++) {
                    float xv[EPL];
                    const float4 *xm = xs + m * (KT / 4) + (s * (EPL / 4)) * 32 + lane;
                    float sx = 0.0f;
#pragma unroll
                    for (int f = 0; f < EPL / 4; f++) {
                        const float4 t = xm[f * 32];
                        xv[4 * f] = t.x;
                        xv[4 * f + 1] = t.y;
                        xv[4 * f + 2] = t.z;
                        xv[4 * f + 3] = t.w;
                        sx += (t.x + t.y) + (t.z + t.w);
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        float y[EPL];
                        unpack16<BITS>(w[r], y);
                        float sq = 0.0f;
#pragma unroll
                        for (int e = 0; e < EPL; e++) sq = fmaf(y[e], xv[e], sq);
                        acc[m][r] = fmaf(sc[r], sq, fmaf(bi[r], sx, acc[m][r]));
                    }
                }
            }
        }
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float v = warp_sum(acc[m][r]);
                const int64_t n = nbase + r;
                if (lane == 0 && n < a.N) st_f32(a.out, a.odt, (int64_t)m * a.N + n, v);
            }
    }
}

/* Blocks of a lone product whose x fits one tile: enough for every SM a few times over. */
static unsigned qmv_grid_cap() {
    static unsigned cap = 0;
    if (!cap) {
        int sms = 0;
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms < 1) sms = 108;
        cap = (unsigned)sms * 4;
    }
    return cap;
}

template <int BITS, int M, int NJ, int R = 4> static void qmv_launch_sdt(const qmv_jobs<NJ> &j, int KT) {
    cudaStream_t st = lmc_cuda_stream();
    unsigned blocks = j.first[j.n];
    if (NJ == 1 && KT >= j.a[0].K && blocks > qmv_grid_cap()) blocks = qmv_grid_cap();
    switch (j.a[0].sdt) {
    case LMC_CU_F32: qmv_kernel<BITS, M, LMC_CU_F32, NJ, R><<<blocks, QMV_WARPS * 32, 0, st>>>(j, KT); break;
    case LMC_CU_BF16: qmv_kernel<BITS, M, LMC_CU_BF16, NJ, R><<<blocks, QMV_WARPS * 32, 0, st>>>(j, KT); break;
    default: qmv_kernel<BITS, M, LMC_CU_F16, NJ, R><<<blocks, QMV_WARPS * 32, 0, st>>>(j, KT); break;
    }
}

/* With one x row, below this many blocks of four rows a warp a warp takes
 * one row (a layer's products: more blocks in flight), and from
 * QMV_MANY_BLOCKS on sixteen (the lm_head: more loads in flight a warp). */
enum { QMV_FEW_BLOCKS = 512, QMV_MANY_BLOCKS = 2048 };

/* One launch for every job of j (the same x, bits and scale dtype). */
template <int BITS, int NJ> static void qmv_launch_m(qmv_jobs<NJ> &j) {
    constexpr int SPAN = 32 * (128 / BITS);
    const qmm_args &a = j.a[0];
    /* the x tile: as many warp steps as fit the shared buffer, no more than K needs */
    int64_t steps_fit = QMV_SMEM_FLOATS / (a.M * SPAN), steps_k = (a.K + SPAN - 1) / SPAN;
    int KT = (int)((steps_fit < steps_k ? steps_fit : steps_k) * SPAN);
    int64_t rows = 0;
    for (int i = 0; i < j.n; i++) rows += j.a[i].N;
    const int64_t blocks4 = rows / (QMV_WARPS * 4);
    const int R = a.M != 1 ? 4 : blocks4 < QMV_FEW_BLOCKS ? 1 : blocks4 >= QMV_MANY_BLOCKS ? 16 : 4;
    j.first[0] = 0;
    for (int i = 0; i < j.n; i++) j.first[i + 1] = j.first[i] + lmc_blocks(j.a[i].N, QMV_WARPS * R);
    switch (a.M) {
    case 1:
        if (R == 1) qmv_launch_sdt<BITS, 1, NJ, 1>(j, KT);
        else if (R == 16) qmv_launch_sdt<BITS, 1, NJ, 16>(j, KT);
        else qmv_launch_sdt<BITS, 1, NJ, 4>(j, KT);
        break;
    case 2: qmv_launch_sdt<BITS, 2>(j, KT); break;
    case 3: qmv_launch_sdt<BITS, 3>(j, KT); break;
    case 4: qmv_launch_sdt<BITS, 4>(j, KT); break;
    case 5: qmv_launch_sdt<BITS, 5>(j, KT); break;
    case 6: qmv_launch_sdt<BITS, 6>(j, KT); break;
    case 7: qmv_launch_sdt<BITS, 7>(j, KT); break;
    default: qmv_launch_sdt<BITS, 8>(j, KT); break;
    }
}

/* --- decode: any width, one warp per weight row --------------------------------- */

/* Lane l takes elements l, l+32, ... of the row (coalesced reads of x and of
 * the packed bytes); up to 8 x rows at once. */
__global__ void __launch_bounds__(128) qmv_generic_kernel(qmm_args a) {
    const int lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= a.N) return;
    const uint8_t *row = (const uint8_t *)a.wq + n * a.row_bytes;
    float acc[8];
#pragma unroll
    for (int m = 0; m < 8; m++) acc[m] = 0.0f;
    for (int64_t k = lane; k < a.K; k += 32) {
        const int64_t g = n * a.G + (k >> a.gshift);
        const float w = __fadd_rn(__fmul_rn(lmc_ld(a.scales, a.sdt, g), (float)unpack(row, k, a.bits)),
                                  lmc_ld(a.biases, a.sdt, g));
#pragma unroll
        for (int m = 0; m < 8; m++)
            if (m < a.M) acc[m] = fmaf(w, lmc_ld(a.x, a.xdt, m * a.K + k), acc[m]);
    }
#pragma unroll
    for (int m = 0; m < 8; m++) {
        if (m >= a.M) break;
        const float v = warp_sum(acc[m]);
        if (lane == 0) st_f32(a.out, a.odt, m * a.N + n, v);
    }
}

/* Whether the 16-byte kernel takes job a. */
static bool qmv_fast(const qmm_args &a) {
    return (a.bits == 4 || a.bits == 8) && ((uintptr_t)a.wq & 15) == 0 && a.row_bytes % 16 == 0 &&
           a.K % (128 / a.bits) == 0 && (a.sdt == LMC_CU_F32 || a.sdt == LMC_CU_BF16 || a.sdt == LMC_CU_F16) &&
           (a.xdt == LMC_CU_F32 || a.xdt == LMC_CU_BF16 || a.xdt == LMC_CU_F16);
}

/* Runs the decode kernels for jobs a[0..n) (all over the same x) in passes
 * of at most 8 rows of x: one launch a pass for all of them when the
 * 16-byte kernel takes each with the same bits and scale dtype, else one
 * launch per job. */
static int qmv_run(const qmm_args *a, int n, int64_t M) {
    bool together = n > 1;
    for (int i = 0; i < n; i++)
        together = together && qmv_fast(a[i]) && a[i].bits == a[0].bits && a[i].sdt == a[0].sdt;
    const int64_t xrow = a[0].K * lmc_cu_dtype_size(a[0].xdt);
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        qmv_jobs<LMC_CUDA_QMM_JOBS> many;
        many.n = n;
        for (int i = 0; i < n; i++) {
            qmm_args p = a[i];
            p.M = M - m0 < 8 ? M - m0 : 8;
            p.x = (const char *)a[i].x + m0 * xrow;
            p.out = (char *)a[i].out + m0 * a[i].N * lmc_cu_dtype_size(a[i].odt);
            if (together) {
                many.a[i] = p;
                continue;
            }
            if (qmv_fast(p)) {
                qmv_jobs<1> one;
                one.a[0] = p;
                one.n = 1;
                if (p.bits == 4) qmv_launch_m<4>(one);
                else qmv_launch_m<8>(one);
            } else {
                qmv_generic_kernel<<<lmc_blocks(p.N, 4), 128, 0, lmc_cuda_stream()>>>(p);
            }
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) return (int)e;
        }
        if (together) {
            if (a[0].bits == 4) qmv_launch_m<4>(many);
            else qmv_launch_m<8>(many);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) return (int)e;
        }
    }
    return 0;
}

/* --- prefill: dequantise blocks of W to f32, cuBLAS SGEMM ----------------------- */

/* w[r, k] = s*q + b in f32 for weight rows n0 .. n0 + rows. */
__global__ void dequant_rows_f32_kernel(qmm_args a, int64_t n0, int64_t rows, float *w) {
    const int64_t total = rows * a.K;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / a.K, k = i % a.K, n = n0 + r;
        const int64_t g = n * a.G + (k >> a.gshift);
        const uint32_t q = unpack((const uint8_t *)a.wq + n * a.row_bytes, k, a.bits);
        w[i] = __fadd_rn(__fmul_rn(lmc_ld(a.scales, a.sdt, g), (float)q), lmc_ld(a.biases, a.sdt, g));
    }
}

/* Converts n elements between contiguous arrays (x to f32 scratch, f32 results to out). */
__global__ void convert_kernel(void *dst, int ddt, const void *src, int sdt, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st_f32(dst, ddt, i, lmc_ld(src, sdt, i));
}

static int qmm_gemm(const qmm_args &a, int64_t M) {
    cublasHandle_t h = lmc_cuda_cublas();
    if (!h) return qmv_run(&a, 1, M);
    cudaStream_t st = lmc_cuda_stream();
    const size_t budget = (size_t)64 << 20; /* bytes of dequantised weights per block */
    int64_t Nc = (int64_t)(budget / sizeof(float)) / a.K;
    if (Nc < 1) Nc = 1;
    if (Nc > a.N) Nc = a.N;
    /* x (when not f32) and the f32 results (when out is not f32) are staged a block of rows at a time */
    bool conv_x = a.xdt != LMC_CU_F32, conv_out = a.odt != LMC_CU_F32;
    int64_t Mc = M;
    if (conv_x || conv_out) {
        int64_t per_row = (conv_x ? a.K : 0) + (conv_out ? a.N : 0);
        Mc = (int64_t)(((size_t)32 << 20) / sizeof(float)) / per_row;
        if (Mc < 1) Mc = 1;
        if (Mc > M) Mc = M;
    }
    if (Nc > INT32_MAX || Mc > INT32_MAX || a.K > INT32_MAX || a.N > INT32_MAX) return (int)cudaErrorNotSupported;
    size_t wbytes = (size_t)(Nc * a.K) * sizeof(float);
    size_t xbytes = conv_x ? (size_t)(Mc * a.K) * sizeof(float) : 0;
    size_t obytes = conv_out ? (size_t)(Mc * a.N) * sizeof(float) : 0;
    float *wbuf = (float *)lmc_cuda_scratch(wbytes + xbytes + obytes);
    if (!wbuf) return (int)cudaErrorMemoryAllocation;
    float *xbuf = (float *)((char *)wbuf + wbytes), *obuf = (float *)((char *)wbuf + wbytes + xbytes);
    const float one = 1.0f, zero = 0.0f;
    int64_t xrow = a.K * lmc_cu_dtype_size(a.xdt), orow = a.N * lmc_cu_dtype_size(a.odt);
    for (int64_t m0 = 0; m0 < M; m0 += Mc) {
        int64_t mc = M - m0 < Mc ? M - m0 : Mc;
        const void *xm = (const char *)a.x + m0 * xrow;
        void *om = (char *)a.out + m0 * orow;
        const float *xf = (const float *)xm;
        if (conv_x) {
            convert_kernel<<<lmc_blocks(mc * a.K, 256), 256, 0, st>>>(xbuf, LMC_CU_F32, xm, a.xdt, mc * a.K);
            xf = xbuf;
        }
        float *of = conv_out ? obuf : (float *)om;
        for (int64_t n0 = 0; n0 < a.N; n0 += Nc) {
            int64_t nc = a.N - n0 < Nc ? a.N - n0 : Nc;
            dequant_rows_f32_kernel<<<lmc_blocks(nc * a.K, 256), 256, 0, st>>>(a, n0, nc, wbuf);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) return (int)e;
            /* column-major: C (nc x mc, ld N) = W_blockᵀ-as-stored (K x nc)ᵀ · x (K x mc) */
            cublasStatus_t cs = cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nc, (int)mc, (int)a.K, &one, wbuf,
                                            (int)a.K, xf, (int)a.K, &zero, of + n0, (int)a.N);
            if (cs != CUBLAS_STATUS_SUCCESS) return (int)cudaErrorUnknown;
        }
        if (conv_out) convert_kernel<<<lmc_blocks(mc * a.N, 256), 256, 0, st>>>(om, a.odt, obuf, LMC_CU_F32, mc * a.N);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return (int)e;
    }
    return 0;
}

/* Up to this many rows of x the decode kernels (passes of 8 rows, weights
 * read once per pass) beat dequantising all of W to f32 for SGEMM. */
enum { QMM_DECODE_MAX_M = 32 };

extern "C" int lmc_cu_quantized_matmul(const lmc_cuda_view *x, int n, const lmc_cuda_qmm_job *jobs) {
    if (n < 1 || n > LMC_CUDA_QMM_JOBS) return (int)cudaErrorInvalidValue;
    qmm_args a[LMC_CUDA_QMM_JOBS];
    const int64_t M = x->shape[0], K = x->shape[1];
    for (int i = 0; i < n; i++) {
        const lmc_cuda_qmm_job *j = &jobs[i];
        if (j->bits < 2 || j->bits > 8 || j->group_size <= 0) return (int)cudaErrorInvalidValue;
        int gshift = log2_exact(j->group_size);
        if (gshift < 0) return (int)cudaErrorInvalidValue;
        a[i].K = K;
        a[i].N = j->out.shape[1];
        a[i].G = K / j->group_size;
        a[i].group_size = j->group_size;
        a[i].gshift = gshift;
        a[i].bits = j->bits;
        a[i].wq = j->wq.ptr;
        a[i].row_bytes = K * j->bits / 8;
        a[i].scales = j->scales.ptr;
        a[i].biases = j->biases.ptr;
        a[i].sdt = j->scales.dtype;
        a[i].x = x->ptr;
        a[i].xdt = x->dtype;
        a[i].out = j->out.ptr;
        a[i].odt = j->out.dtype;
        a[i].M = M;
    }
    if (M == 0) return 0;
    /* the decode kernels' jobs (those with outputs and weights to read)
     * move to the front of a */
    int nrun = 0;
    for (int i = 0; i < n; i++) {
        if (a[i].N == 0) continue;
        if (K == 0) {
            int e = lmc_cu_fill(&jobs[i].out, 0.0);
            if (e) return e;
            continue;
        }
        if (M > QMM_DECODE_MAX_M) {
            int e = qmm_gemm(a[i], M);
            if (e) return e;
            continue;
        }
        a[nrun++] = a[i];
    }
    return nrun ? qmv_run(a, nrun, M) : 0;
}

/* --- dequantize -------------------------------------------------------------------- */

/* Element i of the whole array: the groups are contiguous, so it is element i
 * of one bit stream, in group i / group_size. */
__global__ void dequantize_kernel(void *out, int odt, const uint8_t *wq, const void *scales, const void *biases,
                                  int sdt, int group_size, int bits, int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t g = i / group_size;
        const float s = lmc_ld(scales, sdt, g), b = lmc_ld(biases, sdt, g);
        float v = __fmul_rn((float)unpack(wq, i, bits), s);
        /* MLX's fallback: multiply, then add, each rounded to out's dtype */
        if (odt == LMC_CU_BF16) v = __bfloat162float(__float2bfloat16_rn(v));
        else if (odt == LMC_CU_F16) v = __half2float(__float2half_rn(v));
        st_f32(out, odt, i, __fadd_rn(v, b));
    }
}

extern "C" int lmc_cu_dequantize(const lmc_cuda_view *out, const lmc_cuda_view *wq, const lmc_cuda_view *scales,
                                 const lmc_cuda_view *biases, int group_size, int bits) {
    if (bits < 2 || bits > 8 || group_size <= 0) return (int)cudaErrorInvalidValue;
    int64_t total = lmc_view_size(out);
    if (total == 0) return 0;
    dequantize_kernel<<<lmc_blocks(total, 256), 256, 0, lmc_cuda_stream()>>>(
        out->ptr, out->dtype, (const uint8_t *)wq->ptr, scales->ptr, biases->ptr, scales->dtype, group_size, bits,
        total);
    LMC_CU_RETURN_LAUNCH();
}
