/* libFuzzer target for encoding and decoding with the three real tokenizers
 * (Qwen 3, Llama 3.1, Gemma 3; scripts/fetch_tokenizers.sh puts them in
 * .cache/tokenizers, or $LMC_FUZZ_TOKENIZERS names that folder). Prompts and
 * replies are any bytes a user or a model produces.
 *
 * Input: a byte choosing the tokenizer and the flags, then text. Checked:
 *   - encoding gives ids inside the vocabulary, or an error with a message;
 *   - without special tokens added, the tokens' bytes add up to the text,
 *     invalid UTF-8 replaced by U+FFFD as the header says and, for Qwen,
 *     in NFC, its normalizer (lmc_tokenizer_token_bytes' promise for these
 *     tokenizers; Gemma's
 *     only for text without U+2581, which it writes for a space and
 *     decodes as one, as Hugging Face's does);
 *   - the streaming detokeniser fed those ids one at a time gives, with its
 *     flush, exactly what lmc_tokenizer_decode gives for all of them, and no
 *     piece ends in half a UTF-8 character;
 *   - the same for the input read as arbitrary ids (3 bytes each, so ids past
 *     the vocabulary and special tokens in any order come up too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/utf8.h"
#include "lmc/tokenizer.h"
#include "text/unicode.h"
#include "fuzz.h"

static const char *const k_names[] = {"qwen3", "llama3_1", "gemma3"};
enum { N_TOK = 3 };
static lmc_tokenizer *g_tok[N_TOK];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("LMC_FUZZ_TOKENIZERS");
    if (!dir) dir = ".cache/tokenizers";
    for (int i = 0; i < N_TOK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, k_names[i]);
        if (lmc_tokenizer_load(path, &g_tok[i]) != LMC_OK) {
            fprintf(stderr, "fuzz_tokenize: %s (set LMC_FUZZ_TOKENIZERS to the folder scripts/fetch_tokenizers.sh fills)\n",
                    lmc_last_error());
            exit(1);
        }
    }
    return 0;
}

/* Whether s[0, n) ends inside a UTF-8 character (a lead byte whose
 * continuation bytes are not all there). */
static bool ends_mid_char(const char *s, size_t n) {
    size_t i = n, cont = 0;
    while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, cont++;
    if (i == 0) return false;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 && lead < 0xF8 ? 3 : lead >= 0xE0 && lead < 0xF0 ? 2 : lead >= 0xC0 && lead < 0xE0 ? 1 : 0;
    return need > cont;
}

/* The detokeniser's pieces for ids, joined, equal decode(ids). */
static void check_stream(const lmc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special) {
    char *whole;
    size_t whole_n;
    REQUIRE(lmc_tokenizer_decode(tok, ids, n, skip_special, &whole, &whole_n) == LMC_OK);
    lmc_detokenizer *d;
    REQUIRE(lmc_detokenizer_create(tok, skip_special, &d) == LMC_OK);
    char *joined = malloc(whole_n + 1);
    size_t at = 0;
    REQUIRE(joined != NULL);
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t len;
        if (i < n) REQUIRE(lmc_detokenizer_feed(d, ids[i], &piece, &len) == LMC_OK);
        else REQUIRE(lmc_detokenizer_flush(d, &piece, &len) == LMC_OK);
        REQUIRE(at + len <= whole_n);
        if (i < n) REQUIRE(!ends_mid_char(piece, len));
        memcpy(joined + at, piece, len);
        at += len;
    }
    REQUIRE(at == whole_n && memcmp(joined, whole, whole_n) == 0);
    free(joined);
    lmc_detokenizer_free(d);
    lmc_tokenizer_free_text(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const lmc_tokenizer *tok = g_tok[data[0] % N_TOK];
    const bool add_special = data[0] & 8, skip_special = data[0] & 16;
    const char *text = (const char *)data + 1;
    const size_t n = size - 1;
    const size_t vocab = lmc_tokenizer_vocab_size(tok);

    int32_t *ids = NULL;
    size_t n_ids = 0;
    lmc_status s = lmc_tokenizer_encode(tok, text, n, add_special, &ids, &n_ids);
    if (s != LMC_OK) {
        REQUIRE(s == LMC_ERR_INVALID_ARGUMENT && lmc_last_error()[0] != 0);
    } else {
        for (size_t i = 0; i < n_ids; i++) REQUIRE(ids[i] >= 0 && (size_t)ids[i] < vocab);
        if (!add_special && (data[0] % N_TOK != 2 || !memmem(text, n, "\xe2\x96\x81", 3))) {
            const char *want = text;
            size_t want_n = n;
            char *fixed = NULL;
            if (!lmc_utf8_valid(text, n, NULL)) {
                fixed = lmc_utf8_lossy(text, n, &want_n);
                REQUIRE(fixed != NULL);
                want = fixed;
            }
            if (data[0] % N_TOK == 0) { /* Qwen's normalizer: NFC */
                utf8proc_uint8_t *nfc = NULL;
                utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)want, (utf8proc_ssize_t)want_n, &nfc,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                REQUIRE(r >= 0);
                free(fixed);
                want = fixed = (char *)nfc;
                want_n = (size_t)r;
            }
            size_t at = 0;
            for (size_t i = 0; i < n_ids; i++) {
                char *b;
                size_t bl;
                REQUIRE(lmc_tokenizer_token_bytes(tok, ids[i], &b, &bl) == LMC_OK);
                REQUIRE(at + bl <= want_n && memcmp(want + at, b, bl) == 0);
                at += bl;
                lmc_tokenizer_free_text(b);
            }
            REQUIRE(at == want_n);
            free(fixed);
        }
        check_stream(tok, ids, n_ids, skip_special);
        lmc_tokenizer_free_ids(ids);
    }

    /* the bytes as ids: 3 bytes each, up to a little past the vocabulary */
    size_t m = n / 3;
    int32_t *raw = malloc((m ? m : 1) * sizeof *raw);
    REQUIRE(raw != NULL);
    for (size_t i = 0; i < m; i++) {
        uint32_t v = (uint32_t)data[1 + 3 * i] | (uint32_t)data[2 + 3 * i] << 8 | (uint32_t)data[3 + 3 * i] << 16;
        raw[i] = (int32_t)(v % (vocab + 16));
    }
    check_stream(tok, raw, m, skip_special);
    free(raw);
    return 0;
}
