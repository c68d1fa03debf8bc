/* nn layers: Linear (float and quantised, with and without bias), Embedding
 * lookups (float and quantised) and the tied output head. */
#include <stdint.h>

#include "lmc/nn.h"
#include "lmc/ops.h"
#include "nn/linear_internal.h"
#include "test_util.h"

static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform values in [-1, 1) as f32 data (caller frees) and as an array of dt. */
static float *uniform(int64_t n, uint64_t seed) {
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((double)(rng_next(&seed) >> 11) / 4503599627370496.0 - 1.0);
    return v;
}

static lmc_array *array_of(const float *v, lmc_dtype dt, int ndim, const int64_t *shape) {
    lmc_array *f = lmc_array_from_data(v, LMC_F32, ndim, shape);
    if (dt == LMC_F32) return f;
    lmc_array *a = lmc_astype(f, dt);
    lmc_array_free(f);
    return a;
}

static float *read_f32(const lmc_array *a) {
    float *v = malloc(sizeof(float) * (size_t)lmc_array_size(a) + 1);
    CHECK(lmc_array_read(a, LMC_F32, v, (size_t)lmc_array_size(a)) == LMC_OK);
    return v;
}

static bool same_bits(const lmc_array *a, const lmc_array *b) {
    return a && b && lmc_array_dtype(a) == lmc_array_dtype(b) && lmc_array_size(a) == lmc_array_size(b) &&
           memcmp(lmc_array_data(a), lmc_array_data(b), lmc_array_nbytes(a)) == 0;
}

enum { K = 128, N = 24 };

/* y = x @ wᵀ (+ bias) in double, x [rows, K], w [N, K]. */
static void reference(const float *x, const float *w, const float *bias, int64_t rows, double *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < N; n++) {
            double acc = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)x[r * K + k] * w[n * K + k];
            y[r * N + n] = acc;
        }
}

static void test_linear_float(void) {
    int64_t wshape[2] = {N, K}, bshape[1] = {N}, xshape[3] = {2, 3, K};
    float *wv = uniform(N * K, 1), *bv = uniform(N, 2), *xv = uniform(6 * K, 3);
    lmc_array *w = array_of(wv, LMC_F32, 2, wshape), *b = array_of(bv, LMC_F32, 1, bshape);
    lmc_array *x = array_of(xv, LMC_F32, 3, xshape);
    double ref[6 * N], refb[6 * N];
    reference(xv, wv, NULL, 6, ref);
    reference(xv, wv, bv, 6, refb);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        lmc_linear *l = lmc_linear_new(w, with_bias ? b : NULL);
        CHECK(l && lmc_linear_in_features(l) == K && lmc_linear_out_features(l) == N && lmc_linear_bits(l) == 0);
        lmc_array *y = lmc_linear_forward(l, x);
        CHECKF(y && lmc_array_ndim(y) == 3 && lmc_array_dim(y, 2) == N, "%s", lmc_last_error());
        if (y) {
            float *yv = read_f32(y);
            for (int i = 0; i < 6 * N; i++) CHECK_CLOSE(yv[i], with_bias ? refb[i] : ref[i], 1e-5, 1e-5);
            free(yv);
        }
        lmc_array_free(y);
        lmc_linear_free(l);
    }
    /* wrong shapes are errors naming them */
    int64_t badshape[1] = {N + 1};
    float *bv2 = uniform(N + 1, 12);
    lmc_array *bad = array_of(bv2, LMC_F32, 1, badshape);
    CHECK(lmc_linear_new(w, bad) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[25]"), "%s", lmc_last_error());
    lmc_array_free(bad);
    free(bv2);
    CHECK(lmc_linear_new(b, NULL) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_linear *l = lmc_linear_new(w, b);
    int64_t x2shape[2] = {3, K - 32};
    lmc_array *x2 = array_of(xv, LMC_F32, 2, x2shape);
    CHECK(lmc_linear_forward(l, x2) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[3, 96]") && strstr(lmc_last_error(), "128"), "%s", lmc_last_error());
    lmc_array_free(x2);
    lmc_linear_free(l);
    free(wv);
    free(bv);
    free(xv);
    lmc_array_free(w);
    lmc_array_free(b);
    lmc_array_free(x);
}

/* A quantised Linear is quantized_matmul (+ bias): the same bits, and close
 * to the float Linear of its dequantised weights. */
static void test_linear_quantized(void) {
    int64_t wshape[2] = {N, K}, bshape[1] = {N}, xshape[2] = {5, K};
    float *wv = uniform(N * K, 4), *bv = uniform(N, 5), *xv = uniform(5 * K, 6);
    lmc_array *w = array_of(wv, LMC_BF16, 2, wshape), *b = array_of(bv, LMC_F32, 1, bshape);
    lmc_array *x = array_of(xv, LMC_F32, 2, xshape);
    const int bits_list[2] = {4, 8};
    for (int i = 0; i < 2; i++) {
        int bits = bits_list[i];
        lmc_linear *fl = lmc_linear_new(w, b);
        lmc_linear *ql = lmc_linear_quantize(fl, 64, bits);
        CHECKF(ql && lmc_linear_bits(ql) == bits && lmc_linear_group_size(ql) == 64 && lmc_linear_in_features(ql) == K,
               "%s", lmc_last_error());
        if (!ql) continue;
        lmc_array *y = lmc_linear_forward(ql, x);
        lmc_array *mm = lmc_quantized_matmul(x, lmc_linear_weight(ql), lmc_linear_scales(ql), lmc_linear_biases(ql), 64, bits);
        lmc_array *manual = lmc_add(mm, b);
        CHECK(same_bits(y, manual));
        /* against the dequantised weights in double */
        lmc_array *dq = lmc_dequantize(lmc_linear_weight(ql), lmc_linear_scales(ql), lmc_linear_biases(ql), 64, bits);
        float *dv = read_f32(dq), *yv = read_f32(y);
        double ref[5 * N];
        reference(xv, dv, bv, 5, ref);
        /* dequantize rounds q*s and +b to bf16 (2^-9 each), quantized_matmul does not */
        for (int j = 0; j < 5 * N; j++) {
            double mag = 0;
            for (int k = 0; k < K; k++) mag += fabs((double)xv[(j / N) * K + k] * dv[(j % N) * K + k]);
            CHECK_CLOSE(yv[j], ref[j], mag / 128, 0);
        }
        /* built from the parts directly, without a bias */
        lmc_linear *q2 = lmc_linear_new_quantized(lmc_linear_weight(ql), lmc_linear_scales(ql), lmc_linear_biases(ql),
                                                  NULL, 64, bits);
        lmc_array *y2 = lmc_linear_forward(q2, x);
        CHECK(same_bits(y2, mm));
        /* a mismatched group size is an error naming the shapes */
        CHECK(lmc_linear_new_quantized(lmc_linear_weight(ql), lmc_linear_scales(ql), lmc_linear_biases(ql), NULL, 32,
                                       bits) == NULL &&
              lmc_last_status() == LMC_ERR_SHAPE);
        free(dv);
        free(yv);
        lmc_array *list[] = {y, mm, manual, dq, y2};
        for (size_t j = 0; j < 5; j++) lmc_array_free(list[j]);
        lmc_linear_free(q2);
        lmc_linear_free(ql);
        lmc_linear_free(fl);
    }
    CHECK(lmc_linear_new_quantized(w, w, w, NULL, 64, 4) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    free(wv);
    free(bv);
    free(xv);
    lmc_array_free(w);
    lmc_array_free(b);
    lmc_array_free(x);
}

/* lmc_linear_forward_many: each output bit for bit the layer's own forward,
 * for quantised layers (batched, with and without bias, 4 and 8 bits) and a
 * float one in the same call; a layer of another width is an error. */
static void test_linear_many(void) {
    int64_t wshape[2] = {N, K}, bshape[1] = {N}, xshape[2] = {3, K};
    float *wv = uniform(N * K, 14), *bv = uniform(N, 15), *xv = uniform(3 * K, 16);
    lmc_array *w = array_of(wv, LMC_BF16, 2, wshape), *b = array_of(bv, LMC_F32, 1, bshape);
    lmc_array *x = array_of(xv, LMC_F32, 2, xshape);
    lmc_linear *fl = lmc_linear_new(w, b), *plain = lmc_linear_new(w, NULL);
    lmc_linear *layers[4] = {lmc_linear_quantize(fl, 64, 4), lmc_linear_quantize(plain, 32, 4), fl,
                             lmc_linear_quantize(fl, 64, 8)};
    lmc_array *y[4];
    CHECKF(lmc_linear_forward_many(4, layers, x, NULL, y) == LMC_OK, "%s", lmc_last_error());
    for (int i = 0; i < 4; i++) {
        lmc_array *one = lmc_linear_forward(layers[i], x);
        CHECKF(same_bits(one, y[i]), "layer %d differs from its own forward", i);
        lmc_array_free(one);
        lmc_array_free(y[i]);
    }
    int64_t wshape2[2] = {N, 2 * K};
    float *wv2 = uniform(N * 2 * K, 17);
    lmc_array *w2 = array_of(wv2, LMC_BF16, 2, wshape2);
    lmc_linear *wide = lmc_linear_new(w2, NULL);
    lmc_linear *bad[2] = {layers[0], wide};
    CHECK(lmc_linear_forward_many(2, bad, x, NULL, y) == LMC_ERR_SHAPE && y[0] == NULL && y[1] == NULL);
    lmc_linear_free(wide);
    lmc_linear_free(layers[0]);
    lmc_linear_free(layers[1]);
    lmc_linear_free(layers[3]);
    lmc_linear_free(fl);
    lmc_linear_free(plain);
    free(wv);
    free(bv);
    free(xv);
    free(wv2);
    lmc_array *list[] = {w, b, x, w2};
    for (size_t i = 0; i < 4; i++) lmc_array_free(list[i]);
}

static void test_embedding(void) {
    enum { V = 50, D = 64 };
    int64_t tshape[2] = {V, D}, ishape[2] = {2, 3};
    float *tv = uniform(V * D, 7);
    lmc_array *t = array_of(tv, LMC_BF16, 2, tshape);
    lmc_linear *e = lmc_linear_new(t, NULL);
    const int32_t idv[6] = {0, 49, 7, 7, 13, 1};
    lmc_array *ids = lmc_array_from_data(idv, LMC_I32, 2, ishape);
    lmc_array *rows = lmc_embedding_lookup(e, ids);
    CHECKF(rows && lmc_array_ndim(rows) == 3 && lmc_array_dim(rows, 0) == 2 && lmc_array_dim(rows, 2) == D &&
               lmc_array_dtype(rows) == LMC_BF16,
           "%s", lmc_last_error());
    if (rows) {
        const uint16_t *r = lmc_array_data(rows), *tab = lmc_array_data(t);
        for (int i = 0; i < 6; i++) CHECK(memcmp(r + i * D, tab + idv[i] * D, D * 2) == 0);
    }
    /* out-of-range ids name the id */
    const int32_t badv[3] = {3, 50, 1};
    int64_t bshape[1] = {3};
    lmc_array *bad = lmc_array_from_data(badv, LMC_I32, 1, bshape);
    CHECK(lmc_embedding_lookup(e, bad) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "id 50") && strstr(lmc_last_error(), "50 rows"), "%s", lmc_last_error());
    const int32_t negv[1] = {-1};
    int64_t nshape[1] = {1};
    lmc_array *neg = lmc_array_from_data(negv, LMC_I32, 1, nshape);
    CHECK(lmc_embedding_lookup(e, neg) == NULL && strstr(lmc_last_error(), "id -1"));
    lmc_array *fids = lmc_astype(ids, LMC_F32);
    CHECK(lmc_embedding_lookup(e, fids) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array *list[] = {t, ids, rows, bad, neg, fids};
    for (size_t i = 0; i < 6; i++) lmc_array_free(list[i]);
    lmc_linear_free(e);
    free(tv);
}

/* Quantised embedding: rows equal the dequantised table's rows, only the rows
 * read are dequantised, and the same table is the tied output head. */
static void test_embedding_quantized(void) {
    enum { V = 4096, D = 256 };
    int64_t tshape[2] = {V, D};
    float *tv = uniform(V * D, 8);
    lmc_array *t = array_of(tv, LMC_BF16, 2, tshape);
    lmc_linear *fe = lmc_linear_new(t, NULL);
    lmc_linear *e = lmc_linear_quantize(fe, 64, 4);
    lmc_linear_free(fe);
    lmc_array_free(t);
    free(tv);
    CHECK(e != NULL);
    if (!e) return;
    /* The reference rows: the whole table dequantised in f32 (scale·q + bias, one rounding). */
    lmc_array *s32 = lmc_astype(lmc_linear_scales(e), LMC_F32), *b32 = lmc_astype(lmc_linear_biases(e), LMC_F32);
    lmc_array *full = lmc_dequantize(lmc_linear_weight(e), s32, b32, 64, 4);
    lmc_array_free(s32);
    lmc_array_free(b32);
    const int64_t idv[4] = {4095, 0, 1234, 1234};
    int64_t ishape[1] = {4};
    lmc_array *ids = lmc_array_from_data(idv, LMC_I64, 1, ishape);
    lmc_memory_reset_peak(LMC_CPU);
    size_t before = lmc_memory(LMC_CPU).active_bytes;
    lmc_array *rows = lmc_embedding_lookup(e, ids);
    size_t grew = lmc_memory(LMC_CPU).peak_bytes - before;
    CHECKF(rows && lmc_array_dim(rows, 0) == 4 && lmc_array_dim(rows, 1) == D && lmc_array_dtype(rows) == LMC_F32,
           "%s", lmc_last_error());
    /* the full dequantised table is 2 MiB; four rows and their parts are a few KiB */
    CHECKF(grew < 64 * 1024, "lookup took %zu bytes at its peak", grew);
    if (rows && full) {
        const float *r = lmc_array_data(rows), *f = lmc_array_data(full);
        for (int i = 0; i < 4; i++) CHECK(memcmp(r + i * D, f + idv[i] * D, D * sizeof(float)) == 0);
    }
    /* tied head: logits = h @ Eᵀ through the quantised matmul */
    int64_t hshape[3] = {1, 2, D};
    float *hv = uniform(2 * D, 9);
    lmc_array *h = array_of(hv, LMC_F32, 3, hshape);
    lmc_array *logits = lmc_linear_forward(e, h);
    lmc_array *mm = lmc_quantized_matmul(h, lmc_linear_weight(e), lmc_linear_scales(e), lmc_linear_biases(e), 64, 4);
    CHECK(logits && lmc_array_ndim(logits) == 3 && lmc_array_dim(logits, 2) == V);
    CHECK(same_bits(logits, mm));
    /* and close to h @ dequantised(E)ᵀ */
    if (logits && full) {
        float *lv = read_f32(logits), *fv = read_f32(full);
        for (int64_t n = 0; n < V; n += 97) {
            double acc = 0;
            for (int k = 0; k < D; k++) acc += (double)hv[D + k] * fv[n * D + k];
            CHECK_CLOSE(lv[V + n], acc, 2e-2, 1e-2);
        }
        free(lv);
        free(fv);
    }
    free(hv);
    lmc_array *list[] = {full, ids, rows, h, logits, mm};
    for (size_t i = 0; i < 6; i++) lmc_array_free(list[i]);
    lmc_linear_free(e);
}

/* Layers keep their arrays alive past the scope that made them. */
static void test_scopes(void) {
    int64_t wshape[2] = {N, K}, xshape[2] = {1, K};
    float *wv = uniform(N * K, 10), *xv = uniform(K, 11);
    lmc_scope_begin();
    lmc_scope_begin();
    lmc_array *w = array_of(wv, LMC_F32, 2, wshape);
    lmc_array *wt = lmc_transpose(w), *wtt = lmc_transpose(wt); /* a non-contiguous view: the layer copies it */
    lmc_linear *a = lmc_linear_new(wtt, NULL);
    lmc_linear *q = lmc_linear_quantize(a, 32, 4);
    lmc_scope_end();
    lmc_scope_end();
    lmc_array *x = array_of(xv, LMC_F32, 2, xshape);
    lmc_array *y = lmc_linear_forward(a, x), *yq = lmc_linear_forward(q, x);
    CHECK(y && yq);
    double ref[N];
    reference(xv, wv, NULL, 1, ref);
    if (y) {
        float *yv = read_f32(y);
        for (int i = 0; i < N; i++) CHECK_CLOSE(yv[i], ref[i], 1e-5, 1e-5);
        free(yv);
    }
    lmc_array_free(x);
    lmc_array_free(y);
    lmc_array_free(yq);
    lmc_linear_free(a);
    lmc_linear_free(q);
    free(wv);
    free(xv);
}

int main(void) {
    RUN(test_linear_float);
    RUN(test_linear_quantized);
    RUN(test_linear_many);
    RUN(test_embedding);
    RUN(test_embedding_quantized);
    RUN(test_scopes);
    CHECKF(lmc_live_arrays() == 0, "%lld arrays leaked", (long long)lmc_live_arrays());
    return TEST_REPORT();
}
