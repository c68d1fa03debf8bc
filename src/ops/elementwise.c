/* Element-wise ops: argument checks, broadcasting, output dtypes; the work is
 * done by the device's unary/binary/where/copy kernels. */
#include <math.h>

#include "ops/ops_internal.h"
#include "train/tape.h"

/* Runs a kernel's status into an output: frees it and returns NULL on failure. */
static lmc_array *finish(lmc_array *out, lmc_status s) {
    if (s == LMC_OK) return out;
    lmc_array_free(out);
    return NULL;
}

/* --- unary ------------------------------------------------------------------- */

static lmc_array *unary(const char *name, lmc_unary_op op, const lmc_array *a) {
    if (lmc_ops_null_input(name, 1, &a)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels(name, 1, &a);
    if (!k || !lmc_ops_have(name, k->unary)) return NULL;
    /* neg/abs/square keep the dtype; the float functions give f32 for integers. */
    bool keeps = op == LMC_UNARY_NEG || op == LMC_UNARY_ABS || op == LMC_UNARY_SQUARE;
    lmc_dtype dt = keeps || lmc_dtype_is_float(a->dtype) ? a->dtype : LMC_F32;
    lmc_array *out = lmc_array_new(dt, a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    out = finish(out, out->size ? k->unary(op, out, a) : LMC_OK);
    lmc_tape_record(LMC_OP_UNARY, out, 1, &a, &(lmc_op_params){.code = op});
    return out;
}

lmc_array *lmc_neg(const lmc_array *a) { return unary("neg", LMC_UNARY_NEG, a); }
lmc_array *lmc_abs(const lmc_array *a) { return unary("abs", LMC_UNARY_ABS, a); }
lmc_array *lmc_exp(const lmc_array *a) { return unary("exp", LMC_UNARY_EXP, a); }
lmc_array *lmc_log(const lmc_array *a) { return unary("log", LMC_UNARY_LOG, a); }
lmc_array *lmc_sqrt(const lmc_array *a) { return unary("sqrt", LMC_UNARY_SQRT, a); }
lmc_array *lmc_rsqrt(const lmc_array *a) { return unary("rsqrt", LMC_UNARY_RSQRT, a); }
lmc_array *lmc_square(const lmc_array *a) { return unary("square", LMC_UNARY_SQUARE, a); }
lmc_array *lmc_sin(const lmc_array *a) { return unary("sin", LMC_UNARY_SIN, a); }
lmc_array *lmc_cos(const lmc_array *a) { return unary("cos", LMC_UNARY_COS, a); }
lmc_array *lmc_tanh(const lmc_array *a) { return unary("tanh", LMC_UNARY_TANH, a); }
lmc_array *lmc_sigmoid(const lmc_array *a) { return unary("sigmoid", LMC_UNARY_SIGMOID, a); }
lmc_array *lmc_silu(const lmc_array *a) { return unary("silu", LMC_UNARY_SILU, a); }
lmc_array *lmc_gelu(const lmc_array *a) { return unary("gelu", LMC_UNARY_GELU, a); }
lmc_array *lmc_gelu_tanh(const lmc_array *a) { return unary("gelu_tanh", LMC_UNARY_GELU_TANH, a); }

/* --- binary ------------------------------------------------------------------ */

static bool is_comparison(lmc_binary_op op) { return op >= LMC_BINARY_EQ && op <= LMC_BINARY_GE; }

static lmc_array *binary_as(const char *name, lmc_binary_op op, const lmc_array *a, const lmc_array *b, lmc_dtype dt) {
    const lmc_array *in[2] = {a, b};
    const lmc_kernels *k = lmc_ops_kernels(name, 2, in);
    if (!k || !lmc_ops_have(name, k->binary)) return NULL;
    int nd;
    int64_t shape[LMC_MAX_DIMS];
    if (lmc_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape) != LMC_OK) return NULL;
    lmc_array *out = lmc_array_new(dt, nd, shape, a->buf->device);
    lmc_array *av = out ? lmc_broadcast_view(a, nd, shape) : NULL;
    lmc_array *bv = av ? lmc_broadcast_view(b, nd, shape) : NULL;
    lmc_status s = bv ? (out->size ? k->binary(op, out, av, bv) : LMC_OK) : lmc_last_status();
    lmc_array_free(av);
    lmc_array_free(bv);
    if (!out) return NULL;
    return finish(out, s);
}

static lmc_array *binary(const char *name, lmc_binary_op op, const lmc_array *a, const lmc_array *b) {
    const lmc_array *in[2] = {a, b};
    if (lmc_ops_null_input(name, 2, in)) return NULL;
    lmc_dtype dt = lmc_promote(a->dtype, b->dtype);
    if (is_comparison(op)) dt = LMC_BOOL;
    else if (op == LMC_BINARY_DIV && !lmc_dtype_is_float(dt)) dt = LMC_F32;
    lmc_array *out = binary_as(name, op, a, b, dt);
    lmc_tape_record(LMC_OP_BINARY, out, 2, in, &(lmc_op_params){.code = op});
    return out;
}

lmc_array *lmc_add(const lmc_array *a, const lmc_array *b) { return binary("add", LMC_BINARY_ADD, a, b); }
lmc_array *lmc_sub(const lmc_array *a, const lmc_array *b) { return binary("sub", LMC_BINARY_SUB, a, b); }
lmc_array *lmc_mul(const lmc_array *a, const lmc_array *b) { return binary("mul", LMC_BINARY_MUL, a, b); }
lmc_array *lmc_div(const lmc_array *a, const lmc_array *b) { return binary("div", LMC_BINARY_DIV, a, b); }
lmc_array *lmc_pow(const lmc_array *a, const lmc_array *b) { return binary("pow", LMC_BINARY_POW, a, b); }
lmc_array *lmc_maximum(const lmc_array *a, const lmc_array *b) { return binary("maximum", LMC_BINARY_MAXIMUM, a, b); }
lmc_array *lmc_minimum(const lmc_array *a, const lmc_array *b) { return binary("minimum", LMC_BINARY_MINIMUM, a, b); }
lmc_array *lmc_equal(const lmc_array *a, const lmc_array *b) { return binary("equal", LMC_BINARY_EQ, a, b); }
lmc_array *lmc_not_equal(const lmc_array *a, const lmc_array *b) { return binary("not_equal", LMC_BINARY_NE, a, b); }
lmc_array *lmc_less(const lmc_array *a, const lmc_array *b) { return binary("less", LMC_BINARY_LT, a, b); }
lmc_array *lmc_less_equal(const lmc_array *a, const lmc_array *b) { return binary("less_equal", LMC_BINARY_LE, a, b); }
lmc_array *lmc_greater(const lmc_array *a, const lmc_array *b) { return binary("greater", LMC_BINARY_GT, a, b); }
lmc_array *lmc_greater_equal(const lmc_array *a, const lmc_array *b) {
    return binary("greater_equal", LMC_BINARY_GE, a, b);
}

/* a op s in a's dtype. The scalar is an f32 for float arrays (so the SIMD
 * kernels apply) and an exact int64 for integral values on integer arrays. */
static lmc_array *binary_scalar(const char *name, lmc_binary_op op, const lmc_array *a, double s) {
    if (lmc_ops_null_input(name, 1, &a)) return NULL;
    bool exact_int = !lmc_dtype_is_float(a->dtype) && s == trunc(s) && fabs(s) < 9.0e15;
    lmc_dtype sdt = exact_int ? LMC_I64 : LMC_F32;
    lmc_array *b = lmc_array_new(sdt, 0, NULL, a->buf->device);
    if (!b) return NULL;
    if (a->buf->device == LMC_CPU) {
        lmc_store_f64(lmc_array_ptr(b), sdt, s);
    } else { /* filled where it lives: no copy from the host to wait for */
        const lmc_kernels *k = lmc_ops_kernels(name, 1, &a);
        if (!k || !lmc_ops_have(name, k->fill) || k->fill(b, s) != LMC_OK) {
            lmc_array_free(b);
            return NULL;
        }
    }
    lmc_array *out = binary_as(name, op, a, b, a->dtype);
    lmc_array_free(b);
    lmc_tape_record(op == LMC_BINARY_ADD ? LMC_OP_ADD_SCALAR : LMC_OP_MUL_SCALAR, out, 1, &a,
                    &(lmc_op_params){.scalar = s});
    return out;
}

lmc_array *lmc_add_scalar(const lmc_array *a, double s) { return binary_scalar("add_scalar", LMC_BINARY_ADD, a, s); }
lmc_array *lmc_mul_scalar(const lmc_array *a, double s) { return binary_scalar("mul_scalar", LMC_BINARY_MUL, a, s); }

/* --- where, astype ----------------------------------------------------------- */

lmc_array *lmc_where(const lmc_array *cond, const lmc_array *x, const lmc_array *y) {
    const lmc_array *in[3] = {cond, x, y};
    if (lmc_ops_null_input("where", 3, in)) return NULL;
    const lmc_kernels *k = lmc_ops_kernels("where", 3, in);
    if (!k || !lmc_ops_have("where", k->where)) return NULL;
    int nd, nd2;
    int64_t s1[LMC_MAX_DIMS], shape[LMC_MAX_DIMS];
    if (lmc_broadcast_shapes("where", x->ndim, x->shape, y->ndim, y->shape, &nd, s1) != LMC_OK ||
        lmc_broadcast_shapes("where", cond->ndim, cond->shape, nd, s1, &nd2, shape) != LMC_OK)
        return NULL;
    lmc_array *out = lmc_array_new(lmc_promote(x->dtype, y->dtype), nd2, shape, x->buf->device);
    lmc_array *cv = out ? lmc_broadcast_view(cond, nd2, shape) : NULL;
    lmc_array *xv = cv ? lmc_broadcast_view(x, nd2, shape) : NULL;
    lmc_array *yv = xv ? lmc_broadcast_view(y, nd2, shape) : NULL;
    lmc_status s = yv ? (out->size ? k->where(out, cv, xv, yv) : LMC_OK) : lmc_last_status();
    lmc_array_free(cv);
    lmc_array_free(xv);
    lmc_array_free(yv);
    if (!out) return NULL;
    out = finish(out, s);
    lmc_tape_record(LMC_OP_WHERE, out, 3, in, NULL);
    return out;
}

lmc_array *lmc_astype(const lmc_array *a, lmc_dtype dt) {
    if (lmc_ops_null_input("astype", 1, &a)) return NULL;
    if ((unsigned)dt >= LMC_DTYPE_COUNT) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "astype: invalid dtype %d", (int)dt);
        return NULL;
    }
    const lmc_kernels *k = lmc_ops_kernels("astype", 1, &a);
    if (!k || !lmc_ops_have("astype", k->copy)) return NULL;
    lmc_array *out = lmc_array_new(dt, a->ndim, a->shape, a->buf->device);
    if (!out) return NULL;
    out = finish(out, out->size ? k->copy(out, a) : LMC_OK);
    lmc_tape_record(LMC_OP_ASTYPE, out, 1, &a, NULL);
    return out;
}
