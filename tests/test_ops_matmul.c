/* lmc_matmul: hand-checked products, NumPy 1-d promotion, broadcasting,
 * transposed and sliced operands, mixed dtypes, and every kernel path
 * against the scalar oracle (double accumulation).
 *
 * Tolerances: f32 outputs |got - ref| <= 1e-5 * K + 1e-5 * |ref| (f32
 * accumulation over K terms of size <= 1); f16/bf16 outputs 1e-2 absolute
 * + 1e-2 relative (one rounding of the output in either order). */
#include <stdint.h>

#include "backend/cpu/cpu_kernels.h"
#include "core/array.h"
#include "core/scratch.h"
#include "lmc/ops.h"
#include "test_util.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A contiguous array of uniform values in [-1, 1), rounded to dt. */
static lmc_array *rnd(lmc_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = frand();
    lmc_array *f = lmc_array_from_data(v, LMC_F32, ndim, shape);
    lmc_array *a = lmc_array_new(dt, ndim, shape, LMC_CPU);
    lmc_convert(lmc_array_ptr(a), dt, lmc_array_ptr(f), LMC_F32, (size_t)n);
    lmc_array_free(f);
    free(v);
    return a;
}

/* A view with axes i and j swapped (no copy). */
static lmc_array *swapped(const lmc_array *a, int i, int j) {
    int64_t sh[LMC_MAX_DIMS], st[LMC_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        sh[d] = a->shape[d];
        st[d] = a->strides[d];
    }
    sh[i] = a->shape[j], sh[j] = a->shape[i];
    st[i] = a->strides[j], st[j] = a->strides[i];
    return lmc_array_view(a->buf, a->offset, a->dtype, a->ndim, sh, st);
}

/* The transpose of the last two axes of a fresh contiguous [..., n, m] array: a
 * [..., m, n] view with strides (1, m) on the last two axes. */
static lmc_array *rnd_t(lmc_dtype dt, int ndim, const int64_t *shape) {
    int64_t sh[LMC_MAX_DIMS];
    for (int d = 0; d < ndim; d++) sh[d] = shape[d];
    sh[ndim - 1] = shape[ndim - 2];
    sh[ndim - 2] = shape[ndim - 1];
    lmc_array *c = rnd(dt, ndim, sh);
    lmc_array *v = swapped(c, ndim - 2, ndim - 1);
    lmc_array_free(c);
    return v;
}

static float *read_f32(const lmc_array *a) {
    float *v = malloc((size_t)(a->size ? a->size : 1) * sizeof(float));
    CHECK(lmc_array_read(a, LMC_F32, v, (size_t)a->size) == LMC_OK);
    return v;
}

/* got vs ref elementwise; returns the number of mismatches (first few printed). */
static int compare(const lmc_array *got, const lmc_array *ref, double atol, double rtol, const char *what) {
    CHECKF(got && ref, "%s: %s", what, lmc_last_error());
    if (!got || !ref) return 1;
    CHECKF(got->ndim == ref->ndim && got->size == ref->size && got->dtype == ref->dtype, "%s: shape/dtype differ", what);
    float *g = read_f32(got), *r = read_f32(ref);
    int bad = 0;
    for (int64_t i = 0; i < ref->size; i++) {
        if (fabs((double)g[i] - r[i]) > atol + rtol * fabs(r[i])) {
            if (bad < 3) fprintf(stderr, "%s: element %lld: got %.8g, want %.8g\n", what, (long long)i, g[i], r[i]);
            bad++;
        }
    }
    CHECKF(bad == 0, "%s: %d of %lld elements differ", what, bad, (long long)ref->size);
    free(g);
    free(r);
    return bad;
}

static lmc_array *matmul_on(lmc_cpu_path p, const lmc_array *a, const lmc_array *b) {
    lmc_cpu_path_set(p);
    lmc_array *r = lmc_matmul(a, b);
    lmc_cpu_path_set(lmc_cpu_path_max());
    return r;
}

/* Every path against the scalar oracle. */
static void check_paths(const lmc_array *a, const lmc_array *b, const char *what) {
    lmc_array *ref = matmul_on(LMC_PATH_SCALAR, a, b);
    CHECKF(ref != NULL, "%s: %s", what, lmc_last_error());
    if (!ref) return;
    int64_t K = a->shape[a->ndim - 1];
    bool low = ref->dtype != LMC_F32;
    for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) {
        char buf[200];
        snprintf(buf, sizeof buf, "%s [%s]", what, lmc_cpu_path_name((lmc_cpu_path)p));
        lmc_array *got = matmul_on((lmc_cpu_path)p, a, b);
        compare(got, ref, low ? 1e-2 : 1e-5 * (double)K, low ? 1e-2 : 1e-5, buf);
        lmc_array_free(got);
    }
    lmc_array_free(ref);
}

static void test_hand_2x2(void) {
    float av[] = {1, 2, 3, 4}, bv[] = {5, 6, 7, 8}, want[] = {19, 22, 43, 50};
    int64_t s[2] = {2, 2};
    lmc_array *a = lmc_array_from_data(av, LMC_F32, 2, s), *b = lmc_array_from_data(bv, LMC_F32, 2, s);
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_array *c = matmul_on((lmc_cpu_path)p, a, b);
        CHECK(c && c->ndim == 2 && c->shape[0] == 2 && c->shape[1] == 2);
        float *g = read_f32(c);
        for (int i = 0; i < 4; i++) CHECK_CLOSE(g[i], want[i], 0, 0);
        free(g);
        /* aᵀ @ b through a transposed view: [[1,3],[2,4]] @ b = [[26,30],[38,44]] */
        lmc_array *at = swapped(a, 0, 1);
        lmc_array *d = matmul_on((lmc_cpu_path)p, at, b);
        g = read_f32(d);
        float want_t[] = {26, 30, 38, 44};
        for (int i = 0; i < 4; i++) CHECK_CLOSE(g[i], want_t[i], 0, 0);
        free(g);
        lmc_array_free(at);
        lmc_array_free(c);
        lmc_array_free(d);
    }
    lmc_array_free(a);
    lmc_array_free(b);
}

static void test_promotion_1d(void) {
    int64_t sk[1] = {3}, skn[2] = {3, 2}, smk[2] = {2, 3};
    float kv[] = {1, 2, 3}, knv[] = {1, 2, 3, 4, 5, 6};
    lmc_array *v = lmc_array_from_data(kv, LMC_F32, 1, sk);
    lmc_array *m = lmc_array_from_data(knv, LMC_F32, 2, skn);
    lmc_array *mt = lmc_array_from_data(knv, LMC_F32, 2, smk);
    lmc_array *r1 = lmc_matmul(v, m); /* [3] @ [3,2] -> [2] = [22, 28] */
    CHECK(r1 && r1->ndim == 1 && r1->shape[0] == 2);
    float *g = read_f32(r1);
    CHECK_CLOSE(g[0], 22, 0, 0);
    CHECK_CLOSE(g[1], 28, 0, 0);
    free(g);
    lmc_array *r2 = lmc_matmul(mt, v); /* [2,3] @ [3] -> [2] = [14, 32] */
    CHECK(r2 && r2->ndim == 1 && r2->shape[0] == 2);
    g = read_f32(r2);
    CHECK_CLOSE(g[0], 14, 0, 0);
    CHECK_CLOSE(g[1], 32, 0, 0);
    free(g);
    lmc_array *r3 = lmc_matmul(v, v); /* dot: 0-d, 14 */
    double d = 0;
    CHECK(r3 && r3->ndim == 0 && lmc_array_item(r3, &d) == LMC_OK && d == 14.0);
    /* batched @ 1-d: [2,2,3] @ [3] -> [2,2] */
    int64_t sb[3] = {2, 2, 3};
    lmc_array *bt = rnd(LMC_F32, 3, sb);
    lmc_array *r4 = lmc_matmul(bt, v);
    CHECK(r4 && r4->ndim == 2 && r4->shape[0] == 2 && r4->shape[1] == 2);
    check_paths(bt, v, "batched @ 1-d");
    int64_t sb2[3] = {2, 3, 4};
    lmc_array *bt2 = rnd(LMC_F32, 3, sb2);
    lmc_array *r5 = lmc_matmul(v, bt2); /* [3] @ [2,3,4] -> [2,4] */
    CHECK(r5 && r5->ndim == 2 && r5->shape[0] == 2 && r5->shape[1] == 4);
    check_paths(v, bt2, "1-d @ batched");
    lmc_array *arr[] = {v, m, mt, r1, r2, r3, bt, r4, bt2, r5};
    for (int i = 0; i < 10; i++) lmc_array_free(arr[i]);
}

static void test_errors(void) {
    int64_t s23[2] = {2, 3}, s45[2] = {4, 5};
    lmc_array *a = rnd(LMC_F32, 2, s23), *b = rnd(LMC_F32, 2, s45);
    CHECK(lmc_matmul(a, b) == NULL);
    CHECK(lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[2, 3]") && strstr(lmc_last_error(), "[4, 5]"), "%s", lmc_last_error());
    int64_t s3[1] = {3};
    lmc_array *i = lmc_array_new(LMC_I32, 1, s3, LMC_CPU);
    memset(lmc_array_ptr(i), 0, 12);
    CHECK(lmc_matmul(a, i) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_matmul(NULL, b) == NULL);
    /* batch dims that do not broadcast */
    int64_t sa[3] = {2, 2, 3}, sb[3] = {3, 3, 2};
    lmc_array *ba = rnd(LMC_F32, 3, sa), *bb = rnd(LMC_F32, 3, sb);
    CHECK(lmc_matmul(ba, bb) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array *arr[] = {a, b, i, ba, bb};
    for (int k = 0; k < 5; k++) lmc_array_free(arr[k]);
}

static void test_k_zero(void) {
    int64_t sa[2] = {3, 0}, sb[2] = {0, 4};
    lmc_array *a = lmc_array_new(LMC_F32, 2, sa, LMC_CPU), *b = lmc_array_new(LMC_F32, 2, sb, LMC_CPU);
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_array *c = matmul_on((lmc_cpu_path)p, a, b);
        CHECK(c && c->shape[0] == 3 && c->shape[1] == 4);
        float *g = read_f32(c);
        for (int i = 0; i < 12; i++) CHECK(g[i] == 0.0f);
        free(g);
        lmc_array_free(c);
    }
    lmc_array_free(a);
    lmc_array_free(b);
}

/* Random shapes, layouts and dtypes on every path. */
static void test_random_paths(void) {
    static const int64_t Ms[] = {1, 2, 3, 5, 16, 40}, Ks[] = {1, 7, 64, 300}, Ns[] = {1, 5, 33, 100};
    static const lmc_dtype dts[][2] = {{LMC_F32, LMC_F32}, {LMC_F32, LMC_BF16}, {LMC_F32, LMC_F16},
                                       {LMC_BF16, LMC_BF16}, {LMC_F16, LMC_F16}, {LMC_BF16, LMC_F32}};
    int n = 0;
    for (size_t mi = 0; mi < 6; mi++)
        for (size_t ki = 0; ki < 4; ki++)
            for (size_t ni = 0; ni < 4; ni++) {
                n++;
                const lmc_dtype *dt = dts[n % 6];
                int64_t M = Ms[mi], K = Ks[ki], N = Ns[ni];
                int64_t sa[2] = {M, K}, sb[2] = {K, N};
                lmc_array *a = rnd(dt[0], 2, sa);
                /* alternate: row-major b, the Linear layout Wᵀ, a transposed a */
                lmc_array *b = n % 3 == 1 ? rnd_t(dt[1], 2, sb) : rnd(dt[1], 2, sb);
                if (n % 3 == 2) {
                    lmc_array_free(a);
                    a = rnd_t(dt[0], 2, sa);
                }
                char what[128];
                snprintf(what, sizeof what, "%s[%lld,%lld] @ %s[%lld,%lld] layout %d", lmc_dtype_name(dt[0]), (long long)M,
                         (long long)K, lmc_dtype_name(dt[1]), (long long)K, (long long)N, n % 3);
                check_paths(a, b, what);
                lmc_array_free(a);
                lmc_array_free(b);
            }
}

/* The nn.Linear case in every dtype: x f32 [M, K] @ W[N, K]ᵀ. */
static void test_linear_mixed(void) {
    static const lmc_dtype wdts[] = {LMC_F32, LMC_BF16, LMC_F16};
    static const int64_t Ms[] = {1, 4, 7, 20, 64};
    for (int w = 0; w < 3; w++)
        for (int m = 0; m < 5; m++) {
            int64_t sx[2] = {Ms[m], 200}, sw[2] = {200, 130};
            lmc_array *x = rnd(LMC_F32, 2, sx), *wt = rnd_t(wdts[w], 2, sw);
            char what[96];
            snprintf(what, sizeof what, "linear f32 x %s M=%lld", lmc_dtype_name(wdts[w]), (long long)Ms[m]);
            check_paths(x, wt, what);
            lmc_array *y = lmc_matmul(x, wt);
            CHECK(y && y->dtype == LMC_F32);
            lmc_array_free(y);
            lmc_array_free(x);
            lmc_array_free(wt);
        }
}

/* bf16 @ bf16 at AMX sizes (M >= 32), both layouts, and batched. */
static void test_bf16_large(void) {
    int64_t sx[2] = {70, 100}, sw[2] = {100, 45};
    lmc_array *x = rnd(LMC_BF16, 2, sx), *w = rnd(LMC_BF16, 2, sw), *wt = rnd_t(LMC_BF16, 2, sw);
    check_paths(x, w, "bf16 70x100 @ 100x45");
    check_paths(x, wt, "bf16 70x100 @ (45x100)^T");
    int64_t s3[3] = {3, 40, 64}, sw2[2] = {64, 48};
    lmc_array *x3 = rnd(LMC_BF16, 3, s3), *w2 = rnd_t(LMC_BF16, 2, sw2);
    check_paths(x3, w2, "bf16 [3,40,64] @ W^T (batch folded)");
    lmc_array *arr[] = {x, w, wt, x3, w2};
    for (int i = 0; i < 5; i++) lmc_array_free(arr[i]);
}

/* Batch broadcasting, sliced (non-contiguous) and broadcast operands. */
static void test_batched_views(void) {
    int64_t sa[4] = {2, 3, 9, 20}, sb[3] = {3, 20, 7};
    lmc_array *a = rnd(LMC_F32, 4, sa), *b = rnd(LMC_BF16, 3, sb);
    check_paths(a, b, "[2,3,9,20] @ [3,20,7]");
    int64_t sa2[2] = {9, 20}, sb2[3] = {4, 20, 18};
    lmc_array *a2 = rnd(LMC_F32, 2, sa2), *b2 = rnd(LMC_F32, 3, sb2);
    check_paths(a2, b2, "[9,20] @ [4,20,18]");
    /* a with every other column (stride 2 in K), b a size-1 batch broadcast */
    int64_t sw[2] = {18, 40};
    lmc_array *wide = rnd(LMC_F32, 2, sw);
    int64_t sh[2] = {18, 20}, st[2] = {40, 2};
    lmc_array *sl = lmc_array_view(wide->buf, wide->offset, LMC_F32, 2, sh, st);
    int64_t sb3[3] = {1, 20, 33};
    lmc_array *b3 = rnd_t(LMC_F16, 3, sb3);
    check_paths(sl, b3, "sliced [18,20] @ [1,20,33]^T f16");
    /* a broadcast along M (stride 0 rows): every row equal */
    int64_t sbm[2] = {17, 20}, stb[2] = {0, 1};
    lmc_array *bm = lmc_array_view(wide->buf, wide->offset, LMC_F32, 2, sbm, stb);
    check_paths(bm, b2, "stride-0 rows @ batched");
    /* b with no unit stride at all (every other row and column), at decode and prefill sizes */
    int64_t sbig[2] = {40, 40}, sbs[2] = {20, 20}, stbs[2] = {80, 2}, sa3[2] = {3, 20}, sa4[2] = {33, 20};
    lmc_array *big = rnd(LMC_BF16, 2, sbig);
    lmc_array *bs = lmc_array_view(big->buf, big->offset, LMC_BF16, 2, sbs, stbs);
    lmc_array *a3 = rnd(LMC_F32, 2, sa3), *a4 = rnd(LMC_BF16, 2, sa4);
    check_paths(a3, bs, "[3,20] @ doubly strided bf16 [20,20]");
    check_paths(a4, bs, "bf16 [33,20] @ doubly strided bf16 [20,20]");
    lmc_array *arr[] = {a, b, a2, b2, wide, sl, b3, bm, big, bs, a3, a4};
    for (int i = 0; i < 12; i++) lmc_array_free(arr[i]);
}

/* The small-M GEMV and the AMX path at every M around their block sizes
 * (the GEMV's 4-row groups, the 16-row tiles, the 64-row GEMV limit), odd K
 * and N, B in f32/bf16/f16 in the Linear layout and row-major, and strided
 * activations (every other column, transposed). */
static void test_small_m(void) {
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 8, 15, 16, 17, 33, 64, 65, 130};
    static const lmc_dtype bdts[] = {LMC_BF16, LMC_F32, LMC_F16};
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (int d = 0; d < 3; d++) {
            int64_t M = Ms[mi], K = 67 + 30 * d, N = 45 - 8 * d;
            int64_t sx[2] = {M, K}, sw[2] = {K, N}, swide[2] = {M, 2 * K};
            lmc_array *x = rnd(LMC_F32, 2, sx), *wt = rnd_t(bdts[d], 2, sw), *w = rnd(bdts[d], 2, sw);
            /* every other column of a wider array: K stride 2 */
            lmc_array *wide = rnd(LMC_F32, 2, swide);
            int64_t st[2] = {2 * K, 2};
            lmc_array *xs = lmc_array_view(wide->buf, wide->offset, LMC_F32, 2, sx, st);
            lmc_array *xt = rnd_t(LMC_F32, 2, sx);
            char what[128];
            snprintf(what, sizeof what, "f32 [%lld,%lld] @ %s W^T", (long long)M, (long long)K, lmc_dtype_name(bdts[d]));
            check_paths(x, wt, what);
            snprintf(what, sizeof what, "f32 [%lld,%lld] @ %s row-major", (long long)M, (long long)K, lmc_dtype_name(bdts[d]));
            check_paths(x, w, what);
            snprintf(what, sizeof what, "K-strided f32 [%lld,%lld] @ %s W^T", (long long)M, (long long)K,
                     lmc_dtype_name(bdts[d]));
            check_paths(xs, wt, what);
            snprintf(what, sizeof what, "transposed f32 [%lld,%lld] @ %s W^T", (long long)M, (long long)K,
                     lmc_dtype_name(bdts[d]));
            check_paths(xt, wt, what);
            if (bdts[d] == LMC_BF16) {
                lmc_array *xb = rnd(LMC_BF16, 2, sx);
                snprintf(what, sizeof what, "bf16 [%lld,%lld] @ bf16 W^T", (long long)M, (long long)K);
                check_paths(xb, wt, what);
                lmc_array_free(xb);
            }
            lmc_array *arr[] = {x, wt, w, wide, xs, xt};
            for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
        }
    /* K over several AMX k blocks (512) and N over several tasks (128 rows),
     * with ragged edges; an f16 output. */
    int64_t sx[2] = {33, 1100}, sw[2] = {1100, 150}, sx2[2] = {130, 600}, sw2[2] = {600, 37};
    lmc_array *x = rnd(LMC_F32, 2, sx), *wt = rnd_t(LMC_BF16, 2, sw);
    lmc_array *x2 = rnd(LMC_F16, 2, sx2), *wt2 = rnd_t(LMC_BF16, 2, sw2);
    check_paths(x, wt, "f32 [33,1100] @ bf16 [150,1100]^T");
    check_paths(x2, wt2, "f16 [130,600] @ bf16 [37,600]^T");
    lmc_array *arr[] = {x, wt, x2, wt2};
    for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
}

/* inf and NaN activations give inf and NaN on every path (the AMX split keeps them). */
static void test_nonfinite(void) {
    int64_t sx[2] = {8, 40}, sw[2] = {40, 20};
    lmc_array *x = rnd(LMC_F32, 2, sx), *wt = rnd_t(LMC_BF16, 2, sw);
    float *xv = lmc_array_ptr(x);
    uint16_t *wv = lmc_array_ptr(wt);
    for (int64_t i = 0; i < 40 * 20; i++) wv[i] = lmc_f32_to_bf16(0.5f); /* all weights positive */
    xv[0 * 40 + 3] = INFINITY;
    uint32_t snan = 0x7f800001u; /* a NaN with its payload in the low bits only */
    memcpy(&xv[2 * 40 + 5], &snan, 4);
    xv[5 * 40 + 7] = -INFINITY;
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_array *y = matmul_on((lmc_cpu_path)p, x, wt);
        float *g = read_f32(y);
        int bad = 0;
        for (int n = 0; n < 20; n++)
            bad += !(g[0 * 20 + n] == INFINITY) + !isnan(g[2 * 20 + n]) + !(g[5 * 20 + n] == -INFINITY) +
                   !isfinite(g[1 * 20 + n]);
        CHECKF(bad == 0, "non-finite activations [%s]: %d wrong outputs", lmc_cpu_path_name((lmc_cpu_path)p), bad);
        free(g);
        lmc_array_free(y);
    }
    lmc_array_free(x);
    lmc_array_free(wt);
}

/* The same result, bit for bit, on 1 and 2 threads. */
static void test_thread_determinism(void) {
    int64_t sx[2] = {37, 300}, sw[2] = {300, 150}, sd[2] = {1, 300};
    lmc_array *x = rnd(LMC_F32, 2, sx), *w = rnd_t(LMC_BF16, 2, sw), *d = rnd(LMC_F32, 2, sd);
    int before = lmc_num_threads();
    lmc_set_num_threads(1);
    lmc_array *a1 = lmc_matmul(x, w), *g1 = lmc_matmul(d, w);
    lmc_set_num_threads(2);
    lmc_array *a2 = lmc_matmul(x, w), *g2 = lmc_matmul(d, w);
    lmc_set_num_threads(before);
    compare(a2, a1, 0, 0, "gemm 2 threads vs 1");
    compare(g2, g1, 0, 0, "gemv 2 threads vs 1");
    lmc_array *arr[] = {x, w, d, a1, g1, a2, g2};
    for (int i = 0; i < 7; i++) lmc_array_free(arr[i]);
}

/* The blocked GEMM with several n-tiles (N > 256), where a thread keeps its
 * m-block of A packed across them: m-blocks of several m-tiles (two
 * threads split M when there are few n-tiles), batches that cannot be
 * folded, both layouts of b, on one and two threads, against the scalar
 * oracle. */
static void test_gemm_tiles(void) {
    int64_t sa[3] = {3, 80, 300}, sb[3] = {3, 300, 600}, sx[2] = {130, 200}, sw[2] = {200, 700}, sw2[2] = {200, 300};
    lmc_array *a = rnd(LMC_F32, 3, sa), *b = rnd(LMC_BF16, 3, sb), *x = rnd(LMC_F32, 2, sx);
    lmc_array *wt = rnd_t(LMC_BF16, 2, sw), *w2 = rnd(LMC_F16, 2, sw2);
    int before = lmc_num_threads();
    for (int t = 1; t <= 2; t++) {
        lmc_set_num_threads(t);
        check_paths(a, b, t == 1 ? "[3,80,300] @ [3,300,600] bf16, 1 thread" : "[3,80,300] @ [3,300,600] bf16, 2 threads");
        check_paths(x, wt, t == 1 ? "[130,200] @ (700x200)^T bf16, 1 thread" : "[130,200] @ (700x200)^T bf16, 2 threads");
        check_paths(x, w2, t == 1 ? "[130,200] @ [200,300] f16, 1 thread" : "[130,200] @ [200,300] f16, 2 threads");
    }
    lmc_set_num_threads(before);
    lmc_array *arr[] = {a, b, x, wt, w2};
    for (int i = 0; i < 5; i++) lmc_array_free(arr[i]);
}

/* A row of x gives the same output row, bit for bit, whether it comes in a
 * batch of 16 rows or of 40, on 1 or 2 threads (every SIMD path: AMX runs
 * up to 32 rows over all of K at once, AVX-512 and AVX2 up to 64 rows
 * through the GEMV). In a batch of 70 rows AMX takes K in blocks of 512 and
 * still gives the same bits; the AVX paths' blocked GEMM adds in another
 * order there, so its rows are only as close as f32 accumulation makes
 * them. K over several blocks with a ragged end, N over several tasks with
 * a ragged last tile. */
static void test_rows_independent_of_m(void) {
    int64_t sbig[2] = {70, 1100}, sw[2] = {1100, 300};
    lmc_array *xbig = rnd(LMC_F32, 2, sbig), *w = rnd_t(LMC_BF16, 2, sw);
    int64_t ssmall[2] = {16, 1100}, smid[2] = {40, 1100}, st[2] = {1100, 1};
    lmc_array *xsmall = lmc_array_view(xbig->buf, xbig->offset + 50 * 1100 * sizeof(float), LMC_F32, 2, ssmall, st); /* rows 50..65 */
    lmc_array *xmid = lmc_array_view(xbig->buf, xbig->offset + 30 * 1100 * sizeof(float), LMC_F32, 2, smid, st); /* rows 30..69 */
    int before = lmc_num_threads();
    lmc_cpu_path path = lmc_cpu_path_active();
    for (int pi = LMC_PATH_AVX2; pi <= (int)lmc_cpu_path_max(); pi++) {
        lmc_cpu_path_set((lmc_cpu_path)pi);
        const char *name = lmc_cpu_path_name((lmc_cpu_path)pi);
        lmc_set_num_threads(before);
        lmc_array *big = lmc_matmul(xbig, w), *mid = lmc_matmul(xmid, w);
        float *gb = big ? read_f32(big) : NULL, *gm = mid ? read_f32(mid) : NULL;
        CHECKF(gb && gm, "path %s: %s", name, lmc_last_error());
        for (int t = 1; t <= 2 && gb && gm; t++) {
            lmc_set_num_threads(t);
            lmc_array *small = lmc_matmul(xsmall, w);
            float *gs = small ? read_f32(small) : NULL;
            CHECKF(gs && !memcmp(gs, gm + 20 * 300, 16 * 300 * sizeof(float)),
                   "path %s: rows 50..65 of x differ as a batch of 16 and of 40 (%d threads)", name, t);
            int64_t far = 0;
            for (int64_t i = 0; gs && i < 16 * 300; i++) {
                double r = gb[50 * 300 + i];
                if (pi == LMC_PATH_AMX ? gs[i] != gb[50 * 300 + i] : fabs(gs[i] - r) > 1e-5 * (1 + fabs(r))) far++;
            }
            CHECKF(gs && far == 0, "path %s: %lld values of rows 50..65 differ as a batch of 16 and of 70 (%d threads)",
                   name, (long long)far, t);
            free(gs);
            lmc_array_free(small);
        }
        free(gb);
        free(gm);
        lmc_array_free(big);
        lmc_array_free(mid);
    }
    lmc_set_num_threads(before);
    lmc_cpu_path_set(path);
    lmc_array *arr[] = {xbig, w, xsmall, xmid};
    for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
}

/* One row of x against many weight rows (the decoder's output matrix):
 * each thread's long run of rows is read as several streams at once
 * (gemv_nt_streams), which must give every output the bits the plain GEMV
 * gives it, here that of the same row in a batch of two equal rows; for each
 * weight dtype, on every SIMD path (4 streams on AVX-512, 2 on AVX2), on 1
 * and 2 threads, with a ragged K and N. Also against f64. */
static void test_gemv_streams(void) {
    const int64_t K = 1100, N = 8401; /* at 2 threads pieces of >= 4 x 64 rows, and single tasks of 64 */
    int64_t sx[2] = {1, K}, sw[2] = {K, N};
    lmc_array *x = rnd(LMC_F32, 2, sx);
    lmc_array *x2 = lmc_concatenate(2, (const lmc_array *const[]){x, x}, 0);
    int before = lmc_num_threads();
    lmc_cpu_path path = lmc_cpu_path_active();
    const lmc_dtype wdts[] = {LMC_BF16, LMC_F16, LMC_F32};
    for (int i = 0; x2 && i < 3 * ((int)lmc_cpu_path_max() - LMC_PATH_AVX2 + 1); i++) {
        int pi = LMC_PATH_AVX2 + i / 3, wi = i % 3;
        lmc_cpu_path_set((lmc_cpu_path)pi);
        lmc_array *w = rnd_t(wdts[wi], 2, sw);
        float *xv = read_f32(x), *wv = read_f32(w); /* wv: [K, N] */
        for (int t = 1; t <= 2; t++) {
            lmc_set_num_threads(t);
            lmc_array *one = lmc_matmul(x, w), *two = lmc_matmul(x2, w);
            float *g1 = one ? read_f32(one) : NULL, *g2 = two ? read_f32(two) : NULL;
            CHECKF(g1 && g2, "%s", lmc_last_error());
            int64_t differ = 0, far = 0;
            for (int64_t n = 0; g1 && g2 && n < N; n++) {
                if (memcmp(&g1[n], &g2[n], sizeof(float)) || memcmp(&g2[n], &g2[N + n], sizeof(float))) differ++;
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                    ref += (double)xv[k] * wv[k * N + n];
                    mag += fabs((double)xv[k] * wv[k * N + n]);
                }
                if (fabs(g1[n] - ref) > 1e-6 * mag + 1e-6) far++;
            }
            CHECKF(differ == 0 && far == 0, "path %s, w %s, %d threads: %lld outputs differ from the batch of two, %lld from f64",
                   lmc_cpu_path_name((lmc_cpu_path)pi), lmc_dtype_name(wdts[wi]), t, (long long)differ, (long long)far);
            free(g1);
            free(g2);
            lmc_array_free(one);
            lmc_array_free(two);
        }
        free(xv);
        free(wv);
        lmc_array_free(w);
    }
    lmc_set_num_threads(before);
    lmc_cpu_path_set(path);
    lmc_array_free(x);
    lmc_array_free(x2);
}

/* The GEMV without its per-thread work space (bf16 output, converted from
 * it) fails with an error, and the next call works, on every SIMD path. */
static void test_gemv_no_scratch(void) {
    int64_t sa[2] = {3, 64}, sb[2] = {64, 48};
    lmc_array *a = lmc_random_normal(LMC_BF16, 2, sa, 0, 1, 80), *b = lmc_random_normal(LMC_BF16, 2, sb, 0, 1, 81);
    for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *good = lmc_matmul(a, b);
        lmc_scratch_fail_for_testing(LMC_SCRATCH_GEMV);
        lmc_array *bad = lmc_matmul(a, b);
        lmc_scratch_fail_for_testing(-1);
        CHECKF(!bad && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY, "path %s: %s", lmc_cpu_path_name((lmc_cpu_path)p),
               bad ? "no error" : lmc_last_error());
        lmc_array *again = lmc_matmul(a, b);
        CHECK(good && again && lmc_array_dtype(good) == LMC_BF16 &&
              !memcmp(lmc_array_data(good), lmc_array_data(again), 3 * 48 * sizeof(uint16_t)));
        lmc_array_free(good);
        lmc_array_free(bad);
        lmc_array_free(again);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(a);
    lmc_array_free(b);
}

/* The same for the AMX matmul (bf16 weights read transposed, f32 and bf16
 * x, from AMX_MIN_M rows of x): without its per-thread work space it fails with an error, and the
 * next call gives the same bits. Needs an AMX CPU (the GPU machine's host). */
static void test_amx_no_scratch(void) {
    if (lmc_cpu_path_max() < LMC_PATH_AMX) {
        fprintf(stderr, "  (no AMX here: skipped)\n");
        return;
    }
    lmc_cpu_path_set(LMC_PATH_AMX);
    int64_t sa[2] = {40, 96}, sw[2] = {80, 96};
    lmc_array *w = lmc_random_normal(LMC_BF16, 2, sw, 0, 1, 83);
    lmc_array *b = lmc_swapaxes(w, 0, 1); /* weights as a Linear holds them: [N, K], read transposed */
    for (int xi = 0; xi < 2; xi++) {
        lmc_array *a = lmc_random_normal(xi ? LMC_BF16 : LMC_F32, 2, sa, 0, 1, 82);
        lmc_array *good = lmc_matmul(a, b);
        lmc_scratch_fail_for_testing(LMC_SCRATCH_MATMUL_AMX);
        lmc_array *bad = lmc_matmul(a, b);
        lmc_scratch_fail_for_testing(-1);
        CHECKF(!bad && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY, "x %s: %s", xi ? "bf16" : "f32",
               bad ? "no error" : lmc_last_error());
        lmc_array *again = lmc_matmul(a, b);
        CHECK(good && again && lmc_array_nbytes(good) == lmc_array_nbytes(again) &&
              !memcmp(lmc_array_data(good), lmc_array_data(again), lmc_array_nbytes(good)));
        lmc_array_free(a);
        lmc_array_free(good);
        lmc_array_free(bad);
        lmc_array_free(again);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(b);
    lmc_array_free(w);
}

int main(void) {
    fprintf(stderr, "best kernel path here: %s\n", lmc_cpu_path_name(lmc_cpu_path_max()));
    RUN(test_hand_2x2);
    RUN(test_promotion_1d);
    RUN(test_errors);
    RUN(test_k_zero);
    RUN(test_random_paths);
    RUN(test_linear_mixed);
    RUN(test_bf16_large);
    RUN(test_batched_views);
    RUN(test_small_m);
    RUN(test_nonfinite);
    RUN(test_thread_determinism);
    RUN(test_gemm_tiles);
    RUN(test_rows_independent_of_m);
    RUN(test_gemv_streams);
    RUN(test_gemv_no_scratch);
    RUN(test_amx_no_scratch);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
