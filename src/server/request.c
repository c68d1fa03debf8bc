/* Request bodies → lmc_srv_request (see request.h and lmc/server.h for the
 * fields). Every refusal names the field, e.g. "'temperature' must be in
 * [0, 2], got 3" or "'messages[1].content' must be a string or an array of
 * text parts, got a number". */
#include "server/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "io/json_util.h"
#include "runtime/json_constraint.h"

static bool fail(lmc_srv_error *err, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(lmc_srv_error *err, const char *param, const char *fmt, ...) {
    snprintf(err->param, sizeof err->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

/* The field, or NULL when it is absent or null (both mean "the default"). */
static const cJSON *field(const cJSON *obj, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool check_utf8(const char *s, const char *name, lmc_srv_error *err) {
    size_t bad;
    if (lmc_utf8_valid(s, strlen(s), &bad)) return true;
    return fail(err, name, "'%s' is not valid UTF-8 (byte %zu)", name, bad);
}

/* Number fields: *out is left alone when the field is absent. */
static bool get_number(const cJSON *obj, const char *name, double lo, bool lo_open, double hi, double *out,
                       lmc_srv_error *err) {
    const cJSON *v = field(obj, name);
    if (!v) return true;
    if (!cJSON_IsNumber(v)) return fail(err, name, "'%s' must be a number, got %s", name, lmc_json_type_name(v));
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
        return fail(err, name, "'%s' must be in %c%g, %g], got %g", name, lo_open ? '(' : '[', lo, hi, x);
    *out = x;
    return true;
}

static bool get_float(const cJSON *obj, const char *name, double lo, bool lo_open, double hi, float *out,
                      lmc_srv_error *err) {
    double x = *out;
    if (!get_number(obj, name, lo, lo_open, hi, &x, err)) return false;
    *out = (float)x;
    return true;
}

static bool get_int(const cJSON *obj, const char *name, double lo, double hi, long long *out, lmc_srv_error *err) {
    const cJSON *v = field(obj, name);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fail(err, name, "'%s' must be an integer, got %s", name,
                    cJSON_IsNumber(v) ? "a fractional number" : lmc_json_type_name(v));
    double x = v->valuedouble;
    if (x < lo || x > hi) return fail(err, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, x);
    *out = (long long)x;
    return true;
}

static bool get_bool(const cJSON *obj, const char *name, bool *out, lmc_srv_error *err) {
    const cJSON *v = field(obj, name);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return fail(err, name, "'%s' must be a boolean, got %s", name, lmc_json_type_name(v));
    *out = cJSON_IsTrue(v);
    return true;
}

/* A field lmc does not implement: refused unless absent, null, false, 0 or empty. */
static bool unsupported(const cJSON *obj, const char *name, const char *why, lmc_srv_error *err) {
    const cJSON *v = field(obj, name);
    if (!v || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0) ||
        ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child) || (cJSON_IsString(v) && !*v->valuestring))
        return true;
    return fail(err, name, "'%s' is not supported%s", name, why);
}

/* A message's content: a string, or an array of {"type":"text","text":...}
 * parts joined with newlines. Returns a malloc'd string or NULL (err set). */
static char *content_text(const cJSON *content, const char *name, bool may_be_null, lmc_srv_error *err) {
    if (!content && may_be_null) return strdup("");
    if (content && cJSON_IsString(content)) {
        if (!check_utf8(content->valuestring, name, err)) return NULL;
        char *s = strdup(content->valuestring);
        if (!s) fail(err, "", "out of memory");
        return s;
    }
    if (!content || !cJSON_IsArray(content)) {
        fail(err, name, "'%s' must be a string or an array of text parts, got %s", name,
             content ? lmc_json_type_name(content) : "null");
        return NULL;
    }
    size_t len = 0, cap = 64;
    char *text = malloc(cap);
    int i = 0;
    for (const cJSON *part = content->child; text && part; part = part->next, i++) {
        char pname[96];
        snprintf(pname, sizeof pname, "%s[%d]", name, i);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        bool ok = cJSON_IsObject(part);
        if (!ok) fail(err, pname, "'%s' must be an object, got %s", pname, lmc_json_type_name(part));
        else if (!cJSON_IsString(type))
            ok = fail(err, pname, "'%s.type' must be a string, got %s", pname, type ? lmc_json_type_name(type) : "nothing");
        else if (strcmp(type->valuestring, "text"))
            ok = fail(err, pname, "'%s.type' is '%.40s': only text parts are supported", pname, type->valuestring);
        else if (!cJSON_IsString(t))
            ok = fail(err, pname, "'%s.text' must be a string, got %s", pname, t ? lmc_json_type_name(t) : "nothing");
        else if (!check_utf8(t->valuestring, pname, err))
            ok = false;
        if (!ok) {
            free(text);
            return NULL;
        }
        size_t n = strlen(t->valuestring);
        if (len + n + 2 > cap) {
            cap = (len + n + 2) * 2;
            char *p = realloc(text, cap);
            if (!p) free(text);
            text = p;
            if (!text) break;
        }
        if (i > 0) text[len++] = '\n';
        memcpy(text + len, t->valuestring, n);
        len += n;
    }
    if (!text) {
        fail(err, "", "out of memory");
        return NULL;
    }
    text[len] = 0;
    return text;
}

/* An assistant message's "tool_calls" as the template gets them: each
 * {"id"?, "type": "function", "function": {"name", "arguments"}}, where
 * "arguments" (OpenAI sends a JSON string) becomes the object it holds, so
 * that templates which write it with tojson print the object. */
static cJSON *tool_calls_for_template(const cJSON *calls, const char *name, lmc_srv_error *err) {
    if (!cJSON_IsArray(calls)) {
        fail(err, name, "'%s' must be an array, got %s", name, lmc_json_type_name(calls));
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *c = calls->child; out && c; c = c->next, i++) {
        const cJSON *f = cJSON_IsObject(c) ? field(c, "function") : NULL;
        const cJSON *fn = f ? field(f, "name") : NULL, *args = f ? field(f, "arguments") : NULL;
        const cJSON *type = cJSON_IsObject(c) ? field(c, "type") : NULL;
        if (!cJSON_IsObject(f) || !cJSON_IsString(fn) || (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) ||
            (args && !cJSON_IsString(args) && !cJSON_IsObject(args))) {
            fail(err, name, "'%s[%d]' must be {\"type\": \"function\", \"function\": {\"name\": string, \"arguments\": string}}",
                 name, i);
            cJSON_Delete(out);
            return NULL;
        }
        cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
        cJSON *a = cJSON_IsObject(parsed) ? parsed : args ? cJSON_Duplicate(args, true) : cJSON_CreateObject();
        if (a != parsed) cJSON_Delete(parsed);
        cJSON *e = cJSON_CreateObject(), *ef = cJSON_CreateObject();
        const cJSON *id = field(c, "id");
        if (cJSON_IsString(id)) cJSON_AddStringToObject(e, "id", id->valuestring);
        cJSON_AddStringToObject(e, "type", "function");
        cJSON_AddStringToObject(ef, "name", fn->valuestring);
        cJSON_AddItemToObject(ef, "arguments", a);
        cJSON_AddItemToObject(e, "function", ef);
        cJSON_AddItemToArray(out, e);
    }
    if (!out) fail(err, "", "out of memory");
    return out;
}

/* "tools": an array of {"type": "function", "function": {"name", ...}}; "tool_choice": "auto", "none",
 * "required" or {"type": "function", "function": {"name": ...}} (the last two force a call: gen.tool_choice). */
static bool parse_tools(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *tools = field(root, "tools"), *choice = field(root, "tool_choice");
    bool none = false;
    const char *forced = NULL; /* "required" or the name of the function to call */
    if (choice) {
        const cJSON *f = cJSON_IsObject(choice) ? field(choice, "function") : NULL;
        const cJSON *type = cJSON_IsObject(choice) ? field(choice, "type") : NULL;
        const cJSON *name = cJSON_IsObject(f) ? field(f, "name") : NULL;
        if (cJSON_IsString(choice) && (!strcmp(choice->valuestring, "auto") || !strcmp(choice->valuestring, "none") ||
                                       !strcmp(choice->valuestring, "required"))) {
            none = !strcmp(choice->valuestring, "none");
            if (!strcmp(choice->valuestring, "required")) forced = "required";
        } else if (cJSON_IsString(type) && !strcmp(type->valuestring, "function") && cJSON_IsString(name) &&
                   *name->valuestring) {
            forced = name->valuestring;
        } else {
            return fail(err, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": "
                        "\"function\", \"function\": {\"name\": string}}");
        }
    }
    const cJSON *ptc = field(root, "parallel_tool_calls");
    if (ptc && !cJSON_IsBool(ptc))
        return fail(err, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean, got %s", lmc_json_type_name(ptc));
    if (!tools && forced) return fail(err, "tool_choice", "'tool_choice' forces a tool call, but the request has no 'tools'");
    if (!tools) return true;
    if (!cJSON_IsArray(tools)) return fail(err, "tools", "'tools' must be an array, got %s", lmc_json_type_name(tools));
    int i = 0;
    bool named = false;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *type = cJSON_IsObject(t) ? field(t, "type") : NULL, *f = cJSON_IsObject(t) ? field(t, "function") : NULL;
        const cJSON *fn = cJSON_IsObject(f) ? field(f, "name") : NULL, *params = cJSON_IsObject(f) ? field(f, "parameters") : NULL;
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsObject(f) || !cJSON_IsString(fn) ||
            !*fn->valuestring || (params && !cJSON_IsObject(params)))
            return fail(err, "tools", "'tools[%d]' must be {\"type\": \"function\", \"function\": {\"name\": string, "
                        "\"parameters\": object}}", i);
        bool applies = forced && (!strcmp(fn->valuestring, forced) || !strcmp(forced, "required"));
        named |= forced && !strcmp(fn->valuestring, forced);
        if (applies && params) { /* a forced call follows the tool's parameters: refuse what the generator cannot */
            char *text = cJSON_PrintUnformatted(params);
            lmc_json_schema *compiled = NULL;
            lmc_status st = text ? lmc_json_schema_compile(text, &compiled) : LMC_ERR_OUT_OF_MEMORY;
            free(text);
            lmc_json_schema_free(compiled);
            if (st != LMC_OK) {
                char param[64];
                snprintf(param, sizeof param, "tools[%d].function.parameters", i);
                return fail(err, param, "%s", lmc_last_error());
            }
        }
    }
    if (forced && i == 0) return fail(err, "tool_choice", "'tool_choice' forces a tool call, but 'tools' is empty");
    if (forced && strcmp(forced, "required") && !named)
        return fail(err, "tool_choice.function.name", "'tool_choice' names '%.64s', which is not in 'tools'", forced);
    if (forced && (r->gen.json_object || r->gen.json_schema))
        return fail(err, "tool_choice", "'tool_choice' forces a tool call: it cannot be combined with a JSON 'response_format'");
    if (none || i == 0) return true;
    if (!(r->tools_json = cJSON_PrintUnformatted(tools))) return fail(err, "", "out of memory");
    if (forced && !(r->tool_choice = strdup(forced))) return fail(err, "", "out of memory");
    r->gen.tool_choice = r->tool_choice;
    return true;
}

static bool parse_messages(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *msgs = field(root, "messages");
    if (!msgs) return fail(err, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return fail(err, "messages", "'messages' must be an array, got %s", lmc_json_type_name(msgs));
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) return fail(err, "messages", "'messages' must not be empty");
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return fail(err, "", "out of memory");
    cJSON *arr = cJSON_CreateArray();
    bool tool_parts = false, ok = arr != NULL;
    if (!ok) return fail(err, "", "out of memory");
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char name[64], rname[80], cname[80];
        snprintf(name, sizeof name, "messages[%d]", i);
        snprintf(rname, sizeof rname, "%s.role", name);
        snprintf(cname, sizeof cname, "%s.content", name);
        if (!cJSON_IsObject(m)) {
            ok = fail(err, name, "'%s' must be an object, got %s", name, lmc_json_type_name(m));
            break;
        }
        const cJSON *role = field(m, "role");
        if (!role || !cJSON_IsString(role)) {
            ok = fail(err, rname, "'%s' must be a string, got %s", rname, role ? lmc_json_type_name(role) : "nothing");
            break;
        }
        const char *rs = role->valuestring;
        /* OpenAI's "developer" is the system role of newer models. */
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool")) {
            ok = fail(err, rname, "'%s' is '%.40s': expected system, developer, user, assistant or tool", rname, rs);
            break;
        }
        const cJSON *calls = field(m, "tool_calls");
        cJSON *tcalls = NULL;
        if (calls && strcmp(rs, "assistant")) {
            ok = fail(err, name, "'%s.tool_calls' is only for assistant messages", name);
            break;
        }
        if (calls && cJSON_GetArraySize(calls) != 0) {
            char cn[80];
            snprintf(cn, sizeof cn, "%s.tool_calls", name);
            if (!(tcalls = tool_calls_for_template(calls, cn, err))) {
                ok = false;
                break;
            }
        }
        char *content = content_text(field(m, "content"), cname, !strcmp(rs, "assistant"), err);
        if (!content) {
            cJSON_Delete(tcalls);
            ok = false;
            break;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", rs);
        cJSON_AddStringToObject(o, "content", content);
        if (tcalls) cJSON_AddItemToObject(o, "tool_calls", tcalls);
        const char *keys[] = {"tool_call_id", "name"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = field(m, keys[k]);
            if (v && cJSON_IsString(v)) cJSON_AddStringToObject(o, keys[k], v->valuestring);
        }
        cJSON_AddItemToArray(arr, o);
        tool_parts |= tcalls != NULL || !strcmp(rs, "tool");
        r->msgs[i].content = content;
        r->msgs[i].role = strdup(rs);
        r->n_msgs = (size_t)i + 1;
        if (!r->msgs[i].role) {
            ok = fail(err, "", "out of memory");
            break;
        }
    }
    if (ok && !(r->messages_json = cJSON_PrintUnformatted(arr))) ok = fail(err, "", "out of memory");
    cJSON_Delete(arr);
    if (ok && tool_parts) { /* lmc_message cannot carry them: the prompt is messages_json alone */
        for (size_t k = 0; k < r->n_msgs; k++) {
            free((char *)r->msgs[k].role);
            free((char *)r->msgs[k].content);
        }
        free(r->msgs);
        r->msgs = NULL;
        r->n_msgs = 0;
    }
    return ok;
}

/* A token id: an integer in [0, INT32_MAX]. */
static bool token_id(const cJSON *v, int32_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
        return false;
    *out = (int32_t)v->valuedouble;
    return true;
}

/* "prompt": a string, an array holding one string, or an array of token ids. */
static bool parse_prompt(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *p = field(root, "prompt");
    if (!p) return fail(err, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    if (cJSON_IsString(p)) {
        if (!check_utf8(p->valuestring, "prompt", err)) return false;
        r->prompt = strdup(p->valuestring);
        return r->prompt ? true : fail(err, "", "out of memory");
    }
    if (!cJSON_IsArray(p) || !p->child)
        return fail(err, "prompt", "'prompt' must be a string or an array of token ids, got %s",
                    cJSON_IsArray(p) ? "an empty array" : lmc_json_type_name(p));
    int n = cJSON_GetArraySize(p);
    r->ids = malloc((size_t)n * sizeof *r->ids);
    if (!r->ids) return fail(err, "", "out of memory");
    for (const cJSON *v = p->child; v; v = v->next) {
        if (cJSON_IsString(v) || cJSON_IsArray(v))
            return fail(err, "prompt", "'prompt' holds several prompts: one prompt per request");
        if (!token_id(v, &r->ids[r->n_ids]))
            return fail(err, "prompt", "'prompt[%zu]' must be a token id (an integer >= 0), got %s", r->n_ids,
                        cJSON_IsNumber(v) ? "another number" : lmc_json_type_name(v));
        r->n_ids++;
    }
    return true;
}

static bool parse_stop(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *stop = field(root, "stop");
    if (!stop) return true;
    if (cJSON_IsString(stop)) {
        if (!check_utf8(stop->valuestring, "stop", err)) return false;
        if (!(r->stops[0] = strdup(stop->valuestring))) return fail(err, "", "out of memory");
        r->gen.n_stop_strings = 1;
    } else if (cJSON_IsArray(stop)) {
        int n = 0;
        for (const cJSON *v = stop->child; v; v = v->next, n++) {
            if (n == LMC_SRV_MAX_STOPS) return fail(err, "stop", "'stop' has more than %d strings", LMC_SRV_MAX_STOPS);
            if (!cJSON_IsString(v)) return fail(err, "stop", "'stop[%d]' must be a string, got %s", n, lmc_json_type_name(v));
            if (!check_utf8(v->valuestring, "stop", err)) return false;
            if (!(r->stops[n] = strdup(v->valuestring))) return fail(err, "", "out of memory");
        }
        r->gen.n_stop_strings = n;
    } else {
        return fail(err, "stop", "'stop' must be a string or an array of strings, got %s", lmc_json_type_name(stop));
    }
    r->gen.stop_strings = (const char *const *)r->stops;
    return true;
}

/* Chat: "logprobs": true and "top_logprobs": 0..20. Completions (OpenAI's
 * legacy form): "logprobs": N, the chosen tokens and N alternatives. */
static bool parse_logprobs(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    lmc_generate_options *g = &r->gen;
    long long top = 0;
    if (r->kind == LMC_SRV_COMPLETION) {
        const cJSON *v = field(root, "logprobs");
        if (v && cJSON_IsBool(v))
            return fail(err, "logprobs", "'logprobs' must be an integer 0..%d here (alternatives per token), got a boolean",
                        LMC_MAX_TOP_LOGPROBS);
        if (!get_int(root, "logprobs", 0, LMC_MAX_TOP_LOGPROBS, &top, err)) return false;
        g->logprobs = v != NULL;
        g->top_logprobs = (int)top;
        return unsupported(root, "top_logprobs", " on /v1/completions (use 'logprobs': N)", err);
    }
    if (!get_bool(root, "logprobs", &g->logprobs, err) || !get_int(root, "top_logprobs", 0, LMC_MAX_TOP_LOGPROBS, &top, err))
        return false;
    if (field(root, "top_logprobs") && !g->logprobs)
        return fail(err, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    g->top_logprobs = (int)top;
    return true;
}

/* "logit_bias": {"token id": bias in [-100, 100]} (OpenAI's form; -100 is a ban in effect). */
static bool parse_logit_bias(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *b = field(root, "logit_bias");
    if (!b) return true;
    if (!cJSON_IsObject(b)) return fail(err, "logit_bias", "'logit_bias' must be an object, got %s", lmc_json_type_name(b));
    int n = cJSON_GetArraySize(b);
    if (n > 1024) return fail(err, "logit_bias", "'logit_bias' has %d entries, more than 1024", n);
    if (n == 0) return true;
    if (!(r->bias = calloc((size_t)n, sizeof *r->bias))) return fail(err, "", "out of memory");
    int i = 0;
    for (const cJSON *e = b->child; e; e = e->next, i++) {
        char *end = NULL;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id > INT32_MAX)
            return fail(err, "logit_bias", "'logit_bias' keys must be token ids, got '%.40s'", e->string);
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= -100 && e->valuedouble <= 100))
            return fail(err, "logit_bias", "'logit_bias[\"%.20s\"]' must be a number in [-100, 100]", e->string);
        r->bias[i] = (lmc_logit_bias){(int32_t)id, (float)e->valuedouble};
    }
    r->gen.logit_bias = r->bias;
    r->gen.n_logit_bias = n;
    return true;
}

/* "chat_template_kwargs": extra variables for the chat template, e.g.
 * {"enable_thinking": false} (vLLM's name for it). */
static bool parse_template_vars(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    const cJSON *v = field(root, "chat_template_kwargs");
    if (!v) return true;
    if (r->kind != LMC_SRV_CHAT) return fail(err, "chat_template_kwargs", "'chat_template_kwargs' is for /v1/chat/completions");
    if (!cJSON_IsObject(v))
        return fail(err, "chat_template_kwargs", "'chat_template_kwargs' must be an object, got %s", lmc_json_type_name(v));
    if (!(r->template_vars = cJSON_PrintUnformatted(v))) return fail(err, "", "out of memory");
    r->gen.template_vars_json = r->template_vars;
    return true;
}

static bool parse_options(const cJSON *root, lmc_srv_request *r, lmc_srv_error *err) {
    lmc_generate_options *g = &r->gen;
    long long n = 1, max_tokens = g->max_tokens, top_k = g->sampler.top_k, last_n = g->sampler.repeat_last_n;
    long long seed = (long long)g->sampler.seed;
    double penalty = 0;
    const cJSON *model = field(root, "model");
    if (model && !cJSON_IsString(model)) return fail(err, "model", "'model' must be a string, got %s", lmc_json_type_name(model));
    if (!get_int(root, "max_tokens", 0, INT32_MAX, &max_tokens, err) ||
        !get_int(root, "max_completion_tokens", 0, INT32_MAX, &max_tokens, err) ||
        !get_float(root, "temperature", 0, false, 2, &g->sampler.temperature, err) ||
        !get_float(root, "top_p", 0, true, 1, &g->sampler.top_p, err) ||
        !get_int(root, "top_k", 0, 1 << 30, &top_k, err) ||
        !get_float(root, "min_p", 0, false, 1, &g->sampler.min_p, err) ||
        !get_float(root, "repeat_penalty", 0, true, 100, &g->sampler.repeat_penalty, err) ||
        !get_int(root, "repeat_last_n", -1, 1 << 30, &last_n, err) ||
        /* doubles hold integers exactly up to 2^53 */
        !get_int(root, "seed", -9007199254740992.0, 9007199254740992.0, &seed, err) ||
        !get_int(root, "n", 1, 1e9, &n, err) || !get_bool(root, "stream", &r->stream, err) ||
        !get_bool(root, "ignore_eos", &g->ignore_eos, err) || !parse_stop(root, r, err))
        return false;
    if (n > LMC_SRV_MAX_CHOICES) return fail(err, "n", "'n' must be in [1, %d], got %lld", LMC_SRV_MAX_CHOICES, n);
    r->n = (int)n;
    if (r->kind == LMC_SRV_COMPLETION) {
        long long best_of = 1;
        if (!get_int(root, "best_of", 1, 1e9, &best_of, err)) return false;
        if (best_of != 1) return fail(err, "best_of", "'best_of' must be 1, got %lld", best_of);
    }
    const char *pens[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++) {
        if (!get_number(root, pens[i], -2, false, 2, &penalty, err)) return false;
        if (penalty != 0)
            return fail(err, pens[i], "'%s' is not supported (only 0); lmc's 'repeat_penalty' (> 1) penalises repeated tokens",
                        pens[i]);
    }
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) return fail(err, "stream_options", "'stream_options' must be an object, got %s", lmc_json_type_name(so));
        if (!r->stream) return fail(err, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return fail(err, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean, got %s",
                        lmc_json_type_name(iu));
        r->include_usage = cJSON_IsTrue(iu);
    }
    const cJSON *rf = field(root, "response_format");
    if (rf) {
        const cJSON *type = cJSON_IsObject(rf) ? field(rf, "type") : NULL;
        if (!cJSON_IsString(type))
            return fail(err, "response_format", "'response_format' must be an object with a string 'type'");
        if (!strcmp(type->valuestring, "json_object")) g->json_object = true;
        else if (!strcmp(type->valuestring, "json_schema")) {
            /* OpenAI's form: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} */
            const cJSON *js = field(rf, "json_schema"), *schema = cJSON_IsObject(js) ? field(js, "schema") : NULL;
            if (!cJSON_IsObject(schema))
                return fail(err, "response_format.json_schema.schema",
                            "'response_format.json_schema.schema' must be an object (the JSON Schema)");
            const cJSON *strict = field(js, "strict");
            if (strict && !cJSON_IsBool(strict))
                return fail(err, "response_format.json_schema.strict", "'response_format.json_schema.strict' must be a boolean");
            if (!(r->json_schema = cJSON_PrintUnformatted(schema)))
                return fail(err, "response_format", "out of memory");
            lmc_json_schema *compiled;
            if (lmc_json_schema_compile(r->json_schema, &compiled) != LMC_OK)
                return fail(err, "response_format.json_schema.schema", "%s", lmc_last_error());
            lmc_json_schema_free(compiled);
            g->json_schema = r->json_schema;
        } else if (strcmp(type->valuestring, "text"))
            return fail(err, "response_format",
                        "'response_format' type '%.40s' is not supported (text, json_object or json_schema)",
                        type->valuestring);
    }
    if (!parse_logprobs(root, r, err) || !parse_logit_bias(root, r, err) || !parse_template_vars(root, r, err) || (r->kind == LMC_SRV_CHAT ? !parse_tools(root, r, err) : !unsupported(root, "tools", " (use /v1/chat/completions)", err)) ||
        !unsupported(root, "functions", " (the legacy form: send 'tools')", err) || (r->kind == LMC_SRV_CHAT ? !unsupported(root, "echo", "", err) : !get_bool(root, "echo", &r->echo, err)) ||
        !unsupported(root, "suffix", "", err))
        return false;
    /* 0 only to score a prompt: echo it (with its logprobs) and generate nothing */
    const char *mt_name = field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (max_tokens == 0 && !r->echo) return fail(err, mt_name, "'%s' must be in [1, %d] (0 only with 'echo'), got 0", mt_name, INT32_MAX);
    if (r->echo && r->stream) return fail(err, "echo", "'echo' is not supported with 'stream'");
    g->max_tokens = (int)max_tokens;
    g->sampler.top_k = (int)top_k;
    g->sampler.repeat_last_n = (int)last_n;
    g->sampler.seed = (uint64_t)seed;
    r->has_seed = field(root, "seed") != NULL;
    return true;
}

/* Line and column (from 1) of byte off in text. */
static void line_col(const char *text, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* The body as a JSON object, or NULL with err saying where it is malformed. */
static cJSON *parse_body(const char *body, size_t len, lmc_srv_error *err) {
    if (len == 0) {
        fail(err, "", "the request body is empty: expected a JSON object");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    size_t off = end ? (size_t)(end - body) : 0;
    while (root && off < len && lmc_json_space((unsigned char)body[off])) off++;
    if (!root || off < len) {
        int line, col;
        if (off > len) off = len;
        line_col(body, off, &line, &col);
        /* a few bytes from there, control characters shown as '?' */
        char near[24];
        size_t k = 0;
        for (; k + 1 < sizeof near && off + k < len; k++) {
            unsigned char ch = (unsigned char)body[off + k];
            near[k] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
        }
        near[k] = 0;
        fail(err, "", "malformed JSON at line %d, column %d (byte %zu)%s%s%s%s", line, col, off,
             root ? ": text after the JSON value" : "", k ? ", near '" : ", at the end of the body", near, k ? "'" : "");
        cJSON_Delete(root);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        fail(err, "", "the request body must be a JSON object, got %s", lmc_json_type_name(root));
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

bool lmc_srv_parse_request(lmc_srv_kind kind, const char *body, size_t len, const lmc_generate_options *defaults,
                           lmc_srv_request *r, lmc_srv_error *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    r->gen = *defaults;
    r->gen.on_token = NULL;
    r->gen.user = NULL;
    r->gen.cancel = NULL;
    cJSON *root = parse_body(body, len, err);
    if (!root) return false;
    bool ok = true;
    if (ok) ok = kind == LMC_SRV_CHAT ? parse_messages(root, r, err) : parse_prompt(root, r, err);
    if (ok) ok = parse_options(root, r, err);
    cJSON_Delete(root);
    if (!ok) lmc_srv_request_free(r);
    return ok;
}

void lmc_srv_request_free(lmc_srv_request *r) {
    for (size_t i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->messages_json);
    free(r->tools_json);
    free(r->tool_choice);
    free(r->bias);
    free(r->template_vars);
    free(r->json_schema);
    free(r->prompt);
    free(r->ids);
    for (int i = 0; i < LMC_SRV_MAX_STOPS; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

/* One input: a string or an array of token ids. */
static bool embed_input(const cJSON *v, const char *name, lmc_batch_prompt *p, lmc_srv_error *err) {
    if (cJSON_IsString(v)) {
        if (!*v->valuestring) return fail(err, "input", "'%s' is an empty string", name);
        if (!check_utf8(v->valuestring, name, err)) return false;
        return (p->text = strdup(v->valuestring)) ? true : fail(err, "", "out of memory");
    }
    if (!cJSON_IsArray(v) || !v->child)
        return fail(err, "input", "'%s' must be a string or an array of token ids, got %s", name,
                    cJSON_IsArray(v) ? "an empty array" : lmc_json_type_name(v));
    int32_t *ids = malloc((size_t)cJSON_GetArraySize(v) * sizeof *ids);
    if (!ids) return fail(err, "", "out of memory");
    p->ids = ids;
    for (const cJSON *t = v->child; t; t = t->next) {
        if (!token_id(t, &ids[p->n_ids])) return fail(err, "input", "'%s[%zu]' must be a token id (an integer >= 0)", name, p->n_ids);
        p->n_ids++;
    }
    return true;
}

bool lmc_srv_parse_embed_request(const char *body, size_t len, lmc_srv_embed_request *r, lmc_srv_error *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    cJSON *root = parse_body(body, len, err);
    if (!root) return false;
    const cJSON *in = field(root, "input"), *fmt = field(root, "encoding_format"), *model = field(root, "model");
    long long dims = 0;
    bool ok = true;
    if (!in) ok = fail(err, "input", "'input' is required");
    else if (model && !cJSON_IsString(model)) ok = fail(err, "model", "'model' must be a string, got %s", lmc_json_type_name(model));
    else if (fmt && (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64"))))
        ok = fail(err, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    else ok = get_int(root, "dimensions", 1, 1 << 20, &dims, err);
    r->base64 = ok && fmt && !strcmp(fmt->valuestring, "base64");
    r->dimensions = (int)dims;
    /* one input (a string or ids), or an array of them */
    bool many = ok && cJSON_IsArray(in) && in->child && (cJSON_IsString(in->child) || cJSON_IsArray(in->child));
    int n = !ok ? 0 : many ? cJSON_GetArraySize(in) : 1;
    if (ok && n > 2048) ok = fail(err, "input", "'input' holds %d inputs, more than 2048", n);
    if (ok && !(r->inputs = calloc((size_t)n, sizeof *r->inputs))) ok = fail(err, "", "out of memory");
    if (ok && !many) {
        r->n = 1;
        ok = embed_input(in, "input", &r->inputs[0], err);
    }
    int i = 0;
    for (const cJSON *v = many && ok ? in->child : NULL; v && ok; v = v->next, i++) {
        char name[32];
        snprintf(name, sizeof name, "input[%d]", i);
        r->n = (size_t)i + 1;
        ok = embed_input(v, name, &r->inputs[i], err);
    }
    cJSON_Delete(root);
    if (!ok) lmc_srv_embed_request_free(r);
    return ok;
}

void lmc_srv_embed_request_free(lmc_srv_embed_request *r) {
    for (size_t i = 0; r->inputs && i < r->n; i++) {
        free((char *)r->inputs[i].text);
        free((int32_t *)r->inputs[i].ids);
    }
    free(r->inputs);
    memset(r, 0, sizeof *r);
}
