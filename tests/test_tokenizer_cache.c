/* The tokenizer cache (src/text/tokenizer_cache.c): lmc_tokenizer_load of a
 * folder writes one cache file, the next load reads it (tk_cache_loads
 * counts those), and the tokenizer it gives is the same, table for table
 * and for every encode, decode and lookup: on the three real tokenizers
 * (with the conformance corpus) and on two small hand-written ones that
 * have every kind of table (a repeated id, U+2581 joins, byte fallback, a
 * continuing-subword prefix, no merges). Damaged caches (truncated, any
 * byte flipped, fields changed with a valid checksum) and caches of another
 * version of tokenizer.json are ignored and rewritten; LMC_CACHE_DIR=off
 * and unusable folders only turn the cache off; the folder falls back to
 * $XDG_CACHE_HOME/lmc and $HOME/.cache/lmc; writing a cache file removes
 * files unused for 30 days. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmc/tokenizer.h"
#include "test_util.h"
#include "text/tokenizer_internal.h"
#include "tokenizer_fixture.h"

static char g_cache[1024]; /* LMC_CACHE_DIR for these tests */
static char g_work[1024];   /* folders of hand-written tokenizers */

/* ---- files ---- */

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            remove_tree(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* The files in dir; *one gets the path of the last one seen. */
static int count_files(const char *dir, char *one, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        n++;
        if (one) snprintf(one, cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n) { return (unsigned char *)read_file_all(path, n); }

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void put_text(const char *dir, const char *name, const char *text) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    spit(p, text, strlen(text));
}

/* ---- loads ---- */

/* Loads dir; *warm: it came from a cache file, *wrote: a cache file was written. */
static lmc_tokenizer *load(const char *dir, bool *warm, bool *wrote) {
    unsigned long loads = tk_cache_loads, writes = tk_cache_writes;
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load(dir, &t);
    CHECKF(st == LMC_OK, "cannot load %s: %s", dir, lmc_last_error());
    *warm = tk_cache_loads != loads;
    *wrote = tk_cache_writes != writes;
    return t;
}

static bool same_bytes(const void *a, const void *b, size_t n) { return (!a && !b) || (a && b && !memcmp(a, b, n)); }

/* The BPE tables of two loads are the same (arena sizes aside: the JSON
 * path's arena has room to spare). */
static void check_same_tables(const tk_bpe *a, const tk_bpe *b, const char *name) {
    bool ids = a->n_ids == b->n_ids;
    for (size_t i = 0; ids && i < a->n_ids; i++)
        ids = a->id_len[i] == b->id_len[i] && (a->id_str[i] ? b->id_str[i] && !memcmp(a->id_str[i], b->id_str[i], a->id_len[i] + 1) : !b->id_str[i]);
    CHECKF(ids, "%s: id -> token tables differ", name);
    CHECKF(a->vocab.cap == b->vocab.cap && a->vocab.n == b->vocab.n && !memcmp(a->vocab.slots, b->vocab.slots, a->vocab.cap * sizeof *a->vocab.slots),
           "%s: vocabulary maps differ", name);
    bool spilled = a->vocab.n_spilled == b->vocab.n_spilled;
    for (size_t i = 0; spilled && i < a->vocab.n_spilled; i++) {
        const struct tk_strmap_spilled *x = &a->vocab.spilled[i], *y = &b->vocab.spilled[i];
        spilled = x->len == y->len && x->val == y->val && !memcmp(x->key, y->key, x->len + 1);
    }
    CHECKF(spilled, "%s: spilled keys differ", name);
    CHECKF(a->merges_half == b->merges_half && same_bytes(a->merges, b->merges, a->merges_half * 2 * sizeof *a->merges), "%s: merge tables differ", name);
    CHECKF(same_bytes(a->char_ids, b->char_ids, 0x10000 * sizeof *a->char_ids), "%s: char_ids differ", name);
    CHECKF(same_bytes(a->space_join, b->space_join, 0x10000 / 8), "%s: space_join differs", name);
    CHECKF(a->unk_id == b->unk_id && !memcmp(a->byte_ids, b->byte_ids, sizeof a->byte_ids) && a->fuse_unk == b->fuse_unk &&
               a->byte_fallback == b->byte_fallback && a->ignore_merges == b->ignore_merges && !strcmp(a->prefix, b->prefix) &&
               !strcmp(a->suffix, b->suffix) && same_bytes(a->unk_token, b->unk_token, a->unk_token ? strlen(a->unk_token) + 1 : 0),
           "%s: model options differ", name);
}

/* Encode (with and without special tokens, same ids or the same error),
 * decode of the result (skipping special tokens or not). */
static int check_same_text(const lmc_tokenizer *a, const lmc_tokenizer *b, const char *text, size_t len) {
    int bad = 0;
    for (int special = 0; special < 2; special++) {
        int32_t *ia = NULL, *ib = NULL;
        size_t na = 0, nb = 0;
        lmc_status sa = lmc_tokenizer_encode(a, text, len, special, &ia, &na);
        char ea[512];
        snprintf(ea, sizeof ea, "%s", sa != LMC_OK ? lmc_last_error() : "");
        lmc_status sb = lmc_tokenizer_encode(b, text, len, special, &ib, &nb);
        if (sa != sb || (sa != LMC_OK && strcmp(ea, lmc_last_error()))) bad++;
        if (sa == LMC_OK && sb == LMC_OK) {
            if (na != nb || memcmp(ia, ib, na * sizeof *ia)) bad++;
            for (int skip = 0; skip < 2 && na == nb; skip++) {
                char *da, *db;
                size_t la, lb;
                if (lmc_tokenizer_decode(a, ia, na, skip, &da, &la) != LMC_OK || lmc_tokenizer_decode(b, ia, na, skip, &db, &lb) != LMC_OK) {
                    bad++;
                    continue;
                }
                if (la != lb || memcmp(da, db, la)) bad++;
                lmc_tokenizer_free_text(da);
                lmc_tokenizer_free_text(db);
            }
        }
        lmc_tokenizer_free_ids(ia);
        lmc_tokenizer_free_ids(ib);
    }
    return bad;
}

/* Everything the public API tells of two tokenizers is the same. */
static void check_same_lookups(const lmc_tokenizer *a, const lmc_tokenizer *b, const char *name) {
    size_t n = lmc_tokenizer_vocab_size(a);
    CHECKF(n == lmc_tokenizer_vocab_size(b), "%s: vocab sizes differ", name);
    int bad = 0;
    for (int64_t id = -2; id < (int64_t)n + 4; id++) {
        const char *x = lmc_tokenizer_id_to_token(a, (int32_t)id), *y = lmc_tokenizer_id_to_token(b, (int32_t)id);
        if (x ? !y || strcmp(x, y) : y != NULL) bad++;
        if (lmc_tokenizer_is_special(a, (int32_t)id) != lmc_tokenizer_is_special(b, (int32_t)id)) bad++;
        if (lmc_tokenizer_is_eos(a, (int32_t)id) != lmc_tokenizer_is_eos(b, (int32_t)id)) bad++;
        if (x && lmc_tokenizer_token_to_id(a, x) != lmc_tokenizer_token_to_id(b, x)) bad++;
    }
    CHECKF(!bad, "%s: %d token lookups differ", name, bad);
    const int32_t *ea, *eb;
    size_t na = lmc_tokenizer_eos(a, &ea), nb = lmc_tokenizer_eos(b, &eb);
    CHECKF(na == nb && same_bytes(ea, eb, na * sizeof *ea), "%s: EOS ids differ", name);
    CHECKF(lmc_tokenizer_bos(a) == lmc_tokenizer_bos(b) && lmc_tokenizer_pad(a) == lmc_tokenizer_pad(b), "%s: BOS or pad differs", name);
    const char *sa[] = {lmc_tokenizer_chat_template(a), lmc_tokenizer_bos_token(a), lmc_tokenizer_eos_token(a), lmc_tokenizer_pad_token(a)};
    const char *sb[] = {lmc_tokenizer_chat_template(b), lmc_tokenizer_bos_token(b), lmc_tokenizer_eos_token(b), lmc_tokenizer_pad_token(b)};
    for (int i = 0; i < 4; i++) CHECKF(sa[i] ? sb[i] && !strcmp(sa[i], sb[i]) : !sb[i], "%s: config string %d differs", name, i);
}

static void check_same(const lmc_tokenizer *a, const lmc_tokenizer *b, const char *name, const char *const *texts, size_t n_texts) {
    if (!a || !b) return;
    check_same_tables(&a->bpe, &b->bpe, name);
    check_same_lookups(a, b, name);
    int bad = 0;
    for (size_t i = 0; i < n_texts; i++) bad += check_same_text(a, b, texts[i], strlen(texts[i]));
    CHECKF(!bad, "%s: %d encodes or decodes differ", name, bad);
}

/* ---- the real tokenizers ---- */

static char **g_corpus;
static size_t g_n_corpus;

static void read_corpus(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/corpus.jsonl", LMC_TEST_DATA);
    char *data = fx_read(path);
    CHECKF(data != NULL, "missing %s", path);
    if (!data) return;
    g_corpus = calloc(1024, sizeof *g_corpus);
    for (char *line = data, *next; line && *line && g_n_corpus < 1024; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        fx_line l;
        if (!fx_parse(line, &l)) continue;
        const fx_value *v = fx_get(&l, "text", 's');
        /* Texts with NULs would be cut short here; the others are enough. */
        if (v && strlen(v->str) == v->str_len) g_corpus[g_n_corpus++] = strdup(v->str);
        fx_free(&l);
    }
    free(data);
    CHECKF(g_n_corpus > 100, "only %zu corpus texts", g_n_corpus);
}

static void test_real_tokenizers(void) {
    static const char *names[] = {"gemma3", "llama3_1", "qwen3"};
    for (int k = 0; k < 3; k++) {
        char dir[4096], file[8192];
        snprintf(dir, sizeof dir, "%s/%s", LMC_TOKENIZER_DIR, names[k]);
        remove_tree(g_cache);
        bool warm, wrote;
        lmc_tokenizer *cold = load(dir, &warm, &wrote);
        CHECKF(!warm && wrote, "%s: the first load should parse the JSON and write the cache", names[k]);
        CHECKF(count_files(g_cache, file, sizeof file) == 1, "%s: not exactly one file in the cache folder", names[k]);
        CHECKF(strstr(file, "/tokenizer-") && strstr(file, ".lmctok"), "%s: cache file named %s", names[k], file);
        lmc_tokenizer *hot = load(dir, &warm, &wrote);
        CHECKF(warm && !wrote, "%s: the second load should come from the cache", names[k]);
        check_same(cold, hot, names[k], (const char *const *)g_corpus, g_n_corpus);
        lmc_tokenizer_free(cold);
        lmc_tokenizer_free(hot);
    }
}

/* Several threads loading one folder with no cache yet: each writes its own
 * temporary file and renames it, so all load, and one file is left. */
typedef struct load_job {
    const char *dir;
    lmc_tokenizer *tok;
} load_job;

static void *load_thread(void *arg) {
    load_job *j = arg;
    if (lmc_tokenizer_load(j->dir, &j->tok) != LMC_OK) j->tok = NULL;
    return NULL;
}

static void test_concurrent_loads(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/qwen3", LMC_TOKENIZER_DIR);
    remove_tree(g_cache);
    load_job jobs[3] = {{dir, NULL}, {dir, NULL}, {dir, NULL}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, load_thread, &jobs[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) CHECK(jobs[i].tok != NULL);
    CHECK(count_files(g_cache, NULL, 0) == 1);
    bool warm, wrote;
    lmc_tokenizer *t = load(dir, &warm, &wrote);
    CHECK(warm && !wrote);
    const char *text[] = {"Hello world", "concurrent loads"};
    check_same(jobs[0].tok, t, "qwen3 concurrent", text, 2);
    lmc_tokenizer_free(t);
    for (int i = 0; i < 3; i++) lmc_tokenizer_free(jobs[i].tok);
}

/* ---- hand-written tokenizers ---- */

/* SentencePiece-like: byte fallback, unk fused, a repeated id (7: "c" then
 * "x", so "c" is spilled), no id 13, "b▁" (a U+2581 join after 'b'),
 * added tokens, a post-processor and a decoder chain. */
static const char SMALL_JSON[] =
    "{\"version\": \"1.0\",\n"
    " \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},\n"
    "                  {\"id\": 11, \"content\": \"<s>\", \"special\": true},\n"
    "                  {\"id\": 15, \"content\": \"<end>\", \"special\": true}],\n"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},\n"
    "                {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},\n"
    " \"pre_tokenizer\": null,\n"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},\n"
    "                    {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n"
    "                    \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [11], \"tokens\": [\"<s>\"]}}},\n"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"},\n"
    "             {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true,\n"
    "   \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"\xE2\x96\x81\": 3, \"ab\": 4, \"\xE2\x96\x81" "a\": 5, \"\xE2\x96\x81" "ab\": 6,\n"
    "             \"c\": 7, \"x\": 7, \"<0xC3>\": 8, \"<0xA9>\": 9, \"b\xE2\x96\x81\": 10, \"<s>\": 11, \"\xE2\x96\x81" "b\": 12, \"zz\": 14},\n"
    "   \"merges\": [\"a b\", \"\xE2\x96\x81 a\", \"\xE2\x96\x81" "a b\", \"\xE2\x96\x81 b\", \"b \xE2\x96\x81\"]}}\n";

static const char SMALL_CONFIG[] = "{\"bos_token\": \"<s>\", \"eos_token\": \"<end>\", \"chat_template\": \"{{ messages }}\"}";

/* WordPiece-like BPE: a continuing-subword prefix (no char_ids table), no
 * merges at all, and an unk token missing from the vocabulary (an error
 * when encoding an unknown character). */
static const char PREFIX_JSON[] =
    "{\"model\": {\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\", \"unk_token\": \"[UNK]\",\n"
    "           \"vocab\": {\"a\": 0, \"##b\": 1, \"b\": 2, \"##a\": 3}},\n"
    " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}";

static const char *SMALL_TEXTS[] = {"ab ab", "abc x", "caf\xC3\xA9", "b a", "<s>ab<end>", "zz q", "", "a\u2581b ", "ab b\xE2\x96\x81"};
static const char *PREFIX_TEXTS[] = {"ab ba", "a b", "abz", "", "aab bba"};

/* A folder with a tokenizer.json (and tokenizer_config.json when given). */
static void make_folder(const char *dir, const char *json, const char *config) {
    remove_tree(dir);
    mkdir(g_work, 0755);
    CHECK(mkdir(dir, 0755) == 0);
    put_text(dir, "tokenizer.json", json);
    if (config) put_text(dir, "tokenizer_config.json", config);
}

static void test_small_tokenizers(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/small", g_work);
    make_folder(dir, SMALL_JSON, SMALL_CONFIG);
    remove_tree(g_cache);
    bool warm, wrote;
    lmc_tokenizer *cold = load(dir, &warm, &wrote), *hot;
    CHECK(!warm && wrote);
    hot = load(dir, &warm, &wrote);
    CHECK(warm && !wrote);
    /* The tables this tokenizer is here for. */
    if (cold && hot) {
        CHECK(hot->bpe.vocab.n_spilled == 1 && hot->bpe.space_join && hot->bpe.char_ids && hot->bpe.n_ids == 15 && !hot->bpe.id_str[13]);
        CHECK(lmc_tokenizer_token_to_id(hot, "c") == 7 && lmc_tokenizer_token_to_id(hot, "x") == 7);
    }
    check_same(cold, hot, "small", SMALL_TEXTS, sizeof SMALL_TEXTS / sizeof SMALL_TEXTS[0]);
    lmc_tokenizer_free(cold);
    lmc_tokenizer_free(hot);

    snprintf(dir, sizeof dir, "%s/prefix", g_work);
    make_folder(dir, PREFIX_JSON, NULL);
    cold = load(dir, &warm, &wrote);
    CHECK(!warm && wrote);
    hot = load(dir, &warm, &wrote);
    CHECK(warm && !wrote);
    if (hot) CHECK(!hot->bpe.char_ids && !hot->bpe.merges && hot->bpe.merges_half == 0);
    check_same(cold, hot, "prefix", PREFIX_TEXTS, sizeof PREFIX_TEXTS / sizeof PREFIX_TEXTS[0]);
    /* The same error from both: the unk token is not in the vocabulary. */
    int32_t *ids;
    size_t n;
    CHECK(lmc_tokenizer_encode(hot, "z", 1, false, &ids, &n) == LMC_ERR_FORMAT);
    CHECKF(strstr(lmc_last_error(), "unk_token '[UNK]' is not in the vocabulary") != NULL, "%s", lmc_last_error());
    lmc_tokenizer_free(cold);
    lmc_tokenizer_free(hot);
}

/* ---- damaged caches ---- */

static const char *g_dir;     /* the small tokenizer's folder */
static lmc_tokenizer *g_ref;  /* loaded without the cache */
static char g_file[8192];     /* its cache file */
static unsigned char *g_orig; /* and that file's bytes */
static size_t g_orig_len;

/* Start of each section in the file, and the end (10 entries). */
static void section_starts(const tk_cache_header *h, size_t at[10]) {
    uint64_t sz[9] = {h->rest_len, h->arena_len, h->n_ids * 4, h->n_ids * 8, h->map_cap * sizeof(tk_strmap_slot), h->n_spilled * 16,
                      h->merges_half * 2 * sizeof(tk_merge_entry), h->n_char_ids * 8, h->n_space_join * 4};
    at[0] = sizeof *h;
    for (int i = 0; i < 9; i++) at[i + 1] = at[i] + sz[i];
}

/* A cache file of these bytes is not used: the load parses the JSON, gives
 * the same tokenizer, and writes the file back as it was. */
static void check_rejected(const void *bytes, size_t n, const char *what) {
    spit(g_file, bytes, n);
    bool warm, wrote;
    lmc_tokenizer *t = load(g_dir, &warm, &wrote);
    CHECKF(!warm && wrote, "%s: the damaged cache was used (or not rewritten)", what);
    size_t len;
    unsigned char *now = slurp(g_file, &len);
    CHECKF(now && len == g_orig_len && !memcmp(now, g_orig, len), "%s: the cache was not rewritten as before", what);
    free(now);
    int bad = 0;
    for (size_t i = 0; t && i < sizeof SMALL_TEXTS / sizeof SMALL_TEXTS[0]; i++) bad += check_same_text(g_ref, t, SMALL_TEXTS[i], strlen(SMALL_TEXTS[i]));
    CHECKF(t && !bad, "%s: the load after a damaged cache differs", what);
    lmc_tokenizer_free(t);
}

/* Sets the checksum so that only the structure checks can reject it. */
static void reseal(unsigned char *file, size_t n) {
    tk_cache_header *h = (tk_cache_header *)(void *)file;
    h->checksum = 0;
    uint64_t sum = tk_sum64(file, n);
    h->checksum = sum;
}

static void test_damaged_caches(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/damaged", g_work);
    g_dir = dir;
    make_folder(dir, SMALL_JSON, SMALL_CONFIG);
    CHECK(setenv("LMC_CACHE_DIR", "off", 1) == 0);
    CHECK(lmc_tokenizer_load(dir, &g_ref) == LMC_OK);
    CHECK(setenv("LMC_CACHE_DIR", g_cache, 1) == 0);
    remove_tree(g_cache);
    bool warm, wrote;
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(wrote && count_files(g_cache, g_file, sizeof g_file) == 1);
    g_orig = slurp(g_file, &g_orig_len);
    if (!g_ref || !g_orig || g_orig_len < sizeof(tk_cache_header)) return;
    const tk_cache_header *h = (const tk_cache_header *)(const void *)g_orig;
    size_t at[10];
    section_starts(h, at);
    CHECK(at[9] == g_orig_len);
    for (int i = 0; i < 9; i++) CHECKF(at[i + 1] > at[i], "section %d of the small tokenizer's cache is empty", i);
    unsigned char *c = malloc(g_orig_len);

    /* The untouched file, resealed, is used (so the rejections below are the checks' doing). */
    memcpy(c, g_orig, g_orig_len);
    reseal(c, g_orig_len);
    CHECK(!memcmp(c, g_orig, g_orig_len));
    spit(g_file, c, g_orig_len);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(warm && !wrote);

    /* Truncated: before, inside and after the header, inside each section. */
    size_t cuts[16] = {0, 1, 8, sizeof *h - 1, sizeof *h, g_orig_len - 1};
    int n_cuts = 6;
    for (int i = 0; i < 9; i++) cuts[n_cuts++] = (at[i] + at[i + 1]) / 2;
    for (int i = 0; i < n_cuts; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        check_rejected(g_orig, cuts[i], what);
    }
    /* Longer than the header says. */
    memcpy(c, g_orig, g_orig_len);
    unsigned char *longer = malloc(g_orig_len + 8);
    memcpy(longer, g_orig, g_orig_len);
    memset(longer + g_orig_len, 0, 8);
    check_rejected(longer, g_orig_len + 8, "8 bytes appended");
    free(longer);

    /* One byte changed: every byte of the header, and the first, middle and
     * last of each section (the checksum covers the whole file). */
    for (size_t off = 0; off < g_orig_len; off++) {
        bool pick = off < sizeof *h;
        for (int i = 0; i < 9 && !pick; i++) pick = off == at[i] || off == (at[i] + at[i + 1]) / 2 || off + 1 == at[i + 1];
        if (!pick) continue;
        memcpy(c, g_orig, g_orig_len);
        c[off] ^= off % 2 ? 0x80 : 0x01;
        char what[64];
        snprintf(what, sizeof what, "byte %zu changed", off);
        check_rejected(c, g_orig_len, what);
    }

    /* Fields changed with the checksum made right: the structure checks. */
    typedef struct edit { const char *what; size_t off; uint64_t value; int width; } edit;
    edit edits[32];
    int n_edits = 0;
#define EDIT(w, o, v, wd) (edits[n_edits++] = (edit){w, o, v, wd})
    EDIT("magic", offsetof(tk_cache_header, magic), 'L', 1);
    EDIT("version", offsetof(tk_cache_header, version), TK_CACHE_VERSION + 1, 4);
    EDIT("byte order", offsetof(tk_cache_header, byte_order), 0x04030201, 4);
    EDIT("abi", offsetof(tk_cache_header, abi) + 4, 12, 4);
    EDIT("layout", offsetof(tk_cache_header, layout), h->layout ^ 1, 8);
    EDIT("n_ids", offsetof(tk_cache_header, n_ids), h->n_ids + 1, 8);
    EDIT("map_n", offsetof(tk_cache_header, map_n), h->map_n - 1, 8);
    EDIT("flags: unknown bit", offsetof(tk_cache_header, flags), h->flags | 8, 8);
    EDIT("flags: space_join without char_ids", offsetof(tk_cache_header, flags), h->flags & ~(uint64_t)TK_CACHE_CHAR_IDS, 8);
    EDIT("mtime", offsetof(tk_cache_header, mtime_nsec), h->mtime_nsec + 1, 8);
    EDIT("inode", offsetof(tk_cache_header, ino), h->ino + 1, 8);
    /* id_len of id 4 ("ab") made 3: no NUL right after the string. */
    EDIT("id_len without NUL", at[2] + 4 * 4, 3, 4);
    EDIT("id_len past the arena", at[2] + 4 * 4, 0xFFFFFFF0u, 4);
    /* id_off of id 1 past the arena, and one byte into its string. */
    EDIT("id_off past the arena", at[3] + 8 * 1, h->arena_len, 8);
    EDIT("spilled id", at[5] + 12, h->n_ids, 4);
    EDIT("spilled offset", at[5], h->arena_len + 5, 8);
    EDIT("char_ids code point", at[7], 0x10000, 4);
    EDIT("char_ids id", at[7] + 4, h->n_ids, 4);
    EDIT("space_join code point", at[8], 0x12345, 4);
    int first_slot = -1, first_merge = -1;
    for (size_t i = 0; i < h->map_cap && first_slot < 0; i++) {
        tk_strmap_slot s;
        memcpy(&s, g_orig + at[4] + i * sizeof s, sizeof s);
        if (s.val1) first_slot = (int)i;
    }
    for (size_t i = 0; i < 2 * h->merges_half && first_merge < 0; i++) {
        tk_merge_entry e;
        memcpy(&e, g_orig + at[6] + i * sizeof e, sizeof e);
        if (e.rank) first_merge = (int)i;
    }
    CHECK(first_slot >= 0 && first_merge >= 0);
    size_t slot = at[4] + (size_t)first_slot * sizeof(tk_strmap_slot), merge = at[6] + (size_t)first_merge * sizeof(tk_merge_entry);
    EDIT("slot value past the ids", slot + offsetof(tk_strmap_slot, val1), h->n_ids + 1, 4);
    EDIT("slot value of an id without a string", slot + offsetof(tk_strmap_slot, val1), 13 + 1, 4);
    EDIT("merge result id", merge + offsetof(tk_merge_entry, new_id), h->n_ids, 4);
    EDIT("merge result id negative", merge + offsetof(tk_merge_entry, new_id), 0xFFFFFFFFu, 4);
    EDIT("merge left id", merge + offsetof(tk_merge_entry, key) + 4, h->n_ids, 4);
    EDIT("merge right id", merge + offsetof(tk_merge_entry, key), h->n_ids + 7, 4);
#undef EDIT
    for (int i = 0; i < n_edits; i++) {
        memcpy(c, g_orig, g_orig_len);
        CHECK(edits[i].off + (size_t)edits[i].width <= g_orig_len);
        memcpy(c + edits[i].off, &edits[i].value, (size_t)edits[i].width); /* little-endian: the low bytes */
        reseal(c, g_orig_len);
        check_rejected(c, g_orig_len, edits[i].what);
    }
    /* A full half of the merge table: lookups there would never end. */
    memcpy(c, g_orig, g_orig_len);
    for (size_t i = 0; i < h->merges_half; i++) {
        tk_merge_entry e;
        memcpy(&e, c + at[6] + i * sizeof e, sizeof e);
        if (!e.rank) e = (tk_merge_entry){((uint64_t)1 << 32) | 1, 99, 1};
        memcpy(c + at[6] + i * sizeof e, &e, sizeof e);
    }
    reseal(c, g_orig_len);
    check_rejected(c, g_orig_len, "a merge table half without a free slot");
    /* A file others may write is not trusted (the folder may be shared); the rewrite is 0600. */
    spit(g_file, g_orig, g_orig_len);
    CHECK(chmod(g_file, 0664) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && wrote);
    struct stat st;
    CHECK(stat(g_file, &st) == 0 && (st.st_mode & 0777) == 0600);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(warm && !wrote);
    /* Not a cache at all. */
    memset(c, 'x', g_orig_len);
    check_rejected(c, g_orig_len, "all 'x'");
    free(c);
    lmc_tokenizer_free(g_ref);
    free(g_orig);
}

/* ---- another tokenizer.json at the same path ---- */

static void test_changed_source(void) {
    char dir[4096], json[8192], file[8192];
    snprintf(dir, sizeof dir, "%s/changed", g_work);
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    make_folder(dir, SMALL_JSON, SMALL_CONFIG);
    remove_tree(g_cache);
    bool warm, wrote;
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && wrote);
    /* New times: ignored, and rewritten for the new identity in the same file. */
    struct timespec times[2] = {{1000000000, 5}, {1000000000, 5}};
    CHECK(utimensat(AT_FDCWD, json, times, 0) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && wrote);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(warm && !wrote);
    CHECK(count_files(g_cache, file, sizeof file) == 1);
    /* New contents (the PREFIX tokenizer, of another size), same inode. */
    FILE *f = fopen(json, "r+");
    CHECK(f && ftruncate(fileno(f), 0) == 0 && fputs(PREFIX_JSON, f) >= 0);
    if (f) fclose(f);
    lmc_tokenizer *t = load(dir, &warm, &wrote);
    CHECK(!warm && wrote);
    CHECK(t && lmc_tokenizer_token_to_id(t, "##b") == 1 && lmc_tokenizer_token_to_id(t, "zz") == -1);
    lmc_tokenizer_free(t);
    t = load(dir, &warm, &wrote);
    CHECK(warm && t && lmc_tokenizer_token_to_id(t, "##b") == 1);
    lmc_tokenizer_free(t);
    /* The same contents in a new file (new inode): ignored. */
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%s/new.json", dir);
    put_text(dir, "new.json", PREFIX_JSON);
    CHECK(rename(tmp, json) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && wrote);
    CHECK(count_files(g_cache, NULL, 0) == 1);
    /* A file changed within tk_cache_settle_s is loaded but not cached. */
    tk_cache_settle_s = 2;
    put_text(dir, "tokenizer.json", SMALL_JSON);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && !wrote);
    tk_cache_settle_s = 0;
}

/* ---- where the cache goes, and when it goes nowhere ---- */

static void restore_env(const char *name, const char *value) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}

static void test_cache_folder(void) {
    char dir[2048], path[4096], where[8192];
    snprintf(dir, sizeof dir, "%s/folder", g_work);
    make_folder(dir, SMALL_JSON, NULL);
    remove_tree(g_cache);
    bool warm, wrote;
    /* off: nothing read, nothing written. */
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(count_files(g_cache, NULL, 0) == 1);
    CHECK(setenv("LMC_CACHE_DIR", "off", 1) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && !wrote);
    remove_tree(g_cache);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && !wrote && count_files(g_cache, NULL, 0) == 0);
    /* A folder that cannot be made (its parent is a file): the load works. */
    snprintf(path, sizeof path, "%s/tokenizer.json/cache", dir);
    CHECK(setenv("LMC_CACHE_DIR", path, 1) == 0);
    lmc_tokenizer *t = load(dir, &warm, &wrote);
    CHECK(t && !warm && !wrote);
    lmc_tokenizer_free(t);
    /* Made with its parents, mode 0700. */
    snprintf(path, sizeof path, "%s/made/a/b", g_work);
    remove_tree(path);
    CHECK(setenv("LMC_CACHE_DIR", path, 1) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    struct stat st;
    CHECK(wrote && count_files(path, NULL, 0) == 1 && stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
    /* Unset: $XDG_CACHE_HOME/lmc, else $HOME/.cache/lmc (a relative
     * XDG_CACHE_HOME is not used, as the XDG spec says). */
    char *old_xdg = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    unsetenv("LMC_CACHE_DIR");
    snprintf(path, sizeof path, "%s/xdg", g_work);
    setenv("XDG_CACHE_HOME", path, 1);
    setenv("HOME", "/nonexistent-home-for-lmc-tests", 1);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    snprintf(where, sizeof where, "%s/lmc", path);
    CHECK(wrote && count_files(where, NULL, 0) == 1);
    setenv("XDG_CACHE_HOME", "relative/xdg", 1);
    snprintf(path, sizeof path, "%s/home", g_work);
    setenv("HOME", path, 1);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    snprintf(where, sizeof where, "%s/.cache/lmc", path);
    CHECK(wrote && count_files(where, NULL, 0) == 1);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(warm);
    /* No folder to use at all: no cache. */
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(!warm && !wrote);
    restore_env("XDG_CACHE_HOME", old_xdg);
    restore_env("HOME", old_home);
    free(old_xdg);
    free(old_home);
    setenv("LMC_CACHE_DIR", g_cache, 1);
    /* lmc_tokenizer_load_file and _load_json never use the cache. */
    remove_tree(g_cache);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unsigned long loads = tk_cache_loads, writes = tk_cache_writes;
    CHECK(lmc_tokenizer_load_file(path, &t) == LMC_OK);
    lmc_tokenizer_free(t);
    CHECK(tk_cache_loads == loads && tk_cache_writes == writes && count_files(g_cache, NULL, 0) == 0);
}

/* A file in the cache folder, last modified `age` seconds ago. */
static void put_aged(const char *name, long age) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_cache, name);
    spit(p, "x", 1);
    struct timespec t[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
    CHECK(utimensat(AT_FDCWD, p, t, 0) == 0);
}

static bool exists_in_cache(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_cache, name);
    return access(p, F_OK) == 0;
}

/* Writing a cache file removes cache files unused for 30 days and
 * temporary files older than an hour, nothing else; a read marks a file used. */
static void test_sweep(void) {
    char dir[2048], other[2048], file[8192];
    snprintf(dir, sizeof dir, "%s/sweep", g_work);
    snprintf(other, sizeof other, "%s/sweep2", g_work);
    make_folder(dir, SMALL_JSON, NULL);
    make_folder(other, PREFIX_JSON, NULL);
    remove_tree(g_cache);
    CHECK(mkdir(g_cache, 0700) == 0);
    const long day = 24 * 3600;
    put_aged("tokenizer-0123456789abcdef.lmctok", 40 * day);        /* unused: goes */
    put_aged("tokenizer-fedcba9876543210.lmctok", 10 * day);        /* used lately: stays */
    put_aged("tokenizer-0123456789abcdef.lmctok.ab12CD", 2 * 3600); /* a writer's leftover: goes */
    put_aged("tokenizer-0123456789abcdef.lmctok.zz99ZZ", 60);       /* being written: stays */
    put_aged("notes.txt", 40 * day);                                /* not a cache file: stays */
    put_aged("tokenizer-xyz.lmctok", 40 * day);
    put_aged("tokenizer-0123456789abcdef.lmctok.toolong", 40 * day);
    bool warm, wrote;
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(wrote);
    CHECK(!exists_in_cache("tokenizer-0123456789abcdef.lmctok") && !exists_in_cache("tokenizer-0123456789abcdef.lmctok.ab12CD"));
    CHECK(exists_in_cache("tokenizer-fedcba9876543210.lmctok") && exists_in_cache("tokenizer-0123456789abcdef.lmctok.zz99ZZ") &&
          exists_in_cache("notes.txt") && exists_in_cache("tokenizer-xyz.lmctok") && exists_in_cache("tokenizer-0123456789abcdef.lmctok.toolong"));
    /* The small tokenizer's file, made old, then read: used now, so the next sweep keeps it. */
    DIR *d = opendir(g_cache);
    file[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, "tokenizer-", 10) && strcmp(e->d_name, "tokenizer-fedcba9876543210.lmctok") && strlen(e->d_name) == 33)
            snprintf(file, sizeof file, "%s/%s", g_cache, e->d_name);
    if (d) closedir(d);
    struct timespec t[2] = {{time(NULL) - 40 * day, 0}, {time(NULL) - 40 * day, 0}};
    CHECK(file[0] && utimensat(AT_FDCWD, file, t, 0) == 0);
    lmc_tokenizer_free(load(dir, &warm, &wrote));
    CHECK(warm);
    lmc_tokenizer_free(load(other, &warm, &wrote));
    CHECK(wrote);
    struct stat st;
    CHECK(stat(file, &st) == 0 && st.st_mtime > time(NULL) - 3600);
}

/* The checksum: cut anywhere, the same; any one word changed, another. */
static void test_checksum(void) {
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + 3);
    uint64_t whole = tk_sum64(buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 13) {
        tk_sum s;
        tk_sum_init(&s);
        tk_sum_update(&s, buf, cut);
        tk_sum_update(&s, buf + cut, sizeof buf - cut);
        CHECK(tk_sum_final(&s) == whole);
    }
    int same = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (unsigned char)(1u << bit);
            same += tk_sum64(buf, sizeof buf) == whole;
            buf[i] ^= (unsigned char)(1u << bit);
        }
    CHECK(same == 0);
    CHECK(tk_sum64(buf, sizeof buf - 1) != whole && tk_sum64("", 0) != tk_sum64("\0", 1));
}

int main(void) {
    /* Folders of this process's own: two runs of the test may overlap. */
    snprintf(g_cache, sizeof g_cache, "%s/test-cache-tokenizer-%d", LMC_BUILD_DIR, (int)getpid());
    snprintf(g_work, sizeof g_work, "%s/test-tokenizer-cache-work-%d", LMC_BUILD_DIR, (int)getpid());
    remove_tree(g_work);
    mkdir(g_work, 0755);
    setenv("LMC_CACHE_DIR", g_cache, 1);
    tk_cache_settle_s = 0; /* the folders here are written a moment before they are loaded */
    read_corpus();
    RUN(test_checksum);
    RUN(test_real_tokenizers);
    RUN(test_concurrent_loads);
    RUN(test_small_tokenizers);
    RUN(test_damaged_caches);
    RUN(test_changed_source);
    RUN(test_cache_folder);
    RUN(test_sweep);
    for (size_t i = 0; i < g_n_corpus; i++) free(g_corpus[i]);
    free(g_corpus);
    remove_tree(g_work);
    remove_tree(g_cache);
    return TEST_REPORT();
}
