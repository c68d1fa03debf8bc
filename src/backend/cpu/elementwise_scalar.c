/* Scalar reference kernels for creation and element-wise ops.
 *
 * These are the oracle the SIMD paths are tested against: every value is
 * loaded as a double, computed in double and rounded once to the output
 * dtype (lmc_cpu_store_rounded). Integer results saturate at the dtype's
 * range, as lmc_store_f64 does. They accept any strides. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_loop.h"
#include "core/threadpool.h"

/* --- arange ------------------------------------------------------------------ */

lmc_status lmc_cpu_arange_scalar(lmc_array *out, double start, double step) {
    char *p = lmc_array_ptr(out);
    int64_t es = (int64_t)lmc_dtype_size(out->dtype);
    int64_t stride = out->ndim ? out->strides[0] : 0;
    for (int64_t i = 0; i < out->size; i++) lmc_cpu_store_rounded(p + i * stride * es, out->dtype, start + (double)i * step);
    return LMC_OK;
}

/* --- random: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
 * as 1, 2, 3", SC'11). Element i of a seed's stream is one Philox block with
 * counter i and key = seed, so it never depends on threads or paths. ------- */

typedef struct philox_block {
    uint32_t v[4];
} philox_block;

static philox_block philox4x32_10(uint64_t counter, uint64_t seed) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u; /* Weyl key schedule */
        k1 += 0xBB67AE85u;
    }
    return (philox_block){{c0, c1, c2, c3}};
}

/* 53 random bits from two words as a double in [0, 1). */
static double unit_double(uint32_t hi, uint32_t lo) {
    uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return (double)bits * 0x1p-53;
}

/* The value of element i of a random stream, before scaling. */
static double random_value(lmc_random_kind kind, uint64_t i, uint64_t seed) {
    philox_block b = philox4x32_10(i, seed);
    if (kind == LMC_RANDOM_UNIFORM) return unit_double(b.v[0], b.v[1]);
    /* Box–Muller (cosine branch): u1 in (0, 1] keeps the log finite. */
    double u1 = 1.0 - unit_double(b.v[0], b.v[1]);
    double u2 = unit_double(b.v[2], b.v[3]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

typedef struct random_job {
    char *p;
    lmc_dtype dt;
    int64_t es;
    lmc_random_kind kind;
    double p0, p1;
    uint64_t seed;
} random_job;

static void random_range(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    random_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        double r = random_value(j->kind, (uint64_t)i, j->seed);
        /* uniform: low + (high - low) * u; normal: mean + std * z */
        double v = j->kind == LMC_RANDOM_UNIFORM ? j->p0 + (j->p1 - j->p0) * r : j->p0 + j->p1 * r;
        lmc_cpu_store_rounded(j->p + i * j->es, j->dt, v);
    }
}

lmc_status lmc_cpu_random_scalar(lmc_array *out, lmc_random_kind kind, double p0, double p1, uint64_t seed) {
    if (!lmc_array_is_contiguous(out)) return lmc_set_error(LMC_ERR_INTERNAL, "random: output must be contiguous");
    random_job j = {lmc_array_ptr(out), out->dtype, (int64_t)lmc_dtype_size(out->dtype), kind, p0, p1, seed};
    if (out->size >= 4096) lmc_parallel_for(out->size, 1024, random_range, &j);
    else random_range(&j, 0, out->size, 0);
    return LMC_OK;
}

/* --- unary ------------------------------------------------------------------- */

static double unary_f64(lmc_unary_op op, double x) {
    switch (op) {
    case LMC_UNARY_NEG: return -x;
    case LMC_UNARY_ABS: return fabs(x);
    case LMC_UNARY_EXP: return exp(x);
    case LMC_UNARY_LOG: return log(x);
    case LMC_UNARY_SQRT: return sqrt(x);
    case LMC_UNARY_RSQRT: return 1.0 / sqrt(x);
    case LMC_UNARY_SQUARE: return x * x;
    case LMC_UNARY_SIN: return sin(x);
    case LMC_UNARY_COS: return cos(x);
    case LMC_UNARY_TANH: return tanh(x);
    case LMC_UNARY_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case LMC_UNARY_SILU: return x / (1.0 + exp(-x));
    case LMC_UNARY_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
    case LMC_UNARY_GELU_TANH: {
        /* PyTorch's 0.5*x*(1 + tanh(u)), u = sqrt(2/pi)*(x + 0.044715*x^3),
         * written as x*sigmoid(2u) (the same function) so that large negative
         * x does not cancel to 0 in 1 + tanh(u). */
        double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
        return x / (1.0 + exp(-2.0 * u));
    }
    default: return NAN;
    }
}

typedef struct unary_ctx {
    lmc_unary_op op;
    lmc_dtype out_dt, in_dt;
} unary_ctx;

static void unary_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    unary_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++)
        lmc_cpu_store_rounded(p[0] + i * inner[0], c->out_dt, unary_f64(c->op, lmc_load_f64(p[1] + i * inner[1], c->in_dt)));
}

lmc_status lmc_cpu_unary_scalar(lmc_unary_op op, lmc_array *out, const lmc_array *in) {
    if ((unsigned)op >= LMC_UNARY_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "unary: invalid op %d", (int)op);
    const lmc_array *ops[2] = {out, in};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 2, ops);
    unary_ctx c = {op, out->dtype, in->dtype};
    lmc_cpu_loop_run(&l, unary_row, &c, LMC_CPU_PARALLEL_MIN / 4);
    return LMC_OK;
}

/* --- binary ------------------------------------------------------------------ */

static double binary_f64(lmc_binary_op op, double a, double b) {
    switch (op) {
    case LMC_BINARY_ADD: return a + b;
    case LMC_BINARY_SUB: return a - b;
    case LMC_BINARY_MUL: return a * b;
    case LMC_BINARY_DIV: return a / b;
    case LMC_BINARY_POW: return pow(a, b);
    /* maximum/minimum propagate NaN (as NumPy's). */
    case LMC_BINARY_MAXIMUM: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
    case LMC_BINARY_MINIMUM: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
    case LMC_BINARY_EQ: return a == b;
    case LMC_BINARY_NE: return a != b;
    case LMC_BINARY_LT: return a < b;
    case LMC_BINARY_LE: return a <= b;
    case LMC_BINARY_GT: return a > b;
    case LMC_BINARY_GE: return a >= b;
    default: return NAN;
    }
}

typedef struct binary_ctx {
    lmc_binary_op op;
    lmc_dtype out_dt, a_dt, b_dt;
} binary_ctx;

static void binary_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    binary_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++) {
        double a = lmc_load_f64(p[1] + i * inner[1], c->a_dt), b = lmc_load_f64(p[2] + i * inner[2], c->b_dt);
        lmc_cpu_store_rounded(p[0] + i * inner[0], c->out_dt, binary_f64(c->op, a, b));
    }
}

lmc_status lmc_cpu_binary_scalar(lmc_binary_op op, lmc_array *out, const lmc_array *a, const lmc_array *b) {
    if ((unsigned)op >= LMC_BINARY_COUNT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "binary: invalid op %d", (int)op);
    const lmc_array *ops[3] = {out, a, b};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 3, ops);
    binary_ctx c = {op, out->dtype, a->dtype, b->dtype};
    lmc_cpu_loop_run(&l, binary_row, &c, LMC_CPU_PARALLEL_MIN / 4);
    return LMC_OK;
}

/* --- where ------------------------------------------------------------------- */

typedef struct where_ctx {
    lmc_dtype out_dt, c_dt, x_dt, y_dt;
} where_ctx;

static void where_row(void *ctx, char *const *p, const int64_t *inner, int64_t n) {
    where_ctx *c = ctx;
    if (c->out_dt == LMC_F32 && c->c_dt == LMC_BOOL && c->x_dt == LMC_F32 && c->y_dt == LMC_F32) {
        /* the masks of attention's backward pass: the same values without the round trip through double */
        const uint8_t *cp = (const uint8_t *)p[1];
        const char *xp = p[2], *yp = p[3];
        float *op = (float *)p[0];
        for (int64_t i = 0; i < n; i++) {
            float xv, yv;
            memcpy(&xv, xp + i * inner[2], sizeof xv);
            memcpy(&yv, yp + i * inner[3], sizeof yv);
            float v = cp[i * inner[1]] ? xv : yv;
            memcpy((char *)op + i * inner[0], &v, sizeof v);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        bool take_x = lmc_load_f64(p[1] + i * inner[1], c->c_dt) != 0.0;
        double v = take_x ? lmc_load_f64(p[2] + i * inner[2], c->x_dt) : lmc_load_f64(p[3] + i * inner[3], c->y_dt);
        lmc_cpu_store_rounded(p[0] + i * inner[0], c->out_dt, v);
    }
}

lmc_status lmc_cpu_where_scalar(lmc_array *out, const lmc_array *cond, const lmc_array *x, const lmc_array *y) {
    const lmc_array *ops[4] = {out, cond, x, y};
    lmc_cpu_loop l;
    lmc_cpu_loop_init(&l, 4, ops);
    where_ctx c = {out->dtype, cond->dtype, x->dtype, y->dtype};
    lmc_cpu_loop_run(&l, where_row, &c, LMC_CPU_PARALLEL_MIN);
    return LMC_OK;
}
