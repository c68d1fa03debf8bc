/* Per-thread scratch buffers for kernels that need work space on every call
 * (prepared operands, converted scales): grown on demand and kept, so a
 * decode step, which calls the same kernels hundreds of times with the same
 * sizes, allocates nothing. Each thread has LMC_SCRATCH_SLOTS buffers; a
 * thread's buffers are freed when it exits (the main thread's at exit). */
#ifndef LMC_CORE_SCRATCH_H
#define LMC_CORE_SCRATCH_H

#include <stddef.h>

/* The slots: one per kind of use, so that uses that overlap in time on one
 * thread never share a buffer. */
enum {
    LMC_SCRATCH_QMM_X,   /* the quantised matmul's prepared x (read by every thread of its parallel region) */
    LMC_SCRATCH_QMM_AMX,  /* the AMX quantised matmul's per-thread weight tiles, scales and accumulators */
    LMC_SCRATCH_QMM_PANELS, /* the AVX-512 quantised matmul's per-thread weight panels (many rows of x) */
    LMC_SCRATCH_MATMUL_AMX, /* the AMX bf16 matmul's per-thread padded weight tiles and partial sums */
    LMC_SCRATCH_SDPA,       /* attention's per-thread query rows, key/value blocks, scores and accumulators */
    LMC_SCRATCH_GEMV,       /* the float matmul GEMV's per-thread output rows before their conversion */
    LMC_SCRATCH_SLOTS
};

/* At least `bytes` of 64-byte-aligned memory for slot `slot` of the calling
 * thread, contents undefined; valid until the thread's next call for the
 * same slot. NULL (with the error set) when out of memory. */
void *lmc_scratch(int slot, size_t bytes);

/* Tests only: from this call on, every thread's lmc_scratch for `slot`
 * fails as if out of memory, until called with -1; so the tests reach the
 * kernels' out-of-memory paths. */
void lmc_scratch_fail_for_testing(int slot);

#endif
