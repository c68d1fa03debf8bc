/* The AMX tile configuration and a 16 x 16 dword transpose, shared by the
 * *_amx.c kernels (include it only from files compiled for AMX). */
#ifndef LMC_BACKEND_CPU_AMX_TILES_H
#define LMC_BACKEND_CPU_AMX_TILES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct lmc_amx_tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} lmc_amx_tile_config;

/* Configures tiles 0-7 (palette 1): tile t has 16 rows of 64 bytes, except
 * tiles 6 and 7, which have rows6 rows of colsb6 bytes and rows7 rows of
 * colsb7 bytes. */
static inline void lmc_amx_configure(int rows6, int colsb6, int rows7, int colsb7) {
    lmc_amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    cfg.rows[6] = (uint8_t)rows6;
    cfg.colsb[6] = (uint16_t)colsb6;
    cfg.rows[7] = (uint8_t)rows7;
    cfg.colsb[7] = (uint16_t)colsb7;
    /* GCC's ldtilecfg builtin declares too small a memory operand: without
     * this barrier the stores to rows and colsb can be dropped as dead */
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

/* In place: r[i] lane c becomes r[c] lane i (16 x 16 of 32-bit). */
static inline void lmc_amx_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* t[i], t[i+1] (i even), 128-bit lane L: rows i, i+1 at columns 4L..4L+3, interleaved */
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
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

/* All eight tiles 16 rows of 64 bytes. */
static inline void lmc_amx_configure_uniform(void) { lmc_amx_configure(16, 64, 16, 64); }

#endif
