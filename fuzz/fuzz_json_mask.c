/* libFuzzer target for JSON mode's token mask (lmc_json_mask in
 * src/runtime/json_constraint.c): the mask walks the vocabulary as a trie and
 * admits in-string tokens by a per-token flag, so it must agree with trying
 * each token's bytes on a copy of the state (lmc_json_advance), for any
 * vocabulary and any prefix, with and without a schema.
 *
 * Input: byte 0 picks the schema (none, or one of SCHEMAS) and whether the
 * document is wrapped in literal text (a forced tool call's tags); byte 1 the
 * number of tokens (1..64); then each token as a length byte (bit 7: special,
 * bits 0-5: 0..63 bytes) and its bytes; the rest is a prefix of the reply,
 * fed byte by byte until the recogniser refuses one. One more special token,
 * the last id, is the EOS. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/json_constraint.h"

enum { MAX_TOKENS = 64, MAX_TOKEN_BYTES = 63 }; /* past 32 bytes the trie walk tries tokens one by one */

/* Schemas that reach every kind of node: keys, enums, counted arrays and
 * strings, unions, references, a tagged union (recursive). */
static const char *const SCHEMAS[] = {
    ("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":4},"
    "\"n\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"ab\",1,null]},"
    "\"minItems\":1,\"maxItems\":2}},\"required\":[\"name\"],\"additionalProperties\":false}"),
    ("{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"number\"},{\"type\":\"string\"},"
    "{\"type\":\"boolean\"},{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}]},\"t\":{\"type\":\"string\"},"
    "\"k\":{\"const\":\"x\\u00e9\"}}}"),
    ("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#/$defs/node\"},"
    "\"s\":{\"type\":\"string\",\"minLength\":1}}}},\"$ref\":\"#/$defs/node\"}"),
    ("{\"anyOf\":[{\"properties\":{\"name\":{\"const\":\"get\"},\"args\":{\"properties\":{\"city\":{\"type\":\"string\","
    "\"maxLength\":3}},\"required\":[\"city\"]}},\"required\":[\"name\",\"args\"]},{\"properties\":{\"name\":"
    "{\"const\":\"get_all\"},\"args\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"},\"maxItems\":2}},\"required\":[\"name\"]}]}"),
};
enum { N_SCHEMAS = sizeof SCHEMAS / sizeof *SCHEMAS };

static lmc_json_schema *compiled[N_SCHEMAS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (!compiled[0])
        for (int i = 0; i < N_SCHEMAS; i++) REQUIRE(lmc_json_schema_compile(SCHEMAS[i], &compiled[i]) == LMC_OK);
    int pick = data[0] % (N_SCHEMAS + 1);
    bool wrap = data[0] / (N_SCHEMAS + 1) % 2;
    int n = data[1] % MAX_TOKENS + 1;
    size_t at = 2;
    uint32_t off[MAX_TOKENS + 2];
    bool special[MAX_TOKENS + 1];
    char bytes[MAX_TOKENS * MAX_TOKEN_BYTES + 1];
    uint32_t len = 0;
    int vocab = 0;
    for (; vocab < n && at < size; vocab++) {
        uint8_t head = data[at++];
        int k = head & 0x3F;
        if (at + (size_t)k > size) k = (int)(size - at);
        off[vocab] = len;
        special[vocab] = head & 0x80;
        memcpy(bytes + len, data + at, (size_t)k);
        len += (uint32_t)k;
        at += (size_t)k;
    }
    int32_t eos = vocab; /* one more token: the EOS */
    off[vocab] = len;
    special[vocab++] = true;
    off[vocab] = len;
    lmc_token_bytes *tb;
    REQUIRE(lmc_token_bytes_from(vocab, off, bytes, special, &tb) == LMC_OK);

    lmc_json_state s;
    lmc_json_init(&s, pick ? compiled[pick - 1] : NULL);
    if (wrap) lmc_json_wrap(&s, "<tool_call>\n", "\n</tool_call>");
    for (; at < size; at++) {
        lmc_json_state next = s;
        if (!lmc_json_step(&next, data[at])) break;
        s = next;
    }
    float logits[MAX_TOKENS + 1];
    for (int t = 0; t < vocab; t++) logits[t] = (float)t; /* kept values must come back unchanged */
    lmc_json_mask(&s, tb, &eos, 1, logits);
    bool done = lmc_json_done(&s);
    for (int t = 0; t < vocab; t++) {
        bool allowed = logits[t] != -INFINITY;
        REQUIRE(!allowed || logits[t] == (float)t);
        if (t == eos) {
            REQUIRE(allowed == done);
            continue;
        }
        lmc_json_state tr;
        lmc_json_copy(&tr, &s);
        bool fits = lmc_json_advance(&tr, tb, t);
        REQUIRE(allowed == fits);
        REQUIRE(!done || !fits); /* nothing follows a whole object */
    }
    lmc_token_bytes_free(tb);
    return 0;
}
