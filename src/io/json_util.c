/* Helpers shared by the JSON-based readers and writers. */
#include "io/json_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "core/error.h"

lmc_status lmc_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us */
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        lmc_status s = lmc_set_error(LMC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return s;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lmc_set_error(LMC_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return lmc_set_error(LMC_ERR_FORMAT, "%s: file is %lld bytes, more than the %zu allowed", path,
                             (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    bool err = ferror(f);
    fclose(f);
    if (err || got != n) {
        free(buf);
        return lmc_set_error(LMC_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return LMC_OK;
}

cJSON *lmc_json_parse(const char *data, size_t n, size_t *err_at) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, n, &end, 0);
    if (!root) {
        if (err_at) *err_at = end && end >= data ? (size_t)(end - data) : 0;
        return NULL;
    }
    for (const char *p = end; p < data + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            if (err_at) *err_at = (size_t)(p - data);
            cJSON_Delete(root);
            return NULL;
        }
    return root;
}

bool lmc_json_has_nul_escape(const char *s, size_t n, size_t *at) {
    /* A backslash always starts a two-character escape, so skipping the
     * character after each one visits exactly the escapes. */
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) {
            *at = i;
            return true;
        }
        i++;
    }
    return false;
}

lmc_status lmc_json_messages(const lmc_message *msgs, size_t n, char **json) {
    *json = NULL;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            cJSON_Delete(arr);
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: message %zu has no role or content", i);
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "role", msgs[i].role) || !cJSON_AddStringToObject(o, "content", msgs[i].content) ||
            !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    *json = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return *json ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
}

const char *lmc_json_type_name(const cJSON *j) {
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid";
}

bool lmc_json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    /* 2^53: above it doubles skip integers, so the value read may not be the one written. */
    if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static bool strbuf_reserve(lmc_strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (extra <= b->cap - b->len) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void lmc_strbuf_append(lmc_strbuf *b, const char *s, size_t n) {
    if (!strbuf_reserve(b, n + 1)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void lmc_strbuf_puts(lmc_strbuf *b, const char *s) { lmc_strbuf_append(b, s, strlen(s)); }

void lmc_strbuf_printf(lmc_strbuf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        lmc_strbuf_append(b, small, (size_t)n);
        return;
    }
    if (!strbuf_reserve(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void lmc_strbuf_json_string(lmc_strbuf *b, const char *s) {
    lmc_strbuf_append(b, "\"", 1);
    const char *run = s; /* bytes copied as they are, flushed before each escape */
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '"' && c != '\\' && c >= 0x20) continue;
        lmc_strbuf_append(b, run, (size_t)(p - run));
        switch (c) {
        case '"': lmc_strbuf_puts(b, "\\\""); break;
        case '\\': lmc_strbuf_puts(b, "\\\\"); break;
        case '\n': lmc_strbuf_puts(b, "\\n"); break;
        case '\r': lmc_strbuf_puts(b, "\\r"); break;
        case '\t': lmc_strbuf_puts(b, "\\t"); break;
        default: lmc_strbuf_printf(b, "\\u%04x", c); break;
        }
        run = p + 1;
    }
    lmc_strbuf_puts(b, run);
    lmc_strbuf_append(b, "\"", 1);
}

void lmc_strbuf_free(lmc_strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void lmc_json_add_token_bytes(cJSON *o, const lmc_tokenizer *tok, int32_t id) {
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    char *raw = NULL;
    size_t len = 0;
    if (b && tok && lmc_tokenizer_token_bytes(tok, id, &raw, &len) == LMC_OK)
        for (size_t i = 0; i < len; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)raw[i]));
    lmc_tokenizer_free_text(raw);
}
