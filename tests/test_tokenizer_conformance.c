/* Conformance with the Hugging Face libraries on the real tokenizer files.
 *
 * Fixtures (written on the GPU machine by the fixture script, with HF
 * tokenizers and transformers):
 *   tests/data/tokenizer/corpus.jsonl          {"id": N, "text": "..."}
 *   tests/data/tokenizer/expected_NAME.jsonl   {"id": N, "ids": [...], "ids_nospecial": [...],
 *                                               "decoded": "...", "decoded_skip": "..."}
 * for NAME in gemma3, llama3_1, qwen3 (the LMC_TOKENIZER_FIXTURES environment
 * variable may name another folder). Each line checks encode with and without
 * special tokens, decode with and without skipping special tokens, and the
 * streaming detokeniser against the whole decode (at every prefix for short
 * texts). Missing fixtures are a failure, never a silent pass. The same
 * checks also run over tests/data/tokenizer/hf_devcheck (230 tricky texts
 * with HF outputs, see its README). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "test_util.h"
#include "tokenizer_fixture.h"

static const char *NAMES[] = {"gemma3", "llama3_1", "qwen3"};

typedef struct text_entry {
    char *text;
    size_t len;
} text_entry;

static text_entry *g_texts;
static size_t g_ntexts;
static const char *g_dir;
static int g_shown;

static void show_text(const char *what, const char *name, long id, const char *text, size_t len) {
    if (g_shown++ >= 12) return;
    fprintf(stderr, "  %s mismatch for %s, text %ld: \"", what, name, id);
    for (size_t i = 0; i < len && i < 120; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == '"') fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fprintf(stderr, "%s\"\n", len > 120 ? "..." : "");
}

static bool same_ids(const int32_t *a, size_t na, const int64_t *b, size_t nb) {
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void print_ids(const char *label, const int32_t *a, size_t na, const int64_t *b, size_t nb) {
    if (g_shown > 12) return;
    fprintf(stderr, "    %s lmc:", label);
    for (size_t i = 0; i < na && i < 40; i++) fprintf(stderr, " %d", a ? a[i] : (int)b[i]);
    fprintf(stderr, "\n");
    (void)nb;
}

/* Streams ids[0..n) through a detokeniser; the concatenation goes to *out. */
static char *stream_all(const lmc_tokenizer *tok, const int32_t *ids, size_t n, bool skip, const char *whole,
                        size_t whole_len, bool check_prefixes, size_t *out_len) {
    lmc_detokenizer *d;
    if (lmc_detokenizer_create(tok, skip, &d) != LMC_OK) return NULL;
    size_t cap = whole_len + 64, len = 0;
    char *acc = malloc(cap);
    const char *piece;
    size_t pl;
    for (size_t k = 0; k < n; k++) {
        if (lmc_detokenizer_feed(d, ids[k], &piece, &pl) != LMC_OK) break;
        if (len + pl + 1 > cap) acc = realloc(acc, cap = (len + pl) * 2 + 1);
        memcpy(acc + len, piece, pl);
        len += pl;
        if (check_prefixes) {
            /* What was emitted after k+1 ids is a prefix of their decode. */
            char *dec;
            size_t dl;
            lmc_tokenizer_decode(tok, ids, k + 1, skip, &dec, &dl);
            CHECKF(len <= dl && !memcmp(acc, dec, len), "streaming emitted text beyond decode(ids[:%zu])", k + 1);
            lmc_tokenizer_free_text(dec);
        }
    }
    lmc_detokenizer_flush(d, &piece, &pl);
    if (len + pl + 1 > cap) acc = realloc(acc, cap = len + pl + 1);
    memcpy(acc + len, piece, pl);
    len += pl;
    acc[len] = 0;
    lmc_detokenizer_free(d);
    (void)whole;
    *out_len = len;
    return acc;
}

/* For every k: a fresh detokeniser fed ids[:k] and flushed gives decode(ids[:k]). */
static bool stream_every_prefix(const lmc_tokenizer *tok, const int32_t *ids, size_t n, bool skip) {
    for (size_t k = 1; k <= n; k++) {
        char *dec;
        size_t dl, sl;
        lmc_tokenizer_decode(tok, ids, k, skip, &dec, &dl);
        char *s = stream_all(tok, ids, k, skip, dec, dl, false, &sl);
        bool ok = s && sl == dl && !memcmp(s, dec, dl);
        free(s);
        lmc_tokenizer_free_text(dec);
        if (!ok) return false;
    }
    return true;
}

static void check_tokenizer(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/expected_%s.jsonl", g_dir, name);
    char *data = fx_read(path);
    CHECKF(data != NULL, "fixture file missing: %s (written by the tokenizer fixture script on the GPU machine)", path);
    if (!data) return;
    snprintf(path, sizeof path, "%s/%s", LMC_TOKENIZER_DIR, name);
    lmc_tokenizer *tok = NULL;
    lmc_status st = lmc_tokenizer_load(path, &tok);
    CHECKF(st == LMC_OK, "cannot load %s: %s (run scripts/fetch_tokenizers.sh)", path, lmc_last_error());
    if (st != LMC_OK) { free(data); return; }

    size_t lines = 0, bad_ids = 0, bad_ns = 0, bad_dec = 0, bad_skip = 0, bad_stream = 0;
    g_shown = 0;
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!*line) continue;
        fx_line l;
        bool ok = fx_parse(line, &l);
        const fx_value *id = ok ? fx_get(&l, "id", 'n') : NULL, *ids = fx_get(&l, "ids", 'a'),
                       *ns = fx_get(&l, "ids_nospecial", 'a'), *dec = fx_get(&l, "decoded", 's'),
                       *skip = fx_get(&l, "decoded_skip", 's');
        CHECKF(ok && id && ids && ns && dec && skip, "%s line %zu is malformed", name, lines + 1);
        if (!(ok && id && ids && ns && dec && skip)) { fx_free(&l); continue; }
        CHECKF(id->num >= 0 && (size_t)id->num < g_ntexts && g_texts[id->num].text, "%s: no corpus text with id %lld", name,
               (long long)id->num);
        if (id->num < 0 || (size_t)id->num >= g_ntexts || !g_texts[id->num].text) { fx_free(&l); continue; }
        lines++;
        const text_entry *te = &g_texts[id->num];

        int32_t *got;
        size_t ng;
        lmc_tokenizer_encode(tok, te->text, te->len, true, &got, &ng);
        if (!same_ids(got, ng, ids->arr, ids->arr_len)) {
            bad_ids++;
            show_text("ids", name, (long)id->num, te->text, te->len);
            print_ids("with special", got, ng, NULL, 0);
            print_ids("with special, expected", NULL, ids->arr_len, ids->arr, ids->arr_len);
        }
        lmc_tokenizer_free_ids(got);
        lmc_tokenizer_encode(tok, te->text, te->len, false, &got, &ng);
        if (!same_ids(got, ng, ns->arr, ns->arr_len)) {
            bad_ns++;
            show_text("ids_nospecial", name, (long)id->num, te->text, te->len);
        }
        lmc_tokenizer_free_ids(got);

        /* Decoding works on the expected ids, so it is checked even where encoding differs. */
        int32_t *eids = malloc((ids->arr_len + 1) * sizeof *eids);
        for (size_t i = 0; i < ids->arr_len; i++) eids[i] = (int32_t)ids->arr[i];
        for (int sk = 0; sk < 2; sk++) {
            const fx_value *want = sk ? skip : dec;
            char *text;
            size_t tl;
            lmc_tokenizer_decode(tok, eids, ids->arr_len, sk, &text, &tl);
            if (tl != want->str_len || memcmp(text, want->str, tl)) {
                if (sk) bad_skip++;
                else bad_dec++;
                show_text(sk ? "decoded_skip" : "decoded", name, (long)id->num, want->str, want->str_len);
                show_text("  lmc gave", name, (long)id->num, text, tl);
            }
            lmc_tokenizer_free_text(text);
            size_t sl;
            char *streamed = stream_all(tok, eids, ids->arr_len, sk, want->str, want->str_len, ids->arr_len <= 500, &sl);
            bool sok = streamed && sl == want->str_len && !memcmp(streamed, want->str, sl);
            if (sok && ids->arr_len <= 64) sok = stream_every_prefix(tok, eids, ids->arr_len, sk);
            if (!sok) {
                bad_stream++;
                show_text("streaming", name, (long)id->num, want->str, want->str_len);
            }
            free(streamed);
        }
        free(eids);
        fx_free(&l);
    }
    fprintf(stderr, "%s: %zu texts; mismatches: ids %zu, ids_nospecial %zu, decoded %zu, decoded_skip %zu, streaming %zu\n",
            name, lines, bad_ids, bad_ns, bad_dec, bad_skip, bad_stream);
    CHECKF(lines > 0, "%s: fixture has no lines", name);
    CHECK(bad_ids == 0);
    CHECK(bad_ns == 0);
    CHECK(bad_dec == 0);
    CHECK(bad_skip == 0);
    CHECK(bad_stream == 0);
    lmc_tokenizer_free(tok);
    free(data);
}

static bool load_corpus(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/corpus.jsonl", g_dir);
    char *data = fx_read(path);
    CHECKF(data != NULL, "fixture file missing: %s (written by the tokenizer fixture script on the GPU machine)", path);
    if (!data) return false;
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!*line) continue;
        fx_line l;
        const fx_value *id, *text;
        bool ok = fx_parse(line, &l) && (id = fx_get(&l, "id", 'n')) && (text = fx_get(&l, "text", 's')) && id->num >= 0 &&
                  id->num < 10000000;
        CHECKF(ok, "corpus.jsonl: malformed line");
        if (ok) {
            if ((size_t)id->num >= g_ntexts) {
                size_t n = (size_t)id->num + 1;
                g_texts = realloc(g_texts, n * sizeof *g_texts);
                memset(g_texts + g_ntexts, 0, (n - g_ntexts) * sizeof *g_texts);
                g_ntexts = n;
            }
            g_texts[id->num].text = malloc(text->str_len + 1);
            memcpy(g_texts[id->num].text, text->str, text->str_len + 1);
            g_texts[id->num].len = text->str_len;
        }
        fx_free(&l);
    }
    free(data);
    return true;
}

static void free_corpus(void) {
    for (size_t i = 0; i < g_ntexts; i++) free(g_texts[i].text);
    free(g_texts);
    g_texts = NULL;
    g_ntexts = 0;
}

/* Checks the three tokenizers against the fixtures in dir. */
static void run_dir(const char *dir) {
    g_dir = dir;
    fprintf(stderr, "fixtures: %s\n", dir);
    if (!load_corpus()) {
        fprintf(stderr, "FAIL: tokenizer conformance fixtures are missing from %s\n", dir);
        return;
    }
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        int before = t_failures;
        check_tokenizer(NAMES[i]);
        fprintf(stderr, "%s %s\n", t_failures == before ? "ok  " : "FAIL", NAMES[i]);
    }
    free_corpus();
}

int main(void) {
    run_dir(LMC_TEST_DATA "/tokenizer/hf_devcheck");
    const char *dir = getenv("LMC_TOKENIZER_FIXTURES");
    run_dir(dir && *dir ? dir : LMC_TEST_DATA "/tokenizer");
    return TEST_REPORT();
}
