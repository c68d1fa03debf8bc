/* Element-wise kernels, copies, reductions, softmax and gathers on CUDA.
 *
 * One thread per output element over views of any strides (the ops layer
 * hands over broadcast views), values loaded as double and rounded once to
 * the output dtype, as the CPU's scalar oracle does; these ops are small
 * beside the matmuls and attention, so generality wins over speed here,
 * except for the contiguous same-dtype copy (a device memcpy). Reductions
 * and softmax run one block per lane (the reduced axis), the block's threads
 * striding over it and combining through shared memory in a fixed order. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

enum { THREADS = 256 };

/* lmc_unary_op / lmc_binary_op / lmc_reduce_op, in the order of backend/kernels.h. */
enum { U_NEG, U_ABS, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_SQUARE, U_SIN, U_COS, U_TANH, U_SIGMOID, U_SILU, U_GELU,
       U_GELU_TANH };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE };
enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_LOGSUMEXP };

static bool contiguous(const lmc_cuda_view *v) {
    int64_t s = 1;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->shape[d] != 1 && v->strides[d] != s) return false;
        s *= v->shape[d];
    }
    return true;
}

/* dst[di] = src[si] for elements of `size` bytes (a copy of the bits). */
__device__ __forceinline__ void move_element(void *dst, int64_t di, const void *src, int64_t si, int size) {
    switch (size) {
    case 1: ((uint8_t *)dst)[di] = ((const uint8_t *)src)[si]; break;
    case 2: ((uint16_t *)dst)[di] = ((const uint16_t *)src)[si]; break;
    case 4: ((uint32_t *)dst)[di] = ((const uint32_t *)src)[si]; break;
    default: ((uint64_t *)dst)[di] = ((const uint64_t *)src)[si]; break;
    }
}

#define GRID_LOOP(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* --- copy, fill, arange ------------------------------------------------------- */

__device__ __forceinline__ void copy_element(const lmc_cuda_view &out, const lmc_cuda_view &in, int64_t i) {
    int64_t oi = lmc_offset(out, i), ii = lmc_offset(in, i);
    if (out.dtype == in.dtype) {
        move_element(out.ptr, oi, in.ptr, ii, lmc_cu_dtype_size(out.dtype));
    } else if (in.dtype == LMC_CU_F32 && out.dtype == LMC_CU_BF16) {
        ((__nv_bfloat16 *)out.ptr)[oi] = __float2bfloat16_rn(((const float *)in.ptr)[ii]);
    } else {
        lmc_st(out.ptr, out.dtype, oi, lmc_ld_f64(in.ptr, in.dtype, ii));
    }
}

__global__ void copy_kernel(lmc_cuda_view out, lmc_cuda_view in, int64_t n) {
    GRID_LOOP(i, n) copy_element(out, in, i);
}

extern "C" int lmc_cu_copy(const lmc_cuda_view *out, const lmc_cuda_view *in) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    if (out->dtype == in->dtype && contiguous(out) && contiguous(in))
        return (int)cudaMemcpyAsync(out->ptr, in->ptr, (size_t)n * lmc_cu_dtype_size(out->dtype), cudaMemcpyDeviceToDevice,
                                    lmc_cuda_stream());
    copy_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, *in, n);
    LMC_CU_RETURN_LAUNCH();
}

/* Several copies as one grid: element i belongs to the first copy whose end passes it. */
struct copy_jobs {
    lmc_cuda_view out[LMC_CUDA_COPY_JOBS], in[LMC_CUDA_COPY_JOBS];
    int64_t end[LMC_CUDA_COPY_JOBS];
};

__global__ void copy_many_kernel(copy_jobs j, int64_t total) {
    GRID_LOOP(i, total) {
        int t = 0;
        while (i >= j.end[t]) t++;
        copy_element(j.out[t], j.in[t], i - (t ? j.end[t - 1] : 0));
    }
}

extern "C" int lmc_cu_copy_many(int n, const lmc_cuda_view *out, const lmc_cuda_view *in) {
    if (n < 1 || n > LMC_CUDA_COPY_JOBS) return (int)cudaErrorInvalidValue;
    copy_jobs j;
    int64_t total = 0;
    for (int t = 0; t < n; t++) {
        j.out[t] = out[t];
        j.in[t] = in[t];
        j.end[t] = total += lmc_view_size(&out[t]);
    }
    if (!total) return 0;
    copy_many_kernel<<<lmc_blocks(total, THREADS), THREADS, 0, lmc_cuda_stream()>>>(j, total);
    LMC_CU_RETURN_LAUNCH();
}

__global__ void fill_kernel(lmc_cuda_view out, double value, int64_t n) {
    GRID_LOOP(i, n) lmc_st(out.ptr, out.dtype, lmc_offset(out, i), value);
}

extern "C" int lmc_cu_fill(const lmc_cuda_view *out, double value) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    fill_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, value, n);
    LMC_CU_RETURN_LAUNCH();
}

__global__ void arange_kernel(lmc_cuda_view out, double start, double step, int64_t n) {
    GRID_LOOP(i, n) lmc_st(out.ptr, out.dtype, lmc_offset(out, i), start + (double)i * step);
}

extern "C" int lmc_cu_arange(const lmc_cuda_view *out, double start, double step) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    arange_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, start, step, n);
    LMC_CU_RETURN_LAUNCH();
}

/* --- unary, binary, where ------------------------------------------------------ */

__device__ static double unary_f64(int op, double x) {
    switch (op) {
    case U_NEG: return -x;
    case U_ABS: return fabs(x);
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SQRT: return sqrt(x);
    case U_RSQRT: return 1.0 / sqrt(x);
    case U_SQUARE: return x * x;
    case U_SIN: return sin(x);
    case U_COS: return cos(x);
    case U_TANH: return tanh(x);
    case U_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case U_SILU: return x / (1.0 + exp(-x));
    case U_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
    case U_GELU_TANH: {
        /* x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): PyTorch's tanh form without the cancellation */
        double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
        return x / (1.0 + exp(-2.0 * u));
    }
    }
    return NAN;
}

__global__ void unary_kernel(int op, lmc_cuda_view out, lmc_cuda_view in, int64_t n) {
    GRID_LOOP(i, n) {
        lmc_st(out.ptr, out.dtype, lmc_offset(out, i), unary_f64(op, lmc_ld_f64(in.ptr, in.dtype, lmc_offset(in, i))));
    }
}

extern "C" int lmc_cu_unary(int op, const lmc_cuda_view *out, const lmc_cuda_view *in) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    unary_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(op, *out, *in, n);
    LMC_CU_RETURN_LAUNCH();
}

/* act(gate) * up with the roundings of the two kernels it replaces: the
 * activation stored as f32, then the product in double stored as f32. */
__global__ void gated_act_kernel(int op, lmc_cuda_view out, lmc_cuda_view g, lmc_cuda_view u, int64_t n) {
    GRID_LOOP(i, n) {
        float t = (float)unary_f64(op, lmc_ld_f64(g.ptr, g.dtype, lmc_offset(g, i)));
        lmc_st(out.ptr, out.dtype, lmc_offset(out, i), (double)t * lmc_ld_f64(u.ptr, u.dtype, lmc_offset(u, i)));
    }
}

extern "C" int lmc_cu_gated_act(int op, const lmc_cuda_view *out, const lmc_cuda_view *gate, const lmc_cuda_view *up) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    if (out->dtype != LMC_CU_F32) return (int)cudaErrorInvalidValue;
    gated_act_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(op, *out, *gate, *up, n);
    LMC_CU_RETURN_LAUNCH();
}

__device__ static double binary_f64(int op, double a, double b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return pow(a, b);
    case B_MAX: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
    case B_MIN: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    }
    return NAN;
}

__global__ void binary_kernel(int op, lmc_cuda_view out, lmc_cuda_view a, lmc_cuda_view b, int64_t n) {
    GRID_LOOP(i, n) {
        double x = lmc_ld_f64(a.ptr, a.dtype, lmc_offset(a, i)), y = lmc_ld_f64(b.ptr, b.dtype, lmc_offset(b, i));
        lmc_st(out.ptr, out.dtype, lmc_offset(out, i), binary_f64(op, x, y));
    }
}

extern "C" int lmc_cu_binary(int op, const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *b) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    binary_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(op, *out, *a, *b, n);
    LMC_CU_RETURN_LAUNCH();
}

__global__ void where_kernel(lmc_cuda_view out, lmc_cuda_view c, lmc_cuda_view x, lmc_cuda_view y, int64_t n) {
    GRID_LOOP(i, n) {
        bool take_x = lmc_ld_f64(c.ptr, c.dtype, lmc_offset(c, i)) != 0.0;
        double v = take_x ? lmc_ld_f64(x.ptr, x.dtype, lmc_offset(x, i)) : lmc_ld_f64(y.ptr, y.dtype, lmc_offset(y, i));
        lmc_st(out.ptr, out.dtype, lmc_offset(out, i), v);
    }
}

extern "C" int lmc_cu_where(const lmc_cuda_view *out, const lmc_cuda_view *cond, const lmc_cuda_view *x,
                            const lmc_cuda_view *y) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    where_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, *cond, *x, *y, n);
    LMC_CU_RETURN_LAUNCH();
}

/* --- reductions and softmax: one block per lane ---------------------------------- */

/* A lane: every element of in along `axis` for one output position. The
 * lane's base offset comes from the lane index walked over in's shape with
 * axis taken out. */
struct lanes {
    lmc_cuda_view in, out; /* out: in's shape with axis of size 1 (reduce) or in's shape (softmax) */
    int axis;
    int64_t len;
};

__device__ static void lane_bases(const lanes &L, int64_t lane, int64_t *in_off, int64_t *out_off) {
    int64_t io = 0, oo = 0;
    for (int d = L.in.ndim - 1; d >= 0; d--) {
        if (d == L.axis) continue;
        int64_t n = L.in.shape[d], k = lane % n;
        lane /= n;
        io += k * L.in.strides[d];
        oo += k * L.out.strides[d];
    }
    *in_off = io;
    *out_off = oo;
}

/* (value, index) pairs combined so that the result is the first extreme, or the first NaN. */
__device__ static bool better(double v, int64_t i, double bv, int64_t bi, bool greatest) {
    bool vn = isnan(v), bn = isnan(bv);
    if (vn || bn) return vn && (!bn || i < bi);
    if (v == bv) return i < bi;
    return greatest ? v > bv : v < bv;
}

__device__ static void block_sum(double *sh, double v) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
}

__device__ static void block_arg(double *shv, int64_t *shi, double v, int64_t i, bool greatest) {
    shv[threadIdx.x] = v;
    shi[threadIdx.x] = i;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s && better(shv[threadIdx.x + s], shi[threadIdx.x + s], shv[threadIdx.x], shi[threadIdx.x], greatest)) {
            shv[threadIdx.x] = shv[threadIdx.x + s];
            shi[threadIdx.x] = shi[threadIdx.x + s];
        }
        __syncthreads();
    }
}

/* The first extreme of a lane (value and index); all threads get the result. */
__device__ static void lane_extreme(const lanes &L, int64_t base, bool greatest, double *shv, int64_t *shi, double *v,
                                    int64_t *idx) {
    double bv = NAN;
    int64_t bi = INT64_MAX;
    bool any = false;
    for (int64_t j = threadIdx.x; j < L.len; j += blockDim.x) {
        double x = lmc_ld_f64(L.in.ptr, L.in.dtype, base + j * L.in.strides[L.axis]);
        if (!any || better(x, j, bv, bi, greatest)) bv = x, bi = j, any = true;
    }
    if (!any) bv = greatest ? -INFINITY : INFINITY, bi = INT64_MAX; /* loses to any real element */
    block_arg(shv, shi, bv, bi, greatest);
    *v = shv[0];
    *idx = shi[0];
    __syncthreads();
}

__global__ void reduce_kernel(int op, lanes L) {
    __shared__ double shv[THREADS];
    __shared__ int64_t shi[THREADS];
    int64_t in_off, out_off;
    lane_bases(L, blockIdx.x, &in_off, &out_off);
    double r = 0.0;
    if (op == R_SUM || op == R_MEAN) {
        double s = 0.0;
        for (int64_t j = threadIdx.x; j < L.len; j += blockDim.x)
            s += lmc_ld_f64(L.in.ptr, L.in.dtype, in_off + j * L.in.strides[L.axis]);
        block_sum(shv, s);
        r = op == R_MEAN ? (L.len ? shv[0] / (double)L.len : NAN) : shv[0];
    } else if (op == R_LOGSUMEXP) {
        double m;
        int64_t mi;
        lane_extreme(L, in_off, true, shv, shi, &m, &mi);
        double shift = isfinite(m) ? m : 0.0, s = 0.0;
        for (int64_t j = threadIdx.x; j < L.len; j += blockDim.x)
            s += exp(lmc_ld_f64(L.in.ptr, L.in.dtype, in_off + j * L.in.strides[L.axis]) - shift);
        block_sum(shv, s);
        r = log(shv[0]) + shift;
    } else {
        bool greatest = op == R_MAX || op == R_ARGMAX;
        double v;
        int64_t i;
        lane_extreme(L, in_off, greatest, shv, shi, &v, &i);
        if (op == R_ARGMAX || op == R_ARGMIN) r = L.len ? (double)i : 0.0;
        else r = L.len ? v : NAN;
    }
    if (threadIdx.x == 0) lmc_st(L.out.ptr, L.out.dtype, out_off, r);
}

static int64_t lane_count(const lmc_cuda_view *in, int axis) {
    int64_t n = 1;
    for (int d = 0; d < in->ndim; d++)
        if (d != axis) n *= in->shape[d];
    return n;
}

/* Lanes run in launches of at most 2^31-1 blocks (grid x limit). */
template <typename F> static int per_lane_launch(const lanes &L0, int64_t nl, F launch) {
    (void)L0;
    if (nl > 2147483647LL) return (int)cudaErrorInvalidConfiguration;
    if (nl == 0) return 0;
    launch((unsigned)nl);
    LMC_CU_RETURN_LAUNCH();
}

extern "C" int lmc_cu_reduce(int op, const lmc_cuda_view *out, const lmc_cuda_view *in, int axis) {
    lanes L = {*in, *out, axis, in->shape[axis]};
    return per_lane_launch(L, lane_count(in, axis), [&](unsigned nl) {
        reduce_kernel<<<nl, THREADS, 0, lmc_cuda_stream()>>>(op, L);
    });
}

__global__ void softmax_kernel(lanes L, bool log_out) {
    __shared__ double shv[THREADS];
    __shared__ int64_t shi[THREADS];
    int64_t in_off, out_off;
    lane_bases(L, blockIdx.x, &in_off, &out_off);
    if (L.len == 0) return;
    double m;
    int64_t mi;
    lane_extreme(L, in_off, true, shv, shi, &m, &mi);
    double shift = isfinite(m) ? m : 0.0, s = 0.0;
    int64_t sa = L.in.strides[L.axis], so = L.out.strides[L.axis];
    for (int64_t j = threadIdx.x; j < L.len; j += blockDim.x) s += exp(lmc_ld_f64(L.in.ptr, L.in.dtype, in_off + j * sa) - shift);
    block_sum(shv, s);
    double sum = shv[0], logs = log(sum);
    for (int64_t j = threadIdx.x; j < L.len; j += blockDim.x) {
        double v = lmc_ld_f64(L.in.ptr, L.in.dtype, in_off + j * sa) - shift;
        lmc_st(L.out.ptr, L.out.dtype, out_off + j * so, log_out ? v - logs : exp(v) / sum);
    }
}

extern "C" int lmc_cu_softmax(const lmc_cuda_view *out, const lmc_cuda_view *in, int axis, bool log_out) {
    lanes L = {*in, *out, axis, in->shape[axis]};
    return per_lane_launch(L, lane_count(in, axis), [&](unsigned nl) {
        softmax_kernel<<<nl, THREADS, 0, lmc_cuda_stream()>>>(L, log_out);
    });
}

/* --- gathers ------------------------------------------------------------------------ */

__device__ static int64_t load_index(const void *p, int dt, int64_t i) {
    switch (dt) {
    case LMC_CU_I32: return ((const int32_t *)p)[i];
    case LMC_CU_U32: return ((const uint32_t *)p)[i];
    case LMC_CU_U8: return ((const uint8_t *)p)[i];
    case LMC_CU_I64: return ((const int64_t *)p)[i];
    }
    return 0;
}

/* take: out's axes are a[:axis] | idx's axes | a[axis+1:]. The C side has
 * checked every index against the axis (negative ones count from its end). */
__global__ void take_kernel(lmc_cuda_view out, lmc_cuda_view a, lmc_cuda_view idx, int axis, int64_t n) {
    GRID_LOOP(i, n) {
        int64_t rem = i, ao = 0, io = 0;
        for (int d = out.ndim - 1; d >= 0; d--) {
            int64_t k = rem % out.shape[d];
            rem /= out.shape[d];
            if (d < axis) ao += k * a.strides[d];
            else if (d < axis + idx.ndim) io += k * idx.strides[d - axis];
            else ao += k * a.strides[d - idx.ndim + 1];
        }
        int64_t j = load_index(idx.ptr, idx.dtype, io);
        if (j < 0) j += a.shape[axis];
        ao += j * a.strides[axis];
        move_element(out.ptr, lmc_offset(out, i), a.ptr, ao, lmc_cu_dtype_size(out.dtype));
    }
}

extern "C" int lmc_cu_take(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *idx, int axis) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    take_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, *a, *idx, axis, n);
    LMC_CU_RETURN_LAUNCH();
}

__global__ void take_along_kernel(lmc_cuda_view out, lmc_cuda_view a, lmc_cuda_view idx, int axis, int64_t n) {
    GRID_LOOP(i, n) {
        int64_t rem = i, ao = 0;
        for (int d = out.ndim - 1; d >= 0; d--) {
            int64_t k = rem % out.shape[d];
            rem /= out.shape[d];
            if (d != axis) ao += k * a.strides[d];
        }
        int64_t j = load_index(idx.ptr, idx.dtype, lmc_offset(idx, i));
        if (j < 0) j += a.shape[axis];
        ao += j * a.strides[axis];
        move_element(out.ptr, lmc_offset(out, i), a.ptr, ao, lmc_cu_dtype_size(out.dtype));
    }
}

extern "C" int lmc_cu_take_along(const lmc_cuda_view *out, const lmc_cuda_view *a, const lmc_cuda_view *idx, int axis) {
    int64_t n = lmc_view_size(out);
    if (!n) return 0;
    take_along_kernel<<<lmc_blocks(n, THREADS), THREADS, 0, lmc_cuda_stream()>>>(*out, *a, *idx, axis, n);
    LMC_CU_RETURN_LAUNCH();
}
