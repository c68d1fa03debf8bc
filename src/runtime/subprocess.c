/* Backend "subprocess": an external runtime behind a bridge program that
 * speaks JSON Lines on its stdin/stdout (docs/subprocess-protocol.md).
 *
 * One bridge per model, one request at a time. The bridge tokenises,
 * samples and applies the stop rules; lmc sends the prompt (text, ids or
 * chat messages) and collects token events. Every fault (the bridge cannot
 * start, dies, hangs, writes what is not the protocol) ends and reaps the
 * child, marks the model unusable, and gives an error naming the fault and
 * quoting the end of the bridge's stderr. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/model_internal.h"
#include "runtime/subprocess.h"
#include "runtime/subprocess_proc.h"

enum { PROTOCOL_VERSION = 1 };
static const double DEFAULT_TIMEOUT = 120;

typedef struct bridge {
    pthread_mutex_t mu;       /* guards refs, busy */
    int refs;                 /* the model and an open stream */
    bool busy;                /* a request is in flight */
    bool closed;              /* the model was closed */
    lmc_child child;
    char *command;            /* as given, for messages */
    double timeout;
    int64_t next_id;
    char *broken;             /* why the bridge can no longer be used; NULL while it can */
    cJSON *info;              /* the info object of the load reply */
} bridge;

typedef struct bridge_stream {
    bridge *b;
    int64_t id;
    const volatile int *cancel;
    bool finished;            /* done or error received, or the bridge failed */
    cJSON *msg;               /* the last message (owns the event's text) */
} bridge_stream;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bridge_unref(bridge *b) {
    pthread_mutex_lock(&b->mu);
    bool last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (!last) return;
    lmc_child_stop(&b->child, 0);
    pthread_mutex_destroy(&b->mu);
    cJSON_Delete(b->info);
    free(b->command);
    free(b->broken);
    free(b);
}

/* Claims the bridge for one request. */
static lmc_status acquire(bridge *b) {
    lmc_status st = LMC_OK;
    pthread_mutex_lock(&b->mu);
    if (b->closed) st = lmc_set_error(LMC_ERR_CLOSED, "model is closed");
    else if (b->broken) st = lmc_set_error(LMC_ERR_IO, "the bridge is no longer usable after an earlier fault: %s", b->broken);
    else if (b->busy)
        st = lmc_set_error(LMC_ERR_UNSUPPORTED,
                           "backend subprocess runs one request at a time: another generation is still open on this model");
    else b->busy = true;
    pthread_mutex_unlock(&b->mu);
    return st;
}

static void release(bridge *b) {
    pthread_mutex_lock(&b->mu);
    b->busy = false;
    pthread_mutex_unlock(&b->mu);
}

/* --- faults ---------------------------------------------------------------------- */

/* Ends the child after a fault and records the error: "bridge "CMD" <what>;
 * its stderr ends with: ...". With `gone` the child closed a pipe and is most
 * likely exiting: it gets a moment to do so, and `what` ("while ...") follows
 * how it ended ("exited with status 3", "was killed by signal 11 ..."). A
 * hung or misbehaving child is stopped at once. Returns st. */
static lmc_status fault(bridge *b, lmc_status st, bool gone, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lmc_status fault(bridge *b, lmc_status st, bool gone, const char *fmt, ...) {
    char what[1024], how[160], tail[LMC_STDERR_TAIL + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (gone) lmc_child_wait(&b->child, b->timeout < 2 ? b->timeout : 2);
    if (!b->child.reaped) snprintf(how, sizeof how, "closed its pipes but did not exit");
    else lmc_child_describe_exit(&b->child, how, sizeof how);
    lmc_child_stop(&b->child, 0);
    size_t tl = lmc_child_stderr_tail(&b->child, tail, sizeof tail);
    size_t cap = strlen(what) + sizeof how + 2 * tl + 256;
    char *msg = malloc(cap);
    if (!msg) return lmc_set_error(st, "bridge \"%s\" %s", b->command, what);
    int k = snprintf(msg, cap, "bridge \"%s\" %s%s%s", b->command, gone ? how : "", gone ? " " : "", what);
    if (tl) {
        k += snprintf(msg + k, cap - (size_t)k, "; its stderr ends with:");
        /* Each stderr line indented, so the quote stands apart from our words. */
        for (const char *line = tail; *line && (size_t)k + 4 < cap;) {
            size_t n = strcspn(line, "\n");
            k += snprintf(msg + k, cap - (size_t)k, "\n  | %.*s", (int)n, line);
            line += n + (line[n] == '\n');
        }
    } else {
        k += snprintf(msg + k, cap - (size_t)k, "; it wrote nothing on stderr");
    }
    free(b->broken);
    b->broken = msg;
    return lmc_set_error(st, "%s", msg);
}

/* --- sending and receiving --------------------------------------------------------- */

static lmc_status send_msg(bridge *b, cJSON *obj, const char *what) {
    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_child_result r = lmc_child_write_line(&b->child, line, strlen(line), b->timeout);
    int err = errno;
    free(line);
    switch (r) {
    case LMC_CHILD_OK: return LMC_OK;
    case LMC_CHILD_EOF: return fault(b, LMC_ERR_IO, true, "while lmc was sending %s", what);
    case LMC_CHILD_TIMEOUT:
        return fault(b, LMC_ERR_IO, false, "did not take %s within %g s (timeout)", what, b->timeout);
    default: return fault(b, LMC_ERR_IO, false, "could not be sent %s: %s", what, strerror(err));
    }
}

static cJSON *request(const char *type, int64_t id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNumberToObject(o, "id", (double)id);
    return o;
}

static const char *str_field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool num_field(const cJSON *o, const char *name, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

/* A short, printable quote of a line for error messages. */
static void quote_line(const char *line, size_t len, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < len && k + 8 < cap; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch >= 0x20 && ch != 0x7f) buf[k++] = (char)ch;
        else k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", ch);
    }
    if (k + 8 >= cap && len) k += (size_t)snprintf(buf + k, cap - k, "...");
    buf[k] = 0;
}

/* Reads the next message answering request id (waiting at most `timeout`;
 * `late`, when not NULL, words that fault). Anything else on stdout is a
 * fault. LMC_ERR_CANCELLED (no fault) when the cancel flag was raised while
 * waiting. */
static lmc_status read_msg(bridge *b, int64_t id, const char *what, double timeout, const char *late,
                           const volatile int *cancel, cJSON **out) {
    *out = NULL;
    char *line;
    size_t len;
    lmc_child_result r = lmc_child_read_line(&b->child, timeout, cancel, &line, &len);
    int err = errno;
    switch (r) {
    case LMC_CHILD_OK: break;
    case LMC_CHILD_CANCELLED: return LMC_ERR_CANCELLED;
    case LMC_CHILD_EOF: return fault(b, LMC_ERR_IO, true, "while lmc was waiting for %s", what);
    case LMC_CHILD_TIMEOUT:
        if (late) return fault(b, LMC_ERR_IO, false, "%s", late);
        return fault(b, LMC_ERR_IO, false, "sent nothing for %g s while lmc was waiting for %s (timeout)", timeout, what);
    case LMC_CHILD_OVERSIZED:
        return fault(b, LMC_ERR_FORMAT, false, "wrote an oversized line (more than %zu bytes) while lmc was waiting for %s",
                     b->child.max_line, what);
    default: return fault(b, LMC_ERR_IO, false, "could not be read from: %s", strerror(err));
    }
    char why[512];
    *out = lmc_bridge_parse_line(line, len, id, what, why, sizeof why);
    return *out ? LMC_OK : fault(b, LMC_ERR_FORMAT, false, "%s", why);
}

cJSON *lmc_bridge_parse_line(const char *line, size_t len, int64_t id, const char *what, char *why, size_t cap) {
    char quote[240];
    quote_line(line, len, quote, sizeof quote);
    if (len == 0 || line[0] != '{') {
        snprintf(why, cap,
                 "wrote a line that is not protocol JSON on its stdout (bridges must log to stderr) while lmc was "
                 "waiting for %s: \"%s\"",
                 what, quote);
        return NULL;
    }
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (!msg || !cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        snprintf(why, cap, "wrote malformed JSON while lmc was waiting for %s: \"%s\"", what, quote);
        return NULL;
    }
    const char *type = str_field(msg, "type");
    double mid = -1;
    bool has_id = num_field(msg, "id", &mid);
    /* An error about a request the bridge could not parse carries id 0 or null. */
    bool ours = has_id && mid == (double)id;
    bool anon_error = type && !strcmp(type, "error") && (!has_id || mid == 0);
    if (!type || !(ours || anon_error)) {
        cJSON_Delete(msg);
        snprintf(why, cap, "sent an unexpected message while lmc was waiting for %s (request %lld): \"%s\"", what,
                 (long long)id, quote);
        return NULL;
    }
    return msg;
}

/* The status for a bridge's error reply. */
static lmc_status error_reply(const cJSON *msg, const char *what) {
    const char *code = str_field(msg, "code"), *text = str_field(msg, "message");
    lmc_status st = LMC_ERR_IO;
    static const struct { const char *name; lmc_status st; } codes[] = {
        {"invalid_argument", LMC_ERR_INVALID_ARGUMENT}, {"not_found", LMC_ERR_NOT_FOUND},
        {"unsupported", LMC_ERR_UNSUPPORTED},           {"out_of_memory", LMC_ERR_OUT_OF_MEMORY},
        {"format", LMC_ERR_FORMAT},                     {"cancelled", LMC_ERR_CANCELLED},
    };
    for (size_t i = 0; code && i < sizeof codes / sizeof *codes; i++)
        if (!strcmp(code, codes[i].name)) st = codes[i].st;
    return lmc_set_error(st, "bridge error (%s): %s", what, text ? text : "(no message)");
}

/* Sends a request and reads its single reply of type `want` (or an error). */
static lmc_status call(bridge *b, cJSON *req, const char *want, const char *what, cJSON **reply) {
    *reply = NULL;
    double id = -1;
    num_field(req, "id", &id);
    LMC_CHECK(send_msg(b, req, what));
    char waiting[96];
    snprintf(waiting, sizeof waiting, "the reply to %s", what);
    cJSON *msg;
    LMC_CHECK(read_msg(b, (int64_t)id, waiting, b->timeout, NULL, NULL, &msg));
    const char *type = str_field(msg, "type");
    if (!strcmp(type, "error")) {
        lmc_status st = error_reply(msg, what);
        cJSON_Delete(msg);
        return st;
    }
    if (strcmp(type, want)) {
        char *txt = cJSON_PrintUnformatted(msg);
        char quote[240];
        quote_line(txt ? txt : "", txt ? strlen(txt) : 0, quote, sizeof quote);
        free(txt);
        cJSON_Delete(msg);
        return fault(b, LMC_ERR_FORMAT, false, "answered %s with an unexpected message: \"%s\"", what, quote);
    }
    *reply = msg;
    return LMC_OK;
}

/* --- loading, info, closing ----------------------------------------------------------- */

static bool sub_available(void) { return true; }

static int64_t info_int(const cJSON *info, const char *name) {
    double v = 0;
    return num_field(info, name, &v) && isfinite(v) && v >= 0 && v < 9e18 ? (int64_t)v : 0;
}

static lmc_status sub_load(lmc_model *m, const char *dir, const lmc_load_options *opt) {
    if (!opt->bridge || !*opt->bridge)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                             "backend subprocess needs a bridge command (lmc_load_options.bridge; lmc --bridge CMD), "
                             "e.g. \"python3 bridges/transformers_bridge.py\"");
    if (opt->bridge_timeout < 0 || !isfinite(opt->bridge_timeout))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "bridge_timeout must be >= 0 seconds, got %g", opt->bridge_timeout);
    if (opt->n_bridge_env < 0 || (opt->n_bridge_env && !opt->bridge_env))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "bridge_env: count and array disagree");
    char **argv;
    int argc;
    LMC_CHECK(lmc_split_words(opt->bridge, &argv, &argc));
    bridge *b = calloc(1, sizeof *b);
    if (!b || !(b->command = strdup(opt->bridge))) {
        free(b);
        lmc_words_free(argv);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    pthread_mutex_init(&b->mu, NULL);
    b->refs = 1;
    b->timeout = opt->bridge_timeout > 0 ? opt->bridge_timeout : DEFAULT_TIMEOUT;
    lmc_status st = lmc_child_spawn(&b->child, argv, opt->bridge_env, opt->n_bridge_env);
    lmc_words_free(argv);
    if (st != LMC_OK) lmc_error_prefix("bridge \"%s\"", b->command);

    /* Handshake: lmc speaks first, the bridge answers with its version. */
    cJSON *reply = NULL;
    if (st == LMC_OK) {
        cJSON *req = request("hello", ++b->next_id);
        cJSON_AddNumberToObject(req, "protocol", PROTOCOL_VERSION);
        cJSON_AddStringToObject(req, "client", "lmc");
        st = call(b, req, "hello", "hello (start-up)", &reply);
    }
    if (st == LMC_OK) {
        double v = -1;
        if (!num_field(reply, "protocol", &v) || v != PROTOCOL_VERSION)
            st = fault(b, LMC_ERR_UNSUPPORTED, false, "speaks protocol version %g; lmc speaks version %d", v,
                       PROTOCOL_VERSION);
        cJSON_Delete(reply);
        reply = NULL;
    }
    if (st == LMC_OK) {
        cJSON *req = request("load", ++b->next_id);
        char *abs = realpath(dir, NULL); /* the bridge may run elsewhere than we do */
        cJSON_AddStringToObject(req, "model", abs ? abs : dir);
        free(abs);
        cJSON *o = cJSON_AddObjectToObject(req, "options");
        cJSON_AddNumberToObject(o, "context_length", (double)opt->context_length);
        st = call(b, req, "loaded", "load", &reply);
    }
    if (st == LMC_OK) {
        cJSON *info = cJSON_DetachItemFromObjectCaseSensitive(reply, "info");
        b->info = cJSON_IsObject(info) ? info : cJSON_CreateObject();
        if (!cJSON_IsObject(info)) cJSON_Delete(info);
        cJSON_Delete(reply);
        int64_t ctx = info_int(b->info, "context_length");
        m->context_length = ctx > 0 ? ctx : INT64_MAX;
        if (opt->context_length > 0 && opt->context_length < m->context_length) m->context_length = opt->context_length;
        m->impl = b;
        return LMC_OK;
    }
    /* A bridge that answered with an error is still healthy: ask it to leave. */
    if (!b->broken && b->child.pid) send_msg(b, request("shutdown", ++b->next_id), "shutdown");
    lmc_status keep = lmc_last_status();
    char *msg = strdup(lmc_last_error());
    lmc_child_stop(&b->child, b->timeout);
    bridge_unref(b);
    if (msg) lmc_set_error(keep, "%s", msg);
    free(msg);
    return st;
}

static void sub_close(lmc_model *m) {
    bridge *b = m->impl;
    m->impl = NULL;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    bool quiet = !b->busy && !b->broken;
    b->closed = true;
    pthread_mutex_unlock(&b->mu);
    /* Graceful first: shutdown, end of input, the timeout to exit; then
     * SIGTERM and SIGKILL (lmc_child_stop). The child is always reaped. */
    if (quiet && b->child.pid && !b->child.reaped) send_msg(b, request("shutdown", ++b->next_id), "shutdown");
    lmc_child_stop(&b->child, b->timeout);
    bridge_unref(b);
}

static lmc_status sub_info(const lmc_model *m, lmc_model_info *out) {
    bridge *b = m->impl;
    LMC_CHECK(acquire(b));
    cJSON *reply;
    lmc_status st = call(b, request("info", ++b->next_id), "info", "info", &reply);
    release(b);
    if (st != LMC_OK) return st;
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(reply, "info");
    memset(out, 0, sizeof *out);
    const char *arch = str_field(info, "architecture"), *dtype = str_field(info, "dtype");
    snprintf(out->architecture, sizeof out->architecture, "%s", arch ? arch : "");
    snprintf(out->dtype, sizeof out->dtype, "%s", dtype ? dtype : "");
    out->vocab_size = info_int(info, "vocab_size");
    out->num_layers = info_int(info, "num_layers");
    out->hidden_size = info_int(info, "hidden_size");
    out->intermediate_size = info_int(info, "intermediate_size");
    out->num_heads = info_int(info, "num_heads");
    out->num_kv_heads = info_int(info, "num_kv_heads");
    out->head_dim = info_int(info, "head_dim");
    out->context_length = info_int(info, "context_length");
    out->sliding_window = info_int(info, "sliding_window");
    out->quant_bits = (int)info_int(info, "quant_bits");
    out->quant_group_size = (int)info_int(info, "quant_group_size");
    out->num_parameters = info_int(info, "num_parameters");
    out->weight_bytes = info_int(info, "weight_bytes");
    cJSON_Delete(reply);
    return LMC_OK;
}

/* --- streams ----------------------------------------------------------------------- */

static const struct { const char *name; lmc_stop_reason r; } g_reasons[] = {
    {"eos", LMC_STOP_EOS},           {"stop_token", LMC_STOP_TOKEN}, {"stop_string", LMC_STOP_STRING},
    {"max_tokens", LMC_STOP_MAX_TOKENS}, {"context", LMC_STOP_CONTEXT}, {"cancelled", LMC_STOP_CANCELLED},
};

static void stream_end(bridge_stream *s) {
    if (s->finished) return;
    s->finished = true;
    release(s->b);
}

static lmc_status sub_stream_start(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt, void **impl) {
    bridge *b = m->impl;
    if (p->ids)
        for (size_t i = 0; i < p->n_ids; i++)
            if (p->ids[i] < 0)
                return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "prompt token id %d at index %zu is negative", p->ids[i], i);
    bridge_stream *s = calloc(1, sizeof *s);
    if (!s) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status st = acquire(b);
    if (st != LMC_OK) {
        free(s);
        return st;
    }
    pthread_mutex_lock(&b->mu);
    b->refs++;
    pthread_mutex_unlock(&b->mu);
    s->b = b;
    s->id = ++b->next_id;
    s->cancel = opt->cancel ? &opt->cancel->flag : NULL;

    cJSON *req = request(p->msgs ? "chat" : "generate", s->id);
    if (p->msgs) {
        cJSON *arr = cJSON_AddArrayToObject(req, "messages");
        for (size_t i = 0; i < p->n_msgs; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", p->msgs[i].role);
            cJSON_AddStringToObject(o, "content", p->msgs[i].content);
            cJSON_AddItemToArray(arr, o);
        }
    } else if (p->text) {
        cJSON_AddStringToObject(req, "prompt", p->text);
        cJSON_AddBoolToObject(req, "add_special_tokens", opt->add_special_tokens);
    } else {
        cJSON *arr = cJSON_AddArrayToObject(req, "prompt_ids");
        for (size_t i = 0; i < p->n_ids; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(p->ids[i]));
    }
    cJSON_AddNumberToObject(req, "max_tokens", opt->max_tokens);
    cJSON *smp = cJSON_AddObjectToObject(req, "sampling");
    cJSON_AddNumberToObject(smp, "temperature", opt->sampler.temperature);
    cJSON_AddNumberToObject(smp, "top_k", opt->sampler.top_k);
    cJSON_AddNumberToObject(smp, "top_p", opt->sampler.top_p);
    cJSON_AddNumberToObject(smp, "min_p", opt->sampler.min_p);
    cJSON_AddNumberToObject(smp, "repeat_penalty", opt->sampler.repeat_penalty);
    cJSON_AddNumberToObject(smp, "repeat_last_n", opt->sampler.repeat_last_n);
    /* JSON numbers are exact integers below 2^53. */
    cJSON_AddNumberToObject(smp, "seed", (double)(opt->sampler.seed & ((UINT64_C(1) << 53) - 1)));
    cJSON *stops = cJSON_AddArrayToObject(req, "stop_strings");
    for (int i = 0; i < opt->n_stop_strings; i++)
        if (opt->stop_strings[i] && *opt->stop_strings[i])
            cJSON_AddItemToArray(stops, cJSON_CreateString(opt->stop_strings[i]));
    cJSON *stok = cJSON_AddArrayToObject(req, "stop_tokens");
    for (int i = 0; i < opt->n_stop_tokens; i++) cJSON_AddItemToArray(stok, cJSON_CreateNumber(opt->stop_tokens[i]));
    cJSON_AddBoolToObject(req, "ignore_eos", opt->ignore_eos);
    st = send_msg(b, req, p->msgs ? "the chat request" : "the generate request");
    if (st != LMC_OK) {
        stream_end(s);
        bridge_unref(b);
        free(s);
        return st;
    }
    *impl = s;
    return LMC_OK;
}

/* Tells the bridge to stop generating and waits (at most the timeout in
 * all) for the generation's end, dropping the tokens still on their way. */
static lmc_status sub_stream_cancel(void *impl) {
    bridge_stream *s = impl;
    if (s->finished) return LMC_OK;
    bridge *b = s->b;
    if (b->closed) {
        stream_end(s);
        return LMC_OK;
    }
    cJSON *req = request("cancel", s->id);
    lmc_status st = send_msg(b, req, "cancel");
    double deadline = now_s() + b->timeout;
    char late[96];
    snprintf(late, sizeof late, "did not acknowledge a cancel within %g s (timeout)", b->timeout);
    while (st == LMC_OK) {
        double left = deadline - now_s();
        cJSON *msg;
        st = left > 0 ? read_msg(b, s->id, "the end of the cancelled generation", left, late, NULL, &msg)
                      : fault(b, LMC_ERR_IO, false, "%s", late);
        if (st != LMC_OK) break;
        const char *type = str_field(msg, "type");
        bool end = !strcmp(type, "done") || !strcmp(type, "error");
        cJSON_Delete(msg);
        if (end) break;
    }
    stream_end(s);
    return st;
}

static lmc_status sub_stream_next(void *impl, lmc_backend_event *ev) {
    bridge_stream *s = impl;
    bridge *b = s->b;
    memset(ev, 0, sizeof *ev);
    cJSON_Delete(s->msg);
    s->msg = NULL;
    if (b->closed) {
        stream_end(s);
        return lmc_set_error(LMC_ERR_CLOSED, "model is closed");
    }
    /* The flag is checked here too: a fast bridge always has a line ready. */
    lmc_status st = s->cancel && __atomic_load_n(s->cancel, __ATOMIC_ACQUIRE)
                        ? LMC_ERR_CANCELLED
                        : read_msg(b, s->id, "the next token", b->timeout, NULL, s->cancel, &s->msg);
    if (st == LMC_ERR_CANCELLED) {
        st = sub_stream_cancel(s);
        return st == LMC_OK ? lmc_set_error(LMC_ERR_CANCELLED, "generation cancelled") : st;
    }
    if (st != LMC_OK) {
        stream_end(s);
        return st;
    }
    bool is_fault = false;
    char why[256];
    st = lmc_bridge_stream_event(s->msg, s->id, ev, &is_fault, why, sizeof why);
    if (st == LMC_OK && !ev->done) return LMC_OK;
    stream_end(s);
    return is_fault ? fault(b, st, false, "%s", why) : st;
}

lmc_status lmc_bridge_stream_event(const cJSON *msg, int64_t id, lmc_backend_event *ev, bool *is_fault, char *why,
                                   size_t cap) {
    memset(ev, 0, sizeof *ev);
    *is_fault = false; /* set by each of the three faults below */
    const char *type = str_field(msg, "type");
    const char *text = str_field(msg, "text");
    ev->text = text ? text : "";
    ev->len = strlen(ev->text);
    double v;
    if (!strcmp(type, "token")) {
        if (!num_field(msg, "token", &v) || v < 0 || v > INT32_MAX || v != floor(v)) {
            *is_fault = true;
            snprintf(why, cap, "sent a token event without a valid \"token\" id (request %lld)", (long long)id);
            return LMC_ERR_FORMAT;
        }
        ev->id = (int32_t)v;
        return LMC_OK;
    }
    if (!strcmp(type, "error")) return error_reply(msg, "generate");
    char quote[64]; /* the bridge's words, short and printable */
    if (strcmp(type, "done")) {
        *is_fault = true;
        quote_line(type, strlen(type), quote, sizeof quote);
        snprintf(why, cap, "sent an unexpected \"%s\" message during generation (request %lld)", quote, (long long)id);
        return LMC_ERR_FORMAT;
    }
    const char *reason = str_field(msg, "stop_reason");
    ev->stop_reason = LMC_STOP_NONE;
    for (size_t i = 0; reason && i < sizeof g_reasons / sizeof *g_reasons; i++)
        if (!strcmp(reason, g_reasons[i].name)) ev->stop_reason = g_reasons[i].r;
    if (ev->stop_reason == LMC_STOP_NONE) {
        *is_fault = true;
        if (!reason) reason = "(none)";
        quote_line(reason, strlen(reason), quote, sizeof quote);
        snprintf(why, cap, "ended a generation with an unknown stop_reason \"%s\"", quote);
        return LMC_ERR_FORMAT;
    }
    ev->done = true;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(msg, "metrics");
    ev->metrics.prompt_tokens = info_int(mt, "prompt_tokens");
    if (num_field(mt, "prefill_seconds", &v) && v > 0) ev->metrics.prefill_seconds = v;
    ev->metrics.peak_memory_bytes = (size_t)info_int(mt, "peak_memory_bytes");
    ev->metrics.active_memory_bytes = (size_t)info_int(mt, "active_memory_bytes");
    return LMC_OK;
}

static void sub_stream_free(void *impl) {
    bridge_stream *s = impl;
    if (!s->finished) sub_stream_cancel(s);
    stream_end(s);
    cJSON_Delete(s->msg);
    bridge_unref(s->b);
    free(s);
}

pid_t lmc_subprocess_pid(const lmc_model *m) {
    const bridge *b = m && m->be == &lmc_backend_subprocess ? m->impl : NULL;
    return b && !b->child.reaped ? b->child.pid : 0;
}

void lmc_subprocess_set_timeout(lmc_model *m, double seconds) {
    bridge *b = m && m->be == &lmc_backend_subprocess ? m->impl : NULL;
    if (b && seconds > 0) b->timeout = seconds;
}

const lmc_backend lmc_backend_subprocess = {
    .name = "subprocess",
    .available = sub_available,
    .load = sub_load,
    .close = sub_close,
    .info = sub_info,
    .logits = NULL,
    .stream_start = sub_stream_start,
    .stream_next = sub_stream_next,
    .stream_cancel = sub_stream_cancel,
    .stream_free = sub_stream_free,
};
