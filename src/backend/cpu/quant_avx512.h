/* AVX-512 pieces shared by the AVX-512 and AMX quantised matmuls
 * (quant_avx512.c, quant_amx.c); include only from files compiled with
 * AVX-512. */
#ifndef LMC_BACKEND_CPU_QUANT_AVX512_H
#define LMC_BACKEND_CPU_QUANT_AVX512_H

#include <immintrin.h>

#include "backend/cpu/quant.h"

/* src[i .. i+16) of dtype dt (f32, bf16 or f16) as f32, exactly; lanes
 * outside mask m are zero and their memory is not touched. Used for x and
 * for scales and biases. */
static inline __m512 lmc_quant_load16(const void *src, lmc_dtype dt, int64_t i, __mmask16 m) {
    switch (dt) {
    case LMC_F32: return _mm512_maskz_loadu_ps(m, (const float *)src + i);
    case LMC_BF16:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)src + i)), 16));
    default: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)src + i));
    }
}

/* 32 packed bytes of 4-bit q (byte i: element 2i in the low nibble, 2i+1 in
 * the high one) as 64 bytes, one q each, in element order: widened to a
 * 16-bit lane t = 0x00ab, (t | t << 4) & 0x0F0F = 0x0a0b puts the low
 * nibble in byte 0 and the high one in byte 1 (0xA8: (A | B) & C). */
static inline __m512i lmc_quant_nibbles_to_bytes(__m256i packed) {
    __m512i t = _mm512_cvtepu8_epi16(packed);
    return _mm512_ternarylogic_epi32(t, _mm512_slli_epi16(t, 4), _mm512_set1_epi16(0x0F0F), 0xA8);
}

/* v into dst[i .. i+16) of dtype dt (f32, bf16 or f16) where mask m is set:
 * bf16 rounded to nearest even as lmc_f32_to_bf16 (NaN stays NaN). */
static inline void lmc_quant_store16(void *dst, lmc_dtype dt, size_t i, __mmask16 m, __m512 v) {
    switch (dt) {
    case LMC_F32: _mm512_mask_storeu_ps((float *)dst + i, m, v); break;
    case LMC_BF16: {
        __m512i u = _mm512_castps_si512(v);
        __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)),
                                     _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)));
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
        _mm256_mask_storeu_epi16((uint16_t *)dst + i, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
        break;
    }
    default:
        _mm256_mask_storeu_epi16((uint16_t *)dst + i, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    }
}

/* 24-bit integers q (lanes) as the parts x24 = 65536*hi + 256*mid + lo,
 * each the low byte (as int8) of what is left: (r + 128) >> 8 drops it
 * exactly, and lo is q's own low byte (taken by the callers' truncating
 * conversion). Every integer path splits x with this. */
static inline void lmc_quant_x24_parts(__m512i q, __m512i *hi, __m512i *mid) {
    const __m512i r128 = _mm512_set1_epi32(128);
    *mid = _mm512_srai_epi32(_mm512_add_epi32(q, r128), 8);
    *hi = _mm512_srai_epi32(_mm512_add_epi32(*mid, r128), 8);
}

#endif
