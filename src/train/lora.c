/* LoRA adapter sets: attaching adapters to a model's Linear layers, their
 * parameters, and the training loss with its gradients (lmc/lora.h). PEFT
 * files are in lora_files.c, merging in lora_fuse.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/ops.h"
#include "lmc/train.h"
#include "runtime/model_internal.h"
#include "train/lora_internal.h"

lmc_lora_config lmc_lora_config_default(void) {
    return (lmc_lora_config){.rank = 8, .alpha = 16.0, .dropout = 0.0, .targets = "q_proj,v_proj", .dtype = LMC_F32,
                             .seed = 0};
}

lmc_lora_step_options lmc_lora_step_options_default(void) {
    return (lmc_lora_step_options){.training = true, .checkpoint = false, .dropout_seed = 0};
}

/* "self_attn.q_proj" -> "q_proj" */
static const char *short_name(int module) { return strchr(lmc_dec_module_names[module], '.') + 1; }

lmc_status lmc_lora_parse_targets(const char *targets, unsigned *mask) {
    *mask = 0;
    if (!targets) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: targets is NULL");
    const char *p = targets;
    while (*p) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ')) p++, len--;
        size_t tl = len;
        while (tl && p[tl - 1] == ' ') tl--;
        if (tl == 10 && !strncmp(p, "all-linear", 10)) {
            *mask |= (1u << LMC_DEC_NUM_MODULES) - 1;
        } else if (tl) {
            int found = -1;
            for (int m = 0; m < LMC_DEC_NUM_MODULES && found < 0; m++)
                if (strlen(short_name(m)) == tl && !strncmp(p, short_name(m), tl)) found = m;
            if (found < 0)
                return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                                     "lora: unknown target module '%.*s' (known: q_proj, k_proj, v_proj, o_proj, "
                                     "gate_proj, up_proj, down_proj, all-linear)",
                                     (int)tl, p);
            *mask |= 1u << found;
        }
        p += len;
        if (*p == ',') p++;
    }
    if (!*mask) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: no target modules in \"%s\"", targets);
    return LMC_OK;
}

void lmc_lora_targets_str(unsigned mask, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = '\0';
    for (int m = 0; m < LMC_DEC_NUM_MODULES; m++)
        if (mask & (1u << m)) at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "%s%s", at ? "," : "", short_name(m));
}

void lmc_lora_module_name(const char *prefix, int64_t layer, int module, char *buf, size_t cap) {
    snprintf(buf, cap, "%slayers.%lld.%s", prefix, (long long)layer, lmc_dec_module_names[module]);
}

lmc_status lmc_lora_alloc(lmc_model *m, int n, lmc_lora **out) {
    *out = NULL;
    lmc_decoder *d = lmc_model_native(m, "LoRA adapters");
    if (!d) return lmc_last_status();
    if (m->lora) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: the model already has an adapter set (free it first)");
    lmc_lora *l = calloc(1, sizeof *l);
    if (!l || !(l->e = calloc((size_t)(n > 0 ? n : 1), sizeof *l->e)) || !(l->base_model = strdup(m->dir))) {
        if (l) free(l->e);
        free(l);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lora: out of memory");
    }
    l->m = m;
    l->n = n;
    l->cfg = lmc_lora_config_default();
    snprintf(l->prefix, sizeof l->prefix, "%s", d->prefix);
    l->num_layers = d->cfg.num_layers;
    *out = l;
    return LMC_OK;
}

double lmc_lora_entry_scale(const lmc_lora *l, const lmc_lora_entry *e) {
    return l->use_rslora ? e->alpha / sqrt((double)e->rank) : e->alpha / (double)e->rank;
}

static void detach(lmc_lora *l) {
    for (int i = 0; i < l->n; i++) {
        if (l->e[i].lin) lmc_linear_set_adapter(l->e[i].lin, NULL);
        l->e[i].lin = NULL;
    }
}

lmc_status lmc_lora_attach(lmc_lora *l) {
    lmc_decoder *d = l->m->dec;
    lmc_status s = LMC_OK;
    l->params = calloc((size_t)(2 * l->n + 1), sizeof *l->params);
    l->names = calloc((size_t)(2 * l->n + 1), sizeof *l->names);
    if (!l->params || !l->names) s = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lora: out of memory");
    for (int i = 0; i < l->n && s == LMC_OK; i++) {
        lmc_lora_entry *e = &l->e[i];
        e->ad.scale = lmc_lora_entry_scale(l, e);
        e->lin = lmc_dec_module(d, e->layer, e->module);
        s = lmc_linear_set_adapter(e->lin, &e->ad);
        if (s != LMC_OK) e->lin = NULL;
        l->params[2 * i] = e->ad.a;
        l->params[2 * i + 1] = e->ad.b;
        for (int ab = 0; ab < 2 && s == LMC_OK; ab++) {
            char full[200], name[256];
            lmc_lora_module_name(l->prefix, e->layer, e->module, full, sizeof full);
            snprintf(name, sizeof name, "base_model.model.%s.lora_%c.weight", full, ab ? 'B' : 'A');
            if (!(l->names[2 * i + ab] = strdup(name))) s = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lora: out of memory");
        }
    }
    if (s != LMC_OK) {
        lmc_lora_free(l);
        return s;
    }
    l->m->lora = l;
    return LMC_OK;
}

void lmc_lora_model_closed(lmc_lora *l) {
    detach(l);
    l->m = NULL;
}

void lmc_lora_free(lmc_lora *l) {
    if (!l) return;
    detach(l);
    if (l->m && l->m->lora == l) {
        l->m->lora = NULL;
        l->m->lora_owned = false;
    }
    for (int i = 0; i < l->n; i++) {
        lmc_array_free(l->e[i].ad.a);
        lmc_array_free(l->e[i].ad.b);
    }
    for (int i = 0; l->names && i < 2 * l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->params);
    free(l->e);
    free(l->base_model);
    free(l);
}

/* SplitMix64: per-adapter seeds derived from the configured one. */
static uint64_t splitmix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t lmc_lora_entry_seed(uint64_t seed, int i) { return splitmix(seed ^ splitmix((uint64_t)i)); }

lmc_status lmc_lora_create(lmc_model *m, const lmc_lora_config *cfg_in, lmc_lora **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_lora_create: out is NULL");
    *out = NULL;
    lmc_lora_config cfg = cfg_in ? *cfg_in : lmc_lora_config_default();
    if (cfg.rank < 1) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: rank must be >= 1, got %d", cfg.rank);
    if (!(cfg.alpha > 0.0) || !isfinite(cfg.alpha))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: alpha must be > 0, got %g", cfg.alpha);
    if (!(cfg.dropout >= 0.0 && cfg.dropout < 1.0))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: dropout must be in [0, 1), got %g", cfg.dropout);
    if (cfg.dtype != LMC_F32 && cfg.dtype != LMC_BF16)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lora: dtype must be f32 or bf16, got %s", lmc_dtype_name(cfg.dtype));
    unsigned mask;
    LMC_CHECK(lmc_lora_parse_targets(cfg.targets, &mask));
    lmc_decoder *d = lmc_model_native(m, "LoRA adapters");
    if (!d) return lmc_last_status();
    int per_layer = __builtin_popcount(mask);
    lmc_lora *l;
    LMC_CHECK(lmc_lora_alloc(m, (int)d->cfg.num_layers * per_layer, &l));
    l->cfg = cfg;
    lmc_lora_targets_str(mask, l->targets, sizeof l->targets);
    l->cfg.targets = l->targets;
    int i = 0;
    lmc_status s = LMC_OK;
    for (int64_t li = 0; li < d->cfg.num_layers && s == LMC_OK; li++)
        for (int mod = 0; mod < LMC_DEC_NUM_MODULES && s == LMC_OK; mod++) {
            if (!(mask & (1u << mod))) continue;
            lmc_lora_entry *e = &l->e[i];
            lmc_linear *lin = lmc_dec_module(d, li, mod);
            int64_t in = lmc_linear_in_features(lin), outf = lmc_linear_out_features(lin);
            int64_t ashape[2] = {cfg.rank, in}, bshape[2] = {outf, cfg.rank};
            /* PEFT: kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0. */
            double bound = 1.0 / sqrt((double)in);
            e->layer = li;
            e->module = mod;
            e->rank = cfg.rank;
            e->alpha = cfg.alpha;
            e->ad.dropout = cfg.dropout;
            e->ad.seed = lmc_lora_entry_seed(cfg.seed, i);
            e->ad.a = lmc_array_unscope(lmc_random_uniform(cfg.dtype, 2, ashape, -bound, bound, splitmix(e->ad.seed)));
            e->ad.b = lmc_array_unscope(lmc_zeros(cfg.dtype, 2, bshape));
            if (!e->ad.a || !e->ad.b) s = lmc_last_status();
            i++;
        }
    if (s != LMC_OK) {
        lmc_lora_free(l);
        return s;
    }
    LMC_CHECK(lmc_lora_attach(l));
    *out = l;
    return LMC_OK;
}

lmc_lora_config lmc_lora_get_config(const lmc_lora *l) { return l ? l->cfg : lmc_lora_config_default(); }
int lmc_lora_num_params(const lmc_lora *l) { return l ? 2 * l->n : 0; }
lmc_array *const *lmc_lora_params(const lmc_lora *l) { return l ? l->params : NULL; }
const char *lmc_lora_param_name(const lmc_lora *l, int i) {
    return l && i >= 0 && i < 2 * l->n ? l->names[i] : NULL;
}
int64_t lmc_lora_num_elements(const lmc_lora *l) {
    int64_t n = 0;
    for (int i = 0; l && i < 2 * l->n; i++) n += lmc_array_size(l->params[i]);
    return n;
}

const lmc_lora *lmc_model_adapter(const lmc_model *m) { return m ? m->lora : NULL; }

/* --- loss and gradients -------------------------------------------------------- */

typedef struct step_ctx {
    const lmc_decoder *d;
    const lmc_array *ids, *targets, *mask;
    lmc_forward_args args;
} step_ctx;

/* The function differentiated: the parameters are reached through the
 * layers (the same array objects the tape knows as inputs). */
static lmc_array *loss_fn(void *ctx, int n, lmc_array *const *params) {
    (void)n;
    (void)params;
    const step_ctx *c = ctx;
    lmc_array *logits = lmc_decoder_forward(c->d, NULL, c->ids, &c->args);
    lmc_array *loss = lmc_cross_entropy(logits, c->targets, c->mask);
    lmc_array_free(logits);
    return loss;
}

static bool same_2d(const lmc_array *a, const lmc_array *ids) {
    return lmc_array_ndim(a) == 2 && lmc_array_dim(a, 0) == lmc_array_dim(ids, 0) && lmc_array_dim(a, 1) == lmc_array_dim(ids, 1);
}

lmc_status lmc_lora_loss_and_grad(lmc_lora *l, const lmc_array *ids, const lmc_array *targets, const lmc_array *mask,
                                  const lmc_lora_step_options *opt_in, double *loss, lmc_array **grads) {
    const char *op = "lmc_lora_loss_and_grad";
    if (!l || !ids || !targets || !loss)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: the adapter, ids, targets and loss must be given", op);
    if (!l->m) return lmc_set_error(LMC_ERR_CLOSED, "%s: the adapter's model is closed", op);
    lmc_decoder *d = lmc_model_native(l->m, "LoRA training");
    if (!d) return lmc_last_status();
    char b1[64], b2[64];
    if (lmc_array_ndim(ids) != 2 || lmc_array_dtype(ids) != LMC_I32)
        return lmc_set_error(LMC_ERR_SHAPE, "%s: ids must be int32 [batch, tokens], got %s %s", op,
                             lmc_dtype_name(lmc_array_dtype(ids)),
                             lmc_shape_str(lmc_array_ndim(ids), lmc_array_shape(ids), b1, sizeof b1));
    if (!same_2d(targets, ids) || lmc_array_dtype(targets) != LMC_I32)
        return lmc_set_error(LMC_ERR_SHAPE, "%s: targets must be int32 shaped like ids %s, got %s %s", op,
                             lmc_shape_str(2, lmc_array_shape(ids), b1, sizeof b1), lmc_dtype_name(lmc_array_dtype(targets)),
                             lmc_shape_str(lmc_array_ndim(targets), lmc_array_shape(targets), b2, sizeof b2));
    if (mask && !same_2d(mask, ids))
        return lmc_set_error(LMC_ERR_SHAPE, "%s: mask must be shaped like ids %s, got %s", op,
                             lmc_shape_str(2, lmc_array_shape(ids), b1, sizeof b1),
                             lmc_shape_str(lmc_array_ndim(mask), lmc_array_shape(mask), b2, sizeof b2));
    lmc_lora_step_options opt = opt_in ? *opt_in : lmc_lora_step_options_default();
    lmc_linear_run run = {.training = opt.training, .seed = opt.dropout_seed};
    lmc_status s = LMC_OK;
    lmc_scope_begin();
    step_ctx c = {.d = d, .ids = ids, .targets = targets, .mask = mask};
    /* lmc_cross_entropy takes bool, i32, u8 or float masks; other integers go through f32. */
    lmc_dtype mdt = mask ? lmc_array_dtype(mask) : LMC_F32;
    if (mask && !lmc_dtype_is_float(mdt) && mdt != LMC_BOOL && mdt != LMC_I32 && mdt != LMC_U8)
        c.mask = lmc_astype(mask, LMC_F32);
    c.args.lora_run = &run;
    if (opt.checkpoint && !(c.args.checkpoint = calloc((size_t)d->cfg.num_layers, sizeof *c.args.checkpoint))) {
        lmc_scope_end();
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", op);
    }
    lmc_array *value = NULL;
    if (grads) {
        s = lmc_value_and_grad(loss_fn, &c, 2 * l->n, l->params, &value, grads);
        for (int i = 0; s == LMC_OK && i < 2 * l->n; i++) lmc_scope_keep(grads[i]);
    } else {
        value = loss_fn(&c, 0, NULL);
        if (!value) s = lmc_last_status();
    }
    if (s == LMC_OK) s = lmc_array_item(value, loss);
    if (s != LMC_OK && grads)
        for (int i = 0; i < 2 * l->n; i++) {
            lmc_array_free(grads[i]);
            grads[i] = NULL;
        }
    lmc_scope_end();
    free(c.args.checkpoint);
    return s;
}
