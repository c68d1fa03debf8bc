/* The OpenAI-compatible server (lmc/server.h), in-process on a free port,
 * over plain sockets: every answer is checked against the library call that
 * should produce it (lmc_chat / lmc_generate on the same model, prompt cache
 * off there) and every refusal for its status and the field it names. The
 * model is tiny-qwen3 (random weights, Qwen 3's real tokenizer and chat
 * template), made with `lmc make-model`. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "test_util.h"

static lmc_model *g_model;
static lmc_server *g_server;
static int g_port;
static const char *g_mdir;  /* the model's folder */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- a small HTTP/1.1 client --------------------------------------------------------- */

typedef struct reply {
    int status;
    char *head;               /* status line and headers */
    char *body; size_t len;   /* de-chunked */
} reply;

static void reply_free(reply *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Opens a connection and sends one request (Connection: close); extra
 * holds more header lines ("Name: value\r\n"...), or NULL. */
static int send_request_with(const char *method, const char *path, const char *body, const char *extra) {
    int fd = dial(g_port);
    if (fd < 0) return -1;
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n%s\r\n",
             method, path, blen, extra ? extra : "");
    if (!send_all(fd, head, strlen(head)) || !send_all(fd, body ? body : "", blen)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_request(const char *method, const char *path, const char *body) {
    return send_request_with(method, path, body, NULL);
}

/* Decodes a chunked body in place; false when malformed. */
static bool dechunk(char *b, size_t *len) {
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (end == b + in || !crlf) return false;
        in = (size_t)(crlf - b) + 2;
        if (n == 0) break;
        if (in + n + 2 > *len) return false;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
    *len = out;
    b[out] = 0;
    return true;
}

/* Reads a whole reply (until the server closes the connection). */
static bool read_reply(int fd, reply *r) {
    memset(r, 0, sizeof *r);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return false;
    }
    r->head = strndup(buf, (size_t)(sep - buf));
    r->len = n - (size_t)(sep + 4 - buf);
    r->body = malloc(r->len + 1);
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = 0;
    free(buf);
    if (strcasestr(r->head, "transfer-encoding: chunked") && !dechunk(r->body, &r->len)) return false;
    return true;
}

static reply http_with(const char *method, const char *path, const char *body, const char *extra) {
    reply r = {0};
    int fd = send_request_with(method, path, body, extra);
    if (fd < 0 || !read_reply(fd, &r)) r.status = -1;
    return r;
}

static reply http(const char *method, const char *path, const char *body) {
    reply r = {0};
    int fd = send_request(method, path, body);
    if (fd < 0 || !read_reply(fd, &r)) r.status = -1;
    return r;
}

/* The body as JSON (NULL when it is not). */
static cJSON *json_of(const reply *r) { return r->body ? cJSON_Parse(r->body) : NULL; }

static const cJSON *at(const cJSON *o, const char *path) {
    /* "a.b.0.c": object keys and array indices */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); o && tok; tok = strtok(NULL, "."))
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(tok)) : cJSON_GetObjectItemCaseSensitive(o, tok);
    return o;
}

static const char *str_at(const cJSON *o, const char *path) {
    const cJSON *v = at(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_at(const cJSON *o, const char *path) {
    const cJSON *v = at(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The "data:" payloads of an event stream, in order (count in *n). */
static char **sse_events(const char *body, int *n) {
    char **ev = NULL;
    *n = 0;
    for (const char *p = body; p && *p;) {
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        if (!strncmp(p, "data: ", 6)) {
            ev = realloc(ev, (size_t)(*n + 1) * sizeof *ev);
            ev[(*n)++] = strndup(p + 6, (size_t)(end - p - 6));
        }
        p = end + 2;
    }
    return ev;
}

static void events_free(char **ev, int n) {
    for (int i = 0; i < n; i++) free(ev[i]);
    free(ev);
}

/* --- reference results ---------------------------------------------------------------- */

static lmc_generate_options greedy(int max_tokens) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.max_tokens = max_tokens;
    o.prompt_cache = false; /* the server's cache stays as the server left it */
    return o;
}

static lmc_generation ref_chat(const lmc_message *msgs, size_t n, const lmc_generate_options *o) {
    lmc_generation g;
    CHECKF(lmc_chat(g_model, msgs, n, o, &g) == LMC_OK, "%s", lmc_last_error());
    return g;
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_health_and_models(void) {
    reply r = http("GET", "/health", NULL);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j && !strcmp(str_at(j, "status"), "ok"), "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = http("GET", "/v1/models", NULL);
    j = json_of(&r);
    CHECK(r.status == 200 && strstr(r.head, "application/json"));
    CHECK_STR(str_at(j, "object"), "list");
    CHECK_STR(str_at(j, "data.0.id"), "m"); /* the folder's base name */
    CHECK_STR(str_at(j, "data.0.object"), "model");
    CHECK(cJSON_GetArraySize(at(j, "data")) == 1);
    cJSON_Delete(j);
    reply_free(&r);
    r = http("GET", "/v1/models/m", NULL);
    CHECK(r.status == 200);
    reply_free(&r);
    r = http("GET", "/v1/models/other", NULL);
    CHECK(r.status == 404);
    reply_free(&r);
}

/* The value of a metric line "NAME VALUE" (or "NAME{labels} VALUE") in a
 * Prometheus text body; -1 when absent. */
static double metric(const char *body, const char *name) {
    size_t n = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ' ' || p[n] == '{')) {
            const char *v = strchr(p + n, ' ');
            return v ? strtod(v + 1, NULL) : -1;
        }
    return -1;
}

/* /metrics counts what the generation endpoints did. */
static void test_metrics(void) {
    reply r = http("GET", "/metrics", NULL);
    CHECKF(r.status == 200 && r.head && strstr(r.head, "text/plain"), "%d", r.status);
    double req0 = r.body ? metric(r.body, "lmc_requests_total") : -1, gen0 = r.body ? metric(r.body, "lmc_generations_total") : -1;
    double pt0 = r.body ? metric(r.body, "lmc_prompt_tokens_total") : -1, gt0 = r.body ? metric(r.body, "lmc_generated_tokens_total") : -1;
    CHECK(req0 >= 0 && gen0 >= 0 && pt0 >= 0 && gt0 >= 0);
    CHECK(r.body && strstr(r.body, "# TYPE lmc_generated_tokens_total counter"));
    CHECK(r.body && metric(r.body, "lmc_requests_waiting") == 0 && metric(r.body, "lmc_memory_active_bytes") > 0);
    reply_free(&r);
    r = http("POST", "/v1/completions", "{\"prompt\": \"Once upon\", \"max_tokens\": 5, \"temperature\": 0}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    double pt = num_at(j, "usage.prompt_tokens"), gt = num_at(j, "usage.completion_tokens");
    cJSON_Delete(j);
    reply_free(&r);
    r = http("GET", "/v1/nothing", NULL); /* an error */
    reply_free(&r);
    r = http("GET", "/metrics", NULL);
    CHECK(r.status == 200 && r.body);
    if (r.body) {
        CHECKF(metric(r.body, "lmc_requests_total") == req0 + 3, "%g requests after %g", metric(r.body, "lmc_requests_total"), req0);
        CHECK(metric(r.body, "lmc_generations_total") == gen0 + 1);
        CHECK(metric(r.body, "lmc_prompt_tokens_total") == pt0 + pt);
        CHECK(metric(r.body, "lmc_generated_tokens_total") == gt0 + gt && gt == 5);
        CHECK(metric(r.body, "lmc_request_errors_total") >= 1);
        CHECK(metric(r.body, "lmc_generation_seconds_total") > 0);
    }
    reply_free(&r);
}

static void test_chat_matches_lmc_chat(void) {
    lmc_message msgs[2] = {{"system", "Be brief."}, {"user", "Hello there"}};
    lmc_generate_options o = greedy(12);
    lmc_generation ref = ref_chat(msgs, 2, &o);
    const char *body = "{\"model\":\"whatever\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":\"Hello there\"}],\"temperature\":0,\"max_tokens\":12}";
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "object"), "chat.completion");
    CHECK(str_at(j, "id") && !strncmp(str_at(j, "id"), "chatcmpl-", 9));
    CHECK_STR(str_at(j, "model"), "m");
    CHECK_STR(str_at(j, "choices.0.message.role"), "assistant");
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), ref.stop_reason == LMC_STOP_MAX_TOKENS ? "length" : "stop");
    CHECK(num_at(j, "usage.completion_tokens") == (double)ref.n_ids);
    CHECK(num_at(j, "usage.prompt_tokens") == (double)ref.metrics.prompt_tokens);
    CHECK(num_at(j, "usage.total_tokens") == (double)(ref.metrics.prompt_tokens + (int64_t)ref.n_ids));
    cJSON_Delete(j);
    reply_free(&r);

    /* The next turn of the conversation: the server's prompt cache holds the
     * first one, so only the new tokens are computed; the answer is the one
     * lmc_chat computes from scratch. */
    lmc_message turn2[4] = {msgs[0], msgs[1], {"assistant", ref.text}, {"user", "And then?"}};
    lmc_generation ref2 = ref_chat(turn2, 4, &o);
    cJSON *req = cJSON_Parse(body);
    cJSON *arr = cJSON_GetObjectItem(req, "messages");
    cJSON *a = cJSON_CreateObject(), *u = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "role", "assistant");
    cJSON_AddStringToObject(a, "content", ref.text);
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", "And then?");
    cJSON_AddItemToArray(arr, a);
    cJSON_AddItemToArray(arr, u);
    char *body2 = cJSON_PrintUnformatted(req);
    r = http("POST", "/v1/chat/completions", body2);
    j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref2.text);
    CHECK(num_at(j, "usage.prompt_tokens") == (double)ref2.metrics.prompt_tokens);
    double cached = num_at(j, "usage.prompt_tokens_details.cached_tokens");
    CHECKF(cached > ref.metrics.prompt_tokens && cached < ref2.metrics.prompt_tokens, "cached %g of %lld", cached,
           (long long)ref2.metrics.prompt_tokens);
    CHECK(num_at(j, "lmc.cached_prompt_tokens") == cached);
    cJSON_Delete(j);
    reply_free(&r);
    free(body2);
    cJSON_Delete(req);
    lmc_generation_clear(&ref);
    lmc_generation_clear(&ref2);
}

/* Streams a request; returns the concatenated content (malloc'd) and checks
 * the event shapes. finish gets the last chunk's finish_reason. */
static char *stream_text(const char *path, const char *body, bool chat, char *finish, size_t fcap, cJSON **usage) {
    reply r = http("POST", path, body);
    CHECKF(r.status == 200 && r.head && strstr(r.head, "text/event-stream"), "%d %s", r.status, r.body);
    int n;
    char **ev = sse_events(r.body ? r.body : "", &n);
    CHECKF(n >= 2 && !strcmp(ev[n - 1], "[DONE]"), "%d events, body %s", n, r.body);
    size_t cap = 1, len = 0;
    char *text = calloc(1, cap);
    finish[0] = 0;
    if (usage) *usage = NULL;
    for (int i = 0; i + 1 < n; i++) {
        cJSON *c = cJSON_Parse(ev[i]);
        CHECKF(c != NULL, "event %d: %s", i, ev[i]);
        CHECK_STR(str_at(c, "object"), chat ? "chat.completion.chunk" : "text_completion");
        if (chat && i == 0) CHECK_STR(str_at(c, "choices.0.delta.role"), "assistant");
        const char *piece = str_at(c, chat ? "choices.0.delta.content" : "choices.0.text");
        if (piece) {
            text = realloc(text, cap += strlen(piece));
            memcpy(text + len, piece, strlen(piece) + 1);
            len += strlen(piece);
        }
        const char *fr = str_at(c, "choices.0.finish_reason");
        if (fr) {
            CHECKF(!finish[0], "two chunks with a finish_reason");
            snprintf(finish, fcap, "%s", fr);
        }
        if (at(c, "usage") && usage) *usage = cJSON_Duplicate(c, true);
        else CHECK(!at(c, "usage"));
        cJSON_Delete(c);
    }
    events_free(ev, n);
    reply_free(&r);
    return text;
}

static void test_chat_stream(void) {
    lmc_message msgs[1] = {{"user", "Tell me a story"}};
    lmc_generate_options o = greedy(10);
    lmc_generation ref = ref_chat(msgs, 1, &o);
    char finish[32];
    cJSON *usage;
    char *text = stream_text("/v1/chat/completions",
                             "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"temperature\":0,"
                             "\"max_completion_tokens\":10,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                             true, finish, sizeof finish, &usage);
    CHECK_STR(text, ref.text);
    CHECK_STR(finish, "length");
    CHECK(usage && cJSON_GetArraySize(at(usage, "choices")) == 0);
    CHECK(num_at(usage, "usage.completion_tokens") == 10 && ref.n_ids == 10);
    CHECK(num_at(usage, "usage.prompt_tokens") == (double)ref.metrics.prompt_tokens);
    cJSON_Delete(usage);
    free(text);
    /* Without include_usage there is no usage chunk. */
    text = stream_text("/chat/completions", /* the route without /v1 works too */
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"temperature\":0,"
                       "\"max_tokens\":10,\"stream\":true}",
                       true, finish, sizeof finish, NULL);
    CHECK_STR(text, ref.text);
    free(text);
    lmc_generation_clear(&ref);
}

/* "logprobs": the chat form (whole and streamed) and the completions'
 * legacy form carry lmc_generate's log-probabilities for the same tokens. */
static void check_lp_entry(const cJSON *e, int32_t id, float lp, const char *where) {
    char *text = NULL;
    size_t len = 0;
    CHECK(lmc_tokenizer_decode(lmc_model_tokenizer(g_model), &id, 1, false, &text, &len) == LMC_OK);
    CHECKF(text && str_at(e, "token") && !strcmp(str_at(e, "token"), text), "%s: token '%s', expected '%s'", where,
           str_at(e, "token") ? str_at(e, "token") : "(none)", text ? text : "");
    CHECK_CLOSE(num_at(e, "logprob"), lp, 1e-4, 0);
    /* "bytes": the token's own bytes (lmc_tokenizer_token_bytes), not its text's */
    char *raw = NULL;
    CHECK(lmc_tokenizer_token_bytes(lmc_model_tokenizer(g_model), id, &raw, &len) == LMC_OK);
    const cJSON *b = at(e, "bytes");
    CHECK(cJSON_IsArray(b) && (size_t)cJSON_GetArraySize(b) == len);
    for (size_t i = 0; raw && cJSON_IsArray(b) && i < len; i++)
        CHECK(cJSON_GetArrayItem(b, (int)i)->valuedouble == (unsigned char)raw[i]);
    lmc_tokenizer_free_text(raw);
    lmc_tokenizer_free_text(text);
}

static void check_chat_logprobs(const cJSON *content, const lmc_generation *ref, const char *where) {
    CHECKF(cJSON_IsArray(content) && (size_t)cJSON_GetArraySize(content) == ref->n_ids, "%s: %d entries for %zu tokens",
           where, cJSON_GetArraySize(content), ref->n_ids);
    for (size_t i = 0; cJSON_IsArray(content) && i < ref->n_ids; i++) {
        const cJSON *e = cJSON_GetArrayItem(content, (int)i);
        check_lp_entry(e, ref->ids[i], ref->logprobs[i], where);
        const cJSON *top = at(e, "top_logprobs");
        CHECK(cJSON_GetArraySize(top) == 3);
        for (int j = 0; j < 3 && j < cJSON_GetArraySize(top); j++)
            check_lp_entry(cJSON_GetArrayItem(top, j), ref->top_logprobs[i * 3 + (size_t)j].id,
                           ref->top_logprobs[i * 3 + (size_t)j].logprob, where);
    }
}

static void test_logprobs(void) {
    lmc_message msgs[1] = {{"user", "Count to five"}};
    lmc_generate_options o = greedy(8);
    o.logprobs = true;
    o.top_logprobs = 3;
    lmc_generation ref = ref_chat(msgs, 1, &o);
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Count to five\"}],\"temperature\":0,"
                       "\"max_tokens\":8,\"logprobs\":true,\"top_logprobs\":3%s}";
    char req[512];
    snprintf(req, sizeof req, body, "");
    reply r = http("POST", "/v1/chat/completions", req);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    check_chat_logprobs(at(j, "choices.0.logprobs.content"), &ref, "chat");
    CHECK(cJSON_IsNull(at(j, "choices.0.logprobs.refusal")));
    cJSON_Delete(j);
    reply_free(&r);

    /* streamed: the chunks' entries together are the same list; the role chunk has none */
    snprintf(req, sizeof req, body, ",\"stream\":true");
    r = http("POST", "/v1/chat/completions", req);
    int n;
    char **ev = sse_events(r.body ? r.body : "", &n);
    cJSON *all = cJSON_CreateArray();
    for (int i = 0; i + 1 < n; i++) {
        cJSON *c = cJSON_Parse(ev[i]);
        const cJSON *content = at(c, "choices.0.logprobs.content");
        if (i == 0) CHECK(cJSON_IsNull(at(c, "choices.0.logprobs")));
        for (const cJSON *e = cJSON_IsArray(content) ? content->child : NULL; e; e = e->next)
            cJSON_AddItemToArray(all, cJSON_Duplicate(e, true));
        cJSON_Delete(c);
    }
    check_chat_logprobs(all, &ref, "chat stream");
    cJSON_Delete(all);
    events_free(ev, n);
    reply_free(&r);
    lmc_generation_clear(&ref);

    /* completions, legacy form: "logprobs": 2 */
    o.top_logprobs = 2;
    lmc_generation ref2;
    CHECK(lmc_generate(g_model, "One, two,", &o, &ref2) == LMC_OK);
    r = http("POST", "/v1/completions",
             "{\"prompt\":\"One, two,\",\"temperature\":0,\"max_tokens\":8,\"logprobs\":2}");
    j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    const cJSON *toks = at(j, "choices.0.logprobs.tokens"), *lps = at(j, "choices.0.logprobs.token_logprobs");
    const cJSON *tops = at(j, "choices.0.logprobs.top_logprobs");
    CHECK((size_t)cJSON_GetArraySize(toks) == ref2.n_ids && (size_t)cJSON_GetArraySize(lps) == ref2.n_ids &&
          (size_t)cJSON_GetArraySize(tops) == ref2.n_ids);
    for (size_t i = 0; i < ref2.n_ids && (size_t)cJSON_GetArraySize(lps) == ref2.n_ids; i++) {
        CHECK_CLOSE(cJSON_GetArrayItem(lps, (int)i)->valuedouble, ref2.logprobs[i], 1e-4, 0);
        const cJSON *t = cJSON_GetArrayItem(tops, (int)i);
        CHECK(cJSON_GetArraySize(t) >= 1 && cJSON_GetArraySize(t) <= 2);
        CHECK_CLOSE(t->child ? t->child->valuedouble : 1, ref2.top_logprobs[i * 2].logprob, 1e-4, 0);
    }
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref2);
}

/* A token that is part of a character: its "bytes" are that part (a
 * logit_bias of 100 makes the byte-level token for 0xE6 the reply). */
static void test_logprob_bytes(void) {
    int32_t id = lmc_tokenizer_token_to_id(lmc_model_tokenizer(g_model), "\xC3\xA6"); /* GPT-2's character for byte 0xE6 */
    CHECK(id >= 0);
    char body[512];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":0,\"max_tokens\":1,\"logprobs\":true,"
             "\"logit_bias\":{\"%d\":100}}",
             id);
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    const cJSON *e = at(j, "choices.0.logprobs.content.0");
    CHECK_STR(str_at(e, "token"), "\xEF\xBF\xBD");
    const cJSON *b = at(e, "bytes");
    CHECKF(cJSON_GetArraySize(b) == 1 && cJSON_GetArrayItem(b, 0)->valuedouble == 0xE6, "%s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
}

/* tool_choice "required" / a named function: the reply is a call, whole and
 * streamed, that the server returns as tool_calls (finish_reason "tool_calls"). */
static void test_forced_tool_call(void) {
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
                        "\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"city\"]}}},"
                        "{\"type\":\"function\",\"function\":{\"name\":\"stop\"}}]";
    const char *choices[] = {"{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}", "\"required\""};
    for (int i = 0; i < 2; i++) {
        /* "required": a call of either tool, with that tool's parameters */
        const char *ts = tools;
        char body[4096];
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Paris?\"}],\"tools\":%s,"
                 "\"tool_choice\":%s,\"max_tokens\":300,\"seed\":%d}", ts, choices[i], i);
        reply r = http("POST", "/v1/chat/completions", body);
        cJSON *j = json_of(&r);
        CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
        CHECKF(!strcmp(str_at(j, "choices.0.finish_reason"), "tool_calls"), "%s", r.body);
        const cJSON *calls = at(j, "choices.0.message.tool_calls");
        CHECKF(cJSON_GetArraySize(calls) == 1, "%s", r.body);
        const char *name = str_at(j, "choices.0.message.tool_calls.0.function.name");
        const char *args = str_at(j, "choices.0.message.tool_calls.0.function.arguments");
        cJSON *a = args ? cJSON_Parse(args) : NULL;
        const cJSON *city = cJSON_GetObjectItemCaseSensitive(a, "city");
        if (i == 1 && name && !strcmp(name, "stop")) {
            CHECKF(cJSON_IsObject(a), "arguments %s", args ? args : "(none)"); /* no parameters: any object */
        } else {
            CHECK_STR(name, "get_weather");
            CHECKF(cJSON_GetArraySize(a) == 1 && cJSON_IsString(city), "arguments %s", args ? args : "(none)");
        }
        cJSON_Delete(a);
        cJSON_Delete(j);
        reply_free(&r);
        /* streamed: the call comes at the end, finish_reason "tool_calls" */
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Paris?\"}],\"tools\":%s,"
                 "\"tool_choice\":%s,\"max_tokens\":300,\"seed\":%d,\"stream\":true}", ts, choices[i], i);
        r = http("POST", "/v1/chat/completions", body);
        CHECKF(r.status == 200 && r.body && strstr(r.body, "\"finish_reason\":\"tool_calls\"") &&
                   (strstr(r.body, "\"name\":\"get_weather\"") || (i == 1 && strstr(r.body, "\"name\":\"stop\""))),
               "%d %s", r.status, r.body ? r.body : "");
        reply_free(&r);
    }
}

/* Tools: the request's tools and the conversation's calls and results reach
 * the model's template (the prompt is lmc_chat_json's), streamed and whole
 * replies agree, and what lmc cannot do is refused. */
static void test_tools(void) {
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    const char *msgs = "[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\",\"content\":null,"
                       "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                       "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
                       "\"content\":\"21 C\"}]";
    /* the reference: arguments as the object the string holds, content "" */
    const char *ref_msgs = "[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\",\"content\":\"\","
                           "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                           "\"arguments\":{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"21 C\"}]";
    lmc_generate_options o = greedy(6);
    lmc_generation ref;
    CHECK(lmc_chat_json(g_model, ref_msgs, tools, &o, &ref) == LMC_OK);
    char body[4096];
    snprintf(body, sizeof body, "{\"messages\":%s,\"tools\":%s,\"tool_choice\":\"auto\",\"temperature\":0,\"max_tokens\":6}",
             msgs, tools);
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    CHECK(num_at(j, "usage.prompt_tokens") == (double)ref.metrics.prompt_tokens);
    CHECK(num_at(j, "usage.completion_tokens") == (double)ref.n_ids);
    char *calls = NULL, *content = NULL;
    CHECK(lmc_model_tool_calls(g_model, ref.text, &calls, &content) == LMC_OK);
    const char *got = str_at(j, "choices.0.message.content");
    CHECKF(got && content && !strcmp(got, content), "content '%s', expected '%s'", got ? got : "(null)", content ? content : "");
    CHECK_STR(str_at(j, "choices.0.finish_reason"), calls ? "tool_calls" : "length");
    free(calls);
    free(content);
    cJSON_Delete(j);
    reply_free(&r);
    /* streamed: the same text (the ends may keep whitespace the whole reply trims) */
    snprintf(body, sizeof body, "{\"messages\":%s,\"tools\":%s,\"temperature\":0,\"max_tokens\":6,\"stream\":true}", msgs, tools);
    char finish[32];
    char *text = stream_text("/v1/chat/completions", body, true, finish, sizeof finish, NULL);
    size_t a = 0, b = text ? strlen(text) : 0;
    while (a < b && strchr(" \n\t\r", text[a])) a++;
    while (b > a && strchr(" \n\t\r", text[b - 1])) b--;
    CHECK(text != NULL);
    char *trimmed = text ? strndup(text + a, b - a) : NULL;
    char *ref_content = NULL, *ref_calls = NULL;
    CHECK(lmc_model_tool_calls(g_model, ref.text, &ref_calls, &ref_content) == LMC_OK);
    if (!ref_calls) CHECK_STR(trimmed, ref_content);
    free(ref_content);
    free(ref_calls);
    free(trimmed);
    free(text);
    lmc_generation_clear(&ref);
    /* refused */
    struct { const char *body, *param, *says; } bad[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools", "must be an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", "tools", "'tools[0]'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", "tool_choice", "no 'tools'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"always\"}", "tool_choice", "must be"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
         "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", "tool_choice.function.name", "'g'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
         "\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}", "tool_choice", "response_format"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
         "\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"maximum\":3}}}}}],"
         "\"tool_choice\":\"required\"}", "tools[0].function.parameters", "maximum"},
        /* "required" over several tools: each one's parameters apply */
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
         "{\"type\":\"function\",\"function\":{\"name\":\"g\",\"parameters\":{\"type\":\"object\",\"properties\":{\"s\":"
         "{\"type\":\"string\",\"pattern\":\"a\"}}}}}],\"tool_choice\":\"required\"}", "tools[1].function.parameters", "pattern"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", "messages[0]", "only for assistant"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{}}]}]}",
         "messages[0].tool_calls", "'messages[0].tool_calls[0]' must be"},
        {"{\"messages\":[{\"role\":\"tool\"}]}", "messages[0].content", "must be a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{\"name\":\"f\"}]}", "functions", "send 'tools'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = http("POST", "/v1/chat/completions", bad[i].body);
        j = json_of(&r);
        CHECKF(r.status == 400, "case %zu: %d %s", i, r.status, r.body);
        const char *msg = str_at(j, "error.message"), *param = str_at(j, "error.param");
        CHECKF(msg && strstr(msg, bad[i].says), "case %zu: '%s'", i, msg ? msg : "(none)");
        CHECKF(param && !strcmp(param, bad[i].param), "case %zu: param '%s'", i, param ? param : "(none)");
        cJSON_Delete(j);
        reply_free(&r);
    }
    /* tool_choice "none": the tools are not offered (the plain conversation's prompt) */
    lmc_message plain[1] = {{"user", "Weather in Paris?"}};
    lmc_generation p0 = ref_chat(plain, 1, &o);
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],\"tools\":%s,"
             "\"tool_choice\":\"none\",\"temperature\":0,\"max_tokens\":6}", tools);
    r = http("POST", "/v1/chat/completions", body);
    j = json_of(&r);
    CHECKF(r.status == 200 && num_at(j, "usage.prompt_tokens") == (double)p0.metrics.prompt_tokens, "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&p0);
}

/* response_format json_schema `schema` (extra: more members of the
 * json_schema object) gives 200 and the reply lmc_chat makes with that
 * schema. */
static void schema_reply_as_chat(const char *schema, const char *extra) {
    lmc_message msgs[1] = {{"user", "A cat as JSON"}};
    lmc_generate_options os = greedy(40);
    os.json_schema = schema;
    lmc_generation refs = ref_chat(msgs, 1, &os);
    CHECK(refs.n_ids > 0);
    char body[4096];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"A cat as JSON\"}],\"temperature\":0,\"max_tokens\":40,"
             "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"cat\",%s\"schema\":%s}}}",
             extra, schema);
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), refs.text);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&refs);
}

/* "response_format": {"type": "json_object"} is JSON mode and
 * {"type": "json_schema"} follows a schema (lmc_chat with json_object or
 * json_schema makes the same reply); bad schemas and other types are
 * refused. */
static void test_json_mode(void) {
    lmc_message msgs[1] = {{"user", "A cat as JSON"}};
    lmc_generate_options o = greedy(40);
    o.json_object = true;
    lmc_generation ref = ref_chat(msgs, 1, &o);
    /* a random model idles in white space first: what follows it opens the object */
    CHECK(ref.n_ids > 0 && ref.text && strchr("{", ref.text[strspn(ref.text, " \t\r\n")]));
    reply r = http("POST", "/v1/chat/completions",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"A cat as JSON\"}],\"temperature\":0,\"max_tokens\":40,"
                   "\"response_format\":{\"type\":\"json_object\"}}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), ref.stop_reason == LMC_STOP_MAX_TOKENS ? "length" : "stop");
    cJSON_Delete(j);
    reply_free(&r);
    /* json_schema: lmc_chat with the same schema makes the same reply */
    schema_reply_as_chat("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"},\"ok\":{\"type\":\"boolean\"}},"
                         "\"required\":[\"n\",\"ok\"]}", "\"strict\":true,");
    /* Pydantic's discriminated union ($refs, "discriminator"): taken */
    schema_reply_as_chat("{\"$defs\":{\"Cat\":{\"properties\":{\"name\":{\"type\":\"string\"},\"pet_type\":{\"const\":\"cat\"}},"
                         "\"required\":[\"pet_type\",\"name\"],\"type\":\"object\"},\"Dog\":{\"properties\":{\"pet_type\":"
                         "{\"const\":\"dog\"},\"barks\":{\"type\":\"number\"}},\"required\":[\"pet_type\",\"barks\"],"
                         "\"type\":\"object\"}},\"properties\":{\"pet\":{\"discriminator\":{\"propertyName\":\"pet_type\","
                         "\"mapping\":{\"cat\":\"#/$defs/Cat\",\"dog\":\"#/$defs/Dog\"}},\"oneOf\":[{\"$ref\":\"#/$defs/Cat\"},"
                         "{\"$ref\":\"#/$defs/Dog\"}]}},\"required\":[\"pet\"],\"type\":\"object\"}",
                         "");
    /* a schema lmc cannot follow, or no schema: 400 naming the place and the keyword */
    r = http("POST", "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
             "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\","
             "\"pattern\":\"^a\"}}}}}}");
    j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.param") &&
               !strcmp(str_at(j, "error.param"), "response_format.json_schema.schema"),
           "%d %s", r.status, r.body);
    CHECK(str_at(j, "error.message") && strstr(str_at(j, "error.message"), "/properties/a") &&
          strstr(str_at(j, "error.message"), "pattern"));
    cJSON_Delete(j);
    reply_free(&r);
    r = http("POST", "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
             "\"json_schema\":{\"name\":\"x\"}}}");
    j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.param") &&
               !strcmp(str_at(j, "error.param"), "response_format.json_schema.schema"),
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = http("POST", "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}");
    j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.param") && !strcmp(str_at(j, "error.param"), "response_format"), "%d %s", r.status,
           r.body);
    CHECK(str_at(j, "error.message") && strstr(str_at(j, "error.message"), "json_schema"));
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);
}

/* POST /v1/embeddings: lmc_embed's vectors, as floats or base64, cut by
 * "dimensions"; usage; errors that name the field. */
static void test_embeddings(void) {
    lmc_batch_prompt p[2] = {{.text = "Hello there"}, {.text = "General Kenobi"}};
    lmc_embed_options o = lmc_embed_options_default();
    lmc_embedding *ref = NULL;
    CHECK(lmc_embed(g_model, p, 2, &o, &ref, NULL) == LMC_OK && ref && ref[0].values && ref[1].values);
    if (!ref || !ref[0].values || !ref[1].values) return;
    reply r = http("POST", "/v1/embeddings", "{\"model\":\"m\",\"input\":[\"Hello there\",\"General Kenobi\"]}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "object"), "list");
    CHECK(num_at(j, "usage.prompt_tokens") == (double)(ref[0].prompt_tokens + ref[1].prompt_tokens));
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "data.%d.embedding", i);
        const cJSON *e = at(j, path);
        CHECK(cJSON_GetArraySize(e) == ref[i].dim);
        double d = 0;
        for (int64_t k = 0; k < ref[i].dim && cJSON_GetArraySize(e) == ref[i].dim; k++)
            d = fmax(d, fabs(cJSON_GetArrayItem(e, (int)k)->valuedouble - ref[i].values[k]));
        CHECKF(d <= 1e-6, "input %d: %.3g", i, d);
        snprintf(path, sizeof path, "data.%d.index", i);
        CHECK(num_at(j, path) == i);
    }
    cJSON_Delete(j);
    reply_free(&r);
    /* base64 of the first 8 values, normalised again */
    r = http("POST", "/v1/embeddings", "{\"input\":\"Hello there\",\"dimensions\":8,\"encoding_format\":\"base64\"}");
    j = json_of(&r);
    const char *b64 = str_at(j, "data.0.embedding");
    CHECKF(r.status == 200 && b64 && strlen(b64) == 44, "%d %s", r.status, r.body);
    if (b64 && strlen(b64) == 44) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned char raw[33];
        size_t n = 0;
        for (int i = 0; i < 44; i += 4) {
            uint32_t w = 0;
            for (int k = 0; k < 4; k++) w = w << 6 | (b64[i + k] == '=' ? 0 : (uint32_t)(strchr(tab, b64[i + k]) - tab));
            for (int k = 0; k < 3 && n < 32; k++) raw[n++] = (unsigned char)(w >> (16 - 8 * k));
        }
        double norm = 0;
        for (int k = 0; k < 8; k++) norm += (double)ref[0].values[k] * ref[0].values[k];
        for (int k = 0; k < 8; k++) {
            float f;
            uint32_t u = (uint32_t)raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 | (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
            memcpy(&f, &u, 4);
            CHECK_CLOSE(f, ref[0].values[k] / sqrt(norm), 1e-6, 0);
        }
    }
    cJSON_Delete(j);
    reply_free(&r);
    lmc_embeddings_free(ref, 2);
    struct { const char *body, *param, *says; } bad[] = {
        {"{}", "input", "required"},
        {"{\"input\":\"\"}", "input", "empty string"},
        {"{\"input\":[]}", "input", "an empty array"},
        {"{\"input\":[99999999]}", "input", "outside the vocabulary"},
        {"{\"input\":\"x\",\"dimensions\":100000}", "dimensions", "more than the model's"},
        {"{\"input\":\"x\",\"encoding_format\":\"int8\"}", "encoding_format", "\"float\" or \"base64\""},
        {"{\"input\":[\"a\",3]}", "input", "'input[1]' must be a string or an array of token ids"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = http("POST", "/v1/embeddings", bad[i].body);
        j = json_of(&r);
        const char *msg = str_at(j, "error.message"), *param = str_at(j, "error.param");
        CHECKF(r.status == 400 && msg && strstr(msg, bad[i].says) && param && !strcmp(param, bad[i].param), "case %zu: %d %s", i,
               r.status, r.body);
        cJSON_Delete(j);
        reply_free(&r);
    }
    r = http("GET", "/v1/embeddings", NULL);
    CHECK(r.status == 405);
    reply_free(&r);
}

/* /v1/completions with "echo" (how evaluation harnesses score a text):
 * the prompt comes back with its tokens' log-probabilities, the log-softmax
 * of the model's logits at the position before each (the first has none). */
static void test_echo_scoring(void) {
    const char *prompt = "The capital of France is Paris";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(lmc_tokenizer_encode(lmc_model_tokenizer(g_model), prompt, strlen(prompt), true, &ids, &n) == LMC_OK && n > 2);
    lmc_array *lg = ids ? lmc_model_logits(g_model, ids, n, true) : NULL;
    CHECK(lg != NULL);
    reply r = http("POST", "/v1/completions",
                   "{\"prompt\":\"The capital of France is Paris\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1,\"temperature\":0}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && j, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.text"), prompt);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), "length");
    const cJSON *lps = at(j, "choices.0.logprobs.token_logprobs"), *tops = at(j, "choices.0.logprobs.top_logprobs");
    CHECK((size_t)cJSON_GetArraySize(lps) == n && (size_t)cJSON_GetArraySize(tops) == n);
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(lps, 0)) && cJSON_IsNull(cJSON_GetArrayItem(tops, 0)));
    const float *all = lg ? lmc_array_data(lg) : NULL;
    int64_t V = lg ? lmc_array_dim(lg, 1) : 0;
    for (size_t i = 1; all && i < n && (size_t)cJSON_GetArraySize(lps) == n; i++) {
        const float *row = all + (i - 1) * (size_t)V;
        double mx = -INFINITY, sum = 0;
        int64_t best = 0;
        for (int64_t v = 0; v < V; v++) {
            if (row[v] > mx) mx = row[v], best = v;
        }
        for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        double lse = mx + log(sum);
        CHECK_CLOSE(cJSON_GetArrayItem(lps, (int)i)->valuedouble, row[ids[i]] - lse, 1e-4, 0);
        const cJSON *t = cJSON_GetArrayItem(tops, (int)i); /* the greedy token, for "is greedy" checks */
        CHECK(cJSON_GetArraySize(t) == 1 && t->child);
        if (t->child) CHECK_CLOSE(t->child->valuedouble, row[best] - lse, 1e-4, 0);
    }
    cJSON_Delete(j);
    reply_free(&r);
    /* echo with a completion: the prompt, then the generated text */
    lmc_generate_options o = greedy(4);
    lmc_generation g;
    CHECK(lmc_generate(g_model, prompt, &o, &g) == LMC_OK);
    r = http("POST", "/v1/completions", "{\"prompt\":\"The capital of France is Paris\",\"max_tokens\":4,\"echo\":true,\"temperature\":0}");
    j = json_of(&r);
    char want[512];
    snprintf(want, sizeof want, "%s%s", prompt, g.text ? g.text : "");
    CHECK_STR(str_at(j, "choices.0.text"), want);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&g);
    lmc_array_free(lg);
    lmc_tokenizer_free_ids(ids);
}

/* "logit_bias" bans the token greedy decoding would pick first. */
static void test_logit_bias(void) {
    lmc_generate_options o = greedy(2);
    lmc_generation g;
    CHECK(lmc_generate(g_model, "The capital of France is", &o, &g) == LMC_OK && g.n_ids == 2);
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\"The capital of France is\",\"temperature\":0,\"max_tokens\":2,\"logprobs\":0,"
             "\"logit_bias\":{\"%d\":-100}}", g.n_ids ? g.ids[0] : 0);
    reply r = http("POST", "/v1/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    char *first = NULL;
    CHECK(g.n_ids && lmc_tokenizer_decode(lmc_model_tokenizer(g_model), g.ids, 1, false, &first, NULL) == LMC_OK);
    const char *tok0 = str_at(j, "choices.0.logprobs.tokens.0");
    CHECKF(tok0 && first && strcmp(tok0, first), "the banned token '%s' came first", first ? first : "");
    lmc_tokenizer_free_text(first);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&g);
}

/* "chat_template_kwargs" reach the template (Qwen3: enable_thinking). */
static void test_template_kwargs(void) {
    lmc_message msgs[1] = {{"user", "Hi"}};
    lmc_generate_options o = greedy(2);
    o.template_vars_json = "{\"enable_thinking\": false}";
    lmc_generation ref = ref_chat(msgs, 1, &o);
    reply r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"temperature\":0,"
                                                   "\"max_tokens\":2,\"chat_template_kwargs\":{\"enable_thinking\":false}}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && num_at(j, "usage.prompt_tokens") == (double)ref.metrics.prompt_tokens, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);
}

/* "n": choice i is what lmc_chat makes with seed + i, whole or streamed; usage counts the
 * prompt once and every choice's tokens. */
static void test_n_choices(void) {
    lmc_message msgs[1] = {{"user", "Name a colour"}};
    lmc_generate_options o = greedy(5);
    o.sampler.temperature = 1.2f;
    lmc_generation ref[3];
    int64_t total = 0;
    for (int i = 0; i < 3; i++) {
        o.sampler.seed = 41 + (uint64_t)i;
        ref[i] = ref_chat(msgs, 1, &o);
        total += (int64_t)ref[i].n_ids;
    }
    reply r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour\"}],"
                                                   "\"temperature\":1.2,\"seed\":41,\"max_tokens\":5,\"n\":3}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200 && cJSON_GetArraySize(at(j, "choices")) == 3, "%d %s", r.status, r.body);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "choices.%d.message.content", i);
        CHECK_STR(str_at(j, path), ref[i].text);
        snprintf(path, sizeof path, "choices.%d.index", i);
        CHECK(num_at(j, path) == i);
    }
    CHECK(num_at(j, "usage.completion_tokens") == (double)total);
    CHECK(num_at(j, "usage.prompt_tokens") == (double)ref[0].metrics.prompt_tokens);
    cJSON_Delete(j);
    reply_free(&r);
    /* streamed: the choices one after another, each chunk naming its index,
     * each choice opening with the role and closing with a finish_reason;
     * one usage chunk for all */
    r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour\"}],"
                                             "\"temperature\":1.2,\"seed\":41,\"max_tokens\":5,\"n\":3,\"stream\":true,"
                                             "\"stream_options\":{\"include_usage\":true}}");
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    int n;
    char **ev = sse_events(r.body ? r.body : "", &n);
    char text[3][256] = {"", "", ""};
    int roles[3] = {0}, finishes[3] = {0}, last = 0, usages = 0;
    for (int e = 0; e + 1 < n; e++) {
        cJSON *c = cJSON_Parse(ev[e]);
        if (at(c, "usage")) {
            usages++;
            CHECK(num_at(c, "usage.completion_tokens") == (double)total);
            cJSON_Delete(c);
            continue;
        }
        int i = (int)num_at(c, "choices.0.index");
        CHECKF(i >= 0 && i < 3 && i >= last, "event %d: index %d after %d", e, i, last);
        if (i < 0 || i >= 3) {
            cJSON_Delete(c);
            continue;
        }
        last = i;
        roles[i] += str_at(c, "choices.0.delta.role") != NULL;
        const char *piece = str_at(c, "choices.0.delta.content");
        if (piece) snprintf(text[i] + strlen(text[i]), sizeof text[i] - strlen(text[i]), "%s", piece);
        finishes[i] += str_at(c, "choices.0.finish_reason") != NULL;
        cJSON_Delete(c);
    }
    CHECKF(n > 0 && !strcmp(ev[n - 1], "[DONE]") && usages == 1, "%d events, %d usage chunks", n, usages);
    for (int i = 0; i < 3; i++) {
        CHECK_STR(text[i], ref[i].text);
        CHECKF(roles[i] == 1 && finishes[i] == 1, "choice %d: %d role chunks, %d finish chunks", i, roles[i], finishes[i]);
    }
    events_free(ev, n);
    reply_free(&r);
    for (int i = 0; i < 3; i++) lmc_generation_clear(&ref[i]);
}

static void test_completions(void) {
    lmc_generate_options o = greedy(9);
    lmc_generation ref;
    CHECK(lmc_generate(g_model, "The capital of France is", &o, &ref) == LMC_OK);
    const char *body = "{\"prompt\":\"The capital of France is\",\"temperature\":0,\"max_tokens\":9}";
    reply r = http("POST", "/v1/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "object"), "text_completion");
    CHECK_STR(str_at(j, "choices.0.text"), ref.text);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), "length");
    CHECK(num_at(j, "usage.completion_tokens") == 9 && num_at(j, "usage.prompt_tokens") == (double)ref.metrics.prompt_tokens);
    cJSON_Delete(j);
    reply_free(&r);
    char finish[32];
    char *text = stream_text("/v1/completions",
                             "{\"prompt\":[\"The capital of France is\"],\"temperature\":0,\"max_tokens\":9,\"stream\":true}",
                             false, finish, sizeof finish, NULL);
    CHECK_STR(text, ref.text);
    CHECK_STR(finish, "length");
    free(text);

    /* Token ids as the prompt give the same as the text they encode. */
    int32_t *ids;
    size_t n;
    CHECK(lmc_tokenizer_encode(lmc_model_tokenizer(g_model), "The capital of France is", 24, true, &ids, &n) == LMC_OK);
    char idbody[512] = "{\"temperature\":0,\"max_tokens\":9,\"prompt\":[";
    for (size_t i = 0; i < n; i++)
        snprintf(idbody + strlen(idbody), sizeof idbody - strlen(idbody), "%s%d", i ? "," : "", ids[i]);
    strcat(idbody, "]}");
    lmc_tokenizer_free_ids(ids);
    r = http("POST", "/v1/completions", idbody);
    j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.text"), ref.text);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);
}

/* A stop string cuts the text (finish_reason "stop"), as lmc_chat does with
 * the same stop list; the content given as text parts is the string joined
 * with newlines. */
static void test_stop_and_parts(void) {
    lmc_message msgs[1] = {{"user", "one\ntwo"}};
    lmc_generate_options o = greedy(12);
    lmc_generation full = ref_chat(msgs, 1, &o);
    CHECK(full.text_len > 4);
    /* stop at the text of the 3rd generated token onwards */
    char stop[64] = "";
    lmc_generate_options o3 = greedy(2);
    lmc_generation first2 = ref_chat(msgs, 1, &o3);
    snprintf(stop, sizeof stop, "%.8s", full.text + first2.text_len);
    const char *stops[1] = {stop};
    o.stop_strings = stops;
    o.n_stop_strings = 1;
    lmc_generation ref = ref_chat(msgs, 1, &o);
    CHECK(ref.stop_reason == LMC_STOP_STRING);
    cJSON *req = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},"
                             "{\"type\":\"text\",\"text\":\"two\"}]}],\"temperature\":0,\"max_tokens\":12}");
    cJSON_AddItemToObject(req, "stop", cJSON_CreateStringArray(stops, 1));
    char *body = cJSON_PrintUnformatted(req);
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), "stop");
    CHECK(num_at(j, "usage.completion_tokens") == (double)ref.n_ids);
    cJSON_Delete(j);
    reply_free(&r);
    /* streamed: the stop string is not sent either */
    cJSON_AddTrueToObject(req, "stream");
    free(body);
    body = cJSON_PrintUnformatted(req);
    char finish[32];
    char *text = stream_text("/v1/chat/completions", body, true, finish, sizeof finish, NULL);
    CHECK_STR(text, ref.text);
    CHECK_STR(finish, "stop");
    free(text);
    free(body);
    cJSON_Delete(req);
    lmc_generation_clear(&full);
    lmc_generation_clear(&first2);
    lmc_generation_clear(&ref);
}

/* Without "seed" each request samples with a new seed (regenerating gives a
 * new answer); with one, the answer is lmc_chat's with that seed. */
static void test_seed(void) {
    const char *unseeded = "{\"messages\":[{\"role\":\"user\",\"content\":\"Pick\"}],\"temperature\":1.5,\"max_tokens\":6}";
    const char *seeded = "{\"messages\":[{\"role\":\"user\",\"content\":\"Pick\"}],\"temperature\":1.5,\"max_tokens\":6,"
                         "\"seed\":7}";
    char *text[4] = {0}, *seed[4] = {0};
    for (int i = 0; i < 4; i++) {
        reply r = http("POST", "/v1/chat/completions", i < 2 ? unseeded : seeded);
        cJSON *j = json_of(&r);
        CHECKF(r.status == 200, "%d %s", r.status, r.body);
        const char *t = str_at(j, "choices.0.message.content"), *sd = str_at(j, "lmc.seed");
        text[i] = strdup(t ? t : "");
        seed[i] = strdup(sd ? sd : "");
        cJSON_Delete(j);
        reply_free(&r);
    }
    CHECKF(strcmp(seed[0], seed[1]) && strcmp(text[0], text[1]), "seeds %s %s, texts '%s' '%s'", seed[0], seed[1], text[0],
           text[1]);
    CHECK_STR(seed[2], "7");
    CHECK_STR(text[2], text[3]);
    lmc_message m = {"user", "Pick"};
    lmc_generate_options o = greedy(6);
    o.sampler.temperature = 1.5f;
    o.sampler.seed = 7;
    lmc_generation ref = ref_chat(&m, 1, &o);
    CHECK_STR(text[2], ref.text);
    lmc_generation_clear(&ref);
    for (int i = 0; i < 4; i++) {
        free(text[i]);
        free(seed[i]);
    }
}

/* Refusals: status, and the message or param naming what is wrong. */
static void test_errors(void) {
    static const struct {
        const char *method, *path, *body;
        int status;
        const char *param, *says;
    } cases[] = {
        {"POST", "/v1/chat/completions", "{\"messages\": [", 400, NULL, "malformed JSON at line 1, column 14"},
        {"POST", "/v1/chat/completions", "{\"messages\":[]} x", 400, NULL, "text after the JSON value"},
        {"POST", "/v1/chat/completions", "", 400, NULL, "body is empty"},
        {"POST", "/v1/chat/completions", "[1]", 400, NULL, "must be a JSON object"},
        {"POST", "/v1/chat/completions", "{}", 400, "messages", "'messages' is required"},
        {"POST", "/v1/chat/completions", "{\"messages\":\"hi\"}", 400, "messages", "must be an array, got a string"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
         "messages[0].content", "got a number"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400,
         "messages[0].role", "'wizard'"},
        {"POST", "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", 400,
         "messages[0].content[0]", "only text parts"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":17}", 400, "n",
         "'n' must be in [1, 16], got 17"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":2.5}", 400,
         "temperature", "got 2.5"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
         400, "temperature", "must be a number, got a string"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", 400,
         "max_tokens", "must be an integer"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":0}", 400,
         "top_p", "(0, 1]"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", 400,
         "stream", "must be a boolean"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", 400,
         "stop", "'stop[0]' must be a string"},
        {"POST", "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{\"include_usage\":true}}", 400,
         "stream_options", "only allowed when 'stream' is true"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"presence_penalty\":0.5}",
         400, "presence_penalty", "not supported"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
         "\"top_logprobs\":21}", 400, "top_logprobs", "[0, 20], got 21"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400,
         "top_logprobs", "needs 'logprobs': true"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400,
         "logprobs", "must be a boolean"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":true}", 400, "logprobs", "must be an integer 0..20"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":1,\"top_logprobs\":2}", 400, "top_logprobs",
         "not supported"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"\\xff\"}]}", 400, NULL,
         "malformed JSON"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"stream\":true}", 400, "echo", "not supported with 'stream'"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens", "0 only with 'echo'"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias", "keys must be token ids"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"chat_template_kwargs\":{}}", 400, "chat_template_kwargs", "for /v1/chat"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[1]}",
         400, "chat_template_kwargs", "must be an object"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}", 400, "logit_bias", "[-100, 100]"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"logit_bias\":{\"999999999\":1}}", 400, "prompt", "outside the vocabulary"},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":true}", 400, "echo",
         "not supported"},
        {"POST", "/v1/completions", "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt", "one prompt per request"},
        {"POST", "/v1/completions", "{\"prompt\":[99999999]}", 400, "prompt", "outside the vocabulary"},
        {"POST", "/v1/completions", "{\"prompt\":42}", 400, "prompt", "got a number"},
        {"GET", "/v1/nothing", NULL, 404, NULL, "no such endpoint"},
        {"GET", "/", NULL, 404, NULL, "no such endpoint"},
        {"GET", "/v1/chat/completions", NULL, 405, NULL, "use POST"},
        {"DELETE", "/v1/models", NULL, 405, NULL, "use GET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reply r = http(cases[i].method, cases[i].path, cases[i].body);
        cJSON *j = json_of(&r);
        const char *msg = str_at(j, "error.message"), *param = str_at(j, "error.param");
        CHECKF(r.status == cases[i].status, "case %zu (%s): status %d, body %s", i, cases[i].body, r.status, r.body);
        CHECKF(msg && strstr(msg, cases[i].says), "case %zu: message '%s' should say '%s'", i, msg ? msg : "(none)",
               cases[i].says);
        CHECKF(cases[i].param ? param && !strcmp(param, cases[i].param) : cJSON_IsNull(at(j, "error.param")),
               "case %zu: param %s, expected %s", i, param ? param : "null", cases[i].param ? cases[i].param : "null");
        CHECK_STR(str_at(j, "error.type"), "invalid_request_error");
        cJSON_Delete(j);
        reply_free(&r);
    }
    /* Invalid UTF-8 inside a JSON string names the field. */
    reply r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\xff\"}]}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.param") && !strcmp(str_at(j, "error.param"), "messages[0].content"),
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
}

/* A prompt longer than the context: 400 naming the context length. */
static void test_prompt_too_long(void) {
    size_t n = 6000 * 6 + 64;
    char *body = malloc(n);
    char *p = body + sprintf(body, "{\"prompt\":\"");
    for (int i = 0; i < 6000; i++) p += sprintf(p, " hello");
    strcpy(p, "\"}");
    reply r = http("POST", "/v1/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.message") && strstr(str_at(j, "error.message"), "context length"), "%d %s",
           r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    free(body);
}

/* Bodies over the limit (1 MiB here): 413, announced or sent chunked. */
static void test_oversized_body(void) {
    /* announced: refused before the body is sent (sending it anyway could
     * meet a connection the server has closed) */
    int fd = dial(g_port);
    const char *announce = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 1048586\r\n\r\n";
    reply r = {0};
    CHECK(send_all(fd, announce, strlen(announce)) && read_reply(fd, &r));
    cJSON *j = json_of(&r);
    CHECKF(r.status == 413 && str_at(j, "error.message") && strstr(str_at(j, "error.message"), "larger than the limit"),
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    /* chunked: no length announced, the server counts */
    char *big = malloc(65536);
    memset(big, ' ', 65536);
    fd = dial(g_port);
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    bool sent = send_all(fd, head, strlen(head));
    for (int i = 0; sent && i < 20; i++) {
        char size[32];
        snprintf(size, sizeof size, "%x\r\n", 65536);
        sent = send_all(fd, size, strlen(size)) && send_all(fd, big, 65536) && send_all(fd, "\r\n", 2);
    }
    if (sent) sent = send_all(fd, "0\r\n\r\n", 5);
    CHECK(sent && read_reply(fd, &r));
    CHECKF(r.status == 413, "chunked: %d %s", r.status, r.body);
    reply_free(&r);
    free(big);
}

/* A client that hangs up mid-stream (or while a non-streamed request runs)
 * cancels its generation: the next request does not wait for it. */
static void test_disconnect(void) {
    const char *bodies[2] = {
        "{\"prompt\":\"Long story:\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}",
        "{\"prompt\":\"Long story:\",\"max_tokens\":4000,\"ignore_eos\":true}",
    };
    for (int k = 0; k < 2; k++) {
        int fd = send_request("POST", "/v1/completions", bodies[k]);
        char buf[4096];
        if (k == 0) {
            ssize_t got = recv(fd, buf, sizeof buf, 0); /* the stream has started */
            CHECK(got > 0);
        } else {
            usleep(200 * 1000);
        }
        close(fd);
        double t0 = now();
        reply r = http("POST", "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}");
        double waited = now() - t0;
        CHECKF(r.status == 200, "%d %s", r.status, r.body);
        /* 4000 tokens take several seconds even on this tiny model */
        CHECKF(waited < 2.0, "case %d: the next request waited %.2f s", k, waited);
        reply_free(&r);
    }
}

/* A request waiting for its turn whose client leaves gives its place up:
 * the queue behind it moves on. */
static void test_disconnect_while_waiting(void) {
    int running = send_request("POST", "/v1/completions",
                               "{\"prompt\":\"Long story:\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}");
    char buf[256];
    CHECK(recv(running, buf, sizeof buf, 0) > 0);
    int waiting = send_request("POST", "/v1/completions",
                               "{\"prompt\":\"Hi\",\"max_tokens\":4000,\"ignore_eos\":true}");
    usleep(200 * 1000);
    close(waiting);
    usleep(200 * 1000);
    close(running);
    double t0 = now();
    reply r = http("POST", "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}");
    CHECKF(r.status == 200 && now() - t0 < 2.0, "%d after %.2f s", r.status, now() - t0);
    reply_free(&r);
}

typedef struct conc_arg {
    const char *content;
    char *text;
    int status;
} conc_arg;

static void *conc_run(void *p) {
    conc_arg *a = p;
    char body[512];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"temperature\":0,\"max_tokens\":16,\"stream\":%s}",
             a->content, a->content[0] == 'A' ? "true" : "false");
    if (a->content[0] == 'A') {
        char finish[32];
        a->text = stream_text("/v1/chat/completions", body, true, finish, sizeof finish, NULL);
        a->status = 200;
    } else {
        reply r = http("POST", "/v1/chat/completions", body);
        cJSON *j = json_of(&r);
        a->status = r.status;
        a->text = str_at(j, "choices.0.message.content") ? strdup(str_at(j, "choices.0.message.content")) : NULL;
        cJSON_Delete(j);
        reply_free(&r);
    }
    return NULL;
}

/* Two requests at once (one streamed): both complete with their own answer. */
static void test_concurrent(void) {
    conc_arg args[2] = {{.content = "Alpha beta"}, {.content = "Gamma delta"}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, conc_run, &args[i]);
    /* /health answers while they run */
    reply r = http("GET", "/health", NULL);
    CHECK(r.status == 200);
    reply_free(&r);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    lmc_generate_options o = greedy(16);
    for (int i = 0; i < 2; i++) {
        lmc_message m = {"user", args[i].content};
        lmc_generation ref = ref_chat(&m, 1, &o);
        CHECKF(args[i].status == 200, "request %d: %d", i, args[i].status);
        CHECK_STR(args[i].text, ref.text);
        lmc_generation_clear(&ref);
        free(args[i].text);
    }
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n;
}

/* lmc serve --lookup N: the reply of a server with lookup decoding is the
 * one without; its "lmc" object counts the drafts. */
static void test_lookup_default(void) {
    lmc_server_options so = lmc_server_options_default();
    so.port = 0;
    so.gen = greedy(32);
    so.gen.ignore_eos = true;
    so.gen.lookup_tokens = 3;
    lmc_server *other = NULL;
    CHECK(lmc_server_start(g_model, &so, &other) == LMC_OK);
    if (!other) return;
    int saved = g_port;
    g_port = lmc_server_port(other);
    const char *prompt = "red green blue red green blue red green blue red green blue red green";
    lmc_generate_options o = greedy(32);
    o.ignore_eos = true;
    lmc_generation ref;
    CHECK(lmc_generate(g_model, prompt, &o, &ref) == LMC_OK);
    char body[512];
    snprintf(body, sizeof body, "{\"prompt\":\"%s\"}", prompt);
    reply r = http("POST", "/v1/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.text"), ref.text);
    double drafts = num_at(j, "lmc.draft_tokens"), taken = num_at(j, "lmc.accepted_draft_tokens");
    CHECKF(drafts > 0 && taken >= 0 && taken <= drafts, "drafts %g, taken %g: %s", drafts, taken, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);
    g_port = saved;
    lmc_server_stop(other);
}

/* lmc_server_stop while a generation streams: it returns promptly, the
 * client's stream is cut; a busy port is an error naming it. */
static void test_stop_and_port_in_use(void) {
    lmc_server_options so = lmc_server_options_default();
    so.port = g_port;
    lmc_server *other = NULL;
    CHECK(lmc_server_start(g_model, &so, &other) == LMC_ERR_IO && !other);
    CHECKF(strstr(lmc_last_error(), "cannot listen") != NULL, "%s", lmc_last_error());
    so.port = 65536;
    CHECK(lmc_server_start(g_model, &so, &other) == LMC_ERR_INVALID_ARGUMENT);

    /* the options' generation settings are the defaults of a request */
    so.port = 0;
    so.gen = greedy(6);
    const char *stops[1] = {"\n\n\n"};
    so.gen.stop_strings = stops;
    so.gen.n_stop_strings = 1;
    so.model_name = "tiny";
    int fds_before = count_fds();
    CHECK(lmc_server_start(g_model, &so, &other) == LMC_OK);
    int saved = g_port;
    g_port = lmc_server_port(other);
    lmc_message msg = {"user", "Defaults?"};
    lmc_generation ref = ref_chat(&msg, 1, &so.gen);
    reply r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Defaults?\"}]}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    CHECK(num_at(j, "usage.completion_tokens") == (double)ref.n_ids);
    CHECK_STR(str_at(j, "model"), "tiny");
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);

    int fd = send_request("POST", "/v1/completions",
                          "{\"prompt\":\"Long story:\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}");
    char buf[256];
    CHECK(recv(fd, buf, sizeof buf, 0) > 0);
    double t0 = now();
    lmc_server_stop(other);
    CHECKF(now() - t0 < 2.0, "stop took %.2f s", now() - t0);
    read_reply(fd, &r); /* whatever was sent before the cut; the socket is closed */
    reply_free(&r);
    /* every socket and pipe of the server is closed */
    CHECKF(count_fds() == fds_before, "%d open files before, %d after", fds_before, count_fds());
    g_port = saved;
}

/* With an API key, everything but /health (and CORS preflights) needs it;
 * with a CORS origin, every answer allows it. */
static void test_api_key_and_cors(void) {
    reply r = http("OPTIONS", "/v1/chat/completions", NULL); /* the main server: no CORS */
    CHECK(r.status == 405 && r.head && !strcasestr(r.head, "Access-Control-Allow-Origin"));
    reply_free(&r);
    lmc_server_options so = lmc_server_options_default();
    so.port = 0;
    so.api_key = "sekrit";
    so.cors_origin = "http://ui.example";
    lmc_server *srv;
    CHECK(lmc_server_start(g_model, &so, &srv) == LMC_OK);
    int saved = g_port;
    g_port = lmc_server_port(srv);
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1}";
    static const struct {
        const char *method, *path, *auth;
        int status;
    } cases[] = {
        {"GET", "/health", NULL, 200},
        {"GET", "/v1/models", NULL, 401},
        {"POST", "/v1/chat/completions", NULL, 401},
        {"POST", "/v1/chat/completions", "Authorization: Bearer wrong\r\n", 401},
        {"POST", "/v1/chat/completions", "Authorization: Bearer sekri\r\n", 401},
        {"POST", "/v1/chat/completions", "Authorization: Bearer sekrit2\r\n", 401},
        {"POST", "/v1/chat/completions", "Authorization: sekrit\r\n", 401},
        {"POST", "/v1/chat/completions", "Authorization: Bearer sekrit\r\n", 200},
        {"GET", "/v1/models", "Authorization: bearer sekrit\r\n", 200},
        {"OPTIONS", "/v1/chat/completions", NULL, 204},
        {"OPTIONS", "/v1/nowhere", NULL, 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        r = http_with(cases[i].method, cases[i].path, cases[i].method[0] == 'P' ? chat : NULL, cases[i].auth);
        CHECKF(r.status == cases[i].status, "case %zu: %d %s", i, r.status, r.body);
        CHECKF(r.head && strcasestr(r.head, "Access-Control-Allow-Origin: http://ui.example"), "case %zu: %s", i, r.head);
        if (r.status == 401) {
            cJSON *j = json_of(&r);
            CHECK_STR(str_at(j, "error.code"), "invalid_api_key");
            cJSON_Delete(j);
        }
        reply_free(&r);
    }
    /* without the key, the body is not waited for */
    int fd = dial(g_port);
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    CHECK(send_all(fd, head, strlen(head)) && read_reply(fd, &r));
    CHECKF(r.status == 401, "%d", r.status);
    reply_free(&r);
    lmc_server_stop(srv);
    g_port = saved;
}

/* A model without a chat template (a base model): chat is a 400 that
 * points to /v1/completions, which works. */
static void test_no_chat_template(void) {
    char dir[4300], cmd[9000], path[4400];
    snprintf(dir, sizeof dir, "%s-base", g_mdir);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", g_mdir, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *text = read_file_all(path, NULL);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    CHECK(cfg && cJSON_GetObjectItem(cfg, "chat_template"));
    cJSON_DeleteItemFromObject(cfg, "chat_template");
    char *out = cJSON_Print(cfg);
    FILE *f = fopen(path, "w");
    CHECK(f && out && fputs(out, f) >= 0);
    if (f) fclose(f);
    free(out);
    cJSON_Delete(cfg);
    free(text);
    lmc_model *m = NULL;
    CHECKF(lmc_model_load(dir, NULL, &m) == LMC_OK, "%s", lmc_last_error());
    lmc_server_options so = lmc_server_options_default();
    so.port = 0;
    lmc_server *srv = NULL;
    CHECK(m && lmc_server_start(m, &so, &srv) == LMC_OK);
    int saved = g_port;
    g_port = lmc_server_port(srv);
    reply r = http("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    cJSON *j = json_of(&r);
    CHECKF(r.status == 400 && str_at(j, "error.message") && strstr(str_at(j, "error.message"), "use /v1/completions"),
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = http("POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2}");
    CHECK(r.status == 200);
    reply_free(&r);
    lmc_server_stop(srv);
    lmc_model_free(m);
    g_port = saved;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* A model on backend "subprocess" (bridges/mock_bridge.py, which echoes the
 * rendered chat) is served the same way, streamed and not; a client that
 * hangs up cancels the bridge's generation too. */
static void test_subprocess_backend(void) {
    const char *env[1] = {"MOCK_BRIDGE_DELAY=0.005"};
    lmc_load_options lo = lmc_load_options_default();
    lo.backend = "subprocess";
    lo.bridge = "python3 '" LMC_TEST_DATA "/../../bridges/mock_bridge.py'";
    lo.bridge_env = env;
    lo.n_bridge_env = 1;
    lmc_model *m = NULL;
    CHECKF(lmc_model_load(LMC_TEST_DATA, &lo, &m) == LMC_OK, "%s", lmc_last_error());
    if (!m) return;
    lmc_server_options so = lmc_server_options_default();
    so.port = 0;
    lmc_server *srv = NULL;
    CHECK(lmc_server_start(m, &so, &srv) == LMC_OK);
    int saved = g_port;
    g_port = lmc_server_port(srv);
    lmc_message msg = {"user", "Hi"};
    lmc_generate_options o = lmc_generate_options_default();
    lmc_generation ref;
    CHECK(lmc_chat(m, &msg, 1, &o, &ref) == LMC_OK);
    CHECK_STR(ref.text, "<|user|>Hi\n<|assistant|>");
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    reply r = http("POST", "/v1/chat/completions", body);
    cJSON *j = json_of(&r);
    CHECKF(r.status == 200, "%d %s", r.status, r.body);
    CHECK_STR(str_at(j, "choices.0.message.content"), ref.text);
    CHECK_STR(str_at(j, "choices.0.finish_reason"), "stop");
    cJSON_Delete(j);
    reply_free(&r);
    char finish[32];
    char *text = stream_text("/v1/chat/completions",
                             "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":true}", true, finish,
                             sizeof finish, NULL);
    CHECK_STR(text, ref.text);
    free(text);
    int fd = send_request("POST", "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":2000,\"ignore_eos\":true}");
    usleep(200 * 1000);
    close(fd);
    double t0 = now();
    r = http("POST", "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":2}");
    j = json_of(&r);
    CHECKF(r.status == 200 && now() - t0 < 2.0, "%d after %.2f s", r.status, now() - t0); /* 2000 tokens: 10 s */
    CHECK_STR(str_at(j, "choices.0.text"), "ab");
    cJSON_Delete(j);
    reply_free(&r);
    lmc_generation_clear(&ref);
    lmc_server_stop(srv);
    lmc_model_free(m);
    g_port = saved;
}

/* `lmc serve` end to end: prints where it listens, answers, logs a line per
 * request, and exits 0 on SIGTERM; the key may come from LMC_API_KEY. */
static void test_cli(void) {
    const char *mdir = g_mdir;
    int errp[2];
    CHECK(pipe(errp) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(errp[1], 2);
        close(errp[0]);
        setenv("LMC_API_KEY", "fromenv", 1);
        char exe[4200];
        snprintf(exe, sizeof exe, "%s/lmc", LMC_BUILD_DIR);
        execl(exe, exe, "serve", "-m", mdir, "--port", "0", "--temperature", "0", "--max-tokens", "4", (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    FILE *err = fdopen(errp[0], "r");
    char line[512];
    int port = 0;
    while (!port && fgets(line, sizeof line, err)) {
        const char *at = strstr(line, "listening on http://127.0.0.1:");
        if (at) port = atoi(at + strlen("listening on http://127.0.0.1:"));
    }
    CHECKF(port > 0, "no 'listening on' line");
    int saved = g_port;
    g_port = port;
    reply r = http_with("POST", "/v1/completions", "{\"prompt\":\"Hi\"}", "Authorization: Bearer fromenv\r\n");
    cJSON *j = json_of(&r);
    /* the command line's --max-tokens 4 is the default */
    CHECKF(r.status == 200 && num_at(j, "usage.completion_tokens") == 4, "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = http("GET", "/v1/models", NULL);
    CHECK(r.status == 401);
    reply_free(&r);
    g_port = saved;
    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    char rest[4096];
    size_t n = fread(rest, 1, sizeof rest - 1, err);
    rest[n] = 0;
    fclose(err);
    CHECKF(strstr(rest, "POST /v1/completions 200") && strstr(rest, "GET /v1/models 401") &&
               strstr(rest, "SIGTERM: stopping"),
           "stderr: %s", rest);
}

/* Memory does not grow with requests: after a warm-up round of every kind
 * of request (chat, streamed chat, completions with logprobs, a JSON
 * Schema reply, embeddings, refused ones), five more rounds leave lmc's
 * active memory (GET /metrics) where the first left it. */
static void test_memory_steady(void) {
    static const struct {
        const char *path, *body;
    } reqs[] = {
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":6,\"temperature\":0}"},
        {"/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":6,\"stream\":true,\"seed\":3}"},
        {"/v1/completions", "{\"prompt\":\"One, two,\",\"max_tokens\":5,\"logprobs\":2,\"temperature\":0}"},
        {"/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":12,\"response_format\":{\"type\":\"json_schema\","
         "\"json_schema\":{\"name\":\"s\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}}}"},
        {"/v1/embeddings", "{\"input\":[\"a cat\",\"two dogs\"]}"},
        {"/v1/chat/completions", "{\"messages\":[],\"max_tokens\":3}"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":3,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}"},
        {"/v1/completions", "{\"prompt\":\"The end\",\"max_tokens\":4,\"temperature\":0}"},
    };
    double active[6];
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
            reply r = http("POST", reqs[i].path, reqs[i].body);
            CHECKF(r.status == 200 || r.status == 400, "round %d request %zu: %d %s", round, i, r.status, r.body);
            reply_free(&r);
        }
        reply m = http("GET", "/metrics", NULL);
        active[round] = m.body ? metric(m.body, "lmc_memory_active_bytes") : -1;
        reply_free(&m);
    }
    for (int round = 1; round < 6; round++)
        CHECKF(active[round] > 0 && active[round] <= active[0], "round %d: %.0f bytes active, %.0f after the first round", round,
               active[round], active[0]);
}

int main(void) {
    char tmpl[] = "/tmp/lmc-serve-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-qwen3 --tokenizer %s/qwen3 -o %s/m 2>/dev/null", LMC_BUILD_DIR,
             LMC_TOKENIZER_DIR, dir);
    if (!dir || system(cmd) != 0) {
        fprintf(stderr, "cannot make the tiny-qwen3 model\n");
        return 1;
    }
    char mdir[4200];
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    g_mdir = mdir;
    if (lmc_model_load(mdir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "load: %s\n", lmc_last_error());
        return 1;
    }
    lmc_server_options so = lmc_server_options_default();
    so.port = 0;
    so.max_body_bytes = 1u << 20;
    if (lmc_server_start(g_model, &so, &g_server) != LMC_OK) {
        fprintf(stderr, "server: %s\n", lmc_last_error());
        return 1;
    }
    g_port = lmc_server_port(g_server);
    CHECK(g_port > 0);
    RUN(test_health_and_models);
    RUN(test_metrics);
    RUN(test_chat_matches_lmc_chat);
    RUN(test_chat_stream);
    RUN(test_completions);
    RUN(test_logprobs);
    RUN(test_logprob_bytes);
    RUN(test_tools);
    RUN(test_forced_tool_call);
    RUN(test_json_mode);
    RUN(test_embeddings);
    RUN(test_echo_scoring);
    RUN(test_logit_bias);
    RUN(test_template_kwargs);
    RUN(test_n_choices);
    RUN(test_stop_and_parts);
    RUN(test_seed);
    RUN(test_errors);
    RUN(test_memory_steady);
    RUN(test_prompt_too_long);
    RUN(test_oversized_body);
    RUN(test_disconnect);
    RUN(test_disconnect_while_waiting);
    RUN(test_concurrent);
    RUN(test_lookup_default);
    RUN(test_stop_and_port_in_use);
    RUN(test_api_key_and_cors);
    RUN(test_no_chat_template);
    RUN(test_subprocess_backend);
    RUN(test_cli);
    lmc_server_stop(g_server);
    lmc_model_free(g_model);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
