/* AdamW against hand-computed steps, global-norm clipping and the
 * learning-rate schedules at chosen steps. The optimiser computes in f32,
 * so its results are compared with 2e-6 relative tolerance. */
#include "core/array.h"
#include "lmc/ops.h"
#include "lmc/train.h"
#include "test_util.h"

static lmc_array *vec(const float *v, int64_t n) { return lmc_array_from_data(v, LMC_F32, 1, &n); }

static void read3(const lmc_array *a, float *out) { CHECK(lmc_array_read(a, LMC_F32, out, 3) == LMC_OK); }

/* lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.1, p0 = [1, -2, 0.5].
 *
 * Step 1, g = [0.5, -1, 2]: decay p *= 1 - 0.1·0.1 = 0.99 -> [0.99, -1.98, 0.495];
 *   m = 0.1 g = [0.05, -0.1, 0.2]; v = 0.001 g² = [0.00025, 0.001, 0.004];
 *   bias corrections 1 - 0.9 = 0.1 and 1 - 0.999 = 0.001, so m̂ = g and
 *   √v̂ = |g|: the step is lr·sign(g) (eps shifts it by ~1e-9):
 *   p = [0.99 - 0.1, -1.98 + 0.1, 0.495 - 0.1] = [0.89, -1.88, 0.395].
 * Step 2, g = [0.1, 0.2, -0.3]: m = 0.9 m + 0.1 g = [0.055, -0.07, 0.15];
 *   v = 0.999 v + 0.001 g² = [0.00025975, 0.001039, 0.004086];
 *   bias corrections 1 - 0.81 = 0.19 and 1 - 0.999² = 0.001999. Element 0:
 *   0.89·0.99 = 0.8811; m̂ = 0.055/0.19 = 0.28947368; √v̂ = √(0.00025975/0.001999)
 *   = 0.36047152; p = 0.8811 - 0.1·0.28947368/0.36047152 = 0.80079591.
 *   Likewise p = [0.80079591, -1.81009739, 0.33583020].
 * Step 3, g = [-0.4, 0, 1]: m = [0.0095, -0.063, 0.235];
 *   v = [0.00041949025, 0.001037961, 0.005081914]; corrections 0.271 and
 *   0.002997001: p = [0.78341801, -1.75249396, 0.26587893]. */
static void test_adamw_three_steps(void) {
    float p0[3] = {1.0f, -2.0f, 0.5f};
    float g[3][3] = {{0.5f, -1.0f, 2.0f}, {0.1f, 0.2f, -0.3f}, {-0.4f, 0.0f, 1.0f}};
    double want_p[3][3] = {{0.89, -1.88, 0.395},
                           {0.80079591, -1.81009739, 0.33583020},
                           {0.78341801, -1.75249396, 0.26587893}};
    double want_m[3] = {0.0095, -0.063, 0.235}, want_v[3] = {0.00041949025, 0.001037961, 0.005081914};
    int64_t live0 = lmc_live_arrays();
    lmc_array *p = vec(p0, 3);
    lmc_adamw_config cfg = lmc_adamw_config_default();
    cfg.lr = 0.1;
    cfg.weight_decay = 0.1;
    lmc_adamw *opt = lmc_adamw_create(&cfg, 1, &p);
    CHECK(opt != NULL);
    for (int t = 0; t < 3; t++) {
        lmc_array *gv = vec(g[t], 3);
        CHECK(lmc_adamw_step(opt, &gv) == LMC_OK);
        lmc_array_free(gv);
        float got[3];
        read3(p, got);
        for (int i = 0; i < 3; i++) CHECK_CLOSE(got[i], want_p[t][i], 1e-7, 2e-6);
    }
    CHECK(lmc_adamw_steps(opt) == 3);
    float m[3], v[3];
    read3(lmc_adamw_moment(opt, 0, 0), m);
    read3(lmc_adamw_moment(opt, 0, 1), v);
    for (int i = 0; i < 3; i++) {
        CHECK_CLOSE(m[i], want_m[i], 1e-8, 2e-6);
        CHECK_CLOSE(v[i], want_v[i], 1e-10, 2e-6);
    }
    lmc_adamw_free(opt);
    lmc_array_free(p);
    CHECK(lmc_live_arrays() == live0);
}

/* Defaults (lr 1e-3, weight decay 0.01), a bf16 parameter and a bf16
 * gradient: one step moves each element by lr·sign(g) after decay, and the
 * result is rounded to bf16 once. */
static void test_adamw_bf16(void) {
    float p0[3] = {1.0f, -2.0f, 0.5f}, g0[3] = {3.0f, -0.25f, 1.0f};
    lmc_array *pf = vec(p0, 3), *gf = vec(g0, 3);
    lmc_array *p = lmc_astype(pf, LMC_BF16), *g = lmc_astype(gf, LMC_BF16);
    lmc_adamw *opt = lmc_adamw_create(NULL, 1, &p);
    CHECK(lmc_adamw_step(opt, &g) == LMC_OK);
    double want[3] = {1.0 * (1 - 1e-5) - 1e-3, -2.0 * (1 - 1e-5) + 1e-3, 0.5 * (1 - 1e-5) - 1e-3};
    float got[3];
    read3(p, got);
    for (int i = 0; i < 3; i++) CHECK(got[i] == lmc_bf16_to_f32(lmc_f32_to_bf16((float)want[i])));
    CHECK(lmc_array_dtype(p) == LMC_BF16);
    lmc_adamw_free(opt);
    lmc_array_free(pf), lmc_array_free(gf), lmc_array_free(p), lmc_array_free(g);
}

static void test_adamw_errors(void) {
    float p0[3] = {0};
    lmc_array *p = vec(p0, 3), *g2 = vec(p0, 2);
    lmc_adamw_config bad = lmc_adamw_config_default();
    bad.beta2 = 1.0;
    CHECK(lmc_adamw_create(&bad, 1, &p) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    int32_t iv[3] = {0};
    lmc_array *ints = lmc_array_from_data(iv, LMC_I32, 1, (int64_t[]){3});
    CHECK(lmc_adamw_create(NULL, 1, &ints) == NULL);
    lmc_adamw *opt = lmc_adamw_create(NULL, 1, &p);
    CHECK(lmc_adamw_step(opt, &g2) == LMC_ERR_SHAPE);
    CHECK(lmc_adamw_steps(opt) == 0);
    CHECK(lmc_adamw_set_lr(opt, -1) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_adamw_moment(opt, 1, 0) == NULL);
    lmc_adamw_free(opt);
    lmc_array_free(p), lmc_array_free(g2), lmc_array_free(ints);
}

/* torch.nn.utils.clip_grad_norm_: the norm of [3, 4] and [12] together is 13. */
static void test_clip(void) {
    float a0[2] = {3, 4}, b0[1] = {12};
    lmc_array *g[2] = {vec(a0, 2), vec(b0, 1)};
    double total = 0;
    CHECK(lmc_clip_grad_norm(2, g, 20.0, &total) == LMC_OK);
    CHECK_CLOSE(total, 13.0, 1e-9, 0);
    float a[2], b[1];
    CHECK(lmc_array_read(g[0], LMC_F32, a, 2) == LMC_OK && lmc_array_read(g[1], LMC_F32, b, 1) == LMC_OK);
    CHECK(a[0] == 3 && a[1] == 4 && b[0] == 12); /* under the limit: untouched */
    CHECK(lmc_clip_grad_norm(2, g, 6.5, &total) == LMC_OK);
    CHECK_CLOSE(total, 13.0, 1e-9, 0);
    /* scaled by 6.5 / (13 + 1e-6) */
    CHECK(lmc_array_read(g[0], LMC_F32, a, 2) == LMC_OK && lmc_array_read(g[1], LMC_F32, b, 1) == LMC_OK);
    CHECK_CLOSE(a[0], 1.5, 1e-6, 0);
    CHECK_CLOSE(a[1], 2.0, 1e-6, 0);
    CHECK_CLOSE(b[0], 6.0, 1e-6, 0);
    CHECK_CLOSE(sqrt(a[0] * a[0] + a[1] * a[1] + b[0] * b[0]), 6.5, 2e-6, 0);
    CHECK(lmc_clip_grad_norm(2, g, 0.0, NULL) == LMC_ERR_INVALID_ARGUMENT);
    lmc_array_free(g[0]), lmc_array_free(g[1]);
}

/* transformers' schedules with lr 1e-3, 10 warm-up steps, 110 steps in all. */
static void test_schedules(void) {
    lmc_lr_schedule s = lmc_lr_schedule_default();
    CHECK(s.kind == LMC_LR_CONSTANT && s.warmup_steps == 0);
    CHECK(lmc_lr_at(&s, 0) == s.lr && lmc_lr_at(&s, 12345) == s.lr); /* no warm-up: constant */
    s.lr = 1e-3;
    s.warmup_steps = 10;
    s.total_steps = 110;
    /* warm-up: lr · step / 10 */
    CHECK_CLOSE(lmc_lr_at(&s, 0), 0.0, 0, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 5), 5e-4, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 10), 1e-3, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 1000), 1e-3, 1e-15, 0);
    s.kind = LMC_LR_LINEAR; /* (110 - step) / 100 after warm-up */
    CHECK_CLOSE(lmc_lr_at(&s, 3), 3e-4, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 10), 1e-3, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 60), 5e-4, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 109), 1e-5, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 110), 0.0, 0, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 200), 0.0, 0, 0);
    s.kind = LMC_LR_COSINE; /* ½(1 + cos(π · (step - 10) / 100)) after warm-up */
    CHECK_CLOSE(lmc_lr_at(&s, 10), 1e-3, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 35), 0.5 * (1 + 0.70710678118654752) * 1e-3, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 60), 5e-4, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 85), 0.5 * (1 - 0.70710678118654752) * 1e-3, 1e-15, 0);
    CHECK_CLOSE(lmc_lr_at(&s, 110), 0.0, 1e-18, 0);
    s.warmup_steps = 0; /* no warm-up: step 0 has the full rate */
    CHECK_CLOSE(lmc_lr_at(&s, 0), 1e-3, 1e-15, 0);
}

int main(void) {
    RUN(test_adamw_three_steps);
    RUN(test_adamw_bf16);
    RUN(test_adamw_errors);
    RUN(test_clip);
    RUN(test_schedules);
    return TEST_REPORT();
}
