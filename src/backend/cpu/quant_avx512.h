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

#endif
