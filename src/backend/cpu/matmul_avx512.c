/* AVX-512 pieces of the blocked matmul (see matmul_blocked.c): the 16-lane
 * vocabulary for matmul_simd.h, the bf16 rounding store, and the bf16 @ bf16
 * GEMV with vdpbf16ps (both operands are bf16 already, so nothing is rounded
 * that was not). */
#include <immintrin.h>

#include "backend/cpu/matmul_internal.h"

typedef __m512 V;
#define VL 16
#define MR 12
#define DOT_MB 6
#define DOT_R 4

static inline V v_zero(void) { return _mm512_setzero_ps(); }
static inline V v_set1(float f) { return _mm512_set1_ps(f); }
static inline V v_loadu(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_storeu(float *p, V v) { _mm512_storeu_ps(p, v); }
static inline V v_add(V a, V b) { return _mm512_add_ps(a, b); }
static inline V v_fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline float v_hsum(V v) { return _mm512_reduce_add_ps(v); }
/* 16 elements of dtype dt at p, as f32. */
static inline V v_load_w(const void *p, lmc_dtype dt) {
    if (dt == LMC_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (dt == LMC_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

#include "backend/cpu/matmul_simd.h"

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

const lmc_mm_isa lmc_mm_isa_avx512 = {
    .name = "avx512",
    .mr = MR,
    .nr = NR,
    .to_f32 = to_f32,
    .from_f32 = from_f32,
    .gemm_micro = gemm_micro,
    .gemv_nt = gemv_nt,
    .gemv_nt_streams = gemv_nt_streams,
    .streams = DOT_R,
    .gemv_nt_bf16 = gemv_nt_bf16,
    .gemv_nn = gemv_nn,
};
