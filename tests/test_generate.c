/* Generation behaviour on a golden model: max tokens, stop strings, stop
 * tokens, cancellation (from the callback and from another thread), the
 * pull stream, seeded sampling, the context bound, metrics, closing, and
 * bad requests. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "models/decoder.h"
#include "test_util.h"

static lmc_model *g_model;
static char *g_dir;
static int32_t g_prompt[] = {785, 1251, 304, 279, 1879, 686, 1477, 264, 501, 1616}; /* ids < 2048 */
enum { NPROMPT = sizeof g_prompt / sizeof *g_prompt };

static lmc_generate_options greedy(int max_tokens) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.ignore_eos = true;
    o.max_tokens = max_tokens;
    return o;
}

typedef struct collect {
    char text[8192];
    size_t len;
    int tokens;
    int cancel_after;
    lmc_cancel *cancel;
} collect;

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    collect *c = user;
    if (id >= 0) c->tokens++;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    if (c->cancel && c->tokens == c->cancel_after) lmc_cancel_request(c->cancel);
    return true;
}

static void test_max_tokens_and_metrics(void) {
    lmc_generate_options o = greedy(12);
    collect c = {0};
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &out) == LMC_OK);
    CHECK(out.n_ids == 12 && out.stop_reason == LMC_STOP_MAX_TOKENS);
    CHECK(c.tokens == 12);
    CHECK_STR(c.text, out.text); /* streamed pieces add up to the final text */
    CHECK(out.metrics.prompt_tokens == NPROMPT && out.metrics.generated_tokens == 12);
    CHECK(out.metrics.prefill_tokens_per_second > 0 && out.metrics.decode_tokens_per_second > 0);
    CHECK(out.metrics.time_to_first_token > 0 && out.metrics.peak_memory_bytes > 0);
    lmc_generation_clear(&out);
    o = greedy(0);
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &out) == LMC_OK && out.n_ids == 0);
    lmc_generation_clear(&out);
}

static void test_stop_string_and_token(void) {
    lmc_generate_options o = greedy(24);
    lmc_generation ref;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &ref) == LMC_OK);
    CHECK(ref.text_len > 8);
    /* A stop string from the middle of the reference text: the output ends right before it. */
    size_t at = ref.text_len / 2;
    while (at < ref.text_len && ((unsigned char)ref.text[at] & 0xC0) == 0x80) at++;
    char stop[8] = {0};
    size_t sl = 0;
    while (at + sl < ref.text_len && sl < 3) sl++;
    while (at + sl < ref.text_len && ((unsigned char)ref.text[at + sl] & 0xC0) == 0x80) sl++;
    memcpy(stop, ref.text + at, sl < sizeof stop - 1 ? sl : sizeof stop - 1);
    const char *first = strstr(ref.text, stop);
    size_t expect_len = (size_t)(first - ref.text);
    const char *stops[1] = {stop};
    o.stop_strings = stops;
    o.n_stop_strings = 1;
    collect c = {0};
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &out) == LMC_OK);
    CHECKF(out.stop_reason == LMC_STOP_STRING, "stop reason %s", lmc_stop_reason_name(out.stop_reason));
    CHECKF(out.text_len == expect_len && !strncmp(out.text, ref.text, expect_len), "text '%s' vs prefix of '%s'", out.text,
           ref.text);
    CHECK_STR(c.text, out.text); /* the stop string never reached the callback */
    lmc_generation_clear(&out);

    /* A stop token: the 6th greedy token (if it does not occur earlier). */
    int32_t tok = ref.ids[5];
    size_t first_at = 0;
    while (ref.ids[first_at] != tok) first_at++;
    lmc_generate_options o2 = greedy(24);
    o2.stop_tokens = &tok;
    o2.n_stop_tokens = 1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o2, &out) == LMC_OK);
    CHECK(out.stop_reason == LMC_STOP_TOKEN && out.n_ids == first_at);
    lmc_generation_clear(&out);
    lmc_generation_clear(&ref);
}

static void test_stream_matches_generate(void) {
    lmc_generate_options o = greedy(16);
    lmc_generation ref;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &ref) == LMC_OK);
    lmc_stream *s;
    CHECK(lmc_stream_start(g_model, g_prompt, NPROMPT, &o, &s) == LMC_OK);
    int32_t ids[64];
    int n = 0;
    char text[8192] = {0};
    size_t tl = 0;
    for (int guard = 0; guard < 100; guard++) {
        int32_t id;
        const char *piece;
        size_t len;
        bool done;
        CHECK(lmc_stream_next(s, &id, &piece, &len, &done) == LMC_OK);
        if (id >= 0 && n < 64) ids[n++] = id;
        memcpy(text + tl, piece, len);
        tl += len;
        if (done) break;
    }
    CHECK(n == (int)ref.n_ids && !memcmp(ids, ref.ids, (size_t)n * sizeof *ids));
    CHECK_STR(text, ref.text);
    CHECK(lmc_stream_result(s)->stop_reason == LMC_STOP_MAX_TOKENS);
    lmc_stream_free(s);
    lmc_generation_clear(&ref);
}

static void test_cancel_from_callback(void) {
    lmc_cancel cancel = {0};
    lmc_generate_options o = greedy(40);
    collect c = {.cancel = &cancel, .cancel_after = 3};
    o.on_token = on_token;
    o.user = &c;
    o.cancel = &cancel;
    lmc_generation out;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &out) == LMC_ERR_CANCELLED);
    CHECK(out.stop_reason == LMC_STOP_CANCELLED && out.n_ids == 3);
    lmc_generation_clear(&out);
}

typedef struct bg {
    lmc_cancel cancel;
    lmc_status status;
    lmc_generation out;
    atomic_int started; /* set by the generating thread, polled by the test */
} bg;

static bool mark_started(void *user, int32_t id, const char *t, size_t l) {
    (void)id;
    (void)t;
    (void)l;
    atomic_store(&((bg *)user)->started, 1);
    return true;
}

static void *run_long(void *arg) {
    bg *b = arg;
    lmc_generate_options o = greedy(1000000);
    o.cancel = &b->cancel;
    o.on_token = mark_started;
    o.user = b;
    b->status = lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &b->out);
    return NULL;
}

static void test_cancel_from_thread(void) {
    bg b = {0};
    pthread_t t;
    pthread_create(&t, NULL, run_long, &b);
    while (!atomic_load(&b.started)) usleep(1000);
    usleep(20000);
    lmc_cancel_request(&b.cancel);
    pthread_join(t, NULL);
    CHECK(b.status == LMC_ERR_CANCELLED && b.out.stop_reason == LMC_STOP_CANCELLED);
    CHECK(b.out.n_ids > 0 && b.out.n_ids < 1000000);
    lmc_generation_clear(&b.out);
}

static void test_seeded_sampling(void) {
    lmc_generate_options o = greedy(16);
    o.sampler.temperature = 1.0f;
    o.sampler.seed = 7;
    lmc_generation a, b, c;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &a) == LMC_OK);
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &b) == LMC_OK);
    o.sampler.seed = 8;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &c) == LMC_OK);
    CHECK(a.n_ids == b.n_ids && !memcmp(a.ids, b.ids, a.n_ids * sizeof *a.ids));
    CHECK(a.n_ids != c.n_ids || memcmp(a.ids, c.ids, a.n_ids * sizeof *a.ids));
    lmc_generation_clear(&a);
    lmc_generation_clear(&b);
    lmc_generation_clear(&c);
    o.sampler.top_p = 1.5f; /* out of range */
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &a) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "top_p") != NULL);
}

static void test_bad_requests_and_context(void) {
    lmc_generate_options o = greedy(8);
    lmc_generation out;
    CHECK(lmc_generate_ids(g_model, g_prompt, 0, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    int32_t bad[2] = {1, 999999};
    CHECK(lmc_generate_ids(g_model, bad, 2, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "999999") != NULL);
    o.max_tokens = -1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    /* A context bound of prompt + 4 stops generation after 4 tokens. */
    lmc_load_options lo = lmc_load_options_default();
    lo.context_length = NPROMPT + 4;
    lmc_model *m;
    CHECK(lmc_model_load(g_dir, &lo, &m) == LMC_OK);
    o = greedy(100);
    CHECK(lmc_generate_ids(m, g_prompt, NPROMPT, &o, &out) == LMC_OK);
    CHECKF(out.stop_reason == LMC_STOP_CONTEXT && out.n_ids == 4, "%s after %zu", lmc_stop_reason_name(out.stop_reason), out.n_ids);
    lmc_generation_clear(&out);
    /* A closed model answers LMC_ERR_CLOSED. */
    lmc_model_close(m);
    CHECK(lmc_generate_ids(m, g_prompt, NPROMPT, &o, &out) == LMC_ERR_CLOSED);
    lmc_model_info info;
    CHECK(lmc_model_get_info(m, &info) == LMC_ERR_CLOSED);
    lmc_model_free(m);
}

static void test_text_prompt(void) {
    lmc_generate_options o = greedy(6);
    lmc_generation out;
    CHECK(lmc_generate(g_model, "The people in the world", &o, &out) == LMC_OK);
    CHECK(out.metrics.prompt_tokens > 0 && out.n_ids == 6);
    lmc_generation_clear(&out);
    /* The golden model's vocabulary (2048) lacks Qwen's chat tokens: a clear error, not garbage. */
    lmc_message msgs[1] = {{"user", "Hello"}};
    CHECK(lmc_chat(g_model, msgs, 1, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "outside the vocabulary") != NULL);
}

/* Chat on a random-weight model with Qwen 3's full vocabulary, built by `lmc make-model`. */
static void test_chat(void) {
    char tmpl[] = "/tmp/lmc-chat-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 --tokenizer %s/qwen3 -o %s/m 2>/dev/null", LMC_BUILD_DIR,
             LMC_TOKENIZER_DIR, dir);
    CHECK(dir && system(cmd) == 0);
    char mdir[4200];
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    lmc_model *m;
    CHECKF(lmc_model_load(mdir, NULL, &m) == LMC_OK, "%s", lmc_last_error());
    lmc_message msgs[2] = {{"system", "Be brief."}, {"user", "Hello"}};
    lmc_generate_options o = greedy(5);
    lmc_generation out;
    CHECKF(lmc_chat(m, msgs, 2, &o, &out) == LMC_OK, "%s", lmc_last_error());
    /* The prompt is exactly the rendered template, tokenised without extra special tokens. */
    lmc_chat_template *t;
    char *prompt = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_chat_template_options co = lmc_chat_template_options_default();
    co.add_generation_prompt = true;
    CHECK(lmc_chat_template_load(mdir, &t) == LMC_OK);
    CHECK(lmc_chat_template_apply(t, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hello\"}]", &co,
                                  &prompt) == LMC_OK);
    CHECK(prompt && strstr(prompt, "<|im_start|>assistant\n") != NULL);
    CHECK(lmc_tokenizer_encode(lmc_model_tokenizer(m), prompt, strlen(prompt), false, &ids, &n) == LMC_OK);
    CHECKF(out.metrics.prompt_tokens == (int64_t)n && out.n_ids == 5, "prompt %lld vs %zu", (long long)out.metrics.prompt_tokens, n);
    lmc_tokenizer_free_ids(ids);
    free(prompt);
    lmc_chat_template_free(t);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* 16-bit KV caches: half the memory, logits close to the f32 cache's, the
 * same greedy tokens on these models; on full-attention and sliding layers. */
static void test_kv_cache_dtype(void) {
    const char *models[] = {"qwen3", "gemma3"};
    lmc_dtype dts[] = {LMC_BF16, LMC_F16};
    for (int mi = 0; mi < 2; mi++) {
        char *dir = model_fixture_dir(models[mi]);
        lmc_model *ref = NULL;
        CHECK(dir && lmc_model_load(dir, NULL, &ref) == LMC_OK);
        int32_t ids[40];
        for (int i = 0; i < 40; i++) ids[i] = g_prompt[i % NPROMPT] + i; /* past gemma3's window of 16 */
        lmc_array *lr = ref ? lmc_model_logits(ref, ids, 40, true) : NULL;
        lmc_generate_options o = greedy(12);
        lmc_generation gr = {0};
        CHECK(ref && lmc_generate_ids(ref, ids, 40, &o, &gr) == LMC_OK);
        size_t before = lmc_memory(LMC_CPU).active_bytes;
        lmc_model_clear_prompt_cache(ref);
        size_t kv32 = before - lmc_memory(LMC_CPU).active_bytes; /* the cache the generation left */
        for (int di = 0; di < 2; di++) {
            lmc_load_options lo = lmc_load_options_default();
            lo.kv_cache_dtype = dts[di];
            lmc_model *m = NULL;
            CHECK(lmc_model_load(dir, &lo, &m) == LMC_OK);
            lmc_array *lg = m ? lmc_model_logits(m, ids, 40, true) : NULL;
            size_t n = lr && lg ? (size_t)lmc_array_size(lr) : 0;
            CHECK(n > 0 && lmc_array_size(lg) == (int64_t)n);
            float *a = malloc(n * sizeof *a + 1), *b = malloc(n * sizeof *b + 1);
            double scale = 0, err = 0;
            if (n && lmc_array_read(lr, LMC_F32, a, n) == LMC_OK && lmc_array_read(lg, LMC_F32, b, n) == LMC_OK)
                for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i])), err = fmax(err, fabs(a[i] - b[i]));
            /* bf16 keeps 8 significant bits, f16 11 */
            double tol = dts[di] == LMC_BF16 ? 2e-2 : 3e-3;
            fprintf(stderr, "%s %s KV: logits differ by %.2e of their scale\n", models[mi], lmc_dtype_name(dts[di]),
                    scale > 0 ? err / scale : -1.0);
            CHECKF(err > 0 && err < tol * scale, "%s %s KV: logits differ by %.2e of their scale", models[mi],
                   lmc_dtype_name(dts[di]), scale > 0 ? err / scale : -1.0);
            lmc_generation g = {0};
            CHECK(m && lmc_generate_ids(m, ids, 40, &o, &g) == LMC_OK);
            CHECKF(g.n_ids == gr.n_ids && !memcmp(g.ids, gr.ids, g.n_ids * sizeof *g.ids), "%s %s KV: greedy tokens differ",
                   models[mi], lmc_dtype_name(dts[di]));
            before = lmc_memory(LMC_CPU).active_bytes;
            lmc_model_clear_prompt_cache(m);
            size_t kv16 = before - lmc_memory(LMC_CPU).active_bytes;
            CHECKF(kv16 * 2 == kv32 && kv16 > 0, "KV cache bytes: %zu with f32, %zu with %s", kv32, kv16,
                   lmc_dtype_name(dts[di]));
            free(a);
            free(b);
            lmc_generation_clear(&g);
            lmc_array_free(lg);
            lmc_model_free(m);
        }
        lmc_generation_clear(&gr);
        lmc_array_free(lr);
        lmc_model_free(ref);
        model_fixture_cleanup(dir);
    }
    lmc_load_options lo = lmc_load_options_default();
    lo.kv_cache_dtype = LMC_I32;
    lmc_model *m = NULL;
    CHECK(lmc_model_load(g_dir, &lo, &m) == LMC_ERR_INVALID_ARGUMENT && !m);
    CHECK(strstr(lmc_last_error(), "kv_cache_dtype"));
}

/* The KV cache a generation leaves in the prompt cache holds what it
 * reserved: the prompt and max_tokens (at most LMC_KV_RESERVE_AHEAD = 256
 * answer tokens ahead), grown by half past that. Measured as the memory that
 * clearing the prompt cache frees. */
static void test_kv_reserved(void) {
    lmc_model_info info;
    CHECK(lmc_model_get_info(g_model, &info) == LMC_OK);
    size_t per_pos = (size_t)(info.num_layers * 2 * info.num_kv_heads * info.head_dim) * sizeof(float);
    const struct { int max_tokens; int64_t positions; } cases[] = {
        {12, NPROMPT + 12},         /* all reserved at once */
        {800, 1280},                /* 10 + 256 reserved, then grown by half in steps of 256: 512, 768, 1280 */
    };
    for (int i = 0; i < 2; i++) {
        lmc_model_clear_prompt_cache(g_model);
        lmc_generate_options o = greedy(cases[i].max_tokens);
        lmc_generation g = {0};
        CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_OK && g.n_ids == (size_t)cases[i].max_tokens);
        size_t before = lmc_memory(LMC_CPU).active_bytes;
        lmc_model_clear_prompt_cache(g_model);
        size_t kv = before - lmc_memory(LMC_CPU).active_bytes;
        CHECKF(kv == (size_t)cases[i].positions * per_pos, "max_tokens %d: the cache holds %zu bytes, expected %lld positions of %zu",
               cases[i].max_tokens, kv, (long long)cases[i].positions, per_pos);
        lmc_generation_clear(&g);
    }
}

/* A prompt prefilled in chunks runs the lm_head for its last chunk only:
 * a generation of n tokens from a 10-token prompt in chunks of 3 (4 passes)
 * makes n heads, not n + 3, with the same tokens as one pass; last-position
 * logits likewise make one head and equal the all-positions logits' last row. */
static void test_chunked_prefill_head(void) {
    lmc_load_options lo = lmc_load_options_default();
    lo.prefill_chunk = 3;
    lmc_model *m = NULL;
    CHECK(lmc_model_load(g_dir, &lo, &m) == LMC_OK);
    if (!m) return;
    lmc_generate_options o = greedy(5);
    lmc_generation one = {0}, chunked = {0};
    lmc_model_clear_prompt_cache(g_model);
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &one) == LMC_OK && one.n_ids == 5);
    lmc_decoder_profile_start();
    CHECK(lmc_generate_ids(m, g_prompt, NPROMPT, &o, &chunked) == LMC_OK && chunked.n_ids == 5);
    lmc_decoder_profile p = lmc_decoder_profile_stop();
    CHECKF(p.calls[LMC_DOP_HEAD] == 5, "%ld heads for 5 tokens", p.calls[LMC_DOP_HEAD]);
    lmc_model_info info;
    CHECK(lmc_model_get_info(m, &info) == LMC_OK);
    CHECKF(p.calls[LMC_DOP_ATTENTION] == (4 + 4) * info.num_layers,
           "%ld attention calls: not 4 prefill passes and 4 steps of %lld layers", p.calls[LMC_DOP_ATTENTION],
           (long long)info.num_layers);
    CHECK(!memcmp(one.ids, chunked.ids, 5 * sizeof *one.ids));

    lmc_decoder_profile_start();
    lmc_array *last = lmc_model_logits(m, g_prompt, NPROMPT, false);
    p = lmc_decoder_profile_stop();
    lmc_array *all = lmc_model_logits(m, g_prompt, NPROMPT, true);
    CHECKF(p.calls[LMC_DOP_HEAD] == 1, "%ld heads for last-position logits", p.calls[LMC_DOP_HEAD]);
    CHECK(last && all);
    if (last && all) {
        size_t V = (size_t)info.vocab_size;
        float *a = malloc(V * sizeof *a), *b = malloc(NPROMPT * V * sizeof *b);
        CHECK(a && b && lmc_array_read(last, LMC_F32, a, V) == LMC_OK &&
              lmc_array_read(all, LMC_F32, b, NPROMPT * V) == LMC_OK);
        CHECK(a && b && !memcmp(a, b + (NPROMPT - 1) * V, V * sizeof *a));
        free(a);
        free(b);
    }
    lmc_array_free(last);
    lmc_array_free(all);
    lmc_generation_clear(&one);
    lmc_generation_clear(&chunked);
    lmc_model_free(m);
}

int main(void) {
    g_dir = model_fixture_dir("qwen3");
    if (!g_dir || lmc_model_load(g_dir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "cannot load the qwen3 golden model: %s\n", lmc_last_error());
        return 1;
    }
    RUN(test_max_tokens_and_metrics);
    RUN(test_stop_string_and_token);
    RUN(test_stream_matches_generate);
    RUN(test_cancel_from_callback);
    RUN(test_cancel_from_thread);
    RUN(test_seeded_sampling);
    RUN(test_bad_requests_and_context);
    RUN(test_text_prompt);
    RUN(test_chat);
    RUN(test_kv_cache_dtype);
    RUN(test_kv_reserved);
    RUN(test_chunked_prefill_head);
    lmc_model_free(g_model);
    model_fixture_cleanup(g_dir);
    return TEST_REPORT();
}
