/* LoRA against Hugging Face peft: the golden fixtures in tests/data/lora
 * (written by scripts/make_lora_fixtures.py on the GPU machine; its
 * docstring describes every tensor). For the tiny Llama 3 (r 4, alpha 8,
 * q_proj,v_proj) and Qwen 3 (r 8, alpha 16, all seven linear modules)
 * golden models, with an adapter whose A and B are both non-zero:
 *   - lmc_lora_load reads peft's adapter folder (names, shapes, values);
 *   - logits with the adapter (attached by lmc_lora_load and through
 *     lmc_load_options.adapter_dir) match peft's; freeing the adapter gives
 *     the base model's logits back; a wrong model's adapter is refused and
 *     leaves nothing attached;
 *   - the masked loss of a fixed right-padded batch and its gradient with
 *     respect to every A and B match peft's, with and without gradient
 *     checkpointing;
 *   - five AdamW steps (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay
 *     0.01) follow torch.optim.AdamW's losses and end at its parameters,
 *     with and without checkpointing.
 *
 * Tolerances. lmc computes in f32 on the same bf16 weights (bf16 -> f32 is
 * exact), so only summation order and libm differ. The script measured an
 * independent f32 re-implementation against peft: loss ~1e-7 relative,
 * gradients <= 8e-6 of each tensor's largest element, parameters after five
 * steps <= 1.3e-6 absolute and 7e-6 of the update's norm. The bounds below
 * are 10-100x that spread, and each is well inside what a plausible bug
 * moves (recorded in reference.json "sensitivity"): ignoring the loss mask
 * moves the loss by >= 5e-3 relative and the gradients by ~1x their max,
 * scale 1 instead of alpha / r likewise, forgetting weight decay moves the
 * parameters by 1.4e-3 of the update, dropping bias correction by ~3x.
 *   loss                |lmc - peft| <= 1e-4 * |peft|
 *   each gradient       max |lmc - peft| <= 1e-3 * max |peft|
 *   AdamW losses        each within 1e-4 relative
 *   AdamW parameters    max |lmc - peft| <= 1e-5 and
 *                       |lmc - peft|_2 <= 2e-4 * |peft - initial|_2
 *   logits              max |lmc - peft| <= 2e-3 (as tests/data/models)
 * Checkpointing recomputes the same forward pass, so its loss and gradients
 * must also agree with lmc's own non-checkpointed ones to 1e-6 of their max. */
#include <math.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

#define TOL_LOSS_REL 1e-4
#define TOL_GRAD_REL_TO_MAX 1e-3
#define TOL_ADAMW_LOSS_REL 1e-4
#define TOL_PARAM_ABS 1e-5
#define TOL_PARAM_NORM_REL 2e-4
#define TOL_LOGITS_ABS 2e-3
#define TOL_CHECKPOINT_REL 1e-6
#define ADAMW_STEPS 5

typedef struct variant {
    const char *name;
    int rank;
    double alpha;
    const char *targets; /* lmc's canonical comma list */
    int num_params;      /* A and B per adapted module per layer (3 layers) */
} variant;

static const variant variants[] = {
    {"llama", 4, 8, "q_proj,v_proj", 3 * 2 * 2},
    {"qwen3", 8, 16, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 3 * 7 * 2},
};

typedef struct fixture {
    const variant *v;
    char adapter_dir[4096];
    lmc_safetensors *ref, *adapter;
    lmc_array *ids, *targets, *mask; /* [B, T] */
    int32_t *ids0;                   /* sequence 0 (len0 tokens) */
    int64_t len0, V;
    float *logits0;                  /* [len0, V] */
    double loss;
    float losses[ADAMW_STEPS + 1];
} fixture;

/* A tensor of a fixture file as f32 values (malloc'd), its element count in *n. */
static float *read_f32(const lmc_safetensors *st, const char *name, int64_t *n) {
    lmc_array *a = lmc_safetensors_get(st, name);
    if (!a) {
        fprintf(stderr, "%s\n", lmc_last_error());
        return NULL;
    }
    *n = lmc_array_size(a);
    float *v = malloc((size_t)*n * sizeof *v);
    if (lmc_array_read(a, LMC_F32, v, (size_t)*n) != LMC_OK) {
        free(v);
        v = NULL;
    }
    lmc_array_free(a);
    return v;
}

static float *array_f32(const lmc_array *a) {
    int64_t n = lmc_array_size(a);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (lmc_array_read(a, LMC_F32, v, (size_t)n) != LMC_OK) {
        free(v);
        return NULL;
    }
    return v;
}

static void fixture_free(fixture *f) {
    lmc_array_free(f->ids);
    lmc_array_free(f->targets);
    lmc_array_free(f->mask);
    free(f->ids0);
    free(f->logits0);
    lmc_safetensors_close(f->ref);
    lmc_safetensors_close(f->adapter);
}

static bool fixture_load(const variant *v, fixture *f) {
    memset(f, 0, sizeof *f);
    f->v = v;
    char path[4096];
    snprintf(f->adapter_dir, sizeof f->adapter_dir, "%s/lora/%s/adapter", LMC_TEST_DATA, v->name);
    snprintf(path, sizeof path, "%s/lora/%s/reference.safetensors", LMC_TEST_DATA, v->name);
    if (lmc_safetensors_open(path, &f->ref) != LMC_OK) {
        fprintf(stderr, "%s (run scripts/make_lora_fixtures.py on the GPU machine)\n", lmc_last_error());
        return false;
    }
    snprintf(path, sizeof path, "%s/lora/%s/adapter/adapter_model.safetensors", LMC_TEST_DATA, v->name);
    if (lmc_safetensors_open(path, &f->adapter) != LMC_OK) {
        fprintf(stderr, "%s\n", lmc_last_error());
        return false;
    }
    f->ids = lmc_safetensors_get(f->ref, "ids");
    f->targets = lmc_safetensors_get(f->ref, "targets");
    f->mask = lmc_safetensors_get(f->ref, "mask");
    if (!f->ids || !f->targets || !f->mask || lmc_array_ndim(f->ids) != 2) return false;
    int64_t n, T = lmc_array_dim(f->ids, 1);
    f->logits0 = read_f32(f->ref, "logits_0", &n);
    lmc_array *lg = lmc_safetensors_get(f->ref, "logits_0");
    if (!f->logits0 || !lg) {
        lmc_array_free(lg);
        return false;
    }
    f->len0 = lmc_array_dim(lg, 0);
    f->V = lmc_array_dim(lg, 1);
    lmc_array_free(lg);
    if (f->len0 > T) return false;
    int32_t *all = malloc((size_t)lmc_array_size(f->ids) * sizeof *all);
    lmc_array_read(f->ids, LMC_I32, all, (size_t)lmc_array_size(f->ids));
    f->ids0 = malloc((size_t)f->len0 * sizeof *f->ids0);
    memcpy(f->ids0, all, (size_t)f->len0 * sizeof *all); /* row 0 */
    free(all);
    float *loss = read_f32(f->ref, "loss", &n);
    float *losses = read_f32(f->ref, "losses", &n);
    bool ok = loss && losses && n == ADAMW_STEPS + 1;
    if (ok) {
        f->loss = loss[0];
        memcpy(f->losses, losses, sizeof f->losses);
    }
    free(loss);
    free(losses);
    return ok;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN becomes the worst */
    }
    return worst;
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* Logits of sequence 0 with whatever adapter the model has; max |diff| from
 * `want` (INFINITY when they cannot be computed). */
static double logits_diff(lmc_model *m, const fixture *f, const float *want) {
    lmc_array *lg = lmc_model_logits(m, f->ids0, (size_t)f->len0, true);
    double d = INFINITY;
    if (lg && lmc_array_size(lg) == f->len0 * f->V) {
        float *v = array_f32(lg);
        if (v) d = max_abs_diff(v, want, f->len0 * f->V);
        free(v);
    } else {
        fprintf(stderr, "logits: %s\n", lmc_last_error());
    }
    lmc_array_free(lg);
    return d;
}

/* The gradient of every parameter against the fixture's grad.NAME; returns
 * the worst max |diff| / max |peft| over the parameters. */
static double check_grads(const fixture *f, const lmc_lora *l, lmc_array **grads, const char *what) {
    double worst = 0;
    int n = lmc_lora_num_params(l);
    for (int i = 0; i < n; i++) {
        const char *pname = lmc_lora_param_name(l, i);
        char key[512];
        snprintf(key, sizeof key, "grad.%s", pname ? pname : "(null)");
        int64_t nref = 0;
        float *ref = read_f32(f->ref, key, &nref);
        float *got = grads[i] ? array_f32(grads[i]) : NULL;
        CHECKF(ref && got && lmc_array_size(grads[i]) == nref && lmc_array_dtype(grads[i]) == LMC_F32,
               "%s %s: gradient %s missing or of the wrong size", f->v->name, what, key);
        if (ref && got && lmc_array_size(grads[i]) == nref) {
            double rel = max_abs_diff(got, ref, nref) / max_abs(ref, nref);
            CHECKF(rel <= TOL_GRAD_REL_TO_MAX, "%s %s: %s differs from peft by %.3g of its max", f->v->name, what,
                   pname, rel);
            if (!(rel <= worst)) worst = rel;
        }
        free(ref);
        free(got);
    }
    return worst;
}

static void free_grads(lmc_array **grads, int n) {
    for (int i = 0; i < n; i++) {
        lmc_array_free(grads[i]);
        grads[i] = NULL;
    }
}

/* The adapter as loaded: configuration, parameter names, shapes and values
 * exactly those of peft's file. */
static void check_loaded(const fixture *f, const lmc_lora *l) {
    const variant *v = f->v;
    lmc_lora_config c = lmc_lora_get_config(l);
    CHECKF(c.rank == v->rank && c.alpha == v->alpha && c.dropout == 0, "%s: config r %d alpha %g dropout %g",
           v->name, c.rank, c.alpha, c.dropout);
    CHECK_STR(c.targets, v->targets);
    int n = lmc_lora_num_params(l);
    CHECKF(n == v->num_params && (size_t)n == lmc_safetensors_count(f->adapter), "%s: %d parameters", v->name, n);
    lmc_array *const *params = lmc_lora_params(l);
    int64_t elements = 0;
    for (int i = 0; i < n; i++) {
        const char *pname = lmc_lora_param_name(l, i);
        CHECKF(pname && lmc_safetensors_contains(f->adapter, pname), "%s: parameter %d named %s", v->name, i,
               pname ? pname : "(null)");
        if (!pname || !lmc_safetensors_contains(f->adapter, pname)) continue;
        /* lmc's order: A then B of each module, layer by layer. */
        CHECKF(strstr(pname, i % 2 ? ".lora_B.weight" : ".lora_A.weight") != NULL, "%s: parameter %d is %s",
               v->name, i, pname);
        int64_t nf;
        float *want = read_f32(f->adapter, pname, &nf);
        float *got = array_f32(params[i]);
        int64_t shape[LMC_MAX_DIMS];
        int nd = 0;
        lmc_safetensors_info(f->adapter, pname, NULL, &nd, shape);
        bool same_shape = nd == lmc_array_ndim(params[i]);
        for (int d = 0; same_shape && d < nd; d++) same_shape = shape[d] == lmc_array_dim(params[i], d);
        CHECKF(same_shape, "%s: %s has the wrong shape", v->name, pname);
        CHECKF(want && got && same_shape && max_abs_diff(got, want, nf) == 0, "%s: %s values differ from the file",
               v->name, pname);
        elements += nf;
        free(want);
        free(got);
    }
    CHECKF(lmc_lora_num_elements(l) == elements, "%s: %lld elements, the file has %lld", v->name,
           (long long)lmc_lora_num_elements(l), (long long)elements);
}

/* Loss and gradients of the fixture batch, with and without checkpointing. */
static void check_loss_and_grads(const fixture *f, lmc_lora *l) {
    int n = lmc_lora_num_params(l);
    lmc_array **g = calloc((size_t)n, sizeof *g), **gc = calloc((size_t)n, sizeof *gc);
    lmc_lora_step_options o = lmc_lora_step_options_default();
    o.training = true; /* dropout 0: the training path computes the same function */
    double loss = NAN, loss_c = NAN;
    lmc_status s = lmc_lora_loss_and_grad(l, f->ids, f->targets, f->mask, &o, &loss, g);
    CHECKF(s == LMC_OK, "%s: loss_and_grad: %s", f->v->name, lmc_last_error());
    CHECK_CLOSE(loss, f->loss, 0, TOL_LOSS_REL);
    double worst = s == LMC_OK ? check_grads(f, l, g, "(no checkpointing)") : INFINITY;

    o.checkpoint = true;
    s = lmc_lora_loss_and_grad(l, f->ids, f->targets, f->mask, &o, &loss_c, gc);
    CHECKF(s == LMC_OK, "%s: loss_and_grad with checkpointing: %s", f->v->name, lmc_last_error());
    CHECK_CLOSE(loss_c, f->loss, 0, TOL_LOSS_REL);
    double worst_c = s == LMC_OK ? check_grads(f, l, gc, "(checkpointing)") : INFINITY;
    double same = 0;
    for (int i = 0; s == LMC_OK && i < n; i++) {
        float *a = g[i] ? array_f32(g[i]) : NULL, *b = gc[i] ? array_f32(gc[i]) : NULL;
        if (a && b) same = fmax(same, max_abs_diff(b, a, lmc_array_size(g[i])) / max_abs(a, lmc_array_size(g[i])));
        else same = INFINITY;
        free(a);
        free(b);
    }
    CHECKF(same <= TOL_CHECKPOINT_REL && fabs(loss_c - loss) <= TOL_CHECKPOINT_REL * fabs(loss),
           "%s: checkpointing changes the loss by %.3g and the gradients by %.3g of max", f->v->name, loss_c - loss,
           same);
    fprintf(stderr, "  %s: loss %.9g (peft %.9g, rel %.2g); gradients within %.2g of max (checkpointing %.2g; "
            "checkpointing vs not %.2g)\n", f->v->name, loss, f->loss, fabs(loss - f->loss) / f->loss, worst,
            worst_c, same);

    /* The loss alone (no gradients) is the same number. */
    double loss_only = NAN;
    o.checkpoint = false;
    s = lmc_lora_loss_and_grad(l, f->ids, f->targets, f->mask, &o, &loss_only, NULL);
    CHECKF(s == LMC_OK && fabs(loss_only - loss) <= TOL_CHECKPOINT_REL * fabs(loss), "%s: loss only %.9g vs %.9g",
           f->v->name, loss_only, loss);
    free_grads(g, n);
    free_grads(gc, n);
    free(g);
    free(gc);
}

/* Five AdamW steps from peft's adapter (loaded afresh), against torch's. */
static void check_adamw(const fixture *f, lmc_model *m, bool checkpoint) {
    const char *what = checkpoint ? "AdamW with checkpointing" : "AdamW";
    lmc_lora *l = NULL;
    lmc_status s = lmc_lora_load(m, f->adapter_dir, &l);
    CHECKF(s == LMC_OK, "%s %s: load: %s", f->v->name, what, lmc_last_error());
    if (s != LMC_OK) return;
    int n = lmc_lora_num_params(l);
    lmc_array *const *params = lmc_lora_params(l);
    lmc_adamw_config c = lmc_adamw_config_default();
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.01;
    lmc_adamw *opt = lmc_adamw_create(&c, n, params);
    CHECKF(opt != NULL, "%s %s: create: %s", f->v->name, what, lmc_last_error());
    lmc_array **g = calloc((size_t)n, sizeof *g);
    lmc_lora_step_options o = lmc_lora_step_options_default();
    o.training = true;
    o.checkpoint = checkpoint;
    double losses[ADAMW_STEPS + 1];
    for (int k = 0; k <= ADAMW_STEPS; k++) losses[k] = NAN;
    for (int k = 0; opt && k < ADAMW_STEPS; k++) {
        s = lmc_lora_loss_and_grad(l, f->ids, f->targets, f->mask, &o, &losses[k], g);
        CHECKF(s == LMC_OK, "%s %s step %d: %s", f->v->name, what, k + 1, lmc_last_error());
        if (s != LMC_OK) break;
        s = lmc_adamw_step(opt, g);
        CHECKF(s == LMC_OK, "%s %s step %d: %s", f->v->name, what, k + 1, lmc_last_error());
        free_grads(g, n);
        if (s != LMC_OK) break;
    }
    free_grads(g, n);
    free(g);
    if (opt && s == LMC_OK) {
        CHECK(lmc_adamw_steps(opt) == ADAMW_STEPS);
        s = lmc_lora_loss_and_grad(l, f->ids, f->targets, f->mask, &o, &losses[ADAMW_STEPS], NULL);
        CHECKF(s == LMC_OK, "%s %s: final loss: %s", f->v->name, what, lmc_last_error());
    }
    double worst_loss = 0;
    for (int k = 0; k <= ADAMW_STEPS; k++) {
        double rel = fabs(losses[k] - f->losses[k]) / fabs((double)f->losses[k]);
        CHECKF(rel <= TOL_ADAMW_LOSS_REL, "%s %s: loss %d is %.9g, peft's %.9g", f->v->name, what, k, losses[k],
               (double)f->losses[k]);
        if (!(rel <= worst_loss)) worst_loss = rel;
    }

    /* Final parameters: element-wise and relative to the size of the update. */
    double worst_abs = 0, diff2 = 0, update2 = 0;
    for (int i = 0; i < n; i++) {
        const char *pname = lmc_lora_param_name(l, i);
        char key[512];
        snprintf(key, sizeof key, "final.%s", pname ? pname : "(null)");
        int64_t nref = 0, ninit = 0;
        float *ref = read_f32(f->ref, key, &nref);
        float *init = pname ? read_f32(f->adapter, pname, &ninit) : NULL;
        float *got = array_f32(params[i]);
        bool ok = ref && init && got && nref == ninit && nref == lmc_array_size(params[i]);
        CHECKF(ok, "%s %s: final %s", f->v->name, what, key);
        for (int64_t j = 0; ok && j < nref; j++) {
            double d = (double)got[j] - ref[j], u = (double)ref[j] - init[j];
            if (!(fabs(d) <= worst_abs)) worst_abs = fabs(d);
            diff2 += d * d;
            update2 += u * u;
        }
        free(ref);
        free(init);
        free(got);
    }
    double norm_rel = sqrt(diff2 / update2);
    CHECKF(worst_abs <= TOL_PARAM_ABS && norm_rel <= TOL_PARAM_NORM_REL,
           "%s %s: parameters after %d steps differ from peft's by %.3g (max abs), %.3g of the update (norm)",
           f->v->name, what, ADAMW_STEPS, worst_abs, norm_rel);
    fprintf(stderr, "  %s %s: losses %.6f -> %.6f (peft %.6f -> %.6f, worst rel %.2g); parameters within %.2g "
            "abs, %.2g of the update\n", f->v->name, what, losses[0], losses[ADAMW_STEPS], (double)f->losses[0],
            (double)f->losses[ADAMW_STEPS], worst_loss, worst_abs, norm_rel);
    lmc_adamw_free(opt);
    lmc_lora_free(l);
}

/* Everything on one loaded model (m: the golden base model, no adapter). */
static void check_model(const fixture *f, lmc_model *m, const char *model_dir) {
    const variant *v = f->v;
    /* The base model's logits (the adapter must move them, or the logits
     * comparisons below could not tell an ignored adapter from a loaded one). */
    lmc_array *base_lg = lmc_model_logits(m, f->ids0, (size_t)f->len0, true);
    float *base = base_lg ? array_f32(base_lg) : NULL;
    lmc_array_free(base_lg);
    CHECKF(base != NULL, "%s: base logits: %s", v->name, lmc_last_error());
    if (!base) return;
    double effect = max_abs_diff(base, f->logits0, f->len0 * f->V);
    CHECKF(effect > 100 * TOL_LOGITS_ABS, "%s: the adapter moves peft's logits by only %.3g", v->name, effect);

    lmc_lora *l = NULL;
    lmc_status s = lmc_lora_load(m, f->adapter_dir, &l);
    CHECKF(s == LMC_OK && l, "%s: lmc_lora_load: %s", v->name, lmc_last_error());
    if (s == LMC_OK && l) {
        check_loaded(f, l);
        double d = logits_diff(m, f, f->logits0);
        CHECKF(d <= TOL_LOGITS_ABS, "%s: logits with the adapter differ from peft's by %.3g", v->name, d);
        fprintf(stderr, "  %s: logits with the adapter within %.2g of peft's (the adapter moves them by %.3g)\n",
                v->name, d, effect);
        check_loss_and_grads(f, l);
        lmc_lora_free(l);
        d = logits_diff(m, f, base);
        CHECKF(d <= 1e-6, "%s: after lmc_lora_free the logits are %.3g away from the base model's", v->name, d);
    }
    check_adamw(f, m, false);
    check_adamw(f, m, true);

    /* The other variant's adapter does not fit this model: refused with a
     * message naming the file and a tensor, and nothing stays attached. */
    const variant *other = v == &variants[0] ? &variants[1] : &variants[0];
    char other_dir[4096];
    snprintf(other_dir, sizeof other_dir, "%s/lora/%s/adapter", LMC_TEST_DATA, other->name);
    l = NULL;
    s = lmc_lora_load(m, other_dir, &l);
    CHECKF(s != LMC_OK && l == NULL, "%s: the %s adapter was accepted", v->name, other->name);
    CHECKF(s == LMC_OK || (strstr(lmc_last_error(), "adapter_model.safetensors") && strstr(lmc_last_error(), "lora_")),
           "%s: the error for a mismatched adapter does not name the file and tensor: %s", v->name,
           lmc_last_error());
    if (s == LMC_OK) lmc_lora_free(l);
    double d = logits_diff(m, f, base);
    CHECKF(d <= 1e-6, "%s: a refused adapter changed the logits by %.3g", v->name, d);

    /* Attached at load time, as `lmc generate --adapter DIR` does. */
    lmc_load_options lo = lmc_load_options_default();
    lo.adapter_dir = f->adapter_dir;
    lmc_model *ma = NULL;
    s = lmc_model_load(model_dir, &lo, &ma);
    CHECKF(s == LMC_OK, "%s: load with adapter_dir: %s", v->name, lmc_last_error());
    if (ma) {
        d = logits_diff(ma, f, f->logits0);
        CHECKF(d <= TOL_LOGITS_ABS, "%s: logits with adapter_dir differ from peft's by %.3g", v->name, d);
    }
    lmc_model_free(ma);
    free(base);
}

static void check_variant(const variant *v) {
    fprintf(stderr, "%s\n", v->name);
    fixture f;
    bool have = fixture_load(v, &f);
    CHECKF(have, "%s: tests/data/lora fixture", v->name);
    char *dir = have ? model_fixture_dir(v->name) : NULL;
    CHECKF(!have || dir, "%s: model fixture folder", v->name);
    lmc_model *m = NULL;
    if (dir) {
        lmc_load_options lo = lmc_load_options_default();
        lmc_status s = lmc_model_load(dir, &lo, &m);
        CHECKF(s == LMC_OK, "%s: load: %s", v->name, lmc_last_error());
    }
    if (m) check_model(&f, m, dir);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
    fixture_free(&f);
}

int main(void) {
    int64_t live = lmc_live_arrays();
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) check_variant(&variants[i]);
    CHECKF(lmc_live_arrays() == live, "%lld arrays left alive", (long long)(lmc_live_arrays() - live));
    return TEST_REPORT();
}
