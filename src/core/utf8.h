/* UTF-8 validation shared by every reader of untrusted text. */
#ifndef LMC_CORE_UTF8_H
#define LMC_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). On failure *bad_at (if not NULL)
 * receives the offset of the first invalid byte. */
bool lmc_utf8_valid(const char *s, size_t n, size_t *bad_at);

#endif
