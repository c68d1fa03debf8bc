/* safetensors writer: header built by hand (exact integers, caller's order),
 * data streamed row-major, the file written beside its target and renamed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json_util.h"
#include "io/safetensors_internal.h"

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fails when two of the n strings are equal; `what` names them in the message. */
static lmc_status check_unique(const char *path, const char *const *s, size_t n, const char *what) {
    if (n < 2) return LMC_OK;
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    memcpy(sorted, s, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str_ptr);
    lmc_status st = LMC_OK;
    for (size_t i = 1; i < n && st == LMC_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: %s '%.200s' is given twice", path, what, sorted[i]);
    free(sorted);
    return st;
}

static lmc_status check_string(const char *path, const char *s, const char *what, size_t i) {
    if (!s) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: %s %zu is NULL", path, what, i);
    if (!lmc_utf8_valid(s, strlen(s), NULL))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: %s %zu is not valid UTF-8", path, what, i);
    return LMC_OK;
}

static lmc_status check_args(const char *path, size_t n, const char *const *names, const lmc_array *const *arrays,
                             size_t n_meta, const char *const *keys, const char *const *values) {
    if (n && (!names || !arrays))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: names or arrays is NULL", path);
    if (n_meta && (!keys || !values))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: metadata keys or values is NULL", path);
    for (size_t i = 0; i < n; i++) {
        LMC_CHECK(check_string(path, names[i], "tensor name", i));
        if (strcmp(names[i], "__metadata__") == 0)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: '__metadata__' cannot name a tensor", path);
        if (!arrays[i])
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: array for tensor '%.200s' is NULL", path, names[i]);
        if (lmc_array_device(arrays[i]) != LMC_CPU)
            return lmc_set_error(LMC_ERR_UNSUPPORTED, "%.200s: tensor '%.200s' is not on the CPU", path, names[i]);
    }
    for (size_t i = 0; i < n_meta; i++) {
        LMC_CHECK(check_string(path, keys[i], "metadata key", i));
        LMC_CHECK(check_string(path, values[i], "metadata value", i));
    }
    LMC_CHECK(check_unique(path, names, n, "tensor name"));
    return check_unique(path, keys, n_meta, "metadata key");
}

/* The JSON header, padded with spaces to a multiple of 8 bytes. */
static lmc_status build_header(const char *path, size_t n, const char *const *names, const lmc_array *const *arrays,
                               size_t n_meta, const char *const *keys, const char *const *values, lmc_strbuf *h) {
    lmc_strbuf_puts(h, "{");
    bool first = true;
    if (n_meta) {
        lmc_strbuf_puts(h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) lmc_strbuf_puts(h, ",");
            lmc_strbuf_json_string(h, keys[i]);
            lmc_strbuf_puts(h, ":");
            lmc_strbuf_json_string(h, values[i]);
        }
        lmc_strbuf_puts(h, "}");
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const lmc_array *a = arrays[i];
        if (!first) lmc_strbuf_puts(h, ",");
        first = false;
        lmc_strbuf_json_string(h, names[i]);
        lmc_strbuf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", lmc_safetensors_dtype_tag(lmc_array_dtype(a)));
        for (int d = 0; d < lmc_array_ndim(a); d++)
            lmc_strbuf_printf(h, d ? ",%lld" : "%lld", (long long)lmc_array_shape(a)[d]);
        uint64_t nbytes = lmc_array_nbytes(a);
        lmc_strbuf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                          (unsigned long long)(offset + nbytes));
        offset += nbytes;
    }
    lmc_strbuf_puts(h, "}");
    while (!h->failed && h->len % 8) lmc_strbuf_puts(h, " ");
    if (h->failed) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%.200s: out of memory building the header", path);
    if (h->len > LMC_SAFETENSORS_MAX_HEADER)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%.200s: header would be %zu bytes, over the %u-byte limit",
                             path, h->len, LMC_SAFETENSORS_MAX_HEADER);
    return LMC_OK;
}

/* Writes the elements of `a` row-major: contiguous arrays in one call,
 * others element by element through a staging buffer. */
static bool write_array(FILE *f, const lmc_array *a) {
    size_t nbytes = lmc_array_nbytes(a);
    if (nbytes == 0) return true;
    const char *base = lmc_array_ptr(a);
    if (lmc_array_is_contiguous(a)) return fwrite(base, 1, nbytes, f) == nbytes;
    size_t es = lmc_dtype_size(a->dtype);
    char stage[1 << 16];
    size_t used = 0;
    lmc_index_iter it;
    lmc_index_init(&it, a->ndim, a->shape, 1, &a);
    do {
        memcpy(stage + used, base + it.off[0] * (int64_t)es, es);
        used += es;
        if (used + es > sizeof stage) {
            if (fwrite(stage, 1, used, f) != used) return false;
            used = 0;
        }
    } while (lmc_index_next(&it));
    return fwrite(stage, 1, used, f) == used;
}

lmc_status lmc_safetensors_write(const char *path, size_t n, const char *const *names, const lmc_array *const *arrays,
                                 size_t n_meta, const char *const *meta_keys, const char *const *meta_values) {
    if (!path) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_safetensors_write: path is NULL");
    LMC_CHECK(check_args(path, n, names, arrays, n_meta, meta_keys, meta_values));
    lmc_strbuf header = {0};
    lmc_status s = build_header(path, n, names, arrays, n_meta, meta_keys, meta_values, &header);
    if (s != LMC_OK) {
        lmc_strbuf_free(&header);
        return s;
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        lmc_strbuf_free(&header);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%.200s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        s = lmc_set_error(LMC_ERR_IO, "%.200s: cannot create %.200s: %s", path, tmp, strerror(errno));
        if (fd >= 0) close(fd);
        if (fd >= 0) unlink(tmp);
        free(tmp);
        lmc_strbuf_free(&header);
        return s;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header.data, 1, header.len, f) == header.len;
    for (size_t i = 0; ok && i < n; i++) ok = write_array(f, arrays[i]);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);
        s = lmc_set_error(LMC_ERR_IO, "%.200s: cannot write: %s", path, strerror(err));
    }
    free(tmp);
    lmc_strbuf_free(&header);
    return s;
}
