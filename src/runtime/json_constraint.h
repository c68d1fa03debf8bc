/* JSON mode (lmc_generate_options.json_object): the reply must be one JSON
 * object. A byte-level recogniser of JSON prefixes tells which tokens can
 * come next; the stream masks the others before the sampler draws. */
#ifndef LMC_RUNTIME_JSON_CONSTRAINT_H
#define LMC_RUNTIME_JSON_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lmc/base.h"
#include "lmc/tokenizer.h"

enum { LMC_JSON_MAX_DEPTH = 64, LMC_JSON_MAX_SPACE = 64 };

/* Where a prefix of the reply stands; plain data, copied to try a token. */
typedef struct lmc_json_state {
    uint8_t mode;                   /* what may come next (json_constraint.c) */
    uint8_t aux;                    /* string: hex digits left in \uXXXX; literal: index into it */
    uint8_t lit;                    /* which literal (true, false, null) */
    uint8_t space;                  /* white space bytes in a row (bounded, so a reply cannot idle forever) */
    uint8_t depth;
    uint8_t surrogate;              /* a \uD800-\uDBFF was read: its low half must follow */
    uint16_t code;                  /* the \uXXXX being read */
    uint8_t stack[LMC_JSON_MAX_DEPTH]; /* '{' or '[' per open container */
} lmc_json_state;

/* The state before the first byte of a reply that must be an object. */
void lmc_json_init(lmc_json_state *s);
/* Feeds one byte: false (s unchanged or garbage) when no JSON object
 * starts with the prefix so extended. */
bool lmc_json_step(lmc_json_state *s, unsigned char c);
/* Whether the reply so far is one whole object (nothing may follow). */
bool lmc_json_done(const lmc_json_state *s);

/* Per-token bytes of a vocabulary, for masking: token t's text decoded
 * alone is bytes[off[t], off[t+1]); special tokens have none and are never
 * allowed (EOS is judged separately). */
typedef struct lmc_token_bytes {
    int64_t vocab;
    uint32_t *off;                  /* [vocab + 1] */
    char *bytes;
    bool *special;                  /* [vocab] */
} lmc_token_bytes;

/* The table for a tokenizer, vocab entries long (ids the tokenizer does
 * not have get none); free with lmc_token_bytes_free. */
lmc_status lmc_token_bytes_build(const lmc_tokenizer *tok, int64_t vocab, lmc_token_bytes **out);
void lmc_token_bytes_free(lmc_token_bytes *tb);
/* Feeds token t's bytes to s; false when they do not fit. */
bool lmc_json_advance(lmc_json_state *s, const lmc_token_bytes *tb, int32_t t);

/* Sets logits[t] = -inf for every token whose bytes cannot extend the
 * prefix at s; EOS ids (eos[0..n_eos)) stay possible only when s is done,
 * and once s is done only they stay possible. */
void lmc_json_mask(const lmc_json_state *s, const lmc_token_bytes *tb, const int32_t *eos, size_t n_eos, float *logits);

#endif
