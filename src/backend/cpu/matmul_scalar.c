/* The scalar reference matmul: every output element is a plain dot product
 * accumulated in double over strided loads. Slow and obviously right — the
 * oracle the fast paths are tested against. Parallel over output rows; each
 * element is computed by one thread in a fixed order, so the result does not
 * depend on the thread count. */
#include "backend/cpu/matmul_internal.h"
#include "core/threadpool.h"

typedef struct {
    lmc_array *out;
    const lmc_array *a, *b;
    int64_t M, N, K;
} scalar_job;

static void scalar_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    (void)thread;
    const scalar_job *j = ctx;
    const lmc_array *out = j->out, *a = j->a, *b = j->b;
    int nd = out->ndim;
    size_t osz = lmc_dtype_size(out->dtype), asz = lmc_dtype_size(a->dtype), bsz = lmc_dtype_size(b->dtype);
    int64_t sam = a->strides[nd - 2], sak = a->strides[nd - 1];
    int64_t sbk = b->strides[nd - 2], sbn = b->strides[nd - 1];
    int64_t som = out->strides[nd - 2], son = out->strides[nd - 1];
    const char *ap = lmc_array_ptr(a), *bp = lmc_array_ptr(b);
    char *op = lmc_array_ptr(out);
    for (int64_t r = r0; r < r1; r++) {
        int64_t m = r % j->M, off[3];
        lmc_mm_batch_offsets(out, a, b, r / j->M, off);
        for (int64_t n = 0; n < j->N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < j->K; k++)
                acc += lmc_load_f64(ap + (off[1] + m * sam + k * sak) * (int64_t)asz, a->dtype) *
                       lmc_load_f64(bp + (off[2] + k * sbk + n * sbn) * (int64_t)bsz, b->dtype);
            lmc_store_f64(op + (off[0] + m * som + n * son) * (int64_t)osz, out->dtype, acc);
        }
    }
}

lmc_status lmc_cpu_matmul_scalar(lmc_array *out, const lmc_array *a, const lmc_array *b) {
    int nd = out->ndim;
    scalar_job j = {out, a, b, out->shape[nd - 2], out->shape[nd - 1], a->shape[nd - 1]};
    int64_t rows = lmc_mm_batch_count(out) * j.M;
    int64_t grain = j.N * j.K > 4096 ? 1 : 64;
    lmc_parallel_for(rows, grain, scalar_rows, &j);
    return LMC_OK;
}
