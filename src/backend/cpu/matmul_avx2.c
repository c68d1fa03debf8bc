/* AVX2+FMA pieces of the blocked matmul (see matmul_blocked.c): bf16/f16
 * weights are widened to f32 in registers (F16C for f16). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/matmul_internal.h"

enum { MR = 6, NR = 16 };

/* 8 elements of dtype dt at p, as f32. */
static inline __m256 load8(const void *p, lmc_dtype dt) {
    if (dt == LMC_F32) return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dt == LMC_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline float load1(const void *p, int64_t i, lmc_dtype dt) {
    if (dt == LMC_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == LMC_BF16 ? lmc_bf16_to_f32(h) : lmc_f16_to_f32(h);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void to_f32(float *dst, const void *src, lmc_dtype dt, int64_t n) {
    if (dt == LMC_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8((const uint16_t *)src + i, dt));
    for (; i < n; i++) dst[i] = load1(src, i, dt);
}

static void from_f32(void *dst, lmc_dtype dt, const float *src, int64_t n) {
    if (dt == LMC_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    int64_t i = 0;
    if (dt == LMC_F16)
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(d + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) d[i] = dt == LMC_BF16 ? lmc_f32_to_bf16(src[i]) : lmc_f32_to_f16(src[i]);
}

/* 6 x 16 register tile: 12 accumulators, two B vectors, one broadcast. */
static void gemm_micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(bp + k * NR), b1 = _mm256_loadu_ps(bp + k * NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 av = _mm256_broadcast_ss(ap + k * MR + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(ci));
            acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(ci + 8));
        }
        _mm256_storeu_ps(ci, acc[i][0]);
        _mm256_storeu_ps(ci + 8, acc[i][1]);
    }
}

/* m (1..4) activation rows against 4 weight rows: 16 accumulators. */
static inline __attribute__((always_inline)) void gemv_nt_block(int64_t K, const int m, const float *x, int64_t ldx,
                                                                const char *w, lmc_dtype wdt, int64_t ldwb, int nrows,
                                                                float *y, int64_t ldy) {
    size_t wsz = lmc_dtype_size(wdt);
    __m256 acc[4][4];
    const char *wr[4];
    for (int r = 0; r < 4; r++) wr[r] = w + (r < nrows ? r : 0) * ldwb;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[i][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            wv[r] = load8(wr[r] + k * (int64_t)wsz, wdt);
            /* Rows end at page boundaries where the hardware prefetcher stops:
             * fetch the same place of the next block's rows ahead of time. */
            _mm_prefetch(wr[r] + 4 * ldwb + k * (int64_t)wsz, _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            if (i >= m) break;
            __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int r = 0; r < nrows; r++) {
            float s = hsum8(acc[i][r]);
            for (int64_t q = k; q < K; q++) s += x[i * ldx + q] * load1(wr[r], q, wdt);
            y[i * ldy + r] = s;
        }
}

static void gemv_nt(int64_t K, int m, const float *x, int64_t ldx, const void *w, lmc_dtype wdt, int64_t ldw, int64_t n,
                    float *y, int64_t ldy) {
    int64_t ldwb = ldw * (int64_t)lmc_dtype_size(wdt);
    for (int64_t j = 0; j < n; j += 4) {
        int nrows = n - j < 4 ? (int)(n - j) : 4;
        const char *wj = (const char *)w + j * ldwb;
        switch (m) {
        case 1: gemv_nt_block(K, 1, x, ldx, wj, wdt, ldwb, nrows, y + j, ldy); break;
        case 2: gemv_nt_block(K, 2, x, ldx, wj, wdt, ldwb, nrows, y + j, ldy); break;
        case 3: gemv_nt_block(K, 3, x, ldx, wj, wdt, ldwb, nrows, y + j, ldy); break;
        default: gemv_nt_block(K, 4, x, ldx, wj, wdt, ldwb, nrows, y + j, ldy); break;
        }
    }
}

/* Row-major b: for each k, y[i, :] += x[i, k] * b[k, :], 32 columns at a time. */
static void gemv_nn(int64_t K, int m, const float *x, int64_t ldx, const void *b, lmc_dtype bdt, int64_t ldb, int64_t n,
                    float *y, int64_t ldy) {
    size_t bsz = lmc_dtype_size(bdt);
    const char *bb = b;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 acc[4][4];
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < 4; r++) acc[i][r] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            const char *row = bb + (k * ldb + j) * (int64_t)bsz;
            __m256 bv[4];
            for (int r = 0; r < 4; r++) bv[r] = load8(row + r * 8 * (int64_t)bsz, bdt);
            for (int i = 0; i < m; i++) {
                __m256 xv = _mm256_set1_ps(x[i * ldx + k]);
                for (int r = 0; r < 4; r++) acc[i][r] = _mm256_fmadd_ps(xv, bv[r], acc[i][r]);
            }
        }
        for (int i = 0; i < m; i++)
            for (int r = 0; r < 4; r++) _mm256_storeu_ps(y + i * ldy + j + r * 8, acc[i][r]);
    }
    for (; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += x[i * ldx + k] * load1(bb + k * ldb * (int64_t)bsz, j, bdt);
            y[i * ldy + j] = s;
        }
}

const lmc_mm_isa lmc_mm_isa_avx2 = {
    .name = "avx2",
    .mr = MR,
    .nr = NR,
    .to_f32 = to_f32,
    .from_f32 = from_f32,
    .gemm_micro = gemm_micro,
    .gemv_nt = gemv_nt,
    .gemv_nt_bf16 = NULL,
    .gemv_nn = gemv_nn,
};
