/* take, take_along_axis, put_along_axis, scatter_add_along_axis: hand-checked
 * values, random shapes/dtypes/views against a direct computation, errors. */
#include "ops_check.h"

static double *values_of(lmc_array *a) { return a ? to_doubles(a) : NULL; }

static void test_take(void) {
    /* an embedding table [4, 3] gathered with indices [2, 2] -> [2, 2, 3] */
    int64_t s43[] = {4, 3}, s22[] = {2, 2};
    float table[12];
    for (int i = 0; i < 12; i++) table[i] = (float)i;
    lmc_array *t = lmc_array_from_data(table, LMC_F32, 2, s43);
    lmc_array *idx = lmc_array_from_data((int32_t[]){3, 0, -1, 1}, LMC_I32, 2, s22);
    lmc_array *r = lmc_take(t, idx, 0);
    CHECK(r && r->ndim == 3 && r->shape[0] == 2 && r->shape[1] == 2 && r->shape[2] == 3);
    double *v = values_of(r);
    const double want[] = {9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5};
    for (int i = 0; v && i < 12; i++) CHECK(v[i] == want[i]);
    free(v);
    lmc_array_free(r);
    /* along axis 1: [4, 3] with [2, 2] -> [4, 2, 2] */
    lmc_array *idx2 = lmc_array_from_data((uint8_t[]){2, 0, 1, 1}, LMC_U8, 2, s22);
    r = lmc_take(t, idx2, 1);
    CHECK(r && r->ndim == 3 && r->shape[0] == 4 && r->shape[1] == 2 && r->shape[2] == 2);
    v = values_of(r);
    const double want1[] = {2, 0, 1, 1, 5, 3, 4, 4};
    for (int i = 0; v && i < 8; i++) CHECK(v[i] == want1[i]);
    free(v);
    lmc_array_free(r);
    /* a 0-d index removes the axis */
    lmc_array *i0 = lmc_array_from_data((int64_t[]){2}, LMC_I64, 0, NULL);
    r = lmc_take(t, i0, 0);
    CHECK(r && r->ndim == 1 && r->shape[0] == 3);
    v = values_of(r);
    CHECK(v && v[0] == 6 && v[2] == 8);
    free(v);
    lmc_array_free(r);
    /* errors: out of range (with the value), float indices, bad axis */
    lmc_array *bad = lmc_array_from_data((int32_t[]){1, 4}, LMC_I32, 1, (int64_t[]){2});
    lmc_clear_error();
    CHECK(lmc_take(t, bad, 0) == NULL);
    CHECK(lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK_STR(lmc_last_error(), "take: index 4 is out of range for axis 0 of size 4");
    lmc_array *neg = lmc_array_from_data((int32_t[]){-4, -5}, LMC_I32, 1, (int64_t[]){2});
    CHECK(lmc_take(t, neg, 0) == NULL);
    CHECK_STR(lmc_last_error(), "take: index -5 is out of range for axis 0 of size 4");
    lmc_array *fidx = lmc_array_from_data((float[]){1}, LMC_F32, 1, (int64_t[]){1});
    CHECK(lmc_take(t, fidx, 0) == NULL);
    CHECK_STR(lmc_last_error(), "take: indices must have an integer dtype, got float32");
    CHECK(lmc_take(t, idx, 2) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_clear_error();
    CHECK(lmc_take(NULL, idx, 0) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    lmc_array_free(bad);
    lmc_array_free(neg);
    lmc_array_free(fidx);
    lmc_array_free(i0);
    lmc_array_free(idx);
    lmc_array_free(idx2);
    lmc_array_free(t);
}

static void test_along(void) {
    int64_t s23[] = {2, 3}, s21[] = {2, 1};
    lmc_array *a = lmc_array_from_data((float[]){10, 20, 30, 40, 50, 60}, LMC_F32, 2, s23);
    lmc_array *i = lmc_array_from_data((int32_t[]){2, 0}, LMC_I32, 2, s21);
    lmc_array *r = lmc_take_along_axis(a, i, 1);
    double *v = values_of(r);
    CHECK(r && r->shape[0] == 2 && r->shape[1] == 1 && v && v[0] == 30 && v[1] == 40);
    free(v);
    lmc_array_free(r);
    /* put: a copy, the source untouched */
    lmc_array *val = lmc_array_from_data((float[]){-1, -2}, LMC_F32, 2, s21);
    r = lmc_put_along_axis(a, i, val, 1);
    v = values_of(r);
    const double want[] = {10, 20, -1, -2, 50, 60};
    for (int k = 0; v && k < 6; k++) CHECK(v[k] == want[k]);
    free(v);
    v = values_of(a);
    CHECK(v && v[2] == 30);
    free(v);
    lmc_array_free(r);
    /* scatter_add: duplicates accumulate; a scalar value broadcasts */
    lmc_array *dup = lmc_array_from_data((int32_t[]){1, 1, -1, 0, 0, 0}, LMC_I32, 2, s23);
    lmc_array *one = lmc_array_from_data((float[]){0.5f}, LMC_F32, 0, NULL);
    r = lmc_scatter_add_along_axis(a, dup, one, 1);
    v = values_of(r);
    const double want2[] = {10, 21, 30.5, 41.5, 50, 60};
    for (int k = 0; v && k < 6; k++) CHECKF(v[k] == want2[k], "scatter_add[%d] = %g", k, v[k]);
    free(v);
    lmc_array_free(r);
    /* errors */
    lmc_array *bad = lmc_array_from_data((int32_t[]){3, 0}, LMC_I32, 2, s21);
    lmc_clear_error();
    CHECK(lmc_put_along_axis(a, bad, val, 1) == NULL);
    CHECK_STR(lmc_last_error(), "put_along_axis: index 3 is out of range for axis 1 of size 3");
    CHECK(lmc_scatter_add_along_axis(a, bad, val, -1) == NULL);
    CHECK_STR(lmc_last_error(), "scatter_add_along_axis: index 3 is out of range for axis 1 of size 3");
    lmc_array *flat = lmc_array_from_data((int32_t[]){0}, LMC_I32, 1, (int64_t[]){1});
    CHECK(lmc_take_along_axis(a, flat, 1) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(strstr(lmc_last_error(), "take_along_axis: indices [1] must have as many dimensions") != NULL);
    lmc_array *bool_idx = lmc_array_from_data((uint8_t[]){1, 0}, LMC_BOOL, 2, s21);
    CHECK(lmc_take_along_axis(a, bool_idx, 1) == NULL);
    CHECK_STR(lmc_last_error(), "take_along_axis: indices must have an integer dtype, got bool");
    lmc_array_free(bool_idx);
    lmc_array_free(flat);
    lmc_array_free(bad);
    lmc_array_free(dup);
    lmc_array_free(one);
    lmc_array_free(val);
    lmc_array_free(i);
    lmc_array_free(a);
}

/* Random shapes, axes, dtypes and layouts against a direct computation:
 * take then scatter_add of ones counts how often each position was taken. */
static void test_random(void) {
    for (int iter = 0; iter < 200; iter++) {
        lmc_dtype dt = ALL_DTYPES[iter % N_ALL_DTYPES];
        int view = (iter / N_ALL_DTYPES) % VIEW_COUNT;
        int64_t shape[LMC_MAX_DIMS];
        int nd = rnd_shape(shape, 3, 9, false);
        if (nd == 0) shape[0] = 4, nd = 1;
        int axis = (int)rnd_int(0, nd - 1);
        int64_t n = shape[axis];
        lmc_array *a = rnd_array(dt, nd, shape, view, -50, 50);
        /* indices: [m] along axis for take; same rank for take_along */
        int64_t m = rnd_int(0, 7), ishape[LMC_MAX_DIMS];
        memcpy(ishape, shape, sizeof ishape);
        ishape[axis] = m;
        lmc_array *idx = lmc_array_new(LMC_I32, nd, ishape, LMC_CPU);
        int32_t *ip = lmc_array_ptr(idx);
        for (int64_t k = 0; k < idx->size; k++) ip[k] = (int32_t)rnd_int(-n, n - 1);
        lmc_array *g = lmc_take_along_axis(a, idx, axis);
        CHECKF(g != NULL, "%s", lmc_last_error());
        if (!g) continue;
        /* check every element of g directly */
        double *av = to_doubles(a), *gv = to_doubles(g);
        int64_t astr[LMC_MAX_DIMS];
        lmc_contiguous_strides(nd, shape, astr);
        lmc_index_iter it;
        const lmc_array *gi = g;
        lmc_index_init(&it, nd, g->shape, 1, &gi);
        int64_t k = 0;
        bool ok = true;
        if (g->size) do {
            int64_t j = ip[k];
            if (j < 0) j += n;
            int64_t off = 0;
            for (int d = 0; d < nd; d++) off += (d == axis ? j : it.idx[d]) * astr[d];
            if (gv[k] != av[off] && !(isnan(gv[k]) && isnan(av[off]))) ok = false;
            k++;
        } while (lmc_index_next(&it));
        CHECKF(ok, "take_along_axis %s %s axis %d", lmc_dtype_name(dt), VIEW_NAMES[view], axis);
        /* take with the flat first row of indices equals take_along of those indices broadcast */
        lmc_array *ones = lmc_ones(LMC_F32, nd, ishape);
        lmc_array *z = lmc_zeros(LMC_F32, nd, shape);
        lmc_array *cnt = lmc_scatter_add_along_axis(z, idx, ones, axis);
        double *cv = cnt ? to_doubles(cnt) : NULL;
        double total = 0;
        for (int64_t q = 0; cv && q < cnt->size; q++) total += cv[q];
        CHECKF(cv && total == (double)idx->size, "scatter_add count %g vs %lld", total, (long long)idx->size);
        free(cv);
        lmc_array *flat_idx = lmc_array_from_data(ip, LMC_I32, 1, &m);
        lmc_array *t = lmc_take(a, flat_idx, axis);
        CHECK(t != NULL && t->ndim == nd && t->shape[axis] == m);
        if (t && m) {
            double *tv = to_doubles(t);
            /* t[..., q, ...] = a[..., ip[q], ...] */
            lmc_array *tt = t;
            lmc_index_init(&it, nd, t->shape, 1, (const lmc_array *const *)&tt);
            k = 0;
            ok = true;
            do {
                int64_t j = ip[it.idx[axis]];
                if (j < 0) j += n;
                int64_t off = 0;
                for (int d = 0; d < nd; d++) off += (d == axis ? j : it.idx[d]) * astr[d];
                if (tv[k] != av[off] && !(isnan(tv[k]) && isnan(av[off]))) ok = false;
                k++;
            } while (lmc_index_next(&it));
            CHECKF(ok, "take %s %s axis %d", lmc_dtype_name(dt), VIEW_NAMES[view], axis);
            free(tv);
        }
        free(av);
        free(gv);
        lmc_array_free(t);
        lmc_array_free(flat_idx);
        lmc_array_free(cnt);
        lmc_array_free(z);
        lmc_array_free(ones);
        lmc_array_free(g);
        lmc_array_free(idx);
        lmc_array_free(a);
    }
}

int main(void) {
    RUN(test_take);
    RUN(test_along);
    RUN(test_random);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
