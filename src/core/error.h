/* Internal error helpers: record a thread-local message and return the status. */
#ifndef LMC_CORE_ERROR_H
#define LMC_CORE_ERROR_H

#include "lmc/base.h"

/* Records status and a printf-style message for the calling thread; returns s. */
lmc_status lmc_set_error(lmc_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "context: " (e.g. a file name), keeping the status. */
void lmc_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define LMC_CHECK(expr)                   \
    do {                                  \
        lmc_status lmc_s_ = (expr);       \
        if (lmc_s_ != LMC_OK) return lmc_s_; \
    } while (0)

#endif
