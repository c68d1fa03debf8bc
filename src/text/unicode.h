/* UTF-8 and Unicode helpers for the tokenizer: decoding, validation with
 * U+FFFD repair, and the character classes that Rust's char methods use
 * (the Hugging Face tokenizers library is written in Rust). */
#ifndef LMC_TEXT_UNICODE_H
#define LMC_TEXT_UNICODE_H

#include <stdbool.h>

#include "core/utf8.h"
#include <stddef.h>
#include <stdint.h>

/* Decodes one code point at s[0..n). Returns its byte length (1..4), or 0
 * when the bytes there are not valid UTF-8 (then *cp is unset). */
size_t lmc_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encodes cp into out (at least 4 bytes); returns the byte count. */
/* The value of a hex digit, or -1. */
int lmc_hex_digit(char c);
/* The value of 4 hex digits at h (as in \\uXXXX), or -1. */
int lmc_hex4(const char *h);
size_t lmc_utf8_encode(uint32_t cp, char *out);

/* Length of the invalid sequence at s[0..n) that one U+FFFD replaces, following
 * the "maximal subpart" practice of Python's bytes.decode('utf-8', 'replace')
 * and Rust's String::from_utf8_lossy. Only call where lmc_utf8_decode gave 0. */
size_t lmc_utf8_invalid_len(const char *s, size_t n);


/* Copies s[0..n) to a new NUL-terminated heap buffer, replacing every invalid
 * sequence with U+FFFD (as from_utf8_lossy does). *out_len gets the length.
 * Returns NULL when out of memory. */
char *lmc_utf8_lossy(const char *s, size_t n, size_t *out_len);

/* Character classes as Rust's char methods define them. */
bool lmc_uc_is_whitespace(uint32_t cp);   /* White_Space property */
bool lmc_uc_is_numeric(uint32_t cp);      /* general categories Nd, Nl, No */
bool lmc_uc_is_punctuation(uint32_t cp);  /* ASCII punctuation or categories P* */
bool lmc_uc_is_word(uint32_t cp);         /* regex \w: L*, M*, Nd, Nl, Pc */

/* The GPT-2 byte-level alphabet: each byte maps to one printable code point. */
uint32_t lmc_bytelevel_char(uint8_t b);
/* The byte a byte-level code point stands for, or -1 when cp is not in the alphabet. */
int lmc_bytelevel_byte(uint32_t cp);

#endif
