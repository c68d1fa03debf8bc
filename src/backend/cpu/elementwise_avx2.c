/* AVX2+FMA element-wise, reduction and softmax kernels: the 8-lane vector
 * vocabulary for simd_kernels.h. */
#include <immintrin.h>

#include "backend/cpu/cpu_loop.h"

typedef __m256 V;
typedef __m256 M; /* comparison results: all-ones lanes */
#define W 8
#define SFX avx2

static inline V v_set1(float f) { return _mm256_set1_ps(f); }
static inline V v_loadf(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_storef(float *p, V v) { _mm256_storeu_ps(p, v); }
static inline V v_loadbf(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
/* Round to nearest even into bf16, quiet NaN kept: lmc_f32_to_bf16 lane by lane. */
static inline void v_storebf(uint16_t *p, V v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), nan));
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(packed));
}
static inline V v_add(V a, V b) { return _mm256_add_ps(a, b); }
static inline V v_sub(V a, V b) { return _mm256_sub_ps(a, b); }
static inline V v_mul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V v_div(V a, V b) { return _mm256_div_ps(a, b); }
static inline V v_fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V v_max(V a, V b) { return _mm256_max_ps(a, b); }
static inline V v_min(V a, V b) { return _mm256_min_ps(a, b); }
static inline V v_sqrt(V a) { return _mm256_sqrt_ps(a); }
static inline V v_abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline V v_round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V v_floor(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
/* 2^n for integral n in [-126, 127]. */
static inline V v_pow2i(V n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline M v_lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline M v_gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline M v_unord(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
static inline M m_or(M a, M b) { return _mm256_or_ps(a, b); }
static inline bool m_any(M m) { return _mm256_movemask_ps(m) != 0; }
static inline V v_select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
/* Horizontal sum and maximum in a fixed lane order. */
static inline float v_hsum(V v) {
    float t[W];
    _mm256_storeu_ps(t, v);
    float s = t[0];
    for (int k = 1; k < W; k++) s += t[k];
    return s;
}
static inline float v_hmax(V v) {
    float t[W];
    _mm256_storeu_ps(t, v);
    float m = t[0];
    for (int k = 1; k < W; k++) m = t[k] > m ? t[k] : m;
    return m;
}

#include "backend/cpu/simd_kernels.h"
