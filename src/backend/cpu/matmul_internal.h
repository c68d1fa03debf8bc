/* Shared by the CPU matmul kernels (scalar oracle, blocked AVX2/AVX-512
 * driver, AMX). The kernel contract (backend/kernels.h): out, a and b have
 * the same number of axes, nd >= 2, batch axes already broadcast to out's. */
#ifndef LMC_BACKEND_CPU_MATMUL_INTERNAL_H
#define LMC_BACKEND_CPU_MATMUL_INTERNAL_H

#include "backend/cpu/cpu_kernels.h"

/* The element offsets of batch `bi` (row-major over the batch axes) in out, a, b. */
static inline void lmc_mm_batch_offsets(const lmc_array *out, const lmc_array *a, const lmc_array *b, int64_t bi,
                                        int64_t off[3]) {
    off[0] = off[1] = off[2] = 0;
    for (int d = out->ndim - 3; d >= 0; d--) {
        int64_t i = bi % out->shape[d];
        bi /= out->shape[d];
        off[0] += i * out->strides[d];
        off[1] += i * a->strides[d];
        off[2] += i * b->strides[d];
    }
}

static inline int64_t lmc_mm_batch_count(const lmc_array *out) {
    int64_t n = 1;
    for (int d = 0; d < out->ndim - 2; d++) n *= out->shape[d];
    return n;
}

/* When b is the same matrix for every batch (broadcast, stride 0) and the
 * batch and M axes of a and out can be walked as one axis, describes the
 * product as one 2-d matmul [batch*M, K] @ [K, N] in fo, fa, fb (shallow
 * descriptions of the same memory, not arrays to free) and returns true. */
bool lmc_mm_fold_batch(const lmc_array *out, const lmc_array *a, const lmc_array *b, lmc_array *fo, lmc_array *fa,
                       lmc_array *fb);

/* The scalar reference matmul (double accumulation): the oracle, and the
 * fallback of the fast kernels for layouts they do not handle. */
lmc_status lmc_cpu_matmul_scalar(lmc_array *out, const lmc_array *a, const lmc_array *b);

/* Per-ISA pieces plugged into the blocked driver (matmul_blocked.c). */
typedef struct lmc_mm_isa {
    const char *name;
    int mr, nr; /* GEMM micro-tile: mr rows of A times a packed B panel nr columns wide */
    /* n contiguous elements of dtype dt to f32. */
    void (*to_f32)(float *dst, const void *src, lmc_dtype dt, int64_t n);
    /* n f32 to dtype dt (round to nearest even). */
    void (*from_f32)(void *dst, lmc_dtype dt, const float *src, int64_t n);
    /* c[i*ldc + j] (+)= sum_k ap[k*mr + i] * bp[k*nr + j] for i < mr, j < nr:
     * A and B packed into panels; accumulate adds to c, else overwrites. */
    void (*gemm_micro)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool accumulate);
    /* The Linear product for small M: y[i*ldy + j] = sum_k x[i*ldx + k] * w[j*ldw + k]
     * for i < m (any m), j < n; w holds dtype wdt (f32, f16, bf16) and is read
     * from memory once for all m rows. */
    void (*gemv_nt)(int64_t K, int m, const float *x, int64_t ldx, const void *w, lmc_dtype wdt, int64_t ldw, int64_t n,
                    float *y, int64_t ldy);
    /* One row of x (m = 1) against rows [0, streams*q) of w, read as `streams` runs of q rows side
     * by side: y[j] for j < streams*q, each the same arithmetic as gemv_nt gives that row. */
    void (*gemv_nt_streams)(int64_t K, const float *x, const void *w, lmc_dtype wdt, int64_t ldw, int64_t q,
                            float *y);
    int streams; /* DOT_R */
    /* The same with bf16 x and bf16 w (vdpbf16ps), m <= 4; NULL where the ISA lacks it. */
    void (*gemv_nt_bf16)(int64_t K, int m, const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw, int64_t n,
                         float *y, int64_t ldy);
    /* Row-major B for small M: y[i*ldy + j] = sum_k x[i*ldx + k] * b[k*ldb + j], i < m (m <= 4), j < n. */
    void (*gemv_nn)(int64_t K, int m, const float *x, int64_t ldx, const void *b, lmc_dtype bdt, int64_t ldb, int64_t n,
                    float *y, int64_t ldy);
} lmc_mm_isa;

/* The blocked matmul over an ISA's pieces. */
lmc_status lmc_cpu_matmul_blocked(lmc_array *out, const lmc_array *a, const lmc_array *b, const lmc_mm_isa *isa);

extern const lmc_mm_isa lmc_mm_isa_avx2;
extern const lmc_mm_isa lmc_mm_isa_avx512;

/* AMX bf16 tiles for bf16 @ bf16 with large M; falls back to the AVX-512 driver. */
lmc_status lmc_cpu_matmul_amx(lmc_array *out, const lmc_array *a, const lmc_array *b);

#endif
