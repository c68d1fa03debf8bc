/* Normalizers: tokenizer.json "normalizer" objects, applied to each stretch
 * of text between added tokens. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

static lmc_status parse_content(const cJSON *j, const char *key, const char *where, char **out, size_t *len) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(c)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: %s without a string '%s'", where, key);
    *out = strdup(c->valuestring);
    if (!*out) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    *len = strlen(*out);
    return LMC_OK;
}

lmc_status tk_normalizer_parse(const cJSON *j, tk_normalizer *out) {
    memset(out, 0, sizeof *out);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "NFC")) out->type = TK_NORM_NFC;
    else if (!strcmp(t, "NFD")) out->type = TK_NORM_NFD;
    else if (!strcmp(t, "NFKC")) out->type = TK_NORM_NFKC;
    else if (!strcmp(t, "NFKD")) out->type = TK_NORM_NFKD;
    else if (!strcmp(t, "Lowercase")) out->type = TK_NORM_LOWERCASE;
    else if (!strcmp(t, "Replace")) {
        out->type = TK_NORM_REPLACE;
        LMC_CHECK(tk_pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "tokenizer.json: Replace normalizer", &out->pattern));
        LMC_CHECK(parse_content(j, "content", "Replace normalizer", &out->content, &out->content_len));
    } else if (!strcmp(t, "Prepend")) {
        out->type = TK_NORM_PREPEND;
        LMC_CHECK(parse_content(j, "prepend", "Prepend normalizer", &out->content, &out->content_len));
    } else if (!strcmp(t, "Strip")) {
        out->type = TK_NORM_STRIP;
        out->strip_left = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "strip_left"));
        out->strip_right = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "strip_right"));
    } else if (!strcmp(t, "Sequence")) {
        out->type = TK_NORM_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(items)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Sequence normalizer without 'normalizers'");
        size_t n = (size_t)cJSON_GetArraySize(items);
        out->items = calloc(n ? n : 1, sizeof *out->items);
        if (!out->items) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            /* Counted first: a failed item's parts are freed with the rest. */
            LMC_CHECK(tk_normalizer_parse(it, &out->items[out->n_items++]));
        }
    } else {
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: unsupported normalizer type '%s'", t);
    }
    return LMC_OK;
}

void tk_normalizer_free(tk_normalizer *n) {
    tk_pattern_free(&n->pattern);
    free(n->content);
    for (size_t i = 0; i < n->n_items; i++) tk_normalizer_free(&n->items[i]);
    free(n->items);
    memset(n, 0, sizeof *n);
}

/* Characters below `limit` are their own normal form and never combine with
 * what precedes them: U+0300 for NFC and NFKC (the second character of every
 * canonical composition is a combining mark, a jamo or another character
 * above it), U+00C0 for NFD, U+00A0 for the compatibility forms. So the text
 * is copied as it is up to the character before each run of characters at
 * or above the limit (a base that a combining mark in the run may join),
 * and only those stretches go through utf8proc. */
static lmc_status unicode_form(utf8proc_option_t opts, const char *s, size_t n, tk_buf *out) {
    uint32_t limit = (opts & UTF8PROC_COMPAT) ? 0xA0 : (opts & UTF8PROC_COMPOSE) ? 0x300 : 0xC0;
    out->len = 0;
    LMC_CHECK(tk_buf_reserve(out, n));
    size_t done = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = (unsigned char)s[i] < 0x80 ? 1 : lmc_utf8_decode(s + i, n - i, &cp);
        if (k == 1 || (k && cp < limit)) { i += k; continue; }
        size_t start = i; /* back to the base before the run, if any */
        if (start > done) {
            start--;
            while (start > done && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        }
        size_t end = i + (k ? k : 1);
        while (end < n && (unsigned char)s[end] >= 0x80) {
            size_t m = lmc_utf8_decode(s + end, n - end, &cp);
            if (m && cp < limit) break;
            end += m ? m : 1;
        }
        LMC_CHECK(tk_buf_append(out, s + done, start - done));
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + start, (utf8proc_ssize_t)(end - start), &dst,
                                          opts | UTF8PROC_STABLE);
        if (r < 0) {
            free(dst);
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
        }
        lmc_status st = tk_buf_append(out, dst, (size_t)r);
        free(dst);
        LMC_CHECK(st);
        done = i = end;
    }
    return tk_buf_append(out, s + done, n - done);
}

/* Rust's char::to_lowercase: the simple mapping, except U+0130 whose full
 * lowercase is two characters. */
static lmc_status lowercase(const char *s, size_t n, tk_buf *out) {
    out->len = 0;
    LMC_CHECK(tk_buf_reserve(out, n + 8));
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = lmc_utf8_decode(s + i, n - i, &cp);
        if (!k) { k = 1; cp = 0xFFFD; }
        i += k;
        char enc[8];
        size_t m;
        if (cp == 0x130) { memcpy(enc, "i\xCC\x87", 3); m = 3; }
        else m = lmc_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        LMC_CHECK(tk_buf_append(out, enc, m));
    }
    return LMC_OK;
}

static lmc_status replace(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out) {
    tk_matches m = {0};
    lmc_status st = tk_pattern_find(&nz->pattern, s, n, &m);
    out->len = 0;
    if (st == LMC_OK) st = tk_buf_reserve(out, n);
    for (size_t k = 0; k < m.n && st == LMC_OK; k++) {
        if (m.v[k].is_match) st = tk_buf_append(out, nz->content, nz->content_len);
        else st = tk_buf_append(out, s + m.v[k].start, m.v[k].end - m.v[k].start);
    }
    free(m.v);
    return st;
}

static lmc_status strip(bool left, bool right, const char *s, size_t n, tk_buf *out) {
    size_t a = 0, b = n;
    uint32_t cp;
    while (left && a < b) {
        size_t k = lmc_utf8_decode(s + a, b - a, &cp);
        if (!k || !lmc_uc_is_whitespace(cp)) break;
        a += k;
    }
    while (right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        size_t k = lmc_utf8_decode(s + st, b - st, &cp);
        if (!k || !lmc_uc_is_whitespace(cp)) break;
        b = st;
    }
    out->len = 0;
    return tk_buf_append(out, s + a, b - a);
}

lmc_status tk_normalize(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out) {
    switch (nz->type) {
    case TK_NORM_NFC: return unicode_form(UTF8PROC_COMPOSE, s, n, out);
    case TK_NORM_NFD: return unicode_form(UTF8PROC_DECOMPOSE, s, n, out);
    case TK_NORM_NFKC: return unicode_form(UTF8PROC_COMPOSE | UTF8PROC_COMPAT, s, n, out);
    case TK_NORM_NFKD: return unicode_form(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, s, n, out);
    case TK_NORM_LOWERCASE: return lowercase(s, n, out);
    case TK_NORM_REPLACE: return replace(nz, s, n, out);
    case TK_NORM_PREPEND:
        out->len = 0;
        if (n) LMC_CHECK(tk_buf_append(out, nz->content, nz->content_len));
        return tk_buf_append(out, s, n);
    case TK_NORM_STRIP: return strip(nz->strip_left, nz->strip_right, s, n, out);
    case TK_NORM_SEQUENCE: {
        /* Ping-pong between out and a scratch buffer. */
        out->len = 0;
        LMC_CHECK(tk_buf_append(out, s, n));
        tk_buf tmp = {0};
        lmc_status st = LMC_OK;
        for (size_t i = 0; i < nz->n_items && st == LMC_OK; i++) {
            st = tk_normalize(&nz->items[i], out->p, out->len, &tmp);
            tk_buf swap = *out;
            *out = tmp;
            tmp = swap;
        }
        tk_buf_free(&tmp);
        return st;
    }
    }
    return lmc_set_error(LMC_ERR_INTERNAL, "tokenizer: bad normalizer");
}
