/* AMX bf16 tiles for bf16 @ bf16 products with many rows (prefill).
 *
 * AMX multiplies bf16 tiles only, so this path runs when both operands are
 * already bf16: a model that keeps f32 activations and wants AMX prefill
 * casts them to bf16 first (lmc_astype) — an explicit choice, since that
 * rounds the activations; the product is then accumulated in f32 in the tile
 * registers and rounded once to the output dtype. Everything else (f32
 * activations, small M) goes to the AVX-512 driver.
 *
 * Layout: A is copied once into rows of Kp = K rounded up to 32 bf16 (zero
 * padded, Mp rows rounded up to 32). Each task owns a block of 32 output
 * columns: it packs that block of B into the VNNI tile layout (pairs of k
 * side by side: [k/32][tile][k%32/2][n][k%2]) and sweeps all rows of A with a
 * 2 x 2 block of 16 x 16 f32 accumulator tiles. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul_internal.h"
#include "core/threadpool.h"

enum { AMX_MIN_M = 32, TN = 32 /* columns per task */ };

typedef struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

typedef struct amx_job {
    lmc_array *out;
    const lmc_array *b;
    const uint16_t *ap; /* packed A: Mp x Kp */
    int64_t M, N, K, Mp, Kp, ntasks_n;
    int64_t sbk, sbn, som, aoff_batch; /* aoff_batch: elements between batches of packed A */
    int64_t nbatch;
    const lmc_array *a_full; /* for batch offsets */
    uint16_t *bpack;         /* per thread: Kp * TN */
    float *ctile;            /* per thread: 32 * 32 */
} amx_job;

static void config_tiles(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* B[:, n0 : n0+nw] into the VNNI layout, zero-padded to Kp x TN. */
static void pack_b_vnni(const amx_job *j, const uint16_t *b, int64_t n0, int64_t nw, uint16_t *bp) {
    memset(bp, 0, (size_t)(j->Kp * TN) * sizeof(uint16_t));
    for (int64_t n = 0; n < nw; n++) {
        const uint16_t *col = b + (n0 + n) * j->sbn;
        int64_t tile = n / 16, nn = n % 16;
        for (int64_t k = 0; k < j->K; k++)
            bp[((k / 32 * 2 + tile) * 16 + k % 32 / 2) * 32 + nn * 2 + (k & 1)] = col[k * j->sbk];
    }
}

static void amx_task(void *ctx, int64_t t0, int64_t t1, int thread) {
    const amx_job *j = ctx;
    uint16_t *bp = j->bpack + (size_t)thread * (size_t)(j->Kp * TN);
    float *ct = j->ctile + (size_t)thread * 32 * 32;
    config_tiles();
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / j->ntasks_n, n0 = t % j->ntasks_n * TN;
        int64_t nw = j->N - n0 < TN ? j->N - n0 : TN;
        int64_t off[3];
        lmc_mm_batch_offsets(j->out, j->a_full, j->b, bi, off);
        pack_b_vnni(j, (const uint16_t *)lmc_array_ptr(j->b) + off[2], n0, nw, bp);
        const uint16_t *abase = j->ap + bi * j->aoff_batch;
        for (int64_t m0 = 0; m0 < j->M; m0 += 32) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            const uint16_t *a0 = abase + m0 * j->Kp, *a1 = a0 + 16 * j->Kp;
            for (int64_t k = 0; k < j->Kp; k += 32) {
                const uint16_t *b0 = bp + (k / 32 * 2) * 512;
                _tile_loadd(4, a0 + k, j->Kp * 2);
                _tile_loadd(5, a1 + k, j->Kp * 2);
                _tile_loadd(6, b0, 64);
                _tile_loadd(7, b0 + 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, ct, 128);
            _tile_stored(1, ct + 16, 128);
            _tile_stored(2, ct + 16 * 32, 128);
            _tile_stored(3, ct + 16 * 32 + 16, 128);
            int64_t rows = j->M - m0 < 32 ? j->M - m0 : 32;
            size_t osz = lmc_dtype_size(j->out->dtype);
            for (int64_t r = 0; r < rows; r++) {
                char *dst = (char *)lmc_array_ptr(j->out) + (off[0] + (m0 + r) * j->som + n0) * (int64_t)osz;
                lmc_mm_isa_avx512.from_f32(dst, j->out->dtype, ct + r * 32, nw);
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
    bool fits = a->dtype == LMC_BF16 && b->dtype == LMC_BF16 && M >= AMX_MIN_M && K > 0 && N > 1 &&
                out->strides[nd - 1] == 1;
    if (!fits) return lmc_cpu_matmul_blocked(out, a, b, &lmc_mm_isa_avx512);

    amx_job j = {.out = out, .b = b, .a_full = a, .M = M, .N = N, .K = K};
    j.Mp = (M + 31) / 32 * 32;
    j.Kp = (K + 31) / 32 * 32;
    j.sbk = b->strides[nd - 2];
    j.sbn = b->strides[nd - 1];
    j.som = out->strides[nd - 2];
    j.nbatch = lmc_mm_batch_count(out);
    j.ntasks_n = (N + TN - 1) / TN;
    j.aoff_batch = j.Mp * j.Kp;
    int nt = lmc_num_threads();
    uint16_t *ap = aligned_alloc(64, (size_t)(j.nbatch * j.aoff_batch) * 2 + (size_t)nt * (size_t)(j.Kp * TN) * 2);
    float *ct = aligned_alloc(64, (size_t)nt * 32 * 32 * sizeof(float));
    if (!ap || !ct) {
        free(ap);
        free(ct);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory");
    }
    /* A once, row by row, into the padded layout. */
    int64_t sam = a->strides[nd - 2], sak = a->strides[nd - 1];
    for (int64_t bi = 0; bi < j.nbatch; bi++) {
        int64_t off[3];
        lmc_mm_batch_offsets(out, a, b, bi, off);
        const uint16_t *src = (const uint16_t *)lmc_array_ptr(a) + off[1];
        uint16_t *dst = ap + bi * j.aoff_batch;
        memset(dst, 0, (size_t)j.aoff_batch * 2);
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) dst[m * j.Kp + k] = src[m * sam + k * sak];
    }
    j.ap = ap;
    j.bpack = ap + j.nbatch * j.aoff_batch;
    j.ctile = ct;
    lmc_parallel_for(j.nbatch * j.ntasks_n, 1, amx_task, &j);
    free(ap);
    free(ct);
    return LMC_OK;
}
