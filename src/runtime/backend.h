/* Backends behind lmc_model: a small table of functions per backend.
 *
 * "cpu" is the native decoder (model.c; its generation loop is the one in
 * generate.c, so it leaves the stream hooks NULL); "cuda" is that decoder
 * with its weights on the GPU. "subprocess" drives an
 * external bridge program over JSON Lines (subprocess.c). A hook a backend
 * cannot provide is NULL and the caller answers LMC_ERR_UNSUPPORTED
 * "... not supported by backend NAME". */
#ifndef LMC_RUNTIME_BACKEND_H
#define LMC_RUNTIME_BACKEND_H

#include "lmc/model.h"

/* What a generation starts from: exactly one of ids, text or messages. */
typedef struct lmc_prompt {
    const int32_t *ids; size_t n_ids;
    const char *text;
    const lmc_message *msgs; size_t n_msgs;
    const char *messages_json;  /* instead of msgs: the chat template's JSON array (tool calls and results too) */
    const char *tools_json;     /* with messages_json: NULL or a JSON array of tool definitions */
} lmc_prompt;

/* One step of a backend's stream: a token, or the end. */
typedef struct lmc_backend_event {
    bool done;
    int32_t id;                   /* the token (not done) */
    const char *text; size_t len; /* text released with it, or at the end; valid until the next call */
    lmc_stop_reason stop_reason;  /* done */
    lmc_metrics metrics;          /* done: what the backend measured (zero: unknown) */
} lmc_backend_event;

typedef struct lmc_backend {
    const char *name;
    bool (*available)(void);
    /* Fills the backend's part of m (m->dir and m->opt are set); on failure
     * leaves nothing of its own allocated. */
    lmc_status (*load)(lmc_model *m, const char *dir, const lmc_load_options *opt);
    void (*close)(lmc_model *m);
    lmc_status (*info)(const lmc_model *m, lmc_model_info *out);
    lmc_array *(*logits)(lmc_model *m, const int32_t *ids, size_t n, bool all_positions);
    /* Streams (NULL: the native loop in generate.c). start validates and
     * sends the request; next produces one event; cancel stops a running
     * generation and waits for the backend to confirm; free releases the
     * stream (cancelling it first when it is still running). */
    lmc_status (*stream_start)(lmc_model *m, const lmc_prompt *p, const lmc_generate_options *opt, void **impl);
    lmc_status (*stream_next)(void *impl, lmc_backend_event *ev);
    lmc_status (*stream_cancel)(void *impl);
    void (*stream_free)(void *impl);
} lmc_backend;

extern const lmc_backend lmc_backend_cpu;
extern const lmc_backend lmc_backend_cuda;
extern const lmc_backend lmc_backend_subprocess;

/* The registered backend of that name, or NULL. */
const lmc_backend *lmc_backend_find(const char *name);

#endif
