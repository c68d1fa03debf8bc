/* The one decoder behind every supported architecture: weights resolved
 * from a checkpoint by name, and a forward pass parameterised by the traits
 * in lmc_model_config (see config.h). */
#ifndef LMC_MODELS_DECODER_H
#define LMC_MODELS_DECODER_H

#include <stdatomic.h>

#include "lmc/nn.h"
#include "lmc/safetensors.h"
#include "models/config.h"
#include "nn/linear_internal.h"
#include "runtime/kv_cache.h"

typedef struct lmc_dec_layer {
    lmc_linear *q, *k, *v, *o, *gate, *up, *down;
    lmc_array *input_norm, *post_attn_norm, *pre_ff_norm, *post_ff_norm, *q_norm, *k_norm;
    bool sliding;
} lmc_dec_layer;

typedef struct lmc_decoder {
    lmc_model_config cfg;
    lmc_checkpoint *ck;
    char prefix[32];               /* where the text model's tensors live, e.g. "model." */
    lmc_linear *embed;             /* [vocab, hidden]: looked up by row, and the tied head */
    lmc_linear *head;              /* untied output head (NULL when tied) */
    lmc_array *final_norm;
    lmc_dec_layer *layers;
    lmc_array *inv_freq_global, *inv_freq_local; /* f32 [head_dim/2] */
    int64_t weight_bytes, num_parameters;
    lmc_device device;             /* where the weights, caches and activations live */
    lmc_dtype kv_dtype;            /* keys and values in KV caches (LMC_F32 unless the model was loaded with another) */
    int activation_bits;           /* 24 or 8: how 4- and 8-bit products round x on the CPU (lmc_quant_set_activation_bits) */
    atomic_bool promote_pending;   /* move the weights onto 2 MiB pages after the next forward pass */
} lmc_decoder;

/* Opens the checkpoint in dir and resolves every weight (errors name the
 * tensor and the expected shape). */
lmc_status lmc_decoder_load(const char *dir, const lmc_model_config *cfg, lmc_decoder **out);
void lmc_decoder_free(lmc_decoder *d);
/* Moves every weight to dev (LMC_CUDA: uploads them; the mmapped files stay
 * open but are no longer read). Forward passes then run there: ids, masks
 * and positions may be given on the CPU, logits come back on the CPU. */
lmc_status lmc_decoder_to_device(lmc_decoder *d, lmc_device dev);
/* Starts moving the checkpoint's mappings onto 2 MiB pages in the background
 * (core/huge_pages.h) if promote_pending is set, once. Every forward pass
 * calls it when done, so the copy starts after the first one and never
 * delays a first token (lmc_load_options.huge_pages). */
void lmc_decoder_promote_weights(const lmc_decoder *d);

/* Optional per-call inputs of a forward pass. */
typedef struct lmc_forward_args {
    const lmc_array *positions; /* i32 [B, T]; NULL: cache->pos + t for every sequence */
    const lmc_array *mask;      /* additive f32 or bool keep-mask [B, 1, T, L]; NULL: causal (+ window).
                                 * L may also be pos+T (a column per key index since the cache's start):
                                 * layers whose cache view is shorter (sliding) use its last columns. */
    bool last_only;             /* logits of the last position only */
    bool hidden;                /* instead of logits: the final-normed hidden states [B, T, H] (f32, on the host);
                                 * with last_only, how a prompt's earlier chunks skip the lm_head */
    /* Attention inspection: when set, receives [B, Hq, T, D] post-RoPE
     * queries and [B, Hkv, T, D] keys of each layer (new references). */
    lmc_array **inspect_q, **inspect_k;
    /* Training (cache NULL): how LoRA adapters run (dropout; NULL: off), and
     * gradient checkpointing of each decoder layer (lmc_grad_checkpoint):
     * NULL for none, else room for num_layers calls that must stay alive
     * (with these args) until the differentiation returns, because the
     * backward pass runs each layer again through them. */
    const lmc_linear_run *lora_run;
    struct lmc_dec_layer_call *checkpoint;
} lmc_forward_args;

/* One layer's forward pass as gradient checkpointing re-runs it. */
typedef struct lmc_dec_layer_call {
    const struct lmc_decoder *d;
    int li;
    const lmc_forward_args *args;
} lmc_dec_layer_call;

/* Runs ids (i32 [B, T]) through the model, appending to cache, and returns
 * f32 logits [B, T, V] (or [B, 1, V] with last_only). With cache NULL the
 * pass is self-contained (training): keys and values are used directly at
 * positions 0..T-1 (or args->positions), with the same causal (+ window)
 * masking, and every op is differentiable. */
lmc_array *lmc_decoder_forward(const lmc_decoder *d, lmc_kv_cache *cache, const lmc_array *ids,
                               const lmc_forward_args *args);
/* The LoRA-adaptable layers of layer li in PEFT's order of module names:
 * q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
enum { LMC_DEC_NUM_MODULES = 7 };
extern const char *const lmc_dec_module_names[LMC_DEC_NUM_MODULES]; /* "self_attn.q_proj", ... */
lmc_linear *lmc_dec_module(const lmc_decoder *d, int64_t li, int module);

/* A cache shaped for this model. */
lmc_status lmc_decoder_cache_init(const lmc_decoder *d, lmc_kv_cache *cache, int64_t batch, int64_t max_len);

/* Where a forward pass's time goes, by the decoder's own ops (the calling
 * thread's wall time while profiling: each product with its parallel
 * region, each small op with the op layer's work around its kernel); what
 * no op holds is the pass's glue (`lmc bench --ops`). */
typedef enum lmc_decoder_op {
    LMC_DOP_EMBED,      /* the token embedding (and its scaling) */
    LMC_DOP_QKV,        /* q, k and v products, one batch */
    LMC_DOP_ROPE_QK,    /* q's and k's norm (Qwen 3, Gemma 3) and RoPE */
    LMC_DOP_KV_UPDATE,  /* the KV cache's writes */
    LMC_DOP_ATTENTION,  /* scaled dot-product attention */
    LMC_DOP_O,          /* the output product (and its norm where sandwiched) */
    LMC_DOP_ADD_NORM,   /* residual add + the next RMSNorm, twice a layer */
    LMC_DOP_GATE_UP,    /* gate and up products, one batch */
    LMC_DOP_GATED_ACT,  /* act(gate) * up */
    LMC_DOP_DOWN,       /* the down product (and its norm where sandwiched) */
    LMC_DOP_HEAD,       /* the lm_head product (and the final softcap) */
    LMC_DOP_COUNT
} lmc_decoder_op;

typedef struct lmc_decoder_profile {
    long calls[LMC_DOP_COUNT];
    double seconds[LMC_DOP_COUNT];
} lmc_decoder_profile;

/* Starts profiling on the calling thread (counts from zero). */
void lmc_decoder_profile_start(void);
/* Stops profiling on the calling thread and returns what it counted. */
lmc_decoder_profile lmc_decoder_profile_stop(void);
/* A short name of op ("q/k/v products"). */
const char *lmc_decoder_op_name(lmc_decoder_op op);

#endif
