/* The tokenizer.json scanner (src/text/tokenizer_json.c): model.vocab and
 * model.merges read straight into tables, every JSON error reported with
 * its byte offset, through the public loader (lmc_tokenizer_load_json) and
 * through tk_json_scan itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "test_util.h"
#include "text/tokenizer_internal.h"

static lmc_tokenizer *load(const char *json) {
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load_json(json, strlen(json), NULL, &t);
    CHECKF(st == LMC_OK, "load failed: %s\n  json: %s", lmc_last_error(), json);
    return t;
}

/* Loading fails with `status` and a message containing `want`. */
static void check_error(const char *json, lmc_status status, const char *want) {
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load_json(json, strlen(json), NULL, &t);
    CHECKF(st == status && t == NULL, "status %d (want %d) for %s", (int)st, (int)status, json);
    CHECKF(strstr(lmc_last_error(), want) != NULL, "message \"%s\" lacks \"%s\"\n  json: %s", lmc_last_error(), want, json);
    lmc_tokenizer_free(t);
}

static void check_ids(const lmc_tokenizer *t, const char *text, const int32_t *want, size_t nw) {
    if (!t) return;
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = lmc_tokenizer_encode(t, text, strlen(text), false, &ids, &n);
    bool same = st == LMC_OK && n == nw;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    CHECKF(same, "encoding '%s': status %d, %zu ids", text, (int)st, n);
    lmc_tokenizer_free_ids(ids);
}

/* Escapes in keys and merges decode as JSON says (\u with surrogate pairs
 * included), and both merge forms resolve to the same ids. */
static void test_escapes(void) {
    const char *forms[] = {
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\\n\": 1, \"a\\n\": 2, \"\\u00e9\": 3, \"\\ud83d\\ude00\": 4,"
        " \"\\u00e9\\ud83d\\ude00\": 5, \"\\\"\": 6, \"\\\\\": 7, \"\\\"\\\\\": 8, \"\\/\\b\\f\\r\\t\": 9},"
        " \"merges\": [\"a \\n\", \"\\u00e9 \\ud83d\\ude00\", \"\\\" \\\\\"]}}",
        /* The same as pairs, merges before vocab, an escaped "model" key. */
        "{\"mod\\u0065l\": {\"merges\": [[\"a\", \"\\n\"], [\"\\u00E9\", \"\\uD83D\\uDE00\"], [\"\\\"\", \"\\\\\"]], \"type\": \"BPE\","
        " \"vocab\": {\"a\": 0, \"\\n\": 1, \"a\\n\": 2, \"\xC3\xA9\": 3, \"\xF0\x9F\x98\x80\": 4, \"\xC3\xA9\xF0\x9F\x98\x80\": 5,"
        " \"\\\"\": 6, \"\\\\\": 7, \"\\\"\\\\\": 8, \"/\\b\\f\\r\\t\": 9}}}",
    };
    for (int f = 0; f < 2; f++) {
        lmc_tokenizer *t = load(forms[f]);
        if (!t) continue;
        CHECK(lmc_tokenizer_token_to_id(t, "\n") == 1);
        CHECK(lmc_tokenizer_token_to_id(t, "\xC3\xA9\xF0\x9F\x98\x80") == 5);
        CHECK(lmc_tokenizer_token_to_id(t, "\"\\") == 8);
        CHECK(lmc_tokenizer_token_to_id(t, "/\b\f\r\t") == 9);
        CHECK_STR(lmc_tokenizer_id_to_token(t, 4), "\xF0\x9F\x98\x80");
        check_ids(t, "a\n", (int32_t[]){2}, 1);
        check_ids(t, "\xC3\xA9\xF0\x9F\x98\x80" "a", (int32_t[]){5, 0}, 2);
        check_ids(t, "\"\\\"", (int32_t[]){8, 6}, 2);
        lmc_tokenizer_free(t);
    }
    /* A key holding U+0000 keeps its length. */
    lmc_tokenizer *t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\\u0000b\": 1, \"\\u0000\": 2}, \"merges\": []}}");
    if (t) {
        CHECK(lmc_tokenizer_vocab_size(t) == 3);
        check_ids(t, "a", (int32_t[]){0}, 1);
        lmc_tokenizer_free(t);
    }
}

/* Whitespace of every kind between tokens, empty sections, and a repeated
 * vocabulary key (the last id wins, as in HF's map). */
static void test_layout(void) {
    lmc_tokenizer *t = load(" \r\n\t{ \"model\" :\n\t{\"type\":\"BPE\",\"vocab\":{ } ,\"merges\":[ ] } } \n");
    if (t) { CHECK(lmc_tokenizer_vocab_size(t) == 0); lmc_tokenizer_free(t); }
    t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"a\": 2, \"ab\": 3}, \"merges\": [\"a b\"]}}");
    if (t) {
        CHECK(lmc_tokenizer_token_to_id(t, "a") == 2);
        check_ids(t, "ab", (int32_t[]){3}, 1);
        check_ids(t, "a", (int32_t[]){2}, 1);
        lmc_tokenizer_free(t);
    }
    /* Two tokens with one id: both are found, the id decodes to the last. */
    t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0, \"c\": 1, \"ac\": 2}, \"merges\": [\"a c\"]}}");
    if (t) {
        CHECK(lmc_tokenizer_token_to_id(t, "a") == 0);
        CHECK(lmc_tokenizer_token_to_id(t, "b") == 0);
        CHECK_STR(lmc_tokenizer_id_to_token(t, 0), "b");
        check_ids(t, "ac", (int32_t[]){2}, 1);
        check_ids(t, "ba", (int32_t[]){0, 0}, 2);
        lmc_tokenizer_free(t);
    }
    /* Other sections may hold any JSON: they are checked and left to cJSON. */
    t = load("{\"version\": \"1.0\", \"truncation\": null, \"x\": [1, -2.5e+3, 0.25, true, false, {\"k\": [[], {}]}],"
             " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": {\"a\": 0}, \"merges\": []}}");
    lmc_tokenizer_free(t);
}

/* Syntax errors: the message names the byte where the document goes wrong,
 * wherever that is (inside vocab, inside merges, or elsewhere). */
static void test_syntax_errors(void) {
#define V "{\"model\": {\"type\": \"BPE\", \"vocab\": {"
    static const struct { const char *json; const char *want; } cases[] = {
        {"", "at byte 0: unexpected end of input"},
        {"   ", "at byte 3: unexpected end of input"},
        {"{\"model\": ", "at byte 10: unexpected end of input"},
        {V "\"a\": 0", "at byte 42: unexpected end of input"},
        {V "\"a\" 0}}}", "at byte 40: expected ':' after a key"},
        {V "\"a\": 0 \"b\": 1}}}", "at byte 43: expected ',' or '}'"},
        {V "\"a\": 0,}}}", "at byte 43: expected a string key"},
        {V "\"a\": 01}}}", "at byte 41: invalid number (leading zero)"},
        {V "\"a\\x\": 0}}}", "at byte 38: invalid escape in a string"},
        {V "\"a\\u12\": 0}}}", "at byte 38: \\u needs four hex digits"},
        {V "\"\\udc00\": 0}}}", "at byte 37: lone low surrogate"},
        {V "\"\\ud800x\": 0}}}", "at byte 37: high surrogate without a low surrogate"},
        {V "\"\\ud800\\u0041\": 0}}}", "at byte 37: high surrogate without a low surrogate"},
        {V "\"a\tb\": 0}}}", "at byte 38: control character in a string"},
        {V "\"a\xC0\x80\": 0}}}", "at byte 38: invalid UTF-8"},
        {V "\"\xED\xA0\x80\": 0}}}", "at byte 37: invalid UTF-8"},
        {V "\"\xF5\x80\x80\x80\": 0}}}", "at byte 37: invalid UTF-8"},
        {V "\"\xE4\xB8\": 0}}}", "at byte 37: invalid UTF-8"},
        {V "\"abc", "at byte 36: unterminated string"},
        {V "\"a\": 0}, \"merges\": [\"a b\" \"c d\"]}}", "at byte 62: expected ',' or ']'"},
        {V "\"a\": 0}, \"merges\": [\"a b\",]}}", "at byte 62: expected a value"},
        {V "\"a\": 0}, \"merges\": [[\"a\", \"b\\q\"]]}}", "at byte 64: invalid escape"},
        {V "\"a\": 0}, \"merges\": [\"a\\u00zz b\"]}}", "at byte 58: \\u needs four hex digits"},
        {V "\"a\": 0}, \"merges\": [\"a b\"]}, \"decoder\": tru}", "at byte 76: invalid literal"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": -}", "at byte 65: invalid number"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": 1.}", "at byte 65: invalid number"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": 1e+}", "at byte 65: invalid number"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": [1 2]}", "at byte 68: expected ',' or ']'"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": {1: 2}}", "at byte 66: expected a string key"},
        {V "\"a\": 0}, \"merges\": []}, \"x\": \"\x80\"}", "at byte 66: invalid UTF-8"},
        {V "\"a\": 0}, \"merges\": []}} x", "at byte 60: unexpected text after the JSON document"},
        {V "\"a\": 0}, \"merges\": []}}}", "at byte 59: unexpected text after the JSON document"},
    };
#undef V
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_error(cases[i].json, LMC_ERR_FORMAT, cases[i].want);

    /* Nesting: 1000 levels are fine, 1001 are not (cJSON's limit too). */
    size_t depth = 1001;
    char *deep = malloc(2 * depth + 64);
    if (!deep) return;
    for (int levels = 999; levels <= 1000; levels++) {
        size_t at = (size_t)sprintf(deep, "{\"x\": ");
        for (int k = 0; k < levels; k++) deep[at++] = '[';
        for (int k = 0; k < levels; k++) deep[at++] = ']';
        strcpy(deep + at, "}");
        tk_json_model m;
        lmc_status st = tk_json_scan(deep, strlen(deep), &m);
        CHECKF(levels < 1000 ? st == LMC_OK : st == LMC_ERR_FORMAT, "%d levels: status %d", levels, (int)st);
        if (levels == 1000) CHECKF(strstr(lmc_last_error(), "nesting deeper than 1000") != NULL, "%s", lmc_last_error());
        tk_json_model_free(&m);
    }
    free(deep);
}

/* Valid JSON of the wrong shape: named by entry and byte. */
static void test_shape_errors(void) {
#define V "{\"model\": {\"type\": \"BPE\", \"vocab\": {"
    check_error(V "\"a\": -3}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a' (byte 36) has no valid id");
    check_error(V "\"a\": 1.0}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a' (byte 36) has no valid id");
    check_error(V "\"a\": 1e3}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a' (byte 36) has no valid id");
    check_error(V "\"a\": \"0\"}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a' (byte 36) has no valid id");
    check_error(V "\"a\": 2147483648}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a' (byte 36) has no valid id");
    check_error(V "\"a\": 0, \"b\": [}, \"merges\": []}}", LMC_ERR_FORMAT, "invalid JSON at byte 50");
    /* a long key is quoted by its first 80 bytes, cut between characters:
     * 'x' then 59 two-byte letters shows 'x' and 39 of them */
    {
        char doc[512], want[128];
        int at = snprintf(doc, sizeof doc, V "\"x");
        for (int i = 0; i < 59; i++) at += snprintf(doc + at, sizeof doc - (size_t)at, "\xC3\xA9");
        snprintf(doc + at, sizeof doc - (size_t)at, "\": -1}, \"merges\": []}}");
        at = snprintf(want, sizeof want, "vocab entry 'x");
        for (int i = 0; i < 39; i++) at += snprintf(want + at, sizeof want - (size_t)at, "\xC3\xA9");
        snprintf(want + at, sizeof want - (size_t)at, "...' (byte 36) has no valid id");
        check_error(doc, LMC_ERR_FORMAT, want);
    }
    /* Ids index tables: far beyond the token count they are refused. */
    check_error(V "\"a\": 2147483647}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab id 2147483647 is out of range for 1 tokens");
    check_error(V "\"a\": 2147483647}, \"merges\": []}, \"x\": tru}", LMC_ERR_FORMAT, "at byte 74: invalid literal");
    check_error("{\"added_tokens\": [{\"id\": 5000, \"content\": \"x\"}], \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}", LMC_ERR_FORMAT,
                "added token id 5000 is out of range for 2 tokens");
    lmc_tokenizer_free(load("{\"added_tokens\": [{\"id\": 1031, \"content\": \"x\"}], \"model\": {\"vocab\": {\"a\": 1027}, \"merges\": []}}"));
    check_error(V "\"a\": 0}, \"merges\": [\"a\"]}}", LMC_ERR_FORMAT, "merge 0 (byte 56) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [\"a a\", \"a  a\"]}}", LMC_ERR_FORMAT, "merge 1 (byte 63) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [[\"a\"]]}}", LMC_ERR_FORMAT, "merge 0 (byte 56) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [[\"a\", \"a\", \"a\"]]}}", LMC_ERR_FORMAT, "merge 0 (byte 56) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [[\"a\", 1]]}}", LMC_ERR_FORMAT, "merge 0 (byte 56) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [7]}}", LMC_ERR_FORMAT, "merge 0 (byte 56) is not two tokens");
    check_error(V "\"a\": 0}, \"merges\": [[\"a\", 1}]}}", LMC_ERR_FORMAT, "invalid JSON at byte 63");
    check_error(V "\"a\": 0}, \"vocab\": {}, \"merges\": []}}", LMC_ERR_FORMAT, "second 'model.vocab' key at byte 45");
    check_error(V "\"a\": 0}, \"merges\": [], \"merges\": []}}", LMC_ERR_FORMAT, "second 'model.merges' key at byte 59");
    check_error("{\"model\": {}, \"model\": {}}", LMC_ERR_FORMAT, "second 'model' key at byte 14");
    /* Sections of another JSON type are left to the loader's own checks. */
    check_error("{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", LMC_ERR_FORMAT, "model.vocab is not an object");
    check_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": {}}}", LMC_ERR_FORMAT, "model.merges is not an array");
    check_error("{\"model\": [1]}", LMC_ERR_FORMAT, "missing 'model'");
#undef V
}

/* Every prefix of a valid document fails cleanly, and so does every
 * single-byte corruption (each either loads or reports an error). */
static void test_truncations(void) {
    const char *json = "{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}],"
                       " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\\u00e9\": 1, \"a\\u00e9\": 2, \"<s>\": 3},"
                       " \"merges\": [[\"a\", \"\\u00e9\"]]}}";
    size_t n = strlen(json);
    for (size_t k = 0; k < n; k++) {
        char *cut = malloc(k + 1); /* exactly k bytes, so a read past them is caught under ASan */
        if (!cut) return;
        memcpy(cut, json, k);
        lmc_tokenizer *t = NULL;
        lmc_status st = lmc_tokenizer_load_json(cut, k, NULL, &t);
        CHECKF(st == LMC_ERR_FORMAT && !t, "prefix of %zu bytes: status %d", k, (int)st);
        free(cut);
    }
    static const char bytes[] = "\"\\{}[],:0 xu\x80\xff";
    char *doc = malloc(n);
    if (!doc) return;
    for (size_t k = 0; k < n; k++) {
        for (size_t b = 0; b < sizeof bytes - 1; b++) {
            memcpy(doc, json, n);
            doc[k] = bytes[b];
            lmc_tokenizer *t = NULL;
            lmc_status st = lmc_tokenizer_load_json(doc, n, NULL, &t);
            CHECKF(st == LMC_OK ? t != NULL : t == NULL && lmc_last_error()[0], "byte %zu = %02x: status %d", k,
                   (unsigned char)bytes[b], (int)st);
            lmc_tokenizer_free(t);
        }
    }
    free(doc);
}

/* The scanner's own view: ranges of the two sections and the entries. */
static void test_scan(void) {
    const char *json = "{\"model\": {\"vocab\": {\"a\": 0, \"b\\u0062\": 7}, \"merges\": [\"a bb\", [\"a\", \"b\\\"\"]]}}";
    tk_json_model m;
    lmc_status st = tk_json_scan(json, strlen(json), &m);
    CHECKF(st == LMC_OK, "%s", lmc_last_error());
    if (st != LMC_OK) return;
    CHECK(m.has_vocab && m.has_merges);
    CHECK(json[m.vocab_start] == '{' && json[m.vocab_end - 1] == '}' && m.vocab_end - m.vocab_start == 22);
    CHECK(json[m.merges_start] == '[' && json[m.merges_end - 1] == ']' && m.merges_end - m.merges_start == 22);
    CHECK(m.n_vocab == 2 && m.n_merges == 2);
    if (m.n_vocab == 2) {
        CHECK(m.vocab[1].len == 2 && !strcmp(m.vocab[1].key, "bb") && m.vocab[1].id == 7);
        CHECK(m.vocab[1].hash == tk_hash("bb", 2));
    }
    if (m.n_merges == 2) {
        CHECK(m.merges[0].ll == 1 && m.merges[0].rl == 2 && !memcmp(m.merges[0].r, "bb", 2));
        CHECK(m.merges[1].rl == 2 && !memcmp(m.merges[1].r, "b\"", 2) && m.merges[1].hr == tk_hash("b\"", 2));
    }
    tk_json_model_free(&m);
    /* No model, or a model without vocab: nothing found, no error. */
    CHECK(tk_json_scan("{\"a\": {\"vocab\": {}}}", 20, &m) == LMC_OK && !m.has_vocab && !m.has_merges);
    tk_json_model_free(&m);
    CHECK(tk_json_scan("[{\"model\": {\"vocab\": {}}}]", 26, &m) == LMC_OK && !m.has_vocab);
    tk_json_model_free(&m);
}

/* The two-thread scan (tokenizer_json.c: a helper thread reads the array
 * after the first `"merges": [` while this one reads the rest), forced on
 * for these small documents: the helper's array is taken only when it is
 * model.merges, and then the vocabulary's tables come with the scan. */
static void test_helper(void) {
    static const char *tail = "\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    static const struct { const char *head, *tail; bool taken; } cases[] = {
        {"{", NULL, true},
        /* A "merges" array elsewhere comes first: valid merges, or not. */
        {"{\"x\": {\"merges\": [\"b a\", \"a a\"]}, ", NULL, false},
        {"{\"x\": {\"merges\": [7, {}]}, ", NULL, false},
        /* A key that ends in merges" (an escaped quote before it). */
        {"{\"\\\"merges\": [\"b a\"], ", NULL, false},
        /* Taken, but model.vocab comes after it: no tables, no rest from the scan. */
        {"{", "\"model\": {\"merges\": [\"a b\"], \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}}}", false},
    };
    char doc[256];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(doc, sizeof doc, "%s%s", cases[c].head, cases[c].tail ? cases[c].tail : tail);
        tk_json_model m;
        lmc_status st = tk_json_scan(doc, strlen(doc), &m);
        CHECKF(st == LMC_OK, "%s: %s", doc, lmc_last_error());
        if (st != LMC_OK) continue;
        CHECKF(m.n_merges == 1 && m.merges[0].ll == 1 && m.merges[0].l[0] == 'a' && m.merges[0].r[0] == 'b', "%s", doc);
        CHECKF(m.tables.built == cases[c].taken, "%s: tables %d", doc, (int)m.tables.built);
        if (m.tables.built) CHECK(m.tables.map.n == 3 && m.tables.n_ids == 3 && !strcmp(m.tables.id_str[2], "ab"));
        /* The rest as the helper parsed it: the model's sections cut out. */
        CHECKF((m.rest != NULL) == cases[c].taken, "%s: rest %p", doc, (void *)m.rest);
        if (m.rest) {
            const cJSON *model = cJSON_GetObjectItemCaseSensitive(m.rest, "model");
            const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
            CHECK(cJSON_IsObject(vocab) && !vocab->child && cJSON_IsArray(merges) && !merges->child);
        }
        tk_json_model_free(&m);
        lmc_tokenizer *t = load(doc);
        check_ids(t, "abba", (int32_t[]){2, 1, 0}, 3);
        lmc_tokenizer_free(t);
    }
    /* model.merges ends the document early: the helper's error is this thread's. */
    check_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a a\", ", LMC_ERR_FORMAT, "at byte 48: unexpected end of input");
    check_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a a\", [\"a\"]]}}", LMC_ERR_FORMAT,
                "merge 1 (byte 48) is not two tokens");
}

/* A list long enough to be resolved in two parts on two threads: an
 * unknown token is reported for the first merge that has one, whichever
 * part it is in, and a good list loads the same for any thread count. */
static void test_long_merges(void) {
    enum { N = 70000 };
    char *doc = malloc(N * 8 + 256);
    if (!doc) return;
    const size_t bad[][2] = {{N, N}, {50000, N}, {20000, 50000}, {60000, 34999}};
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        size_t at = (size_t)sprintf(doc, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"ba\": 3}, \"merges\": [");
        for (size_t i = 0; i < N; i++) {
            const char *m = i == bad[c][0] ? "a x" : i == bad[c][1] ? "y b" : i % 2 ? "b a" : "a b";
            at += (size_t)sprintf(doc + at, "%s\"%s\"", i ? "," : "", m);
        }
        strcpy(doc + at, "]}}");
        for (int threads = 1; threads <= 2; threads++) {
            lmc_set_num_threads(threads);
            lmc_tokenizer *t = NULL;
            lmc_status st = lmc_tokenizer_load_json(doc, strlen(doc), NULL, &t);
            size_t first = bad[c][0] < bad[c][1] ? bad[c][0] : bad[c][1];
            if (first == N) {
                CHECKF(st == LMC_OK, "%s", lmc_last_error());
                check_ids(t, "abba", (int32_t[]){2, 3}, 2);
            } else {
                char want[64];
                snprintf(want, sizeof want, "merge %zu uses '%s'", first, first == bad[c][0] ? "x" : "y");
                CHECKF(st == LMC_ERR_FORMAT && strstr(lmc_last_error(), want), "%d threads: \"%s\" lacks \"%s\"", threads, lmc_last_error(), want);
            }
            lmc_tokenizer_free(t);
        }
    }
    free(doc);
}

int main(void) {
    /* The second pass sends every document through the two-thread scan. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass) {
            tk_json_helper_min = 0;
            CHECK(lmc_set_num_threads(2) == LMC_OK);
        }
        RUN(test_escapes);
        RUN(test_layout);
        RUN(test_syntax_errors);
        RUN(test_shape_errors);
        RUN(test_truncations);
        RUN(test_scan);
    }
    RUN(test_helper);
    RUN(test_long_merges);
    return TEST_REPORT();
}
