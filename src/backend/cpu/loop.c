/* Strided loops for the CPU kernels (see cpu_loop.h). */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_loop.h"
#include "core/threadpool.h"

void lmc_cpu_loop_init_raw(lmc_cpu_loop *l, int ndim, const int64_t *shape, int nops, char *const *base,
                           const int64_t *esize, const int64_t (*strides)[LMC_MAX_DIMS]) {
    memset(l, 0, sizeof *l);
    l->nops = nops;
    l->size = 1;
    for (int k = 0; k < nops; k++) {
        l->base[k] = base[k];
        l->esize[k] = esize[k];
    }
    /* Keep axes longer than 1, merging each into the previous kept axis when
     * every operand steps through both as one. */
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        l->size *= shape[d];
        if (shape[d] == 1) continue;
        bool merge = n > 0;
        for (int k = 0; k < nops && merge; k++)
            if (l->strides[k][n - 1] != strides[k][d] * esize[k] * shape[d]) merge = false;
        if (merge) {
            l->shape[n - 1] *= shape[d];
            for (int k = 0; k < nops; k++) l->strides[k][n - 1] = strides[k][d] * esize[k];
        } else {
            l->shape[n] = shape[d];
            for (int k = 0; k < nops; k++) l->strides[k][n] = strides[k][d] * esize[k];
            n++;
        }
    }
    if (n == 0) { /* a single element (or none) */
        l->shape[0] = l->size;
        n = 1;
    }
    l->ndim = n;
}

void lmc_cpu_loop_init(lmc_cpu_loop *l, int nops, const lmc_array *const *ops) {
    char *base[LMC_LOOP_MAX_OPS];
    int64_t esize[LMC_LOOP_MAX_OPS];
    int64_t strides[LMC_LOOP_MAX_OPS][LMC_MAX_DIMS];
    for (int k = 0; k < nops; k++) {
        base[k] = lmc_array_ptr(ops[k]);
        esize[k] = (int64_t)lmc_dtype_size(ops[k]->dtype);
        memcpy(strides[k], ops[k]->strides, sizeof strides[k]);
    }
    lmc_cpu_loop_init_raw(l, ops[0]->ndim, ops[0]->shape, nops, base, esize, (const int64_t(*)[LMC_MAX_DIMS])strides);
}

/* Walks flat elements [begin, end) row by row. */
static void loop_range(const lmc_cpu_loop *l, lmc_cpu_row_fn fn, void *ctx, int64_t begin, int64_t end) {
    int nd = l->ndim, last = nd - 1;
    int64_t idx[LMC_MAX_DIMS];
    char *p[LMC_LOOP_MAX_OPS];
    int64_t inner[LMC_LOOP_MAX_OPS];
    int64_t rest = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rest % l->shape[d];
        rest /= l->shape[d];
    }
    for (int k = 0; k < l->nops; k++) {
        p[k] = l->base[k];
        for (int d = 0; d < nd; d++) p[k] += idx[d] * l->strides[k][d];
        inner[k] = l->strides[k][last];
    }
    int64_t pos = begin;
    while (pos < end) {
        int64_t n = l->shape[last] - idx[last];
        if (n > end - pos) n = end - pos;
        fn(ctx, p, inner, n);
        pos += n;
        if (pos >= end) break;
        /* Advance: the row ended (n reached the axis end), carry upward. */
        for (int k = 0; k < l->nops; k++) p[k] += n * l->strides[k][last];
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] == l->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
            for (int k = 0; k < l->nops; k++) p[k] += l->strides[k][d - 1] - l->shape[d] * l->strides[k][d];
        }
    }
}

typedef struct loop_job {
    const lmc_cpu_loop *l;
    lmc_cpu_row_fn fn;
    void *ctx;
} loop_job;

static void loop_job_run(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    loop_job *j = ctx;
    loop_range(j->l, j->fn, j->ctx, begin, end);
}

void lmc_cpu_loop_run(const lmc_cpu_loop *l, lmc_cpu_row_fn fn, void *ctx, int64_t parallel_min) {
    if (l->size == 0) return;
    if (parallel_min <= 0 || l->size < parallel_min) {
        loop_range(l, fn, ctx, 0, l->size);
        return;
    }
    loop_job j = {l, fn, ctx};
    lmc_parallel_for(l->size, 4096, loop_job_run, &j);
}

/* --- lanes ------------------------------------------------------------------ */

void lmc_cpu_lanes_init(lmc_cpu_lanes *ln, int nops, const lmc_array *const *ops, int axis) {
    int nd = ops[0]->ndim;
    int64_t shape[LMC_MAX_DIMS];
    char *base[LMC_LOOP_MAX_OPS];
    int64_t esize[LMC_LOOP_MAX_OPS];
    int64_t strides[LMC_LOOP_MAX_OPS][LMC_MAX_DIMS];
    ln->nops = nops;
    int n = 0;
    for (int d = 0; d < nd; d++)
        if (d != axis) shape[n++] = ops[0]->shape[d];
    for (int k = 0; k < nops; k++) {
        base[k] = lmc_array_ptr(ops[k]);
        esize[k] = (int64_t)lmc_dtype_size(ops[k]->dtype);
        ln->len[k] = ops[k]->shape[axis];
        ln->step[k] = ops[k]->strides[axis] * esize[k];
        int m = 0;
        for (int d = 0; d < nd; d++)
            if (d != axis) strides[k][m++] = ops[k]->strides[d];
    }
    lmc_cpu_loop_init_raw(&ln->outer, n, shape, nops, base, esize, (const int64_t(*)[LMC_MAX_DIMS])strides);
}

typedef struct lanes_job {
    const lmc_cpu_lanes *ln;
    lmc_cpu_lane_fn fn;
    void *ctx;
} lanes_job;

static void lanes_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    lanes_job *j = ctx;
    char *q[LMC_LOOP_MAX_OPS];
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < j->ln->nops; k++) q[k] = p[k] + i * inner[k];
        j->fn(j->ctx, j->ln, q);
    }
}

static void lanes_range(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    lanes_job *j = ctx;
    loop_range(&j->ln->outer, lanes_row, j, begin, end);
}

void lmc_cpu_lanes_run(const lmc_cpu_lanes *ln, lmc_cpu_lane_fn fn, void *ctx) {
    lanes_job j = {ln, fn, ctx};
    int64_t lanes = ln->outer.size, len = 1;
    for (int k = 0; k < ln->nops; k++)
        if (ln->len[k] > len) len = ln->len[k];
    if (lanes == 0) return;
    if (lanes < 2 || lanes * len < LMC_CPU_PARALLEL_MIN) {
        lanes_range(&j, 0, lanes, 0);
        return;
    }
    int64_t grain = 4096 / len;
    lmc_parallel_for(lanes, grain < 1 ? 1 : grain, lanes_range, &j);
}

/* --- rounding ---------------------------------------------------------------- */

void lmc_cpu_store_rounded(void *p, lmc_dtype dt, double v) {
    if ((dt == LMC_F16 || dt == LMC_BF16) && !isnan(v)) {
        /* Round to odd into f32: the f32 keeps a sticky bit, so rounding it
         * to nearest even in 16 bits gives the correctly rounded result. */
        float f = (float)v;
        if ((double)f != v) {
            if (fabs((double)f) > fabs(v)) f = nextafterf(f, 0.0f);
            uint32_t u;
            memcpy(&u, &f, 4);
            u |= 1u;
            memcpy(&f, &u, 4);
        }
        uint16_t h = dt == LMC_F16 ? lmc_f32_to_f16(f) : lmc_f32_to_bf16(f);
        memcpy(p, &h, 2);
        return;
    }
    lmc_store_f64(p, dt, v);
}
