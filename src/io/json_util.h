/* Small helpers around cJSON and files shared by the I/O readers and writers. */
#ifndef LMC_IO_JSON_UTIL_H
#define LMC_IO_JSON_UTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"
#include "lmc/base.h"
#include "lmc/model.h"
#include "lmc/tokenizer.h"

/* Reads a whole file into a NUL-terminated malloc'd buffer (*len excludes the
 * NUL). Fails with LMC_ERR_IO (naming the path) when it cannot be read or is a
 * directory, LMC_ERR_FORMAT when it is larger than max_bytes. */
lmc_status lmc_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Parses n bytes holding one JSON value followed only by JSON whitespace
 * (the bytes need not be NUL-terminated). NULL on failure, with *err_at (if
 * not NULL) set to the byte offset where parsing stopped. */
cJSON *lmc_json_parse(const char *data, size_t n, size_t *err_at);

/* True when the JSON text holds the escape \u0000, with *at its offset.
 * cJSON decodes it into a NUL that silently ends the C string ("a\u0000b"
 * would read as "a"), so readers refuse it. */
bool lmc_json_has_nul_escape(const char *s, size_t n, size_t *at);

/* JSON's white space (RFC 8259: space, tab, newline, carriage return). */
static inline bool lmc_json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A log-probability as a JSON number: JSON has no -inf, so a token the model
 * rules out gets -9999, as in OpenAI's API. */
static inline double lmc_json_logprob(float lp) { return lp == -INFINITY ? -9999.0 : (double)lp; }

/* Adds "bytes": token id's bytes as numbers (lmc_tokenizer_token_bytes:
 * part of a character where its text shows U+FFFD; [] when it has none), as
 * OpenAI's logprobs entries carry them. */
void lmc_json_add_token_bytes(cJSON *o, const lmc_tokenizer *tok, int32_t id);

/* Chat messages as the chat template's JSON, [{"role", "content"}, ...],
 * in *json (malloc'd); LMC_ERR_INVALID_ARGUMENT naming a message without
 * role or content. */
lmc_status lmc_json_messages(const lmc_message *msgs, size_t n, char **json);

/* A short description of a JSON value's type for messages ("an array"). */
const char *lmc_json_type_name(const cJSON *item);

/* A JSON number that is an exact non-negative integer below 2^53 (the range
 * a double holds exactly), stored in *out. */
bool lmc_json_uint(const cJSON *item, uint64_t *out);

/* A growable byte string; on allocation failure `failed` is set and later
 * appends do nothing, so a whole build can be checked once at the end. */
typedef struct lmc_strbuf {
    char *data;
    size_t len, cap;
    bool failed;
} lmc_strbuf;

void lmc_strbuf_append(lmc_strbuf *b, const char *s, size_t n);
void lmc_strbuf_puts(lmc_strbuf *b, const char *s);
void lmc_strbuf_printf(lmc_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string, escaping '"', '\\' and control characters
 * (s must be valid UTF-8; other bytes are copied as they are). */
void lmc_strbuf_json_string(lmc_strbuf *b, const char *s);
void lmc_strbuf_free(lmc_strbuf *b);

#endif
