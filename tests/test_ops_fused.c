/* rms_norm, layer_norm, rope and sdpa: hand-checked cases, errors, and every
 * kernel path against the scalar oracle (sums in double) on random shapes,
 * strided views and f32/bf16/f16 inputs.
 *
 * Tolerances: f32 outputs 2e-5 absolute + 2e-5 relative (f32 math in the
 * fast paths); f16/bf16 outputs 1e-2 + 1e-2 relative (one output rounding). */
#include <stdint.h>

#include "backend/cpu/cpu_kernels.h"
#include "core/array.h"
#include "core/scratch.h"
#include "lmc/ops.h"
#include "lmc/train.h"
#include "ops/fusion.h"
#include "test_util.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static lmc_array *rnd(lmc_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    lmc_array *a = lmc_array_new(dt, ndim, shape, LMC_CPU);
    for (int64_t i = 0; i < n; i++)
        lmc_store_f64((char *)lmc_array_ptr(a) + i * (int64_t)lmc_dtype_size(dt), dt, frand());
    return a;
}

static lmc_array *from(const float *v, int ndim, const int64_t *shape) { return lmc_array_from_data(v, LMC_F32, ndim, shape); }

static float *read_f32(const lmc_array *a) {
    float *v = malloc((size_t)(a->size ? a->size : 1) * sizeof(float));
    CHECK(lmc_array_read(a, LMC_F32, v, (size_t)a->size) == LMC_OK);
    return v;
}

static void compare(const lmc_array *got, const lmc_array *ref, const char *what) {
    CHECKF(got && ref, "%s: %s", what, lmc_last_error());
    if (!got || !ref) return;
    CHECKF(got->size == ref->size && got->dtype == ref->dtype, "%s: shape/dtype differ", what);
    double tol = ref->dtype == LMC_F32 ? 2e-5 : 1e-2;
    float *g = read_f32(got), *r = read_f32(ref);
    int bad = 0;
    for (int64_t i = 0; i < ref->size; i++)
        if (!(fabs((double)g[i] - r[i]) <= tol + tol * fabs(r[i]))) {
            if (bad < 3) fprintf(stderr, "%s: element %lld: got %.8g, want %.8g\n", what, (long long)i, g[i], r[i]);
            bad++;
        }
    CHECKF(bad == 0, "%s: %d of %lld elements differ", what, bad, (long long)ref->size);
    free(g);
    free(r);
}

/* --- one op on every path against the scalar table ---------------------------- */

typedef enum { OP_RMS, OP_RMS1, OP_LN, OP_ROPE, OP_SDPA } op_kind;
typedef struct op_args {
    const lmc_array *x, *w, *b, *k, *v, *pos;
    const lmc_rope_params *rp;
    const lmc_sdpa_params *sp;
    int64_t offset;
} op_args;

static lmc_array *run_op(op_kind op, const op_args *a) {
    switch (op) {
    case OP_RMS: return lmc_rms_norm(a->x, a->w, 1e-5f, false);
    case OP_RMS1: return lmc_rms_norm(a->x, a->w, 1e-6f, true);
    case OP_LN: return lmc_layer_norm(a->x, a->w, a->b, 1e-5f);
    case OP_ROPE: return a->pos ? lmc_rope_positions(a->x, a->rp, a->pos) : lmc_rope(a->x, a->rp, a->offset);
    case OP_SDPA: return lmc_sdpa(a->x, a->k, a->v, a->sp);
    }
    return NULL;
}

static void check_paths(op_kind op, const op_args *a, const char *what) {
    lmc_cpu_path_set(LMC_PATH_SCALAR);
    lmc_array *ref = run_op(op, a);
    CHECKF(ref, "%s: %s", what, lmc_last_error());
    for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *got = run_op(op, a);
        char buf[200];
        snprintf(buf, sizeof buf, "%s [%s]", what, lmc_cpu_path_name((lmc_cpu_path)p));
        compare(got, ref, buf);
        lmc_array_free(got);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(ref);
}

/* --- hand-checked ---------------------------------------------------------------- */

static void test_norm_hand(void) {
    float xv[] = {1, 2, 3, 4}, wv[] = {1, 1, 1, 1};
    int64_t s[1] = {4};
    lmc_array *x = from(xv, 1, s), *w = from(wv, 1, s);
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *r = lmc_rms_norm(x, NULL, 0.0f, false), *r1 = lmc_rms_norm(x, w, 0.0f, true);
        lmc_array *l = lmc_layer_norm(x, NULL, NULL, 0.0f);
        float *g = read_f32(r), *g1 = read_f32(r1), *gl = read_f32(l);
        /* mean of squares 7.5; mean 2.5, variance 1.25 */
        for (int i = 0; i < 4; i++) {
            CHECK_CLOSE(g[i], xv[i] / sqrt(7.5), 1e-6, 1e-6);
            CHECK_CLOSE(g1[i], 2.0 * xv[i] / sqrt(7.5), 1e-6, 1e-6);
            CHECK_CLOSE(gl[i], (xv[i] - 2.5) / sqrt(1.25), 1e-6, 1e-6);
        }
        CHECK_CLOSE(g[0], 0.36514837167, 1e-6, 0);
        free(g);
        free(g1);
        free(gl);
        lmc_array_free(r);
        lmc_array_free(r1);
        lmc_array_free(l);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(x);
    lmc_array_free(w);
}

static void test_rope_hand(void) {
    /* A unit vector e0 in a head of 6 features, dims 4: rotating by angle
     * pos * scale * inv_freq moves it into feature 1 (traditional pairs) or 2
     * (split halves); features 4, 5 pass through. */
    float xv[] = {1, 0, 0, 0, 7, -7}, fv[] = {1.0f, 0.5f};
    int64_t sx[2] = {1, 6}, sf[1] = {2};
    lmc_array *x = from(xv, 2, sx), *f = from(fv, 1, sf);
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        for (int trad = 0; trad < 2; trad++) {
            lmc_rope_params rp = lmc_rope_params_default(4, 10000.0f);
            rp.traditional = trad;
            rp.inv_freqs = f;
            rp.scale = 0.5f;
            lmc_array *r = lmc_rope(x, &rp, 3); /* angle 3 * 0.5 * 1 = 1.5 */
            float *g = read_f32(r);
            CHECK_CLOSE(g[0], cos(1.5), 1e-6, 0);
            CHECK_CLOSE(g[trad ? 1 : 2], sin(1.5), 1e-6, 0);
            CHECK_CLOSE(g[trad ? 2 : 1], 0, 1e-7, 0);
            CHECK_CLOSE(g[3], 0, 1e-7, 0);
            CHECK(g[4] == 7.0f && g[5] == -7.0f);
            free(g);
            lmc_array_free(r);
        }
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    /* Inverse frequencies from base as HF: 1 / base^(2i/dims). Feature 1 of a
     * split-half rope of dims 4 pairs with feature 3 and turns by pos * base^-0.5. */
    float yv[] = {0, 1, 0, 0};
    int64_t sy[2] = {1, 4};
    lmc_array *y = from(yv, 2, sy);
    lmc_rope_params rp = lmc_rope_params_default(4, 100.0f);
    lmc_array *r = lmc_rope(y, &rp, 5);
    float *g = read_f32(r);
    CHECK_CLOSE(g[1], cos(5 * 0.1), 1e-6, 0);
    CHECK_CLOSE(g[3], sin(5 * 0.1), 1e-6, 0);
    free(g);
    lmc_array_free(r);
    lmc_array_free(y);
    lmc_array_free(x);
    lmc_array_free(f);
}

static void test_sdpa_hand(void) {
    /* One key: softmax is 1, the output is v whatever q is. */
    float qv[] = {0.3f, -2, 1, 5}, kv[] = {1, 2, 3, 4}, vv[] = {9, -8, 7};
    int64_t sq[4] = {1, 1, 1, 4}, sv[4] = {1, 1, 1, 3};
    lmc_array *q = from(qv, 4, sq), *k = from(kv, 4, sq), *v = from(vv, 4, sv);
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_sdpa_params sp = lmc_sdpa_params_default(0.5f);
        sp.causal = true;
        lmc_array *o = lmc_sdpa(q, k, v, &sp);
        float *g = read_f32(o);
        for (int i = 0; i < 3; i++) CHECK_CLOSE(g[i], vv[i], 1e-6, 0);
        free(g);
        lmc_array_free(o);
        /* Two keys with scores 0 and ln 3: weights 1/4, 3/4. */
        float q2[] = {1, 0}, k2[] = {0, 0, (float)log(3.0), 0}, v2[] = {4, 8};
        int64_t s2q[4] = {1, 1, 1, 2}, s2k[4] = {1, 1, 2, 2}, s2v[4] = {1, 1, 2, 1};
        lmc_array *qq = from(q2, 4, s2q), *kk = from(k2, 4, s2k), *vv2 = from(v2, 4, s2v);
        sp = lmc_sdpa_params_default(1.0f);
        o = lmc_sdpa(qq, kk, vv2, &sp);
        g = read_f32(o);
        CHECK_CLOSE(g[0], 4 * 0.25 + 8 * 0.75, 1e-5, 0);
        free(g);
        lmc_array_free(o);
        lmc_array_free(qq);
        lmc_array_free(kk);
        lmc_array_free(vv2);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array_free(q);
    lmc_array_free(k);
    lmc_array_free(v);
}

/* Causal and sliding-window attention equal attention under a mask built by
 * brute force from the definitions (query i at position Tk - Tq + i; HF
 * Gemma 3: key visible when kpos > qpos - window). Rows that see nothing are 0. */
static void test_masks_brute_force(void) {
    int64_t B = 1, H = 2, Tq = 5, Tk = 9, D = 8;
    int64_t sq[4] = {B, H, Tq, D}, sk[4] = {B, H, Tk, D};
    lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(LMC_F32, 4, sk), *v = rnd(LMC_F32, 4, sk);
    int64_t sm[2] = {Tq, Tk};
    for (int causal = 0; causal < 2; causal++)
        for (int64_t window = 0; window <= 4; window += 2) {
            lmc_array *bm = lmc_array_new(LMC_BOOL, 2, sm, LMC_CPU), *am = lmc_array_new(LMC_F32, 2, sm, LMC_CPU);
            uint8_t *bv = lmc_array_ptr(bm);
            float *av = lmc_array_ptr(am);
            for (int64_t i = 0; i < Tq; i++)
                for (int64_t j = 0; j < Tk; j++) {
                    int64_t qpos = Tk - Tq + i;
                    bool keep = (!causal || j <= qpos) && (window == 0 || j > qpos - window);
                    bv[i * Tk + j] = keep;
                    av[i * Tk + j] = keep ? 0.0f : -INFINITY;
                }
            lmc_sdpa_params sp = lmc_sdpa_params_default(0.35f), sb = sp, sa = sp;
            sp.causal = causal;
            sp.window = window;
            sb.mask = bm;
            sa.mask = am;
            for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
                lmc_cpu_path_set((lmc_cpu_path)p);
                lmc_array *o = lmc_sdpa(q, k, v, &sp), *ob = lmc_sdpa(q, k, v, &sb), *oa = lmc_sdpa(q, k, v, &sa);
                char what[96];
                snprintf(what, sizeof what, "causal %d window %lld vs bool mask [%s]", causal, (long long)window,
                         lmc_cpu_path_name((lmc_cpu_path)p));
                compare(o, ob, what);
                compare(oa, ob, "additive -inf mask vs bool mask");
                lmc_array_free(o);
                lmc_array_free(ob);
                lmc_array_free(oa);
            }
            lmc_array_free(bm);
            lmc_array_free(am);
        }
    lmc_cpu_path_set(lmc_cpu_path_max());
    /* A fully masked row gives zeros: Tq > Tk with causal hides everything from
     * the first Tq - Tk queries. */
    int64_t sq2[4] = {1, 1, 4, D}, sk2[4] = {1, 1, 2, D};
    lmc_array *q2 = rnd(LMC_F32, 4, sq2), *k2 = rnd(LMC_F32, 4, sk2), *v2 = rnd(LMC_F32, 4, sk2);
    lmc_sdpa_params sp = lmc_sdpa_params_default(1.0f);
    sp.causal = true;
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        lmc_array *o = lmc_sdpa(q2, k2, v2, &sp);
        float *g = read_f32(o);
        for (int64_t i = 0; i < 2 * D; i++) CHECK(g[i] == 0.0f);
        bool nonzero = false;
        for (int64_t i = 2 * D; i < 4 * D; i++) nonzero = nonzero || g[i] != 0.0f;
        CHECK(nonzero);
        free(g);
        lmc_array_free(o);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_array *arr[] = {q, k, v, q2, k2, v2};
    for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
}

static void test_errors(void) {
    int64_t sq[4] = {1, 3, 2, 4}, sk[4] = {1, 2, 2, 4}, sx[2] = {2, 6};
    lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(LMC_F32, 4, sk), *x = rnd(LMC_F32, 2, sx);
    lmc_sdpa_params sp = lmc_sdpa_params_default(1.0f);
    CHECK(lmc_sdpa(q, k, k, &sp) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "multiple"), "%s", lmc_last_error());
    lmc_rope_params rp = lmc_rope_params_default(5, 10000.0f);
    CHECK(lmc_rope(x, &rp, 0) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "dims"), "%s", lmc_last_error());
    rp.dims = 8;
    CHECK(lmc_rope(x, &rp, 0) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    int64_t s5[1] = {5};
    lmc_array *w5 = rnd(LMC_F32, 1, s5);
    CHECK(lmc_rms_norm(x, w5, 1e-5f, false) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_layer_norm(x, NULL, w5, 1e-5f) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    int64_t sm[2] = {3, 3};
    lmc_array *m = rnd(LMC_F32, 2, sm), *q2 = rnd(LMC_F32, 4, sk);
    sp.mask = m;
    CHECK(lmc_sdpa(q2, k, k, &sp) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_rms_norm(NULL, NULL, 1e-5f, false) == NULL);
    lmc_array *arr[] = {q, k, x, w5, m, q2};
    for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
}

/* --- random shapes on every path ------------------------------------------------------ */

static void test_norms_random(void) {
    static const lmc_dtype dts[] = {LMC_F32, LMC_BF16, LMC_F16};
    static const int64_t Ds[] = {1, 7, 64, 300};
    for (int di = 0; di < 3; di++)
        for (int i = 0; i < 4; i++) {
            int64_t s[3] = {3, 5, Ds[i]}, sd[1] = {Ds[i]};
            lmc_array *x = rnd(dts[di], 3, s), *w = rnd(dts[(di + 1) % 3], 1, sd), *b = rnd(LMC_F32, 1, sd);
            /* a transposed view: [5, 3, D] with the first two axes swapped */
            lmc_array *xt = lmc_swapaxes(x, 0, 1);
            op_args a = {.x = x, .w = w, .b = b};
            char what[96];
            snprintf(what, sizeof what, "norm %s D=%lld", lmc_dtype_name(dts[di]), (long long)Ds[i]);
            check_paths(OP_RMS, &a, what);
            check_paths(OP_RMS1, &a, what);
            check_paths(OP_LN, &a, what);
            a.x = xt;
            check_paths(OP_RMS, &a, "rms_norm transposed view");
            check_paths(OP_LN, &a, "layer_norm transposed view");
            a.w = NULL;
            a.b = NULL;
            check_paths(OP_RMS, &a, "rms_norm no weight");
            check_paths(OP_LN, &a, "layer_norm no weight");
            lmc_array *arr[] = {x, w, b, xt};
            for (int k = 0; k < 4; k++) lmc_array_free(arr[k]);
        }
}

static void test_rope_random(void) {
    static const lmc_dtype dts[] = {LMC_F32, LMC_BF16, LMC_F16};
    for (int di = 0; di < 3; di++)
        for (int trad = 0; trad < 2; trad++) {
            /* x as [B, H, T, D] made from a [B, T, H, D] buffer (the layout after the q projection) */
            int64_t s[4] = {2, 7, 3, 16};
            lmc_array *raw = rnd(dts[di], 4, s), *x = lmc_swapaxes(raw, 1, 2);
            lmc_rope_params rp = lmc_rope_params_default(di == 0 ? 16 : 12, 10000.0f);
            rp.traditional = trad;
            rp.scale = di == 2 ? 0.25f : 1.0f;
            op_args a = {.x = x, .rp = &rp, .offset = 1000};
            char what[96];
            snprintf(what, sizeof what, "rope %s trad %d", lmc_dtype_name(dts[di]), trad);
            check_paths(OP_ROPE, &a, what);
            /* explicit positions [B, T] */
            int64_t sp[2] = {2, 7};
            lmc_array *pos = lmc_array_new(LMC_I32, 2, sp, LMC_CPU);
            int32_t *pv = lmc_array_ptr(pos);
            for (int i = 0; i < 14; i++) pv[i] = (i * 37) % 101;
            a.pos = pos;
            check_paths(OP_ROPE, &a, "rope positions [B, T]");
            /* equal to offset positions when the positions are offset + t */
            for (int i = 0; i < 14; i++) pv[i] = 1000 + i % 7;
            lmc_array *r1 = lmc_rope_positions(x, &rp, pos), *r2 = lmc_rope(x, &rp, 1000);
            compare(r1, r2, "positions [B, T] = offset");
            lmc_array *arr[] = {raw, x, pos, r1, r2};
            for (int k = 0; k < 5; k++) lmc_array_free(arr[k]);
        }
}

/* The tables of cos/sin each thread keeps (fused_fast.h) at a prefill
 * chunk's size (64 tokens x 64 angles, past the old 1024-angle memo):
 * positions that differ only in the last token, back and forth, and a
 * third set that pushes one out, each against the scalar path (which keeps
 * none). A table found by part of its angles would rotate the last row wrong. */
static void test_rope_tables_kept(void) {
    int64_t s[4] = {1, 3, 64, 128}, sp[2] = {1, 64};
    lmc_array *x = rnd(LMC_F32, 4, s), *pos = lmc_array_new(LMC_I32, 2, sp, LMC_CPU);
    lmc_rope_params rp = lmc_rope_params_default(128, 1000000.0f);
    int32_t *pv = lmc_array_ptr(pos);
    const int32_t last[] = {163, 999, 163, 7, 999, 163};
    for (int k = 0; k < 6; k++) {
        for (int t = 0; t < 64; t++) pv[t] = 100 + t;
        pv[63] = last[k];
        op_args a = {.x = x, .rp = &rp, .pos = pos};
        char what[64];
        snprintf(what, sizeof what, "rope, 64 tokens, last at %d (run %d)", last[k], k);
        check_paths(OP_ROPE, &a, what);
    }
    lmc_array_free(x);
    lmc_array_free(pos);
}

static void test_sdpa_random(void) {
    static const lmc_dtype dts[] = {LMC_F32, LMC_BF16, LMC_F16};
    static const int64_t Tqs[] = {1, 7, 40}, Tks[] = {1, 13, 90};
    /* query heads per KV head: 2, 6 (several queries per task), 20 (more
     * than a task's usual rows), 1 */
    static const int64_t heads[][2] = {{4, 2}, {6, 1}, {20, 1}, {3, 3}};
    for (int hi = 0; hi < 4; hi++)
        for (int di = 0; di < 3; di++)
            for (int ti = 0; ti < 3; ti++) {
                if (hi > 0 && di > 0) continue; /* dtypes are covered with the first head layout */
                int64_t Hq = heads[hi][0], Hkv = heads[hi][1];
                int64_t Tq = Tqs[ti], Tk = Tks[ti] < Tq ? Tq : Tks[ti];
                int64_t sq[4] = {2, Hq, Tq, 24}, sk[4] = {2, Hkv, Tk, 24}, sv[4] = {2, Hkv, Tk, 20};
                lmc_array *q = rnd(dts[di], 4, sq), *k = rnd(dts[di], 4, sk), *v = rnd(dts[di], 4, sv);
                /* an additive mask broadcast over the batch, one per head */
                int64_t sm[4] = {1, Hq, Tq, Tk};
                lmc_array *m = rnd(LMC_F32, 4, sm);
                for (int variant = 0; variant < 4; variant++) {
                    lmc_sdpa_params sp = lmc_sdpa_params_default(0.2f);
                    sp.causal = variant >= 1;
                    sp.window = variant == 2 ? 5 : 0;
                    sp.softcap = variant == 3 ? 2.0f : 0.0f;
                    sp.mask = variant == 3 ? m : NULL;
                    op_args a = {.x = q, .k = k, .v = v, .sp = &sp};
                    char what[128];
                    snprintf(what, sizeof what, "sdpa %s Hq=%lld Hkv=%lld Tq=%lld Tk=%lld variant %d",
                             lmc_dtype_name(dts[di]), (long long)Hq, (long long)Hkv, (long long)Tq, (long long)Tk,
                             variant);
                    check_paths(OP_SDPA, &a, what);
                }
                lmc_array *arr[] = {q, k, v, m};
                for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
            }
    /* head dims of whole vectors and several key blocks: f32 keys/values read
     * in place, key blocks every query sees whole (fast path) beside the
     * diagonal and window edges; decode (Tq 1) and prefill-sized query blocks */
    static const int64_t Tq2[] = {1, 3, 70};
    for (int ti = 0; ti < 3; ti++) {
        int64_t sq[4] = {1, 4, Tq2[ti], 64}, skv[4] = {1, 2, 200, 64};
        lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(LMC_F32, 4, skv), *v = rnd(LMC_F32, 4, skv);
        int64_t sm[4] = {1, 1, Tq2[ti], 200};
        lmc_array *m = lmc_array_new(LMC_BOOL, 4, sm, LMC_CPU);
        uint8_t *mb = lmc_array_ptr(m);
        for (int64_t i = 0; i < m->size; i++) mb[i] = i % 200 < 3 || i % 7 != 0; /* first keys always visible */
        /* key-padding masks broadcast over heads and queries (batched
         * generation): the first 70 keys hidden, the rest untouched */
        int64_t sp1[4] = {1, 1, 1, 200};
        lmc_array *pad = lmc_array_new(LMC_BOOL, 4, sp1, LMC_CPU), *padf = lmc_array_new(LMC_F32, 4, sp1, LMC_CPU);
        uint8_t *pb = lmc_array_ptr(pad);
        float *pf = lmc_array_ptr(padf);
        for (int64_t i = 0; i < 200; i++) {
            pb[i] = i >= 70;
            pf[i] = i >= 70 ? 0.0f : -1e9f;
        }
        for (int variant = 0; variant < 6; variant++) {
            lmc_sdpa_params sp = lmc_sdpa_params_default(0.125f);
            sp.causal = variant >= 1;
            sp.window = variant == 2 ? 100 : 0;
            sp.mask = variant == 3 ? m : variant == 4 ? pad : variant == 5 ? padf : NULL;
            op_args a = {.x = q, .k = k, .v = v, .sp = &sp};
            char what[128];
            snprintf(what, sizeof what, "sdpa f32 D=64 Tq=%lld Tk=200 variant %d", (long long)Tq2[ti], variant);
            check_paths(OP_SDPA, &a, what);
        }
        lmc_array *arr[] = {q, k, v, m, pad, padf};
        for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
    }
    /* decode with one KV head (Gemma-3-1B): the query heads split over two
     * tasks; each row must be what the oracle gives, and bit for bit what the
     * same rows give in a batch of two (one task per batch entry, no split) */
    static const int64_t Tk3[] = {1, 37, 200, 700};
    for (int ti = 0; ti < 4; ti++) {
        int64_t sq[4] = {1, 4, 1, 64}, skv[4] = {1, 1, Tk3[ti], 64};
        lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(LMC_F32, 4, skv), *v = rnd(LMC_F32, 4, skv);
        lmc_sdpa_params sp = lmc_sdpa_params_default(0.125f);
        sp.causal = true;
        op_args a = {.x = q, .k = k, .v = v, .sp = &sp};
        char what[128];
        snprintf(what, sizeof what, "sdpa one KV head, decode, Tk=%lld", (long long)Tk3[ti]);
        check_paths(OP_SDPA, &a, what);
        const lmc_array *qq[2] = {q, q}, *kk[2] = {k, k}, *vv[2] = {v, v};
        lmc_array *Q = lmc_concatenate(2, qq, 0), *K = lmc_concatenate(2, kk, 0), *V = lmc_concatenate(2, vv, 0);
        lmc_array *one = lmc_sdpa(q, k, v, &sp), *two = lmc_sdpa(Q, K, V, &sp);
        CHECKF(one && two && !memcmp(lmc_array_data(one), lmc_array_data(two), 4 * 64 * sizeof(float)) &&
                   !memcmp(lmc_array_data(one), (const float *)lmc_array_data(two) + 4 * 64, 4 * 64 * sizeof(float)),
               "%s: rows differ from the batch of two", what);
        lmc_array *arr[] = {q, k, v, Q, K, V, one, two};
        for (int i = 0; i < 8; i++) lmc_array_free(arr[i]);
    }
    /* 16-bit key/value caches (kv_cache_dtype bf16/f16), head dims of whole
     * vectors: decode and drafts read them in place, prefill-sized blocks
     * convert them first; either way the result must be what the oracle
     * gives and bit for bit what the same keys and values give as f32 */
    static const lmc_dtype half[] = {LMC_BF16, LMC_F16};
    static const int64_t Tq4[] = {1, 3, 40}, Hq4[] = {2, 16};
    for (int hd = 0; hd < 2; hd++)
        for (int ti = 0; ti < 3; ti++)
            for (int hi = 0; hi < 2; hi++) {
                int64_t sq[4] = {2, Hq4[hi], Tq4[ti], 64}, skv[4] = {2, 2, 150, 64};
                lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(half[hd], 4, skv), *v = rnd(half[hd], 4, skv);
                lmc_array *kf = lmc_astype(k, LMC_F32), *vf = lmc_astype(v, LMC_F32);
                for (int variant = 0; variant < 3; variant++) {
                    lmc_sdpa_params sp = lmc_sdpa_params_default(0.125f);
                    sp.causal = variant >= 1;
                    sp.window = variant == 2 ? 70 : 0;
                    op_args a = {.x = q, .k = k, .v = v, .sp = &sp};
                    char what[128];
                    snprintf(what, sizeof what, "sdpa %s cache Hq=%lld Tq=%lld variant %d", lmc_dtype_name(half[hd]),
                             (long long)Hq4[hi], (long long)Tq4[ti], variant);
                    check_paths(OP_SDPA, &a, what);
                    for (int p = LMC_PATH_SCALAR; p <= (int)lmc_cpu_path_max(); p++) {
                        lmc_cpu_path_set((lmc_cpu_path)p);
                        lmc_array *o16 = lmc_sdpa(q, k, v, &sp), *o32 = lmc_sdpa(q, kf, vf, &sp);
                        CHECKF(o16 && o32 && !memcmp(lmc_array_data(o16), lmc_array_data(o32),
                                                     (size_t)lmc_array_size(o32) * sizeof(float)),
                               "%s [%s]: differs from the same keys and values as f32", what,
                               lmc_cpu_path_name((lmc_cpu_path)p));
                        lmc_array_free(o16);
                        lmc_array_free(o32);
                    }
                    lmc_cpu_path_set(lmc_cpu_path_max());
                }
                lmc_array *arr[] = {q, k, v, kf, vf};
                for (int i = 0; i < 5; i++) lmc_array_free(arr[i]);
            }
    /* the tasks' cut over threads (work stealing) never changes a bit:
     * prefill-sized and decode shapes, f32 and 16-bit caches, 1-3 threads */
    static const int64_t Tq5[] = {1, 70};
    for (int ti = 0; ti < 2; ti++)
        for (int di = 0; di < 2; di++) {
            int64_t sq[4] = {1, 8, Tq5[ti], 64}, skv[4] = {1, 4, 300, 64};
            lmc_dtype kvdt = di ? LMC_F16 : LMC_F32;
            lmc_array *q = rnd(LMC_F32, 4, sq), *k = rnd(kvdt, 4, skv), *v = rnd(kvdt, 4, skv);
            lmc_sdpa_params sp = lmc_sdpa_params_default(0.125f);
            sp.causal = true;
            lmc_set_num_threads(1);
            lmc_array *one = lmc_sdpa(q, k, v, &sp);
            for (int nt = 2; nt <= 3; nt++) {
                lmc_set_num_threads(nt);
                lmc_array *o = lmc_sdpa(q, k, v, &sp);
                CHECKF(one && o && !memcmp(lmc_array_data(one), lmc_array_data(o), (size_t)lmc_array_size(o) * sizeof(float)),
                       "sdpa Tq=%lld %s cache: %d threads differ from one", (long long)Tq5[ti], lmc_dtype_name(kvdt), nt);
                lmc_array_free(o);
            }
            lmc_set_num_threads(0);
            lmc_array *arr[] = {q, k, v, one};
            for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
        }
    /* non-contiguous q/k/v: [B, T, H, D] buffers seen as [B, H, T, D] */
    int64_t s[4] = {1, 11, 4, 16}, skv[4] = {1, 11, 2, 16};
    lmc_array *qr = rnd(LMC_F32, 4, s), *kr = rnd(LMC_BF16, 4, skv), *vr = rnd(LMC_F32, 4, skv);
    lmc_array *q = lmc_swapaxes(qr, 1, 2), *k = lmc_swapaxes(kr, 1, 2), *v = lmc_swapaxes(vr, 1, 2);
    lmc_sdpa_params sp = lmc_sdpa_params_default(0.25f);
    sp.causal = true;
    op_args a = {.x = q, .k = k, .v = v, .sp = &sp};
    check_paths(OP_SDPA, &a, "sdpa transposed views, mixed dtypes");
    lmc_array *arr[] = {qr, kr, vr, q, k, v};
    for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
}

/* Attention without its per-thread work space fails with an error (no
 * partial output returned as a result), and the next call works, on every
 * SIMD path: a prefill-sized block and a decode row. */
static void test_sdpa_no_scratch(void) {
    for (int tq = 1; tq <= 20; tq += 19) {
        int64_t sq[4] = {1, 4, tq, 64}, skv[4] = {1, 2, 30, 64};
        lmc_array *q = lmc_random_normal(LMC_F32, 4, sq, 0, 1, 70), *k = lmc_random_normal(LMC_F32, 4, skv, 0, 1, 71),
                  *v = lmc_random_normal(LMC_F32, 4, skv, 0, 1, 72);
        for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) {
            lmc_cpu_path_set((lmc_cpu_path)p);
            lmc_sdpa_params sp = lmc_sdpa_params_default(0.125f);
            sp.causal = true;
            lmc_array *good = lmc_sdpa(q, k, v, &sp);
            lmc_scratch_fail_for_testing(LMC_SCRATCH_SDPA);
            lmc_array *bad = lmc_sdpa(q, k, v, &sp);
            lmc_scratch_fail_for_testing(-1);
            CHECKF(!bad && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY, "path %s Tq %d: %s", lmc_cpu_path_name((lmc_cpu_path)p), tq,
                   bad ? "no error" : lmc_last_error());
            lmc_array *again = lmc_sdpa(q, k, v, &sp);
            CHECK(good && again && !memcmp(lmc_array_data(good), lmc_array_data(again), (size_t)(4 * tq * 64) * sizeof(float)));
            lmc_array_free(good);
            lmc_array_free(bad);
            lmc_array_free(again);
        }
        lmc_cpu_path_set(lmc_cpu_path_max());
        lmc_array_free(q);
        lmc_array_free(k);
        lmc_array_free(v);
    }
}

/* --- fused sequences (ops/fusion.h): on the CPU, their parts ------------------- */

/* Bit for bit the same f32 values (on the path each_path is running). */
static void same_bits(const lmc_array *got, const lmc_array *want, const char *what) {
    const char *path = lmc_cpu_path_name(lmc_cpu_path_active());
    CHECKF(got && want, "%s [%s]: %s", what, path, lmc_last_error());
    if (!got || !want) return;
    CHECKF(got->ndim == want->ndim && got->size == want->size, "%s [%s]: shapes differ", what, path);
    if (got->size != want->size) return;
    for (int d = 0; d < got->ndim; d++) CHECKF(got->shape[d] == want->shape[d], "%s [%s]: axis %d differs", what, path, d);
    float *g = read_f32(got), *w = read_f32(want);
    CHECKF(!memcmp(g, w, (size_t)got->size * sizeof(float)), "%s [%s]: values differ", what, path);
    free(g);
    free(w);
}

static void fusion_add_rms_norm(void) {
    int64_t s[3] = {3, 5, 64}, sw[1] = {64}, bad[3] = {3, 5, 63};
    lmc_array *a = rnd(LMC_F32, 3, s), *b = rnd(LMC_F32, 3, s), *w = rnd(LMC_BF16, 1, sw), *c = rnd(LMC_F32, 3, bad);
    for (int onep = 0; onep < 2; onep++) {
        lmc_array *sum = NULL, *out = lmc_add_rms_norm(a, b, w, 1e-6f, onep, &sum);
        lmc_array *want_sum = lmc_add(a, b), *want = lmc_rms_norm(want_sum, w, 1e-6f, onep);
        same_bits(sum, want_sum, "add_rms_norm: sum");
        same_bits(out, want, "add_rms_norm: out");
        lmc_array *arr[] = {sum, out, want_sum, want};
        for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
    }
    /* the parts' errors, nothing returned */
    lmc_array *sum = (lmc_array *)a;
    CHECK(lmc_add_rms_norm(a, c, w, 1e-6f, false, &sum) == NULL && sum == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_add_rms_norm(c, c, w, 1e-6f, false, &sum) == NULL && sum == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "rms_norm"), "%s", lmc_last_error());
    CHECK(lmc_add_rms_norm(a, NULL, w, 1e-6f, false, &sum) == NULL && sum == NULL);
    lmc_clear_error();
    lmc_array *arr[] = {a, b, w, c};
    for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
}

static void fusion_rope_qk(void) {
    /* q, k as [B, H, T, D] views of [B, T, H, D] buffers, as after the projections */
    int64_t sq[4] = {2, 3, 4, 32}, sk[4] = {2, 3, 2, 32}, sw[1] = {32}, sp[2] = {2, 3};
    lmc_array *rq = rnd(LMC_F32, 4, sq), *rk = rnd(LMC_F32, 4, sk);
    lmc_array *q = lmc_swapaxes(rq, 1, 2), *k = lmc_swapaxes(rk, 1, 2);
    lmc_array *wq = rnd(LMC_BF16, 1, sw), *wk = rnd(LMC_F32, 1, sw);
    lmc_array *pos = lmc_array_new(LMC_I32, 2, sp, LMC_CPU);
    int32_t *pv = lmc_array_ptr(pos);
    for (int i = 0; i < 6; i++) pv[i] = (i * 13) % 50;
    lmc_rope_params rp = lmc_rope_params_default(24, 10000.0f); /* 8 features copied */
    /* a model's own frequencies (the one-pass kernel takes only those, with positions) */
    int64_t sf[1] = {12};
    lmc_array *inv = lmc_array_new(LMC_F32, 1, sf, LMC_CPU);
    for (int i = 0; i < 12; i++) ((float *)lmc_array_ptr(inv))[i] = 1.0f / powf(10000.0f, (float)(2 * i) / 24.0f);
    for (int own = 0; own < 2; own++)
    for (int norm = 0; norm < 2; norm++)
        for (int use_pos = 0; use_pos < 2; use_pos++) {
            rp.inv_freqs = own ? inv : NULL;
            lmc_array *qo = NULL, *ko = NULL;
            const lmc_array *P = use_pos ? pos : NULL;
            CHECKF(lmc_rope_qk(q, k, norm, wq, wk, 1e-6f, true, &rp, P, 9, &qo, &ko) == LMC_OK, "%s", lmc_last_error());
            lmc_array *nq = norm ? lmc_rms_norm(q, wq, 1e-6f, true) : lmc_array_retain(q);
            lmc_array *nk = norm ? lmc_rms_norm(k, wk, 1e-6f, true) : lmc_array_retain(k);
            lmc_array *eq = P ? lmc_rope_positions(nq, &rp, P) : lmc_rope(nq, &rp, 9);
            lmc_array *ek = P ? lmc_rope_positions(nk, &rp, P) : lmc_rope(nk, &rp, 9);
            char what[64];
            snprintf(what, sizeof what, "rope_qk own %d norm %d positions %d: q", own, norm, use_pos);
            same_bits(qo, eq, what);
            what[strlen(what) - 1] = 'k';
            same_bits(ko, ek, what);
            lmc_array *arr[] = {qo, ko, nq, nk, eq, ek};
            for (int i = 0; i < 6; i++) lmc_array_free(arr[i]);
        }
    rp.inv_freqs = NULL;
    lmc_array_free(inv);
    /* errors come from the parts; the outputs are NULL */
    lmc_array *qo = (lmc_array *)q, *ko = (lmc_array *)k;
    rp.dims = 40;
    CHECK(lmc_rope_qk(q, k, true, wq, wk, 1e-6f, false, &rp, NULL, 0, &qo, &ko) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(qo == NULL && ko == NULL);
    rp.dims = 24;
    CHECK(lmc_rope_qk(q, k, true, wq, pos, 1e-6f, false, &rp, NULL, 0, &qo, &ko) == LMC_ERR_SHAPE && !qo && !ko);
    /* outputs may be the inputs' own variables */
    lmc_array *q2 = lmc_array_retain(q), *k2 = lmc_array_retain(k), *q_in = q2, *k_in = k2;
    CHECK(lmc_rope_qk(q2, k2, false, NULL, NULL, 0.0f, false, &rp, NULL, 3, &q2, &k2) == LMC_OK);
    lmc_array *eq = lmc_rope(q_in, &rp, 3), *ek = lmc_rope(k_in, &rp, 3);
    same_bits(q2, eq, "rope_qk into its inputs' variables: q");
    same_bits(k2, ek, "rope_qk into its inputs' variables: k");
    lmc_array *arr[] = {rq, rk, q, k, wq, wk, pos, q2, k2, q_in, k_in, eq, ek};
    for (int i = 0; i < 13; i++) lmc_array_free(arr[i]);
}

static void fusion_gated_act(void) {
    /* 3 x 8192: the threads share it (from 4096 elements on) */
    int64_t big[2] = {3, 8192};
    lmc_array *bg = rnd(LMC_F32, 2, big), *bu = rnd(LMC_F32, 2, big);
    lmc_array *bgot = lmc_gated_act(LMC_UNARY_SILU, bg, bu), *ba = lmc_silu(bg), *bwant = lmc_mul(ba, bu);
    same_bits(bgot, bwant, "gated_act 3 x 8192");
    lmc_array *barr[] = {bg, bu, bgot, ba, bwant};
    for (int j = 0; j < 5; j++) lmc_array_free(barr[j]);
    int64_t s[2] = {7, 96}, s2[2] = {7, 95};
    lmc_array *g = rnd(LMC_F32, 2, s), *u = rnd(LMC_F32, 2, s), *v = rnd(LMC_F32, 2, s2);
    lmc_unary_op acts[3] = {LMC_UNARY_SILU, LMC_UNARY_GELU, LMC_UNARY_GELU_TANH};
    lmc_array *(*parts[3])(const lmc_array *) = {lmc_silu, lmc_gelu, lmc_gelu_tanh};
    for (int i = 0; i < 3; i++) {
        lmc_array *got = lmc_gated_act(acts[i], g, u), *a = parts[i](g), *want = lmc_mul(a, u);
        same_bits(got, want, "gated_act");
        lmc_array *arr[] = {got, a, want};
        for (int j = 0; j < 3; j++) lmc_array_free(arr[j]);
    }
    CHECK(lmc_gated_act(LMC_UNARY_EXP, g, u) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "silu"), "%s", lmc_last_error());
    CHECK(lmc_gated_act(LMC_UNARY_SILU, g, v) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(lmc_gated_act(LMC_UNARY_SILU, NULL, u) == NULL && lmc_last_status() != LMC_OK);
    lmc_clear_error();
    lmc_array *arr[] = {g, u, v};
    for (int i = 0; i < 3; i++) lmc_array_free(arr[i]);
}

/* A fused sequence on every kernel path: the scalar table runs the parts,
 * the fast paths (AVX2, AVX-512) their one-pass kernels. */
static void each_path(void (*fn)(void)) {
    for (int p = 0; p <= (int)lmc_cpu_path_max(); p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        fn();
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
}
static void test_fusion_add_rms_norm(void) { each_path(fusion_add_rms_norm); }
static void test_fusion_rope_qk(void) { each_path(fusion_rope_qk); }
static void test_fusion_gated_act(void) { each_path(fusion_gated_act); }

static void test_fusion_write_slices(void) {
    int64_t sd[4] = {2, 3, 10, 8}, ss[4] = {2, 3, 2, 8}, sv[4] = {2, 2, 3, 8}, bad[4] = {2, 3, 9, 8};
    lmc_array *dk = lmc_zeros(LMC_F32, 4, sd), *dv = lmc_zeros(LMC_BF16, 4, sd), *ek = lmc_zeros(LMC_F32, 4, sd),
              *ev = lmc_zeros(LMC_BF16, 4, sd);
    lmc_array *k = rnd(LMC_F32, 4, ss), *rv = rnd(LMC_F32, 4, sv), *v = lmc_swapaxes(rv, 1, 2), *big = rnd(LMC_F32, 4, bad);
    int64_t at[4] = {0, 0, 7, 0};
    lmc_array *dst[2] = {dk, dv};
    const lmc_array *src[2] = {k, v};
    CHECKF(lmc_write_slices(2, dst, at, src) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_write_slice(ek, at, k) == LMC_OK && lmc_write_slice(ev, at, v) == LMC_OK);
    same_bits(dk, ek, "write_slices: keys");
    same_bits(dv, ev, "write_slices: values (to bf16)");
    CHECK(lmc_write_slices(0, dst, at, src) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_write_slices(LMC_COPY_MANY_MAX + 1, dst, at, src) == LMC_ERR_INVALID_ARGUMENT);
    at[2] = 9; /* does not fit: named, nothing written */
    CHECK(lmc_write_slices(2, dst, at, src) == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "write_slice") && strstr(lmc_last_error(), "does not fit"), "%s", lmc_last_error());
    same_bits(dk, ek, "write_slices: nothing written on error");
    const lmc_array *src_bad[2] = {k, big};
    at[2] = 2; /* the first fits, the second does not: neither is written */
    CHECK(lmc_write_slices(2, dst, at, src_bad) == LMC_ERR_SHAPE);
    same_bits(dk, ek, "write_slices: the first not written when the second fails");
    lmc_array *arr[] = {dk, dv, ek, ev, k, rv, v, big};
    for (int i = 0; i < 8; i++) lmc_array_free(arr[i]);
}

/* Under a tape the fused sequences are their parts: gradients reach every input. */
static lmc_array *fused_loss(void *ctx, int n, lmc_array *const *in) {
    (void)n;
    const lmc_array *w = ctx;
    lmc_array *sum = NULL, *x = lmc_add_rms_norm(in[0], in[1], w, 1e-6f, false, &sum);
    lmc_array *y = lmc_gated_act(LMC_UNARY_SILU, x, sum);
    lmc_array *l = lmc_sum(y, LMC_ALL_AXES, false);
    lmc_array_free(sum);
    lmc_array_free(x);
    lmc_array_free(y);
    return l;
}

static lmc_array *parts_loss(void *ctx, int n, lmc_array *const *in) {
    (void)n;
    const lmc_array *w = ctx;
    lmc_array *sum = lmc_add(in[0], in[1]), *x = lmc_rms_norm(sum, w, 1e-6f, false), *s = lmc_silu(x);
    lmc_array *y = lmc_mul(s, sum);
    lmc_array *l = lmc_sum(y, LMC_ALL_AXES, false);
    lmc_array *arr[] = {sum, x, s, y};
    for (int i = 0; i < 4; i++) lmc_array_free(arr[i]);
    return l;
}

static void test_fusion_grad(void) {
    int64_t s[2] = {3, 16}, sw[1] = {16};
    lmc_array *a = rnd(LMC_F32, 2, s), *b = rnd(LMC_F32, 2, s), *w = rnd(LMC_F32, 1, sw);
    lmc_array *in[2] = {a, b}, *v1 = NULL, *v2 = NULL, *g1[2] = {0}, *g2[2] = {0};
    CHECKF(lmc_value_and_grad(fused_loss, w, 2, in, &v1, g1) == LMC_OK, "%s", lmc_last_error());
    CHECKF(lmc_value_and_grad(parts_loss, w, 2, in, &v2, g2) == LMC_OK, "%s", lmc_last_error());
    same_bits(v1, v2, "fused loss");
    same_bits(g1[0], g2[0], "fused grad a");
    same_bits(g1[1], g2[1], "fused grad b");
    lmc_array *arr[] = {a, b, w, v1, v2, g1[0], g1[1], g2[0], g2[1]};
    for (int i = 0; i < 9; i++) lmc_array_free(arr[i]);
}

int main(void) {
    RUN(test_norm_hand);
    RUN(test_rope_hand);
    RUN(test_sdpa_hand);
    RUN(test_masks_brute_force);
    RUN(test_errors);
    RUN(test_norms_random);
    RUN(test_rope_random);
    RUN(test_rope_tables_kept);
    RUN(test_sdpa_random);
    RUN(test_sdpa_no_scratch);
    RUN(test_fusion_add_rms_norm);
    RUN(test_fusion_rope_qk);
    RUN(test_fusion_gated_act);
    RUN(test_fusion_write_slices);
    RUN(test_fusion_grad);
    CHECK(lmc_live_arrays() == 0);
    return TEST_REPORT();
}
