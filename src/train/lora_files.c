/* LoRA adapters in PEFT's folder layout (lmc/lora.h): adapter_config.json
 * and adapter_model.safetensors, read and written as PEFT does.
 *
 * What PEFT means by the fields read here (peft's LoraConfig):
 *   r, lora_alpha          rank and alpha; the update is scaled by alpha / r,
 *                          or alpha / sqrt(r) when use_rslora is true;
 *   target_modules         module names (a module is adapted when its full
 *                          name, e.g. "model.layers.0.self_attn.q_proj",
 *                          equals an entry or ends with "." + entry), or the
 *                          string "all-linear";
 *   layers_to_transform    an index or list of layer indices (null: all);
 *   rank_pattern,          per-module r and lora_alpha, keyed like
 *   alpha_pattern          target_modules (PEFT takes regular expressions;
 *                          lmc accepts plain names only);
 * and features lmc does not implement are refused with the field named:
 * use_dora, bias other than "none", fan_in_fan_out, modules_to_save,
 * lora_bias, layer_replication, trainable_token_indices, target_parameters,
 * exclude_modules. Tensors are named base_model.model.<module>.lora_A.weight
 * [r, in] and .lora_B.weight [out, r]; every tensor of the file must belong
 * to an adapted module. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_util.h"
#include "lmc/ops.h"
#include "lmc/safetensors.h"
#include "runtime/model_internal.h"
#include "train/lora_internal.h"

#define CONFIG_NAME "adapter_config.json"
#define LORA_MAX_RANK 65536
#define LORA_MAX_RANK_STR "65536"
#define WEIGHTS_NAME "adapter_model.safetensors"

/* --- matching module names -------------------------------------------------------- */

/* A name PEFT would match literally: letters, digits, '_', '.', '-'. */
static bool plain_name(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '.' || *s == '-'))
            return false;
    return true;
}

/* PEFT's rule for list entries and pattern keys: full == key, or full ends with "." + key. */
static bool name_matches(const char *full, const char *key) {
    size_t fl = strlen(full), kl = strlen(key);
    if (fl == kl) return !strcmp(full, key);
    return fl > kl && full[fl - kl - 1] == '.' && !strcmp(full + fl - kl, key);
}


/* --- reading ------------------------------------------------------------------------ */

typedef struct reader {
    const char *path;      /* adapter_config.json */
    cJSON *root;
    const cJSON *targets;  /* array of strings (a lone string is wrapped) */
    cJSON *wrapped;
    const cJSON *rank_pattern, *alpha_pattern;
    bool all_linear;
    bool layer_on[LMC_MAX_LAYERS];
} reader;

static lmc_status bad(const reader *r, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static lmc_status bad(const reader *r, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lmc_set_error(LMC_ERR_FORMAT, "%s: \"%s\" %s", r->path, field, msg);
}

static const cJSON *field(const reader *r, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->root, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static lmc_status read_number(const reader *r, const char *name, double dflt, double *out) {
    const cJSON *f = field(r, name);
    *out = dflt;
    if (!f) return LMC_OK;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble)) return bad(r, name, "must be a number, got %s", lmc_json_type_name(f));
    *out = f->valuedouble;
    return LMC_OK;
}

static lmc_status read_bool(const reader *r, const char *name, bool *out) {
    const cJSON *f = field(r, name);
    *out = false;
    if (!f) return LMC_OK;
    if (!cJSON_IsBool(f)) return bad(r, name, "must be true or false, got %s", lmc_json_type_name(f));
    *out = cJSON_IsTrue(f);
    return LMC_OK;
}

/* Fields of features lmc does not implement: absent, null, false or empty. */
static lmc_status refuse_feature(const reader *r, const char *name, const char *what) {
    const cJSON *f = field(r, name);
    if (!f || cJSON_IsFalse(f) || ((cJSON_IsArray(f) || cJSON_IsObject(f)) && !f->child) ||
        (cJSON_IsString(f) && !*f->valuestring))
        return LMC_OK;
    return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"%s\" is set: %s is not supported", r->path, name, what);
}

/* rank_pattern / alpha_pattern: an object of plain names to positive numbers. */
static lmc_status read_pattern(const reader *r, const char *name, bool integer, const cJSON **out) {
    const cJSON *f = field(r, name);
    *out = NULL;
    if (!f) return LMC_OK;
    if (!cJSON_IsObject(f)) return bad(r, name, "must be an object, got %s", lmc_json_type_name(f));
    for (const cJSON *e = f->child; e; e = e->next) {
        if (!plain_name(e->string))
            return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"%s\" key \"%s\" is a pattern; only plain module names are supported",
                                 r->path, name, e->string);
        /* ranks as "r" takes them (an int: a larger value would not convert) */
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble) ||
            (integer && (e->valuedouble != floor(e->valuedouble) || e->valuedouble > LORA_MAX_RANK)))
            return bad(r, name, "entry \"%s\" must be a positive %s", e->string,
                       integer ? "integer up to " LORA_MAX_RANK_STR : "number");
    }
    *out = f;
    return LMC_OK;
}

static const cJSON *pattern_for(const cJSON *pattern, const char *full) {
    for (const cJSON *e = pattern ? pattern->child : NULL; e; e = e->next)
        if (name_matches(full, e->string)) return e;
    return NULL;
}

static lmc_status read_config(reader *r, int64_t num_layers, lmc_lora_config *cfg, bool *rslora) {
    const cJSON *f = field(r, "peft_type");
    if (!f || !cJSON_IsString(f) || strcmp(f->valuestring, "LORA"))
        return bad(r, "peft_type", "must be \"LORA\", got %s", f && cJSON_IsString(f) ? f->valuestring : f ? lmc_json_type_name(f) : "nothing");
    f = field(r, "task_type");
    if (f && (!cJSON_IsString(f) || strcmp(f->valuestring, "CAUSAL_LM")))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"task_type\" must be \"CAUSAL_LM\", got %s", r->path,
                             cJSON_IsString(f) ? f->valuestring : lmc_json_type_name(f));
    double v;
    LMC_CHECK(read_number(r, "r", 8, &v));
    if (!(v >= 1 && v <= LORA_MAX_RANK && v == floor(v)))
        return bad(r, "r", "must be a positive integer up to " LORA_MAX_RANK_STR ", got %g", v);
    cfg->rank = (int)v;
    LMC_CHECK(read_number(r, "lora_alpha", 8, &cfg->alpha));
    if (!(cfg->alpha > 0)) return bad(r, "lora_alpha", "must be > 0, got %g", cfg->alpha);
    LMC_CHECK(read_number(r, "lora_dropout", 0, &cfg->dropout));
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) return bad(r, "lora_dropout", "must be in [0, 1), got %g", cfg->dropout);
    LMC_CHECK(read_bool(r, "use_rslora", rslora));
    bool flag;
    LMC_CHECK(read_bool(r, "use_dora", &flag));
    if (flag) return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"use_dora\" is true: DoRA adapters are not supported", r->path);
    LMC_CHECK(read_bool(r, "fan_in_fan_out", &flag));
    if (flag)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"fan_in_fan_out\" is true: transposed (Conv1D) weights are not supported", r->path);
    f = field(r, "bias");
    if (f && (!cJSON_IsString(f) || strcmp(f->valuestring, "none")))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"bias\" is %s: only \"none\" is supported", r->path,
                             cJSON_IsString(f) ? f->valuestring : lmc_json_type_name(f));
    LMC_CHECK(refuse_feature(r, "modules_to_save", "training whole modules beside the adapter"));
    LMC_CHECK(refuse_feature(r, "lora_bias", "a bias on lora_B"));
    LMC_CHECK(refuse_feature(r, "layer_replication", "layer replication"));
    LMC_CHECK(refuse_feature(r, "trainable_token_indices", "training token embeddings"));
    LMC_CHECK(refuse_feature(r, "target_parameters", "adapting parameters"));
    LMC_CHECK(refuse_feature(r, "exclude_modules", "excluding modules"));
    LMC_CHECK(read_pattern(r, "rank_pattern", true, &r->rank_pattern));
    LMC_CHECK(read_pattern(r, "alpha_pattern", false, &r->alpha_pattern));

    /* target_modules: a list of names, one name, or "all-linear"; null is
     * PEFT's default for these architectures, q_proj and v_proj. */
    f = field(r, "target_modules");
    if (!f) {
        r->wrapped = cJSON_CreateStringArray((const char *const[]){"q_proj", "v_proj"}, 2);
        r->targets = r->wrapped;
    } else if (cJSON_IsString(f)) {
        if (!strcmp(f->valuestring, "all-linear")) r->all_linear = true;
        else if (!plain_name(f->valuestring))
            return lmc_set_error(LMC_ERR_UNSUPPORTED,
                                 "%s: \"target_modules\" is the pattern \"%s\"; only a list of module names or \"all-linear\" is supported",
                                 r->path, f->valuestring);
        r->wrapped = cJSON_CreateStringArray((const char *const[]){f->valuestring}, 1);
        r->targets = r->wrapped;
    } else if (cJSON_IsArray(f)) {
        for (const cJSON *e = f->child; e; e = e->next)
            if (!cJSON_IsString(e) || !plain_name(e->valuestring))
                return bad(r, "target_modules", "entries must be module names, got %s",
                           cJSON_IsString(e) ? e->valuestring : lmc_json_type_name(e));
        r->targets = f;
    } else {
        return bad(r, "target_modules", "must be a list of module names, got %s", lmc_json_type_name(f));
    }
    if (!r->targets) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");

    f = field(r, "layers_pattern");
    if (f && !(cJSON_IsString(f) && !strcmp(f->valuestring, "layers")) &&
        !(cJSON_IsArray(f) && (!f->child || (cJSON_IsString(f->child) && !strcmp(f->child->valuestring, "layers") && !f->child->next))))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: \"layers_pattern\" must be \"layers\" or null", r->path);
    f = field(r, "layers_to_transform");
    for (int64_t i = 0; i < num_layers; i++) r->layer_on[i] = f == NULL;
    if (f) {
        const cJSON *one = cJSON_IsNumber(f) ? f : NULL;
        if (!one && !cJSON_IsArray(f)) return bad(r, "layers_to_transform", "must be a layer index or a list of them");
        for (const cJSON *e = one ? one : f->child; e; e = one ? NULL : e->next) {
            uint64_t li;
            if (!lmc_json_uint(e, &li) || (int64_t)li >= num_layers)
                return bad(r, "layers_to_transform", "entries must be layer indices below %lld", (long long)num_layers);
            r->layer_on[li] = true;
        }
    }
    return LMC_OK;
}

static bool targeted(const reader *r, const char *full) {
    if (r->all_linear) return true;
    for (const cJSON *e = r->targets->child; e; e = e->next)
        if (name_matches(full, e->valuestring)) return true;
    return false;
}

/* A copy of the file's tensor (the mapping is read-only; training updates
 * parameters in place), f32 unless it is bf16 or f32 already. */
static lmc_status get_param(const lmc_safetensors *st, const char *name, int64_t d0, int64_t d1, lmc_array **out) {
    char want[64], got[64];
    int64_t shape[2] = {d0, d1};
    lmc_shape_str(2, shape, want, sizeof want);
    if (!lmc_safetensors_contains(st, name))
        return lmc_set_error(LMC_ERR_NOT_FOUND, "%s: missing tensor '%s' (expected shape %s)", lmc_safetensors_path(st),
                             name, want);
    lmc_array *a = lmc_safetensors_get(st, name);
    if (!a) return lmc_last_status();
    lmc_dtype dt = lmc_array_dtype(a);
    if (lmc_array_ndim(a) != 2 || lmc_array_dim(a, 0) != d0 || lmc_array_dim(a, 1) != d1 || !lmc_dtype_is_float(dt)) {
        lmc_status s = lmc_set_error(LMC_ERR_FORMAT, "%s: tensor '%s' is %s %s, expected a float tensor of shape %s",
                                     lmc_safetensors_path(st), name, lmc_dtype_name(dt),
                                     lmc_shape_str(lmc_array_ndim(a), lmc_array_shape(a), got, sizeof got), want);
        lmc_array_free(a);
        return s;
    }
    *out = lmc_array_unscope(dt == LMC_F32 || dt == LMC_BF16 ? lmc_copy(a) : lmc_astype(a, LMC_F32));
    lmc_array_free(a);
    return *out ? LMC_OK : lmc_last_status();
}

/* The plan: which modules are adapted, with what rank and alpha. */
static lmc_status plan_modules(reader *r, const char *prefix, int64_t num_layers, lmc_lora_plan *p) {
    char full[256];
    for (const cJSON *e = r->all_linear ? NULL : r->targets->child; e; e = e->next) {
        bool any = false;
        for (int64_t li = 0; li < num_layers && !any; li++)
            for (int mod = 0; mod < LMC_DEC_NUM_MODULES && !any; mod++) {
                lmc_lora_module_name(prefix, li, mod, full, sizeof full);
                any = name_matches(full, e->valuestring);
            }
        if (!any)
            return lmc_set_error(LMC_ERR_UNSUPPORTED,
                                 "%s: \"target_modules\" entry \"%s\" names no module lmc can adapt (the attention and MLP "
                                 "projections q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                                 r->path, e->valuestring);
    }
    p->e = malloc((size_t)(num_layers * LMC_DEC_NUM_MODULES) * sizeof *p->e);
    if (!p->e) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t li = 0; li < num_layers; li++)
        for (int mod = 0; mod < LMC_DEC_NUM_MODULES; mod++) {
            lmc_lora_module_name(prefix, li, mod, full, sizeof full);
            if (!r->layer_on[li] || !targeted(r, full)) continue;
            const cJSON *rp = pattern_for(r->rank_pattern, full), *ap = pattern_for(r->alpha_pattern, full);
            p->e[p->n++] = (lmc_lora_plan_entry){.layer = li,
                                                 .module = mod,
                                                 .rank = rp ? (int)rp->valuedouble : p->cfg.rank,
                                                 .alpha = ap ? ap->valuedouble : p->cfg.alpha};
            p->kinds |= 1u << mod;
        }
    if (!p->n) return bad(r, "target_modules", "adapts no module of the model");
    p->all_linear = r->all_linear;
    const cJSON *bm = field(r, "base_model_name_or_path");
    if (bm && cJSON_IsString(bm) && !(p->base_model = strdup(bm->valuestring)))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    return LMC_OK;
}

lmc_status lmc_lora_plan_parse(const char *path, const char *text, size_t len, const char *prefix, int64_t num_layers,
                               lmc_lora_plan *out) {
    memset(out, 0, sizeof *out);
    out->cfg = lmc_lora_config_default();
    if (num_layers < 1 || num_layers > LMC_MAX_LAYERS)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: a model of %lld layers", path, (long long)num_layers);
    reader r = {.path = path};
    size_t at = 0;
    r.root = lmc_json_parse(text, len, &at);
    lmc_status s = LMC_OK;
    if (!r.root || !cJSON_IsObject(r.root))
        s = lmc_set_error(LMC_ERR_FORMAT, "%s: not a JSON object (error at byte %zu)", path, at);
    if (s == LMC_OK) s = read_config(&r, num_layers, &out->cfg, &out->use_rslora);
    if (s == LMC_OK) s = plan_modules(&r, prefix, num_layers, out);
    cJSON_Delete(r.root);
    cJSON_Delete(r.wrapped);
    if (s != LMC_OK) lmc_lora_plan_free(out);
    return s;
}

void lmc_lora_plan_free(lmc_lora_plan *p) {
    free(p->e);
    free(p->base_model);
    memset(p, 0, sizeof *p);
}

static lmc_status load_into(lmc_model *m, lmc_decoder *d, const char *dir, const lmc_lora_plan *p, lmc_lora **out) {
    char path[4096], full[256];
    snprintf(path, sizeof path, "%s/%s", dir, WEIGHTS_NAME);
    if (access(path, F_OK) != 0) {
        char bin[4096];
        snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir);
        return lmc_set_error(LMC_ERR_NOT_FOUND, "%s: missing%s", path,
                             access(bin, F_OK) == 0 ? " (adapter_model.bin, PyTorch's pickle format, is not read: save with safe_serialization)" : "");
    }
    lmc_safetensors *st = NULL;
    LMC_CHECK(lmc_safetensors_open(path, &st));
    lmc_lora *l = NULL;
    lmc_status s = lmc_lora_alloc(m, p->n, &l);
    size_t used = 0;
    for (int i = 0; i < p->n && s == LMC_OK; i++) {
        lmc_lora_entry *e = &l->e[i];
        lmc_lora_module_name(l->prefix, p->e[i].layer, p->e[i].module, full, sizeof full);
        lmc_linear *lin = lmc_dec_module(d, p->e[i].layer, p->e[i].module);
        e->layer = p->e[i].layer;
        e->module = p->e[i].module;
        e->rank = p->e[i].rank;
        e->alpha = p->e[i].alpha;
        e->ad.dropout = p->cfg.dropout;
        e->ad.seed = lmc_lora_entry_seed(0, i);
        char name[300];
        snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", full);
        s = get_param(st, name, e->rank, lmc_linear_in_features(lin), &e->ad.a);
        snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", full);
        if (s == LMC_OK) s = get_param(st, name, lmc_linear_out_features(lin), e->rank, &e->ad.b);
        used += 2;
    }
    /* Every tensor must have been used: anything else is for a module the model lacks. */
    for (size_t k = 0; s == LMC_OK && used != lmc_safetensors_count(st) && k < lmc_safetensors_count(st); k++) {
        const char *name = lmc_safetensors_name(st, k);
        bool known = false;
        for (int j = 0; j < 2 * l->n && !known; j++) {
            const lmc_lora_entry *e = &l->e[j / 2];
            char want[300];
            lmc_lora_module_name(l->prefix, e->layer, e->module, full, sizeof full);
            snprintf(want, sizeof want, "base_model.model.%s.lora_%c.weight", full, j % 2 ? 'B' : 'A');
            known = !strcmp(want, name);
        }
        if (!known)
            s = lmc_set_error(LMC_ERR_FORMAT, "%s: tensor '%s' belongs to no adapted module of the model (target_modules %s)",
                              path, name, p->all_linear ? "all-linear" : "as listed in " CONFIG_NAME);
    }
    lmc_safetensors_close(st);
    if (s == LMC_OK) {
        l->cfg = p->cfg;
        l->cfg.dtype = lmc_array_dtype(l->e[0].ad.a);
        l->use_rslora = p->use_rslora;
        lmc_lora_targets_str(p->kinds, l->targets, sizeof l->targets);
        l->cfg.targets = l->targets;
        if (p->base_model) {
            char *copy = strdup(p->base_model);
            if (copy) {
                free(l->base_model);
                l->base_model = copy;
            }
        }
    }
    if (s != LMC_OK) {
        lmc_lora_free(l);
        return s;
    }
    LMC_CHECK(lmc_lora_attach(l));
    *out = l;
    return LMC_OK;
}

lmc_status lmc_lora_load(lmc_model *m, const char *dir, lmc_lora **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_lora_load: out is NULL");
    *out = NULL;
    if (!dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_lora_load: dir is NULL");
    lmc_decoder *d = lmc_model_native(m, "LoRA adapters");
    if (!d) return lmc_last_status();
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CONFIG_NAME);
    char *text = NULL;
    size_t len = 0;
    LMC_CHECK(lmc_read_file(path, 16u << 20, &text, &len));
    lmc_lora_plan p;
    lmc_status s = lmc_lora_plan_parse(path, text, len, d->prefix, d->cfg.num_layers, &p);
    free(text);
    if (s == LMC_OK) s = load_into(m, d, dir, &p, out);
    lmc_lora_plan_free(&p);
    return s;
}

/* --- writing ------------------------------------------------------------------------ */

lmc_status lmc_lora_write_file(const char *path, const void *data, size_t len) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lmc_status s = lmc_set_error(LMC_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    bool ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    lmc_status s = LMC_OK;
    if (!ok || rename(tmp, path) != 0) {
        s = lmc_set_error(LMC_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return s;
}

/* True when the set adapts exactly the same module kinds in every layer. */
static bool uniform_kinds(const lmc_lora *l, int64_t num_layers, unsigned *kinds) {
    *kinds = 0;
    for (int i = 0; i < l->n; i++) *kinds |= 1u << l->e[i].module;
    return l->n == (int)num_layers * __builtin_popcount(*kinds);
}

static char *config_json(const lmc_lora *l, int64_t num_layers) {
    cJSON *o = cJSON_CreateObject();
    cJSON *ap = cJSON_CreateObject(), *rp = cJSON_CreateObject(), *tm = cJSON_CreateArray();
    char full[256];
    unsigned kinds;
    bool uniform = uniform_kinds(l, num_layers, &kinds);
    for (int m = 0; uniform && m < LMC_DEC_NUM_MODULES; m++)
        if (kinds & (1u << m)) cJSON_AddItemToArray(tm, cJSON_CreateString(strchr(lmc_dec_module_names[m], '.') + 1));
    for (int i = 0; i < l->n; i++) {
        const lmc_lora_entry *e = &l->e[i];
        lmc_lora_module_name(l->prefix, e->layer, e->module, full, sizeof full);
        if (!uniform) cJSON_AddItemToArray(tm, cJSON_CreateString(full));
        if (e->rank != l->cfg.rank) cJSON_AddNumberToObject(rp, full, e->rank);
        if (e->alpha != l->cfg.alpha) cJSON_AddNumberToObject(ap, full, e->alpha);
    }
    /* Keys in sorted order, as PEFT writes them. */
    cJSON_AddItemToObject(o, "alpha_pattern", ap);
    cJSON_AddNullToObject(o, "auto_mapping");
    cJSON_AddStringToObject(o, "base_model_name_or_path", l->base_model ? l->base_model : "");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddNumberToObject(o, "lora_alpha", l->cfg.alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", l->cfg.dropout);
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", l->cfg.rank);
    cJSON_AddItemToObject(o, "rank_pattern", rp);
    cJSON_AddNullToObject(o, "revision");
    cJSON_AddItemToObject(o, "target_modules", tm);
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddBoolToObject(o, "use_rslora", l->use_rslora);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

lmc_status lmc_lora_save(const lmc_lora *l, const char *dir) {
    if (!l || !dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_lora_save: the adapter and dir must be given");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return lmc_set_error(LMC_ERR_IO, "%s: cannot create (%s)", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return lmc_set_error(LMC_ERR_IO, "%s: not a directory", dir);
    int64_t num_layers = l->num_layers;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, WEIGHTS_NAME);
    const char *meta_k[1] = {"format"}, *meta_v[1] = {"pt"};
    LMC_CHECK(lmc_safetensors_write(path, (size_t)(2 * l->n), (const char *const *)l->names,
                                    (const lmc_array *const *)l->params, 1, meta_k, meta_v));
    char *text = config_json(l, num_layers);
    if (!text) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(path, sizeof path, "%s/%s", dir, CONFIG_NAME);
    lmc_status s = lmc_lora_write_file(path, text, strlen(text));
    cJSON_free(text);
    return s;
}
