/* A small reader for the tokenizer fixture lines (JSON objects on one line
 * whose string values may hold "\u0000", which cJSON would cut short). Only
 * what the fixtures use: strings, integer arrays, integers. */
#ifndef LMC_TESTS_TOKENIZER_FIXTURE_H
#define LMC_TESTS_TOKENIZER_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_value {
    char key[32];
    char *str; /* string value (decoded, may hold NULs) */
    size_t str_len;
    int64_t *arr; /* integer array value */
    size_t arr_len;
    int64_t num;
    int kind; /* 's' string, 'a' array, 'n' number */
} fx_value;

typedef struct fx_line {
    fx_value v[16];
    int n;
} fx_line;

static void fx_ws(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n') (*p)++;
}

static int fx_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses a JSON string at *p (on the opening quote) into a new buffer. */
static char *fx_string(const char **p, size_t *len) {
    if (**p != '"') return NULL;
    (*p)++;
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    while (out && **p && **p != '"') {
        if (n + 8 > cap) out = realloc(out, cap *= 2);
        if (!out) return NULL;
        char c = *(*p)++;
        if (c != '\\') { out[n++] = c; continue; }
        char e = *(*p)++;
        unsigned cp = 0;
        switch (e) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case '/': out[n++] = '/'; break;
        case '\\': out[n++] = '\\'; break;
        case '"': out[n++] = '"'; break;
        case 'u':
            if (!fx_hex4(*p, &cp)) { free(out); return NULL; }
            *p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && (*p)[0] == '\\' && (*p)[1] == 'u') {
                unsigned lo;
                if (fx_hex4(*p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    *p += 6;
                }
            }
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) { out[n++] = (char)(0xC0 | (cp >> 6)); out[n++] = (char)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12)); out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18)); out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        default: free(out); return NULL;
        }
    }
    if (!out || **p != '"') { free(out); return NULL; }
    (*p)++;
    out[n] = 0;
    *len = n;
    return out;
}

static void fx_free(fx_line *l) {
    for (int i = 0; i < l->n; i++) { free(l->v[i].str); free(l->v[i].arr); }
    l->n = 0;
}

/* Parses one line; returns false on malformed input. */
static bool fx_parse(const char *s, fx_line *l) {
    memset(l, 0, sizeof *l);
    const char *p = s;
    fx_ws(&p);
    if (*p++ != '{') return false;
    for (;;) {
        fx_ws(&p);
        if (*p == '}') return true;
        if (l->n == 16) return false;
        fx_value *v = &l->v[l->n];
        size_t kl;
        char *key = fx_string(&p, &kl);
        if (!key) return false;
        snprintf(v->key, sizeof v->key, "%s", key);
        free(key);
        fx_ws(&p);
        if (*p++ != ':') return false;
        fx_ws(&p);
        if (*p == '"') {
            v->kind = 's';
            if (!(v->str = fx_string(&p, &v->str_len))) return false;
        } else if (*p == '[') {
            v->kind = 'a';
            p++;
            size_t cap = 16;
            v->arr = malloc(cap * sizeof *v->arr);
            for (;;) {
                fx_ws(&p);
                if (*p == ']') { p++; break; }
                char *end;
                long long x = strtoll(p, &end, 10);
                if (end == p) return false;
                if (v->arr_len == cap) v->arr = realloc(v->arr, (cap *= 2) * sizeof *v->arr);
                v->arr[v->arr_len++] = x;
                p = end;
                fx_ws(&p);
                if (*p == ',') p++;
            }
        } else {
            char *end;
            v->kind = 'n';
            v->num = strtoll(p, &end, 10);
            if (end == p) return false;
            p = end;
        }
        l->n++;
        fx_ws(&p);
        if (*p == ',') p++;
    }
}

static const fx_value *fx_get(const fx_line *l, const char *key, int kind) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].key, key) && l->v[i].kind == kind) return &l->v[i];
    return NULL;
}

/* Reads a whole file (NULL when it cannot be opened). */
static char *fx_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *b = malloc(cap);
    while (b && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

#endif
