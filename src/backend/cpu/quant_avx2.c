/* AVX2 quantised matmul (needs AVX2 and FMA), driven by lmc_qmm_run.
 *
 * 4 bits: x is a 24-bit integer in two parts, x24 = 256*hi + lo (prep_x24
 * below); each 64-byte block of a weight row is read as two halves of 32
 * bytes. Read as 16-bit lanes, lane w of a half holds elements 4w..4w+3 in
 * nibbles t = 0..3, and each nibble masked into bits 8..11 of its lane is
 * 256*q: vpmaddwd multiplies that with the int16 hi part, pairs added into
 * 32-bit lanes. Read as bytes, the low and the high nibbles are the q of
 * the even and the odd elements as unsigned bytes: vpmaddubsw multiplies
 * them with the int8 lo part (pairs added into int16, then widened by one
 * vpmaddwd with ones). Both land lane i on u32 word i of the half (elements
 * 8i..8i+7, one group), so the exact int32 sum of q*x24 per lane is
 * converted to f32 once and scaled by the group scales (permuted into
 * lanes) and the block's xscale. Per half and x row that is 15 uops, 7 of
 * them integer multiply-adds (two int16 parts of x took 19 and 8).
 *
 * With int8 activations (plan xbits 8) x is the lo layout alone, one scale
 * per half (block of 64): two vpmaddubsw and one vpmaddwd a half.
 *
 * 8 bits: 32 bytes are 32 elements, u32 lane j holding 4j..4j+3 in bytes
 * t = 0..3; (v >> 8t) & 255 converted to f32 is multiplied with f32 x laid
 * out to match (xp[block][t][j] = x[32*block + 4j + t]). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant.h"

/* x for the 4-bit kernel as a 24-bit integer in two parts: per block of
 * 128 elements x ≈ xscale_b * x24 with |x24| <= X24_MAX (each element off by
 * at most 2^-24 of its block's largest |x|, about f32's own rounding), x24 =
 * 256*hi + lo with lo in [-128, 127]. A block's 384 bytes: hi as 128 int16
 * at [t][w] = hi(x[128*block + 4w + t]) (lane w of 64 bytes of nibbles read
 * as 16-bit lanes, nibble t), then per half h of the block 32 int8 lo of
 * the even elements and 32 of the odd ones, [h][e][i] = lo(x[128*block +
 * 64h + 2i + e]) (byte i of the half, nibble e); then the f32 xscales. The
 * group sums are those of the rounded x, so the bias term sees the same x. */
#define X24_MAX 8355711 /* |hi| <= 32639 */

static size_t x24_bytes(int64_t K) {
    int64_t blocks = (K + 127) / 128;
    return ((size_t)blocks * (384 + sizeof(float)) + 63) / 64 * 64;
}

static void prep_x24(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    const int64_t blocks = (p->K + 127) / 128;
    uint8_t *xp = xp_row;
    float *xscale = (float *)(xp + blocks * 384);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(X24_MAX), nlim = _mm256_set1_epi32(-X24_MAX);
    float v[128];
    int32_t q[128];
    for (int64_t b = 0; b < blocks; b++) {
        int64_t k0 = b * 128, n = p->K - k0 >= 128 ? 128 : p->K - k0; /* a multiple of 32 */
        for (int64_t i = 0; i < n; i++) v[i] = lmc_quant_load(x, p->xdt, k0 + i);
        __m256 amax = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(v + i)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        float scale = m / (float)X24_MAX, inv = m > 0.0f ? (float)X24_MAX / m : 0.0f;
        xscale[b] = scale;
        for (int64_t i = 0; i < n; i += 8) { /* rounds to nearest even, as rintf */
            __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + i), _mm256_set1_ps(inv)));
            _mm256_storeu_si256((__m256i *)(q + i), _mm256_max_epi32(_mm256_min_epi32(r, lim), nlim));
        }
        int16_t *hi_part = (int16_t *)(xp + b * 384);
        int8_t *lo_part = (int8_t *)(xp + b * 384 + 256);
        lmc_quant_block_sums(q, (int)n, k0, p->group_size, p->gshift, 1, scale, sx);
        for (int64_t i = 0; i < n; i++) {
            int32_t hi = (q[i] + 128) >> 8; /* drops lo = q - 256*hi, in [-128, 127], exactly */
            hi_part[(i % 4) * 32 + i / 4] = (int16_t)hi;
            lo_part[(i / 64) * 64 + (i % 2) * 32 + (i % 64) / 2] = (int8_t)(q[i] - 256 * hi);
        }
    }
}

/* x with int8 activations (xbits 8): per block of 128 elements the int8 q
 * laid out as prep_x24's lo part ([h][e][i] = q(x[128*block + 64h + 2i +
 * e])), 128 bytes; then the f32 scales of the blocks of 64 (one a half). */
static size_t xi8_bytes(int64_t K) {
    int64_t blocks = (K + 127) / 128;
    return ((size_t)blocks * (128 + 2 * sizeof(float)) + 63) / 64 * 64;
}

static void prep_xi8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    const int64_t blocks = (p->K + 127) / 128;
    int8_t *xp = xp_row;
    float *xscale = (float *)(xp + blocks * 128), v[LMC_QMM_X8_BLOCK];
    int32_t q[LMC_QMM_X8_BLOCK];
    for (int64_t k0 = 0; k0 < p->K; k0 += LMC_QMM_X8_BLOCK) {
        int n = p->K - k0 >= LMC_QMM_X8_BLOCK ? LMC_QMM_X8_BLOCK : (int)(p->K - k0); /* 64 or 32 */
        for (int i = 0; i < n; i++) v[i] = lmc_quant_load(x, p->xdt, k0 + i);
        float scale = lmc_quant_x8_scalar(v, n, q);
        xscale[k0 / 64] = scale;
        int8_t *half = xp + (k0 / 128) * 128 + (k0 % 128);
        lmc_quant_block_sums(q, n, k0, lmc_quant_x8_segment(p->group_size), p->gshift, 1, scale, sx);
        for (int i = 0; i < n; i++) half[(i % 2) * 32 + i / 2] = (int8_t)q[i];
    }
}

static void prep_x8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / 32, j = (k % 32) / 4, t = k % 4;
        float v = lmc_quant_load(x, p->xdt, k);
        xp[(b * 4 + t) * 8 + j] = v;
        sx[k >> p->gshift] += v;
    }
}

/* 8-bit weights with int8 activations: x rounded per block of 64 as every
 * path rounds it (lmc_quant_x8_scalar), laid out as prep_x8 lays out f32 x
 * and multiplied in f32 (vpmaddubsw would saturate: 2 * 255 * 127 > 32767). */
static void prep_x8r(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row, v[LMC_QMM_X8_BLOCK];
    for (int64_t k0 = 0; k0 < p->K; k0 += LMC_QMM_X8_BLOCK) {
        int n = p->K - k0 >= LMC_QMM_X8_BLOCK ? LMC_QMM_X8_BLOCK : (int)(p->K - k0);
        for (int i = 0; i < n; i++) v[i] = lmc_quant_load(x, p->xdt, k0 + i);
        lmc_quant_x8_round(v, n);
        for (int i = 0; i < n; i++) {
            int64_t k = k0 + i, b = k / 32, j = (k % 32) / 4, t = k % 4;
            xp[(b * 4 + t) * 8 + j] = v[i];
            sx[k >> p->gshift] += v[i];
        }
    }
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One half (64 elements, 32 bytes v) of block b with MR rows of x: sub = 0
 * or 1 picks the half of the block's x parts; s holds the lanes' scales. */
static inline __attribute__((always_inline)) void half4(const lmc_qmm_plan *p, __m256i v, __m256 s, const uint8_t *xp,
                                                        int64_t b, int sub, int64_t nblk, const int MR, const bool X8,
                                                        __m256 *acc) {
    const __m256i low = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi16(0x0F00), ones = _mm256_set1_epi16(1);
    /* bytes: q of the even (qe) and odd (qo) elements; 16-bit lane w: qe = nibbles 0 and 2 at bits 0 and 8,
     * qo = nibbles 1 and 3; each nibble t at bits 8..11 is 256*q of element 4w + t */
    __m256i qe = _mm256_and_si256(v, low), qo = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    __m256i q0 = _mm256_slli_epi16(qe, 8), q1 = _mm256_slli_epi16(qo, 8), q2 = _mm256_and_si256(qe, top),
            q3 = _mm256_and_si256(qo, top);
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
        const uint8_t *row = xp + (size_t)r * p->xp_bytes;
        if (X8) { /* one part: 2 * 15 * 127 per int16 pair, no saturation */
            const __m256i *xq = (const __m256i *)(row + b * 128) + 2 * sub;
            const float *xscale = (const float *)(row + nblk * 128);
            __m256i q = _mm256_add_epi16(_mm256_maddubs_epi16(qe, _mm256_load_si256(xq)),
                                         _mm256_maddubs_epi16(qo, _mm256_load_si256(xq + 1)));
            __m256i a = _mm256_madd_epi16(q, ones);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(s, _mm256_set1_ps(xscale[2 * b + sub])), acc[r]);
            continue;
        }
        const __m256i *xh = (const __m256i *)(row + b * 384) + sub, *xl = (const __m256i *)(row + b * 384 + 256) + 2 * sub;
        const float *xscale = (const float *)(row + nblk * 384);
        /* per 32-bit lane: 256 * 8 products of hi (<= 8 * 3840 * 32639 < 2^30) plus those of lo
         * (two pairs of int16 pairs, each <= 2 * 15 * 128, so vpmaddubsw never saturates) */
        __m256i a = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(q0, _mm256_load_si256(xh)),
                                                      _mm256_madd_epi16(q1, _mm256_load_si256(xh + 2))),
                                     _mm256_add_epi32(_mm256_madd_epi16(q2, _mm256_load_si256(xh + 4)),
                                                      _mm256_madd_epi16(q3, _mm256_load_si256(xh + 6))));
        __m256i lo = _mm256_add_epi16(_mm256_maddubs_epi16(qe, _mm256_load_si256(xl)),
                                      _mm256_maddubs_epi16(qo, _mm256_load_si256(xl + 1)));
        a = _mm256_add_epi32(a, _mm256_madd_epi16(lo, ones));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(s, _mm256_set1_ps(xscale[b])), acc[r]);
    }
}

/* The scales of the half of 64 elements from element e0 of a row (scales
 * from s_row on), lane l holding its group's (lane l covers elements e0 +
 * 8l .. e0 + 8l + 7); lanes past K (a last half of 32) get 0, so nothing
 * past the row's groups is read. WIDE: groups of 64 or more (one a half),
 * a template parameter so that the hot loop has no branch on it. */
static inline __m256 half_scales(const lmc_qmm_plan *p, const void *s_row, const lmc_dtype SDT, const bool WIDE, int64_t e0) {
    if (WIDE) return _mm256_set1_ps(lmc_quant_load(s_row, SDT, e0 >> p->gshift));
    float t[8];
    for (int l = 0; l < 8; l++) t[l] = e0 + 8 * l < p->K ? lmc_quant_load(s_row, SDT, (e0 >> p->gshift) + p->gidx[l]) : 0.0f;
    return _mm256_loadu_ps(t);
}

/* Block b of NR weight rows (row j's bytes at w + j*RS*row_bytes, its
 * scales at s_row + j*RS*G) with MR rows of x: acc[j*MR + r] += the
 * block's products. Whole blocks only (b < K / 128). */
static inline __attribute__((always_inline)) void block4(const lmc_qmm_plan *p, const uint8_t *w, const void *s_row,
                                                         const uint8_t *xp, int64_t b, int64_t nblk, const int NR,
                                                         const int MR, const bool X8, const lmc_dtype SDT, const bool WIDE,
                                                         size_t pf_l2, int64_t RS, __m256 *acc) {
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) {
        const uint8_t *wb = w + (size_t)(j * RS) * p->row_bytes + b * 64;
        const void *sj = (const char *)s_row + (size_t)(j * RS * p->G) * ssz;
        __m256i v0 = _mm256_loadu_si256((const __m256i *)wb), v1 = _mm256_loadu_si256((const __m256i *)(wb + 32));
        /* into L1 a little ahead along the rows, into L2 a later call's rows (lmc_qmm_l2_distance) */
        _mm_prefetch((const char *)(wb + LMC_QMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + pf_l2), _MM_HINT_T1);
        half4(p, v0, half_scales(p, sj, SDT, WIDE, b * 128), xp, b, 0, nblk, MR, X8, acc + j * MR);
        half4(p, v1, half_scales(p, sj, SDT, WIDE, b * 128 + 64), xp, b, 1, nblk, MR, X8, acc + j * MR);
    }
}

/* The halves past the whole blocks (K % 128 != 0: a half of 64 elements
 * and/or a last one of 32, 16 bytes) of NR rows with MR rows of x. */
static inline __attribute__((always_inline)) void tail4(const lmc_qmm_plan *p, const uint8_t *w, const void *s_row,
                                                        const uint8_t *xp, int64_t nblk, const int NR, const int MR,
                                                        const bool X8, const lmc_dtype SDT, int64_t RS, __m256 *acc) {
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
    const int64_t K = p->K, halves = (K + 63) / 64;
    for (int j = 0; j < NR; j++) {
        const uint8_t *wj = w + (size_t)(j * RS) * p->row_bytes;
        const void *sj = (const char *)s_row + (size_t)(j * RS * p->G) * ssz;
        for (int64_t h = 2 * (K / 128); h < halves; h++) {
            __m256i v = 64 * (h + 1) <= K ? _mm256_loadu_si256((const __m256i *)(wj + h * 32))
                                          : _mm256_maskload_epi32((const int *)(wj + h * 32),
                                                                  _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0));
            half4(p, v, half_scales(p, sj, SDT, p->group_size >= 64, h * 64), xp, h / 2, (int)(h % 2), nblk, MR, X8, acc + j * MR);
        }
    }
}

/* Blocks [b0, b1) of NR weight rows n + j*RS (bytes at w + j*RS*row_bytes)
 * with MR rows of x, added into acc[j*MR + r]; b1 = nblk includes the tail. */
static inline __attribute__((always_inline)) void kernel4_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                 const uint8_t *xp, int64_t b0, int64_t b1,
                                                                 const int NR, const int MR, const bool X8,
                                                                 const lmc_dtype SDT, int64_t RS, __m256 *acc) {
    const int64_t nblk = (p->K + 127) / 128, full = p->K / 128;
    const void *s_row = (const char *)p->scales + (size_t)(n * p->G) * (SDT == LMC_F32 ? 4 : 2);
    const size_t pf_l2 = lmc_qmm_l2_distance(p, NR, RS);
    const int64_t bend = b1 < full ? b1 : full;
    if (p->group_size >= 64)
        for (int64_t b = b0; b < bend; b++) block4(p, w, s_row, xp, b, nblk, NR, MR, X8, SDT, true, pf_l2, RS, acc);
    else
        for (int64_t b = b0; b < bend; b++) block4(p, w, s_row, xp, b, nblk, NR, MR, X8, SDT, false, pf_l2, RS, acc);
    if (full < b1) tail4(p, w, s_row, xp, nblk, NR, MR, X8, SDT, RS, acc);
}

/* acc += b_g * sx_g, then the horizontal sums: res[j*MR + r], or with RS >
 * 1 (one x row, rows of separate streams) res[j*res_step]. The biases past
 * the last whole 8 are read one by one (nothing past the row's groups). */
static inline __attribute__((always_inline)) void rows_finish(const lmc_qmm_plan *p, int64_t n, const float *sx,
                                                                 const int NR, const int MR, const lmc_dtype SDT,
                                                                 const int BITS, int64_t RS, int res_step, __m256 *acc,
                                                                 float *res) {
    (void)BITS; /* both widths here take y = q, so cF = b */
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
    for (int j = 0; j < NR; j++) {
        const void *bj = (const char *)p->biases + (size_t)((n + j * RS) * p->G) * ssz;
        for (int64_t g = 0; g < p->G; g += 8) {
            __m256 c;
            if (g + 8 <= p->G) {
                const void *src = (const char *)bj + g * (int64_t)ssz;
                c = SDT == LMC_F32    ? _mm256_loadu_ps(src)
                    : SDT == LMC_BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)src)), 16))
                                      : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src));
            } else {
                float t[8];
                for (int l = 0; l < 8; l++) t[l] = g + l < p->G ? lmc_quant_load(bj, SDT, g + l) : 0.0f;
                c = _mm256_loadu_ps(t);
            }
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) acc[j * MR + r] = _mm256_fmadd_ps(c, _mm256_loadu_ps(sx + r * p->G_pad + g), acc[j * MR + r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) res[RS > 1 ? j * res_step : j * MR + r] = hsum(acc[j * MR + r]);
    }
}

/* 8 bits: block b (32 elements, u32 lane j holding 4j..4j+3 in bytes t =
 * 0..3) of NR weight rows (row j's bytes at w + j*RS*row_bytes, its scales
 * at s_row + j*RS*G) with MR rows of x; a block is within one group. */
static inline __attribute__((always_inline)) void block8(const lmc_qmm_plan *p, const uint8_t *w, const void *s_row,
                                                         const uint8_t *xp, int64_t b, const int NR, const int MR,
                                                         const lmc_dtype SDT, size_t pf_l2, int64_t RS, __m256 *acc) {
    const __m256i qmask = _mm256_set1_epi32(0xFF);
    const size_t ssz = SDT == LMC_F32 ? 4 : 2;
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) {
        const uint8_t *wb = w + (size_t)(j * RS) * p->row_bytes + b * 32;
        __m256i v = _mm256_loadu_si256((const __m256i *)wb);
        _mm_prefetch((const char *)(wb + LMC_QMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + pf_l2), _MM_HINT_T1);
        __m256 s = _mm256_set1_ps(lmc_quant_load((const char *)s_row + (size_t)(j * RS * p->G) * ssz, SDT, (b * 32) >> p->gshift));
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256 y = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, t * 8), qmask));
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const float *xb = (const float *)(xp + (size_t)r * p->xp_bytes) + (b * 4 + t) * 8;
                a[r] = _mm256_fmadd_ps(y, _mm256_load_ps(xb), a[r]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) acc[j * MR + r] = _mm256_fmadd_ps(a[r], s, acc[j * MR + r]);
    }
}

/* Blocks [b0, b1) of NR 8-bit weight rows n + j*RS (bytes at w +
 * j*RS*row_bytes) with MR rows of x, added into acc[j*MR + r]. */
static inline __attribute__((always_inline)) void kernel8_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                 const uint8_t *xp, int64_t b0, int64_t b1,
                                                                 const int NR, const int MR, const lmc_dtype SDT,
                                                                 int64_t RS, __m256 *acc) {
    const void *s_row = (const char *)p->scales + (size_t)(n * p->G) * (SDT == LMC_F32 ? 4 : 2);
    const size_t pf_l2 = lmc_qmm_l2_distance(p, NR, RS);
    for (int64_t b = b0; b < b1; b++) block8(p, w, s_row, xp, b, NR, MR, SDT, pf_l2, RS, acc);
}

/* --- what the 4- and 8-bit kernels share ------------------------------- */

/* A row's blocks (4 bits: 128 elements, x as 384 bytes of parts; 8 bits: 32
 * elements, x as 128 bytes of f32; K is a multiple of 32) and their sums. */
static inline int64_t row_blocks(const lmc_qmm_plan *p, const int BITS) { return BITS != 8 ? (p->K + 127) / 128 : p->K / 32; }

static inline __attribute__((always_inline)) void kernel_blocks(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                                const uint8_t *xp, int64_t b0, int64_t b1, const int NR,
                                                                const int MR, const lmc_dtype SDT, const int BITS,
                                                                int64_t RS, __m256 *acc) {
    if (BITS != 8) kernel4_blocks(p, n, w, xp, b0, b1, NR, MR, BITS == LMC_QMM_W4X8, SDT, RS, acc);
    else kernel8_blocks(p, n, w, xp, b0, b1, NR, MR, SDT, RS, acc);
}

/* NR weight rows n + j*RS (bytes at w + j*RS*row_bytes) with MR rows of x. */
static inline __attribute__((always_inline)) void kernel_rows(const lmc_qmm_plan *p, int64_t n, const uint8_t *w,
                                                              const uint8_t *xp, const float *sx, const int NR,
                                                              const int MR, const lmc_dtype SDT, const int BITS,
                                                              int64_t RS, int res_step, float *res) {
    __m256 acc[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm256_setzero_ps();
    kernel_blocks(p, n, w, xp, 0, row_blocks(p, BITS), NR, MR, SDT, BITS, RS, acc);
    rows_finish(p, n, sx, NR, MR, SDT, BITS, RS, res_step, acc, res);
}

/* The bytes of a block's prepared x. */
static inline size_t x_block_bytes(const int BITS) { return BITS == 4 ? 384 : 128; } /* 4x8: 128 too */

LMC_QMM_DEFINE_CHUNKED(__m256, _mm256_setzero_ps())

LMC_QMM_KERNELS(4, kernel4)
LMC_QMM_KERNELS(LMC_QMM_W4X8, kernel4x8)
LMC_QMM_KERNELS(8, kernel8)

lmc_status lmc_quantized_matmul_avx2(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                     const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    if (bits != 4 && bits != 8) return lmc_quantized_matmul_scalar(out, x, wq, scales, biases, group_size, bits);
    lmc_qmm_plan p;
    lmc_qmm_plan_init(&p, out, x, wq, scales, biases, group_size, bits);
    if (bits == 4 && p.xbits == 8) {
        p.xp_bytes = xi8_bytes(p.K);
        p.prep_x = prep_xi8;
        LMC_QMM_PICK(&p, kernel4x8);
    } else if (bits == 4) {
        p.xp_bytes = x24_bytes(p.K);
        p.prep_x = prep_x24;
        LMC_QMM_PICK(&p, kernel4);
    } else {
        p.xp_bytes = ((size_t)p.K * sizeof(float) + 63) / 64 * 64;
        p.prep_x = p.xbits == 8 ? prep_x8r : prep_x8;
        LMC_QMM_PICK(&p, kernel8);
    }
    p.nr = 32; /* the kernel's set-up once per 32 rows; it takes them 4 (or 2) at a time */
    return lmc_qmm_run(&p);
}
