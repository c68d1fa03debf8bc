/* Attention inspection: one prefill with the decoder's capture hooks on. */
#include <stdlib.h>
#include <string.h>

#include "lmc/ops.h"
#include "runtime/model_internal.h"

void lmc_attention_capture_clear(lmc_attention_capture *c) {
    if (!c) return;
    for (int i = 0; i < c->n_layers; i++) {
        if (c->queries) lmc_array_free(c->queries[i]);
        if (c->keys) lmc_array_free(c->keys[i]);
    }
    free(c->queries);
    free(c->keys);
    memset(c, 0, sizeof *c);
}

lmc_status lmc_model_inspect_attention(lmc_model *m, const int32_t *ids, size_t n, lmc_attention_capture *out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "inspect_attention: out is NULL");
    memset(out, 0, sizeof *out);
    const lmc_decoder *d = lmc_model_native(m, "inspect_attention");
    if (!d) return lmc_last_status();
    if (!ids || n == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "inspect_attention: no ids given");
    int64_t V = d->cfg.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "token id %d at index %zu is outside the vocabulary (0..%lld)",
                                 ids[i], i, (long long)V - 1);
    if ((int64_t)n > m->context_length)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%zu tokens exceed the context length %lld", n,
                             (long long)m->context_length);
    int L = (int)d->cfg.num_layers;
    lmc_array **q = calloc((size_t)L, sizeof *q), **k = calloc((size_t)L, sizeof *k);
    lmc_kv_cache cache;
    lmc_status s = q && k ? lmc_decoder_cache_init(d, &cache, 1, (int64_t)n) : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (s != LMC_OK) {
        free(q);
        free(k);
        return s;
    }
    lmc_scope_begin();
    int64_t shape[2] = {1, (int64_t)n};
    lmc_forward_args args = {.last_only = true, .inspect_q = q, .inspect_k = k};
    lmc_array *lg = lmc_decoder_forward(d, &cache, lmc_array_from_data(ids, LMC_I32, 2, shape), &args);
    if (!lg) s = lmc_last_status();
    /* [1, H, T, D] -> [H, T, D], owned by the caller. */
    for (int i = 0; i < L && s == LMC_OK; i++) {
        lmc_array *qs = lmc_squeeze(q[i], 0), *ks = lmc_squeeze(k[i], 0);
        lmc_array *qc = qs ? lmc_astype(qs, LMC_F32) : NULL, *kc = ks ? lmc_astype(ks, LMC_F32) : NULL;
        lmc_array_free(q[i]);
        lmc_array_free(k[i]);
        q[i] = lmc_array_unscope(qc);
        k[i] = lmc_array_unscope(kc);
        if (!qc || !kc) s = lmc_last_status();
    }
    lmc_scope_end();
    lmc_kv_cache_free(&cache);
    out->n_layers = L;
    out->queries = q;
    out->keys = k;
    if (s != LMC_OK) lmc_attention_capture_clear(out);
    return s;
}
