/* A recogniser of JSON-object prefixes, one byte at a time (RFC 8259's
 * grammar; strings are valid UTF-8 from 0x20 up but '"' and '\', checked
 * byte by byte, so a token holding part of a character is judged by the
 * bytes it has and the rest of the character must follow), and the token
 * mask built on it. With a
 * compiled JSON Schema (json_schema.c) it also follows the schema: each
 * open container knows its node, a value's first byte picks its type (and
 * a union's alternative), object keys are matched against the properties
 * still allowed, enum values byte by byte, and array and string lengths
 * are counted; a prefix is accepted only if some document the schema
 * describes starts with it. */
#include "runtime/json_constraint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json_util.h"
#include "lmc/tokenizer.h"

enum {
    M_START,     /* before the top-level '{' */
    M_VALUE,     /* a value must start */
    M_OBJ_FIRST, /* after '{': a key or '}' */
    M_OBJ_KEY,   /* after ',' in an object: a key */
    M_KEY,       /* inside a key string */
    M_KEY_ESC,
    M_KEY_U,
    M_COLON,
    M_OBJ_NEXT,  /* after a member: ',' or '}' */
    M_ARR_FIRST, /* after '[': a value or ']' */
    M_ARR_NEXT,  /* after an element: ',' or ']' */
    M_STR,       /* inside a string value */
    M_STR_ESC,
    M_STR_U,
    M_NUM_SIGN,  /* '-' */
    M_NUM_ZERO,  /* a leading 0 */
    M_NUM_INT,
    M_NUM_DOT,
    M_NUM_FRAC,
    M_NUM_EXP,
    M_NUM_EXP_SIGN,
    M_NUM_EXP_DIG,
    M_SUR_BS,    /* after a high surrogate escape: '\\' of its low half (lit: 1 in a key) */
    M_SUR_U,     /* ... then 'u' */
    M_LIT,       /* inside true / false / null */
    M_SKEY,      /* inside a key of an object with a schema (cand, pos) */
    M_ENUM,      /* inside an enum value (cand, pos) */
    M_DONE,
};

static const char *const LITERALS[3] = {"true", "false", "null"};

void lmc_json_init(lmc_json_state *s, const lmc_json_schema *schema) {
    memset(s, 0, sizeof *s);
    s->mode = M_START;
    s->schema = schema;
}

void lmc_json_wrap(lmc_json_state *s, const char *pre, const char *post) {
    s->pre = pre;
    s->post = post;
    s->pre_len = pre ? (uint16_t)strnlen(pre, UINT16_MAX) : 0;
    s->post_len = post ? (uint16_t)strnlen(post, UINT16_MAX) : 0;
    s->lit_at = 0;
}

static const lmc_json_node *node_at(const lmc_json_state *s, uint16_t i) { return &s->schema->nodes[i]; }
static bool starts(const lmc_json_node *n, unsigned char c) { return n->first[c >> 6] >> (c & 63) & 1; }

/* The innermost container's node (0 at the top level or in any value). */
static uint16_t top_node(const lmc_json_state *s) { return s->schema && s->depth ? s->frame[s->depth - 1].node : 0; }

/* The properties of object o a key may name next: from index `from` up to
 * and including the first required one (optional ones may be skipped). */
static uint64_t key_candidates(const lmc_json_node *o, uint16_t from) {
    uint64_t m = 0;
    for (int k = from; k < o->n; k++) {
        m |= 1ull << k;
        if (o->required[k]) break;
    }
    return m;
}

static bool may_close_object(const lmc_json_state *s) {
    uint16_t top = top_node(s);
    if (!top) return true;
    const lmc_json_node *o = node_at(s, top);
    for (int k = s->frame[s->depth - 1].count; k < o->n; k++)
        if (o->required[k]) return false;
    return true;
}

static bool may_close_array(const lmc_json_state *s) {
    uint16_t top = top_node(s);
    return !top || s->frame[s->depth - 1].count >= node_at(s, top)->min;
}

/* The node of the value that starts now. */
static uint16_t value_node(const lmc_json_state *s) {
    if (!s->schema) return 0;
    if (!s->depth) return s->schema->root;
    uint16_t top = s->frame[s->depth - 1].node;
    if (s->frame[s->depth - 1].open == '[') return top ? node_at(s, top)->items : 0;
    return s->vnode; /* set by the key */
}

/* One byte of UTF-8 text with *left continuation bytes due, the next in
 * [*lo, *hi]: false when it cannot continue valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), so the reply's
 * strings are valid UTF-8 as JSON asks and what is masked is what is
 * delivered. */
static bool utf8_byte(uint8_t *left, uint8_t *lo, uint8_t *hi, unsigned char c) {
    if (*left) {
        if (c < *lo || c > *hi) return false;
        --*left;
        *lo = 0x80;
        *hi = 0xBF;
        return true;
    }
    if (c < 0x80) return true;
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) *left = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        *left = 2;
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        *left = 3;
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
    } else return false;
    return true;
}

static bool number_text(const char *t) { return *t == '-' || (*t >= '0' && *t <= '9'); }

bool lmc_json_done(const lmc_json_state *s) { return s->mode == M_DONE && s->lit_at == s->pre_len + s->post_len; }

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* A value just ended. */
static void after_value(lmc_json_state *s) {
    if (s->depth == 0) s->mode = M_DONE;
    else s->mode = s->frame[s->depth - 1].open == '{' ? M_OBJ_NEXT : M_ARR_NEXT;
}

static bool push(lmc_json_state *s, unsigned char c, uint16_t node) {
    if (s->depth == LMC_JSON_MAX_DEPTH) return false;
    s->frame[s->depth++] = (lmc_json_frame){.open = c, .node = node};
    s->mode = c == '{' ? M_OBJ_FIRST : M_ARR_FIRST;
    return true;
}

static bool close_container(lmc_json_state *s, unsigned char c) {
    if (!s->depth || s->frame[s->depth - 1].open != (c == '}' ? '{' : '[')) return false;
    s->depth--;
    after_value(s);
    return true;
}

/* The first byte of a value. */
static bool value_start(lmc_json_state *s, unsigned char c) {
    uint16_t v = value_node(s);
    if (v) {
        for (int hops = 0; node_at(s, v)->kind == LMC_JS_UNION; hops++) {
            const lmc_json_node *u = node_at(s, v);
            uint16_t next = 0;
            for (int k = 0; k < u->n && !next; k++)
                if (starts(node_at(s, u->child[k]), c)) next = u->child[k];
            if (!next || hops == 64) return false;
            v = next;
        }
        if (!starts(node_at(s, v), c)) return false;
    }
    uint16_t top = top_node(s);
    if (top && s->frame[s->depth - 1].open == '[') {
        if (s->frame[s->depth - 1].count >= node_at(s, top)->max) return false;
        s->frame[s->depth - 1].count++;
    }
    s->vnode = v;
    if (v && node_at(s, v)->kind == LMC_JS_ENUM) {
        const lmc_json_node *e = node_at(s, v);
        s->cand = 0;
        for (int k = 0; k < e->n; k++)
            if ((unsigned char)e->text[k][0] == c) s->cand |= 1ull << k;
        s->pos = 1;
        s->mode = M_ENUM; /* every value is two bytes or more, but a number */
        return true;
    }
    switch (c) {
    case '{': return push(s, c, v && !node_at(s, v)->open ? v : 0);
    case '[': return push(s, c, v);
    case '"':
        s->slen = 0;
        s->mode = M_STR;
        return true;
    case '-': s->mode = M_NUM_SIGN; return true;
    case '0': s->mode = M_NUM_ZERO; return true;
    case 't':
    case 'f':
    case 'n':
        s->mode = M_LIT;
        s->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        s->aux = 1;
        return true;
    default:
        if (c >= '1' && c <= '9') {
            s->mode = M_NUM_INT;
            return true;
        }
        return false;
    }
}

/* A byte after a number's last digit: it ends the number. */
static bool end_number(lmc_json_state *s, unsigned char c) {
    after_value(s);
    return lmc_json_step(s, c);
}

static bool json_step(lmc_json_state *s, unsigned char c) {
    switch (s->mode) {
    case M_START:
    case M_VALUE:
    case M_OBJ_FIRST:
    case M_OBJ_KEY:
    case M_COLON:
    case M_OBJ_NEXT:
    case M_ARR_FIRST:
    case M_ARR_NEXT:
        if (lmc_json_space(c)) return s->space++ < LMC_JSON_MAX_SPACE;
        s->space = 0;
        switch (s->mode) {
        case M_START: return s->schema ? value_start(s, c) : c == '{' && push(s, c, 0);
        case M_VALUE: return value_start(s, c);
        case M_OBJ_FIRST:
            if (c == '}') return may_close_object(s) && close_container(s, c);
            /* fall through */
        case M_OBJ_KEY: {
            if (c != '"') return false;
            uint16_t top = top_node(s);
            if (!top) {
                s->vnode = 0;
                s->mode = M_KEY;
                return true;
            }
            s->cand = key_candidates(node_at(s, top), s->frame[s->depth - 1].count);
            s->pos = 0;
            s->mode = M_SKEY;
            return s->cand != 0;
        }
        case M_COLON:
            if (c != ':') return false;
            s->mode = M_VALUE;
            return true;
        case M_OBJ_NEXT:
            if (c == ',') {
                uint16_t top = top_node(s);
                s->mode = M_OBJ_KEY;
                return !top || key_candidates(node_at(s, top), s->frame[s->depth - 1].count) != 0;
            }
            return c == '}' && may_close_object(s) && close_container(s, c);
        case M_ARR_FIRST:
            if (c == ']') return may_close_array(s) && close_container(s, c);
            return value_start(s, c);
        default: { /* M_ARR_NEXT */
            uint16_t top = top_node(s);
            if (c == ',') {
                s->mode = M_VALUE;
                return !top || s->frame[s->depth - 1].count < node_at(s, top)->max;
            }
            return c == ']' && may_close_array(s) && close_container(s, c);
        }
        }
    case M_KEY:
    case M_STR:
        if (s->u8left) return utf8_byte(&s->u8left, &s->u8lo, &s->u8hi, c); /* inside a multi-byte character */
        if (c < 0x20) return false;
        if (c >= 0x80 && !utf8_byte(&s->u8left, &s->u8lo, &s->u8hi, c)) return false;
        if (s->mode == M_STR && s->vnode) { /* a string with a schema: characters counted (an escape is one) */
            const lmc_json_node *n = node_at(s, s->vnode);
            if (c == '"' && s->slen < n->min) return false;
            if (c != '"' && s->slen++ >= n->max) return false;
        }
        if (c == '\\') s->mode = s->mode == M_KEY ? M_KEY_ESC : M_STR_ESC;
        else if (c == '"') {
            if (s->mode == M_KEY) s->mode = M_COLON;
            else after_value(s);
        }
        return true;
    case M_KEY_ESC:
    case M_STR_ESC: {
        bool key = s->mode == M_KEY_ESC;
        if (c == 'u') {
            s->mode = key ? M_KEY_U : M_STR_U;
            s->aux = 4;
            s->code = 0;
            return true;
        }
        if (!strchr("\"\\/bfnrt", c) || !c) return false;
        s->mode = key ? M_KEY : M_STR;
        return true;
    }
    case M_KEY_U:
    case M_STR_U: {
        if (!is_hex(c)) return false;
        s->code = (uint16_t)(s->code * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10));
        if (--s->aux) return true;
        /* UTF-16 surrogates only in pairs, high then low: JSON parsers refuse or mangle lone halves */
        bool key = s->mode == M_KEY_U, high = s->code >= 0xD800 && s->code <= 0xDBFF, low = s->code >= 0xDC00 && s->code <= 0xDFFF;
        if (s->surrogate ? !low : low) return false;
        s->surrogate = high;
        s->lit = key;
        s->mode = high ? M_SUR_BS : key ? M_KEY : M_STR;
        return true;
    }
    case M_SUR_BS:
        if (c != '\\') return false;
        s->mode = M_SUR_U;
        return true;
    case M_SUR_U:
        if (c != 'u') return false;
        s->mode = s->lit ? M_KEY_U : M_STR_U;
        s->aux = 4;
        s->code = 0;
        return true;
    case M_NUM_SIGN:
        if (c == '0') s->mode = M_NUM_ZERO;
        else if (c >= '1' && c <= '9') s->mode = M_NUM_INT;
        else return false;
        return true;
    case M_NUM_ZERO:
    case M_NUM_INT:
        if (s->mode == M_NUM_INT && is_digit(c)) return true;
        if (s->vnode && node_at(s, s->vnode)->kind == LMC_JS_INTEGER) return end_number(s, c); /* digits only */
        if (c == '.') s->mode = M_NUM_DOT;
        else if (c == 'e' || c == 'E') s->mode = M_NUM_EXP;
        else return end_number(s, c);
        return true;
    case M_NUM_DOT:
        if (!is_digit(c)) return false;
        s->mode = M_NUM_FRAC;
        return true;
    case M_NUM_FRAC:
        if (is_digit(c)) return true;
        if (c == 'e' || c == 'E') {
            s->mode = M_NUM_EXP;
            return true;
        }
        return end_number(s, c);
    case M_NUM_EXP:
        if (c == '+' || c == '-') s->mode = M_NUM_EXP_SIGN;
        else if (is_digit(c)) s->mode = M_NUM_EXP_DIG;
        else return false;
        return true;
    case M_NUM_EXP_SIGN:
        if (!is_digit(c)) return false;
        s->mode = M_NUM_EXP_DIG;
        return true;
    case M_NUM_EXP_DIG:
        return is_digit(c) ? true : end_number(s, c);
    case M_LIT: {
        const char *lit = LITERALS[s->lit];
        if ((unsigned char)lit[s->aux] != c) return false;
        if (!lit[++s->aux]) after_value(s);
        return true;
    }
    case M_SKEY: {
        const lmc_json_node *o = node_at(s, s->frame[s->depth - 1].node);
        uint64_t keep = 0;
        for (int k = 0; k < o->n; k++) {
            if (!(s->cand >> k & 1)) continue;
            if (c == '"' && o->len[k] == s->pos) { /* names are distinct: this is the one */
                s->frame[s->depth - 1].count = (uint16_t)(k + 1);
                s->vnode = o->child[k];
                s->mode = M_COLON;
                return true;
            }
            if (o->len[k] > s->pos && (unsigned char)o->text[k][s->pos] == c) keep |= 1ull << k;
        }
        if (!keep) return false;
        s->cand = keep;
        s->pos++;
        return true;
    }
    case M_ENUM: {
        const lmc_json_node *e = node_at(s, s->vnode);
        uint64_t keep = 0;
        bool whole_number = false;
        for (int k = 0; k < e->n; k++) {
            if (!(s->cand >> k & 1)) continue;
            if (e->len[k] > s->pos && (unsigned char)e->text[k][s->pos] == c) keep |= 1ull << k;
            else if (e->len[k] == s->pos) whole_number = true; /* only a number can be whole and still open */
        }
        if (!keep) {
            if (!whole_number) return false;
            after_value(s); /* c ends the number */
            return lmc_json_step(s, c);
        }
        s->cand = keep;
        s->pos++;
        for (int k = 0; k < e->n; k++) /* a whole string, literal, object or array ends the value */
            if ((keep >> k & 1) && e->len[k] == s->pos && !number_text(e->text[k])) {
                after_value(s);
                /* a tagged union's value (its first property, a string): the object goes on as that alternative */
                lmc_json_frame *f = s->depth ? &s->frame[s->depth - 1] : NULL;
                const lmc_json_node *o = f && f->open == '{' && f->node ? node_at(s, f->node) : NULL;
                if (o && o->variants && f->count == 1) f->node = o->variants[k];
            }
        return true;
    }
    default: /* M_DONE: nothing may follow */
        return false;
    }
}

/* Feeds token t's bytes from its byte `from` on; false at the first that does not fit. */
bool lmc_json_step(lmc_json_state *s, unsigned char c) {
    if (s->lit_at < s->pre_len) { /* the text before the document */
        if (c != (unsigned char)s->pre[s->lit_at]) return false;
        s->lit_at++;
        return true;
    }
    if (s->mode == M_DONE && s->post_len) { /* and after it */
        uint16_t i = (uint16_t)(s->lit_at - s->pre_len);
        if (i >= s->post_len || c != (unsigned char)s->post[i]) return false;
        s->lit_at++;
        return true;
    }
    return json_step(s, c);
}

static bool step_token(lmc_json_state *s, const lmc_token_bytes *tb, int32_t t, uint32_t from) {
    for (uint32_t i = tb->off[t] + from; i < tb->off[t + 1]; i++)
        if (!lmc_json_step(s, (unsigned char)tb->bytes[i])) return false;
    return true;
}

/* The tokens sorted[lo, hi) share their first d bytes, which took the
 * recogniser to *s: those that end there are allowed (kept[]); the rest
 * go on by groups of the same next byte, each group only when that byte
 * fits. So a token is tried once per prefix it shares, and a refused
 * prefix refuses its whole group at once. */
typedef struct trie_walk {
    const lmc_token_bytes *tb;
    const float *logits;
    int32_t *kept;
    int64_t n_kept;
} trie_walk;

static unsigned char byte_at(const lmc_token_bytes *tb, int32_t t, uint32_t d) {
    return (unsigned char)tb->bytes[tb->off[t] + d];
}

static void trie_allow(trie_walk *w, const lmc_json_state *s, int64_t lo, int64_t hi, uint32_t d) {
    const lmc_token_bytes *tb = w->tb;
    while (lo < hi && tb->off[tb->sorted[lo] + 1] - tb->off[tb->sorted[lo]] == d) {
        int32_t t = tb->sorted[lo++];
        if (d > 0 && w->logits[t] != -INFINITY) w->kept[w->n_kept++] = t;
    }
    lmc_json_state next;
    if (d >= 32) { /* deep prefixes (long tokens) one token at a time: the recursion stays shallow */
        for (; lo < hi; lo++) {
            int32_t t = tb->sorted[lo];
            lmc_json_copy(&next, s);
            if (w->logits[t] != -INFINITY && step_token(&next, tb, t, d)) w->kept[w->n_kept++] = t;
        }
        return;
    }
    while (lo < hi) {
        unsigned char c = byte_at(tb, tb->sorted[lo], d);
        /* the group's end: the first token whose byte d is above c (bytes at d never fall in the range) */
        int64_t a = lo + 1, b = hi;
        while (a < b) {
            int64_t mid = a + (b - a) / 2;
            if (byte_at(tb, tb->sorted[mid], d) <= c) a = mid + 1;
            else b = mid;
        }
        lmc_json_copy(&next, s);
        if (lmc_json_step(&next, c)) trie_allow(w, &next, lo, a, d + 1);
        lo = a;
    }
}

void lmc_json_mask(const lmc_json_state *s, const lmc_token_bytes *tb, const int32_t *eos, size_t n_eos, float *logits) {
    bool done = lmc_json_done(s);
    float keep[8];
    for (size_t i = 0; i < n_eos && i < 8; i++) keep[i] = eos[i] >= 0 && eos[i] < tb->vocab ? logits[eos[i]] : 0;
    /* inside a string with no maximum length, a token without '"', '\\'
     * and control bytes whose bytes continue valid UTF-8 stays inside it: no
     * state needed (most tokens, there) */
    bool plain = ((s->mode == M_STR && (!s->vnode || node_at(s, s->vnode)->max == UINT32_MAX)) || s->mode == M_KEY) &&
                 !s->u8left;
    /* elsewhere few tokens fit: walk the vocabulary as a trie, then -inf for
     * all but the ones kept */
    if (!plain && !done && tb->sorted) {
        size_t cap = (size_t)(tb->n_sorted ? tb->n_sorted : 1);
        trie_walk w = {.tb = tb, .logits = logits, .kept = malloc(cap * sizeof(int32_t))};
        float *vals = w.kept ? malloc(cap * sizeof *vals) : NULL;
        if (vals) {
            trie_allow(&w, s, 0, tb->n_sorted, 0);
            for (int64_t k = 0; k < w.n_kept; k++) vals[k] = logits[w.kept[k]];
            for (int64_t t = 0; t < tb->vocab; t++) logits[t] = -INFINITY; /* EOS too: the object is not whole */
            for (int64_t k = 0; k < w.n_kept; k++) logits[w.kept[k]] = vals[k];
            free(vals);
            free(w.kept);
            return;
        }
        free(w.kept); /* out of memory: the plain loop below */
    }
    /* a token by token pass; most fail on their first byte, tried once per byte value */
    bool first[256];
    lmc_json_state try;
    for (int c = 0; c < 256; c++) {
        lmc_json_copy(&try, s);
        first[c] = !done && lmc_json_step(&try, (unsigned char)c);
    }
    for (int64_t t = 0; t < tb->vocab; t++) {
        if (logits[t] == -INFINITY) continue;
        bool ok = false;
        if (plain && tb->in_string[t]) continue;
        if (!done && !tb->special[t] && tb->off[t + 1] > tb->off[t] && first[(unsigned char)tb->bytes[tb->off[t]]]) {
            lmc_json_copy(&try, s);
            ok = step_token(&try, tb, t, 0);
        }
        if (!ok) logits[t] = -INFINITY;
    }
    /* EOS only once the object is whole (then nothing else) */
    for (size_t i = 0; i < n_eos && i < 8; i++)
        if (eos[i] >= 0 && eos[i] < tb->vocab) logits[eos[i]] = done ? keep[i] : -INFINITY;
}

bool lmc_json_advance(lmc_json_state *s, const lmc_token_bytes *tb, int32_t t) {
    return t >= 0 && t < tb->vocab && !tb->special[t] && tb->off[t + 1] > tb->off[t] && step_token(s, tb, t, 0);
}

/* Byte order, a prefix before what it starts (then by id, for a fixed order). */
static int by_bytes(const void *a, const void *b, void *ctx) {
    const lmc_token_bytes *tb = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = tb->off[x + 1] - tb->off[x], ly = tb->off[y + 1] - tb->off[y];
    int c = memcmp(tb->bytes + tb->off[x], tb->bytes + tb->off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* The trie order (sorted) and the in-string flags of a table whose off, bytes and special are set. */
static lmc_status index_table(lmc_token_bytes *tb) {
    const int64_t vocab = tb->vocab;
    if (!(tb->sorted = malloc((size_t)(vocab ? vocab : 1) * sizeof *tb->sorted)))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t t = 0; t < vocab; t++)
        if (!tb->special[t] && tb->off[t + 1] > tb->off[t]) tb->sorted[tb->n_sorted++] = (int32_t)t;
    qsort_r(tb->sorted, (size_t)tb->n_sorted, sizeof *tb->sorted, by_bytes, tb);
    if (!(tb->in_string = calloc((size_t)(vocab ? vocab : 1), sizeof *tb->in_string)))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t t = 0; t < vocab; t++) {
        if (tb->special[t] || tb->off[t + 1] == tb->off[t]) continue;
        uint8_t left = 0, lo = 0x80, hi = 0xBF;
        bool ok = true;
        for (uint32_t i = tb->off[t]; ok && i < tb->off[t + 1]; i++) {
            unsigned char b = (unsigned char)tb->bytes[i];
            ok = left ? utf8_byte(&left, &lo, &hi, b) : b >= 0x20 && b != '"' && b != '\\' && utf8_byte(&left, &lo, &hi, b);
        }
        tb->in_string[t] = ok && !left;
    }
    return LMC_OK;
}

lmc_status lmc_token_bytes_build(const lmc_tokenizer *tok, int64_t vocab, lmc_token_bytes **out) {
    *out = NULL;
    lmc_token_bytes *tb = calloc(1, sizeof *tb);
    if (!tb) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    tb->vocab = vocab;
    tb->off = calloc((size_t)vocab + 1, sizeof *tb->off);
    tb->special = calloc((size_t)vocab, sizeof *tb->special);
    size_t cap = (size_t)vocab * 8 + 64, len = 0;
    tb->bytes = malloc(cap);
    lmc_status st = tb->off && tb->special && tb->bytes ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    int64_t have = (int64_t)lmc_tokenizer_vocab_size(tok);
    for (int64_t t = 0; st == LMC_OK && t < vocab; t++) {
        tb->off[t] = (uint32_t)len;
        tb->special[t] = t >= have || lmc_tokenizer_is_special(tok, (int32_t)t);
        char *text = NULL;
        size_t n = 0;
        int32_t id = (int32_t)t;
        if (tb->special[t] || lmc_tokenizer_token_bytes(tok, id, &text, &n) != LMC_OK) {
            tb->special[t] = true; /* a token that does not decode alone is never proposed */
            continue;
        }
        if (len + n > cap) {
            cap = (len + n) * 2;
            char *b = realloc(tb->bytes, cap);
            if (!b) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
            else tb->bytes = b;
        }
        if (st == LMC_OK) memcpy(tb->bytes + len, text, n), len += n;
        lmc_tokenizer_free_text(text);
    }
    if (st == LMC_OK) tb->off[vocab] = (uint32_t)len;
    if (st == LMC_OK) st = index_table(tb);
    if (st != LMC_OK) {
        lmc_token_bytes_free(tb);
        return st;
    }
    *out = tb;
    return LMC_OK;
}

lmc_status lmc_token_bytes_from(int64_t vocab, const uint32_t *off, const char *bytes, const bool *special,
                                lmc_token_bytes **out) {
    *out = NULL;
    lmc_token_bytes *tb = calloc(1, sizeof *tb);
    if (!tb) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    tb->vocab = vocab;
    tb->off = malloc(((size_t)vocab + 1) * sizeof *tb->off);
    tb->special = malloc((size_t)(vocab ? vocab : 1) * sizeof *tb->special);
    tb->bytes = malloc(off[vocab] ? off[vocab] : 1);
    lmc_status st = tb->off && tb->special && tb->bytes ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK) {
        memcpy(tb->off, off, ((size_t)vocab + 1) * sizeof *off);
        memcpy(tb->special, special, (size_t)vocab * sizeof *special);
        memcpy(tb->bytes, bytes, off[vocab]);
        st = index_table(tb);
    }
    if (st != LMC_OK) {
        lmc_token_bytes_free(tb);
        return st;
    }
    *out = tb;
    return LMC_OK;
}

void lmc_token_bytes_free(lmc_token_bytes *tb) {
    if (!tb) return;
    free(tb->in_string);
    free(tb->sorted);
    free(tb->off);
    free(tb->bytes);
    free(tb->special);
    free(tb);
}
