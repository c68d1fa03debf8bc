/* The real tokenizer files of Gemma 3, Llama 3.1 and Qwen 3 (fetched into
 * .cache/tokenizers by scripts/fetch_tokenizers.sh): known encodings (ids
 * checked against the Hugging Face tokenizers library and looked up in the
 * vocabularies), special tokens from the configs, decode round trips,
 * streaming at every prefix, invalid UTF-8, concurrent encoding and the CLI. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "test_util.h"

static lmc_tokenizer *TOK[3];
static const char *NAMES[3] = {"gemma3", "llama3_1", "qwen3"};

static bool ids_are(const lmc_tokenizer *t, const char *text, bool special, const int32_t *want, size_t nw) {
    int32_t *ids;
    size_t n;
    if (lmc_tokenizer_encode(t, text, strlen(text), special, &ids, &n) != LMC_OK) return false;
    bool same = n == nw && !memcmp(ids, want, n * sizeof *ids);
    if (!same) {
        fprintf(stderr, "  \"%s\" gave", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    lmc_tokenizer_free_ids(ids);
    return same;
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

static void test_known_encodings(void) {
    lmc_tokenizer *g = TOK[0], *l = TOK[1], *q = TOK[2];
    /* "Hello world": BOS + "Hello" + the space-marked "world". */
    CHECK(ids_are(g, "Hello world", true, IDS(2, 9259, 1902)));
    CHECK_STR(lmc_tokenizer_id_to_token(g, 9259), "Hello");
    CHECK_STR(lmc_tokenizer_id_to_token(g, 1902), "\xE2\x96\x81world");
    CHECK(ids_are(l, "Hello world", true, IDS(128000, 9906, 1917)));
    CHECK_STR(lmc_tokenizer_id_to_token(l, 1917), "\xC4\xA0world");
    CHECK(ids_are(q, "Hello world", true, IDS(9707, 1879))); /* Qwen adds no BOS */
    CHECK(ids_are(g, "Hello world", false, IDS(9259, 1902)));
    CHECK(ids_are(l, "Hello world", false, IDS(9906, 1917)));

    /* Contractions: Llama's regex keeps "'m", "'re", ... apart; Gemma splits at each space. */
    const char *contr = "I'm you're we've they'll she'd it's don't can't won't";
    CHECK(ids_are(l, contr, false, IDS(40, 2846, 499, 2351, 584, 3077, 814, 3358, 1364, 4265, 433, 596, 1541, 956, 649, 956, 2834, 956)));
    CHECK(ids_are(q, contr, false, IDS(40, 2776, 498, 2299, 582, 3003, 807, 3278, 1340, 4172, 432, 594, 1513, 944, 646, 944, 2765, 944)));
    CHECK(ids_are(g, "Привет, мир!", true, IDS(2, 116130, 236764, 58562, 236888)));
    CHECK(ids_are(l, "Привет, мир!", true, IDS(128000, 54745, 28089, 8341, 11, 115388, 0)));
    /* Special tokens inside text: Qwen's <|endoftext|> is an added token, not so for Gemma. */
    CHECK(ids_are(q, "text<|endoftext|>more", true, IDS(1318, 151643, 6384)));
    CHECK(ids_are(g, "text<|endoftext|>more", true, IDS(2, 1005, 236820, 236909, 643, 1340, 1005, 111038, 5576)));
    CHECK(ids_are(l, "<|begin_of_text|>Hi", false, IDS(128000, 13347)));
    /* Gemma's added "▁▁" matches literal U+2581 characters. */
    CHECK(ids_are(g, "\xE2\x96\x81\xE2\x96\x81 leading metaspace \xE2\x96\x81", true, IDS(2, 138, 5830, 105834, 6046, 138)));
    /* Byte fallback: U+F0000 (private use) has no Gemma token. */
    int32_t *ids;
    size_t n;
    CHECK(lmc_tokenizer_encode(g, "\xF3\xB0\x80\x80", 4, false, &ids, &n) == LMC_OK);
    CHECK(n == 4 && !strcmp(lmc_tokenizer_id_to_token(g, ids[0]), "<0xF3>") && !strcmp(lmc_tokenizer_id_to_token(g, ids[3]), "<0x80>"));
    lmc_tokenizer_free_ids(ids);
}

static void test_special_ids(void) {
    const int32_t *eos;
    CHECK(lmc_tokenizer_bos(TOK[0]) == 2 && lmc_tokenizer_pad(TOK[0]) == 0);
    CHECK(lmc_tokenizer_eos(TOK[0], &eos) == 1 && eos[0] == 106); /* <end_of_turn> */
    CHECK(lmc_tokenizer_bos(TOK[1]) == 128000 && lmc_tokenizer_pad(TOK[1]) == -1);
    CHECK(lmc_tokenizer_eos(TOK[1], &eos) == 1 && eos[0] == 128009); /* <|eot_id|> */
    CHECK(lmc_tokenizer_bos(TOK[2]) == -1 && lmc_tokenizer_pad(TOK[2]) == 151643);
    CHECK(lmc_tokenizer_eos(TOK[2], &eos) == 1 && eos[0] == 151645); /* <|im_end|> */
    for (int i = 0; i < 3; i++) CHECK(lmc_tokenizer_chat_template(TOK[i]) && strlen(lmc_tokenizer_chat_template(TOK[i])) > 100);
    CHECK(lmc_tokenizer_vocab_size(TOK[0]) == 262145);
    CHECK(lmc_tokenizer_vocab_size(TOK[1]) == 128256);
    CHECK(lmc_tokenizer_vocab_size(TOK[2]) == 151669);
    CHECK_STR(lmc_tokenizer_eos_token(TOK[1]), "<|eot_id|>");
    CHECK(lmc_tokenizer_bos_token(TOK[2]) == NULL);
}

static const char *TEXTS[] = {
    "The quick brown fox jumps over the lazy dog. It's 3:45pm; we've got 1,234,567 items!",
    "def f(x):\n    return {'a': x ** 2}  # comment\n\n\tprint(f(3))\n",
    "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC\x81 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
    "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 caf\xC3\xA9",
    "emoji \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88!",
    "   spaces   \t\ttabs\n\n\nnewlines \r\n end  ",
    "rare: \xEE\x80\x80\xF0\x9F\xA9\xBB\xF0\x90\x8C\xB0 \xE2\xB3\x80 \xEA\x99\xAE",
};

static void test_round_trip(void) {
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
            int32_t *ids;
            size_t n, tl;
            char *text;
            CHECK(lmc_tokenizer_encode(TOK[k], TEXTS[i], strlen(TEXTS[i]), true, &ids, &n) == LMC_OK);
            CHECK(lmc_tokenizer_decode(TOK[k], ids, n, true, &text, &tl) == LMC_OK);
            CHECKF(tl == strlen(TEXTS[i]) && !strcmp(text, TEXTS[i]), "%s: round trip of text %zu gave \"%s\"", NAMES[k], i, text);
            lmc_tokenizer_free_text(text);
            lmc_tokenizer_free_ids(ids);
        }
}

/* A fresh detokeniser fed ids[:k] then flushed gives decode(ids[:k]), for every k. */
static void test_streaming_every_prefix(void) {
    char all[2048] = "";
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) strcat(all, TEXTS[i]);
    for (int k = 0; k < 3; k++)
        for (int skip = 0; skip < 2; skip++) {
            int32_t *ids;
            size_t n;
            CHECK(lmc_tokenizer_encode(TOK[k], all, strlen(all), true, &ids, &n) == LMC_OK);
            int bad = 0;
            for (size_t p = 0; p <= n && !bad; p++) {
                char *want;
                size_t wl;
                lmc_tokenizer_decode(TOK[k], ids, p, skip, &want, &wl);
                lmc_detokenizer *d;
                CHECK(lmc_detokenizer_create(TOK[k], skip, &d) == LMC_OK);
                char *got = malloc(wl + 64);
                size_t gl = 0, pl;
                const char *piece;
                for (size_t i = 0; i < p; i++) {
                    CHECK(lmc_detokenizer_feed(d, ids[i], &piece, &pl) == LMC_OK);
                    /* Never half a UTF-8 character: each piece is valid on its own. */
                    for (size_t b = 0; b < pl; b++) {
                        unsigned char c = (unsigned char)piece[b];
                        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
                        if (!need || b + need > pl) { bad++; break; }
                        b += need - 1;
                    }
                    if (gl + pl <= wl) memcpy(got + gl, piece, pl);
                    gl += pl;
                }
                lmc_detokenizer_flush(d, &piece, &pl);
                if (gl + pl <= wl) memcpy(got + gl, piece, pl);
                gl += pl;
                if (gl != wl || memcmp(got, want, wl)) bad++;
                CHECKF(!bad, "%s skip=%d: streaming %zu ids differs from decode", NAMES[k], skip, p);
                free(got);
                lmc_detokenizer_free(d);
                lmc_tokenizer_free_text(want);
            }
            lmc_tokenizer_free_ids(ids);
        }
}

static void test_invalid_utf8(void) {
    for (int k = 0; k < 3; k++) {
        int32_t *a, *b;
        size_t na, nb;
        CHECK(lmc_tokenizer_encode(TOK[k], "ok\xFF\xC3(\xE4\xB8", 7, true, &a, &na) == LMC_OK);
        const char *fixed = "ok\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD";
        CHECK(lmc_tokenizer_encode(TOK[k], fixed, strlen(fixed), true, &b, &nb) == LMC_OK);
        CHECKF(na == nb && !memcmp(a, b, na * sizeof *a), "%s: invalid UTF-8 is not encoded as U+FFFD", NAMES[k]);
        lmc_tokenizer_free_ids(a);
        lmc_tokenizer_free_ids(b);
        CHECK(lmc_tokenizer_encode(TOK[k], "", 0, false, &a, &na) == LMC_OK && na == 0);
        lmc_tokenizer_free_ids(a);
    }
}

typedef struct job {
    const lmc_tokenizer *tok;
    int32_t *ids;
    size_t n;
    bool ok;
    char text[16384];
} job;

static void *encode_job(void *arg) {
    job *j = arg;
    char *text = j->text;
    text[0] = 0;
    for (int r = 0; r < 8; r++)
        for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) strcat(text, TEXTS[i]);
    j->ok = true;
    for (int r = 0; r < 20 && j->ok; r++) {
        int32_t *ids;
        size_t n;
        j->ok = lmc_tokenizer_encode(j->tok, text, strlen(text), true, &ids, &n) == LMC_OK;
        if (r == 0) { j->ids = ids; j->n = n; }
        else {
            j->ok = j->ok && n == j->n && !memcmp(ids, j->ids, n * sizeof *ids);
            lmc_tokenizer_free_ids(ids);
        }
    }
    return NULL;
}

static void test_concurrent_encode(void) {
    for (int k = 0; k < 3; k++) {
        static job jobs[4];
        memset(jobs, 0, sizeof jobs);
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            jobs[i].tok = TOK[k];
            pthread_create(&th[i], NULL, encode_job, &jobs[i]);
        }
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 4; i++)
            CHECK(jobs[i].ok && jobs[i].n == jobs[0].n && !memcmp(jobs[i].ids, jobs[0].ids, jobs[0].n * sizeof(int32_t)));
        for (int i = 0; i < 4; i++) lmc_tokenizer_free_ids(jobs[i].ids);
    }
}

static unsigned rnd(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return *state >> 8;
}

/* The id of the token for one raw byte: "<0xXX>" (byte fallback) or the
 * byte-level character. */
static int32_t byte_id(const lmc_tokenizer *t, unsigned b) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    int32_t id = lmc_tokenizer_token_to_id(t, name);
    if (id >= 0) return id;
    /* GPT-2 byte-level alphabet: bytes 0x80..0xA0 map to U+0100 onwards
     * after the 33 control/space bytes below 0x80. */
    unsigned cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) cp = b;
    else {
        unsigned n = 0;
        for (unsigned i = 0; i < b; i++) n += !((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE);
        cp = 256 + n;
    }
    char enc[4] = {0};
    if (cp < 0x80) enc[0] = (char)cp;
    else { enc[0] = (char)(0xC0 | (cp >> 6)); enc[1] = (char)(0x80 | (cp & 0x3F)); }
    return lmc_tokenizer_token_to_id(t, enc);
}

/* lmc_tokenizer_token_bytes: a raw-byte token is its byte (where decode
 * gives U+FFFD for a byte that is not a character alone), and the tokens of
 * each text add up to its bytes exactly. */
static void test_token_bytes(void) {
    for (int k = 0; k < 3; k++) {
        for (unsigned b = 0; b < 256; b++) {
            int32_t id = byte_id(TOK[k], b);
            if (id < 0) continue;
            char *bytes = NULL, *text = NULL;
            size_t bl = 0, tl = 0;
            CHECK(lmc_tokenizer_token_bytes(TOK[k], id, &bytes, &bl) == LMC_OK);
            CHECK(lmc_tokenizer_decode(TOK[k], &id, 1, false, &text, &tl) == LMC_OK);
            if (b >= 0x80)
                CHECKF(bl == 1 && (unsigned char)bytes[0] == b && tl == 3 && !memcmp(text, "\xEF\xBF\xBD", 3),
                       "%s: byte 0x%02X: %zu bytes, decode %zu", NAMES[k], b, bl, tl);
            else
                CHECKF(bl == tl && !memcmp(bytes, text, bl), "%s: byte 0x%02X differs from decode", NAMES[k], b);
            lmc_tokenizer_free_text(bytes);
            lmc_tokenizer_free_text(text);
        }
        for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
            int32_t *ids;
            size_t n, len = 0;
            CHECK(lmc_tokenizer_encode(TOK[k], TEXTS[i], strlen(TEXTS[i]), false, &ids, &n) == LMC_OK);
            char joined[1024];
            for (size_t j = 0; j < n; j++) {
                char *bytes = NULL;
                size_t bl = 0;
                CHECK(lmc_tokenizer_token_bytes(TOK[k], ids[j], &bytes, &bl) == LMC_OK);
                if (len + bl < sizeof joined) memcpy(joined + len, bytes, bl);
                len += bl;
                lmc_tokenizer_free_text(bytes);
            }
            CHECKF(len == strlen(TEXTS[i]) && !memcmp(joined, TEXTS[i], len), "%s: the tokens of text %zu add up to %zu bytes",
                   NAMES[k], i, len);
            lmc_tokenizer_free_ids(ids);
        }
        char *none = NULL;
        size_t nl = 7;
        CHECK(lmc_tokenizer_token_bytes(TOK[k], 1 << 30, &none, &nl) == LMC_OK && nl == 0 && none && !*none);
        lmc_tokenizer_free_text(none);
    }
}

/* Random bytes (mostly invalid UTF-8) encode without error, and random id
 * sequences heavy in raw-byte tokens (so characters split across tokens)
 * stream exactly like decode at every prefix. */
static void test_random_inputs(void) {
    unsigned st = 99;
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < 60; r++) {
            char buf[300];
            size_t n = rnd(&st) % sizeof buf;
            for (size_t i = 0; i < n; i++) buf[i] = rnd(&st) % 4 == 0 ? "<|>\n a"[rnd(&st) % 6] : (char)rnd(&st);
            int32_t *ids;
            size_t ni;
            CHECK(lmc_tokenizer_encode(TOK[k], buf, n, true, &ids, &ni) == LMC_OK);
            char *text;
            CHECK(lmc_tokenizer_decode(TOK[k], ids, ni, false, &text, NULL) == LMC_OK);
            lmc_tokenizer_free_text(text);
            lmc_tokenizer_free_ids(ids);
        }
        size_t vocab = lmc_tokenizer_vocab_size(TOK[k]);
        int bad = 0;
        for (int r = 0; r < 25 && !bad; r++) {
            int32_t ids[32];
            size_t n = 1 + rnd(&st) % 32;
            for (size_t i = 0; i < n; i++) {
                unsigned c = rnd(&st) % 10;
                ids[i] = c < 6 ? byte_id(TOK[k], 0x80 + rnd(&st) % 0x80) : c < 9 ? (int32_t)(rnd(&st) % vocab) : (int32_t)(rnd(&st) % (vocab + 50));
            }
            for (int skip = 0; skip < 2; skip++)
                for (size_t p = 1; p <= n && !bad; p++) {
                    char *want;
                    size_t wl, pl;
                    lmc_tokenizer_decode(TOK[k], ids, p, skip, &want, &wl);
                    lmc_detokenizer *d;
                    lmc_detokenizer_create(TOK[k], skip, &d);
                    char got[4096];
                    size_t gl = 0;
                    const char *piece;
                    for (size_t i = 0; i < p; i++) {
                        lmc_detokenizer_feed(d, ids[i], &piece, &pl);
                        if (gl + pl < sizeof got) memcpy(got + gl, piece, pl);
                        gl += pl;
                    }
                    lmc_detokenizer_flush(d, &piece, &pl);
                    if (gl + pl < sizeof got) memcpy(got + gl, piece, pl);
                    gl += pl;
                    if (gl != wl || memcmp(got, want, wl)) bad++;
                    lmc_detokenizer_free(d);
                    lmc_tokenizer_free_text(want);
                }
        }
        CHECKF(!bad, "%s: streaming random ids differs from decode", NAMES[k]);
    }
}

/* Runs the CLI with stdin from a string; returns the exit status. */
static int run_cli(const char *args, const char *input, char *out, size_t cap) {
    char in_path[] = "/tmp/lmc_tok_cli_XXXXXX";
    int fd = mkstemp(in_path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    fputs(input, f);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/lmc %s < %s 2>/dev/null", LMC_BUILD_DIR, args, in_path);
    int rc = run_command(cmd, out, cap);
    remove(in_path);
    return rc;
}

static void test_cli(void) {
    char out[4096], args[4096];
    snprintf(args, sizeof args, "tokenize -m %s/gemma3", LMC_TOKENIZER_DIR);
    CHECK(run_cli(args, "Hello world", out, sizeof out) == 0);
    CHECK_STR(out, "[2,9259,1902]\n");
    snprintf(args, sizeof args, "tokenize -m %s/llama3_1 --no-special", LMC_TOKENIZER_DIR);
    CHECK(run_cli(args, "Hello world", out, sizeof out) == 0);
    CHECK_STR(out, "[9906,1917]\n");
    snprintf(args, sizeof args, "detokenize -m %s/gemma3", LMC_TOKENIZER_DIR);
    CHECK(run_cli(args, "[2, 9259, 1902]", out, sizeof out) == 0);
    CHECK_STR(out, "<bos>Hello world");
    snprintf(args, sizeof args, "detokenize -m %s/gemma3 --skip-special", LMC_TOKENIZER_DIR);
    CHECK(run_cli(args, "[2,9259,1902,107]", out, sizeof out) == 0);
    CHECK_STR(out, "Hello world\n");
    CHECK(run_cli("tokenize", "x", out, sizeof out) == 2);
    CHECK(run_cli("tokenize -m /nonexistent", "x", out, sizeof out) == 1);
    snprintf(args, sizeof args, "detokenize -m %s/qwen3", LMC_TOKENIZER_DIR);
    CHECK(run_cli(args, "[1, \"x\"]", out, sizeof out) == 1);
}

int main(void) {
    for (int i = 0; i < 3; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", LMC_TOKENIZER_DIR, NAMES[i]);
        lmc_status st = lmc_tokenizer_load(dir, &TOK[i]);
        CHECKF(st == LMC_OK, "cannot load %s: %s (run scripts/fetch_tokenizers.sh)", dir, lmc_last_error());
        if (st != LMC_OK) return TEST_REPORT();
    }
    RUN(test_known_encodings);
    RUN(test_special_ids);
    RUN(test_round_trip);
    RUN(test_streaming_every_prefix);
    RUN(test_invalid_utf8);
    RUN(test_concurrent_encode);
    RUN(test_random_inputs);
    RUN(test_token_bytes);
    RUN(test_cli);
    for (int i = 0; i < 3; i++) lmc_tokenizer_free(TOK[i]);
    return TEST_REPORT();
}
