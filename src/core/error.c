#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { MSG_CAP = 12288 }; /* room for a quoted stderr tail of a subprocess bridge */
static _Thread_local char g_msg[MSG_CAP];
static _Thread_local lmc_status g_status = LMC_OK;

lmc_status lmc_set_error(lmc_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, MSG_CAP, fmt, ap);
    va_end(ap);
    g_status = s;
    return s;
}

void lmc_error_prefix(const char *fmt, ...) {
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build "prefix: old" by moving the old text right; truncate at the cap. */
    size_t plen = strlen(prefix), olen = strlen(g_msg);
    if (plen + 2 >= MSG_CAP) plen = MSG_CAP - 3;
    if (plen + 2 + olen >= MSG_CAP) olen = MSG_CAP - 1 - plen - 2;
    memmove(g_msg + plen + 2, g_msg, olen);
    memcpy(g_msg, prefix, plen);
    g_msg[plen] = ':';
    g_msg[plen + 1] = ' ';
    g_msg[plen + 2 + olen] = 0;
}

const char *lmc_last_error(void) { return g_msg; }
lmc_status lmc_last_status(void) { return g_status; }
void lmc_clear_error(void) {
    g_msg[0] = 0;
    g_status = LMC_OK;
}

const char *lmc_status_name(lmc_status s) {
    switch (s) {
    case LMC_OK: return "ok";
    case LMC_ERR_INVALID_ARGUMENT: return "invalid argument";
    case LMC_ERR_SHAPE: return "shape error";
    case LMC_ERR_OUT_OF_MEMORY: return "out of memory";
    case LMC_ERR_IO: return "I/O error";
    case LMC_ERR_FORMAT: return "format error";
    case LMC_ERR_UNSUPPORTED: return "unsupported";
    case LMC_ERR_NOT_FOUND: return "not found";
    case LMC_ERR_CANCELLED: return "cancelled";
    case LMC_ERR_CLOSED: return "closed";
    case LMC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
