#include "core/utf8.h"

#include <utf8proc.h>

bool lmc_utf8_valid(const char *s, size_t n, size_t *bad_at) {
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) { /* ASCII fast path: most of every header */
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        size_t left = n - i;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, left < 4 ? (utf8proc_ssize_t)left : 4, &cp);
        if (k <= 0) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += (size_t)k;
    }
    return true;
}

