/* Merging an adapter set into a new checkpoint folder (lmc_lora_fuse):
 * every tensor of the base checkpoint under its own name, in bf16, with
 * W + scale · B @ A for adapted modules (computed in f32, rounded once).
 * Quantised modules are dequantised in f32 first, their .scales and
 * .biases dropped, and config.json loses its quantisation entries, so the
 * result is a plain bf16 model that transformers and lmc both load. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_util.h"
#include "lmc/ops.h"
#include "lmc/safetensors.h"
#include "runtime/model_internal.h"
#include "train/lora_internal.h"

/* Files beside the weights that a model folder needs (copied when present). */
static const char *const k_copied[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt",
                                       "generation_config.json", "chat_template.jinja", "chat_template.json"};

static lmc_status copy_file(const char *from, const char *to) {
    char *data = NULL;
    size_t len = 0;
    LMC_CHECK(lmc_read_file(from, (size_t)1 << 31, &data, &len));
    lmc_status s = lmc_lora_write_file(to, data, len);
    free(data);
    return s;
}

/* config.json without "quantization" / "quantization_config" (also inside
 * "text_config"), with torch_dtype naming the weights' dtype. */
static lmc_status write_config(const char *from, const char *to, const char *dtype_name) {
    char *data = NULL;
    size_t len = 0;
    LMC_CHECK(lmc_read_file(from, 16u << 20, &data, &len));
    cJSON *root = lmc_json_parse(data, len, NULL);
    free(data);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lmc_set_error(LMC_ERR_FORMAT, "%s: not a JSON object", from);
    }
    cJSON *objs[2] = {root, cJSON_GetObjectItemCaseSensitive(root, "text_config")};
    for (int i = 0; i < 2; i++) {
        if (!cJSON_IsObject(objs[i])) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "quantization");
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "quantization_config");
        if (cJSON_GetObjectItemCaseSensitive(objs[i], "torch_dtype") || i == 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "torch_dtype");
            cJSON_AddStringToObject(objs[i], "torch_dtype", dtype_name);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status s = lmc_lora_write_file(to, text, strlen(text));
    cJSON_free(text);
    return s;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The merged tensor (in dtype) for checkpoint tensor `name`, or NULL with *skip
 * set for the .scales / .biases of a quantised module. */
static lmc_array *merged_tensor(const lmc_lora *l, const lmc_decoder *d, const char *name, lmc_dtype dtype, bool *skip) {
    *skip = false;
    char base[300];
    size_t n = strlen(name);
    const char *dot = strrchr(name, '.');
    size_t bl = dot ? (size_t)(dot - name) : n;
    snprintf(base, sizeof base, "%.*s", (int)bl, name);
    char other[320];
    if (ends_with(name, ".scales") || ends_with(name, ".biases")) {
        snprintf(other, sizeof other, "%s.weight", base);
        lmc_dtype dt;
        if (lmc_checkpoint_info(d->ck, other, &dt, NULL, NULL) == LMC_OK && dt == LMC_U32) {
            *skip = true;
            return NULL;
        }
    }
    lmc_array *w = lmc_checkpoint_get(d->ck, name);
    if (!w) return NULL;
    snprintf(other, sizeof other, "%s.scales", base);
    if (ends_with(name, ".weight") && lmc_checkpoint_find(d->ck, other)) {
        lmc_quant_spec q = lmc_model_config_quant_for(&d->cfg, base);
        lmc_array *s = lmc_checkpoint_get(d->ck, other);
        snprintf(other, sizeof other, "%s.biases", base);
        lmc_array *b = lmc_checkpoint_get(d->ck, other);
        if (!q.bits) {
            lmc_set_error(LMC_ERR_FORMAT, "tensor '%s' is quantised but config.json has no quantization for it", name);
            return NULL;
        }
        w = lmc_dequantize(w, lmc_astype(s, LMC_F32), lmc_astype(b, LMC_F32), q.group_size, q.bits);
    }
    if (!w) return NULL;
    if (!lmc_dtype_is_float(lmc_array_dtype(w))) return w; /* nothing else is expected; kept as it is */
    for (int i = 0; i < l->n; i++) {
        const lmc_lora_entry *e = &l->e[i];
        char full[300];
        lmc_lora_module_name(l->prefix, e->layer, e->module, full, sizeof full);
        if (strcmp(full, base) || !ends_with(name, ".weight")) continue;
        lmc_array *delta = lmc_mul_scalar(lmc_matmul(lmc_astype(e->ad.b, LMC_F32), lmc_astype(e->ad.a, LMC_F32)), e->ad.scale);
        w = lmc_add(lmc_astype(w, LMC_F32), delta);
        break;
    }
    return lmc_astype(w, dtype);
}

lmc_status lmc_lora_fuse(const lmc_lora *l, const char *out_dir) {
    return lmc_lora_fuse_as(l, out_dir, LMC_BF16, LMC_LORA_FUSE_SHARD_BYTES);
}

/* Writes shard number k (model-0000k.safetensors) of n tensors and records
 * them in the index's weight map. */
static lmc_status write_shard(const char *out_dir, int k, const char **names, const lmc_array **arrays, size_t n,
                              cJSON *weight_map) {
    char file[32], path[4200];
    snprintf(file, sizeof file, "model-%05d.safetensors", k);
    snprintf(path, sizeof path, "%s/%s", out_dir, file);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    LMC_CHECK(lmc_safetensors_write(path, n, names, arrays, 1, mk, mv));
    for (size_t i = 0; i < n; i++)
        if (!cJSON_AddStringToObject(weight_map, names[i], file)) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    return LMC_OK;
}

lmc_status lmc_lora_fuse_as(const lmc_lora *l, const char *out_dir, lmc_dtype dtype, size_t shard_bytes) {
    if (!l || !out_dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_lora_fuse: the adapter and out_dir must be given");
    if (!l->m) return lmc_set_error(LMC_ERR_CLOSED, "lmc_lora_fuse: the adapter's model is closed");
    const lmc_decoder *d = lmc_model_native(l->m, "fusing adapters");
    if (!d) return lmc_last_status();
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        return lmc_set_error(LMC_ERR_IO, "%s: cannot create (%s)", out_dir, strerror(errno));
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(out_dir, a)) return lmc_set_error(LMC_ERR_IO, "%s: %s", out_dir, strerror(errno));
    if (realpath(l->m->dir, b) && !strcmp(a, b))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: the output folder is the model's own folder; choose another",
                             out_dir);
    struct stat st;
    if (stat(out_dir, &st) != 0 || !S_ISDIR(st.st_mode)) return lmc_set_error(LMC_ERR_IO, "%s: not a directory", out_dir);

    size_t n = lmc_checkpoint_count(d->ck);
    const char **names = calloc(n ? n : 1, sizeof *names);
    const lmc_array **arrays = calloc(n ? n : 1, sizeof *arrays);
    cJSON *index = cJSON_CreateObject(), *meta = index ? cJSON_AddObjectToObject(index, "metadata") : NULL;
    cJSON *weight_map = index ? cJSON_AddObjectToObject(index, "weight_map") : NULL;
    if (!names || !arrays || !meta || !weight_map) {
        free(names);
        free(arrays);
        cJSON_Delete(index);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* The merged tensors are computed and written a shard at a time (about
     * shard_bytes a file), so fusing needs the memory of one shard, not of
     * the whole model; a model that fits in one is one model.safetensors. */
    lmc_status s = LMC_OK;
    size_t kept = 0, first = 0, bytes = 0;
    double total = 0;
    int shards = 0;
    lmc_scope_begin();
    for (size_t i = 0; i < n && s == LMC_OK; i++) {
        const char *name = lmc_checkpoint_name(d->ck, i);
        bool skip;
        lmc_array *t = merged_tensor(l, d, name, dtype, &skip);
        if (skip) continue;
        if (!t) {
            s = lmc_last_status();
            break;
        }
        names[kept] = name;
        arrays[kept++] = t;
        bytes += lmc_array_nbytes(t);
        total += (double)lmc_array_nbytes(t);
        if (bytes >= shard_bytes) {
            s = write_shard(out_dir, ++shards, names + first, arrays + first, kept - first, weight_map);
            lmc_scope_end(); /* the shard's tensors */
            lmc_scope_begin();
            first = kept;
            bytes = 0;
        }
    }
    if (s == LMC_OK && (kept > first || shards == 0))
        s = write_shard(out_dir, ++shards, names + first, arrays + first, kept - first, weight_map);
    lmc_scope_end();
    free(names);
    free(arrays);
    char path[4200], from[4200];
    if (s == LMC_OK && shards == 1) {
        snprintf(from, sizeof from, "%s/model-00001.safetensors", out_dir);
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        if (rename(from, path) != 0) s = lmc_set_error(LMC_ERR_IO, "%s: cannot rename to %s: %s", from, path, strerror(errno));
        /* a stale index from an earlier checkpoint in out_dir would hide the new file */
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
        if (s == LMC_OK) unlink(path);
    } else if (s == LMC_OK) {
        /* the index names the shards; an earlier single file would only take room */
        cJSON_AddNumberToObject(meta, "total_size", total);
        char *text = cJSON_Print(index);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
        s = text ? lmc_lora_write_file(path, text, strlen(text)) : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        cJSON_free(text);
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        if (s == LMC_OK) unlink(path);
    }
    cJSON_Delete(index);
    if (s == LMC_OK) {
        snprintf(from, sizeof from, "%s/config.json", l->m->dir);
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        s = write_config(from, path, dtype == LMC_BF16 ? "bfloat16" : "float32");
    }
    for (size_t i = 0; i < sizeof k_copied / sizeof *k_copied && s == LMC_OK; i++) {
        snprintf(from, sizeof from, "%s/%s", l->m->dir, k_copied[i]);
        snprintf(path, sizeof path, "%s/%s", out_dir, k_copied[i]);
        if (access(from, R_OK) == 0) s = copy_file(from, path);
    }
    return s;
}
