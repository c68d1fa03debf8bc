/* AdamW, global-norm gradient clipping and learning-rate schedules, with
 * PyTorch / transformers semantics. The updates are written with ops (so
 * they run where the parameters live) and stored back in place with
 * lmc_write_slice. */
#include <math.h>
#include <stdlib.h>

#include "core/array.h"
#include "lmc/ops.h"
#include "lmc/train.h"

struct lmc_adamw {
    lmc_adamw_config cfg;
    int n;
    lmc_array **params; /* the caller's (not references: they must outlive the optimiser) */
    lmc_array **m, **v; /* f32 moments, owned */
    int64_t steps;
};

lmc_adamw_config lmc_adamw_config_default(void) {
    lmc_adamw_config c = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    return c;
}

void lmc_adamw_free(lmc_adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) {
        if (opt->m) lmc_array_free(opt->m[i]);
        if (opt->v) lmc_array_free(opt->v[i]);
    }
    free(opt->params);
    free(opt->m);
    free(opt->v);
    free(opt);
}

static lmc_status check_config(const lmc_adamw_config *c) {
    if (!(c->lr >= 0.0) || !(c->beta1 >= 0.0 && c->beta1 < 1.0) || !(c->beta2 >= 0.0 && c->beta2 < 1.0) ||
        !(c->eps >= 0.0) || !(c->weight_decay >= 0.0))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                             "AdamW: need lr >= 0, 0 <= betas < 1, eps >= 0, weight_decay >= 0 (got lr %g, betas %g %g, "
                             "eps %g, weight_decay %g)",
                             c->lr, c->beta1, c->beta2, c->eps, c->weight_decay);
    return LMC_OK;
}

lmc_adamw *lmc_adamw_create(const lmc_adamw_config *cfg, int n, lmc_array *const *params) {
    lmc_adamw_config c = cfg ? *cfg : lmc_adamw_config_default();
    if (check_config(&c) != LMC_OK) return NULL;
    if (n < 0 || (n > 0 && !params)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: no parameters given");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!params[i] || !lmc_dtype_is_float(params[i]->dtype)) {
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: parameter %d is %s", i,
                          params[i] ? "not a float array" : "NULL");
            return NULL;
        }
    lmc_adamw *opt = calloc(1, sizeof *opt);
    if (!opt) goto oom;
    opt->cfg = c;
    opt->n = n;
    opt->params = calloc((size_t)(n ? n : 1), sizeof *opt->params);
    opt->m = calloc((size_t)(n ? n : 1), sizeof *opt->m);
    opt->v = calloc((size_t)(n ? n : 1), sizeof *opt->v);
    if (!opt->params || !opt->m || !opt->v) goto oom;
    for (int i = 0; i < n; i++) {
        const lmc_array *p = params[i];
        opt->params[i] = params[i];
        opt->m[i] = lmc_array_unscope(lmc_zeros(LMC_F32, p->ndim, p->shape));
        opt->v[i] = lmc_array_unscope(lmc_zeros(LMC_F32, p->ndim, p->shape));
        if (!opt->m[i] || !opt->v[i]) {
            lmc_adamw_free(opt);
            return NULL;
        }
    }
    return opt;
oom:
    lmc_adamw_free(opt);
    lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "AdamW: out of memory");
    return NULL;
}

lmc_status lmc_adamw_set_lr(lmc_adamw *opt, double lr) {
    if (!opt) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: optimiser is NULL");
    if (!(lr >= 0.0)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: learning rate must be >= 0, got %g", lr);
    opt->cfg.lr = lr;
    return LMC_OK;
}

int64_t lmc_adamw_steps(const lmc_adamw *opt) { return opt ? opt->steps : 0; }

const lmc_array *lmc_adamw_moment(const lmc_adamw *opt, int i, int which) {
    if (!opt || i < 0 || i >= opt->n || (which != 0 && which != 1)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: no moment %d of parameter %d", which, i);
        return NULL;
    }
    return which ? opt->v[i] : opt->m[i];
}

/* dst[...] = src (converted to dst's dtype), in place. */
static lmc_status assign(lmc_array *dst, const lmc_array *src) {
    int64_t zero[LMC_MAX_DIMS] = {0};
    return src ? lmc_write_slice(dst, zero, src) : lmc_last_status();
}

lmc_status lmc_adamw_step(lmc_adamw *opt, lmc_array *const *grads) {
    if (!opt || (opt->n > 0 && !grads)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "AdamW: optimiser or grads NULL");
    for (int i = 0; i < opt->n; i++) {
        const lmc_array *g = grads[i], *p = opt->params[i];
        bool fits = g && lmc_dtype_is_float(g->dtype) && g->ndim == p->ndim;
        for (int d = 0; fits && d < p->ndim; d++) fits = g->shape[d] == p->shape[d];
        if (!fits) {
            char b1[128], b2[128];
            return lmc_set_error(LMC_ERR_SHAPE, "AdamW: gradient %d %s does not match its parameter %s", i,
                                 g ? lmc_shape_str(g->ndim, g->shape, b1, sizeof b1) : "(NULL)",
                                 lmc_shape_str(p->ndim, p->shape, b2, sizeof b2));
        }
    }
    const lmc_adamw_config *c = &opt->cfg;
    int64_t t = opt->steps + 1;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    lmc_status s = LMC_OK;
    for (int i = 0; i < opt->n && s == LMC_OK; i++) {
        lmc_scope_begin();
        lmc_array *g = lmc_astype(grads[i], LMC_F32);
        lmc_array *p = lmc_mul_scalar(lmc_astype(opt->params[i], LMC_F32), 1.0 - c->lr * c->weight_decay);
        lmc_array *m = lmc_add(lmc_mul_scalar(opt->m[i], c->beta1), lmc_mul_scalar(g, 1.0 - c->beta1));
        lmc_array *v = lmc_add(lmc_mul_scalar(opt->v[i], c->beta2), lmc_mul_scalar(lmc_square(g), 1.0 - c->beta2));
        lmc_array *denom = lmc_add_scalar(lmc_mul_scalar(lmc_sqrt(v), 1.0 / sqrt(bc2)), c->eps);
        p = lmc_sub(p, lmc_mul_scalar(lmc_div(m, denom), c->lr / bc1));
        if (!p) s = lmc_last_status();
        if (s == LMC_OK) s = assign(opt->m[i], m);
        if (s == LMC_OK) s = assign(opt->v[i], v);
        if (s == LMC_OK) s = assign(opt->params[i], p);
        lmc_scope_end();
    }
    if (s == LMC_OK) opt->steps = t;
    return s;
}

lmc_status lmc_clip_grad_norm(int n, lmc_array *const *grads, double max_norm, double *total_norm) {
    if (total_norm) *total_norm = 0.0;
    if (!(max_norm > 0.0)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "clip_grad_norm: max_norm must be > 0, got %g", max_norm);
    if (n < 0 || (n > 0 && !grads)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "clip_grad_norm: no gradients given");
    double sq = 0.0;
    lmc_status s = LMC_OK;
    lmc_scope_begin();
    for (int i = 0; i < n && s == LMC_OK; i++) {
        double part = 0.0;
        if (!grads[i]) s = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "clip_grad_norm: gradient %d is NULL", i);
        else s = lmc_array_item(lmc_sum(lmc_square(lmc_astype(grads[i], LMC_F32)), LMC_ALL_AXES, false), &part);
        sq += part;
    }
    double total = sqrt(sq);
    double coef = max_norm / (total + 1e-6);
    for (int i = 0; i < n && s == LMC_OK && coef < 1.0; i++) s = assign(grads[i], lmc_mul_scalar(grads[i], coef));
    lmc_scope_end();
    if (s == LMC_OK && total_norm) *total_norm = total;
    return s;
}

/* --- schedules ---------------------------------------------------------------- */

lmc_lr_schedule lmc_lr_schedule_default(void) {
    lmc_lr_schedule s = {.kind = LMC_LR_CONSTANT, .lr = 1e-4, .warmup_steps = 0, .total_steps = 0};
    return s;
}

static double max1(int64_t v) { return v > 1 ? (double)v : 1.0; }

double lmc_lr_at(const lmc_lr_schedule *s, int64_t step) {
    if (!s) return 0.0;
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->lr * (double)step / max1(s->warmup_steps);
    double progress = (double)(step - s->warmup_steps) / max1(s->total_steps - s->warmup_steps);
    double f = 1.0;
    switch (s->kind) {
    case LMC_LR_CONSTANT: f = 1.0; break;
    case LMC_LR_LINEAR: f = (double)(s->total_steps - step) / max1(s->total_steps - s->warmup_steps); break;
    case LMC_LR_COSINE: f = 0.5 * (1.0 + cos(M_PI * progress)); break;
    }
    return s->lr * (f > 0.0 ? f : 0.0);
}
