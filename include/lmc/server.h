/* lmc/server.h — an OpenAI-compatible HTTP server for one model.
 *
 * Endpoints (JSON in and out; errors are OpenAI-style
 * {"error":{"message","type","param","code"}} with a 4xx/5xx status):
 *   GET  /health                 {"status":"ok"} while the server runs
 *   GET  /metrics                Prometheus text: requests, errors, generations, prompt (cached) and
 *                                generated tokens, generation seconds, queue, memory by device, uptime
 *   GET  /v1/models              the one model, named by lmc_server_options.model_name
 *   GET  /v1/models/{name}       that model, or 404
 *   POST /v1/chat/completions    messages rendered with the model's chat template
 *   POST /v1/completions         a plain text prompt (or token ids)
 *   POST /v1/embeddings          vectors of "input" (a string, token ids, or an array of either) by
 *                                lmc_embed: options.pooling, unit length; "dimensions" keeps the
 *                                first N (normalised again), "encoding_format" "float" or "base64"
 * Both POST endpoints stream with "stream": true (text/event-stream, one
 * "data: {chunk}" event per piece of text, then "data: [DONE]"). Unknown
 * paths get 404, a wrong method 405, a body over the limit 413, a missing or
 * wrong API key 401 (when one is set), a prompt longer than the context 400.
 *
 * Request fields: max_tokens / max_completion_tokens, temperature [0, 2],
 * top_p (0, 1], stop (a string or up to 16 strings), seed, n (up to 16 choices, streamed one after another;
 * choice i draws with seed + i),
 * stream, stream_options.include_usage, and the lmc extensions top_k,
 * min_p, repeat_penalty, repeat_last_n and ignore_eos. Log-probabilities
 * (the model's own distribution, see lmc_generate_options.logprobs): chat
 * takes "logprobs": true and "top_logprobs" 0..20 and answers OpenAI's
 * {"content": [{token, logprob, bytes, top_logprobs}]} per choice;
 * /v1/completions takes "logprobs": N (0..20) and answers the legacy
 * {tokens, token_logprobs, top_logprobs}; a streamed chunk carries the
 * entries of the tokens generated since the previous one. "token" is the
 * token decoded alone (an incomplete UTF-8 character shows as U+FFFD) and
 * -inf is sent as -9999. Tools (chat): "tools" (OpenAI function
 * definitions) and "tool_choice" reach the model's chat template ("none":
 * without the tools; "required" or {"type": "function", "function":
 * {"name"}}: the reply is one call, generated like json_schema output with
 * the called tool's parameters, see lmc_generate_options.tool_choice) with
 * the conversation's tool calls (assistant
 * "tool_calls", their "arguments" strings given to the template as the
 * objects they hold) and results ("tool" messages); the reply's calls, read
 * in the template's convention (lmc_model_tool_calls), come back as
 * message.tool_calls with finish_reason "tool_calls" — streamed as one
 * tool_calls delta at the end, the content before the first call streamed as
 * it comes. A model whose template cannot render tools answers 400.
 * frequency_penalty and presence_penalty are accepted only as 0 (use
 * repeat_penalty); "response_format": {"type": "json_object"} is JSON mode
 * (lmc_generate_options.json_object), {"type": "json_schema", "json_schema":
 * {"schema": {...}}} a reply the schema describes (json_schema; a schema
 * lmc cannot follow gets a 400 naming the keyword). /v1/completions takes "echo": the
 * prompt comes back before the completion, and with "logprobs" its tokens'
 * entries too (the first token's null), "max_tokens": 0 scoring the prompt
 * alone, as evaluation harnesses ask (not with "stream"). "logit_bias"
 * ({"token id": bias in [-100, 100]}) is added to the logits at every step.
 * Chat takes "chat_template_kwargs", extra template variables (e.g.
 * {"enable_thinking": false} for Qwen3).
 * Legacy "functions", suffix and response formats other than text,
 * json_object and json_schema are rejected with 400.
 * Fields the server does not know (user, metadata, ...) are ignored.
 * Answers carry OpenAI's usage (with prompt_tokens_details.cached_tokens:
 * prompt tokens reused from the prompt cache) and an "lmc" object:
 * stop_reason, cached_prompt_tokens, prefill_tokens_per_second,
 * decode_tokens_per_second, time_to_first_token and the seed used (a
 * string). finish_reason is "length" for max_tokens or a full context,
 * "stop" otherwise. A thinking model's reply (a template that writes
 * <think> blocks, e.g. Qwen3) has its <think> block in message.reasoning_content
 * (streamed as reasoning_content deltas) and the answer in content, unless
 * raw_reasoning is set.
 *
 * Generations run one at a time (a request waits its turn in arrival
 * order) so that the model's prompt cache serves consecutive turns of a
 * conversation; connections are served by their own threads, so waiting
 * requests and /health never block one another. A client that disconnects
 * cancels its generation, or its place in the queue, within ~0.1 s.
 */
#ifndef LMC_SERVER_H
#define LMC_SERVER_H

#include "lmc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_server lmc_server;

typedef struct lmc_server_options {
    const char *host;             /* address to listen on, numeric or a name (default "127.0.0.1"; "0.0.0.0": all IPv4) */
    int port;                     /* TCP port (default 8080); 0: any free port (see lmc_server_port) */
    const char *model_name;       /* the model's id in responses; NULL: the model folder's base name */
    /* Defaults for what a request leaves out. max_tokens defaults to "until
     * the context is full" (INT32_MAX); on_token, user and cancel are unused. */
    lmc_generate_options gen;
    bool random_seed;             /* a request without "seed" draws with a new random seed, as OpenAI's API
                                     does (default true); false: with gen.sampler.seed */
    size_t max_body_bytes;        /* larger request bodies get 413 (default 8 MiB) */
    int max_connections;          /* simultaneous connections (default 64); more are refused */
    int idle_timeout;             /* seconds before an idle connection is closed (default 600) */
    lmc_pooling pooling;          /* POST /v1/embeddings: how token vectors become one (default LMC_POOLING_LAST) */
    bool raw_reasoning;           /* keep a thinking model's <think> block in the content (default false: it goes
                                     to message.reasoning_content, for templates that write <think> blocks) */
    const char *cors_origin;      /* when set ("*" or e.g. "http://localhost:3000"), answers allow that
                                     origin (CORS) and OPTIONS preflights get 204: for browser front-ends */
    const char *api_key;          /* when set, every endpoint but /health needs "Authorization: Bearer KEY" (else 401) */
    bool log_requests;            /* one line per request on stderr: method, path, status, tokens, seconds */
} lmc_server_options;
/* The defaults above, with gen = lmc_generate_options_default() except max_tokens. */
LMC_API lmc_server_options lmc_server_options_default(void);

/* Starts serving m (which must outlive the server) in background threads
 * and returns once the socket listens. Fails with LMC_ERR_INVALID_ARGUMENT
 * for bad options (naming the option), LMC_ERR_IO when the address cannot be
 * resolved or bound (e.g. the port is in use), LMC_ERR_CLOSED for a closed
 * model. */
LMC_API lmc_status lmc_server_start(lmc_model *m, const lmc_server_options *opt, lmc_server **out);
/* The port the server listens on (the one chosen when port 0 was asked for). */
LMC_API int lmc_server_port(const lmc_server *s);
/* Stops listening, cancels running and waiting generations (a streaming
 * client's stream is cut, a waiting one gets 503), waits for every connection thread and
 * frees the server. NULL is ignored. */
LMC_API void lmc_server_stop(lmc_server *s);

#ifdef __cplusplus
}
#endif
#endif
