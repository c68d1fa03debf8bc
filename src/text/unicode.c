#include "text/unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

size_t lmc_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return 0;
    unsigned c = u[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int lmc_hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int lmc_hex4(const char *h) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int d = lmc_hex_digit(h[k]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

size_t lmc_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = 0xC0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3F); o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F); o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/* The maximal subpart of an ill-formed sequence: the longest prefix that could
 * still begin a valid sequence (Unicode 3.9, "U+FFFD substitution of maximal
 * subparts"), at least one byte. */
size_t lmc_utf8_invalid_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 1;
    size_t i = 1;
    if (i < n && u[i] >= lo && u[i] <= hi) {
        i++;
        while (i < need && i < n && (u[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

char *lmc_utf8_lossy(const char *s, size_t n, size_t *out_len) {
    /* Each invalid byte grows to at most 3 bytes. */
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t i = 0, o = 0;
    uint32_t cp;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) { out[o++] = s[i++]; continue; }
        size_t k = lmc_utf8_decode(s + i, n - i, &cp);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            i += lmc_utf8_invalid_len(s + i, n - i);
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

bool lmc_uc_is_whitespace(uint32_t cp) {
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || cp == ' ';
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    }
    return cp >= 0x2000 && cp <= 0x200A;
}

bool lmc_uc_is_numeric(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool lmc_uc_is_punctuation(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
                          (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool lmc_uc_is_word(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
           c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC;
}

/* GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68
 * bytes map in order to U+0100 onwards. */
static bool bytelevel_printable(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t lmc_bytelevel_char(uint8_t b) {
    if (bytelevel_printable(b)) return b;
    unsigned n = 0;
    for (unsigned i = 0; i < b; i++) n += !bytelevel_printable(i);
    return 256 + n;
}

int lmc_bytelevel_byte(uint32_t cp) {
    if (cp < 256) return bytelevel_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned n = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!bytelevel_printable(b) && n-- == 0) return (int)b;
    return -1;
}
