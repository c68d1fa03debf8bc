/* lmc/model.h — loading checkpoints, generating text, chat, metrics, model
 * information, discovery of model folders and the backend registry.
 *
 * A model (lmc_model) holds read-only weights and may be shared by threads:
 * each generation call owns its caches, sampler state and metrics. A model
 * that has been closed answers every call with LMC_ERR_CLOSED.
 */
#ifndef LMC_MODEL_H
#define LMC_MODEL_H

#include "lmc/array.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_model lmc_model;
typedef struct lmc_tokenizer lmc_tokenizer;

/* --- backends ------------------------------------------------------------ */

/* Names of the registered backends, NULL-terminated: "cpu" (the native
 * decoder), "cuda" (the same decoder on an NVIDIA GPU: builds configured
 * with -DLMC_CUDA=ON, on a machine with a GPU; see lmc_backend_available)
 * and "subprocess" (an external runtime behind a bridge program speaking
 * JSON Lines, docs/subprocess-protocol.md). */
LMC_API const char *const *lmc_backends(void);
/* The backend used when the load options name none ("cpu"). */
LMC_API const char *lmc_default_backend(void);
/* True when the named backend is registered and usable on this machine. */
LMC_API bool lmc_backend_available(const char *name);

/* --- loading --------------------------------------------------------------- */

/* The default prefill chunks. The CPU's keeps a pass's activations a few
 * MiB (peak RSS within weights + KV cache + 64 MiB; larger passes measured
 * only a few percent faster there). A GPU reads every weight once a pass
 * and its memory is not the host's: 512-token passes ran pp512 1.5-2.7x
 * faster than 64-token ones on an H200 (bench/RESULTS.md). */
#define LMC_PREFILL_CHUNK_CPU 64
#define LMC_PREFILL_CHUNK_CUDA 512

typedef struct lmc_load_options {
    const char *backend;      /* NULL: lmc_default_backend() */
    int64_t context_length;   /* bound on every KV cache; 0: the model's max_position_embeddings */
    int64_t prefill_chunk;    /* prompt tokens per forward pass during prefill; 0 (the default): the backend's,
                                 LMC_PREFILL_CHUNK_CPU or LMC_PREFILL_CHUNK_CUDA */
    int threads;              /* CPU threads; 0: keep the current setting */
    size_t memory_limit;      /* bytes lmc may hold on the model's device (the GPU's for "cuda"); 0: no limit */
    const char *adapter_dir;  /* LoRA adapter folder (PEFT layout) to apply, or NULL */
    int prompt_cache_slots;   /* finished generations whose KV caches are kept for reuse (1..64; 0: 1), see below */
    lmc_dtype kv_cache_dtype; /* keys and values as cached: LMC_F32 (default), or LMC_BF16 / LMC_F16 for half
                                 the memory (attention reads rounded keys and values: logits move by ~1e-2
                                 (bf16) or ~1e-3 (f16) of their scale; decode reads half the cache bytes,
                                 faster at long contexts); native backends */
    int activation_bits;      /* backend "cpu", 4- and 8-bit weights: what the products round their input
                                 (activations) to. 24 (default; 0 means 24): exact, f32's own precision (4 bits:
                                 integers of 24 bits per block of 128 values; 8 bits: f32). 8: int8 per block of 64
                                 with one f32 scale, as llama.cpp's 8-bit activations: a fraction of the integer
                                 work, so prefill and batches run faster (Qwen3-0.6B prefill ~1.6x (4-bit) and ~1.9x
                                 (8-bit) on an AVX-512 CPU); logits move by a few percent of their range and greedy
                                 text can diverge after a while. Every forward pass of the model follows it (a
                                 fine-tuning run's too; its backward stays exact). Other widths keep f32 x; other
                                 backends refuse 8 (LMC_ERR_UNSUPPORTED) */
    bool huge_pages;          /* backend "cpu": after the first forward pass, move the mapped weights onto 2 MiB pages in a
                                 background thread (default true): 4-bit decode ran 7-18 % faster on a Zen 4. Only
                                 where transparent huge pages are enabled and the weights take at most half
                                 of the available memory and of the cgroup's limit; the model runs from the file mapping meanwhile */
    /* Backend "subprocess" only: */
    const char *bridge;       /* the bridge command, e.g. "python3 bridges/transformers_bridge.py",
                                 split into words as a POSIX shell does (quotes, backslashes; no
                                 expansion, no shell operators) and run directly */
    const char *const *bridge_env; int n_bridge_env; /* "KEY=VALUE" added to the bridge's environment
                                 (which is ours otherwise), e.g. VIRTUAL_ENV, PYTHONPATH, PATH */
    double bridge_timeout;    /* seconds bounding start-up and each wait for a reply (0: 120) */
} lmc_load_options;
LMC_API lmc_load_options lmc_load_options_default(void);

/* Loads a Hugging Face or MLX checkpoint folder (config.json, *.safetensors,
 * tokenizer files). Errors name the file, field or tensor at fault. With
 * backend "subprocess" the bridge loads the folder; a bridge that fails
 * (cannot start, crashes, hangs past the timeout, writes what is not the
 * protocol) gives an error naming the fault and quoting the end of its
 * stderr, and is always ended and reaped. A subprocess model runs one
 * request at a time; classify, batches and logits are not supported. */
LMC_API lmc_status lmc_model_load(const char *dir, const lmc_load_options *opt, lmc_model **out);
/* Frees every weight and buffer now; the handle stays valid and every later
 * call on it fails with LMC_ERR_CLOSED. Must not race with calls on the
 * same model. Closing twice is harmless. */
LMC_API void lmc_model_close(lmc_model *m);
/* Closes the model (if open) and frees the handle. NULL is ignored. */
LMC_API void lmc_model_free(lmc_model *m);
/* The model's tokenizer (owned by the model); NULL with LMC_ERR_UNSUPPORTED
 * for backend "subprocess", whose bridge tokenises. */
LMC_API const lmc_tokenizer *lmc_model_tokenizer(const lmc_model *m);

/* Applied in this order: repeat penalty -> temperature -> top-k -> top-p ->
 * min-p -> seeded draw. Temperature 0 is greedy (argmax, ties to the lowest
 * id; the rest is skipped). Top-p keeps the smallest set of most probable
 * tokens whose probability sums to at least top_p; min-p drops tokens less
 * probable than min_p times the most probable one. Logits that are NaN or
 * +inf are an error; -inf marks an impossible token. */
typedef struct lmc_sampler_config {
    float temperature;        /* 0: greedy (default 0.8) */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repeat_penalty;     /* 1: off; logits of recent tokens: >0 divided, <0 multiplied */
    int repeat_last_n;        /* tokens the penalty looks back over (default 64; -1: all) */
    uint64_t seed;            /* draws are reproducible for a given seed (default 0) */
} lmc_sampler_config;
/* temperature 0.8, top-k/top-p/min-p off, repeat penalty off (window 64), seed 0. */
LMC_API lmc_sampler_config lmc_sampler_config_default(void);

typedef struct lmc_model_info {
    char architecture[32];    /* config.json model_type, e.g. "gemma3_text" */
    int64_t vocab_size, num_layers, hidden_size, intermediate_size;
    int64_t num_heads, num_kv_heads, head_dim;
    int64_t context_length;   /* max_position_embeddings */
    int64_t sliding_window;   /* 0 when no layer slides */
    int quant_bits;           /* 0 when not quantised */
    int quant_group_size;
    int activation_bits;      /* 4- or 8-bit weights on the cpu backend: 24 or 8, the load option activation_bits; else 0 */
    int64_t num_parameters;   /* logical parameters (quantised weights counted unpacked) */
    int64_t weight_bytes;     /* bytes of all weight tensors as stored */
    char dtype[16];           /* storage dtype of the float weights */
    /* The sampling the checkpoint recommends: generation_config.json's temperature, top_k, top_p,
     * min_p and repetition_penalty (do_sample false: greedy) over lmc_sampler_config_default().
     * lmc's CLI uses it for the options not given; from C, start a generation's sampler from it. */
    lmc_sampler_config sampler;
} lmc_model_info;
LMC_API lmc_status lmc_model_get_info(const lmc_model *m, lmc_model_info *out);

/* --- sampling and generation ---------------------------------------------- */


typedef enum lmc_stop_reason {
    LMC_STOP_NONE = 0,        /* still running / not started */
    LMC_STOP_EOS,             /* an end-of-sequence id of the model */
    LMC_STOP_TOKEN,           /* one of the caller's stop tokens */
    LMC_STOP_STRING,          /* one of the caller's stop strings (not included in the text) */
    LMC_STOP_MAX_TOKENS,
    LMC_STOP_CONTEXT,         /* the context length was reached */
    LMC_STOP_CANCELLED,
    LMC_STOP_ERROR,
} lmc_stop_reason;
/* "none", "eos", "stop_token", "stop_string", "max_tokens", "context",
 * "cancelled" or "error". */
LMC_API const char *lmc_stop_reason_name(lmc_stop_reason r);

/* Called for each generated token with its id and the text it completes
 * (may be empty while a UTF-8 character or stop string is pending). Return
 * false to stop (reported as LMC_STOP_CANCELLED). */
typedef bool (*lmc_token_callback)(void *user, int32_t id, const char *text, size_t len);

/* Thread-safe cancellation flag: set from any thread to stop a running call. */
typedef struct lmc_cancel { volatile int flag; } lmc_cancel;
LMC_API void lmc_cancel_request(lmc_cancel *c);

/* Log-probabilities (lmc_generate_options.logprobs) are those of the
 * model's own next-token distribution: the log-softmax of its logits before
 * the repeat penalty, temperature and filters, whatever the sampler then
 * draws from (the convention of OpenAI's API). A token the model rules out
 * has -INFINITY. Recording them costs a pass over the vocabulary per token
 * (a fraction of a millisecond at 150k entries). */
enum { LMC_MAX_TOP_LOGPROBS = 20 };
typedef struct lmc_token_logprob { int32_t id; float logprob; } lmc_token_logprob;

/* A bias added to one token's logit before sampling (-INFINITY bans it). */
typedef struct lmc_logit_bias { int32_t id; float bias; } lmc_logit_bias;

enum { LMC_LOOKUP_MAX = 3 }; /* lmc_generate_options.lookup_tokens at most */

typedef struct lmc_generate_options {
    int max_tokens;               /* default 256 */
    lmc_sampler_config sampler;
    const char *const *stop_strings; int n_stop_strings;
    const int32_t *stop_tokens; int n_stop_tokens;
    bool ignore_eos;              /* keep going past EOS ids */
    bool add_special_tokens;      /* for text prompts (default true: BOS etc. as the tokenizer adds them) */
    const char *template_vars_json; /* chats: NULL or a JSON object of extra chat-template variables, e.g.
                                     {"enable_thinking": false} for Qwen3 (chat_template_kwargs in other servers) */
    lmc_token_callback on_token; void *user;
    lmc_cancel *cancel;           /* optional */
    bool prompt_cache;            /* reuse the previous generation's keys and values (default true; see below) */
    bool logprobs;                /* record each generated token's log-probability (lmc_generation.logprobs) */
    int top_logprobs;             /* 0..LMC_MAX_TOP_LOGPROBS: also record that many most probable tokens at each
                                     step (lmc_generation.top_logprobs); > 0 implies logprobs */
    const lmc_logit_bias *logit_bias; int n_logit_bias; /* added to the logits at every step, after the
                                     log-probabilities are taken and before JSON mode and the sampler; ids
                                     must be in the vocabulary, biases finite or -INFINITY */
    bool json_object;             /* JSON mode: the reply is one JSON object. At each step, tokens that cannot
                                     continue a JSON object are ruled out before the sampler draws (after the
                                     log-probabilities are taken); generation ends (as at EOS) when the object
                                     closes. max_tokens can still cut it short (stop_reason says so). Native
                                     backends only; costs a pass over the vocabulary's text per token */
    int lookup_tokens;            /* prompt-lookup decoding, 0 (default) to LMC_LOOKUP_MAX: after each token, the
                                     tokens that followed the latest earlier occurrence of the last two (in the
                                     prompt or the reply) go through the model with it, as drafts; each step
                                     samples from the model's own logits as always, and while the sample equals
                                     the next draft, no forward pass is needed for it. So the reply is the one
                                     generation without it gives, bit for bit on the CPU (at most four rows per
                                     pass keep every kernel on its one-row arithmetic), only sooner when text
                                     repeats (quoting, editing, extraction); a pass of four tokens costs ~1.2 of
                                     one with bf16 weights, ~3 with 4-bit ones on the CPU. Native backends, one
                                     sequence at a time (lmc_batch_generate refuses it) */
    const char *json_schema;      /* NULL, or JSON Schema text: like json_object, but the reply is a document the
                                     schema describes (root: an object or array schema). Supported: type (one or
                                     a list), properties, required, additionalProperties (false, or true with no
                                     properties listed), items, minItems, maxItems, minLength, maxLength (in
                                     characters), enum, const, anyOf / oneOf of different JSON types or of
                                     objects told apart by a required property's string const (a tagged union,
                                     Pydantic's discriminated ones included; the tag is generated first), $ref to
                                     "#", "#/$defs/..." or "#/definitions/..."; annotations (title, description,
                                     default, examples, format, ...) are ignored and any other keyword is
                                     refused (LMC_ERR_INVALID_ARGUMENT naming it). Members come in the order of
                                     "properties", each at most once, required ones always; names and enum
                                     values in their compact JSON spelling. Read when generation starts */
    const char *tool_choice;      /* a chat with tools (lmc_chat_json, the server's "tools"): NULL or "auto"
                                     (default): the model decides; "none": the template is not given the tools;
                                     "required": the reply is one call of one of the tools; a tool's name: one
                                     call of that tool. A forced call is generated like json_schema output:
                                     {"name", "arguments"} ("parameters" for Llama 3.1's convention) with the
                                     arguments following the called tool's "parameters" schema (the subset
                                     json_schema takes; with several tools the name read picks them), inside the call
                                     syntax the template teaches (Qwen's <tool_call> tags), so
                                     lmc_model_tool_calls reads it; generation ends when the call is whole.
                                     Not with json_object or json_schema; native backends only */
} lmc_generate_options;
LMC_API lmc_generate_options lmc_generate_options_default(void);

/* The prompt cache. A model keeps the KV caches of its last finished
 * generations (native backends; lmc_load_options.prompt_cache_slots of them,
 * default 1) and the token ids in each; a generation with prompt_cache on
 * takes the one sharing the longest common prefix with its prompt and
 * computes only the part after it (at least one token), so each turn of a
 * chat costs its new tokens, not the whole conversation — with several
 * slots, also when conversations take turns (a server's clients). A finished
 * generation's cache goes to a free slot or replaces the least recently
 * used one; a prompt that shares nothing with any slot takes none unless
 * all are full (then the least recently used one's memory is reused). The reused keys and
 * values are the ones a full prefill computes, up to float rounding (the
 * rest is computed in other passes). Nothing is kept or reused while a LoRA
 * set is attached (its arrays may change in place), and a sliding-window
 * layer that has already dropped positions a shorter prefix needs makes
 * the generation start afresh. Concurrent generations on one model: one
 * borrows a slot, the others run without it or with other slots. The
 * memory is the KV caches', held until replaced or
 * lmc_model_clear_prompt_cache. */
LMC_API void lmc_model_clear_prompt_cache(lmc_model *m);

typedef struct lmc_metrics {
    int64_t prompt_tokens, generated_tokens;
    int64_t cached_prompt_tokens; /* prompt tokens taken from the prompt cache, not computed */
    double prefill_seconds, prefill_tokens_per_second; /* the rate counts computed tokens only */
    double decode_seconds, decode_tokens_per_second;
    double time_to_first_token;   /* seconds from the call to the first generated token */
    size_t peak_memory_bytes, active_memory_bytes; /* lmc's, on the model's device (the GPU's for "cuda") */
    int64_t draft_tokens, accepted_draft_tokens;   /* lookup decoding: drafts run, and those the reply took */
} lmc_metrics;

typedef struct lmc_generation {
    int32_t *ids; size_t n_ids;   /* generated ids (prompt excluded) */
    char *text; size_t text_len;  /* their text (stop string excluded) */
    lmc_stop_reason stop_reason;
    lmc_metrics metrics;
    float *logprobs;              /* [n_ids] log-probability of each id, with opt.logprobs (else NULL) */
    lmc_token_logprob *top_logprobs; int n_top_logprobs; /* [n_ids][n_top_logprobs], each step's most
                                     probable tokens, most probable first (ties: lower id first) */
} lmc_generation;
/* Frees the arrays inside a result (not the struct). */
LMC_API void lmc_generation_clear(lmc_generation *g);

/* Generates from a text prompt (tokenised as the tokenizer's default does). */
LMC_API lmc_status lmc_generate(lmc_model *m, const char *prompt, const lmc_generate_options *opt, lmc_generation *out);
/* Generates from prompt ids. */
LMC_API lmc_status lmc_generate_ids(lmc_model *m, const int32_t *ids, size_t n, const lmc_generate_options *opt,
                                    lmc_generation *out);

typedef struct lmc_message { const char *role; const char *content; } lmc_message;
/* Renders messages with the model's chat template (add_generation_prompt on)
 * and generates the assistant's reply. */
LMC_API lmc_status lmc_chat(lmc_model *m, const lmc_message *msgs, size_t n, const lmc_generate_options *opt,
                            lmc_generation *out);

/* Chat with the messages as the chat template takes them: a JSON array of
 * {"role", "content"} objects, where assistant messages may carry OpenAI's
 * "tool_calls" and "tool" messages a call's result; tools_json (NULL for
 * none) is a JSON array of OpenAI tool definitions ({"type": "function",
 * "function": {"name", "description", "parameters"}}) that the template
 * renders in the model's own words. A template that cannot render tools
 * (it never reads `tools`) makes LMC_ERR_UNSUPPORTED. Read the calls of the
 * reply with lmc_model_tool_calls. */
LMC_API lmc_status lmc_chat_json(lmc_model *m, const char *messages_json, const char *tools_json,
                                 const lmc_generate_options *opt, lmc_generation *out);

/* The tool calls in a reply (the text of a chat with tools), read in the
 * convention the model's template teaches: Qwen's <tool_call>{"name",
 * "arguments"}</tool_call> blocks, or, for other templates that render
 * tools, a reply that is one JSON call {"name", "parameters"} (Llama 3.1) or
 * an array of them. *calls_json gets a JSON array in OpenAI's form,
 * [{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}],
 * or NULL when the reply makes no call; *content the rest of the text,
 * trimmed. A block that is not a well-formed call stays in the content.
 * Both are malloc'd (free()); content may be NULL when not wanted. */
LMC_API lmc_status lmc_model_tool_calls(const lmc_model *m, const char *text, char **calls_json, char **content);

/* Pull-style generation: tokens are produced one call at a time. */
typedef struct lmc_stream lmc_stream;
LMC_API lmc_status lmc_stream_start(lmc_model *m, const int32_t *ids, size_t n, const lmc_generate_options *opt,
                                    lmc_stream **out);
/* Produces the next token: returns LMC_OK with *done false and the token, or
 * LMC_OK with *done true when generation has stopped (see lmc_stream_result). */
LMC_API lmc_status lmc_stream_next(lmc_stream *s, int32_t *id, const char **text, size_t *len, bool *done);
/* The result so far (ids, text, stop reason, metrics); owned by the stream. */
LMC_API const lmc_generation *lmc_stream_result(const lmc_stream *s);
LMC_API void lmc_stream_free(lmc_stream *s);

/* Logits of a forward pass over ids: [V] for the last position, or [T, V]
 * with all_positions (f32). */
LMC_API lmc_array *lmc_model_logits(lmc_model *m, const int32_t *ids, size_t n, bool all_positions);

/* --- batch inference -------------------------------------------------------- *
 *
 * Many prompts through one forward pass at a time. Prompts are sorted by
 * length and run in sub-batches of at most max_batch; each sub-batch is
 * LEFT-padded to its longest prompt, every sequence gets its own positions
 * (its first real token at position 0) and padding is hidden from every
 * query, so each result equals the single-prompt result up to float
 * rounding. Results come back in input order. A prompt that cannot run
 * (empty, over the context length, an id outside the vocabulary, a chat
 * template error) gets its own error; the others still run. */

/* One prompt: the first of text, messages or ids that is set. */
typedef struct lmc_batch_prompt {
    const char *text;                  /* tokenised with the tokenizer's special tokens (see add_special_tokens) */
    const lmc_message *messages;       /* rendered with the chat template, generation prompt added */
    size_t n_messages;
    const int32_t *ids;                /* used as given */
    size_t n_ids;
} lmc_batch_prompt;

typedef struct lmc_batch_metrics {
    int64_t prompts;                   /* prompts given, failed ones included */
    int64_t prompt_tokens;             /* real tokens of the prompts that ran (padding excluded) */
    int64_t padded_tokens;             /* positions the prefill processed, padding included */
    int64_t generated_tokens;          /* classify: one per prompt that ran */
    double seconds;                    /* the whole call */
    double prefill_seconds;            /* of which the prefill forward passes */
    double prompts_per_second;         /* prompts / seconds */
    double tokens_per_second;          /* generated_tokens / seconds (aggregate over the batch) */
    double prefill_tokens_per_second;  /* prompt_tokens / prefill_seconds */
    size_t peak_memory_bytes, active_memory_bytes; /* lmc's, on the model's device (the GPU's for "cuda") */
} lmc_batch_metrics;

enum { LMC_BATCH_DEFAULT_SIZE = 16 };

typedef struct lmc_classify_options {
    lmc_sampler_config sampler;        /* default greedy (temperature 0); prompt i draws with seed + i */
    bool return_logits;                /* also return the full last-position logits */
    const int32_t *labels; int n_labels; /* optional token ids to score (e.g. the first token of each class
                                          name): each result's label_logprobs */
    bool add_special_tokens;           /* for text prompts (default true) */
    int max_batch;                     /* prompts per forward pass (default LMC_BATCH_DEFAULT_SIZE) */
    lmc_cancel *cancel;                /* optional */
} lmc_classify_options;
LMC_API lmc_classify_options lmc_classify_options_default(void);

typedef struct lmc_classify_result {
    int32_t token_id;                  /* the next token after the prompt; -1 on error */
    char *text;                        /* its text (decoded alone, special tokens shown) */
    float logprob;                     /* its log-probability (see lmc_sampler_config) */
    float *logits; int64_t n_logits;   /* last-position logits [vocab] with return_logits */
    float *label_logprobs;             /* [n_labels] the labels' log-probabilities under the model's own
                                          distribution (see lmc_generate_options.logprobs), with labels */
    int64_t prompt_tokens;
    lmc_status status;                 /* LMC_OK, or why this prompt failed */
    char *error;                       /* the message when status != LMC_OK */
} lmc_classify_result;

/* Runs each prompt through the model (prefill only) and picks the token that
 * follows it: the first token lmc_generate would produce with the same
 * sampler (history = the prompt, seed + index). *results receives n results
 * in input order (free with lmc_classify_results_free). Returns LMC_OK when
 * every prompt was handled (per-prompt failures are in the results),
 * LMC_ERR_CANCELLED when cancelled (prompts not done carry that status), or
 * an error for an invalid call (then *results is NULL). metrics may be NULL. */
LMC_API lmc_status lmc_classify(lmc_model *m, const lmc_batch_prompt *prompts, size_t n, const lmc_classify_options *opt,
                                lmc_classify_result **results, lmc_batch_metrics *metrics);
LMC_API void lmc_classify_results_free(lmc_classify_result *r, size_t n);

/* --- embeddings ------------------------------------------------------------- */

typedef enum lmc_pooling {
    LMC_POOLING_LAST = 0,              /* the last token's hidden state (Qwen3-Embedding, e5-mistral and most LLM embedders) */
    LMC_POOLING_MEAN,                  /* the mean over the prompt's tokens */
} lmc_pooling;

typedef struct lmc_embed_options {
    lmc_pooling pooling;               /* default LMC_POOLING_LAST */
    bool normalize;                    /* scale each vector to unit L2 length (default true) */
    bool add_special_tokens;           /* for text prompts (default true) */
    int max_batch;                     /* prompts per forward pass (default LMC_BATCH_DEFAULT_SIZE) */
    lmc_cancel *cancel;                /* optional */
} lmc_embed_options;
LMC_API lmc_embed_options lmc_embed_options_default(void);

typedef struct lmc_embedding {
    float *values; int64_t dim;        /* the vector (dim = hidden size); NULL on error */
    int64_t prompt_tokens;
    lmc_status status;                 /* LMC_OK, or why this prompt failed */
    char *error;                       /* the message when status != LMC_OK */
} lmc_embedding;

/* Embeds each prompt: the final hidden states (after the model's last norm,
 * where the output head would read them; the head itself is skipped),
 * pooled and optionally normalised. Prompts run in left-padded batches, so a
 * prompt's vector does not depend on the others (up to float rounding).
 * Prompts are embedded as they tokenise: append what the model expects (an
 * instruction, an EOS) to the text. Results and return value as for
 * lmc_classify; free with lmc_embeddings_free. Native backends only. */
LMC_API lmc_status lmc_embed(lmc_model *m, const lmc_batch_prompt *prompts, size_t n, const lmc_embed_options *opt,
                             lmc_embedding **results, lmc_batch_metrics *metrics);
LMC_API void lmc_embeddings_free(lmc_embedding *r, size_t n);

/* Called after each generated token with the prompt's input index; return
 * false to cancel the whole call (as lmc_cancel would). */
typedef bool (*lmc_batch_token_callback)(void *user, size_t prompt, int32_t id);

typedef struct lmc_batch_options {
    /* max_tokens, sampler (prompt i draws with seed + i, each sequence with
     * its own sampler state), stop strings and tokens, ignore_eos,
     * add_special_tokens and cancel apply per sequence as in lmc_generate;
     * gen.on_token must be NULL (use on_token below). */
    lmc_generate_options gen;
    int max_batch;                     /* sequences per forward pass (default LMC_BATCH_DEFAULT_SIZE) */
    lmc_batch_token_callback on_token; void *user;
} lmc_batch_options;
LMC_API lmc_batch_options lmc_batch_options_default(void);

typedef struct lmc_batch_result {
    int32_t *ids; size_t n_ids;        /* generated ids (prompt excluded) */
    char *text; size_t text_len;       /* their text (stop string excluded); NULL when the prompt never ran */
    lmc_stop_reason stop_reason;       /* LMC_STOP_ERROR for a prompt that could not run */
    float *logprobs;                   /* [n_ids] with gen.logprobs, as in lmc_generation */
    lmc_token_logprob *top_logprobs; int n_top_logprobs; /* [n_ids][n_top_logprobs] with gen.top_logprobs */
    int64_t prompt_tokens;
    lmc_status status;                 /* LMC_OK, or why this sequence failed or stopped early */
    char *error;                       /* the message when status != LMC_OK */
} lmc_batch_result;

/* Generates a continuation of every prompt, decoding all sequences of a
 * sub-batch together; a sequence that stops (EOS, stop token or string, max
 * tokens, context) leaves the batch. *results receives n results in input
 * order (free with lmc_batch_results_free). Returns LMC_OK when every prompt
 * was handled (per-prompt failures in the results), LMC_ERR_CANCELLED when
 * cancelled (each unfinished result holds the tokens produced so far, stop
 * reason "cancelled" and status LMC_ERR_CANCELLED), or an error for an
 * invalid call (then *results is NULL). metrics may be NULL. */
LMC_API lmc_status lmc_batch_generate(lmc_model *m, const lmc_batch_prompt *prompts, size_t n,
                                      const lmc_batch_options *opt, lmc_batch_result **results,
                                      lmc_batch_metrics *metrics);
LMC_API void lmc_batch_results_free(lmc_batch_result *r, size_t n);

/* --- attention inspection ------------------------------------------------------ */

/* Post-RoPE queries and keys of every layer after a prefill over ids:
 * queries[l] is f32 [num_heads, T, head_dim], keys[l] f32 [num_kv_heads, T,
 * head_dim] (keys as stored in the KV cache, after the k-norm and RoPE). */
typedef struct lmc_attention_capture {
    int n_layers;
    lmc_array **queries;
    lmc_array **keys;
} lmc_attention_capture;
LMC_API lmc_status lmc_model_inspect_attention(lmc_model *m, const int32_t *ids, size_t n, lmc_attention_capture *out);
/* Frees the arrays of a capture (not the struct). */
LMC_API void lmc_attention_capture_clear(lmc_attention_capture *c);

/* --- discovery ---------------------------------------------------------------- */

typedef struct lmc_discovered_model {
    char *path;               /* folder holding config.json and safetensors */
    char architecture[32];    /* model_type, "" when config.json could not be read */
    int quant_bits, quant_group_size;
    int num_safetensors;
    char *error;              /* why the folder could not be read, or NULL */
} lmc_discovered_model;
/* Walks `dir` depth-first (entries in byte order, symlinks to folders
 * followed, every folder entered once, so loops end and a model reachable by
 * two paths is listed once) and lists model folders and unreadable folders
 * (with `error` set). A missing `dir` or one that is not a folder is an error
 * status. Free with lmc_discovered_free. */
LMC_API lmc_status lmc_discover(const char *dir, lmc_discovered_model **out, size_t *n);
LMC_API void lmc_discovered_free(lmc_discovered_model *list, size_t n);

#ifdef __cplusplus
}
#endif
#endif
