/* Buffers, the string hash map, patterns and split behaviours shared by the
 * tokenizer's components. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

/* ---- buffers ---- */

lmc_status tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return LMC_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    b->p = p;
    b->cap = cap;
    return LMC_OK;
}

lmc_status tk_buf_append(tk_buf *b, const void *data, size_t n) {
    LMC_CHECK(tk_buf_reserve(b, n));
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return LMC_OK;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

lmc_status tk_ids_push(tk_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return LMC_OK;
}

lmc_status tk_pieces_commit(tk_pieces *p, size_t off, bool origin) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        tk_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (tk_piece){off, p->text.len - off, origin};
    return LMC_OK;
}

lmc_status tk_pieces_add(tk_pieces *p, const char *s, size_t n, bool origin) {
    size_t off = p->text.len;
    LMC_CHECK(tk_buf_append(&p->text, s, n));
    return tk_pieces_commit(p, off, origin);
}

void tk_pieces_clear(tk_pieces *p) {
    p->n = 0;
    p->text.len = 0;
}

void tk_pieces_free(tk_pieces *p) {
    tk_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ---- large tables ---- */

enum { HUGE_PAGE = 2 << 20 };

void *tk_table_alloc(size_t size) {
    if (size < HUGE_PAGE) return calloc(1, size ? size : 1);
    /* 2 MiB-aligned, so that every part of it can be a huge page. */
    size_t span = size + HUGE_PAGE;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (p + span > a + size) munmap(a + size, (size_t)(p + span - (a + size)));
#ifdef MADV_HUGEPAGE
    madvise(a, size, MADV_HUGEPAGE); /* a hint: without huge pages the table works the same */
#endif
    return a;
}

void tk_table_free(void *p, size_t size) {
    if (!p) return;
    if (size < HUGE_PAGE) free(p);
    else munmap(p, size);
}

size_t tk_table_shrink(void *p, size_t size, size_t keep) {
    size_t page = 4096;
    keep = (keep + page - 1) / page * page;
    if (size < HUGE_PAGE || keep >= size) return size;
    /* A table stays at least HUGE_PAGE long (so that it is freed as a
     * mapping); pages of that part past `keep` are only dropped. */
    if (keep < HUGE_PAGE) {
        madvise((char *)p + keep, HUGE_PAGE - keep, MADV_DONTNEED);
        keep = HUGE_PAGE;
    }
    if (keep < size) munmap((char *)p + keep, size - keep);
    return keep;
}

lmc_status tk_table_grow(void **p, size_t *size, size_t need) {
    if (need <= *size) return LMC_OK;
    size_t bigger = *size ? *size : 16384;
    while (bigger < need) bigger *= 2;
    void *q = tk_table_alloc(bigger);
    if (!q) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    if (*size) memcpy(q, *p, *size);
    tk_table_free(*p, *size);
    *p = q;
    *size = bigger;
    return LMC_OK;
}

/* ---- string map: open addressing, linear probing ---- */

/* Eight bytes at a time: keys are short (tokens, words), and loading builds
 * a million hashes. Each word is mixed in with a multiply and a fold. */
uint32_t tk_hash(const char *s, size_t n) {
    const uint64_t K = 0x9E3779B97F4A7C15ull;
    uint64_t h = (uint64_t)n * K;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * K;
        h ^= h >> 32;
    }
    if (n) {
        uint64_t w = 0;
        size_t k = 0;
        if (n & 4) { uint32_t x; memcpy(&x, s, 4); w = x; k = 4; }
        if (n & 2) { uint16_t x; memcpy(&x, s + k, 2); w |= (uint64_t)x << (8 * k); k += 2; }
        if (n & 1) w |= (uint64_t)(unsigned char)s[k] << (8 * k);
        h = (h ^ w) * K;
        h ^= h >> 32;
    }
    h *= 0xD6E8FEB86659FD93ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* The load stays under 2/3: expected entries fit without growing. */
lmc_status tk_strmap_init(tk_strmap *m, size_t expected, const char *const *keys, const uint32_t *lens) {
    size_t cap = expected * 3 / 2 + 16;
    m->slots = tk_table_alloc(cap * sizeof *m->slots);
    if (!m->slots) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    m->cap = cap;
    m->n = 0;
    m->keys = keys;
    m->lens = lens;
    return LMC_OK;
}

/* Re-inserts every slot into a map twice as large: keys are distinct, so
 * only hashes are needed. */
static lmc_status strmap_grow(tk_strmap *m) {
    tk_strmap bigger;
    LMC_CHECK(tk_strmap_init(&bigger, m->cap, m->keys, m->lens));
    for (size_t i = 0; i < m->cap; i++) {
        tk_strmap_slot e = m->slots[i];
        if (!e.val1) continue;
        size_t j = tk_strmap_home(&bigger, e.hash);
        while (bigger.slots[j].val1) j = j + 1 == bigger.cap ? 0 : j + 1;
        bigger.slots[j] = e;
        bigger.n++;
    }
    tk_table_free(m->slots, m->cap * sizeof *m->slots);
    bigger.spilled = m->spilled;
    bigger.n_spilled = m->n_spilled;
    *m = bigger;
    return LMC_OK;
}

void tk_strmap_put(tk_strmap *m, const char *key, size_t len, int32_t val) {
    tk_strmap_put_h(m, key, len, tk_hash(key, len), val);
}

static bool slot_has(const tk_strmap *m, tk_strmap_slot e, const char *key, size_t len, uint32_t h) {
    return e.hash == h && m->lens[e.val1 - 1] == len && tk_bytes_eq(m->keys[e.val1 - 1], key, len);
}

void tk_strmap_put_h(tk_strmap *m, const char *key, size_t len, uint32_t h, int32_t val) {
    if ((m->n + 1) * 3 > m->cap * 2 && strmap_grow(m) != LMC_OK) return;
    for (size_t i = tk_strmap_home(m, h);; i = i + 1 == m->cap ? 0 : i + 1) {
        tk_strmap_slot *e = &m->slots[i];
        if (!e->val1) {
            *e = (tk_strmap_slot){h, (uint32_t)val + 1};
            m->n++;
            return;
        }
        if (slot_has(m, *e, key, len, h)) {
            e->val1 = (uint32_t)val + 1;
            return;
        }
    }
}

int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len) {
    return m->cap ? tk_strmap_get_h(m, key, len, tk_hash(key, len)) : -1;
}

int32_t tk_strmap_get_h(const tk_strmap *m, const char *key, size_t len, uint32_t h) {
    if (!m->cap) return -1;
    for (size_t i = tk_strmap_home(m, h);; i = i + 1 == m->cap ? 0 : i + 1) {
        tk_strmap_slot e = m->slots[i];
        if (!e.val1) break;
        if (slot_has(m, e, key, len, h)) return (int32_t)(e.val1 - 1);
    }
    for (size_t k = m->n_spilled; k-- > 0;)
        if (m->spilled[k].len == len && !memcmp(m->spilled[k].key, key, len)) return m->spilled[k].val;
    return -1;
}

lmc_status tk_strmap_spill(tk_strmap *m, const char *key, size_t len, int32_t val) {
    void *v = realloc(m->spilled, (m->n_spilled + 1) * sizeof *m->spilled);
    if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    m->spilled = v;
    m->spilled[m->n_spilled++] = (struct tk_strmap_spilled){key, (uint32_t)len, val};
    return LMC_OK;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->spilled);
    tk_table_free(m->slots, m->cap * sizeof *m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- regexes ---- */

/* Oniguruma's \s is the White_Space property; PCRE2's (in UCP mode) also
 * takes U+180E, so the class is spelled out. */
#define WS_CLASS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

lmc_status tk_regex_compile(const char *pattern, pcre2_code **out) {
    tk_buf b = {0};
    bool in_class = false;
    lmc_status s = LMC_OK;
    for (size_t i = 0; pattern[i] && s == LMC_OK; i++) {
        char c = pattern[i];
        if (c == '\\' && pattern[i + 1]) {
            char e = pattern[i + 1];
            if (e == 's') s = tk_buf_append(&b, in_class ? WS_CLASS : "[" WS_CLASS "]", strlen(in_class ? WS_CLASS : "[" WS_CLASS "]"));
            else if (e == 'S' && !in_class) s = tk_buf_append(&b, "[^" WS_CLASS "]", strlen("[^" WS_CLASS "]"));
            else s = tk_buf_append(&b, pattern + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            s = tk_buf_append(&b, &c, 1);
            /* A ']' right after '[' or '[^' is a literal. */
            if (pattern[i + 1] == '^') { s = tk_buf_append(&b, "^", 1); i++; }
            if (pattern[i + 1] == ']') { s = tk_buf_append(&b, "]", 1); i++; }
            continue;
        }
        if (in_class && c == '[' && pattern[i + 1] == ':') { /* POSIX class [:name:] */
            const char *end = strstr(pattern + i + 2, ":]");
            if (end) {
                s = tk_buf_append(&b, pattern + i, (size_t)(end + 2 - (pattern + i)));
                i = (size_t)(end + 1 - pattern);
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        s = tk_buf_append(&b, &c, 1);
    }
    if (s != LMC_OK) { tk_buf_free(&b); return s; }
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.len, PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
    tk_buf_free(&b);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lmc_set_error(LMC_ERR_FORMAT, "invalid regex '%s': %s", pattern, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is unavailable */
    *out = re;
    return LMC_OK;
}

lmc_status tk_pattern_parse(const cJSON *j, const char *where, tk_pattern *out) {
    memset(out, 0, sizeof *out);
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(j, "String");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(j, "Regex");
    if (cJSON_IsString(str)) {
        out->literal_len = strlen(str->valuestring);
        out->literal = strdup(str->valuestring);
        if (!out->literal) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        return LMC_OK;
    }
    if (cJSON_IsString(re)) {
        lmc_status s = tk_regex_compile(re->valuestring, &out->re);
        if (s != LMC_OK) lmc_error_prefix("%s pattern", where);
        return s;
    }
    return lmc_set_error(LMC_ERR_FORMAT, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
}

void tk_pattern_free(tk_pattern *p) {
    free(p->literal);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

static lmc_status matches_add(tk_matches *m, size_t start, size_t end, bool is_match) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        tk_match *v = realloc(m->v, cap * sizeof *v);
        if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = (tk_match){start, end, is_match};
    return LMC_OK;
}

/* Matched stretches from a list of (start, end) hits: gaps become unmatched
 * stretches (HF's Pattern::find_matches for regexes). */
lmc_status tk_regex_find(const pcre2_code *re, const char *s, size_t n, tk_matches *out) {
    out->n = 0;
    if (n == 0) return matches_add(out, 0, 0, false);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t prev = 0, at = 0;
    lmc_status st = LMC_OK;
    while (at <= n && st == LMC_OK) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            st = lmc_set_error(LMC_ERR_INTERNAL, "tokenizer: regex match failed (%d)", rc);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (prev != ms) st = matches_add(out, prev, ms, false);
        if (st == LMC_OK) st = matches_add(out, ms, me, true);
        prev = me;
        if (me > at) at = me;
        else { /* empty match: step over one character */
            if (at >= n) break;
            uint32_t cp;
            size_t k = lmc_utf8_decode(s + at, n - at, &cp);
            at += k ? k : 1;
        }
    }
    pcre2_match_data_free(md);
    if (st == LMC_OK && prev != n) st = matches_add(out, prev, n, false);
    return st;
}

static lmc_status literal_find(const char *lit, size_t ll, const char *s, size_t n, tk_matches *out) {
    out->n = 0;
    if (ll == 0) return matches_add(out, 0, n, false);
    if (n == 0) return matches_add(out, 0, 0, false);
    size_t prev = 0, at = 0;
    while (at + ll <= n) {
        const char *hit = memmem(s + at, n - at, lit, ll);
        if (!hit) break;
        size_t ms = (size_t)(hit - s);
        if (prev != ms) LMC_CHECK(matches_add(out, prev, ms, false));
        LMC_CHECK(matches_add(out, ms, ms + ll, true));
        prev = at = ms + ll;
    }
    if (prev != n) LMC_CHECK(matches_add(out, prev, n, false));
    return LMC_OK;
}

lmc_status tk_pattern_find(const tk_pattern *p, const char *s, size_t n, tk_matches *out) {
    if (p->re) return tk_regex_find(p->re, s, n, out);
    return literal_find(p->literal, p->literal_len, s, n, out);
}

lmc_status tk_predicate_find(bool (*pred)(uint32_t), const char *s, size_t n, tk_matches *out) {
    out->n = 0;
    if (n == 0) return matches_add(out, 0, 0, false);
    size_t last = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = lmc_utf8_decode(s + i, n - i, &cp);
        if (!k) { k = 1; cp = 0xFFFD; }
        if (pred(cp)) {
            if (last < i) LMC_CHECK(matches_add(out, last, i, false));
            LMC_CHECK(matches_add(out, i, i + k, true));
            last = i + k;
        }
        i += k;
    }
    if (n > last) LMC_CHECK(matches_add(out, last, n, false));
    return LMC_OK;
}

/* NormalizedString::split: turn matches into kept parts per behaviour. */
lmc_status tk_split_apply(const tk_matches *m, tk_behavior behavior, bool invert, const char *s, bool origin,
                          tk_pieces *out) {
    /* Merge into parts (start, end, remove). At most m->n parts. */
    size_t np = 0;
    tk_match *parts = malloc((m->n ? m->n : 1) * sizeof *parts);
    if (!parts) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    bool prev_match = false;
    if (behavior == TK_MERGED_WITH_NEXT) {
        /* Walk backwards: a match joins the part that follows it. */
        for (size_t k = m->n; k-- > 0;) {
            tk_match x = m->v[k];
            bool is_match = x.is_match != invert;
            if (is_match && !prev_match && np > 0) parts[np - 1].start = x.start;
            else parts[np++] = (tk_match){x.start, x.end, false};
            prev_match = is_match;
        }
        for (size_t a = 0, b = np ? np - 1 : 0; a < b; a++, b--) {
            tk_match t = parts[a];
            parts[a] = parts[b];
            parts[b] = t;
        }
    } else {
        for (size_t k = 0; k < m->n; k++) {
            tk_match x = m->v[k];
            bool is_match = x.is_match != invert;
            switch (behavior) {
            case TK_ISOLATED: parts[np++] = (tk_match){x.start, x.end, false}; break;
            case TK_REMOVED: parts[np++] = (tk_match){x.start, x.end, is_match}; break;
            case TK_CONTIGUOUS:
                if (is_match == prev_match && np > 0) parts[np - 1].end = x.end;
                else parts[np++] = (tk_match){x.start, x.end, false};
                break;
            case TK_MERGED_WITH_PREVIOUS:
                if (is_match && !prev_match && np > 0) parts[np - 1].end = x.end;
                else parts[np++] = (tk_match){x.start, x.end, false};
                break;
            case TK_MERGED_WITH_NEXT: break;
            }
            prev_match = is_match;
        }
    }
    lmc_status st = LMC_OK;
    for (size_t k = 0; k < np && st == LMC_OK; k++) {
        if (parts[k].is_match || parts[k].end == parts[k].start) continue; /* removed, or empty */
        st = tk_pieces_add(out, s + parts[k].start, parts[k].end - parts[k].start, origin && parts[k].start == 0);
    }
    free(parts);
    return st;
}

lmc_status tk_behavior_parse(const cJSON *j, const char *where, tk_behavior *out) {
    static const struct { const char *name; tk_behavior b; } names[] = {
        {"Removed", TK_REMOVED}, {"Isolated", TK_ISOLATED}, {"MergedWithPrevious", TK_MERGED_WITH_PREVIOUS},
        {"MergedWithNext", TK_MERGED_WITH_NEXT}, {"Contiguous", TK_CONTIGUOUS},
    };
    if (!cJSON_IsString(j)) return lmc_set_error(LMC_ERR_FORMAT, "%s: missing split behavior", where);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(j->valuestring, names[i].name)) { *out = names[i].b; return LMC_OK; }
    return lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: unsupported split behavior '%s'", where, j->valuestring);
}
