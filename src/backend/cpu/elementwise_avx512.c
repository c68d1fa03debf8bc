/* AVX-512 element-wise, reduction and softmax kernels: the 16-lane vector
 * vocabulary for simd_kernels.h. */
#include <immintrin.h>

#include "backend/cpu/cpu_loop.h"

typedef __m512 V;
typedef __mmask16 M;
#define W 16
#define SFX avx512

static inline V v_set1(float f) { return _mm512_set1_ps(f); }
static inline V v_loadf(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_storef(float *p, V v) { _mm512_storeu_ps(p, v); }
static inline V v_loadbf(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
/* Round to nearest even into bf16, quiet NaN kept: lmc_f32_to_bf16 lane by
 * lane (vcvtneps2bf16 would flush denormals). */
static inline void v_storebf(uint16_t *p, V v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, q);
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}
static inline V v_add(V a, V b) { return _mm512_add_ps(a, b); }
static inline V v_sub(V a, V b) { return _mm512_sub_ps(a, b); }
static inline V v_mul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V v_div(V a, V b) { return _mm512_div_ps(a, b); }
static inline V v_fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V v_max(V a, V b) { return _mm512_max_ps(a, b); }
static inline V v_min(V a, V b) { return _mm512_min_ps(a, b); }
static inline V v_sqrt(V a) { return _mm512_sqrt_ps(a); }
static inline V v_abs(V a) { return _mm512_abs_ps(a); }
static inline V v_round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V v_floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
static inline V v_pow2i(V n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
static inline M v_lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline M v_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline M v_unord(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
static inline M m_or(M a, M b) { return (M)(a | b); }
static inline bool m_any(M m) { return m != 0; }
static inline V v_select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
static inline float v_hsum(V v) {
    float t[W];
    _mm512_storeu_ps(t, v);
    float s = t[0];
    for (int k = 1; k < W; k++) s += t[k];
    return s;
}
static inline float v_hmax(V v) {
    float t[W];
    _mm512_storeu_ps(t, v);
    float m = t[0];
    for (int k = 1; k < W; k++) m = t[k] > m ? t[k] : m;
    return m;
}

#include "backend/cpu/simd_kernels.h"
