/* The copy kernel with AVX2 + F16C float conversions (lmc_cpu_copy_avx2):
 * f32 -> bf16 / f16 and back, 8 elements at a time, rounding exactly as
 * lmc_f32_to_bf16 / lmc_f32_to_f16 do (to nearest even, NaN kept quiet with
 * its sign and top payload bits, overflow to Inf, f16 subnormals exact);
 * tails and every other pair of dtypes go to lmc_convert. KV caches of
 * kv_cache_dtype bf16/f16 are written through it. */
#include <immintrin.h>

#include "backend/cpu/copy.h"

static void convert_avx2(void *dst, lmc_dtype ddt, const void *src, lmc_dtype sdt, size_t n) {
    size_t i = 0;
    if (sdt == LMC_F32 && ddt == LMC_F16) {
        /* vcvtps2ph with round-to-nearest: IEEE rounding, subnormals and
         * NaN payloads as in lmc_f32_to_f16 (MXCSR is not consulted) */
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)((uint16_t *)dst + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps((const float *)src + i), _MM_FROUND_TO_NEAREST_INT));
    } else if (sdt == LMC_F16 && ddt == LMC_F32) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps((float *)dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i))));
    } else if (sdt == LMC_F32 && ddt == LMC_BF16) {
        const __m256i abs = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
        const __m256i half = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
        for (; i + 8 <= n; i += 8) {
            __m256i u = _mm256_loadu_si256((const __m256i *)((const float *)src + i));
            __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(half, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
            r = _mm256_srli_epi32(r, 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
            r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet), nan);
            /* 8 x 32-bit lanes (values < 2^16) -> 8 x 16 bits */
            __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            _mm_storeu_si128((__m128i *)((uint16_t *)dst + i), packed);
        }
    } else if (sdt == LMC_BF16 && ddt == LMC_F32) {
        for (; i + 8 <= n; i += 8) {
            __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i)));
            _mm256_storeu_si256((__m256i *)((float *)dst + i), _mm256_slli_epi32(h, 16));
        }
    }
    size_t es = lmc_dtype_size(ddt), ss = lmc_dtype_size(sdt);
    if (i < n) lmc_convert((char *)dst + i * es, ddt, (const char *)src + i * ss, sdt, n - i);
}

lmc_status lmc_cpu_copy_avx2(lmc_array *out, const lmc_array *in) { return lmc_cpu_copy_with(out, in, convert_avx2); }
