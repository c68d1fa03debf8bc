/* Arena, values and their Python-style text forms for the Jinja interpreter. */
#include "text/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/unicode.h"

/* ---- arena ---------------------------------------------------------- */

struct jn_chunk {
    jn_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void jn_arena_init(jn_arena *a, size_t limit) {
    memset(a, 0, sizeof *a);
    a->limit = limit;
}

void jn_arena_free(jn_arena *a) {
    jn_chunk *c = a->head;
    while (c) {
        jn_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *jn_alloc(jn_arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (n == 0) n = sizeof(max_align_t);
    jn_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        if (a->limit && a->total + cap > a->limit) goto fail;
        c = malloc(sizeof(jn_chunk) + cap);
        if (!c) goto fail;
        c->cap = cap;
        c->used = 0;
        /* A big block gets its own chunk behind the head so the head's free space stays usable. */
        if (a->head && n > (64u << 10)) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
        a->total += cap;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
fail:
    lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "template: out of memory (limit %zu bytes)", a->limit);
    if (a->fail) longjmp(*a->fail, 1);
    return NULL;
}

char *jn_strndup(jn_arena *a, const char *s, size_t n) {
    char *p = jn_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- values --------------------------------------------------------- */

jv jv_undef(const char *msg) { return (jv){.t = JV_UNDEF, .undef = msg}; }
jv jv_none(void) { return (jv){.t = JV_NONE}; }
jv jv_bool(bool b) { return (jv){.t = JV_BOOL, .b = b}; }
jv jv_int(int64_t i) { return (jv){.t = JV_INT, .i = i}; }
jv jv_float(double f) { return (jv){.t = JV_FLOAT, .f = f}; }

jv jv_str(jn_arena *a, const char *s, size_t n) {
    jstr *p = jn_alloc(a, sizeof(jstr) + n + 1);
    p->n = n;
    if (n) memcpy(p->p, s, n);
    p->p[n] = 0;
    return (jv){.t = JV_STR, .s = p};
}

jv jv_cstr(jn_arena *a, const char *s) { return jv_str(a, s, strlen(s)); }

jv jv_list(jn_arena *a, size_t cap) {
    jlist *l = jn_alloc(a, sizeof *l);
    l->cap = cap ? cap : 4;
    l->v = jn_alloc(a, l->cap * sizeof(jv));
    return (jv){.t = JV_LIST, .l = l};
}

jv jv_dict(jn_arena *a, size_t cap) {
    jdict *d = jn_alloc(a, sizeof *d);
    d->cap = cap ? cap : 4;
    d->k = jn_alloc(a, d->cap * sizeof(jv));
    d->v = jn_alloc(a, d->cap * sizeof(jv));
    return (jv){.t = JV_DICT, .d = d};
}

void jv_list_push(jn_arena *a, jlist *l, jv x) {
    if (l->n == l->cap) {
        jv *nv = jn_alloc(a, 2 * l->cap * sizeof(jv));
        memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = x;
}

jv *jv_dict_get(const jdict *d, jv k) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], k)) return &d->v[i];
    return NULL;
}

jv *jv_dict_gets(const jdict *d, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].s->n == n && memcmp(d->k[i].s->p, key, n) == 0) return &d->v[i];
    return NULL;
}

void jv_dict_set(jn_arena *a, jdict *d, jv k, jv v) {
    jv *old = jv_dict_get(d, k);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        jv *nk = jn_alloc(a, 2 * d->cap * sizeof(jv));
        jv *nv = jn_alloc(a, 2 * d->cap * sizeof(jv));
        memcpy(nk, d->k, d->n * sizeof(jv));
        memcpy(nv, d->v, d->n * sizeof(jv));
        d->k = nk;
        d->v = nv;
        d->cap *= 2;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
}

bool jv_truthy(jv x) {
    switch (x.t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return x.b;
    case JV_INT: return x.i != 0;
    case JV_FLOAT: return x.f != 0.0;
    case JV_STR: return x.s->n != 0;
    case JV_LIST: return x.l->n != 0;
    case JV_DICT: return x.d->n != 0;
    case JV_NS: case JV_FUNC: case JV_LOOP: return true;
    }
    return false;
}

static bool is_num(jv x) { return x.t == JV_BOOL || x.t == JV_INT || x.t == JV_FLOAT; }

/* Values can nest without bound (a list built in a loop); past this depth
 * equality falls back to identity and printing to an ellipsis, so the C
 * stack stays bounded. */
enum { MAX_VALUE_DEPTH = 200 };

static bool equal_at(jv a, jv b, int depth);

bool jv_equal(jv a, jv b) { return equal_at(a, b, 0); }

static bool equal_at(jv a, jv b, int depth) {
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_BOOL ? a.b : a.i, y = b.t == JV_BOOL ? b.b : b.i;
            return x == y;
        }
        double x = a.t == JV_FLOAT ? a.f : a.t == JV_BOOL ? a.b : (double)a.i;
        double y = b.t == JV_FLOAT ? b.f : b.t == JV_BOOL ? b.b : (double)b.i;
        return x == y;
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.s->n == b.s->n && memcmp(a.s->p, b.s->p, a.s->n) == 0;
    case JV_LIST:
        if (a.l == b.l) return true;
        if (a.l->tuple != b.l->tuple || a.l->n != b.l->n || depth > MAX_VALUE_DEPTH) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!equal_at(a.l->v[i], b.l->v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.d == b.d) return true;
        if (a.d->n != b.d->n || depth > MAX_VALUE_DEPTH) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            jv *o = jv_dict_get(b.d, a.d->k[i]);
            if (!o || !equal_at(a.d->v[i], *o, depth + 1)) return false;
        }
        return true;
    case JV_NS: return a.d == b.d;
    case JV_FUNC: return a.fn == b.fn;
    case JV_LOOP: return a.lp == b.lp;
    default: return false;
    }
}

const char *jv_type_name(jv x) {
    switch (x.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return x.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

/* ---- buffers -------------------------------------------------------- */

void jn_buf_init(jn_buf *b, jn_arena *a) { *b = (jn_buf){.a = a}; }

static void buf_reserve(jn_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = jn_alloc(b->a, cap);
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
}

void jn_buf_add(jn_buf *b, const char *s, size_t n) {
    if (!n) return;
    buf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jn_buf_adds(jn_buf *b, const char *s) { jn_buf_add(b, s, strlen(s)); }
void jn_buf_addc(jn_buf *b, char c) { jn_buf_add(b, &c, 1); }

void jn_buf_add_cp(jn_buf *b, uint32_t c) {
    char u[4];
    if (c >= 0xD800 && c < 0xE000) c = 0xFFFD;
    jn_buf_add(b, u, lmc_utf8_encode(c, u));
}

void jn_buf_printf(jn_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        jn_buf_add(b, tmp, (size_t)k);
        return;
    }
    buf_reserve(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

jv jn_buf_value(jn_buf *b) { return jv_str(b->a, b->p ? b->p : "", b->n); }

/* ---- UTF-8 ------------------------------------------------------------ */

int32_t jn_utf8_next(const char *s, size_t n, size_t *pos) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = *pos;
    unsigned c = u[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + (size_t)len > n) {
        *pos = i + 1;
        return 0xFFFD;
    }
    if (len == 1) {
        *pos = i + 1;
        return (int32_t)c;
    }
    int32_t cp = (int32_t)(c & (0x7F >> len));
    for (int k = 1; k < len; k++) {
        if ((u[i + k] & 0xC0) != 0x80) {
            *pos = i + 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    *pos = i + (size_t)len;
    return cp;
}

size_t jn_utf8_len(const char *s, size_t n) {
    size_t pos = 0, k = 0;
    while (pos < n) {
        jn_utf8_next(s, n, &pos);
        k++;
    }
    return k;
}

bool jn_is_space(int32_t c) {
    if (c <= 0x20) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ---- str() and repr() ----------------------------------------------- */

void jv_write_float(jn_buf *b, double f) {
    if (isnan(f)) { jn_buf_adds(b, "nan"); return; }
    if (isinf(f)) { jn_buf_adds(b, f < 0 ? "-inf" : "inf"); return; }
    /* Shortest digits that round-trip, then Python's layout: positional for
     * decimal exponents -5 < e < 16, scientific otherwise. */
    char tmp[40];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", prec, f);
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') { neg = true; p++; }
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int e = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) jn_buf_addc(b, '-');
    if (e < -4 || e >= 16) {
        jn_buf_addc(b, digits[0]);
        if (nd > 1) {
            jn_buf_addc(b, '.');
            jn_buf_add(b, digits + 1, (size_t)nd - 1);
        }
        jn_buf_printf(b, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (e < 0) {
        jn_buf_adds(b, "0.");
        for (int i = 0; i < -e - 1; i++) jn_buf_addc(b, '0');
        jn_buf_add(b, digits, (size_t)nd);
    } else {
        for (int i = 0; i <= e; i++) jn_buf_addc(b, i < nd ? digits[i] : '0');
        jn_buf_addc(b, '.');
        if (nd > e + 1) jn_buf_add(b, digits + e + 1, (size_t)(nd - e - 1));
        else jn_buf_addc(b, '0');
    }
}

static void write_str_repr(jn_buf *b, const jstr *s) {
    bool has_sq = memchr(s->p, '\'', s->n) != NULL, has_dq = memchr(s->p, '"', s->n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jn_buf_addc(b, q);
    size_t pos = 0;
    while (pos < s->n) {
        size_t start = pos;
        int32_t c = jn_utf8_next(s->p, s->n, &pos);
        if (c == q || c == '\\') { jn_buf_addc(b, '\\'); jn_buf_addc(b, (char)c); }
        else if (c == '\n') jn_buf_adds(b, "\\n");
        else if (c == '\r') jn_buf_adds(b, "\\r");
        else if (c == '\t') jn_buf_adds(b, "\\t");
        else if (c < 0x20 || (c >= 0x7F && c < 0xA0)) jn_buf_printf(b, "\\x%02x", (unsigned)c);
        else jn_buf_add(b, s->p + start, pos - start);
    }
    jn_buf_addc(b, q);
}

static void write_repr_at(jn_buf *b, jv x, int depth);

static void write_container(jn_buf *b, jv x, int depth) {
    if (depth > MAX_VALUE_DEPTH) {
        jn_buf_adds(b, x.t == JV_LIST ? "[...]" : "{...}");
        return;
    }
    if (x.t == JV_LIST) {
        jn_buf_addc(b, x.l->tuple ? '(' : '[');
        for (size_t i = 0; i < x.l->n; i++) {
            if (i) jn_buf_adds(b, ", ");
            write_repr_at(b, x.l->v[i], depth + 1);
        }
        if (x.l->tuple && x.l->n == 1) jn_buf_addc(b, ',');
        jn_buf_addc(b, x.l->tuple ? ')' : ']');
    } else {
        if (x.t == JV_NS) jn_buf_adds(b, "<Namespace ");
        jn_buf_addc(b, '{');
        for (size_t i = 0; i < x.d->n; i++) {
            if (i) jn_buf_adds(b, ", ");
            write_repr_at(b, x.d->k[i], depth + 1);
            jn_buf_adds(b, ": ");
            write_repr_at(b, x.d->v[i], depth + 1);
        }
        jn_buf_addc(b, '}');
        if (x.t == JV_NS) jn_buf_addc(b, '>');
    }
}

static void write_str_at(jn_buf *b, jv x, int depth) {
    switch (x.t) {
    case JV_UNDEF: return;
    case JV_NONE: jn_buf_adds(b, "None"); return;
    case JV_BOOL: jn_buf_adds(b, x.b ? "True" : "False"); return;
    case JV_INT: jn_buf_printf(b, "%lld", (long long)x.i); return;
    case JV_FLOAT: jv_write_float(b, x.f); return;
    case JV_STR: jn_buf_add(b, x.s->p, x.s->n); return;
    case JV_LIST: case JV_DICT: case JV_NS: write_container(b, x, depth); return;
    case JV_FUNC: jn_buf_adds(b, "<function>"); return;
    case JV_LOOP: jn_buf_printf(b, "<LoopContext %zu/%zu>", x.lp->i + 1, x.lp->n); return;
    }
}

static void write_repr_at(jn_buf *b, jv x, int depth) {
    if (x.t == JV_STR) write_str_repr(b, x.s);
    else if (x.t == JV_UNDEF) jn_buf_adds(b, "Undefined");
    else write_str_at(b, x, depth);
}

void jv_write_str(jn_buf *b, jv x) { write_str_at(b, x, 0); }
void jv_write_repr(jn_buf *b, jv x) { write_repr_at(b, x, 0); }
