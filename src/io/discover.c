/* Model-folder discovery (lmc_discover in lmc/model.h).
 *
 * A depth-first walk with each folder's entries in byte order, so the result
 * is stable. A model folder is one holding config.json and at least one
 * *.safetensors entry. Symlinks to files count, as in Hugging Face caches,
 * whose snapshots/<hash>/ folders link into blobs/; an entry that is not a
 * file, such as the dangling link of an unfinished download, makes the
 * folder an error entry. The walk descends everywhere, model folders
 * included, and follows symlinks to folders; every folder is entered once,
 * identified by device and inode, which both breaks symlink loops and
 * reports a model reachable by several paths once, under the first path in
 * walk order.
 *
 * Nothing is skipped silently: a folder that cannot be listed, and a model
 * folder whose config.json cannot be read or understood, become entries with
 * `error` set (architecture "", quantisation 0). A config.json without any
 * model_type is not an error: the entry has architecture "".
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "lmc/model.h"

enum { CONFIG_MAX_BYTES = 16 << 20 }; /* real configs are a few KiB */

typedef struct folder_id {
    dev_t dev;
    ino_t ino;
    bool used;
} folder_id;

typedef struct walk {
    lmc_discovered_model *items;
    size_t n, cap;
    folder_id *seen; /* open-addressing set of entered folders */
    size_t n_seen, seen_cap;
    bool oom;
} walk;

typedef struct entry {
    char *name;
    unsigned char type; /* d_type: DT_DIR, DT_REG, DT_LNK or DT_UNKNOWN */
} entry;

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

/* --- the set of entered folders -------------------------------------------- */

static size_t folder_hash(dev_t dev, ino_t ino, size_t mask) {
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29)) & mask;
}

/* True when (dev, ino) was not in the set (it is now). */
static bool first_visit(walk *w, dev_t dev, ino_t ino) {
    if (2 * (w->n_seen + 1) > w->seen_cap) {
        size_t cap = w->seen_cap ? 2 * w->seen_cap : 64;
        folder_id *t = calloc(cap, sizeof *t);
        if (!t) {
            w->oom = true;
            return false;
        }
        for (size_t i = 0; i < w->seen_cap; i++) {
            if (!w->seen[i].used) continue;
            size_t j = folder_hash(w->seen[i].dev, w->seen[i].ino, cap - 1);
            while (t[j].used) j = (j + 1) & (cap - 1);
            t[j] = w->seen[i];
        }
        free(w->seen);
        w->seen = t;
        w->seen_cap = cap;
    }
    size_t mask = w->seen_cap - 1, j = folder_hash(dev, ino, mask);
    for (; w->seen[j].used; j = (j + 1) & mask)
        if (w->seen[j].dev == dev && w->seen[j].ino == ino) return false;
    w->seen[j] = (folder_id){dev, ino, true};
    w->n_seen++;
    return true;
}

/* --- results ---------------------------------------------------------------- */

/* Appends an entry for path (copied) and returns it, or NULL on OOM. */
static lmc_discovered_model *add(walk *w, const char *path) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        lmc_discovered_model *t = realloc(w->items, cap * sizeof *t);
        if (!t) {
            w->oom = true;
            return NULL;
        }
        w->items = t;
        w->cap = cap;
    }
    lmc_discovered_model *m = &w->items[w->n];
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path) {
        w->oom = true;
        return NULL;
    }
    w->n++;
    return m;
}

static void add_error(walk *w, const char *path, char *message) {
    lmc_discovered_model *m = message ? add(w, path) : NULL;
    if (!message) w->oom = true;
    if (!m) {
        free(message);
        return;
    }
    m->error = message;
}

/* --- config.json ------------------------------------------------------------ */

/* Reads config.json of dir into a NUL-terminated buffer, or returns NULL
 * with *error set (NULL error too: out of memory). */
static char *read_config(const char *dir, size_t *len, char **error) {
    *error = NULL;
    char *path = join(dir, "config.json");
    if (!path) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) {
        *error = format("config.json: cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        *error = format("config.json: cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        *error = format("config.json: not a regular file");
    } else if (st.st_size > CONFIG_MAX_BYTES) {
        *error = format("config.json: too large (%lld bytes, at most %d)", (long long)st.st_size, CONFIG_MAX_BYTES);
    } else if ((buf = malloc((size_t)st.st_size + 1))) {
        size_t got = 0, want = (size_t)st.st_size;
        while (got < want) {
            ssize_t r = read(fd, buf + got, want - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got < want) {
            *error = format("config.json: read %zu of %zu bytes: %s", got, want, errno ? strerror(errno) : "file shrank");
            free(buf);
            buf = NULL;
        } else {
            buf[got] = 0;
            *len = got;
        }
    }
    close(fd);
    return buf;
}

/* A non-negative integer field of a quantisation object: 0 when absent. */
static char *quant_field(const cJSON *q, const char *qname, const char *field, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, field);
    *out = 0;
    if (!v || cJSON_IsNull(v)) return NULL;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= 1024 && d == (double)(int)d))
        return format("config.json: %s.%s is not an integer in [0, 1024]", qname, field);
    *out = (int)d;
    return NULL;
}

/* Fills architecture and quantisation from the parsed config; returns an
 * error message or NULL. */
static char *read_model_fields(const cJSON *root, lmc_discovered_model *m) {
    if (!cJSON_IsObject(root)) return format("config.json: top level is not a JSON object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *type_name = "model_type";
    if (!type || cJSON_IsNull(type)) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        type = cJSON_IsObject(text) ? cJSON_GetObjectItemCaseSensitive(text, "model_type") : NULL;
        type_name = "text_config.model_type";
    }
    if (type && !cJSON_IsNull(type)) {
        if (!cJSON_IsString(type)) return format("config.json: %s is not a string", type_name);
        size_t len = strlen(type->valuestring);
        if (len >= sizeof m->architecture)
            return format("config.json: %s is too long (%zu bytes, at most %zu)", type_name, len,
                          sizeof m->architecture - 1);
        memcpy(m->architecture, type->valuestring, len + 1);
    }
    /* MLX writes "quantization"; Hugging Face "quantization_config" (MLX
     * checkpoints often carry both, equal). The first present one counts. */
    const char *qname = "quantization";
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, qname);
    if (!q || cJSON_IsNull(q)) {
        qname = "quantization_config";
        q = cJSON_GetObjectItemCaseSensitive(root, qname);
    }
    if (q && !cJSON_IsNull(q)) {
        if (!cJSON_IsObject(q)) return format("config.json: %s is not an object", qname);
        char *e = quant_field(q, qname, "bits", &m->quant_bits);
        if (!e) e = quant_field(q, qname, "group_size", &m->quant_group_size);
        if (e) return e;
    }
    return NULL;
}

/* Why a *.safetensors entry of dir is not a readable file (a dangling link
 * of an unfinished download, a folder). */
static char *weight_error(const char *dir, const char *name) {
    char *p = join(dir, name);
    if (!p) return NULL;
    struct stat st;
    char *e = stat(p, &st) != 0 ? format("%s: %s", name, strerror(errno)) : format("%s: not a regular file", name);
    free(p);
    return e;
}

/* Adds the entry of a model folder: num_safetensors names end in
 * .safetensors; bad_weight, when not NULL, is one that is not a file. */
static void probe_model(walk *w, const char *dir, int num_safetensors, const char *bad_weight) {
    lmc_discovered_model m = {0};
    char *error = NULL;
    if (bad_weight) {
        error = weight_error(dir, bad_weight);
        if (!error) w->oom = true;
    } else {
        size_t len = 0;
        char *text = read_config(dir, &len, &error);
        if (text) {
            const char *end = NULL;
            cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
            if (!root) {
                /* cJSON's position: a 0-based offset at or just past the fault. */
                error = format("config.json: invalid JSON at byte %zu", end ? (size_t)(end - text) : (size_t)0);
                if (!error) w->oom = true;
            } else {
                error = read_model_fields(root, &m);
            }
            cJSON_Delete(root);
            free(text);
        } else if (!error) {
            w->oom = true;
        }
    }
    lmc_discovered_model *out = w->oom ? NULL : add(w, dir);
    if (!out) {
        free(error);
        return;
    }
    out->num_safetensors = num_safetensors;
    if (error) {
        out->error = error;
    } else {
        memcpy(out->architecture, m.architecture, sizeof m.architecture);
        out->quant_bits = m.quant_bits;
        out->quant_group_size = m.quant_group_size;
    }
}

/* --- the walk ------------------------------------------------------------------ */

static int by_name(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* The type of path after following symlinks: 'd' folder, 'f' regular file,
 * 0 anything else (including dangling and looping links). */
static char resolved_type(const char *dir, const entry *e) {
    if (e->type == DT_DIR) return 'd';
    if (e->type == DT_REG) return 'f';
    if (e->type != DT_LNK && e->type != DT_UNKNOWN) return 0;
    char *p = join(dir, e->name);
    struct stat st;
    char t = 0;
    if (p && stat(p, &st) == 0) t = S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 0;
    free(p);
    return t;
}

static void free_entries(entry *list, size_t n) {
    for (size_t i = 0; i < n; i++) free(list[i].name);
    free(list);
}

/* Lists dir without . and .., or returns false with *error set (NULL error:
 * out of memory). */
static bool list_folder(const char *dir, entry **out, size_t *n_out, char **error) {
    *out = NULL;
    *n_out = 0;
    *error = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        *error = format("cannot read folder: %s", strerror(errno));
        return false;
    }
    entry *list = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                *error = format("cannot read folder: %s", strerror(errno));
                ok = false;
            }
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            entry *t = realloc(list, cap * sizeof *t);
            if (!t) {
                ok = false;
                break;
            }
            list = t;
        }
        list[n].name = strdup(de->d_name);
        list[n].type = de->d_type;
        if (!list[n].name) {
            ok = false;
            break;
        }
        n++;
    }
    closedir(d);
    if (!ok) {
        free_entries(list, n);
        return false;
    }
    if (n > 1) qsort(list, n, sizeof *list, by_name);
    *out = list;
    *n_out = n;
    return true;
}

static void visit(walk *w, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        add_error(w, dir, format("cannot read folder: %s", strerror(errno)));
        return;
    }
    if (!first_visit(w, st.st_dev, st.st_ino)) return;
    entry *list;
    size_t n;
    char *error;
    if (!list_folder(dir, &list, &n, &error)) {
        if (error)
            add_error(w, dir, error);
        else
            w->oom = true;
        return;
    }
    bool has_config = false;
    int num_safetensors = 0;
    const char *bad_weight = NULL;
    char *kind = malloc(n ? n : 1);
    if (!kind) {
        w->oom = true;
        free_entries(list, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        kind[i] = resolved_type(dir, &list[i]);
        if (!strcmp(list[i].name, "config.json")) has_config = true; /* whatever it is: reading tells */
        if (ends_with(list[i].name, ".safetensors")) {
            num_safetensors++;
            if (kind[i] != 'f' && !bad_weight) bad_weight = list[i].name;
        }
    }
    if (has_config && num_safetensors > 0) probe_model(w, dir, num_safetensors, bad_weight);
    for (size_t i = 0; i < n && !w->oom; i++) {
        if (kind[i] != 'd') continue;
        char *sub = join(dir, list[i].name);
        if (!sub) {
            w->oom = true;
            break;
        }
        visit(w, sub);
        free(sub);
    }
    free(kind);
    free_entries(list, n);
}

void lmc_discovered_free(lmc_discovered_model *list, size_t n) {
    if (!list) return;
    for (size_t i = 0; i < n; i++) {
        free(list[i].path);
        free(list[i].error);
    }
    free(list);
}

lmc_status lmc_discover(const char *dir, lmc_discovered_model **out, size_t *n) {
    if (!out || !n) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "discover: NULL output");
    *out = NULL;
    *n = 0;
    if (!dir || !*dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "discover: no folder given");
    struct stat st;
    if (stat(dir, &st) != 0)
        return lmc_set_error(errno == ENOENT ? LMC_ERR_NOT_FOUND : LMC_ERR_IO, "discover: %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "discover: %s: not a folder", dir);

    /* Report paths as dir/sub/..., without trailing slashes on dir. */
    char *root = strdup(dir);
    if (!root) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "discover: out of memory");
    for (size_t len = strlen(root); len > 1 && root[len - 1] == '/'; len--) root[len - 1] = 0;

    walk w = {0};
    visit(&w, root);
    free(root);
    free(w.seen);
    if (w.oom) {
        lmc_discovered_free(w.items, w.n);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "discover: out of memory while walking %s", dir);
    }
    *out = w.items;
    *n = w.n;
    return LMC_OK;
}
