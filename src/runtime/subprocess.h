/* Backend "subprocess" internals that tests look at. */
#ifndef LMC_RUNTIME_SUBPROCESS_H
#define LMC_RUNTIME_SUBPROCESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "lmc/model.h"
#include "runtime/backend.h"

/* The bridge's process id while it runs; 0 once it has been reaped (or for
 * a model of another backend). */
pid_t lmc_subprocess_pid(const lmc_model *m);
/* Changes the reply timeout of a loaded model (tests: a slow start-up, then
 * a short wait for the fault under test). */
void lmc_subprocess_set_timeout(lmc_model *m, double seconds);

/* What one line of a bridge's stdout is worth while lmc waits for `what`
 * (request id): the message (a JSON object with a string "type" that
 * answers id, or an "error" with id 0 or none; the caller deletes it), or
 * NULL with why set to the fault's words (the line quoted, control bytes
 * escaped). */
cJSON *lmc_bridge_parse_line(const char *line, size_t len, int64_t id, const char *what, char *why, size_t cap);
/* The event a message of generation `id` gives (msg from
 * lmc_bridge_parse_line): LMC_OK with ev a token (ev->id, ev->text pointing
 * into msg) or the end (ev->done, a stop reason, metrics); a bridge's error
 * reply as its status and message; or *is_fault with why set (a token
 * without a valid id, an unknown type or stop_reason). */
lmc_status lmc_bridge_stream_event(const cJSON *msg, int64_t id, lmc_backend_event *ev, bool *is_fault, char *why,
                                   size_t cap);

#endif
