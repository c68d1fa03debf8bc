/* AMX bf16 tiles for products with bf16 weights in the nn.Linear layout
 * (b = Wᵀ of a row-major W [N, K]: strides (1, ldw)), from M = AMX_MIN_M
 * rows up (batched decode and prefill).
 *
 * Exactness: the activations are not rounded. An f32 activation x is split
 * into three bf16 parts, x = hi + mid + lo exactly (hi and mid truncate,
 * each taking the next 8 significant bits; lo holds the last 8 and is
 * exact), and each part goes through the tiles: a product of two bf16 is
 * exact in f32, and the tiles accumulate in f32 — so the result carries f32
 * accumulation error only, like the AVX-512 path, at a third of the AMX
 * rate. (The tiles treat bf16 denormals as zero, which only touches
 * |x| < 2^-110 or so.) bf16 activations are one part. The result is rounded
 * once to the output dtype.
 *
 * Layout: W is the tiles' A operand, read in place: a 16 x 32 tile is 16
 * weight rows of 32 k, so the weights are never packed or converted; only a
 * ragged edge (K not a multiple of 32, the last < 16 rows) is copied
 * zero-padded. The activation parts are the B operand, packed once per call
 * into the VNNI layout (k pairs side by side, 16 rows of M per tile). A
 * task owns NBLK weight rows; for each block of KBLK k tiles it sweeps all
 * of M in blocks of 32 rows with a 2 x 2 block of 16 x 16 f32 accumulator
 * tiles (rows n, columns m), keeping partial sums in memory between k
 * blocks; results are transposed on the way out. With at most 32 rows of M
 * (batched decode) there is one sweep, so a pair of weight tiles runs over
 * all of K at once and each thread streams its weight rows start to end.
 * Every output element is computed by one task in a fixed order (its k
 * tiles in order, whatever the blocking), so the result does not depend on
 * the thread count. Everything else goes to the AVX-512 driver. */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/transpose_avx512.h"
#include "backend/cpu/matmul_internal.h"
#include "core/scratch.h"
#include "core/threadpool.h"

enum {
    AMX_MIN_M = 5, /* below this the AVX-512 GEMV (4 rows at once, memory-bound) */
    NBLK = 128,    /* weight rows per task: 8 tiles of 16 */
    KBLK = 16,     /* k tiles (of 32) per pass over M */
    PF_TILES = 8,  /* how far ahead (in k tiles) the weight rows are prefetched */
    PF_STREAM = 4, /* the same when one sweep over M runs over all of K */
};

typedef struct amx_job {
    lmc_array *out;
    const lmc_array *a, *b;
    int64_t M, N, K, Kp, nbatch, mtiles, ntasks_n;
    int64_t sam, sak, ldw, som;
    int parts;       /* 3 for f32 activations, 1 for bf16 */
    uint16_t *xp;    /* packed activations: [batch][mtile][part][Kp/2][16][2] */
    size_t work_bytes; /* per thread (lmc_scratch): ragged tiles zero-padded, partial sums between k blocks */
    _Atomic bool out_of_memory;
} amx_job;

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* x = hi + mid + lo exactly for finite x (see the top of the file). */
static inline void split3(float x, uint16_t part[3]) {
    uint32_t u = f32_bits(x);
    part[0] = (uint16_t)(u >> 16);
    if (!isfinite(x)) {
        if (isnan(x)) part[0] |= 0x40; /* a NaN whose payload sits in the low bits stays a NaN */
        part[1] = part[2] = 0;
        return;
    }
    float r1 = x - bits_f32(u & 0xffff0000u);
    uint32_t u1 = f32_bits(r1);
    part[1] = (uint16_t)(u1 >> 16);
    float r2 = r1 - bits_f32(u1 & 0xffff0000u);
    part[2] = (uint16_t)(f32_bits(r2) >> 16);
}

static size_t xp_block(const amx_job *j) { return (size_t)j->Kp * 16; } /* uint16 per (mtile, part) */

/* k tiles per block: KBLK, so that the weight rows of the block and the
 * activations of a few m-tiles stay in L2 for that block; with one sweep
 * over M (up to 32 rows), all of K at once (only the activations are
 * reused, and they fit in L2). */
static int64_t k_block(const amx_job *j) { return j->mtiles <= 2 ? j->Kp / 32 : KBLK; }

/* The upper halves of 32 f32 (a: k 0..15, b: k 16..31) as 16 bf16 pairs. */
static inline __m512i pairs_bf16(__m512 a, __m512 b) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                         23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(_mm512_castps_si512(a), idx, _mm512_castps_si512(b));
}

/* split3 on 16 lanes, each part an f32 whose low 16 bits are zero. */
static inline void split3x16(__m512 x, __m512 *hi, __m512 *mid, __m512 *lo) {
    const __m512 top = _mm512_castsi512_ps(_mm512_set1_epi32((int)0xffff0000u));
    *hi = _mm512_and_ps(x, top);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); /* kept a NaN, as in split3 */
    *hi = _mm512_mask_or_ps(*hi, nan, *hi, _mm512_castsi512_ps(_mm512_set1_epi32(0x00400000)));
    __m512 r1 = _mm512_sub_ps(x, *hi);
    __mmask16 finite = _mm512_cmp_ps_mask(r1, r1, _CMP_ORD_Q); /* inf - inf and NaN are not */
    *mid = _mm512_maskz_and_ps(finite, r1, top);
    *lo = _mm512_maskz_and_ps(finite, _mm512_sub_ps(r1, *mid), top);
}

/* One m-tile of unit-stride rows (f32 or bf16), vectorised: per 32 k, each
 * row's parts as 16 bf16 pairs, transposed into the tile's [pair][row] order. */
static void pack_x_tile_fast(const amx_job *j, const char *rows[16], int nrows, uint16_t *dst) {
    for (int64_t kc = 0; kc < j->Kp / 32; kc++) {
        int64_t k = kc * 32, left = j->K - k;
        __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        __mmask16 m1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        __m512i part[3][16];
        for (int i = 0; i < 16; i++) {
            if (i >= nrows) {
                for (int q = 0; q < j->parts; q++) part[q][i] = _mm512_setzero_si512();
                continue;
            }
            if (j->parts == 1) {
                __mmask32 mk = left >= 32 ? 0xffffffffu : (__mmask32)((1ull << left) - 1);
                part[0][i] = _mm512_maskz_loadu_epi16(mk, (const uint16_t *)rows[i] + k);
                continue;
            }
            const float *x = (const float *)rows[i] + k;
            __m512 a = _mm512_maskz_loadu_ps(m0, x), b = _mm512_maskz_loadu_ps(m1, x + 16);
            __m512 ah, am, al, bh, bm, bl;
            split3x16(a, &ah, &am, &al);
            split3x16(b, &bh, &bm, &bl);
            part[0][i] = pairs_bf16(ah, bh);
            part[1][i] = pairs_bf16(am, bm);
            part[2][i] = pairs_bf16(al, bl);
        }
        for (int q = 0; q < j->parts; q++) {
            lmc_transpose16x16_epi32(part[q]);
            uint16_t *d = dst + (size_t)q * xp_block(j) + (size_t)kc * 512;
            for (int r = 0; r < 16; r++) _mm512_storeu_si512(d + r * 32, part[q][r]);
        }
    }
}

/* Packs the activation parts of m-tiles [t0, t1) (over all batches). */
static void pack_x_task(void *ctx, int64_t t0, int64_t t1, int thread) {
    (void)thread;
    const amx_job *j = ctx;
    size_t asz = lmc_dtype_size(j->a->dtype);
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / j->mtiles, mt = t % j->mtiles;
        int64_t off[3];
        lmc_mm_batch_offsets(j->out, j->a, j->b, bi, off);
        uint16_t *dst = j->xp + (size_t)t * (size_t)j->parts * xp_block(j);
        const char *rows[16];
        int nrows = 0;
        for (; nrows < 16 && mt * 16 + nrows < j->M; nrows++)
            rows[nrows] = (const char *)lmc_array_ptr(j->a) + (off[1] + (mt * 16 + nrows) * j->sam) * (int64_t)asz;
        if (j->sak == 1) {
            pack_x_tile_fast(j, rows, nrows, dst);
            continue;
        }
        memset(dst, 0, (size_t)j->parts * xp_block(j) * sizeof(uint16_t));
        for (int i = 0; i < nrows; i++)
            for (int64_t k = 0; k < j->K; k++) {
                /* element (k/2, i, k%2) of each part's [Kp/2][16][2] block */
                size_t pos = (size_t)(k / 2 * 32 + i * 2 + k % 2);
                const char *src = rows[i] + k * j->sak * (int64_t)asz;
                if (j->parts == 1) {
                    dst[pos] = *(const uint16_t *)src;
                    continue;
                }
                uint16_t p[3];
                split3(*(const float *)src, p);
                for (int q = 0; q < 3; q++) dst[(size_t)q * xp_block(j) + pos] = p[q];
            }
    }
}

/* Where tile kc (32 k) of a 16-row weight tile lives: rows `stride` bytes apart. */
typedef struct wtile {
    const char *base; /* k = 0 of the tile's first row */
    int64_t stride;
    const char *tail; /* the last, ragged k tile (zero-padded copy), or NULL */
} wtile;

static inline const void *wtile_at(const wtile *w, int64_t kc, int64_t kfull) {
    return kc < kfull ? w->base + kc * 64 : w->tail;
}

/* 16 x 16 f32 accumulator tile c[n][m] into out[m0 + m][n0 + n] for m < rows, n < cols. */
static void store_tile(const amx_job *j, int64_t ooff, const float *c, int64_t m0, int rows, int64_t n0, int cols) {
    size_t osz = lmc_dtype_size(j->out->dtype);
    __m512i r[16];
    for (int n = 0; n < 16; n++) r[n] = _mm512_load_si512(c + n * 16);
    lmc_transpose16x16_epi32(r);
    __mmask16 mask = (__mmask16)((1u << cols) - 1);
    for (int m = 0; m < rows; m++) {
        char *dst = (char *)lmc_array_ptr(j->out) + (ooff + (m0 + m) * j->som + n0) * (int64_t)osz;
        if (j->out->dtype == LMC_F32) {
            _mm512_mask_storeu_ps(dst, mask, _mm512_castsi512_ps(r[m]));
        } else {
            float tmp[16];
            _mm512_storeu_si512(tmp, r[m]);
            lmc_mm_isa_avx512.from_f32(dst, j->out->dtype, tmp, cols);
        }
    }
}

/* The 16 x 16 tiles c[nt][mt] (nt < nn, mt < mm; nn, mm in {1, 2}) over
 * k tiles [kc0, kc1): started from zero, or from the partial sums at
 * cb[nt][mt] (cstride floats between n-tiles, 256 between m-tiles).
 * `prefetch` on the first sweep over M; over all of K, the prefetch runs on
 * into the `nnext` weight rows after the tiles' rows (`next`, same stride),
 * so a thread's stream of weight rows has no gaps between tile pairs. */
static inline __attribute__((always_inline)) void kernel(const amx_job *j, const wtile *w, const uint16_t *x,
                                                         int64_t kc0, int64_t kc1, const float *cb, int64_t cstride,
                                                         bool prefetch, const char *next, int nnext, const int nn,
                                                         const int mm, const int parts) {
    int64_t kfull = j->K / 32;
    bool stream = kc0 == 0 && kc1 == j->Kp / 32;
    size_t mstride = (size_t)parts * xp_block(j); /* uint16 between m-tiles */
    if (cb) {
        _tile_loadd(0, cb, 64);
        if (nn == 2) _tile_loadd(1, cb + cstride, 64);
        if (mm == 2) _tile_loadd(2, cb + 256, 64);
        if (nn == 2 && mm == 2) _tile_loadd(3, cb + cstride + 256, 64);
    } else {
        _tile_zero(0);
        if (nn == 2) _tile_zero(1);
        if (mm == 2) _tile_zero(2);
        if (nn == 2 && mm == 2) _tile_zero(3);
    }
    for (int64_t kc = kc0; kc < kc1; kc++) {
        /* 16 or 32 row streams at once are more than the hardware
         * prefetcher follows: fetch each row a few tiles ahead. */
        int64_t pk = kc + (stream ? PF_STREAM : PF_TILES);
        if (prefetch && pk < kfull) {
            for (int r = 0; r < 16; r++) _mm_prefetch(w[0].base + r * w[0].stride + pk * 64, _MM_HINT_T0);
            if (nn == 2)
                for (int r = 0; r < 16; r++) _mm_prefetch(w[1].base + r * w[1].stride + pk * 64, _MM_HINT_T0);
        } else if (prefetch && stream && pk - kfull < kfull) {
            for (int r = 0; r < nnext; r++) _mm_prefetch(next + r * w[0].stride + (pk - kfull) * 64, _MM_HINT_T0);
        }
        _tile_loadd(4, wtile_at(&w[0], kc, kfull), kc < kfull ? w[0].stride : 64);
        if (nn == 2) _tile_loadd(5, wtile_at(&w[1], kc, kfull), kc < kfull ? w[1].stride : 64);
        for (int p = 0; p < parts; p++) {
            const uint16_t *xt = x + (size_t)p * xp_block(j) + (size_t)kc * 512;
            _tile_loadd(6, xt, 64);
            if (mm == 2) _tile_loadd(7, xt + mstride, 64);
            _tile_dpbf16ps(0, 4, 6);
            if (nn == 2) _tile_dpbf16ps(1, 5, 6);
            if (mm == 2) _tile_dpbf16ps(2, 4, 7);
            if (nn == 2 && mm == 2) _tile_dpbf16ps(3, 5, 7);
        }
    }
}

#define KERNEL_CASES(parts)                                                                                            \
    do {                                                                                                               \
        if (nn == 2 && mm == 2) kernel(j, w, x, kc0, kc1, cb, cstride, mt == 0, next, nnext, 2, 2, parts);             \
        else if (nn == 2) kernel(j, w, x, kc0, kc1, cb, cstride, mt == 0, next, nnext, 2, 1, parts);                   \
        else if (mm == 2) kernel(j, w, x, kc0, kc1, cb, cstride, mt == 0, next, nnext, 1, 2, parts);                   \
        else kernel(j, w, x, kc0, kc1, cb, cstride, mt == 0, next, nnext, 1, 1, parts);                                \
    } while (0)

/* Sets up the descriptor of the weight tile holding rows [n0, n0 + 16). */
static void weight_tile(const amx_job *j, const uint16_t *wbase, int64_t n0, uint16_t *pad, uint16_t *tailbuf,
                        wtile *t) {
    int64_t rows = j->N - n0 < 16 ? j->N - n0 : 16;
    int64_t kfull = j->K / 32;
    if (rows < 16) {
        /* the last, short tile: all of it zero-padded to 16 x Kp */
        memset(pad, 0, (size_t)(16 * j->Kp) * sizeof(uint16_t));
        for (int64_t r = 0; r < rows; r++) memcpy(pad + r * j->Kp, wbase + (n0 + r) * j->ldw, (size_t)j->K * 2);
        t->base = (const char *)pad;
        t->stride = j->Kp * 2;
        t->tail = (const char *)(pad + kfull * 32);
        if (j->K % 32) {
            /* the tail tile must be 16 rows of 64 contiguous bytes */
            for (int64_t r = 0; r < 16; r++) memcpy(tailbuf + r * 32, pad + r * j->Kp + kfull * 32, 64);
            t->tail = (const char *)tailbuf;
        }
        return;
    }
    t->base = (const char *)(wbase + n0 * j->ldw);
    t->stride = j->ldw * 2;
    t->tail = NULL;
    if (j->K % 32) {
        memset(tailbuf, 0, 16 * 32 * sizeof(uint16_t));
        for (int64_t r = 0; r < 16; r++)
            memcpy(tailbuf + r * 32, wbase + (n0 + r) * j->ldw + kfull * 32, (size_t)(j->K % 32) * 2);
        t->tail = (const char *)tailbuf;
    }
}

static void amx_task(void *ctx, int64_t t0, int64_t t1, int run) {
    (void)run;
    const amx_job *j = ctx;
    /* per thread: a padded ragged tile (16 x Kp) and a tail tile (16 x 32) per
     * weight tile of the block; the partial sums of the block's tiles
     * [n-tile][m-tile][16 x 16] between k blocks */
    uint16_t *pad = lmc_scratch(LMC_SCRATCH_MATMUL_AMX, j->work_bytes);
    if (!pad) {
        atomic_store(&((amx_job *)ctx)->out_of_memory, true);
        return;
    }
    uint16_t *tails = pad + 16 * j->Kp;
    int64_t cstride = j->mtiles * 256;
    float *csum = (float *)(tails + NBLK / 16 * 512);
    float ct[4][256] __attribute__((aligned(64)));
    int64_t nk = j->Kp / 32;
    lmc_amx_configure_uniform();
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / j->ntasks_n, nb0 = t % j->ntasks_n * NBLK;
        int64_t nb1 = nb0 + NBLK < j->N ? nb0 + NBLK : j->N;
        int64_t off[3];
        lmc_mm_batch_offsets(j->out, j->a, j->b, bi, off);
        const uint16_t *wbase = (const uint16_t *)lmc_array_ptr(j->b) + off[2];
        wtile wt[NBLK / 16];
        int ntiles = (int)((nb1 - nb0 + 15) / 16);
        for (int i = 0; i < ntiles; i++) weight_tile(j, wbase, nb0 + i * 16, pad, tails + i * 512, &wt[i]);
        const uint16_t *xb = j->xp + (size_t)(bi * j->mtiles) * (size_t)j->parts * xp_block(j);
        int64_t kblk = k_block(j);
        for (int64_t kc0 = 0; kc0 < nk; kc0 += kblk) {
            int64_t kc1 = kc0 + kblk < nk ? kc0 + kblk : nk;
            for (int64_t mt = 0; mt < j->mtiles; mt += 2) {
                int mm = j->mtiles - mt >= 2 ? 2 : 1;
                const uint16_t *x = xb + (size_t)mt * (size_t)j->parts * xp_block(j);
                for (int i = 0; i < ntiles; i += 2) {
                    int nn = ntiles - i >= 2 ? 2 : 1;
                    const wtile *w = &wt[i];
                    float *cpart = csum + i * cstride + mt * 256;
                    const float *cb = kc0 > 0 ? cpart : NULL;
                    /* the rows after this pair, while they are this matrix's rows read in place */
                    int64_t n_after = nb0 + (i + nn) * 16, left = j->N - n_after;
                    int nnext = w[0].stride != j->ldw * 2 || left <= 0 ? 0 : left < 32 ? (int)left : 32;
                    const char *next = nnext ? w[0].base + (int64_t)nn * 16 * w[0].stride : NULL;
                    if (j->parts == 3) KERNEL_CASES(3);
                    else KERNEL_CASES(1);
                    if (kc1 < nk) {
                        _tile_stored(0, cpart, 64);
                        if (nn == 2) _tile_stored(1, cpart + cstride, 64);
                        if (mm == 2) _tile_stored(2, cpart + 256, 64);
                        if (nn == 2 && mm == 2) _tile_stored(3, cpart + cstride + 256, 64);
                        continue;
                    }
                    _tile_stored(0, ct[0], 64);
                    if (nn == 2) _tile_stored(1, ct[1], 64);
                    if (mm == 2) _tile_stored(2, ct[2], 64);
                    if (nn == 2 && mm == 2) _tile_stored(3, ct[3], 64);
                    for (int a = 0; a < mm; a++)
                        for (int b = 0; b < nn; b++) {
                            int64_t m0 = (mt + a) * 16, n0 = nb0 + (i + b) * 16;
                            int rows = (int)(j->M - m0 < 16 ? j->M - m0 : 16);
                            int cols = (int)(j->N - n0 < 16 ? j->N - n0 : 16);
                            store_tile(j, off[0], ct[a * 2 + b], m0, rows, n0, cols);
                        }
                }
            }
        }
    }
    _tile_release();
}

lmc_status lmc_cpu_matmul_amx(lmc_array *out, const lmc_array *a, const lmc_array *b) {
    int nd = out->ndim;
    lmc_array fa, fb, fo;
    if (lmc_mm_fold_batch(out, a, b, &fo, &fa, &fb)) {
        out = &fo;
        a = &fa;
        b = &fb;
        nd = 2;
    }
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a->shape[nd - 1];
    bool fits = (a->dtype == LMC_F32 || a->dtype == LMC_BF16) && b->dtype == LMC_BF16 && M >= AMX_MIN_M && K > 0 &&
                N > 1 && b->strides[nd - 2] == 1 && out->strides[nd - 1] == 1;
    if (!fits) return lmc_cpu_matmul_blocked(out, a, b, &lmc_mm_isa_avx512);

    amx_job j = {.out = out, .a = a, .b = b, .M = M, .N = N, .K = K};
    j.Kp = (K + 31) / 32 * 32;
    j.sam = a->strides[nd - 2];
    j.sak = a->strides[nd - 1];
    j.ldw = b->strides[nd - 1];
    j.som = out->strides[nd - 2];
    j.nbatch = lmc_mm_batch_count(out);
    j.mtiles = (M + 15) / 16;
    j.ntasks_n = (N + NBLK - 1) / NBLK;
    j.parts = a->dtype == LMC_F32 ? 3 : 1;
    size_t xp_elems = (size_t)(j.nbatch * j.mtiles) * (size_t)j.parts * xp_block(&j);
    size_t pad_elems = (size_t)(16 * j.Kp + NBLK / 16 * 512);
    size_t csum_floats = j.Kp / 32 > k_block(&j) ? (size_t)(NBLK / 16) * (size_t)j.mtiles * 256 : 0;
    j.work_bytes = (pad_elems * sizeof(uint16_t) + csum_floats * sizeof(float) + 63) / 64 * 64;
    j.xp = aligned_alloc(64, (xp_elems * sizeof(uint16_t) + 63) / 64 * 64);
    if (!j.xp) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory");
    int64_t work = 16 * K * j.parts; /* elements packed per m-tile */
    lmc_parallel_for(j.nbatch * j.mtiles, work >= 16384 ? 1 : 16384 / work + 1, pack_x_task, &j);
    /* a contiguous part of tasks per thread, helped from its back at the
     * end: a thread that is late or slowed by the host does not hold the
     * other up */
    lmc_parallel_split(j.nbatch * j.ntasks_n, 1, amx_task, &j);
    free(j.xp);
    if (atomic_load(&j.out_of_memory))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory for %zu bytes of work space", j.work_bytes);
    return LMC_OK;
}
