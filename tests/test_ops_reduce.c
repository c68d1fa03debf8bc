/* Reductions, softmax, cumsum, sort, argsort and top-k: hand-checked values,
 * NaN and tie rules, errors, and every CPU path against the scalar oracle on
 * random shapes, axes, dtypes and views (and thread counts). */
#include "ops_check.h"

static lmc_array *vec(lmc_dtype dt, int n, const double *v) {
    int64_t s = n;
    lmc_array *a = lmc_array_new(dt, 1, &s, LMC_CPU);
    for (int i = 0; i < n; i++) lmc_store_f64((char *)lmc_array_ptr(a) + i * lmc_dtype_size(dt), dt, v[i]);
    return a;
}

static void check_values(lmc_array *a, lmc_dtype dt, int n, const double *want, double rtol, const char *what) {
    CHECKF(a != NULL, "%s: %s", what, lmc_last_error());
    if (a) {
        CHECKF(a->dtype == dt && a->size == n, "%s: dtype %s size %lld", what, lmc_dtype_name(a->dtype), (long long)a->size);
        if (a->size == n) {
            double *v = to_doubles(a);
            for (int i = 0; i < n; i++)
                CHECKF((isnan(v[i]) && isnan(want[i])) || v[i] == want[i] || fabs(v[i] - want[i]) <= rtol * fabs(want[i]),
                       "%s[%d] = %.9g, want %.9g", what, i, v[i], want[i]);
            free(v);
        }
    }
    lmc_array_free(a); /* consumes a */
}

static void test_hand_values(void) {
    for (int p = 0; p <= max_path(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *a = vec(LMC_F32, 3, (double[]){1, 2, 3});
        check_values(lmc_softmax(a, 0), LMC_F32, 3, (double[]){0.0900306, 0.2447285, 0.6652410}, 1e-6, "softmax");
        check_values(lmc_log_softmax(a, -1), LMC_F32, 3, (double[]){-2.40760596, -1.40760596, -0.40760596}, 1e-6,
                     "log_softmax");
        check_values(lmc_logsumexp(a, 0, false), LMC_F32, 1, (double[]){3.40760596}, 1e-7, "logsumexp");
        check_values(lmc_sum(a, 0, false), LMC_F32, 1, (double[]){6}, 0, "sum");
        check_values(lmc_mean(a, LMC_ALL_AXES, false), LMC_F32, 1, (double[]){2}, 0, "mean");
        check_values(lmc_cumsum(a, 0, false), LMC_F32, 3, (double[]){1, 3, 6}, 0, "cumsum");
        check_values(lmc_cumsum(a, 0, true), LMC_F32, 3, (double[]){6, 5, 3}, 0, "cumsum reverse");
        lmc_array_free(a);
        /* ties: first index; NaN: max is NaN and argmax the first NaN */
        lmc_array *t = vec(LMC_F32, 20, (double[]){1, 3, 3, 2, -1, 0, 3, 3, 3, 1, 2, 3, 0, 0, 1, 1, 2, 3, 3, 3});
        check_values(lmc_argmax(t, 0, false), LMC_I32, 1, (double[]){1}, 0, "argmax ties");
        check_values(lmc_argmin(t, 0, false), LMC_I32, 1, (double[]){4}, 0, "argmin");
        check_values(lmc_max(t, 0, false), LMC_F32, 1, (double[]){3}, 0, "max");
        check_values(lmc_min(t, 0, false), LMC_F32, 1, (double[]){-1}, 0, "min");
        lmc_array *nn = vec(LMC_F32, 20, (double[]){1, 9, 3, 2, -1, 0, 3, 3, 3, 1, 2, NAN, 0, 0, 1, NAN, 2, 3, 3, 3});
        check_values(lmc_argmax(nn, 0, false), LMC_I32, 1, (double[]){11}, 0, "argmax NaN");
        check_values(lmc_argmin(nn, 0, false), LMC_I32, 1, (double[]){11}, 0, "argmin NaN");
        check_values(lmc_max(nn, 0, false), LMC_F32, 1, (double[]){NAN}, 0, "max NaN");
        check_values(lmc_sum(nn, 0, false), LMC_F32, 1, (double[]){NAN}, 0, "sum NaN");
        lmc_array_free(t);
        lmc_array_free(nn);
        /* an all -inf row: logsumexp -inf, softmax NaN */
        lmc_array *ninf = vec(LMC_F32, 2, (double[]){-INFINITY, -INFINITY});
        check_values(lmc_logsumexp(ninf, 0, false), LMC_F32, 1, (double[]){-INFINITY}, 0, "logsumexp -inf");
        check_values(lmc_softmax(ninf, 0), LMC_F32, 2, (double[]){NAN, NAN}, 0, "softmax -inf");
        lmc_array_free(ninf);
    }
    lmc_cpu_path_set(LMC_PATH_AMX);
    /* dtypes: sum of bool/ints is int32, mean of ints is f32 */
    lmc_array *b = vec(LMC_BOOL, 4, (double[]){1, 0, 1, 1});
    check_values(lmc_sum(b, 0, false), LMC_I32, 1, (double[]){3}, 0, "sum bool");
    check_values(lmc_mean(b, 0, false), LMC_F32, 1, (double[]){0.75}, 0, "mean bool");
    check_values(lmc_cumsum(b, 0, false), LMC_I32, 4, (double[]){1, 1, 2, 3}, 0, "cumsum bool");
    lmc_array_free(b);
    lmc_array *u = vec(LMC_U8, 3, (double[]){200, 100, 7});
    check_values(lmc_sum(u, 0, false), LMC_I32, 1, (double[]){307}, 0, "sum u8");
    check_values(lmc_max(u, 0, false), LMC_U8, 1, (double[]){200}, 0, "max u8");
    lmc_array_free(u);
    /* shapes: [2,3] along each axis, keepdims, all axes */
    int64_t s23[] = {2, 3};
    lmc_array *m = lmc_array_from_data((float[]){1, 2, 3, 4, 5, 6}, LMC_F32, 2, s23);
    lmc_array *r = lmc_sum(m, 0, false);
    CHECK(r && r->ndim == 1 && r->shape[0] == 3);
    check_values(r, LMC_F32, 3, (double[]){5, 7, 9}, 0, "sum axis 0");
    r = lmc_sum(m, 1, true);
    CHECK(r && r->ndim == 2 && r->shape[0] == 2 && r->shape[1] == 1);
    check_values(r, LMC_F32, 2, (double[]){6, 15}, 0, "sum axis 1 keepdims");
    r = lmc_sum(m, LMC_ALL_AXES, true);
    CHECK(r && r->ndim == 2 && r->shape[0] == 1 && r->shape[1] == 1);
    check_values(r, LMC_F32, 1, (double[]){21}, 0, "sum all keepdims");
    r = lmc_argmax(m, LMC_ALL_AXES, false);
    CHECK(r && r->ndim == 0);
    check_values(r, LMC_I32, 1, (double[]){5}, 0, "argmax all");
    /* all axes of a transposed (non-contiguous) view: flat index in its own row-major order */
    lmc_array *mt = lmc_array_view(m->buf, 0, LMC_F32, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3});
    check_values(lmc_argmin(mt, LMC_ALL_AXES, false), LMC_I32, 1, (double[]){0}, 0, "argmin all transposed");
    check_values(lmc_argmax(mt, LMC_ALL_AXES, false), LMC_I32, 1, (double[]){5}, 0, "argmax all transposed");
    check_values(lmc_softmax(mt, 0), LMC_F32, 6,
                 (double[]){0.0900306, 0.0900306, 0.2447285, 0.2447285, 0.6652410, 0.6652410}, 1e-6, "softmax axis 0");
    lmc_array_free(mt);
    lmc_array_free(m);
    /* empty axes */
    int64_t s0[] = {0}, s20[] = {2, 0};
    lmc_array *e = lmc_array_new(LMC_F32, 1, s0, LMC_CPU);
    check_values(lmc_sum(e, 0, false), LMC_F32, 1, (double[]){0}, 0, "sum empty");
    check_values(lmc_mean(e, 0, false), LMC_F32, 1, (double[]){NAN}, 0, "mean empty");
    check_values(lmc_logsumexp(e, 0, false), LMC_F32, 1, (double[]){-INFINITY}, 0, "logsumexp empty");
    lmc_clear_error();
    CHECK(lmc_max(e, 0, false) == NULL);
    CHECK_STR(lmc_last_error(), "max: cannot reduce an empty axis");
    lmc_array_free(e);
    lmc_array *e2 = lmc_array_new(LMC_F32, 2, s20, LMC_CPU);
    r = lmc_max(e2, 0, false);
    CHECK(r && r->ndim == 1 && r->shape[0] == 0);
    lmc_array_free(r);
    r = lmc_softmax(e2, 1);
    CHECK(r && r->size == 0);
    lmc_array_free(r);
    lmc_array_free(e2);
    /* 0-d: all axes works, a named axis does not */
    lmc_array *z = lmc_array_from_data((float[]){4}, LMC_F32, 0, NULL);
    check_values(lmc_sum(z, LMC_ALL_AXES, false), LMC_F32, 1, (double[]){4}, 0, "sum 0-d");
    lmc_clear_error();
    CHECK(lmc_sum(z, 0, false) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array_free(z);
}

static void test_sort_topk(void) {
    lmc_array *a = vec(LMC_F32, 7, (double[]){3, NAN, 1, 2, 1, -0.5, 3});
    check_values(lmc_sort(a, 0), LMC_F32, 7, (double[]){-0.5, 1, 1, 2, 3, 3, NAN}, 0, "sort");
    check_values(lmc_argsort(a, 0), LMC_I32, 7, (double[]){5, 2, 4, 3, 0, 6, 1}, 0, "argsort stable, NaN last");
    lmc_array *idx = NULL;
    lmc_array *b = vec(LMC_F32, 6, (double[]){1, 3, 2, 3, 0, 3});
    check_values(lmc_topk(b, 4, 0, &idx), LMC_F32, 4, (double[]){3, 3, 3, 2}, 0, "topk values");
    check_values(idx, LMC_I32, 4, (double[]){1, 3, 5, 2}, 0, "topk indices, ties lower first");
    check_values(lmc_topk(a, 2, 0, &idx), LMC_F32, 2, (double[]){NAN, 3}, 0, "topk NaN largest");
    check_values(idx, LMC_I32, 2, (double[]){1, 0}, 0, "topk NaN index");
    check_values(lmc_topk(b, 0, 0, NULL), LMC_F32, 0, NULL, 0, "topk k=0");
    lmc_clear_error();
    CHECK(lmc_topk(b, 7, 0, &idx) == NULL && idx == NULL);
    CHECK(lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK_STR(lmc_last_error(), "topk: k = 7 is out of range for axis 0 of size 6");
    /* integer dtypes and a 2-d axis 0 */
    int64_t s32[] = {3, 2};
    lmc_array *m = lmc_array_from_data((uint8_t[]){5, 0, 255, 7, 5, 7}, LMC_U8, 2, s32);
    check_values(lmc_topk(m, 2, 0, &idx), LMC_U8, 4, (double[]){255, 7, 5, 7}, 0, "topk u8 axis 0");
    check_values(idx, LMC_I32, 4, (double[]){1, 1, 0, 2}, 0, "topk u8 indices");
    check_values(lmc_sort(m, 0), LMC_U8, 6, (double[]){5, 0, 5, 7, 255, 7}, 0, "sort u8 axis 0");
    check_values(lmc_argsort(m, 1), LMC_I32, 6, (double[]){1, 0, 1, 0, 0, 1}, 0, "argsort u8 axis 1");
    lmc_array_free(m);
    lmc_array_free(a);
    lmc_array_free(b);
}

static void test_errors(void) {
    lmc_array *a = vec(LMC_F32, 3, (double[]){1, 2, 3});
    lmc_clear_error();
    CHECK(lmc_sum(a, 1, false) == NULL);
    CHECK(lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(strstr(lmc_last_error(), "sum: axis 1 is out of range") != NULL);
    CHECK(lmc_softmax(a, -2) == NULL && strstr(lmc_last_error(), "softmax: axis -2") != NULL);
    CHECK(lmc_sort(a, 3) == NULL && strstr(lmc_last_error(), "sort") != NULL);
    /* NULL input keeps the first error */
    lmc_clear_error();
    lmc_array *r = lmc_softmax(lmc_sum(a, 5, false), 0);
    CHECK(r == NULL && strstr(lmc_last_error(), "sum: axis 5") != NULL);
    lmc_clear_error();
    CHECK(lmc_cumsum(NULL, 0, false) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    lmc_array_free(a);
}

/* Every reduction on random shapes/axes/dtypes/views: each path against the
 * oracle (path scalar) through the public ops. */
static void test_paths(void) {
    const lmc_dtype dts[] = {LMC_F32, LMC_F16, LMC_BF16, LMC_I32, LMC_U8, LMC_BOOL};
    for (int iter = 0; iter < 240; iter++) {
        lmc_dtype dt = dts[iter % 6];
        int view = (iter / 6) % VIEW_COUNT;
        int64_t shape[LMC_MAX_DIMS];
        int nd = rnd_shape(shape, 3, 24, true);
        if (nd == 0) shape[0] = 5, nd = 1;
        if (iter % 3 == 0) shape[nd - 1] = rnd_int(60, 300); /* long last axes for the SIMD rows */
        int axis = (int)rnd_int(-nd, nd - 1);
        lmc_array *a = rnd_array(dt, nd, shape, view, -3, 3);
        char what[128];
        for (int op = 0; op < 11; op++) {
            lmc_array *ref = NULL;
            for (int p = 0; p <= max_path(); p++) {
                lmc_cpu_path_set((lmc_cpu_path)p);
                lmc_array *r = NULL;
                bool keep = iter % 2;
                switch (op) {
                case 0: r = lmc_sum(a, axis, keep); break;
                case 1: r = lmc_mean(a, axis, keep); break;
                case 2: r = lmc_max(a, axis, keep); break;
                case 3: r = lmc_min(a, axis, keep); break;
                case 4: r = lmc_argmax(a, axis, keep); break;
                case 5: r = lmc_argmin(a, axis, keep); break;
                case 6: r = lmc_logsumexp(a, axis, keep); break;
                case 7: r = lmc_softmax(a, axis); break;
                case 8: r = lmc_log_softmax(a, axis); break;
                case 9: r = lmc_cumsum(a, axis, keep); break;
                case 10: r = lmc_argsort(a, axis); break;
                }
                bool empty_axis = a->shape[axis < 0 ? axis + nd : axis] == 0;
                if (!r) {
                    CHECKF(empty_axis && op >= 2 && op <= 5, "op %d %s: %s", op, lmc_dtype_name(dt), lmc_last_error());
                    break;
                }
                if (p == 0) {
                    ref = r;
                    continue;
                }
                snprintf(what, sizeof what, "op %d %s %s axis %d len %lld path %d", op, lmc_dtype_name(dt), VIEW_NAMES[view],
                         axis, (long long)a->shape[axis < 0 ? axis + nd : axis], p);
                /* f32 accumulation in the SIMD rows vs double in the oracle */
                double len = (double)a->shape[axis < 0 ? axis + nd : axis];
                double atol = op <= 1 ? 3e-6 * len : 1e-6;
                arrays_close(r, ref, atol, op == 0 || op == 1 ? 0 : dtype_rtol(ref->dtype) + 2e-6, what);
                lmc_array_free(r);
            }
            lmc_array_free(ref);
        }
        lmc_array_free(a);
    }
    lmc_cpu_path_set(LMC_PATH_AMX);
}

/* Large rows through the thread pool: identical bits for 1 and 2 threads. */
static void test_threads(void) {
    int64_t shape[] = {96, 2053};
    lmc_array *a = rnd_array(LMC_F32, 2, shape, VIEW_CONTIGUOUS, -20, 20);
    lmc_array *r1[6], *r2[6];
    for (int pass = 0; pass < 2; pass++) {
        lmc_set_num_threads(pass == 0 ? 1 : 2);
        lmc_array **r = pass == 0 ? r1 : r2;
        r[0] = lmc_sum(a, -1, false);
        r[1] = lmc_softmax(a, -1);
        r[2] = lmc_logsumexp(a, 1, false);
        r[3] = lmc_argmax(a, 1, false);
        r[4] = lmc_sum(a, 0, false);
        r[5] = lmc_cumsum(a, 0, false);
    }
    lmc_set_num_threads(0);
    for (int i = 0; i < 6; i++) {
        CHECK(r1[i] && r2[i] && memcmp(lmc_array_data(r1[i]), lmc_array_data(r2[i]), lmc_array_nbytes(r1[i])) == 0);
        lmc_array_free(r1[i]);
        lmc_array_free(r2[i]);
    }
    lmc_array_free(a);
}

int main(void) {
    RUN(test_hand_values);
    RUN(test_sort_topk);
    RUN(test_errors);
    RUN(test_paths);
    RUN(test_threads);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
