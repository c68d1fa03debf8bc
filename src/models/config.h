/* config.json → the architecture traits one decoder needs.
 *
 * lmc has ONE decoder (src/models/decoder.c); what distinguishes Llama 3,
 * Qwen 2, Qwen 3 and Gemma 3 is captured here as data: norm style, q/k
 * norms, biases, embedding scale, activation, RoPE variant per layer,
 * sliding-window layers and soft-capping. */
#ifndef LMC_MODELS_CONFIG_H
#define LMC_MODELS_CONFIG_H

#include <cjson/cJSON.h>

#include "lmc/base.h"

enum { LMC_MAX_LAYERS = 512, LMC_MAX_EOS = 16, LMC_MAX_QUANT_OVERRIDES = 64 };

typedef enum lmc_arch { LMC_ARCH_LLAMA, LMC_ARCH_QWEN2, LMC_ARCH_QWEN3, LMC_ARCH_GEMMA3 } lmc_arch;
typedef enum lmc_activation { LMC_ACT_SILU, LMC_ACT_GELU_TANH, LMC_ACT_GELU } lmc_activation;
typedef enum lmc_rope_type { LMC_ROPE_DEFAULT, LMC_ROPE_LINEAR, LMC_ROPE_LLAMA3 } lmc_rope_type;

typedef struct lmc_rope_config {
    lmc_rope_type type;
    float theta;                   /* base */
    float factor;                  /* linear / llama3 */
    float low_freq_factor, high_freq_factor;
    int64_t original_max_position_embeddings;
} lmc_rope_config;

/* Quantisation of one module; bits 0 = not quantised. */
typedef struct lmc_quant_spec {
    int bits, group_size;
} lmc_quant_spec;

typedef struct lmc_model_config {
    char model_type[32];
    lmc_arch arch;
    int64_t vocab_size, hidden_size, intermediate_size, num_layers;
    int64_t num_heads, num_kv_heads, head_dim;
    int64_t max_position_embeddings;
    float rms_norm_eps;
    lmc_rope_config rope_global;   /* full-attention layers */
    lmc_rope_config rope_local;    /* sliding-window layers (Gemma 3: rope_local_base_freq, no scaling) */
    int64_t sliding_window;        /* 0: none */
    bool layer_sliding[LMC_MAX_LAYERS];
    bool tie_word_embeddings;
    bool qkv_bias, o_bias, mlp_bias;
    bool qk_norm;                  /* RMSNorm over head_dim on q and k before RoPE (Qwen 3, Gemma 3) */
    bool norm_one_plus;            /* RMSNorm multiplies by (1 + w) (Gemma) */
    bool sandwich_norms;           /* post-attention and pre/post-feed-forward norms (Gemma 3) */
    bool scale_embeddings;         /* embeddings times sqrt(hidden_size) (Gemma) */
    lmc_activation activation;
    float attn_scale;              /* q·k multiplier: query_pre_attn_scalar^-0.5 or head_dim^-0.5 */
    float final_logit_softcapping; /* 0: off */
    float attn_logit_softcapping;  /* 0: off */
    lmc_quant_spec quant;          /* default for every linear / embedding */
    int n_quant_overrides;
    struct { char name[128]; lmc_quant_spec spec; } quant_overrides[LMC_MAX_QUANT_OVERRIDES];
    int32_t bos_id;                /* -1 when unknown */
    int32_t eos_ids[LMC_MAX_EOS];
    int n_eos;
    int32_t pad_id;
    char torch_dtype[16];
} lmc_model_config;

/* Parses config.json text. `path` is used in error messages. */
lmc_status lmc_model_config_parse(const char *json, size_t len, const char *path, lmc_model_config *out);
/* Reads and parses DIR/config.json, then DIR/generation_config.json (EOS
 * and BOS ids) when present. */
lmc_status lmc_model_config_load(const char *dir, lmc_model_config *out);
/* The quantisation of a module (e.g. "model.layers.0.mlp.down_proj"). */
lmc_quant_spec lmc_model_config_quant_for(const lmc_model_config *c, const char *module);
/* Adds an EOS id if not yet listed. */
void lmc_model_config_add_eos(lmc_model_config *c, int32_t id);

#endif
