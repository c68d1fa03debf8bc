/* The AMX tile configuration, shared by the *_amx.c kernels (include it
 * only from files compiled for AMX). */
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

/* All eight tiles 16 rows of 64 bytes. */
static inline void lmc_amx_configure_uniform(void) { lmc_amx_configure(16, 64, 16, 64); }

#endif
