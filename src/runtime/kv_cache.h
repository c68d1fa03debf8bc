/* Key/value caches, one per decoder layer.
 *
 * Full layers keep every position (capacity grows by half, at least
 * LMC_KV_GROW_STEP positions, bounded by the context length). Sliding-window layers
 * keep only the last window-1 positions before each new block of queries —
 * all that any query can still see — so their memory stays bounded however
 * long the generation runs. Keys are stored post-RoPE, in position order, so
 * attention can use a plain causal (+ window) mask over the returned view.
 */
#ifndef LMC_RUNTIME_KV_CACHE_H
#define LMC_RUNTIME_KV_CACHE_H

#include "core/array.h"

enum {
    LMC_KV_GROW_STEP = 256,     /* the least a full layer grows by */
    LMC_KV_RESERVE_AHEAD = 256, /* the most a stream reserves for its answer ahead of time */
    /* a full layer's k (or v) of at least this many bytes is an array of its
     * own; smaller, the full layers' storage is one allocation (kv_cache.c) */
    LMC_KV_OWN_BYTES = 4 << 20
};

typedef struct lmc_layer_cache {
    lmc_array *k, *v;     /* [B, Hkv, cap, D] storage */
    int64_t len;          /* valid positions at the start of storage */
    int64_t first_pos;    /* absolute position of storage index 0 */
    int64_t window;       /* 0: full layer */
} lmc_layer_cache;

typedef struct lmc_kv_cache {
    int n_layers;
    lmc_layer_cache *layers;
    int64_t batch, kv_heads, head_dim, max_len; /* max_len: the context length bound */
    int64_t pos;          /* positions consumed so far (the next token's position) */
    lmc_dtype dtype;
    lmc_device device; /* where the layers' arrays live (LMC_CPU unless set after init) */
} lmc_kv_cache;

/* windows[i] = 0 for a full layer, else the sliding window of layer i. */
lmc_status lmc_kv_cache_init(lmc_kv_cache *c, int n_layers, const int64_t *windows, int64_t batch, int64_t kv_heads,
                             int64_t head_dim, int64_t max_len, lmc_dtype dtype);
void lmc_kv_cache_free(lmc_kv_cache *c);
/* Drops every position (keeps the storage). */
void lmc_kv_cache_reset(lmc_kv_cache *c);
/* Keeps only the first n positions (n <= pos); for prefix reuse. Fails for
 * sliding layers that have already dropped positions needed. */
lmc_status lmc_kv_cache_truncate(lmc_kv_cache *c, int64_t n);
/* Whether lmc_kv_cache_truncate(c, n) would succeed (sets no error). */
bool lmc_kv_cache_can_truncate(const lmc_kv_cache *c, int64_t n);
/* Appends k, v [B, Hkv, T, D] for layer `layer` at positions pos..pos+T-1 and
 * returns views (*k_all, *v_all) [B, Hkv, L, D] of every key the new queries
 * may attend to, ending with the new ones. Call lmc_kv_cache_advance(T)
 * after all layers. */
lmc_status lmc_kv_cache_update(lmc_kv_cache *c, int layer, const lmc_array *k, const lmc_array *v, lmc_array **k_all,
                               lmc_array **v_all);
void lmc_kv_cache_advance(lmc_kv_cache *c, int64_t t);
/* Gives every full layer room for n positions (at most max_len) now, so a
 * generation whose length is known ahead never grows (and copies) its
 * storage; sliding layers stay bounded by their window. */
lmc_status lmc_kv_cache_reserve(lmc_kv_cache *c, int64_t n);
/* Keeps only the batch rows rows[0..n) (in that order; n >= 1), e.g. to drop
 * finished sequences from a batched decode. Positions are unchanged. */
lmc_status lmc_kv_cache_select_rows(lmc_kv_cache *c, const int32_t *rows, int64_t n);
/* Bytes held by the cache's storage. */
size_t lmc_kv_cache_bytes(const lmc_kv_cache *c);

#endif
