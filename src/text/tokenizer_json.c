/* A strict scanner for tokenizer.json that reads the two huge sections,
 * model.vocab and model.merges, straight into flat arrays, so that cJSON
 * builds nodes only for the small rest of the file (see tokenizer_internal.h,
 * tk_json_scan).
 *
 * It walks the whole document and checks it against the JSON grammar
 * (RFC 8259) as it goes: strings must be valid UTF-8 without raw control
 * characters, escapes and surrogate pairs must be well formed, numbers must
 * follow the grammar, nothing may follow the top-level value. Every error
 * names the byte offset where the document stops being valid. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/base.h"
#include "text/tokenizer_internal.h"
#include "text/unicode.h"

enum { MAX_DEPTH = 1000 }; /* cJSON's nesting limit */

typedef struct merges_helper merges_helper;

typedef struct jscan {
    const char *p;
    size_t n, i; /* document length and position */
    merges_helper *helper; /* NULL when scanning on one thread */
} jscan;

static lmc_status bad(size_t at, const char *what) {
    return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: invalid JSON at byte %zu: %s", at, what);
}

/* The sections are tens of megabytes, mostly indentation and short strings,
 * so both are scanned sixteen bytes at a time where SSE2 is there (every
 * x86-64); the byte loops after them finish the job (and do all of it
 * elsewhere). */
#ifdef __SSE2__
#include <emmintrin.h>

/* Bit k set when byte k of p[0..16) is not JSON whitespace. */
static inline unsigned non_ws16(const char *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))),
                              _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\t'))));
    return ~(unsigned)_mm_movemask_epi8(ws) & 0xFFFF;
}

/* Bit k set when byte k ends a string's fast path: '"', '\\', a control
 * character or a byte >= 0x80 (the signed compare takes both). */
static inline unsigned string_stops16(const char *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                             _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(m);
}
#endif

static inline void skip_ws(jscan *s) {
    const char *p = s->p;
    size_t i = s->i, n = s->n;
    if (i < n && (unsigned char)p[i] > ' ') return; /* half the calls: a ',' or ':' right after a value */
#ifdef __SSE2__
    while (i + 16 <= n) {
        unsigned other = non_ws16(p + i);
        if (other) { s->i = i + (size_t)__builtin_ctz(other); return; }
        i += 16;
    }
#endif
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) i++;
    s->i = i;
}

/* Consumes the byte c after optional whitespace. */
static lmc_status expect(jscan *s, char c, const char *what) {
    skip_ws(s);
    if (s->i >= s->n) return bad(s->i, "unexpected end of input");
    if (s->p[s->i] != c) return bad(s->i, what);
    s->i++;
    return LMC_OK;
}

/* The length of the well-formed UTF-8 sequence at u[0..n) that starts with
 * a byte >= 0x80, or 0 (overlong forms, surrogates, > U+10FFFF, truncated). */
static size_t utf8_valid_len(const unsigned char *u, size_t n) {
    unsigned c = u[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len || u[1] < lo || u[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((u[k] & 0xC0) != 0x80) return 0;
    return len;
}

/* A string at s->i (which must be '"'). Checks it and moves past the closing
 * quote; *raw, *raw_len give the bytes between the quotes and *escaped
 * whether they hold escapes (then string_decode gives the text). */
static lmc_status string_span_any(jscan *s, const char **raw, size_t *raw_len, bool *escaped) {
    const unsigned char *u = (const unsigned char *)s->p;
    size_t i = s->i + 1, n = s->n;
    *escaped = false;
    for (;;) {
        /* Printable ASCII other than '"' and '\\' is by far the commonest. */
#ifdef __SSE2__
        while (i + 16 <= n) {
            unsigned stops = string_stops16(s->p + i);
            if (stops) { i += (size_t)__builtin_ctz(stops); break; }
            i += 16;
        }
#endif
        while (i < n && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\') i++;
        if (i >= n) return bad(s->i, "unterminated string");
        unsigned c = u[i];
        if (c == '"') break;
        if (c < 0x20) return bad(i, "control character in a string (must be escaped)");
        if (c == '\\') {
            *escaped = true;
            if (i + 1 >= n) return bad(s->i, "unterminated string");
            char e = (char)u[i + 1];
            if (e == 'u') {
                int v = i + 6 <= n ? lmc_hex4(s->p + i + 2) : -1;
                if (v < 0) return bad(i, "\\u needs four hex digits");
                if (v >= 0xDC00 && v <= 0xDFFF) return bad(i, "lone low surrogate in a \\u escape");
                if (v >= 0xD800 && v <= 0xDBFF) {
                    int lo = i + 12 <= n && u[i + 6] == '\\' && u[i + 7] == 'u' ? lmc_hex4(s->p + i + 8) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return bad(i, "high surrogate without a low surrogate in a \\u escape");
                    i += 12;
                } else {
                    i += 6;
                }
            } else if (e && strchr("\"\\/bfnrt", e)) {
                i += 2;
            } else {
                return bad(i, "invalid escape in a string");
            }
            continue;
        }
        /* Non-ASCII text comes in runs: check the whole run here rather
         * than going back to the sixteen-byte loop after each character. */
        do {
            size_t k = utf8_valid_len(u + i, n - i);
            if (!k) return bad(i, "invalid UTF-8 in a string");
            i += k;
        } while (i < n && u[i] >= 0x80);
    }
    *raw = s->p + s->i + 1;
    *raw_len = i - (s->i + 1);
    s->i = i + 1;
    return LMC_OK;
}

/* The same. Most strings of the two sections are tokens shorter than 16
 * bytes without escapes: one sixteen-byte look finds their closing quote,
 * and the UTF-8 before it is checked in place; any other string (longer,
 * escaped, or invalid) goes through string_span_any. */
static inline lmc_status string_span(jscan *s, const char **raw, size_t *raw_len, bool *escaped) {
#ifdef __SSE2__
    size_t i = s->i + 1;
    if (i + 16 <= s->n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s->p + i));
        /* '"', '\\' and control characters; bytes >= 0x80 apart. */
        unsigned stops = (unsigned)_mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
            _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v)));
        if (stops && s->p[i + (size_t)__builtin_ctz(stops)] == '"') {
            size_t len = (size_t)__builtin_ctz(stops);
            unsigned high = (unsigned)_mm_movemask_epi8(v) & ((1u << len) - 1);
            const unsigned char *u = (const unsigned char *)s->p + i;
            /* Each run of bytes >= 0x80 must be whole UTF-8 sequences ending before the quote. */
            for (size_t k = high ? (size_t)__builtin_ctz(high) : len; k < len;) {
                if (u[k] < 0x80) { k++; continue; }
                size_t c = utf8_valid_len(u + k, len - k);
                if (!c) return string_span_any(s, raw, raw_len, escaped); /* which reports it */
                k += c;
            }
            *escaped = false;
            *raw = s->p + i;
            *raw_len = len;
            s->i = i + len + 1;
            return LMC_OK;
        }
    }
#endif
    return string_span_any(s, raw, raw_len, escaped);
}

/* Decodes a string body that string_span accepted into dst (room for raw_len
 * bytes: decoding never lengthens it). Returns the decoded length. */
static size_t string_decode(const char *raw, size_t raw_len, char *dst) {
    size_t o = 0;
    for (size_t i = 0; i < raw_len;) {
        if (raw[i] != '\\') { dst[o++] = raw[i++]; continue; }
        char e = raw[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            dst[o++] = to[strchr(from, e) - from];
            i += 2;
            continue;
        }
        uint32_t cp = (uint32_t)lmc_hex4(raw + i + 2);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* string_span checked the pair */
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lmc_hex4(raw + i + 2) - 0xDC00);
            i += 6;
        }
        o += lmc_utf8_encode(cp, dst + o);
    }
    return o;
}

/* A number, following the JSON grammar. */
static lmc_status skip_number(jscan *s) {
    const char *p = s->p;
    size_t i = s->i, n = s->n, start = i;
    if (i < n && p[i] == '-') i++;
    if (i < n && p[i] == '0') i++;
    else if (i < n && p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    else return bad(start, "invalid number");
    if (i < n && p[i] == '.') {
        if (++i >= n || p[i] < '0' || p[i] > '9') return bad(start, "invalid number");
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= n || p[i] < '0' || p[i] > '9') return bad(start, "invalid number");
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    s->i = i;
    return LMC_OK;
}

static lmc_status skip_value(jscan *s, int depth);

/* After an item of an object or array: ',' (more follow) or `close` (*end). */
static lmc_status after_item(jscan *s, char close, bool *end) {
    skip_ws(s);
    if (s->i >= s->n) return bad(s->i, "unexpected end of input");
    char c = s->p[s->i++];
    *end = c == close;
    if (!*end && c != ',') return bad(s->i - 1, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    return LMC_OK;
}

/* The members of an object or the items of an array, after its opening byte. */
static lmc_status skip_container(jscan *s, char close, int depth) {
    if (depth >= MAX_DEPTH) return bad(s->i - 1, "nesting deeper than 1000 levels");
    skip_ws(s);
    if (s->i < s->n && s->p[s->i] == close) { s->i++; return LMC_OK; }
    for (;;) {
        if (close == '}') {
            const char *raw;
            size_t rl;
            bool esc;
            skip_ws(s);
            if (s->i >= s->n) return bad(s->i, "unexpected end of input");
            if (s->p[s->i] != '"') return bad(s->i, "expected a string key");
            LMC_CHECK(string_span(s, &raw, &rl, &esc));
            LMC_CHECK(expect(s, ':', "expected ':' after a key"));
        }
        LMC_CHECK(skip_value(s, depth + 1));
        bool end;
        LMC_CHECK(after_item(s, close, &end));
        if (end) return LMC_OK;
    }
}

static lmc_status skip_literal(jscan *s, const char *word) {
    size_t k = strlen(word);
    if (s->n - s->i < k || memcmp(s->p + s->i, word, k)) return bad(s->i, "invalid literal");
    s->i += k;
    return LMC_OK;
}

static lmc_status skip_value(jscan *s, int depth) {
    skip_ws(s);
    if (s->i >= s->n) return bad(s->i, "unexpected end of input");
    char c = s->p[s->i];
    switch (c) {
    case '{': s->i++; return skip_container(s, '}', depth);
    case '[': s->i++; return skip_container(s, ']', depth);
    case '"': {
        const char *raw;
        size_t rl;
        bool esc;
        return string_span(s, &raw, &rl, &esc);
    }
    case 't': return skip_literal(s, "true");
    case 'f': return skip_literal(s, "false");
    case 'n': return skip_literal(s, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return skip_number(s);
        return bad(s->i, "expected a value");
    }
}

/* True when the key just read is `name`. Keys with escapes are decoded first. */
static lmc_status key_is(const char *raw, size_t rl, bool esc, const char *name, bool *is) {
    size_t nl = strlen(name);
    if (!esc) { *is = rl == nl && !memcmp(raw, name, nl); return LMC_OK; }
    char *tmp = malloc(rl ? rl : 1);
    if (!tmp) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t dl = string_decode(raw, rl, tmp);
    *is = dl == nl && !memcmp(tmp, name, nl);
    free(tmp);
    return LMC_OK;
}

/* ---- model.vocab: {"token": id, ...} ---- */

static lmc_status vocab_push(tk_json_model *m, const char *key, uint32_t len, int32_t id) {
    uint32_t hash = tk_hash(key, len);
    if ((m->n_vocab + 1) * sizeof *m->vocab > m->vocab_size)
        LMC_CHECK(tk_table_grow((void **)&m->vocab, &m->vocab_size, (m->n_vocab + 1) * sizeof *m->vocab));
    m->vocab[m->n_vocab++] = (tk_vocab_entry){key, len, hash, id};
    return LMC_OK;
}

/* Reads the object at s->i: keys go (decoded, NUL-terminated) into one arena
 * no larger than the object's text, since decoding never lengthens. */
static lmc_status parse_vocab(jscan *s, tk_json_model *m) {
    size_t start = s->i++;
    /* The arena must hold the section, but its end is not known yet: the
     * rest of the document bounds it. */
    m->arena_size = s->n - start + 1;
    m->arena = tk_table_alloc(m->arena_size);
    if (!m->arena) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t at = 0;
    skip_ws(s);
    if (s->i < s->n && s->p[s->i] == '}') { s->i++; goto done; }
    for (;;) {
        skip_ws(s);
        if (s->i >= s->n) return bad(s->i, "unexpected end of input");
        if (s->p[s->i] != '"') return bad(s->i, "expected a string key");
        size_t key_at = s->i;
        const char *raw;
        size_t rl;
        bool esc;
        LMC_CHECK(string_span(s, &raw, &rl, &esc));
        char *key = m->arena + at;
        size_t kl = esc ? string_decode(raw, rl, key) : (memcpy(key, raw, rl), rl);
        key[kl] = 0;
        at += kl + 1;
        LMC_CHECK(expect(s, ':', "expected ':' after a key"));
        skip_ws(s);
        /* The id: a JSON integer from 0 to INT32_MAX. */
        size_t num_at = s->i;
        int64_t id = 0;
        bool ok = s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9';
        while (ok && s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9') {
            id = id * 10 + (s->p[s->i++] - '0');
            if (id > INT32_MAX) ok = false;
        }
        if (ok && s->i < s->n && (s->p[s->i] == '.' || s->p[s->i] == 'e' || s->p[s->i] == 'E')) ok = false;
        if (ok && s->p[num_at] == '0' && s->i > num_at + 1) return bad(num_at, "invalid number (leading zero)");
        if (!ok) {
            s->i = num_at;
            LMC_CHECK(skip_value(s, 3)); /* invalid JSON is reported as such first */
            /* a key can be any length: quote its first 80 bytes, cut between characters */
            int show = kl <= 80 ? (int)kl : 80;
            while (show < (int)kl && show > 0 && ((unsigned char)key[show] & 0xC0) == 0x80) show--;
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: vocab entry '%.*s%s' (byte %zu) has no valid id", show, key,
                                 show < (int)kl ? "..." : "", key_at);
        }
        LMC_CHECK(vocab_push(m, key, (uint32_t)kl, (int32_t)id));
        bool end;
        LMC_CHECK(after_item(s, '}', &end));
        if (end) break;
    }
done:
    /* The arena was sized for the rest of the document; keep what it holds. */
    m->arena_size = tk_table_shrink(m->arena, m->arena_size, at);
    m->has_vocab = true;
    m->vocab_start = start;
    m->vocab_end = s->i;
    return LMC_OK;
}

/* ---- model.merges: ["a b", ...] or [["a", "b"], ...] ---- */

static lmc_status merge_push(tk_json_model *m, const char *l, size_t ll, const char *r, size_t rl) {
    if ((m->n_merges + 1) * sizeof *m->merges > m->merges_size)
        LMC_CHECK(tk_table_grow((void **)&m->merges, &m->merges_size, (m->n_merges + 1) * sizeof *m->merges));
    m->merges[m->n_merges++] = (tk_merge_text){l, r, (uint32_t)ll, (uint32_t)rl, tk_hash(l, ll), tk_hash(r, rl)};
    return LMC_OK;
}

/* One string of a merge: points into the document, or, when it has escapes,
 * into the scratch arena (as large as the rest of the document). */
static inline lmc_status merge_string(jscan *s, tk_json_model *m, size_t *scratch_at, const char **out, size_t *len) {
    const char *raw;
    bool esc;
    LMC_CHECK(string_span(s, &raw, len, &esc));
    *out = raw;
    if (!esc) return LMC_OK;
    if (!m->scratch && !(m->scratch = malloc(s->n + 1))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    char *dst = m->scratch + *scratch_at;
    *len = string_decode(raw, *len, dst);
    *scratch_at += *len;
    *out = dst;
    return LMC_OK;
}

static lmc_status merge_shape_error(jscan *s, tk_json_model *m, size_t at) {
    s->i = at;
    LMC_CHECK(skip_value(s, 3)); /* invalid JSON is reported as such first */
    return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: merge %zu (byte %zu) is not two tokens (\"a b\" or [\"a\", \"b\"])",
                         m->n_merges, at);
}

static lmc_status parse_merges(jscan *s, tk_json_model *m) {
    size_t start = s->i++, scratch_at = 0;
    skip_ws(s);
    if (s->i < s->n && s->p[s->i] == ']') { s->i++; goto done; }
    for (;;) {
        skip_ws(s);
        if (s->i >= s->n) return bad(s->i, "unexpected end of input");
        size_t item_at = s->i;
        const char *l, *r;
        size_t ll, rl;
        if (s->p[s->i] == '"') { /* legacy "left right": exactly one space */
            const char *str;
            size_t len;
            LMC_CHECK(merge_string(s, m, &scratch_at, &str, &len));
            const char *sp = memchr(str, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - str))) return merge_shape_error(s, m, item_at);
            l = str;
            ll = (size_t)(sp - str);
            r = sp + 1;
            rl = len - ll - 1;
        } else if (s->p[s->i] == '[') {
            s->i++;
            skip_ws(s);
            if (s->i >= s->n || s->p[s->i] != '"') return merge_shape_error(s, m, item_at);
            LMC_CHECK(merge_string(s, m, &scratch_at, &l, &ll));
            skip_ws(s);
            if (s->i >= s->n || s->p[s->i] != ',') return merge_shape_error(s, m, item_at);
            s->i++;
            skip_ws(s);
            if (s->i >= s->n || s->p[s->i] != '"') return merge_shape_error(s, m, item_at);
            LMC_CHECK(merge_string(s, m, &scratch_at, &r, &rl));
            skip_ws(s);
            if (s->i >= s->n || s->p[s->i] != ']') return merge_shape_error(s, m, item_at);
            s->i++;
        } else {
            return merge_shape_error(s, m, item_at);
        }
        if (ll > UINT32_MAX || rl > UINT32_MAX) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: merge %zu is too long", m->n_merges);
        LMC_CHECK(merge_push(m, l, ll, r, rl));
        bool end;
        LMC_CHECK(after_item(s, ']', &end));
        if (end) break;
    }
done:
    m->has_merges = true;
    m->merges_start = start;
    m->merges_end = s->i;
    return LMC_OK;
}

/* ---- model.merges on a helper thread ----
 * In a large file model.merges is most of the bytes (25 of gemma3's 33 MB)
 * and its place is easy to guess: the first `"merges": [` of the document.
 * A helper thread scans the array found there while this thread scans the
 * document up to it and builds the vocabulary's tables. The helper's result
 * is taken only when this thread's walk reaches the value of model.merges
 * at exactly that byte: a JSON value's text reads the same wherever it
 * sits, so the result is what this thread would have got. Otherwise (the
 * first "merges" was another object's, say), or when the helper met an
 * error, this thread scans the array itself, and reports errors as a
 * one-thread scan does.
 * When the guess is taken and model.vocab came first, the helper, done
 * with the array, also parses the rest of the document (tk_json_rest) while
 * this thread is still busy; the rest is used only when the scan succeeds. */

size_t tk_json_helper_min = 1 << 20;

struct merges_helper {
    pthread_t thread;
    size_t at;        /* the guessed '[' */
    jscan s;          /* the helper's own scanner (only the helper reads it until joined) */
    tk_json_model m;  /* its merges, and the vocabulary's range for the rest */
    lmc_status st;
    /* This thread's verdict on the guess, under `lock`: 0 not yet, 1 taken
     * (m.has_vocab and m.vocab_start/end set), -1 not taken. */
    pthread_mutex_t lock;
    pthread_cond_t decided;
    int verdict;
};

static void *helper_main(void *arg) {
    merges_helper *h = arg;
    h->st = parse_merges(&h->s, &h->m);
    if (h->st != LMC_OK) return NULL;
    pthread_mutex_lock(&h->lock);
    while (h->verdict == 0) pthread_cond_wait(&h->decided, &h->lock);
    bool taken = h->verdict > 0;
    pthread_mutex_unlock(&h->lock);
    /* Without model.vocab yet, this thread could not know what to cut. */
    if (taken && h->m.has_vocab && tk_json_rest(h->s.p, h->s.n, &h->m, &h->m.rest) != LMC_OK) h->m.rest = NULL;
    return NULL;
}

/* Tells the helper whether its array is model.merges (m: this thread's
 * scan so far, whose vocabulary range the helper needs), or not (m NULL). */
static void helper_verdict(merges_helper *h, const tk_json_model *m) {
    pthread_mutex_lock(&h->lock);
    if (h->verdict == 0) {
        h->verdict = m ? 1 : -1;
        if (m && m->has_vocab) {
            h->m.has_vocab = true;
            h->m.vocab_start = m->vocab_start;
            h->m.vocab_end = m->vocab_end;
        }
        pthread_cond_signal(&h->decided);
    }
    pthread_mutex_unlock(&h->lock);
}

/* The '[' after the first "merges" key-like text, or n when there is none. */
static size_t guess_merges(const char *doc, size_t n) {
    static const char key[] = "\"merges\"";
    for (const char *k = doc; (k = memmem(k, n - (size_t)(k - doc), key, sizeof key - 1)); k++) {
        jscan s = {doc, n, (size_t)(k - doc) + sizeof key - 1, NULL};
        skip_ws(&s);
        if (s.i >= n || doc[s.i] != ':') continue;
        s.i++;
        skip_ws(&s);
        if (s.i < n && doc[s.i] == '[') return s.i;
    }
    return n;
}

/* Starts the helper on a large document when a second thread is allowed;
 * NULL when the document is scanned on one thread. */
static merges_helper *helper_start(const char *doc, size_t n) {
    if (n < tk_json_helper_min || lmc_num_threads() < 2) return NULL;
    size_t at = guess_merges(doc, n);
    if (at == n) return NULL;
    merges_helper *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->at = at;
    h->s = (jscan){doc, n, at, NULL};
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->decided, NULL);
    if (pthread_create(&h->thread, NULL, helper_main, h)) {
        pthread_mutex_destroy(&h->lock);
        pthread_cond_destroy(&h->decided);
        free(h);
        return NULL;
    }
    return h;
}

/* Waits for the helper; with m, takes its merges into m when it scanned
 * the array at s->i. Every scan with a helper ends here. */
static bool helper_join(jscan *s, tk_json_model *m) {
    merges_helper *h = s->helper;
    if (!h) return false;
    s->helper = NULL;
    bool take = m && h->at == s->i;
    helper_verdict(h, take ? m : NULL);
    pthread_join(h->thread, NULL);
    take = take && h->st == LMC_OK;
    if (take) {
        m->merges = h->m.merges;
        m->n_merges = h->m.n_merges;
        m->merges_size = h->m.merges_size;
        m->scratch = h->m.scratch;
        m->rest = h->m.rest;
        m->has_merges = true;
        m->merges_start = h->m.merges_start;
        m->merges_end = h->m.merges_end;
        s->i = h->m.merges_end;
    } else {
        tk_json_model_free(&h->m);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->decided);
    free(h);
    return take;
}

/* model.merges, at s->i: the helper's scan when it is of this array (the
 * vocabulary's tables are built meanwhile), else scanned here. */
static lmc_status model_merges(jscan *s, tk_json_model *m) {
    if (s->helper && s->helper->at == s->i) {
        helper_verdict(s->helper, m);
        /* This thread is sooner done than the helper. The tables are
         * optional here: a failure comes again from tk_bpe_parse. */
        if (m->has_vocab) (void)tk_vocab_tables_build(m->vocab, m->n_vocab, &m->tables);
        if (helper_join(s, m)) return LMC_OK;
    }
    return parse_merges(s, m);
}

/* ---- the document ---- */

/* Walks an object's members; inside "model" (depth 1), vocab and merges are
 * parsed, everything else is checked and skipped. */
static lmc_status walk_object(jscan *s, tk_json_model *m, bool is_model) {
    s->i++; /* '{' */
    skip_ws(s);
    if (s->i < s->n && s->p[s->i] == '}') { s->i++; return LMC_OK; }
    bool seen_model = false;
    for (;;) {
        skip_ws(s);
        if (s->i >= s->n) return bad(s->i, "unexpected end of input");
        if (s->p[s->i] != '"') return bad(s->i, "expected a string key");
        size_t key_at = s->i;
        const char *raw;
        size_t rl;
        bool esc, is_a = false, is_b = false;
        LMC_CHECK(string_span(s, &raw, &rl, &esc));
        LMC_CHECK(expect(s, ':', "expected ':' after a key"));
        skip_ws(s);
        char c = s->i < s->n ? s->p[s->i] : 0;
        if (!is_model) {
            LMC_CHECK(key_is(raw, rl, esc, "model", &is_a));
            if (is_a && seen_model) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: second 'model' key at byte %zu", key_at);
            seen_model |= is_a;
        } else {
            LMC_CHECK(key_is(raw, rl, esc, "vocab", &is_a));
            LMC_CHECK(key_is(raw, rl, esc, "merges", &is_b));
            if ((is_a && m->has_vocab) || (is_b && m->has_merges))
                return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: second 'model.%s' key at byte %zu", is_a ? "vocab" : "merges",
                                     key_at);
        }
        if (!is_model && is_a && c == '{') LMC_CHECK(walk_object(s, m, true));
        else if (is_model && is_a && c == '{') LMC_CHECK(parse_vocab(s, m));
        else if (is_model && is_b && c == '[') LMC_CHECK(model_merges(s, m));
        else LMC_CHECK(skip_value(s, is_model ? 2 : 1));
        bool end;
        LMC_CHECK(after_item(s, '}', &end));
        if (end) return LMC_OK;
    }
}

lmc_status tk_json_scan(const char *doc, size_t len, tk_json_model *m) {
    memset(m, 0, sizeof *m);
    jscan s = {doc, len, 0, helper_start(doc, len)};
    skip_ws(&s);
    lmc_status st;
    if (s.i < s.n && doc[s.i] == '{') st = walk_object(&s, m, false);
    else st = skip_value(&s, 0);
    if (st == LMC_OK) {
        skip_ws(&s);
        if (s.i != s.n) st = bad(s.i, "unexpected text after the JSON document");
    }
    helper_join(&s, NULL); /* when the walk never came to its array */
    if (st != LMC_OK) tk_json_model_free(m);
    return st;
}

/* ---- the rest of the document ---- */

lmc_status tk_json_rest_text(const char *doc, size_t len, const tk_json_model *m, tk_buf *out) {
    out->len = 0;
    /* The cut ranges in document order (vocab and merges may come in either). */
    size_t cut[2][2] = {{0, 0}, {0, 0}};
    const char *fill[2] = {"", ""};
    int nc = 0;
    if (m->has_vocab) { cut[nc][0] = m->vocab_start; cut[nc][1] = m->vocab_end; fill[nc++] = "{}"; }
    if (m->has_merges) { cut[nc][0] = m->merges_start; cut[nc][1] = m->merges_end; fill[nc++] = "[]"; }
    if (nc == 2 && cut[0][0] > cut[1][0]) {
        size_t c0 = cut[0][0], c1 = cut[0][1];
        const char *f = fill[0];
        cut[0][0] = cut[1][0], cut[0][1] = cut[1][1], fill[0] = fill[1];
        cut[1][0] = c0, cut[1][1] = c1, fill[1] = f;
    }
    size_t from = 0, keep = len;
    for (int k = 0; k < nc; k++) keep -= cut[k][1] - cut[k][0];
    LMC_CHECK(tk_buf_reserve(out, keep + 4));
    for (int k = 0; k < nc; k++) {
        LMC_CHECK(tk_buf_append(out, doc + from, cut[k][0] - from));
        LMC_CHECK(tk_buf_append(out, fill[k], 2));
        from = cut[k][1];
    }
    return tk_buf_append(out, doc + from, len - from);
}

lmc_status tk_json_rest_parse(const char *text, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t bad_at = end && end >= text ? (size_t)(end - text) : 0;
    if (!*out) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: invalid JSON near byte %zu", bad_at);
    return LMC_OK;
}

lmc_status tk_json_rest(const char *doc, size_t len, const tk_json_model *m, cJSON **out) {
    *out = NULL;
    tk_buf text = {0};
    lmc_status st = tk_json_rest_text(doc, len, m, &text);
    if (st == LMC_OK) st = tk_json_rest_parse(text.p, text.len, out);
    tk_buf_free(&text);
    return st;
}

void tk_json_model_free(tk_json_model *m) {
    cJSON_Delete(m->rest);
    tk_vocab_tables_free(&m->tables);
    tk_table_free(m->arena, m->arena_size);
    tk_table_free(m->vocab, m->vocab_size);
    tk_table_free(m->merges, m->merges_size);
    free(m->scratch);
    memset(m, 0, sizeof *m);
}
