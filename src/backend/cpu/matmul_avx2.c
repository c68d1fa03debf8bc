/* AVX2+FMA pieces of the blocked matmul (see matmul_blocked.c): bf16/f16
 * weights are widened to f32 in registers (F16C for f16). The 8-lane
 * vocabulary for matmul_simd.h and the rounding store. */
#include <immintrin.h>

#include "backend/cpu/matmul_internal.h"

typedef __m256 V;
#define VL 8
#define MR 6
#define DOT_MB 4
#define DOT_R 2

static inline V v_zero(void) { return _mm256_setzero_ps(); }
static inline V v_set1(float f) { return _mm256_set1_ps(f); }
static inline V v_loadu(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_storeu(float *p, V v) { _mm256_storeu_ps(p, v); }
static inline V v_add(V a, V b) { return _mm256_add_ps(a, b); }
static inline V v_fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline float v_hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* 8 elements of dtype dt at p, as f32. */
static inline V v_load_w(const void *p, lmc_dtype dt) {
    if (dt == LMC_F32) return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dt == LMC_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

#include "backend/cpu/matmul_simd.h"

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

const lmc_mm_isa lmc_mm_isa_avx2 = {
    .name = "avx2",
    .mr = MR,
    .nr = NR,
    .to_f32 = to_f32,
    .from_f32 = from_f32,
    .gemm_micro = gemm_micro,
    .gemv_nt = gemv_nt,
    .gemv_nt_streams = gemv_nt_streams,
    .streams = DOT_R,
    .gemv_nt_bf16 = NULL,
    .gemv_nn = gemv_nn,
};
