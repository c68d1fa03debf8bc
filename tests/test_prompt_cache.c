/* The prompt cache (lmc/model.h): a generation reuses the keys and values
 * of the previous one for the longest common prefix of its prompt. Every
 * result is compared with the same request on a second copy of the model
 * that computes its prompts in full (prompt_cache off), so a cache cut at
 * the wrong place, a stale position or a sliding layer missing keys shows up
 * as different tokens; cached_prompt_tokens shows how much was reused. */
#include <pthread.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

static int32_t g_prompt[] = {785, 1251, 304, 279, 1879, 686, 1477, 264, 501, 1616}; /* ids < 2048 */
enum { NPROMPT = sizeof g_prompt / sizeof *g_prompt, MAXP = 1024 };

typedef struct pair {
    char *dir;
    lmc_model *cached, *fresh; /* the same checkpoint twice */
} pair;

static void pair_close(pair *p) {
    lmc_model_free(p->cached);
    lmc_model_free(p->fresh);
    model_fixture_cleanup(p->dir);
}

/* Loads the fixture twice (the cached copy with `slots` prompt-cache slots);
 * on failure records it, cleans up and returns false. */
static bool pair_open_slots(pair *p, const char *name, int slots) {
    memset(p, 0, sizeof *p);
    p->dir = model_fixture_dir(name);
    lmc_load_options o = lmc_load_options_default();
    o.prompt_cache_slots = slots;
    bool ok = p->dir && lmc_model_load(p->dir, &o, &p->cached) == LMC_OK &&
              lmc_model_load(p->dir, NULL, &p->fresh) == LMC_OK;
    CHECKF(ok, "load %s: %s", name, lmc_last_error());
    if (!ok) pair_close(p);
    return ok;
}

static lmc_generate_options greedy(int max_tokens) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.ignore_eos = true;
    o.max_tokens = max_tokens;
    return o;
}

static bool pair_open(pair *p, const char *name) { return pair_open_slots(p, name, 1); }

/* Generates ids on p->cached (prompt cache on) and on p->fresh (off), checks
 * that both give the same tokens and returns the cached run's reuse count
 * (-1 on a failed call). The generated ids go to gen (if not NULL). */
static int64_t run_both(pair *p, const int32_t *ids, size_t n, int max_tokens, int32_t *gen, size_t *n_gen) {
    lmc_generate_options o = greedy(max_tokens);
    lmc_generation a, b;
    if (lmc_generate_ids(p->cached, ids, n, &o, &a) != LMC_OK) {
        fprintf(stderr, "cached run: %s\n", lmc_last_error());
        return -1;
    }
    o.prompt_cache = false;
    if (lmc_generate_ids(p->fresh, ids, n, &o, &b) != LMC_OK) {
        fprintf(stderr, "fresh run: %s\n", lmc_last_error());
        lmc_generation_clear(&a);
        return -1;
    }
    CHECKF(a.n_ids == b.n_ids && !memcmp(a.ids, b.ids, a.n_ids * sizeof *a.ids),
           "prompt of %zu: %zu tokens with the cache, %zu without, or they differ", n, a.n_ids, b.n_ids);
    CHECK(b.metrics.cached_prompt_tokens == 0);
    CHECK(a.metrics.prompt_tokens == (int64_t)n);
    if (gen) {
        memcpy(gen, a.ids, a.n_ids * sizeof *gen);
        *n_gen = a.n_ids;
    }
    int64_t reused = a.metrics.cached_prompt_tokens;
    lmc_generation_clear(&a);
    lmc_generation_clear(&b);
    return reused;
}

/* A conversation-like sequence of requests on a full-attention model. */
static void test_prefix_reuse(void) {
    pair p;
    if (!pair_open(&p, "qwen3")) return;
    int32_t ids[MAXP], gen[MAXP];
    size_t n = NPROMPT, ng = 0;
    memcpy(ids, g_prompt, sizeof g_prompt);
    CHECK(run_both(&p, ids, n, 12, gen, &ng) == 0); /* nothing cached yet */
    CHECK(ng == 12);
    /* The next turn: prompt + reply + 3 new ids. The cache holds every id
     * fed to the model: the prompt and all replies but the last. */
    memcpy(ids + n, gen, ng * sizeof *ids);
    n += ng;
    int32_t more[3] = {1879, 686, 264};
    memcpy(ids + n, more, sizeof more);
    n += 3;
    CHECK(run_both(&p, ids, n, 10, gen, &ng) == NPROMPT + 12 - 1);
    /* Diverging at index 5: only the first 5 positions are kept. */
    size_t n2 = 8;
    int32_t other[8];
    memcpy(other, g_prompt, sizeof other);
    other[5] = 42;
    CHECK(run_both(&p, other, n2, 6, NULL, NULL) == 5);
    /* The same prompt again: all but its last token (whose logits are needed). */
    CHECK(run_both(&p, other, n2, 6, NULL, NULL) == (int64_t)n2 - 1);
    /* A prefix of what is cached. */
    CHECK(run_both(&p, other, 3, 6, NULL, NULL) == 2);
    /* prompt_cache off neither uses nor changes the model's cache. */
    lmc_generate_options o = greedy(4);
    o.prompt_cache = false;
    lmc_generation out;
    CHECK(lmc_generate_ids(p.cached, other, n2, &o, &out) == LMC_OK);
    CHECK(out.metrics.cached_prompt_tokens == 0);
    lmc_generation_clear(&out);
    CHECK(run_both(&p, other, n2, 6, NULL, NULL) == 3); /* what the 3-token request left */
    /* Clearing frees the cache's memory. */
    size_t before = lmc_memory(LMC_CPU).active_bytes;
    lmc_model_clear_prompt_cache(p.cached);
    size_t after = lmc_memory(LMC_CPU).active_bytes;
    CHECKF(after < before, "active bytes %zu -> %zu", before, after);
    CHECK(run_both(&p, other, n2, 6, NULL, NULL) == 0);
    lmc_model_clear_prompt_cache(NULL); /* harmless */
    pair_close(&p);
}

/* Gemma 3's golden model: six sliding layers (window 16) and a full one.
 * Rewinding works while the sliding layers still hold the window before the
 * cut; after a long generation they have dropped old positions, and a
 * request that needs them starts afresh. */
static void test_sliding_window(void) {
    pair p;
    if (!pair_open(&p, "gemma3")) return;
    int32_t ids[MAXP], gen[MAXP];
    size_t ng = 0;
    CHECK(run_both(&p, g_prompt, NPROMPT, 20, NULL, NULL) == 0);
    int32_t other[NPROMPT];
    memcpy(other, g_prompt, sizeof other);
    other[7] = 9;
    CHECK(run_both(&p, other, NPROMPT, 20, NULL, NULL) == 7); /* a rewind within the window */
    /* 300 more tokens: the sliding layers outgrow their first storage (256
     * positions) and drop what no query can see any more. */
    CHECK(run_both(&p, g_prompt, NPROMPT, 300, gen, &ng) == 7);
    CHECK(ng == 300);
    CHECK(run_both(&p, other, NPROMPT, 8, NULL, NULL) == 0); /* position 7 is gone: computed afresh */
    /* Continuing the long conversation needs no rewind past what is held. */
    CHECK(run_both(&p, g_prompt, NPROMPT, 300, gen, &ng) == 7); /* the cache held `other`'s short run */
    memcpy(ids, g_prompt, sizeof g_prompt);
    memcpy(ids + NPROMPT, gen, ng * sizeof *ids);
    size_t n = NPROMPT + ng;
    ids[n++] = 501;
    CHECK(run_both(&p, ids, n, 8, NULL, NULL) == NPROMPT + 300 - 1);
    pair_close(&p);
}

static bool stop_after_3(void *user, int32_t id, const char *text, size_t len) {
    (void)text;
    (void)len;
    int *count = user;
    return id < 0 || ++*count < 3;
}

/* A generation stopped by its callback or cancelled during the prefill
 * leaves a cache that matches the ids it holds. */
static void test_stopped_generations(void) {
    pair p;
    if (!pair_open(&p, "qwen3")) return;
    lmc_generate_options o = greedy(50);
    int count = 0;
    o.on_token = stop_after_3;
    o.user = &count;
    lmc_generation out;
    CHECK(lmc_generate_ids(p.cached, g_prompt, NPROMPT, &o, &out) == LMC_ERR_CANCELLED);
    CHECK(out.n_ids == 3 && out.stop_reason == LMC_STOP_CANCELLED);
    int32_t ids[MAXP];
    memcpy(ids, g_prompt, sizeof g_prompt);
    memcpy(ids + NPROMPT, out.ids, 3 * sizeof *ids);
    lmc_generation_clear(&out);
    ids[NPROMPT + 3] = 77;
    /* the third token was fed before the callback saw it */
    CHECK(run_both(&p, ids, NPROMPT + 4, 6, NULL, NULL) == NPROMPT + 3);
    /* Cancelled before the prefill starts: the cache keeps the prefix it had. */
    lmc_cancel cancel = {0};
    lmc_cancel_request(&cancel);
    o = greedy(5);
    o.cancel = &cancel;
    int32_t longer[MAXP];
    memcpy(longer, ids, (NPROMPT + 4) * sizeof *ids);
    for (int i = 0; i < 100; i++) longer[NPROMPT + 4 + i] = 300 + i;
    CHECK(lmc_generate_ids(p.cached, longer, NPROMPT + 104, &o, &out) == LMC_ERR_CANCELLED);
    lmc_generation_clear(&out);
    CHECK(run_both(&p, longer, NPROMPT + 104, 6, NULL, NULL) == NPROMPT + 4);
    pair_close(&p);
}

/* Two streams at once: one borrows the cache, the other runs without it;
 * both are right, and the model keeps the cache of the one freed last. */
static void test_two_streams(void) {
    pair p;
    if (!pair_open(&p, "qwen3")) return;
    CHECK(run_both(&p, g_prompt, NPROMPT, 4, NULL, NULL) == 0);
    lmc_generate_options o = greedy(6);
    lmc_stream *s1 = NULL, *s2 = NULL;
    CHECK(lmc_stream_start(p.cached, g_prompt, NPROMPT, &o, &s1) == LMC_OK);
    CHECK(lmc_stream_start(p.cached, g_prompt, NPROMPT, &o, &s2) == LMC_OK);
    int32_t got[2][8];
    int n[2] = {0, 0};
    lmc_stream *s[2] = {s1, s2};
    for (int k = 0; k < 2; k++) {
        bool done = false;
        while (!done && n[k] < 8) {
            int32_t id;
            if (lmc_stream_next(s[k], &id, NULL, NULL, &done) != LMC_OK) break;
            if (id >= 0) got[k][n[k]++] = id;
        }
    }
    CHECKF(n[0] == 6 && n[1] == 6 && !memcmp(got[0], got[1], 6 * sizeof *got[0]), "%d and %d tokens", n[0], n[1]);
    CHECK(lmc_stream_result(s1)->metrics.cached_prompt_tokens == NPROMPT - 1);
    CHECK(lmc_stream_result(s2)->metrics.cached_prompt_tokens == 0);
    lmc_stream_free(s1);
    lmc_stream_free(s2);
    /* s2 went last: its cache holds the prompt and 5 of its tokens */
    int32_t ids[NPROMPT + 6];
    memcpy(ids, g_prompt, sizeof g_prompt);
    memcpy(ids + NPROMPT, got[1], 6 * sizeof *ids);
    CHECK(run_both(&p, ids, NPROMPT + 6, 4, NULL, NULL) == NPROMPT + 5);
    pair_close(&p);
}

/* While a LoRA set is attached nothing is reused or kept: its arrays can
 * change between calls (here, in place, as an optimiser does). */
static void test_lora_attached(void) {
    pair p;
    if (!pair_open(&p, "qwen3")) return;
    CHECK(run_both(&p, g_prompt, NPROMPT, 4, NULL, NULL) == 0);
    lmc_lora_config c = lmc_lora_config_default();
    lmc_lora *l1 = NULL, *l2 = NULL;
    CHECK(lmc_lora_create(p.cached, &c, &l1) == LMC_OK);
    CHECK(lmc_lora_create(p.fresh, &c, &l2) == LMC_OK);
    for (int round = 0; round < 2; round++) {
        /* the same non-zero B in both models, different in each round */
        for (int i = 1; i < lmc_lora_num_params(l1); i += 2) {
            lmc_array *b1 = lmc_lora_params(l1)[i], *b2 = lmc_lora_params(l2)[i];
            float *d1 = lmc_array_data(b1), *d2 = lmc_array_data(b2);
            CHECK(lmc_array_dtype(b1) == LMC_F32 && d1 && d2);
            for (int64_t j = 0; d1 && d2 && j < lmc_array_size(b1); j++)
                d1[j] = d2[j] = 0.05f * (float)((j * 7 + i + 3 * round) % 11 - 5);
        }
        CHECK(run_both(&p, g_prompt, NPROMPT, 6, NULL, NULL) == 0);
    }
    lmc_lora_free(l1);
    lmc_lora_free(l2);
    /* the base model's cache from before the adapters is still right */
    CHECK(run_both(&p, g_prompt, NPROMPT, 4, NULL, NULL) == NPROMPT - 1);
    pair_close(&p);
}

/* A 4-bit checkpoint (other matmul kernels for one and for many rows). */
static void test_quantised(void) {
    pair p;
    if (!pair_open(&p, "llama_mlx4")) return;
    int32_t ids[MAXP], gen[MAXP];
    size_t ng = 0;
    CHECK(run_both(&p, g_prompt, NPROMPT, 16, gen, &ng) == 0);
    memcpy(ids, g_prompt, sizeof g_prompt);
    memcpy(ids + NPROMPT, gen, ng * sizeof *ids);
    for (int i = 0; i < 20; i++) ids[NPROMPT + ng + i] = 400 + 3 * i;
    CHECK(run_both(&p, ids, NPROMPT + ng + 20, 16, NULL, NULL) == NPROMPT + 16 - 1);
    pair_close(&p);
}

/* Three conversations taking turns. A turn is the conversation so far,
 * its reply and three new ids; each returns how much of it was reused. */
typedef struct convo {
    int32_t ids[MAXP];
    size_t n;
} convo;

static int64_t take_turn(pair *p, convo *c) {
    int32_t gen[MAXP];
    size_t ng = 0;
    int64_t reused = run_both(p, c->ids, c->n, 5, gen, &ng);
    memcpy(c->ids + c->n, gen, ng * sizeof *gen);
    c->n += ng;
    for (int k = 0; k < 3; k++, c->n++) c->ids[c->n] = (int32_t)(100 + 37 * (int32_t)c->n % 1900);
    return reused;
}

static void test_slots(void) {
    for (int slots = 1; slots <= 3; slots += 2) {
        pair p;
        if (!pair_open_slots(&p, "qwen3", slots)) return;
        convo c[3];
        for (int i = 0; i < 3; i++) { /* different from their first id on */
            c[i].n = 6;
            for (int k = 0; k < 6; k++) c[i].ids[k] = (int32_t)(50 + 300 * i + 7 * k);
        }
        int64_t first[3], second[3];
        for (int i = 0; i < 3; i++) first[i] = take_turn(&p, &c[i]);
        for (int i = 0; i < 3; i++) second[i] = take_turn(&p, &c[i]);
        for (int i = 0; i < 3; i++) CHECK(first[i] == 0);
        /* each conversation's earlier turn fed 6 + 5 - 1 ids to the model */
        for (int i = 0; i < 3; i++)
            CHECKF(second[i] == (slots == 3 ? 10 : 0), "%d slots: conversation %d reused %lld", slots, i,
                   (long long)second[i]);
        pair_close(&p);
    }
    /* Two slots, three conversations: the least recently used one goes. */
    pair p;
    if (!pair_open_slots(&p, "qwen3", 2)) return;
    convo a = {.n = 6}, b = {.n = 6}, c = {.n = 6};
    for (int k = 0; k < 6; k++) a.ids[k] = 60 + k, b.ids[k] = 600 + k, c.ids[k] = 1200 + k;
    take_turn(&p, &a);
    take_turn(&p, &b);
    CHECK(take_turn(&p, &a) == 10); /* a, b kept; a used last */
    CHECK(take_turn(&p, &c) == 0);  /* evicts b */
    CHECK(take_turn(&p, &b) == 0);  /* b was evicted; evicts a */
    CHECK(take_turn(&p, &c) == 10); /* c still there */
    pair_close(&p);
    /* A generation that took no slot finds them all full when it ends: its
     * cache replaces the least recently used one. */
    if (!pair_open_slots(&p, "qwen3", 2)) return;
    convo x = {.n = 6};
    for (int k = 0; k < 6; k++) a.ids[k] = 70 + k, b.ids[k] = 700 + k, x.ids[k] = 1300 + k;
    a.n = b.n = 6;
    take_turn(&p, &a); /* slots: a */
    lmc_generate_options go = greedy(3);
    lmc_stream *xs = NULL;
    CHECK(lmc_stream_start(p.cached, x.ids, x.n, &go, &xs) == LMC_OK); /* takes none: a slot is free */
    bool done = false;
    while (xs && !done) {
        int32_t id;
        if (lmc_stream_next(xs, &id, NULL, NULL, &done) != LMC_OK) break;
    }
    take_turn(&p, &b); /* slots: a, b */
    lmc_stream_free(xs); /* replaces a, the least recently used */
    CHECK(take_turn(&p, &b) == 10);
    CHECK(take_turn(&p, &a) == 0);
    pair_close(&p);
    /* Out of range. */
    lmc_load_options o = lmc_load_options_default();
    o.prompt_cache_slots = 65;
    char *dir = model_fixture_dir("qwen3");
    lmc_model *m = NULL;
    CHECK(dir && lmc_model_load(dir, &o, &m) == LMC_ERR_INVALID_ARGUMENT && !m);
    CHECK(strstr(lmc_last_error(), "prompt_cache_slots"));
    model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_prefix_reuse);
    RUN(test_sliding_window);
    RUN(test_stopped_generations);
    RUN(test_two_streams);
    RUN(test_lora_attached);
    RUN(test_quantised);
    RUN(test_slots);
    return TEST_REPORT();
}
