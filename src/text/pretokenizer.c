/* Pre-tokenizers: split normalized text into words for the model. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

/* GPT-2's pre-tokenizer regex (ByteLevel with use_regex). */
static const char *BYTELEVEL_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static bool json_bool(const cJSON *j, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

lmc_status tk_pretokenizer_parse(const cJSON *j, tk_pretokenizer *out) {
    memset(out, 0, sizeof *out);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "Split")) {
        out->type = TK_PRE_SPLIT;
        LMC_CHECK(tk_pattern_parse(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "tokenizer.json: Split pre_tokenizer", &out->pattern));
        LMC_CHECK(tk_behavior_parse(cJSON_GetObjectItemCaseSensitive(j, "behavior"), "tokenizer.json: Split pre_tokenizer", &out->behavior));
        out->invert = json_bool(j, "invert", false);
    } else if (!strcmp(t, "ByteLevel")) {
        out->type = TK_PRE_BYTELEVEL;
        out->add_prefix_space = json_bool(j, "add_prefix_space", true);
        out->use_regex = json_bool(j, "use_regex", true);
        if (out->use_regex) LMC_CHECK(tk_regex_compile(BYTELEVEL_RE, &out->re));
    } else if (!strcmp(t, "Metaspace")) {
        out->type = TK_PRE_METASPACE;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        uint32_t cp;
        if (!cJSON_IsString(r) || !(out->replacement_len = lmc_utf8_decode(r->valuestring, strlen(r->valuestring), &cp)) ||
            r->valuestring[out->replacement_len])
            return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Metaspace pre_tokenizer needs a one-character 'replacement'");
        memcpy(out->replacement, r->valuestring, out->replacement_len);
        out->prepend_scheme = TK_PREPEND_ALWAYS;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        if (cJSON_IsString(ps)) {
            if (!strcmp(ps->valuestring, "first")) out->prepend_scheme = TK_PREPEND_FIRST;
            else if (!strcmp(ps->valuestring, "never")) out->prepend_scheme = TK_PREPEND_NEVER;
            else if (strcmp(ps->valuestring, "always"))
                return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: Metaspace prepend_scheme '%s'", ps->valuestring);
        }
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
        if (cJSON_IsFalse(aps)) out->prepend_scheme = TK_PREPEND_NEVER;
        out->split = json_bool(j, "split", true);
    } else if (!strcmp(t, "Digits")) {
        out->type = TK_PRE_DIGITS;
        out->individual_digits = json_bool(j, "individual_digits", false);
    } else if (!strcmp(t, "Punctuation")) {
        out->type = TK_PRE_PUNCTUATION;
        out->behavior = TK_ISOLATED;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        if (b) LMC_CHECK(tk_behavior_parse(b, "tokenizer.json: Punctuation pre_tokenizer", &out->behavior));
    } else if (!strcmp(t, "Whitespace")) {
        out->type = TK_PRE_WHITESPACE;
        /* HF's \w+|[^\w\s]+ with Rust's Unicode \w spelled out (PCRE2's \w
         * differs on numbers such as U+00B2 and on marks). */
        LMC_CHECK(tk_regex_compile("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]+|"
                                   "[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\s]+",
                                   &out->re));
    } else if (!strcmp(t, "WhitespaceSplit")) {
        out->type = TK_PRE_WHITESPACE_SPLIT;
    } else if (!strcmp(t, "Sequence")) {
        out->type = TK_PRE_SEQUENCE;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(items)) return lmc_set_error(LMC_ERR_FORMAT, "tokenizer.json: Sequence pre_tokenizer without 'pretokenizers'");
        size_t n = (size_t)cJSON_GetArraySize(items);
        out->items = calloc(n ? n : 1, sizeof *out->items);
        if (!out->items) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            /* Counted first: a failed item's parts are freed with the rest. */
            LMC_CHECK(tk_pretokenizer_parse(it, &out->items[out->n_items++]));
        }
    } else {
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "tokenizer.json: unsupported pre_tokenizer type '%s'", t);
    }
    return LMC_OK;
}

void tk_pretokenizer_free(tk_pretokenizer *p) {
    tk_pattern_free(&p->pattern);
    if (p->re) pcre2_code_free(p->re);
    for (size_t i = 0; i < p->n_items; i++) tk_pretokenizer_free(&p->items[i]);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* The UTF-8 of each byte's byte-level character, built once. */
static char bl_utf8[256][3];
static uint8_t bl_len[256];
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;
static void bl_init(void) {
    for (int b = 0; b < 256; b++) bl_len[b] = (uint8_t)lmc_utf8_encode(lmc_bytelevel_char((uint8_t)b), bl_utf8[b]);
}

static bool is_digit_char(uint32_t cp) { return lmc_uc_is_numeric(cp); }

/* Splits one piece (s, n), appending the results to *out. */
static lmc_status split_piece(const tk_pretokenizer *p, const char *s, size_t n, bool origin, tk_matches *m,
                              tk_pieces *out) {
    switch (p->type) {
    case TK_PRE_SPLIT:
        LMC_CHECK(tk_pattern_find(&p->pattern, s, n, m));
        return tk_split_apply(m, p->behavior, p->invert, s, origin, out);
    case TK_PRE_DIGITS:
        LMC_CHECK(tk_predicate_find(is_digit_char, s, n, m));
        return tk_split_apply(m, p->individual_digits ? TK_ISOLATED : TK_CONTIGUOUS, false, s, origin, out);
    case TK_PRE_PUNCTUATION:
        LMC_CHECK(tk_predicate_find(lmc_uc_is_punctuation, s, n, m));
        return tk_split_apply(m, p->behavior, false, s, origin, out);
    case TK_PRE_WHITESPACE:
        LMC_CHECK(tk_regex_find(p->re, s, n, m));
        return tk_split_apply(m, TK_REMOVED, true, s, origin, out);
    case TK_PRE_WHITESPACE_SPLIT:
        LMC_CHECK(tk_predicate_find(lmc_uc_is_whitespace, s, n, m));
        return tk_split_apply(m, TK_REMOVED, false, s, origin, out);
    case TK_PRE_BYTELEVEL: {
        /* Prefix space, optional GPT-2 split, then bytes -> characters. */
        if (!p->use_regex) { /* the piece stays whole: map it straight into out */
            bool prefix = p->add_prefix_space && (n == 0 || s[0] != ' ');
            if (n == 0 && !prefix) return LMC_OK;
            size_t off = out->text.len;
            LMC_CHECK(tk_buf_reserve(&out->text, 2 * (n + 1)));
            char *o = out->text.p + off;
            if (prefix) { memcpy(o, bl_utf8[' '], bl_len[' ']); o += bl_len[' ']; }
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                memcpy(o, bl_utf8[c], 2); /* one or two bytes (code points < U+0800) */
                o += bl_len[c];
            }
            out->text.len = (size_t)(o - out->text.p);
            out->text.p[out->text.len] = 0;
            return tk_pieces_commit(out, off, origin);
        }
        tk_buf pre = {0};
        if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
            LMC_CHECK(tk_buf_append(&pre, " ", 1));
            LMC_CHECK(tk_buf_append(&pre, s, n));
            s = pre.p;
            n = pre.len;
        }
        tk_pieces words = {0};
        lmc_status st = LMC_OK;
        if (p->use_regex) {
            st = tk_regex_find(p->re, s, n, m);
            if (st == LMC_OK) st = tk_split_apply(m, TK_ISOLATED, false, s, origin, &words);
        } else if (n) {
            st = tk_pieces_add(&words, s, n, origin);
        }
        for (size_t w = 0; w < words.n && st == LMC_OK; w++) {
            const unsigned char *ws = (const unsigned char *)words.text.p + words.v[w].off;
            size_t wl = words.v[w].len;
            size_t off = out->text.len;
            st = tk_buf_reserve(&out->text, wl * 2);
            for (size_t i = 0; i < wl && st == LMC_OK; i++) {
                memcpy(out->text.p + out->text.len, bl_utf8[ws[i]], bl_len[ws[i]]);
                out->text.len += bl_len[ws[i]];
            }
            if (st == LMC_OK) {
                out->text.p[out->text.len] = 0;
                st = tk_pieces_commit(out, off, words.v[w].origin);
            }
        }
        tk_pieces_free(&words);
        tk_buf_free(&pre);
        return st;
    }
    case TK_PRE_METASPACE: {
        /* Spaces -> replacement, then prepend one unless the text already
         * starts with it, then split before each replacement. */
        tk_buf r = {0};
        lmc_status st = LMC_OK;
        bool prepend = p->prepend_scheme == TK_PREPEND_ALWAYS || (p->prepend_scheme == TK_PREPEND_FIRST && origin);
        bool starts = n > 0 && (s[0] == ' ' || (n >= p->replacement_len && !memcmp(s, p->replacement, p->replacement_len)));
        if (prepend && !starts) st = tk_buf_append(&r, p->replacement, p->replacement_len);
        for (size_t i = 0; i < n && st == LMC_OK; i++)
            st = s[i] == ' ' ? tk_buf_append(&r, p->replacement, p->replacement_len) : tk_buf_append(&r, s + i, 1);
        if (st == LMC_OK) {
            if (p->split) {
                tk_pattern pat = {.literal = (char *)p->replacement, .literal_len = p->replacement_len};
                st = tk_pattern_find(&pat, r.p ? r.p : "", r.len, m);
                if (st == LMC_OK) st = tk_split_apply(m, TK_MERGED_WITH_NEXT, false, r.p ? r.p : "", origin, out);
            } else if (r.len) {
                st = tk_pieces_add(out, r.p, r.len, origin);
            }
        }
        tk_buf_free(&r);
        return st;
    }
    case TK_PRE_SEQUENCE: break;
    }
    return lmc_set_error(LMC_ERR_INTERNAL, "tokenizer: bad pre-tokenizer");
}

lmc_status tk_pretokenize(const tk_pretokenizer *p, tk_pieces *io, tk_pieces *scratch) {
    if (p->type == TK_PRE_SEQUENCE) {
        for (size_t i = 0; i < p->n_items; i++) LMC_CHECK(tk_pretokenize(&p->items[i], io, scratch));
        return LMC_OK;
    }
    if (p->type == TK_PRE_BYTELEVEL) pthread_once(&bl_once, bl_init);
    tk_pieces_clear(scratch);
    tk_matches m = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < io->n && st == LMC_OK; i++) {
        const char *s = io->text.p + io->v[i].off;
        st = split_piece(p, s, io->v[i].len, io->v[i].origin, &m, scratch);
    }
    free(m.v);
    if (st != LMC_OK) return st;
    tk_pieces t = *io;
    *io = *scratch;
    *scratch = t;
    return LMC_OK;
}
