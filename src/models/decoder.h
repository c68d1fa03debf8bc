/* The one decoder behind every supported architecture: weights resolved
 * from a checkpoint by name, and a forward pass parameterised by the traits
 * in lmc_model_config (see config.h). */
#ifndef LMC_MODELS_DECODER_H
#define LMC_MODELS_DECODER_H

#include "lmc/nn.h"
#include "lmc/safetensors.h"
#include "models/config.h"
#include "runtime/kv_cache.h"

typedef struct lmc_dec_layer {
    lmc_linear *q, *k, *v, *o, *gate, *up, *down;
    lmc_array *input_norm, *post_attn_norm, *pre_ff_norm, *post_ff_norm, *q_norm, *k_norm;
    bool sliding;
} lmc_dec_layer;

typedef struct lmc_decoder {
    lmc_model_config cfg;
    lmc_checkpoint *ck;
    lmc_linear *embed;             /* [vocab, hidden]: looked up by row, and the tied head */
    lmc_linear *head;              /* untied output head (NULL when tied) */
    lmc_array *final_norm;
    lmc_dec_layer *layers;
    lmc_array *inv_freq_global, *inv_freq_local; /* f32 [head_dim/2] */
    int64_t weight_bytes, num_parameters;
} lmc_decoder;

/* Opens the checkpoint in dir and resolves every weight (errors name the
 * tensor and the expected shape). */
lmc_status lmc_decoder_load(const char *dir, const lmc_model_config *cfg, lmc_decoder **out);
void lmc_decoder_free(lmc_decoder *d);

/* Optional per-call inputs of a forward pass. */
typedef struct lmc_forward_args {
    const lmc_array *positions; /* i32 [B, T]; NULL: cache->pos + t for every sequence */
    const lmc_array *mask;      /* additive f32 or bool keep-mask [B, 1, T, L]; NULL: causal (+ window).
                                 * L may also be pos+T (a column per key index since the cache's start):
                                 * layers whose cache view is shorter (sliding) use its last columns. */
    bool last_only;             /* logits of the last position only */
    /* Attention inspection: when set, receives [B, Hq, T, D] post-RoPE
     * queries and [B, Hkv, T, D] keys of each layer (new references). */
    lmc_array **inspect_q, **inspect_k;
} lmc_forward_args;

/* Runs ids (i32 [B, T]) through the model, appending to cache, and returns
 * f32 logits [B, T, V] (or [B, 1, V] with last_only). */
lmc_array *lmc_decoder_forward(const lmc_decoder *d, lmc_kv_cache *cache, const lmc_array *ids,
                               const lmc_forward_args *args);
/* A cache shaped for this model. */
lmc_status lmc_decoder_cache_init(const lmc_decoder *d, lmc_kv_cache *cache, int64_t batch, int64_t max_len);

#endif
