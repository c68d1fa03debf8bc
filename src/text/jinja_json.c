/* JSON <-> template values, matching Python's json.loads and json.dumps.
 *
 * cJSON is not used here because it keeps every number as a double: the
 * templates must see 1 and 1.0 as the distinct int and float they are in
 * Python, since both print differently. */
#include "text/jinja.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/unicode.h"

typedef struct jparser {
    jn_arena *a;
    const char *s;
    size_t n, pos;
    const char *what;
    const char *err;
    int depth;
} jparser;

static void skip_ws(jparser *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool lit(jparser *p, const char *w) {
    size_t k = strlen(w);
    if (p->n - p->pos >= k && memcmp(p->s + p->pos, w, k) == 0) {
        p->pos += k;
        return true;
    }
    return false;
}

static bool parse_string(jparser *p, jv *out) {
    p->pos++; /* opening quote */
    jn_buf b;
    jn_buf_init(&b, p->a);
    for (;;) {
        if (p->pos >= p->n) { p->err = "unterminated string"; return false; }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) { p->err = "control character in string"; return false; }
        if (c != '\\') {
            size_t start = p->pos;
            while (p->pos < p->n && p->s[p->pos] != '"' && p->s[p->pos] != '\\' && (unsigned char)p->s[p->pos] >= 0x20) p->pos++;
            jn_buf_add(&b, p->s + start, p->pos - start);
            continue;
        }
        if (p->pos + 1 >= p->n) { p->err = "unterminated string"; return false; }
        char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': jn_buf_addc(&b, '"'); break;
        case '\\': jn_buf_addc(&b, '\\'); break;
        case '/': jn_buf_addc(&b, '/'); break;
        case 'b': jn_buf_addc(&b, '\b'); break;
        case 'f': jn_buf_addc(&b, '\f'); break;
        case 'n': jn_buf_addc(&b, '\n'); break;
        case 'r': jn_buf_addc(&b, '\r'); break;
        case 't': jn_buf_addc(&b, '\t'); break;
        case 'u': {
            if (p->n - p->pos < 4 || lmc_hex4(p->s + p->pos) < 0) { p->err = "bad \\u escape"; return false; }
            uint32_t cp = (uint32_t)lmc_hex4(p->s + p->pos);
            p->pos += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p->n - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                int lo = lmc_hex4(p->s + p->pos + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (uint32_t)(lo - 0xDC00);
                    p->pos += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
            jn_buf_add_cp(&b, cp);
            break;
        }
        default: p->err = "bad escape in string"; return false;
        }
    }
    *out = jn_buf_value(&b);
    return true;
}

static bool parse_number(jparser *p, jv *out) {
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos < p->n && p->s[p->pos] == '0') p->pos++;
    else if (p->pos < p->n && p->s[p->pos] >= '1' && p->s[p->pos] <= '9')
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    else { p->err = "bad number"; return false; }
    bool is_float = false;
    if (p->pos < p->n && p->s[p->pos] == '.') {
        is_float = true;
        p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') { p->err = "bad number"; return false; }
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        is_float = true;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') { p->err = "bad number"; return false; }
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    char *tmp = jn_strndup(p->a, p->s + start, p->pos - start);
    if (!is_float) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno != ERANGE) {
            *out = jv_int(v);
            return true;
        }
        /* Beyond 64 bits: Python would keep an exact big integer; we keep the nearest double. */
    }
    *out = jv_float(strtod(tmp, NULL));
    return true;
}

static bool parse_value(jparser *p, jv *out) {
    if (++p->depth > 512) { p->err = "nesting too deep"; return false; }
    skip_ws(p);
    if (p->pos >= p->n) { p->err = "unexpected end of input"; return false; }
    char c = p->s[p->pos];
    bool ok = true;
    if (c == '{') {
        p->pos++;
        *out = jv_dict(p->a, 4);
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '}') p->pos++;
        else for (;;) {
            skip_ws(p);
            jv k, v;
            if (p->pos >= p->n || p->s[p->pos] != '"') { p->err = "expected a string key"; return false; }
            if (!parse_string(p, &k)) return false;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') { p->err = "expected ':'"; return false; }
            p->pos++;
            if (!parse_value(p, &v)) return false;
            jv_dict_set(p->a, out->d, k, v);
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->n && p->s[p->pos] == '}') { p->pos++; break; }
            p->err = "expected ',' or '}'";
            return false;
        }
    } else if (c == '[') {
        p->pos++;
        *out = jv_list(p->a, 4);
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ']') p->pos++;
        else for (;;) {
            jv v;
            if (!parse_value(p, &v)) return false;
            jv_list_push(p->a, out->l, v);
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->n && p->s[p->pos] == ']') { p->pos++; break; }
            p->err = "expected ',' or ']'";
            return false;
        }
    } else if (c == '"') ok = parse_string(p, out);
    else if (c == '-' || (c >= '0' && c <= '9')) {
        if (lit(p, "-Infinity")) *out = jv_float(-INFINITY);
        else ok = parse_number(p, out);
    } else if (lit(p, "true")) *out = jv_bool(true);
    else if (lit(p, "false")) *out = jv_bool(false);
    else if (lit(p, "null")) *out = jv_none();
    else if (lit(p, "NaN")) *out = jv_float(NAN);
    else if (lit(p, "Infinity")) *out = jv_float(INFINITY);
    else { p->err = "unexpected character"; ok = false; }
    p->depth--;
    return ok;
}

bool jn_json_parse(jn_arena *a, const char *text, size_t n, const char *what, jv *out) {
    jparser p = {.a = a, .s = text, .n = n, .what = what};
    bool ok = parse_value(&p, out);
    if (ok) {
        skip_ws(&p);
        if (p.pos != p.n) { p.err = "extra data after the value"; ok = false; }
    }
    if (!ok) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < p.pos && i < n; i++) {
            if (text[i] == '\n') { line++; col = 1; }
            else col++;
        }
        lmc_set_error(LMC_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu: %s", what, line, col, p.err);
    }
    return ok;
}

/* ---- dumping ---------------------------------------------------------- */

static void dump_string(jn_buf *b, const char *s, size_t n, bool ascii) {
    jn_buf_addc(b, '"');
    size_t pos = 0;
    while (pos < n) {
        size_t start = pos;
        int32_t c = jn_utf8_next(s, n, &pos);
        switch (c) {
        case '"': jn_buf_adds(b, "\\\""); break;
        case '\\': jn_buf_adds(b, "\\\\"); break;
        case '\n': jn_buf_adds(b, "\\n"); break;
        case '\r': jn_buf_adds(b, "\\r"); break;
        case '\t': jn_buf_adds(b, "\\t"); break;
        case '\b': jn_buf_adds(b, "\\b"); break;
        case '\f': jn_buf_adds(b, "\\f"); break;
        default:
            if (c < 0x20) jn_buf_printf(b, "\\u%04x", (unsigned)c);
            else if (ascii && c >= 0x80) {
                if (c >= 0x10000) {
                    uint32_t v = (uint32_t)c - 0x10000;
                    jn_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else jn_buf_printf(b, "\\u%04x", (unsigned)c);
            } else jn_buf_add(b, s + start, pos - start);
        }
    }
    jn_buf_addc(b, '"');
}

static void dump_float(jn_buf *b, double f) {
    if (isnan(f)) jn_buf_adds(b, "NaN");
    else if (isinf(f)) jn_buf_adds(b, f < 0 ? "-Infinity" : "Infinity");
    else jv_write_float(b, f);
}

static void newline_indent(jn_buf *b, const char *indent, int level) {
    jn_buf_addc(b, '\n');
    for (int i = 0; i < level; i++) jn_buf_adds(b, indent);
}

static int key_cmp(const void *x, const void *y) {
    const jstr *a = *(jstr *const *)x, *b = *(jstr *const *)y;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

static bool dump(jn_buf *b, jv x, const jn_json_opts *o, int level, const char **msg) {
    if (level > 512) { *msg = "value nested too deeply for tojson"; return false; }
    const char *isep = o->item_sep ? o->item_sep : o->indent ? "," : ", ";
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    switch (x.t) {
    case JV_NONE: jn_buf_adds(b, "null"); return true;
    case JV_BOOL: jn_buf_adds(b, x.b ? "true" : "false"); return true;
    case JV_INT: jn_buf_printf(b, "%lld", (long long)x.i); return true;
    case JV_FLOAT: dump_float(b, x.f); return true;
    case JV_STR: dump_string(b, x.s->p, x.s->n, o->ensure_ascii); return true;
    case JV_LIST:
        if (x.l->n == 0) { jn_buf_adds(b, "[]"); return true; }
        jn_buf_addc(b, '[');
        for (size_t i = 0; i < x.l->n; i++) {
            if (i) jn_buf_adds(b, isep);
            if (o->indent) newline_indent(b, o->indent, level + 1);
            if (!dump(b, x.l->v[i], o, level + 1, msg)) return false;
        }
        if (o->indent) newline_indent(b, o->indent, level);
        jn_buf_addc(b, ']');
        return true;
    case JV_DICT: {
        if (x.d->n == 0) { jn_buf_adds(b, "{}"); return true; }
        /* Keys become strings the way json.dumps converts them. */
        size_t n = x.d->n;
        jstr **keys = jn_alloc(b->a, n * sizeof *keys);
        size_t *order = jn_alloc(b->a, n * sizeof *order);
        for (size_t i = 0; i < n; i++) {
            jv k = x.d->k[i];
            jn_buf kb;
            jn_buf_init(&kb, b->a);
            if (k.t == JV_STR) { keys[i] = k.s; continue; }
            else if (k.t == JV_BOOL) jn_buf_adds(&kb, k.b ? "true" : "false");
            else if (k.t == JV_NONE) jn_buf_adds(&kb, "null");
            else if (k.t == JV_INT) jn_buf_printf(&kb, "%lld", (long long)k.i);
            else if (k.t == JV_FLOAT) dump_float(&kb, k.f);
            else { *msg = "keys must be str, int, float, bool or None"; return false; }
            keys[i] = jn_buf_value(&kb).s;
        }
        if (o->sort_keys) {
            /* Sort (key, index) pairs by key; the index rides along after the key pointer. */
            jstr **tmp = jn_alloc(b->a, n * 2 * sizeof *tmp);
            for (size_t i = 0; i < n; i++) { tmp[2 * i] = keys[i]; tmp[2 * i + 1] = (jstr *)(uintptr_t)i; }
            qsort(tmp, n, 2 * sizeof *tmp, key_cmp);
            for (size_t i = 0; i < n; i++) order[i] = (size_t)(uintptr_t)tmp[2 * i + 1];
        } else {
            for (size_t i = 0; i < n; i++) order[i] = i;
        }
        jn_buf_addc(b, '{');
        for (size_t j = 0; j < n; j++) {
            size_t i = order[j];
            if (j) jn_buf_adds(b, isep);
            if (o->indent) newline_indent(b, o->indent, level + 1);
            dump_string(b, keys[i]->p, keys[i]->n, o->ensure_ascii);
            jn_buf_adds(b, ksep);
            if (!dump(b, x.d->v[i], o, level + 1, msg)) return false;
        }
        if (o->indent) newline_indent(b, o->indent, level);
        jn_buf_addc(b, '}');
        return true;
    }
    case JV_UNDEF: *msg = "Object of type Undefined is not JSON serializable"; return false;
    case JV_NS: *msg = "Object of type Namespace is not JSON serializable"; return false;
    case JV_FUNC: *msg = "Object of type function is not JSON serializable"; return false;
    case JV_LOOP: *msg = "Object of type LoopContext is not JSON serializable"; return false;
    }
    return false;
}

bool jn_json_dump(jn_buf *b, jv x, const jn_json_opts *o, const char **msg) {
    return dump(b, x, o, 0, msg);
}
