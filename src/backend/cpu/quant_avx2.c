/* AVX2 quantised matmul (needs AVX2 and FMA), driven by lmc_qmm_run.
 *
 * 4 bits: x is a 24-bit integer in two int16 parts (prep_x24 below); each
 * 64-byte block of a weight row is read as two halves of 32 bytes, whose
 * 16-bit lane w holds elements 4w..4w+3 of the half in nibbles t = 0..3.
 * (v >> 4t) & 15 are 16-bit q, and vpmaddwd multiplies them with each part
 * of x and adds pairs into 32-bit lanes;
 * lane i covers u32 word i of the half, hence one group, so per half the
 * sums are converted to f32 once and scaled by the group scales (permuted
 * into lanes) and the block's xscale.
 *
 * 8 bits: 32 bytes are 32 elements, u32 lane j holding 4j..4j+3 in bytes
 * t = 0..3; (v >> 8t) & 255 converted to f32 is multiplied with f32 x laid
 * out to match (xp[block][t][j] = x[32*block + 4j + t]). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant.h"

static inline float load_x(const void *x, lmc_dtype dt, int64_t k) {
    switch (dt) {
    case LMC_F32: return ((const float *)x)[k];
    case LMC_BF16: return lmc_quant_bf16(((const uint16_t *)x)[k]);
    default: return lmc_f16_to_f32(((const uint16_t *)x)[k]);
    }
}

/* x for the 4-bit kernel as a 24-bit integer in two int16 parts: per block
 * of 128 elements x ≈ xscale_b * x24 with |x24| <= X24_MAX (each element off
 * by at most 2^-24 of its block's largest |x|, about f32's own rounding),
 * x24 = 256*hi + lo with lo in [-128, 127]. Each part is laid out to match 64
 * bytes of packed nibbles read as 16-bit lanes (lane w holds elements
 * 4w..4w+3, nibble t at bits 4t): 128 int16 at [t][w] = part(x[128*block +
 * 4w + t]), hi then lo (512 bytes a block); then the f32 xscales. The group
 * sums are those of the rounded x, so the bias term sees the same x. */
#define X24_MAX 8355711 /* |hi| <= 32639 */

static size_t x24_bytes(int64_t K) {
    int64_t blocks = (K + 127) / 128;
    return ((size_t)blocks * (512 + sizeof(float)) + 63) / 64 * 64;
}

static void prep_x24(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    const int64_t blocks = (p->K + 127) / 128;
    int16_t *xp = xp_row;
    float *xscale = (float *)((uint8_t *)xp_row + blocks * 512);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(X24_MAX), nlim = _mm256_set1_epi32(-X24_MAX);
    float v[128];
    int32_t q[128];
    for (int64_t b = 0; b < blocks; b++) {
        int64_t k0 = b * 128, n = p->K - k0 >= 128 ? 128 : p->K - k0; /* a multiple of 32 */
        for (int64_t i = 0; i < n; i++) v[i] = load_x(x, p->xdt, k0 + i);
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
        int32_t gsum = 0; /* at most 128 * X24_MAX < 2^31 */
        for (int64_t i = 0; i < n; i++) {
            int32_t hi = (q[i] + 128) >> 8; /* drops lo = q - 256*hi, in [-128, 127], exactly */
            xp[b * 256 + (i % 4) * 32 + i / 4] = (int16_t)hi;
            xp[b * 256 + 128 + (i % 4) * 32 + i / 4] = (int16_t)(q[i] - 256 * hi);
            gsum += q[i];
            if (((k0 + i + 1) & (p->group_size - 1)) == 0) { /* groups end at block ends or inside */
                sx[(k0 + i) >> p->gshift] += (float)gsum * scale;
                gsum = 0;
            }
        }
    }
}

static void prep_x8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / 32, j = (k % 32) / 4, t = k % 4;
        float v = load_x(x, p->xdt, k);
        xp[(b * 4 + t) * 8 + j] = v;
        sx[k >> p->gshift] += v;
    }
}

/* sF = s and cF = b for weight row n (y = q), zero past G. */
static void prep_w(const lmc_qmm_plan *p, int64_t n, float *sF, float *cF) {
    int64_t i = n * p->G;
    int64_t g = 0;
    if (p->sdt == LMC_F32) {
        memcpy(sF, (const float *)p->scales + i, (size_t)p->G * sizeof(float));
        memcpy(cF, (const float *)p->biases + i, (size_t)p->G * sizeof(float));
        g = p->G;
    } else if (p->sdt == LMC_BF16) {
        const uint16_t *s = (const uint16_t *)p->scales + i, *b = (const uint16_t *)p->biases + i;
        for (; g + 8 <= p->G; g += 8) {
            _mm256_store_ps(sF + g, _mm256_castsi256_ps(_mm256_slli_epi32(
                                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + g))), 16)));
            _mm256_store_ps(cF + g, _mm256_castsi256_ps(_mm256_slli_epi32(
                                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + g))), 16)));
        }
        for (; g < p->G; g++) {
            sF[g] = lmc_quant_bf16(s[g]);
            cF[g] = lmc_quant_bf16(b[g]);
        }
    } else {
        const uint16_t *s = (const uint16_t *)p->scales + i, *b = (const uint16_t *)p->biases + i;
        for (; g + 8 <= p->G; g += 8) {
            _mm256_store_ps(sF + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + g))));
            _mm256_store_ps(cF + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + g))));
        }
        for (; g < p->G; g++) {
            sF[g] = lmc_f16_to_f32(s[g]);
            cF[g] = lmc_f16_to_f32(b[g]);
        }
    }
    for (; g < p->G_pad; g++) sF[g] = cF[g] = 0.0f;
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The scales of 8 lanes covering 64 (4 bits) or 32 (8 bits) elements from element e0 of the row. */
static inline __m256 lane_scales(const lmc_qmm_plan *p, const float *sF, int64_t e0, int E, __m256i gidx) {
    int64_t g = e0 >> p->gshift;
    if (p->group_size >= E) return _mm256_set1_ps(sF[g]);
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(sF + g), gidx);
}

static inline void finish(const lmc_qmm_plan *p, const float *cF, const float *sx, int MR, __m256 *acc, float *res) {
    for (int64_t g = 0; g < p->G; g += 8) {
        __m256 c = _mm256_load_ps(cF + g);
        for (int r = 0; r < MR; r++) acc[r] = _mm256_fmadd_ps(c, _mm256_loadu_ps(sx + r * p->G_pad + g), acc[r]);
    }
    for (int r = 0; r < MR; r++) res[r] = hsum(acc[r]);
}

/* One half (64 elements, 32 bytes v) of block b with MR rows of x: sub = 0
 * or 1 picks the half of the block's x parts; s holds the lanes' scales. */
static inline __attribute__((always_inline)) void half4(const lmc_qmm_plan *p, __m256i v, __m256 s, const uint8_t *xp,
                                                        int64_t b, int sub, int64_t nblk, const int MR, __m256 *acc) {
    const __m256i low = _mm256_set1_epi16(0x000F);
    __m256i q0 = _mm256_and_si256(v, low), q1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
            q2 = _mm256_and_si256(_mm256_srli_epi16(v, 8), low), q3 = _mm256_srli_epi16(v, 12);
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
        const uint8_t *row = xp + (size_t)r * p->xp_bytes;
        const __m256i *xh = (const __m256i *)(row + b * 512) + sub, *xl = xh + 8;
        const float *xscale = (const float *)(row + nblk * 512);
        /* per 32-bit lane 8 products: hi sums <= 8 * 15 * 32639, so (hi << 8) + lo fits */
        __m256i ah = _mm256_add_epi32(_mm256_madd_epi16(q0, _mm256_load_si256(xh)),
                                      _mm256_madd_epi16(q1, _mm256_load_si256(xh + 2)));
        __m256i al = _mm256_add_epi32(_mm256_madd_epi16(q0, _mm256_load_si256(xl)),
                                      _mm256_madd_epi16(q1, _mm256_load_si256(xl + 2)));
        ah = _mm256_add_epi32(ah, _mm256_add_epi32(_mm256_madd_epi16(q2, _mm256_load_si256(xh + 4)),
                                                   _mm256_madd_epi16(q3, _mm256_load_si256(xh + 6))));
        al = _mm256_add_epi32(al, _mm256_add_epi32(_mm256_madd_epi16(q2, _mm256_load_si256(xl + 4)),
                                                   _mm256_madd_epi16(q3, _mm256_load_si256(xl + 6))));
        __m256i a = _mm256_add_epi32(_mm256_slli_epi32(ah, 8), al);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(s, _mm256_set1_ps(xscale[b])), acc[r]);
    }
}

/* Whole blocks two halves at a time, then the tail (a half of 64 elements
 * and/or a last half of 32, 16 bytes). Per block the x parts' addresses are
 * computed once and, for groups of 64 or more, the scales are broadcast
 * without a permute; both halves' loads and prefetches go out together. The
 * same arithmetic per half in the same order as one half at a time, so the
 * bits are unchanged. Forced on a Zen 4 (`LMC_CPU_PATH=avx2`), where the
 * one-half loop was instruction-bound: Qwen3-0.6B 4-bit decode one thread
 * 21.3 -> 26.8 tok/s, two threads 40.6 -> 43.9 (medians of 4 and 6
 * alternations). */
static inline __attribute__((always_inline)) void kernel4_body(const lmc_qmm_plan *p, const uint8_t *w,
                                                               const float *sF, const float *cF, const uint8_t *xp,
                                                               const float *sx, const int MR, float *res) {
    const __m256i gidx = _mm256_loadu_si256((const __m256i *)p->gidx);
    const int64_t K = p->K, nblk = (K + 127) / 128, full = K / 128, halves = (K + 63) / 64;
    const bool wide = p->group_size >= 64;
    const int gshift = p->gshift;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < full; b++) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(w + b * 64)), v1 = _mm256_loadu_si256((const __m256i *)(w + b * 64 + 32));
        _mm_prefetch((const char *)(w + b * 64 + LMC_QMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(w + b * 64 + 32 + LMC_QMM_PREFETCH), _MM_HINT_T0);
        __m256 s0 = wide ? _mm256_set1_ps(sF[(b * 128) >> gshift]) : lane_scales(p, sF, b * 128, 64, gidx);
        __m256 s1 = wide ? _mm256_set1_ps(sF[(b * 128 + 64) >> gshift]) : lane_scales(p, sF, b * 128 + 64, 64, gidx);
        half4(p, v0, s0, xp, b, 0, nblk, MR, acc);
        half4(p, v1, s1, xp, b, 1, nblk, MR, acc);
    }
    for (int64_t h = 2 * full; h < halves; h++) {
        /* K is a multiple of 32: a last half of 32 elements is 16 bytes */
        __m256i v = 64 * (h + 1) <= K ? _mm256_loadu_si256((const __m256i *)(w + h * 32))
                                      : _mm256_maskload_epi32((const int *)(w + h * 32),
                                                              _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0));
        half4(p, v, lane_scales(p, sF, h * 64, 64, gidx), xp, h / 2, (int)(h % 2), nblk, MR, acc);
    }
    finish(p, cF, sx, MR, acc, res);
}

static inline __attribute__((always_inline)) void kernel8_body(const lmc_qmm_plan *p, const uint8_t *w,
                                                               const float *sF, const float *cF, const uint8_t *xp,
                                                               const float *sx, const int MR, float *res) {
    const __m256i qmask = _mm256_set1_epi32(0xFF);
    const __m256i gidx = _mm256_loadu_si256((const __m256i *)p->gidx);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < p->K / 32; b++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w + b * 32));
        _mm_prefetch((const char *)(w + b * 32 + LMC_QMM_PREFETCH), _MM_HINT_T0);
        __m256 s = lane_scales(p, sF, b * 32, 32, gidx);
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
        for (int r = 0; r < MR; r++) acc[r] = _mm256_fmadd_ps(a[r], s, acc[r]);
    }
    finish(p, cF, sx, MR, acc, res);
}

static void kernel(const lmc_qmm_plan *p, int64_t n, int nn, const uint8_t *w, const float *sF, const float *cF,
                   const uint8_t *xp, const float *sx, int mr, float *res) {
    (void)n;
    (void)nn; /* nr = 1 */
#define KB(MR)                                                                   \
    case MR:                                                                     \
        if (p->bits == 4) kernel4_body(p, w, sF, cF, xp, sx, MR, res);          \
        else kernel8_body(p, w, sF, cF, xp, sx, MR, res);                       \
        break;
    switch (mr) {
        KB(1)
        KB(2)
        KB(3)
        KB(4)
    }
#undef KB
}

lmc_status lmc_quantized_matmul_avx2(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                     const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    if (bits != 4 && bits != 8) return lmc_quantized_matmul_scalar(out, x, wq, scales, biases, group_size, bits);
    lmc_qmm_plan p;
    lmc_qmm_plan_init(&p, out, x, wq, scales, biases, group_size, bits);
    if (bits == 4) {
        p.xp_bytes = x24_bytes(p.K);
        p.prep_x = prep_x24;
    } else {
        p.xp_bytes = ((size_t)p.K * sizeof(float) + 63) / 64 * 64;
        p.prep_x = prep_x8;
    }
    p.prep_w = prep_w;
    p.kernel = kernel;
    return lmc_qmm_run(&p);
}
