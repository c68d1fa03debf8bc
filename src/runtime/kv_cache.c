#include "runtime/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/huge_pages.h"
#include "lmc/ops.h"
#include "ops/fusion.h"

lmc_status lmc_kv_cache_init(lmc_kv_cache *c, int n_layers, const int64_t *windows, int64_t batch, int64_t kv_heads,
                             int64_t head_dim, int64_t max_len, lmc_dtype dtype) {
    memset(c, 0, sizeof *c);
    c->layers = calloc((size_t)n_layers, sizeof *c->layers);
    if (!c->layers) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory for the KV cache");
    c->n_layers = n_layers;
    c->batch = batch;
    c->kv_heads = kv_heads;
    c->head_dim = head_dim;
    c->max_len = max_len;
    c->dtype = dtype;
    for (int i = 0; i < n_layers; i++) c->layers[i].window = windows ? windows[i] : 0;
    return LMC_OK;
}

void lmc_kv_cache_free(lmc_kv_cache *c) {
    if (!c->layers) return;
    for (int i = 0; i < c->n_layers; i++) {
        lmc_array_free(c->layers[i].k);
        lmc_array_free(c->layers[i].v);
    }
    free(c->layers);
    memset(c, 0, sizeof *c);
}

void lmc_kv_cache_reset(lmc_kv_cache *c) {
    for (int i = 0; i < c->n_layers; i++) {
        c->layers[i].len = 0;
        c->layers[i].first_pos = 0;
    }
    c->pos = 0;
}

/* The first layer that no longer holds what the positions before n need
 * (a sliding layer needs the window-1 positions before n), or -1. */
static int rewind_blocker(const lmc_kv_cache *c, int64_t n) {
    for (int i = 0; i < c->n_layers; i++) {
        const lmc_layer_cache *l = &c->layers[i];
        int64_t needed = l->window && n > l->window - 1 ? n - (l->window - 1) : 0;
        if (l->first_pos > needed) return i;
    }
    return -1;
}

bool lmc_kv_cache_can_truncate(const lmc_kv_cache *c, int64_t n) {
    return n >= 0 && n <= c->pos && rewind_blocker(c, n) < 0;
}

lmc_status lmc_kv_cache_truncate(lmc_kv_cache *c, int64_t n) {
    if (n < 0 || n > c->pos) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "KV cache: cannot truncate to %lld of %lld positions", (long long)n, (long long)c->pos);
    int b = rewind_blocker(c, n);
    if (b >= 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "KV cache: layer %d no longer holds the positions before %lld", b, (long long)n);
    for (int i = 0; i < c->n_layers; i++) c->layers[i].len = n - c->layers[i].first_pos;
    c->pos = n;
    return LMC_OK;
}

/* A [B, H, L, D] view of positions [from, to) of storage. */
static lmc_array *range_view(lmc_array *a, int64_t from, int64_t to) { return lmc_slice(a, 2, from, to, 1); }

/* Moves positions [drop, len) of storage to the front (through a temporary,
 * since the ranges may overlap). */
static lmc_status compact(lmc_layer_cache *l, int64_t drop) {
    if (drop == 0) return LMC_OK;
    int64_t zero[4] = {0, 0, 0, 0};
    lmc_status s = LMC_OK;
    if (l->len > drop) {
        lmc_array *ks = range_view(l->k, drop, l->len), *vs = range_view(l->v, drop, l->len);
        lmc_array *kt = lmc_copy(ks), *vt = lmc_copy(vs);
        s = kt && vt ? lmc_write_slice(l->k, zero, kt) : lmc_last_status();
        if (s == LMC_OK) s = lmc_write_slice(l->v, zero, vt);
        lmc_array_free(ks);
        lmc_array_free(vs);
        lmc_array_free(kt);
        lmc_array_free(vt);
    }
    if (s == LMC_OK) {
        l->first_pos += drop;
        l->len -= drop;
    }
    return s;
}

/* Positions the layer's storage has room for. */
static int64_t capacity(const lmc_layer_cache *l) { return l->k ? l->k->shape[2] : 0; }

/* Bytes of one layer's k (or v) at cap positions. */
static size_t layer_bytes(const lmc_kv_cache *c, int64_t cap) {
    return (size_t)(c->batch * c->kv_heads * cap * c->head_dim) * lmc_dtype_size(c->dtype);
}

/* New storage for layer l's k and v in *k and *v (views of `from` at
 * `at` bytes when given, else arrays of their own advised onto 2 MiB
 * pages), holding l's positions. */
static lmc_status layer_storage(lmc_kv_cache *c, const lmc_layer_cache *l, int64_t cap, const lmc_array *from,
                                size_t at, lmc_array **k, lmc_array **v) {
    int64_t shape[4] = {c->batch, c->kv_heads, cap, c->head_dim};
    int64_t strides[4] = {c->kv_heads * cap * c->head_dim, cap * c->head_dim, c->head_dim, 1};
    size_t bytes = layer_bytes(c, cap);
    lmc_array **kv[2] = {k, v};
    for (int i = 0; i < 2; i++) {
        *kv[i] = from ? lmc_array_view(from->buf, at + (size_t)i * bytes, c->dtype, 4, shape, strides)
                      : lmc_array_new(c->dtype, 4, shape, c->device);
        if (!*kv[i]) return lmc_last_status();
        if (!from && c->device == LMC_CPU) lmc_huge_pages_advise(lmc_array_ptr(*kv[i]), bytes);
        if (l->len > 0) {
            int64_t zero[4] = {0, 0, 0, 0};
            lmc_array *old = range_view(i ? l->v : l->k, 0, l->len);
            lmc_status s = old ? lmc_write_slice(*kv[i], zero, old) : lmc_last_status();
            lmc_array_free(old);
            if (s != LMC_OK) return s;
        }
    }
    return LMC_OK;
}

/* The layers resize_layers replaces: `only` when it is a sliding layer,
 * else the full layers with fewer than cap positions (with all: every full
 * layer that has storage). */
static bool picked(const lmc_kv_cache *c, int i, const lmc_layer_cache *only, int64_t cap, bool all) {
    const lmc_layer_cache *l = &c->layers[i];
    if (only && only->window) return l == only;
    return !l->window && (all ? l->k != NULL : capacity(l) < cap);
}

/* Storage of cap positions for the layers `picked` chooses, their positions
 * copied in. Where a layer's k (or v) is under LMC_KV_OWN_BYTES, all of
 * them are views of one allocation: alone such arrays stay on 4 KiB pages,
 * and every eighth token faulted in a page of each head's k and v in every
 * layer, ~2 us a page on a KVM guest (Qwen3-0.6B at 272 positions: 1.1 MB
 * arrays; bench/RESULTS.md, twenty-third round); in one allocation they sit
 * on 2 MiB pages, all faulted in by the first position written, so the
 * resident size is the capacity (lmc_kv_cache_bytes, which issue 8's
 * memory budget counts). Larger arrays get 2 MiB pages on their own and are
 * replaced one layer at a time, so growing a long cache holds its old
 * storage and one layer's new, not two whole caches. */
static lmc_status resize_layers(lmc_kv_cache *c, const lmc_layer_cache *only, int64_t cap, bool all) {
    int n = 0;
    for (int i = 0; i < c->n_layers; i++) n += picked(c, i, only, cap, all);
    if (!n) return LMC_OK;
    size_t bytes = layer_bytes(c, cap);
    lmc_array *slab = NULL;
    if (bytes < LMC_KV_OWN_BYTES) {
        int64_t total = 2 * (int64_t)n * c->batch * c->kv_heads * cap * c->head_dim;
        if (!(slab = lmc_array_new(c->dtype, 1, &total, c->device))) return lmc_last_status();
        if (c->device == LMC_CPU) lmc_huge_pages_advise(lmc_array_ptr(slab), lmc_array_nbytes(slab));
    }
    /* With one allocation every layer's new storage is made before any old
     * one goes, so a failure leaves the cache as it was. */
    lmc_array **made = calloc((size_t)c->n_layers * 2, sizeof *made);
    lmc_status s = made ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory for the KV cache");
    size_t at = slab ? slab->offset : 0;
    for (int i = 0; i < c->n_layers && s == LMC_OK; i++) {
        if (!picked(c, i, only, cap, all)) continue;
        lmc_layer_cache *l = &c->layers[i];
        s = layer_storage(c, l, cap, slab, at, &made[2 * i], &made[2 * i + 1]);
        at += 2 * bytes;
        if (s == LMC_OK && !slab) { /* its own arrays: the old ones go now */
            lmc_array_free(l->k);
            lmc_array_free(l->v);
            l->k = lmc_array_unscope(made[2 * i]); /* the cache outlives any scope of the caller */
            l->v = lmc_array_unscope(made[2 * i + 1]);
            made[2 * i] = made[2 * i + 1] = NULL;
        }
    }
    for (int i = 0; made && i < c->n_layers; i++) {
        if (!made[2 * i] && !made[2 * i + 1]) continue; /* not picked, or already in place */
        lmc_layer_cache *l = &c->layers[i];
        if (s != LMC_OK) {
            lmc_array_free(made[2 * i]);
            lmc_array_free(made[2 * i + 1]);
            continue;
        }
        lmc_array_free(l->k);
        lmc_array_free(l->v);
        l->k = lmc_array_unscope(made[2 * i]);
        l->v = lmc_array_unscope(made[2 * i + 1]);
    }
    free(made);
    lmc_array_free(slab); /* the views hold the buffer */
    return s;
}

/* Room for `need` positions. Each head's positions are contiguous, so
 * growing copies them all: a full layer grows by half its capacity (at least
 * LMC_KV_GROW_STEP), which keeps the copying of a whole generation within
 * about twice the final cache. A fixed step made it quadratic: 16384
 * one-token steps of a Qwen3-0.6B-shaped cache spent 76 s copying and
 * faulting in pages, with stalls of up to 3 s. (Callers that know the
 * length ahead reserve it, and nothing is copied.) Every full layer holds
 * the same positions, so all of them grow together, into one allocation;
 * a sliding layer needs only window - 1 + T positions, so it keeps the
 * fixed step and grows alone. */
static lmc_status grow(lmc_kv_cache *c, lmc_layer_cache *l, int64_t need) {
    int64_t old = capacity(l), want = need;
    if (!l->window && want < old + old / 2) want = old + old / 2;
    int64_t cap = ((want + LMC_KV_GROW_STEP - 1) / LMC_KV_GROW_STEP) * LMC_KV_GROW_STEP;
    if (!l->window && cap > c->max_len) cap = need > c->max_len ? need : c->max_len;
    return resize_layers(c, l, cap, false);
}

lmc_status lmc_kv_cache_reserve(lmc_kv_cache *c, int64_t n) {
    if (n > c->max_len) n = c->max_len;
    return resize_layers(c, NULL, n, false);
}

lmc_status lmc_kv_cache_update(lmc_kv_cache *c, int layer, const lmc_array *k, const lmc_array *v, lmc_array **k_all,
                               lmc_array **v_all) {
    *k_all = *v_all = NULL;
    if (layer < 0 || layer >= c->n_layers) return lmc_set_error(LMC_ERR_INTERNAL, "KV cache: no layer %d", layer);
    lmc_layer_cache *l = &c->layers[layer];
    int64_t t = k->shape[2];
    if (c->pos + t > c->max_len)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "context length %lld exceeded (%lld positions requested)",
                             (long long)c->max_len, (long long)(c->pos + t));
    /* A sliding layer's new queries see nothing before pos - (window - 1). */
    int64_t drop = 0;
    if (l->window && c->pos - (l->window - 1) > l->first_pos) drop = c->pos - (l->window - 1) - l->first_pos;
    if (drop > l->len) drop = l->len;
    int64_t cap = capacity(l);
    if (l->len + t > cap) {
        /* Out of room: drop what is no longer visible, then grow if still needed. */
        LMC_CHECK(compact(l, drop));
        drop = 0;
        if (l->len + t > cap) LMC_CHECK(grow(c, l, l->len + t));
    }
    int64_t at[4] = {0, 0, l->len, 0};
    lmc_array *dst[2] = {l->k, l->v};
    const lmc_array *src[2] = {k, v};
    LMC_CHECK(lmc_write_slices(2, dst, at, src)); /* one launch on a GPU */
    l->len += t;
    *k_all = range_view(l->k, drop, l->len);
    *v_all = range_view(l->v, drop, l->len);
    if (!*k_all || !*v_all) {
        lmc_array_free(*k_all);
        lmc_array_free(*v_all);
        *k_all = *v_all = NULL;
        return lmc_last_status();
    }
    return LMC_OK;
}

void lmc_kv_cache_advance(lmc_kv_cache *c, int64_t t) { c->pos += t; }

lmc_status lmc_kv_cache_select_rows(lmc_kv_cache *c, const int32_t *rows, int64_t n) {
    if (n < 1 || n > c->batch) return lmc_set_error(LMC_ERR_INTERNAL, "KV cache: cannot keep %lld of %lld rows", (long long)n, (long long)c->batch);
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= c->batch) return lmc_set_error(LMC_ERR_INTERNAL, "KV cache: no row %d", rows[i]);
    lmc_array *host = lmc_array_from_data(rows, LMC_I32, 1, &n);
    lmc_array *idx = host ? lmc_array_to(host, c->device) : NULL;
    lmc_array_free(host);
    if (!idx) return lmc_last_status();
    lmc_status s = LMC_OK;
    for (int i = 0; i < c->n_layers && s == LMC_OK; i++) {
        lmc_layer_cache *l = &c->layers[i];
        if (!l->k) continue;
        lmc_array *nk = lmc_take(l->k, idx, 0), *nv = lmc_take(l->v, idx, 0);
        if (!nk || !nv) {
            lmc_array_free(nk);
            lmc_array_free(nv);
            s = lmc_last_status();
            break;
        }
        lmc_array_free(l->k);
        lmc_array_free(l->v);
        l->k = lmc_array_unscope(nk); /* the cache outlives any scope of the caller */
        l->v = lmc_array_unscope(nv);
    }
    lmc_array_free(idx);
    /* Layers not yet written have no storage; every written layer now has n rows. */
    if (s != LMC_OK) return s;
    c->batch = n;
    /* Small full layers back into one allocation (a copy more, of a small
     * cache), so the batch keeps its 2 MiB pages after a row leaves. */
    int64_t cap = 0;
    for (int i = 0; i < c->n_layers; i++)
        if (!c->layers[i].window && c->layers[i].k) cap = capacity(&c->layers[i]);
    if (!cap || layer_bytes(c, cap) >= LMC_KV_OWN_BYTES) return LMC_OK;
    return resize_layers(c, NULL, cap, true);
}

size_t lmc_kv_cache_bytes(const lmc_kv_cache *c) {
    size_t n = 0;
    for (int i = 0; i < c->n_layers; i++) n += lmc_array_nbytes(c->layers[i].k) + lmc_array_nbytes(c->layers[i].v);
    return n;
}
