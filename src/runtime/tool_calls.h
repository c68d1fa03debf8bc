/* Tool calls in a chat model's reply (lmc_chat_json with tools, lmc serve's
 * "tools"): which convention the model's chat template teaches, and the
 * calls a reply makes in it, in OpenAI's form. */
#ifndef LMC_RUNTIME_TOOL_CALLS_H
#define LMC_RUNTIME_TOOL_CALLS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "io/json_util.h"
#include "lmc/base.h"

typedef enum lmc_tool_format {
    LMC_TOOLS_NONE,   /* the template never reads `tools` (it cannot offer them) */
    LMC_TOOLS_HERMES, /* <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks (Qwen 2.5 / 3, Hermes) */
    LMC_TOOLS_JSON,   /* a reply that is a JSON call {"name", "parameters" or "arguments"} or an array of them (Llama 3.1) */
} lmc_tool_format;

lmc_tool_format lmc_tool_format_of(const char *template_source);

/* Splits a reply: *calls gets a JSON array of {"id", "type": "function",
 * "function": {"name", "arguments" (a JSON string)}} (NULL when the reply
 * makes no call) and *content the text outside the calls, trimmed (malloc'd,
 * possibly ""). A block that is not a well-formed call (bad JSON, no name,
 * no closing tag) stays in the content. */
lmc_status lmc_tool_calls_split(lmc_tool_format f, const char *text, cJSON **calls, char **content);

/* For streaming: how many leading bytes of text[0, len) are content whatever
 * comes next (the rest starts, or may start, a call). */
size_t lmc_tool_calls_content_prefix(lmc_tool_format f, const char *text, size_t len);

/* A reply being streamed with tools: feed the text as it comes; what may
 * be sent as content comes back at once, what may be (part of) a call is
 * held until lmc_tool_stream_finish splits it. Zero-initialise with the
 * format set. */
typedef struct lmc_tool_stream {
    lmc_tool_format format;
    lmc_strbuf text;
    size_t sent;
} lmc_tool_stream;

/* Adds piece[0, n); *out / *out_len: the content to send now (inside the
 * stream's buffer, valid until the next call; length 0 when nothing). */
void lmc_tool_stream_feed(lmc_tool_stream *s, const char *piece, size_t n, const char **out, size_t *out_len);
/* At the end of the reply: the calls and the content not sent yet, as
 * lmc_tool_calls_split gives them for the held-back text. */
lmc_status lmc_tool_stream_finish(lmc_tool_stream *s, cJSON **calls, char **content);
void lmc_tool_stream_free(lmc_tool_stream *s);

#endif
