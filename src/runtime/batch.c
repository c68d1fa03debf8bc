/* Batch inference: lmc_classify and lmc_batch_generate.
 *
 * Prompts are tokenised and checked one by one (a bad prompt gets its own
 * error), sorted by length (longest first, so each sub-batch pads little)
 * and run in sub-batches of at most max_batch rows.
 *
 * A sub-batch of B rows is LEFT-padded to its longest prompt L: row b's
 * tokens sit at key indices [pad_b, L). Every forward pass gets
 *   - positions index - pad_b (0 for padding), so RoPE sees what a
 *     single-sequence run sees;
 *   - a bool keep-mask [B, 1, 1, keys] hiding the padding keys of each row.
 * Causal and sliding-window masking inside sdpa work by key/query index;
 * within one row index differences equal position differences, so they are
 * exactly right for every row, and sliding layers (whose cache keeps the last
 * window-1 indices) hold what each row needs. Query rows at padding see no
 * key and give zeros; their outputs are never read. Because padding is on
 * the left, the last column is every row's last real token, so prefill asks
 * the decoder for the last position only.
 *
 * Batched decode appends one token per active row per step. A row that
 * stops is dropped from the batch at once (its cache rows are removed with
 * lmc_kv_cache_select_rows), so later steps do no work for it.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/ops.h"
#include "runtime/json_constraint.h"
#include "runtime/model_internal.h"
#include "runtime/sampler.h"

/* --- prompts ------------------------------------------------------------------- */

typedef struct prompt {
    int32_t *ids;
    size_t n;
    bool tok_owned;           /* ids came from the tokenizer (free with lmc_tokenizer_free_ids) */
    lmc_status status;        /* LMC_OK, or why this prompt cannot run */
    char *error;
} prompt;

/* Records the thread's last error as this prompt's error. */
static void prompt_fail(prompt *p, lmc_status st) {
    p->status = st;
    free(p->error);
    p->error = strdup(lmc_last_error());
}

/* Tokenises and checks prompt src (at most max_len tokens). */
static void prompt_prepare(lmc_model *m, const lmc_batch_prompt *src, bool add_special, const char *vars_json,
                           int64_t max_len, prompt *p) {
    memset(p, 0, sizeof *p);
    lmc_status st = LMC_OK;
    if (src->text) {
        st = lmc_tokenizer_encode(m->tok, src->text, strlen(src->text), add_special, &p->ids, &p->n);
        p->tok_owned = true;
    } else if (src->messages) {
        st = lmc_model_chat_ids(m, src->messages, src->n_messages, vars_json, &p->ids, &p->n);
        p->tok_owned = true;
    } else {
        p->ids = (int32_t *)src->ids;
        p->n = src->n_ids;
    }
    if (st == LMC_OK) st = lmc_model_check_prompt(m, p->ids, p->n, max_len);
    if (st != LMC_OK) prompt_fail(p, st);
}

static void prompts_free(prompt *ps, size_t n) {
    for (size_t i = 0; ps && i < n; i++) {
        if (ps[i].tok_owned) lmc_tokenizer_free_ids(ps[i].ids);
        free(ps[i].error);
    }
    free(ps);
}

/* Prepares every prompt and returns the indices of those that can run,
 * longest first (ties in input order), in *order (*n_order of them). */
static lmc_status prompts_prepare(lmc_model *m, const lmc_batch_prompt *src, size_t n, bool add_special,
                                  const char *vars_json, int64_t max_len, prompt **out, size_t **order, size_t *n_order) {
    *out = calloc(n ? n : 1, sizeof **out);
    *order = malloc((n ? n : 1) * sizeof **order);
    *n_order = 0;
    if (!*out || !*order) {
        free(*out);
        free(*order);
        *out = NULL;
        *order = NULL;
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        prompt_prepare(m, &src[i], add_special, vars_json, max_len, &(*out)[i]);
        if ((*out)[i].status == LMC_OK) (*order)[(*n_order)++] = i;
    }
    /* Insertion sort by length, descending; stable. */
    prompt *ps = *out;
    size_t *o = *order;
    for (size_t i = 1; i < *n_order; i++) {
        size_t x = o[i], j = i;
        while (j > 0 && ps[o[j - 1]].n < ps[x].n) {
            o[j] = o[j - 1];
            j--;
        }
        o[j] = x;
    }
    return LMC_OK;
}

static lmc_status check_batch_args(lmc_model *m, const char *what, const lmc_batch_prompt *prompts, size_t n,
                                   int max_batch, const lmc_sampler_config *sampler, void *results) {
    if (!lmc_model_native(m, what)) return lmc_last_status(); /* batches drive the decoder directly */
    if (!results) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "batch: results is NULL");
    if (n && !prompts) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "batch: prompts is NULL");
    if (max_batch < 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "max_batch must be >= 1 (0: default), got %d", max_batch);
    lmc_sampler *s;
    LMC_CHECK(lmc_sampler_create(sampler, &s)); /* reports a bad field once for the call */
    lmc_sampler_free(s);
    return LMC_OK;
}

/* --- forward passes over a left-padded batch ------------------------------------ */

/* Embeddings: the pooled hidden states of a sub-batch's rows, summed pass
 * by pass (mean) or taken from the last pass (last). */
typedef struct lmc_pool_acc {
    lmc_pooling pooling;
    int64_t B, H;
    bool last_pass;                    /* the pass that holds every row's last token */
    double *sum;                       /* [B, H] */
} lmc_pool_acc;

/* Adds hidden states h ([B, T, H]; T = 1 for last pooling) of key indices
 * start.. to the rows' sums, skipping each row's padding. */
static lmc_status pool_add(lmc_pool_acc *p, const lmc_array *h, const int64_t *pad, int64_t start) {
    int64_t T = lmc_array_dim(h, 1), n = p->B * T * p->H;
    if (p->pooling == LMC_POOLING_LAST && !p->last_pass) return LMC_OK;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status st = lmc_array_read(h, LMC_F32, v, (size_t)n);
    for (int64_t b = 0; st == LMC_OK && b < p->B; b++)
        for (int64_t t = 0; t < T; t++) {
            if (p->pooling == LMC_POOLING_MEAN && start + t < pad[b]) continue;
            for (int64_t j = 0; j < p->H; j++) p->sum[b * p->H + j] += v[(b * T + t) * p->H + j];
        }
    free(v);
    return st;
}

/* One forward pass of ids [B, T] at key indices cache->pos .. cache->pos+T-1;
 * pad[b] is row b's first real index. With logits, writes the last
 * column's logits [B, V]. */
static lmc_status forward_rows(lmc_model *m, lmc_kv_cache *cache, const int32_t *ids, const int64_t *pad, int64_t B,
                               int64_t T, float *logits, lmc_pool_acc *pool) {
    int64_t start = cache->pos, keys = start + T;
    int32_t *pos = malloc((size_t)(B * T) * sizeof *pos);
    bool *keep = malloc((size_t)(B * keys) * sizeof *keep);
    if (!pos || !keep) {
        free(pos);
        free(keep);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) pos[b * T + t] = start + t >= pad[b] ? (int32_t)(start + t - pad[b]) : 0;
        for (int64_t k = 0; k < keys; k++) keep[b * keys + k] = k >= pad[b];
    }
    lmc_status st = LMC_OK;
    lmc_scope_begin();
    int64_t ids_shape[2] = {B, T}, mask_shape[4] = {B, 1, 1, keys};
    /* with neither logits nor pooling wanted (a prompt's earlier chunks) the lm_head is skipped */
    lmc_forward_args args = {.last_only = !pool || pool->pooling == LMC_POOLING_LAST, .hidden = pool || !logits};
    args.positions = lmc_array_from_data(pos, LMC_I32, 2, ids_shape);
    args.mask = lmc_array_from_data(keep, LMC_BOOL, 4, mask_shape);
    lmc_array *idc = lmc_array_from_data(ids, LMC_I32, 2, ids_shape);
    lmc_array *lg = args.positions && args.mask ? lmc_decoder_forward(m->dec, cache, idc, &args) : NULL;
    if (!lg) st = lmc_last_status();
    else if (pool) st = pool_add(pool, lg, pad, start);
    else if (logits) st = lmc_array_read(lg, LMC_F32, logits, (size_t)(B * m->dec->cfg.vocab_size));
    lmc_scope_end();
    free(pos);
    free(keep);
    return st;
}

/* Prefills rows (prompts ps[rows[b]]) into a fresh cache of max_len key
 * indices and writes each row's last-position logits [B, V]. Sets pad[b]. */
static lmc_status prefill_rows(lmc_model *m, const prompt *ps, const size_t *rows, int64_t B, int64_t max_len,
                               lmc_cancel *cancel, lmc_kv_cache *cache, int64_t *pad, float *logits, lmc_pool_acc *pool) {
    int64_t L = (int64_t)ps[rows[0]].n; /* rows are sorted longest first */
    for (int64_t b = 0; b < B; b++) L = (int64_t)ps[rows[b]].n > L ? (int64_t)ps[rows[b]].n : L;
    for (int64_t b = 0; b < B; b++) pad[b] = L - (int64_t)ps[rows[b]].n;
    /* Tokens per pass stay near prefill_chunk whatever the batch size. */
    int64_t chunk = m->opt.prefill_chunk / B;
    if (chunk < 1) chunk = 1;
    int32_t *ids = malloc((size_t)(B * (chunk < L ? chunk : L)) * sizeof *ids);
    if (!ids) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status st = lmc_decoder_cache_init(m->dec, cache, B, max_len);
    if (st == LMC_OK) st = lmc_kv_cache_reserve(cache, max_len);
    for (int64_t at = 0; st == LMC_OK && at < L; at += chunk) {
        if (lmc_cancel_requested(cancel)) {
            st = lmc_set_error(LMC_ERR_CANCELLED, "generation cancelled");
            break;
        }
        int64_t T = L - at < chunk ? L - at : chunk;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                int64_t i = at + t - pad[b]; /* index into the prompt; padding takes id 0 */
                ids[b * T + t] = i >= 0 ? ps[rows[b]].ids[i] : 0;
            }
        if (pool) pool->last_pass = at + T == L;
        st = forward_rows(m, cache, ids, pad, B, T, at + T == L ? logits : NULL, pool);
    }
    free(ids);
    return st;
}

static void metrics_finish(const lmc_model *m, lmc_batch_metrics *mt, size_t n, double t0) {
    mt->prompts = (int64_t)n;
    mt->seconds = lmc_now() - t0;
    mt->prompts_per_second = mt->seconds > 0 ? (double)n / mt->seconds : 0;
    mt->tokens_per_second = mt->seconds > 0 ? (double)mt->generated_tokens / mt->seconds : 0;
    mt->prefill_tokens_per_second = mt->prefill_seconds > 0 ? (double)mt->prompt_tokens / mt->prefill_seconds : 0;
    lmc_memory_stats ms = lmc_memory(m->dec->device); /* where the model computes */
    mt->peak_memory_bytes = ms.peak_bytes;
    mt->active_memory_bytes = ms.active_bytes;
}

static int64_t clamp_batch(int max_batch) { return max_batch > 0 ? max_batch : LMC_BATCH_DEFAULT_SIZE; }

/* A prefill-only job (classify, embed) over prepared prompts: sub-batches of
 * at most maxb rows in `order` (longest first). After each sub-batch, done()
 * gets every prompt of it (with its logits row when logits is set; pool
 * holds the sub-batch's vectors for embed); a prompt whose pass or done()
 * failed goes to failed() with the status, the error message set. Returns
 * LMC_ERR_CANCELLED once cancelled (the prompts not done fail with it),
 * else LMC_OK. */
typedef struct prefill_job {
    lmc_model *m;
    prompt *ps;
    const size_t *order;
    size_t n_run;
    int64_t maxb;
    lmc_cancel *cancel;
    float *logits;                     /* [maxb, V], or NULL */
    lmc_pool_acc *pool;                /* or NULL */
    const char *what;                  /* "classification", "embedding": for the cancel message */
    lmc_status (*done)(void *ctx, size_t index, int64_t row, const float *logits_row);
    void (*failed)(void *ctx, size_t index, lmc_status st);
    void *ctx;
} prefill_job;

static lmc_status prefill_each(const prefill_job *j, lmc_batch_metrics *mt) {
    int64_t V = j->m->dec->cfg.vocab_size;
    int64_t *pad = malloc((size_t)j->maxb * sizeof *pad);
    if (!pad) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status call = LMC_OK;
    for (size_t at = 0; at < j->n_run; at += (size_t)j->maxb) {
        const size_t *rows = j->order + at;
        int64_t B = j->n_run - at < (size_t)j->maxb ? (int64_t)(j->n_run - at) : j->maxb;
        double tp = lmc_now();
        lmc_kv_cache cache = {0};
        if (j->pool) {
            j->pool->B = B;
            memset(j->pool->sum, 0, (size_t)(B * j->pool->H) * sizeof *j->pool->sum);
        }
        lmc_status st = call == LMC_OK ? prefill_rows(j->m, j->ps, rows, B, (int64_t)j->ps[rows[0]].n, j->cancel, &cache, pad,
                                                      j->logits, j->pool)
                                       : call;
        lmc_kv_cache_free(&cache);
        mt->prefill_seconds += lmc_now() - tp;
        if (st == LMC_ERR_CANCELLED) call = st;
        for (int64_t b = 0; b < B; b++) {
            size_t i = rows[b];
            lmc_status sb = st == LMC_OK ? j->done(j->ctx, i, b, j->logits ? j->logits + b * V : NULL) : st;
            if (sb != LMC_OK) {
                if (sb == LMC_ERR_CANCELLED) lmc_set_error(LMC_ERR_CANCELLED, "%s cancelled", j->what);
                j->failed(j->ctx, i, sb);
                continue;
            }
            mt->prompt_tokens += (int64_t)j->ps[i].n;
            mt->padded_tokens += (int64_t)j->ps[rows[0]].n;
        }
    }
    free(pad);
    if (call != LMC_OK) return lmc_set_error(call, "%s cancelled", j->what);
    return LMC_OK;
}

/* --- classify ------------------------------------------------------------------- */

lmc_classify_options lmc_classify_options_default(void) {
    lmc_classify_options o;
    memset(&o, 0, sizeof o);
    o.sampler = lmc_sampler_config_default();
    o.sampler.temperature = 0;
    o.add_special_tokens = true;
    o.max_batch = LMC_BATCH_DEFAULT_SIZE;
    return o;
}

void lmc_classify_results_free(lmc_classify_result *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        lmc_tokenizer_free_text(r[i].text);
        free(r[i].logits);
        free(r[i].label_logprobs);
        free(r[i].error);
    }
    free(r);
}

/* Picks the token after prompt p from its logits row (modified in place). */
static lmc_status classify_one(lmc_model *m, const lmc_classify_options *opt, size_t index, const prompt *p,
                               float *row, lmc_classify_result *r) {
    int64_t V = m->dec->cfg.vocab_size;
    if (opt->return_logits) {
        if (!(r->logits = malloc((size_t)V * sizeof *r->logits))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        memcpy(r->logits, row, (size_t)V * sizeof *row);
        r->n_logits = V;
    }
    if (opt->n_labels) { /* before the sampler's penalty changes the row */
        double lse;
        LMC_CHECK(lmc_logprobs_scan(row, V, 0, &lse, NULL));
        if (!(r->label_logprobs = malloc((size_t)opt->n_labels * sizeof *r->label_logprobs)))
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        for (int k = 0; k < opt->n_labels; k++) r->label_logprobs[k] = (float)((double)row[opt->labels[k]] - lse);
    }
    lmc_sampler_config sc = opt->sampler;
    sc.seed += index;
    lmc_sampler *s;
    LMC_CHECK(lmc_sampler_create(&sc, &s));
    lmc_status st = lmc_sampler_sample(s, row, V, p->ids, p->n, &r->token_id, &r->logprob);
    lmc_sampler_free(s);
    if (st == LMC_OK) st = lmc_tokenizer_decode(m->tok, &r->token_id, 1, false, &r->text, NULL);
    return st;
}

typedef struct classify_ctx {
    lmc_model *m;
    const lmc_classify_options *opt;
    const prompt *ps;
    lmc_classify_result *res;
    lmc_batch_metrics *mt;
} classify_ctx;

static lmc_status classify_done(void *ctx, size_t i, int64_t row, const float *logits_row) {
    (void)row;
    classify_ctx *c = ctx;
    lmc_status st = classify_one(c->m, c->opt, i, &c->ps[i], (float *)logits_row, &c->res[i]);
    if (st == LMC_OK) c->mt->generated_tokens++;
    return st;
}

static void classify_failed(void *ctx, size_t i, lmc_status st) {
    classify_ctx *c = ctx;
    c->res[i].status = st;
    c->res[i].token_id = -1;
    c->res[i].error = strdup(lmc_last_error());
}

lmc_status lmc_classify(lmc_model *m, const lmc_batch_prompt *prompts, size_t n, const lmc_classify_options *opt_in,
                        lmc_classify_result **results, lmc_batch_metrics *metrics) {
    double t0 = lmc_now();
    lmc_classify_options opt = opt_in ? *opt_in : lmc_classify_options_default();
    if (metrics) memset(metrics, 0, sizeof *metrics);
    if (results) *results = NULL;
    LMC_CHECK(check_batch_args(m, "classify", prompts, n, opt.max_batch, &opt.sampler, results));
    if (opt.n_labels < 0 || (opt.n_labels && !opt.labels))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "classify: n_labels is %d with labels %s", opt.n_labels,
                             opt.labels ? "set" : "NULL");
    for (int k = 0; k < opt.n_labels; k++)
        if (opt.labels[k] < 0 || opt.labels[k] >= m->dec->cfg.vocab_size)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "classify: label %d (token id %d) is outside the vocabulary (0..%lld)",
                                 k, opt.labels[k], (long long)m->dec->cfg.vocab_size - 1);
    lmc_memory_reset_peak(LMC_CPU);
    lmc_batch_metrics mt = {0};
    prompt *ps;
    size_t *order, n_run;
    LMC_CHECK(prompts_prepare(m, prompts, n, opt.add_special_tokens, NULL, m->context_length, &ps, &order, &n_run));
    lmc_classify_result *res = calloc(n ? n : 1, sizeof *res);
    int64_t V = m->dec->cfg.vocab_size, maxb = clamp_batch(opt.max_batch);
    float *logits = malloc((size_t)(maxb * V) * sizeof *logits);
    if (!res || !logits) {
        free(res);
        free(logits);
        prompts_free(ps, n);
        free(order);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        res[i].token_id = -1;
        res[i].prompt_tokens = (int64_t)ps[i].n;
        res[i].status = ps[i].status;
        res[i].error = ps[i].error;
        ps[i].error = NULL;
    }
    classify_ctx cc = {m, &opt, ps, res, &mt};
    prefill_job job = {m, ps, order, n_run, maxb, opt.cancel, logits, NULL, "classification", classify_done, classify_failed, &cc};
    lmc_status st = prefill_each(&job, &mt);
    free(logits);
    prompts_free(ps, n);
    free(order);
    metrics_finish(m, &mt, n, t0);
    if (metrics) *metrics = mt;
    *results = res;
    return st;
}

/* --- embeddings ------------------------------------------------------------------ */

lmc_embed_options lmc_embed_options_default(void) {
    lmc_embed_options o;
    memset(&o, 0, sizeof o);
    o.pooling = LMC_POOLING_LAST;
    o.normalize = true;
    o.add_special_tokens = true;
    o.max_batch = LMC_BATCH_DEFAULT_SIZE;
    return o;
}

void lmc_embeddings_free(lmc_embedding *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].values);
        free(r[i].error);
    }
    free(r);
}

/* Row b's pooled vector, scaled to unit length when asked. */
static lmc_status pool_finish(const lmc_pool_acc *p, int64_t b, int64_t tokens, bool normalize, lmc_embedding *e) {
    if (!(e->values = malloc((size_t)p->H * sizeof *e->values))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    e->dim = p->H;
    double div = p->pooling == LMC_POOLING_MEAN ? (double)tokens : 1.0, norm = 0;
    for (int64_t j = 0; j < p->H; j++) {
        double v = p->sum[b * p->H + j] / div;
        norm += v * v;
    }
    double scale = normalize && norm > 0 ? 1.0 / (sqrt(norm) * div) : 1.0 / div;
    for (int64_t j = 0; j < p->H; j++) e->values[j] = (float)(p->sum[b * p->H + j] * scale);
    return LMC_OK;
}

typedef struct embed_ctx {
    const lmc_pool_acc *pool;
    const lmc_embed_options *opt;
    const prompt *ps;
    lmc_embedding *res;
} embed_ctx;

static lmc_status embed_done(void *ctx, size_t i, int64_t row, const float *logits_row) {
    (void)logits_row;
    embed_ctx *c = ctx;
    return pool_finish(c->pool, row, (int64_t)c->ps[i].n, c->opt->normalize, &c->res[i]);
}

static void embed_failed(void *ctx, size_t i, lmc_status st) {
    embed_ctx *c = ctx;
    c->res[i].status = st;
    c->res[i].error = strdup(lmc_last_error());
}

lmc_status lmc_embed(lmc_model *m, const lmc_batch_prompt *prompts, size_t n, const lmc_embed_options *opt_in,
                     lmc_embedding **results, lmc_batch_metrics *metrics) {
    double t0 = lmc_now();
    lmc_embed_options opt = opt_in ? *opt_in : lmc_embed_options_default();
    if (metrics) memset(metrics, 0, sizeof *metrics);
    if (results) *results = NULL;
    if (opt.pooling != LMC_POOLING_LAST && opt.pooling != LMC_POOLING_MEAN)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "embed: pooling must be LMC_POOLING_LAST or LMC_POOLING_MEAN, got %d",
                             (int)opt.pooling);
    lmc_sampler_config greedy = lmc_sampler_config_default();
    LMC_CHECK(check_batch_args(m, "embed", prompts, n, opt.max_batch, &greedy, results));
    lmc_memory_reset_peak(LMC_CPU);
    lmc_batch_metrics mt = {0};
    prompt *ps;
    size_t *order, n_run;
    LMC_CHECK(prompts_prepare(m, prompts, n, opt.add_special_tokens, NULL, m->context_length, &ps, &order, &n_run));
    int64_t H = m->dec->cfg.hidden_size, maxb = clamp_batch(opt.max_batch);
    lmc_embedding *res = calloc(n ? n : 1, sizeof *res);
    lmc_pool_acc pool = {.pooling = opt.pooling, .H = H, .sum = malloc((size_t)(maxb * H) * sizeof *pool.sum)};
    if (!res || !pool.sum) {
        free(res);
        free(pool.sum);
        prompts_free(ps, n);
        free(order);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        res[i].prompt_tokens = (int64_t)ps[i].n;
        res[i].status = ps[i].status;
        res[i].error = ps[i].error;
        ps[i].error = NULL;
    }
    embed_ctx ec = {&pool, &opt, ps, res};
    prefill_job job = {m, ps, order, n_run, maxb, opt.cancel, NULL, &pool, "embedding", embed_done, embed_failed, &ec};
    lmc_status st = prefill_each(&job, &mt);
    free(pool.sum);
    prompts_free(ps, n);
    free(order);
    metrics_finish(m, &mt, n, t0);
    if (metrics) *metrics = mt;
    *results = res;
    return st;
}

/* --- batch generate --------------------------------------------------------------- */

lmc_batch_options lmc_batch_options_default(void) {
    lmc_batch_options o;
    memset(&o, 0, sizeof o);
    o.gen = lmc_generate_options_default();
    o.max_batch = LMC_BATCH_DEFAULT_SIZE;
    return o;
}

void lmc_batch_results_free(lmc_batch_result *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].ids);
        free(r[i].text);
        free(r[i].error);
        free(r[i].logprobs);
        free(r[i].top_logprobs);
    }
    free(r);
}

/* One sequence of a running sub-batch. */
typedef struct seq {
    size_t index;             /* input index */
    lmc_batch_result *res;
    lmc_sampler *sampler;
    lmc_detokenizer *detok;
    int32_t *hist;            /* prompt + generated ids */
    size_t n_hist, n_prompt;
    size_t text_cap;
    bool done;
    lmc_json_state json;      /* JSON mode: where the reply stands */
} seq;

static lmc_status seq_append_text(seq *s, const char *t, size_t n) {
    return lmc_text_append(&s->res->text, &s->res->text_len, &s->text_cap, t, n);
}

/* Cuts the text at a stop string that ends after byte `from`; true when found. */
static bool seq_stop_string(seq *s, const lmc_generate_options *opt, size_t from) {
    size_t max = lmc_generate_max_stop_len(opt);
    size_t at = lmc_generate_find_stop(opt, s->res->text, from > max ? from - max : 0);
    if (at == SIZE_MAX) return false;
    s->res->text_len = at;
    s->res->text[at] = 0;
    return true;
}

/* Ends a sequence: releases held-back text (unless a stop string ended it). */
static void seq_finish(seq *s, const lmc_generate_options *opt, lmc_stop_reason why) {
    s->done = true;
    s->res->stop_reason = why;
    if (why == LMC_STOP_STRING) return;
    const char *rest;
    size_t len, before = s->res->text_len;
    if (lmc_detokenizer_flush(s->detok, &rest, &len) == LMC_OK && seq_append_text(s, rest, len) == LMC_OK &&
        seq_stop_string(s, opt, before))
        s->res->stop_reason = LMC_STOP_STRING;
}

/* Records an error (with its message) in a result. */
static void result_fail(lmc_batch_result *r, lmc_stop_reason why, lmc_status st, const char *msg) {
    r->stop_reason = why;
    r->status = st;
    free(r->error);
    r->error = strdup(msg);
}

/* Takes one token for s from its logits row, as lmc_stream_next does:
 * returns LMC_OK (s->done set when it stopped; *appended when the token
 * joined the output) or an error for s. */
static lmc_status seq_step(lmc_model *m, const lmc_generate_options *opt, seq *s, float *row, float *raw,
                           const lmc_token_bytes *json, int32_t *tok, bool *appended) {
    *appended = false;
    if ((int64_t)s->n_hist >= m->context_length) {
        seq_finish(s, opt, LMC_STOP_CONTEXT); /* prompt and generated tokens fill the context */
        return LMC_OK;
    }
    lmc_generate_prepare_logits(m, opt, json, &s->json, row, raw);
    LMC_CHECK(lmc_sampler_sample(s->sampler, row, m->dec->cfg.vocab_size, s->hist, s->n_hist, tok, NULL));
    if (!opt->ignore_eos && lmc_model_is_eos(m, *tok)) {
        seq_finish(s, opt, LMC_STOP_EOS);
        return LMC_OK;
    }
    if (lmc_generate_is_stop_token(opt, *tok)) {
        seq_finish(s, opt, LMC_STOP_TOKEN);
        return LMC_OK;
    }
    bool json_done;
    LMC_CHECK(lmc_generate_record(m, opt, raw, json, &s->json, *tok, s->n_hist - s->n_prompt, &s->res->logprobs,
                                  &s->res->top_logprobs, &json_done));
    s->hist[s->n_hist++] = *tok; /* hist has room for every token the context and max_tokens allow */
    *appended = true;
    const char *piece;
    size_t len, before = s->res->text_len;
    LMC_CHECK(lmc_detokenizer_feed(s->detok, *tok, &piece, &len));
    LMC_CHECK(seq_append_text(s, piece, len));
    if (seq_stop_string(s, opt, before)) seq_finish(s, opt, LMC_STOP_STRING);
    else if (json_done) seq_finish(s, opt, LMC_STOP_EOS); /* the object is whole */
    else if ((int)(s->n_hist - s->n_prompt) >= opt->max_tokens) seq_finish(s, opt, LMC_STOP_MAX_TOKENS);
    return LMC_OK;
}

/* Runs one sub-batch (rows: prompt indices, longest first) to the end.
 * Returns LMC_ERR_CANCELLED when cancelled, otherwise LMC_OK (failures are
 * recorded in the results). */
static lmc_status generate_rows(lmc_model *m, const lmc_batch_options *opt, const lmc_json_schema *schema, const prompt *ps,
                                const size_t *rows, int64_t B, lmc_batch_result *res, lmc_batch_metrics *mt) {
    const lmc_generate_options *g = &opt->gen;
    int64_t V = m->dec->cfg.vocab_size, L = (int64_t)ps[rows[0]].n, ctx = m->context_length;
    /* Key indices needed: a row's padding, then its prompt and what it may generate. */
    int64_t max_len = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = (int64_t)ps[rows[b]].n, end = n + g->max_tokens < ctx ? n + g->max_tokens : ctx;
        if (L - n + end > max_len) max_len = L - n + end;
    }
    seq *seqs = calloc((size_t)B, sizeof *seqs);
    seq **act = calloc((size_t)B, sizeof *act); /* the active sequences, by batch row */
    int64_t *pad = malloc((size_t)B * sizeof *pad);
    int32_t *next = malloc((size_t)B * sizeof *next), *keep_rows = malloc((size_t)B * sizeof *keep_rows);
    float *logits = malloc((size_t)(B * V) * sizeof *logits);
    float *raw = g->logprobs || g->top_logprobs ? malloc((size_t)V * sizeof *raw) : NULL;
    const lmc_token_bytes *json = g->json_object || g->json_schema ? lmc_model_token_bytes(m) : NULL;
    lmc_kv_cache cache = {0};
    lmc_status st = seqs && act && pad && next && keep_rows && logits && (raw || !(g->logprobs || g->top_logprobs))
                        ? LMC_OK
                        : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK && (g->json_object || g->json_schema) && !json) st = lmc_last_status();
    for (int64_t b = 0; seqs && b < B; b++) {
        seqs[b].index = rows[b];
        seqs[b].res = &res[rows[b]];
        seqs[b].n_prompt = seqs[b].n_hist = ps[rows[b]].n;
        lmc_json_init(&seqs[b].json, schema);
        res[rows[b]].n_top_logprobs = g->top_logprobs;
    }
    for (int64_t b = 0; st == LMC_OK && b < B; b++) {
        seq *s = &seqs[b];
        int64_t n = (int64_t)s->n_prompt, cap = n + g->max_tokens < ctx ? n + g->max_tokens : ctx;
        lmc_sampler_config sc = g->sampler;
        sc.seed += s->index;
        st = lmc_sampler_create(&sc, &s->sampler);
        if (st == LMC_OK) st = lmc_detokenizer_create(m->tok, true, &s->detok);
        if (st == LMC_OK && !(s->hist = malloc((size_t)cap * sizeof *s->hist)))
            st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        if (st == LMC_OK) {
            memcpy(s->hist, ps[rows[b]].ids, s->n_prompt * sizeof *s->hist);
            st = seq_append_text(s, "", 0);
        }
        act[b] = s;
    }
    int64_t A = B; /* active rows */
    if (st == LMC_OK && g->max_tokens == 0) {
        for (int64_t b = 0; b < B; b++) seq_finish(&seqs[b], g, LMC_STOP_MAX_TOKENS);
        A = 0;
    }
    if (st == LMC_OK && A > 0) {
        double tp = lmc_now();
        st = prefill_rows(m, ps, rows, B, max_len, g->cancel, &cache, pad, logits, NULL);
        mt->prefill_seconds += lmc_now() - tp;
        mt->padded_tokens += B * L;
    }
    bool cancel = st == LMC_ERR_CANCELLED;
    while (st == LMC_OK && A > 0 && !cancel) {
        if (lmc_cancel_requested(g->cancel)) {
            cancel = true;
            break;
        }
        /* One token per active row; rows that stop leave the batch. */
        int64_t kept = 0;
        for (int64_t r = 0; r < A; r++) {
            seq *s = act[r];
            bool appended;
            lmc_status ss = seq_step(m, g, s, logits + r * V, raw, json, &next[kept], &appended);
            if (ss != LMC_OK) {
                s->done = true;
                result_fail(s->res, LMC_STOP_ERROR, ss, lmc_last_error());
            }
            if (appended && opt->on_token && !opt->on_token(opt->user, s->index, s->hist[s->n_hist - 1])) cancel = true;
            if (!s->done) {
                act[kept] = s;
                pad[kept] = pad[r];
                keep_rows[kept] = (int32_t)r;
                kept++;
            }
        }
        if (kept > 0 && kept < A && !cancel) st = lmc_kv_cache_select_rows(&cache, keep_rows, kept);
        A = kept;
        if (st == LMC_OK && A > 0 && !cancel) st = forward_rows(m, &cache, next, pad, A, 1, logits, NULL);
    }
    /* Whatever still runs ends here: cancelled, or failed with the batch. */
    char why[512];
    snprintf(why, sizeof why, "%s", cancel ? "generation cancelled" : lmc_last_error());
    if (cancel) st = LMC_ERR_CANCELLED;
    for (int64_t b = 0; b < B; b++) {
        seq *s = seqs ? &seqs[b] : NULL;
        if (s && s->done) continue;
        if (s && s->detok) seq_finish(s, g, LMC_STOP_CANCELLED); /* keeps the text produced so far */
        result_fail(&res[rows[b]], cancel ? LMC_STOP_CANCELLED : LMC_STOP_ERROR, st, why);
    }
    for (int64_t b = 0; seqs && b < B; b++) {
        seq *s = &seqs[b];
        if (s->hist && s->n_hist > s->n_prompt) {
            size_t k = s->n_hist - s->n_prompt;
            if ((s->res->ids = malloc(k * sizeof *s->res->ids))) {
                memcpy(s->res->ids, s->hist + s->n_prompt, k * sizeof *s->res->ids);
                s->res->n_ids = k;
            }
            mt->generated_tokens += (int64_t)k;
        }
        if (s->res->status == LMC_OK || s->res->status == LMC_ERR_CANCELLED) mt->prompt_tokens += (int64_t)s->n_prompt;
        lmc_sampler_free(s->sampler);
        lmc_detokenizer_free(s->detok);
        free(s->hist);
    }
    lmc_kv_cache_free(&cache);
    free(seqs);
    free(act);
    free(pad);
    free(next);
    free(keep_rows);
    free(logits);
    free(raw);
    return cancel ? LMC_ERR_CANCELLED : LMC_OK;
}

lmc_status lmc_batch_generate(lmc_model *m, const lmc_batch_prompt *prompts, size_t n, const lmc_batch_options *opt_in,
                              lmc_batch_result **results, lmc_batch_metrics *metrics) {
    double t0 = lmc_now();
    lmc_batch_options opt = opt_in ? *opt_in : lmc_batch_options_default();
    if (metrics) memset(metrics, 0, sizeof *metrics);
    if (results) *results = NULL;
    LMC_CHECK(check_batch_args(m, "batch generate", prompts, n, opt.max_batch, &opt.gen.sampler, results));
    LMC_CHECK(lmc_generate_check_options(&opt.gen));
    LMC_CHECK(lmc_generate_check_bias(&opt.gen, m->dec->cfg.vocab_size)); /* check_batch_args: a native model */
    if (opt.gen.on_token)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "batch: gen.on_token is not used; set lmc_batch_options.on_token");
    if (opt.gen.lookup_tokens)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                             "batch: lookup decoding is for one sequence at a time (gen.lookup_tokens must be 0)");
    /* prompts have no tools, so "none" holds as it does for lmc_generate; a forced call cannot */
    if (opt.gen.tool_choice && *opt.gen.tool_choice && strcmp(opt.gen.tool_choice, "auto") && strcmp(opt.gen.tool_choice, "none"))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                             "batch: prompts have no tools (gen.tool_choice must be NULL, \"auto\" or \"none\")");
    lmc_memory_reset_peak(LMC_CPU);
    lmc_batch_metrics mt = {0};
    prompt *ps;
    size_t *order, n_run;
    /* At least one position must be left for a generated token, as in lmc_generate. */
    LMC_CHECK(prompts_prepare(m, prompts, n, opt.gen.add_special_tokens, opt.gen.template_vars_json, m->context_length - 1, &ps,
                              &order, &n_run));
    /* compiled once for every sub-batch (lmc_generate_check_options has refused a bad one) */
    lmc_json_schema *schema = NULL;
    lmc_batch_result *res = calloc(n ? n : 1, sizeof *res);
    if (!res || (opt.gen.json_schema && lmc_json_schema_compile(opt.gen.json_schema, &schema) != LMC_OK)) {
        lmc_status st = res ? lmc_last_status() : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        free(res);
        prompts_free(ps, n);
        free(order);
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        res[i].prompt_tokens = (int64_t)ps[i].n;
        res[i].status = ps[i].status;
        res[i].error = ps[i].error;
        ps[i].error = NULL;
        if (ps[i].status != LMC_OK) res[i].stop_reason = LMC_STOP_ERROR;
    }
    int64_t maxb = clamp_batch(opt.max_batch);
    lmc_status call = LMC_OK;
    for (size_t at = 0; at < n_run; at += (size_t)maxb) {
        const size_t *rows = order + at;
        int64_t B = n_run - at < (size_t)maxb ? (int64_t)(n_run - at) : maxb;
        if (call == LMC_OK) {
            call = generate_rows(m, &opt, schema, ps, rows, B, res, &mt);
            continue;
        }
        /* Cancelled before this sub-batch began. */
        lmc_set_error(LMC_ERR_CANCELLED, "generation cancelled");
        for (int64_t b = 0; b < B; b++) {
            lmc_batch_result *r = &res[rows[b]];
            r->stop_reason = LMC_STOP_CANCELLED;
            r->status = LMC_ERR_CANCELLED;
            r->error = strdup(lmc_last_error());
        }
    }
    lmc_json_schema_free(schema);
    prompts_free(ps, n);
    free(order);
    metrics_finish(m, &mt, n, t0);
    if (metrics) *metrics = mt;
    *results = res;
    if (call != LMC_OK) return lmc_set_error(call, "generation cancelled");
    return LMC_OK;
}
