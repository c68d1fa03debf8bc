/* Element-wise ops: hand-checked values, dtype rules, errors, and every CPU
 * path against the scalar oracle on random shapes, dtypes and views. */
#include "ops_check.h"

static const char *UNARY_NAMES[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "square", "sin", "cos",
                                    "tanh", "sigmoid", "silu", "gelu", "gelu_tanh"};
static const char *BINARY_NAMES[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                     "eq", "ne", "lt", "le", "gt", "ge"};

static lmc_array *vec(lmc_dtype dt, int n, const double *v) {
    int64_t s = n;
    lmc_array *a = lmc_array_new(dt, 1, &s, LMC_CPU);
    for (int i = 0; i < n; i++) lmc_store_f64((char *)lmc_array_ptr(a) + i * lmc_dtype_size(dt), dt, v[i]);
    return a;
}

static void check_values(const lmc_array *a, lmc_dtype dt, int n, const double *want, double rtol, const char *what) {
    CHECKF(a != NULL, "%s: %s", what, lmc_last_error());
    if (!a) return;
    CHECKF(a->dtype == dt && a->size == n, "%s: dtype %s size %lld", what, lmc_dtype_name(a->dtype), (long long)a->size);
    if (a->size != n) return;
    double *v = to_doubles(a);
    for (int i = 0; i < n; i++)
        CHECKF((isnan(v[i]) && isnan(want[i])) || v[i] == want[i] || fabs(v[i] - want[i]) <= rtol * fabs(want[i]) + 1e-30,
               "%s[%d] = %.9g, want %.9g", what, i, v[i], want[i]);
    free(v);
}

static void test_unary_values(void) {
    const double x[] = {-2.0, -0.5, 0.0, 1.0, 3.0};
    struct {
        lmc_array *(*fn)(const lmc_array *);
        const char *name;
        double want[5];
    } cases[] = {
        {lmc_neg, "neg", {2, 0.5, -0.0, -1, -3}},
        {lmc_abs, "abs", {2, 0.5, 0, 1, 3}},
        {lmc_exp, "exp", {0.1353352832366127, 0.6065306597126334, 1, 2.718281828459045, 20.085536923187668}},
        {lmc_log, "log", {NAN, NAN, -INFINITY, 0.0, 1.0986122886681098}},
        {lmc_sqrt, "sqrt", {NAN, NAN, 0, 1, 1.7320508075688772}},
        {lmc_rsqrt, "rsqrt", {NAN, NAN, INFINITY, 1, 0.5773502691896258}},
        {lmc_square, "square", {4, 0.25, 0, 1, 9}},
        {lmc_sin, "sin", {-0.9092974268256817, -0.479425538604203, 0.0, 0.8414709848078965, 0.1411200080598672}},
        {lmc_cos, "cos", {-0.4161468365471424, 0.8775825618903728, 1.0, 0.5403023058681398, -0.9899924966004454}},
        {lmc_tanh, "tanh", {-0.9640275800758169, -0.46211715726000974, 0, 0.7615941559557649, 0.9950547536867305}},
        {lmc_sigmoid, "sigmoid", {0.11920292202211755, 0.3775406687981454, 0.5, 0.7310585786300049, 0.9525741268224334}},
        {lmc_silu, "silu", {-0.2384058440442351, -0.1887703343990727, 0, 0.7310585786300049, 2.8577223804673}},
        {lmc_gelu, "gelu", {-0.04550026389635842, -0.15426876936299344, 0.0, 0.8413447460685429, 2.99595030590511}},
        {lmc_gelu_tanh, "gelu_tanh",
         {-0.04540230591222494, -0.15428599017485606, 0.0, 0.8411919906082768, 2.996362607918227}},
    };
    for (int p = 0; p <= max_path(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char what[64];
            lmc_dtype dts[] = {LMC_F32, LMC_BF16, LMC_F16};
            for (int t = 0; t < 3; t++) {
                lmc_array *a = vec(dts[t], 5, x);
                lmc_array *r = cases[c].fn(a);
                snprintf(what, sizeof what, "%s %s path %d", cases[c].name, lmc_dtype_name(dts[t]), p);
                check_values(r, dts[t], 5, cases[c].want, dtype_rtol(dts[t]) / 2, what);
                lmc_array_free(r);
                lmc_array_free(a);
            }
        }
    }
    lmc_cpu_path_set(LMC_PATH_AMX);
    /* Integer input to a float function gives f32; neg keeps int32. */
    const double xi[] = {-3, 0, 4};
    lmc_array *ai = vec(LMC_I32, 3, xi);
    lmc_array *e = lmc_sqrt(ai), *n = lmc_neg(ai);
    check_values(e, LMC_F32, 3, (double[]){NAN, 0, 2}, 0, "sqrt int32");
    check_values(n, LMC_I32, 3, (double[]){3, 0, -4}, 0, "neg int32");
    lmc_array_free(e);
    lmc_array_free(n);
    lmc_array_free(ai);
}

/* gelu_tanh is PyTorch's 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))). */
static void test_gelu_tanh_formula(void) {
    double x[41], want[41];
    for (int i = 0; i < 41; i++) {
        x[i] = -6.0 + 0.3 * i;
        want[i] = 0.5 * x[i] * (1.0 + tanh(sqrt(2.0 / M_PI) * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
    }
    for (int p = 0; p <= max_path(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *a = vec(LMC_F32, 41, x), *r = lmc_gelu_tanh(a);
        double *v = to_doubles(r);
        for (int i = 0; i < 41; i++) CHECK_CLOSE(v[i], want[i], 1e-12, 3e-6);
        free(v);
        lmc_array_free(r);
        lmc_array_free(a);
    }
    lmc_cpu_path_set(LMC_PATH_AMX);
}

static void test_binary_values(void) {
    const double a[] = {1, 2, 3, 4, 5, 6}, b[] = {10, 20, 30};
    int64_t s23[] = {2, 3}, s3[] = {3}, s21[] = {2, 1};
    lmc_array *A = lmc_array_new(LMC_F32, 2, s23, LMC_CPU), *B = vec(LMC_F32, 3, b);
    for (int i = 0; i < 6; i++) ((float *)lmc_array_ptr(A))[i] = (float)a[i];
    lmc_array *r = lmc_add(A, B);
    check_values(r, LMC_F32, 6, (double[]){11, 22, 33, 14, 25, 36}, 0, "add broadcast");
    CHECK(r && r->ndim == 2 && r->shape[0] == 2 && r->shape[1] == 3);
    lmc_array_free(r);
    r = lmc_sub(B, A);
    check_values(r, LMC_F32, 6, (double[]){9, 18, 27, 6, 15, 24}, 0, "sub broadcast");
    lmc_array_free(r);
    /* [2,1] with [3] -> [2,3] */
    lmc_array *C = lmc_array_new(LMC_F32, 2, s21, LMC_CPU);
    ((float *)lmc_array_ptr(C))[0] = 2, ((float *)lmc_array_ptr(C))[1] = -1;
    r = lmc_mul(C, B);
    check_values(r, LMC_F32, 6, (double[]){20, 40, 60, -10, -20, -30}, 0, "mul outer");
    lmc_array_free(r);
    r = lmc_div(A, C);
    check_values(r, LMC_F32, 6, (double[]){0.5, 1, 1.5, -4, -5, -6}, 0, "div");
    lmc_array_free(r);
    r = lmc_pow(C, B);
    check_values(r, LMC_F32, 6, (double[]){1024, 1048576, 1073741824, 1, 1, 1}, 1e-7, "pow");
    lmc_array_free(r);
    /* scalars keep the array's dtype */
    r = lmc_add_scalar(A, 0.5);
    check_values(r, LMC_F32, 6, (double[]){1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, 0, "add_scalar");
    lmc_array_free(r);
    lmc_array *Ab = vec(LMC_BF16, 3, (double[]){1, 2, 3});
    r = lmc_mul_scalar(Ab, 0.1);
    check_values(r, LMC_BF16, 3, (double[]){0.10009765625, 0.2001953125, 0.30078125}, 0, "mul_scalar bf16");
    lmc_array_free(r);
    lmc_array *Ai = vec(LMC_I32, 3, (double[]){7, -7, 2});
    r = lmc_mul_scalar(Ai, 3);
    check_values(r, LMC_I32, 3, (double[]){21, -21, 6}, 0, "mul_scalar int32");
    lmc_array_free(r);
    r = lmc_div(Ai, Ai);
    check_values(r, LMC_F32, 3, (double[]){1, 1, 1}, 0, "div int32 gives f32");
    lmc_array_free(r);
    /* integer results saturate */
    lmc_array *U = vec(LMC_U8, 3, (double[]){200, 5, 0});
    r = lmc_add(U, U);
    check_values(r, LMC_U8, 3, (double[]){255, 10, 0}, 0, "u8 add saturates");
    lmc_array_free(r);
    r = lmc_sub(U, Ai);
    lmc_array_free(Ai);
    check_values(r, LMC_I32, 3, (double[]){193, 12, -2}, 0, "u8 - i32 gives i32");
    lmc_array_free(r);
    /* maximum/minimum propagate NaN */
    lmc_array *N1 = vec(LMC_F32, 3, (double[]){NAN, 1, -1}), *N2 = vec(LMC_F32, 3, (double[]){0, NAN, -2});
    r = lmc_maximum(N1, N2);
    check_values(r, LMC_F32, 3, (double[]){NAN, NAN, -1}, 0, "maximum NaN");
    lmc_array_free(r);
    r = lmc_minimum(N1, N2);
    check_values(r, LMC_F32, 3, (double[]){NAN, NAN, -2}, 0, "minimum NaN");
    lmc_array_free(r);
    /* comparisons give bool */
    r = lmc_greater(A, B);
    check_values(r, LMC_BOOL, 6, (double[]){0, 0, 0, 0, 0, 0}, 0, "greater");
    lmc_array_free(r);
    r = lmc_less_equal(N1, N2);
    check_values(r, LMC_BOOL, 3, (double[]){0, 0, 0}, 0, "less_equal NaN");
    lmc_array_free(r);
    r = lmc_not_equal(N1, N1);
    check_values(r, LMC_BOOL, 3, (double[]){1, 0, 0}, 0, "not_equal NaN");
    lmc_array_free(r);
    r = lmc_equal(C, C);
    lmc_array_free(C);
    check_values(r, LMC_BOOL, 2, (double[]){1, 1}, 0, "equal");
    lmc_array_free(r);
    /* promotion */
    lmc_array *H = vec(LMC_F16, 3, (double[]){1, 2, 3}), *I = vec(LMC_I32, 3, (double[]){1, 2, 3});
    r = lmc_add(H, I);
    CHECK(r && r->dtype == LMC_F16);
    lmc_array_free(r);
    r = lmc_add(H, Ab);
    CHECK(r && r->dtype == LMC_F32);
    lmc_array_free(r);
    (void)s3;
    lmc_array_free(H);
    lmc_array_free(I);
    lmc_array_free(N1);
    lmc_array_free(N2);
    lmc_array_free(U);
    lmc_array_free(Ab);
    lmc_array_free(A);
    lmc_array_free(B);
}

/* f32 x and y with a bool condition (attention's masks): broadcast rows
 * and scalars, a transposed condition, -inf, the same values as selected. */
static void test_where_f32(void) {
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, t[2] = {1, 3};
    lmc_array *c = vec(LMC_BOOL, 6, (double[]){1, 0, 1, 0, 0, 1});
    lmc_array *cv = lmc_array_view(c->buf, 0, LMC_BOOL, 2, s23, (int64_t[]){3, 1});
    lmc_array *ct = lmc_array_view(c->buf, 0, LMC_BOOL, 2, s32, (int64_t[]){1, 3}); /* [[1,0],[0,0],[1,1]] */
    lmc_array *x = vec(LMC_F32, 6, (double[]){1.5, 2.5, -INFINITY, 4.25, 5, 6});
    lmc_array *xv = lmc_array_view(x->buf, 0, LMC_F32, 2, s23, (int64_t[]){3, 1});
    lmc_array *row = lmc_array_view(x->buf, 0, LMC_F32, 2, t, (int64_t[]){3, 1}); /* [1.5, 2.5, -inf] */
    lmc_array *ninf = lmc_scalar(-INFINITY, LMC_F32);
    lmc_array *r = lmc_where(cv, xv, ninf);
    check_values(r, LMC_F32, 6, (double[]){1.5, -INFINITY, -INFINITY, -INFINITY, -INFINITY, 6}, 0, "where f32 scalar y");
    lmc_array_free(r);
    r = lmc_where(cv, ninf, row); /* y broadcast along rows */
    check_values(r, LMC_F32, 6, (double[]){-INFINITY, 2.5, -INFINITY, 1.5, 2.5, -INFINITY}, 0, "where f32 row y");
    lmc_array_free(r);
    lmc_array *x32 = lmc_array_view(x->buf, 0, LMC_F32, 2, s32, (int64_t[]){2, 1}); /* [[1.5,2.5],[-inf,4.25],[5,6]] */
    lmc_array *zero = lmc_scalar(0.0, LMC_F32);
    r = lmc_where(ct, x32, zero);
    check_values(r, LMC_F32, 6, (double[]){1.5, 0, 0, 0, 5, 6}, 0, "where f32 transposed condition");
    lmc_array_free(r);
    lmc_array *list[] = {c, cv, ct, x, xv, row, ninf, x32, zero};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) lmc_array_free(list[i]);
}

static void test_where(void) {
    lmc_array *c = vec(LMC_BOOL, 4, (double[]){1, 0, 0, 1});
    lmc_array *x = vec(LMC_F32, 4, (double[]){1, 2, 3, 4});
    lmc_array *y = lmc_array_new(LMC_BF16, 0, NULL, LMC_CPU);
    lmc_store_f64(lmc_array_ptr(y), LMC_BF16, -1);
    lmc_array *r = lmc_where(c, x, y);
    check_values(r, LMC_F32, 4, (double[]){1, -1, -1, 4}, 0, "where");
    lmc_array_free(r);
    /* cond [4,1] with x [4] -> [4,4] */
    int64_t s41[] = {4, 1};
    lmc_array *c2 = lmc_array_view(c->buf, 0, LMC_BOOL, 2, s41, (int64_t[]){1, 1});
    r = lmc_where(c2, x, y);
    CHECK(r && r->ndim == 2 && r->shape[0] == 4 && r->shape[1] == 4);
    if (r) {
        double *v = to_doubles(r);
        CHECK(v[0] == 1 && v[3] == 4 && v[4] == -1 && v[12] == 1 && v[15] == 4);
        free(v);
    }
    lmc_array_free(r);
    lmc_array_free(c2);
    lmc_array_free(c);
    lmc_array_free(x);
    lmc_array_free(y);
}

/* astype: float to int truncates toward zero and saturates, NaN gives 0;
 * to bf16 rounds to nearest even; anything non-zero is true. */
static void test_astype(void) {
    lmc_array *a = vec(LMC_F32, 6, (double[]){1.5, -2.7, NAN, 1e10, -1e10, 0.1});
    lmc_array *r = lmc_astype(a, LMC_I32);
    check_values(r, LMC_I32, 6, (double[]){1, -2, 0, 2147483647, -2147483648.0, 0}, 0, "astype i32");
    lmc_array_free(r);
    r = lmc_astype(a, LMC_U8);
    check_values(r, LMC_U8, 6, (double[]){1, 0, 0, 255, 0, 0}, 0, "astype u8");
    lmc_array_free(r);
    r = lmc_astype(a, LMC_BF16);
    check_values(r, LMC_BF16, 6, (double[]){1.5, -2.703125, NAN, 9999220736.0, -9999220736.0, 0.10009765625}, 0,
                 "astype bf16");
    lmc_array_free(r);
    r = lmc_astype(a, LMC_BOOL);
    check_values(r, LMC_BOOL, 6, (double[]){1, 1, 1, 1, 1, 1}, 0, "astype bool");
    lmc_array_free(r);
    lmc_clear_error();
    CHECK(lmc_astype(a, (lmc_dtype)99) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    lmc_array_free(a);
}

/* f32 <-> bf16 / f16 conversions give the scalar kernel's bits on every
 * path: ties, overflow to Inf, f16 subnormals and underflow, NaNs (quiet,
 * signalling, payloads only in bits the 16-bit type drops), contiguous and
 * strided, with lengths that leave vector tails. */
static void test_astype_float16_paths(void) {
    enum { N = 203 };
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0xff7fffffu,
        0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fa00000u, 0xff801fffu, 0x7fff8000u,
        0x477fe000u, 0x477ff000u, 0x477fefffu, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u, 0x33800000u,
        0x00000001u, 0x807fffffu, 0x34000000u, 0xb4400000u, 0x3a000800u, 0x38001000u, 0x37ffffffu};
    const size_t ns = sizeof special / sizeof *special;
    uint32_t bits[N];
    uint64_t st = 99;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        bits[i] = (size_t)i < ns ? special[i] : (uint32_t)(st >> 32);
    }
    int64_t shape[1] = {N}, shape2[2] = {N / 7, 7};
    lmc_array *x = lmc_array_from_data(bits, LMC_F32, 1, shape);
    lmc_array *x2 = lmc_reshape(x, 2, shape2), *xt = lmc_swapaxes(x2, 0, 1); /* strided */
    const lmc_dtype half[] = {LMC_BF16, LMC_F16};
    for (int h = 0; h < 2; h++) {
        lmc_cpu_path_set(LMC_PATH_SCALAR);
        lmc_array *r16 = lmc_astype(x, half[h]), *r32 = lmc_astype(r16, LMC_F32), *t16 = lmc_astype(xt, half[h]);
        for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) {
            lmc_cpu_path_set((lmc_cpu_path)p);
            lmc_array *g16 = lmc_astype(x, half[h]), *g32 = lmc_astype(r16, LMC_F32), *gt = lmc_astype(xt, half[h]);
            CHECKF(g16 && !memcmp(lmc_array_data(g16), lmc_array_data(r16), N * 2), "f32 -> %s [%s]",
                   lmc_dtype_name(half[h]), lmc_cpu_path_name((lmc_cpu_path)p));
            CHECKF(g32 && !memcmp(lmc_array_data(g32), lmc_array_data(r32), N * 4), "%s -> f32 [%s]",
                   lmc_dtype_name(half[h]), lmc_cpu_path_name((lmc_cpu_path)p));
            CHECKF(gt && !memcmp(lmc_array_data(gt), lmc_array_data(t16), (size_t)lmc_array_size(gt) * 2),
                   "strided f32 -> %s [%s]", lmc_dtype_name(half[h]), lmc_cpu_path_name((lmc_cpu_path)p));
            lmc_array_free(g16);
            lmc_array_free(g32);
            lmc_array_free(gt);
        }
        /* the scalar bits themselves, for a few hand-checked cases */
        const uint16_t *v = lmc_array_data(r16);
        if (half[h] == LMC_BF16) {
            CHECK(v[2] == 0x3f80 && v[3] == 0x3f80 && v[4] == 0x3f82 && v[6] == 0x7f80 && v[12] == 0x7fc0);
        } else {
            CHECK(v[2] == 0x3c00 && v[16] == 0x7bff && v[17] == 0x7c00 && v[23] == 0x0001 && v[21] == 0x0000);
        }
        lmc_array_free(r16);
        lmc_array_free(r32);
        lmc_array_free(t16);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(x);
    lmc_array_free(x2);
    lmc_array_free(xt);
}

static void test_errors(void) {
    lmc_array *a = vec(LMC_F32, 3, (double[]){1, 2, 3}), *b = vec(LMC_F32, 4, (double[]){1, 2, 3, 4});
    lmc_clear_error();
    lmc_array *r = lmc_add(a, b);
    CHECK(r == NULL);
    CHECK(lmc_last_status() == LMC_ERR_SHAPE);
    CHECK_STR(lmc_last_error(), "add: shapes [3] and [4] cannot be broadcast together");
    /* NULL inputs propagate and keep the first error */
    r = lmc_exp(lmc_mul(lmc_sub(a, b), a));
    CHECK(r == NULL);
    CHECK(strstr(lmc_last_error(), "sub: shapes [3] and [4]") != NULL);
    lmc_clear_error();
    r = lmc_where(NULL, a, b);
    CHECK(r == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "where") != NULL);
    lmc_array_free(a);
    lmc_array_free(b);
}

/* Independent check of strided handling: an op on a view equals the op on a
 * contiguous copy of the same values. */
static lmc_array *contiguous_copy(const lmc_array *a) {
    lmc_array *c = lmc_array_new(a->dtype, a->ndim, a->shape, LMC_CPU);
    double *v = to_doubles(a);
    for (int64_t i = 0; i < a->size; i++) lmc_store_f64((char *)lmc_array_ptr(c) + i * lmc_dtype_size(a->dtype), a->dtype, v[i]);
    free(v);
    return c;
}

/* Tolerance of a SIMD unary result against the oracle: the dtype's rounding,
 * and for gelu_tanh the stated 1e-5 (its argument's f32 rounding matters for
 * x < -5, where results are below 1e-10); 1e-20 absolute for underflow. */
static double unary_rtol(int op, lmc_dtype dt) {
    double r = dtype_rtol(dt);
    return op == LMC_UNARY_GELU_TANH && r < 1e-5 ? 1e-5 : r;
}

static lmc_dtype unary_out_dtype(lmc_unary_op op, lmc_dtype dt) {
    bool keeps = op == LMC_UNARY_NEG || op == LMC_UNARY_ABS || op == LMC_UNARY_SQUARE;
    return keeps || lmc_dtype_is_float(dt) ? dt : LMC_F32;
}

/* Every op x dtype x layout: each path's kernel against the scalar oracle,
 * and the oracle on the view against the oracle on a contiguous copy. */
static void test_unary_paths(void) {
    const lmc_kernels *ks = lmc_cpu_kernels_scalar();
    for (int op = 0; op < LMC_UNARY_COUNT; op++)
        for (int t = 0; t < N_ALL_DTYPES; t++)
            for (int view = 0; view < VIEW_COUNT; view++) {
                lmc_dtype dt = ALL_DTYPES[t];
                int64_t shape[LMC_MAX_DIMS];
                int nd = rnd_shape(shape, 3, 40, true);
                lmc_array *in = rnd_array(dt, nd, shape, view, -12, 12);
                lmc_array *cin = contiguous_copy(in);
                lmc_dtype odt = unary_out_dtype((lmc_unary_op)op, dt);
                lmc_array *ref = lmc_array_new(odt, nd, shape, LMC_CPU), *ref2 = lmc_array_new(odt, nd, shape, LMC_CPU);
                if (ref->size) {
                    ks->unary((lmc_unary_op)op, ref, in);
                    ks->unary((lmc_unary_op)op, ref2, cin);
                }
                char what[128];
                snprintf(what, sizeof what, "%s %s %s oracle view vs copy", UNARY_NAMES[op], lmc_dtype_name(dt), VIEW_NAMES[view]);
                arrays_close(ref, ref2, 0, 0, what);
                for (int p = 1; p <= max_path(); p++) {
                    lmc_array *out = lmc_array_new(odt, nd, shape, LMC_CPU);
                    if (out->size) CHECK(lmc_cpu_kernels_for_path((lmc_cpu_path)p)->unary((lmc_unary_op)op, out, in) == LMC_OK);
                    snprintf(what, sizeof what, "%s %s %s path %d", UNARY_NAMES[op], lmc_dtype_name(dt), VIEW_NAMES[view], p);
                    arrays_close(out, ref, 1e-20, unary_rtol(op, odt), what);
                    lmc_array_free(out);
                }
                lmc_array_free(ref);
                lmc_array_free(ref2);
                lmc_array_free(in);
                lmc_array_free(cin);
            }
}

static void test_binary_paths(void) {
    const lmc_kernels *ks = lmc_cpu_kernels_scalar();
    for (int op = 0; op < LMC_BINARY_COUNT; op++)
        for (int t = 0; t < N_ALL_DTYPES; t++)
            for (int view = 0; view < VIEW_COUNT; view++) {
                /* a of dtype t; b of the same dtype, or f32 for mixed cases every other time */
                lmc_dtype da = ALL_DTYPES[t], db = (view % 2 && lmc_dtype_is_float(da)) ? LMC_F32 : da;
                int64_t shape[LMC_MAX_DIMS];
                int nd = rnd_shape(shape, 3, 40, true);
                lmc_array *a = rnd_array(da, nd, shape, view, -8, 8);
                lmc_array *b = rnd_array(db, nd, shape, (view + 1) % VIEW_COUNT, op == LMC_BINARY_POW ? 0.5 : -8, 8);
                lmc_dtype odt = op >= LMC_BINARY_EQ ? LMC_BOOL : lmc_promote(da, db);
                if (op == LMC_BINARY_DIV && !lmc_dtype_is_float(odt)) odt = LMC_F32;
                lmc_array *ca = contiguous_copy(a), *cb = contiguous_copy(b);
                lmc_array *ref = lmc_array_new(odt, nd, shape, LMC_CPU), *ref2 = lmc_array_new(odt, nd, shape, LMC_CPU);
                if (ref->size) {
                    ks->binary((lmc_binary_op)op, ref, a, b);
                    ks->binary((lmc_binary_op)op, ref2, ca, cb);
                }
                char what[128];
                snprintf(what, sizeof what, "%s %s/%s %s oracle view vs copy", BINARY_NAMES[op], lmc_dtype_name(da),
                         lmc_dtype_name(db), VIEW_NAMES[view]);
                arrays_close(ref, ref2, 0, 0, what);
                for (int p = 1; p <= max_path(); p++) {
                    lmc_array *out = lmc_array_new(odt, nd, shape, LMC_CPU);
                    if (out->size) CHECK(lmc_cpu_kernels_for_path((lmc_cpu_path)p)->binary((lmc_binary_op)op, out, a, b) == LMC_OK);
                    snprintf(what, sizeof what, "%s %s/%s %s path %d", BINARY_NAMES[op], lmc_dtype_name(da), lmc_dtype_name(db),
                             VIEW_NAMES[view], p);
                    arrays_close(out, ref, 1e-30, dtype_rtol(odt), what);
                    lmc_array_free(out);
                }
                lmc_array_free(ref);
                lmc_array_free(ref2);
                lmc_array_free(a);
                lmc_array_free(b);
                lmc_array_free(ca);
                lmc_array_free(cb);
            }
}

/* Large contiguous f32/bf16 arrays (SIMD bodies, tails and the thread pool):
 * each path against the oracle, including row broadcasting (bias add) and a
 * scalar operand. */
static void test_fast_paths_large(void) {
    const lmc_kernels *ks = lmc_cpu_kernels_scalar();
    lmc_dtype dts[] = {LMC_F32, LMC_BF16};
    int64_t shape[2] = {37, 1031}, row[1] = {1031};
    for (int t = 0; t < 2; t++) {
        lmc_array *a = rnd_array(dts[t], 2, shape, VIEW_CONTIGUOUS, -10, 10);
        lmc_array *b = rnd_array(dts[t], 2, shape, VIEW_CONTIGUOUS, -10, 10);
        lmc_array *r = rnd_array(dts[t], 1, row, VIEW_CONTIGUOUS, -10, 10);
        lmc_array *rb = lmc_broadcast_view(r, 2, shape);
        lmc_array *s = lmc_array_new(LMC_F32, 0, NULL, LMC_CPU);
        *(float *)lmc_array_ptr(s) = 0.37f;
        lmc_array *sb = lmc_broadcast_view(s, 2, shape);
        const lmc_array *rhs[] = {b, rb, sb};
        for (int op = LMC_BINARY_ADD; op <= LMC_BINARY_DIV; op++)
            for (int w = 0; w < 3; w++) {
                lmc_dtype odt = lmc_promote(dts[t], rhs[w]->dtype);
                lmc_array *ref = lmc_array_new(odt, 2, shape, LMC_CPU);
                ks->binary((lmc_binary_op)op, ref, a, rhs[w]);
                for (int p = 1; p <= max_path(); p++) {
                    lmc_array *out = lmc_array_new(odt, 2, shape, LMC_CPU);
                    lmc_cpu_kernels_for_path((lmc_cpu_path)p)->binary((lmc_binary_op)op, out, a, rhs[w]);
                    char what[96];
                    snprintf(what, sizeof what, "%s %s rhs %d path %d (large)", BINARY_NAMES[op], lmc_dtype_name(dts[t]), w, p);
                    arrays_close(out, ref, 0, dtype_rtol(odt), what);
                    lmc_array_free(out);
                }
                lmc_array_free(ref);
            }
        for (int op = 0; op < LMC_UNARY_COUNT; op++) {
            lmc_array *ref = lmc_array_new(dts[t], 2, shape, LMC_CPU);
            ks->unary((lmc_unary_op)op, ref, a);
            for (int p = 1; p <= max_path(); p++) {
                lmc_array *out = lmc_array_new(dts[t], 2, shape, LMC_CPU);
                lmc_cpu_kernels_for_path((lmc_cpu_path)p)->unary((lmc_unary_op)op, out, a);
                char what[96];
                snprintf(what, sizeof what, "%s %s path %d (large)", UNARY_NAMES[op], lmc_dtype_name(dts[t]), p);
                arrays_close(out, ref, 1e-20, unary_rtol(op, dts[t]), what);
                lmc_array_free(out);
            }
            lmc_array_free(ref);
        }
        lmc_array_free(a);
        lmc_array_free(b);
        lmc_array_free(r);
        lmc_array_free(rb);
        lmc_array_free(s);
        lmc_array_free(sb);
    }
}

/* The SIMD exp stays within 2e-6 relative error of exp over [-87, 88]
 * (normal f32 results), gives +inf above ~88.72, 0 far below, and keeps NaN. */
static void test_exp_accuracy(void) {
    enum { N = 400001 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) x[i] = -87.0f + 175.0f * (float)i / (N - 1);
    void (*fns[])(float *, const float *, int64_t) = {lmc_cpu_exp_f32_avx2, lmc_cpu_exp_f32_avx512};
    for (int p = LMC_PATH_AVX2; p <= max_path() && p <= LMC_PATH_AVX512; p++) {
        fns[p - 1](y, x, N);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double want = exp((double)x[i]);
            double rel = fabs(y[i] - want) / want;
            if (rel > worst) worst = rel;
        }
        CHECKF(worst <= 2e-6, "path %d: exp max relative error %.3g", p, worst);
        fprintf(stderr, "  exp path %d: max relative error %.3g over [-87, 88]\n", p, worst);
        float sx[] = {89.0f, -104.0f, NAN, -INFINITY, INFINITY, 0.0f, -90.0f};
        float sy[7];
        fns[p - 1](sy, sx, 7);
        CHECK(isinf(sy[0]) && sy[0] > 0);
        CHECK(sy[1] == 0.0f);
        CHECK(isnan(sy[2]));
        CHECK(sy[3] == 0.0f);
        CHECK(isinf(sy[4]));
        CHECK(sy[5] == 1.0f);
        CHECK_CLOSE(sy[6], exp(-90.0), 1e-44, 1e-3); /* denormal result */
    }
    free(x);
    free(y);
}

/* Dense sweeps of the SIMD tanh, sigmoid, silu and gelu_tanh against libm in
 * double: maximum relative error (results above 1e-20) within the stated bounds. */
static void test_simd_accuracy(void) {
    int64_t n = 200001;
    lmc_array *x = lmc_array_new(LMC_F32, 1, &n, LMC_CPU), *y = lmc_array_new(LMC_F32, 1, &n, LMC_CPU);
    float *xv = lmc_array_ptr(x), *yv = lmc_array_ptr(y);
    for (int64_t i = 0; i < n; i++) xv[i] = -12.0f + 24.0f * (float)i / (float)(n - 1);
    const lmc_unary_op ops[] = {LMC_UNARY_TANH, LMC_UNARY_SIGMOID, LMC_UNARY_SILU, LMC_UNARY_GELU_TANH};
    const double bounds[] = {2e-6, 2e-6, 2e-6, 1e-5};
    for (int p = LMC_PATH_AVX2; p <= max_path() && p <= LMC_PATH_AVX512; p++)
        for (int k = 0; k < 4; k++) {
            lmc_cpu_kernels_for_path((lmc_cpu_path)p)->unary(ops[k], y, x);
            double worst = 0;
            for (int64_t i = 0; i < n; i++) {
                double v = xv[i], want;
                switch (ops[k]) {
                case LMC_UNARY_TANH: want = tanh(v); break;
                case LMC_UNARY_SIGMOID: want = 1 / (1 + exp(-v)); break;
                case LMC_UNARY_SILU: want = v / (1 + exp(-v)); break;
                /* PyTorch's formula rearranged as v*sigmoid(2u): 1 + tanh(u) cancels in double for v << 0 */
                default: want = v / (1 + exp(-2 * sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                }
                if (fabs(want) < 1e-20) continue;
                double rel = fabs(yv[i] - want) / fabs(want);
                if (rel > worst) worst = rel;
            }
            CHECKF(worst <= bounds[k], "%s path %d: max relative error %.3g", UNARY_NAMES[ops[k]], p, worst);
            fprintf(stderr, "  %s path %d: max relative error %.3g over [-12, 12]\n", UNARY_NAMES[ops[k]], p, worst);
        }
    lmc_array_free(x);
    lmc_array_free(y);
}

int main(void) {
    RUN(test_unary_values);
    RUN(test_gelu_tanh_formula);
    RUN(test_binary_values);
    RUN(test_where);
    RUN(test_where_f32);
    RUN(test_astype);
    RUN(test_astype_float16_paths);
    RUN(test_errors);
    RUN(test_unary_paths);
    RUN(test_binary_paths);
    RUN(test_fast_paths_large);
    RUN(test_exp_accuracy);
    RUN(test_simd_accuracy);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
