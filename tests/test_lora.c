/* LoRA adapters (lmc/lora.h): the adapted Linear against plain loops, the
 * model with fresh adapters (B = 0) against the base model, gradients
 * against central finite differences, checkpointing, dropout, bf16
 * adapters, quantised bases, PEFT files, adapters at load, fusing, and
 * errors. Agreement with peft itself is test_lora_golden.c's.
 *
 * Finite differences: the loss is computed in f32 (about 7 significant
 * digits of a loss near 7.6, i.e. ~1e-6 absolute), so a step h = 1e-2 on an
 * adapter element gives a central difference with rounding error ~1e-4 and
 * truncation error O(h²); checks use |analytic - numeric| <= 2e-4 + 2e-2·|numeric|. */
#include <stdint.h>

#include "core/array.h"
#include "lmc/lmc.h"
#include "lmc/lora.h"
#include "lmc/ops.h"
#include "lmc/train.h"
#include "model_fixture.h"
#include "io/json_util.h"
#include "lmc/safetensors.h"
#include "nn/linear_internal.h"
#include "test_util.h"
#include "train/lora_internal.h"

#define FD_ATOL 2e-4
#define FD_RTOL 2e-2

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double urand(void) { /* [0, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) * 0x1p-53;
}

/* Fills a contiguous float array with U(-r, r) (rounded to its dtype). */
static void fill(lmc_array *a, double r) {
    int64_t n = lmc_array_size(a);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(r * (2 * urand() - 1));
    lmc_convert(lmc_array_data(a), lmc_array_dtype(a), v, LMC_F32, (size_t)n);
    free(v);
}

static float *read_f32(const lmc_array *a) {
    int64_t n = lmc_array_size(a);
    float *v = calloc((size_t)(n ? n : 1), sizeof *v);
    if (lmc_array_read(a, LMC_F32, v, (size_t)n) != LMC_OK) fprintf(stderr, "read failed\n");
    return v;
}

static double get1(const lmc_array *a, int64_t i) {
    return lmc_load_f64((const char *)lmc_array_data(a) + i * (int64_t)lmc_dtype_size(lmc_array_dtype(a)), lmc_array_dtype(a));
}
static void set1(lmc_array *a, int64_t i, double v) {
    lmc_store_f64((char *)lmc_array_data(a) + i * (int64_t)lmc_dtype_size(lmc_array_dtype(a)), lmc_array_dtype(a), v);
}

/* --- the adapted Linear -------------------------------------------------------- */

/* y = base(x) + scale * B @ (A @ x) for every row, with plain loops in double. */
static void check_linear(lmc_linear *lin, lmc_dtype ab_dtype, double atol) {
    int64_t in = lmc_linear_in_features(lin), out = lmc_linear_out_features(lin), r = 3;
    int64_t xs[3] = {2, 3, in}, as[2] = {r, in}, bs[2] = {out, r};
    lmc_array *x = lmc_zeros(LMC_F32, 3, xs), *A = lmc_zeros(ab_dtype, 2, as), *B = lmc_zeros(ab_dtype, 2, bs);
    fill(x, 1.0);
    fill(A, 0.5);
    fill(B, 0.5);
    lmc_array *base = lmc_linear_forward(lin, x);
    lmc_linear_adapter ad = {.a = A, .b = B, .scale = 2.5, .dropout = 0.4, .seed = 7};
    CHECK(lmc_linear_set_adapter(lin, &ad) == LMC_OK);
    lmc_array *y = lmc_linear_forward(lin, x); /* inference: no dropout */
    CHECK(lmc_linear_set_adapter(lin, NULL) == LMC_OK);
    lmc_array *again = lmc_linear_forward(lin, x);
    float *vx = read_f32(x), *va = read_f32(A), *vb = read_f32(B), *vbase = read_f32(base), *vy = read_f32(y),
          *vag = read_f32(again);
    double worst = 0;
    for (int64_t row = 0; row < 6; row++) {
        double ax[8] = {0};
        for (int64_t k = 0; k < r; k++)
            for (int64_t i = 0; i < in; i++) ax[k] += (double)va[k * in + i] * vx[row * in + i];
        for (int64_t o = 0; o < out; o++) {
            double d = 0;
            for (int64_t k = 0; k < r; k++) d += (double)vb[o * r + k] * ax[k];
            double want = vbase[row * out + o] + 2.5 * d, err = fabs(vy[row * out + o] - want);
            worst = err > worst ? err : worst;
            CHECK(vag[row * out + o] == vbase[row * out + o]); /* detached: the base layer again */
        }
    }
    CHECKF(worst <= atol, "worst error %g > %g", worst, atol);
    free(vx), free(va), free(vb), free(vbase), free(vy), free(vag);
    lmc_array_free(x), lmc_array_free(A), lmc_array_free(B), lmc_array_free(base), lmc_array_free(y), lmc_array_free(again);
}

static void test_linear_adapter(void) {
    int64_t ws[2] = {5, 64}, bs[1] = {5};
    lmc_array *w = lmc_zeros(LMC_F32, 2, ws), *b = lmc_zeros(LMC_F32, 1, bs);
    fill(w, 0.3);
    fill(b, 0.3);
    lmc_linear *lin = lmc_linear_new(w, b);
    check_linear(lin, LMC_F32, 1e-5);
    check_linear(lin, LMC_BF16, 1e-5); /* bf16 A, B are widened exactly; the sums are f32 */
    lmc_linear *q = lmc_linear_quantize(lin, 32, 4);
    check_linear(q, LMC_F32, 1e-5);    /* the quantised base stays quantised; only the update is added */
    /* Shapes that do not fit are refused. */
    int64_t as[2] = {3, 63}, bs2[2] = {5, 3};
    lmc_array *A = lmc_zeros(LMC_F32, 2, as), *B = lmc_zeros(LMC_F32, 2, bs2);
    lmc_linear_adapter ad = {.a = A, .b = B, .scale = 1};
    CHECK(lmc_linear_set_adapter(lin, &ad) == LMC_ERR_SHAPE);
    CHECK(lmc_linear_get_adapter(lin) == NULL);
    lmc_array_free(A), lmc_array_free(B);
    lmc_linear_free(lin);
    lmc_linear_free(q);
    lmc_array_free(w);
    lmc_array_free(b);
}

/* --- the model with adapters ------------------------------------------------------ */

static const int32_t g_ids[2][12] = {{785, 1251, 304, 279, 1879, 686, 1477, 264, 501, 1616, 42, 7},
                                     {12, 99, 1500, 3, 8, 640, 1024, 77, 5, 300, 2047, 18}};
enum { BT = 2, TT = 12 };

typedef struct batch {
    lmc_array *ids, *targets, *mask;
} batch;

/* Targets are the next ids; the last position and a few others are masked out. */
static batch make_batch(void) {
    int32_t tg[BT][TT];
    float mk[BT][TT];
    for (int b = 0; b < BT; b++)
        for (int t = 0; t < TT; t++) {
            tg[b][t] = t + 1 < TT ? g_ids[b][t + 1] : -100;
            mk[b][t] = t + 1 < TT && !(b == 1 && t < 3) ? 1.0f : 0.0f;
        }
    int64_t s[2] = {BT, TT};
    return (batch){lmc_array_from_data(g_ids, LMC_I32, 2, s), lmc_array_from_data(tg, LMC_I32, 2, s),
                   lmc_array_from_data(mk, LMC_F32, 2, s)};
}
static void free_batch(batch *b) {
    lmc_array_free(b->ids);
    lmc_array_free(b->targets);
    lmc_array_free(b->mask);
}

static lmc_model *load(const char *name, char **dir) {
    *dir = model_fixture_dir(name);
    lmc_model *m = NULL;
    if (!*dir || lmc_model_load(*dir, NULL, &m) != LMC_OK) fprintf(stderr, "load %s: %s\n", name, lmc_last_error());
    return m;
}

/* Gives every B (and A) random values so every gradient is non-trivial. */
static void randomise(lmc_lora *l, double rb) {
    lmc_array *const *p = lmc_lora_params(l);
    for (int i = 0; i < lmc_lora_num_params(l); i++)
        if (i % 2) fill(p[i], rb);
}

static double loss_of(lmc_lora *l, const batch *b, const lmc_lora_step_options *o) {
    double loss = NAN;
    if (lmc_lora_loss_and_grad(l, b->ids, b->targets, b->mask, o, &loss, NULL) != LMC_OK)
        fprintf(stderr, "loss: %s\n", lmc_last_error());
    return loss;
}

static void test_fresh_adapters_leave_logits(void) {
    char *dir;
    lmc_model *m = load("llama", &dir);
    if (!m) { CHECK(0); model_fixture_cleanup(dir); return; }
    const int32_t *ids = g_ids[0];
    lmc_array *before = lmc_model_logits(m, ids, TT, true);
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "all-linear";
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    CHECK(lmc_model_adapter(m) == l);
    CHECK(lmc_lora_num_params(l) == 3 * 7 * 2);
    CHECK_STR(lmc_lora_param_name(l, 0), "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    CHECK_STR(lmc_lora_param_name(l, 13), "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    CHECK_STR(lmc_lora_get_config(l).targets, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
    /* rank 8: q [64 -> 64], k,v [64 -> 32], o [64 -> 64], gate,up [64 -> 128], down [128 -> 64] */
    int64_t per_layer = 8 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64));
    CHECK(lmc_lora_num_elements(l) == 3 * per_layer);
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0. */
    const lmc_array *A = lmc_lora_params(l)[0], *B = lmc_lora_params(l)[1];
    double amax = 0;
    for (int64_t i = 0; i < lmc_array_size(A); i++) amax = fmax(amax, fabs(get1(A, i)));
    CHECK(amax <= 1.0 / 8.0 && amax > 0.1);
    for (int64_t i = 0; i < lmc_array_size(B); i++) CHECK(get1(B, i) == 0.0);
    lmc_array *after = lmc_model_logits(m, ids, TT, true);
    float *va = read_f32(before), *vb = read_f32(after);
    int same = 0;
    for (int64_t i = 0; i < TT * 2048; i++) same += va[i] == vb[i];
    CHECKF(same == TT * 2048, "%d of %d logits equal", same, TT * 2048);
    /* A non-zero B changes them (the generation path includes the adapters). */
    randomise(l, 0.05);
    lmc_array *moved = lmc_model_logits(m, ids, TT, true);
    float *vm = read_f32(moved);
    double diff = 0;
    for (int64_t i = 0; i < TT * 2048; i++) diff = fmax(diff, fabs(vm[i] - va[i]));
    CHECK(diff > 1e-3);
    /* Detached: the base model again. */
    lmc_lora_free(l);
    CHECK(lmc_model_adapter(m) == NULL);
    lmc_array *gone = lmc_model_logits(m, ids, TT, true);
    float *vg = read_f32(gone);
    CHECK(memcmp(vg, va, sizeof(float) * TT * 2048) == 0);
    free(va), free(vb), free(vm), free(vg);
    lmc_array_free(before), lmc_array_free(after), lmc_array_free(moved), lmc_array_free(gone);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

/* Central differences on `count` elements of each of a few parameters. */
static void check_grads(const char *model_name, lmc_dtype dtype, const char *targets) {
    char *dir;
    lmc_model *m = load(model_name, &dir);
    if (!m) { CHECK(0); model_fixture_cleanup(dir); return; }
    lmc_lora_config c = lmc_lora_config_default();
    c.rank = 4;
    c.targets = targets;
    c.dtype = dtype;
    c.seed = 3;
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    randomise(l, 0.2);
    batch b = make_batch();
    lmc_lora_step_options o = lmc_lora_step_options_default();
    int n = lmc_lora_num_params(l);
    lmc_array **g = calloc((size_t)n, sizeof *g);
    double loss = 0;
    CHECK(lmc_lora_loss_and_grad(l, b.ids, b.targets, b.mask, &o, &loss, g) == LMC_OK);
    CHECK_CLOSE(loss, loss_of(l, &b, &o), 0, 0); /* the same number with and without recording */
    int checked = 0;
    const int picks[] = {0, 1, n / 2, n / 2 + 1, n - 2, n - 1};
    for (size_t pi = 0; pi < sizeof picks / sizeof *picks; pi++) {
        lmc_array *p = lmc_lora_params(l)[picks[pi]];
        CHECK(g[picks[pi]] && lmc_array_dtype(g[picks[pi]]) == LMC_F32 && lmc_array_size(g[picks[pi]]) == lmc_array_size(p));
        for (int k = 0; k < 3; k++) {
            int64_t i = (int64_t)(urand() * (double)lmc_array_size(p));
            double v = get1(p, i), h = 1e-2;
            set1(p, i, v + h);
            double hi_v = get1(p, i), lp = loss_of(l, &b, &o);
            set1(p, i, v - h);
            double lo_v = get1(p, i), lm = loss_of(l, &b, &o);
            set1(p, i, v);
            double num = (lp - lm) / (hi_v - lo_v), ana = get1(g[picks[pi]], i);
            CHECKF(fabs(ana - num) <= FD_ATOL + FD_RTOL * fabs(num), "%s %s param %d [%lld]: analytic %.6g numeric %.6g",
                   model_name, lmc_dtype_name(dtype), picks[pi], (long long)i, ana, num);
            checked++;
        }
    }
    CHECK(checked == 18);
    for (int i = 0; i < n; i++) lmc_array_free(g[i]);
    free(g);
    free_batch(&b);
    lmc_lora_free(l);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

static void test_grads_finite_differences(void) {
    check_grads("llama", LMC_F32, "all-linear");
    check_grads("qwen3", LMC_F32, "q_proj,v_proj,down_proj");
    check_grads("gemma3", LMC_F32, "k_proj,o_proj,up_proj"); /* sliding window, sandwich norms */
    check_grads("llama_mlx4", LMC_F32, "all-linear");        /* QLoRA: quantised base */
}

/* Loss and gradients of one configuration (new arrays in *g). */
static double run_step(lmc_lora *l, const batch *b, bool training, bool checkpoint, uint64_t seed, lmc_array **g) {
    lmc_lora_step_options o = {.training = training, .checkpoint = checkpoint, .dropout_seed = seed};
    double loss = NAN;
    if (lmc_lora_loss_and_grad(l, b->ids, b->targets, b->mask, &o, &loss, g) != LMC_OK)
        fprintf(stderr, "step: %s\n", lmc_last_error());
    return loss;
}

static double max_grad_diff(int n, lmc_array **a, lmc_array **b) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (!a[i] || !b[i]) return INFINITY;
        float *va = read_f32(a[i]), *vb = read_f32(b[i]);
        for (int64_t j = 0; j < lmc_array_size(a[i]); j++) worst = fmax(worst, fabs((double)va[j] - vb[j]));
        free(va), free(vb);
    }
    return worst;
}

static void free_grads(int n, lmc_array **g) {
    for (int i = 0; i < n; i++) {
        lmc_array_free(g[i]);
        g[i] = NULL;
    }
}

static void test_checkpointing_and_dropout(void) {
    char *dir;
    lmc_model *m = load("gemma3", &dir);
    if (!m) { CHECK(0); model_fixture_cleanup(dir); return; }
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "q_proj,v_proj,gate_proj";
    c.dropout = 0.3;
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    randomise(l, 0.1);
    batch b = make_batch();
    int n = lmc_lora_num_params(l);
    lmc_array *g0[64] = {0}, *g1[64] = {0};
    /* No dropout: checkpointing gives the same loss and gradients, bit for bit. */
    double l0 = run_step(l, &b, false, false, 0, g0), l1 = run_step(l, &b, false, true, 0, g1);
    CHECK(l0 == l1);
    CHECKF(max_grad_diff(n, g0, g1) == 0.0, "checkpointed gradients differ by %g", max_grad_diff(n, g0, g1));
    free_grads(n, g0), free_grads(n, g1);
    /* Dropout on: a different loss, reproducible for a seed, different for another seed. */
    double d0 = run_step(l, &b, true, false, 5, g0), d1 = run_step(l, &b, true, false, 5, g1);
    CHECK(d0 != l0 && d0 == d1);
    CHECK(max_grad_diff(n, g0, g1) == 0.0);
    free_grads(n, g1);
    CHECK(run_step(l, &b, true, false, 6, NULL) != d0);
    /* ... and checkpointing redraws the same masks when it runs a layer again. */
    double d2 = run_step(l, &b, true, true, 5, g1);
    CHECK(d2 == d0);
    CHECKF(max_grad_diff(n, g0, g1) == 0.0, "checkpointed gradients with dropout differ by %g", max_grad_diff(n, g0, g1));
    free_grads(n, g0), free_grads(n, g1);
    /* Inference ignores dropout. */
    CHECK(run_step(l, &b, false, false, 5, NULL) == l0);
    free_batch(&b);
    lmc_lora_free(l);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

/* bf16 A and B against f32 ones holding the same (bf16-rounded) values, and
 * against the unrounded f32 values. */
static void test_bf16_adapters(void) {
    char *dir;
    lmc_model *m = load("qwen3", &dir);
    if (!m) { CHECK(0); model_fixture_cleanup(dir); return; }
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "all-linear";
    lmc_lora *l32 = NULL, *l16 = NULL;
    CHECK(lmc_lora_create(m, &c, &l32) == LMC_OK);
    randomise(l32, 0.1);
    batch b = make_batch();
    int n = lmc_lora_num_params(l32);
    lmc_array *g32[64] = {0}, *g16[64] = {0};
    /* Keep the f32 values, then free the set (one set per model at a time). */
    float *vals[64];
    for (int i = 0; i < n; i++) vals[i] = read_f32(lmc_lora_params(l32)[i]);
    double loss32 = run_step(l32, &b, false, false, 0, g32);
    lmc_lora_free(l32);
    c.dtype = LMC_BF16;
    CHECK(lmc_lora_create(m, &c, &l16) == LMC_OK);
    for (int i = 0; i < n; i++) {
        lmc_array *p = lmc_lora_params(l16)[i];
        CHECK(lmc_array_dtype(p) == LMC_BF16);
        lmc_convert(lmc_array_data(p), LMC_BF16, vals[i], LMC_F32, (size_t)lmc_array_size(p));
        free(vals[i]);
    }
    double loss16 = run_step(l16, &b, false, false, 0, g16);
    /* The same values, so only the arithmetic differs (bf16 A, B are widened
     * in the matmul; the gradients with respect to bf16 parameters are
     * rounded through bf16 products): measured |Δloss| 2e-4 on a loss of
     * ~7.6 and max |Δg| 0.16% of max |g|. Bounds: 1e-3 and 1% of max |g|. */
    CHECK_CLOSE(loss16, loss32, 1e-3, 0);
    double gmax = 0;
    for (int i = 0; i < n; i++) {
        float *v = read_f32(g32[i]);
        for (int64_t j = 0; j < lmc_array_size(g32[i]); j++) gmax = fmax(gmax, fabs(v[j]));
        free(v);
    }
    double gd = max_grad_diff(n, g32, g16);
    CHECKF(gd <= 0.01 * gmax, "bf16 gradients differ by %g (max |g| %g)", gd, gmax);
    fprintf(stderr, "bf16 vs f32 adapters: |dloss| %.3g, max |dgrad| %.3g of max |g| %.3g\n", fabs(loss16 - loss32), gd, gmax);
    free_grads(n, g32), free_grads(n, g16);
    free_batch(&b);
    lmc_lora_free(l16);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

static void test_create_errors(void) {
    char *dir;
    lmc_model *m = load("llama", &dir);
    if (!m) { CHECK(0); model_fixture_cleanup(dir); return; }
    lmc_lora *l = NULL;
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "q_proj,lm_head";
    CHECK(lmc_lora_create(m, &c, &l) == LMC_ERR_INVALID_ARGUMENT && !l);
    CHECK(strstr(lmc_last_error(), "lm_head") != NULL);
    c = lmc_lora_config_default();
    c.rank = 0;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_ERR_INVALID_ARGUMENT);
    c = lmc_lora_config_default();
    c.dropout = 1.0;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_ERR_INVALID_ARGUMENT);
    c = lmc_lora_config_default();
    c.dtype = LMC_I32;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_lora_create(m, NULL, &l) == LMC_OK);
    lmc_lora *second = NULL;
    CHECK(lmc_lora_create(m, NULL, &second) == LMC_ERR_INVALID_ARGUMENT && !second);
    CHECK(strstr(lmc_last_error(), "already") != NULL);
    /* Bad batches. */
    batch b = make_batch();
    double loss;
    lmc_array *f = lmc_astype(b.ids, LMC_F32);
    CHECK(lmc_lora_loss_and_grad(l, f, b.targets, NULL, NULL, &loss, NULL) == LMC_ERR_SHAPE);
    int64_t s1[2] = {1, TT};
    lmc_array *short_mask = lmc_ones(LMC_F32, 2, s1);
    CHECK(lmc_lora_loss_and_grad(l, b.ids, b.targets, short_mask, NULL, &loss, NULL) == LMC_ERR_SHAPE);
    /* Integer masks of any type; NULL = all. */
    lmc_array *imask = lmc_astype(b.mask, LMC_I64);
    double li = NAN, lf = NAN;
    CHECK(lmc_lora_loss_and_grad(l, b.ids, b.targets, imask, NULL, &li, NULL) == LMC_OK);
    CHECK(lmc_lora_loss_and_grad(l, b.ids, b.targets, b.mask, NULL, &lf, NULL) == LMC_OK);
    CHECK(li == lf);
    lmc_array_free(f), lmc_array_free(short_mask), lmc_array_free(imask);
    free_batch(&b);
    /* The set outlives its model: closing detaches it. */
    lmc_model_free(m);
    CHECK(lmc_lora_num_params(l) == 3 * 2 * 2); /* q_proj, v_proj of 3 layers */
    batch b2 = make_batch();
    CHECK(lmc_lora_loss_and_grad(l, b2.ids, b2.targets, NULL, NULL, &loss, NULL) == LMC_ERR_CLOSED);
    free_batch(&b2);
    lmc_lora_free(l);
    model_fixture_cleanup(dir);
}


/* --- PEFT files ------------------------------------------------------------------- */

static char *tmp_dir(void) {
    char tmpl[] = "/tmp/lmc-lora-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}
static void rm_dir(char *d) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", d);
    free(d);
}
static void write_text(const char *dir, const char *name, const char *text) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}
static char *read_text(const char *dir, const char *name) {
    char path[8192], *data = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lmc_read_file(path, 64u << 20, &data, &len) == LMC_OK ? data : NULL;
}

/* A PEFT-named pair for module `mod` of layer li ("self_attn.q_proj"), random values. */
static void add_pair(const char **names, lmc_array **arrays, int *n, int li, const char *mod, int64_t r, int64_t in,
                     int64_t out) {
    char buf[256];
    int64_t as[2] = {r, in}, bs[2] = {out, r};
    for (int ab = 0; ab < 2; ab++) {
        snprintf(buf, sizeof buf, "base_model.model.model.layers.%d.%s.lora_%c.weight", li, mod, ab ? 'B' : 'A');
        names[*n] = strdup(buf);
        arrays[*n] = lmc_zeros(LMC_F32, 2, ab ? bs : as);
        fill(arrays[*n], 0.1);
        (*n)++;
    }
}
static void write_pairs(const char *dir, const char **names, lmc_array **arrays, int n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(lmc_safetensors_write(path, (size_t)n, names, (const lmc_array *const *)arrays, 0, NULL, NULL) == LMC_OK);
    for (int i = 0; i < n; i++) {
        free((char *)names[i]);
        lmc_array_free(arrays[i]);
    }
}

static void test_save_load_roundtrip(void) {
    char *mdir;
    lmc_model *m = load("llama", &mdir);
    if (!m) { CHECK(0); model_fixture_cleanup(mdir); return; }
    const lmc_dtype dts[2] = {LMC_F32, LMC_BF16};
    for (int k = 0; k < 2; k++) {
        lmc_lora_config c = lmc_lora_config_default();
        c.targets = k ? "all-linear" : "v_proj,q_proj";
        c.rank = 4;
        c.alpha = 12;
        c.dropout = 0.05;
        c.dtype = dts[k];
        c.seed = 11;
        lmc_lora *l = NULL;
        CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
        randomise(l, 0.1);
        lmc_array *before = lmc_model_logits(m, g_ids[0], TT, true);
        char *dir = tmp_dir();
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/adapter", dir); /* created by save */
        CHECK(lmc_lora_save(l, sub) == LMC_OK);
        CHECK(lmc_lora_save(l, sub) == LMC_OK); /* replaces the files */
        char path[4300];
        snprintf(path, sizeof path, "%s/adapter_model.safetensors.tmp", sub);
        CHECK(access(path, F_OK) != 0);
        /* The config as PEFT writes it. */
        char *text = read_text(sub, "adapter_config.json");
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        CHECK(j != NULL);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "peft_type")), "LORA");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "task_type")), "CAUSAL_LM");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "bias")), "none");
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "r")) == 4);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "lora_alpha")) == 12);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "lora_dropout")) == 0.05);
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "use_rslora")) && cJSON_IsFalse(cJSON_GetObjectItem(j, "use_dora")));
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "fan_in_fan_out")) && cJSON_IsNull(cJSON_GetObjectItem(j, "modules_to_save")));
        const cJSON *tm = cJSON_GetObjectItem(j, "target_modules");
        CHECK(cJSON_GetArraySize(tm) == (k ? 7 : 2));
        CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(tm, 0)), "q_proj");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "base_model_name_or_path")), mdir);
        cJSON_Delete(j);
        free(text);
        /* Tensor names and shapes as PEFT's. */
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", sub);
        lmc_safetensors *st = NULL;
        CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
        int64_t shape[LMC_MAX_DIMS];
        int nd = 0;
        lmc_dtype dt;
        CHECK(lmc_safetensors_info(st, "base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight", &dt, &nd, shape) == LMC_OK);
        CHECK(nd == 2 && shape[0] == 32 && shape[1] == 4 && dt == dts[k]);
        CHECK(lmc_safetensors_count(st) == (size_t)lmc_lora_num_params(l));
        lmc_safetensors_close(st);
        /* Reload bit for bit (in a second model, so both sets live at once). */
        lmc_model *m2 = NULL;
        CHECK(lmc_model_load(mdir, NULL, &m2) == LMC_OK);
        lmc_lora *l2 = NULL;
        CHECK(lmc_lora_load(m2, sub, &l2) == LMC_OK);
        CHECK(l2 && lmc_lora_num_params(l2) == lmc_lora_num_params(l));
        for (int i = 0; l2 && i < lmc_lora_num_params(l); i++) {
            const lmc_array *a = lmc_lora_params(l)[i], *b = lmc_lora_params(l2)[i];
            CHECK_STR(lmc_lora_param_name(l2, i), lmc_lora_param_name(l, i));
            CHECK(lmc_array_dtype(b) == dts[k] && lmc_array_nbytes(a) == lmc_array_nbytes(b));
            CHECK(memcmp(lmc_array_data(a), lmc_array_data(b), lmc_array_nbytes(a)) == 0);
        }
        lmc_lora_config c2 = lmc_lora_get_config(l2);
        CHECK(c2.rank == 4 && c2.alpha == 12 && c2.dropout == 0.05 && c2.dtype == dts[k]);
        CHECK_STR(c2.targets, lmc_lora_get_config(l).targets);
        lmc_array *after = lmc_model_logits(m2, g_ids[0], TT, true);
        CHECK(before && after && memcmp(lmc_array_data(before), lmc_array_data(after), lmc_array_nbytes(before)) == 0);
        lmc_array_free(before), lmc_array_free(after);
        lmc_lora_free(l2);
        lmc_model_free(m2);
        lmc_lora_free(l);
        rm_dir(dir);
    }
    lmc_model_free(m);
    model_fixture_cleanup(mdir);
}

/* PEFT options lmc honours: use_rslora, rank_pattern / alpha_pattern with
 * plain names, layers_to_transform, target_modules as full module names. */
static void test_load_peft_options(void) {
    char *mdir;
    lmc_model *m = load("llama", &mdir);
    if (!m) { CHECK(0); model_fixture_cleanup(mdir); return; }
    char *dir = tmp_dir();
    const char *names[16];
    lmc_array *arrays[16];
    int n = 0;
    add_pair(names, arrays, &n, 1, "self_attn.q_proj", 2, 64, 64);
    add_pair(names, arrays, &n, 1, "self_attn.v_proj", 8, 64, 32);
    add_pair(names, arrays, &n, 1, "mlp.down_proj", 8, 128, 64);
    write_pairs(dir, names, arrays, n);
    write_text(dir, "adapter_config.json",
               "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"lora_alpha\": 16, \"use_rslora\": true,\n"
               " \"target_modules\": [\"q_proj\", \"v_proj\", \"model.layers.1.mlp.down_proj\"], \"layers_to_transform\": [1],\n"
               " \"rank_pattern\": {\"q_proj\": 2}, \"alpha_pattern\": {\"model.layers.1.self_attn.v_proj\": 32},\n"
               " \"bias\": \"none\", \"modules_to_save\": null, \"use_dora\": false, \"fan_in_fan_out\": false, \"layers_pattern\": null}");
    lmc_lora *l = NULL;
    CHECKF(lmc_lora_load(m, dir, &l) == LMC_OK, "%s", lmc_last_error());
    if (l) {
        CHECK(l->n == 3);
        CHECK(l->e[0].layer == 1 && l->e[0].module == 0 && l->e[0].rank == 2);
        CHECK_CLOSE(l->e[0].ad.scale, 16 / sqrt(2.0), 1e-12, 0);
        CHECK(l->e[1].layer == 1 && l->e[1].module == 2 && l->e[1].rank == 8);
        CHECK_CLOSE(l->e[1].ad.scale, 32 / sqrt(8.0), 1e-12, 0);
        CHECK(l->e[2].layer == 1 && l->e[2].module == 6);
        CHECK_CLOSE(l->e[2].ad.scale, 16 / sqrt(8.0), 1e-12, 0);
        /* Saved and loaded again: the same modules, ranks and scales. */
        char *dir2 = tmp_dir();
        CHECK(lmc_lora_save(l, dir2) == LMC_OK);
        lmc_lora_free(l);
        l = NULL;
        CHECKF(lmc_lora_load(m, dir2, &l) == LMC_OK, "%s", lmc_last_error());
        CHECK(l && l->n == 3 && l->e[0].rank == 2 && l->e[1].ad.scale == 32 / sqrt(8.0) && l->use_rslora);
        lmc_lora_free(l);
        rm_dir(dir2);
    }
    rm_dir(dir);
    lmc_model_free(m);
    model_fixture_cleanup(mdir);
}

typedef struct bad_case {
    const char *config;       /* adapter_config.json, or NULL for none */
    lmc_status status;
    const char *mention;      /* expected in the message */
} bad_case;

static void test_load_errors(void) {
    char *mdir;
    lmc_model *m = load("llama", &mdir);
    if (!m) { CHECK(0); model_fixture_cleanup(mdir); return; }
    char *dir = tmp_dir();
    /* Tensors for q_proj and v_proj (rank 8) of all three layers. */
    const char *names[16];
    lmc_array *arrays[16];
    int n = 0;
    for (int li = 0; li < 3; li++) {
        add_pair(names, arrays, &n, li, "self_attn.q_proj", 8, 64, 64);
        add_pair(names, arrays, &n, li, "self_attn.v_proj", 8, 64, 32);
    }
    write_pairs(dir, names, arrays, n);
#define CFG(extra) "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\", \"v_proj\"]" extra "}"
    const bad_case cases[] = {
        {NULL, LMC_ERR_IO, "adapter_config.json"},
        {"{\"peft_type\": \"LORA\",", LMC_ERR_FORMAT, "adapter_config.json"},
        {"{\"peft_type\": \"PREFIX_TUNING\"}", LMC_ERR_FORMAT, "peft_type"},
        {CFG(", \"task_type\": \"SEQ_CLS\""), LMC_ERR_UNSUPPORTED, "task_type"},
        {CFG(", \"use_dora\": true"), LMC_ERR_UNSUPPORTED, "use_dora"},
        {CFG(", \"bias\": \"all\""), LMC_ERR_UNSUPPORTED, "bias"},
        {CFG(", \"modules_to_save\": [\"lm_head\"]"), LMC_ERR_UNSUPPORTED, "modules_to_save"},
        {CFG(", \"fan_in_fan_out\": true"), LMC_ERR_UNSUPPORTED, "fan_in_fan_out"},
        {CFG(", \"use_rslora\": \"yes\""), LMC_ERR_FORMAT, "use_rslora"},
        {CFG(", \"rank_pattern\": {\".*q_proj\": 4}"), LMC_ERR_UNSUPPORTED, "rank_pattern"},
        {CFG(", \"alpha_pattern\": {\"q_proj\": -1}"), LMC_ERR_FORMAT, "alpha_pattern"},
        /* a rank past an int (converting it would be undefined) */
        {CFG(", \"rank_pattern\": {\"q_proj\": 1e10}"), LMC_ERR_FORMAT, "rank_pattern\" entry \"q_proj\" must be a positive integer up to 65536"},
        {CFG(", \"rank_pattern\": {\"q_proj\": 65537}"), LMC_ERR_FORMAT, "rank_pattern"},
        {CFG(", \"layers_to_transform\": [7]"), LMC_ERR_FORMAT, "layers_to_transform"},
        {"{\"peft_type\": \"LORA\", \"r\": 0, \"target_modules\": [\"q_proj\"]}", LMC_ERR_FORMAT, "\"r\""},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": \"16\", \"target_modules\": [\"q_proj\"]}", LMC_ERR_FORMAT, "lora_alpha"},
        {"{\"peft_type\": \"LORA\", \"lora_dropout\": 1.5, \"target_modules\": [\"q_proj\"]}", LMC_ERR_FORMAT, "lora_dropout"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\", \"lm_head\"]}", LMC_ERR_UNSUPPORTED, "lm_head"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": \".*(q|v)_proj\"}", LMC_ERR_UNSUPPORTED, "target_modules"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": 5}", LMC_ERR_FORMAT, "target_modules"},
        /* k_proj is targeted but the file has no tensors for it. */
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\"]}", LMC_ERR_NOT_FOUND,
         "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"},
        /* rank 4 declared, rank 8 stored. */
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"]}", LMC_ERR_FORMAT,
         "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' is float32 [8, 64], expected a float tensor of shape [4, 64]"},
        /* v_proj's tensors are in the file but v_proj is not targeted. */
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\"]}", LMC_ERR_FORMAT,
         "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": 1}",
         LMC_ERR_FORMAT, "layers.0.self_attn.q_proj.lora_A.weight"},
    };
#undef CFG
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unlink(path);
        if (cases[i].config) write_text(dir, "adapter_config.json", cases[i].config);
        lmc_lora *l = NULL;
        lmc_status s = lmc_lora_load(m, dir, &l);
        CHECKF(s == cases[i].status && !l, "case %zu: status %d (%s)", i, (int)s, lmc_last_error());
        CHECKF(strstr(lmc_last_error(), cases[i].mention) != NULL, "case %zu: '%s' does not mention '%s'", i,
               lmc_last_error(), cases[i].mention);
        CHECK(lmc_model_adapter(m) == NULL);
        lmc_lora_free(l);
    }
    /* The valid config loads; a missing weights file is named. */
    write_text(dir, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    lmc_lora *l = NULL;
    CHECKF(lmc_lora_load(m, dir, &l) == LMC_OK, "%s", lmc_last_error());
    lmc_lora_free(l);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    unlink(path);
    CHECK(lmc_lora_load(m, dir, &l) == LMC_ERR_NOT_FOUND && strstr(lmc_last_error(), "adapter_model.safetensors"));
    rm_dir(dir);
    lmc_model_free(m);
    model_fixture_cleanup(mdir);
}

/* The config alone (no model, no tensors): what each module gets, in order;
 * a failed parse leaves the plan empty. */
static void test_plan_parse(void) {
    static const char cfg[] =
        "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.1, \"target_modules\": [\"q_proj\", "
        "\"model.layers.3.mlp.down_proj\"], \"layers_to_transform\": [0, 3], \"rank_pattern\": {\"model.layers.3.self_attn.q_proj\": 4}, "
        "\"alpha_pattern\": {\"down_proj\": 2.5}, \"base_model_name_or_path\": \"Qwen/Qwen3-0.6B\"}";
    lmc_lora_plan p;
    CHECKF(lmc_lora_plan_parse("adapter_config.json", cfg, strlen(cfg), "model.", 4, &p) == LMC_OK, "%s", lmc_last_error());
    CHECK(p.n == 3 && p.kinds == (1u << 0 | 1u << 6) && !p.all_linear && p.cfg.dropout == 0.1);
    if (p.n == 3) {
        CHECK(p.e[0].layer == 0 && p.e[0].module == 0 && p.e[0].rank == 8 && p.e[0].alpha == 16);
        CHECK(p.e[1].layer == 3 && p.e[1].module == 0 && p.e[1].rank == 4 && p.e[1].alpha == 16);
        CHECK(p.e[2].layer == 3 && p.e[2].module == 6 && p.e[2].rank == 8 && p.e[2].alpha == 2.5);
    }
    CHECK(p.base_model && !strcmp(p.base_model, "Qwen/Qwen3-0.6B"));
    lmc_lora_plan_free(&p);
    /* "all-linear" on one layer: its seven modules */
    static const char all[] = "{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\", \"layers_to_transform\": 1}";
    CHECK(lmc_lora_plan_parse("x/adapter_config.json", all, strlen(all), "model.", 4, &p) == LMC_OK);
    CHECK(p.n == 7 && p.all_linear && p.e[0].layer == 1 && p.e[6].module == 6 && p.e[6].rank == 8);
    lmc_lora_plan_free(&p);
    /* layer 3 of a 2-layer model: refused naming the file and field, nothing left */
    static const char far[] = "{\"peft_type\": \"LORA\", \"layers_to_transform\": [3]}";
    CHECK(lmc_lora_plan_parse("x/adapter_config.json", far, strlen(far), "model.", 2, &p) == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "x/adapter_config.json: \"layers_to_transform\"") != NULL);
    CHECK(p.n == 0 && !p.e && !p.base_model);
    CHECK(lmc_lora_plan_parse("x/adapter_config.json", "{\"peft_type\"", 12, "model.", 2, &p) == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "not a JSON object") != NULL && p.n == 0);
}

/* lmc_load_options.adapter_dir: the model owns the adapter and its outputs
 * are those of the same adapter attached by hand. */
static void test_adapter_at_load(void) {
    char *mdir;
    lmc_model *m = load("qwen3", &mdir);
    if (!m) { CHECK(0); model_fixture_cleanup(mdir); return; }
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "q_proj,o_proj,up_proj";
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    randomise(l, 0.1);
    lmc_array *want = lmc_model_logits(m, g_ids[1], TT, true);
    char *dir = tmp_dir();
    CHECK(lmc_lora_save(l, dir) == LMC_OK);
    lmc_lora_free(l);
    lmc_model_free(m);
    lmc_load_options o = lmc_load_options_default();
    o.adapter_dir = dir;
    CHECKF(lmc_model_load(mdir, &o, &m) == LMC_OK, "%s", lmc_last_error());
    const lmc_lora *ad = lmc_model_adapter(m);
    lmc_model_info mi;
    CHECK(lmc_model_get_info(m, &mi) == LMC_OK);
    CHECK(ad && lmc_lora_num_params(ad) == 3 * 2 * mi.num_layers);
    CHECK_STR(lmc_lora_get_config(ad).targets, "q_proj,o_proj,up_proj");
    lmc_array *got = lmc_model_logits(m, g_ids[1], TT, true);
    CHECK(want && got && memcmp(lmc_array_data(want), lmc_array_data(got), lmc_array_nbytes(want)) == 0);
    lmc_lora *second = NULL;
    CHECK(lmc_lora_create(m, NULL, &second) == LMC_ERR_INVALID_ARGUMENT); /* the model's own set is attached */
    lmc_model_free(m);                                                     /* frees the adapter */
    /* A bad adapter folder fails the load, naming it. */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/none", dir);
    o.adapter_dir = bad;
    m = NULL;
    CHECK(lmc_model_load(mdir, &o, &m) != LMC_OK && !m && strstr(lmc_last_error(), bad));
    /* Backends without the native decoder refuse adapters before starting. */
    o.backend = "subprocess";
    o.bridge = "/nonexistent/bridge";
    o.adapter_dir = dir;
    CHECK(lmc_model_load(mdir, &o, &m) == LMC_ERR_UNSUPPORTED && !m && strstr(lmc_last_error(), "subprocess"));
    lmc_array_free(want), lmc_array_free(got);
    rm_dir(dir);
    model_fixture_cleanup(mdir);
}

/* Max |a - b| over two logits arrays of the same shape, and max |b|. */
static double max_diff(const lmc_array *a, const lmc_array *b, double *bmax) {
    float *va = read_f32(a), *vb = read_f32(b);
    double d = 0;
    *bmax = 0;
    for (int64_t i = 0; i < lmc_array_size(a); i++) {
        d = fmax(d, fabs((double)va[i] - vb[i]));
        *bmax = fmax(*bmax, fabs(vb[i]));
    }
    free(va), free(vb);
    return d;
}

/* A fused checkpoint loads as a plain model whose logits match the adapter
 * model's: up to f32 rounding when written in f32 (the merge itself), and
 * up to the rounding of every merged (or dequantised) weight to bf16 when
 * written as lmc_lora_fuse writes it. Measured max |Δlogit| / max |logit|
 * for bf16: llama 1.0%, gemma3 1.0%, llama_mlx4 1.9% (all its weights are
 * dequantised values, none of which bf16 holds exactly); f32: < 4e-5
 * absolute. Bounds: 2e-4 absolute for f32; 2% (5% for the 4-bit base) of
 * max |logit| for bf16. */
static void check_fuse(const char *name, double rel_bf16) {
    char *mdir;
    lmc_model *m = load(name, &mdir);
    if (!m) { CHECK(0); model_fixture_cleanup(mdir); return; }
    lmc_lora_config c = lmc_lora_config_default();
    c.targets = "all-linear";
    lmc_lora *l = NULL;
    CHECK(lmc_lora_create(m, &c, &l) == LMC_OK);
    randomise(l, 0.1);
    lmc_array *want = lmc_model_logits(m, g_ids[0], TT, true);
    CHECK(lmc_lora_fuse(l, mdir) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "own folder"));
    /* k = 2: f32 again, in shards of 64 KiB (several files and an index);
     * then once more in one file into the same folder, whose stale index
     * must go */
    size_t grew[3] = {0, 0, 0}; /* lmc's peak allocation during each fuse, over what was live before */
    for (int k = 0; k < 3; k++) {
        char *out = tmp_dir();
        size_t live = lmc_memory(LMC_CPU).active_bytes;
        lmc_memory_reset_peak(LMC_CPU);
        lmc_status s = k == 1 ? lmc_lora_fuse(l, out) : lmc_lora_fuse_as(l, out, LMC_F32, k == 2 ? 65536 : LMC_LORA_FUSE_SHARD_BYTES);
        grew[k] = lmc_memory(LMC_CPU).peak_bytes - live;
        CHECKF(s == LMC_OK, "%s", lmc_last_error());
        if (k == 2) {
            /* one shard's tensors live at a time, not the whole model's */
            fprintf(stderr, "fuse %s: peak allocation %zu bytes in one file, %zu in shards of 64 KiB\n", name, grew[0], grew[2]);
            CHECKF(grew[2] * 2 < grew[0], "%s: sharded fuse peak %zu, one file %zu", name, grew[2], grew[0]);
            char *idx = read_text(out, "model.safetensors.index.json"), *one = read_text(out, "model.safetensors");
            CHECKF(idx && strstr(idx, "model-00002.safetensors") && strstr(idx, "total_size") && !one, "%s: sharded", name);
            free(idx);
            free(one);
            for (int again = 0; again < 2; again++) {
                lmc_model *f2 = NULL;
                CHECKF(lmc_model_load(out, NULL, &f2) == LMC_OK, "%s", lmc_last_error());
                lmc_array *g2 = f2 ? lmc_model_logits(f2, g_ids[0], TT, true) : NULL;
                double bm = 0, d2 = g2 ? max_diff(g2, want, &bm) : INFINITY;
                CHECKF(d2 <= 2e-4, "%s: %s fused logits differ by %g", name, again ? "re-fused" : "sharded", d2);
                lmc_array_free(g2);
                lmc_model_free(f2);
                if (!again) {
                    CHECK(lmc_lora_fuse_as(l, out, LMC_F32, LMC_LORA_FUSE_SHARD_BYTES) == LMC_OK);
                    idx = read_text(out, "model.safetensors.index.json");
                    one = read_text(out, "model.safetensors");
                    CHECKF(!idx && one, "%s: one file over the shards", name);
                    free(idx);
                    free(one);
                }
            }
        }
        lmc_model *f = NULL;
        CHECKF(lmc_model_load(out, NULL, &f) == LMC_OK, "%s", lmc_last_error());
        lmc_model_info info;
        CHECK(f && lmc_model_get_info(f, &info) == LMC_OK && info.quant_bits == 0);
        CHECK(f && !strcmp(info.dtype, k == 1 ? "bfloat16" : "float32"));
        char *cfg = read_text(out, "config.json");
        CHECK(cfg && !strstr(cfg, "quantization") && strstr(cfg, k == 1 ? "bfloat16" : "float32"));
        free(cfg);
        char *tok = read_text(out, "tokenizer.json");
        CHECK(tok != NULL);
        free(tok);
        lmc_array *got = f ? lmc_model_logits(f, g_ids[0], TT, true) : NULL;
        double bmax = 0, d = got ? max_diff(got, want, &bmax) : INFINITY;
        double tol = k == 1 ? rel_bf16 * bmax : 2e-4;
        CHECKF(d <= tol, "%s: fused logits differ by %g (max |logit| %g)", name, d, bmax);
        fprintf(stderr, "fuse %s (%s): max |fused - adapter| logits %.3g (max |logit| %.3g)\n", name, k == 1 ? "bf16" : "f32",
                d, bmax);
        lmc_array_free(got);
        lmc_model_free(f);
        rm_dir(out);
    }
    lmc_array_free(want);
    lmc_lora_free(l);
    lmc_model_free(m);
    model_fixture_cleanup(mdir);
}

static void test_fuse(void) {
    check_fuse("llama", 0.02);
    check_fuse("gemma3", 0.02);
    check_fuse("llama_mlx4", 0.05);
}

int main(void) {
    int64_t live = lmc_live_arrays();
    RUN(test_linear_adapter);
    RUN(test_fresh_adapters_leave_logits);
    RUN(test_grads_finite_differences);
    RUN(test_checkpointing_and_dropout);
    RUN(test_bf16_adapters);
    RUN(test_create_errors);
    RUN(test_save_load_roundtrip);
    RUN(test_load_peft_options);
    RUN(test_load_errors);
    RUN(test_plan_parse);
    RUN(test_adapter_at_load);
    RUN(test_fuse);
    CHECKF(lmc_live_arrays() == live, "%lld arrays leaked", (long long)(lmc_live_arrays() - live));
    return TEST_REPORT();
}
