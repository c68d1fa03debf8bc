/* The matmul inner loops of the blocked driver (matmul_blocked.c), written
 * once over a small vector vocabulary and compiled per instruction set:
 * matmul_avx2.c and matmul_avx512.c define
 *
 *   V, VL              the f32 vector type and its lane count
 *   MR                 rows of the GEMM register tile (its columns: NR = 2 VL)
 *   DOT_MB, DOT_R      the GEMV register block: DOT_MB activation rows times
 *                      DOT_R weight rows (DOT_MB * DOT_R accumulators)
 *   v_zero, v_set1, v_loadu, v_storeu, v_add, v_fma, v_hsum
 *   v_load_w(p, dt)    VL elements of dtype dt (f32, bf16, f16) as f32
 *
 * and then include this file, which defines load1, to_f32, gemm_micro,
 * gemv_nt and gemv_nn for the ISA's lmc_mm_isa. bf16 and f16 are widened to
 * f32 exactly, in registers; all products and sums are f32 FMAs. */
#include <string.h>

#include "backend/cpu/matmul_internal.h"

#define NR (2 * VL)

static inline float load1(const void *p, int64_t i, lmc_dtype dt) {
    if (dt == LMC_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == LMC_BF16 ? lmc_bf16_to_f32(h) : lmc_f16_to_f32(h);
}

static void to_f32(float *dst, const void *src, lmc_dtype dt, int64_t n) {
    int64_t i = 0;
    if (dt == LMC_F32) { /* in registers: the packing copies runs of 12-256 floats, short for a memcpy call */
        for (; i + VL <= n; i += VL) v_storeu(dst + i, v_loadu((const float *)src + i));
        for (; i < n; i++) dst[i] = ((const float *)src)[i];
        return;
    }
    for (; i + VL <= n; i += VL) v_storeu(dst + i, v_load_w((const uint16_t *)src + i, dt));
    for (; i < n; i++) dst[i] = load1(src, i, dt);
}

/* MR x NR register tile: 2 MR accumulators, two B vectors, one broadcast. */
static void gemm_micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate) {
    V acc[MR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = v_zero();
    for (int64_t k = 0; k < kc; k++) {
        V b0 = v_loadu(bp + k * NR), b1 = v_loadu(bp + k * NR + VL);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            V av = v_set1(ap[k * MR + i]);
            acc[i][0] = v_fma(av, b0, acc[i][0]);
            acc[i][1] = v_fma(av, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (accumulate) {
            acc[i][0] = v_add(acc[i][0], v_loadu(ci));
            acc[i][1] = v_add(acc[i][1], v_loadu(ci + VL));
        }
        v_storeu(ci, acc[i][0]);
        v_storeu(ci + VL, acc[i][1]);
    }
}

/* m (<= DOT_MB) activation rows against nrows (<= DOT_R) weight rows that
 * start ldwb bytes apart, y[i*ldy + r*ys] for row r: each weight vector is
 * loaded and widened once and used for all m rows. `prefetch`: also fetch
 * what lies pf bytes past each row (the first pass over these rows; later
 * passes find them in cache). A row's result does not depend on the rows
 * beside it. */
static inline __attribute__((always_inline)) void dot_block(int64_t K, const int m, const float *x, int64_t ldx,
                                                            const char *w, const lmc_dtype wdt, int64_t ldwb,
                                                            int nrows, float *y, int64_t ldy, int64_t ys,
                                                            const bool prefetch, int64_t pf) {
    const int64_t wsz = wdt == LMC_F32 ? 4 : 2;
    V acc[DOT_MB][DOT_R];
    const char *wr[DOT_R];
    for (int r = 0; r < DOT_R; r++) wr[r] = w + (r < nrows ? r : 0) * ldwb;
#pragma GCC unroll 8
    for (int i = 0; i < DOT_MB; i++)
#pragma GCC unroll 8
        for (int r = 0; r < DOT_R; r++) acc[i][r] = v_zero();
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        V wv[DOT_R];
#pragma GCC unroll 8
        for (int r = 0; r < DOT_R; r++) {
            wv[r] = v_load_w(wr[r] + k * wsz, wdt);
            /* Rows end at page boundaries where the hardware prefetcher stops:
             * fetch the same place of the next rows ahead of time. */
            if (prefetch) _mm_prefetch(wr[r] + pf + k * wsz, _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int i = 0; i < DOT_MB; i++) {
            if (i >= m) break;
            V xv = v_loadu(x + i * ldx + k);
#pragma GCC unroll 8
            for (int r = 0; r < DOT_R; r++) acc[i][r] = v_fma(xv, wv[r], acc[i][r]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int r = 0; r < nrows; r++) {
            float s = v_hsum(acc[i][r]);
            for (int64_t q = k; q < K; q++) s += x[i * ldx + q] * load1(wr[r], q, wdt);
            y[i * ldy + r * ys] = s;
        }
}

/* One block of up to DOT_R weight rows against all m activation rows, in
 * groups of DOT_MB rows: the weight rows come from memory once and from cache
 * for the later groups. Instantiated per weight dtype and group size. */
static inline __attribute__((always_inline)) void dot_rows(int64_t K, int m, const float *x, int64_t ldx,
                                                           const char *w, const lmc_dtype wdt, int64_t ldwb, int nrows,
                                                           float *y, int64_t ldy) {
    for (int i0 = 0; i0 < m; i0 += DOT_MB) {
        const float *xi = x + i0 * ldx;
        float *yi = y + i0 * ldy;
        bool first = i0 == 0;
        switch (m - i0 < DOT_MB ? m - i0 : DOT_MB) {
#define DOT_CASE(mm)                                                                                                   \
    case mm:                                                                                                           \
        if (first) dot_block(K, mm, xi, ldx, w, wdt, ldwb, nrows, yi, ldy, 1, true, DOT_R * ldwb);                     \
        else dot_block(K, mm, xi, ldx, w, wdt, ldwb, nrows, yi, ldy, 1, false, 0);                                     \
        break;
            DOT_CASE(1)
            DOT_CASE(2)
            DOT_CASE(3)
#if DOT_MB > 3
            DOT_CASE(4)
#endif
#if DOT_MB > 4
            DOT_CASE(5)
            DOT_CASE(6)
#endif
#undef DOT_CASE
        }
    }
}

/* The Linear product y[i*ldy + j] = sum_k x[i*ldx + k] * w[j*ldw + k] for
 * i < m (any m), j < n, weights of dtype wdt read once. */
static void gemv_nt(int64_t K, int m, const float *x, int64_t ldx, const void *w, lmc_dtype wdt, int64_t ldw, int64_t n,
                    float *y, int64_t ldy) {
    int64_t ldwb = ldw * (int64_t)lmc_dtype_size(wdt);
    for (int64_t j = 0; j < n; j += DOT_R) {
        int nrows = n - j < DOT_R ? (int)(n - j) : DOT_R;
        const char *wj = (const char *)w + j * ldwb;
        if (wdt == LMC_BF16) dot_rows(K, m, x, ldx, wj, LMC_BF16, ldwb, nrows, y + j, ldy);
        else if (wdt == LMC_F16) dot_rows(K, m, x, ldx, wj, LMC_F16, ldwb, nrows, y + j, ldy);
        else dot_rows(K, m, x, ldx, wj, LMC_F32, ldwb, nrows, y + j, ldy);
    }
}

/* One row of x against weight rows [0, DOT_R*q) read as DOT_R streams q rows
 * apart, row i of each side by side: y[s*q + i] = the product with row
 * s*q + i, the same arithmetic as gemv_nt gives that row. One sequential
 * stream per thread leaves most of a core's memory parallelism unused (the
 * hardware prefetcher follows a stream within its 4 KiB page); see
 * LMC_QMM_STREAMS for the 4-bit kernel's. */
static void gemv_nt_streams(int64_t K, const float *x, const void *w, lmc_dtype wdt, int64_t ldw, int64_t q,
                            float *y) {
    int64_t ldwb = ldw * (int64_t)lmc_dtype_size(wdt), sb = q * ldwb;
    for (int64_t i = 0; i < q; i++) {
        const char *wi = (const char *)w + i * ldwb;
        /* prefetched: the same place two rows on in each stream */
        if (wdt == LMC_BF16) dot_block(K, 1, x, 0, wi, LMC_BF16, sb, DOT_R, y + i, 0, q, true, 2 * ldwb);
        else if (wdt == LMC_F16) dot_block(K, 1, x, 0, wi, LMC_F16, sb, DOT_R, y + i, 0, q, true, 2 * ldwb);
        else dot_block(K, 1, x, 0, wi, LMC_F32, sb, DOT_R, y + i, 0, q, true, 2 * ldwb);
    }
}

/* Row-major b, m <= 4: for each k, y[i, :] += x[i, k] * b[k, :], 4 VL columns at a time. */
static void gemv_nn(int64_t K, int m, const float *x, int64_t ldx, const void *b, lmc_dtype bdt, int64_t ldb, int64_t n,
                    float *y, int64_t ldy) {
    size_t bsz = lmc_dtype_size(bdt);
    const char *bb = b;
    int64_t j = 0;
    for (; j + 4 * VL <= n; j += 4 * VL) {
        V acc[4][4];
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < 4; r++) acc[i][r] = v_zero();
        for (int64_t k = 0; k < K; k++) {
            const char *row = bb + (k * ldb + j) * (int64_t)bsz;
            V bv[4];
            for (int r = 0; r < 4; r++) bv[r] = v_load_w(row + r * VL * (int64_t)bsz, bdt);
            for (int i = 0; i < m; i++) {
                V xv = v_set1(x[i * ldx + k]);
                for (int r = 0; r < 4; r++) acc[i][r] = v_fma(xv, bv[r], acc[i][r]);
            }
        }
        for (int i = 0; i < m; i++)
            for (int r = 0; r < 4; r++) v_storeu(y + i * ldy + j + r * VL, acc[i][r]);
    }
    for (; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += x[i * ldx + k] * load1(bb + k * ldb * (int64_t)bsz, j, bdt);
            y[i * ldy + j] = s;
        }
}
