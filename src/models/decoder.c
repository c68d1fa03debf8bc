/* The decoder: weight resolution and the forward pass, top to bottom.
 *
 * Activations are f32 throughout; weights stay in their stored dtype (bf16,
 * f16, f32, or MLX-quantised) and are read by the matmul kernels as they
 * are. Each layer runs inside a scope, so its intermediates are freed as
 * soon as the layer is done. */
#include "models/decoder.h"

#include "io/safetensors_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmc/ops.h"
#include "lmc/train.h"
#include "ops/fusion.h"
#include "ops/quant_internal.h"

/* --- weight resolution ------------------------------------------------------ */

typedef struct loader {
    lmc_decoder *d;
    const char *prefix;       /* where the text model's weights live, e.g. "model." */
    char name[256];
} loader;

static const char *tname(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *tname(loader *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->name, sizeof L->name, fmt, ap);
    va_end(ap);
    return L->name;
}

static bool has(loader *L, const char *name) { return lmc_checkpoint_find(L->d->ck, name) != NULL; }

/* The tensor `name` with exactly the given shape (and a float dtype unless want_u32). */
static lmc_status get_tensor(loader *L, const char *name, int ndim, const int64_t *shape, bool want_u32, lmc_array **out) {
    char want[128];
    lmc_shape_str(ndim, shape, want, sizeof want);
    lmc_safetensors *f = lmc_checkpoint_find(L->d->ck, name);
    if (!f) return lmc_set_error(LMC_ERR_NOT_FOUND, "missing tensor '%s' (expected shape %s)", name, want);
    lmc_array *a = lmc_safetensors_get(f, name);
    if (!a) return lmc_last_status();
    const char *file = lmc_safetensors_path(f);
    bool ok = a->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = a->shape[i] == shape[i];
    if (!ok) {
        char got[128];
        lmc_shape_str(a->ndim, a->shape, got, sizeof got);
        lmc_array_free(a);
        return lmc_set_error(LMC_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", file, name, got, want);
    }
    bool dtype_ok = want_u32 ? a->dtype == LMC_U32 : lmc_dtype_is_float(a->dtype);
    if (!dtype_ok) {
        lmc_status s = lmc_set_error(LMC_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", file, name,
                                     lmc_dtype_name(a->dtype), want_u32 ? "uint32 (packed quantised weights)" : "a float type");
        lmc_array_free(a);
        return s;
    }
    L->d->weight_bytes += (int64_t)lmc_array_nbytes(a);
    *out = lmc_array_unscope(a);
    return LMC_OK;
}

static lmc_status get_vector(loader *L, const char *name, int64_t n, lmc_array **out) {
    int64_t shape[1] = {n};
    lmc_status s = get_tensor(L, name, 1, shape, false, out);
    if (s == LMC_OK) L->d->num_parameters += n;
    return s;
}

/* Loads module.weight [out, in] (float, or quantised when module.scales
 * exists) and module.bias into an nn layer. */
static lmc_status load_linear(loader *L, const char *module, int64_t in, int64_t out, bool bias, lmc_linear **lin) {
    char base[200];
    snprintf(base, sizeof base, "%s", module);
    lmc_array *w = NULL, *scales = NULL, *biases = NULL, *b = NULL;
    lmc_status s = LMC_OK;
    int bits = 0, group = 0;
    if (has(L, tname(L, "%s.scales", base))) {
        lmc_quant_spec q = lmc_model_config_quant_for(&L->d->cfg, base);
        if (!q.bits)
            return lmc_set_error(LMC_ERR_FORMAT, "tensor '%s.scales' is quantised but config.json has no quantization for it", base);
        if (in % q.group_size)
            return lmc_set_error(LMC_ERR_FORMAT, "'%s': input size %lld is not a multiple of the group size %d", base,
                                 (long long)in, q.group_size);
        bits = q.bits;
        group = q.group_size;
        int64_t wshape[2] = {out, in * q.bits / 32}, sshape[2] = {out, in / q.group_size};
        s = get_tensor(L, tname(L, "%s.weight", base), 2, wshape, true, &w);
        if (s == LMC_OK) s = get_tensor(L, tname(L, "%s.scales", base), 2, sshape, false, &scales);
        if (s == LMC_OK) s = get_tensor(L, tname(L, "%s.biases", base), 2, sshape, false, &biases);
    } else {
        int64_t wshape[2] = {out, in};
        s = get_tensor(L, tname(L, "%s.weight", base), 2, wshape, false, &w);
    }
    L->d->num_parameters += in * out;
    if (s == LMC_OK && bias) s = get_vector(L, tname(L, "%s.bias", base), out, &b);
    if (s == LMC_OK) {
        *lin = bits ? lmc_linear_new_quantized(w, scales, biases, b, group, bits) : lmc_linear_new(w, b);
        if (!*lin) s = lmc_last_status();
    }
    /* The layer holds its own references. */
    lmc_array_free(w);
    lmc_array_free(scales);
    lmc_array_free(biases);
    lmc_array_free(b);
    return s;
}

/* Inverse RoPE frequencies as transformers computes them (f32):
 * 1 / base^(2i/dim), then the configured scaling. */
static lmc_array *rope_inv_freq(const lmc_rope_config *r, int64_t dim) {
    int64_t half = dim / 2;
    float *f = malloc((size_t)half * sizeof *f);
    if (!f) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < half; i++) f[i] = 1.0f / powf(r->theta, (float)(2 * i) / (float)dim);
    if (r->type == LMC_ROPE_LINEAR) {
        for (int64_t i = 0; i < half; i++) f[i] /= r->factor;
    } else if (r->type == LMC_ROPE_LLAMA3) {
        /* transformers' _compute_llama3_parameters: low frequencies are divided
         * by factor, high ones kept, the band between interpolated smoothly. */
        float old = (float)r->original_max_position_embeddings;
        float low_wavelen = old / r->low_freq_factor, high_wavelen = old / r->high_freq_factor;
        for (int64_t i = 0; i < half; i++) {
            float wavelen = 2.0f * (float)M_PI / f[i];
            float scaled = wavelen > low_wavelen ? f[i] / r->factor : f[i];
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                scaled = (1.0f - smooth) * scaled / r->factor + smooth * scaled;
            }
            f[i] = scaled;
        }
    }
    int64_t shape[1] = {half};
    lmc_array *a = lmc_array_from_data(f, LMC_F32, 1, shape);
    free(f);
    return a;
}

static const char *find_prefix(loader *L) {
    static const char *prefixes[] = {"model.", "language_model.model.", "model.language_model.", ""};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (has(L, tname(L, "%sembed_tokens.weight", prefixes[i]))) return prefixes[i];
    return NULL;
}

static lmc_status load_weights(loader *L) {
    lmc_decoder *d = L->d;
    const lmc_model_config *c = &d->cfg;
    const char *P = L->prefix;
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t QD = c->num_heads * D, KD = c->num_kv_heads * D;
    char mod[200];
    snprintf(mod, sizeof mod, "%sembed_tokens", P);
    LMC_CHECK(load_linear(L, mod, H, c->vocab_size, false, &d->embed));
    LMC_CHECK(get_vector(L, tname(L, "%snorm.weight", P), H, &d->final_norm));
    if (!c->tie_word_embeddings) {
        /* The head sits beside the text model: "lm_head" for "model.", "language_model.lm_head" for "language_model.model.". */
        static const char *heads[] = {"lm_head", "language_model.lm_head", "model.lm_head"};
        const char *head = NULL;
        for (size_t i = 0; i < sizeof heads / sizeof *heads && !head; i++)
            if (has(L, tname(L, "%s.weight", heads[i]))) head = heads[i];
        if (!head) {
            int64_t shape[2] = {c->vocab_size, H};
            char want[64];
            return lmc_set_error(LMC_ERR_NOT_FOUND,
                                 "missing tensor 'lm_head.weight' (expected shape %s; config.json sets "
                                 "tie_word_embeddings false)",
                                 lmc_shape_str(2, shape, want, sizeof want));
        }
        LMC_CHECK(load_linear(L, head, H, c->vocab_size, false, &d->head));
    }
    d->layers = calloc((size_t)c->num_layers, sizeof *d->layers);
    if (!d->layers) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < c->num_layers; i++) {
        lmc_dec_layer *l = &d->layers[i];
        l->sliding = c->layer_sliding[i];
#define LIN(field, name, in, out, bias)                                              \
    snprintf(mod, sizeof mod, "%slayers.%lld.%s", P, (long long)i, name);            \
    LMC_CHECK(load_linear(L, mod, in, out, bias, &l->field))
        LIN(q, "self_attn.q_proj", H, QD, c->qkv_bias);
        LIN(k, "self_attn.k_proj", H, KD, c->qkv_bias);
        LIN(v, "self_attn.v_proj", H, KD, c->qkv_bias);
        LIN(o, "self_attn.o_proj", QD, H, c->o_bias);
        LIN(gate, "mlp.gate_proj", H, I, c->mlp_bias);
        LIN(up, "mlp.up_proj", H, I, c->mlp_bias);
        LIN(down, "mlp.down_proj", I, H, c->mlp_bias);
#undef LIN
#define VEC(field, name, n) LMC_CHECK(get_vector(L, tname(L, "%slayers.%lld.%s.weight", P, (long long)i, name), n, &l->field))
        VEC(input_norm, "input_layernorm", H);
        VEC(post_attn_norm, "post_attention_layernorm", H);
        if (c->sandwich_norms) {
            VEC(pre_ff_norm, "pre_feedforward_layernorm", H);
            VEC(post_ff_norm, "post_feedforward_layernorm", H);
        }
        if (c->qk_norm) {
            VEC(q_norm, "self_attn.q_norm", D);
            VEC(k_norm, "self_attn.k_norm", D);
        }
#undef VEC
    }
    d->inv_freq_global = lmc_array_unscope(rope_inv_freq(&c->rope_global, D));
    d->inv_freq_local = lmc_array_unscope(rope_inv_freq(&c->rope_local, D));
    if (!d->inv_freq_global || !d->inv_freq_local) return lmc_last_status();
    return LMC_OK;
}

lmc_status lmc_decoder_load(const char *dir, const lmc_model_config *cfg, lmc_decoder **out) {
    *out = NULL;
    lmc_decoder *d = calloc(1, sizeof *d);
    if (!d) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    d->cfg = *cfg;
    d->activation_bits = 24;
    lmc_status s = lmc_checkpoint_open(dir, &d->ck);
    if (s == LMC_OK) {
        loader L = {.d = d};
        L.prefix = find_prefix(&L);
        if (!L.prefix) s = lmc_set_error(LMC_ERR_NOT_FOUND, "%s: no tensor 'model.embed_tokens.weight' (or under "
                                         "'language_model.model.' / 'model.language_model.'): not a supported checkpoint", dir);
        else {
            snprintf(d->prefix, sizeof d->prefix, "%s", L.prefix);
            s = load_weights(&L);
        }
    }
    if (s != LMC_OK) {
        lmc_decoder_free(d);
        return s;
    }
    *out = d;
    return LMC_OK;
}

void lmc_decoder_free(lmc_decoder *d) {
    if (!d) return;
    if (d->layers) {
        for (int64_t i = 0; i < d->cfg.num_layers; i++) {
            lmc_dec_layer *l = &d->layers[i];
            lmc_linear *lins[] = {l->q, l->k, l->v, l->o, l->gate, l->up, l->down};
            for (size_t j = 0; j < sizeof lins / sizeof *lins; j++) lmc_linear_free(lins[j]);
            lmc_array *vecs[] = {l->input_norm, l->post_attn_norm, l->pre_ff_norm, l->post_ff_norm, l->q_norm, l->k_norm};
            for (size_t j = 0; j < sizeof vecs / sizeof *vecs; j++) lmc_array_free(vecs[j]);
        }
        free(d->layers);
    }
    lmc_linear_free(d->embed);
    lmc_linear_free(d->head);
    lmc_array_free(d->final_norm);
    lmc_array_free(d->inv_freq_global);
    lmc_array_free(d->inv_freq_local);
    lmc_checkpoint_close(d->ck);
    free(d);
}

static lmc_status vector_to(lmc_array **a, lmc_device dev) {
    if (!*a) return LMC_OK;
    lmc_array *m = lmc_array_unscope(lmc_array_to(*a, dev));
    if (!m) return lmc_last_status();
    lmc_array_free(*a);
    *a = m;
    return LMC_OK;
}

lmc_status lmc_decoder_to_device(lmc_decoder *d, lmc_device dev) {
    if (d->device == dev) return LMC_OK;
    LMC_CHECK(lmc_linear_to_device(d->embed, dev));
    if (d->head) LMC_CHECK(lmc_linear_to_device(d->head, dev));
    LMC_CHECK(vector_to(&d->final_norm, dev));
    LMC_CHECK(vector_to(&d->inv_freq_global, dev));
    LMC_CHECK(vector_to(&d->inv_freq_local, dev));
    for (int64_t i = 0; i < d->cfg.num_layers; i++) {
        lmc_dec_layer *l = &d->layers[i];
        for (int m = 0; m < LMC_DEC_NUM_MODULES; m++) LMC_CHECK(lmc_linear_to_device(lmc_dec_module(d, i, m), dev));
        lmc_array **vecs[] = {&l->input_norm, &l->post_attn_norm, &l->pre_ff_norm, &l->post_ff_norm, &l->q_norm, &l->k_norm};
        for (size_t j = 0; j < sizeof vecs / sizeof *vecs; j++) LMC_CHECK(vector_to(vecs[j], dev));
    }
    d->device = dev;
    return LMC_OK;
}

/* --- forward ------------------------------------------------------------------- */

/* Rows of the embedding matrix for ids (any shape), as f32. */
static lmc_array *embed(const lmc_linear *e, const lmc_array *ids) {
    lmc_array *rows = lmc_embedding_lookup(e, ids);
    lmc_array *f = rows && lmc_array_dtype(rows) != LMC_F32 ? lmc_astype(rows, LMC_F32) : lmc_array_retain(rows);
    lmc_array_free(rows);
    return f;
}

/* The feed-forward's activation as the unary op the gated kernel takes. */
static lmc_unary_op activation_op(const lmc_model_config *c) {
    switch (c->activation) {
    case LMC_ACT_SILU: return LMC_UNARY_SILU;
    case LMC_ACT_GELU_TANH: return LMC_UNARY_GELU_TANH;
    case LMC_ACT_GELU: return LMC_UNARY_GELU;
    }
    return LMC_UNARY_COUNT; /* refused by lmc_gated_act */
}

/* [B, T, H*D] -> [B, H, T, D] (a view). */
static lmc_array *split_heads(const lmc_array *x, int64_t heads, int64_t dim) {
    if (!x) return NULL;
    int64_t s[4] = {x->shape[0], x->shape[1], heads, dim};
    lmc_array *r = lmc_reshape(x, 4, s);
    lmc_array *t = lmc_swapaxes(r, 1, 2);
    lmc_array_free(r);
    return t;
}

const char *const lmc_dec_module_names[LMC_DEC_NUM_MODULES] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

lmc_linear *lmc_dec_module(const lmc_decoder *d, int64_t li, int module) {
    const lmc_dec_layer *l = &d->layers[li];
    lmc_linear *m[LMC_DEC_NUM_MODULES] = {l->q, l->k, l->v, l->o, l->gate, l->up, l->down};
    return module >= 0 && module < LMC_DEC_NUM_MODULES ? m[module] : NULL;
}

/* --- profile (lmc_decoder_profile_start) ----------------------------------- */

static _Thread_local bool t_prof_on;
static _Thread_local lmc_decoder_profile t_prof;

static const char *const g_dop_names[LMC_DOP_COUNT] = {
    "embedding", "q/k/v products", "q/k norm + rope", "kv cache writes", "attention", "o product",
    "add + norm", "gate/up products", "act(gate) * up", "down product", "lm_head"};

const char *lmc_decoder_op_name(lmc_decoder_op op) { return op >= 0 && op < LMC_DOP_COUNT ? g_dop_names[op] : "?"; }

void lmc_decoder_profile_start(void) {
    memset(&t_prof, 0, sizeof t_prof);
    t_prof_on = true;
}

lmc_decoder_profile lmc_decoder_profile_stop(void) {
    t_prof_on = false;
    return t_prof;
}

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs the statement, timed into op's counters while profiling. */
#define DOP(op, ...)                                    \
    do {                                                \
        if (!t_prof_on) {                               \
            __VA_ARGS__;                                \
            break;                                      \
        }                                               \
        double t0_ = prof_now();                        \
        __VA_ARGS__;                                    \
        t_prof.seconds[op] += prof_now() - t0_;         \
        t_prof.calls[op]++;                             \
    } while (0)

/* The attention half of a layer: x = the normed h [B, T, H] -> what it adds
 * to h. cache NULL: a training pass (k, v used as they are, positions from 0). */
static lmc_array *attention_forward(const lmc_decoder *d, int li, lmc_kv_cache *cache, lmc_array *x,
                                    const lmc_forward_args *args) {
    const lmc_model_config *c = &d->cfg;
    const lmc_dec_layer *l = &d->layers[li];
    const lmc_linear_run *run = args ? args->lora_run : NULL;
    float eps = c->rms_norm_eps;
    bool onep = c->norm_one_plus;
    int64_t B = x->shape[0], T = x->shape[1];

    /* q, k and v read the same x: one batch (one parallel region at decode) */
    lmc_linear *proj[3] = {l->q, l->k, l->v};
    lmc_array *qkv[3];
    DOP(LMC_DOP_QKV, lmc_linear_forward_many(3, proj, x, run, qkv));
    lmc_array *q = split_heads(qkv[0], c->num_heads, c->head_dim);
    lmc_array *k = split_heads(qkv[1], c->num_kv_heads, c->head_dim);
    lmc_array *v = split_heads(qkv[2], c->num_kv_heads, c->head_dim);
    lmc_rope_params rp = lmc_rope_params_default((int)c->head_dim, l->sliding ? c->rope_local.theta : c->rope_global.theta);
    rp.inv_freqs = l->sliding ? d->inv_freq_local : d->inv_freq_global;
    /* q and k normed (Qwen 3, Gemma 3) and rotated: one launch on a GPU */
    lmc_status st;
    DOP(LMC_DOP_ROPE_QK, st = lmc_rope_qk(q, k, c->qk_norm, l->q_norm, l->k_norm, eps, onep, &rp,
                                          args ? args->positions : NULL, cache ? cache->pos : 0, &q, &k));
    if (st != LMC_OK || !v) return NULL;
    /* Retained: the layer scope drops its reference, the caller keeps this one. */
    if (args && args->inspect_q) args->inspect_q[li] = lmc_array_retain(q);
    if (args && args->inspect_k) args->inspect_k[li] = lmc_array_retain(k);
    lmc_array *k_all = k, *v_all = v;
    if (cache) {
        DOP(LMC_DOP_KV_UPDATE, st = lmc_kv_cache_update(cache, li, k, v, &k_all, &v_all));
        if (st != LMC_OK) return NULL;
    }
    lmc_sdpa_params sp = lmc_sdpa_params_default(c->attn_scale);
    sp.causal = true;
    sp.window = l->sliding ? c->sliding_window : 0;
    sp.mask = args ? args->mask : NULL;
    /* A mask over every key index 0..pos+T-1 is aligned to the end of the
     * shorter view a sliding layer returns (the view always ends at pos+T). */
    int64_t mk = sp.mask && sp.mask->ndim > 0 ? sp.mask->shape[sp.mask->ndim - 1] : 0, kv_len = k_all->shape[2];
    if (mk > kv_len) sp.mask = lmc_slice(sp.mask, sp.mask->ndim - 1, mk - kv_len, mk, 1);
    sp.softcap = c->attn_logit_softcapping;
    lmc_array *attn;
    DOP(LMC_DOP_ATTENTION, attn = lmc_sdpa(q, k_all, v_all, &sp)); /* [B, Hq, T, D] */
    lmc_array *merged = lmc_swapaxes(attn, 1, 2);                /* [B, T, Hq, D] */
    int64_t ms[3] = {B, T, c->num_heads * c->head_dim};
    lmc_array *o;
    DOP(LMC_DOP_O, {
        o = lmc_linear_forward_run(l->o, lmc_reshape(merged, 3, ms), run);
        if (c->sandwich_norms) o = lmc_rms_norm(o, l->post_attn_norm, eps, onep);
    });
    return o;
}

/* The feed-forward half: x = the normed h -> what it adds to h. The
 * [B, T, intermediate] arrays are the largest of a prefill chunk: each is
 * released as soon as it is used (the tape keeps its own references while
 * differentiating). */
static lmc_array *ffn_forward(const lmc_decoder *d, int li, lmc_array *x, const lmc_forward_args *args) {
    const lmc_model_config *c = &d->cfg;
    const lmc_dec_layer *l = &d->layers[li];
    const lmc_linear_run *run = args ? args->lora_run : NULL;
    /* gate and up read the same x: one batch */
    lmc_linear *proj[2] = {l->gate, l->up};
    lmc_array *gate_up[2];
    DOP(LMC_DOP_GATE_UP, lmc_linear_forward_many(2, proj, x, run, gate_up));
    lmc_array_free(x);
    lmc_array *gu;
    DOP(LMC_DOP_GATED_ACT, gu = lmc_gated_act(activation_op(c), gate_up[0], gate_up[1]));
    lmc_array_free(gate_up[0]);
    lmc_array_free(gate_up[1]);
    lmc_array *m;
    DOP(LMC_DOP_DOWN, {
        m = lmc_linear_forward_run(l->down, gu, run);
        lmc_array_free(gu);
        if (c->sandwich_norms) m = lmc_rms_norm(m, l->post_ff_norm, c->rms_norm_eps, c->norm_one_plus);
    });
    return m;
}

/* One decoder layer without its last residual add: h [B, T, H] and x, h
 * normed by the layer's input norm -> the stream after attention (returned)
 * and the feed-forward's output (*m), whose sum is the next h. The caller
 * adds them, fused with the next norm where it can. Each half runs in its
 * own scope, so the attention half's intermediates are gone before the
 * feed-forward's exist; the residual add after attention and the
 * feed-forward's norm are one op (one launch on a GPU). Results go to the
 * caller's scope. */
static lmc_array *layer_body(const lmc_decoder *d, int li, lmc_kv_cache *cache, lmc_array *h, lmc_array *x,
                             const lmc_forward_args *args, lmc_array **m) {
    const lmc_model_config *c = &d->cfg;
    const lmc_dec_layer *l = &d->layers[li];
    *m = NULL;
    lmc_scope_begin();
    lmc_array *a = NULL, *x2 = NULL;
    lmc_array *o = attention_forward(d, li, cache, x, args);
    if (o) {
        DOP(LMC_DOP_ADD_NORM, x2 = lmc_add_rms_norm(h, o, c->sandwich_norms ? l->pre_ff_norm : l->post_attn_norm,
                                                   c->rms_norm_eps, c->norm_one_plus, &a));
        a = lmc_scope_keep(a);
        x2 = lmc_scope_keep(x2);
    }
    lmc_scope_end();
    if (!x2) return NULL;
    lmc_scope_begin();
    *m = lmc_scope_keep(ffn_forward(d, li, x2, args));
    lmc_scope_end();
    if (!*m) {
        lmc_array_free(a);
        return NULL;
    }
    return a;
}

/* One whole layer, h -> the next h (a checkpointed function). */
static lmc_array *layer_forward(const lmc_decoder *d, int li, lmc_kv_cache *cache, lmc_array *h,
                                const lmc_forward_args *args) {
    const lmc_model_config *c = &d->cfg;
    lmc_array *x = lmc_rms_norm(h, d->layers[li].input_norm, c->rms_norm_eps, c->norm_one_plus), *m = NULL;
    lmc_array *a = x ? layer_body(d, li, cache, h, x, args, &m) : NULL;
    lmc_array *out = a ? lmc_add(a, m) : NULL;
    lmc_array_free(x);
    lmc_array_free(a);
    lmc_array_free(m);
    return out;
}

/* Gradient checkpointing of one layer: its inputs are h and every adapter
 * array of the layer (all the arrays being differentiated it may use). */
static lmc_array *layer_fn(void *ctx, int n, lmc_array *const *inputs) {
    (void)n;
    const lmc_dec_layer_call *lc = ctx;
    return layer_forward(lc->d, lc->li, NULL, inputs[0], lc->args);
}

static lmc_array *layer_checkpointed(const lmc_decoder *d, int li, lmc_array *h, const lmc_forward_args *args) {
    lmc_array *inputs[1 + 2 * LMC_DEC_NUM_MODULES] = {h};
    int n = 1;
    for (int m = 0; m < LMC_DEC_NUM_MODULES; m++) {
        const lmc_linear_adapter *ad = lmc_linear_get_adapter(lmc_dec_module(d, li, m));
        if (!ad) continue;
        inputs[n++] = ad->a;
        inputs[n++] = ad->b;
    }
    lmc_dec_layer_call *lc = &args->checkpoint[li];
    *lc = (lmc_dec_layer_call){d, li, args};
    return lmc_grad_checkpoint(layer_fn, lc, n, inputs);
}

lmc_array *lmc_decoder_forward(const lmc_decoder *d, lmc_kv_cache *cache, const lmc_array *ids,
                               const lmc_forward_args *args) {
    if (!ids) return NULL;
    if (ids->ndim != 2 || (ids->dtype != LMC_I32 && ids->dtype != LMC_U32)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "forward: ids must be int32 [batch, tokens]");
        return NULL;
    }
    const lmc_model_config *c = &d->cfg;
    int64_t T = ids->shape[1];
    if (T == 0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "forward: no tokens");
        return NULL;
    }
    lmc_array *logits = NULL;
    lmc_scope_begin();
    /* Positions made once here, not by each RoPE call (one array instead of
     * one a layer, and q's and k's RoPE one fused op). On a device the
     * per-call inputs go there (the embedding reads the ids on the host to
     * pick rows); the scope frees the copies. */
    lmc_forward_args call_args;
    if (d->device != LMC_CPU || (cache && !(args && args->positions))) {
        call_args = args ? *args : (lmc_forward_args){0};
        const lmc_array *pos = call_args.positions;
        if (!pos && cache) pos = lmc_arange((double)cache->pos, (double)(cache->pos + T), 1.0, LMC_I32);
        bool ok = true;
        bool there = d->device == LMC_CPU; /* lmc_array_to would add a reference the scope does not drop */
        if (pos) ok = (call_args.positions = there ? pos : lmc_array_to(pos, d->device)) != NULL;
        if (ok && call_args.mask && !there) ok = (call_args.mask = lmc_array_to(call_args.mask, d->device)) != NULL;
        if (!ok || (cache && !pos)) {
            lmc_scope_end();
            return NULL;
        }
        args = &call_args;
    }
    /* the thread's setting for this pass, restored below (the caller may run other models) */
    const int act_bits = lmc_quant_set_activation_bits(d->activation_bits);
    lmc_array *h;
    DOP(LMC_DOP_EMBED, {
        h = embed(d->embed, ids);
        if (h && c->scale_embeddings) h = lmc_mul_scalar(h, sqrt((double)c->hidden_size));
    });
    /* Without checkpointing a layer's last residual add and the next norm
     * (the next layer's input norm, or the final one) are one op; x is h
     * normed for what comes next. */
    bool checkpointed = !cache && args && args->checkpoint;
    const lmc_array *first_norm = c->num_layers ? d->layers[0].input_norm : d->final_norm;
    lmc_array *x = h && !checkpointed ? lmc_rms_norm(h, first_norm, c->rms_norm_eps, c->norm_one_plus) : NULL;
    for (int64_t i = 0; i < c->num_layers && h && (checkpointed || x); i++) {
        lmc_scope_begin();
        lmc_array *nh = NULL, *nx = NULL;
        if (checkpointed) {
            nh = layer_checkpointed(d, (int)i, h, args);
        } else {
            lmc_array *m = NULL, *a = layer_body(d, (int)i, cache, h, x, args, &m);
            const lmc_array *next = i + 1 < c->num_layers ? d->layers[i + 1].input_norm : d->final_norm;
            if (a) DOP(LMC_DOP_ADD_NORM, nx = lmc_add_rms_norm(a, m, next, c->rms_norm_eps, c->norm_one_plus, &nh));
        }
        nh = lmc_scope_keep(nh);
        nx = lmc_scope_keep(nx);
        lmc_scope_end();
        lmc_array_free(h);
        lmc_array_free(x);
        h = nh;
        x = nx;
    }
    if (!checkpointed && !x) h = NULL;
    if (h && args && args->last_only) {
        h = lmc_slice(h, 1, T - 1, T, 1);
        if (x) x = lmc_slice(x, 1, T - 1, T, 1);
    }
    /* the final norm: made by the loop, or here after checkpointed layers */
    h = x ? x : lmc_rms_norm(h, d->final_norm, c->rms_norm_eps, c->norm_one_plus);
    lmc_array *out = h;
    if (!(args && args->hidden))
        DOP(LMC_DOP_HEAD, {
            out = lmc_linear_forward(d->head ? d->head : d->embed, h);
            if (out && c->final_logit_softcapping > 0) {
                double cap = c->final_logit_softcapping;
                out = lmc_mul_scalar(lmc_tanh(lmc_mul_scalar(out, 1.0 / cap)), cap);
            }
        });
    if (out) {
        out = out->dtype == LMC_F32 ? lmc_contiguous(out) : lmc_astype(out, LMC_F32);
        logits = lmc_scope_keep(d->device != LMC_CPU ? lmc_array_to(out, LMC_CPU) : out);
        if (logits && cache) lmc_kv_cache_advance(cache, T);
    }
    lmc_quant_set_activation_bits(act_bits);
    lmc_scope_end();
    if (logits) lmc_decoder_promote_weights(d);
    return logits;
}

void lmc_decoder_promote_weights(const lmc_decoder *d) {
    /* The flag is the decoder's one field that changes after loading; the
     * decoder itself is never a const object. */
    atomic_bool *pending = (atomic_bool *)&d->promote_pending;
    if (atomic_load_explicit(pending, memory_order_relaxed) && atomic_exchange(pending, false))
        lmc_checkpoint_promote(d->ck);
}

lmc_status lmc_decoder_cache_init(const lmc_decoder *d, lmc_kv_cache *cache, int64_t batch, int64_t max_len) {
    int64_t windows[LMC_MAX_LAYERS];
    for (int64_t i = 0; i < d->cfg.num_layers; i++) windows[i] = d->layers[i].sliding ? d->cfg.sliding_window : 0;
    LMC_CHECK(lmc_kv_cache_init(cache, (int)d->cfg.num_layers, windows, batch, d->cfg.num_kv_heads, d->cfg.head_dim,
                                max_len, d->kv_dtype));
    cache->device = d->device;
    return LMC_OK;
}
