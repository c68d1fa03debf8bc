/* Checkpoints: one or more safetensors files seen as one set of tensors,
 * through model.safetensors.index.json or the *.safetensors files of a
 * directory. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/huge_pages.h"
#include "io/json_util.h"
#include "io/safetensors_internal.h"

typedef struct ck_entry {
    char *name;
    size_t file; /* index into files */
} ck_entry;

struct lmc_checkpoint {
    size_t n_files, cap_files;
    lmc_safetensors **files;
    char **file_names; /* as listed in the index or directory */
    size_t n, cap;
    ck_entry *entries; /* iteration order */
    ck_entry *sorted;  /* the same entries sorted by name, for lookups */
};

void lmc_checkpoint_close(lmc_checkpoint *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n_files; i++) {
        lmc_safetensors_close(ck->files[i]);
        free(ck->file_names[i]);
    }
    for (size_t i = 0; i < ck->n; i++) free(ck->entries[i].name);
    free(ck->files);
    free(ck->file_names);
    free(ck->entries);
    free(ck->sorted);
    free(ck);
}

size_t lmc_checkpoint_promote(lmc_checkpoint *ck) {
    if (!ck || !lmc_huge_pages_available()) return 0;
    size_t total = 0, queued = 0;
    for (size_t i = 0; i < ck->n_files; i++) total += lmc_safetensors_file_size(ck->files[i]);
    if (!lmc_huge_pages_affordable(total)) return 0;
    for (size_t i = 0; i < ck->n_files; i++) queued += lmc_safetensors_promote(ck->files[i]);
    return queued;
}

size_t lmc_checkpoint_promoted(const lmc_checkpoint *ck) {
    size_t moved = 0;
    for (size_t i = 0; ck && i < ck->n_files; i++) moved += lmc_safetensors_promoted(ck->files[i]);
    return moved;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static lmc_status oom(void) { return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "checkpoint: out of memory"); }

/* Opens dir/name and appends it to the file list. */
static lmc_status add_file(lmc_checkpoint *ck, const char *dir, const char *name) {
    if (ck->n_files == ck->cap_files) {
        size_t cap = ck->cap_files ? 2 * ck->cap_files : 8;
        lmc_safetensors **f = realloc(ck->files, cap * sizeof *f);
        if (!f) return oom();
        ck->files = f;
        char **fn = realloc(ck->file_names, cap * sizeof *fn);
        if (!fn) return oom();
        ck->file_names = fn;
        ck->cap_files = cap;
    }
    char *full = dir ? join_path(dir, name) : strdup(name);
    char *copy = strdup(name);
    if (!full || !copy) {
        free(full);
        free(copy);
        return oom();
    }
    lmc_safetensors *st;
    lmc_status s = lmc_safetensors_open(full, &st);
    free(full);
    if (s != LMC_OK) {
        free(copy);
        return s;
    }
    ck->files[ck->n_files] = st;
    ck->file_names[ck->n_files] = copy;
    ck->n_files++;
    return LMC_OK;
}

static lmc_status add_entry(lmc_checkpoint *ck, const char *name, size_t file) {
    if (ck->n == ck->cap) {
        size_t cap = ck->cap ? 2 * ck->cap : 256;
        ck_entry *e = realloc(ck->entries, cap * sizeof *e);
        if (!e) return oom();
        ck->entries = e;
        ck->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return oom();
    ck->entries[ck->n++] = (ck_entry){copy, file};
    return LMC_OK;
}

static int cmp_entry(const void *a, const void *b) {
    const ck_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->file < y->file ? -1 : x->file > y->file; /* deterministic order for the duplicate message */
}

/* Builds the sorted lookup table; a name held by two files is an error
 * (`source` names the index or directory in the message). */
static lmc_status build_lookup(lmc_checkpoint *ck, const char *source) {
    ck->sorted = malloc((ck->n ? ck->n : 1) * sizeof *ck->sorted);
    if (!ck->sorted) return oom();
    memcpy(ck->sorted, ck->entries, ck->n * sizeof *ck->sorted);
    qsort(ck->sorted, ck->n, sizeof *ck->sorted, cmp_entry);
    for (size_t i = 1; i < ck->n; i++)
        if (strcmp(ck->sorted[i - 1].name, ck->sorted[i].name) != 0) continue;
        else if (ck->sorted[i - 1].file == ck->sorted[i].file)
            return lmc_set_error(LMC_ERR_FORMAT, "%.200s: tensor '%.200s' is listed twice", source, ck->sorted[i].name);
        else
            return lmc_set_error(LMC_ERR_FORMAT, "%.200s: tensor '%.200s' is in both '%.200s' and '%.200s'", source,
                                 ck->sorted[i].name, ck->file_names[ck->sorted[i - 1].file],
                                 ck->file_names[ck->sorted[i].file]);
    return LMC_OK;
}

/* A shard name from an index must stay inside the checkpoint directory. */
static bool safe_relative_name(const char *name) {
    if (!name[0] || name[0] == '/') return false;
    for (const char *p = name; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!slash) break;
        p = slash + 1;
    }
    return true;
}

static lmc_status open_index(lmc_checkpoint *ck, const char *dir, const char *index_path) {
    char *text;
    size_t len;
    LMC_CHECK(lmc_read_file(index_path, LMC_SAFETENSORS_MAX_HEADER, &text, &len));
    size_t bad;
    if (!lmc_utf8_valid(text, len, &bad)) {
        free(text);
        return lmc_set_error(LMC_ERR_FORMAT, "%.200s: not valid UTF-8 (byte %zu)", index_path, bad);
    }
    if (lmc_json_has_nul_escape(text, len, &bad)) {
        free(text);
        return lmc_set_error(LMC_ERR_FORMAT, "%.200s: holds the escape \\u0000 (byte %zu); names cannot contain NUL",
                             index_path, bad);
    }
    cJSON *root = lmc_json_parse(text, len, &bad);
    free(text);
    if (!root) return lmc_set_error(LMC_ERR_FORMAT, "%.200s: not valid JSON (error near byte %zu)", index_path, bad);
    lmc_status s = LMC_OK;
    const cJSON *map = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) s = lmc_set_error(LMC_ERR_FORMAT, "%.200s: no \"weight_map\" object", index_path);
    for (const cJSON *e = map ? map->child : NULL; e && s == LMC_OK; e = e->next) {
        if (!cJSON_IsString(e)) {
            s = lmc_set_error(LMC_ERR_FORMAT, "%.200s: weight_map value for tensor '%.200s' is %s, not a file name",
                              index_path, e->string, lmc_json_type_name(e));
            break;
        }
        const char *file = e->valuestring;
        if (!safe_relative_name(file)) {
            s = lmc_set_error(LMC_ERR_FORMAT, "%.200s: tensor '%.200s' is mapped to '%.200s', which is not a file "
                              "name inside the checkpoint directory", index_path, e->string, file);
            break;
        }
        /* Shards are few: a linear search over those opened so far is enough. */
        size_t f = 0;
        while (f < ck->n_files && strcmp(ck->file_names[f], file) != 0) f++;
        if (f == ck->n_files) {
            s = add_file(ck, dir, file);
            if (s != LMC_OK) {
                lmc_error_prefix("%.200s: tensor '%.200s' is mapped to '%.200s', which cannot be opened", index_path,
                                 e->string, file);
                break;
            }
        }
        if (!lmc_safetensors_contains(ck->files[f], e->string)) {
            s = lmc_set_error(LMC_ERR_FORMAT, "%.200s: tensor '%.200s' is mapped to '%.200s', which does not contain it",
                              index_path, e->string, file);
            break;
        }
        s = add_entry(ck, e->string, f);
    }
    cJSON_Delete(root);
    if (s == LMC_OK) s = build_lookup(ck, index_path);
    if (s == LMC_OK && ck->n_files == 0)
        s = lmc_set_error(LMC_ERR_FORMAT, "%.200s: \"weight_map\" is empty", index_path);
    return s;
}

static lmc_status add_all_tensors(lmc_checkpoint *ck, size_t f) {
    const lmc_safetensors *st = ck->files[f];
    for (size_t i = 0; i < lmc_safetensors_count(st); i++) LMC_CHECK(add_entry(ck, lmc_safetensors_name(st, i), f));
    return LMC_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Every *.safetensors file of the directory, sorted by name. */
static lmc_status open_all(lmc_checkpoint *ck, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return lmc_set_error(LMC_ERR_IO, "%.200s: cannot list: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    lmc_status s = LMC_OK;
    for (struct dirent *de; s == LMC_OK && (de = readdir(d));) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".safetensors")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                s = oom();
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) s = oom();
        else n++;
    }
    closedir(d);
    if (s == LMC_OK && n == 0)
        s = lmc_set_error(LMC_ERR_NOT_FOUND,
                          "%.200s: no model.safetensors.index.json, model.safetensors or *.safetensors file", dir);
    if (s == LMC_OK) qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 0; i < n && s == LMC_OK; i++) {
        s = add_file(ck, dir, names[i]);
        if (s == LMC_OK) s = add_all_tensors(ck, ck->n_files - 1);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (s == LMC_OK) s = build_lookup(ck, dir);
    return s;
}

static bool is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

lmc_status lmc_checkpoint_open(const char *path, lmc_checkpoint **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_checkpoint_open: out is NULL");
    *out = NULL;
    if (!path) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_checkpoint_open: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0) return lmc_set_error(LMC_ERR_IO, "%.200s: cannot open: %s", path, strerror(errno));
    lmc_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return oom();
    lmc_status s;
    if (!S_ISDIR(sb.st_mode)) {
        s = add_file(ck, NULL, path);
        if (s == LMC_OK) s = add_all_tensors(ck, 0);
        if (s == LMC_OK) s = build_lookup(ck, path);
    } else {
        char *index = join_path(path, "model.safetensors.index.json");
        char *single = join_path(path, "model.safetensors");
        if (!index || !single) s = oom();
        else if (is_regular_file(index)) s = open_index(ck, path, index);
        else if (is_regular_file(single)) {
            s = add_file(ck, path, "model.safetensors");
            if (s == LMC_OK) s = add_all_tensors(ck, 0);
            if (s == LMC_OK) s = build_lookup(ck, path);
        } else s = open_all(ck, path);
        free(index);
        free(single);
    }
    if (s != LMC_OK) {
        lmc_checkpoint_close(ck);
        return s;
    }
    *out = ck;
    return LMC_OK;
}

/* --- queries -------------------------------------------------------------------- */

size_t lmc_checkpoint_count(const lmc_checkpoint *ck) { return ck ? ck->n : 0; }

const char *lmc_checkpoint_name(const lmc_checkpoint *ck, size_t i) {
    return ck && i < ck->n ? ck->entries[i].name : NULL;
}

size_t lmc_checkpoint_file_count(const lmc_checkpoint *ck) { return ck ? ck->n_files : 0; }

lmc_safetensors *lmc_checkpoint_file(const lmc_checkpoint *ck, size_t i) {
    return ck && i < ck->n_files ? ck->files[i] : NULL;
}

lmc_safetensors *lmc_checkpoint_find(const lmc_checkpoint *ck, const char *name) {
    if (!ck || !name) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_checkpoint_find: checkpoint or name is NULL");
        return NULL;
    }
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ck->sorted[mid].name);
        if (c == 0) return ck->files[ck->sorted[mid].file];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    if (ck->n_files == 1)
        lmc_set_error(LMC_ERR_NOT_FOUND, "%.200s: no tensor named '%.200s'", lmc_safetensors_path(ck->files[0]), name);
    else
        lmc_set_error(LMC_ERR_NOT_FOUND, "checkpoint of %zu files (%.200s, ...): no tensor named '%.200s'",
                      ck->n_files, lmc_safetensors_path(ck->files[0]), name);
    return NULL;
}

lmc_status lmc_checkpoint_info(const lmc_checkpoint *ck, const char *name, lmc_dtype *dtype, int *ndim,
                               int64_t *shape) {
    lmc_safetensors *st = lmc_checkpoint_find(ck, name);
    if (!st) return lmc_last_status();
    return lmc_safetensors_info(st, name, dtype, ndim, shape);
}

lmc_array *lmc_checkpoint_get(const lmc_checkpoint *ck, const char *name) {
    lmc_safetensors *st = lmc_checkpoint_find(ck, name);
    return st ? lmc_safetensors_get(st, name) : NULL;
}
