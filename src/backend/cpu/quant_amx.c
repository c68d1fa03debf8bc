/* AMX int8 quantised matmul for many rows of x (prefill, batched decode),
 * 4 and 8 bits; fewer rows than AMX_QMM_MIN_M go to the AVX-512 kernel.
 *
 * The integers are the AVX-512 kernel's: x is rounded per block of 128 to a
 * 24-bit integer (lmc_quant_x24_block) split exactly into three int8 parts,
 * x24 = 65536*hi + 256*mid + lo, and the weights' q are unsigned bytes, so
 * TDPBUSD (u8 weights x s8 x, 64 products summed per int32) gives the exact
 * integer sums sum_k q_k * part_k. One K-step of a tile product is 64 bytes
 * (32 for group size 32), so a group is one or two steps and each output's
 * per-group sums come straight out of the accumulator tiles; the f32 work is
 * then once per group:
 *     acc += (256 * f32(256*hi + mid) + f32(lo)) * xscale_b * s_g + b_g * sx_g
 * (256*hi + mid fits int32 even for 8 bits and group 128; the whole
 * 65536*hi + ... would not). So the result differs from the AVX-512 kernel's
 * only in the order of the f32 additions. With int8 activations (plan xbits
 * 8, 4- or 8-bit weights) x is one part per block of 64 (lmc_quant_x8_block): one
 * tile product and one C tile an item, acc += f32(C) * xscale_b * s_g + b_g *
 * sx; where groups are 128 wide an item is one x block (parts = 1, gi = 64),
 * each with its group's scale and bias.
 *
 * Tiles (A: weights, u8; B: x, s8; C: int32):
 *   A = 16 weight rows x kk bytes of q (kk = 64, or 32 for group size 32),
 *       the nibbles of a task's rows expanded to bytes once per call;
 *   B = kk/4 rows x 64 bytes: row r holds, for 16 rows m of x, the 4 bytes of
 *       one part at k = 4r..4r+3 (the VNNI layout), prepared once per call;
 *   C[n][m] = 16 x 16 int32, one tile per part: tiles 0-2 and 3-5 are two
 *       sets of C, so that the tile products of one (group, weight tile)
 *       overlap the f32 work of the one before; 6 is A, 7 takes B's parts.
 * C's rows are weight rows, its lanes rows of x: the scales s_g and b_g are
 * broadcasts, xscale and sx vectors, and a 16 x 16 transpose (by gathers)
 * stores the result once per tile (the f32 sums live in an L1 buffer). Work
 * is split over blocks of NB_ROWS weight rows (few, large tasks); each sweeps
 * the rows of x in blocks of MT_BLK tiles, and within a block the items run
 * with the x tile fastest, so each A tile is loaded once per block and serves
 * every x tile of it (A comes from L2: a task's expanded rows are 64-192 KiB;
 * 10-17 % faster at 64 and 256 rows of x than one x tile at a time).
 *
 * Where the time goes (one Sapphire Rapids core, two builds timed in turn in
 * one process): an item — one group of one weight tile against one tile of x
 * — costs ~100 ns with everything in cache, at 16 and at 512 rows of x; its
 * three tile products alone would take ~18 ns, the three tile stores ~28 ns,
 * the f32 work ~28 ns, and the stores and the f32 work barely overlap. So
 * draining C once per group, not TMUL or the weights' bandwidth, is the
 * limit. Measured again with int8 x (session 18, one core, 256 x 1024 x
 * 3072, best of 10): 240 GMAC/s as it is, 400 without the f32 work, 475
 * without the f32 work and the tile stores, 270 without the stores alone;
 * giving consecutive products different A and B tiles (so that no tile load
 * waits for the product before it to finish reading) changed nothing.
 * Measured no faster: x's tiles held per group with weight tiles in
 * turn, orderings of the f32 work around the stores, storing 8-16 items
 * before their f32 work, x as two 12-bit digits against q and 16q (two C
 * tiles, four products), L1 prefetches, x in L2-sized chunks, 32 or 128 rows
 * per task, transposes through registers instead of gathers. Also measured
 * and dropped: the weights as bf16 tiles, each s_g * q split exactly into two
 * bf16 (hi + lo) and x into three, so the tiles accumulate over all of K with
 * no drain at all (six TDPBF16PS per 32 k, the biases added at the end): 2 to
 * 4 times slower than this kernel at 16 and at 512 rows of x, with two or
 * three accumulator chains. */
#include <immintrin.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/transpose_avx512.h"
#include "backend/cpu/quant_avx512.h"
#include "core/scratch.h"
#include "core/threadpool.h"

enum {
    AMX_QMM_MIN_M = 6, /* fewer rows: the AVX-512 kernel (faster below ~5 rows of x, where a tile is mostly padding) */
    NB_ROWS = 64,       /* weight rows per task: 4 A tiles share each B tile of x from L1 */
    MT_BLK = 4          /* tiles of 16 rows of x that each loaded A tile serves (their sums: a 16 KiB L1 buffer) */
};

typedef struct qamx {
    lmc_qmm_plan p;      /* shapes, pointers and dtypes (lmc_qmm_plan_init); the driver fields are unused here */
    int64_t Mt, S, blocks; /* Mt: tiles of 16 rows of x; S: K-steps of kk; blocks: x's blocks in K */
    int kk, spg;           /* kk: bytes of q per K-step; spg: K-steps per item */
    int parts;             /* x's int8 parts: 3 (24-bit x, blocks of 128) or 1 (int8 x, blocks of 64) */
    int xblk;              /* elements of x a block (one scale) */
    int64_t gi, Gi;        /* elements of K an item (a group, or with int8 x at most an x block), and items in K */
    int8_t *xb; /* [Mt][S][parts][kk/4][64] */
    float *xsT; /* [Mt][blocks][16]: xscale per block, lane = row of x */
    float *sxT; /* [Mt][Gi][16]: sums of the rounded x per item */
    size_t work_bytes;        /* per thread (lmc_scratch) */
    _Atomic bool out_of_memory; /* a thread found no scratch */
} qamx;

/* --- x: rounded, split into parts, laid out as B tiles -------------------- */

/* Tiles [t0, t1) of 16 rows of x: each row's blocks rounded (scales and
 * group sums stored), split into parts, written row by row into a block
 * buffer and then moved into B tiles by 16 x 16 dword transposes (row r of
 * a tile holds the 4 bytes at k = 4r..4r+3 of each of the 16 rows of x;
 * writing them from each row with 4-byte scatters cost 1.2-1.7 times as
 * much). */
static void prep_tiles(void *vctx, int64_t t0, int64_t t1, int thread) {
    (void)thread;
    const qamx *c = vctx;
    const size_t bt = (size_t)c->kk * 16; /* bytes of one B tile */
    const int kk = c->kk, kshift = __builtin_ctz((unsigned)c->kk);
    const int P = c->parts, ishift = __builtin_ctz((unsigned)c->gi);
    const size_t xsz = lmc_dtype_size(c->p.xdt);
    int32_t qb[128];
    int8_t rb[3][16][128]; /* a block's parts, by row of x */
    for (int64_t mt = t0; mt < t1; mt++) {
        const int rows = c->p.M - mt * 16 < 16 ? (int)(c->p.M - mt * 16) : 16;
        for (int64_t b = 0; b < c->blocks; b++) {
            const int64_t k0 = b * c->xblk;
            const int n = c->p.K - k0 >= c->xblk ? c->xblk : (int)(c->p.K - k0); /* a multiple of 32 */
            for (int mm = 0; mm < rows; mm++) {
                const void *x = (const char *)c->p.x + (size_t)((mt * 16 + mm) * c->p.K) * xsz;
                float scale = P == 3 ? lmc_quant_x24_block(x, c->p.xdt, k0, n, qb) : lmc_quant_x8_block(x, c->p.xdt, k0, n, qb);
                c->xsT[(mt * c->blocks + b) * 16 + mm] = scale;
                lmc_quant_block_sums(qb, n, k0, (int)c->gi, ishift, 16, scale, c->sxT + mt * c->Gi * 16 + mm);
                for (int j = 0; j < n; j += 16) {
                    __m512i q = _mm512_loadu_si512(qb + j);
                    if (P == 3) {
                        __m512i hi, mid;
                        lmc_quant_x24_parts(q, &hi, &mid);
                        _mm_storeu_si128((__m128i *)(rb[0][mm] + j), _mm512_cvtepi32_epi8(hi));
                        _mm_storeu_si128((__m128i *)(rb[1][mm] + j), _mm512_cvtepi32_epi8(mid));
                        _mm_storeu_si128((__m128i *)(rb[2][mm] + j), _mm512_cvtepi32_epi8(q));
                    } else {
                        _mm_storeu_si128((__m128i *)(rb[0][mm] + j), _mm512_cvtepi32_epi8(q));
                    }
                }
            }
            for (int st = 0; st < n / kk; st++) {
                const int64_t s = (k0 >> kshift) + st;
                for (int t = 0; t < P; t++) {
                    __m512i v[16];
                    for (int mm = 0; mm < 16; mm++)
                        v[mm] = mm >= rows    ? _mm512_setzero_si512()
                                : kk == 64    ? _mm512_loadu_si512(rb[t][mm] + st * 64)
                                              : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(rb[t][mm] + st * 32)));
                    lmc_transpose16x16_epi32(v);
                    int8_t *tile = c->xb + ((size_t)(mt * c->S + s) * P + t) * bt;
                    for (int r = 0; r < kk / 4; r++) _mm512_storeu_si512(tile + r * 64, v[r]);
                }
            }
        }
    }
}

/* --- weights: q as bytes in A tiles, scales and biases as f32 ------------- */

/* Rows n0 .. n0+NB_ROWS of the weights into wbuf ([tile][S][16][kk], zero past N) and ws, wb ([row][Gi]). */
static void prep_w(const qamx *c, int64_t n0, uint8_t *wbuf, float *ws, float *wb) {
    const int kk = c->kk;
    for (int i = 0; i < NB_ROWS; i++) {
        int64_t n = n0 + i;
        uint8_t *dst = wbuf + (size_t)(i / 16) * (size_t)(c->S * 16 * kk) + (size_t)(i % 16) * kk;
        if (n >= c->p.N) {
            for (int64_t s = 0; s < c->S; s++) memset(dst + s * 16 * kk, 0, (size_t)kk);
            for (int64_t g = 0; g < c->Gi; g++) ws[i * c->Gi + g] = wb[i * c->Gi + g] = 0.0f;
            continue;
        }
        /* one loop per case: a uint8_t store may alias c, so with the cases
         * tested inside the loop every step reloaded c's fields (at 16 rows of
         * x, where each A tile serves one item, skipping this expansion made a
         * product ~35 % faster: it is worth keeping tight) */
        const uint8_t *row = c->p.wq + (size_t)n * c->p.row_bytes;
        const int64_t S = c->S;
        const size_t step = (size_t)16 * kk; /* bytes between a row's K-steps in wbuf */
        if (c->p.bits == 8) {
            for (int64_t s = 0; s < S; s++) memcpy(dst + s * step, row + s * kk, (size_t)kk);
        } else if (kk == 64) {
            for (int64_t s = 0; s < S; s++)
                _mm512_storeu_si512(dst + s * step, lmc_quant_nibbles_to_bytes(_mm256_loadu_si256((const __m256i *)(row + s * 32))));
        } else {
            for (int64_t s = 0; s < S; s++)
                _mm256_storeu_si256((__m256i *)(dst + s * step),
                                    _mm512_castsi512_si256(lmc_quant_nibbles_to_bytes(
                                        _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(row + s * 16))))));
        }
        if (c->Gi == c->p.G) {
            for (int64_t g = 0; g < c->p.G; g += 16) {
                int64_t left = c->p.G - g;
                __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
                _mm512_mask_storeu_ps(ws + i * c->p.G + g, m, lmc_quant_load16(c->p.scales, c->p.sdt, n * c->p.G + g, m));
                _mm512_mask_storeu_ps(wb + i * c->p.G + g, m, lmc_quant_load16(c->p.biases, c->p.sdt, n * c->p.G + g, m));
            }
        } else { /* items smaller than groups (int8 x with groups of 128): each item its group's values */
            const int64_t per = c->Gi / c->p.G;
            for (int64_t g = 0; g < c->Gi; g++) {
                ws[i * c->Gi + g] = lmc_quant_load(c->p.scales, c->p.sdt, n * c->p.G + g / per);
                wb[i * c->Gi + g] = lmc_quant_load(c->p.biases, c->p.sdt, n * c->p.G + g / per);
            }
        }
    }
}

/* --- the tile loop -------------------------------------------------------- */

/* Stores the 16 x 16 block res[n][m] (lanes m) as out[m0 + m][n0 + n], transposed. */
static void store_block(const qamx *c, const float *res, int64_t m0, int64_t n0) {
    const __m512i col = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    int64_t nw = c->p.N - n0 < 16 ? c->p.N - n0 : 16;
    __mmask16 mask = (__mmask16)((1u << nw) - 1);
    for (int m = 0; m < 16 && m0 + m < c->p.M; m++)
        lmc_quant_store16(c->p.out, c->p.odt, (size_t)((m0 + m) * c->p.N + n0), mask, _mm512_i32gather_ps(col, res + m, 4));
}

/* acc[i] (16 rows of x in lanes) += the group's sums for weight row i of
 * the C tiles in cbuf, scaled; ws, wb: that row's scales and biases at the
 * group. first: acc holds nothing yet (the first group), read as zeros. */
static inline __attribute__((always_inline)) void epilogue(const int32_t *cbuf, __m512 xscale, __m512 sx, const float *ws,
                                                           const float *wb, int64_t G, const int P, bool first,
                                                           float *acc) {
    const __m512 k256 = _mm512_set1_ps(256.0f);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        __m512 f;
        if (P == 3) {
            __m512i hm = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cbuf + 16 * i), 8),
                                          _mm512_load_si512(cbuf + 256 + 16 * i));
            f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hm), k256, _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 512 + 16 * i)));
        } else {
            f = _mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 16 * i));
        }
        __m512 a = first ? _mm512_setzero_ps() : _mm512_load_ps(acc + 16 * i);
        a = _mm512_fmadd_ps(f, _mm512_mul_ps(xscale, _mm512_set1_ps(ws[i * G])), a);
        a = _mm512_fmadd_ps(_mm512_set1_ps(wb[i * G]), sx, a);
        _mm512_store_ps(acc + 16 * i, a);
    }
}

/* An item: group g of weight tile j against tile mt0 + ml of x. Items run
 * with ml fastest, then j, then g, so one A tile serves the block's x tiles
 * in turn (loaded from L2 once per block, not once per x tile). */
typedef struct qitem {
    int64_t g;
    int j, ml;
} qitem;

static inline void item_next(qitem *it, int nt, int mb) {
    if (++it->ml < mb) return;
    it->ml = 0;
    if (++it->j < nt) return;
    it->j = 0;
    it->g++;
}

/* Tile products for item it into C tiles c0..c2 (hi, mid, lo); A is tile 6,
 * loaded where the item is the first of its (g, j) or a group takes more
 * than one K-step; x's parts go through tile 7 one by one (in L1: the same
 * for all weight tiles of the group). */
#define ISSUE(c0, c1, c2, it)                                                                  \
    do {                                                                                       \
        const uint8_t *wt_ = wbuf + (size_t)(it).j * (size_t)c->S * at;                        \
        const int8_t *xm_ = c->xb + (size_t)((mt0 + (it).ml) * c->S) * P * bt;                 \
        _tile_zero(c0);                                                                        \
        if (P == 3) {                                                                          \
            _tile_zero(c1);                                                                    \
            _tile_zero(c2);                                                                    \
        }                                                                                      \
        for (int64_t s_ = (it).g * c->spg; s_ < ((it).g + 1) * c->spg; s_++) {                 \
            const int8_t *xs_ = xm_ + (size_t)s_ * P * bt;                                     \
            if ((it).ml == 0 || c->spg > 1) _tile_loadd(6, wt_ + s_ * at, kk);                 \
            _tile_loadd(7, xs_, 64);                                                           \
            _tile_dpbusd(c0, 6, 7);                                                            \
            if (P == 3) {                                                                      \
                _tile_loadd(7, xs_ + bt, 64);                                                  \
                _tile_dpbusd(c1, 6, 7);                                                        \
                _tile_loadd(7, xs_ + 2 * bt, 64);                                              \
                _tile_dpbusd(c2, 6, 7);                                                        \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* The f32 work of item it, whose sums are in C tiles c0..c2 (c0 alone with int8 x). */
#define DRAIN(c0, c1, c2, it)                                                                                 \
    do {                                                                                                      \
        const int64_t mt_ = mt0 + (it).ml;                                                                    \
        _tile_stored(c0, cbuf, 64);                                                                           \
        if (P == 3) {                                                                                         \
            _tile_stored(c1, cbuf + 256, 64);                                                                 \
            _tile_stored(c2, cbuf + 512, 64);                                                                 \
        }                                                                                                     \
        epilogue(cbuf, _mm512_load_ps(c->xsT + (mt_ * c->blocks + ((it).g >> xshift)) * 16),                \
                 _mm512_load_ps(c->sxT + (mt_ * c->Gi + (it).g) * 16), ws + (it).j * 16 * c->Gi + (it).g,     \
                 wb + (it).j * 16 * c->Gi + (it).g, c->Gi, P, (it).g == 0, acc + ((it).ml * nt + (it).j) * 256); \
    } while (0)

static inline __attribute__((always_inline)) void run_tasks(const qamx *c, int64_t t0, int64_t t1, const int P) {
    const int kk = c->kk;
    const size_t bt = (size_t)kk * 16, at = (size_t)kk * 16;
    /* an item's x block: g * gi / xblk (both powers of two, gi <= xblk) */
    const int xshift = __builtin_ctz((unsigned)c->xblk) - __builtin_ctz((unsigned)c->gi);
    uint8_t *wbuf = lmc_scratch(LMC_SCRATCH_QMM_AMX, c->work_bytes);
    if (!wbuf) {
        atomic_store(&((qamx *)c)->out_of_memory, true);
        return;
    }
    float *ws = (float *)(wbuf + (size_t)NB_ROWS * (size_t)c->p.K);
    float *wb = ws + NB_ROWS * c->Gi;
    int32_t *cbuf = (int32_t *)(wb + NB_ROWS * c->Gi); /* 3 C tiles */
    float *acc = (float *)(cbuf + 3 * 256);           /* [MT_BLK][NB_ROWS / 16][256] */
    lmc_amx_configure(16, kk, kk / 4, 64); /* A: 16 weight rows of kk bytes; B: kk/4 rows of x's parts */
    for (int64_t t = t0; t < t1; t++) {
        int64_t n0 = t * NB_ROWS;
        int nt = (int)((c->p.N - n0 + 15) / 16);
        nt = nt < NB_ROWS / 16 ? nt : NB_ROWS / 16;
        prep_w(c, n0, wbuf, ws, wb);
        for (int64_t mt0 = 0; mt0 < c->Mt; mt0 += MT_BLK) {
            const int mb = c->Mt - mt0 < MT_BLK ? (int)(c->Mt - mt0) : MT_BLK;
            const int64_t items = c->Gi * nt * mb;
            /* The next task's weights, from DRAM, while this one computes
             * (with few rows of x the loop would otherwise wait on them). */
            const char *next = NULL;
            size_t next_bytes = 0;
            if (t + 1 < t1 && mt0 == 0) {
                int64_t rows = c->p.N - n0 - NB_ROWS < NB_ROWS ? c->p.N - n0 - NB_ROWS : NB_ROWS;
                next = (const char *)(c->p.wq + (size_t)(n0 + NB_ROWS) * c->p.row_bytes);
                next_bytes = (size_t)rows * c->p.row_bytes;
            }
            size_t per_item = (next_bytes / 64 + (size_t)items - 1) / (size_t)items * 64;
            /* items in order, two sets of C tiles: the tile products of one
             * item run while the f32 work of the one before it does */
            qitem ia = {0, 0, 0}, ib = ia, pb = ia;
            for (int64_t i = 0; i < items; i += 2) {
                size_t end = (size_t)(i + 2) * per_item < next_bytes ? (size_t)(i + 2) * per_item : next_bytes;
                for (size_t off = (size_t)i * per_item; off < end; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
                ISSUE(0, 1, 2, ia);
                if (i > 0) DRAIN(3, 4, 5, pb);
                if (i + 1 < items) {
                    ib = ia;
                    item_next(&ib, nt, mb);
                    ISSUE(3, 4, 5, ib);
                    DRAIN(0, 1, 2, ia);
                    pb = ib;
                    ia = ib;
                    item_next(&ia, nt, mb);
                } else {
                    DRAIN(0, 1, 2, ia);
                }
            }
            if (items % 2 == 0) DRAIN(3, 4, 5, pb);
            for (int ml = 0; ml < mb; ml++)
                for (int j = 0; j < nt; j++)
                    store_block(c, acc + (ml * nt + j) * 256, (mt0 + ml) * 16, n0 + 16 * j);
        }
    }
    _tile_release();
}

static void run_task(void *vctx, int64_t t0, int64_t t1, int task) {
    (void)task;
    const qamx *c = vctx;
    if (c->parts == 3) run_tasks(c, t0, t1, 3);
    else run_tasks(c, t0, t1, 1);
}

/* Fills c for one product (nothing is allocated yet). */
static void amx_setup(qamx *c, lmc_array *out, const lmc_array *x, const lmc_array *wq, const lmc_array *scales,
                      const lmc_array *biases, int group_size, int bits) {
    memset(c, 0, sizeof *c);
    lmc_qmm_plan_init(&c->p, out, x, wq, scales, biases, group_size, bits);
    c->kk = group_size < 64 ? group_size : 64;
    c->parts = c->p.xbits == 8 ? 1 : 3;
    c->xblk = c->parts == 1 ? LMC_QMM_X8_BLOCK : 128;
    c->gi = c->parts == 1 && group_size > LMC_QMM_X8_BLOCK ? LMC_QMM_X8_BLOCK : group_size;
    c->Gi = c->p.K / c->gi;
    c->spg = (int)(c->gi / c->kk);
    c->S = c->p.K / c->kk;
    c->Mt = (c->p.M + 15) / 16;
    c->blocks = (c->p.K + c->xblk - 1) / c->xblk;
    /* per thread: wbuf, ws, wb, three C tiles, the sums of MT_BLK x tiles */
    c->work_bytes = ((size_t)NB_ROWS * (size_t)c->p.K + 2 * (size_t)(NB_ROWS * c->Gi) * sizeof(float) + 3 * 1024 +
                     (size_t)MT_BLK * NB_ROWS * 16 * sizeof(float) + 63) / 64 * 64;
}

/* Bytes of x's parts, block scales and group sums for c (64-byte multiples). */
static size_t amx_x_bytes(const qamx *c, size_t *xb_bytes, size_t *xs_bytes) {
    *xb_bytes = (size_t)(c->Mt * 16 * c->p.K) * (size_t)c->parts;
    *xs_bytes = (size_t)(c->Mt * c->blocks) * 16 * sizeof(float);
    return *xb_bytes + *xs_bytes + (size_t)(c->Mt * c->Gi) * 16 * sizeof(float);
}

/* b may use a's prepared x. */
static bool amx_same_x(const qamx *a, const qamx *b) {
    return a->p.x == b->p.x && a->p.xdt == b->p.xdt && a->p.M == b->p.M && a->p.K == b->p.K &&
           a->p.group_size == b->p.group_size && a->kk == b->kk && a->parts == b->parts;
}

enum { AMX_BATCH_MAX = 8 };

/* The weight-row tasks of several products, numbered one after another. */
typedef struct amx_group {
    qamx *jobs;
    int n;
    int64_t first[AMX_BATCH_MAX + 1]; /* job i has tasks [first[i], first[i+1]) */
} amx_group;

static void run_group(void *vctx, int64_t t0, int64_t t1, int run) {
    amx_group *g = vctx;
    for (int i = 0; i < g->n; i++) {
        int64_t lo = t0 > g->first[i] ? t0 : g->first[i], hi = t1 < g->first[i + 1] ? t1 : g->first[i + 1];
        if (lo < hi) run_task(&g->jobs[i], lo - g->first[i], hi - g->first[i], run);
    }
}

/* Runs jobs[0..n): x is prepared once for each distinct x (the projections
 * that share an input), then one parallel region covers every job's weight
 * rows, so each output is what the job gives alone. */
static lmc_status amx_run(qamx *jobs, int n) {
    size_t offset[AMX_BATCH_MAX], total = 0;
    int owner[AMX_BATCH_MAX];
    for (int i = 0; i < n; i++) {
        owner[i] = i;
        for (int j = 0; j < i; j++)
            if (owner[j] == j && amx_same_x(&jobs[j], &jobs[i])) {
                owner[i] = j;
                break;
            }
        size_t xb, xs;
        if (owner[i] == i) {
            offset[i] = total;
            total += amx_x_bytes(&jobs[i], &xb, &xs);
        }
    }
    uint8_t *mem = aligned_alloc(64, total);
    if (!mem)
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "quantized_matmul: out of memory for the %lld x %lld work space",
                             (long long)jobs[0].p.M, (long long)jobs[0].p.K);
    amx_group g = {.jobs = jobs, .n = n};
    for (int i = 0; i < n; i++) {
        qamx *c = &jobs[i];
        if (owner[i] == i) {
            size_t xb, xs, bytes = amx_x_bytes(c, &xb, &xs);
            /* the scales (rows past M read as 0) and the sums (added to);
             * prep_tiles writes every B tile whole, padding rows too */
            memset(mem + offset[i] + xb, 0, bytes - xb);
            c->xb = (int8_t *)(mem + offset[i]);
            c->xsT = (float *)(mem + offset[i] + xb);
            c->sxT = (float *)(mem + offset[i] + xb + xs);
            lmc_parallel_for(c->Mt, 1, prep_tiles, c);
        } else {
            c->xb = jobs[owner[i]].xb;
            c->xsT = jobs[owner[i]].xsT;
            c->sxT = jobs[owner[i]].sxT;
        }
        g.first[i + 1] = g.first[i] + (c->p.N + NB_ROWS - 1) / NB_ROWS;
    }
    /* Each task writes its own weight rows' outputs: one contiguous part of
     * tasks per thread, taken in long runs, so that within a run each task
     * prefetches the next one's weights (with few rows of x — 16-token
     * prompts, batched decode — a task would otherwise start on a DRAM
     * stall); a thread that is done helps from the back of another's part,
     * so a late thread doesn't hold the other up. */
    lmc_parallel_split(g.first[n], 1, run_group, &g);
    free(mem);
    for (int i = 0; i < n; i++)
        if (atomic_load(&jobs[i].out_of_memory))
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "quantized_matmul: out of memory for %zu bytes of work space",
                                 jobs[i].work_bytes);
    return LMC_OK;
}

/* Products queued while a batch is open on this thread (lmc_qmm_batch_begin). */
static _Thread_local struct {
    int n;
    qamx jobs[AMX_BATCH_MAX];
} t_amx;

lmc_status lmc_quantized_matmul_amx(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                    const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    if ((bits != 4 && bits != 8) || x->shape[0] < AMX_QMM_MIN_M)
        return lmc_quantized_matmul_avx512(out, x, wq, scales, biases, group_size, bits);
    if (lmc_qmm_batch_is_open() && t_amx.n < AMX_BATCH_MAX) {
        amx_setup(&t_amx.jobs[t_amx.n++], out, x, wq, scales, biases, group_size, bits);
        return LMC_OK;
    }
    qamx c;
    amx_setup(&c, out, x, wq, scales, biases, group_size, bits);
    return amx_run(&c, 1);
}

lmc_status lmc_quantized_matmul_amx_flush(void) {
    int n = t_amx.n;
    t_amx.n = 0;
    return n ? amx_run(t_amx.jobs, n) : LMC_OK;
}
