/* A 16 x 16 transpose of 32-bit lanes in registers, shared by the kernels
 * that lay out operands for AMX tiles or AVX-512 panels (quant_amx.c,
 * matmul_amx.c, quant_avx512.c); include only from files compiled with
 * AVX-512. */
#ifndef LMC_BACKEND_CPU_TRANSPOSE_AVX512_H
#define LMC_BACKEND_CPU_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* 4 x 4 transposes of 32-bit words within each 128-bit lane, for each 4
 * vectors of r[0..n): u[4g + c] lane L holds word c of lane L of r[4g],
 * r[4g+1], r[4g+2], r[4g+3] (n a multiple of 4). */
static inline __attribute__((always_inline)) void lmc_transpose4x4_lanes(const __m512i *r, __m512i *u, const int n) {
    __m512i t[16];
    for (int i = 0; i < n; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* t[i], t[i+1] (i even), 128-bit lane L: rows i, i+1 at columns 4L..4L+3, interleaved */
    for (int i = 0; i < n; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
}

/* In place: r[i] lane c becomes r[c] lane i (16 x 16 of 32-bit). */
static inline __attribute__((always_inline)) void lmc_transpose16x16_epi32(__m512i r[16]) {
    __m512i u[16];
    lmc_transpose4x4_lanes(r, u, 16);
    /* u[4g + c], lane L: rows 4g..4g+3 at column 4L + c; gather the lanes */
    for (int c = 0; c < 4; c++) {
        __m512i p = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), q = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        __m512i p2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), q2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(p, p2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(p, p2, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(q, q2, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(q, q2, 0xdd);
    }
}

#endif
