/* Strided copy with dtype conversion, and fill. The innermost axis is
 * converted as a run when both sides are unit-stride there. */
#include "backend/cpu/copy.h"

#include <string.h>

#include "core/threadpool.h"

typedef struct copy_job {
    lmc_array *out;
    const lmc_array *in;
    lmc_convert_fn convert; /* unit-stride runs */
} copy_job;

/* Copies rows [begin, end) of the (outer dims) x (last dim) view. */
static void copy_rows(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    copy_job *j = ctx;
    const lmc_array *in = j->in;
    lmc_array *out = j->out;
    int nd = out->ndim;
    int64_t inner = out->shape[nd - 1];
    int64_t sin = in->strides[nd - 1], sout = out->strides[nd - 1];
    size_t es_in = lmc_dtype_size(in->dtype), es_out = lmc_dtype_size(out->dtype);
    const char *pin = lmc_array_ptr(in);
    char *pout = lmc_array_ptr(out);
    for (int64_t r = begin; r < end; r++) {
        /* Decompose the row index over the outer dims. */
        int64_t rem = r, oin = 0, oout = 0;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = rem % out->shape[d];
            rem /= out->shape[d];
            oin += i * in->strides[d];
            oout += i * out->strides[d];
        }
        const char *src = pin + oin * (int64_t)es_in;
        char *dst = pout + oout * (int64_t)es_out;
        if (sin == 1 && sout == 1) {
            j->convert(dst, out->dtype, src, in->dtype, (size_t)inner);
        } else if (in->dtype == out->dtype) {
            for (int64_t k = 0; k < inner; k++)
                memcpy(dst + k * sout * (int64_t)es_out, src + k * sin * (int64_t)es_in, es_out);
        } else {
            for (int64_t k = 0; k < inner; k++)
                lmc_convert(dst + k * sout * (int64_t)es_out, out->dtype, src + k * sin * (int64_t)es_in, in->dtype, 1);
        }
    }
}

lmc_status lmc_cpu_copy_with(lmc_array *out, const lmc_array *in, lmc_convert_fn convert) {
    if (out->size == 0) return LMC_OK;
    if (out->ndim == 0 || (lmc_array_is_contiguous(out) && lmc_array_is_contiguous(in))) {
        convert(lmc_array_ptr(out), out->dtype, lmc_array_ptr(in), in->dtype, (size_t)out->size);
        return LMC_OK;
    }
    copy_job j = {out, in, convert};
    int64_t rows = out->size / out->shape[out->ndim - 1];
    int64_t grain = 1 + 16384 / out->shape[out->ndim - 1];
    lmc_parallel_for(rows, grain, copy_rows, &j);
    return LMC_OK;
}

lmc_status lmc_cpu_copy_scalar(lmc_array *out, const lmc_array *in) { return lmc_cpu_copy_with(out, in, lmc_convert); }

lmc_status lmc_cpu_fill_scalar(lmc_array *out, double value) {
    if (out->size == 0) return LMC_OK;
    size_t es = lmc_dtype_size(out->dtype);
    unsigned char elem[8];
    lmc_store_f64(elem, out->dtype, value);
    if (lmc_array_is_contiguous(out)) {
        char *p = lmc_array_ptr(out);
        for (int64_t i = 0; i < out->size; i++) memcpy(p + i * (int64_t)es, elem, es);
        return LMC_OK;
    }
    lmc_index_iter it;
    const lmc_array *ops[1] = {out};
    lmc_index_init(&it, out->ndim, out->shape, 1, ops);
    char *base = lmc_array_ptr(out);
    do memcpy(base + it.off[0] * (int64_t)es, elem, es);
    while (lmc_index_next(&it));
    return LMC_OK;
}
