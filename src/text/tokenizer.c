/* Tokenizer: loading tokenizer.json and its config files, encoding and
 * decoding. See include/lmc/tokenizer.h and tokenizer_internal.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_util.h"
#include "text/tokenizer_internal.h"
#include "text/unicode.h"

/* ---- files ---- */

/* Reads a whole file. A missing file gives LMC_ERR_NOT_FOUND when
 * missing_ok is set (the caller then treats it as absent), else LMC_ERR_IO. */
static lmc_status read_file(const char *path, bool missing_ok, char **data, size_t *len) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT) return LMC_ERR_NOT_FOUND;
        return lmc_set_error(LMC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    tk_buf b = {0};
    char chunk[1 << 16];
    size_t got;
    lmc_status st = LMC_OK;
    while (st == LMC_OK && (got = fread(chunk, 1, sizeof chunk, f)) > 0) st = tk_buf_append(&b, chunk, got);
    if (st == LMC_OK && ferror(f)) st = lmc_set_error(LMC_ERR_IO, "cannot read %s", path);
    fclose(f);
    if (st == LMC_OK && !b.p) st = tk_buf_append(&b, "", 0);
    if (st != LMC_OK) { tk_buf_free(&b); return st; }
    *data = b.p;
    *len = b.len;
    return LMC_OK;
}

/* tokenizer.json, mapped read-only where the file can be (its pages then come
 * straight from the page cache, with no copy), else read into memory. */
typedef struct mapped_file {
    char *data;
    size_t len;
    bool mapped;
} mapped_file;

static lmc_status map_fd(int fd, const char *path, mapped_file *f) {
    *f = (mapped_file){0};
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p != MAP_FAILED) {
            *f = (mapped_file){p, (size_t)st.st_size, true};
            return LMC_OK;
        }
    }
    return read_file(path, false, &f->data, &f->len); /* pipes, empty files, mmap refused */
}

static lmc_status map_file(const char *path, mapped_file *f) {
    *f = (mapped_file){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lmc_set_error(LMC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    lmc_status st = map_fd(fd, path, f);
    close(fd);
    return st;
}

static void unmap_file(mapped_file *f) {
    if (f->mapped) munmap(f->data, f->len);
    else free(f->data);
    *f = (mapped_file){0};
}

static lmc_status parse_json(const char *data, size_t len, const char *name, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (!*out) {
        size_t at = end && end >= data ? (size_t)(end - data) : 0;
        return lmc_set_error(LMC_ERR_FORMAT, "%s: invalid JSON near byte %zu", name, at);
    }
    return LMC_OK;
}

/* ---- added tokens: trie for leftmost-longest matching ---- */

static lmc_status trie_insert(tk_trie *t, const char *s, size_t n, int32_t token) {
    if (n == 0) return LMC_OK;
    int32_t *link = &t->root_child[(unsigned char)s[0]];
    int32_t node = -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t cur = *link;
        while (cur >= 0 && t->nodes[cur].byte != c) cur = t->nodes[cur].sibling;
        if (cur < 0) {
            if (t->n == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 256;
                tk_trie_node *v = realloc(t->nodes, cap * sizeof *v);
                if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
                t->nodes = v;
                t->cap = cap;
                link = i == 0 ? &t->root_child[c] : &t->nodes[node].child; /* realloc moved the nodes */
            }
            cur = (int32_t)t->n++;
            t->nodes[cur] = (tk_trie_node){-1, *link, -1, c};
            *link = cur;
        }
        node = cur;
        link = &t->nodes[node].child;
    }
    if (t->nodes[node].token < 0) t->nodes[node].token = token; /* the first of equal contents wins */
    return LMC_OK;
}

/* The longest added token starting at s[i], or -1; *len gets its length. */
static int32_t trie_longest(const tk_trie *t, const char *s, size_t n, size_t i, size_t *len) {
    int32_t best = -1;
    int32_t cur = t->root_child[(unsigned char)s[i]];
    for (size_t k = i; cur >= 0;) {
        if (t->nodes[cur].token >= 0) { best = t->nodes[cur].token; *len = k + 1 - i; }
        if (++k >= n) break;
        unsigned char c = (unsigned char)s[k];
        cur = t->nodes[cur].child;
        while (cur >= 0 && t->nodes[cur].byte != c) cur = t->nodes[cur].sibling;
    }
    return best;
}

static uint32_t last_char(const char *s, size_t n) {
    size_t st = n - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
    uint32_t cp = 0xFFFD;
    lmc_utf8_decode(s + st, n - st, &cp);
    return cp;
}

typedef struct segment {
    size_t start, end;
    int32_t id; /* -1: text to tokenize */
} segment;

typedef struct segments {
    segment *v;
    size_t n, cap;
} segments;

static lmc_status seg_add(segments *s, size_t start, size_t end, int32_t id) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        segment *v = realloc(s->v, cap * sizeof *v);
        if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (segment){start, end, id};
    return LMC_OK;
}

/* HF AddedVocabulary::find_matches: non-overlapping leftmost-longest matches,
 * single_word matches dropped when inside a word, lstrip/rstrip taking the
 * neighbouring whitespace. */
static lmc_status find_added(const lmc_tokenizer *t, const tk_trie *trie, const char *s, size_t n, segments *out) {
    out->n = 0;
    size_t start_offset = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        int32_t k = trie_longest(trie, s, n, i, &len);
        if (k < 0) { i++; continue; }
        const tk_added *a = &t->added[k];
        size_t start = i, stop = i + len;
        i = stop;
        if (start < start_offset) continue; /* inside whitespace an earlier rstrip took */
        if (a->single_word) {
            uint32_t cp;
            bool before_word = start > 0 && lmc_uc_is_word(last_char(s, start));
            bool after_word = stop < n && lmc_utf8_decode(s + stop, n - stop, &cp) && lmc_uc_is_word(cp);
            if (before_word || after_word) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > start_offset) {
                uint32_t cp = last_char(s, ns);
                if (!lmc_uc_is_whitespace(cp)) break;
                size_t st = ns - 1;
                while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
                ns = st;
            }
            start = ns;
        }
        if (a->rstrip) {
            uint32_t cp;
            size_t m;
            while (stop < n && (m = lmc_utf8_decode(s + stop, n - stop, &cp)) && lmc_uc_is_whitespace(cp)) stop += m;
            i = stop;
        }
        if (start_offset < start) LMC_CHECK(seg_add(out, start_offset, start, -1));
        LMC_CHECK(seg_add(out, start, stop, a->id));
        start_offset = stop;
    }
    if (start_offset != n || n == 0) LMC_CHECK(seg_add(out, start_offset, n, -1));
    return LMC_OK;
}

/* ---- post-processors ---- */

static lmc_status special_ids(const cJSON *spec, const char *name, tk_ids *out) {
    /* TemplateProcessing "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], ...}} */
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(spec, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
    if (!cJSON_IsArray(ids))
        return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: TemplateProcessing special token '%s' is not defined", name);
    const cJSON *v;
    cJSON_ArrayForEach(v, ids) {
        if (!cJSON_IsNumber(v)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: TemplateProcessing '%s' has a bad id", name);
        LMC_CHECK(tk_ids_push(out, v->valueint));
    }
    return LMC_OK;
}

static lmc_status postproc_parse(const cJSON *j, tk_postproc *out) {
    memset(out, 0, sizeof *out);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: post_processor without a type");
    const char *ty = type->valuestring;
    tk_ids ids = {0};
    lmc_status st = LMC_OK;
    if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
        if (!cJSON_IsArray(single)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: TemplateProcessing without 'single'");
        const cJSON *piece;
        cJSON_ArrayForEach(piece, single) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (sp && cJSON_IsString(id)) st = special_ids(spec, id->valuestring, &ids);
            else if (sq) st = tk_ids_push(&ids, -1);
            else st = lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: TemplateProcessing piece is neither SpecialToken nor Sequence");
            if (st != LMC_OK) break;
        }
    } else if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        /* [CLS] A [SEP]: "cls": ["[CLS]", 101], "sep": ["[SEP]", 102] */
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || !cJSON_IsNumber(cJSON_GetArrayItem(cls, 1)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(sep, 1)))
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: %s needs 'cls' and 'sep'", ty);
        if ((st = tk_ids_push(&ids, cJSON_GetArrayItem(cls, 1)->valueint)) == LMC_OK && (st = tk_ids_push(&ids, -1)) == LMC_OK)
            st = tk_ids_push(&ids, cJSON_GetArrayItem(sep, 1)->valueint);
    } else if (!strcmp(ty, "ByteLevel")) {
        out->type = TK_POST_BYTELEVEL; /* only trims offsets, which lmc does not report */
        return LMC_OK;
    } else if (!strcmp(ty, "Sequence")) {
        out->type = TK_POST_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "processors");
        if (!cJSON_IsArray(items)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Sequence post_processor without 'processors'");
        size_t n = (size_t)cJSON_GetArraySize(items);
        out->items = calloc(n ? n : 1, sizeof *out->items);
        if (!out->items) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            /* Counted first: a failed item's parts are freed with the rest. */
            LMC_CHECK(postproc_parse(it, &out->items[out->n_items++]));
        }
        return LMC_OK;
    } else {
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: unsupported post_processor type '%s'", ty);
    }
    out->type = TK_POST_TEMPLATE;
    out->single = ids.v;
    out->n_single = ids.n;
    return st;
}

static void postproc_free(tk_postproc *p) {
    free(p->single);
    for (size_t i = 0; i < p->n_items; i++) postproc_free(&p->items[i]);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* Applies the template: *ids becomes the template with the sequence spliced in. */
static lmc_status postproc_apply(const tk_postproc *p, tk_ids *ids) {
    if (p->type == TK_POST_BYTELEVEL) return LMC_OK;
    if (p->type == TK_POST_SEQUENCE) {
        for (size_t i = 0; i < p->n_items; i++) LMC_CHECK(postproc_apply(&p->items[i], ids));
        return LMC_OK;
    }
    tk_ids res = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < p->n_single && st == LMC_OK; i++) {
        if (p->single[i] >= 0) st = tk_ids_push(&res, p->single[i]);
        else
            for (size_t k = 0; k < ids->n && st == LMC_OK; k++) st = tk_ids_push(&res, ids->v[k]);
    }
    if (st != LMC_OK) { free(res.v); return st; }
    free(ids->v);
    *ids = res;
    return LMC_OK;
}

/* ---- loading ---- */

static bool json_flag(const cJSON *j, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, key)); }

static lmc_status parse_added(lmc_tokenizer *t, const cJSON *arr) {
    if (!arr || cJSON_IsNull(arr)) return LMC_OK;
    if (!cJSON_IsArray(arr)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX || !cJSON_IsString(content))
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: added token %zu needs an 'id' and a 'content'", t->n_added);
        tk_added *a = &t->added[t->n_added++];
        if (!(a->content = strdup(content->valuestring))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        a->len = strlen(a->content);
        a->id = id->valueint;
        a->special = json_flag(e, "special");
        a->lstrip = json_flag(e, "lstrip");
        a->rstrip = json_flag(e, "rstrip");
        a->single_word = json_flag(e, "single_word");
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        a->normalized = cJSON_IsBool(norm) ? cJSON_IsTrue(norm) : !a->special;
    }
    return LMC_OK;
}

/* Orders indexes into the added list (ctx) by id, then by index. */
static int by_id_then_index(const void *a, const void *b, void *ctx) {
    const tk_added *added = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    int32_t x = added[i].id, y = added[j].id;
    if (x != y) return x < y ? -1 : 1;
    return i < j ? -1 : i > j;
}

const char *tk_token_str(const lmc_tokenizer *t, int32_t id, uint32_t *len) {
    if (id < 0 || (size_t)id >= t->vocab_size) return NULL;
    if (t->tok_flags[id] & TK_TOK_ADDED) {
        size_t lo = 0, hi = t->n_added_ids;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (t->added[t->added_ids[mid]].id <= id) lo = mid;
            else hi = mid;
        }
        const tk_added *a = &t->added[t->added_ids[lo]];
        *len = (uint32_t)a->len;
        return a->content;
    }
    if ((size_t)id >= t->bpe.n_ids || !t->bpe.id_str[id]) return NULL;
    *len = t->bpe.id_len[id];
    return t->bpe.id_str[id];
}

/* The flags by id and the added-token map and matchers. */
static lmc_status build_tables(lmc_tokenizer *t) {
    size_t size = t->bpe.n_ids;
    for (size_t i = 0; i < t->n_added; i++) {
        if (!tk_id_in_range(t->added[i].id, t->bpe.vocab.n + t->n_added))
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: added token id %d is out of range for %zu tokens", (int)t->added[i].id,
                                 t->bpe.vocab.n + t->n_added);
        if ((size_t)t->added[i].id + 1 > size) size = (size_t)t->added[i].id + 1;
    }
    t->vocab_size = size;
    t->tok_flags = tk_table_alloc(size);
    t->added_str = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_str);
    t->added_len = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_len);
    t->added_ids = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_ids);
    if (!t->tok_flags || !t->added_str || !t->added_len || !t->added_ids)
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    LMC_CHECK(tk_strmap_init(&t->added_map, t->n_added, t->added_str, t->added_len));
    for (size_t i = 0; i < t->n_added; i++) {
        tk_added *a = &t->added[i];
        t->tok_flags[a->id] = (uint8_t)(TK_TOK_ADDED | (a->special ? TK_TOK_SPECIAL : 0));
        t->added_str[i] = a->content;
        t->added_len[i] = (uint32_t)a->len;
        tk_strmap_put(&t->added_map, a->content, a->len, (int32_t)i); /* a repeated content: the last one wins */
    }
    /* Each added id's last entry (its content is the id's string), by id. */
    for (size_t i = 0; i < t->n_added; i++) t->added_ids[i] = (uint32_t)i;
    qsort_r(t->added_ids, t->n_added, sizeof *t->added_ids, by_id_then_index, t->added);
    size_t k = 0;
    for (size_t i = 0; i < t->n_added; i++) {
        if (k > 0 && t->added[t->added_ids[k - 1]].id == t->added[t->added_ids[i]].id) k--;
        t->added_ids[k++] = t->added_ids[i];
    }
    t->n_added_ids = k;
    /* Special-ness goes by content, as HF's is_special_token does. */
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special)
            for (size_t k = 0; k < t->n_added; k++)
                if (t->added[k].len == t->added[i].len && !memcmp(t->added[k].content, t->added[i].content, t->added[i].len))
                    t->tok_flags[t->added[k].id] |= TK_TOK_SPECIAL;

    for (int i = 0; i < 256; i++) t->trie_raw.root_child[i] = t->trie_norm.root_child[i] = -1;
    tk_buf norm = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < t->n_added && st == LMC_OK; i++) {
        tk_added *a = &t->added[i];
        if (!a->normalized || !t->has_normalizer) {
            st = trie_insert(a->normalized ? &t->trie_norm : &t->trie_raw, a->content, a->len, (int32_t)i);
            t->has_norm_trie |= a->normalized;
        } else {
            st = tk_normalize(&t->normalizer, a->content, a->len, &norm);
            if (st == LMC_OK) st = trie_insert(&t->trie_norm, norm.p ? norm.p : "", norm.len, (int32_t)i);
            t->has_norm_trie = true;
        }
    }
    tk_buf_free(&norm);
    return st;
}

/* The document's rest (all but model.vocab and model.merges) with the
 * model's tables from the scanner (sc) or the cache (cached). */
static lmc_status parse_tokenizer(lmc_tokenizer *t, const cJSON *root, tk_json_model *sc, tk_bpe_tables *cached) {
    if (!cJSON_IsObject(root)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: not a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: missing 'model'");
    LMC_CHECK(tk_bpe_parse(model, sc, cached, &t->bpe));
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (j && !cJSON_IsNull(j)) {
        t->has_normalizer = true;
        LMC_CHECK(tk_normalizer_parse(j, &t->normalizer));
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (j && !cJSON_IsNull(j)) {
        t->has_pretokenizer = true;
        LMC_CHECK(tk_pretokenizer_parse(j, &t->pretokenizer));
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (j && !cJSON_IsNull(j)) {
        t->has_decoder = true;
        LMC_CHECK(tk_decoder_parse(j, &t->decoder));
        t->decoder_bytefallback = tk_decoder_has_bytefallback(&t->decoder);
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (j && !cJSON_IsNull(j)) {
        t->has_postproc = true;
        LMC_CHECK(postproc_parse(j, &t->postproc));
    }
    LMC_CHECK(parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")));
    return build_tables(t);
}

/* A token given in a config as "text" or {"content": "text"}. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static lmc_status dup_opt(const char *s, char **out) {
    if (!s) return LMC_OK;
    if (!(*out = strdup(s))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    return LMC_OK;
}

static lmc_status add_eos(lmc_tokenizer *t, int64_t id) {
    if (id < 0 || id > INT32_MAX) return LMC_OK;
    for (size_t i = 0; i < t->n_eos; i++)
        if (t->eos_ids[i] == id) return LMC_OK;
    int32_t *v = realloc(t->eos_ids, (t->n_eos + 1) * sizeof *v);
    if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    t->eos_ids = v;
    t->eos_ids[t->n_eos++] = (int32_t)id;
    return LMC_OK;
}

/* eos_token_id as a number or a list of numbers (also under text_config). */
static lmc_status model_config_ids(lmc_tokenizer *t, const cJSON *cfg) {
    if (!cJSON_IsObject(cfg)) return LMC_OK;
    /* ids that are not integers in range are left out (a double cast out of range is undefined) */
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id");
    uint64_t id;
    if (lmc_json_uint(eos, &id)) LMC_CHECK(add_eos(t, id > INT32_MAX ? -1 : (int64_t)id));
    const cJSON *e;
    if (cJSON_IsArray(eos))
        cJSON_ArrayForEach(e, eos) if (lmc_json_uint(e, &id)) LMC_CHECK(add_eos(t, id > INT32_MAX ? -1 : (int64_t)id));
    /* bos and pad only where they name a token of the vocabulary: a stray
     * value (2.5, 1e12) would otherwise be prepended to every prompt */
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id");
    if (t->bos_id < 0 && lmc_json_uint(bos, &id) && id < t->vocab_size) t->bos_id = (int32_t)id;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token_id");
    if (t->pad_id < 0 && lmc_json_uint(pad, &id) && id < t->vocab_size) t->pad_id = (int32_t)id;
    return model_config_ids(t, cJSON_GetObjectItemCaseSensitive(cfg, "text_config"));
}

static lmc_status parse_config(lmc_tokenizer *t, const cJSON *cfg) {
    if (!cJSON_IsObject(cfg)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer_config.json: not a JSON object");
    /* transformers 5 ignores clean_up_tokenization_spaces for BPE tokenizers
     * (the only model lmc loads) unless this long flag forces it. */
    t->clean_up_spaces = json_flag(cfg, "clean_up_tokenization_spaces") &&
                         json_flag(cfg, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output");
    LMC_CHECK(dup_opt(token_text(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token")), &t->bos_token));
    LMC_CHECK(dup_opt(token_text(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token")), &t->eos_token));
    LMC_CHECK(dup_opt(token_text(cJSON_GetObjectItemCaseSensitive(cfg, "pad_token")), &t->pad_token));
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(ct)) LMC_CHECK(dup_opt(ct->valuestring, &t->chat_template));
    else if (cJSON_IsArray(ct)) { /* [{"name": "default", "template": "..."}, ...] */
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name"), *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
                LMC_CHECK(dup_opt(tpl->valuestring, &t->chat_template));
        }
    }
    return LMC_OK;
}

/* transformers registers every token its tokenizer names (bos, eos, unk,
 * sep, pad, cls, mask, additional and extra special tokens) as special, so
 * decode(skip_special_tokens=True) drops them even when tokenizer.json does
 * not flag them. Tokenizer classes bring defaults for names the config does
 * not give (GemmaTokenizer's mask_token "<mask>", for one). */
static int32_t added_id(const lmc_tokenizer *t, const char *content, size_t len) {
    int32_t i = tk_strmap_get(&t->added_map, content, len);
    return i >= 0 ? t->added[i].id : -1;
}

static void mark_special(lmc_tokenizer *t, const char *content) {
    int32_t id = content ? added_id(t, content, strlen(content)) : -1;
    if (id >= 0) t->tok_flags[id] |= TK_TOK_SPECIAL;
}

static void config_special(lmc_tokenizer *t, const cJSON *cfg) {
    static const char *keys[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    static const struct { const char *cls, *key, *value; } defaults[] = {
        {"GemmaTokenizer", "unk_token", "<unk>"}, {"GemmaTokenizer", "bos_token", "<bos>"},
        {"GemmaTokenizer", "eos_token", "<eos>"}, {"GemmaTokenizer", "pad_token", "<pad>"},
        {"GemmaTokenizer", "mask_token", "<mask>"}, {"LlamaTokenizer", "unk_token", "<unk>"},
        {"LlamaTokenizer", "bos_token", "<s>"}, {"LlamaTokenizer", "eos_token", "</s>"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) mark_special(t, token_text(cJSON_GetObjectItemCaseSensitive(cfg, keys[i])));
    const cJSON *e, *list = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
    cJSON_ArrayForEach(e, list) mark_special(t, token_text(e));
    list = cJSON_GetObjectItemCaseSensitive(cfg, "extra_special_tokens");
    cJSON_ArrayForEach(e, list) mark_special(t, token_text(e));
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer_class");
    if (!cJSON_IsString(cls)) return;
    size_t cl = strlen(cls->valuestring);
    if (cl > 4 && !strcmp(cls->valuestring + cl - 4, "Fast")) cl -= 4; /* GemmaTokenizerFast is GemmaTokenizer */
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (strlen(defaults[i].cls) == cl && !strncmp(cls->valuestring, defaults[i].cls, cl) &&
            !cJSON_GetObjectItemCaseSensitive(cfg, defaults[i].key))
            mark_special(t, defaults[i].value);
}

/* Resolves the config's token strings to ids once everything is loaded. */
static lmc_status resolve_special(lmc_tokenizer *t) {
    if (t->bos_token) {
        int32_t id = lmc_tokenizer_token_to_id(t, t->bos_token);
        if (id >= 0) t->bos_id = id;
    }
    if (t->pad_token) {
        int32_t id = lmc_tokenizer_token_to_id(t, t->pad_token);
        if (id >= 0) t->pad_id = id;
    }
    if (t->eos_token) LMC_CHECK(add_eos(t, lmc_tokenizer_token_to_id(t, t->eos_token)));
    return LMC_OK;
}

static lmc_tokenizer *tokenizer_new(void) {
    lmc_tokenizer *t = calloc(1, sizeof *t);
    if (t) t->bos_id = t->pad_id = -1;
    return t;
}

/* tokenizer.json: the scanner reads model.vocab and model.merges (and checks
 * the JSON syntax of the whole document); cJSON parses the rest, a copy of
 * the document with those two values replaced by {} and [] (parsed already
 * when the scanner's helper thread had time for it). rest_text, when not
 * NULL, gets that copy's text (for the cache). */
static lmc_status parse_tokenizer_json(lmc_tokenizer *t, const char *doc, size_t len, tk_buf *rest_text) {
    tk_json_model sc;
    LMC_CHECK(tk_json_scan(doc, len, &sc));
    lmc_status st = rest_text ? tk_json_rest_text(doc, len, &sc, rest_text) : LMC_OK;
    if (st == LMC_OK && !sc.rest) st = rest_text ? tk_json_rest_parse(rest_text->p, rest_text->len, &sc.rest) : tk_json_rest(doc, len, &sc, &sc.rest);
    if (st == LMC_OK) st = parse_tokenizer(t, sc.rest, &sc, NULL);
    tk_json_model_free(&sc);
    return st;
}

/* A tokenizer.json's source: the document, or the cache's rest and tables. */
typedef struct json_source {
    const char *doc;
    size_t len;
    tk_buf *rest_text; /* with doc: gets the rest's text, when not NULL */
    const cJSON *rest; /* without doc: the cache's */
    tk_bpe_tables *cached;
} json_source;

/* lmc_tokenizer_load_json's work, from either source. */
static lmc_status load_json(const json_source *src, const char *config_json, lmc_tokenizer **out) {
    *out = NULL;
    lmc_tokenizer *t = tokenizer_new();
    if (!t) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    cJSON *cfg = NULL;
    lmc_status st = src->doc ? parse_tokenizer_json(t, src->doc, src->len, src->rest_text) : parse_tokenizer(t, src->rest, NULL, src->cached);
    if (st == LMC_OK && config_json) {
        st = parse_json(config_json, strlen(config_json), "tokenizer_config.json", &cfg);
        if (st == LMC_OK) st = parse_config(t, cfg);
        if (st == LMC_OK) config_special(t, cfg);
        cJSON_Delete(cfg);
    }
    if (st == LMC_OK) st = resolve_special(t);
#ifdef __GLIBC__
    /* Loading freed megabytes of small blocks (cJSON nodes, some parsed on
     * the scanner's helper thread and so in another malloc arena) that
     * glibc would keep resident for the rest of the process. */
    malloc_trim(0);
#endif
    if (st != LMC_OK) { lmc_tokenizer_free(t); return st; }
    *out = t;
    return LMC_OK;
}

lmc_status lmc_tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json, lmc_tokenizer **out) {
    if (!tokenizer_json || !out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_load_json: NULL argument");
    return load_json(&(json_source){tokenizer_json, len, NULL, NULL, NULL}, config_json, out);
}

lmc_status lmc_tokenizer_load_file(const char *path, lmc_tokenizer **out) {
    if (!path || !out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_load_file: NULL argument");
    mapped_file f;
    LMC_CHECK(map_file(path, &f));
    lmc_status st = lmc_tokenizer_load_json(f.data, f.len, NULL, out);
    unmap_file(&f);
    if (st != LMC_OK) lmc_error_prefix("%s", path);
    return st;
}

/* Reads DIR/name when it exists: *data NULL when absent. */
static lmc_status read_optional(const char *dir, const char *name, char **data, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    lmc_status st = read_file(path, true, data, len);
    if (st == LMC_ERR_NOT_FOUND) { *data = NULL; return LMC_OK; }
    return st;
}

/* tokenizer.json (open as fd) with the config: from the cache file when
 * there is a valid one (key not NULL), else parsed; *rest_text then gets
 * what the cache would need (when key is not NULL). */
static lmc_status load_main(int fd, const char *path, const char *cfg, const tk_cache_key *key, tk_buf *rest_text,
                            bool *warm, lmc_tokenizer **out) {
    *warm = false;
    tk_bpe_tables tables;
    cJSON *rest;
    if (key && tk_cache_read(key, &tables, &rest)) {
        lmc_status st = load_json(&(json_source){NULL, 0, NULL, rest, &tables}, cfg, out);
        tk_bpe_tables_free(&tables); /* what the model did not take */
        cJSON_Delete(rest);
        if (st == LMC_OK) {
            __atomic_fetch_add(&tk_cache_loads, 1, __ATOMIC_RELAXED);
            *warm = true;
            return LMC_OK;
        }
        /* Not expected from a file that loaded before; the JSON way reports what is wrong. */
    }
    mapped_file data;
    LMC_CHECK(map_fd(fd, path, &data));
    lmc_status st = load_json(&(json_source){data.data, data.len, key && key->settled ? rest_text : NULL, NULL, NULL}, cfg, out);
    unmap_file(&data);
    return st;
}

lmc_status lmc_tokenizer_load(const char *dir, lmc_tokenizer **out) {
    if (!dir || !out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_load: NULL argument");
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *cfg = NULL, *extra = NULL;
    size_t cfg_len, extra_len;
    tk_cache_key key;
    tk_buf rest_text = {0};
    bool cached = false, warm = false;
    lmc_status st = LMC_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) st = lmc_set_error(LMC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (st == LMC_OK) st = read_optional(dir, "tokenizer_config.json", &cfg, &cfg_len);
    if (st == LMC_OK) {
        cached = tk_cache_key_init(path, fd, &key);
        st = load_main(fd, path, cfg, cached ? &key : NULL, &rest_text, &warm, out);
        if (st != LMC_OK) lmc_error_prefix("%s", dir);
    }
    if (fd >= 0) close(fd);
    free(cfg);
    lmc_tokenizer *t = st == LMC_OK ? *out : NULL;
    /* EOS order: the model configs' lists, then tokenizer_config's eos_token. */
    int32_t *config_eos = NULL;
    size_t n_config_eos = 0;
    if (t) {
        config_eos = t->eos_ids;
        n_config_eos = t->n_eos;
        t->eos_ids = NULL;
        t->n_eos = 0;
    }
    /* Model configs: generation_config.json first, as its EOS list is the complete one. */
    static const char *model_files[] = {"generation_config.json", "config.json"};
    for (size_t i = 0; i < 2 && st == LMC_OK; i++) {
        st = read_optional(dir, model_files[i], &extra, &extra_len);
        if (st == LMC_OK && extra) {
            cJSON *j = NULL;
            st = parse_json(extra, extra_len, model_files[i], &j);
            if (st == LMC_OK) st = model_config_ids(t, j);
            cJSON_Delete(j);
            if (st != LMC_OK) lmc_error_prefix("%s", dir);
        }
        free(extra);
        extra = NULL;
    }
    for (size_t i = 0; i < n_config_eos && st == LMC_OK; i++) st = add_eos(t, config_eos[i]);
    free(config_eos);
    if (st == LMC_OK) {
        st = read_optional(dir, "chat_template.jinja", &extra, &extra_len);
        if (st == LMC_OK && extra) {
            free(t->chat_template);
            t->chat_template = extra;
        }
    }
    if (st != LMC_OK) {
        lmc_tokenizer_free(t);
        *out = NULL;
    }
    /* Cached only after the whole folder loaded. */
    if (st == LMC_OK && cached && !warm) tk_cache_write(&key, &t->bpe, rest_text.p, rest_text.len);
    tk_buf_free(&rest_text);
    return st;
}

void lmc_tokenizer_free(lmc_tokenizer *t) {
    if (!t) return;
    tk_bpe_free(&t->bpe);
    if (t->has_normalizer) tk_normalizer_free(&t->normalizer);
    if (t->has_pretokenizer) tk_pretokenizer_free(&t->pretokenizer);
    if (t->has_decoder) tk_decoder_free(&t->decoder);
    if (t->has_postproc) postproc_free(&t->postproc);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    tk_strmap_free(&t->added_map);
    free(t->added_str);
    free(t->added_len);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    tk_table_free(t->tok_flags, t->vocab_size);
    free(t->added_ids);
    free(t->eos_ids);
    free(t->chat_template);
    free(t->bos_token);
    free(t->eos_token);
    free(t->pad_token);
    free(t);
}

/* ---- encoding ---- */

/* Pre-tokenizes and runs BPE over one stretch of normalized text. */
static lmc_status encode_text(const lmc_tokenizer *t, const char *s, size_t n, bool origin, tk_pieces *words,
                              tk_pieces *scratch, tk_ids *out) {
    tk_pieces_clear(words);
    if (n == 0) return LMC_OK;
    LMC_CHECK(tk_pieces_add(words, s, n, origin));
    if (t->has_pretokenizer) LMC_CHECK(tk_pretokenize(&t->pretokenizer, words, scratch));
    for (size_t i = 0; i < words->n; i++)
        LMC_CHECK(tk_bpe_encode_word(&t->bpe, words->text.p + words->v[i].off, words->v[i].len, out));
    return LMC_OK;
}

static lmc_status encode_valid(const lmc_tokenizer *t, const char *text, size_t len, bool add_special, tk_ids *out) {
    segments raw = {0}, norm_segs = {0};
    tk_buf norm = {0};
    tk_pieces words = {0}, scratch = {0};
    lmc_status st = find_added(t, &t->trie_raw, text, len, &raw);
    for (size_t i = 0; i < raw.n && st == LMC_OK; i++) {
        segment sg = raw.v[i];
        if (sg.id >= 0) { st = tk_ids_push(out, sg.id); continue; }
        if (sg.end == sg.start) continue;
        const char *s = text + sg.start;
        size_t n = sg.end - sg.start;
        if (t->has_normalizer) {
            st = tk_normalize(&t->normalizer, s, n, &norm);
            s = norm.p ? norm.p : "";
            n = norm.len;
        }
        if (st != LMC_OK) break;
        if (!t->has_norm_trie) {
            st = encode_text(t, s, n, sg.start == 0, &words, &scratch, out);
            continue;
        }
        st = find_added(t, &t->trie_norm, s, n, &norm_segs);
        for (size_t k = 0; k < norm_segs.n && st == LMC_OK; k++) {
            segment ns = norm_segs.v[k];
            if (ns.id >= 0) st = tk_ids_push(out, ns.id);
            else st = encode_text(t, s + ns.start, ns.end - ns.start, sg.start == 0 && ns.start == 0, &words, &scratch, out);
        }
    }
    if (st == LMC_OK && add_special && t->has_postproc) st = postproc_apply(&t->postproc, out);
    free(raw.v);
    free(norm_segs.v);
    tk_buf_free(&norm);
    tk_pieces_free(&words);
    tk_pieces_free(&scratch);
    return st;
}

lmc_status lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                                size_t *n) {
    if (!t || !ids || !n || (!text && len)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    if (!text) text = "";
    /* Invalid UTF-8 becomes U+FFFD first (see the header). */
    char *fixed = NULL;
    if (!lmc_utf8_valid(text, len, NULL)) {
        fixed = lmc_utf8_lossy(text, len, &len);
        if (!fixed) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        text = fixed;
    }
    tk_ids out = {0};
    lmc_status st = encode_valid(t, text, len, add_special, &out);
    free(fixed);
    if (st != LMC_OK) { free(out.v); return st; }
    if (!out.v) out.v = malloc(sizeof *out.v); /* a non-NULL result even when empty */
    if (!out.v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    *ids = out.v;
    *n = out.n;
    return LMC_OK;
}

void lmc_tokenizer_free_ids(int32_t *ids) { free(ids); }

/* ---- decoding ---- */

lmc_status tk_decode_raw(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, bool keep_bytes,
                        tk_buf *out) {
    tk_pieces toks = {0}, scratch = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < n && st == LMC_OK; i++) {
        int32_t id = ids[i];
        uint32_t len;
        const char *s = tk_token_str(t, id, &len);
        if (!s) continue; /* unknown ids are skipped, as HF does */
        if (skip_special && (t->tok_flags[id] & TK_TOK_SPECIAL)) continue;
        st = tk_pieces_add(&toks, s, len, false);
    }
    if (st == LMC_OK && t->has_decoder) st = tk_decode_chain(&t->decoder, &toks, &scratch, keep_bytes);
    for (size_t i = 0; i < toks.n && st == LMC_OK; i++) {
        if (!t->has_decoder && i > 0) st = tk_buf_append(out, " ", 1); /* no decoder: tokens joined by spaces */
        if (st == LMC_OK) st = tk_buf_append(out, toks.text.p + toks.v[i].off, toks.v[i].len);
    }
    if (st == LMC_OK && !out->p) st = tk_buf_append(out, "", 0);
    tk_pieces_free(&toks);
    tk_pieces_free(&scratch);
    return st;
}

/* transformers' clean_up_tokenization: ten str.replace calls in this order. */
void tk_cleanup_spaces(tk_buf *b) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < 10; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), w = 0;
        for (size_t i = 0; i < b->len;) {
            if (b->len - i >= fl && !memcmp(b->p + i, from[r], fl)) {
                memmove(b->p + w, to[r], tl); /* replacements are never longer than patterns */
                w += tl;
                i += fl;
            } else {
                b->p[w++] = b->p[i++];
            }
        }
        b->len = w;
    }
    if (b->p) b->p[b->len] = 0;
}

lmc_status lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                                size_t *len) {
    if (!t || !text || (!ids && n)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_decode: NULL argument");
    *text = NULL;
    tk_buf out = {0};
    lmc_status st = tk_decode_raw(t, ids, n, skip_special, false, &out);
    if (st != LMC_OK) { tk_buf_free(&out); return st; }
    if (t->clean_up_spaces) tk_cleanup_spaces(&out);
    *text = out.p;
    if (len) *len = out.len;
    return LMC_OK;
}

lmc_status lmc_tokenizer_token_bytes(const lmc_tokenizer *t, int32_t id, char **bytes, size_t *len) {
    if (!t || !bytes) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_tokenizer_token_bytes: NULL argument");
    *bytes = NULL;
    tk_buf out = {0};
    lmc_status st = tk_decode_raw(t, &id, 1, false, true, &out);
    if (st != LMC_OK) {
        tk_buf_free(&out);
        return st;
    }
    *bytes = out.p;
    if (len) *len = out.len;
    return LMC_OK;
}

void lmc_tokenizer_free_text(char *text) { free(text); }

/* ---- lookups ---- */

size_t lmc_tokenizer_vocab_size(const lmc_tokenizer *t) { return t ? t->vocab_size : 0; }

int32_t lmc_tokenizer_token_to_id(const lmc_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = added_id(t, token, n);
    return id >= 0 ? id : tk_strmap_get(&t->bpe.vocab, token, n);
}

const char *lmc_tokenizer_id_to_token(const lmc_tokenizer *t, int32_t id) {
    uint32_t len;
    return t ? tk_token_str(t, id, &len) : NULL;
}

bool lmc_tokenizer_is_special(const lmc_tokenizer *t, int32_t id) {
    return t && id >= 0 && (size_t)id < t->vocab_size && (t->tok_flags[id] & TK_TOK_SPECIAL);
}

int32_t lmc_tokenizer_bos(const lmc_tokenizer *t) { return t ? t->bos_id : -1; }

size_t lmc_tokenizer_eos(const lmc_tokenizer *t, const int32_t **ids) {
    if (ids) *ids = t ? t->eos_ids : NULL;
    return t ? t->n_eos : 0;
}

bool lmc_tokenizer_is_eos(const lmc_tokenizer *t, int32_t id) {
    for (size_t i = 0; t && i < t->n_eos; i++)
        if (t->eos_ids[i] == id) return true;
    return false;
}

int32_t lmc_tokenizer_pad(const lmc_tokenizer *t) { return t ? t->pad_id : -1; }
const char *lmc_tokenizer_chat_template(const lmc_tokenizer *t) { return t ? t->chat_template : NULL; }
const char *lmc_tokenizer_bos_token(const lmc_tokenizer *t) { return t ? t->bos_token : NULL; }
const char *lmc_tokenizer_eos_token(const lmc_tokenizer *t) { return t ? t->eos_token : NULL; }
const char *lmc_tokenizer_pad_token(const lmc_tokenizer *t) { return t ? t->pad_token : NULL; }
