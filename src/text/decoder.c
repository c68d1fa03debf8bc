/* Decoders: token strings back to text (HF decoders). Each step maps a list
 * of strings to a list of strings; the caller joins the final list. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

static lmc_status one_char(const cJSON *j, const char *key, const char *where, uint32_t *cp) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    size_t k;
    if (!cJSON_IsString(v) || !(k = lmc_utf8_decode(v->valuestring, strlen(v->valuestring), cp)) || v->valuestring[k])
        return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: %s decoder needs a one-character '%s'", where, key);
    return LMC_OK;
}

lmc_status tk_decoder_parse(const cJSON *j, tk_decoder *out) {
    memset(out, 0, sizeof *out);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: decoder without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "ByteLevel")) out->type = TK_DEC_BYTELEVEL;
    else if (!strcmp(t, "ByteFallback")) out->type = TK_DEC_BYTEFALLBACK;
    else if (!strcmp(t, "Fuse")) out->type = TK_DEC_FUSE;
    else if (!strcmp(t, "Replace")) {
        out->type = TK_DEC_REPLACE;
        LMC_CHECK(tk_pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "tokenizer.json: Replace decoder", &out->pattern));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");
        if (!cJSON_IsString(c)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Replace decoder without 'content'");
        if (!(out->content = strdup(c->valuestring))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        out->content_len = strlen(out->content);
    } else if (!strcmp(t, "Strip")) {
        out->type = TK_DEC_STRIP;
        LMC_CHECK(one_char(j, "content", "Strip", &out->strip_char));
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start"), *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valueint < 0 || b->valueint < 0)
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Strip decoder needs 'start' and 'stop'");
        out->strip_start = (size_t)a->valueint;
        out->strip_stop = (size_t)b->valueint;
    } else if (!strcmp(t, "Metaspace")) {
        out->type = TK_DEC_METASPACE;
        LMC_CHECK(one_char(j, "replacement", "Metaspace", &out->replacement));
        out->prepend_scheme = TK_PREPEND_ALWAYS;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        if (cJSON_IsString(ps) && !strcmp(ps->valuestring, "first")) out->prepend_scheme = TK_PREPEND_FIRST;
        if (cJSON_IsString(ps) && !strcmp(ps->valuestring, "never")) out->prepend_scheme = TK_PREPEND_NEVER;
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space"))) out->prepend_scheme = TK_PREPEND_NEVER;
    } else if (!strcmp(t, "Sequence")) {
        out->type = TK_DEC_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(items)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Sequence decoder without 'decoders'");
        size_t n = (size_t)cJSON_GetArraySize(items);
        out->items = calloc(n ? n : 1, sizeof *out->items);
        if (!out->items) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            /* Counted first: a failed item's parts are freed with the rest. */
            LMC_CHECK(tk_decoder_parse(it, &out->items[out->n_items++]));
        }
    } else {
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: unsupported decoder type '%s'", t);
    }
    return LMC_OK;
}

void tk_decoder_free(tk_decoder *d) {
    tk_pattern_free(&d->pattern);
    free(d->content);
    for (size_t i = 0; i < d->n_items; i++) tk_decoder_free(&d->items[i]);
    free(d->items);
    memset(d, 0, sizeof *d);
}

bool tk_decoder_has_bytefallback(const tk_decoder *d) {
    if (d->type == TK_DEC_BYTEFALLBACK) return true;
    for (size_t i = 0; i < d->n_items; i++)
        if (tk_decoder_has_bytefallback(&d->items[i])) return true;
    return false;
}

#define PIECE(list, i) ((list)->text.p + (list)->v[i].off)

static lmc_status bytelevel(const tk_pieces *in, tk_pieces *out, bool keep_bytes) {
    tk_buf bytes = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, start = bytes.len;
        bool all = true;
        for (size_t k = 0; k < n && st == LMC_OK;) {
            uint32_t cp;
            size_t m = lmc_utf8_decode(s + k, n - k, &cp);
            int b = m ? lmc_bytelevel_byte(cp) : -1;
            if (b < 0) { all = false; break; }
            unsigned char c = (unsigned char)b;
            st = tk_buf_append(&bytes, &c, 1);
            k += m;
        }
        if (!all && st == LMC_OK) { /* a character outside the alphabet: the token's own bytes */
            bytes.len = start;
            st = tk_buf_append(&bytes, s, n);
        }
    }
    if (st == LMC_OK && keep_bytes) {
        st = tk_pieces_add(out, bytes.p ? bytes.p : "", bytes.len, false);
    } else if (st == LMC_OK) {
        size_t len;
        char *text = lmc_utf8_lossy(bytes.p ? bytes.p : "", bytes.len, &len);
        if (!text) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        else st = tk_pieces_add(out, text, len, false);
        free(text);
    }
    tk_buf_free(&bytes);
    return st;
}

/* "<0xAB>" -> 0xAB, else -1. */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int hi = lmc_hex_digit(s[3]), lo = lmc_hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static lmc_status flush_bytes(tk_buf *run, tk_pieces *out, bool keep_bytes) {
    if (!run->len) return LMC_OK;
    lmc_status st = LMC_OK;
    if (keep_bytes || lmc_utf8_valid(run->p, run->len, NULL)) st = tk_pieces_add(out, run->p, run->len, false);
    else /* one U+FFFD per byte, as HF's ByteFallback does */
        for (size_t i = 0; i < run->len && st == LMC_OK; i++) st = tk_pieces_add(out, "\xEF\xBF\xBD", 3, false);
    run->len = 0;
    return st;
}

static lmc_status bytefallback(const tk_pieces *in, tk_pieces *out, bool keep_bytes) {
    tk_buf run = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) {
        int b = byte_token(PIECE(in, i), in->v[i].len);
        if (b >= 0) {
            unsigned char c = (unsigned char)b;
            st = tk_buf_append(&run, &c, 1);
        } else {
            st = flush_bytes(&run, out, keep_bytes);
            if (st == LMC_OK) st = tk_pieces_add(out, PIECE(in, i), in->v[i].len, false);
        }
    }
    if (st == LMC_OK) st = flush_bytes(&run, out, keep_bytes);
    tk_buf_free(&run);
    return st;
}

static lmc_status replace(const tk_decoder *d, const tk_pieces *in, tk_pieces *out) {
    tk_matches m = {0};
    tk_buf t = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) {
        const char *s = PIECE(in, i);
        st = tk_pattern_find(&d->pattern, s, in->v[i].len, &m);
        t.len = 0;
        for (size_t k = 0; k < m.n && st == LMC_OK; k++)
            st = m.v[k].is_match ? tk_buf_append(&t, d->content, d->content_len)
                                 : tk_buf_append(&t, s + m.v[k].start, m.v[k].end - m.v[k].start);
        if (st == LMC_OK) st = tk_pieces_add(out, t.p ? t.p : "", t.len, false);
    }
    free(m.v);
    tk_buf_free(&t);
    return st;
}

static lmc_status strip(const tk_decoder *d, const tk_pieces *in, tk_pieces *out) {
    char c[4];
    size_t cl = lmc_utf8_encode(d->strip_char, c);
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) {
        const char *s = PIECE(in, i);
        size_t a = 0, b = in->v[i].len;
        for (size_t k = 0; k < d->strip_start && b - a >= cl && !memcmp(s + a, c, cl); k++) a += cl;
        for (size_t k = 0; k < d->strip_stop && b - a >= cl && !memcmp(s + b - cl, c, cl); k++) b -= cl;
        st = tk_pieces_add(out, s + a, b - a, false);
    }
    return st;
}

static lmc_status metaspace(const tk_decoder *d, const tk_pieces *in, tk_pieces *out) {
    char rep[4];
    size_t rl = lmc_utf8_encode(d->replacement, rep);
    tk_buf t = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len;
        bool drop = i == 0 && d->prepend_scheme != TK_PREPEND_NEVER;
        t.len = 0;
        for (size_t k = 0; k < n && st == LMC_OK;) {
            if (n - k >= rl && !memcmp(s + k, rep, rl)) {
                if (!drop) st = tk_buf_append(&t, " ", 1);
                k += rl;
            } else {
                st = tk_buf_append(&t, s + k, 1);
                k++;
            }
        }
        if (st == LMC_OK) st = tk_pieces_add(out, t.p ? t.p : "", t.len, false);
    }
    tk_buf_free(&t);
    return st;
}

static lmc_status fuse(const tk_pieces *in, tk_pieces *out) {
    tk_buf t = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < in->n && st == LMC_OK; i++) st = tk_buf_append(&t, PIECE(in, i), in->v[i].len);
    if (st == LMC_OK) st = tk_pieces_add(out, t.p ? t.p : "", t.len, false);
    tk_buf_free(&t);
    return st;
}

lmc_status tk_decode_chain(const tk_decoder *d, tk_pieces *io, tk_pieces *scratch, bool keep_bytes) {
    if (d->type == TK_DEC_SEQUENCE) {
        for (size_t i = 0; i < d->n_items; i++) LMC_CHECK(tk_decode_chain(&d->items[i], io, scratch, keep_bytes));
        return LMC_OK;
    }
    tk_pieces_clear(scratch);
    lmc_status st = LMC_ERR_INTERNAL;
    switch (d->type) {
    case TK_DEC_BYTELEVEL: st = bytelevel(io, scratch, keep_bytes); break;
    case TK_DEC_BYTEFALLBACK: st = bytefallback(io, scratch, keep_bytes); break;
    case TK_DEC_REPLACE: st = replace(d, io, scratch); break;
    case TK_DEC_STRIP: st = strip(d, io, scratch); break;
    case TK_DEC_METASPACE: st = metaspace(d, io, scratch); break;
    case TK_DEC_FUSE: st = fuse(io, scratch); break;
    case TK_DEC_SEQUENCE: break;
    }
    if (st != LMC_OK) return st;
    tk_pieces t = *io;
    *io = *scratch;
    *scratch = t;
    return LMC_OK;
}
