/* AVX-512 pieces of the blocked matmul (see matmul_blocked.c): bf16/f16
 * weights are widened to f32 in registers; bf16 @ bf16 GEMV uses vdpbf16ps
 * (both operands are bf16 already, so nothing is rounded that was not). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/matmul_internal.h"

enum { MR = 12, NR = 32 };

/* 16 elements of dtype dt at p, as f32. */
static inline __m512 load16(const void *p, lmc_dtype dt) {
    if (dt == LMC_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (dt == LMC_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

static inline float load1(const void *p, int64_t i, lmc_dtype dt) {
    if (dt == LMC_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == LMC_BF16 ? lmc_bf16_to_f32(h) : lmc_f16_to_f32(h);
}

static void to_f32(float *dst, const void *src, lmc_dtype dt, int64_t n) {
    if (dt == LMC_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16((const uint16_t *)src + i, dt));
    for (; i < n; i++) dst[i] = load1(src, i, dt);
}

/* Round to nearest even, NaN kept quiet: the same bits as lmc_f32_to_bf16. */
static inline __m256i f32_to_bf16x16(__m512 v) {
    __m512i x = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

static void from_f32(void *dst, lmc_dtype dt, const float *src, int64_t n) {
    int64_t i = 0;
    if (dt == LMC_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        __m256i h = dt == LMC_BF16 ? f32_to_bf16x16(v) : _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(d + i), h);
    }
    for (; i < n; i++) d[i] = dt == LMC_BF16 ? lmc_f32_to_bf16(src[i]) : lmc_f32_to_f16(src[i]);
}

/* 12 x 32 register tile: 24 accumulators, two B vectors, one broadcast. */
static void gemm_micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(bp + k * NR), b1 = _mm512_loadu_ps(bp + k * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(ap[k * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(ci));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(ci + 16));
        }
        _mm512_storeu_ps(ci, acc[i][0]);
        _mm512_storeu_ps(ci + 16, acc[i][1]);
    }
}

/* m (1..4) activation rows against 4 weight rows: 16 accumulators. */
static inline __attribute__((always_inline)) void gemv_nt_block(int64_t K, const int m, const float *x, int64_t ldx,
                                                                const char *w, lmc_dtype wdt, int64_t ldwb, int nrows,
                                                                float *y, int64_t ldy) {
    size_t wsz = lmc_dtype_size(wdt);
    __m512 acc[4][4];
    const char *wr[4];
    for (int r = 0; r < 4; r++) wr[r] = w + (r < nrows ? r : 0) * ldwb;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[i][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            wv[r] = load16(wr[r] + k * (int64_t)wsz, wdt);
            /* Rows end at page boundaries where the hardware prefetcher stops:
             * fetch the same place of the next block's rows ahead of time. */
            _mm_prefetch(wr[r] + 4 * ldwb + k * (int64_t)wsz, _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            if (i >= m) break;
            __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int r = 0; r < nrows; r++) {
            float s = _mm512_reduce_add_ps(acc[i][r]);
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

/* bf16 @ bf16: vdpbf16ps multiplies pairs of bf16 and adds them into f32. */
static inline __attribute__((always_inline)) void gemv_bf16_block(int64_t K, const int m, const uint16_t *x,
                                                                  int64_t ldx, const uint16_t *w, int64_t ldw,
                                                                  int nrows, float *y, int64_t ldy) {
    __m512 acc[4][4];
    const uint16_t *wr[4];
    for (int r = 0; r < 4; r++) wr[r] = w + (r < nrows ? r : 0) * ldw;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[i][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            wv[r] = (__m512bh)_mm512_loadu_si512(wr[r] + k);
            _mm_prefetch((const char *)(wr[r] + 4 * ldw + k), _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            if (i >= m) break;
            __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], xv, wv[r]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int r = 0; r < nrows; r++) {
            float s = _mm512_reduce_add_ps(acc[i][r]);
            for (int64_t q = k; q < K; q++) s += lmc_bf16_to_f32(x[i * ldx + q]) * lmc_bf16_to_f32(wr[r][q]);
            y[i * ldy + r] = s;
        }
}

static void gemv_nt_bf16(int64_t K, int m, const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw, int64_t n,
                         float *y, int64_t ldy) {
    for (int64_t j = 0; j < n; j += 4) {
        int nrows = n - j < 4 ? (int)(n - j) : 4;
        const uint16_t *wj = w + j * ldw;
        switch (m) {
        case 1: gemv_bf16_block(K, 1, x, ldx, wj, ldw, nrows, y + j, ldy); break;
        case 2: gemv_bf16_block(K, 2, x, ldx, wj, ldw, nrows, y + j, ldy); break;
        case 3: gemv_bf16_block(K, 3, x, ldx, wj, ldw, nrows, y + j, ldy); break;
        default: gemv_bf16_block(K, 4, x, ldx, wj, ldw, nrows, y + j, ldy); break;
        }
    }
}

/* Row-major b: for each k, y[i, :] += x[i, k] * b[k, :], 64 columns at a time. */
static void gemv_nn(int64_t K, int m, const float *x, int64_t ldx, const void *b, lmc_dtype bdt, int64_t ldb, int64_t n,
                    float *y, int64_t ldy) {
    size_t bsz = lmc_dtype_size(bdt);
    const char *bb = b;
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        __m512 acc[4][4];
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < 4; r++) acc[i][r] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            const char *row = bb + (k * ldb + j) * (int64_t)bsz;
            __m512 bv[4];
            for (int r = 0; r < 4; r++) bv[r] = load16(row + r * 16 * (int64_t)bsz, bdt);
            for (int i = 0; i < m; i++) {
                __m512 xv = _mm512_set1_ps(x[i * ldx + k]);
                for (int r = 0; r < 4; r++) acc[i][r] = _mm512_fmadd_ps(xv, bv[r], acc[i][r]);
            }
        }
        for (int i = 0; i < m; i++)
            for (int r = 0; r < 4; r++) _mm512_storeu_ps(y + i * ldy + j + r * 16, acc[i][r]);
    }
    for (; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += x[i * ldx + k] * load1(bb + k * ldb * (int64_t)bsz, j, bdt);
            y[i * ldy + j] = s;
        }
}

const lmc_mm_isa lmc_mm_isa_avx512 = {
    .name = "avx512",
    .mr = MR,
    .nr = NR,
    .to_f32 = to_f32,
    .from_f32 = from_f32,
    .gemm_micro = gemm_micro,
    .gemv_nt = gemv_nt,
    .gemv_nt_bf16 = gemv_nt_bf16,
    .gemv_nn = gemv_nn,
};
