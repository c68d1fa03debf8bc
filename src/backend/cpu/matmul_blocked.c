/* The fast matmul driver shared by the AVX2 and AVX-512 paths. It handles
 * batching, threading, layouts and dtypes in plain C and calls the ISA's
 * pieces (lmc_mm_isa) for the inner loops:
 *
 *  - small M (decode, batched decode): a GEMV that streams the weights once.
 *    For the nn.Linear layout (b is Wᵀ of a row-major W [N, K]: strides
 *    (1, ldw)), up to M = 64, each output is a dot product of an activation
 *    row with a contiguous weight row, and each block of weight rows is
 *    applied to all M rows while it is in cache; for a row-major b [K, N]
 *    (M < 16) the weight rows are accumulated (axpy), 4 rows of M at a time.
 *    Threads split N, so every thread streams its own slice of the weights.
 *    bf16/f16 weights are widened to f32 in registers, never converted as a
 *    whole; bf16 @ bf16 uses vdpbf16ps where the ISA has it.
 *  - otherwise a blocked GEMM: B is packed per (KC x NB) block into f32
 *    panels nr wide (converting bf16/f16 and transposing the Linear layout on
 *    the way), A into mr-row panels, and an mr x nr register-tile micro-kernel
 *    accumulates in f32. Threads split (batch, M-block, N-block).
 *
 * Every output element is computed by one thread in a fixed order, so the
 * result is the same for any thread count. Accumulation is in f32. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul_internal.h"
#include "core/scratch.h"
#include "core/threadpool.h"

enum {
    GEMV_NT_MAX_M = 64, /* up to this M the Linear layout runs the GEMV */
    GEMV_NN_MAX_M = 15, /* and a row-major b */
    GEMV_NT_CHUNK = 64,   /* weight rows per GEMV task (nn.Linear layout) */
    GEMV_NN_CHUNK = 256,  /* columns per GEMV task (row-major b) */
    GEMV_STREAM_ROWS = 64, /* one x row: a piece of at least streams x this many rows is read as streams */
    KC = 256,             /* K block of the GEMM */
    NB = 256,             /* N block of the GEMM (a multiple of every nr) */
    APACK_MAX_FLOATS = 2 << 20, /* a thread keeps its m-block of A packed (all of K) up to this size */
};

/* --- the 2-d problem per batch ----------------------------------------------- */

typedef struct mm_job {
    const lmc_mm_isa *isa;
    lmc_array *out;
    const lmc_array *a, *b;
    int64_t nbatch, M, N, K;
    int64_t sam, sak, sbk, sbn, som, son;
    bool direct_out; /* out is f32 with unit column stride: accumulate in place */
    /* GEMV: activations prepared as f32 (or bf16) rows with unit K stride */
    const void *x;
    lmc_dtype xdt;
    int64_t ldx, x_batch_stride; /* x_batch_stride < 0: use a's batch offsets */
    /* GEMM task grid */
    int64_t mblock, mtiles, ntiles;
    float *scratch; /* per thread (GEMM) */
    size_t scratch_floats;
    /* per thread: the m-block of A packed for all of K (apack_floats each, 0: packed per K block
     * instead), and which (batch, m-tile) it holds (-1: none) */
    size_t apack_floats;
    int64_t *apack_key;
    _Atomic bool out_of_memory; /* a GEMV thread found no work space */
} mm_job;

static const char *elem(const lmc_array *t, int64_t off) {
    return (const char *)lmc_array_ptr(t) + off * (int64_t)lmc_dtype_size(t->dtype);
}

/* Stores rows x cols f32 values (row stride ldc) into out at element offset base. */
static void store_rows(const mm_job *j, int64_t base, const float *c, int64_t ldc, int64_t rows, int64_t cols) {
    size_t osz = lmc_dtype_size(j->out->dtype);
    char *op = (char *)lmc_array_ptr(j->out);
    for (int64_t i = 0; i < rows; i++) {
        char *dst = op + (base + i * j->som) * (int64_t)osz;
        if (j->son == 1 || cols == 1) j->isa->from_f32(dst, j->out->dtype, c + i * ldc, cols);
        else
            for (int64_t n = 0; n < cols; n++)
                lmc_store_f64(dst + n * j->son * (int64_t)osz, j->out->dtype, c[i * ldc + n]);
    }
}

/* --- GEMV ---------------------------------------------------------------------- */

/* Tasks [t0, t1) of the GEMV: a piece of lmc_parallel_split, possibly run
 * beside another piece of the same part on another thread, so the work
 * space is the calling thread's own. */
static void gemv_task(void *ctx, int64_t t0, int64_t t1, int part) {
    (void)part;
    mm_job *j = ctx;
    const lmc_mm_isa *isa = j->isa;
    bool nt = j->sbk == 1;
    int64_t chunk = nt ? GEMV_NT_CHUNK : GEMV_NN_CHUNK;
    int64_t nchunks = (j->N + chunk - 1) / chunk;
    size_t xsz = lmc_dtype_size(j->xdt);
    if (nt && j->xdt == LMC_F32 && j->M == 1 && j->direct_out && j->nbatch == 1) {
        /* a long run of weight rows with one row of x: read as isa->streams streams */
        int64_t r0 = t0 * chunk, r1 = t1 * chunk < j->N ? t1 * chunk : j->N;
        if (r1 - r0 >= isa->streams * GEMV_STREAM_ROWS) {
            int64_t off[3];
            lmc_mm_batch_offsets(j->out, j->a, j->b, 0, off);
            const float *x = (const float *)((const char *)j->x + (j->x_batch_stride < 0 ? off[1] : 0) * (int64_t)xsz);
            float *y = (float *)lmc_array_ptr(j->out) + off[0];
            int64_t q = (r1 - r0) / isa->streams, r = r0 + isa->streams * q;
            isa->gemv_nt_streams(j->K, x, elem(j->b, off[2] + r0 * j->sbn), j->b->dtype, j->sbn, q, y + r0);
            if (r < r1) isa->gemv_nt(j->K, 1, x, j->ldx, elem(j->b, off[2] + r * j->sbn), j->b->dtype, j->sbn, r1 - r, y + r, j->som);
            return;
        }
    }
    float *tmp = NULL; /* [M][chunk] */
    if (!j->direct_out) {
        tmp = lmc_scratch(LMC_SCRATCH_GEMV, (size_t)j->scratch_floats * sizeof(float));
        if (!tmp) {
            atomic_store(&j->out_of_memory, true);
            return;
        }
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / nchunks, n0 = t % nchunks * chunk;
        int64_t nc = j->N - n0 < chunk ? j->N - n0 : chunk;
        int64_t off[3];
        lmc_mm_batch_offsets(j->out, j->a, j->b, bi, off);
        const char *x = (const char *)j->x + (j->x_batch_stride < 0 ? off[1] : bi * j->x_batch_stride) * (int64_t)xsz;
        const char *w = elem(j->b, off[2] + n0 * j->sbn);
        float *y = j->direct_out ? (float *)lmc_array_ptr(j->out) + off[0] + n0 : tmp;
        int64_t ldy = j->direct_out ? j->som : chunk;
        if (nt && j->xdt == LMC_F32) {
            /* All M rows at once: each weight row is read from memory once. */
            isa->gemv_nt(j->K, (int)j->M, (const float *)x, j->ldx, w, j->b->dtype, j->sbn, nc, y, ldy);
        } else {
            for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
                int mr = j->M - m0 < 4 ? (int)(j->M - m0) : 4;
                const char *xr = x + m0 * j->ldx * (int64_t)xsz;
                if (nt)
                    isa->gemv_nt_bf16(j->K, mr, (const uint16_t *)xr, j->ldx, (const uint16_t *)w, j->sbn, nc,
                                      y + m0 * ldy, ldy);
                else
                    isa->gemv_nn(j->K, mr, (const float *)xr, j->ldx, w, j->b->dtype, j->sbk, nc, y + m0 * ldy, ldy);
            }
        }
        if (!j->direct_out) store_rows(j, off[0] + n0 * j->son, tmp, chunk, j->M, nc);
    }
}

/* Activations for the GEMV as rows with unit K stride: a itself when it
 * already is (f32, or bf16 for vdpbf16ps), else a converted copy. */
static lmc_status gemv_prepare_x(mm_job *j, void **owned) {
    const lmc_array *a = j->a;
    bool want_bf16 = a->dtype == LMC_BF16 && j->b->dtype == LMC_BF16 && j->sbk == 1 && j->isa->gemv_nt_bf16;
    j->xdt = want_bf16 ? LMC_BF16 : LMC_F32;
    *owned = NULL;
    if (a->dtype == j->xdt && (j->sak == 1 || j->K == 1)) {
        j->x = lmc_array_ptr(a);
        j->ldx = j->sam;
        j->x_batch_stride = -1;
        return LMC_OK;
    }
    size_t xsz = lmc_dtype_size(j->xdt);
    char *buf = malloc((size_t)(j->nbatch * j->M * j->K) * xsz + 64);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory");
    int64_t off[3];
    size_t asz = lmc_dtype_size(a->dtype);
    for (int64_t bi = 0; bi < j->nbatch; bi++) {
        lmc_mm_batch_offsets(j->out, a, j->b, bi, off);
        for (int64_t m = 0; m < j->M; m++) {
            char *dst = buf + (size_t)((bi * j->M + m) * j->K) * xsz;
            const char *src = elem(a, off[1] + m * j->sam);
            if (j->sak == 1) lmc_convert(dst, j->xdt, src, a->dtype, (size_t)j->K);
            else
                for (int64_t k = 0; k < j->K; k++)
                    lmc_convert(dst + k * (int64_t)xsz, j->xdt, src + k * j->sak * (int64_t)asz, a->dtype, 1);
        }
    }
    *owned = buf;
    j->x = buf;
    j->ldx = j->K;
    j->x_batch_stride = j->M * j->K;
    return LMC_OK;
}

/* --- GEMM ---------------------------------------------------------------------- */

/* B[k0 : k0+kl, n0 : n0+nw] into panels of nr columns: panel p holds kl rows of
 * nr f32 at bp + p*kl*nr, zero-padded past nw. */
static void pack_b(const mm_job *j, int64_t boff, int64_t k0, int64_t kl, int64_t n0, int64_t nw, float *bp) {
    const lmc_mm_isa *isa = j->isa;
    int nr = isa->nr;
    size_t bsz = lmc_dtype_size(j->b->dtype);
    float col[KC];
    if (j->sbn == 1) {
        /* B's rows are contiguous in N: each row is read once, start to end, into
         * its place in every panel (a panel at a time read each row's 2*nr bytes
         * at a stride, which left the hardware prefetcher behind: ~12 % of a LoRA
         * training step converting weights) */
        if (nw % nr) memset(bp + nw / nr * kl * nr, 0, (size_t)(kl * nr) * sizeof(float));
        for (int64_t k = 0; k < kl; k++) {
            const char *src = elem(j->b, boff + (k0 + k) * j->sbk + n0);
            for (int64_t p = 0; p * nr < nw; p++) {
                int64_t cols = nw - p * nr < nr ? nw - p * nr : nr;
                isa->to_f32(bp + p * kl * nr + k * nr, src + p * nr * (int64_t)bsz, j->b->dtype, cols);
            }
        }
        return;
    }
    for (int64_t p = 0; p * nr < nw; p++) {
        float *dst = bp + p * kl * nr;
        int64_t cols = nw - p * nr < nr ? nw - p * nr : nr;
        if (cols < nr) memset(dst, 0, (size_t)(kl * nr) * sizeof(float));
        int64_t nstart = n0 + p * nr;
        if (j->sbk == 1) {
            /* The Linear layout: weight rows are contiguous in K; transpose. */
            for (int64_t c = 0; c < cols; c++) {
                isa->to_f32(col, elem(j->b, boff + (nstart + c) * j->sbn + k0), j->b->dtype, kl);
                for (int64_t k = 0; k < kl; k++) dst[k * nr + c] = col[k];
            }
        } else {
            for (int64_t k = 0; k < kl; k++)
                for (int64_t c = 0; c < cols; c++)
                    dst[k * nr + c] = (float)lmc_load_f64(
                        (const char *)lmc_array_ptr(j->b) + (boff + (k0 + k) * j->sbk + (nstart + c) * j->sbn) * (int64_t)bsz,
                        j->b->dtype);
        }
    }
}

/* rows (<= mr) rows of A from row m0, columns k0 : k0+kl, as ap[k*mr + i]. */
static void pack_a(const mm_job *j, int64_t aoff, int64_t m0, int rows, int64_t k0, int64_t kl, float *ap) {
    int mr = j->isa->mr;
    float row[KC];
    size_t asz = lmc_dtype_size(j->a->dtype);
    if (j->sak != 1 && j->sam == 1) {
        /* A transposed (a backward product's xᵀ): A's rows are contiguous
         * in M, so each k's mr values are one short run */
        for (int64_t k = 0; k < kl; k++) {
            float *dst = ap + k * mr;
            j->isa->to_f32(dst, elem(j->a, aoff + m0 + (k0 + k) * j->sak), j->a->dtype, rows);
            for (int i = rows; i < mr; i++) dst[i] = 0.0f;
        }
        return;
    }
    for (int i = 0; i < mr; i++) {
        if (i >= rows) {
            for (int64_t k = 0; k < kl; k++) ap[k * mr + i] = 0.0f;
            continue;
        }
        const char *src = elem(j->a, aoff + (m0 + i) * j->sam + k0 * j->sak);
        if (j->sak == 1) j->isa->to_f32(row, src, j->a->dtype, kl);
        else
            for (int64_t k = 0; k < kl; k++) row[k] = (float)lmc_load_f64(src + k * j->sak * (int64_t)asz, j->a->dtype);
        for (int64_t k = 0; k < kl; k++) ap[k * mr + i] = row[k];
    }
}

static void gemm_task(void *ctx, int64_t t0, int64_t t1, int thread) {
    const mm_job *j = ctx;
    const lmc_mm_isa *isa = j->isa;
    int mr = isa->mr, nr = isa->nr;
    float *bp = j->scratch + (size_t)thread * j->scratch_floats; /* KC * NB */
    float *ap = bp + KC * NB;                                      /* KC * mr */
    float *tile = ap + KC * mr;                                    /* mr * nr */
    float *cbuf = tile + mr * nr;                                  /* mblock * NB when not direct */
    float *apack = cbuf + (j->direct_out ? 0 : (size_t)j->mblock * NB); /* apack_floats */
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / (j->mtiles * j->ntiles), rest = t % (j->mtiles * j->ntiles);
        int64_t mstart = rest / j->ntiles * j->mblock, n0 = rest % j->ntiles * NB;
        int64_t mend = mstart + j->mblock < j->M ? mstart + j->mblock : j->M;
        int64_t nw = j->N - n0 < NB ? j->N - n0 : NB;
        int64_t off[3];
        lmc_mm_batch_offsets(j->out, j->a, j->b, bi, off);
        float *c;
        int64_t ldc;
        if (j->direct_out) {
            c = (float *)lmc_array_ptr(j->out) + off[0] + mstart * j->som + n0;
            ldc = j->som;
        } else {
            c = cbuf;
            ldc = NB;
        }
        /* Tasks go to threads in runs of consecutive n-tiles of one m-tile: pack that m-block of A
         * once for all of K and all its n-tiles (the lm_head's product has ~600 of them) */
        bool cached = j->apack_floats > 0;
        if (cached && j->apack_key[thread] != t / j->ntiles) {
            for (int64_t m0 = mstart; m0 < mend; m0 += mr)
                for (int64_t k0 = 0; k0 < j->K; k0 += KC)
                    pack_a(j, off[1], m0, mend - m0 < mr ? (int)(mend - m0) : mr, k0, j->K - k0 < KC ? j->K - k0 : KC,
                           apack + (m0 - mstart) * j->K + k0 * mr);
            j->apack_key[thread] = t / j->ntiles;
        }
        for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
            int64_t kl = j->K - k0 < KC ? j->K - k0 : KC;
            bool accumulate = k0 > 0;
            pack_b(j, off[2], k0, kl, n0, nw, bp);
            for (int64_t m0 = mstart; m0 < mend; m0 += mr) {
                int rows = mend - m0 < mr ? (int)(mend - m0) : mr;
                if (cached) ap = apack + (m0 - mstart) * j->K + k0 * mr;
                else pack_a(j, off[1], m0, rows, k0, kl, ap);
                float *crow = c + (m0 - mstart) * ldc;
                for (int64_t p = 0; p * nr < nw; p++) {
                    int64_t cols = nw - p * nr < nr ? nw - p * nr : nr;
                    if (rows == mr && cols == nr) {
                        isa->gemm_micro(kl, ap, bp + p * kl * nr, crow + p * nr, ldc, accumulate);
                        continue;
                    }
                    isa->gemm_micro(kl, ap, bp + p * kl * nr, tile, nr, false);
                    for (int i = 0; i < rows; i++)
                        for (int64_t q = 0; q < cols; q++)
                            crow[i * ldc + p * nr + q] = (accumulate ? crow[i * ldc + p * nr + q] : 0.0f) + tile[i * nr + q];
                }
            }
        }
        if (!j->direct_out) store_rows(j, off[0] + mstart * j->som + n0 * j->son, cbuf, NB, mend - mstart, nw);
    }
}

/* --- entry ----------------------------------------------------------------------- */

/* True when axes [first, last] of t can be walked as one axis with stride t->strides[last]. */
static bool mergeable(const lmc_array *t, int first, int last) {
    for (int d = first; d < last; d++)
        if (t->shape[d] != 1 && t->strides[d] != t->shape[d + 1] * t->strides[d + 1]) return false;
    return true;
}

bool lmc_mm_fold_batch(const lmc_array *out, const lmc_array *a, const lmc_array *b, lmc_array *fo, lmc_array *fa,
                       lmc_array *fb) {
    int nd = out->ndim;
    if (nd <= 2 || lmc_mm_batch_count(out) <= 1) return false;
    for (int d = 0; d < nd - 2; d++)
        if (b->strides[d] != 0 && out->shape[d] != 1) return false;
    if (!mergeable(a, 0, nd - 2) || !mergeable(out, 0, nd - 2)) return false;
    const lmc_array *src[3] = {out, a, b};
    lmc_array *dst[3] = {fo, fa, fb};
    for (int i = 0; i < 3; i++) {
        /* A shallow 2-d description of the same memory (never freed or counted). */
        memset(dst[i], 0, sizeof *dst[i]);
        dst[i]->buf = src[i]->buf;
        dst[i]->offset = src[i]->offset;
        dst[i]->dtype = src[i]->dtype;
        dst[i]->ndim = 2;
        dst[i]->shape[0] = src[i]->shape[nd - 2];
        dst[i]->shape[1] = src[i]->shape[nd - 1];
        dst[i]->strides[0] = src[i]->strides[nd - 2];
        dst[i]->strides[1] = src[i]->strides[nd - 1];
    }
    int64_t rows = lmc_mm_batch_count(out) * out->shape[nd - 2];
    fo->shape[0] = fa->shape[0] = rows;
    fo->size = rows * fo->shape[1];
    fa->size = rows * fa->shape[1];
    fb->size = fb->shape[0] * fb->shape[1];
    return true;
}

static void fill_zero(lmc_array *out) {
    lmc_index_iter it;
    const lmc_array *ops[1] = {out};
    lmc_index_init(&it, out->ndim, out->shape, 1, ops);
    size_t osz = lmc_dtype_size(out->dtype);
    do lmc_store_f64((char *)lmc_array_ptr(out) + it.off[0] * (int64_t)osz, out->dtype, 0.0);
    while (lmc_index_next(&it));
}

lmc_status lmc_cpu_matmul_blocked(lmc_array *out, const lmc_array *a, const lmc_array *b, const lmc_mm_isa *isa) {
    int nd = out->ndim;
    mm_job j = {.isa = isa, .out = out, .a = a, .b = b};
    j.M = out->shape[nd - 2];
    j.N = out->shape[nd - 1];
    j.K = a->shape[nd - 1];
    j.sam = a->strides[nd - 2];
    j.sak = a->strides[nd - 1];
    j.sbk = b->strides[nd - 2];
    j.sbn = b->strides[nd - 1];
    j.som = out->strides[nd - 2];
    j.son = j.N == 1 ? 1 : out->strides[nd - 1];
    if (j.K == 1) j.sbk = 1; /* one weight row: any layout is both */
    j.nbatch = lmc_mm_batch_count(out);
    if (out->size == 0) return LMC_OK;
    if (j.K == 0) {
        fill_zero(out);
        return LMC_OK;
    }

    lmc_array fa, fb, fo;
    if (lmc_mm_fold_batch(out, a, b, &fo, &fa, &fb)) {
        j.a = &fa;
        j.b = &fb;
        j.out = &fo;
        j.M = fo.shape[0];
        j.nbatch = 1;
    }
    j.direct_out = out->dtype == LMC_F32 && j.son == 1;
    int nthreads = lmc_num_threads();
    void *owned = NULL;
    lmc_status st = LMC_OK;

    if ((j.sbk == 1 && j.M <= GEMV_NT_MAX_M) || (j.sbn == 1 && j.M <= GEMV_NN_MAX_M)) {
        st = gemv_prepare_x(&j, &owned);
        if (st != LMC_OK) return st;
        int64_t chunk = j.sbk == 1 ? GEMV_NT_CHUNK : GEMV_NN_CHUNK;
        j.scratch_floats = (size_t)(j.M * chunk);
        int64_t tasks = j.nbatch * ((j.N + chunk - 1) / chunk);
        int64_t work = j.M * j.K * chunk; /* MACs per task */
        /* one contiguous part per thread, helped from its back once another is done */
        lmc_parallel_split(tasks, work >= 32768 ? 1 : 32768 / work + 1, gemv_task, &j);
        if (atomic_load(&j.out_of_memory)) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory");
    } else {
        j.ntiles = (j.N + NB - 1) / NB;
        /* Split M when batch x N-blocks alone leave threads idle. */
        int64_t msplit = 1;
        if (j.nbatch * j.ntiles < 2 * nthreads) msplit = (2 * nthreads + j.nbatch * j.ntiles - 1) / (j.nbatch * j.ntiles);
        j.mblock = (j.M + msplit - 1) / msplit;
        j.mblock = (j.mblock + isa->mr - 1) / isa->mr * isa->mr;
        j.mtiles = (j.M + j.mblock - 1) / j.mblock;
        /* the m-block's panels of mr rows, each all of K */
        size_t apack = (size_t)j.mblock * (size_t)j.K;
        j.apack_floats = j.ntiles > 1 && apack <= APACK_MAX_FLOATS ? apack : 0;
        j.scratch_floats = (size_t)KC * NB + (size_t)KC * isa->mr + (size_t)isa->mr * isa->nr +
                           (j.direct_out ? 0 : (size_t)j.mblock * NB) + j.apack_floats;
        j.scratch_floats = (j.scratch_floats + 15) / 16 * 16; /* keep each thread's block 64-byte aligned */
        j.scratch = aligned_alloc(64, (size_t)nthreads * j.scratch_floats * sizeof(float));
        j.apack_key = malloc((size_t)nthreads * sizeof *j.apack_key);
        if (!j.scratch || !j.apack_key) {
            free(j.scratch);
            free(j.apack_key);
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_matmul: out of memory");
        }
        for (int i = 0; i < nthreads; i++) j.apack_key[i] = -1;
        int64_t tasks = j.nbatch * j.mtiles * j.ntiles;
        int64_t work = j.mblock * j.K * NB;
        lmc_parallel_for(tasks, work >= 32768 ? 1 : 32768 / work + 1, gemm_task, &j);
    }
    free(j.scratch);
    free(j.apack_key);
    free(owned);
    return st;
}
