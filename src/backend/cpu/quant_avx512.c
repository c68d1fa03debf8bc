/* AVX-512 quantised matmul (needs AVX512F/BW/VNNI), driven by lmc_qmm_run.
 *
 * 4 bits (the decode hot loop): 64 bytes of a weight row (128 elements, a
 * "block") are loaded into a zmm; byte i holds elements 2i (low nibble) and
 * 2i+1 (high nibble). v & 15 and (v >> 4) & 15 are the q of the even and the
 * odd elements as unsigned bytes, and vpdpbusd multiplies 4 of them with 4
 * signed bytes of x and adds the products into each 32-bit lane: 64
 * multiply-adds per instruction, no widening of the weights. x is rounded
 * once per call to a 24-bit integer with one scale per block (x ≈ xscale_b *
 * x24, so each element is off by at most 2^-24 of its block's largest |x|,
 * about f32's own rounding) and split exactly into three int8 parts, x24 =
 * 65536*hi + 256*mid + lo; six vpdpbusd (two per part) chained by Horner's
 * rule with two shifts give the exact int32 sums. Lane j covers bytes
 * 4j..4j+3, i.e. u32 word j (elements 8j..8j+7), hence a single group: per
 * block the sums are converted to f32 once and multiplied by the group
 * scales (moved into lanes) and xscale_b. The group sums of x used for the
 * biases are those of the rounded x, so both terms see the same x. The
 * kernel reads the rows' stored scales and biases itself and converts them
 * in registers where they are used (one broadcast load and one vpshufb a
 * block): a separate pass converting them per row into a buffer cost about a
 * fifth as much time as the kernel at decode.
 *
 * Per block and weight row that is 15 vector uops for one row of x (and,
 * shift + and for the nibbles, vpshufb for the scales; per x row 6 vpdpbusd,
 * 2 shifts, cvt, mul, fma), all on ports 0 and 5 for 512-bit operands:
 * about 7.5 cycles per 64 bytes, measured ~19 GB/s a core with the weights
 * in cache, a little above one core's DRAM read rate. So that per-row costs
 * (horizontal sums, the biases, the call) stay small when rows are short
 * (K = 1024 is 8 blocks), a call takes 32 weight rows and does 4 of them
 * side by side (2 with 2 rows of x, 1 with 3 or 4): the x loads are shared
 * and one transposing reduction sums 4 accumulators. Every row's result is
 * the same arithmetic whatever rows and x rows it is computed with (the
 * tests hold them bit-identical).
 *
 * With int8 activations (plan xbits 8) x is one int8 part per block of 64
 * (prep_xi8): two vpdpbusd a block, no shifts, and the x scales are a
 * vector (lanes 0-7 and 8-15 cover the block's two x blocks).
 *
 * 8 bits: lane j (u32) holds elements 4j..4j+3; byte t shifted to bits
 * 15..22 and OR-ed with 0x3F800000 is the f32 number y = 1 + q/256, and
 * plain f32 FMAs with f32 x do the rest (8-bit weights are twice the bytes
 * per element, so half the work per byte suffices). With int8 activations
 * x's bytes are in the weights' order (prep_xq8) and one vpdpbusd takes a
 * block of 64 against one x row. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "backend/cpu/quant_avx512.h"
#include "backend/cpu/transpose_avx512.h"
#include "core/scratch.h"

/* --- preparing x -------------------------------------------------------- */

static int64_t blocks4(const lmc_qmm_plan *p) { return (p->K + 127) / 128; }

/* x for the 4-bit kernel as three int8 parts of a 24-bit integer,
 * x24 = 65536*hi + 256*mid + lo (|x24| <= X24_MAX so hi fits int8), per
 * block of 128 elements with one scale, laid out to match the packed bytes:
 * nibble byte i of a block holds elements 2i (low nibble) and 2i+1 (high
 * nibble), so a block's 384 bytes are hi, mid, lo of x[2i] and then hi, mid,
 * lo of x[2i+1] for i = 0..63, 64 bytes each; then the blocks' f32 scales. */
#define X24_MAX 8355711 /* 32639 * 256 + 127: the largest whose hi part (with mid and lo in [-128, 127]) is <= 127 */

static size_t x24_bytes(int64_t K) {
    int64_t blocks = (K + 127) / 128;
    return ((size_t)blocks * (384 + sizeof(float)) + 63) / 64 * 64;
}

/* Rounds x[k0 .. k0+n) (n a multiple of 16, at most 128) to integers
 * q[0..n), |q| <= LIM, with one scale, which it returns: x ≈ scale * q,
 * scale = max|x| / LIM, q = rint(x * (LIM / max|x|)) in f32. */
static inline float quant_block(const void *x, lmc_dtype dt, int64_t k0, int n, int32_t *q, const int LIM) {
    const int nv = n / 16;
    const __m512i lim = _mm512_set1_epi32(LIM);
    __m512 v[8];
    __m512 amax = _mm512_setzero_ps();
    for (int j = 0; j < nv; j++) {
        v[j] = lmc_quant_load16(x, dt, k0 + 16 * j, 0xFFFF);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v[j]));
    }
    float m = _mm512_reduce_max_ps(amax);
    float scale = m / (float)LIM, inv = m > 0.0f ? (float)LIM / m : 0.0f;
    for (int j = 0; j < nv; j++) {
        /* round to nearest even, as rintf */
        __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(v[j], _mm512_set1_ps(inv)));
        r = _mm512_max_epi32(_mm512_min_epi32(r, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
        _mm512_storeu_si512(q + 16 * j, r);
    }
    return scale;
}

/* One block of 128 as 24-bit integers. Shared with the AMX kernel
 * (quant_amx.c) so every integer path sees the same x. */
float lmc_quant_x24_block(const void *x, lmc_dtype dt, int64_t k0, int n, int32_t *q) {
    return quant_block(x, dt, k0, n, q, X24_MAX);
}

static void prep_x24(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    const int64_t blocks = blocks4(p);
    int8_t *xp = xp_row;
    float *xscale = (float *)((uint8_t *)xp_row + blocks * 384);
    int32_t qb[128];
    for (int64_t b = 0; b < blocks; b++) {
        int64_t k0 = b * 128;
        /* K is a multiple of 32: a block has nv whole vectors of 16 (the rest stays zero) */
        const int nv = p->K - k0 >= 128 ? 8 : (int)(p->K - k0) / 16;
        float scale = lmc_quant_x24_block(x, p->xdt, k0, 16 * nv, qb);
        xscale[b] = scale;
        int8_t *blk = xp + b * 384;
        lmc_quant_block_sums(qb, 16 * nv, k0, p->group_size, p->gshift, 1, scale, sx);
        for (int j = 0; j < nv; j++) {
            __m512i q = _mm512_loadu_si512(qb + 16 * j), hi, mid;
            lmc_quant_x24_parts(q, &hi, &mid);
            __m512i part[3] = {hi, mid, q};
            /* qword i of a part holds elements 2i (low half) and 2i+1 */
            for (int t = 0; t < 3; t++) {
                _mm_storel_epi64((__m128i *)(blk + 64 * t + 8 * j), _mm512_cvtepi64_epi8(part[t]));
                _mm_storel_epi64((__m128i *)(blk + 192 + 64 * t + 8 * j),
                                 _mm512_cvtepi64_epi8(_mm512_srli_epi64(part[t], 32)));
            }
        }
    }
}

/* x for the 4-bit kernel with int8 activations (xbits 8): per block of 128
 * elements, 64 bytes of the even elements' int8 q and 64 of the odd ones'
 * (byte i of each for nibble byte i), then 16 f32 scales, lane l holding
 * that of the block of 64 its elements 8l..8l+7 are in: 192 bytes. */
static size_t xi8_bytes(int64_t K) { return (size_t)((K + 127) / 128) * 192; }

float lmc_quant_x8_block(const void *x, lmc_dtype dt, int64_t k0, int n, int32_t *q) {
    return quant_block(x, dt, k0, n, q, 127);
}

static void prep_xi8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    int32_t qb[LMC_QMM_X8_BLOCK];
    for (int64_t k0 = 0; k0 < p->K; k0 += LMC_QMM_X8_BLOCK) {
        const int n = p->K - k0 >= LMC_QMM_X8_BLOCK ? LMC_QMM_X8_BLOCK : (int)(p->K - k0); /* 64 or 32 */
        float scale = lmc_quant_x8_block(x, p->xdt, k0, n, qb);
        int8_t *blk = (int8_t *)xp_row + (k0 / 128) * 192;
        const int h = (int)(k0 % 128) / 64; /* which half of the 128-element block */
        _mm256_storeu_ps((float *)(blk + 128) + 8 * h, _mm256_set1_ps(scale));
        lmc_quant_block_sums(qb, n, k0, lmc_quant_x8_segment(p->group_size), p->gshift, 1, scale, sx);
        for (int j = 0; j < n / 16; j++) {
            __m512i q = _mm512_loadu_si512(qb + 16 * j);
            /* qword i holds elements 2i (low half) and 2i+1, as in prep_x24 */
            _mm_storel_epi64((__m128i *)(blk + 32 * h + 8 * j), _mm512_cvtepi64_epi8(q));
            _mm_storel_epi64((__m128i *)(blk + 64 + 32 * h + 8 * j), _mm512_cvtepi64_epi8(_mm512_srli_epi64(q, 32)));
        }
    }
}

/* x for the 8-bit kernel with int8 activations: per block of 64 elements
 * its 64 int8 q in order (lane j of the weights' block holds elements
 * 4j..4j+3, and so does x's), then the blocks' f32 scales. */
static size_t xq8_bytes(int64_t K) {
    int64_t blocks = (K + 63) / 64;
    return ((size_t)blocks * (64 + sizeof(float)) + 63) / 64 * 64;
}

static void prep_xq8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    int32_t qb[LMC_QMM_X8_BLOCK];
    const int64_t blocks = (p->K + 63) / 64;
    float *xscale = (float *)((int8_t *)xp_row + blocks * 64);
    for (int64_t k0 = 0; k0 < p->K; k0 += LMC_QMM_X8_BLOCK) {
        const int n = p->K - k0 >= LMC_QMM_X8_BLOCK ? LMC_QMM_X8_BLOCK : (int)(p->K - k0); /* 64 or 32 */
        float scale = lmc_quant_x8_block(x, p->xdt, k0, n, qb);
        xscale[k0 / 64] = scale;
        lmc_quant_block_sums(qb, n, k0, lmc_quant_x8_segment(p->group_size), p->gshift, 1, scale, sx);
        for (int j = 0; j < n / 16; j++)
            _mm_storeu_si128((__m128i *)((int8_t *)xp_row + k0 + 16 * j),
                             _mm512_cvtepi32_epi8(_mm512_loadu_si512(qb + 16 * j)));
    }
}

static void prep_x8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / 64, j = (k % 64) / 4, t = k % 4;
        float v = lmc_quant_load(x, p->xdt, k);
        xp[(b * 4 + t) * 16 + j] = v;
        sx[k >> p->gshift] += v;
    }
}

/* --- kernels ------------------------------------------------------------ */

/* Both kernels read the stored scales and biases of their rows themselves
 * and convert them in registers where they are used, instead of a separate
 * pass converting them into a buffer: the same f32 values (bf16 and f16 convert
 * exactly; F*s is exact, F being a power of two), in the same arithmetic. */

/* The scales of 4-bit block b of a row whose scales start at s_row, lane l
 * holding its group's (u32 word l covers elements 8l..8l+7), GPB = 128 /
 * group_size groups a block. One load broadcasts exactly the block's GPB
 * stored values to every 128-bit lane (a load-port uop only) and one vpshufb
 * with p->shuf (per 128-bit lane) puts each lane's value in place: for bf16
 * in the top half of the lane with the bottom zeroed, which is its f32; for
 * f16 in word l, for vcvtph2ps; for f32 the whole lane. (The obvious vpermw
 * from a masked load is two uops, on ports 0 and 5.) With one group a block
 * a broadcast of the f32 value does. The TAIL block (K % 128 != 0) has
 * fewer groups and is read with a mask, so nothing past the row's last group
 * is touched. */
static inline __m512 block_scales4(const void *s_row, const lmc_dtype SDT, int64_t b, const int GPB, const bool TAIL,
                                   __mmask16 mtail, __m512i shuf) {
    const int ssz = SDT == LMC_F32 ? 4 : 2;
    const char *src = (const char *)s_row + b * GPB * ssz;
    __m512i v;
    if (TAIL) {
        v = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi8(mtail, src));
    } else if (GPB == 1) {
        if (SDT == LMC_F32) return _mm512_set1_ps(*(const float *)src);
        uint16_t h;
        memcpy(&h, src, 2);
        return _mm512_set1_ps(SDT == LMC_BF16 ? lmc_quant_bf16(h) : _cvtsh_ss(h));
    } else if (GPB * ssz == 4) {
        uint32_t u;
        memcpy(&u, src, 4);
        v = _mm512_set1_epi32((int)u);
    } else if (GPB * ssz == 8) {
        uint64_t u;
        memcpy(&u, src, 8);
        v = _mm512_set1_epi64((long long)u);
    } else {
        v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)src));
    }
    v = _mm512_shuffle_epi8(v, shuf);
    return SDT == LMC_F16 ? _mm512_cvtph_ps(_mm512_castsi512_si256(v)) : _mm512_castsi512_ps(v);
}

/* The exact int32 dot products of one block with one x row, lane by lane:
 * 65536*H + 256*M + L, where H, M and L are the sums of q times the hi, mid
 * and lo parts. Horner's rule inside vpdpbusd's accumulator, ((H << 8) + M)
 * << 8 + L, leaves two shifts to combine the parts (six vpdpbusd and two
 * shifts per block and x row). |H|, |M|, |L| <= 8 * 15 * 128, so no step
 * leaves int32: the integers are those of the parts summed separately. */
static inline __m512i block_dot24(__m512i qe, __m512i qo, const __m512i *xb) {
    __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qe, _mm512_load_si512(xb));
    a = _mm512_dpbusd_epi32(a, qo, _mm512_load_si512(xb + 3));
    a = _mm512_slli_epi32(a, 8);
    a = _mm512_dpbusd_epi32(a, qe, _mm512_load_si512(xb + 1));
    a = _mm512_dpbusd_epi32(a, qo, _mm512_load_si512(xb + 4));
    a = _mm512_slli_epi32(a, 8);
    a = _mm512_dpbusd_epi32(a, qe, _mm512_load_si512(xb + 2));
    return _mm512_dpbusd_epi32(a, qo, _mm512_load_si512(xb + 5));
}

/* The same with int8 x (one part): two vpdpbusd. */
static inline __m512i block_dot8(__m512i qe, __m512i qo, const __m512i *xb) {
    __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qe, _mm512_load_si512(xb));
    return _mm512_dpbusd_epi32(a, qo, _mm512_load_si512(xb + 1));
}

/* Block b of NR weight rows (row j's bytes at w + j*RS*rb, its scales at
 * s_row + j*RS*G) with MR rows of x: acc[j*MR + r] += the block's products.
 * TAIL: the last, partial block (K not a multiple of 128), read with masks.
 * X8: x as int8 (prep_xi8), whose scales are per lane; else 24-bit. */
static inline __attribute__((always_inline)) void block4(const lmc_qmm_plan *p, const uint8_t *w, const void *s_row,
                                                         const uint8_t *xp, int64_t b, int64_t nblk, const int NR,
                                                         const int MR, const bool X8, const lmc_dtype SDT, const bool TAIL,
                                                         const int GPB, __mmask16 mtail, __m512i shuf, size_t pf_l2, int64_t RS, __m512 *acc) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) {
        const uint8_t *wb = w + (size_t)(j * RS) * p->row_bytes + b * 64;
        __m512i v = TAIL ? _mm512_maskz_loadu_epi8((1ull << ((p->K % 128) / 2)) - 1, wb) : _mm512_loadu_si512(wb);
        /* Rows are contiguous, so this runs ahead into the next rows: the
         * hardware prefetcher alone leaves the loop waiting on DRAM. With NR
         * rows read side by side, a row of 4 KiB or more is a stream of its
         * own, which the linear distance (into the next row, read at the
         * same time) does not serve: the second prefetch, into L2, goes to
         * the same block of a later call's rows. */
        _mm_prefetch((const char *)(wb + LMC_QMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + pf_l2), _MM_HINT_T1);
        /* q of the even and the odd elements, one per byte */
        __m512i qe = _mm512_and_si512(v, low), qo = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        __m512 s = block_scales4((const char *)s_row + (size_t)(j * RS * p->G) * ssz, SDT, b, GPB, TAIL, mtail, shuf);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const uint8_t *row = xp + (size_t)r * p->xp_bytes;
            if (X8) {
                const __m512i *xb = (const __m512i *)(row + b * 192);
                __m512i a = block_dot8(qe, qo, xb);
                acc[j * MR + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(s, _mm512_load_ps(xb + 2)), acc[j * MR + r]);
            } else {
                const float *xscale = (const float *)(row + nblk * 384);
                __m512i a = block_dot24(qe, qo, (const __m512i *)row + b * 6);
                acc[j * MR + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(s, _mm512_set1_ps(xscale[b])), acc[j * MR + r]);
            }
        }
    }
}

/* The horizontal sums of a0..a3 in lanes 0..3, each by the same tree of
 * additions whatever the other three hold, so a row's result does not
 * depend on the rows summed beside it. */
static inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    /* per 128-bit lane: (e0 + e2, e1 + e3) of a0 and a1 interleaved, then the two pairs added */
    __m512d t01 = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1)));
    __m512d t23 = _mm512_castps_pd(_mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3)));
    __m512 t = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(t01, t23)), _mm512_castpd_ps(_mm512_unpackhi_pd(t01, t23)));
    /* lane i of each 128-bit lane is now a partial sum of a_i: add the four 128-bit lanes */
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps(t, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Blocks [b0, b1) of NR weight rows n + j*RS (bytes at w + j*RS*row_bytes)
 * with MR rows of x, added into acc[j*MR + r]. */
static inline __attribute__((always_inline)) void kernel4_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                 const uint8_t *xp, int64_t b0, int64_t b1,
                                                                 const int NR, const int MR, const bool X8,
                                                                 const lmc_dtype SDT, int64_t RS, __m512 *acc) {
    const __m512i shuf = _mm512_loadu_si512(p->shuf);
    const int64_t nblk = blocks4(p), full = p->K / 128;
    const void *s_row = (const char *)p->scales + (size_t)(n * p->G) * (SDT == LMC_F32 ? 4 : 2);
    /* the stored bytes of the last block's groups when K is not a multiple of 128 */
    const __mmask16 mtail = (__mmask16)((1u << (((p->K % 128) >> p->gshift) * (SDT == LMC_F32 ? 4 : 2))) - 1);
    const int GPB = 128 >> p->gshift;
    const size_t pf_l2 = lmc_qmm_l2_distance(p, NR, RS);
    const int64_t bend = b1 < full ? b1 : full;
    for (int64_t b = b0; b < bend; b++) block4(p, w, s_row, xp, b, nblk, NR, MR, X8, SDT, false, GPB, mtail, shuf, pf_l2, RS, acc);
    if (full < b1) block4(p, w, s_row, xp, full, nblk, NR, MR, X8, SDT, true, GPB, mtail, shuf, pf_l2, RS, acc);
}

/* acc += cF_g * sx_g (zero past G; cF = b - F*s with F = 256 for 8 bits,
 * whose kernel takes y = 1 + q/256, and F = 0 for 4 bits), then the
 * horizontal sums: res[j*MR + r], or with RS > 1 (one x row, rows of
 * separate streams) res[j*res_step]. */
static inline __attribute__((always_inline)) void rows_finish(const lmc_qmm_plan *p, int64_t n, const float *sx,
                                                              const int NR, const int MR, const lmc_dtype SDT,
                                                              const int BITS, int64_t RS, int res_step, __m512 *acc,
                                                              float *res) {
    const float F = BITS == 8 ? 256.0f : 0.0f;
    for (int64_t g = 0; g < p->G; g += 16) {
        int64_t left = p->G - g;
        __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            int64_t i = (n + j * RS) * p->G + g;
            __m512 c = lmc_quant_load16(p->biases, SDT, i, m);
            if (F != 0.0f) c = _mm512_fnmadd_ps(_mm512_set1_ps(F), lmc_quant_load16(p->scales, SDT, i, m), c);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
                acc[j * MR + r] = _mm512_fmadd_ps(c, _mm512_loadu_ps(sx + r * p->G_pad + g), acc[j * MR + r]);
        }
    }
    __m128 sums = hsum4(acc[0], acc[1], acc[2], acc[3]);
    if (RS == 1 && NR * MR == 4) {
        /* a plain store: the caller reads the four sums one by one (to
         * transpose them), and a masked store forwards to no load: each
         * would wait for the store to reach the cache (~2 % of a prefill) */
        _mm_storeu_ps(res, sums);
    } else if (RS == 1) {
        _mm_mask_storeu_ps(res, (__mmask8)((1u << (NR * MR)) - 1), sums);
    } else {
        float v[4];
        _mm_storeu_ps(v, sums);
        for (int j = 0; j < NR; j++) res[j * res_step] = v[j];
    }
}

/* 8 bits, the scales of block b (64 elements, lane l covering 4l..4l+3)
 * times F, lane l holding its group's: one group a block or more, or with
 * groups of 32 one for each half of the lanes (the TAIL block, K % 64 = 32,
 * has only the first, and nothing past the row's groups is read). WIDE:
 * groups of 64 or more, a template parameter so that the loop does not
 * branch on it. */
static inline __m512 block_scales8(const lmc_qmm_plan *p, const void *s_row, const lmc_dtype SDT, int64_t b, const bool WIDE,
                                   const bool TAIL, const float F) {
    if (WIDE) return _mm512_set1_ps(F * lmc_quant_load(s_row, SDT, (b * 64) >> p->gshift));
    __m512 lo = _mm512_set1_ps(F * lmc_quant_load(s_row, SDT, 2 * b));
    return TAIL ? lo : _mm512_insertf32x8(lo, _mm256_set1_ps(F * lmc_quant_load(s_row, SDT, 2 * b + 1)), 1);
}

/* Block b of NR 8-bit weight rows (row j's bytes at w + j*RS*row_bytes, its
 * scales at s_row + j*RS*G) with MR rows of x: acc[j*MR + r] += the block's
 * sum of y*x times the lanes' scales. TAIL: the last block of 32 (its
 * missing bytes read as q = 0, y = 1, against x = 0). */
static inline __attribute__((always_inline)) void block8(const lmc_qmm_plan *p, const uint8_t *w, const void *s_row,
                                                         const uint8_t *xp, int64_t b, int64_t nblk, const int NR,
                                                         const int MR, const bool X8, const lmc_dtype SDT, const bool WIDE,
                                                         const bool TAIL, size_t pf_l2, int64_t RS, __m512 *acc) {
    const __m512i mask = _mm512_set1_epi32(0x007F8000), one = _mm512_set1_epi32(0x3F800000);
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) {
        const uint8_t *wb = w + (size_t)(j * RS) * p->row_bytes + b * 64;
        __m512i v = TAIL ? _mm512_maskz_loadu_epi8((1ull << (p->K % 64)) - 1, wb) : _mm512_loadu_si512(wb);
        _mm_prefetch((const char *)(wb + LMC_QMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + pf_l2), _MM_HINT_T1);
        if (X8) { /* int8 x (prep_xq8): one vpdpbusd, q times x, 4 products a lane; the scales are F*s with F = 1 */
            __m512 s = block_scales8(p, (const char *)s_row + (size_t)(j * RS * p->G) * ssz, SDT, b, WIDE, TAIL, 1.0f);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const uint8_t *row = xp + (size_t)r * p->xp_bytes;
                __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, _mm512_load_si512(row + b * 64));
                const float xs = ((const float *)(row + nblk * 64))[b];
                acc[j * MR + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(s, _mm512_set1_ps(xs)), acc[j * MR + r]);
            }
            continue;
        }
        /* byte t moved to bits 15..22 of each 32-bit lane */
        __m512 y[4] = {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(v, 15), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(v, 7), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 1), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 9), mask, one, 0xEA))};
        __m512 s = block_scales8(p, (const char *)s_row + (size_t)(j * RS * p->G) * ssz, SDT, b, WIDE, TAIL, 256.0f);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const float *xb = (const float *)(xp + (size_t)r * p->xp_bytes) + b * 64;
            __m512 a = _mm512_mul_ps(y[0], _mm512_load_ps(xb));
            a = _mm512_fmadd_ps(y[1], _mm512_load_ps(xb + 16), a);
            a = _mm512_fmadd_ps(y[2], _mm512_load_ps(xb + 32), a);
            a = _mm512_fmadd_ps(y[3], _mm512_load_ps(xb + 48), a);
            acc[j * MR + r] = _mm512_fmadd_ps(a, s, acc[j * MR + r]);
        }
    }
}

/* Blocks [b0, b1) of NR 8-bit weight rows n + j*RS (bytes at w +
 * j*RS*row_bytes) with MR rows of x, added into acc[j*MR + r]; b1 = the
 * row's block count includes the tail (K % 64 = 32). */
static inline __attribute__((always_inline)) void kernel8_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                 const uint8_t *xp, int64_t b0, int64_t b1,
                                                                 const int NR, const int MR, const bool X8,
                                                                 const lmc_dtype SDT, int64_t RS, __m512 *acc) {
    const void *s_row = (const char *)p->scales + (size_t)(n * p->G) * (SDT == LMC_F32 ? 4 : 2);
    const size_t pf_l2 = lmc_qmm_l2_distance(p, NR, RS);
    const int64_t nblk = (p->K + 63) / 64, full = p->K / 64, bend = b1 < full ? b1 : full;
    if (p->group_size >= 64)
        for (int64_t b = b0; b < bend; b++) block8(p, w, s_row, xp, b, nblk, NR, MR, X8, SDT, true, false, pf_l2, RS, acc);
    else
        for (int64_t b = b0; b < bend; b++) block8(p, w, s_row, xp, b, nblk, NR, MR, X8, SDT, false, false, pf_l2, RS, acc);
    if (full < b1) block8(p, w, s_row, xp, full, nblk, NR, MR, X8, SDT, p->group_size >= 64, true, pf_l2, RS, acc);
}

/* --- what the 4- and 8-bit kernels share ------------------------------- */

/* A row's blocks (4 bits: 128 elements, x as 384 bytes of int8 parts, or
 * 192 with int8 x; 8 bits: 64 elements, x as 256 bytes of f32) and their
 * sums. */
static inline bool weights8(const int BITS) { return BITS == 8 || BITS == LMC_QMM_W8X8; }
static inline int64_t row_blocks(const lmc_qmm_plan *p, const int BITS) { return !weights8(BITS) ? blocks4(p) : (p->K + 63) / 64; }

static inline __attribute__((always_inline)) void kernel_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                const uint8_t *xp, int64_t b0, int64_t b1, const int NR,
                                                                const int MR, const lmc_dtype SDT, const int BITS,
                                                                int64_t RS, __m512 *acc) {
    if (!weights8(BITS)) kernel4_blocks(p, n, w, xp, b0, b1, NR, MR, BITS == LMC_QMM_W4X8, SDT, RS, acc);
    else kernel8_blocks(p, n, w, xp, b0, b1, NR, MR, BITS == LMC_QMM_W8X8, SDT, RS, acc);
}

/* NR weight rows n + j*RS (bytes at w + j*RS*row_bytes) with MR rows of x:
 * res[j*MR + r], or with RS > 1 (one x row, rows of separate streams)
 * res[j*res_step]. */
static inline __attribute__((always_inline)) void kernel_rows(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                              const uint8_t *xp, const float *sx, const int NR,
                                                              const int MR, const lmc_dtype SDT, const int BITS,
                                                              int64_t RS, int res_step, float *res) {
    __m512 acc[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    kernel_blocks(p, n, w, xp, 0, row_blocks(p, BITS), NR, MR, SDT, BITS, RS, acc);
    rows_finish(p, n, sx, NR, MR, SDT, BITS, RS, res_step, acc, res);
}

/* The bytes of a block's prepared x. */
static inline size_t x_block_bytes(const int BITS) {
    return BITS == 4 ? 384 : BITS == LMC_QMM_W4X8 ? 192 : BITS == LMC_QMM_W8X8 ? 64 : 256;
}

LMC_QMM_DEFINE_CHUNKED(__m512, _mm512_setzero_ps())

LMC_QMM_KERNELS(4, kernel4)
LMC_QMM_KERNELS(LMC_QMM_W4X8, kernel4x8)
LMC_QMM_KERNELS(LMC_QMM_W8X8, kernel8x8)
LMC_QMM_KERNELS(8, kernel8)

/* --- many rows of x: the weights in panels, x broadcast --------------------
 *
 * From LMC_QMM_PANEL_MIN_M rows of x on (prefill chunks, batches of 16 or
 * more) the 4- and 8-bit products turn the kernel around. A panel holds 16
 * weight rows' q as bytes, laid out so that one zmm is 4 q of each of the 16
 * rows (dword i: row i's 4 elements in order for 8 bits; for 4 bits its
 * elements 8t, 8t+2, 8t+4, 8t+6, or the odd ones, and x is laid out in the
 * same order), and vpdpbusd multiplies it with 4 bytes of one x row
 * broadcast to every lane. With 8-bit weights x is rounded to 24 bits too
 * (the rows kernel keeps it f32), as on AMX. Each lane is an output summing a
 * whole item (a group, or with int8 x and groups of 128 a block of 64) in
 * int32, so there are no sums across lanes and the f32 work (convert,
 * scale, bias) comes once per item for 16 outputs; a thread expands its
 * weights into two panels once per 32 rows and runs every row of x through
 * them. The rows kernels above spend ~3 vector uops per vpdpbusd with int8
 * x (the nibbles, the per-block conversion and scaling, the sums across
 * lanes) and here there is about one, so vpdpbusd's throughput is the limit
 * (one Zen 4 core, 512 x 2048 x 8192: int8 x 104 -> 50-57 ms, 24-bit x 200
 * -> 135-145 ms). The integers are the rows kernels'; the f32 work is the
 * AMX kernel's, item by item in its order (24-bit x: 256 * f32(256*H + M) +
 * f32(L), then the scale and the bias term), so a row's result is the same
 * bits as on an AMX CPU (test_quant checks it there) and in any call of
 * LMC_QMM_PANEL_MIN_M rows of x or more, and close to the rows kernels'. */
enum {
    PANEL_ROWS = 32,  /* weight rows expanded at a time: two panels of 16 */
    PANEL_MR = 4      /* rows of x a pass over the panels: 2 x 4 accumulators (24-bit x: two sets) */
};

/* x for 4-bit panels: each 8 elements as the panels hold the weights' q,
 * the even ones and then the odd ones (panels_expand), per 16 bytes; 8-bit
 * panels keep the elements in order. */
static inline __m128i x_pairs(__m128i v) {
    return _mm_shuffle_epi8(v, _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15));
}

/* With 24-bit x: a row's hi, mid and lo parts, K bytes each, then the f32
 * scales of its blocks of 128. */
static size_t x24p_bytes(int64_t K) {
    return ((size_t)K * 3 + (size_t)((K + 127) / 128) * sizeof(float) + 63) / 64 * 64;
}

static void prep_x24_panels(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    int8_t *hi = xp_row, *mid = hi + p->K, *lo = hi + 2 * p->K;
    float *xscale = (float *)(hi + 3 * p->K);
    int32_t qb[128];
    for (int64_t k0 = 0; k0 < p->K; k0 += 128) {
        const int n = p->K - k0 >= 128 ? 128 : (int)(p->K - k0); /* a multiple of 32 */
        float scale = lmc_quant_x24_block(x, p->xdt, k0, n, qb);
        xscale[k0 / 128] = scale;
        lmc_quant_block_sums(qb, n, k0, p->group_size, p->gshift, 1, scale, sx);
        for (int j = 0; j < n; j += 16) {
            __m512i q = _mm512_loadu_si512(qb + j), h, m;
            lmc_quant_x24_parts(q, &h, &m);
            __m128i hv = _mm512_cvtepi32_epi8(h), mv = _mm512_cvtepi32_epi8(m), lv = _mm512_cvtepi32_epi8(q);
            if (p->bits == 4) {
                hv = x_pairs(hv);
                mv = x_pairs(mv);
                lv = x_pairs(lv);
            }
            _mm_storeu_si128((__m128i *)(hi + k0 + j), hv);
            _mm_storeu_si128((__m128i *)(mid + k0 + j), mv);
            _mm_storeu_si128((__m128i *)(lo + k0 + j), lv);
        }
    }
}

/* With int8 x: prep_xq8's layout (K bytes, then the scales of the blocks
 * of 64), for 4 bits each 8 bytes in the panels' order, then with groups
 * of 128 each block's sum of x as rounded, (float)sum * scale: there the
 * kernel adds the biases per block, as the AMX kernel does, so that both
 * give the same bits. */
static size_t xi8p_bytes(int64_t K) {
    int64_t blocks = (K + 63) / 64;
    return ((size_t)blocks * (64 + 2 * sizeof(float)) + 63) / 64 * 64;
}

static void prep_xi8_panels(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    prep_xq8(p, x, xp_row, sx);
    const bool pairs = p->bits == 4, block_sums = p->group_size > LMC_QMM_X8_BLOCK;
    if (!pairs && !block_sums) return;
    int8_t *q = xp_row;
    const int64_t blocks = (p->K + 63) / 64;
    const float *xscale = (const float *)(q + blocks * 64);
    float *bsum = (float *)(q + blocks * 64) + blocks;
    for (int64_t b = 0; b < blocks; b++) {
        __m512i acc = _mm512_setzero_si512();
        for (int64_t k = b * 64; k < (b + 1) * 64 && k < p->K; k += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(q + k));
            acc = _mm512_add_epi32(acc, _mm512_cvtepi8_epi32(v));
            if (pairs) _mm_storeu_si128((__m128i *)(q + k), x_pairs(v));
        }
        if (block_sums) bsum[b] = (float)_mm512_reduce_add_epi32(acc) * xscale[b];
    }
}

/* A thread's work space: two panels of q ([2][K/4][64] bytes), then their
 * scales and biases as f32 ([2][G][16] each). */
static size_t panels_bytes(const lmc_qmm_plan *p) {
    return (size_t)PANEL_ROWS * (size_t)p->K + (size_t)(4 * 16 * p->G) * sizeof(float);
}

/* The q of 8-bit weight rows [r0, r0 + 16) (those from n1 on zero) as
 * panel q: 16 x 16 words (4 elements each, in order) transposed per 64
 * elements. */
static void panel_q8(const lmc_qmm_plan *p, int64_t r0, int64_t n1, uint8_t *q) {
    for (int64_t k0 = 0; k0 < p->K; k0 += 64) {
        const bool half = p->K - k0 < 64; /* the last 32 elements (groups of 32) */
        __m512i v[16];
        for (int i = 0; i < 16; i++) {
            const uint8_t *src = p->wq + (size_t)(r0 + i) * p->row_bytes + k0;
            v[i] = r0 + i >= n1 ? _mm512_setzero_si512()
                   : half       ? _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)src))
                                : _mm512_loadu_si512(src);
        }
        lmc_transpose16x16_epi32(v);
        for (int j = 0; j < (half ? 8 : 16); j++) _mm512_store_si512(q + (size_t)(k0 / 4 + j) * 64, v[j]);
    }
}

/* 32 packed bytes (16 with half) of row r at element k0, zero from row n1 on. */
static inline __m256i packed_row(const lmc_qmm_plan *p, int64_t r, int64_t n1, int64_t k0, bool half) {
    const uint8_t *src = p->wq + (size_t)r * p->row_bytes + k0 / 2;
    if (r >= n1) return _mm256_setzero_si256();
    return half ? _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)src)) : _mm256_loadu_si256((const __m256i *)src);
}

/* The same for 4-bit rows. The 16 rows are transposed packed, 32-bit word t
 * of each row (elements 8t..8t+7) into lane i of one vector, two rows to a
 * 256-bit half (rows i and i + 8), and only then split into nibbles: the
 * low ones are elements 8t, 8t+2, 8t+4, 8t+6 of each row, the high ones
 * 8t+1, .., 8t+7, and x is laid out in the same order (x_pairs). That is
 * half the bytes through the transpose of widening each row first (the
 * expansion was a fifth of the product at 64 rows of x with int8 x). */
static void panel_q4(const lmc_qmm_plan *p, int64_t r0, int64_t n1, uint8_t *q) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512i even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    for (int64_t k0 = 0; k0 < p->K; k0 += 64) {
        const bool half = p->K - k0 < 64; /* the last 32 elements (groups of 32) */
        __m512i z[8], u[8];
        for (int i = 0; i < 8; i++)
            z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(packed_row(p, r0 + i, n1, k0, half)),
                                      packed_row(p, r0 + i + 8, n1, k0, half), 1);
        /* 8 x 8 words in each 256-bit half: 4 x 4 within the 128-bit lanes, then the lanes */
        lmc_transpose4x4_lanes(z, u, 8);
        /* u[c] (rows 0-3 and 8-11) and u[4 + c] (rows 4-7, 12-15) hold words c and c + 4 */
        uint8_t *dst = q + (size_t)(k0 / 4) * 64;
        for (int c = 0; c < 4; c++) {
            __m512i w[2] = {_mm512_permutex2var_epi64(u[c], even, u[4 + c]), _mm512_permutex2var_epi64(u[c], odd, u[4 + c])};
            for (int h = 0; h < (half ? 1 : 2); h++) {
                const int word = c + 4 * h;
                _mm512_store_si512(dst + (2 * word) * 64, _mm512_and_si512(w[h], low));
                _mm512_store_si512(dst + (2 * word + 1) * 64, _mm512_and_si512(_mm512_srli_epi16(w[h], 4), low));
            }
        }
    }
}

/* Weight rows [n0, n1) (n1 - n0 <= PANEL_ROWS; rows past them zero) into
 * the two panels q ([2][K/4][64]), their scales s and biases b ([2][G][16]). */
static void panels_expand(const lmc_qmm_plan *p, int64_t n0, int64_t n1, uint8_t *q, float *s, float *b) {
    for (int pn = 0; pn < 2; pn++) {
        const int64_t r0 = n0 + 16 * pn;
        uint8_t *qp = q + (size_t)pn * (size_t)p->K * 16;
        if (p->bits == 8) panel_q8(p, r0, n1, qp);
        else panel_q4(p, r0, n1, qp);
        /* scales and biases: 16 groups of each of the 16 rows, transposed */
        for (int t = 0; t < 2; t++) {
            const void *src = t ? p->biases : p->scales;
            float *dst = (t ? b : s) + (size_t)(pn * p->G) * 16;
            for (int64_t g0 = 0; g0 < p->G; g0 += 16) {
                const int64_t left = p->G - g0;
                const __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
                __m512i v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = r0 + i >= n1 ? _mm512_setzero_si512()
                                        : _mm512_castps_si512(lmc_quant_load16(src, p->sdt, (r0 + i) * p->G + g0, m));
                lmc_transpose16x16_epi32(v);
                for (int g = 0; g < 16 && g < left; g++) _mm512_store_si512(dst + (g0 + g) * 16, v[g]);
            }
        }
    }
}

static inline __m512i bcast4(const int8_t *x) {
    int32_t v;
    memcpy(&v, x, sizeof v);
    return _mm512_set1_epi32(v);
}

/* Rows m0 .. m0+MR of x through the panels (weight rows n0 .. n1), stored. */
static inline __attribute__((always_inline)) void panels_rows(const lmc_qmm_plan *p, const uint8_t *q, const float *ps,
                                                              const float *pb, int64_t n0, int64_t n1, int64_t m0,
                                                              const int MR, const bool X8) {
    const int64_t K = p->K, G = p->G;
    const int gi = X8 ? lmc_quant_x8_segment(p->group_size) : p->group_size; /* elements an item */
    const int xshift = X8 ? 6 : 7;                                           /* log2 of x's block */
    const uint8_t *q1 = q + (size_t)K * 16;
    const int8_t *xr[PANEL_MR];
    const float *xs[PANEL_MR], *bsum[PANEL_MR];
    for (int r = 0; r < MR; r++) {
        xr[r] = (const int8_t *)(p->xp + (size_t)(m0 + r) * p->xp_bytes);
        xs[r] = (const float *)(xr[r] + (X8 ? (K + 63) / 64 * 64 : 3 * K));
        bsum[r] = xs[r] + (K + 63) / 64; /* int8 x only */
    }
    /* int8 x with groups of 128: the bias term per x block, with its own sum */
    const bool per_block = X8 && p->group_size > gi;
    __m512 o[2][PANEL_MR];
    for (int r = 0; r < MR; r++) o[0][r] = o[1][r] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < K; k0 += gi) {
        __m512i h[2][PANEL_MR], l[2][PANEL_MR];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) h[0][r] = h[1][r] = l[0][r] = l[1][r] = _mm512_setzero_si512();
        const int64_t j1 = (k0 + gi) / 4;
        /* hi (or the int8 x) and lo, then hi's sums moved up 8 bits and mid */
        for (int64_t j = k0 / 4; j < j1; j++) {
            const __m512i w0 = _mm512_load_si512(q + j * 64), w1 = _mm512_load_si512(q1 + j * 64);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m512i xh = bcast4(xr[r] + 4 * j);
                h[0][r] = _mm512_dpbusd_epi32(h[0][r], w0, xh);
                h[1][r] = _mm512_dpbusd_epi32(h[1][r], w1, xh);
                if (!X8) {
                    const __m512i xl = bcast4(xr[r] + 2 * K + 4 * j);
                    l[0][r] = _mm512_dpbusd_epi32(l[0][r], w0, xl);
                    l[1][r] = _mm512_dpbusd_epi32(l[1][r], w1, xl);
                }
            }
        }
        if (!X8) {
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                h[0][r] = _mm512_slli_epi32(h[0][r], 8);
                h[1][r] = _mm512_slli_epi32(h[1][r], 8);
            }
            for (int64_t j = k0 / 4; j < j1; j++) {
                const __m512i w0 = _mm512_load_si512(q + j * 64), w1 = _mm512_load_si512(q1 + j * 64);
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++) {
                    const __m512i xm = bcast4(xr[r] + K + 4 * j);
                    h[0][r] = _mm512_dpbusd_epi32(h[0][r], w0, xm);
                    h[1][r] = _mm512_dpbusd_epi32(h[1][r], w1, xm);
                }
            }
        }
        const int64_t g = k0 >> p->gshift;
#pragma GCC unroll 2
        for (int pn = 0; pn < 2; pn++) {
            const __m512 s = _mm512_load_ps(ps + (pn * G + g) * 16), b = _mm512_load_ps(pb + (pn * G + g) * 16);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                __m512 f = X8 ? _mm512_cvtepi32_ps(h[pn][r])
                              : _mm512_fmadd_ps(_mm512_cvtepi32_ps(h[pn][r]), _mm512_set1_ps(256.0f), _mm512_cvtepi32_ps(l[pn][r]));
                o[pn][r] = _mm512_fmadd_ps(f, _mm512_mul_ps(s, _mm512_set1_ps(xs[r][k0 >> xshift])), o[pn][r]);
                /* an item is a group, or (per_block) a half with the group's bias */
                const float xsum = per_block ? bsum[r][k0 >> 6] : p->sx[(m0 + r) * p->G_pad + g];
                o[pn][r] = _mm512_fmadd_ps(b, _mm512_set1_ps(xsum), o[pn][r]);
            }
        }
    }
    for (int pn = 0; pn < 2; pn++) {
        const int64_t n = n0 + 16 * pn;
        if (n >= n1) break;
        const __mmask16 m = n1 - n >= 16 ? 0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);
        for (int r = 0; r < MR; r++) lmc_quant_store16(p->out, p->odt, (size_t)((m0 + r) * p->N + n), m, o[pn][r]);
    }
}

static inline __attribute__((always_inline)) bool panels_run(const lmc_qmm_plan *p, int64_t n0, int64_t n1, const bool X8) {
    uint8_t *q = lmc_scratch(LMC_SCRATCH_QMM_PANELS, panels_bytes(p));
    if (!q) return false;
    float *s = (float *)(q + (size_t)PANEL_ROWS * (size_t)p->K), *b = s + 2 * 16 * p->G;
    for (int64_t nb = n0; nb < n1; nb += PANEL_ROWS) {
        const int64_t ne = n1 - nb < PANEL_ROWS ? n1 : nb + PANEL_ROWS;
        panels_expand(p, nb, ne, q, s, b);
        /* The next rows' weights into L2 while these compute, a slice a pass
         * over x (read in the expansion, they would come from DRAM: ~10 % of
         * a prefill's time went to the expansion waiting on them). */
        const char *next = (const char *)(p->wq + (size_t)ne * p->row_bytes);
        const size_t next_bytes = (size_t)((n1 - ne < PANEL_ROWS ? n1 - ne : PANEL_ROWS)) * p->row_bytes;
        const int64_t passes = (p->M + PANEL_MR - 1) / PANEL_MR;
        const size_t slice = (next_bytes / 64 + (size_t)passes - 1) / (size_t)passes * 64;
        size_t pf = 0;
        int64_t m0 = 0;
        for (; m0 + PANEL_MR <= p->M; m0 += PANEL_MR) {
            for (size_t e = pf + slice < next_bytes ? pf + slice : next_bytes; pf < e; pf += 64) _mm_prefetch(next + pf, _MM_HINT_T1);
            panels_rows(p, q, s, b, nb, ne, m0, PANEL_MR, X8);
        }
        switch (p->M - m0) {
        case 1: panels_rows(p, q, s, b, nb, ne, m0, 1, X8); break;
        case 2: panels_rows(p, q, s, b, nb, ne, m0, 2, X8); break;
        case 3: panels_rows(p, q, s, b, nb, ne, m0, 3, X8); break;
        default: break;
        }
    }
    return true;
}

static bool panels_run_x8(const lmc_qmm_plan *p, int64_t n0, int64_t n1) { return panels_run(p, n0, n1, true); }
static bool panels_run_x24(const lmc_qmm_plan *p, int64_t n0, int64_t n1) { return panels_run(p, n0, n1, false); }

lmc_status lmc_quantized_matmul_avx512(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                       const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    if (bits != 4 && bits != 8) return lmc_quantized_matmul_scalar(out, x, wq, scales, biases, group_size, bits);
    lmc_qmm_plan p;
    lmc_qmm_plan_init(&p, out, x, wq, scales, biases, group_size, bits);
    if (bits == 4 && p.M < LMC_QMM_PANEL_MIN_M) { /* the rows kernels' scale shuffle (the panels transpose scales instead) */
        for (int l = 0; l < 16; l++) { /* see block_scales4 */
            int g = p.gidx[l];
            for (int t = 0; t < 4; t++) {
                if (p.sdt == LMC_F32) p.shuf[4 * l + t] = (uint8_t)(4 * g + t);
                else if (p.sdt == LMC_BF16) p.shuf[4 * l + t] = t < 2 ? 0x80 : (uint8_t)(2 * g + t - 2); /* 0x80: zero */
            }
            if (p.sdt == LMC_F16) { /* word l of the low 256 bits */
                p.shuf[2 * l] = (uint8_t)(2 * g);
                p.shuf[2 * l + 1] = (uint8_t)(2 * g + 1);
            }
        }
    }
    if (p.M >= LMC_QMM_PANEL_MIN_M) {
        p.xp_bytes = p.xbits == 8 ? xi8p_bytes(p.K) : x24p_bytes(p.K);
        p.prep_x = p.xbits == 8 ? prep_xi8_panels : prep_x24_panels;
        p.run_many = p.xbits == 8 ? panels_run_x8 : panels_run_x24;
    } else if (bits == 4 && p.xbits == 8) {
        p.xp_bytes = xi8_bytes(p.K);
        p.prep_x = prep_xi8;
        LMC_QMM_PICK(&p, kernel4x8);
    } else if (bits == 4) {
        p.xp_bytes = x24_bytes(p.K);
        p.prep_x = prep_x24;
        LMC_QMM_PICK(&p, kernel4);
    } else if (p.xbits == 8) {
        p.xp_bytes = xq8_bytes(p.K);
        p.prep_x = prep_xq8;
        LMC_QMM_PICK(&p, kernel8x8);
    } else {
        p.xp_bytes = (size_t)((p.K + 63) / 64) * 256;
        p.prep_x = prep_x8;
        LMC_QMM_PICK(&p, kernel8);
    }
    p.nr = 32; /* the kernel's set-up once per 32 rows; it takes them 4 (or 2) at a time */
    return lmc_qmm_run(&p);
}
