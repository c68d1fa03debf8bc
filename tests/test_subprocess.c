/* Backend "subprocess" against bridges/mock_bridge.py: every message type
 * (hello, load, info, generate, chat, cancel, shutdown, token, done, error),
 * the stop rules, the pull stream, cancellation reaching the child, every
 * fault (fails to start, hangs, exits early, crashes mid-stream, malformed,
 * oversized and noise lines, unexpected messages, ignored cancel and
 * shutdown), no zombies after any of them, lmc usable afterwards, SIGPIPE,
 * the environment and PATH of the child, and the CLI. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "runtime/model_internal.h"
#include "runtime/subprocess.h"
#include "runtime/subprocess_proc.h"
#include "test_util.h"

#define BRIDGES LMC_TEST_DATA "/../../bridges"
static const char *MOCK = "python3 '" BRIDGES "/mock_bridge.py'";
static const char *MODEL_DIR = LMC_TEST_DATA; /* the mock only needs a folder */
static char g_log[256];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* True when this process has no child left, not even a zombie. */
static bool no_children(void) {
    int st;
    return waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD;
}

static bool pid_gone(pid_t pid) { return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH; }

/* Loads the mock with a fault ("" for none), extra "KEY=VALUE" entries and a timeout. */
static lmc_status load_mock(const char *fault, double timeout, const char *extra, lmc_model **m) {
    static char fault_env[64], log_env[300];
    snprintf(fault_env, sizeof fault_env, "MOCK_BRIDGE_FAULT=%s", fault);
    snprintf(log_env, sizeof log_env, "MOCK_BRIDGE_LOG=%s", g_log);
    const char *env[3] = {fault_env, log_env, extra};
    lmc_load_options o = lmc_load_options_default();
    o.backend = "subprocess";
    o.bridge = MOCK;
    o.bridge_env = env;
    o.n_bridge_env = extra ? 3 : 2;
    o.bridge_timeout = timeout;
    return lmc_model_load(MODEL_DIR, &o, m);
}

static char *read_log(void) {
    char *s = read_file_all(g_log, NULL);
    return s ? s : calloc(1, 1);
}

static void clear_log(void) { unlink(g_log); }

static lmc_generate_options greedy(int max_tokens) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.max_tokens = max_tokens;
    return o;
}

typedef struct collect {
    char text[4096];
    size_t len;
    int tokens, calls, empty_pieces;
    int32_t ids[512];
    int stop_after;           /* return false after this many tokens (0: never) */
    lmc_cancel *cancel;       /* raise this after cancel_after tokens */
    int cancel_after;
} collect;

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    collect *c = user;
    c->calls++;
    if (id >= 0 && c->tokens < 512) c->ids[c->tokens++] = id;
    if (id >= 0 && len == 0) c->empty_pieces++;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    if (c->cancel && c->tokens == c->cancel_after) lmc_cancel_request(c->cancel);
    return !(c->stop_after && c->tokens >= c->stop_after);
}

/* A fresh mock loads and generates: lmc is usable. */
static bool lmc_usable(void) {
    lmc_model *m = NULL;
    if (load_mock("", 30, NULL, &m) != LMC_OK) {
        fprintf(stderr, "lmc_usable: load: %s\n", lmc_last_error());
        return false;
    }
    lmc_generate_options o = greedy(5);
    lmc_generation out;
    bool ok = lmc_generate(m, "usable", &o, &out) == LMC_OK && out.text && !strcmp(out.text, "usabl");
    if (!ok) fprintf(stderr, "lmc_usable: generate: %s\n", lmc_last_error());
    lmc_generation_clear(&out);
    lmc_model_free(m);
    if (!no_children()) fprintf(stderr, "lmc_usable: a child is left\n");
    return ok && no_children();
}

/* --- registry and options ----------------------------------------------------- */

static void test_registry(void) {
    const char *const *names = lmc_backends();
    bool cpu = false, sub = false;
    for (int i = 0; names[i]; i++) {
        cpu |= !strcmp(names[i], "cpu");
        sub |= !strcmp(names[i], "subprocess");
    }
    CHECK(cpu && sub);
    CHECK(lmc_backend_available("cpu") && lmc_backend_available("subprocess"));
    CHECK(!lmc_backend_available("nope") && !lmc_backend_available(NULL));
    CHECK_STR(lmc_default_backend(), "cpu");
    lmc_load_options o = lmc_load_options_default();
    CHECK(o.bridge == NULL && o.bridge_env == NULL && o.n_bridge_env == 0 && o.bridge_timeout == 0);
    o.backend = "nope";
    lmc_model *m = (lmc_model *)1;
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_UNSUPPORTED && m == NULL);
    CHECK(strstr(lmc_last_error(), "nope") != NULL);
}

static void test_option_errors(void) {
    lmc_load_options o = lmc_load_options_default();
    o.backend = "subprocess";
    lmc_model *m = NULL;
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "bridge command") != NULL);
    o.bridge = "python3 'unterminated";
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "unterminated single quote") != NULL);
    o.bridge = "python3 bridge.py | tee log";
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_INVALID_ARGUMENT);
    o.bridge = "lmc-no-such-program-here --flag";
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_NOT_FOUND);
    CHECKF(strstr(lmc_last_error(), "lmc-no-such-program-here") && strstr(lmc_last_error(), "not found"), "%s",
           lmc_last_error());
    o.bridge = "/nonexistent/python3";
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) != LMC_OK);
    CHECK(strstr(lmc_last_error(), "/nonexistent/python3") != NULL);
    o.bridge = MOCK;
    const char *bad_env[] = {"NOEQUALS"};
    o.bridge_env = bad_env;
    o.n_bridge_env = 1;
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "NOEQUALS") != NULL);
    o.n_bridge_env = 0;
    o.bridge_timeout = -1;
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL && no_children());
    /* The bridge's own error reply to load (missing folder) is an error, not a fault. */
    o.bridge_timeout = 30;
    CHECK(lmc_model_load("/nonexistent-model-folder", &o, &m) == LMC_ERR_NOT_FOUND);
    CHECKF(strstr(lmc_last_error(), "model folder not found") != NULL, "%s", lmc_last_error());
    CHECK(m == NULL && no_children());
}

/* --- generation --------------------------------------------------------------- */

static void test_generate_text(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    pid_t pid = lmc_subprocess_pid(m);
    CHECK(pid > 0 && kill(pid, 0) == 0);
    CHECK_STR(m->backend, "subprocess");
    collect c = {0};
    lmc_generate_options o = greedy(100);
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    CHECK(lmc_generate(m, "hello world", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "hello world");
    CHECK(out.stop_reason == LMC_STOP_EOS && out.n_ids == 11);
    for (size_t i = 0; i < out.n_ids && i < 11; i++) CHECK(out.ids[i] == (int32_t)"hello world"[i] + 3);
    CHECK(c.tokens == 11 && !memcmp(c.ids, out.ids, 11 * sizeof *c.ids));
    CHECK_STR(c.text, out.text); /* streamed pieces add up to the text */
    CHECK(out.metrics.prompt_tokens == 12 && out.metrics.generated_tokens == 11); /* BOS + 11 bytes */
    CHECK(out.metrics.time_to_first_token > 0 && out.metrics.decode_seconds > 0);
    lmc_generation_clear(&out);
    o = greedy(100);
    o.add_special_tokens = false;
    CHECK(lmc_generate(m, "hi", &o, &out) == LMC_OK);
    CHECK(out.metrics.prompt_tokens == 2);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    CHECK(pid_gone(pid) && no_children());
}

static void test_generate_ids_and_pull_stream(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    int32_t prompt[] = {1, 'a' + 3, 'b' + 3, 'c' + 3};
    lmc_generate_options o = greedy(100);
    lmc_generation out;
    CHECK(lmc_generate_ids(m, prompt, 4, &o, &out) == LMC_OK);
    CHECK_STR(out.text, "abc");
    CHECK(out.n_ids == 3 && out.ids[0] == 'a' + 3 && out.stop_reason == LMC_STOP_EOS);
    lmc_generation_clear(&out);

    lmc_stream *s = NULL;
    CHECK(lmc_stream_start(m, prompt, 4, &o, &s) == LMC_OK);
    char text[64] = {0};
    int n = 0;
    for (int guard = 0; s && guard < 20; guard++) {
        int32_t id;
        const char *piece;
        size_t len;
        bool done;
        CHECK(lmc_stream_next(s, &id, &piece, &len, &done) == LMC_OK);
        if (id >= 0) CHECK(id == prompt[1 + n++]);
        strncat(text, piece, len);
        if (done) break;
    }
    CHECK(n == 3);
    CHECK_STR(text, "abc");
    const lmc_generation *r = lmc_stream_result(s);
    CHECK(r && r->stop_reason == LMC_STOP_EOS && r->n_ids == 3);
    lmc_stream_free(s);

    /* Bad requests answered without disturbing the bridge. */
    int32_t neg[] = {-5};
    CHECK(lmc_generate_ids(m, neg, 1, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    int32_t big[] = {9999};
    CHECK(lmc_generate_ids(m, big, 1, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "outside the vocabulary") != NULL, "%s", lmc_last_error());
    CHECK(out.stop_reason == LMC_STOP_ERROR && out.n_ids == 0);
    lmc_generation_clear(&out);
    o.max_tokens = -1;
    CHECK(lmc_generate(m, "x", &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    o = greedy(0);
    CHECK(lmc_generate(m, "x", &o, &out) == LMC_OK && out.n_ids == 0 && out.stop_reason == LMC_STOP_MAX_TOKENS);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    CHECK(no_children());
}

static void test_stop_rules(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    lmc_generation out;
    collect c = {0};
    lmc_generate_options o = greedy(100);
    const char *stops[] = {"wor", "zzz"};
    o.stop_strings = stops;
    o.n_stop_strings = 2;
    o.on_token = on_token;
    o.user = &c;
    CHECK(lmc_generate(m, "hello world", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "hello ");
    CHECK_STR(c.text, "hello "); /* "wo" was held back, never streamed */
    CHECK(out.stop_reason == LMC_STOP_STRING);
    lmc_generation_clear(&out);

    o = greedy(3);
    CHECK(lmc_generate(m, "hello world", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "hel");
    CHECK(out.stop_reason == LMC_STOP_MAX_TOKENS);
    lmc_generation_clear(&out);

    o = greedy(100);
    int32_t stop_tok[] = {'o' + 3};
    o.stop_tokens = stop_tok;
    o.n_stop_tokens = 1;
    CHECK(lmc_generate(m, "hello world", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "hell");
    CHECK(out.stop_reason == LMC_STOP_TOKEN && out.n_ids == 4);
    lmc_generation_clear(&out);

    o = greedy(8);
    o.ignore_eos = true; /* the echo starts over after EOS (id 2, no text) */
    CHECK(lmc_generate(m, "abc", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "abcabc");
    CHECK(out.n_ids == 8 && out.ids[3] == 2 && out.stop_reason == LMC_STOP_MAX_TOKENS);
    lmc_generation_clear(&out);

    /* UTF-8: a character split over tokens is released whole. */
    memset(&c, 0, sizeof c);
    o = greedy(100);
    o.on_token = on_token;
    o.user = &c;
    CHECK(lmc_generate(m, "n\xc3\xa9!", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "n\xc3\xa9!");
    CHECK(c.tokens == 4 && c.empty_pieces == 1);
    CHECK_STR(c.text, "n\xc3\xa9!");
    lmc_generation_clear(&out);
    lmc_model_free(m);
}

static void test_context_and_info(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, "MOCK_BRIDGE_CONTEXT=8", &m) == LMC_OK);
    if (!m) return;
    lmc_model_info in;
    CHECK(lmc_model_get_info(m, &in) == LMC_OK);
    CHECK_STR(in.architecture, "mock");
    CHECK(in.vocab_size == 259 && in.num_layers == 1 && in.hidden_size == 8 && in.context_length == 8);
    CHECK_STR(in.dtype, "none");
    lmc_generate_options o = greedy(100);
    lmc_generation out;
    CHECK(lmc_generate(m, "abcdef", &o, &out) == LMC_OK); /* 7 prompt tokens with BOS */
    CHECK(out.n_ids == 1 && out.stop_reason == LMC_STOP_CONTEXT);
    lmc_generation_clear(&out);
    CHECK(lmc_generate(m, "abcdefgh", &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "context length") != NULL, "%s", lmc_last_error());
    lmc_generation_clear(&out);
    lmc_model_free(m);

    /* The load option bounds the context further; a later KEY= wins. */
    static char fault_env[] = "MOCK_BRIDGE_FAULT=", ctx1[] = "MOCK_BRIDGE_CONTEXT=5", ctx2[] = "MOCK_BRIDGE_CONTEXT=100";
    const char *env[] = {fault_env, ctx1, ctx2};
    lmc_load_options lo = lmc_load_options_default();
    lo.backend = "subprocess";
    lo.bridge = MOCK;
    lo.bridge_env = env;
    lo.n_bridge_env = 3;
    lo.context_length = 6;
    CHECK(lmc_model_load(MODEL_DIR, &lo, &m) == LMC_OK);
    if (!m) return;
    CHECK(lmc_model_get_info(m, &in) == LMC_OK && in.context_length == 100);
    CHECK(lmc_generate(m, "abc", &o, &out) == LMC_OK);
    CHECK(out.n_ids == 2 && out.stop_reason == LMC_STOP_CONTEXT);
    lmc_generation_clear(&out);
    lmc_model_free(m);
}

static void test_chat(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    lmc_message msgs[] = {{"system", "be brief"}, {"user", "hi"}};
    collect c = {0};
    lmc_generate_options o = greedy(200);
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    CHECK(lmc_chat(m, msgs, 2, &o, &out) == LMC_OK);
    CHECK_STR(out.text, "<|system|>be brief\n<|user|>hi\n<|assistant|>");
    CHECK_STR(c.text, out.text);
    CHECK(out.stop_reason == LMC_STOP_EOS);
    lmc_generation_clear(&out);
    lmc_message bad[] = {{"user", NULL}};
    CHECK(lmc_chat(m, bad, 1, &o, &out) == LMC_ERR_INVALID_ARGUMENT);
    lmc_model_free(m);
}

static void test_unsupported(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    int32_t ids[] = {4, 5};
    CHECK(lmc_model_logits(m, ids, 2, false) == NULL && lmc_last_status() == LMC_ERR_UNSUPPORTED);
    CHECK_STR(lmc_last_error(), "logits: not supported by backend subprocess");
    CHECK(lmc_model_tokenizer(m) == NULL && lmc_last_status() == LMC_ERR_UNSUPPORTED);
    CHECK(strstr(lmc_last_error(), "not supported by backend subprocess") != NULL);
    CHECK(lmc_model_native(m, "batch generate") == NULL && lmc_last_status() == LMC_ERR_UNSUPPORTED);
    CHECK_STR(lmc_last_error(), "batch generate: not supported by backend subprocess");
    lmc_attention_capture cap;
    CHECK(lmc_model_inspect_attention(m, ids, 2, &cap) == LMC_ERR_UNSUPPORTED);
    CHECK_STR(lmc_last_error(), "inspect_attention: not supported by backend subprocess");
    lmc_generate_options lo = greedy(4);
    lo.top_logprobs = 2;
    lmc_generation lg;
    CHECK(lmc_generate_ids(m, ids, 2, &lo, &lg) == LMC_ERR_UNSUPPORTED);
    CHECK_STR(lmc_last_error(), "logprobs: not supported by backend subprocess");

    /* One request at a time: a second stream while one is open is refused, not deadlocked. */
    lmc_generate_options o = greedy(100);
    lmc_stream *s = NULL, *s2 = NULL;
    CHECK(lmc_stream_start(m, ids, 2, &o, &s) == LMC_OK);
    CHECK(lmc_stream_start(m, ids, 2, &o, &s2) == LMC_ERR_UNSUPPORTED && s2 == NULL);
    CHECK(strstr(lmc_last_error(), "one request at a time") != NULL);
    lmc_model_info in;
    CHECK(lmc_model_get_info(m, &in) == LMC_ERR_UNSUPPORTED);
    lmc_stream_free(s); /* unfinished: cancelled on the bridge */
    CHECK(lmc_model_get_info(m, &in) == LMC_OK);
    lmc_model_free(m);
}

static void test_sampling_forwarded(void) {
    clear_log();
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0.5f;
    o.sampler.top_k = 7;
    o.sampler.top_p = 0.75f;
    o.sampler.min_p = 0.25f;
    o.sampler.repeat_penalty = 1.5f;
    o.sampler.repeat_last_n = 32;
    o.sampler.seed = 42;
    o.max_tokens = 9;
    o.ignore_eos = true;
    const char *stops[] = {"STOP"};
    o.stop_strings = stops;
    o.n_stop_strings = 1;
    int32_t st[] = {77};
    o.stop_tokens = st;
    o.n_stop_tokens = 1;
    lmc_generation out;
    CHECK(lmc_generate(m, "q", &o, &out) == LMC_OK);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    char *log = read_log();
    CHECKF(strstr(log, "\"type\": \"hello\", \"id\": 1, \"protocol\": 1") != NULL, "%s", log);
    CHECK(strstr(log, "\"type\": \"load\"") != NULL);
    CHECK(strstr(log, "\"prompt\": \"q\", \"add_special_tokens\": true, \"max_tokens\": 9") != NULL);
    CHECKF(strstr(log, "\"sampling\": {\"temperature\": 0.5, \"top_k\": 7, \"top_p\": 0.75, \"min_p\": 0.25, "
                       "\"repeat_penalty\": 1.5, \"repeat_last_n\": 32, \"seed\": 42}") != NULL, "%s", log);
    CHECK(strstr(log, "\"stop_strings\": [\"STOP\"], \"stop_tokens\": [77], \"ignore_eos\": true") != NULL);
    CHECK(strstr(log, "\"type\": \"shutdown\"") != NULL);
    free(log);
}

/* --- cancellation ----------------------------------------------------------------- */

static void test_cancel_from_callback(void) {
    clear_log();
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, "MOCK_BRIDGE_DELAY=0.02", &m) == LMC_OK);
    if (!m) return;
    collect c = {.stop_after = 3};
    lmc_generate_options o = greedy(1000);
    o.ignore_eos = true;
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    double t0 = now();
    CHECK(lmc_generate(m, "abcdefghijklmnopqrstuvwxyz", &o, &out) == LMC_ERR_CANCELLED);
    double took = now() - t0;
    CHECKF(took < 2.0, "took %.2f s", took); /* 1000 tokens would take 20 s */
    CHECK(out.stop_reason == LMC_STOP_CANCELLED && out.n_ids == 3);
    CHECK_STR(out.text, "abc");
    lmc_generation_clear(&out);
    char *log = read_log();
    const char *ev = strstr(log, "{\"event\": \"cancelled\", \"id\": 3, \"tokens\": ");
    CHECKF(strstr(log, "{\"type\": \"cancel\", \"id\": 3}") != NULL && ev, "%s", log);
    if (ev) CHECKF(atoi(ev + strlen("{\"event\": \"cancelled\", \"id\": 3, \"tokens\": ")) <= 10, "%s", ev);
    free(log);
    /* The bridge is still in step: the next request works. */
    o = greedy(100);
    CHECK(lmc_generate(m, "ok", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "ok");
    lmc_generation_clear(&out);
    lmc_model_free(m);
    CHECK(no_children());
}

static void *cancel_later(void *arg) {
    struct timespec ts = {0, 150 * 1000000L};
    nanosleep(&ts, NULL);
    lmc_cancel_request(arg);
    return NULL;
}

static void test_cancel_from_another_thread(void) {
    clear_log();
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, "MOCK_BRIDGE_DELAY=0.02", &m) == LMC_OK);
    if (!m) return;
    lmc_cancel cancel = {0};
    lmc_generate_options o = greedy(1000);
    o.ignore_eos = true;
    o.cancel = &cancel;
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &cancel);
    lmc_generation out;
    double t0 = now();
    CHECK(lmc_generate(m, "abcdefghij", &o, &out) == LMC_ERR_CANCELLED);
    CHECKF(now() - t0 < 2.0, "took %.2f s", now() - t0);
    pthread_join(th, NULL);
    CHECK(out.stop_reason == LMC_STOP_CANCELLED && out.n_ids >= 1 && out.n_ids < 100);
    lmc_generation_clear(&out);
    char *log = read_log();
    CHECKF(strstr(log, "{\"event\": \"cancelled\"") != NULL, "%s", log);
    free(log);

    /* A fast bridge always has the next token ready: the flag is still seen at once. */
    clear_log();
    memset(&cancel, 0, sizeof cancel);
    collect c = {.cancel = &cancel, .cancel_after = 3};
    o = greedy(1000000);
    o.ignore_eos = true;
    o.cancel = &cancel;
    o.on_token = on_token;
    o.user = &c;
    CHECK(lmc_generate(m, "abcdefghij", &o, &out) == LMC_ERR_CANCELLED);
    CHECK(out.stop_reason == LMC_STOP_CANCELLED && out.n_ids == 3);
    lmc_generation_clear(&out);
    log = read_log();
    CHECKF(strstr(log, "{\"event\": \"cancelled\"") != NULL, "%s", log);
    free(log);

    /* A pull stream freed half way is cancelled on the bridge too. */
    clear_log();
    int32_t ids[] = {'x' + 3, 'y' + 3, 'z' + 3};
    o = greedy(1000);
    o.ignore_eos = true;
    lmc_stream *s = NULL;
    CHECK(lmc_stream_start(m, ids, 3, &o, &s) == LMC_OK);
    int32_t id;
    const char *piece;
    size_t len;
    bool done;
    CHECK(lmc_stream_next(s, &id, &piece, &len, &done) == LMC_OK && id == 'x' + 3 && !done);
    lmc_stream_free(s);
    log = read_log();
    CHECKF(strstr(log, "\"type\": \"cancel\"") && strstr(log, "{\"event\": \"cancelled\""), "%s", log);
    free(log);
    o = greedy(100);
    CHECK(lmc_generate(m, "fine", &o, &out) == LMC_OK);
    CHECK_STR(out.text, "fine");
    lmc_generation_clear(&out);
    lmc_model_free(m);
    CHECK(no_children());
}

/* --- closing ------------------------------------------------------------------------ */

static void test_close(void) {
    clear_log();
    lmc_model *m = NULL;
    CHECK(load_mock("", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    pid_t pid = lmc_subprocess_pid(m);
    double t0 = now();
    lmc_model_close(m);
    CHECKF(now() - t0 < 2.0, "graceful close took %.2f s", now() - t0);
    CHECK(pid_gone(pid) && no_children());
    lmc_generation out;
    lmc_generate_options o = greedy(3);
    CHECK(lmc_generate(m, "x", &o, &out) == LMC_ERR_CLOSED);
    lmc_model_info in;
    CHECK(lmc_model_get_info(m, &in) == LMC_ERR_CLOSED);
    lmc_model_close(m);
    lmc_model_free(m);
    char *log = read_log();
    CHECK(strstr(log, "\"type\": \"shutdown\"") != NULL);
    free(log);

    /* A bridge that ignores shutdown, end of input and SIGTERM is killed. */
    CHECK(load_mock("stubborn", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    lmc_subprocess_set_timeout(m, 1);
    pid = lmc_subprocess_pid(m);
    t0 = now();
    lmc_model_free(m);
    double took = now() - t0;
    CHECKF(took >= 1.5 && took < 4.0, "took %.2f s", took); /* 1 s grace, 1 s after SIGTERM, then SIGKILL */
    CHECK(pid_gone(pid) && no_children());
}

/* --- faults -------------------------------------------------------------------------- */

typedef enum { AT_LOAD, AT_INFO, AT_GENERATE } phase;

/* Python may take a second or two to start on a busy machine: the bridge
 * gets 30 s for that, and 1 s where the fault under test is a hang. */
static void check_fault(const char *fault, phase at, lmc_status want, const char *needle1, const char *needle2) {
    double timeout = 1;
    lmc_model *m = NULL;
    double t0 = now();
    lmc_status st = load_mock(fault, strcmp(fault, "hang_start") ? 30 : timeout, NULL, &m);
    pid_t pid = lmc_subprocess_pid(m);
    if (at != AT_LOAD) {
        CHECKF(st == LMC_OK, "%s: load: %s", fault, lmc_last_error());
        if (!m) return;
        lmc_subprocess_set_timeout(m, timeout);
        t0 = now();
        if (at == AT_INFO) {
            lmc_model_info in;
            st = lmc_model_get_info(m, &in);
        } else {
            lmc_generate_options o = greedy(100);
            lmc_generation out;
            st = lmc_generate(m, "hello world", &o, &out);
            CHECKF(out.stop_reason == LMC_STOP_ERROR, "%s: stop reason %d", fault, out.stop_reason);
            lmc_generation_clear(&out);
        }
    }
    double took = now() - t0;
    const char *msg = lmc_last_error();
    CHECKF(st == want, "%s: status %d, want %d: %s", fault, st, want, msg);
    CHECKF(strstr(msg, needle1) != NULL, "%s: no \"%s\" in: %s", fault, needle1, msg);
    CHECKF(strstr(msg, needle2) != NULL, "%s: no \"%s\" in: %s", fault, needle2, msg);
    /* (A bridge that hangs may not have got to its first stderr line on a slow machine.) */
    if (want != LMC_ERR_INVALID_ARGUMENT)
        CHECKF(strstr(msg, strcmp(fault, "hang_start") ? "its stderr ends with:" : "stderr") != NULL, "%s: %s", fault,
               msg);
    CHECKF(at == AT_LOAD || took < timeout + 2.5, "%s: took %.2f s", fault, took);
    CHECKF(took < 30 + 2.5, "%s: took %.2f s", fault, took);
    if (m && want != LMC_ERR_INVALID_ARGUMENT) {
        /* The model stays unusable, with the reason; the child is gone. */
        CHECK(lmc_subprocess_pid(m) == 0 && pid_gone(pid));
        lmc_model_info in;
        CHECK(lmc_model_get_info(m, &in) == LMC_ERR_IO);
        CHECKF(strstr(lmc_last_error(), "no longer usable") && strstr(lmc_last_error(), needle1), "%s",
               lmc_last_error());
    }
    lmc_model_free(m);
    CHECKF(no_children(), "%s left a child", fault);
    CHECKF(lmc_usable(), "%s: lmc unusable afterwards", fault);
}

static void test_faults(void) {
    check_fault("fail_start", AT_LOAD, LMC_ERR_IO, "exited with status 1", "cannot start (fault fail_start)");
    check_fault("hang_start", AT_LOAD, LMC_ERR_IO, "(timeout)", "hello");
    check_fault("bad_version", AT_LOAD, LMC_ERR_UNSUPPORTED, "protocol version 99", "mock bridge: started");
    check_fault("exit_early", AT_LOAD, LMC_ERR_IO, "exited with status 3", "giving up before loading");
    check_fault("noise", AT_LOAD, LMC_ERR_FORMAT, "not protocol JSON", "Loading checkpoint shards");
    check_fault("unexpected", AT_INFO, LMC_ERR_FORMAT, "unexpected message", "banana");
    check_fault("error_generate", AT_GENERATE, LMC_ERR_INVALID_ARGUMENT, "bridge error", "simulated model error");
    check_fault("crash_mid_stream", AT_GENERATE, LMC_ERR_IO, "was killed by signal 11", "simulated crash");
    check_fault("hang_mid_stream", AT_GENERATE, LMC_ERR_IO, "(timeout)", "hanging (fault hang_mid_stream)");
    check_fault("malformed", AT_GENERATE, LMC_ERR_FORMAT, "malformed JSON", "{\"type\":\"token\",\"id\":3,\"token\":");
    check_fault("oversized", AT_GENERATE, LMC_ERR_FORMAT, "oversized line", "mock bridge: started");
}

static void test_ignored_cancel(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("ignore_cancel", 30, "MOCK_BRIDGE_DELAY=0.02", &m) == LMC_OK);
    if (!m) return;
    lmc_subprocess_set_timeout(m, 1);
    pid_t pid = lmc_subprocess_pid(m);
    collect c = {.stop_after = 2};
    lmc_generate_options o = greedy(1000);
    o.ignore_eos = true;
    o.on_token = on_token;
    o.user = &c;
    lmc_generation out;
    double t0 = now();
    lmc_status st = lmc_generate(m, "abcdefgh", &o, &out);
    CHECKF(st == LMC_ERR_IO && strstr(lmc_last_error(), "did not acknowledge a cancel within 1 s"), "%d %s", st,
           lmc_last_error());
    CHECKF(now() - t0 < 3.5, "took %.2f s", now() - t0);
    CHECK(out.stop_reason == LMC_STOP_ERROR);
    lmc_generation_clear(&out);
    CHECK(pid_gone(pid));
    lmc_model_free(m);
    CHECK(no_children() && lmc_usable());
}

/* stderr is drained while lmc waits (200 KiB do not block the bridge) and
 * only its end is kept for messages. */
static void test_stderr_tail(void) {
    lmc_model *m = NULL;
    CHECK(load_mock("stderr_flood", 30, NULL, &m) == LMC_OK);
    if (!m) return;
    pid_t pid = lmc_subprocess_pid(m);
    kill(pid, SIGKILL);
    lmc_generate_options o = greedy(5);
    lmc_generation out;
    CHECK(lmc_generate(m, "x", &o, &out) == LMC_ERR_IO);
    const char *msg = lmc_last_error();
    CHECKF(strstr(msg, "killed by signal 9") != NULL, "%s", msg);
    CHECK(strstr(msg, "mock bridge: end of stderr flood") != NULL);
    CHECK(strstr(msg, "flood line 0199") != NULL && strstr(msg, "flood line 0100") == NULL);
    CHECK(strlen(msg) < LMC_STDERR_TAIL + 2048);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    CHECK(no_children());
}

/* --- the process layer ------------------------------------------------------------------ */

static void test_sigpipe(void) {
    char *argv[] = {"sh", "-c", "exit 0", NULL};
    lmc_child c;
    CHECK(lmc_child_spawn(&c, argv, NULL, 0) == LMC_OK);
    CHECK(lmc_child_wait(&c, 10));
    /* The reader is gone: the write fails with EOF instead of killing us. */
    CHECK(lmc_child_write_line(&c, "{}", 2, 1) == LMC_CHILD_EOF);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    char how[128];
    lmc_child_describe_exit(&c, how, sizeof how);
    CHECK_STR(how, "exited with status 0");
    lmc_child_stop(&c, 0);
    CHECK(no_children());
}

static void test_path_of_child_environment(void) {
    /* The program is looked up in the PATH the child gets (a venv's bin/, say). */
    char path_env[4096];
    snprintf(path_env, sizeof path_env, "PATH=%s:%s", BRIDGES, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    const char *env[] = {path_env, "MOCK_BRIDGE_FAULT="};
    lmc_load_options o = lmc_load_options_default();
    o.backend = "subprocess";
    o.bridge = "mock_bridge.py";
    o.bridge_env = env;
    o.n_bridge_env = 2;
    o.bridge_timeout = 30;
    lmc_model *m = NULL;
    CHECKF(lmc_model_load(MODEL_DIR, &o, &m) == LMC_OK, "%s", lmc_last_error());
    lmc_model_free(m);
    o.n_bridge_env = 0;
    CHECK(lmc_model_load(MODEL_DIR, &o, &m) == LMC_ERR_NOT_FOUND);
    CHECK(no_children());
}

/* --- the CLI ------------------------------------------------------------------------------ */

static int run_cli(const char *args, char *out, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/lmc' %s 2>&1", LMC_BUILD_DIR, args);
    return run_command(cmd, out, cap);
}

/* The protocol's lines without a process: each message read, each event
 * made of it; the bridge's words in a fault are quoted printable. */
static void test_parse_lines(void) {
    char why[512], why2[256];
    static const char tok[] = "{\"type\": \"token\", \"id\": 7, \"token\": 42, \"text\": \"hi\"}";
    cJSON *m = lmc_bridge_parse_line(tok, sizeof tok - 1, 7, "the next token", why, sizeof why);
    lmc_backend_event ev;
    bool is_fault = true;
    CHECK(m && lmc_bridge_stream_event(m, 7, &ev, &is_fault, why2, sizeof why2) == LMC_OK && !is_fault);
    CHECK(ev.id == 42 && !ev.done && ev.len == 2 && !strcmp(ev.text, "hi"));
    cJSON_Delete(m);
    /* another request's token, a log line on stdout: faults quoting the line */
    CHECK(!lmc_bridge_parse_line(tok, sizeof tok - 1, 8, "the next token", why, sizeof why));
    CHECKF(strstr(why, "unexpected message") && strstr(why, "(request 8)"), "%s", why);
    CHECK(!lmc_bridge_parse_line("Loading\x1b[0m", 11, 7, "the next token", why, sizeof why));
    CHECKF(strstr(why, "not protocol JSON") && strstr(why, "Loading\\x1b[0m"), "%s", why);
    /* the end, with its reason and metrics */
    static const char done[] = "{\"type\": \"done\", \"id\": 7, \"stop_reason\": \"max_tokens\", \"metrics\": {\"prompt_tokens\": 5}}";
    m = lmc_bridge_parse_line(done, sizeof done - 1, 7, "the next token", why, sizeof why);
    CHECK(m && lmc_bridge_stream_event(m, 7, &ev, &is_fault, why2, sizeof why2) == LMC_OK && !is_fault);
    CHECK(ev.done && ev.stop_reason == LMC_STOP_MAX_TOKENS && ev.metrics.prompt_tokens == 5);
    cJSON_Delete(m);
    /* an anonymous error is the bridge's own, not a fault */
    static const char err[] = "{\"type\": \"error\", \"code\": \"not_found\", \"message\": \"no such model\"}";
    m = lmc_bridge_parse_line(err, sizeof err - 1, 7, "the next token", why, sizeof why);
    CHECK(m && lmc_bridge_stream_event(m, 7, &ev, &is_fault, why2, sizeof why2) == LMC_ERR_NOT_FOUND && !is_fault);
    CHECKF(strstr(lmc_last_error(), "bridge error (generate): no such model"), "%s", lmc_last_error());
    cJSON_Delete(m);
    /* a type with control characters: quoted escaped */
    static const char odd[] = "{\"type\": \"lo\\u001b[2Jaded\", \"id\": 7}";
    m = lmc_bridge_parse_line(odd, sizeof odd - 1, 7, "the next token", why, sizeof why);
    CHECK(m && lmc_bridge_stream_event(m, 7, &ev, &is_fault, why2, sizeof why2) == LMC_ERR_FORMAT && is_fault);
    CHECKF(strstr(why2, "unexpected \"lo\\x1b[2Jaded\" message"), "%s", why2);
    cJSON_Delete(m);
    static const char neg[] = "{\"type\": \"token\", \"id\": 7, \"token\": -3}";
    m = lmc_bridge_parse_line(neg, sizeof neg - 1, 7, "the next token", why, sizeof why);
    CHECK(m && lmc_bridge_stream_event(m, 7, &ev, &is_fault, why2, sizeof why2) == LMC_ERR_FORMAT && is_fault);
    CHECKF(strstr(why2, "without a valid \"token\" id"), "%s", why2);
    cJSON_Delete(m);
}

static void test_cli(void) {
    char out[16384], args[1024];
    const char *bridge = "--bridge \"python3 '" BRIDGES "/mock_bridge.py'\" -m '" LMC_TEST_DATA "'";
    snprintf(args, sizeof args, "generate --backend subprocess %s -p 'hello there'", bridge);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECKF(strstr(out, "hello there") != NULL, "%s", out);
    snprintf(args, sizeof args, "generate %s --max-tokens 4 --json -p 'hello there'", bridge);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECKF(strstr(out, "\"text\":\"hell\"") && strstr(out, "\"stop_reason\":\"max_tokens\""), "%s", out);
    snprintf(args, sizeof args, "chat %s --message hi", bridge);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECKF(strstr(out, "<|user|>hi") != NULL, "%s", out);
    snprintf(args, sizeof args, "info %s --json", bridge);
    CHECK(run_cli(args, out, sizeof out) == 0);
    CHECKF(strstr(out, "\"architecture\":\"mock\"") != NULL, "%s", out);
    snprintf(args, sizeof args, "generate %s --bridge-env MOCK_BRIDGE_FAULT=crash_mid_stream -p 'hello'", bridge);
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECKF(strstr(out, "lmc generate: bridge") && strstr(out, "killed by signal 11") && strstr(out, "simulated crash"),
           "%s", out);
    double t0 = now();
    snprintf(args, sizeof args, "generate %s --bridge-timeout 1 --bridge-env MOCK_BRIDGE_FAULT=hang_start -p x", bridge);
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECKF(now() - t0 < 4.0 && strstr(out, "(timeout)"), "%.2f s: %s", now() - t0, out);
    snprintf(args, sizeof args, "generate --bridge 'python3 \"unterminated' -m . -p x");
    CHECK(run_cli(args, out, sizeof out) == 1);
    CHECKF(strstr(out, "unterminated double quote") != NULL, "%s", out);
    snprintf(args, sizeof args, "generate --backend nope -m . -p x");
    CHECK(run_cli(args, out, sizeof out) == 2);
    snprintf(args, sizeof args, "generate %s --bridge-env NOVALUE -p x", bridge);
    CHECK(run_cli(args, out, sizeof out) == 2);
}

int main(void) {
    snprintf(g_log, sizeof g_log, "/tmp/lmc-test-subprocess-%d.log", (int)getpid());
    RUN(test_registry);
    RUN(test_option_errors);
    RUN(test_generate_text);
    RUN(test_generate_ids_and_pull_stream);
    RUN(test_stop_rules);
    RUN(test_context_and_info);
    RUN(test_chat);
    RUN(test_unsupported);
    RUN(test_sampling_forwarded);
    RUN(test_cancel_from_callback);
    RUN(test_cancel_from_another_thread);
    RUN(test_close);
    RUN(test_faults);
    RUN(test_ignored_cancel);
    RUN(test_stderr_tail);
    RUN(test_sigpipe);
    RUN(test_path_of_child_environment);
    RUN(test_parse_lines);
    RUN(test_cli);
    clear_log();
    return TEST_REPORT();
}
