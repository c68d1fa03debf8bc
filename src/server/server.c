/* The OpenAI-compatible HTTP server (lmc/server.h) on libmicrohttpd.
 *
 * Threads: libmicrohttpd gives each connection its own thread, in which
 * the request handler, the streaming reader and the response's free
 * callback all run; a request may therefore block (waiting for its turn,
 * generating) without holding up anyone else's I/O.
 *
 * A generation is a "job": registered while it waits or runs. Jobs take
 * the model's one turn in arrival order (the prompt cache then serves
 * consecutive chat turns). A watcher thread polls the sockets of all jobs
 * every 100 ms and cancels those whose client hung up, so nothing keeps
 * generating (or waiting) for a client that is gone.
 *
 * A generation is pulled token by token from lmc_stream_next: the non-
 * streamed handler drives it to the end, the streamed response produces
 * one Server-Sent Event per piece of text as libmicrohttpd asks for data. */
#include "lmc/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json_util.h"
#include "lmc/chat_template.h"
#include "runtime/model_internal.h"
#include "runtime/reasoning.h"
#include "runtime/sampler.h"
#include "runtime/tool_calls.h"
#include "server/request.h"

typedef struct job {
    int fd;                   /* the client's socket, watched for hang-ups */
    lmc_cancel cancel;        /* set when the client is gone or the server stops */
    bool running;             /* holds the turn */
    struct job *next;
} job;

struct lmc_server {
    lmc_model *m;
    struct MHD_Daemon *daemon;
    int port;
    char *model_name;
    lmc_generate_options gen; /* request defaults; stop strings copied into stops */
    char **stops;
    bool random_seed;
    size_t max_body;
    char *api_key;            /* or NULL */
    char *cors_origin;        /* or NULL */
    bool log;
    time_t created;
    atomic_ullong counter;    /* for response ids */
    pthread_mutex_t lock;     /* guards everything below */
    pthread_cond_t turn_cond; /* the turn was released, or a waiting job was cancelled */
    pthread_cond_t watch_cond;/* a job was registered, or the server stops */
    job *jobs;                /* registered jobs, oldest first */
    bool busy, stopping;
    pthread_t watcher;
    /* GET /metrics: counted as requests are answered (atomics: no lock) */
    atomic_ullong n_requests, n_errors, n_generations, n_prompt_tokens, n_cached_tokens, n_generated_tokens;
    atomic_ullong generation_us;   /* wall time of generation requests, microseconds */
    double started;                /* now_seconds() at start */
    lmc_tool_format tools;         /* how the model's chat template calls tools (NONE: it cannot) */
    bool reasoning;                /* chat replies' <think> blocks go to reasoning_content */
    lmc_pooling pooling;           /* /v1/embeddings */
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- jobs: the turn queue and the hang-up watcher ------------------------------------ */

static void job_register(lmc_server *s, job *j, int fd) {
    memset(j, 0, sizeof *j);
    j->fd = fd;
    pthread_mutex_lock(&s->lock);
    job **p = &s->jobs;
    while (*p) p = &(*p)->next;
    *p = j;
    if (s->stopping) lmc_cancel_request(&j->cancel);
    pthread_cond_signal(&s->watch_cond);
    pthread_mutex_unlock(&s->lock);
}

/* Removes the job, releasing the turn when it holds it. */
static void job_unregister(lmc_server *s, job *j) {
    pthread_mutex_lock(&s->lock);
    for (job **p = &s->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    if (j->running) s->busy = false;
    j->running = false;
    pthread_cond_broadcast(&s->turn_cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits until j is the oldest job not running and the turn is free; false
 * when the job was cancelled first (client gone, server stopping). */
static bool job_wait_turn(lmc_server *s, job *j) {
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (lmc_cancel_requested(&j->cancel)) break;
        job *first = s->jobs;
        while (first && first->running) first = first->next;
        if (!s->busy && first == j) {
            s->busy = true;
            j->running = true;
            break;
        }
        pthread_cond_wait(&s->turn_cond, &s->lock);
    }
    bool ok = j->running;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* True when the peer closed its end (or the socket failed). */
static bool hung_up(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void *watch(void *arg) {
    lmc_server *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        if (!s->jobs) {
            pthread_cond_wait(&s->watch_cond, &s->lock);
            continue;
        }
        bool any = false;
        for (job *j = s->jobs; j; j = j->next)
            if (!lmc_cancel_requested(&j->cancel) && hung_up(j->fd)) {
                lmc_cancel_request(&j->cancel);
                any = true;
            }
        if (any) pthread_cond_broadcast(&s->turn_cond);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->watch_cond, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- responses ----------------------------------------------------------------------- */

/* Queues a response with the headers every answer carries, and lets go of it. */
static enum MHD_Result queue(const lmc_server *s, struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    if (s->cors_origin) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, s->cors_origin);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
        if (strcmp(s->cors_origin, "*")) MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST, OPTIONS");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(const lmc_server *s, struct MHD_Connection *c, unsigned status, char *body, const char *type) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    return queue(s, c, status, r);
}

/* Sends (and frees) a cJSON object. */
static enum MHD_Result send_json(const lmc_server *s, struct MHD_Connection *c, unsigned status, cJSON *obj) {
    char *body = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    return send_text(s, c, status, body, "application/json");
}

/* {"error":{"message","type","param","code"}} as OpenAI writes it. */
static cJSON *error_json(unsigned status, const char *message, const char *param) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error" : "invalid_request_error");
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    return root;
}

static enum MHD_Result send_error(const lmc_server *s, struct MHD_Connection *c, unsigned status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(const lmc_server *s, struct MHD_Connection *c, unsigned status, const char *param, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(s, c, status, error_json(status, msg, param));
}

/* Counts the request for /metrics and writes one line per request on stderr
 * (when logging): what was asked, the answer's status, the generation's
 * figures, the time taken and why it failed. */
static void log_request(lmc_server *s, const char *method, const char *url, unsigned status, double t0,
                        const lmc_generation *g, const char *why) {
    atomic_fetch_add(&s->n_requests, 1);
    if (status >= 400) atomic_fetch_add(&s->n_errors, 1);
    if (g) {
        atomic_fetch_add(&s->n_generations, 1);
        atomic_fetch_add(&s->n_prompt_tokens, (unsigned long long)g->metrics.prompt_tokens);
        atomic_fetch_add(&s->n_cached_tokens, (unsigned long long)g->metrics.cached_prompt_tokens);
        atomic_fetch_add(&s->n_generated_tokens, (unsigned long long)g->metrics.generated_tokens);
        atomic_fetch_add(&s->generation_us, (unsigned long long)((now_seconds() - t0) * 1e6));
    }
    if (!s->log) return;
    char tokens[96] = "";
    if (g && g->metrics.prompt_tokens)
        snprintf(tokens, sizeof tokens, " prompt %lld (%lld cached) + %lld tokens, %s,", (long long)g->metrics.prompt_tokens,
                 (long long)g->metrics.cached_prompt_tokens, (long long)g->metrics.generated_tokens,
                 lmc_stop_reason_name(g->stop_reason));
    else if (g) /* cut short: the stream has no figures */
        snprintf(tokens, sizeof tokens, " %lld tokens, %s,", (long long)g->metrics.generated_tokens,
                 lmc_stop_reason_name(g->stop_reason));
    fprintf(stderr, "lmc serve: %s %s %u%s %.3f s%s%s\n", method, url, status, tokens, now_seconds() - t0, why ? ": " : "",
            why ? why : "");
}

/* --- generations ------------------------------------------------------------------------ */

enum { PHASE_START, PHASE_RUN, PHASE_END };

/* One generation request, from its turn to its last byte. */
typedef struct gen_run {
    lmc_server *srv;
    job job;
    bool registered;
    lmc_srv_request req;
    lmc_stream *stream;
    char id[64];
    long long created;
    double t0;
    char method[8], url[64];
    lmc_generation final;     /* copy of the result's counts once done (text and ids not kept) */
    int phase;                /* streaming only */
    bool cut;                 /* the stream ended before its end (client gone, out of memory) */
    lmc_strbuf out;           /* streaming: event bytes, handed to libmicrohttpd from out_pos */
    size_t out_pos;
    size_t lp_sent;           /* streaming: generated tokens whose log-probabilities were sent */
    lmc_tool_stream said;     /* streaming with tools: the reply so far, content sent up to where a call may start */
    lmc_reasoning_stream think; /* streaming a thinking model's chat reply */
    int choice_i;             /* the choice being made (requests with "n") */
    int64_t generated;        /* tokens of the choices made before it */
} gen_run;

static const char *finish_reason(lmc_stop_reason r) {
    return r == LMC_STOP_MAX_TOKENS || r == LMC_STOP_CONTEXT ? "length" : "stop";
}

/* Frees the stream (handing the prompt cache back) and gives up the turn. */
static void end_generation(gen_run *g) {
    if (g->stream) {
        const lmc_generation *res = lmc_stream_result(g->stream);
        /* a stream cut before its end (client gone, server stopping) */
        g->final.stop_reason = res->stop_reason == LMC_STOP_NONE ? LMC_STOP_CANCELLED : res->stop_reason;
        g->final.metrics = res->metrics;
        g->final.metrics.generated_tokens = (int64_t)res->n_ids;
        lmc_stream_free(g->stream);
        g->stream = NULL;
    }
    if (g->registered) job_unregister(g->srv, &g->job);
    g->registered = false;
}

static void gen_run_free(gen_run *g) {
    end_generation(g);
    lmc_srv_request_free(&g->req);
    lmc_strbuf_free(&g->out);
    lmc_tool_stream_free(&g->said);
    lmc_reasoning_stream_free(&g->think);
    free(g);
}

/* The request's prompt as lmc_stream_start_prompt takes it. */
static lmc_prompt request_prompt(const lmc_srv_request *r) {
    lmc_prompt p = {0};
    if (r->kind == LMC_SRV_CHAT) {
        p.msgs = r->msgs;
        p.n_msgs = r->n_msgs;
        p.messages_json = r->messages_json;
        p.tools_json = r->tools_json;
    } else if (r->prompt) {
        p.text = r->prompt;
    } else {
        p.ids = r->ids;
        p.n_ids = r->n_ids;
    }
    return p;
}

/* Waits for the turn and starts the stream. Returns 0 on success, else the
 * HTTP status to answer with (message in msg), or 1 when the client is gone. */
static unsigned start_generation(gen_run *g, struct MHD_Connection *c, char *msg, size_t cap) {
    lmc_server *s = g->srv;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    job_register(s, &g->job, ci ? ci->connect_fd : -1);
    g->registered = true;
    if (!job_wait_turn(s, &g->job)) {
        bool stopping;
        pthread_mutex_lock(&s->lock);
        stopping = s->stopping;
        pthread_mutex_unlock(&s->lock);
        end_generation(g);
        snprintf(msg, cap, "the server is shutting down");
        return stopping ? MHD_HTTP_SERVICE_UNAVAILABLE : 1;
    }
    g->req.gen.cancel = &g->job.cancel;
    lmc_prompt p = request_prompt(&g->req);
    lmc_status st = lmc_stream_start_prompt(s->m, &p, &g->req.gen, &g->stream);
    if (st == LMC_OK) return 0;
    /* a model without a chat template (a base model) can still complete text */
    bool no_template = st == LMC_ERR_NOT_FOUND && g->req.kind == LMC_SRV_CHAT;
    snprintf(msg, cap, "%s%s", lmc_last_error(), no_template ? "; use /v1/completions with this model" : "");
    end_generation(g);
    /* a request this model cannot serve (tools with a template that has no tool syntax) is the client's to change */
    return st == LMC_ERR_INVALID_ARGUMENT || st == LMC_ERR_UNSUPPORTED || no_template ? MHD_HTTP_BAD_REQUEST
                                                                                        : MHD_HTTP_INTERNAL_SERVER_ERROR;
}

/* The fields every response object and chunk starts with. */
static cJSON *response_head(const gen_run *g, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)g->created);
    cJSON_AddStringToObject(o, "model", g->srv->model_name);
    return o;
}

static void add_usage(cJSON *o, const lmc_generation *res, uint64_t seed) {
    const lmc_metrics *mt = &res->metrics;
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)mt->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)mt->generated_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(mt->prompt_tokens + mt->generated_tokens));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)mt->cached_prompt_tokens);
    /* lmc's own figures */
    cJSON *l = cJSON_AddObjectToObject(o, "lmc");
    cJSON_AddStringToObject(l, "stop_reason", lmc_stop_reason_name(res->stop_reason));
    cJSON_AddNumberToObject(l, "cached_prompt_tokens", (double)mt->cached_prompt_tokens);
    cJSON_AddNumberToObject(l, "prefill_tokens_per_second", mt->prefill_tokens_per_second);
    cJSON_AddNumberToObject(l, "decode_tokens_per_second", mt->decode_tokens_per_second);
    cJSON_AddNumberToObject(l, "time_to_first_token", mt->time_to_first_token);
    if (mt->draft_tokens) { /* lmc serve --lookup N */
        cJSON_AddNumberToObject(l, "draft_tokens", (double)mt->draft_tokens);
        cJSON_AddNumberToObject(l, "accepted_draft_tokens", (double)mt->accepted_draft_tokens);
    }
    char seed_text[24]; /* a string: JSON numbers lose integers above 2^53 */
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    cJSON_AddStringToObject(l, "seed", seed_text);
}

/* --- log-probabilities (request "logprobs") ---------------------------------------------- */


/* Adds token id's text ("token", decoded alone, special tokens shown) and,
 * for chat, its bytes (lmc_tokenizer_token_bytes: a token holding part of
 * a character gives that part, where its text has U+FFFD) to o; returns
 * the text (owned by the caller). */
static char *add_token(const gen_run *g, cJSON *o, int32_t id, bool bytes) {
    const lmc_tokenizer *tok = lmc_model_tokenizer(g->srv->m);
    char *text = NULL;
    if (lmc_tokenizer_decode(tok, &id, 1, false, &text, NULL) != LMC_OK) text = NULL;
    if (o) cJSON_AddStringToObject(o, "token", text ? text : "");
    if (o && bytes) lmc_json_add_token_bytes(o, tok, id);
    return text;
}

/* A chat entry: {"token", "bytes", "logprob"}. */
static cJSON *chat_entry(const gen_run *g, int32_t id, float lp) {
    cJSON *e = cJSON_CreateObject();
    free(add_token(g, e, id, true));
    cJSON_AddNumberToObject(e, "logprob", lmc_json_logprob(lp));
    return e;
}

/* An empty legacy (completions) logprobs object: {"tokens", "token_logprobs", "top_logprobs"}. */
static cJSON *legacy_logprobs(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddArrayToObject(o, "tokens");
    cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON_AddArrayToObject(o, "top_logprobs");
    return o;
}

/* Appends token id to a legacy object: its text, its log-probability and
 * its alternatives as {text: logprob} (both null when lp is NULL: nothing
 * predicted the prompt's first token). */
static void legacy_add(const gen_run *g, cJSON *o, int32_t id, const float *lp, const lmc_token_logprob *top, int nt) {
    char *text = add_token(g, NULL, id, false);
    cJSON_AddItemToArray(cJSON_GetObjectItem(o, "tokens"), cJSON_CreateString(text ? text : ""));
    free(text);
    cJSON *tops = cJSON_GetObjectItem(o, "top_logprobs");
    if (!lp) {
        cJSON_AddItemToArray(cJSON_GetObjectItem(o, "token_logprobs"), cJSON_CreateNull());
        cJSON_AddItemToArray(tops, cJSON_CreateNull());
        return;
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(o, "token_logprobs"), cJSON_CreateNumber(lmc_json_logprob(*lp)));
    cJSON *to = cJSON_CreateObject();
    for (int j = 0; j < nt; j++) {
        if (top[j].id < 0) continue;
        char *tt = add_token(g, NULL, top[j].id, false);
        if (!cJSON_GetObjectItemCaseSensitive(to, tt ? tt : "")) /* two ids may print alike */
            cJSON_AddNumberToObject(to, tt ? tt : "", lmc_json_logprob(top[j].logprob));
        free(tt);
    }
    cJSON_AddItemToArray(tops, to);
}

/* Appends generated tokens [from, to) of res to logprobs object o (chat or legacy form). */
static void logprobs_add(const gen_run *g, cJSON *o, const lmc_generation *res, size_t from, size_t to) {
    int nt = res->n_top_logprobs;
    cJSON *content = cJSON_GetObjectItem(o, "content");
    for (size_t i = from; i < to && res->logprobs; i++) {
        const lmc_token_logprob *top = res->top_logprobs ? &res->top_logprobs[i * (size_t)nt] : NULL;
        if (!content) {
            legacy_add(g, o, res->ids[i], &res->logprobs[i], top, nt);
            continue;
        }
        cJSON *e = chat_entry(g, res->ids[i], res->logprobs[i]), *tl = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int j = 0; j < nt; j++)
            if (top[j].id >= 0) cJSON_AddItemToArray(tl, chat_entry(g, top[j].id, top[j].logprob));
        cJSON_AddItemToArray(content, e);
    }
}

/* The "logprobs" of a choice for generated tokens [from, to) of res, or
 * NULL when the request asked for none. Chat: {"content": [{token, bytes,
 * logprob, top_logprobs: [{token, bytes, logprob}]}], "refusal": null};
 * completions (OpenAI's legacy format): {"tokens", "token_logprobs",
 * "top_logprobs": [{token: logprob}]}; prefix (completions with echo, or
 * NULL) holds the prompt's entries, which come first. */
static cJSON *logprobs_json(const gen_run *g, const lmc_generation *res, size_t from, size_t to, cJSON *prefix) {
    if (!g->req.gen.logprobs || !res) return NULL;
    cJSON *o = prefix;
    if (!o && g->req.kind == LMC_SRV_CHAT) {
        o = cJSON_CreateObject();
        cJSON_AddArrayToObject(o, "content");
        logprobs_add(g, o, res, from, to);
        cJSON_AddNullToObject(o, "refusal");
        return o;
    }
    if (!o) o = legacy_logprobs();
    logprobs_add(g, o, res, from, to);
    return o;
}

/* One choice: a chat message / delta, or a completion's text. logprobs and
 * calls (tool calls) are owned by the choice from now on, or NULL; for a
 * whole message, content is null when the reply is only calls. reasoning:
 * a thinking model's reasoning_content, or NULL. */
static cJSON *choice(const gen_run *g, const char *key, const char *role, const char *text, const char *finish,
                     cJSON *logprobs, cJSON *calls, const char *reasoning) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", g->choice_i);
    if (g->req.kind == LMC_SRV_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, key);
        if (role) cJSON_AddStringToObject(m, "role", role);
        if (reasoning && *reasoning) cJSON_AddStringToObject(m, "reasoning_content", reasoning);
        if (text && (*text || !calls)) cJSON_AddStringToObject(m, "content", text);
        else if (calls && !strcmp(key, "message")) cJSON_AddNullToObject(m, "content");
        if (calls) cJSON_AddItemToObject(m, "tool_calls", calls);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (logprobs) cJSON_AddItemToObject(c, "logprobs", logprobs);
    else cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return c;
}

/* "echo": the prompt's text, and with "logprobs" (lp: an empty legacy
 * object) its tokens' entries, scored as generated tokens are. */
static lmc_status echo_prompt(gen_run *g, char **text, cJSON *lp) {
    lmc_model *m = g->srv->m;
    const lmc_tokenizer *tok = lmc_model_tokenizer(m);
    if (!tok) return lmc_last_status();
    int32_t *ids = NULL;
    size_t n = 0;
    bool own = g->req.prompt != NULL;
    lmc_status st = own ? lmc_tokenizer_encode(tok, g->req.prompt, strlen(g->req.prompt), g->req.gen.add_special_tokens, &ids, &n)
                        : LMC_OK;
    if (!own) ids = g->req.ids, n = g->req.n_ids;
    if (st == LMC_OK) st = own ? ((*text = strdup(g->req.prompt)) ? LMC_OK : LMC_ERR_OUT_OF_MEMORY)
                               : lmc_tokenizer_decode(tok, ids, n, false, text, NULL);
    lmc_array *logits = st == LMC_OK && lp && n > 1 ? lmc_model_logits(m, ids, n, true) : NULL;
    if (st == LMC_OK && lp && n > 1 && !logits) st = lmc_last_status();
    /* token i's entry comes from the logits at i - 1: the same arithmetic as a generated token's */
    lmc_generation scored = {.n_top_logprobs = g->req.gen.top_logprobs};
    int64_t V = logits ? lmc_array_dim(logits, 1) : 0;
    const float *all = logits ? lmc_array_data(logits) : NULL;
    for (size_t i = 1; st == LMC_OK && logits && i < n; i++)
        st = lmc_logprobs_append(all + (i - 1) * (size_t)V, V, ids[i], scored.n_top_logprobs, i - 1, &scored.logprobs,
                                 &scored.top_logprobs);
    if (st == LMC_OK && lp && n) {
        legacy_add(g, lp, ids[0], NULL, NULL, 0);
        scored.ids = ids + 1;
        scored.n_ids = n - 1;
        logprobs_add(g, lp, &scored, 0, scored.n_ids);
    }
    free(scored.logprobs);
    free(scored.top_logprobs);
    lmc_array_free(logits);
    if (own) lmc_tokenizer_free_ids(ids);
    return st;
}

/* Choice i (i > 0) of a request with "n": a new stream, drawing with seed + i. */
static lmc_status next_choice(gen_run *g, int i) {
    lmc_stream_free(g->stream);
    g->stream = NULL;
    lmc_generate_options o = g->req.gen;
    o.sampler.seed += (uint64_t)i;
    lmc_prompt p = request_prompt(&g->req);
    return lmc_stream_start_prompt(g->srv->m, &p, &o, &g->stream);
}

static cJSON *whole_choice(gen_run *g, const lmc_generation *res);

static enum MHD_Result answer_whole(gen_run *g, struct MHD_Connection *c) {
    bool chat = g->req.kind == LMC_SRV_CHAT;
    cJSON *o = response_head(g, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    int64_t generated = 0;
    for (int i = 0; i < (g->req.n > 1 ? g->req.n : 1); i++) {
        lmc_status st = i ? next_choice(g, i) : LMC_OK;
        g->choice_i = i;
        for (;;) {
            int32_t id;
            const char *piece;
            size_t len;
            bool done;
            if (st != LMC_OK) break;
            st = lmc_stream_next(g->stream, &id, &piece, &len, &done);
            if (st != LMC_OK || done) break;
        }
        if (st != LMC_OK) {
            char msg[600];
            snprintf(msg, sizeof msg, "generation failed: %s", lmc_last_error());
            bool gone = st == LMC_ERR_CANCELLED;
            cJSON_Delete(o);
            end_generation(g);
            log_request(g->srv, g->method, g->url, gone ? 499 : 500, g->t0, &g->final, gone ? NULL : msg);
            return gone ? MHD_NO : send_error(g->srv, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "", "%s", msg);
        }
        const lmc_generation *res = lmc_stream_result(g->stream);
        generated += (int64_t)res->n_ids;
        cJSON *one = whole_choice(g, res);
        if (!one) {
            char msg[600];
            snprintf(msg, sizeof msg, "echo: %s", lmc_last_error());
            cJSON_Delete(o);
            end_generation(g);
            log_request(g->srv, g->method, g->url, 400, g->t0, &g->final, msg);
            return send_error(g->srv, c, MHD_HTTP_BAD_REQUEST, "echo", "%s", msg);
        }
        cJSON_AddItemToArray(choices, one);
    }
    end_generation(g);
    g->final.metrics.generated_tokens = generated; /* the prompt counts once, every choice's tokens */
    add_usage(o, &g->final, g->req.gen.sampler.seed);
    log_request(g->srv, g->method, g->url, 200, g->t0, &g->final, NULL);
    return send_json(g->srv, c, MHD_HTTP_OK, o);
}

/* The whole reply res as a choice (message or text; reasoning, tool calls,
 * echo, logprobs as the request asks), or NULL when echo failed (error set). */
static cJSON *whole_choice(gen_run *g, const lmc_generation *res) {
    bool chat = g->req.kind == LMC_SRV_CHAT;
    cJSON *calls = NULL;
    char *content = NULL, *reasoning = NULL, *answer = NULL;
    const char *text = res->text ? res->text : "";
    if (chat && g->srv->reasoning && lmc_reasoning_split(text, &reasoning, &answer) == LMC_OK) text = answer;
    if (g->req.tools_json && lmc_tool_calls_split(g->srv->tools, text, &calls, &content) != LMC_OK) {
        calls = NULL;
        content = NULL;
    }
    cJSON *lp = NULL;
    char *echoed = NULL, *with_prompt = NULL;
    if (g->req.echo) {
        if (g->req.gen.logprobs) lp = legacy_logprobs();
        lmc_status es = echo_prompt(g, &echoed, lp);
        size_t a = echoed ? strlen(echoed) : 0, b = strlen(text);
        if (es == LMC_OK && (with_prompt = malloc(a + b + 1))) {
            memcpy(with_prompt, echoed, a);
            memcpy(with_prompt + a, text, b + 1);
            text = with_prompt;
        } else {
            if (es == LMC_OK) lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
            free(echoed);
            cJSON_Delete(lp);
            cJSON_Delete(calls);
            free(content);
            free(reasoning);
            free(answer);
            return NULL;
        }
    }
    lp = logprobs_json(g, res, 0, res->n_ids, lp);
    cJSON *one = choice(g, "message", "assistant", content ? content : text, calls ? "tool_calls" : finish_reason(res->stop_reason),
                        lp, calls, reasoning);
    free(echoed);
    free(with_prompt);
    free(content);
    free(reasoning);
    free(answer);
    return one;
}

/* --- streaming (Server-Sent Events) ------------------------------------------------------ */

/* Appends "data: JSON\n\n" (and frees obj). */
static bool out_event(gen_run *g, cJSON *obj) {
    char *json = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (json) {
        lmc_strbuf_puts(&g->out, "data: ");
        lmc_strbuf_puts(&g->out, json);
        lmc_strbuf_puts(&g->out, "\n\n");
    }
    free(json);
    return json && !g->out.failed;
}

/* A chunk; with logprobs on, it carries the tokens generated since the last
 * chunk that carried any (text held back for a stop string or an unfinished
 * character comes later, its tokens' entries with the text). */
static cJSON *chunk_with(gen_run *g, const char *role, const char *reasoning, const char *text, const char *finish) {
    bool chat = g->req.kind == LMC_SRV_CHAT;
    cJSON *o = response_head(g, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *lp = NULL;
    const lmc_generation *res = g->stream && g->req.gen.logprobs ? lmc_stream_result(g->stream) : NULL;
    if (res && (res->n_ids > g->lp_sent || finish)) {
        lp = logprobs_json(g, res, g->lp_sent, res->n_ids, NULL);
        g->lp_sent = res->n_ids;
    }
    cJSON_AddItemToArray(choices, choice(g, "delta", role, text, finish, lp, NULL, reasoning));
    return o;
}

static cJSON *chunk(gen_run *g, const char *role, const char *text, const char *finish) {
    return chunk_with(g, role, NULL, text, finish);
}

/* Sends a piece of the answer (content): through the tool-call filter when
 * the request has tools. False when the stream must be cut. */
static bool send_content(gen_run *g, const char *piece, size_t len) {
    if (g->req.tools_json) {
        g->said.format = g->srv->tools;
        lmc_tool_stream_feed(&g->said, piece, len, &piece, &len);
    }
    if (!len) return true;
    char *part = strndup(piece, len);
    bool ok = part && out_event(g, chunk(g, NULL, part, NULL));
    free(part);
    return ok;
}

/* Sends a piece of the reply: a thinking model's reasoning as
 * reasoning_content deltas, the rest as content. final: flush what is held. */
static bool send_piece(gen_run *g, const char *piece, size_t len, bool final) {
    if (!(g->srv->reasoning && g->req.kind == LMC_SRV_CHAT)) return send_content(g, piece, len);
    const char *r, *c;
    size_t rn, cn;
    lmc_reasoning_feed(&g->think, piece, len, final, &r, &rn, &c, &cn);
    if (rn) {
        char *part = strndup(r, rn);
        bool ok = part && out_event(g, chunk_with(g, NULL, part, NULL, NULL));
        free(part);
        if (!ok) return false;
    }
    return !cn || send_content(g, c, cn);
}

static bool finish_stream(gen_run *g, bool ok);
static bool next_streamed_choice(gen_run *g);

/* Produces the next events into g->out; false when the stream must be cut
 * (client gone, out of memory). */
static bool produce(gen_run *g) {
    if (g->phase == PHASE_START) {
        g->phase = PHASE_RUN;
        return g->req.kind == LMC_SRV_CHAT ? out_event(g, chunk(g, "assistant", "", NULL)) : true;
    }
    int32_t id;
    const char *piece = "";
    size_t len = 0;
    bool done = false;
    lmc_status st = lmc_stream_next(g->stream, &id, &piece, &len, &done);
    if (st == LMC_OK && (len || done) && !send_piece(g, piece, len, done)) return false;
    if (st == LMC_OK && !done) return true;
    g->phase = PHASE_END;
    if (st != LMC_OK) {
        bool gone = st == LMC_ERR_CANCELLED;
        char msg[600];
        snprintf(msg, sizeof msg, "generation failed: %s", lmc_last_error());
        end_generation(g);
        if (gone) return false;
        return out_event(g, error_json(500, msg, NULL));
    }
    bool chat = g->req.kind == LMC_SRV_CHAT;
    const lmc_generation *res = lmc_stream_result(g->stream);
    cJSON *calls = NULL;
    if (g->req.tools_json) { /* what was held back: the rest of the content, then the calls */
        char *rest = NULL;
        g->said.format = g->srv->tools;
        bool ok = lmc_tool_stream_finish(&g->said, &calls, &rest) == LMC_OK;
        ok = ok && (!*rest || out_event(g, chunk(g, NULL, rest, NULL)));
        free(rest);
        int i = 0;
        for (cJSON *c = calls ? calls->child : NULL; ok && c; c = c->next, i++) cJSON_AddNumberToObject(c, "index", i);
        if (ok && calls) {
            cJSON *o = response_head(g, "chat.completion.chunk");
            cJSON *ch = cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToArray(ch, choice(g, "delta", NULL, NULL, NULL, NULL, calls, NULL));
            calls = NULL;
            ok = out_event(g, o);
            if (ok) {
                cJSON *last = chunk(g, NULL, NULL, "tool_calls");
                if (g->choice_i + 1 < g->req.n) return out_event(g, last) && next_streamed_choice(g);
                end_generation(g);
                ok = out_event(g, last);
                return finish_stream(g, ok);
            }
        }
        cJSON_Delete(calls);
        if (!ok) {
            end_generation(g);
            return false;
        }
    }
    cJSON *last = chunk(g, NULL, chat ? NULL : "", finish_reason(res->stop_reason == LMC_STOP_NONE ? LMC_STOP_CANCELLED
                                                                                                   : res->stop_reason));
    if (g->choice_i + 1 < g->req.n) return out_event(g, last) && next_streamed_choice(g);
    end_generation(g);
    return finish_stream(g, out_event(g, last));
}

/* Streaming with "n": choice i + 1 after choice i's last chunk (each
 * chunk names its choice's index), its own stream drawing with seed + i + 1;
 * the usage chunk at the end counts every choice's tokens. */
static bool next_streamed_choice(gen_run *g) {
    g->generated += (int64_t)lmc_stream_result(g->stream)->n_ids;
    g->choice_i++;
    g->lp_sent = 0;
    lmc_tool_stream_free(&g->said);
    lmc_reasoning_stream_free(&g->think);
    memset(&g->said, 0, sizeof g->said);
    memset(&g->think, 0, sizeof g->think);
    if (next_choice(g, g->choice_i) != LMC_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "generation failed: %s", lmc_last_error());
        end_generation(g);
        return out_event(g, error_json(500, msg, NULL));
    }
    g->phase = PHASE_START; /* a chat choice opens with its role */
    return true;
}

/* After the last chunk: the usage chunk (when asked for) and [DONE]. */
static bool finish_stream(gen_run *g, bool ok) {
    bool chat = g->req.kind == LMC_SRV_CHAT;
    if (ok && g->req.include_usage) {
        cJSON *u = response_head(g, chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(u, "choices");
        g->final.metrics.generated_tokens += g->generated; /* the prompt counts once, every choice's tokens */
        add_usage(u, &g->final, g->req.gen.sampler.seed);
        ok = out_event(g, u);
    }
    if (ok) lmc_strbuf_puts(&g->out, "data: [DONE]\n\n");
    return ok && !g->out.failed;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen_run *g = cls;
    while (g->out_pos == g->out.len) {
        if (g->phase == PHASE_END) return MHD_CONTENT_READER_END_OF_STREAM;
        g->out_pos = g->out.len = 0;
        if (!produce(g)) {
            g->cut = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = g->out.len - g->out_pos < max ? g->out.len - g->out_pos : max;
    memcpy(buf, g->out.data + g->out_pos, n);
    g->out_pos += n;
    return (ssize_t)n;
}

static void sse_free(void *cls) {
    gen_run *g = cls;
    bool complete = !g->cut && g->phase == PHASE_END && g->out_pos == g->out.len;
    end_generation(g);
    log_request(g->srv, g->method, g->url, complete ? 200 : 499, g->t0, &g->final, NULL);
    gen_run_free(g);
}

static enum MHD_Result answer_stream(gen_run *g, struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, g, sse_free);
    if (!r) {
        gen_run_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return queue(g->srv, c, MHD_HTTP_OK, r); /* the connection holds it now; sse_free runs when it is done */
}

static enum MHD_Result handle_generation(lmc_server *s, struct MHD_Connection *c, lmc_srv_kind kind, const char *method,
                                         const char *url, const char *body, size_t len, double t0) {
    gen_run *g = calloc(1, sizeof *g);
    if (!g) return send_error(s, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "", "out of memory");
    g->srv = s;
    g->t0 = t0;
    snprintf(g->method, sizeof g->method, "%s", method);
    snprintf(g->url, sizeof g->url, "%s", url);
    lmc_srv_error err;
    if (!lmc_srv_parse_request(kind, body, len, &s->gen, &g->req, &err)) {
        gen_run_free(g);
        log_request(s, method, url, 400, t0, NULL, err.message);
        return send_error(s, c, MHD_HTTP_BAD_REQUEST, err.param, "%s", err.message);
    }
    if (!g->req.has_seed && s->random_seed && getrandom(&g->req.gen.sampler.seed, sizeof g->req.gen.sampler.seed, 0) < 0)
        g->req.gen.sampler.seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + (uint64_t)atomic_load(&s->counter);
    unsigned long long k = atomic_fetch_add(&s->counter, 1);
    snprintf(g->id, sizeof g->id, "%s-%llx%06llx", kind == LMC_SRV_CHAT ? "chatcmpl" : "cmpl", (long long)s->created, k);
    g->created = (long long)time(NULL);
    char msg[600];
    unsigned status = start_generation(g, c, msg, sizeof msg);
    if (status) {
        gen_run_free(g);
        log_request(s, method, url, status == 1 ? 499 : status, t0, NULL, status == 1 ? NULL : msg);
        if (status == 1) return MHD_NO; /* nobody to answer */
        return send_error(s, c, status, status == MHD_HTTP_BAD_REQUEST ? (kind == LMC_SRV_CHAT ? "messages" : "prompt") : "",
                          "%s", msg);
    }
    if (g->req.stream) return answer_stream(g, c);
    enum MHD_Result r = answer_whole(g, c);
    gen_run_free(g);
    return r;
}

/* --- embeddings ------------------------------------------------------------------------ */

/* v's floats, little-endian, in base64 (OpenAI's "encoding_format": "base64"). */
static char *base64_floats(const float *v, int64_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t bytes = (size_t)n * 4, out_len = (bytes + 2) / 3 * 4;
    unsigned char *raw = malloc(bytes ? bytes : 1);
    char *out = malloc(out_len + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) raw[i * 4 + k] = (unsigned char)(u >> (8 * k));
    }
    size_t o = 0;
    for (size_t i = 0; i < bytes; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16 | (i + 1 < bytes ? (uint32_t)raw[i + 1] << 8 : 0) | (i + 2 < bytes ? raw[i + 2] : 0);
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = i + 1 < bytes ? tab[w >> 6 & 63] : '=';
        out[o++] = i + 2 < bytes ? tab[w & 63] : '=';
    }
    out[o] = 0;
    free(raw);
    return out;
}

/* POST /v1/embeddings: takes the model's turn like a generation, then lmc_embed. */
static enum MHD_Result handle_embeddings(lmc_server *s, struct MHD_Connection *c, const char *method, const char *url,
                                         const char *body, size_t len, double t0) {
    lmc_srv_embed_request r;
    lmc_srv_error err;
    if (!lmc_srv_parse_embed_request(body, len, &r, &err)) {
        log_request(s, method, url, 400, t0, NULL, err.message);
        return send_error(s, c, MHD_HTTP_BAD_REQUEST, err.param, "%s", err.message);
    }
    job jb;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    job_register(s, &jb, ci ? ci->connect_fd : -1);
    lmc_embedding *res = NULL;
    lmc_batch_metrics mt = {0};
    lmc_status st = LMC_ERR_CANCELLED;
    if (job_wait_turn(s, &jb)) {
        lmc_embed_options o = lmc_embed_options_default();
        o.pooling = s->pooling;
        o.cancel = &jb.cancel;
        st = lmc_embed(s->m, r.inputs, r.n, &o, &res, &mt);
    }
    job_unregister(s, &jb);
    unsigned status = MHD_HTTP_OK;
    char msg[600] = "";
    const char *param = "";
    if (st == LMC_ERR_CANCELLED) {
        status = 1;
    } else if (st != LMC_OK) {
        status = lmc_last_status() == LMC_ERR_UNSUPPORTED ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR;
        snprintf(msg, sizeof msg, "%s", lmc_last_error());
    }
    for (size_t i = 0; status == MHD_HTTP_OK && i < r.n; i++) {
        if (res[i].status == LMC_OK && r.dimensions > res[i].dim) {
            status = MHD_HTTP_BAD_REQUEST;
            param = "dimensions";
            snprintf(msg, sizeof msg, "'dimensions' is %d, more than the model's %lld", r.dimensions, (long long)res[i].dim);
        } else if (res[i].status != LMC_OK) {
            status = res[i].status == LMC_ERR_INVALID_ARGUMENT ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR;
            param = "input";
            snprintf(msg, sizeof msg, "input[%zu]: %s", i, res[i].error ? res[i].error : "failed");
        }
    }
    enum MHD_Result ret;
    if (status == 1) {
        log_request(s, method, url, 499, t0, NULL, NULL);
        ret = MHD_NO;
    } else if (status != MHD_HTTP_OK) {
        log_request(s, method, url, status, t0, NULL, msg);
        ret = send_error(s, c, status, param, "%s", msg);
    } else {
        cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddItemToObject(o, "data", data);
        int64_t tokens = 0;
        for (size_t i = 0; i < r.n; i++) {
            int64_t dim = r.dimensions ? r.dimensions : res[i].dim;
            if (r.dimensions) { /* the first N, normalised again (Matryoshka-style truncation) */
                double norm = 0;
                for (int64_t j = 0; j < dim; j++) norm += (double)res[i].values[j] * res[i].values[j];
                for (int64_t j = 0; norm > 0 && j < dim; j++) res[i].values[j] = (float)(res[i].values[j] / sqrt(norm));
            }
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "object", "embedding");
            cJSON_AddNumberToObject(e, "index", (double)i);
            if (r.base64) {
                char *b = base64_floats(res[i].values, dim);
                cJSON_AddStringToObject(e, "embedding", b ? b : "");
                free(b);
            } else {
                cJSON *a = cJSON_AddArrayToObject(e, "embedding");
                for (int64_t j = 0; j < dim; j++) cJSON_AddItemToArray(a, cJSON_CreateNumber(res[i].values[j]));
            }
            cJSON_AddItemToArray(data, e);
            tokens += res[i].prompt_tokens;
        }
        cJSON_AddStringToObject(o, "model", s->model_name);
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
        cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
        atomic_fetch_add(&s->n_prompt_tokens, (unsigned long long)tokens);
        log_request(s, method, url, 200, t0, NULL, NULL);
        ret = send_json(s, c, MHD_HTTP_OK, o);
    }
    lmc_embeddings_free(res, r.n);
    lmc_srv_embed_request_free(&r);
    return ret;
}

/* --- other endpoints ------------------------------------------------------------------ */

static cJSON *model_json(const lmc_server *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->model_name);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)s->created);
    cJSON_AddStringToObject(o, "owned_by", "lmc");
    lmc_model_info info;
    if (lmc_model_get_info(s->m, &info) == LMC_OK) {
        cJSON *l = cJSON_AddObjectToObject(o, "lmc");
        cJSON_AddStringToObject(l, "architecture", info.architecture);
        cJSON_AddNumberToObject(l, "context_length", (double)s->m->context_length);
        cJSON_AddNumberToObject(l, "num_parameters", (double)info.num_parameters);
        cJSON_AddNumberToObject(l, "quant_bits", info.quant_bits);
    }
    return o;
}

/* --- routing ------------------------------------------------------------------------------ */

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_large, answered;
    double t0;
} conn_ctx;

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)cls;
    (void)c;
    (void)code;
    conn_ctx *ctx = *con_cls;
    if (ctx) free(ctx->body);
    free(ctx);
    *con_cls = NULL;
}

/* True when the request carries the server's API key (or none is needed).
 * The comparison takes the same time wherever the first difference is. */
static bool authorized(const lmc_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t n = strlen(h), k = strlen(s->api_key);
    unsigned char diff = n != k;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h[i] ^ s->api_key[i % k]);
    return diff == 0;
}

/* Prometheus text format (version 0.0.4): counters since the server
 * started, the queue and lmc's memory now. */
static char *metrics_text(lmc_server *s) {
    lmc_strbuf b = {0};
#define METRIC(name, type, help, fmt, ...) \
    lmc_strbuf_printf(&b, "# HELP " name " " help "\n# TYPE " name " " type "\n" name fmt "\n", __VA_ARGS__)
    METRIC("lmc_requests_total", "counter", "HTTP requests answered.", " %llu", atomic_load(&s->n_requests));
    METRIC("lmc_request_errors_total", "counter", "Requests answered with a status of 400 or more (499: client gone).",
           " %llu", atomic_load(&s->n_errors));
    METRIC("lmc_generations_total", "counter", "Generation requests that ran (completed, failed or cut short).", " %llu",
           atomic_load(&s->n_generations));
    METRIC("lmc_prompt_tokens_total", "counter", "Prompt tokens of the generations.", " %llu", atomic_load(&s->n_prompt_tokens));
    METRIC("lmc_prompt_tokens_cached_total", "counter", "Prompt tokens taken from the prompt cache, not computed.", " %llu",
           atomic_load(&s->n_cached_tokens));
    METRIC("lmc_generated_tokens_total", "counter", "Tokens generated.", " %llu", atomic_load(&s->n_generated_tokens));
    METRIC("lmc_generation_seconds_total", "counter", "Wall time of generation requests, queueing included.", " %.6f",
           (double)atomic_load(&s->generation_us) * 1e-6);
    pthread_mutex_lock(&s->lock);
    int waiting = 0;
    for (job *j = s->jobs; j; j = j->next) waiting += !j->running;
    bool busy = s->busy;
    pthread_mutex_unlock(&s->lock);
    METRIC("lmc_requests_running", "gauge", "Generations running now (one at a time).", " %d", busy ? 1 : 0);
    METRIC("lmc_requests_waiting", "gauge", "Generation requests waiting for their turn.", " %d", waiting);
    lmc_memory_stats cpu = lmc_memory(LMC_CPU), gpu = lmc_memory(LMC_CUDA);
    bool cuda = lmc_device_available(LMC_CUDA);
    METRIC("lmc_memory_active_bytes", "gauge", "Bytes lmc holds, by device.", "{device=\"cpu\"} %zu", cpu.active_bytes);
    if (cuda) lmc_strbuf_printf(&b, "lmc_memory_active_bytes{device=\"cuda\"} %zu\n", gpu.active_bytes);
    METRIC("lmc_memory_peak_bytes", "gauge", "Most bytes lmc has held, by device.", "{device=\"cpu\"} %zu", cpu.peak_bytes);
    if (cuda) lmc_strbuf_printf(&b, "lmc_memory_peak_bytes{device=\"cuda\"} %zu\n", gpu.peak_bytes);
    METRIC("lmc_uptime_seconds", "gauge", "Seconds since the server started.", " %.3f", now_seconds() - s->started);
#undef METRIC
    if (b.failed) {
        lmc_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

/* Path without the optional "/v1" prefix (clients configured with a base
 * URL without it call /chat/completions). */
static const char *route_of(const char *url) { return !strncmp(url, "/v1/", 4) ? url + 3 : url; }

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    lmc_server *s = cls;
    conn_ctx *ctx = *con_cls;
    if (!ctx) {
        /* First call: headers only. An announced body over the limit is
         * refused before it is read. */
        if (!(ctx = calloc(1, sizeof *ctx))) return MHD_NO;
        ctx->t0 = now_seconds();
        *con_cls = ctx;
        /* A missing key is refused before the body is read, too; /health and
         * CORS preflights (which carry no credentials) need none. */
        bool preflight = !strcmp(method, "OPTIONS") && s->cors_origin;
        if (strcmp(url, "/health") && !preflight && !authorized(s, c)) {
            ctx->answered = true;
            log_request(s, method, url, MHD_HTTP_UNAUTHORIZED, ctx->t0, NULL, NULL);
            cJSON *e = error_json(MHD_HTTP_UNAUTHORIZED,
                                  "a valid API key is required: send the header 'Authorization: Bearer KEY'", NULL);
            cJSON_ReplaceItemInObject(cJSON_GetObjectItem(e, "error"), "code", cJSON_CreateString("invalid_api_key"));
            return send_json(s, c, MHD_HTTP_UNAUTHORIZED, e);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            ctx->answered = true;
            log_request(s, method, url, 413, ctx->t0, NULL, NULL);
            return send_error(s, c, MHD_HTTP_CONTENT_TOO_LARGE, "", "the request body (%s bytes) is larger than the limit of %zu bytes",
                              cl, s->max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (ctx->answered || ctx->too_large) return MHD_YES;
        if (ctx->len + n > s->max_body) {
            /* a chunked body grew past the limit: drop it, answer at the end */
            ctx->too_large = true;
            free(ctx->body);
            ctx->body = NULL;
            ctx->len = ctx->cap = 0;
            return MHD_YES;
        }
        if (ctx->len + n + 1 > ctx->cap) {
            size_t cap = (ctx->len + n + 1) * 2 < s->max_body + 1 ? (ctx->len + n + 1) * 2 : s->max_body + 1;
            char *p = realloc(ctx->body, cap);
            if (!p) return MHD_NO;
            ctx->body = p;
            ctx->cap = cap;
        }
        memcpy(ctx->body + ctx->len, upload, n);
        ctx->len += n;
        ctx->body[ctx->len] = 0;
        return MHD_YES;
    }
    if (ctx->answered) return MHD_YES;
    ctx->answered = true;
    if (ctx->too_large) {
        log_request(s, method, url, 413, ctx->t0, NULL, NULL);
        return send_error(s, c, MHD_HTTP_CONTENT_TOO_LARGE, "", "the request body is larger than the limit of %zu bytes",
                          s->max_body);
    }
    const char *route = route_of(url);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    lmc_srv_kind kind;
    bool generation = false;
    if (!strcmp(route, "/chat/completions")) {
        kind = LMC_SRV_CHAT;
        generation = true;
    } else if (!strcmp(route, "/completions")) {
        kind = LMC_SRV_COMPLETION;
        generation = true;
    }
    bool embeddings = !strcmp(route, "/embeddings");
    if (embeddings) generation = true; /* POST, and the model's turn */
    bool known = generation || !strcmp(url, "/health") || !strcmp(url, "/metrics") || !strcmp(route, "/models") ||
                 !strncmp(route, "/models/", 8);
    unsigned status;
    enum MHD_Result ret;
    if (known && !strcmp(method, "OPTIONS") && s->cors_origin) {
        /* a browser's CORS preflight (it carries no credentials) */
        status = MHD_HTTP_NO_CONTENT;
        struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(0, NULL, NULL);
        ret = r ? queue(s, c, status, r) : MHD_NO;
    } else if (!known) {
        status = MHD_HTTP_NOT_FOUND;
        ret = send_error(s, c, status, "", "no such endpoint: %s %.200s", method, url);
    } else if (generation ? !post : !get) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        ret = send_error(s, c, status, "", "%.200s does not take %s (use %s)", url, method, generation ? "POST" : "GET");
    } else if (embeddings) {
        return handle_embeddings(s, c, method, url, ctx->body ? ctx->body : "", ctx->len, ctx->t0);
    } else if (generation) {
        return handle_generation(s, c, kind, method, url, ctx->body ? ctx->body : "", ctx->len, ctx->t0);
    } else if (!strcmp(url, "/health")) {
        status = MHD_HTTP_OK;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        ret = send_json(s, c, status, o);
    } else if (!strcmp(url, "/metrics")) {
        status = MHD_HTTP_OK;
        ret = send_text(s, c, status, metrics_text(s), "text/plain; version=0.0.4; charset=utf-8");
    } else if (!strcmp(route, "/models")) {
        status = MHD_HTTP_OK;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), model_json(s));
        ret = send_json(s, c, status, o);
    } else if (!strcmp(route + 8, s->model_name)) {
        status = MHD_HTTP_OK;
        ret = send_json(s, c, status, model_json(s));
    } else {
        status = MHD_HTTP_NOT_FOUND;
        ret = send_error(s, c, status, "model", "no such model: '%.200s' (this server has '%s')", route + 8, s->model_name);
    }
    log_request(s, method, url, status, ctx->t0, NULL, NULL);
    return ret;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    const lmc_server *s = cls;
    if (!s->log) return;
    fprintf(stderr, "lmc serve: libmicrohttpd: ");
    vfprintf(stderr, fmt, ap);
}

/* --- start and stop ---------------------------------------------------------------------- */

lmc_server_options lmc_server_options_default(void) {
    lmc_server_options o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.gen = lmc_generate_options_default();
    o.gen.max_tokens = INT32_MAX;
    o.random_seed = true;
    o.max_body_bytes = 8u << 20;
    o.max_connections = 64;
    o.idle_timeout = 600;
    return o;
}

/* A listening socket on host:port (the first address that binds). */
static lmc_status listen_on(const char *host, int port, int *fd_out, int *family) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai) return lmc_set_error(LMC_ERR_IO, "host '%s': %s", host, gai_strerror(gai));
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 128)) {
            err = errno;
            close(fd);
            fd = -1;
        } else {
            *family = a->ai_family;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return lmc_set_error(LMC_ERR_IO, "cannot listen on %s port %d: %s", host, port, strerror(err));
    *fd_out = fd;
    return LMC_OK;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void server_free(lmc_server *s) {
    if (s->stops)
        for (int i = 0; i < s->gen.n_stop_strings; i++) free(s->stops[i]);
    free(s->stops);
    free(s->model_name);
    free(s->api_key);
    free(s->cors_origin);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->turn_cond);
    pthread_cond_destroy(&s->watch_cond);
    free(s);
}

/* The folder's last component: "models/Qwen3-0.6B/" -> "Qwen3-0.6B". */
static char *base_name(const char *dir) {
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/') start--;
    return end > start ? strndup(dir + start, end - start) : strdup("model");
}

lmc_status lmc_server_start(lmc_model *m, const lmc_server_options *opt_in, lmc_server **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_server_start: out is NULL");
    *out = NULL;
    LMC_CHECK(lmc_model_check(m));
    lmc_server_options o = opt_in ? *opt_in : lmc_server_options_default();
    if (o.port < 0 || o.port > 65535)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server port must be in [0, 65535], got %d", o.port);
    if (!o.host || !*o.host) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server host is empty");
    if (o.max_body_bytes == 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server max_body_bytes must be > 0");
    if (o.max_connections < 1)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server max_connections must be >= 1, got %d", o.max_connections);
    if (o.idle_timeout < 0)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server idle_timeout must be >= 0, got %d", o.idle_timeout);
    if (o.model_name && !*o.model_name) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server model_name is empty");
    if (o.api_key && !*o.api_key) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server api_key is empty");
    if (o.cors_origin && (!*o.cors_origin || strpbrk(o.cors_origin, "\r\n")))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "server cors_origin must be one origin (or \"*\")");
    LMC_CHECK(lmc_generate_check_options(&o.gen));

    lmc_server *s = calloc(1, sizeof *s);
    if (!s) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->turn_cond, NULL);
    pthread_cond_init(&s->watch_cond, NULL);
    s->m = m;
    s->pooling = o.pooling;
    lmc_chat_template *tmpl = NULL;
    if (lmc_chat_template_load(m->dir, &tmpl) == LMC_OK) {
        s->tools = lmc_tool_format_of(lmc_chat_template_source(tmpl));
        s->reasoning = !o.raw_reasoning && lmc_reasoning_template(lmc_chat_template_source(tmpl));
    }
    lmc_chat_template_free(tmpl);
    s->max_body = o.max_body_bytes;
    s->random_seed = o.random_seed;
    s->log = o.log_requests;
    s->created = time(NULL);
    s->started = now_seconds();
    s->gen = o.gen;
    s->gen.on_token = NULL;
    s->gen.user = NULL;
    s->gen.cancel = NULL;
    s->model_name = o.model_name ? strdup(o.model_name) : base_name(m->dir);
    bool oom = !s->model_name;
    if (!oom && o.api_key) oom = !(s->api_key = strdup(o.api_key));
    if (!oom && o.cors_origin) oom = !(s->cors_origin = strdup(o.cors_origin));
    if (!oom && o.gen.n_stop_strings) {
        s->stops = calloc((size_t)o.gen.n_stop_strings, sizeof *s->stops);
        oom = !s->stops;
        for (int i = 0; !oom && i < o.gen.n_stop_strings; i++)
            oom = !(s->stops[i] = strdup(o.gen.stop_strings[i] ? o.gen.stop_strings[i] : ""));
        s->gen.stop_strings = (const char *const *)s->stops;
    }
    if (oom) {
        s->gen.n_stop_strings = s->stops ? s->gen.n_stop_strings : 0;
        server_free(s);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }

    int fd = -1, family = AF_INET;
    lmc_status st = listen_on(o.host, o.port, &fd, &family);
    if (st != LMC_OK) {
        server_free(s);
        return st;
    }
    s->port = bound_port(fd);
    if (pthread_create(&s->watcher, NULL, watch, s)) {
        close(fd);
        server_free(s);
        return lmc_set_error(LMC_ERR_INTERNAL, "cannot start the server's watcher thread");
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o.max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.idle_timeout, MHD_OPTION_NOTIFY_COMPLETED,
                                 request_done, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->watch_cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->watcher, NULL);
        server_free(s);
        return lmc_set_error(LMC_ERR_IO, "cannot start the HTTP server on %s port %d (libmicrohttpd)", o.host, o.port);
    }
    *out = s;
    return LMC_OK;
}

int lmc_server_port(const lmc_server *s) { return s ? s->port : -1; }

void lmc_server_stop(lmc_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    for (job *j = s->jobs; j; j = j->next) lmc_cancel_request(&j->cancel);
    pthread_cond_broadcast(&s->turn_cond);
    pthread_cond_broadcast(&s->watch_cond);
    pthread_mutex_unlock(&s->lock);
    /* joins every connection thread; their generations see the cancel flag */
    MHD_stop_daemon(s->daemon);
    pthread_join(s->watcher, NULL);
    server_free(s);
}
