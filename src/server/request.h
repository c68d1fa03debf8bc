/* Parsing the JSON bodies of /v1/chat/completions and /v1/completions into
 * a prompt and generation options, with OpenAI-style error messages that
 * name the field at fault. No I/O here: the fuzzer drives it directly. */
#ifndef LMC_SERVER_REQUEST_H
#define LMC_SERVER_REQUEST_H

#include "lmc/model.h"

enum { LMC_SRV_MAX_STOPS = 16, LMC_SRV_MAX_CHOICES = 16 };

typedef enum lmc_srv_kind { LMC_SRV_CHAT, LMC_SRV_COMPLETION } lmc_srv_kind;

typedef struct lmc_srv_request {
    lmc_srv_kind kind;
    lmc_message *msgs; size_t n_msgs;  /* chat: roles and contents owned here (NULL when tool calls or results
                                          are among them: those live in messages_json only) */
    char *messages_json;               /* chat: the messages as the chat template takes them */
    char *tools_json;                  /* chat: the request's tools (a JSON array), NULL for none */
    char *tool_choice;                 /* owned; gen.tool_choice: "required" or a function's name (a forced call) */
    char *prompt;                      /* completion: the text, or NULL when ids are given */
    int32_t *ids; size_t n_ids;        /* completion: token ids */
    lmc_generate_options gen;          /* the server's defaults with the request's fields applied */
    char *stops[LMC_SRV_MAX_STOPS];    /* owned; gen.stop_strings points here when the request has "stop" */
    lmc_logit_bias *bias;              /* owned; gen.logit_bias points here when the request has "logit_bias" */
    char *template_vars;               /* owned; gen.template_vars_json: the request's "chat_template_kwargs" */
    char *json_schema;                 /* owned; gen.json_schema: response_format's json_schema.schema */
    bool stream, include_usage;
    bool echo;                         /* completions: the prompt comes back before the completion (and its logprobs) */
    bool has_seed;                     /* the request gave "seed" */
    int n;                             /* choices (1..LMC_SRV_MAX_CHOICES), made one after another */
} lmc_srv_request;

/* Why a request was refused: the message and the field ("" when none). */
typedef struct lmc_srv_error {
    char message[512];
    char param[64];
} lmc_srv_error;

/* Parses body[0, len) as a request of the given kind on top of the default
 * options. Returns true with *out filled (free with lmc_srv_request_free),
 * or false with *err filled (and *out empty). */
bool lmc_srv_parse_request(lmc_srv_kind kind, const char *body, size_t len, const lmc_generate_options *defaults,
                           lmc_srv_request *out, lmc_srv_error *err);
void lmc_srv_request_free(lmc_srv_request *r);

/* POST /v1/embeddings: "input" (a string, an array of strings, an array of
 * token ids, or an array of such arrays), "encoding_format" ("float" or
 * "base64") and "dimensions" (keep the first N, then normalise again). */
typedef struct lmc_srv_embed_request {
    lmc_batch_prompt *inputs; size_t n;  /* texts and ids owned here */
    bool base64;
    int dimensions;                      /* 0: all */
} lmc_srv_embed_request;

bool lmc_srv_parse_embed_request(const char *body, size_t len, lmc_srv_embed_request *out, lmc_srv_error *err);
void lmc_srv_embed_request_free(lmc_srv_embed_request *r);

#endif
