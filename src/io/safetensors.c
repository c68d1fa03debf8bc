/* safetensors reader: one read-only mapping per file, a strictly validated
 * header, and tensors handed out as lmc_array views of the mapping.
 * The rules checked are listed in include/lmc/safetensors.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/huge_pages.h"
#include "io/json_util.h"
#include "io/safetensors_internal.h"

/* Tensors are viewed in place, and the format is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors reader views little-endian data in place: big-endian hosts need a converting path"
#endif

/* --- dtypes ------------------------------------------------------------------ */

typedef struct st_dtype {
    const char *tag; /* the name used in headers */
    int size;        /* bytes per element */
    int lmc;         /* the lmc_dtype, or -1 when lmc has none */
} st_dtype;

/* Every dtype the safetensors reference implementation knows with a whole
 * number of bytes per element, plus MLX's complex64. */
static const st_dtype k_dtypes[] = {
    {"BOOL", 1, LMC_BOOL}, {"U8", 1, LMC_U8},        {"I8", 1, -1},        {"F8_E5M2", 1, -1},
    {"F8_E4M3", 1, -1},    {"F8_E8M0", 1, -1},       {"I16", 2, -1},       {"U16", 2, -1},
    {"F16", 2, LMC_F16},   {"BF16", 2, LMC_BF16},    {"I32", 4, LMC_I32},  {"U32", 4, LMC_U32},
    {"F32", 4, LMC_F32},   {"F64", 8, -1},           {"I64", 8, LMC_I64},  {"U64", 8, -1},
    {"C64", 8, -1}, /* complex64, written by MLX */
};
enum { N_DTYPES = sizeof k_dtypes / sizeof k_dtypes[0] };

static int dtype_lookup(const char *tag) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(k_dtypes[i].tag, tag) == 0) return i;
    return -1;
}

const char *lmc_safetensors_dtype_tag(lmc_dtype dt) {
    for (int i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].lmc == (int)dt) return k_dtypes[i].tag;
    return NULL;
}

/* --- the handle ---------------------------------------------------------------- */

typedef struct st_tensor {
    const char *name; /* in the handle's string arena */
    int dtype;        /* index into k_dtypes */
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
} st_tensor;

struct lmc_safetensors {
    char *path;
    lmc_buffer *buf;   /* the whole file; one reference held by the handle */
    size_t data_start; /* 8 + header length */
    size_t n;
    st_tensor *tensors; /* header order */
    size_t *by_name;    /* indices into tensors, sorted by name */
    size_t n_meta;
    const char **meta_keys, **meta_values; /* header order, in the arena */
    char *arena;                           /* every name, key and value */
};

/* Messages are "<path>: <text>" or "<path>: tensor '<name>': <text>". Long
 * names are cut so the message keeps its end. */
static lmc_status st_fail(const char *path, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lmc_status st_fail(const char *path, const char *tensor, const char *fmt, ...) {
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (tensor) return lmc_set_error(LMC_ERR_FORMAT, "%.200s: tensor '%.160s': %s", path, tensor, text);
    return lmc_set_error(LMC_ERR_FORMAT, "%.200s: %s", path, text);
}

/* --- header parsing ------------------------------------------------------------ */

/* Parses one tensor entry {"dtype", "shape", "data_offsets"}; data_len is the
 * size of the data section. */
static lmc_status parse_entry(const char *path, const cJSON *entry, uint64_t data_len, st_tensor *t) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry)) return st_fail(path, name, "entry is %s, not an object", lmc_json_type_name(entry));
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *f = entry->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                      : NULL;
        if (!slot) return st_fail(path, name, "unexpected field '%.100s'", f->string);
        if (*slot) return st_fail(path, name, "field '%s' appears twice", f->string);
        *slot = f;
    }
    if (!dtype) return st_fail(path, name, "missing \"dtype\"");
    if (!shape) return st_fail(path, name, "missing \"shape\"");
    if (!offsets) return st_fail(path, name, "missing \"data_offsets\"");

    if (!cJSON_IsString(dtype)) return st_fail(path, name, "\"dtype\" is %s, not a string", lmc_json_type_name(dtype));
    t->dtype = dtype_lookup(dtype->valuestring);
    if (t->dtype < 0) return st_fail(path, name, "unknown dtype '%.40s'", dtype->valuestring);

    if (!cJSON_IsArray(shape)) return st_fail(path, name, "\"shape\" is %s, not an array", lmc_json_type_name(shape));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > LMC_MAX_DIMS)
        return st_fail(path, name, "shape has %d dimensions; lmc supports at most %d", ndim, LMC_MAX_DIMS);
    t->ndim = ndim;
    /* The element count, with the multiplication checked at every step as the
     * reference implementation does; then the byte count. */
    uint64_t count = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!lmc_json_uint(v, &dim)) {
            if (cJSON_IsNumber(v) && v->valuedouble < 0)
                return st_fail(path, name, "shape dimension %d is negative (%g)", d, v->valuedouble);
            if (cJSON_IsNumber(v))
                return st_fail(path, name, "shape dimension %d (%.17g) is not an integer below 2^53", d,
                               v->valuedouble);
            return st_fail(path, name, "shape dimension %d is %s, not an integer", d, lmc_json_type_name(v));
        }
        t->shape[d] = (int64_t)dim;
        if (!overflow && __builtin_mul_overflow(count, dim, &count)) overflow = true;
    }
    char shape_str[200];
    lmc_shape_str(t->ndim, t->shape, shape_str, sizeof shape_str);
    const st_dtype *dt = &k_dtypes[t->dtype];
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(count, (uint64_t)dt->size, &nbytes))
        return st_fail(path, name, "shape %s with dtype %s is larger than 2^64 bytes", shape_str, dt->tag);

    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return st_fail(path, name, "\"data_offsets\" is not an array of two integers");
    const cJSON *jb = offsets->child, *je = jb->next;
    if (!lmc_json_uint(jb, &t->begin) || !lmc_json_uint(je, &t->end))
        return st_fail(path, name, "\"data_offsets\" are not two non-negative integers below 2^53");
    if (t->begin > t->end)
        return st_fail(path, name, "data_offsets [%llu, %llu] are reversed (begin > end)",
                       (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return st_fail(path, name, "data_offsets [%llu, %llu] run past the end of the data section (%llu bytes)",
                       (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_len);
    if (t->end - t->begin != nbytes)
        return st_fail(path, name, "data_offsets [%llu, %llu] do not match dtype %s and shape %s (%llu bytes)",
                       (unsigned long long)t->begin, (unsigned long long)t->end, dt->tag, shape_str,
                       (unsigned long long)nbytes);
    return LMC_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting helpers need the tensor table; qsort has no context argument, so
 * sort small structs holding what the comparison needs. */
typedef struct name_ref {
    const char *name;
    size_t index;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

typedef struct range_ref {
    uint64_t begin, end;
    size_t index;
} range_ref;

static int cmp_range_ref(const void *a, const void *b) {
    const range_ref *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The tensors must tile [0, data_len): sorted by offset, each begins where the
 * previous ends and the last ends at data_len. */
static lmc_status check_tiling(const char *path, const st_tensor *t, size_t n, uint64_t data_len) {
    range_ref *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) r[i] = (range_ref){t[i].begin, t[i].end, i};
    qsort(r, n, sizeof *r, cmp_range_ref);
    uint64_t cursor = 0;
    lmc_status s = LMC_OK;
    for (size_t i = 0; i < n && s == LMC_OK; i++) {
        const st_tensor *cur = &t[r[i].index];
        if (r[i].begin < cursor) {
            const st_tensor *prev = &t[r[i - 1].index];
            s = st_fail(path, cur->name, "data_offsets [%llu, %llu] overlap tensor '%.160s' [%llu, %llu]",
                        (unsigned long long)cur->begin, (unsigned long long)cur->end, prev->name,
                        (unsigned long long)prev->begin, (unsigned long long)prev->end);
        } else if (r[i].begin > cursor) {
            s = st_fail(path, NULL,
                        "bytes [%llu, %llu) of the data section belong to no tensor (the format requires the "
                        "tensors to cover the data section without gaps)",
                        (unsigned long long)cursor, (unsigned long long)r[i].begin);
        }
        cursor = r[i].end;
    }
    if (s == LMC_OK && cursor != data_len)
        s = st_fail(path, NULL,
                    "the data section is %llu bytes but the tensors end at byte %llu (the format requires the "
                    "tensors to cover the data section exactly)",
                    (unsigned long long)data_len, (unsigned long long)cursor);
    free(r);
    return s;
}

/* Copies every name, metadata key and value out of the JSON tree into one
 * arena owned by the handle. */
static lmc_status build_arena(lmc_safetensors *st, const cJSON *root, const cJSON *meta) {
    size_t total = 1;
    for (const cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0) total += strlen(e->string) + 1;
    if (meta && !cJSON_IsObject(meta)) meta = NULL; /* null: no entries */
    if (meta)
        for (const cJSON *m = meta->child; m; m = m->next) total += strlen(m->string) + strlen(m->valuestring) + 2;
    st->arena = malloc(total);
    if (!st->arena) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", st->path);
    char *p = st->arena;
#define ARENA_COPY(dst, src)              \
    do {                                  \
        size_t len_ = strlen(src) + 1;    \
        memcpy(p, src, len_);             \
        (dst) = p;                        \
        p += len_;                        \
    } while (0)
    size_t i = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0) ARENA_COPY(st->tensors[i++].name, e->string);
    i = 0;
    if (meta)
        for (const cJSON *m = meta->child; m; m = m->next, i++) {
            ARENA_COPY(st->meta_keys[i], m->string);
            ARENA_COPY(st->meta_values[i], m->valuestring);
        }
#undef ARENA_COPY
    return LMC_OK;
}

static lmc_status parse_metadata(lmc_safetensors *st, const cJSON *meta) {
    /* null means none: MLX writes it when saving without metadata, and the
     * reference implementation reads it as absent. */
    if (cJSON_IsNull(meta)) return LMC_OK;
    if (!cJSON_IsObject(meta))
        return st_fail(st->path, NULL, "\"__metadata__\" is %s, not an object of strings", lmc_json_type_name(meta));
    size_t n = 0;
    for (const cJSON *m = meta->child; m; m = m->next, n++)
        if (!cJSON_IsString(m))
            return st_fail(st->path, NULL, "\"__metadata__\" value for '%.100s' is %s, not a string", m->string,
                           lmc_json_type_name(m));
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", st->path);
    n = 0;
    for (const cJSON *m = meta->child; m; m = m->next) keys[n++] = m->string;
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            lmc_status s = st_fail(st->path, NULL, "\"__metadata__\" key '%.100s' appears twice", keys[i]);
            free(keys);
            return s;
        }
    free(keys);
    st->n_meta = n;
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", st->path);
    return LMC_OK;
}

/* A file must at least hold the 8-byte header length. */
static lmc_status check_length(const char *path, size_t size) {
    if (size == 0) return st_fail(path, NULL, "file is empty (a safetensors file starts with an 8-byte header length)");
    if (size < 8) return st_fail(path, NULL, "file is %zu bytes, shorter than the 8-byte header length", size);
    return LMC_OK;
}

/* Validates the image in st->buf and fills the handle. */
static lmc_status parse(lmc_safetensors *st) {
    const char *path = st->path;
    const unsigned char *bytes = st->buf->data;
    size_t size = st->buf->nbytes;
    LMC_CHECK(check_length(path, size));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen > LMC_SAFETENSORS_MAX_HEADER)
        return st_fail(path, NULL, "header length %llu is larger than the limit of %u bytes",
                       (unsigned long long)hlen, LMC_SAFETENSORS_MAX_HEADER);
    if (hlen > size - 8)
        return st_fail(path, NULL, "header length %llu runs past the end of the file (%zu bytes after the length)",
                       (unsigned long long)hlen, size - 8);
    const char *header = (const char *)bytes + 8;
    size_t bad;
    if (!lmc_utf8_valid(header, (size_t)hlen, &bad))
        return st_fail(path, NULL, "header is not valid UTF-8 (byte %zu of the header)", bad);
    if (lmc_json_has_nul_escape(header, (size_t)hlen, &bad))
        return st_fail(path, NULL, "header holds the escape \\u0000 (byte %zu of the header); names and values "
                       "cannot contain NUL", bad);
    st->data_start = 8 + (size_t)hlen;
    uint64_t data_len = size - st->data_start;

    size_t err_at;
    cJSON *root = lmc_json_parse(header, (size_t)hlen, &err_at);
    if (!root) return st_fail(path, NULL, "header is not valid JSON (error near byte %zu of the header)", err_at);
    if (!cJSON_IsObject(root)) {
        lmc_status s = st_fail(path, NULL, "header is %s, not a JSON object", lmc_json_type_name(root));
        cJSON_Delete(root);
        return s;
    }
    lmc_status s = LMC_OK;

    /* Entries: "__metadata__" once at most, every other key a tensor. */
    const cJSON *meta = NULL;
    size_t n = 0;
    for (const cJSON *e = root->child; e && s == LMC_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") != 0) n++;
        else if (meta) s = st_fail(path, NULL, "\"__metadata__\" appears twice");
        else meta = e;
    }
    if (s == LMC_OK && meta) s = parse_metadata(st, meta);
    if (s == LMC_OK) {
        st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
        st->by_name = malloc((n ? n : 1) * sizeof *st->by_name);
        if (!st->tensors || !st->by_name) s = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t i = 0;
    for (const cJSON *e = root->child; e && s == LMC_OK; e = e->next) {
        if (e == meta) continue;
        st->tensors[i].name = e->string; /* the tree's copy until the arena is built */
        s = parse_entry(path, e, data_len, &st->tensors[i]);
        i++;
    }
    st->n = s == LMC_OK ? n : 0;

    /* Duplicate names: sort by name, compare neighbours; keep the order for lookups. */
    if (s == LMC_OK) {
        name_ref *refs = malloc((n ? n : 1) * sizeof *refs);
        if (!refs) s = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        for (size_t k = 0; s == LMC_OK && k < n; k++) refs[k] = (name_ref){st->tensors[k].name, k};
        if (s == LMC_OK) qsort(refs, n, sizeof *refs, cmp_name_ref);
        for (size_t k = 1; s == LMC_OK && k < n; k++)
            if (strcmp(refs[k - 1].name, refs[k].name) == 0) s = st_fail(path, refs[k].name, "name appears twice");
        for (size_t k = 0; s == LMC_OK && k < n; k++) st->by_name[k] = refs[k].index;
        free(refs);
    }
    if (s == LMC_OK) s = check_tiling(path, st->tensors, n, data_len);
    if (s == LMC_OK) s = build_arena(st, root, meta);
    cJSON_Delete(root);
    return s;
}

/* --- opening and closing ----------------------------------------------------- */

void lmc_safetensors_close(lmc_safetensors *st) {
    if (!st) return;
    lmc_buffer_release(st->buf);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->arena);
    free(st->path);
    free(st);
}

lmc_status lmc_safetensors_open_buffer(const char *path, lmc_buffer *buf, lmc_safetensors **out) {
    *out = NULL;
    lmc_safetensors *st = calloc(1, sizeof *st);
    char *p = strdup(path);
    if (!st || !p) {
        free(st);
        free(p);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    st->path = p;
    lmc_buffer_retain(buf);
    st->buf = buf;
    lmc_status s = parse(st);
    if (s != LMC_OK) {
        lmc_safetensors_close(st);
        return s;
    }
    *out = st;
    return LMC_OK;
}

typedef struct st_mapping {
    void *addr;
    size_t len;
    lmc_huge_region *promo; /* moving the file onto 2 MiB pages (lmc_safetensors_promote), or NULL */
} st_mapping;

/* Runs when the last array viewing the file and the handle are gone. */
static void unmap_file(void *ctx) {
    st_mapping *m = ctx;
    lmc_huge_pages_forget(m->promo); /* before the pages it would move go */
    munmap(m->addr, m->len);
    lmc_memory_add_mapped(LMC_CPU, -(int64_t)m->len);
    free(m);
}

lmc_status lmc_safetensors_open(const char *path, lmc_safetensors **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_safetensors_open: out is NULL");
    *out = NULL;
    if (!path) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_safetensors_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us */
    if (fd < 0) return lmc_set_error(LMC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lmc_set_error(LMC_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return lmc_set_error(LMC_ERR_IO, "%s: is a directory, not a safetensors file", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lmc_set_error(LMC_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    lmc_buffer *buf;
    if (size < 8) {
        close(fd);
        return check_length(path, size); /* too short to map (mmap rejects length 0) */
    }
    void *addr = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (addr == MAP_FAILED) return lmc_set_error(LMC_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(map_errno));
    st_mapping *m = malloc(sizeof *m);
    if (!m) {
        munmap(addr, size);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    *m = (st_mapping){addr, size, NULL};
    lmc_memory_add_mapped(LMC_CPU, (int64_t)size);
    buf = lmc_buffer_wrap(addr, size, LMC_CPU, unmap_file, m);
    if (!buf) {
        unmap_file(m);
        return lmc_last_status();
    }
    lmc_status s = lmc_safetensors_open_buffer(path, buf, out);
    lmc_buffer_release(buf); /* the handle holds its own reference when open succeeded */
    return s;
}

/* The mapping behind a handle opened from a file (NULL for a buffer the
 * caller made, e.g. the fuzzer's). */
static st_mapping *mapping_of(const lmc_safetensors *st) {
    return st && st->buf && st->buf->release == unmap_file ? st->buf->release_ctx : NULL;
}

size_t lmc_safetensors_promote(lmc_safetensors *st) {
    st_mapping *m = mapping_of(st);
    if (!m) return 0;
    if (!m->promo) m->promo = lmc_huge_pages_adopt(m->addr, m->len);
    return m->promo ? m->len : 0;
}

size_t lmc_safetensors_promoted(const lmc_safetensors *st) {
    st_mapping *m = mapping_of(st);
    return m ? lmc_huge_pages_moved(m->promo) : 0;
}

size_t lmc_safetensors_file_size(const lmc_safetensors *st) {
    st_mapping *m = mapping_of(st);
    return m ? m->len : 0;
}

/* --- queries ------------------------------------------------------------------ */

static const st_tensor *find(const lmc_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_tensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

static const st_tensor *find_or_fail(const lmc_safetensors *st, const char *name) {
    const st_tensor *t = find(st, name);
    if (!t) {
        if (!st || !name) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "safetensors lookup: handle or name is NULL");
        else lmc_set_error(LMC_ERR_NOT_FOUND, "%.200s: no tensor named '%.200s'", st->path, name);
    }
    return t;
}

const char *lmc_safetensors_path(const lmc_safetensors *st) { return st ? st->path : NULL; }
size_t lmc_safetensors_count(const lmc_safetensors *st) { return st ? st->n : 0; }

const char *lmc_safetensors_name(const lmc_safetensors *st, size_t i) {
    return st && i < st->n ? st->tensors[i].name : NULL;
}

bool lmc_safetensors_contains(const lmc_safetensors *st, const char *name) { return find(st, name) != NULL; }

const char *lmc_safetensors_dtype_name(const lmc_safetensors *st, const char *name) {
    const st_tensor *t = find_or_fail(st, name);
    return t ? k_dtypes[t->dtype].tag : NULL;
}

static lmc_status check_supported(const lmc_safetensors *st, const st_tensor *t) {
    if (k_dtypes[t->dtype].lmc >= 0) return LMC_OK;
    return lmc_set_error(LMC_ERR_UNSUPPORTED, "%.200s: tensor '%.200s' has dtype %s, which lmc does not support",
                         st->path, t->name, k_dtypes[t->dtype].tag);
}

lmc_status lmc_safetensors_info(const lmc_safetensors *st, const char *name, lmc_dtype *dtype, int *ndim,
                                int64_t *shape) {
    const st_tensor *t = find_or_fail(st, name);
    if (!t) return lmc_last_status();
    LMC_CHECK(check_supported(st, t));
    if (dtype) *dtype = (lmc_dtype)k_dtypes[t->dtype].lmc;
    if (ndim) *ndim = t->ndim;
    if (shape) memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return LMC_OK;
}

static const unsigned char *tensor_ptr(const lmc_safetensors *st, const st_tensor *t) {
    return (const unsigned char *)st->buf->data + st->data_start + t->begin;
}

/* Empty tensors have no element to misalign. */
static bool aligned(const lmc_safetensors *st, const st_tensor *t) {
    return t->begin == t->end || (uintptr_t)tensor_ptr(st, t) % (uintptr_t)k_dtypes[t->dtype].size == 0;
}

bool lmc_safetensors_is_aligned(const lmc_safetensors *st, const char *name) {
    const st_tensor *t = find(st, name);
    return t && aligned(st, t);
}

lmc_array *lmc_safetensors_get(const lmc_safetensors *st, const char *name) {
    const st_tensor *t = find_or_fail(st, name);
    if (!t || check_supported(st, t) != LMC_OK) return NULL;
    lmc_dtype dt = (lmc_dtype)k_dtypes[t->dtype].lmc;
    if (aligned(st, t)) {
        int64_t strides[LMC_MAX_DIMS];
        lmc_contiguous_strides(t->ndim, t->shape, strides);
        return lmc_array_view(st->buf, st->data_start + t->begin, dt, t->ndim, t->shape, strides);
    }
    /* Unaligned data: kernels read elements through typed pointers, so copy. */
    lmc_array *a = lmc_array_new(dt, t->ndim, t->shape, LMC_CPU);
    if (!a) {
        lmc_error_prefix("%.200s: tensor '%.200s' (unaligned, copied)", st->path, t->name);
        return NULL;
    }
    memcpy(lmc_array_ptr(a), tensor_ptr(st, t), t->end - t->begin);
    return a;
}

const char *lmc_safetensors_metadata(const lmc_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

size_t lmc_safetensors_metadata_count(const lmc_safetensors *st) { return st ? st->n_meta : 0; }

const char *lmc_safetensors_metadata_key(const lmc_safetensors *st, size_t i) {
    return st && i < st->n_meta ? st->meta_keys[i] : NULL;
}
