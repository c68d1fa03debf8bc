/* libFuzzer target for tokenizer.json loading: the input is a whole
 * tokenizer.json document. It goes through the scanner of model.vocab and
 * model.merges (src/text/tokenizer_json.c) on its own and through the whole
 * loader (scanner, cJSON for the rest, BPE tables), and the scanner's
 * two-thread path must agree with its one-thread path; a tokenizer that loads
 * encodes and decodes a short text. libFuzzer's buffer is exactly the input,
 * so AddressSanitizer sees any read past its end. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "text/tokenizer_internal.h"
#include "fuzz.h"

/* The two-thread scan (a helper thread takes the array after the first
 * `"merges": [`) gives what the one-thread scan gives: the same status and
 * message, or the same sections. */
static void check_two_threads(const char *doc, size_t size, lmc_status st1, const char *msg1, const tk_json_model *m1) {
    lmc_set_num_threads(2);
    tk_json_helper_min = 0;
    tk_json_model m;
    lmc_status st = tk_json_scan(doc, size, &m);
    tk_json_helper_min = SIZE_MAX;
    REQUIRE(st == st1);
    if (st != LMC_OK) {
        REQUIRE(strcmp(lmc_last_error(), msg1) == 0);
        return;
    }
    REQUIRE(m.has_vocab == m1->has_vocab && m.has_merges == m1->has_merges && m.n_vocab == m1->n_vocab && m.n_merges == m1->n_merges);
    REQUIRE(m.vocab_start == m1->vocab_start && m.vocab_end == m1->vocab_end);
    REQUIRE(m.merges_start == m1->merges_start && m.merges_end == m1->merges_end);
    for (size_t i = 0; i < m.n_vocab; i++)
        REQUIRE(m.vocab[i].len == m1->vocab[i].len && m.vocab[i].id == m1->vocab[i].id && !memcmp(m.vocab[i].key, m1->vocab[i].key, m.vocab[i].len));
    for (size_t i = 0; i < m.n_merges; i++)
        REQUIRE(m.merges[i].ll == m1->merges[i].ll && m.merges[i].rl == m1->merges[i].rl && !memcmp(m.merges[i].l, m1->merges[i].l, m.merges[i].ll) &&
                !memcmp(m.merges[i].r, m1->merges[i].r, m.merges[i].rl));
    tk_json_model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *doc = (const char *)data;
    tk_json_model m;
    tk_json_helper_min = SIZE_MAX; /* one thread first */
    lmc_status st = tk_json_scan(doc, size, &m);
    static char msg[16384]; /* longer than any error message (core/error.c keeps 12288 bytes) */
    snprintf(msg, sizeof msg, "%s", st != LMC_OK ? lmc_last_error() : "");
    check_two_threads(doc, size, st, msg, &m);
    if (st != LMC_OK) {
        REQUIRE(st == LMC_ERR_FORMAT && strstr(lmc_last_error(), "tokenizer.json") != NULL);
    } else {
        /* The scanner accepts only valid JSON, which cJSON accepts too. */
        cJSON *j = cJSON_ParseWithLength(doc, size);
        REQUIRE(j != NULL);
        cJSON_Delete(j);
        if (m.has_vocab) REQUIRE(m.vocab_start < m.vocab_end && m.vocab_end <= size && doc[m.vocab_start] == '{');
        if (m.has_merges) REQUIRE(m.merges_start < m.merges_end && m.merges_end <= size && doc[m.merges_start] == '[');
        for (size_t i = 0; i < m.n_vocab; i++) {
            const tk_vocab_entry *e = &m.vocab[i];
            REQUIRE(e->id >= 0 && e->key[e->len] == 0 && e->hash == tk_hash(e->key, e->len));
        }
        for (size_t i = 0; i < m.n_merges; i++)
            REQUIRE(m.merges[i].hl == tk_hash(m.merges[i].l, m.merges[i].ll) && m.merges[i].hr == tk_hash(m.merges[i].r, m.merges[i].rl));
    }
    tk_json_model_free(&m);

    lmc_tokenizer *t = NULL;
    /* Inputs of odd length load through the two-thread path (a thread per
     * input slows the fuzzer down, so not all of them). */
    tk_json_helper_min = size & 1 ? 0 : SIZE_MAX;
    st = lmc_tokenizer_load_json(doc, size, NULL, &t);
    if (st != LMC_OK) {
        REQUIRE(t == NULL && lmc_last_error()[0] != 0);
        return 0;
    }
    static const char text[] = "Hello, w\xC3\xB6rld! 12345 \xE4\xBD\xA0\xE5\xA5\xBD <s>\n\t  x";
    int32_t *ids = NULL;
    size_t n = 0;
    if (lmc_tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n) == LMC_OK) {
        char *out = NULL;
        size_t len = 0;
        if (lmc_tokenizer_decode(t, ids, n, false, &out, &len) == LMC_OK) lmc_tokenizer_free_text(out);
        lmc_tokenizer_free_ids(ids);
    }
    /* a token's string finds an id again, unless it holds a NUL byte (JSON's
     * \u0000): then the C string stops there */
    for (size_t id = 0; id < lmc_tokenizer_vocab_size(t) && id < 64; id++) {
        const char *s = lmc_tokenizer_id_to_token(t, (int32_t)id);
        uint32_t len = 0;
        REQUIRE(s == tk_token_str(t, (int32_t)id, &len));
        if (s && strlen(s) == len) REQUIRE(lmc_tokenizer_token_to_id(t, s) >= 0);
    }
    lmc_tokenizer_free(t);
    return 0;
}
