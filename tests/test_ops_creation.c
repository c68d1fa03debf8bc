/* Creation ops: fills, scalars, arange, and the counter-based random arrays
 * (statistics, reproducibility across thread counts and paths, errors). */
#include "ops_check.h"

static void test_fill(void) {
    int64_t s[] = {3, 5};
    for (int t = 0; t < N_ALL_DTYPES; t++) {
        lmc_dtype dt = ALL_DTYPES[t];
        lmc_array *z = lmc_zeros(dt, 2, s), *o = lmc_ones(dt, 2, s), *f = lmc_full(7.0, dt, 2, s);
        CHECK(z && o && f && z->dtype == dt && z->size == 15);
        double *zv = to_doubles(z), *ov = to_doubles(o), *fv = to_doubles(f);
        for (int i = 0; i < 15; i++) {
            CHECK(zv[i] == 0);
            CHECK(ov[i] == 1);
            CHECK(fv[i] == (dt == LMC_BOOL ? 1 : 7));
        }
        free(zv), free(ov), free(fv);
        lmc_array_free(z), lmc_array_free(o), lmc_array_free(f);
    }
    lmc_array *sc = lmc_scalar(-2.5, LMC_BF16);
    double v = 0;
    CHECK(sc && sc->ndim == 0 && lmc_array_item(sc, &v) == LMC_OK && v == -2.5);
    lmc_array_free(sc);
    lmc_array *e = lmc_zeros(LMC_F32, 2, (int64_t[]){0, 4});
    CHECK(e && e->size == 0);
    lmc_array_free(e);
    lmc_clear_error();
    CHECK(lmc_zeros(LMC_F32, 1, (int64_t[]){-1}) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
}

static void check_arange(double start, double stop, double step, lmc_dtype dt, int n, const double *want) {
    lmc_array *a = lmc_arange(start, stop, step, dt);
    CHECKF(a && a->ndim == 1 && a->size == n, "arange(%g, %g, %g): %s", start, stop, step, a ? "wrong size" : lmc_last_error());
    if (a && a->size == n) {
        double *v = to_doubles(a);
        for (int i = 0; i < n; i++) CHECKF(v[i] == want[i], "arange(%g, %g, %g)[%d] = %g", start, stop, step, i, v[i]);
        free(v);
    }
    lmc_array_free(a);
}

static void test_arange(void) {
    check_arange(0, 5, 1, LMC_I32, 5, (double[]){0, 1, 2, 3, 4});
    check_arange(5, 0, -2, LMC_F32, 3, (double[]){5, 3, 1});
    check_arange(0, 1, 0.25, LMC_F32, 4, (double[]){0, 0.25, 0.5, 0.75});
    check_arange(3, 3, 1, LMC_F32, 0, NULL);
    check_arange(3, 1, 1, LMC_F32, 0, NULL);
    check_arange(0, 2.5, 1, LMC_BF16, 3, (double[]){0, 1, 2});
    lmc_clear_error();
    CHECK(lmc_arange(0, 1, 0, LMC_F32) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "arange") != NULL);
    CHECK(lmc_arange(0, INFINITY, 1, LMC_F32) == NULL);
}

static void stats(const lmc_array *a, double *mean, double *std) {
    double *v = to_doubles(a), s = 0, s2 = 0;
    for (int64_t i = 0; i < a->size; i++) s += v[i], s2 += v[i] * v[i];
    *mean = s / (double)a->size;
    *std = sqrt(s2 / (double)a->size - *mean * *mean);
    free(v);
}

static void test_random(void) {
    int64_t s[] = {1000, 500};
    double m, sd;
    lmc_array *n = lmc_random_normal(LMC_F32, 2, s, 1.5, 2.0, 42);
    stats(n, &m, &sd);
    /* 500k draws: standard errors 0.003 (mean) and 0.002 (std) */
    CHECK_CLOSE(m, 1.5, 0.015, 0);
    CHECK_CLOSE(sd, 2.0, 0.01, 0);
    lmc_array *u = lmc_random_uniform(LMC_F32, 2, s, -1, 3, 42);
    stats(u, &m, &sd);
    CHECK_CLOSE(m, 1.0, 0.01, 0);
    CHECK_CLOSE(sd, 4.0 / sqrt(12.0), 0.01, 0);
    double *uv = to_doubles(u);
    bool in_range = true;
    for (int64_t i = 0; i < u->size; i++) in_range &= uv[i] >= -1 && uv[i] <= 3;
    CHECK(in_range);
    free(uv);
    /* a normal tail check: about 4.55% beyond 2 std */
    double *nv = to_doubles(n);
    int64_t beyond = 0;
    for (int64_t i = 0; i < n->size; i++) beyond += fabs(nv[i] - 1.5) > 4.0;
    free(nv);
    CHECK_CLOSE((double)beyond / (double)n->size, 0.0455, 0.002, 0);

    /* same seed: same bits on 1 and 2 threads and on every path; element i
     * depends only on (seed, i), so a smaller array is a prefix */
    for (int threads = 1; threads <= 2; threads++)
        for (int p = 0; p <= max_path(); p++) {
            lmc_set_num_threads(threads);
            lmc_cpu_path_set((lmc_cpu_path)p);
            lmc_array *n2 = lmc_random_normal(LMC_F32, 2, s, 1.5, 2.0, 42);
            CHECK(n2 && memcmp(lmc_array_data(n2), lmc_array_data(n), lmc_array_nbytes(n)) == 0);
            lmc_array_free(n2);
        }
    lmc_set_num_threads(0);
    lmc_cpu_path_set(LMC_PATH_AMX);
    int64_t s7 = 7;
    lmc_array *prefix = lmc_random_normal(LMC_F32, 1, &s7, 1.5, 2.0, 42);
    CHECK(prefix && memcmp(lmc_array_data(prefix), lmc_array_data(n), 7 * sizeof(float)) == 0);
    lmc_array_free(prefix);
    lmc_array *other = lmc_random_normal(LMC_F32, 2, s, 1.5, 2.0, 43);
    CHECK(other && memcmp(lmc_array_data(other), lmc_array_data(n), 64) != 0);
    lmc_array_free(other);
    /* bf16: the f32 stream rounded once */
    lmc_array *b = lmc_random_normal(LMC_BF16, 1, &s7, 1.5, 2.0, 42);
    double *bv = to_doubles(b);
    const float *fv = lmc_array_data(n);
    for (int i = 0; i < 7; i++) CHECK_CLOSE(bv[i], fv[i], 0, 1.0 / 256);
    free(bv);
    lmc_array_free(b);
    lmc_array_free(n);
    lmc_array_free(u);
    /* errors */
    lmc_clear_error();
    CHECK(lmc_random_normal(LMC_I32, 1, &s7, 0, 1, 1) == NULL);
    CHECK_STR(lmc_last_error(), "random_normal: dtype int32 is not a float dtype");
    CHECK(lmc_random_normal(LMC_F32, 1, &s7, 0, -1, 1) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_random_uniform(LMC_F32, 1, &s7, 2, 1, 1) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
}

int main(void) {
    RUN(test_fill);
    RUN(test_arange);
    RUN(test_random);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
