/* Jinja lexer with jinja2's whitespace rules as transformers configures them:
 *  - newlines are normalised to "\n" and one trailing newline is dropped
 *    (keep_trailing_newline=False);
 *  - "{%-", "{{-", "{#-" strip all whitespace before the tag, "-%}", "-}}",
 *    "-#}" all whitespace after it;
 *  - trim_blocks: the first newline after a block or comment tag is removed
 *    ("+%}" keeps it);
 *  - lstrip_blocks: whitespace between the start of a line and a block or
 *    comment tag is removed ("{%+" keeps it); "{{" is not affected.
 */
#include "text/jinja.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/unicode.h"

typedef struct lexer {
    jn_arena *a;
    const char *s;
    size_t n, pos;
    jtok *toks;
    size_t ntoks, cap;
    size_t lc_pos; /* line/column of lc_pos, advanced as tokens move forward */
    int lc_line, lc_col;
} lexer;

static void linecol(lexer *lx, size_t pos, int *line, int *col) {
    if (pos < lx->lc_pos) { lx->lc_pos = 0; lx->lc_line = 1; lx->lc_col = 1; }
    while (lx->lc_pos < pos && lx->lc_pos < lx->n) {
        if (lx->s[lx->lc_pos] == '\n') { lx->lc_line++; lx->lc_col = 1; }
        else if (((unsigned char)lx->s[lx->lc_pos] & 0xC0) != 0x80) lx->lc_col++;
        lx->lc_pos++;
    }
    *line = lx->lc_line;
    *col = lx->lc_col;
}

static bool fail(lexer *lx, size_t pos, const char *msg) {
    int line, col;
    linecol(lx, pos, &line, &col);
    lmc_set_error(LMC_ERR_FORMAT, "template syntax error at line %d, column %d: %s", line, col, msg);
    return false;
}

static jtok *emit(lexer *lx, jtok_type t, size_t pos) {
    if (lx->ntoks == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        jtok *nt = jn_alloc(lx->a, cap * sizeof(jtok));
        if (lx->ntoks) memcpy(nt, lx->toks, lx->ntoks * sizeof(jtok));
        lx->toks = nt;
        lx->cap = cap;
    }
    jtok *t0 = &lx->toks[lx->ntoks++];
    memset(t0, 0, sizeof *t0);
    t0->t = t;
    linecol(lx, pos, &t0->line, &t0->col);
    return t0;
}

/* Whitespace as Python's \s sees it; returns the byte length of the character at pos, 0 if not space. */
static size_t space_at(const char *s, size_t n, size_t pos) {
    size_t p = pos;
    int32_t c = jn_utf8_next(s, n, &p);
    return jn_is_space(c) ? p - pos : 0;
}

static size_t skip_spaces(const char *s, size_t n, size_t pos) {
    size_t k;
    while (pos < n && (k = space_at(s, n, pos)) > 0) pos += k;
    return pos;
}

/* Length of text[0..n) without trailing whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    size_t pos = 0, keep = 0;
    while (pos < n) {
        size_t k = space_at(s, n, pos);
        if (k) pos += k;
        else {
            jn_utf8_next(s, n, &pos);
            keep = pos;
        }
    }
    return keep;
}

/* Applies the whitespace control of a tag that starts right after text[0..n). */
static size_t strip_before_tag(const char *text, size_t n, char sign, bool block_like, bool line_starting) {
    if (sign == '-') return rstrip_len(text, n);
    if (sign == '+' || !block_like) return n;
    size_t l = n;
    while (l > 0 && text[l - 1] != '\n') l--;
    if (l == 0 && !line_starting) return n;
    if (l < n && skip_spaces(text, n, l) == n) return l;
    return n;
}

static void emit_data(lexer *lx, size_t pos, const char *text, size_t n) {
    if (!n) return;
    jtok *t = emit(lx, JT_DATA, pos);
    t->s = text;
    t->n = n;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A string literal: Python escape sequences, unknown ones kept as written. */
static bool lex_string(lexer *lx, jtok *t) {
    char q = lx->s[lx->pos];
    size_t start = lx->pos++;
    jn_buf b;
    jn_buf_init(&b, lx->a);
    for (;;) {
        if (lx->pos >= lx->n) return fail(lx, start, "unterminated string");
        char c = lx->s[lx->pos];
        if (c == q) { lx->pos++; break; }
        if (c != '\\') { jn_buf_addc(&b, c); lx->pos++; continue; }
        if (lx->pos + 1 >= lx->n) return fail(lx, start, "unterminated string");
        char e = lx->s[lx->pos + 1];
        lx->pos += 2;
        switch (e) {
        case '\n': break;
        case '\\': jn_buf_addc(&b, '\\'); break;
        case '\'': jn_buf_addc(&b, '\''); break;
        case '"': jn_buf_addc(&b, '"'); break;
        case 'a': jn_buf_addc(&b, '\a'); break;
        case 'b': jn_buf_addc(&b, '\b'); break;
        case 'f': jn_buf_addc(&b, '\f'); break;
        case 'n': jn_buf_addc(&b, '\n'); break;
        case 'r': jn_buf_addc(&b, '\r'); break;
        case 't': jn_buf_addc(&b, '\t'); break;
        case 'v': jn_buf_addc(&b, '\v'); break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int h = lx->pos < lx->n ? lmc_hex_digit(lx->s[lx->pos]) : -1;
                if (h < 0) return fail(lx, lx->pos, "truncated \\x, \\u or \\U escape in string");
                v = v * 16 + (uint32_t)h;
                lx->pos++;
            }
            if (v > 0x10FFFF) return fail(lx, lx->pos, "escape beyond U+10FFFF in string");
            jn_buf_add_cp(&b, v);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t v = (uint32_t)(e - '0');
                for (int i = 0; i < 2 && lx->pos < lx->n && lx->s[lx->pos] >= '0' && lx->s[lx->pos] <= '7'; i++)
                    v = v * 8 + (uint32_t)(lx->s[lx->pos++] - '0');
                jn_buf_add_cp(&b, v);
            } else {
                jn_buf_addc(&b, '\\');
                jn_buf_addc(&b, e);
            }
        }
    }
    t->t = JT_STRING;
    t->s = b.p ? b.p : "";
    t->n = b.n;
    return true;
}

/* Digits with optional '_' separators; returns the end. */
static size_t digits_end(const char *s, size_t n, size_t pos) {
    while (pos < n && (is_digit(s[pos]) || (s[pos] == '_' && pos + 1 < n && is_digit(s[pos + 1]) && pos > 0 && is_digit(s[pos - 1]))))
        pos++;
    return pos;
}

static bool lex_number(lexer *lx, jtok *t) {
    size_t start = lx->pos, end = digits_end(lx->s, lx->n, lx->pos);
    bool after_dot = start > 0 && lx->s[start - 1] == '.';
    bool is_float = false;
    if (!after_dot) {
        size_t e = end;
        if (e + 1 < lx->n && lx->s[e] == '.' && is_digit(lx->s[e + 1])) {
            e = digits_end(lx->s, lx->n, e + 1);
            is_float = true;
        }
        if (e < lx->n && (lx->s[e] == 'e' || lx->s[e] == 'E')) {
            size_t x = e + 1;
            if (x < lx->n && (lx->s[x] == '+' || lx->s[x] == '-')) x++;
            if (x < lx->n && is_digit(lx->s[x])) {
                e = digits_end(lx->s, lx->n, x);
                is_float = true;
            }
        }
        if (is_float) end = e;
    }
    char *buf = jn_alloc(lx->a, end - start + 1);
    size_t k = 0;
    for (size_t i = start; i < end; i++)
        if (lx->s[i] != '_') buf[k++] = lx->s[i];
    buf[k] = 0;
    lx->pos = end;
    if (is_float) {
        t->t = JT_FLOAT;
        t->f = strtod(buf, NULL);
        return true;
    }
    errno = 0;
    t->t = JT_INT;
    t->i = strtoll(buf, NULL, 10);
    if (errno == ERANGE) return fail(lx, start, "integer literal too large");
    return true;
}

static const char *const two_char_ops[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char single_ops[] = "+-/*%~[](){}<>=.:|,;";

/* Tokens inside {{ }} or {% %} up to the closing marker. */
static bool lex_tag(lexer *lx, bool block, bool *line_starting) {
    char stack[64];
    int depth = 0;
    size_t tag_start = lx->pos;
    for (;;) {
        lx->pos = skip_spaces(lx->s, lx->n, lx->pos);
        if (lx->pos >= lx->n)
            return fail(lx, tag_start, block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
        const char *p = lx->s + lx->pos;
        size_t left = lx->n - lx->pos;
        char close = block ? '%' : '}';
        if (depth == 0) {
            bool minus = left >= 3 && p[0] == '-' && p[1] == close && p[2] == '}';
            bool plus = block && left >= 3 && p[0] == '+' && p[1] == close && p[2] == '}';
            bool plain = left >= 2 && p[0] == close && p[1] == '}';
            if (minus || plus || plain) {
                emit(lx, block ? JT_BLOCK_END : JT_VAR_END, lx->pos);
                lx->pos += plain ? 2 : 3;
                size_t after = lx->pos;
                if (minus) lx->pos = skip_spaces(lx->s, lx->n, lx->pos);
                else if (plain && block && lx->pos < lx->n && lx->s[lx->pos] == '\n') lx->pos++;
                *line_starting = lx->pos > after ? lx->s[lx->pos - 1] == '\n' : false;
                return true;
            }
        }
        jtok *t = emit(lx, JT_OP, lx->pos);
        if (is_name_start(*p)) {
            size_t e = lx->pos;
            while (e < lx->n && (is_name_start(lx->s[e]) || is_digit(lx->s[e]))) e++;
            t->t = JT_NAME;
            t->s = jn_strndup(lx->a, p, e - lx->pos);
            t->n = e - lx->pos;
            lx->pos = e;
        } else if (is_digit(*p)) {
            if (!lex_number(lx, t)) return false;
        } else if (*p == '\'' || *p == '"') {
            if (!lex_string(lx, t)) return false;
        } else {
            size_t k = 0;
            for (int i = 0; two_char_ops[i]; i++)
                if (left >= 2 && p[0] == two_char_ops[i][0] && p[1] == two_char_ops[i][1]) k = 2;
            if (!k && strchr(single_ops, *p) && *p) k = 1;
            if (!k) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected char '%c'", *p);
                return fail(lx, lx->pos, msg);
            }
            memcpy(t->op, p, k);
            if (k == 1 && (*p == '(' || *p == '[' || *p == '{')) {
                if (depth == (int)sizeof stack) return fail(lx, lx->pos, "brackets nested too deeply");
                stack[depth++] = *p == '(' ? ')' : *p == '[' ? ']' : '}';
            } else if (k == 1 && (*p == ')' || *p == ']' || *p == '}')) {
                if (depth == 0 || stack[depth - 1] != *p) {
                    char msg[64];
                    snprintf(msg, sizeof msg, "unexpected '%c'", *p);
                    return fail(lx, lx->pos, msg);
                }
                depth--;
            }
            lx->pos += k;
        }
    }
}

/* After "{% raw %}": the text up to "{% endraw %}" is data. */
static bool lex_raw(lexer *lx, bool *line_starting) {
    size_t start = lx->pos;
    for (size_t i = start; i + 1 < lx->n; i++) {
        if (lx->s[i] != '{' || lx->s[i + 1] != '%') continue;
        size_t p = i + 2;
        char sign = p < lx->n && (lx->s[p] == '-' || lx->s[p] == '+') ? lx->s[p] : 0;
        if (sign) p++;
        p = skip_spaces(lx->s, lx->n, p);
        if (lx->n - p < 6 || memcmp(lx->s + p, "endraw", 6) != 0) continue;
        p = skip_spaces(lx->s, lx->n, p + 6);
        bool minus = lx->n - p >= 3 && lx->s[p] == '-' && lx->s[p + 1] == '%' && lx->s[p + 2] == '}';
        bool plus = lx->n - p >= 3 && lx->s[p] == '+' && lx->s[p + 1] == '%' && lx->s[p + 2] == '}';
        bool plain = lx->n - p >= 2 && lx->s[p] == '%' && lx->s[p + 1] == '}';
        if (!minus && !plus && !plain) continue;
        size_t len = strip_before_tag(lx->s + start, i - start, sign, true, *line_starting);
        emit_data(lx, start, lx->s + start, len);
        lx->pos = p + (plain ? 2 : 3);
        size_t after = lx->pos;
        if (minus) lx->pos = skip_spaces(lx->s, lx->n, lx->pos);
        else if (plain && lx->pos < lx->n && lx->s[lx->pos] == '\n') lx->pos++;
        *line_starting = lx->pos > after ? lx->s[lx->pos - 1] == '\n' : false;
        return true;
    }
    return fail(lx, start, "missing end of raw directive");
}

/* "{% raw %}" (with optional signs) at pos? Returns the position after it, or 0. */
static size_t raw_begin(const lexer *lx, size_t pos, bool *strip_after) {
    size_t p = skip_spaces(lx->s, lx->n, pos);
    if (lx->n - p < 3 || memcmp(lx->s + p, "raw", 3) != 0) return 0;
    p = skip_spaces(lx->s, lx->n, p + 3);
    if (lx->n - p >= 3 && lx->s[p] == '-' && lx->s[p + 1] == '%' && lx->s[p + 2] == '}') {
        *strip_after = true;
        return p + 3;
    }
    if (lx->n - p >= 2 && lx->s[p] == '%' && lx->s[p + 1] == '}') {
        *strip_after = false;
        return p + 2;
    }
    return 0;
}

bool jn_lex(jn_arena *a, const char *src, size_t n, jtok **toks, size_t *ntoks) {
    /* Normalise newlines and drop one trailing newline, as jinja2 does. */
    char *s = jn_alloc(a, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else s[m++] = src[i];
    }
    if (m > 0 && s[m - 1] == '\n') m--;
    s[m] = 0;

    lexer lx = {.a = a, .s = s, .n = m, .lc_line = 1, .lc_col = 1};
    bool line_starting = true;
    while (lx.pos < lx.n) {
        /* Find the next tag opener. */
        size_t start = lx.pos, open = lx.n;
        for (size_t i = start; i + 1 < lx.n; i++)
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) { open = i; break; }
        if (open == lx.n) {
            emit_data(&lx, start, s + start, lx.n - start);
            break;
        }
        char kind = s[open + 1];
        char sign = open + 2 < lx.n && (s[open + 2] == '-' || s[open + 2] == '+') ? s[open + 2] : 0;
        size_t len = strip_before_tag(s + start, open - start, sign, kind != '{', line_starting);
        emit_data(&lx, start, s + start, len);
        size_t body = open + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            const char *end = NULL;
            for (size_t i = body; i + 1 < lx.n; i++)
                if (s[i] == '#' && s[i + 1] == '}') { end = s + i; break; }
            if (!end) return fail(&lx, open, "missing end of comment tag");
            size_t e = (size_t)(end - s);
            char esign = e > body && (s[e - 1] == '-' || s[e - 1] == '+') ? s[e - 1] : 0;
            lx.pos = e + 2;
            size_t after = lx.pos;
            if (esign == '-') lx.pos = skip_spaces(s, lx.n, lx.pos);
            else if (!esign && lx.pos < lx.n && s[lx.pos] == '\n') lx.pos++;
            line_starting = lx.pos > after ? s[lx.pos - 1] == '\n' : false;
            continue;
        }
        bool strip_after = false;
        size_t raw_end = kind == '%' ? raw_begin(&lx, body, &strip_after) : 0;
        if (raw_end) {
            lx.pos = raw_end;
            if (strip_after) lx.pos = skip_spaces(s, lx.n, lx.pos);
            line_starting = lx.pos > raw_end ? s[lx.pos - 1] == '\n' : false;
            if (!lex_raw(&lx, &line_starting)) return false;
            continue;
        }
        emit(&lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, open);
        lx.pos = body;
        if (!lex_tag(&lx, kind == '%', &line_starting)) return false;
    }
    emit(&lx, JT_EOF, lx.n);
    *toks = lx.toks;
    *ntoks = lx.ntoks;
    return true;
}
