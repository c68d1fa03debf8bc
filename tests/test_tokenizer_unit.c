/* Unit tests of the tokenizer components on small hand-written tokenizer.json
 * snippets: normalizers, pre-tokenizers, BPE, added tokens, post-processors,
 * decoders, UTF-8 repair, clean-up and the streaming detokeniser. Expected
 * values follow the Hugging Face tokenizers library's documented examples
 * and source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmc/tokenizer.h"
#include "test_util.h"
#include "text/tokenizer_internal.h"
#include "text/unicode.h"

/* ---- helpers ---- */

/* Joins pieces as "a|b|c". */
static char *joined(const tk_pieces *p) {
    tk_buf b = {0};
    for (size_t i = 0; i < p->n; i++) {
        if (i) tk_buf_append(&b, "|", 1);
        tk_buf_append(&b, p->text.p + p->v[i].off, p->v[i].len);
    }
    tk_buf_append(&b, "", 0);
    return b.p;
}

static void check_norm(const char *json, const char *in, const char *want) {
    cJSON *j = cJSON_Parse(json);
    tk_normalizer nz;
    lmc_status st = tk_normalizer_parse(j, &nz);
    CHECKF(st == LMC_OK, "%s: %s", json, lmc_last_error());
    if (st == LMC_OK) {
        tk_buf out = {0};
        CHECK(tk_normalize(&nz, in, strlen(in), &out) == LMC_OK);
        tk_buf_append(&out, "", 0);
        CHECKF(!strcmp(out.p, want), "%s on \"%s\": got \"%s\", want \"%s\"", json, in, out.p, want);
        tk_buf_free(&out);
    }
    tk_normalizer_free(&nz);
    cJSON_Delete(j);
}

static void check_pre_origin(const char *json, const char *in, bool origin, const char *want) {
    cJSON *j = cJSON_Parse(json);
    tk_pretokenizer pt;
    lmc_status st = tk_pretokenizer_parse(j, &pt);
    CHECKF(st == LMC_OK, "%s: %s", json, lmc_last_error());
    if (st == LMC_OK) {
        tk_pieces p = {0}, scratch = {0};
        tk_pieces_add(&p, in, strlen(in), origin);
        CHECK(tk_pretokenize(&pt, &p, &scratch) == LMC_OK);
        char *got = joined(&p);
        CHECKF(!strcmp(got, want), "%s on \"%s\": got \"%s\", want \"%s\"", json, in, got, want);
        free(got);
        tk_pieces_free(&p);
        tk_pieces_free(&scratch);
    }
    tk_pretokenizer_free(&pt);
    cJSON_Delete(j);
}

static void check_pre(const char *json, const char *in, const char *want) { check_pre_origin(json, in, true, want); }

/* Decodes tokens given as "a|b|c". */
static void check_dec(const char *json, const char *tokens, const char *want) {
    cJSON *j = cJSON_Parse(json);
    tk_decoder d;
    lmc_status st = tk_decoder_parse(j, &d);
    CHECKF(st == LMC_OK, "%s: %s", json, lmc_last_error());
    if (st == LMC_OK) {
        tk_pieces p = {0}, scratch = {0};
        for (const char *s = tokens;;) {
            const char *bar = strchr(s, '|');
            size_t n = bar ? (size_t)(bar - s) : strlen(s);
            tk_pieces_add(&p, s, n, false);
            if (!bar) break;
            s = bar + 1;
        }
        CHECK(tk_decode_chain(&d, &p, &scratch, false) == LMC_OK);
        char *got = joined(&p);
        CHECKF(!strcmp(got, want), "%s on \"%s\": got \"%s\", want \"%s\"", json, tokens, got, want);
        free(got);
        tk_pieces_free(&p);
        tk_pieces_free(&scratch);
    }
    tk_decoder_free(&d);
    cJSON_Delete(j);
}

static lmc_tokenizer *load(const char *json, const char *config) {
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load_json(json, strlen(json), config, &t);
    CHECKF(st == LMC_OK, "load failed: %s", lmc_last_error());
    return t;
}

/* Encodes and compares with a list of ids ending in -1. */
static void check_enc(const lmc_tokenizer *t, const char *text, bool special, const int32_t *want) {
    if (!t) return;
    int32_t *ids;
    size_t n, nw = 0;
    while (want[nw] >= 0) nw++;
    CHECK(lmc_tokenizer_encode(t, text, strlen(text), special, &ids, &n) == LMC_OK);
    bool same = n == nw && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    CHECKF(same, "encode \"%s\": got %zu ids (first %d), want %zu", text, n, n ? ids[0] : -1, nw);
    if (!same) {
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    lmc_tokenizer_free_ids(ids);
}

static void check_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want) {
    if (!t) return;
    char *text;
    CHECK(lmc_tokenizer_decode(t, ids, n, skip, &text, NULL) == LMC_OK);
    CHECKF(text && !strcmp(text, want), "decode: got \"%s\", want \"%s\"", text, want);
    lmc_tokenizer_free_text(text);
}

static void check_load_error(const char *json, lmc_status want_status, const char *want_msg) {
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load_json(json, strlen(json), NULL, &t);
    CHECKF(st == want_status, "status %d (%s), want %d", st, lmc_last_error(), want_status);
    CHECKF(strstr(lmc_last_error(), want_msg) != NULL, "message \"%s\" lacks \"%s\"", lmc_last_error(), want_msg);
    CHECK(t == NULL);
    lmc_tokenizer_free(t);
}

#define VOCAB_ABC "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"<unk>\": 6}"

/* ---- tests ---- */

static void test_normalizers(void) {
    check_norm("{\"type\": \"Lowercase\"}", "HeLLo ÀÉ İ", "hello àé i\xCC\x87");
    check_norm("{\"type\": \"NFC\"}", "e\xCC\x81", "\xC3\xA9");
    check_norm("{\"type\": \"NFD\"}", "\xC3\xA9", "e\xCC\x81");
    check_norm("{\"type\": \"NFKC\"}", "\xEF\xAC\x81 \xEF\xBC\xA1", "fi A");
    check_norm("{\"type\": \"NFKD\"}", "\xC3\xA9\xEF\xAC\x81", "e\xCC\x81" "fi");
    check_norm("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}", "a b  c",
               "a\xE2\x96\x81" "b\xE2\x96\x81\xE2\x96\x81" "c");
    check_norm("{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \" \"}", "a \t\n b", "a b");
    check_norm("{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"}", "hi", "\xE2\x96\x81hi");
    check_norm("{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"}", "", "");
    check_norm("{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}", " \t a b \xE3\x80\x80", "a b");
    check_norm("{\"type\": \"Strip\", \"strip_left\": false, \"strip_right\": true}", "  a  ", "  a");
    check_norm("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Lowercase\"},"
               " {\"type\": \"Prepend\", \"prepend\": \"_\"}]}", "\xEF\xBC\xA1" "B", "_ab");
}

#define SPLIT(pat, beh, inv) "{\"type\": \"Split\", \"pattern\": " pat ", \"behavior\": \"" beh "\", \"invert\": " inv "}"

static void test_split_behaviors(void) {
    /* The examples of HF's SplitDelimiterBehavior documentation. */
    const char *in = "the-final--countdown";
    check_pre(SPLIT("{\"String\": \"-\"}", "Removed", "false"), in, "the|final|countdown");
    check_pre(SPLIT("{\"String\": \"-\"}", "Isolated", "false"), in, "the|-|final|-|-|countdown");
    check_pre(SPLIT("{\"String\": \"-\"}", "MergedWithPrevious", "false"), in, "the-|final-|-|countdown");
    check_pre(SPLIT("{\"String\": \"-\"}", "MergedWithNext", "false"), in, "the|-final|-|-countdown");
    check_pre(SPLIT("{\"String\": \"-\"}", "Contiguous", "false"), in, "the|-|final|--|countdown");
    check_pre(SPLIT("{\"Regex\": \"-+\"}", "Isolated", "false"), in, "the|-|final|--|countdown");
    /* invert: the pattern marks what to keep. */
    check_pre(SPLIT("{\"Regex\": \"[a-z]+\"}", "Removed", "true"), in, "the|final|countdown");
    check_pre(SPLIT("{\"String\": \"-\"}", "Removed", "true"), in, "-|-|-");
    /* Gemma 3's pre-tokenizer: split after each space. */
    check_pre(SPLIT("{\"String\": \" \"}", "MergedWithPrevious", "false"), "a  b c ", "a | |b |c ");
    /* Llama 3's regex. */
    check_pre(SPLIT("{\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}",
                    "Isolated", "false"),
              "I'M here  12345 ok!!\n\n  x", "I|'M| here| | |123|45| ok|!!\n\n| | x");
    /* \s follows Oniguruma: U+180E is not white space, U+3000 is. */
    check_pre(SPLIT("{\"Regex\": \"\\\\s+\"}", "Removed", "false"), "a\xE1\xA0\x8E" "b\xE3\x80\x80" "c", "a\xE1\xA0\x8E" "b|c");
}

static void test_pretokenizers(void) {
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}";
    check_pre(bl, "Hello my friend, how's it?", "\xC4\xA0Hello|\xC4\xA0my|\xC4\xA0" "friend|,|\xC4\xA0how|'s|\xC4\xA0it|?");
    check_pre("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}", "a b\n\xC3\xA9",
              "a\xC4\xA0" "b\xC4\x8A\xC3\x83\xC2\xA9");
    const char *ms = "{\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"%s\", \"split\": %s}";
    char buf[256];
    snprintf(buf, sizeof buf, ms, "always", "true");
    check_pre(buf, "Hey friend", "\xE2\x96\x81Hey|\xE2\x96\x81" "friend");
    check_pre(buf, " Hey", "\xE2\x96\x81Hey");
    snprintf(buf, sizeof buf, ms, "always", "false");
    check_pre(buf, "Hey  friend", "\xE2\x96\x81Hey\xE2\x96\x81\xE2\x96\x81" "friend");
    snprintf(buf, sizeof buf, ms, "never", "true");
    check_pre(buf, "Hey friend", "Hey|\xE2\x96\x81" "friend");
    snprintf(buf, sizeof buf, ms, "first", "true");
    check_pre_origin(buf, "Hey", true, "\xE2\x96\x81Hey");
    check_pre_origin(buf, "Hey", false, "Hey");
    check_pre("{\"type\": \"Digits\", \"individual_digits\": true}", "abc123d", "abc|1|2|3|d");
    check_pre("{\"type\": \"Digits\", \"individual_digits\": false}", "abc123d4", "abc|123|d|4");
    check_pre("{\"type\": \"Punctuation\"}", "Hey, you!?", "Hey|,| you|!|?");
    check_pre("{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"}", "Hey, you!?", "Hey|,| you|!?");
    check_pre("{\"type\": \"Whitespace\"}", "Hey you, there!", "Hey|you|,|there|!");
    /* Rust's \w: superscript two (No) is not a word character, a combining mark is. */
    check_pre("{\"type\": \"Whitespace\"}", "x\xC2\xB2 e\xCC\x81_1", "x|\xC2\xB2|e\xCC\x81_1");
    check_pre("{\"type\": \"WhitespaceSplit\"}", "Hey  you,there\n", "Hey|you,there");
    check_pre("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"WhitespaceSplit\"}, {\"type\": \"Digits\", \"individual_digits\": true}]}",
              "ab12 c3", "ab|1|2|c|3");
}

static void test_decoders(void) {
    check_dec("{\"type\": \"ByteFallback\"}", "<0xE4>|<0xB8>|<0xAD>|a", "\xE4\xB8\xAD|a");
    check_dec("{\"type\": \"ByteFallback\"}", "<0xE4>|a|<0x41>", "\xEF\xBF\xBD|a|A");
    /* An incomplete run gives one U+FFFD per byte. */
    check_dec("{\"type\": \"ByteFallback\"}", "<0xE4>|<0xB8>", "\xEF\xBF\xBD|\xEF\xBF\xBD");
    check_dec("{\"type\": \"ByteFallback\"}", "<0xZZ>|<0x41", "<0xZZ>|<0x41");
    check_dec("{\"type\": \"Fuse\"}", "a|b|c", "abc");
    check_dec("{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"}", "\xE2\x96\x81" "a|b\xE2\x96\x81", " a|b ");
    check_dec("{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}", "  a| b |c", " a|b |c");
    check_dec("{\"type\": \"Strip\", \"content\": \" \", \"start\": 0, \"stop\": 2}", "a   |   ", "a | ");
    check_dec("{\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"always\"}",
              "\xE2\x96\x81Hey|\xE2\x96\x81" "friend", "Hey| friend");
    check_dec("{\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"never\"}",
              "\xE2\x96\x81Hey|\xE2\x96\x81" "friend", " Hey| friend");
    check_dec("{\"type\": \"ByteLevel\"}", "\xC4\xA0hello|\xC4\x8A|\xC3\xA4\xC2\xB8", " hello\n\xEF\xBF\xBD");
    /* A token with a character outside the byte alphabet keeps its own bytes. */
    check_dec("{\"type\": \"ByteLevel\"}", "<x>|\xE4\xB8\xAD|\xC4\xA0", "<x>\xE4\xB8\xAD ");
    check_dec("{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"},"
              " {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}",
              "\xE2\x96\x81Hi|<0xC3>|<0xA9>|\xE2\x96\x81x", "Hi\xC3\xA9 x");
}

/* Words cut before U+2581 ("\xE2\x96\x81" below) give the ids of the whole
 * word: never after a character that some token holds right before U+2581
 * ('a' and U+2581 here), where a merge may join the two sides. */
static void test_space_split(void) {
#define SP "\xE2\x96\x81"
    lmc_tokenizer *t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"" SP "\": 1, \"b\": 2, \"a" SP "\": 3,"
                            " \"" SP "b\": 4, \"" SP SP "\": 5, \"" SP SP "b\": 6}, \"merges\": [\"a " SP "\", \"" SP " b\", \"" SP " " SP "\","
                            " \"" SP SP " b\"]}}", NULL);
    check_enc(t, "a" SP "b", false, (int32_t[]){3, 2, -1}); /* cut after 'a', it would be 0, 4 */
    check_enc(t, "b" SP "b", false, (int32_t[]){2, 4, -1});
    check_enc(t, "b" SP SP "b", false, (int32_t[]){2, 1, 4, -1});
    check_enc(t, "b" SP "b" SP "a" SP "b" SP SP SP "b", false, (int32_t[]){2, 4, 1, 3, 2, 5, 4, -1});
    lmc_tokenizer_free(t);
#undef SP
}

static void test_bpe(void) {
    /* Merge order follows rank, not position. */
    char json[1024];
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [\"b c\", \"a b\", \"a bc\"]}}", VOCAB_ABC);
    lmc_tokenizer *t = load(json, NULL);
    check_enc(t, "abc", false, (int32_t[]){5, -1});
    check_enc(t, "ab", false, (int32_t[]){3, -1});
    check_enc(t, "cab", false, (int32_t[]){2, 3, -1});
    /* No unk token, no byte fallback: unknown characters vanish, as in HF
     * (and their neighbours then merge). */
    check_enc(t, "axb", false, (int32_t[]){3, -1});
    check_enc(t, "axc", false, (int32_t[]){0, 2, -1});
    lmc_tokenizer_free(t);

    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", %s, \"merges\": [[\"a\", \"b\"], [\"b\", \"c\"], [\"ab\", \"c\"]]}}", VOCAB_ABC);
    t = load(json, NULL);
    check_enc(t, "abc", false, (int32_t[]){5, -1});
    check_enc(t, "bcab", false, (int32_t[]){4, 3, -1});
    lmc_tokenizer_free(t);

    /* Equal ranks: leftmost first. */
    t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"aa\": 1}, \"merges\": [\"a a\"]}}", NULL);
    check_enc(t, "aaa", false, (int32_t[]){1, 0, -1});
    check_enc(t, "aaaa", false, (int32_t[]){1, 1, -1});
    lmc_tokenizer_free(t);

    /* unk, fused or not. */
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, %s, \"merges\": []}}", VOCAB_ABC);
    t = load(json, NULL);
    check_enc(t, "axyb", false, (int32_t[]){0, 6, 1, -1});
    lmc_tokenizer_free(t);
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": false, %s, \"merges\": []}}", VOCAB_ABC);
    t = load(json, NULL);
    check_enc(t, "axyb", false, (int32_t[]){0, 6, 6, 1, -1});
    lmc_tokenizer_free(t);

    /* Byte fallback. */
    t = load("{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0, \"<0xC3>\": 1, \"<0xA9>\": 2}, \"merges\": []}}", NULL);
    check_enc(t, "a\xC3\xA9" "a", false, (int32_t[]){0, 1, 2, 0, -1});
    lmc_tokenizer_free(t);

    /* ignore_merges: a word in the vocabulary is taken whole. */
    const char *im = "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"abc\": 3, \"ab\": 4}, \"merges\": [\"a b\"]}}";
    snprintf(json, sizeof json, im, "true");
    t = load(json, NULL);
    check_enc(t, "abc", false, (int32_t[]){3, -1});
    lmc_tokenizer_free(t);
    snprintf(json, sizeof json, im, "false");
    t = load(json, NULL);
    check_enc(t, "abc", false, (int32_t[]){4, 2, -1});
    lmc_tokenizer_free(t);

    /* continuing_subword_prefix and end_of_word_suffix. */
    t = load("{\"model\": {\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\", \"vocab\": {\"a\": 0, \"##b\": 1, \"ab\": 2, \"##c\": 3},"
             " \"merges\": [\"a ##b\"]}}", NULL);
    check_enc(t, "abc", false, (int32_t[]){2, 3, -1});
    lmc_tokenizer_free(t);
    t = load("{\"model\": {\"type\": \"BPE\", \"end_of_word_suffix\": \"</w>\", \"vocab\": {\"a\": 0, \"b</w>\": 1, \"ab</w>\": 2, \"b\": 3},"
             " \"merges\": [\"a b</w>\"]}}", NULL);
    check_enc(t, "ab", false, (int32_t[]){2, -1});
    check_enc(t, "bb", false, (int32_t[]){3, 1, -1});
    lmc_tokenizer_free(t);

    /* A long word (the merge loop with heap-allocated state). */
    t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"aa\": 1, \"aaaa\": 2}, \"merges\": [\"a a\", \"aa aa\"]}}", NULL);
    char *longw = malloc(1003);
    memset(longw, 'a', 1002);
    longw[1002] = 0;
    int32_t *ids;
    size_t n;
    CHECK(lmc_tokenizer_encode(t, longw, 1002, false, &ids, &n) == LMC_OK);
    CHECK(n == 251 && ids[0] == 2 && ids[249] == 2 && ids[250] == 1);
    lmc_tokenizer_free_ids(ids);
    free(longw);
    lmc_tokenizer_free(t);
}

#define ADDED(id, content, special, extra) \
    "{\"id\": " #id ", \"content\": \"" content "\", \"special\": " special ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false" extra "}"

static void test_added_tokens(void) {
    /* Leftmost-longest: "<a><b>" beats "<a>", both beat BPE. */
    const char *json =
        "{\"added_tokens\": [{\"id\": 10, \"content\": \"<a>\", \"special\": true},"
        " {\"id\": 11, \"content\": \"<a><b>\", \"special\": false, \"normalized\": false},"
        " {\"id\": 12, \"content\": \"ab\", \"special\": false, \"single_word\": true},"
        " {\"id\": 13, \"content\": \"[L]\", \"special\": true, \"lstrip\": true},"
        " {\"id\": 14, \"content\": \"[R]\", \"special\": true, \"rstrip\": true}],"
        " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"decoder\": {\"type\": \"Fuse\"},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"<\": 2, \">\": 3, \"x\": 4, \"[\": 5, \"]\": 6, \"L\": 7, \"R\": 8},"
        " \"merges\": []}}";
    lmc_tokenizer *t = load(json, NULL);
    check_enc(t, "x<a><b>x<a>x", false, (int32_t[]){4, 11, 4, 10, 4, -1});
    /* single_word: only "ab" standing alone. */
    check_enc(t, "ab xab ab", false, (int32_t[]){12, 4, 0, 1, 12, -1});
    /* lstrip takes the spaces before, rstrip the spaces after. */
    check_enc(t, "x  [L]x", false, (int32_t[]){4, 13, 4, -1});
    check_enc(t, "x[R]  x", false, (int32_t[]){4, 14, 4, -1});
    check_decode(t, (int32_t[]){4, 10, 11, 4}, 4, false, "x<a><a><b>x");
    check_decode(t, (int32_t[]){4, 10, 11, 4, 99, -5}, 6, true, "x<a><b>x");
    CHECK(lmc_tokenizer_token_to_id(t, "<a><b>") == 11);
    CHECK(lmc_tokenizer_token_to_id(t, "x") == 4);
    CHECK(lmc_tokenizer_token_to_id(t, "nope") == -1);
    CHECK(t && !strcmp(lmc_tokenizer_id_to_token(t, 13), "[L]"));
    CHECK(lmc_tokenizer_id_to_token(t, 9) == NULL && lmc_tokenizer_id_to_token(t, 15) == NULL);
    CHECK(lmc_tokenizer_vocab_size(t) == 15);
    CHECK(lmc_tokenizer_is_special(t, 10) && !lmc_tokenizer_is_special(t, 11));
    lmc_tokenizer_free(t);

    /* normalized added tokens match the normalized text. */
    json = "{\"added_tokens\": [{\"id\": 5, \"content\": \"hey\", \"special\": false, \"normalized\": true}],"
           " \"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"h\": 0, \"e\": 1, \"y\": 2, \"H\": 3},"
           " \"merges\": []}}";
    t = load(json, NULL);
    check_enc(t, "HEYhey", false, (int32_t[]){5, 5, -1});
    lmc_tokenizer_free(t);
}

static void test_post_processors(void) {
    const char *tpl =
        "{\"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\", \"trim_offsets\": false},"
        " {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
        " {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}],"
        " \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]},"
        " \"</s>\": {\"id\": \"</s>\", \"ids\": [2], \"tokens\": [\"</s>\"]}}}]},"
        " \"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    lmc_tokenizer *t = load(tpl, NULL);
    check_enc(t, "aa", true, (int32_t[]){1, 0, 0, 2, -1});
    check_enc(t, "aa", false, (int32_t[]){0, 0, -1});
    check_enc(t, "", true, (int32_t[]){1, 2, -1});
    check_decode(t, (int32_t[]){1, 0, 0, 2}, 4, false, "<s> a a </s>"); /* no decoder: tokens joined by spaces */
    check_decode(t, (int32_t[]){1, 0, 0, 2}, 4, true, "a a");
    lmc_tokenizer_free(t);
    t = load("{\"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]},"
             " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"[CLS]\": 1, \"[SEP]\": 2}, \"merges\": []}}", NULL);
    check_enc(t, "a", true, (int32_t[]){1, 0, 2, -1});
    lmc_tokenizer_free(t);
}

static void test_config(void) {
    const char *json = "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true},"
                       " {\"id\": 3, \"content\": \"<pad>\", \"special\": true}, {\"id\": 4, \"content\": \"<mask>\", \"special\": false}],"
                       " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    const char *cfg = "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}, \"pad_token\": \"<pad>\","
                      " \"chat_template\": \"{{ messages }}\", \"tokenizer_class\": \"GemmaTokenizerFast\"}";
    lmc_tokenizer *t = load(json, cfg);
    if (!t) return;
    CHECK(lmc_tokenizer_bos(t) == 1 && lmc_tokenizer_pad(t) == 3);
    const int32_t *eos;
    CHECK(lmc_tokenizer_eos(t, &eos) == 1 && eos[0] == 2);
    CHECK(lmc_tokenizer_is_eos(t, 2) && !lmc_tokenizer_is_eos(t, 1));
    CHECK_STR(lmc_tokenizer_chat_template(t), "{{ messages }}");
    CHECK_STR(lmc_tokenizer_bos_token(t), "<s>");
    CHECK_STR(lmc_tokenizer_eos_token(t), "</s>");
    CHECK_STR(lmc_tokenizer_pad_token(t), "<pad>");
    /* GemmaTokenizer's default mask_token makes <mask> special for skipping. */
    CHECK(lmc_tokenizer_is_special(t, 4));
    lmc_tokenizer_free(t);
    t = load(json, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    CHECK_STR(lmc_tokenizer_chat_template(t), "D");
    CHECK(lmc_tokenizer_bos(t) == -1 && lmc_tokenizer_eos(t, NULL) == 0 && !lmc_tokenizer_is_special(t, 4));
    lmc_tokenizer_free(t);
}

/* A folder with every config file: EOS ids come from generation_config.json,
 * then config.json (and its text_config), then tokenizer_config.json;
 * chat_template.jinja wins over tokenizer_config.json's template. */
static void test_config_files(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizer/unit/with_configs", LMC_TEST_DATA);
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load(dir, &t);
    CHECKF(st == LMC_OK, "%s", lmc_last_error());
    if (st != LMC_OK) return;
    const int32_t *eos;
    size_t n = lmc_tokenizer_eos(t, &eos);
    CHECKF(n == 4 && eos[0] == 5 && eos[1] == 7 && eos[2] == 4 && eos[3] == 9, "n=%zu", n);
    CHECK(lmc_tokenizer_bos(t) == 3 && lmc_tokenizer_pad(t) == 1);
    CHECK_STR(lmc_tokenizer_chat_template(t), "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
    check_enc(t, "ab a", true, (int32_t[]){0, 1, 2, 0, -1});
    check_decode(t, (int32_t[]){3, 0, 2, 1, 5}, 5, true, "a b");
    lmc_tokenizer_free(t);
}

/* config.json's bos_token_id and pad_token_id count only when they name a
 * token of the vocabulary (the folder's tokenizer_config.json names none). */
static void test_config_ids_in_vocab(void) {
    char src[4096], dir[] = "/tmp/lmc-tok-ids-XXXXXX", path[4200];
    snprintf(src, sizeof src, "%s/tokenizer/unit/with_configs/tokenizer.json", LMC_TEST_DATA);
    CHECK(mkdtemp(dir) != NULL);
    size_t len = 0;
    char *json = read_file_all(src, &len);
    CHECK(json && len > 0);
    static const char *configs[][2] = {
        {"{\"bos_token_id\": 1e12, \"pad_token_id\": 2.5}", "stray values"},
        {"{\"bos_token_id\": 100000, \"pad_token_id\": -1}", "past the vocabulary"},
        {"{\"bos_token_id\": 3, \"pad_token_id\": 1}", "tokens"},
    };
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "config.json"};
    for (int i = 0; i < 3 && json; i++) {
        const char *texts[] = {json, "{}", configs[i][0]};
        size_t lens[] = {len, 2, strlen(configs[i][0])};
        for (int j = 0; j < 3; j++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[j]);
            FILE *o = fopen(path, "wb");
            CHECK(o && fwrite(texts[j], 1, lens[j], o) == lens[j]);
            if (o) fclose(o);
        }
        lmc_tokenizer *t = NULL;
        CHECKF(lmc_tokenizer_load(dir, &t) == LMC_OK, "%s", lmc_last_error());
        bool ok = i < 2 ? lmc_tokenizer_bos(t) == -1 && lmc_tokenizer_pad(t) == -1
                        : lmc_tokenizer_bos(t) == 3 && lmc_tokenizer_pad(t) == 1;
        CHECKF(ok, "%s: bos %d pad %d", configs[i][1], lmc_tokenizer_bos(t), lmc_tokenizer_pad(t));
        lmc_tokenizer_free(t);
    }
    free(json);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_errors(void) {
    check_load_error("{\"model\": ", LMC_ERR_FORMAT, "tokenizer.json: invalid JSON");
    check_load_error("[1, 2]", LMC_ERR_FORMAT, "not a JSON object");
    check_load_error("{}", LMC_ERR_FORMAT, "missing 'model'");
    check_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", LMC_ERR_UNSUPPORTED, "unsupported model type 'Unigram'");
    check_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", LMC_ERR_UNSUPPORTED, "unsupported model type 'WordPiece'");
#define M "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}"
    check_load_error("{" M ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}", LMC_ERR_UNSUPPORTED,
                     "unsupported pre_tokenizer type 'BertPreTokenizer'");
    check_load_error("{" M ", \"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}}", LMC_ERR_UNSUPPORTED,
                     "unsupported normalizer type 'Precompiled'");
    check_load_error("{" M ", \"decoder\": {\"type\": \"WordPiece\"}}", LMC_ERR_UNSUPPORTED, "unsupported decoder type 'WordPiece'");
    check_load_error("{" M ", \"post_processor\": {\"type\": \"Magic\"}}", LMC_ERR_UNSUPPORTED, "unsupported post_processor type 'Magic'");
    check_load_error("{" M ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
                     LMC_ERR_FORMAT, "invalid regex '('");
    check_load_error("{" M ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"x\"}, \"behavior\": \"Sideways\"}}",
                     LMC_ERR_UNSUPPORTED, "unsupported split behavior 'Sideways'");
    check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", LMC_ERR_FORMAT,
                     "merge 0 uses 'b', which is not in the vocabulary");
    check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]}}", LMC_ERR_FORMAT,
                     "merge 0 gives 'aa', which is not in the vocabulary");
    check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}", LMC_ERR_FORMAT, "is not two tokens");
    check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", LMC_ERR_FORMAT, "vocab entry 'a'");
    check_load_error("{" M ", \"added_tokens\": [{\"content\": \"x\"}]}", LMC_ERR_FORMAT, "added token 0 needs an 'id'");
    /* A Sequence item that fails halfway frees what it had parsed (the sanitizer build sees leaks). */
    check_load_error("{" M ", \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}}]}}",
                     LMC_ERR_FORMAT, "Replace decoder without 'content'");
    check_load_error("{" M ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}}]}}",
                     LMC_ERR_FORMAT, "Replace normalizer without a string 'content'");
    check_load_error("{" M ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, \"behavior\": \"Sideways\"}]}}",
                     LMC_ERR_UNSUPPORTED, "unsupported split behavior 'Sideways'");
#undef M
    lmc_tokenizer *t = NULL;
    CHECK(lmc_tokenizer_load("/nonexistent/dir", &t) == LMC_ERR_IO && t == NULL);
    CHECK(strstr(lmc_last_error(), "/nonexistent/dir/tokenizer.json") != NULL);
    CHECK(lmc_tokenizer_load_file("/nonexistent/tokenizer.json", &t) == LMC_ERR_IO);
    CHECK(lmc_tokenizer_load(NULL, &t) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_tokenizer_encode(NULL, "a", 1, false, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    /* The whole pipeline in a unit-test folder: bad config JSON names its file. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizer/unit/bad_config", LMC_TEST_DATA);
    CHECK(lmc_tokenizer_load(dir, &t) == LMC_ERR_FORMAT);
    CHECKF(strstr(lmc_last_error(), "tokenizer_config.json: invalid JSON") != NULL, "%s", lmc_last_error());
    snprintf(dir, sizeof dir, "%s/tokenizer/unit/unknown_pretokenizer", LMC_TEST_DATA);
    CHECK(lmc_tokenizer_load(dir, &t) == LMC_ERR_UNSUPPORTED);
    CHECKF(strstr(lmc_last_error(), "tokenizer.json: unsupported pre_tokenizer type 'UnicodeScripts'") != NULL, "%s", lmc_last_error());
}

static void test_utf8(void) {
    struct { const char *in; size_t n; const char *want; } cases[] = {
        {"a\xFF" "b", 3, "a\xEF\xBF\xBD" "b"},
        {"\xE4\xB8", 2, "\xEF\xBF\xBD"},                           /* truncated: one U+FFFD */
        {"\xF0\x80" "a", 3, "\xEF\xBF\xBD\xEF\xBF\xBD" "a"},         /* F0 80 is not a prefix of a valid sequence */
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong */
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"ok\xC3\xA9", 4, "ok\xC3\xA9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *s = lmc_utf8_lossy(cases[i].in, cases[i].n, &n);
        CHECKF(s && !strcmp(s, cases[i].want), "case %zu", i);
        free(s);
    }
    /* Encoding replaces invalid input the same way before tokenising. */
    lmc_tokenizer *t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xEF\xBF\xBD\": 1, \"b\": 2}, \"merges\": []}}", NULL);
    check_enc(t, "a\xFF\xFE" "b\xE4\xB8", false, (int32_t[]){0, 1, 1, 2, 1, -1});
    lmc_tokenizer_free(t);
}

static void test_cleanup(void) {
    /* Expected values from Python str.replace in the same order. */
    struct { const char *in, *want; } cases[] = {
        {"a . b ? c ! d , e ' f don 't I 'm it 's we 've they 're", "a. b? c! d, e'f don 't I'm it's we've they're"},
        {"do n't", "don't"},
        {"  .", " ."},
        {" ' ' ' .", "'' '."},
        {"x ' y", "x'y"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tk_buf b = {0};
        tk_buf_append(&b, cases[i].in, strlen(cases[i].in));
        tk_cleanup_spaces(&b);
        CHECKF(!strcmp(b.p, cases[i].want), "cleanup \"%s\": got \"%s\", want \"%s\"", cases[i].in, b.p, cases[i].want);
        tk_buf_free(&b);
    }
}

/* Streaming with clean-up forced on: random token sequences rich in the
 * characters of the clean-up patterns, every prefix flushed. */
static void test_stream_cleanup(void) {
    const char *json = "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {"
                       "\" \": 0, \"'\": 1, \".\": 2, \"n\": 3, \"t\": 4, \"s\": 5, \"a\": 6, \"x \": 7, \"?\": 8, \"ve\": 9, \"re\": 10,"
                       " \"m\": 11, \" '\": 12, \"n'\": 13, \"e\": 14, \"\xC3\xA9\": 15, \",\": 16}, \"merges\": []}}";
    const char *cfg = "{\"clean_up_tokenization_spaces\": true, \"clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output\": true}";
    lmc_tokenizer *t = load(json, cfg);
    if (!t) return;
    check_decode(t, (int32_t[]){6, 0, 2, 0, 13, 4}, 6, false, "a.n't");
    unsigned seed = 12345;
    int bad = 0;
    for (int round = 0; round < 300 && !bad; round++) {
        int32_t ids[24];
        size_t n = 1 + (size_t)(round % 24);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            ids[i] = (int32_t)((seed >> 16) % 17);
        }
        for (size_t k = 1; k <= n; k++) {
            char *want;
            size_t wl;
            lmc_tokenizer_decode(t, ids, k, false, &want, &wl);
            lmc_detokenizer *d;
            lmc_detokenizer_create(t, false, &d);
            tk_buf got = {0};
            const char *piece;
            size_t pl;
            for (size_t i = 0; i < k; i++) {
                lmc_detokenizer_feed(d, ids[i], &piece, &pl);
                tk_buf_append(&got, piece, pl);
                /* Whatever was emitted stays a prefix of the final text. */
            }
            lmc_detokenizer_flush(d, &piece, &pl);
            tk_buf_append(&got, piece, pl);
            if (got.len != wl || memcmp(got.p, want, wl)) {
                bad++;
                CHECKF(false, "stream \"%s\" != decode \"%s\"", got.p, want);
            }
            tk_buf_free(&got);
            lmc_detokenizer_free(d);
            lmc_tokenizer_free_text(want);
        }
    }
    CHECK(bad == 0);
    lmc_tokenizer_free(t);
}

int main(void) {
    RUN(test_normalizers);
    RUN(test_split_behaviors);
    RUN(test_pretokenizers);
    RUN(test_decoders);
    RUN(test_bpe);
    RUN(test_space_split);
    RUN(test_added_tokens);
    RUN(test_post_processors);
    RUN(test_config);
    RUN(test_config_files);
    RUN(test_config_ids_in_vocab);
    RUN(test_errors);
    RUN(test_utf8);
    RUN(test_cleanup);
    RUN(test_stream_cleanup);
    return TEST_REPORT();
}
