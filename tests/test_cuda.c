/* The CUDA backend.
 *
 * Without a usable GPU (every CI run, and builds without -DLMC_CUDA=ON) this
 * checks that asking for the device fails cleanly, naming why. With one (the
 * GPU machine: scripts/cuda_check.sh), every kernel of the CUDA table is
 * compared with the CPU on random inputs of awkward shapes and layouts, and
 * every golden model is run on both backends: logits within 1e-4 relative
 * of the CPU's, the same greedy tokens, batch generation and the prompt
 * cache included. */
#include <stdio.h>
#include <string.h>

#include "lmc/model.h"
#include "backend/kernels.h"
#include "ops/fusion.h"
#include "ops/linalg_internal.h"
#include "ops/quant_internal.h"
#include "runtime/model_internal.h"
#include "model_fixture.h"
#include "ops_check.h"

static const char *const MODELS[] = {"llama", "llama_mlx4", "qwen2", "qwen2_mlx4", "qwen3", "qwen3_mlx4",
                                     "gemma3", "gemma3_mlx4", "gemma3_softcap", "gemma3_softcap_mlx4"};

/* --- no GPU -------------------------------------------------------------- */

static void test_unavailable(void) {
    int64_t shape[2] = {2, 3};
    lmc_array *a = lmc_zeros(LMC_F32, 2, shape);
    lmc_array *g = lmc_array_to(a, LMC_CUDA);
    CHECK(g == NULL);
    CHECK(lmc_last_status() == LMC_ERR_UNSUPPORTED);
    const char *msg = lmc_last_error();
    CHECKF(strstr(msg, "LMC_CUDA=ON") || strstr(msg, "no CUDA device"), "message: %s", msg);
    CHECK(!lmc_device_available(LMC_CUDA));
    CHECK(lmc_device_available(LMC_CPU));
    CHECK(!lmc_device_available((lmc_device)7));
    /* to the device it is on: the same array; to no device: an error */
    lmc_array *same = lmc_array_to(a, LMC_CPU);
    CHECK(same == a);
    lmc_array_free(same);
    CHECK(!lmc_array_to(a, (lmc_device)7) && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    lmc_clear_error();
    CHECK(!lmc_array_to(NULL, LMC_CPU) && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(!lmc_backend_available("cuda"));
    bool listed = false;
    for (const char *const *b = lmc_backends(); *b; b++) listed = listed || !strcmp(*b, "cuda");
    CHECK(listed);
    char *dir = model_fixture_dir("qwen3");
    lmc_load_options o = lmc_load_options_default();
    o.backend = "cuda";
    lmc_model *m = NULL;
    CHECK(dir && lmc_model_load(dir, &o, &m) == LMC_ERR_UNSUPPORTED && !m);
    CHECKF(strstr(lmc_last_error(), "backend \"cuda\" is not available"), "message: %s", lmc_last_error());
    model_fixture_cleanup(dir);
    lmc_array_free(a);
}

/* --- kernels against the CPU ------------------------------------------------ */

/* The same op on the CPU array and on its device copy, compared on the host. */
static bool same(const lmc_array *cpu, const lmc_array *gpu, double atol, double rtol, const char *what) {
    lmc_array *back = gpu ? lmc_array_to(gpu, LMC_CPU) : NULL;
    if (gpu) CHECKF(lmc_array_device(gpu) == LMC_CUDA, "%s: result not on the GPU", what);
    bool ok = arrays_close(back, cpu, atol, rtol, what);
    lmc_array_free(back);
    return ok;
}

static lmc_array *dev(const lmc_array *a) { return lmc_array_to(a, LMC_CUDA); }

/* Two results on the GPU: the second compared with the first brought to the host. */
static bool same_on_gpu(const lmc_array *want, const lmc_array *got, double atol, double rtol, const char *what) {
    lmc_array *host = want ? lmc_array_to(want, LMC_CPU) : NULL;
    bool ok = same(host, got, atol, rtol, what);
    lmc_array_free(host);
    return ok;
}


static void test_round_trip(void) {
    lmc_dtype dts[] = {LMC_F32, LMC_F16, LMC_BF16, LMC_I32, LMC_U32, LMC_U8, LMC_BOOL};
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++)
        for (int view = 0; view < VIEW_COUNT; view++) {
            int64_t shape[3] = {3, 5, 7};
            lmc_array *a = rnd_array(dts[i], 3, shape, view, -50, 50);
            lmc_array *g = dev(a);
            char what[64];
            snprintf(what, sizeof what, "round trip %s %s", lmc_dtype_name(dts[i]), VIEW_NAMES[view]);
            same(a, g, 0, 0, what);
            lmc_array_free(a);
            lmc_array_free(g);
        }
    double item = 0;
    lmc_array *s = lmc_scalar(2.5, LMC_BF16), *gs = dev(s);
    CHECK(lmc_array_item(gs, &item) == LMC_OK && item == 2.5);
    lmc_array_free(s);
    lmc_array_free(gs);
}

static void test_elementwise(void) {
    lmc_array *(*unary[])(const lmc_array *) = {lmc_neg, lmc_abs, lmc_exp, lmc_sqrt, lmc_square, lmc_sin, lmc_cos,
                                                 lmc_tanh, lmc_sigmoid, lmc_silu, lmc_gelu, lmc_gelu_tanh};
    for (int view = 0; view < VIEW_COUNT; view++)
        for (size_t u = 0; u < sizeof unary / sizeof *unary; u++) {
            int64_t shape[3] = {4, 3, 33};
            lmc_array *a = rnd_array(u == 3 ? LMC_BF16 : LMC_F32, 3, shape, view, u == 3 ? 0.1 : -4, 4);
            lmc_array *g = dev(a), *rc = unary[u](a), *rg = unary[u](g);
            char what[64];
            snprintf(what, sizeof what, "unary %zu %s", u, VIEW_NAMES[view]);
            same(rc, rg, 1e-6, 1e-5, what);
            lmc_array_free(a), lmc_array_free(g), lmc_array_free(rc), lmc_array_free(rg);
        }
    lmc_array *(*binary[])(const lmc_array *, const lmc_array *) = {lmc_add, lmc_sub, lmc_mul, lmc_div,
                                                                     lmc_maximum, lmc_minimum, lmc_less, lmc_equal};
    for (size_t b = 0; b < sizeof binary / sizeof *binary; b++)
        for (int view = 0; view < VIEW_COUNT; view++) {
            int64_t sa[3] = {5, 1, 17}, sb[2] = {6, 17};
            lmc_array *a = rnd_array(LMC_F32, 3, sa, view, -3, 3), *c = rnd_array(b % 2 ? LMC_BF16 : LMC_F32, 2, sb, 0, 0.5, 3);
            lmc_array *ga = dev(a), *gc = dev(c), *rc = binary[b](a, c), *rg = binary[b](ga, gc);
            char what[64];
            snprintf(what, sizeof what, "binary %zu %s", b, VIEW_NAMES[view]);
            same(rc, rg, 1e-6, 1e-6, what);
            lmc_array_free(a), lmc_array_free(c), lmc_array_free(ga), lmc_array_free(gc), lmc_array_free(rc), lmc_array_free(rg);
        }
    int64_t shape[2] = {7, 9};
    lmc_array *x = rnd_array(LMC_F32, 2, shape, VIEW_TRANSPOSED, -2, 2), *gx = dev(x);
    lmc_array *m1 = lmc_mul_scalar(x, 0.37), *m2 = lmc_mul_scalar(gx, 0.37);
    same(m1, m2, 0, 1e-7, "mul_scalar");
    lmc_array *c1 = lmc_astype(x, LMC_BF16), *c2 = lmc_astype(gx, LMC_BF16);
    same(c1, c2, 0, 0, "astype bf16");
    lmc_array *z = lmc_zeros(LMC_F32, 2, shape), *gz = dev(z);
    lmc_array *cond1 = lmc_greater(x, z), *cond2 = lmc_greater(gx, gz);
    lmc_array *w1 = lmc_where(cond1, x, m1), *w2 = lmc_where(cond2, gx, m2);
    same(w1, w2, 0, 1e-7, "where");
    lmc_array *arr[] = {x, gx, m1, m2, c1, c2, z, gz, cond1, cond2, w1, w2};
    for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
}

static void test_reduce_softmax(void) {
    for (int view = 0; view < VIEW_COUNT; view++)
        for (int axis = 0; axis < 3; axis++) {
            int64_t shape[3] = {3, 300, 5};
            lmc_array *a = rnd_array(LMC_F32, 3, shape, view, -5, 5), *g = dev(a);
            lmc_array *(*red[])(const lmc_array *, int, bool) = {lmc_sum, lmc_mean, lmc_max, lmc_min, lmc_logsumexp};
            for (size_t r = 0; r < sizeof red / sizeof *red; r++) {
                lmc_array *rc = red[r](a, axis, false), *rg = red[r](g, axis, false);
                char what[64];
                snprintf(what, sizeof what, "reduce %zu axis %d %s", r, axis, VIEW_NAMES[view]);
                same(rc, rg, 1e-5, 1e-5, what);
                lmc_array_free(rc), lmc_array_free(rg);
            }
            lmc_array *am = lmc_argmax(a, axis, false), *gm = lmc_argmax(g, axis, false);
            same(am, gm, 0, 0, "argmax");
            lmc_array *an = lmc_argmin(a, axis, false), *gn = lmc_argmin(g, axis, false);
            same(an, gn, 0, 0, "argmin");
            lmc_array *sc = lmc_softmax(a, axis), *sg = lmc_softmax(g, axis);
            same(sc, sg, 1e-7, 1e-5, "softmax");
            lmc_array *lc = lmc_log_softmax(a, axis), *lg = lmc_log_softmax(g, axis);
            same(lc, lg, 1e-5, 1e-5, "log_softmax");
            lmc_array *arr[] = {a, g, am, gm, an, gn, sc, sg, lc, lg};
            for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
        }
}

static void test_take(void) {
    int64_t shape[3] = {6, 10, 4}, ni = 5;
    int32_t ids[5] = {3, -1, 0, 9, 3};
    lmc_array *a = rnd_array(LMC_BF16, 3, shape, VIEW_STEPPED, -5, 5), *g = dev(a);
    lmc_array *idx = lmc_array_from_data(ids, LMC_I32, 1, &ni), *gidx = dev(idx);
    lmc_array *tc = lmc_take(a, idx, 1), *tg = lmc_take(g, gidx, 1);
    same(tc, tg, 0, 0, "take axis 1");
    int32_t bad[1] = {10};
    int64_t one = 1;
    lmc_array *bidx = lmc_array_from_data(bad, LMC_I32, 1, &one), *gb = dev(bidx);
    lmc_array *tb = lmc_take(g, gb, 1);
    CHECK(!tb && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "index 10"));
    lmc_array *arr[] = {a, g, idx, gidx, tc, tg, bidx, gb};
    for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
}

static void test_matmul(void) {
    /* M <= 8 with K a multiple of 8 takes the GEMV kernel, the rest cuBLAS */
    int64_t sizes[][3] = {{1, 64, 96}, {5, 33, 17}, {8, 1024, 3000}, {3, 200, 77}, {64, 128, 256}, {130, 72, 200}};
    lmc_dtype wdt[] = {LMC_F32, LMC_BF16, LMC_F16};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t w = 0; w < 3; w++) {
            int64_t M = sizes[s][0], K = sizes[s][1], N = sizes[s][2];
            int64_t xs[2] = {M, K}, ws[2] = {N, K};
            lmc_array *x = rnd_array(LMC_F32, 2, xs, 0, -1, 1), *W = rnd_array(wdt[w], 2, ws, 0, -1, 1);
            lmc_array *gx = dev(x), *gw = dev(W);
            lmc_array *wt = lmc_transpose(W), *gwt = lmc_transpose(gw);
            lmc_array *rc = lmc_matmul(x, wt), *rg = lmc_matmul(gx, gwt);
            char what[80];
            snprintf(what, sizeof what, "matmul x @ W^T %lldx%lldx%lld %s", (long long)M, (long long)K, (long long)N,
                     lmc_dtype_name(wdt[w]));
            /* outputs are O(1): the split x keeps ~16 bits, so errors are ~1e-5 of that scale */
            same(rc, rg, 1e-4, 1e-4, what);
            lmc_array *arr[] = {x, W, gx, gw, wt, gwt, rc, rg};
            for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
        }
    /* batched, broadcast batch, strided operands, 16-bit x 16-bit */
    int64_t as[4] = {2, 3, 9, 16}, bs[3] = {3, 16, 11};
    lmc_dtype dts[] = {LMC_F32, LMC_BF16};
    for (int view = 0; view < VIEW_COUNT; view++)
        for (int d = 0; d < 2; d++) {
            lmc_array *a = rnd_array(dts[d], 4, as, view, -1, 1), *b = rnd_array(dts[d], 3, bs, view == 1 ? 1 : 0, -1, 1);
            lmc_array *ga = dev(a), *gb = dev(b), *rc = lmc_matmul(a, b), *rg = lmc_matmul(ga, gb);
            char what[64];
            snprintf(what, sizeof what, "batched matmul %s %s", lmc_dtype_name(dts[d]), VIEW_NAMES[view]);
            same(rc, rg, 1e-5, d ? 1e-2 : 1e-4, what);
            lmc_array *arr[] = {a, b, ga, gb, rc, rg};
            for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
        }
}

static void test_norms_rope(void) {
    for (int view = 0; view < 3; view++) {
        int64_t shape[3] = {2, 7, 96}, ws = 96;
        lmc_array *x = rnd_array(LMC_F32, 3, shape, view, -3, 3), *w = rnd_array(LMC_BF16, 1, &ws, 0, -1, 1);
        lmc_array *b = rnd_array(LMC_F32, 1, &ws, 0, -1, 1);
        lmc_array *gx = dev(x), *gw = dev(w), *gb = dev(b);
        lmc_array *r1 = lmc_rms_norm(x, w, 1e-6f, false), *r2 = lmc_rms_norm(gx, gw, 1e-6f, false);
        same(r1, r2, 1e-6, 1e-5, "rms_norm");
        lmc_array *o1 = lmc_rms_norm(x, w, 1e-6f, true), *o2 = lmc_rms_norm(gx, gw, 1e-6f, true);
        same(o1, o2, 1e-6, 1e-5, "rms_norm one_plus");
        lmc_array *l1 = lmc_layer_norm(x, w, b, 1e-5f), *l2 = lmc_layer_norm(gx, gw, gb, 1e-5f);
        same(l1, l2, 1e-5, 1e-5, "layer_norm");
        lmc_array *arr[] = {x, w, b, gx, gw, gb, r1, r2, o1, o2, l1, l2};
        for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
    }
    for (int trad = 0; trad < 2; trad++) {
        int64_t shape[4] = {2, 3, 9, 64};
        lmc_array *x = rnd_array(LMC_F32, 4, shape, trad ? VIEW_TRANSPOSED : 0, -2, 2), *gx = dev(x);
        lmc_rope_params p = lmc_rope_params_default(48, 10000.0f);
        p.traditional = trad;
        p.scale = trad ? 0.5f : 1.0f;
        lmc_array *r1 = lmc_rope(x, &p, 17), *r2 = lmc_rope(gx, &p, 17);
        same(r1, r2, 1e-5, 1e-5, "rope offset");
        int32_t pos[18];
        for (int i = 0; i < 18; i++) pos[i] = (i * 37) % 500;
        int64_t ps[2] = {2, 9};
        lmc_array *P = lmc_array_from_data(pos, LMC_I32, 2, ps);
        lmc_array *q1 = lmc_rope_positions(x, &p, P), *q2 = lmc_rope_positions(gx, &p, P); /* P on the host */
        same(q1, q2, 1e-5, 1e-5, "rope positions");
        lmc_array *arr[] = {x, gx, r1, r2, P, q1, q2};
        for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
    }
}

/* The fused sequences (ops/fusion.h) are one launch here: bit for bit what
 * their parts give on the GPU, and close to the CPU's parts. */
static void test_fused(void) {
    const lmc_kernels *kt = lmc_kernels_for(LMC_CUDA);
    CHECK(kt && kt->add_rms_norm && kt->rope_qk && kt->gated_act && kt->copy_many);
    static const int64_t Ds[] = {96, 1152, 5000};
    for (int di = 0; di < 3; di++)
        for (int variant = 0; variant < 3; variant++) { /* weight, one_plus weight, none */
            int64_t s[3] = {2, 7, Ds[di]}, sw = Ds[di];
            lmc_array *a = rnd_array(LMC_F32, 3, s, 0, -3, 3), *b = rnd_array(LMC_F32, 3, s, VIEW_TRANSPOSED, -3, 3);
            lmc_array *w = variant < 2 ? rnd_array(LMC_BF16, 1, &sw, 0, -1, 1) : NULL;
            lmc_array *ga = dev(a), *gb = dev(b), *gw = w ? dev(w) : NULL;
            bool onep = variant == 1;
            lmc_array *gsum = NULL, *gout = lmc_add_rms_norm(ga, gb, gw, 1e-6f, onep, &gsum);
            lmc_array *psum = lmc_add(ga, gb), *pout = lmc_rms_norm(psum, gw, 1e-6f, onep);
            lmc_array *csum = lmc_add(a, b), *cout = lmc_rms_norm(csum, w, 1e-6f, onep);
            char what[96];
            snprintf(what, sizeof what, "add_rms_norm D=%lld variant %d", (long long)Ds[di], variant);
            same_on_gpu(psum, gsum, 0, 0, what);
            same_on_gpu(pout, gout, 0, 0, what);
            same(csum, gsum, 0, 0, what);
            same(cout, gout, 1e-6, 1e-5, what);
            lmc_array *arr[] = {a, b, w, ga, gb, gw, gsum, gout, psum, pout, csum, cout};
            for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
        }
    for (int variant = 0; variant < 4; variant++) { /* norm x positions [T] / [B, T] / offset, traditional, D */
        bool norm = variant != 1, trad = variant == 2;
        int64_t D = variant == 3 ? 256 : 64;
        int64_t sq[4] = {2, 5, 4, D}, sk[4] = {2, 5, 2, D}, sw = D;
        /* [B, T, H, D] buffers seen as [B, H, T, D], as after the projections */
        lmc_array *rq = rnd_array(LMC_F32, 4, sq, 0, -2, 2), *rk = rnd_array(LMC_F32, 4, sk, 0, -2, 2);
        lmc_array *q = lmc_swapaxes(rq, 1, 2), *k = lmc_swapaxes(rk, 1, 2);
        lmc_array *wq = rnd_array(LMC_BF16, 1, &sw, 0, -1, 1), *wk = rnd_array(LMC_F32, 1, &sw, 0, -1, 1);
        lmc_array *gq = dev(q), *gk = dev(k), *gwq = dev(wq), *gwk = dev(wk);
        int32_t pv[10];
        for (int i = 0; i < 10; i++) pv[i] = (i * 37) % 400;
        int64_t ps[2] = {2, 5};
        lmc_array *P = variant == 2 ? lmc_array_from_data(pv, LMC_I32, 1, ps + 1) : lmc_array_from_data(pv, LMC_I32, 2, ps);
        lmc_array *gP = dev(P);
        lmc_rope_params rp = lmc_rope_params_default(variant == 0 ? 48 : (int)D, 10000.0f);
        rp.traditional = trad;
        rp.scale = variant == 1 ? 0.5f : 1.0f;
        lmc_array *invh = lmc_array_new(LMC_F32, 1, (int64_t[]){rp.dims / 2}, LMC_CPU);
        float *fv = lmc_array_data(invh);
        for (int i = 0; i < rp.dims / 2; i++) fv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)rp.dims);
        lmc_array *ginv = dev(invh);
        rp.inv_freqs = ginv;
        lmc_array *fq = NULL, *fk = NULL;
        CHECKF(lmc_rope_qk(gq, gk, norm, gwq, gwk, 1e-6f, variant == 3, &rp, gP, 0, &fq, &fk) == LMC_OK, "%s",
               lmc_last_error());
        lmc_array *nq = norm ? lmc_rms_norm(gq, gwq, 1e-6f, variant == 3) : lmc_array_retain(gq);
        lmc_array *nk = norm ? lmc_rms_norm(gk, gwk, 1e-6f, variant == 3) : lmc_array_retain(gk);
        lmc_array *pq = lmc_rope_positions(nq, &rp, gP), *pk = lmc_rope_positions(nk, &rp, gP);
        rp.inv_freqs = invh;
        lmc_array *cq0 = norm ? lmc_rms_norm(q, wq, 1e-6f, variant == 3) : lmc_array_retain(q);
        lmc_array *ck0 = norm ? lmc_rms_norm(k, wk, 1e-6f, variant == 3) : lmc_array_retain(k);
        lmc_array *cq = lmc_rope_positions(cq0, &rp, P), *ck = lmc_rope_positions(ck0, &rp, P);
        char what[64];
        snprintf(what, sizeof what, "rope_qk variant %d", variant);
        same_on_gpu(pq, fq, 0, 0, what);
        same_on_gpu(pk, fk, 0, 0, what);
        same(cq, fq, 1e-5, 1e-5, what);
        same(ck, fk, 1e-5, 1e-5, what);
        lmc_array *arr[] = {rq, rk, q, k, wq, wk, gq, gk, gwq, gwk, P, gP, invh, ginv, fq, fk, nq, nk, pq, pk,
                            cq0, ck0, cq, ck};
        for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
    }
    for (int cache_bf16 = 0; cache_bf16 < 2; cache_bf16++) { /* a layer's keys and values into its cache */
        int64_t sd[4] = {2, 3, 40, 64}, ss[4] = {2, 3, 5, 64}, sv[4] = {2, 5, 3, 64}, at[4] = {0, 0, 31, 0};
        lmc_dtype cdt = cache_bf16 ? LMC_BF16 : LMC_F32;
        lmc_array *ck = lmc_zeros(cdt, 4, sd), *cv = lmc_zeros(cdt, 4, sd);
        lmc_array *k = rnd_array(LMC_F32, 4, ss, 0, -2, 2), *rv = rnd_array(LMC_F32, 4, sv, 0, -2, 2);
        lmc_array *v = lmc_swapaxes(rv, 1, 2);
        lmc_array *gk = dev(ck), *gv = dev(cv), *gsk = dev(k), *gsv0 = dev(rv), *gsv = lmc_swapaxes(gsv0, 1, 2);
        lmc_array *hd[2] = {ck, cv}, *gd[2] = {gk, gv};
        const lmc_array *hs[2] = {k, v}, *gs[2] = {gsk, gsv};
        CHECK(lmc_write_slices(2, hd, at, hs) == LMC_OK);
        CHECKF(lmc_write_slices(2, gd, at, gs) == LMC_OK, "%s", lmc_last_error());
        same(ck, gk, 0, 0, "write_slices: keys");
        same(cv, gv, 0, 0, "write_slices: values");
        lmc_array *arr[] = {ck, cv, k, rv, v, gk, gv, gsk, gsv0, gsv};
        for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
    }
    lmc_unary_op acts[3] = {LMC_UNARY_SILU, LMC_UNARY_GELU, LMC_UNARY_GELU_TANH};
    lmc_array *(*parts[3])(const lmc_array *) = {lmc_silu, lmc_gelu, lmc_gelu_tanh};
    for (int i = 0; i < 3; i++) {
        int64_t s[2] = {3, 333};
        lmc_array *g = rnd_array(LMC_F32, 2, s, 0, -6, 6), *u = rnd_array(LMC_F32, 2, s, VIEW_TRANSPOSED, -2, 2);
        lmc_array *gg = dev(g), *gu = dev(u);
        lmc_array *f = lmc_gated_act(acts[i], gg, gu), *pa = parts[i](gg), *p = lmc_mul(pa, gu);
        lmc_array *ca = parts[i](g), *c = lmc_mul(ca, u);
        same_on_gpu(p, f, 0, 0, "gated_act");
        same(c, f, 1e-6, 1e-5, "gated_act");
        lmc_array *arr[] = {g, u, gg, gu, f, pa, p, ca, c};
        for (size_t j = 0; j < sizeof arr / sizeof *arr; j++) lmc_array_free(arr[j]);
    }
}

static void test_sdpa(void) {
    /* B, Hq, Hkv, Tq, Tk, D, Dv, causal, window, mask (0 none, 1 bool, 2 additive), softcap, strided q */
    struct { int64_t B, Hq, Hkv, Tq, Tk, D, Dv; bool causal; int64_t window; int mask; float softcap; bool strided; } cases[] = {
        {1, 4, 2, 1, 37, 64, 64, true, 0, 0, 0, false},    {2, 8, 2, 1, 300, 128, 128, true, 0, 0, 0, true},
        {1, 4, 1, 17, 17, 64, 32, true, 0, 0, 0, true},    {2, 4, 4, 33, 70, 256, 256, true, 16, 0, 50.0f, false},
        {2, 2, 1, 9, 40, 128, 128, true, 0, 1, 0, false},  {1, 4, 2, 12, 12, 64, 64, false, 0, 2, 0, true},
        {1, 2, 2, 130, 130, 64, 64, true, 0, 0, 0, false}, {1, 2, 1, 5, 3, 64, 64, true, 0, 0, 0, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t qs[4] = {cases[c].B, cases[c].Hq, cases[c].Tq, cases[c].D};
        int64_t ks[4] = {cases[c].B, cases[c].Hkv, cases[c].Tk, cases[c].D}, vs[4] = {cases[c].B, cases[c].Hkv, cases[c].Tk, cases[c].Dv};
        lmc_array *q = rnd_array(LMC_F32, 4, qs, 0, -1, 1), *k = rnd_array(LMC_F32, 4, ks, 0, -1, 1),
                  *v = rnd_array(LMC_BF16, 4, vs, 0, -1, 1);
        if (cases[c].strided) { /* [B, T, H, D] seen as [B, H, T, D], as the decoder hands q over */
            int64_t ts[4] = {cases[c].B, cases[c].Tq, cases[c].Hq, cases[c].D};
            lmc_array *t = rnd_array(LMC_F32, 4, ts, 0, -1, 1);
            lmc_array_free(q);
            q = lmc_swapaxes(t, 1, 2);
            lmc_array_free(t);
        }
        lmc_array *mask = NULL;
        if (cases[c].mask) {
            int64_t ms[4] = {cases[c].B, 1, cases[c].Tq, cases[c].Tk};
            mask = cases[c].mask == 1 ? rnd_array(LMC_BOOL, 4, ms, 0, 0, 1) : rnd_array(LMC_F32, 4, ms, 0, -3, 0);
        }
        lmc_sdpa_params p = lmc_sdpa_params_default(1.0f / sqrtf((float)cases[c].D));
        p.causal = cases[c].causal;
        p.window = cases[c].window;
        p.softcap = cases[c].softcap;
        p.mask = mask;
        lmc_array *r1 = lmc_sdpa(q, k, v, &p);
        lmc_array *gq = dev(q), *gk = dev(k), *gv = dev(v), *gm = mask ? dev(mask) : NULL;
        p.mask = gm;
        lmc_array *r2 = lmc_sdpa(gq, gk, gv, &p);
        char what[64];
        snprintf(what, sizeof what, "sdpa case %zu", c);
        same(r1, r2, 1e-5, 1e-4, what);
        lmc_array *arr[] = {q, k, v, mask, r1, gq, gk, gv, gm, r2};
        for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
    }
}

static void test_quant(void) {
    int bits[] = {4, 8, 2, 3, 5, 6};
    int groups[] = {64, 32, 128};
    int64_t Ms[] = {1, 3, 8, 33};
    for (size_t b = 0; b < sizeof bits / sizeof *bits; b++)
        for (size_t gi = 0; gi < 3; gi++) {
            if (b >= 2 && gi) continue; /* the odd widths at one group size */
            int64_t N = 200, K = 384;
            int64_t ws[2] = {N, K};
            lmc_array *W = rnd_array(LMC_BF16, 2, ws, 0, -1, 1), *S = NULL, *B = NULL;
            lmc_array *wq = lmc_quantize(W, groups[gi], bits[b], &S, &B);
            lmc_array *gwq = dev(wq), *gs = dev(S), *gb = dev(B);
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                int64_t xs[2] = {Ms[mi], K};
                lmc_array *x = rnd_array(LMC_F32, 2, xs, 0, -1, 1), *gx = dev(x);
                lmc_array *r1 = lmc_quantized_matmul(x, wq, S, B, groups[gi], bits[b]);
                lmc_array *r2 = lmc_quantized_matmul(gx, gwq, gs, gb, groups[gi], bits[b]);
                char what[80];
                snprintf(what, sizeof what, "qmm %d bits group %d M %lld", bits[b], groups[gi], (long long)Ms[mi]);
                same(r1, r2, 1e-4, 1e-4, what);
                lmc_array_free(x), lmc_array_free(gx), lmc_array_free(r1), lmc_array_free(r2);
            }
            lmc_array *d1 = lmc_dequantize(wq, S, B, groups[gi], bits[b]), *d2 = lmc_dequantize(gwq, gs, gb, groups[gi], bits[b]);
            if (b < 2 && gi == 0) { /* a wide product (four rows a warp at decode) against the CPU and the narrow one */
                int64_t wide[2] = {b ? 20000 : 70000, K}, xs1[2] = {1, K}; /* four and sixteen rows a warp */
                lmc_array *Ww = rnd_array(LMC_BF16, 2, wide, 0, -1, 1), *Sw = NULL, *Bw = NULL;
                lmc_array *wqw = lmc_quantize(Ww, groups[gi], bits[b], &Sw, &Bw);
                lmc_array *gww = dev(wqw), *gsw = dev(Sw), *gbw = dev(Bw), *x = rnd_array(LMC_F32, 2, xs1, 0, -1, 1), *gx = dev(x);
                lmc_array *rw = lmc_quantized_matmul(gx, gww, gsw, gbw, groups[gi], bits[b]);
                lmc_array *cw = lmc_quantized_matmul(x, wqw, Sw, Bw, groups[gi], bits[b]);
                same(cw, rw, 1e-4, 1e-4, "qmm wide");
                lmc_array *gn = lmc_slice(gww, 0, 0, 200, 1), *gsn = lmc_slice(gsw, 0, 0, 200, 1), *gbn = lmc_slice(gbw, 0, 0, 200, 1);
                lmc_array *rn = lmc_quantized_matmul(gx, gn, gsn, gbn, groups[gi], bits[b]);
                lmc_array *rw200 = lmc_slice(rw, 1, 0, 200, 1), *rwc = lmc_contiguous(rw200);
                same_on_gpu(rwc, rn, 0, 0, "qmm narrow rows = wide rows");
                lmc_array *arr[] = {Ww, Sw, Bw, wqw, gww, gsw, gbw, x, gx, rw, cw, gn, gsn, gbn, rn, rw200, rwc};
                for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
            }
            same(d1, d2, 0, 0, "dequantize");
            lmc_array *arr[] = {W, S, B, wq, gwq, gs, gb, d1, d2};
            for (size_t i = 0; i < sizeof arr / sizeof *arr; i++) lmc_array_free(arr[i]);
        }
}

/* Products that share x (q, k, v) as one batch: on the GPU one launch at
 * decode, each result bit for bit what it is alone (the same kernel per
 * row); 8-bit and mixed bits and groups too (those launch one by one), and
 * M past the decode kernels (SGEMM). */
static void test_quant_many(void) {
    const int64_t K = 256, Ns[3] = {96, 32, 40};
    const int bits[2][3] = {{4, 4, 4}, {8, 4, 8}}, groups[2][3] = {{64, 64, 64}, {64, 32, 128}};
    const int64_t Ms[] = {1, 5, 9, 40};
    for (int c = 0; c < 2; c++) {
        lmc_array *wq[3], *S[3], *B[3], *gq[3], *gs[3], *gb[3];
        lmc_qmm_weights w[3];
        for (int i = 0; i < 3; i++) {
            int64_t ws[2] = {Ns[i], K};
            lmc_array *W = rnd_array(LMC_BF16, 2, ws, 0, -1, 1);
            wq[i] = lmc_quantize(W, groups[c][i], bits[c][i], &S[i], &B[i]);
            gq[i] = dev(wq[i]), gs[i] = dev(S[i]), gb[i] = dev(B[i]);
            w[i] = (lmc_qmm_weights){gq[i], gs[i], gb[i], groups[c][i], bits[c][i]};
            lmc_array_free(W);
        }
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int64_t xs[2] = {Ms[mi], K};
            lmc_array *x = rnd_array(LMC_F32, 2, xs, 0, -1, 1), *gx = dev(x), *many[3] = {0};
            CHECK(lmc_quantized_matmul_many(gx, 3, w, many) == LMC_OK);
            for (int i = 0; i < 3; i++) {
                lmc_array *alone = lmc_quantized_matmul(gx, gq[i], gs[i], gb[i], groups[c][i], bits[c][i]);
                lmc_array *cpu = lmc_quantized_matmul(x, wq[i], S[i], B[i], groups[c][i], bits[c][i]);
                char what[80];
                snprintf(what, sizeof what, "qmm many: case %d, product %d, M %lld", c, i, (long long)Ms[mi]);
                same(cpu, many[i], 1e-4, 1e-4, what);
                same_on_gpu(alone, many[i], 0, 0, what); /* bit for bit */
                lmc_array_free(alone), lmc_array_free(cpu), lmc_array_free(many[i]);
            }
            lmc_array_free(x), lmc_array_free(gx);
        }
        for (int i = 0; i < 3; i++) {
            lmc_array *arr[] = {wq[i], S[i], B[i], gq[i], gs[i], gb[i]};
            for (size_t k = 0; k < 6; k++) lmc_array_free(arr[k]);
        }
    }
}

/* Float products over one x in a batch (a layer's q, k and v): at decode
 * one GEMV launch, each result bit for bit what it is alone; a batch that
 * does not fit one launch (rows past the GEMV, mixed weight dtypes) runs
 * one by one, the same. */
static void test_matmul_many(void) {
    const int64_t K = 192, Ns[3] = {64, 24, 40};
    const lmc_dtype wdts[2][3] = {{LMC_BF16, LMC_BF16, LMC_BF16}, {LMC_BF16, LMC_F32, LMC_F16}};
    const int64_t Ms[] = {1, 3, 8, 40};
    for (int c = 0; c < 2; c++) {
        lmc_array *W[3], *gW[3], *gWt[3], *Wt[3];
        for (int i = 0; i < 3; i++) {
            int64_t ws[2] = {Ns[i], K};
            W[i] = rnd_array(wdts[c][i], 2, ws, 0, -1, 1);
            gW[i] = dev(W[i]);
            Wt[i] = lmc_transpose(W[i]);
            gWt[i] = lmc_transpose(gW[i]);
        }
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int64_t xs[2] = {Ms[mi], K};
            lmc_array *x = rnd_array(LMC_F32, 2, xs, 0, -1, 1), *gx = dev(x), *many[3];
            lmc_matmul_batch_begin(gx);
            for (int i = 0; i < 3; i++) many[i] = lmc_matmul(gx, gWt[i]);
            CHECK(lmc_matmul_batch_end(gx) == LMC_OK);
            for (int i = 0; i < 3; i++) {
                lmc_array *alone = lmc_matmul(gx, gWt[i]), *cpu = lmc_matmul(x, Wt[i]);
                char what[80];
                snprintf(what, sizeof what, "matmul many: case %d, product %d, M %lld", c, i, (long long)Ms[mi]);
                same(cpu, many[i], 1e-4, 1e-4, what);
                same_on_gpu(alone, many[i], 0, 0, what); /* bit for bit */
                lmc_array_free(alone), lmc_array_free(cpu), lmc_array_free(many[i]);
            }
            lmc_array_free(x), lmc_array_free(gx);
        }
        for (int i = 0; i < 3; i++) lmc_array_free(W[i]), lmc_array_free(gW[i]), lmc_array_free(Wt[i]), lmc_array_free(gWt[i]);
    }
}

/* --- whole models ------------------------------------------------------------ */

static lmc_model *load(const char *dir, const char *backend) {
    lmc_load_options o = lmc_load_options_default();
    o.backend = backend;
    lmc_model *m = NULL;
    if (lmc_model_load(dir, &o, &m) != LMC_OK) fprintf(stderr, "load %s on %s: %s\n", dir, backend, lmc_last_error());
    return m;
}

static void test_models(void) {
    const int32_t ids[] = {2, 17, 305, 1999, 77, 9, 1200, 64, 5, 880, 31, 402, 7, 99, 1500, 250, 12, 3}; /* vocabulary 2048 */
    const size_t n = sizeof ids / sizeof *ids;
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        char *dir = model_fixture_dir(MODELS[i]);
        lmc_model *c = dir ? load(dir, "cpu") : NULL, *g = dir ? load(dir, "cuda") : NULL;
        CHECKF(c && g, "%s", MODELS[i]);
        /* the default prefill chunk is the backend's */
        CHECK(!c || c->opt.prefill_chunk == LMC_PREFILL_CHUNK_CPU);
        CHECK(!g || g->opt.prefill_chunk == LMC_PREFILL_CHUNK_CUDA);
        if (c && g) {
            lmc_array *lc = lmc_model_logits(c, ids, n, true), *lg = lmc_model_logits(g, ids, n, true);
            CHECKF(lg && lmc_array_device(lg) == LMC_CPU, "%s: logits on the host", MODELS[i]);
            /* Against the scale of the logits: the CPU computes in f32 too, so
             * the two differ by the order of f32 additions only. */
            size_t nl = lc ? (size_t)lmc_array_size(lc) : 0;
            float *vc = malloc(nl * sizeof *vc + 1), *vg = malloc(nl * sizeof *vg + 1);
            double scale = 0, err = 0;
            if (lc && lg && lmc_array_size(lg) == (int64_t)nl && lmc_array_read(lc, LMC_F32, vc, nl) == LMC_OK &&
                lmc_array_read(lg, LMC_F32, vg, nl) == LMC_OK) {
                for (size_t j = 0; j < nl; j++) {
                    scale = fmax(scale, fabs(vc[j]));
                    err = fmax(err, fabs(vc[j] - vg[j]));
                }
                fprintf(stderr, "%s: logits differ by %.2e of their scale %.3f\n", MODELS[i], err / scale, scale);
                CHECKF(err <= 1e-5 * scale && scale > 0, "%s: logits differ by %.2e of their scale", MODELS[i], err / scale);
            } else {
                CHECKF(0, "%s: no logits (%s)", MODELS[i], lmc_last_error());
            }
            free(vc);
            free(vg);
            lmc_array_free(lc);
            lmc_array_free(lg);
            /* greedy continuation, twice (the second reuses the prompt cache) */
            lmc_generate_options go = lmc_generate_options_default();
            go.max_tokens = 12;
            go.sampler.temperature = 0.0f;
            go.ignore_eos = true;
            for (int rep = 0; rep < 2; rep++) {
                lmc_generation rc = {0}, rg = {0};
                CHECK(lmc_generate_ids(c, ids, n, &go, &rc) == LMC_OK);
                CHECKF(lmc_generate_ids(g, ids, n, &go, &rg) == LMC_OK, "%s", lmc_last_error());
                CHECKF(rc.n_ids == rg.n_ids && rc.n_ids == 12 && !memcmp(rc.ids, rg.ids, rc.n_ids * sizeof *rc.ids),
                       "%s: greedy tokens differ (rep %d)", MODELS[i], rep);
                CHECK(rep == 0 || rg.metrics.cached_prompt_tokens > 0);
                lmc_generation_clear(&rc);
                lmc_generation_clear(&rg);
            }
            /* batch generation: prompts of different lengths (padding, masks, positions) */
            lmc_batch_prompt bp[3] = {{.ids = ids, .n_ids = n}, {.ids = ids + 3, .n_ids = 5}, {.ids = ids + 1, .n_ids = 11}};
            lmc_batch_options bo = lmc_batch_options_default();
            bo.gen = go;
            bo.gen.max_tokens = 6;
            lmc_batch_result *bc = NULL, *bg = NULL;
            CHECK(lmc_batch_generate(c, bp, 3, &bo, &bc, NULL) == LMC_OK);
            CHECKF(lmc_batch_generate(g, bp, 3, &bo, &bg, NULL) == LMC_OK, "%s", lmc_last_error());
            for (int b = 0; bc && bg && b < 3; b++)
                CHECKF(bc[b].n_ids == bg[b].n_ids && !memcmp(bc[b].ids, bg[b].ids, bc[b].n_ids * sizeof *bc[b].ids),
                       "%s: batch sequence %d differs", MODELS[i], b);
            lmc_batch_results_free(bc, 3);
            lmc_batch_results_free(bg, 3);
        }
        lmc_model_free(c);
        lmc_model_free(g);
        model_fixture_cleanup(dir);
    }
}

/* 16-bit KV caches on the GPU against the same on the CPU (keys and values
 * are rounded on both sides, so close but not to f32 rounding). */
static void test_kv_cache_dtype(void) {
    const int32_t ids[] = {2, 17, 305, 1999, 77, 9, 1200, 64, 5, 880, 31, 402, 7, 99, 1500, 250, 12, 3, 40, 41};
    const size_t n = sizeof ids / sizeof *ids; /* past gemma3's window of 16 */
    const char *models[] = {"qwen3_mlx4", "gemma3"};
    for (int mi = 0; mi < 2; mi++)
        for (int di = 0; di < 2; di++) {
            char *dir = model_fixture_dir(models[mi]);
            lmc_load_options o = lmc_load_options_default();
            o.kv_cache_dtype = di ? LMC_F16 : LMC_BF16;
            lmc_model *c = NULL, *g = NULL;
            CHECK(dir && lmc_model_load(dir, &o, &c) == LMC_OK);
            o.backend = "cuda";
            CHECK(dir && lmc_model_load(dir, &o, &g) == LMC_OK);
            lmc_array *lc = c ? lmc_model_logits(c, ids, n, true) : NULL, *lg = g ? lmc_model_logits(g, ids, n, true) : NULL;
            size_t nl = lc && lg && lmc_array_size(lc) == lmc_array_size(lg) ? (size_t)lmc_array_size(lc) : 0;
            float *a = malloc(nl * sizeof *a + 1), *b = malloc(nl * sizeof *b + 1);
            double scale = 0, err = 0;
            if (nl && lmc_array_read(lc, LMC_F32, a, nl) == LMC_OK && lmc_array_read(lg, LMC_F32, b, nl) == LMC_OK)
                for (size_t j = 0; j < nl; j++) scale = fmax(scale, fabs(a[j])), err = fmax(err, fabs(a[j] - b[j]));
            fprintf(stderr, "%s, %s KV: GPU and CPU logits differ by %.2e of their scale\n", models[mi],
                    di ? "f16" : "bf16", scale > 0 ? err / scale : -1.0);
            CHECKF(nl > 0 && err <= 1e-3 * scale, "%s: %s KV cache", models[mi], di ? "f16" : "bf16");
            free(a), free(b);
            lmc_array_free(lc), lmc_array_free(lg);
            lmc_model_free(c), lmc_model_free(g);
            model_fixture_cleanup(dir);
        }
}

/* load_options.memory_limit bounds the GPU's memory for backend "cuda". */
static void test_memory_limit(void) {
    char *dir = model_fixture_dir("qwen3");
    lmc_load_options o = lmc_load_options_default();
    o.backend = "cuda";
    o.memory_limit = 64 << 10;
    lmc_model *m = NULL;
    CHECK(dir && lmc_model_load(dir, &o, &m) == LMC_ERR_OUT_OF_MEMORY && !m);
    CHECKF(strstr(lmc_last_error(), "limit"), "message: %s", lmc_last_error());
    CHECK(lmc_memory(LMC_CUDA).active_bytes == 0); /* what it had uploaded went back */
    lmc_memory_set_limit(LMC_CUDA, 0);
    model_fixture_cleanup(dir);
}

int main(void) {
    if (!lmc_device_available(LMC_CUDA)) {
        fprintf(stderr, "no usable CUDA device: checking the error paths only\n");
        RUN(test_unavailable);
        return TEST_REPORT();
    }
    RUN(test_round_trip);
    RUN(test_elementwise);
    RUN(test_reduce_softmax);
    RUN(test_take);
    RUN(test_matmul);
    RUN(test_norms_rope);
    RUN(test_fused);
    RUN(test_sdpa);
    RUN(test_quant);
    RUN(test_quant_many);
    RUN(test_matmul_many);
    RUN(test_models);
    RUN(test_kv_cache_dtype);
    RUN(test_memory_limit);
    lmc_memory_stats ms = lmc_memory(LMC_CUDA);
    fprintf(stderr, "cuda memory: peak %.1f MiB, active %.1f MiB\n", ms.peak_bytes / 1048576.0, ms.active_bytes / 1048576.0);
    return TEST_REPORT();
}
