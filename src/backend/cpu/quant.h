/* CPU kernels for MLX affine quantisation (src/backend/cpu/quant_*.c).
 *
 * Layout (MLX's, fixed by the checkpoints we load): a row of K weights is
 * cut into groups of group_size; group g has a scale s_g and a bias b_g and
 * element k is w = s_g * q_k + b_g with q_k an unsigned `bits`-bit integer.
 * The q of a row form a little-endian bit stream: element k occupies bits
 * [k*bits, (k+1)*bits) of the row's bytes, so for 4 bits u32 word j holds
 * elements 8j..8j+7 with element 8j in its lowest nibble.
 *
 * The matmul kernels use w = s*q + b per group:
 *     sum_k w_k x_k = s_g * sum_k q_k x_k + b_g * sum_k x_k,
 * so the inner loop only multiplies small integers (turned into floats in
 * registers) by x, and the scale and bias are applied once per group. */
#ifndef LMC_BACKEND_CPU_QUANT_H
#define LMC_BACKEND_CPU_QUANT_H

#include "backend/kernels.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

/* Scalar reference kernels: the oracle for the SIMD paths. */
lmc_status lmc_quantize_scalar(lmc_array *wq, lmc_array *scales, lmc_array *biases, const lmc_array *w, int group_size,
                               int bits);
lmc_status lmc_dequantize_scalar(lmc_array *out, const lmc_array *wq, const lmc_array *scales,
                                 const lmc_array *biases, int group_size, int bits);
lmc_status lmc_quantized_matmul_scalar(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits);

/* SIMD quantised matmul for 4 and 8 bits (other widths go to the scalar kernel). */
lmc_status lmc_quantized_matmul_avx2(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                     const lmc_array *scales, const lmc_array *biases, int group_size, int bits);
lmc_status lmc_quantized_matmul_avx512(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits);
/* AMX int8 tiles for many rows of x (prefill, batched decode); fewer rows go to the AVX-512 kernel. */
lmc_status lmc_quantized_matmul_amx(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                    const lmc_array *scales, const lmc_array *biases, int group_size, int bits);

/* Rounds x[k0 .. k0+n) of a row of dtype dt (n a multiple of 16, at most
 * 128: one block of the 4-bit kernels) to 24-bit integers q[0..n) and returns
 * the block's scale (x ≈ scale * q); AVX-512 (quant_avx512.c), shared by the
 * integer kernels so that they all see the same x. */
float lmc_quant_x24_block(const void *x, lmc_dtype dt, int64_t k0, int n, int32_t *q);

/* The same for int8 activations (plan xbits 8): x[k0 .. k0+n) (n a multiple
 * of 16, at most 64: one block) rounded to q in [-127, 127], x ≈ scale * q,
 * with scale = max|x| / 127 and q = rint(x * (127 / max|x|)) in f32, as the
 * scalar kernel computes it (lmc_quant_x8_scalar), so every path sees the
 * same x. */
float lmc_quant_x8_block(const void *x, lmc_dtype dt, int64_t k0, int n, int32_t *q);
float lmc_quant_x8_scalar(const float *x, int n, int32_t *q);
/* One block x[0..n) replaced by the values it is rounded to, scale * q. */
void lmc_quant_x8_round(float *x, int n);
#define LMC_QMM_X8_BLOCK 64

/* The sums of the rounded x that the biases multiply, from one block of
 * its integers q[0..n) (elements k0.., x ≈ scale * q): one integer sum per
 * segment of seg elements (a power of two that divides k0; a group, or the
 * part of a group in the block), added as sum * scale into sx[((k0 + s) >>
 * shift) * stride] (shift picks the group or item, stride the layout). The
 * sums are exact in int32 (at most 128 * X24_MAX), so every path adds the
 * same values in the same order. */
static inline void lmc_quant_block_sums(const int32_t *q, int n, int64_t k0, int seg, int shift, int64_t stride,
                                        float scale, float *sx) {
    for (int s = 0; s < n; s += seg) {
        const int e = s + seg < n ? s + seg : n;
        int i = s;
        int32_t sum = 0;
        /* in vectors where the file's ISA has them (~30 % of a prefill's
         * preparation of x was this loop, one element at a time) */
#if defined(__AVX512F__)
        __m512i acc = _mm512_setzero_si512();
        for (; i + 16 <= e; i += 16) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(q + i));
        sum = _mm512_reduce_add_epi32(acc);
#elif defined(__AVX2__)
        __m256i acc = _mm256_setzero_si256();
        for (; i + 8 <= e; i += 8) acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(q + i)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        sum = _mm_cvtsi128_si32(h);
#endif
        for (; i < e; i++) sum += q[i];
        sx[((k0 + s) >> shift) * stride] += (float)sum * scale;
    }
}

/* The segment of lmc_quant_block_sums for int8 x: a group, at most an x block. */
static inline int lmc_quant_x8_segment(int group_size) {
    return group_size < LMC_QMM_X8_BLOCK ? group_size : LMC_QMM_X8_BLOCK;
}

/* A SIMD kernel's BITS template value for 4- and 8-bit weights with int8 x
 * (plan xbits 8); 4 is 4-bit weights with 24-bit x, 8 is 8-bit weights with
 * f32 x. */
#define LMC_QMM_W4X8 5
#define LMC_QMM_W8X8 9

/* The SIMD quantised matmuls share one driver (lmc_qmm_run, in
 * quant_scalar.c): it lays out x once per call in the order a path's kernel
 * wants (prep_x) and runs the kernel over up to `mr` rows of x and `nr`
 * weight rows a call, parallel over N. A kernel reads its rows' stored
 * scales and biases itself, turns packed q into numbers y in registers
 * (y = q, or the exact float 1 + q/F, made by OR-ing q into the mantissa of
 * 1.0, for the AVX-512 8-bit kernel with F = 256) and returns, per x row,
 *     sum_g sF_g * sum_{k in g} y_k x_k + sum_g cF_g * sx_g
 * with sF = s, cF = b when y = q, else sF = F*s, cF = b - F*s, and sx_g the
 * sum of the group's x values as the kernel sees them. */
typedef struct lmc_qmm_plan lmc_qmm_plan;
struct lmc_qmm_plan {
    /* filled by the path */
    int64_t M, N, K, G;       /* G = K / group_size */
    int group_size, bits;
    const uint8_t *wq;        /* [N, row_bytes] */
    size_t row_bytes;
    const void *scales, *biases;
    lmc_dtype sdt;
    const void *x;            /* [M, K] contiguous */
    lmc_dtype xdt;
    void *out;                /* [M, N] contiguous */
    lmc_dtype odt;
    int xbits;                /* 8: x rounded to int8 (lmc_quant_activation_bits); else 24 (4 bits) or f32 (8 bits) */
    int gshift;               /* log2(group_size) */
    int32_t gidx[16];         /* for SIMD lane l of a block: its group within the block (path-defined) */
    uint8_t shuf[64];         /* a byte shuffle that places a block's scales in its lanes (path-defined) */
    size_t xp_bytes;          /* bytes of one prepared x row (a multiple of 64) */
    int mr;                   /* x rows per kernel call, at most 4 */
    int nr;                   /* weight rows per kernel call, 1 to 32 */
    /* x_row: row m of x; writes the prepared row (zeroed beforehand) and its group sums */
    void (*prep_x)(const lmc_qmm_plan *p, const void *x_row, void *xp_row, float *sx_row);
    /* res[j*mr + r] for the nn <= nr weight rows n + j (their bytes from w_row
     * on, stride row_bytes) and the mr prepared x rows starting at xp (stride
     * xp_bytes), sx (stride G_pad) */
    void (*kernel)(const lmc_qmm_plan *p, int64_t n, int nn, const uint8_t *w_row, const uint8_t *xp, const float *sx,
                   int mr, float *res);
    /* One x row (decode), weight rows read as LMC_QMM_STREAMS far-apart
     * streams at once: res[s*nn + i] for rows n + s*stride + i (s <
     * LMC_QMM_STREAMS, i < nn <= 8), each the same arithmetic as `kernel`
     * gives that row. NULL where the path has none. */
    void (*kernel_streams)(const lmc_qmm_plan *p, int64_t n, int64_t stride, int nn, const uint8_t *xp,
                           const float *sx, float *res);
    /* Weight rows [n0, n1) against every row of x, results stored: the
     * path's kernel for many rows of x, run by the driver in place of its
     * loop over `kernel` (NULL: that loop). False: out of work space. */
    bool (*run_many)(const lmc_qmm_plan *p, int64_t n0, int64_t n1);
    /* set by the driver */
    int64_t G_pad;            /* G rounded up to 16, plus 16 so kernels may load 16 past any group */
    uint8_t *xp;
    float *sx;
};

/* How far ahead of the weights being read the kernels prefetch, in bytes
 * (about four rows of a 2048-wide 4-bit matrix): at decode the loop is
 * DRAM-bound, and the hardware prefetcher alone left it at ~50 % of the read
 * bandwidth on a Sapphire Rapids core; 4 KiB ahead gave ~75 %. */
#define LMC_QMM_PREFETCH 4096

/* Weight-row streams a thread reads at once in a long run of rows with one
 * row of x (kernel_streams). The hardware prefetcher follows each stream
 * within its 4 KiB page, so one sequential stream leaves most of a core's
 * memory parallelism unused: on the project's Sapphire Rapids host a plain
 * read reached ~26 GB/s with two threads as one stream each and ~35 as four
 * each (bench/RESULTS.md, thirteenth round). Only runs of at least
 * LMC_QMM_STREAM_ROWS rows a stream take this way: the lm_head-sized product
 * got ~14 % faster, the 0.6-1.7 MB matrices of a layer (a few hundred rows a
 * piece) slower. */
#define LMC_QMM_STREAMS 4
#define LMC_QMM_STREAM_ROWS 256

/* How far ahead along a call's rows the SIMD kernels prefetch into L2:
 * the same place in a later call's rows, LMC_QMM_PREFETCH_L2 bytes on or
 * more (a call of NR adjacent rows moves on by NR rows; one of rows RS > 1
 * apart, separate streams, by one row). A row of 4 KiB or more, read beside
 * others, is a stream of its own, which the L1 distance does not serve. */
#define LMC_QMM_PREFETCH_L2 16384
static inline size_t lmc_qmm_l2_distance(const lmc_qmm_plan *p, int NR, int64_t RS) {
    const size_t call_bytes = (RS > 1 ? 1 : (size_t)NR) * p->row_bytes;
    return (LMC_QMM_PREFETCH_L2 + call_bytes - 1) / call_bytes * call_bytes;
}

/* Bytes of prepared x rows a kernel call keeps in L1 while it goes through
 * its weight rows. With more, x was read from L2 for every weight row: 4 x
 * rows of K = 3072 (36 KiB of 4-bit parts) ran ~30 % slower per product
 * than K = 2048 on a 32 KiB-L1 core. */
#define LMC_QMM_X_L1_BYTES 24576

/* From this many rows of x on, the AVX-512 path runs 4- and 8-bit products
 * through its panel kernel (quant_avx512.c), fewer through the rows kernels
 * (at 16 rows the panels already gain 5-35 % on a Zen 4 core). */
#define LMC_QMM_PANEL_MIN_M 16

/* x_spills_l1 and kernel_chunked of a SIMD path with f32 vector type V
 * (zero: VZERO), written once for every path: the path's file defines,
 * before it expands this, row_blocks(p, BITS) (a row's blocks),
 * x_block_bytes(BITS) (a block's prepared x), kernel_blocks(p, n, w, xp,
 * b0, b1, NR, MR, SDT, BITS, RS, acc) and rows_finish(p, n, sx, NR, MR, SDT,
 * BITS, RS, res_step, acc, res). kernel_chunked does nn weight rows (NR at
 * a time) with MR >= 2 rows of x as kernel_rows does, but takes the blocks
 * in chunks whose x fits LMC_QMM_X_L1_BYTES, each chunk through all nn
 * rows, the accumulators kept in memory between chunks: the same additions
 * in the same order, so the same bits. */
#define LMC_QMM_DEFINE_CHUNKED(V, VZERO)                                                                            \
    static inline bool x_spills_l1(const lmc_qmm_plan *p, const int BITS, int mr) {                                 \
        return (size_t)row_blocks(p, BITS) * x_block_bytes(BITS) * (size_t)mr > LMC_QMM_X_L1_BYTES;               \
    }                                                                                                                \
    static inline __attribute__((always_inline)) void kernel_chunked(const lmc_qmm_plan *p, int64_t n, int nn,     \
                                                                     const uint8_t *w, const uint8_t *xp,         \
                                                                     const float *sx, const int NR, const int MR, \
                                                                     const lmc_dtype SDT, const int BITS,         \
                                                                     float *res) {                                \
        V keep[32 * 4]; /* nn <= p->nr = 32 rows by MR <= 4 x rows */                                              \
        const int64_t nblk = row_blocks(p, BITS),                                                                   \
                      per = (int64_t)(LMC_QMM_X_L1_BYTES / ((size_t)MR * x_block_bytes(BITS))),                   \
                      chunk = per > 0 ? per : 1;                                                                    \
        for (int i = 0; i < nn * MR; i++) keep[i] = VZERO;                                                          \
        for (int64_t b0 = 0; b0 < nblk; b0 += chunk) {                                                              \
            int64_t b1 = b0 + chunk < nblk ? b0 + chunk : nblk;                                                     \
            for (int j = 0; j < nn; j += NR) {                                                                      \
                V acc[4];                                                                                           \
                for (int i = 0; i < NR * MR; i++) acc[i] = keep[j * MR + i];                                        \
                kernel_blocks(p, n + j, w + (size_t)j * p->row_bytes, xp, b0, b1, NR, MR, SDT, BITS, 1, acc);       \
                for (int i = 0; i < NR * MR; i++) keep[j * MR + i] = acc[i];                                        \
            }                                                                                                       \
        }                                                                                                           \
        for (int j = 0; j < nn; j += NR)                                                                            \
            rows_finish(p, n + j, sx, NR, MR, SDT, BITS, 1, 1, keep + j * MR, res + j * MR);                        \
    }

/* The kernel and kernel_streams functions of a SIMD path, one per width (4
 * or 8 bits) and scale dtype, written once for every path: the path's file
 * defines, before it expands these, the always-inline
 *   kernel_rows(p, n, w, xp, sx, NR, MR, SDT, BITS, RS, res_step, res)
 *     NR weight rows n + j*RS with MR rows of x: res[j*MR + r], or with
 *     RS > 1 (one x row, rows of separate streams) res[j*res_step];
 *   kernel_chunked(p, n, nn, w, xp, sx, NR, MR, SDT, BITS, res)
 *     the same for nn rows with K taken in chunks whose x stays in L1, and
 *   x_spills_l1(p, BITS, mr)   whether mr prepared x rows overflow L1
 *     (both from LMC_QMM_DEFINE_CHUNKED).
 * A kernel call takes nn weight rows 4 (or 2) at a time with one (or two)
 * rows of x, where the accumulators fit in registers, one at a time with
 * three or four; a streams call row i of each stream side by side, as four
 * adjacent rows are (the same arithmetic per row). */
#define LMC_QMM_KERNEL(BITS, SDT, NAME)                                                                                      \
    static void NAME(const lmc_qmm_plan *p, int64_t n, int nn, const uint8_t *w, const uint8_t *xp, const float *sx, \
                     int mr, float *res) {                                                                           \
        int j = 0;                                                                                                   \
        switch (mr) {                                                                                                \
        case 1:                                                                                                      \
            for (; j + 4 <= nn; j += 4) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 4, 1, SDT, BITS, 1, 1, res + j); \
            for (; j < nn; j++) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 1, 1, SDT, BITS, 1, 1, res + j);         \
            break;                                                                                                   \
        case 2:                                                                                                      \
            if (x_spills_l1(p, BITS, 2)) {                                                                           \
                j = nn & ~1;                                                                                         \
                kernel_chunked(p, n, j, w, xp, sx, 2, 2, SDT, BITS, res);                                            \
            }                                                                                                        \
            for (; j + 2 <= nn; j += 2) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 2, 2, SDT, BITS, 1, 1, res + 2 * j); \
            for (; j < nn; j++) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 1, 2, SDT, BITS, 1, 1, res + 2 * j);     \
            break;                                                                                                   \
        case 3:                                                                                                      \
            if (x_spills_l1(p, BITS, 3)) kernel_chunked(p, n, nn, w, xp, sx, 1, 3, SDT, BITS, res);                  \
            else                                                                                                     \
                for (; j < nn; j++) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 1, 3, SDT, BITS, 1, 1, res + 3 * j); \
            break;                                                                                                   \
        default:                                                                                                     \
            if (x_spills_l1(p, BITS, 4)) kernel_chunked(p, n, nn, w, xp, sx, 1, 4, SDT, BITS, res);                  \
            else                                                                                                     \
                for (; j < nn; j++) kernel_rows(p, n + j, w + j * p->row_bytes, xp, sx, 1, 4, SDT, BITS, 1, 1, res + 4 * j); \
            break;                                                                                                   \
        }                                                                                                            \
    }

#define LMC_QMM_KERNEL_STREAMS(BITS, SDT, NAME)                                                                              \
    static void NAME(const lmc_qmm_plan *p, int64_t n, int64_t stride, int nn, const uint8_t *xp, const float *sx, \
                     float *res) {                                                                                   \
        for (int i = 0; i < nn; i++)                                                                                 \
            kernel_rows(p, n + i, p->wq + (size_t)(n + i) * p->row_bytes, xp, sx, LMC_QMM_STREAMS, 1, SDT, BITS,     \
                        stride, nn, res + i);                                                                        \
    }

/* The six functions of one BITS value that LMC_QMM_PICK(p, K) chooses
 * from: K_f32, K_bf16, K_f16 and K_streams_f32, K_streams_bf16,
 * K_streams_f16. */
#define LMC_QMM_KERNELS(BITS, K)                              \
    LMC_QMM_KERNEL(BITS, LMC_F32, K##_f32)                    \
    LMC_QMM_KERNEL(BITS, LMC_BF16, K##_bf16)                  \
    LMC_QMM_KERNEL(BITS, LMC_F16, K##_f16)                    \
    LMC_QMM_KERNEL_STREAMS(BITS, LMC_F32, K##_streams_f32)    \
    LMC_QMM_KERNEL_STREAMS(BITS, LMC_BF16, K##_streams_bf16)  \
    LMC_QMM_KERNEL_STREAMS(BITS, LMC_F16, K##_streams_f16)

/* p->kernel and p->kernel_streams by the plan's scale dtype, from a path's
 * functions K_f32, K_bf16, K_f16 and K_streams_f32, ... (LMC_QMM_KERNEL and
 * LMC_QMM_KERNEL_STREAMS named so). */
#define LMC_QMM_PICK(p, K)                                                                                    \
    do {                                                                                                      \
        (p)->kernel = (p)->sdt == LMC_F32 ? K##_f32 : (p)->sdt == LMC_BF16 ? K##_bf16 : K##_f16;              \
        (p)->kernel_streams = (p)->sdt == LMC_F32    ? K##_streams_f32                                        \
                              : (p)->sdt == LMC_BF16 ? K##_streams_bf16                                       \
                                                     : K##_streams_f16;                                       \
    } while (0)

/* Fills what every SIMD path sets alike — shapes, pointers, dtypes, gshift,
 * gidx (lane l covers u32 word l), mr = 4, nr = 1 — and zeroes the
 * rest; the path then sets its own x layout, kernel and any other values. */
void lmc_qmm_plan_init(lmc_qmm_plan *p, const lmc_array *out, const lmc_array *x, const lmc_array *wq,
                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits);

/* Runs a plan (prepares x, threads over N, stores out), or queues it while
 * a batch is open on this thread. */
lmc_status lmc_qmm_run(lmc_qmm_plan *p);

/* Several quantised matmuls in one parallel region (the projections that
 * share one input): between lmc_qmm_batch_begin and lmc_qmm_batch_end on a
 * thread, lmc_qmm_run queues its plan (up to 8; more run at once), and the
 * arrays the plans point to must stay alive until the end.
 * lmc_qmm_batch_end prepares each distinct x once and splits the rows of all
 * the queued matrices over the threads; each output is exactly what the
 * plan gives run alone. The AMX kernel queues its products the same way
 * (lmc_quantized_matmul_amx_flush runs them: x prepared once per distinct
 * x, one parallel region); the scalar kernel runs at once, as without a
 * batch. */
void lmc_qmm_batch_begin(void);
lmc_status lmc_qmm_batch_end(void);
bool lmc_qmm_batch_is_open(void);
lmc_status lmc_quantized_matmul_amx_flush(void);


/* bf16 bits to f32, inline (the hot paths convert scales per row). */
static inline float lmc_quant_bf16(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* Reads element i of a contiguous float array of dtype dt as f32, inline
 * (the SIMD kernels read their rows' scales with it block by block). */
static inline float lmc_quant_load(const void *p, lmc_dtype dt, int64_t i) {
    switch (dt) {
    case LMC_F32: return ((const float *)p)[i];
    case LMC_BF16: return lmc_quant_bf16(((const uint16_t *)p)[i]);
    default:
#if defined(__F16C__)
        return _cvtsh_ss(((const uint16_t *)p)[i]);
#else
        return lmc_f16_to_f32(((const uint16_t *)p)[i]);
#endif
    }
}

/* Rounds an f32 value to dtype dt and back (MLX rounds each op's result to the array dtype). */
static inline float lmc_quant_round(float v, lmc_dtype dt) {
    switch (dt) {
    case LMC_BF16: return lmc_bf16_to_f32(lmc_f32_to_bf16(v));
    case LMC_F16: return lmc_f16_to_f32(lmc_f32_to_f16(v));
    default: return v;
    }
}

#endif
