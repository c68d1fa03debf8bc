/* JSON mode (lmc_generate_options.json_object): the reply must be one JSON
 * object; with json_schema, one that a JSON Schema describes (json_schema.c
 * compiles it). A byte-level recogniser of JSON prefixes tells which tokens
 * can come next; the stream masks the others before the sampler draws. */
#ifndef LMC_RUNTIME_JSON_CONSTRAINT_H
#define LMC_RUNTIME_JSON_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lmc/base.h"
#include "lmc/tokenizer.h"

enum { LMC_JSON_MAX_DEPTH = 64, LMC_JSON_MAX_SPACE = 64 };

/* A compiled schema: nodes by index; node 0 accepts any JSON value. */
enum { LMC_JS_ANY, LMC_JS_OBJECT, LMC_JS_ARRAY, LMC_JS_STRING, LMC_JS_NUMBER, LMC_JS_INTEGER, LMC_JS_BOOLEAN,
       LMC_JS_NULL, LMC_JS_ENUM, LMC_JS_UNION };
typedef struct lmc_json_node {
    uint8_t kind;
    bool open;        /* object: no properties listed, so any members */
    uint16_t n;       /* object: properties; enum: values; union: alternatives */
    char **text;      /* object: names as JSON spells them, without quotes; enum: values, compact JSON */
    uint16_t *len;    /* bytes of text[i] */
    uint16_t *child;  /* object: each property's node; union: the alternatives */
    bool *required;   /* object */
    uint16_t *variants; /* object: a tagged union (anyOf of objects told apart by a required property's string
                           const) is an object of that one property, an enum of the alternatives' values, and
                           once its value is read the open object becomes variants[value's index] (an
                           alternative with the tag as its first property), which goes on from its second
                           property; NULL for every other object */
    uint16_t items;   /* array: the elements' node */
    uint32_t min, max; /* array: elements; string: characters */
    uint64_t first[4]; /* the bytes a value can start with (a union picks its alternative by them) */
} lmc_json_node;

typedef struct lmc_json_schema {
    lmc_json_node *nodes;
    int n, cap;
    uint16_t root;
} lmc_json_schema;

/* Compiles JSON Schema text (the subset json_schema.c describes); errors
 * name the place in the schema and the keyword. */
lmc_status lmc_json_schema_compile(const char *text, lmc_json_schema **out);
void lmc_json_schema_free(lmc_json_schema *s);

/* One open container: '{' or '[', its schema node (0: any) and, for an
 * object with a schema, the index of the next property it may name, for an
 * array with one, its elements so far. */
typedef struct lmc_json_frame {
    uint8_t open;
    uint16_t node, count;
} lmc_json_frame;

/* Where a prefix of the reply stands; plain data, copied to try a token
 * (lmc_json_copy copies only the open frames). */
typedef struct lmc_json_state {
    const lmc_json_schema *schema;  /* NULL: any JSON object */
    uint8_t mode;                   /* what may come next (json_constraint.c) */
    uint8_t aux;                    /* string: hex digits left in \uXXXX; literal: index into it */
    uint8_t lit;                    /* which literal (true, false, null) */
    uint8_t space;                  /* white space bytes in a row (bounded, so a reply cannot idle forever) */
    uint8_t depth;
    uint8_t surrogate;              /* a \uD800-\uDBFF was read: its low half must follow */
    uint16_t code;                  /* the \uXXXX being read */
    uint8_t u8left, u8lo, u8hi;     /* in a string: UTF-8 continuation bytes still due, and the next one's range */
    /* with a schema: */
    uint16_t vnode;                 /* the node of the value being read, or of the one after a key's ':' */
    uint16_t pos;                   /* bytes of a key or enum value matched so far */
    uint32_t slen;                  /* characters of the string being read */
    uint64_t cand;                  /* the keys or enum values the bytes so far still match */
    /* literal text around the document (lmc_json_wrap), e.g. a tool call's tags: */
    const char *pre, *post;
    uint16_t pre_len, post_len;
    uint16_t lit_at;                /* bytes of pre, then of post, matched so far */
    lmc_json_frame frame[LMC_JSON_MAX_DEPTH]; /* the open containers, outermost first; last, for lmc_json_copy */
} lmc_json_state;

/* *dst = *src for every purpose (frames above depth are written before read). */
static inline void lmc_json_copy(lmc_json_state *dst, const lmc_json_state *src) {
    memcpy(dst, src, offsetof(lmc_json_state, frame)); /* a constant size: a few moves, no call */
    for (int i = 0; i < src->depth; i++) dst->frame[i] = src->frame[i];
}

/* The state before the first byte of a reply that must be an object, or,
 * with a schema (which must outlive the state), what the schema describes. */
void lmc_json_init(lmc_json_state *s, const lmc_json_schema *schema);
/* The reply is pre, then the document, then post, byte for byte (either
 * NULL for none; both must outlive the state; at most 64 KiB each). Call
 * right after lmc_json_init. */
void lmc_json_wrap(lmc_json_state *s, const char *pre, const char *post);
/* Feeds one byte: false (s unchanged or garbage) when no JSON object
 * starts with the prefix so extended. */
bool lmc_json_step(lmc_json_state *s, unsigned char c);
/* Whether the reply so far is one whole object, and post after it (nothing may follow). */
bool lmc_json_done(const lmc_json_state *s);

/* Per-token bytes of a vocabulary, for masking: token t's bytes
 * (lmc_tokenizer_token_bytes: its text decoded alone, part of a character
 * kept as those bytes) are bytes[off[t], off[t+1]); special tokens have none
 * and are never allowed (EOS is judged separately). */
typedef struct lmc_token_bytes {
    int64_t vocab;
    uint32_t *off;                  /* [vocab + 1] */
    char *bytes;
    bool *special;                  /* [vocab] */
    bool *in_string;                /* [vocab]: whole UTF-8 characters from 0x20 up but '"' and '\\', so the
                                       token continues any string that is not inside a character */
    int32_t *sorted; int64_t n_sorted; /* the tokens with bytes (not special) in byte order, shorter first: a
                                       prefix's tokens are a range, so the mask walks them as a trie */
} lmc_token_bytes;

/* The table for a tokenizer, vocab entries long (ids the tokenizer does
 * not have get none); free with lmc_token_bytes_free. */
lmc_status lmc_token_bytes_build(const lmc_tokenizer *tok, int64_t vocab, lmc_token_bytes **out);
/* The table of a vocabulary given as bytes: token t's are bytes[off[t],
 * off[t+1]), special[t] marks the ones never allowed (tests and the fuzzer
 * build vocabularies this way). */
lmc_status lmc_token_bytes_from(int64_t vocab, const uint32_t *off, const char *bytes, const bool *special,
                                lmc_token_bytes **out);
void lmc_token_bytes_free(lmc_token_bytes *tb);
/* Feeds token t's bytes to s; false when they do not fit. */
bool lmc_json_advance(lmc_json_state *s, const lmc_token_bytes *tb, int32_t t);

/* Sets logits[t] = -inf for every token whose bytes cannot extend the
 * prefix at s; EOS ids (eos[0..n_eos)) stay possible only when s is done,
 * and once s is done only they stay possible. */
void lmc_json_mask(const lmc_json_state *s, const lmc_token_bytes *tb, const int32_t *eos, size_t n_eos, float *logits);

#endif
