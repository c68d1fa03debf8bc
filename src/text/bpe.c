/* The BPE model: vocabulary, merge ranks and the merge loop of HF's
 * models/bpe (lowest rank first, leftmost first among equal ranks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/threadpool.h"
#include "text/tokenizer_internal.h"
#include "text/unicode.h"

/* ---- per-word result cache ----
 * Direct-mapped: a word hashes to one slot; a new word evicts the old one.
 * A slot is one 64-byte cache line, and the table (2 MiB) stays mostly in
 * the CPU's caches: a lookup that misses memory costs as much as encoding a
 * short word. Striped locks keep concurrent encoders from blocking each
 * other much. */
enum { CACHE_SLOTS = 1 << 15, CACHE_LOCKS = 64, CACHE_KEY = 26, CACHE_IDS = 8 };

typedef struct cache_slot {
    uint32_t hash;
    uint8_t klen, nids; /* klen 0: empty */
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_slot;
_Static_assert(sizeof(cache_slot) == 64, "a cache slot is one cache line");

struct tk_bpe_cache {
    _Alignas(64) cache_slot slots[CACHE_SLOTS];
    pthread_mutex_t locks[CACHE_LOCKS];
};

static bool cache_get(tk_bpe_cache *c, uint32_t h, const char *w, size_t n, tk_ids *out) {
    cache_slot *s = &c->slots[h & (CACHE_SLOTS - 1)];
    pthread_mutex_t *lk = &c->locks[h % CACHE_LOCKS];
    int32_t ids[CACHE_IDS];
    size_t nids = 0;
    bool hit = false;
    pthread_mutex_lock(lk);
    if (s->klen == n && s->hash == h && tk_bytes_eq(s->key, w, n)) {
        nids = s->nids;
        memcpy(ids, s->ids, nids * sizeof ids[0]);
        hit = true;
    }
    pthread_mutex_unlock(lk);
    for (size_t i = 0; hit && i < nids; i++)
        if (tk_ids_push(out, ids[i]) != LMC_OK) return false;
    return hit;
}

static void cache_put(tk_bpe_cache *c, uint32_t h, const char *w, size_t n, const int32_t *ids, size_t nids) {
    cache_slot *s = &c->slots[h & (CACHE_SLOTS - 1)];
    pthread_mutex_t *lk = &c->locks[h % CACHE_LOCKS];
    pthread_mutex_lock(lk);
    s->hash = h;
    s->klen = (uint8_t)n;
    s->nids = (uint8_t)nids;
    memcpy(s->key, w, n);
    memcpy(s->ids, ids, nids * sizeof ids[0]);
    pthread_mutex_unlock(lk);
}

/* ---- merges: (left, right) -> (rank, merged id) ---- */

/* The table is two halves, each an open-addressing table of its own
 * (probing wraps around inside the half), and the hash's top bit picks a
 * key's half: two threads fill the halves at once without locks
 * (tk_bpe_parse), each going through the list in order, so a later
 * duplicate wins, as in HF's map. Within its half, a key's home slot is the
 * hash's next 32 bits scaled to the half's size, which is sized for a load
 * of 2/3 (a table of any size, not only powers of two). */
static uint64_t merge_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }
static uint64_t merge_hash(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }
static size_t merge_half(uint64_t key) { return (size_t)(merge_hash(key) >> 63); }
static size_t merge_slot(uint64_t key, size_t half) {
    uint64_t h = merge_hash(key);
    return (size_t)(h >> 63) * half + (size_t)(((uint64_t)(uint32_t)(h >> 31) * half) >> 32);
}
static size_t merge_next(size_t i, size_t half) { return i + 1 == half ? 0 : i + 1 == 2 * half ? half : i + 1; }

static void merge_put(tk_bpe *b, int32_t l, int32_t r, uint32_t rank, int32_t new_id) {
    uint64_t key = merge_key(l, r);
    for (size_t i = merge_slot(key, b->merges_half);; i = merge_next(i, b->merges_half)) {
        tk_merge_entry *e = &b->merges[i];
        if (e->rank == 0 || e->key == key) {
            *e = (tk_merge_entry){key, rank + 1, new_id};
            return;
        }
    }
}

static const tk_merge_entry *merge_get(const tk_bpe *b, int32_t l, int32_t r) {
    if (!b->merges_half) return NULL;
    uint64_t key = merge_key(l, r);
    for (size_t i = merge_slot(key, b->merges_half);; i = merge_next(i, b->merges_half)) {
        const tk_merge_entry *e = &b->merges[i];
        if (e->rank == 0) return NULL;
        if (e->key == key) return e;
    }
}

static char *opt_string(const cJSON *model, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);
    return strdup(cJSON_IsString(v) ? v->valuestring : "");
}

/* Loading does about a million hash lookups on a large vocabulary, nearly
 * each one a cache miss; computing all hashes first and prefetching the slot
 * PREFETCH entries ahead lets the misses overlap. */
enum { PREFETCH = 16 };

/* SentencePiece-style models (Gemma, Llama 2, Mistral) turn spaces into
 * U+2581 and have no pre-tokenizer that splits words, so a whole text
 * between added tokens is one BPE word: thousands of symbols for the merge
 * loop, and never a cache hit. Such a word can be cut right before a U+2581
 * that follows a character c when no token contains c followed by U+2581:
 * no merge can then join the two sides (a merge's result holds both), and
 * the merges on each side happen in the same order (rank, then position)
 * as in the whole word, so the ids are the same. Only for models whose
 * characters carry no prefix/suffix (char_ids kept) and without
 * ignore_merges (which looks the whole word up first): tk_bpe_parse drops
 * the table otherwise. */
static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 */

static lmc_status space_split_table(const tk_vocab_entry *vocab, size_t n, tk_vocab_tables *v) {
    if (v->char_ids[0x2581] < 0) return LMC_OK;
    v->space_join = calloc(0x10000 / 8, 1);
    if (!v->space_join) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *k = vocab[i].key, *end = k + vocab[i].len;
        /* Most keys are a few bytes long: a byte loop beats memmem's setup. */
        for (const char *p = k + 1; p + 3 <= end; p++) {
            if (p[0] != SPACE_MARK[0] || p[1] != SPACE_MARK[1] || p[2] != SPACE_MARK[2]) continue;
            const char *c = p - 1;
            while (c > k && ((unsigned char)*c & 0xC0) == 0x80) c--;
            uint32_t cp;
            if (lmc_utf8_decode(c, (size_t)(p - c), &cp) == (size_t)(p - c) && cp < 0x10000) v->space_join[cp >> 3] |= (uint8_t)(1u << (cp & 7));
        }
    }
    return LMC_OK;
}

static lmc_status vocab_tables(const tk_vocab_entry *vocab, size_t n, tk_vocab_tables *v) {
    int64_t max_id = -1;
    for (size_t i = 0; i < n; i++)
        if (vocab[i].id > max_id) max_id = vocab[i].id;
    if (!tk_id_in_range(max_id, n))
        return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: vocab id %lld is out of range for %zu tokens", (long long)max_id, n);
    v->n_ids = (size_t)(max_id + 1);
    v->id_str = tk_table_alloc(v->n_ids * sizeof *v->id_str);
    v->id_len = tk_table_alloc(v->n_ids * sizeof *v->id_len);
    v->char_ids = malloc(0x10000 * sizeof *v->char_ids);
    if (!v->id_str || !v->id_len || !v->char_ids) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    LMC_CHECK(tk_strmap_init(&v->map, n, v->id_str, v->id_len));
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH < n) tk_strmap_prefetch(&v->map, vocab[i + PREFETCH].hash);
        const tk_vocab_entry *e = &vocab[i];
        const char *was = v->id_str[e->id];
        if (was && (v->id_len[e->id] != e->len || memcmp(was, e->key, e->len))) /* another token with this id */
            LMC_CHECK(tk_strmap_spill(&v->map, was, v->id_len[e->id], e->id));
        v->id_str[e->id] = e->key; /* the map reads keys from here */
        v->id_len[e->id] = e->len;
        tk_strmap_put_h(&v->map, e->key, e->len, e->hash, e->id); /* a repeated key: the last id wins, as in HF */
    }
    /* Single characters by code point, filled in file order, so a repeated
     * key ends with its last id, as in the map. */
    for (uint32_t cp = 0; cp < 0x10000; cp++) v->char_ids[cp] = -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp;
        const tk_vocab_entry *e = &vocab[i];
        if (e->len >= 1 && e->len <= 3 && lmc_utf8_decode(e->key, e->len, &cp) == e->len) v->char_ids[cp] = e->id;
    }
    return space_split_table(vocab, n, v);
}

lmc_status tk_vocab_tables_build(const tk_vocab_entry *vocab, size_t n, tk_vocab_tables *out) {
    memset(out, 0, sizeof *out);
    lmc_status st = vocab_tables(vocab, n, out);
    if (st != LMC_OK) tk_vocab_tables_free(out);
    out->built = st == LMC_OK;
    return st;
}

void tk_vocab_tables_free(tk_vocab_tables *v) {
    tk_strmap_free(&v->map);
    tk_table_free(v->id_str, v->n_ids * sizeof *v->id_str);
    tk_table_free(v->id_len, v->n_ids * sizeof *v->id_len);
    free(v->char_ids);
    free(v->space_join);
    memset(v, 0, sizeof *v);
}

/* Moves the vocabulary's tables (the scanner's, or built now) into b, with
 * the arena their strings live in. */
static lmc_status take_vocab(tk_json_model *sc, tk_bpe *b) {
    if (!sc->tables.built) LMC_CHECK(tk_vocab_tables_build(sc->vocab, sc->n_vocab, &sc->tables));
    tk_vocab_tables *v = &sc->tables;
    b->vocab = v->map;
    b->id_str = v->id_str;
    b->id_len = v->id_len;
    b->n_ids = v->n_ids;
    b->char_ids = v->char_ids;
    b->space_join = v->space_join;
    memset(v, 0, sizeof *v);
    b->arena = sc->arena;
    b->arena_size = sc->arena_size;
    sc->arena = NULL;
    sc->arena_size = 0;
    return LMC_OK;
}

/* Moves the cache's tables into b. */
static void take_cached(tk_bpe_tables *c, tk_bpe *b) {
    b->vocab = c->vocab.map;
    b->id_str = c->vocab.id_str;
    b->id_len = c->vocab.id_len;
    b->n_ids = c->vocab.n_ids;
    b->char_ids = c->vocab.char_ids;
    b->space_join = c->vocab.space_join;
    b->arena = c->arena;
    b->arena_size = c->arena_size;
    b->merges = c->merges;
    b->merges_half = c->merges_half;
    memset(c, 0, sizeof *c);
}

void tk_bpe_tables_free(tk_bpe_tables *t) {
    tk_vocab_tables_free(&t->vocab);
    tk_table_free(t->arena, t->arena_size);
    tk_table_free(t->merges, t->merges_half * 2 * sizeof *t->merges);
    memset(t, 0, sizeof *t);
}

/* Drops the tables the model's options leave unused (the cache then holds
 * exactly what the model keeps). */
static void drop_unused(tk_bpe *b) {
    /* Characters decorated with a prefix or suffix are not looked up by code point. */
    if (b->prefix_len || b->suffix_len) {
        free(b->char_ids);
        b->char_ids = NULL;
    }
    if (!b->char_ids || b->ignore_merges) {
        free(b->space_join);
        b->space_join = NULL;
    }
}

typedef struct resolved {
    int32_t l, r, merged;
} resolved;

/* The id of l + r (less r's continuing_subword_prefix), or -1. `guess` is
 * tried first: real files list merges in the order of their results' ids. */
static int32_t merged_id(const tk_bpe *b, const tk_merge_text *m, int32_t guess, bool guess_ok, tk_buf *joined) {
    size_t skip = b->prefix_len <= m->rl && !memcmp(m->r, b->prefix, b->prefix_len) ? b->prefix_len : 0;
    const char *r = m->r + skip;
    size_t rl = m->rl - skip, len = m->ll + rl;
    for (int64_t c = guess; guess_ok && c <= (int64_t)guess + 1; c++)
        if (c >= 0 && (size_t)c < b->n_ids && b->id_str[c] && b->id_len[c] == len && tk_bytes_eq(b->id_str[c], m->l, m->ll) &&
            tk_bytes_eq(b->id_str[c] + m->ll, r, rl))
            return (int32_t)c;
    joined->len = 0;
    if (tk_buf_append(joined, m->l, m->ll) != LMC_OK || tk_buf_append(joined, r, rl) != LMC_OK) return -1;
    return tk_strmap_get(&b->vocab, joined->p, joined->len);
}

/* Merges are resolved and inserted in two parts (the list's halves, the
 * table's halves), run on two threads where the pool has them; the table
 * does not depend on the thread count. */
enum { MERGE_PARTS = 2 };

typedef struct merge_job {
    const tk_json_model *sc;
    tk_bpe *b;
    resolved *res;
    /* Part t's merges [lo, hi) by table half: those of half 0 in
     * order[lo, split[t]), those of half 1 in order(split[t], hi - 1]
     * read downwards, both in list order. */
    uint32_t *order;
    size_t split[MERGE_PARTS];
    bool guess_ok;
    size_t first_bad[MERGE_PARTS]; /* per part: the first merge that does not resolve, or n */
} merge_job;

static size_t part_lo(size_t n, int64_t t) { return n * (size_t)t / MERGE_PARTS; }

/* Part t of the list: the ids of each merge's sides and result, and the
 * table half each goes to. */
static void resolve_part(void *ctx, int64_t t, int64_t end, int thread) {
    (void)end, (void)thread;
    merge_job *job = ctx;
    const tk_json_model *sc = job->sc;
    const tk_bpe *b = job->b;
    size_t n = sc->n_merges, lo = part_lo(n, t), hi = part_lo(n, t + 1), up = lo, down = hi;
    tk_buf joined = {0};
    int32_t guess = -1;
    job->first_bad[t] = n;
    for (size_t i = lo; i < hi; i++) {
        if (i + PREFETCH < hi) {
            tk_strmap_prefetch(&b->vocab, sc->merges[i + PREFETCH].hl);
            tk_strmap_prefetch(&b->vocab, sc->merges[i + PREFETCH].hr);
        }
        const tk_merge_text *m = &sc->merges[i];
        resolved *o = &job->res[i];
        o->l = tk_strmap_get_h(&b->vocab, m->l, m->ll, m->hl);
        o->r = tk_strmap_get_h(&b->vocab, m->r, m->rl, m->hr);
        o->merged = o->l < 0 || o->r < 0 ? -1 : merged_id(b, m, guess, job->guess_ok, &joined);
        if (o->merged < 0) {
            job->first_bad[t] = i;
            break;
        }
        guess = o->merged;
        if (merge_half(merge_key(o->l, o->r)) == 0) job->order[up++] = (uint32_t)i;
        else job->order[--down] = (uint32_t)i;
    }
    job->split[t] = up;
    tk_buf_free(&joined);
}

/* Half h of the table: its merges, in list order. */
static void insert_half(void *ctx, int64_t h, int64_t end, int thread) {
    (void)end, (void)thread;
    merge_job *job = ctx;
    tk_bpe *b = job->b;
    const resolved *res = job->res;
    size_t n = job->sc->n_merges;
    for (int t = 0; t < MERGE_PARTS; t++) {
        size_t lo = h == 0 ? part_lo(n, t) : job->split[t], count = h == 0 ? job->split[t] - lo : part_lo(n, t + 1) - lo;
        /* The k-th merge of this half in part t, with half 1's read downwards. */
#define AT(k) job->order[h == 0 ? lo + (k) : lo + count - 1 - (k)]
        for (size_t k = 0; k < count; k++) {
            if (k + PREFETCH < count) {
                const resolved *a = &res[AT(k + PREFETCH)];
                __builtin_prefetch(&b->merges[merge_slot(merge_key(a->l, a->r), b->merges_half)]);
            }
            uint32_t i = AT(k);
            merge_put(b, res[i].l, res[i].r, i, res[i].merged);
        }
#undef AT
    }
}

static lmc_status parse_merges(const tk_json_model *sc, tk_bpe *b) {
    size_t n = sc->n_merges;
    if (n > UINT32_MAX) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: %zu merges are too many", n);
    /* The guess for merged ids is only safe when every string has one id. */
    merge_job job = {.sc = sc, .b = b, .res = tk_table_alloc(n * sizeof(resolved)), .order = tk_table_alloc(n * sizeof(uint32_t)),
                     .guess_ok = b->vocab.n == sc->n_vocab};
    lmc_status st = LMC_OK;
    if (!job.res || !job.order) { st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); goto done; }
    /* Small lists are not worth a second thread. */
    bool threads = n >= 65536 && lmc_num_threads() >= 2;
    if (threads) lmc_parallel_run(MERGE_PARTS, resolve_part, &job);
    else for (int t = 0; t < MERGE_PARTS; t++) resolve_part(&job, t, t + 1, 0);
    size_t bad = n;
    for (int t = 0; t < MERGE_PARTS; t++)
        if (job.first_bad[t] < bad) bad = job.first_bad[t];
    if (bad < n) {
        const tk_merge_text *m = &sc->merges[bad];
        const resolved *o = &job.res[bad];
        if (o->l < 0 || o->r < 0)
            st = lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: merge %zu uses '%.*s', which is not in the vocabulary", bad,
                               (int)(o->l < 0 ? m->ll : m->rl), o->l < 0 ? m->l : m->r);
        else
            st = lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: merge %zu gives '%.*s%.*s', which is not in the vocabulary", bad,
                               (int)m->ll, m->l, (int)m->rl, m->r);
        goto done;
    }
    /* Each half sized for its own merges (duplicates counted too). */
    size_t in_half0 = 0;
    for (int t = 0; t < MERGE_PARTS; t++) in_half0 += job.split[t] - part_lo(n, t);
    size_t most = in_half0 > n - in_half0 ? in_half0 : n - in_half0;
    b->merges = tk_table_alloc((most * 3 / 2 + 8) * 2 * sizeof *b->merges);
    if (!b->merges) { st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); goto done; }
    b->merges_half = most * 3 / 2 + 8;
    if (threads) lmc_parallel_run(2, insert_half, &job);
    else for (int h = 0; h < 2; h++) insert_half(&job, h, h + 1, 0);
done:
    tk_table_free(job.res, n * sizeof(resolved));
    tk_table_free(job.order, n * sizeof(uint32_t));
    return st;
}

/* The options of the "model" object: checked and read the same way whether
 * the tables come from the scanner or the cache. */
static lmc_status parse_options(const cJSON *model, bool has_vocab, bool has_merges, tk_bpe *b) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE"))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: unsupported model type '%s'", type->valuestring);
    if (!type && !merges)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: model without a type is not BPE");
    /* The scanner took vocab and merges when they were an object and an array. */
    if (!has_vocab) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    if (merges && !has_merges) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: model.merges is not an array");

    b->prefix = opt_string(model, "continuing_subword_prefix");
    b->suffix = opt_string(model, "end_of_word_suffix");
    if (!b->prefix || !b->suffix) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    b->prefix_len = strlen(b->prefix);
    b->suffix_len = strlen(b->suffix);
    b->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "fuse_unk"));
    b->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    b->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
    return LMC_OK;
}

/* What follows from the options and the vocabulary: the unknown and byte
 * tokens' ids, and the per-word cache. */
static lmc_status finish_model(const cJSON *model, tk_bpe *b) {
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        b->unk_token = strdup(unk->valuestring);
        if (!b->unk_token) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        b->unk_id = tk_strmap_get(&b->vocab, unk->valuestring, strlen(unk->valuestring));
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_ids[i] = tk_strmap_get(&b->vocab, name, 6);
    }
    /* Mapped: page-aligned, and zero pages cost nothing until a word lands there. */
    void *cache = mmap(NULL, sizeof *b->cache, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (cache == MAP_FAILED) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    b->cache = cache;
    for (int i = 0; i < CACHE_LOCKS; i++) pthread_mutex_init(&b->cache->locks[i], NULL);
    return LMC_OK;
}

lmc_status tk_bpe_parse(const cJSON *model, tk_json_model *sc, tk_bpe_tables *cached, tk_bpe *b) {
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    bool has_vocab = cached ? true : sc->has_vocab, has_merges = cached ? cached->merges != NULL : sc->has_merges;
    LMC_CHECK(parse_options(model, has_vocab, has_merges, b));
    if (cached) {
        take_cached(cached, b);
    } else {
        LMC_CHECK(take_vocab(sc, b));
        if (sc->has_merges) LMC_CHECK(parse_merges(sc, b));
    }
    drop_unused(b);
    return finish_model(model, b);
}

/* Mixes what places keys in the tables: tk_hash, the strmap's home slots and
 * the merge table's slots, for a few fixed keys and sizes. */
uint64_t tk_bpe_layout_id(void) {
    static const char *keys[] = {"", "a", "\xE2\x96\x81the", "0123456789abcdefXYZ"};
    uint64_t mix[16];
    size_t n = 0;
    tk_strmap m = {.cap = 1000003};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        uint32_t h = tk_hash(keys[i], strlen(keys[i]));
        mix[n++] = h;
        mix[n++] = tk_strmap_home(&m, h);
        mix[n++] = merge_slot(merge_key((int32_t)i, (int32_t)(h & 0xFFFF)), 777777);
    }
    mix[n++] = sizeof(struct tk_strmap_spilled);
    return tk_sum64(mix, n * sizeof mix[0]);
}

void tk_bpe_free(tk_bpe *b) {
    tk_strmap_free(&b->vocab);
    tk_table_free(b->id_str, b->n_ids * sizeof *b->id_str);
    tk_table_free(b->id_len, b->n_ids * sizeof *b->id_len);
    tk_table_free(b->arena, b->arena_size);
    tk_table_free(b->merges, b->merges_half * 2 * sizeof *b->merges);
    free(b->unk_token);
    free(b->prefix);
    free(b->suffix);
    free(b->char_ids);
    free(b->space_join);
    if (b->cache) {
        for (int i = 0; i < CACHE_LOCKS; i++) pthread_mutex_destroy(&b->cache->locks[i]);
        munmap(b->cache, sizeof *b->cache);
    }
    memset(b, 0, sizeof *b);
}

/* ---- the merge loop ---- */

typedef struct sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes covered; 0 once merged into its left neighbour */
} sym;

/* Queue entries order by rank, then position: both packed in one key. */
typedef struct qitem {
    uint64_t key; /* rank << 32 | position */
    int32_t new_id;
} qitem;

static qitem q_item(uint32_t rank, uint32_t pos, int32_t new_id) { return (qitem){((uint64_t)rank << 32) | pos, new_id}; }

static void q_push(qitem *q, size_t *n, qitem x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q[p].key <= x.key) break;
        q[i] = q[p];
        i = p;
    }
    q[i] = x;
}

static qitem q_pop(qitem *q, size_t *n) {
    qitem top = q[0], x = q[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && q[c + 1].key < q[c].key) c++;
        if (q[c].key >= x.key) break;
        q[i] = q[c];
        i = c;
    }
    if (*n) q[i] = x;
    return top;
}

/* Looks up one character (decorated with prefix/suffix as HF does). */
static int32_t char_id(const tk_bpe *b, const char *c, size_t k, uint32_t cp, bool first, bool last, tk_buf *key) {
    if (b->char_ids && cp < 0x10000) return b->char_ids[cp];
    if (!b->prefix_len && !b->suffix_len) return tk_strmap_get(&b->vocab, c, k);
    key->len = 0;
    if ((!first && tk_buf_append(key, b->prefix, b->prefix_len) != LMC_OK) || tk_buf_append(key, c, k) != LMC_OK ||
        (last && tk_buf_append(key, b->suffix, b->suffix_len) != LMC_OK))
        return -1; /* out of memory: treated as unknown */
    return tk_strmap_get(&b->vocab, key->p, key->len);
}

static lmc_status encode_piece(const tk_bpe *b, const char *w, size_t n, tk_ids *out) {
    if (n == 0) return LMC_OK;
    if (b->ignore_merges) {
        int32_t id = tk_strmap_get(&b->vocab, w, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    uint32_t h = 0;
    bool cacheable = n <= CACHE_KEY;
    if (cacheable) {
        h = tk_hash(w, n);
        size_t before = out->n;
        if (cache_get(b->cache, h, w, n, out)) return LMC_OK;
        out->n = before;
    }

    /* Initial symbols: one per character (or per byte with byte fallback). */
    /* Byte fallback of decorated characters can make more symbols than bytes;
     * the queue holds at most the initial pairs plus two per merge. */
    size_t max_syms = n * (1 + b->prefix_len) + b->suffix_len + 1;
    sym stack_syms[64];
    qitem stack_q[3 * 64];
    sym *syms = max_syms <= 64 ? stack_syms : malloc(max_syms * sizeof *syms);
    qitem *q = max_syms <= 64 ? stack_q : malloc(3 * max_syms * sizeof *q);
    lmc_status st = LMC_OK;
    tk_buf key = {0};
    if (!syms || !q) { st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); goto done; }
    size_t ns = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = lmc_utf8_decode(w + i, n - i, &cp);
        if (!k) { k = 1; cp = 0x110000; } /* cannot happen: input is valid UTF-8 */
        bool first = i == 0, last = i + k == n;
        int32_t id = char_id(b, w + i, k, cp, first, last, &key);
        if (id >= 0) {
            if (unk >= 0) { syms[ns++] = (sym){unk, 0, 0, unk_len}; unk = -1; }
            syms[ns++] = (sym){id, 0, 0, (uint32_t)k};
        } else {
            /* The decorated character's bytes, when all have <0xXX> tokens. */
            const char *cs = w + i;
            size_t cl = k;
            if (b->prefix_len || b->suffix_len) { cs = key.p; cl = key.len; }
            bool bytes_ok = b->byte_fallback;
            for (size_t j = 0; bytes_ok && j < cl; j++) bytes_ok = b->byte_ids[(unsigned char)cs[j]] >= 0;
            if (bytes_ok) {
                /* A pending unk stays pending (HF adds it before the next known character). */
                for (size_t j = 0; j < cl; j++) syms[ns++] = (sym){b->byte_ids[(unsigned char)cs[j]], 0, 0, 1};
            } else if (b->unk_token) {
                if (b->unk_id < 0) {
                    st = lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: unk_token '%s' is not in the vocabulary", b->unk_token);
                    goto done;
                }
                if (unk >= 0 && b->fuse_unk) unk_len += (uint32_t)k;
                else {
                    if (unk >= 0) syms[ns++] = (sym){unk, 0, 0, unk_len};
                    unk = b->unk_id;
                    unk_len = (uint32_t)k;
                }
            }
            /* No byte fallback and no unk token: HF drops the character. */
        }
        i += k;
    }
    if (unk >= 0) syms[ns++] = (sym){unk, 0, 0, unk_len};
    for (size_t i = 0; i < ns; i++) {
        syms[i].prev = (int32_t)i - 1;
        syms[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }

    size_t nq = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const tk_merge_entry *m = merge_get(b, syms[i].id, syms[i + 1].id);
        if (m) q_push(q, &nq, q_item(m->rank, (uint32_t)i, m->new_id));
    }
    while (nq) {
        qitem top = q_pop(q, &nq);
        uint32_t pos = (uint32_t)top.key;
        sym *s = &syms[pos];
        if (s->len == 0 || s->next < 0) continue;
        sym *r = &syms[s->next];
        const tk_merge_entry *m = merge_get(b, s->id, r->id);
        if (!m || m->new_id != top.new_id) continue; /* stale entry */
        s->id = top.new_id;
        s->len += r->len;
        r->len = 0;
        s->next = r->next;
        if (s->next >= 0) syms[s->next].prev = (int32_t)pos;
        if (s->prev >= 0) {
            const tk_merge_entry *pm = merge_get(b, syms[s->prev].id, s->id);
            if (pm) q_push(q, &nq, q_item(pm->rank, (uint32_t)s->prev, pm->new_id));
        }
        if (s->next >= 0) {
            const tk_merge_entry *nm = merge_get(b, s->id, syms[s->next].id);
            if (nm) q_push(q, &nq, q_item(nm->rank, pos, nm->new_id));
        }
    }
    size_t before = out->n;
    for (size_t i = 0; i < ns && st == LMC_OK; i++)
        if (syms[i].len) st = tk_ids_push(out, syms[i].id);
    if (st == LMC_OK && cacheable && out->n > before && out->n - before <= CACHE_IDS)
        cache_put(b->cache, h, w, n, out->v + before, out->n - before);
done:
    tk_buf_free(&key);
    if (syms != stack_syms) free(syms);
    if (q != stack_q) free(q);
    return st;
}

/* A word, cut before each U+2581 where space_split_table allows it. */
lmc_status tk_bpe_encode_word(const tk_bpe *b, const char *w, size_t n, tk_ids *out) {
    if (!b->space_join) return encode_piece(b, w, n, out);
    size_t start = 0;
    for (const char *p = w + 1, *end = w + n; p + 3 <= end && (p = memchr(p, SPACE_MARK[0], (size_t)(end - p))); p++) {
        if (end - p < 3 || p[1] != SPACE_MARK[1] || p[2] != SPACE_MARK[2]) continue;
        const char *c = p - 1;
        while (c > w && ((unsigned char)*c & 0xC0) == 0x80) c--;
        uint32_t cp;
        if (lmc_utf8_decode(c, (size_t)(p - c), &cp) != (size_t)(p - c) || cp >= 0x10000 || b->char_ids[cp] < 0 ||
            (b->space_join[cp >> 3] >> (cp & 7) & 1))
            continue;
        size_t at = (size_t)(p - w);
        LMC_CHECK(encode_piece(b, w + start, at - start, out));
        start = at;
    }
    return encode_piece(b, w + start, n - start, out);
}
