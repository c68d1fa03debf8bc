/* Streaming detokeniser.
 *
 * Decoding is not concatenative: a character may be split over several
 * byte-level or <0xXX> tokens, decoders treat the first token specially, and
 * transformers' clean-up rewrites " ." and friends across token boundaries.
 * So, as text-generation servers do, we decode a window: `prefix` is the
 * last token already turned into text (kept as context), `read` the end of
 * what was emitted; the new text is decode(ids[prefix:]) minus
 * decode(ids[prefix:read]), held back while it ends in U+FFFD (an unfinished
 * character) or while the last token is a byte-fallback token (a later byte
 * token can still change the whole run). Only tokens that decode to
 * something are kept (unknown ids and skipped special tokens vanish in HF's
 * decode too). When clean-up is on, raw text waits in `pending` until no
 * clean-up pattern can reach across the cut (see safe_cut). */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"

struct lmc_detokenizer {
    const lmc_tokenizer *tok;
    bool skip_special;
    tk_ids ids;
    size_t prefix, read;
    tk_buf prev, cur, pending, out;
};

lmc_status lmc_detokenizer_create(const lmc_tokenizer *tok, bool skip_special, lmc_detokenizer **out) {
    if (!tok || !out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_detokenizer_create: NULL argument");
    lmc_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    d->tok = tok;
    d->skip_special = skip_special;
    *out = d;
    return LMC_OK;
}

void lmc_detokenizer_free(lmc_detokenizer *d) {
    if (!d) return;
    free(d->ids.v);
    tk_buf_free(&d->prev);
    tk_buf_free(&d->cur);
    tk_buf_free(&d->pending);
    tk_buf_free(&d->out);
    free(d);
}

static bool visible(const lmc_detokenizer *d, int32_t id) {
    const lmc_tokenizer *t = d->tok;
    uint32_t len;
    if (!tk_token_str(t, id, &len)) return false;
    return !(d->skip_special && (t->tok_flags[id] & TK_TOK_SPECIAL));
}

static bool is_byte_token(const lmc_tokenizer *t, int32_t id) {
    uint32_t len;
    const char *s = tk_token_str(t, id, &len);
    return s && len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>';
}

/* Characters that occur in clean-up patterns, and the non-space character
 * pairs inside them (" n't", " 'm", " 's", " 've", " 're"). */
static bool in_patterns(char c) { return c && strchr(" '.?!,ntmsver", c) != NULL; }
static bool pattern_pair(char a, char b) {
    static const char *pairs[] = {"n'", "'t", "'m", "'s", "'v", "ve", "'r", "re"};
    for (size_t i = 0; i < 8; i++)
        if (pairs[i][0] == a && pairs[i][1] == b) return true;
    return false;
}

/* The longest prefix of p whose clean-up no later text can change. A
 * pattern's matched text (at any step of the replacement chain) is one
 * contiguous run of pattern characters of the raw text in which only spaces
 * are removed, so a cut is safe after a character that is not a pattern
 * character, or between two non-space characters that are not a pattern pair. */
static size_t safe_cut(const char *p, size_t n) {
    for (size_t cut = n; cut > 0; cut--) {
        if (cut < n && ((unsigned char)p[cut] & 0xC0) == 0x80) continue; /* inside a character */
        char a = p[cut - 1];
        if (!in_patterns(a)) return cut;
        if (cut < n && a != ' ' && p[cut] != ' ' && !pattern_pair(a, p[cut])) return cut;
    }
    return 0;
}

/* Appends raw decoded text to the output, through clean-up when it is on. */
static lmc_status emit(lmc_detokenizer *d, const char *s, size_t n, bool final) {
    if (!d->tok->clean_up_spaces) return tk_buf_append(&d->out, s, n);
    LMC_CHECK(tk_buf_append(&d->pending, s, n));
    size_t cut = final ? d->pending.len : safe_cut(d->pending.p, d->pending.len);
    if (cut == 0) return LMC_OK;
    tk_buf part = {0};
    lmc_status st = tk_buf_append(&part, d->pending.p, cut);
    if (st == LMC_OK) {
        tk_cleanup_spaces(&part);
        st = tk_buf_append(&d->out, part.p, part.len);
    }
    tk_buf_free(&part);
    memmove(d->pending.p, d->pending.p + cut, d->pending.len - cut);
    d->pending.len -= cut;
    return st;
}

static bool ends_with_replacement(const tk_buf *b) { return b->len >= 3 && !memcmp(b->p + b->len - 3, "\xEF\xBF\xBD", 3); }

/* Decodes the window and emits what is new; force ignores the hold-back rules. */
static lmc_status advance(lmc_detokenizer *d, bool force) {
    d->prev.len = d->cur.len = 0;
    LMC_CHECK(tk_decode_raw(d->tok, d->ids.v + d->prefix, d->read - d->prefix, d->skip_special, false, &d->prev));
    LMC_CHECK(tk_decode_raw(d->tok, d->ids.v + d->prefix, d->ids.n - d->prefix, d->skip_special, false, &d->cur));
    if (!force && ends_with_replacement(&d->cur)) return LMC_OK;
    if (d->cur.len < d->prev.len || memcmp(d->cur.p, d->prev.p, d->prev.len)) {
        if (!force) return LMC_OK; /* the context changed meaning; wait for more */
        d->prev.len = 0;           /* cannot happen with the supported decoders */
    }
    LMC_CHECK(emit(d, d->cur.p + d->prev.len, d->cur.len - d->prev.len, force));
    /* The last token becomes the context; older ids are dropped. */
    size_t keep = d->ids.n - 1;
    memmove(d->ids.v, d->ids.v + keep, sizeof *d->ids.v);
    d->ids.n = 1;
    d->prefix = 0;
    d->read = 1;
    return LMC_OK;
}

lmc_status lmc_detokenizer_feed(lmc_detokenizer *d, int32_t id, const char **text, size_t *len) {
    if (!d || !text || !len) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_detokenizer_feed: NULL argument");
    d->out.len = 0;
    LMC_CHECK(tk_buf_append(&d->out, "", 0));
    *text = d->out.p;
    *len = 0;
    if (!visible(d, id)) return LMC_OK;
    LMC_CHECK(tk_ids_push(&d->ids, id));
    if (d->tok->decoder_bytefallback && is_byte_token(d->tok, id)) return LMC_OK;
    LMC_CHECK(advance(d, false));
    *text = d->out.p;
    *len = d->out.len;
    return LMC_OK;
}

lmc_status lmc_detokenizer_flush(lmc_detokenizer *d, const char **text, size_t *len) {
    if (!d || !text || !len) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_detokenizer_flush: NULL argument");
    d->out.len = 0;
    LMC_CHECK(tk_buf_append(&d->out, "", 0));
    if (d->ids.n > d->read) LMC_CHECK(advance(d, true));
    LMC_CHECK(emit(d, "", 0, true));
    d->ids.n = d->prefix = d->read = 0;
    *text = d->out.p;
    *len = d->out.len;
    return LMC_OK;
}
