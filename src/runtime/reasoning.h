/* A reply's reasoning: models such as Qwen3 think first, inside
 * <think>...</think>, then answer. These split a reply (whole or streamed)
 * into that reasoning and the answer, for lmc serve's reasoning_content. */
#ifndef LMC_RUNTIME_REASONING_H
#define LMC_RUNTIME_REASONING_H

#include <stdbool.h>
#include <stddef.h>

#include "io/json_util.h"
#include "lmc/base.h"

/* Whether a chat template's models think in <think> blocks. */
bool lmc_reasoning_template(const char *template_source);

/* A reply that opens (after white space) with <think>: *reasoning gets the
 * block's text and *content what follows </think> (leading white space
 * dropped); with no </think> yet (cut by max_tokens) all of it is reasoning.
 * Any other reply is all content. Both malloc'd. */
lmc_status lmc_reasoning_split(const char *text, char **reasoning, char **content);

/* The same for a reply arriving in pieces; zero-initialise. */
typedef struct lmc_reasoning_stream {
    int state;      /* not known yet, inside the block, white space after </think>, answer (reasoning.c) */
    lmc_strbuf text; /* the reply so far */
    size_t done;    /* bytes of text already handed out or dropped */
    bool begun;     /* some reasoning was handed out (newlines after <think> are dropped before it) */
} lmc_reasoning_stream;

/* Adds piece[0, n); *reasoning / *content (lengths *rn / *cn, possibly 0)
 * are what can be handed out now (inside the stream's buffer, valid until
 * the next call). final: the reply has ended, hand out everything held. */
void lmc_reasoning_feed(lmc_reasoning_stream *s, const char *piece, size_t n, bool final, const char **reasoning,
                        size_t *rn, const char **content, size_t *cn);
void lmc_reasoning_stream_free(lmc_reasoning_stream *s);

#endif
