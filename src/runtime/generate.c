/* Generation: prefill in chunks, then sample → decode one token at a time.
 *
 * lmc_stream is the state machine; lmc_generate_ids drives it to the end and
 * calls the caller's callback, so the push and pull APIs share one loop.
 * Stop tokens and EOS ids are not part of the output; a stop string ends the
 * text just before it. Text that might be the start of a stop string is held
 * back until it is known not to be one.
 *
 * A backend with its own stream hooks (subprocess) does all that on its side:
 * here its events are only collected into the same lmc_stream (impl set). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/chat_template.h"
#include "io/json_util.h"
#include "lmc/ops.h"
#include "runtime/json_constraint.h"
#include "runtime/model_internal.h"
#include "runtime/sampler.h"
#include "runtime/tool_calls.h"

struct lmc_stream {
    lmc_model *m;
    lmc_generate_options opt;
    lmc_kv_cache cache;
    lmc_sampler *sampler;
    lmc_detokenizer *detok;
    int32_t *hist;            /* prompt + generated ids; the cache holds hist[0, cache.pos) */
    size_t n_hist, cap_hist, n_prompt;
    size_t n_cached;          /* prompt ids whose keys and values came from the prompt cache */
    bool cache_broken;        /* a forward pass failed: the cache may be half-updated */
    float *logits;            /* next-token logits [V] */
    float *raw;               /* [V] their copy before the sampler changes them (logprobs only) */
    const lmc_token_bytes *json_tokens; /* JSON mode: the model's token texts ... */
    lmc_json_schema *schema;  /* ... the compiled json_schema, if any ... */
    lmc_json_state json;      /* ... and where the reply stands */
    /* Lookup decoding: drafts whose keys and values follow the last
     * sampled token in the cache, and the logits after each; pend[at..n)
     * are still unconfirmed. Invariant after each step: cache.pos ==
     * (tokens in the cache from hist) + (n_pend - pend_at). */
    int32_t pend[LMC_LOOKUP_MAX];
    float *pend_logits;       /* [LMC_LOOKUP_MAX][V], with opt.lookup_tokens */
    int n_pend, pend_at;
    char *text;               /* all generated text so far */
    size_t text_len, text_cap, emitted;
    size_t max_stop_len;
    lmc_generation result;
    double t_start, t_prefill, t_first;
    bool prefilled, done;
    char *piece;              /* what the last next() returned */
    size_t piece_cap;
    const lmc_backend *be;    /* the backend, when it has its own streams ... */
    void *impl;               /* ... and its stream */
};

static lmc_status backend_start(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt, lmc_stream **out);

/* --- the prompt cache (lmc/model.h) --------------------------------------------------
 * Base weights never change, so the keys and values a generation leaves in
 * its cache stay right for the same ids at the same positions: the next
 * stream takes the cache, cuts it back to the longest common prefix with its
 * prompt, and prefills only the rest. */

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static void slot_free(lmc_prompt_slot *sl) {
    lmc_kv_cache_free(&sl->kv);
    free(sl->ids);
    memset(sl, 0, sizeof *sl);
}

/* Sets up s->cache: a slot of the model's prompt cache when one may be used
 * (s->n_cached set to the positions kept), else a new empty cache. */
static lmc_status borrow_prompt_cache(lmc_stream *s, const int32_t *ids, size_t n) {
    lmc_model *m = s->m;
    if (s->opt.prompt_cache) {
        pthread_mutex_lock(&m->prompt_lock);
        if (!m->lora) {
            /* the slot sharing the longest prefix (the most recent of equals),
             * and the least recently used one; every slot full or not */
            int best = -1, lru = -1, used = 0;
            size_t best_keep = 0;
            for (int i = 0; i < m->n_prompt_slots; i++) {
                lmc_prompt_slot *sl = &m->prompt_slots[i];
                if (!sl->ids) continue;
                used++;
                /* at least the last prompt token is computed: its logits come next */
                size_t keep = common_prefix(ids, n - 1, sl->ids, sl->n);
                if (best < 0 || keep > best_keep || (keep == best_keep && sl->used > m->prompt_slots[best].used))
                    best = i, best_keep = keep;
                if (lru < 0 || sl->used < m->prompt_slots[lru].used) lru = i;
            }
            /* Nothing shared: keep the other conversations' slots, unless they
             * are all full (the one evicted next lends its memory). */
            if (best >= 0 && best_keep == 0) best = used == m->n_prompt_slots ? lru : -1;
            if (best >= 0) {
                lmc_prompt_slot *sl = &m->prompt_slots[best];
                s->cache = sl->kv;
                free(sl->ids);
                memset(sl, 0, sizeof *sl);
                if (lmc_kv_cache_can_truncate(&s->cache, (int64_t)best_keep)) {
                    lmc_kv_cache_truncate(&s->cache, (int64_t)best_keep);
                    s->n_cached = best_keep;
                } else {
                    lmc_kv_cache_reset(&s->cache);
                }
            }
        }
        pthread_mutex_unlock(&m->prompt_lock);
        if (s->cache.layers) return LMC_OK;
    }
    return lmc_decoder_cache_init(m->dec, &s->cache, 1, m->context_length);
}

/* Leaves s's cache with the model for a later generation (when it is whole
 * and may be reused): in a free slot, or in place of the least recently
 * used one; s keeps nothing. */
static void return_prompt_cache(lmc_stream *s) {
    lmc_model *m = s->m;
    if (!s->cache.layers || s->cache_broken || !s->opt.prompt_cache || s->cache.pos == 0 ||
        (size_t)s->cache.pos > s->n_hist)
        return;
    size_t n = (size_t)s->cache.pos;
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return;
    memcpy(ids, s->hist, n * sizeof *ids);
    pthread_mutex_lock(&m->prompt_lock);
    if (m->lora || !m->be) {
        free(ids);
    } else {
        int at = 0;
        for (int i = 0; i < m->n_prompt_slots; i++) {
            if (!m->prompt_slots[i].ids) {
                at = i;
                break;
            }
            if (m->prompt_slots[i].used < m->prompt_slots[at].used) at = i;
        }
        lmc_prompt_slot *sl = &m->prompt_slots[at];
        slot_free(sl);
        sl->kv = s->cache;
        sl->ids = ids;
        sl->n = n;
        sl->used = ++m->prompt_clock;
        memset(&s->cache, 0, sizeof s->cache);
    }
    pthread_mutex_unlock(&m->prompt_lock);
}

void lmc_model_clear_prompt_cache(lmc_model *m) {
    if (!m) return;
    pthread_mutex_lock(&m->prompt_lock);
    for (int i = 0; i < m->n_prompt_slots; i++) slot_free(&m->prompt_slots[i]);
    pthread_mutex_unlock(&m->prompt_lock);
}

const char *lmc_stop_reason_name(lmc_stop_reason r);

lmc_generate_options lmc_generate_options_default(void) {
    lmc_generate_options o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 256;
    o.sampler = lmc_sampler_config_default();
    o.add_special_tokens = true;
    o.prompt_cache = true;
    return o;
}

void lmc_cancel_request(lmc_cancel *c) {
    if (c) __atomic_store_n(&c->flag, 1, __ATOMIC_RELEASE);
}

bool lmc_cancel_requested(const lmc_cancel *c) { return c && __atomic_load_n(&c->flag, __ATOMIC_ACQUIRE); }

static bool cancelled(const lmc_stream *s) { return lmc_cancel_requested(s->opt.cancel); }

void lmc_generation_clear(lmc_generation *g) {
    if (!g) return;
    free(g->ids);
    free(g->text);
    free(g->logprobs);
    free(g->top_logprobs);
    memset(g, 0, sizeof *g);
}

static lmc_status push_id(lmc_stream *s, int32_t id) {
    if (s->n_hist == s->cap_hist) {
        size_t cap = s->cap_hist ? s->cap_hist * 2 : 256;
        int32_t *h = realloc(s->hist, cap * sizeof *h);
        if (!h) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        s->hist = h;
        s->cap_hist = cap;
    }
    s->hist[s->n_hist++] = id;
    return LMC_OK;
}

lmc_status lmc_text_append(char **text, size_t *len, size_t *cap, const char *t, size_t n) {
    lmc_strbuf b = {*text, *len, *cap, false}; /* the text lives in public result fields */
    lmc_strbuf_append(&b, t, n);
    *text = b.data;
    *len = b.len;
    *cap = b.cap;
    return b.failed ? lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory") : LMC_OK;
}

static lmc_status append_text(lmc_stream *s, const char *t, size_t n) {
    return lmc_text_append(&s->text, &s->text_len, &s->text_cap, t, n);
}

/* Sets the piece returned to the caller to text[emitted, upto). */
static lmc_status emit_upto(lmc_stream *s, size_t upto) {
    size_t n = upto > s->emitted ? upto - s->emitted : 0;
    if (n + 1 > s->piece_cap) {
        char *p = realloc(s->piece, n + 1);
        if (!p) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        s->piece = p;
        s->piece_cap = n + 1;
    }
    if (n) memcpy(s->piece, s->text + s->emitted, n);
    s->piece[n] = 0;
    if (upto > s->emitted) s->emitted = upto;
    return LMC_OK;
}

size_t lmc_generate_find_stop(const lmc_generate_options *opt, const char *text, size_t from) {
    size_t best = SIZE_MAX;
    for (int i = 0; i < opt->n_stop_strings; i++) {
        const char *stop = opt->stop_strings[i];
        if (!stop || !*stop) continue;
        const char *hit = strstr(text + from, stop);
        if (hit && (size_t)(hit - text) < best) best = (size_t)(hit - text);
    }
    return best;
}

size_t lmc_generate_max_stop_len(const lmc_generate_options *opt) {
    size_t max = 0;
    for (int i = 0; i < opt->n_stop_strings; i++) {
        size_t l = opt->stop_strings[i] ? strlen(opt->stop_strings[i]) : 0;
        if (l > max) max = l;
    }
    return max;
}

/* Looks for a stop string in the new text; returns true (and cuts the text) when found. */
static bool find_stop_string(lmc_stream *s) {
    size_t from = s->emitted > s->max_stop_len ? s->emitted - s->max_stop_len : 0;
    size_t best = lmc_generate_find_stop(&s->opt, s->text, from);
    if (best == SIZE_MAX) return false;
    s->text_len = best;
    s->text[best] = 0;
    return true;
}

/* How many trailing bytes of text could begin a stop string. */
static size_t held_back(const lmc_stream *s) {
    size_t hold = 0;
    for (int i = 0; i < s->opt.n_stop_strings; i++) {
        const char *stop = s->opt.stop_strings[i];
        size_t sl = stop ? strlen(stop) : 0;
        for (size_t k = sl ? sl - 1 : 0; k > hold; k--)
            if (k <= s->text_len && !memcmp(s->text + s->text_len - k, stop, k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* A forward pass of ids through the cache; with want_logits, s->logits gets
 * the logits after the last id, or, with rest (lookup drafts), after the
 * first, and rest[n - 1][V] those after each of the others. */
static lmc_status forward_ids(lmc_stream *s, const int32_t *ids, int64_t n, bool want_logits, float *rest) {
    int64_t shape[2] = {1, n}, V = s->m->dec->cfg.vocab_size;
    lmc_status st = LMC_OK;
    lmc_scope_begin();
    lmc_array *idc = lmc_array_from_data(ids, LMC_I32, 2, shape);
    /* a chunk whose logits nobody reads skips the lm_head */
    lmc_forward_args args = {.last_only = rest == NULL, .hidden = !want_logits && !rest};
    lmc_array *lg = lmc_decoder_forward(s->m->dec, &s->cache, idc, &args);
    if (!lg) st = lmc_last_status();
    else if (!rest && want_logits) st = lmc_array_read(lg, LMC_F32, s->logits, (size_t)V);
    else if (rest && (st = lmc_array_read(lmc_slice(lg, 1, 0, 1, 1), LMC_F32, s->logits, (size_t)V)) == LMC_OK)
        st = lmc_array_read(lmc_slice(lg, 1, 1, n, 1), LMC_F32, rest, (size_t)((n - 1) * V));
    lmc_scope_end();
    if (st != LMC_OK) s->cache_broken = true;
    return st;
}

/* Drafts for lookup decoding: the tokens after the latest earlier
 * occurrence of the history's last two, at most kmax. */
static int lookup_draft(const lmc_stream *s, int32_t *out, int kmax) {
    const int32_t *h = s->hist;
    size_t n = s->n_hist;
    if (n < 3 || kmax <= 0) return 0;
    for (size_t i = n - 2; i-- > 0;)
        if (h[i] == h[n - 2] && h[i + 1] == h[n - 1]) {
            int k = 0;
            while (k < kmax && i + 2 + (size_t)k < n) out[k] = h[i + 2 + (size_t)k], k++;
            return k;
        }
    return 0;
}

/* Drops the unconfirmed drafts' keys and values from the cache. */
static lmc_status drop_drafts(lmc_stream *s) {
    int left = s->n_pend - s->pend_at;
    s->n_pend = s->pend_at = 0;
    if (left <= 0) return LMC_OK;
    lmc_status st = lmc_kv_cache_truncate(&s->cache, s->cache.pos - left);
    if (st != LMC_OK) s->cache_broken = true;
    return st;
}

/* Puts tok (just sampled and pushed to hist) in the cache and s->logits to
 * what follows it: the next draft's logits when tok is that draft, else a
 * forward pass of tok and, with lookup decoding, of new drafts after it. */
static lmc_status advance(lmc_stream *s, int32_t tok) {
    int64_t V = s->m->dec->cfg.vocab_size;
    if (s->pend_at < s->n_pend && s->pend[s->pend_at] == tok) {
        memcpy(s->logits, s->pend_logits + (size_t)s->pend_at * (size_t)V, (size_t)V * sizeof *s->logits);
        s->pend_at++;
        s->result.metrics.accepted_draft_tokens++;
        return LMC_OK;
    }
    LMC_CHECK(drop_drafts(s));
    int32_t ids[1 + LMC_LOOKUP_MAX] = {tok};
    /* drafts the reply could still take, inside the context */
    int kmax = s->opt.lookup_tokens;
    int64_t left = (int64_t)s->opt.max_tokens - (int64_t)s->result.n_ids - 1, room = s->m->context_length - s->cache.pos - 1;
    if (kmax > left) kmax = (int)left;
    if (kmax > room) kmax = (int)room;
    int k = lookup_draft(s, ids + 1, kmax);
    LMC_CHECK(forward_ids(s, ids, 1 + k, true, k ? s->pend_logits : NULL));
    memcpy(s->pend, ids + 1, (size_t)k * sizeof *ids);
    s->n_pend = k;
    s->pend_at = 0;
    s->result.metrics.draft_tokens += k;
    return LMC_OK;
}

static void finish(lmc_stream *s, lmc_stop_reason r) {
    s->done = true;
    /* keys and values past the history (drafts, or a draft equal to the
     * EOS that ended it) leave the cache before the prompt cache takes it */
    if (s->pend_logits && !s->cache_broken && s->cache.pos > (int64_t)s->n_hist &&
        lmc_kv_cache_truncate(&s->cache, (int64_t)s->n_hist) != LMC_OK)
        s->cache_broken = true;
    s->n_pend = s->pend_at = 0;
    s->result.stop_reason = r;
    double now = lmc_now();
    lmc_metrics *mt = &s->result.metrics;
    mt->prompt_tokens = (int64_t)s->n_prompt;
    mt->cached_prompt_tokens = (int64_t)s->n_cached;
    mt->generated_tokens = (int64_t)s->result.n_ids;
    mt->prefill_seconds = s->t_prefill - s->t_start;
    mt->prefill_tokens_per_second =
        mt->prefill_seconds > 0 ? (double)(s->n_prompt - s->n_cached) / mt->prefill_seconds : 0;
    mt->decode_seconds = s->t_first > 0 ? now - s->t_first : 0;
    mt->decode_tokens_per_second =
        mt->decode_seconds > 0 && s->result.n_ids > 1 ? (double)(s->result.n_ids - 1) / mt->decode_seconds : 0;
    mt->time_to_first_token = s->t_first > 0 ? s->t_first - s->t_start : 0;
    lmc_memory_stats ms = lmc_memory(s->m->dec ? s->m->dec->device : LMC_CPU); /* where the model computes */
    mt->peak_memory_bytes = ms.peak_bytes;
    mt->active_memory_bytes = ms.active_bytes;
}

lmc_status lmc_model_check_prompt(const lmc_model *m, const int32_t *ids, size_t n, int64_t max_len) {
    if (!ids || n == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "the prompt is empty (no token ids)");
    int64_t V = m->dec->cfg.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "prompt token id %d at index %zu is outside the vocabulary (0..%lld)",
                                 ids[i], i, (long long)V - 1);
    if ((int64_t)n > max_len)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "the prompt (%zu tokens) does not fit the context length %lld",
                             n, (long long)m->context_length);
    return LMC_OK;
}

/* --- tool_choice: a reply that is one call ---------------------------------------------
 * The call is forced as JSON mode forces an object: a schema for the call
 * ({"name", "arguments"} with the tool's parameters) and, around it, the
 * text the chat template teaches for a call (Qwen's <tool_call> tags), so
 * the reply reads as a call to lmc_model_tool_calls and the server. */

static bool forces_call(const char *choice) { return choice && *choice && strcmp(choice, "auto") && strcmp(choice, "none"); }

typedef struct tool_force {
    lmc_json_schema *schema; /* the call's schema, compiled */
    const char *pre, *post;  /* the template's text around a call (static) */
} tool_force;

/* The constraint for tool_choice `choice` ("required" or a tool's name) over
 * tools_json (a JSON array, already checked) in the template's convention f
 * (not LMC_TOOLS_NONE: rendering refused that). */
static lmc_status tool_force_build(lmc_tool_format f, const char *tools_json, const char *choice, tool_force *tf) {
    memset(tf, 0, sizeof *tf);
    cJSON *tools = cJSON_Parse(tools_json);
    if (!tools) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    bool any = !strcmp(choice, "required");
    const char *args = f == LMC_TOOLS_HERMES ? "arguments" : "parameters"; /* Llama 3.1 writes "parameters" */
    /* one {"name": {"const": NAME}, ARGS: the tool's parameters} per tool that may be called; several make a
     * tagged union, so the name read picks that tool's arguments */
    cJSON *alts = cJSON_CreateArray();
    int n = 0;
    for (const cJSON *t = tools->child; alts && t; t = t->next) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(name)) continue;
        if (!any && strcmp(name->valuestring, choice)) continue;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        cJSON *call = cJSON_CreateObject(), *props = cJSON_CreateObject(), *nm = cJSON_CreateObject();
        cJSON *params = cJSON_IsObject(p) ? cJSON_Duplicate(p, true) : cJSON_CreateObject();
        if (!cJSON_IsObject(p)) cJSON_AddStringToObject(params, "type", "object");
        cJSON_AddStringToObject(nm, "const", name->valuestring);
        cJSON_AddItemToObject(props, "name", nm);
        cJSON_AddItemToObject(props, args, params);
        cJSON_AddStringToObject(call, "type", "object");
        cJSON_AddItemToObject(call, "properties", props);
        cJSON *req = cJSON_AddArrayToObject(call, "required");
        cJSON_AddItemToArray(req, cJSON_CreateString("name"));
        cJSON_AddItemToArray(req, cJSON_CreateString(args));
        cJSON_AddFalseToObject(call, "additionalProperties");
        cJSON_AddItemToArray(alts, call);
        n++;
    }
    cJSON_Delete(tools);
    if (n == 0) {
        cJSON_Delete(alts);
        return any ? lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "tool_choice 'required': tools has no function with a name")
                   : lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "tool_choice: tools has no function named '%.64s'", choice);
    }
    cJSON *schema = n == 1 ? cJSON_DetachItemFromArray(alts, 0) : cJSON_CreateObject();
    if (n > 1) cJSON_AddItemToObject(schema, "anyOf", alts);
    else cJSON_Delete(alts);
    char *text = cJSON_PrintUnformatted(schema);
    cJSON_Delete(schema);
    lmc_status st = !text ? lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory")
                    : lmc_json_schema_compile(text, &tf->schema) != LMC_OK
                        ? lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "tool_choice '%.64s': the tools' parameters: %s", choice,
                                        lmc_last_error())
                        : LMC_OK;
    free(text);
    if (st == LMC_OK && f == LMC_TOOLS_HERMES) {
        tf->pre = "<tool_call>\n";
        tf->post = "\n</tool_call>";
    }
    return st;
}

lmc_status lmc_generate_check_options(const lmc_generate_options *opt) {
    if (opt->max_tokens < 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "max_tokens must be >= 0, got %d", opt->max_tokens);
    if (opt->n_stop_strings < 0 || opt->n_stop_tokens < 0 || (opt->n_stop_strings && !opt->stop_strings) ||
        (opt->n_stop_tokens && !opt->stop_tokens))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "stop strings/tokens: count and array disagree");
    if (opt->n_logit_bias < 0 || (opt->n_logit_bias && !opt->logit_bias))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logit_bias: count %d and array disagree", opt->n_logit_bias);
    for (int i = 0; i < opt->n_logit_bias; i++) {
        float b = opt->logit_bias[i].bias;
        if (isnan(b) || b == INFINITY)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logit_bias[%d]: the bias must be finite or -inf, got %g", i, (double)b);
    }
    if (opt->lookup_tokens < 0 || opt->lookup_tokens > LMC_LOOKUP_MAX)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lookup_tokens must be 0..%d, got %d", LMC_LOOKUP_MAX, opt->lookup_tokens);
    if (opt->top_logprobs < 0 || opt->top_logprobs > LMC_MAX_TOP_LOGPROBS)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "top_logprobs must be 0..%d, got %d", LMC_MAX_TOP_LOGPROBS,
                             opt->top_logprobs);
    if (forces_call(opt->tool_choice) && (opt->json_object || opt->json_schema))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                             "tool_choice '%.64s' forces a tool call: it cannot be combined with json_object or json_schema",
                             opt->tool_choice);
    if (opt->json_schema) { /* compiled here too, so that a bad schema fails the call before any work */
        lmc_json_schema *schema;
        LMC_CHECK(lmc_json_schema_compile(opt->json_schema, &schema));
        lmc_json_schema_free(schema);
    }
    return LMC_OK;
}

lmc_status lmc_generate_check_bias(const lmc_generate_options *opt, int64_t vocab) {
    for (int i = 0; i < opt->n_logit_bias; i++)
        if (opt->logit_bias[i].id < 0 || opt->logit_bias[i].id >= vocab)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logit_bias[%d]: token id %d is outside the vocabulary (0..%lld)", i,
                                 opt->logit_bias[i].id, (long long)vocab - 1);
    return LMC_OK;
}

void lmc_generate_prepare_logits(const lmc_model *m, const lmc_generate_options *opt, const lmc_token_bytes *json_tokens,
                                 const lmc_json_state *json, float *logits, float *raw) {
    int64_t V = m->dec->cfg.vocab_size;
    if (raw) memcpy(raw, logits, (size_t)V * sizeof *raw); /* log-probabilities are the model's own */
    for (int i = 0; i < opt->n_logit_bias; i++) logits[opt->logit_bias[i].id] += opt->logit_bias[i].bias;
    if (json_tokens) lmc_json_mask(json, json_tokens, m->eos, (size_t)m->n_eos, logits);
}

lmc_status lmc_generate_record(const lmc_model *m, const lmc_generate_options *opt, const float *raw,
                               const lmc_token_bytes *json_tokens, lmc_json_state *json, int32_t tok, size_t n, float **lp,
                               lmc_token_logprob **top, bool *closed) {
    *closed = false;
    if (raw) LMC_CHECK(lmc_logprobs_append(raw, m->dec->cfg.vocab_size, tok, opt->top_logprobs, n, lp, top));
    if (json_tokens) *closed = lmc_json_advance(json, json_tokens, tok) && lmc_json_done(json);
    return LMC_OK;
}

/* lmc_stream_start, with a forced tool call's constraint (tf, whose schema it takes) when tool_choice asks for one. */
static lmc_status stream_start(lmc_model *m, const int32_t *ids, size_t n, const lmc_generate_options *opt_in,
                               tool_force *tf, lmc_stream **out) {
    lmc_generate_options opt = opt_in ? *opt_in : lmc_generate_options_default();
    lmc_json_schema *call = tf ? tf->schema : NULL; /* taken: freed here or by the stream */
    if (tf) tf->schema = NULL;
    lmc_status st = !ids || n == 0 ? lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "the prompt is empty (no token ids)")
                                   : lmc_generate_check_options(&opt);
    if (st == LMC_OK && forces_call(opt.tool_choice) && !call)
        st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "tool_choice '%.64s' needs tools: a chat with tools (lmc_chat_json)",
                           opt.tool_choice);
    if (st == LMC_OK && m->be->stream_start) {
        lmc_json_schema_free(call); /* backend_start refuses a forced call */
        return backend_start(m, &(lmc_prompt){.ids = ids, .n_ids = n}, &opt, out);
    }
    /* At least one position must be left for a generated token. */
    if (st == LMC_OK) st = lmc_model_check_prompt(m, ids, n, m->context_length - 1);
    if (st == LMC_OK) st = lmc_generate_check_bias(&opt, m->dec->cfg.vocab_size);
    lmc_stream *s = st == LMC_OK ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        lmc_json_schema_free(call);
        return st == LMC_OK ? lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory") : st;
    }
    int64_t V = m->dec->cfg.vocab_size;
    s->schema = call;
    s->m = m;
    s->opt = opt;
    s->t_start = lmc_now();
    s->max_stop_len = lmc_generate_max_stop_len(&opt);
    st = lmc_sampler_create(&opt.sampler, &s->sampler);
    if (st == LMC_OK) st = lmc_detokenizer_create(m->tok, true, &s->detok);
    if (st == LMC_OK) st = borrow_prompt_cache(s, ids, n);
    if (st == LMC_OK && !(s->logits = malloc((size_t)V * sizeof *s->logits)))
        st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK && (opt.logprobs || opt.top_logprobs) && !(s->raw = malloc((size_t)V * sizeof *s->raw)))
        st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK && opt.lookup_tokens &&
        !(s->pend_logits = malloc((size_t)opt.lookup_tokens * (size_t)V * sizeof *s->pend_logits)))
        st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    s->result.n_top_logprobs = opt.top_logprobs;
    if (st == LMC_OK && opt.json_schema) st = lmc_json_schema_compile(opt.json_schema, &s->schema);
    lmc_json_init(&s->json, s->schema);
    if (call) lmc_json_wrap(&s->json, tf->pre, tf->post);
    if (st == LMC_OK && (opt.json_object || s->schema) && !(s->json_tokens = lmc_model_token_bytes(m)))
        st = lmc_last_status();
    for (size_t i = 0; st == LMC_OK && i < n; i++) st = push_id(s, ids[i]);
    if (st == LMC_OK) st = append_text(s, "", 0);
    if (st == LMC_OK) st = emit_upto(s, 0);
    if (st != LMC_OK) {
        lmc_stream_free(s);
        return st;
    }
    s->n_prompt = n;
    lmc_memory_reset_peak(LMC_CPU);
    *out = s;
    return LMC_OK;
}

lmc_status lmc_stream_start(lmc_model *m, const int32_t *ids, size_t n, const lmc_generate_options *opt,
                            lmc_stream **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_stream_start: out is NULL");
    *out = NULL;
    LMC_CHECK(lmc_model_check(m));
    return stream_start(m, ids, n, opt, NULL, out);
}

/* --- backends with their own streams ------------------------------------------------ */

static lmc_status backend_start(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt, lmc_stream **out) {
    if (opt->logprobs || opt->top_logprobs)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "logprobs: not supported by backend %s", m->be->name);
    if (opt->json_object || opt->json_schema || forces_call(opt->tool_choice))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "JSON mode: not supported by backend %s", m->be->name);
    if (opt->n_logit_bias) return lmc_set_error(LMC_ERR_UNSUPPORTED, "logit_bias: not supported by backend %s", m->be->name);
    if (opt->lookup_tokens)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "lookup decoding: not supported by backend %s", m->be->name);
    lmc_stream *s = calloc(1, sizeof *s);
    if (!s) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    s->m = m;
    s->opt = *opt;
    s->t_start = lmc_now();
    lmc_status st = append_text(s, "", 0);
    if (st == LMC_OK) st = emit_upto(s, 0);
    if (st == LMC_OK) st = m->be->stream_start(m, p, opt, &s->impl);
    if (st == LMC_OK) s->be = m->be;
    if (st != LMC_OK) {
        lmc_stream_free(s);
        return st;
    }
    *out = s;
    return LMC_OK;
}

/* lmc_stream_next for a backend stream: one event becomes one token (or the end). */
static lmc_status backend_next(lmc_stream *s, int32_t *id, const char **text, size_t *len, bool *done) {
    lmc_backend_event ev;
    memset(&ev, 0, sizeof ev);
    lmc_status st = s->be->stream_next(s->impl, &ev);
    if (st == LMC_OK && !ev.done) {
        if (s->result.n_ids == 0) s->t_first = lmc_now();
        int32_t *ids = realloc(s->result.ids, (s->result.n_ids + 1) * sizeof *ids);
        if (!ids) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        else {
            s->result.ids = ids;
            s->result.ids[s->result.n_ids++] = ev.id;
            *id = ev.id;
        }
    }
    if (st == LMC_OK) st = append_text(s, ev.text ? ev.text : "", ev.text ? ev.len : 0);
    if (st != LMC_OK) {
        finish(s, st == LMC_ERR_CANCELLED ? LMC_STOP_CANCELLED : LMC_STOP_ERROR);
        *done = true;
        return st;
    }
    if (ev.done) {
        double end = lmc_now();
        s->done = true;
        s->result.stop_reason = ev.stop_reason;
        lmc_metrics *mt = &s->result.metrics;
        *mt = ev.metrics; /* what the backend measured; timings as seen from here */
        mt->generated_tokens = (int64_t)s->result.n_ids;
        mt->time_to_first_token = s->t_first > 0 ? s->t_first - s->t_start : 0;
        if (mt->prefill_seconds <= 0) mt->prefill_seconds = mt->time_to_first_token;
        mt->prefill_tokens_per_second = mt->prefill_seconds > 0 ? (double)mt->prompt_tokens / mt->prefill_seconds : 0;
        mt->decode_seconds = s->t_first > 0 ? end - s->t_first : 0;
        mt->decode_tokens_per_second =
            mt->decode_seconds > 0 && s->result.n_ids > 1 ? (double)(s->result.n_ids - 1) / mt->decode_seconds : 0;
        *done = true;
    }
    if (emit_upto(s, s->text_len) != LMC_OK) return lmc_last_status();
    if (text) *text = s->piece;
    if (len) *len = strlen(s->piece);
    return LMC_OK;
}

/* Stops a generation before its end: a backend stream is told to cancel (and
 * confirms); the native loop simply is not called again. */
static lmc_status stop_early(lmc_stream *s) {
    return s->impl && !s->done ? s->be->stream_cancel(s->impl) : LMC_OK;
}

static lmc_status prefill(lmc_stream *s) {
    int64_t n = (int64_t)s->n_prompt, chunk = s->m->opt.prefill_chunk;
    /* Room for the prompt and the answer made once, so the cache is not
     * grown (and copied) as it runs. The answer's part is bounded: the
     * server's max_tokens is unlimited by default, a reservation of the
     * whole context would be real memory on a GPU, and a prompt-cache slot
     * keeps the storage after the answer; past it the cache grows by half.
     * Best effort: under a memory limit the cache grows as far as it gets. */
    int64_t ahead = s->opt.max_tokens < LMC_KV_RESERVE_AHEAD ? s->opt.max_tokens : LMC_KV_RESERVE_AHEAD;
    if (lmc_kv_cache_reserve(&s->cache, n + ahead) != LMC_OK) lmc_clear_error(); /* no stale error left behind */
    for (int64_t at = (int64_t)s->n_cached; at < n; at += chunk) {
        if (cancelled(s)) return LMC_ERR_CANCELLED;
        int64_t len = n - at < chunk ? n - at : chunk;
        LMC_CHECK(forward_ids(s, s->hist + at, len, at + len == n, NULL));
    }
    s->t_prefill = lmc_now();
    s->prefilled = true;
    return LMC_OK;
}

bool lmc_generate_is_stop_token(const lmc_generate_options *opt, int32_t id) {
    for (int i = 0; i < opt->n_stop_tokens; i++)
        if (opt->stop_tokens[i] == id) return true;
    return false;
}

lmc_status lmc_stream_next(lmc_stream *s, int32_t *id, const char **text, size_t *len, bool *done) {
    if (!s) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "stream is NULL");
    *id = -1;
    if (emit_upto(s, s->emitted) != LMC_OK) return lmc_last_status();
    if (text) *text = s->piece;
    if (len) *len = 0;
    *done = s->done;
    if (s->done) return LMC_OK;
    if (s->impl) return backend_next(s, id, text, len, done);
    lmc_status st = LMC_OK;
    if (s->opt.max_tokens == 0) {
        finish(s, LMC_STOP_MAX_TOKENS);
        *done = true;
        return LMC_OK;
    }
    if (!s->prefilled) st = prefill(s);
    if (st == LMC_OK && cancelled(s)) st = LMC_ERR_CANCELLED;
    if (st == LMC_OK && (int64_t)s->n_hist >= s->m->context_length) {
        /* Prompt and generated tokens fill the context: nothing more fits. */
        finish(s, LMC_STOP_CONTEXT);
        emit_upto(s, s->text_len);
        if (text) *text = s->piece;
        if (len) *len = strlen(s->piece);
        *done = true;
        return LMC_OK;
    }
    int32_t tok = -1;
    if (st == LMC_OK) lmc_generate_prepare_logits(s->m, &s->opt, s->json_tokens, &s->json, s->logits, s->raw);
    if (st == LMC_OK)
        st = lmc_sampler_sample(s->sampler, s->logits, s->m->dec->cfg.vocab_size, s->hist, s->n_hist, &tok, NULL);
    if (st == LMC_ERR_CANCELLED) {
        lmc_set_error(LMC_ERR_CANCELLED, "generation cancelled");
        finish(s, LMC_STOP_CANCELLED);
        emit_upto(s, s->text_len);
        *done = true;
        if (len) *len = strlen(s->piece);
        return LMC_ERR_CANCELLED;
    }
    if (st != LMC_OK) {
        finish(s, LMC_STOP_ERROR);
        *done = true;
        return st;
    }
    if (!s->opt.ignore_eos && lmc_model_is_eos(s->m, tok)) {
        finish(s, LMC_STOP_EOS);
    } else if (lmc_generate_is_stop_token(&s->opt, tok)) {
        finish(s, LMC_STOP_TOKEN);
    } else {
        if (s->result.n_ids == 0) s->t_first = lmc_now();
        bool json_done;
        if ((st = lmc_generate_record(s->m, &s->opt, s->raw, s->json_tokens, &s->json, tok, s->result.n_ids, &s->result.logprobs,
                                      &s->result.top_logprobs, &json_done)) != LMC_OK) {
            finish(s, LMC_STOP_ERROR);
            *done = true;
            return st;
        }
        int32_t *ids = realloc(s->result.ids, (s->result.n_ids + 1) * sizeof *ids);
        if (!ids || push_id(s, tok) != LMC_OK) {
            if (ids) s->result.ids = ids;
            finish(s, LMC_STOP_ERROR);
            *done = true;
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        }
        s->result.ids = ids;
        s->result.ids[s->result.n_ids++] = tok;
        *id = tok;
        const char *piece;
        size_t plen;
        st = lmc_detokenizer_feed(s->detok, tok, &piece, &plen);
        if (st == LMC_OK) st = append_text(s, piece, plen);
        if (st != LMC_OK) {
            finish(s, LMC_STOP_ERROR);
            *done = true;
            return st;
        }
        if (find_stop_string(s)) finish(s, LMC_STOP_STRING);
        else if (json_done) finish(s, LMC_STOP_EOS); /* the object is whole: nothing may follow it */
        else if ((int)s->result.n_ids >= s->opt.max_tokens) finish(s, LMC_STOP_MAX_TOKENS);
        else {
            st = s->pend_logits ? advance(s, tok) : forward_ids(s, &tok, 1, true, NULL);
            if (st != LMC_OK) {
                finish(s, LMC_STOP_ERROR);
                emit_upto(s, s->text_len);
                *done = false; /* the token itself was produced */
                return st;
            }
        }
    }
    if (s->done && s->result.stop_reason != LMC_STOP_STRING) {
        const char *rest;
        size_t rlen;
        if (lmc_detokenizer_flush(s->detok, &rest, &rlen) == LMC_OK) append_text(s, rest, rlen);
        if (find_stop_string(s)) s->result.stop_reason = LMC_STOP_STRING;
    }
    size_t upto = s->done ? s->text_len : s->text_len - held_back(s);
    if (emit_upto(s, upto) != LMC_OK) return lmc_last_status();
    if (text) *text = s->piece;
    if (len) *len = strlen(s->piece);
    /* The token that ended generation (EOS, stop token) is not reported as a token. */
    *done = s->done && *id < 0;
    return LMC_OK;
}

const lmc_generation *lmc_stream_result(const lmc_stream *s) {
    if (!s) return NULL;
    lmc_stream *w = (lmc_stream *)s;
    w->result.text = w->text;
    w->result.text_len = w->text_len;
    return &w->result;
}

void lmc_stream_free(lmc_stream *s) {
    if (!s) return;
    if (s->impl) s->be->stream_free(s->impl);
    else if (s->m) return_prompt_cache(s);
    lmc_kv_cache_free(&s->cache);
    lmc_sampler_free(s->sampler);
    lmc_detokenizer_free(s->detok);
    lmc_json_schema_free(s->schema);
    free(s->hist);
    free(s->logits);
    free(s->pend_logits);
    free(s->raw);
    free(s->text);
    free(s->result.ids);
    free(s->result.logprobs);
    free(s->result.top_logprobs);
    free(s->piece);
    free(s);
}

/* Runs a started stream to its end, calling the token callback; the result
 * moves into out and the stream is freed. */
static lmc_status drive(lmc_stream *s, lmc_generation *out) {
    lmc_status st = LMC_OK;
    for (;;) {
        int32_t id;
        const char *piece;
        size_t plen;
        bool done;
        st = lmc_stream_next(s, &id, &piece, &plen, &done);
        if ((id >= 0 || plen) && s->opt.on_token && !s->opt.on_token(s->opt.user, id, piece, plen)) {
            lmc_status cs = stop_early(s);
            if (!s->done) finish(s, cs == LMC_OK ? LMC_STOP_CANCELLED : LMC_STOP_ERROR);
            st = cs != LMC_OK ? cs : lmc_set_error(LMC_ERR_CANCELLED, "generation stopped by the token callback");
            break;
        }
        if (st != LMC_OK || done || s->done) {
            if (s->done && st == LMC_OK) {
                /* Deliver text released by the final step (flushes, held-back text). */
                lmc_stream_next(s, &id, &piece, &plen, &done);
                if (plen && s->opt.on_token) s->opt.on_token(s->opt.user, -1, piece, plen);
            }
            break;
        }
    }
    lmc_stream_result(s);
    *out = s->result;
    s->result.ids = NULL;
    s->result.logprobs = NULL;
    s->result.top_logprobs = NULL;
    s->text = NULL;
    lmc_stream_free(s);
    return st;
}

lmc_status lmc_generate_ids(lmc_model *m, const int32_t *ids, size_t n, const lmc_generate_options *opt,
                            lmc_generation *out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_generate: out is NULL");
    memset(out, 0, sizeof *out);
    lmc_stream *s;
    LMC_CHECK(lmc_stream_start(m, ids, n, opt, &s));
    return drive(s, out);
}

lmc_status lmc_generate(lmc_model *m, const char *prompt, const lmc_generate_options *opt, lmc_generation *out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_generate: out is NULL");
    memset(out, 0, sizeof *out);
    if (!prompt) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "prompt is NULL");
    lmc_stream *s;
    LMC_CHECK(lmc_stream_start_prompt(m, &(lmc_prompt){.text = prompt}, opt, &s));
    return drive(s, out);
}

lmc_status lmc_model_chat_ids(lmc_model *m, const lmc_message *msgs, size_t n, const char *vars_json, int32_t **ids,
                              size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!msgs || n == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: no messages");
    char *json;
    LMC_CHECK(lmc_json_messages(msgs, n, &json));
    lmc_status st = lmc_model_chat_json_ids(m, json, NULL, vars_json, ids, n_ids, NULL);
    free(json);
    return st;
}

lmc_status lmc_model_chat_json_ids(lmc_model *m, const char *messages_json, const char *tools_json, const char *vars_json,
                                   int32_t **ids, size_t *n_ids, lmc_tool_format *format) {
    *ids = NULL;
    *n_ids = 0;
    if (!messages_json) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: no messages");
    cJSON *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    if (tools_json && !cJSON_IsArray(tools)) {
        cJSON_Delete(tools);
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: tools must be a JSON array");
    }
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    if (vars_json && !cJSON_IsObject(vars)) {
        cJSON_Delete(vars);
        cJSON_Delete(tools);
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: template_vars_json must be a JSON object");
    }
    char *extra = NULL;
    if (tools || vars) { /* the template's extra variables: the caller's, and `tools` */
        cJSON *o = vars ? vars : cJSON_CreateObject();
        if (tools) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, "tools");
            cJSON_AddItemToObject(o, "tools", tools);
        }
        extra = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!extra) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    lmc_chat_template *tmpl = NULL;
    char *prompt = NULL;
    lmc_status st = lmc_chat_template_load(m->dir, &tmpl);
    lmc_tool_format f = st == LMC_OK ? lmc_tool_format_of(lmc_chat_template_source(tmpl)) : LMC_TOOLS_NONE;
    if (format) *format = f;
    if (st == LMC_OK && tools_json && f == LMC_TOOLS_NONE)
        st = lmc_set_error(LMC_ERR_UNSUPPORTED, "chat: this model's chat template does not render tools");
    if (st == LMC_OK) {
        lmc_chat_template_options co = lmc_chat_template_options_default();
        co.add_generation_prompt = true;
        co.extra_json = extra;
        st = lmc_chat_template_apply(tmpl, messages_json, &co, &prompt);
    }
    free(extra);
    /* The template already holds BOS and the like, as transformers' apply_chat_template assumes. */
    if (st == LMC_OK) st = lmc_tokenizer_encode(m->tok, prompt, strlen(prompt), false, ids, n_ids);
    free(prompt);
    lmc_chat_template_free(tmpl);
    return st;
}

/* The one place a text or chat prompt becomes a stream: lmc_generate,
 * lmc_chat and the server (src/server) all start here. */
lmc_status lmc_stream_start_prompt(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt_in,
                                   lmc_stream **out) {
    *out = NULL;
    LMC_CHECK(lmc_model_check(m));
    if (p->msgs) {
        if (p->n_msgs == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: no messages");
        for (size_t i = 0; i < p->n_msgs; i++)
            if (!p->msgs[i].role || !p->msgs[i].content)
                return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: message %zu has no role or content", i);
    }
    if (!p->msgs && !p->text && !p->messages_json) return stream_start(m, p->ids, p->n_ids, opt_in, NULL, out);
    lmc_generate_options opt = opt_in ? *opt_in : lmc_generate_options_default();
    /* tool_choice "none": the template is not offered the tools at all */
    const char *tools_json = opt.tool_choice && !strcmp(opt.tool_choice, "none") ? NULL : p->tools_json;
    if (m->be->stream_start) {
        if (p->tools_json || (!p->msgs && p->messages_json))
            return lmc_set_error(LMC_ERR_UNSUPPORTED, "chat with tools: not supported by backend %s", m->be->name);
        LMC_CHECK(lmc_generate_check_options(&opt));
        return backend_start(m, p, &opt, out);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_tool_format format = LMC_TOOLS_NONE;
    lmc_status st = p->messages_json ? lmc_model_chat_json_ids(m, p->messages_json, tools_json, opt.template_vars_json, &ids, &n,
                                                               &format)
                    : p->msgs        ? lmc_model_chat_ids(m, p->msgs, p->n_msgs, opt.template_vars_json, &ids, &n)
                                     : lmc_tokenizer_encode(m->tok, p->text, strlen(p->text), opt.add_special_tokens, &ids, &n);
    tool_force tf = {0};
    bool force = st == LMC_OK && tools_json && forces_call(opt.tool_choice);
    if (force) st = tool_force_build(format, tools_json, opt.tool_choice, &tf);
    if (st == LMC_OK) st = stream_start(m, ids, n, &opt, force ? &tf : NULL, out);
    lmc_json_schema_free(tf.schema);
    lmc_tokenizer_free_ids(ids);
    return st;
}

lmc_status lmc_chat_json(lmc_model *m, const char *messages_json, const char *tools_json, const lmc_generate_options *opt,
                         lmc_generation *out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_chat_json: out is NULL");
    memset(out, 0, sizeof *out);
    if (!messages_json) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: no messages");
    lmc_stream *s;
    LMC_CHECK(lmc_stream_start_prompt(m, &(lmc_prompt){.messages_json = messages_json, .tools_json = tools_json}, opt, &s));
    return drive(s, out);
}

lmc_status lmc_chat(lmc_model *m, const lmc_message *msgs, size_t n, const lmc_generate_options *opt,
                    lmc_generation *out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_chat: out is NULL");
    memset(out, 0, sizeof *out);
    if (!msgs || n == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat: no messages");
    lmc_stream *s;
    LMC_CHECK(lmc_stream_start_prompt(m, &(lmc_prompt){.msgs = msgs, .n_msgs = n}, opt, &s));
    return drive(s, out);
}
