/* config.json parsing. Field names and defaults follow transformers'
 * configuration classes (LlamaConfig, Qwen2Config, Qwen3Config,
 * Gemma3TextConfig), which fill in what a checkpoint's config.json omits. */
#include "models/config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct parse_ctx {
    const char *path;
    const cJSON *root;  /* the object holding the text model's fields */
    const cJSON *outer; /* the top level (for nested text_config) */
} parse_ctx;

static const cJSON *field(const parse_ctx *p, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->root, name);
    if (!v && p->outer != p->root) v = cJSON_GetObjectItemCaseSensitive(p->outer, name);
    return cJSON_IsNull(v) ? NULL : v;
}

/* v as an integer in [lo, hi]: false when it is not a number, not whole, or
 * out of range (a cast of such a double would be undefined). */
static bool int_in(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* d converts to a finite float (outside that range the conversion is undefined). */
static bool float_range(double d) { return isfinite(d) && fabs(d) <= FLT_MAX; }

/* Reads an integer field; absent → dflt (or an error when dflt < 0 means required). */
static lmc_status get_int(const parse_ctx *p, const char *name, int64_t dflt, bool required, int64_t *out) {
    const cJSON *v = field(p, name);
    if (!v) {
        if (required) return lmc_set_error(LMC_ERR_FORMAT, "%s: missing field \"%s\"", p->path, name);
        *out = dflt;
        return LMC_OK;
    }
    if (!int_in(v, 0, 1e15, out))
        return lmc_set_error(LMC_ERR_FORMAT, "%s: field \"%s\" must be a non-negative integer", p->path, name);
    return LMC_OK;
}

static lmc_status get_float(const parse_ctx *p, const char *name, double dflt, double *out) {
    const cJSON *v = field(p, name);
    if (!v) {
        *out = dflt;
        return LMC_OK;
    }
    /* kept as a float: what the model computes with */
    if (!cJSON_IsNumber(v) || !float_range(v->valuedouble))
        return lmc_set_error(LMC_ERR_FORMAT, "%s: field \"%s\" must be a number within a float's range", p->path, name);
    *out = (float)v->valuedouble;
    return LMC_OK;
}

/* A float field that must be above min (strict) or at least min. */
static lmc_status get_float_min(const parse_ctx *p, const char *name, double dflt, double min, bool strict, double *out) {
    LMC_CHECK(get_float(p, name, dflt, out));
    if (strict ? *out > min : *out >= min) return LMC_OK;
    return lmc_set_error(LMC_ERR_FORMAT, "%s: field \"%s\" must be %s %g (got %g)", p->path, name,
                         strict ? "greater than" : "at least", min, *out);
}

static lmc_status get_bool(const parse_ctx *p, const char *name, bool dflt, bool *out) {
    const cJSON *v = field(p, name);
    if (!v) {
        *out = dflt;
        return LMC_OK;
    }
    if (!cJSON_IsBool(v)) return lmc_set_error(LMC_ERR_FORMAT, "%s: field \"%s\" must be true or false", p->path, name);
    *out = cJSON_IsTrue(v);
    return LMC_OK;
}

/* A token id: an integer in [0, INT32_MAX]; with none_ok a negative one
 * (configs write -1 for "no pad token") reads as -1, lmc's "none". */
static lmc_status token_id(const cJSON *v, const char *path, const char *what, bool none_ok, int32_t *out) {
    int64_t id;
    if (!int_in(v, none_ok ? INT32_MIN : 0, INT32_MAX, &id))
        return lmc_set_error(LMC_ERR_FORMAT, "%s: %s must hold token ids (integers from 0 to %d)", path, what, INT32_MAX);
    *out = id < 0 ? -1 : (int32_t)id;
    return LMC_OK;
}

void lmc_model_config_add_eos(lmc_model_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos < LMC_MAX_EOS) c->eos_ids[c->n_eos++] = id;
}

/* eos_token_id / bos_token_id / pad_token_id: an integer (eos: or a list of
 * them); null or absent: unknown. */
static lmc_status read_token_ids(const cJSON *obj, const char *path, lmc_model_config *c) {
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    int32_t id;
    if (cJSON_IsArray(eos)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, eos) {
            LMC_CHECK(token_id(e, path, "eos_token_id", false, &id));
            lmc_model_config_add_eos(c, id);
        }
    } else if (eos && !cJSON_IsNull(eos)) {
        LMC_CHECK(token_id(eos, path, "eos_token_id", false, &id));
        lmc_model_config_add_eos(c, id);
    }
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(obj, "bos_token_id");
    if (bos && !cJSON_IsNull(bos)) LMC_CHECK(token_id(bos, path, "bos_token_id", true, &c->bos_id));
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(obj, "pad_token_id");
    if (pad && !cJSON_IsNull(pad)) LMC_CHECK(token_id(pad, path, "pad_token_id", true, &c->pad_id));
    return LMC_OK;
}

/* A finite number above zero that stays so as a float. */
static bool positive(const cJSON *v) {
    return cJSON_IsNumber(v) && float_range(v->valuedouble) && (float)v->valuedouble > 0;
}

/* One RoPE parameter object: v4's rope_scaling or an entry of v5's rope_parameters. */
static lmc_status parse_rope(const cJSON *o, const char *path, const char *what, lmc_rope_config *r) {
    if (!o || cJSON_IsNull(o)) return LMC_OK;
    if (!cJSON_IsObject(o)) return lmc_set_error(LMC_ERR_FORMAT, "%s: %s must be an object", path, what);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(o, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    const cJSON *theta = cJSON_GetObjectItemCaseSensitive(o, "rope_theta");
    if (theta && !cJSON_IsNull(theta)) {
        if (!positive(theta)) return lmc_set_error(LMC_ERR_FORMAT, "%s: %s.rope_theta must be a positive number", path, what);
        r->theta = (float)theta->valuedouble;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "factor");
    if (!strcmp(type, "default")) {
        r->type = LMC_ROPE_DEFAULT;
        return LMC_OK;
    }
    if (!positive(f)) return lmc_set_error(LMC_ERR_FORMAT, "%s: %s.factor must be a positive number", path, what);
    r->factor = (float)f->valuedouble;
    if (!strcmp(type, "linear")) {
        r->type = LMC_ROPE_LINEAR;
        return LMC_OK;
    }
    if (!strcmp(type, "llama3")) {
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(o, "low_freq_factor");
        const cJSON *hi = cJSON_GetObjectItemCaseSensitive(o, "high_freq_factor");
        const cJSON *om = cJSON_GetObjectItemCaseSensitive(o, "original_max_position_embeddings");
        int64_t omax;
        if (!positive(lo) || !positive(hi) || !int_in(om, 1, 1e15, &omax) || (float)hi->valuedouble == (float)lo->valuedouble)
            return lmc_set_error(LMC_ERR_FORMAT,
                                 "%s: %s of type llama3 needs low_freq_factor and high_freq_factor (positive, "
                                 "different) and original_max_position_embeddings (a positive integer)",
                                 path, what);
        r->type = LMC_ROPE_LLAMA3;
        r->low_freq_factor = (float)lo->valuedouble;
        r->high_freq_factor = (float)hi->valuedouble;
        r->original_max_position_embeddings = omax;
        return LMC_OK;
    }
    return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: unsupported RoPE scaling type \"%s\" in %s", path, type, what);
}

static lmc_status parse_quant_spec(const cJSON *o, const char *path, const char *what, lmc_quant_spec dflt,
                                   lmc_quant_spec *out) {
    *out = dflt;
    if (cJSON_IsFalse(o)) {
        out->bits = 0;
        return LMC_OK;
    }
    if (cJSON_IsTrue(o)) return LMC_OK;
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(o, "bits");
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(o, "group_size");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(o, "mode");
    if (cJSON_IsString(mode) && strcmp(mode->valuestring, "affine"))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: %s: quantization mode \"%s\" is not supported (only affine)", path,
                             what, mode->valuestring);
    if (bits) {
        int64_t b;
        if (!int_in(bits, 0, 64, &b)) return lmc_set_error(LMC_ERR_FORMAT, "%s: %s.bits must be an integer", path, what);
        out->bits = (int)b;
    }
    if (gs) {
        int64_t g;
        if (!int_in(gs, 0, 1 << 20, &g))
            return lmc_set_error(LMC_ERR_FORMAT, "%s: %s.group_size must be an integer", path, what);
        out->group_size = (int)g;
    }
    if (out->bits != 4 && out->bits != 8)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: %s: %d-bit quantization is not supported (4 or 8)", path, what,
                             out->bits);
    if (out->group_size != 32 && out->group_size != 64 && out->group_size != 128)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: %s: group size %d is not supported (32, 64 or 128)", path, what,
                             out->group_size);
    return LMC_OK;
}

static lmc_status parse_quantization(const cJSON *top, const char *path, lmc_model_config *c) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(top, "quantization");
    const char *qname = "quantization";
    if (!q || cJSON_IsNull(q)) {
        q = cJSON_GetObjectItemCaseSensitive(top, "quantization_config");
        qname = "quantization_config";
    }
    if (!q || cJSON_IsNull(q)) return LMC_OK;
    if (!cJSON_IsObject(q)) return lmc_set_error(LMC_ERR_FORMAT, "%s: %s must be an object", path, qname);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (cJSON_IsString(method) && strcmp(method->valuestring, "mlx"))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: quantization method \"%s\" is not supported (MLX affine only)",
                             path, method->valuestring);
    lmc_quant_spec dflt = {.bits = 4, .group_size = 64};
    LMC_CHECK(parse_quant_spec(q, path, qname, dflt, &c->quant));
    /* Per-module overrides: keys whose values are objects or booleans. */
    const cJSON *e;
    cJSON_ArrayForEach(e, q) {
        if (!cJSON_IsObject(e) && !cJSON_IsBool(e)) continue;
        if (c->n_quant_overrides == LMC_MAX_QUANT_OVERRIDES)
            return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: more than %d per-module quantization overrides", path,
                                 LMC_MAX_QUANT_OVERRIDES);
        if (strlen(e->string) >= sizeof c->quant_overrides[0].name)
            return lmc_set_error(LMC_ERR_FORMAT, "%s: quantization override name too long: %.60s...", path, e->string);
        int i = c->n_quant_overrides++;
        snprintf(c->quant_overrides[i].name, sizeof c->quant_overrides[i].name, "%s", e->string);
        LMC_CHECK(parse_quant_spec(e, path, e->string, c->quant, &c->quant_overrides[i].spec));
    }
    return LMC_OK;
}

lmc_quant_spec lmc_model_config_quant_for(const lmc_model_config *c, const char *module) {
    for (int i = 0; i < c->n_quant_overrides; i++) {
        const char *name = c->quant_overrides[i].name;
        /* Overrides may be keyed with or without the checkpoint's prefix. */
        size_t nl = strlen(name), ml = strlen(module);
        if (!strcmp(name, module) || (ml > nl && !strcmp(module + ml - nl, name) && module[ml - nl - 1] == '.'))
            return c->quant_overrides[i].spec;
    }
    return c->quant;
}

static lmc_status parse_arch(const char *type, const char *path, lmc_arch *arch) {
    if (!strcmp(type, "llama")) *arch = LMC_ARCH_LLAMA;
    else if (!strcmp(type, "qwen2")) *arch = LMC_ARCH_QWEN2;
    else if (!strcmp(type, "qwen3")) *arch = LMC_ARCH_QWEN3;
    else if (!strcmp(type, "gemma3") || !strcmp(type, "gemma3_text")) *arch = LMC_ARCH_GEMMA3;
    else return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: unsupported architecture: %s", path, type);
    return LMC_OK;
}

static lmc_status parse_layer_types(const parse_ctx *p, lmc_model_config *c) {
    const cJSON *lt = field(p, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->num_layers)
            return lmc_set_error(LMC_ERR_FORMAT, "%s: layer_types must list one type per layer (%lld)", p->path,
                                 (long long)c->num_layers);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lt) {
            if (!cJSON_IsString(e)) return lmc_set_error(LMC_ERR_FORMAT, "%s: layer_types[%d] is not a string", p->path, i);
            if (!strcmp(e->valuestring, "sliding_attention")) c->layer_sliding[i] = true;
            else if (!strcmp(e->valuestring, "full_attention")) c->layer_sliding[i] = false;
            else
                return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: layer_types[%d]: unsupported layer type \"%s\"", p->path,
                                     i, e->valuestring);
            i++;
        }
        return LMC_OK;
    }
    if (c->arch == LMC_ARCH_GEMMA3) {
        int64_t pattern;
        LMC_CHECK(get_int(p, "sliding_window_pattern", 6, false, &pattern));
        for (int64_t i = 0; i < c->num_layers; i++) c->layer_sliding[i] = pattern > 0 && (i + 1) % pattern != 0;
    } else if (c->arch == LMC_ARCH_QWEN2 || c->arch == LMC_ARCH_QWEN3) {
        bool use;
        int64_t max_window_layers;
        LMC_CHECK(get_bool(p, "use_sliding_window", false, &use));
        LMC_CHECK(get_int(p, "max_window_layers", c->num_layers, false, &max_window_layers));
        for (int64_t i = 0; i < c->num_layers; i++) c->layer_sliding[i] = use && i >= max_window_layers;
    }
    return LMC_OK;
}

lmc_status lmc_model_config_parse(const char *json, size_t len, const char *path, lmc_model_config *c) {
    memset(c, 0, sizeof *c);
    c->bos_id = -1;
    c->pad_id = -1;
    const char *end = NULL;
    cJSON *top = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!top) {
        return lmc_set_error(LMC_ERR_FORMAT, "%s: invalid JSON at byte %td", path, end ? end - json : (ptrdiff_t)0);
    }
    lmc_status s = LMC_OK;
    parse_ctx p = {.path = path, .root = top, .outer = top};
    if (!cJSON_IsObject(top)) {
        s = lmc_set_error(LMC_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(top, "model_type");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(top, "text_config");
    if (cJSON_IsObject(tc)) {
        p.root = tc;
        const cJSON *tmt = cJSON_GetObjectItemCaseSensitive(tc, "model_type");
        if (!cJSON_IsString(mt) && cJSON_IsString(tmt)) mt = tmt;
    }
    if (!cJSON_IsString(mt)) {
        s = lmc_set_error(LMC_ERR_FORMAT, "%s: missing field \"model_type\"", path);
        goto done;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    if ((s = parse_arch(mt->valuestring, path, &c->arch)) != LMC_OK) goto done;
    bool gemma = c->arch == LMC_ARCH_GEMMA3;

    /* Gemma3TextConfig's defaults matter: gemma3 checkpoints omit many fields. */
#define TRY(x) do { if ((s = (x)) != LMC_OK) goto done; } while (0)
    TRY(get_int(&p, "vocab_size", gemma ? 262208 : 0, !gemma, &c->vocab_size));
    TRY(get_int(&p, "hidden_size", gemma ? 2304 : 0, !gemma, &c->hidden_size));
    TRY(get_int(&p, "intermediate_size", gemma ? 9216 : 0, !gemma, &c->intermediate_size));
    TRY(get_int(&p, "num_hidden_layers", gemma ? 26 : 0, !gemma, &c->num_layers));
    TRY(get_int(&p, "num_attention_heads", gemma ? 8 : 0, !gemma, &c->num_heads));
    TRY(get_int(&p, "num_key_value_heads", gemma ? 4 : c->num_heads, false, &c->num_kv_heads));
    if (c->num_heads <= 0 || c->hidden_size <= 0 || c->num_layers <= 0 || c->vocab_size <= 0 ||
        c->intermediate_size <= 0) {
        s = lmc_set_error(LMC_ERR_FORMAT, "%s: sizes must be positive (hidden_size, intermediate_size, "
                          "num_hidden_layers, num_attention_heads, vocab_size)", path);
        goto done;
    }
    TRY(get_int(&p, "head_dim", gemma ? 256 : c->hidden_size / c->num_heads, false, &c->head_dim));
    TRY(get_int(&p, "max_position_embeddings", gemma ? 131072 : 2048, false, &c->max_position_embeddings));
    if (c->num_layers > LMC_MAX_LAYERS) {
        s = lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: %lld layers (at most %d supported)", path, (long long)c->num_layers,
                          LMC_MAX_LAYERS);
        goto done;
    }
    if (c->num_kv_heads <= 0 || c->num_heads % c->num_kv_heads || c->head_dim <= 0 || c->head_dim % 2) {
        s = lmc_set_error(LMC_ERR_FORMAT,
                          "%s: num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld) and "
                          "head_dim (%lld) even",
                          path, (long long)c->num_heads, (long long)c->num_kv_heads, (long long)c->head_dim);
        goto done;
    }
    double d;
    TRY(get_float_min(&p, "rms_norm_eps", 1e-6, 0, false, &d));
    c->rms_norm_eps = (float)d;
    TRY(get_float_min(&p, "rope_theta", gemma ? 1000000.0 : 10000.0, 0, true, &d));
    c->rope_global.type = LMC_ROPE_DEFAULT;
    c->rope_global.theta = (float)d;
    TRY(get_float_min(&p, "rope_local_base_freq", 10000.0, 0, true, &d));
    c->rope_local.type = LMC_ROPE_DEFAULT;
    c->rope_local.theta = gemma ? (float)d : c->rope_global.theta;
    TRY(parse_rope(field(&p, "rope_scaling"), path, "rope_scaling", &c->rope_global));
    const cJSON *rp = field(&p, "rope_parameters");
    if (rp && cJSON_IsObject(rp)) {
        const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
        const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
        if (full || slide) {
            TRY(parse_rope(full, path, "rope_parameters.full_attention", &c->rope_global));
            TRY(parse_rope(slide, path, "rope_parameters.sliding_attention", &c->rope_local));
        } else {
            TRY(parse_rope(rp, path, "rope_parameters", &c->rope_global));
            if (!gemma) c->rope_local = c->rope_global;
        }
    }
    if (!gemma) c->rope_local = c->rope_global;

    const cJSON *act = field(&p, gemma ? "hidden_activation" : "hidden_act");
    if (!act && gemma) act = field(&p, "hidden_act");
    const char *act_name = cJSON_IsString(act) ? act->valuestring : (gemma ? "gelu_pytorch_tanh" : "silu");
    if (!strcmp(act_name, "silu") || !strcmp(act_name, "swish")) c->activation = LMC_ACT_SILU;
    else if (!strcmp(act_name, "gelu_pytorch_tanh") || !strcmp(act_name, "gelu_new") || !strcmp(act_name, "gelu_fast"))
        c->activation = LMC_ACT_GELU_TANH;
    else if (!strcmp(act_name, "gelu")) c->activation = LMC_ACT_GELU;
    else {
        s = lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: unsupported activation \"%s\"", path, act_name);
        goto done;
    }

    bool attention_bias;
    TRY(get_bool(&p, "attention_bias", false, &attention_bias));
    TRY(get_bool(&p, "mlp_bias", false, &c->mlp_bias));
    c->qkv_bias = c->arch == LMC_ARCH_QWEN2 || attention_bias;
    c->o_bias = c->arch != LMC_ARCH_QWEN2 && attention_bias;
    c->qk_norm = c->arch == LMC_ARCH_QWEN3 || gemma;
    c->norm_one_plus = gemma;
    c->sandwich_norms = gemma;
    c->scale_embeddings = gemma;
    /* tie_word_embeddings sits at the top level in multimodal configs. */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(top, "tie_word_embeddings");
    if (!tie || cJSON_IsNull(tie)) tie = field(&p, "tie_word_embeddings");
    c->tie_word_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : gemma;

    TRY(get_int(&p, "sliding_window", gemma ? 4096 : 0, false, &c->sliding_window));
    TRY(parse_layer_types(&p, c));
    bool any_sliding = false;
    for (int64_t i = 0; i < c->num_layers; i++) any_sliding |= c->layer_sliding[i];
    if (any_sliding && c->sliding_window <= 0) {
        s = lmc_set_error(LMC_ERR_FORMAT, "%s: sliding-window layers need a positive \"sliding_window\"", path);
        goto done;
    }
    if (!any_sliding) c->sliding_window = 0;

    double qpas;
    TRY(get_float_min(&p, "query_pre_attn_scalar", (double)c->head_dim, 0, true, &qpas));
    c->attn_scale = gemma ? (float)(1.0 / sqrt(qpas)) : (float)(1.0 / sqrt((double)c->head_dim));
    TRY(get_float(&p, "final_logit_softcapping", 0.0, &d));
    c->final_logit_softcapping = (float)d;
    TRY(get_float(&p, "attn_logit_softcapping", 0.0, &d));
    c->attn_logit_softcapping = (float)d;

    TRY(parse_quantization(top, path, c));
    TRY(read_token_ids(p.root, path, c));
    if (p.root != top) TRY(read_token_ids(top, path, c));
    const cJSON *dt = field(&p, "torch_dtype");
    if (!dt) dt = field(&p, "dtype");
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", cJSON_IsString(dt) ? dt->valuestring : "");
#undef TRY
done:
    cJSON_Delete(top);
    return s;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1l << 30) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = 0;
                *len = (size_t)n;
            }
        }
    }
    fclose(f);
    return buf;
}

lmc_status lmc_model_config_load(const char *dir, lmc_model_config *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len = 0;
    char *json = read_file(path, &len);
    if (!json) return lmc_set_error(LMC_ERR_IO, "%s: cannot read (%s)", path, "missing or unreadable");
    lmc_status s = lmc_model_config_parse(json, len, path, out);
    free(json);
    if (s != LMC_OK) return s;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json = read_file(path, &len);
    if (json) {
        cJSON *g = cJSON_ParseWithLength(json, len);
        free(json);
        if (!g) return lmc_set_error(LMC_ERR_FORMAT, "%s: invalid JSON", path);
        s = cJSON_IsObject(g) ? read_token_ids(g, path, out) : lmc_set_error(LMC_ERR_FORMAT, "%s: expected an object", path);
        cJSON_Delete(g);
    }
    return s;
}
