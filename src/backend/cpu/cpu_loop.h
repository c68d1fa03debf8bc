/* Strided loops shared by the CPU element-wise, reduction and indexing
 * kernels, and the declarations those kernel files share.
 *
 * A loop walks up to four operands of one shape together. Before walking,
 * axes of size 1 are dropped and neighbouring axes are merged wherever every
 * operand's strides allow it, so contiguous operands become one long row and
 * the per-row callbacks (where SIMD code lives) see long runs. Large loops are
 * split over the thread pool by flat element index; each element is handled
 * by exactly one callback, so results never depend on the thread count. */
#ifndef LMC_BACKEND_CPU_LOOP_H
#define LMC_BACKEND_CPU_LOOP_H

#include "backend/cpu/cpu_kernels.h"

#define LMC_LOOP_MAX_OPS 4

typedef struct lmc_cpu_loop {
    int ndim;                                    /* after merging; >= 1 unless size is 0 */
    int64_t shape[LMC_MAX_DIMS];
    int64_t size;
    int nops;
    char *base[LMC_LOOP_MAX_OPS];                /* address of element 0 */
    int64_t esize[LMC_LOOP_MAX_OPS];             /* bytes per element */
    int64_t strides[LMC_LOOP_MAX_OPS][LMC_MAX_DIMS]; /* bytes */
} lmc_cpu_loop;

/* Called for a run of n elements along the innermost merged axis; p[k] is
 * operand k's address of the first one and inner[k] its byte stride. */
typedef void (*lmc_cpu_row_fn)(void *ctx, char *const *p, const int64_t *inner, int64_t n);

/* A loop over `ndim`/`shape` with operands given as base pointers, element
 * sizes and element strides (one row of LMC_MAX_DIMS per operand). */
void lmc_cpu_loop_init_raw(lmc_cpu_loop *l, int ndim, const int64_t *shape, int nops, char *const *base,
                           const int64_t *esize, const int64_t (*strides)[LMC_MAX_DIMS]);
/* A loop over arrays of ops[0]'s shape (the others must have that shape; broadcast views are fine). */
void lmc_cpu_loop_init(lmc_cpu_loop *l, int nops, const lmc_array *const *ops);
/* Runs fn over every element; in parallel when the loop has at least
 * `parallel_min` elements (0: never). */
void lmc_cpu_loop_run(const lmc_cpu_loop *l, lmc_cpu_row_fn fn, void *ctx, int64_t parallel_min);

/* Lanes: for each position of the operands with `axis` removed, fn gets the
 * operand addresses of the lane's first element. Each operand k has its own
 * axis length and byte stride along the axis in lane->len[k] / lane->step[k]. */
typedef struct lmc_cpu_lanes {
    int nops;
    int64_t len[LMC_LOOP_MAX_OPS];
    int64_t step[LMC_LOOP_MAX_OPS];
    lmc_cpu_loop outer;
} lmc_cpu_lanes;
typedef void (*lmc_cpu_lane_fn)(void *ctx, const lmc_cpu_lanes *lanes, char *const *p);
/* Operands share every axis but `axis` (where their lengths may differ). */
void lmc_cpu_lanes_init(lmc_cpu_lanes *ln, int nops, const lmc_array *const *ops, int axis);
/* Runs fn for every lane, in parallel when lanes x lane length is large. */
void lmc_cpu_lanes_run(const lmc_cpu_lanes *ln, lmc_cpu_lane_fn fn, void *ctx);

/* Element work below which kernels stay on the calling thread. */
#define LMC_CPU_PARALLEL_MIN 32768

/* Stores a double into a float16/bfloat16/f32 slot with a single rounding
 * (round to odd into f32 first, then round to nearest even), and into other
 * dtypes as lmc_store_f64 does. The scalar kernels write all results with it. */
void lmc_cpu_store_rounded(void *p, lmc_dtype dt, double v);

/* Scalar reference kernels (the oracle), also the fallbacks of the SIMD paths. */
lmc_status lmc_cpu_arange_scalar(lmc_array *out, double start, double step);
lmc_status lmc_cpu_random_scalar(lmc_array *out, lmc_random_kind kind, double p0, double p1, uint64_t seed);
lmc_status lmc_cpu_unary_scalar(lmc_unary_op op, lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_binary_scalar(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b);
lmc_status lmc_cpu_where_scalar(lmc_array *out, const lmc_array *cond, const lmc_array *x, const lmc_array *y);
lmc_status lmc_cpu_reduce_scalar(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis);
lmc_status lmc_cpu_softmax_scalar(lmc_array *out, const lmc_array *in, int axis, bool log);
lmc_status lmc_cpu_cumsum_scalar(lmc_array *out, const lmc_array *in, int axis, bool reverse);
lmc_status lmc_cpu_sort_scalar(lmc_array *values, lmc_array *indices, const lmc_array *in, int axis);
lmc_status lmc_cpu_take_scalar(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis);
lmc_status lmc_cpu_take_along_scalar(lmc_array *out, const lmc_array *a, const lmc_array *idx, int axis);
lmc_status lmc_cpu_put_along_scalar(lmc_array *out, const lmc_array *idx, const lmc_array *vals, int axis, bool add);

/* SIMD versions: handle contiguous f32/bf16 cases and call the scalar kernel otherwise. */
lmc_status lmc_cpu_unary_avx2(lmc_unary_op op, lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_binary_avx2(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b);
lmc_status lmc_cpu_reduce_avx2(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis);
lmc_status lmc_cpu_softmax_avx2(lmc_array *out, const lmc_array *in, int axis, bool log);
lmc_status lmc_cpu_unary_avx512(lmc_unary_op op, lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_binary_avx512(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b);
lmc_status lmc_cpu_reduce_avx512(lmc_reduce_op op, lmc_array *out, const lmc_array *in, int axis);
lmc_status lmc_cpu_softmax_avx512(lmc_array *out, const lmc_array *in, int axis, bool log);
/* kernels.h's fused gated_act (f32): the fast paths' only, the scalar table runs its two ops. */
lmc_status lmc_cpu_gated_act_avx2(lmc_unary_op act, lmc_array *out, const lmc_array *gate, const lmc_array *up);
lmc_status lmc_cpu_gated_act_avx512(lmc_unary_op act, lmc_array *out, const lmc_array *gate, const lmc_array *up);

/* Row-level SIMD entry points, exported for the accuracy tests:
 * y[i] = exp(x[i]) over n contiguous floats. */
void lmc_cpu_exp_f32_avx2(float *y, const float *x, int64_t n);
void lmc_cpu_exp_f32_avx512(float *y, const float *x, int64_t n);

#endif
