/* The model handle behind lmc/model.h. */
#ifndef LMC_RUNTIME_MODEL_INTERNAL_H
#define LMC_RUNTIME_MODEL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "lmc/model.h"
#include "lmc/tokenizer.h"
#include "models/decoder.h"
#include "runtime/backend.h"
#include "runtime/tool_calls.h"

struct lmc_model {
    char *dir;
    char backend[32];
    const lmc_backend *be;    /* NULL once closed */
    void *impl;               /* the backend's own state (subprocess: the bridge) */
    lmc_decoder *dec;         /* native backends only; NULL otherwise */
    lmc_tokenizer *tok;       /* NULL when the backend tokenises (subprocess) */
    lmc_load_options opt;
    int64_t context_length;   /* effective bound on caches */
    int32_t eos[LMC_MAX_EOS + 16];
    int n_eos;
    /* The attached LoRA set (its adapters sit on dec's Linear layers, so
     * every forward pass includes them), or NULL; owned by the model when
     * it came from lmc_load_options.adapter_dir, else by the caller. */
    struct lmc_lora *lora;
    bool lora_owned;
    /* The prompt cache (generate.c, see lmc/model.h): n_prompt_slots slots,
     * each the KV cache of a finished generation and the n ids it holds
     * (free when ids is NULL); a stream takes one out under prompt_lock. */
    pthread_mutex_t prompt_lock;
    struct lmc_prompt_slot *prompt_slots;
    int n_prompt_slots;
    uint64_t prompt_clock; /* bumped per use: a slot's `used` orders them for eviction */
    /* Each token's text, for JSON mode's mask: built on first use, under prompt_lock. */
    struct lmc_token_bytes *token_bytes;
    lmc_sampler_config sampling;   /* the checkpoint's recommended sampling (lmc_model_info.sampler) */
};

typedef struct lmc_prompt_slot {
    lmc_kv_cache kv;
    int32_t *ids;
    size_t n;
    uint64_t used;
} lmc_prompt_slot;

/* Non-zero when the handle is usable; otherwise records LMC_ERR_CLOSED. */
lmc_status lmc_model_check(const lmc_model *m);
/* The native decoder for code that runs it directly (logits, batches):
 * NULL with LMC_ERR_CLOSED, or LMC_ERR_UNSUPPORTED "WHAT: not supported by
 * backend NAME" for a model whose backend has none. */
lmc_decoder *lmc_model_native(const lmc_model *m, const char *what);
bool lmc_model_is_eos(const lmc_model *m, int32_t id);
double lmc_now(void);

/* --- shared by generate.c and batch.c --------------------------------------- */

/* Checks prompt ids: at least one, each inside the vocabulary, at most
 * max_len of them (errors name the id and its index). */
lmc_status lmc_model_check_prompt(const lmc_model *m, const int32_t *ids, size_t n, int64_t max_len);
/* Renders messages with the model's chat template (generation prompt on) and
 * tokenises the result; free *ids with lmc_tokenizer_free_ids. */
lmc_status lmc_model_chat_ids(lmc_model *m, const lmc_message *msgs, size_t n, const char *vars_json, int32_t **ids,
                              size_t *n_ids);
/* The same for messages as a JSON array and tools (NULL or a JSON array,
 * the template's `tools`); a template that never reads `tools` refuses them.
 * vars_json: NULL or a JSON object of further template variables; format
 * (may be NULL): the template's tool-call convention. */
lmc_status lmc_model_chat_json_ids(lmc_model *m, const char *messages_json, const char *tools_json, const char *vars_json,
                                   int32_t **ids, size_t *n_ids, lmc_tool_format *format);
/* Starts a stream from exactly one of p's ids, text (tokenised as
 * lmc_generate does) or messages (rendered as lmc_chat does); a backend with
 * its own streams gets the prompt as it is. */
lmc_status lmc_stream_start_prompt(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt, lmc_stream **out);
/* Appends t[0..n) to the NUL-terminated text (*text, *len bytes, *cap
 * allocated) with lmc_strbuf_append, for texts kept in public result
 * structs as pointer and length. */
/* The model's token-text table (built on first use); NULL with the error set. */
const struct lmc_token_bytes *lmc_model_token_bytes(lmc_model *m);
lmc_status lmc_text_append(char **text, size_t *len, size_t *cap, const char *t, size_t n);
/* logit_bias ids inside the vocabulary. */
lmc_status lmc_generate_check_bias(const lmc_generate_options *opt, int64_t vocab);
/* What one generation step does around the sampler, for streams and batch
 * rows alike. Before it: keeps the model's own logits in raw (NULL: no
 * log-probabilities asked for), adds opt's logit bias and masks what JSON
 * mode rules out (json_tokens NULL: off). After token tok joined the
 * output (n generated before it): appends its log-probability entry to *lp
 * / *top and feeds it to the JSON state; *closed tells whether the JSON
 * object is now whole. */
struct lmc_token_bytes;
struct lmc_json_state;
void lmc_generate_prepare_logits(const lmc_model *m, const lmc_generate_options *opt, const struct lmc_token_bytes *json_tokens,
                                 const struct lmc_json_state *json, float *logits, float *raw);
lmc_status lmc_generate_record(const lmc_model *m, const lmc_generate_options *opt, const float *raw,
                               const struct lmc_token_bytes *json_tokens, struct lmc_json_state *json, int32_t tok, size_t n,
                               float **lp, lmc_token_logprob **top, bool *closed);
/* Checks max_tokens and the stop lists of generation options. */
lmc_status lmc_generate_check_options(const lmc_generate_options *opt);
bool lmc_generate_is_stop_token(const lmc_generate_options *opt, int32_t id);
/* Offset of the earliest stop string in text[from..], or SIZE_MAX. */
size_t lmc_generate_find_stop(const lmc_generate_options *opt, const char *text, size_t from);
/* Length of the longest stop string. */
size_t lmc_generate_max_stop_len(const lmc_generate_options *opt);
bool lmc_cancel_requested(const lmc_cancel *c);
/* generation_config.json's sampling fields (the text json[0..len), named
 * path in errors) over lmc's defaults (see lmc_model_info.sampler). A field
 * of the wrong type or out of range is an error naming it; what is
 * accepted makes a sampler. */
lmc_status lmc_sampling_config_parse(const char *json, size_t len, const char *path, lmc_sampler_config *out);

#endif
