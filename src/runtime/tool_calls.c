/* Tool-call conventions of chat templates (see tool_calls.h). The template
 * is the model's own statement of how it calls tools, so the format is read
 * off it rather than off the architecture: Qwen's templates ask for
 * <tool_call> blocks; a template that renders tools without them (Llama 3.1)
 * asks for a bare JSON object. */
#include "runtime/tool_calls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json_util.h"
#include "lmc/chat_template.h"
#include "runtime/model_internal.h"

static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";

lmc_tool_format lmc_tool_format_of(const char *src) {
    if (!src || !strstr(src, "tools")) return LMC_TOOLS_NONE;
    return strstr(src, OPEN) ? LMC_TOOLS_HERMES : LMC_TOOLS_JSON;
}


/* One call from a parsed JSON object, or NULL when it is not one. */
static cJSON *call_of(const cJSON *o, int index) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) || !*name->valuestring) return NULL;
    if (args && !cJSON_IsObject(args) && !cJSON_IsString(args)) return NULL;
    char *text = !args ? strdup("{}") : cJSON_IsString(args) ? strdup(args->valuestring) : cJSON_PrintUnformatted(args);
    if (!text) return NULL;
    /* a stable id: the call's position and an FNV-1a hash of what it says */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name->valuestring; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    char id[48];
    snprintf(id, sizeof id, "call_%d_%016llx", index, (unsigned long long)h);
    cJSON *c = cJSON_CreateObject(), *f = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "type", "function");
    cJSON_AddStringToObject(f, "name", name->valuestring);
    cJSON_AddStringToObject(f, "arguments", text);
    cJSON_AddItemToObject(c, "function", f);
    free(text);
    return c;
}

/* text[0, n) trimmed, as a new string. */
static char *trimmed(const char *text, size_t n) {
    while (n && lmc_json_space(*text)) text++, n--;
    while (n && lmc_json_space(text[n - 1])) n--;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, text, n);
        s[n] = 0;
    }
    return s;
}

static lmc_status split_hermes(const char *text, cJSON **calls, char **content) {
    lmc_strbuf rest = {0};
    const char *p = text;
    for (;;) {
        const char *open = strstr(p, OPEN), *close = open ? strstr(open + sizeof OPEN - 1, CLOSE) : NULL;
        if (!close) break;
        const char *body = open + sizeof OPEN - 1;
        char *json = trimmed(body, (size_t)(close - body));
        cJSON *o = json ? cJSON_Parse(json) : NULL;
        cJSON *c = o ? call_of(o, *calls ? cJSON_GetArraySize(*calls) : 0) : NULL;
        cJSON_Delete(o);
        free(json);
        const char *after = close + sizeof CLOSE - 1;
        if (c) {
            if (!*calls) *calls = cJSON_CreateArray();
            cJSON_AddItemToArray(*calls, c);
            lmc_strbuf_append(&rest, p, (size_t)(open - p));
        } else {
            lmc_strbuf_append(&rest, p, (size_t)(after - p));
        }
        p = after;
    }
    lmc_strbuf_puts(&rest, p);
    *content = rest.failed ? NULL : trimmed(rest.data ? rest.data : "", rest.len);
    lmc_strbuf_free(&rest);
    return *content ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
}

static const char PYTHON_TAG[] = "<|python_tag|>";

static lmc_status split_json(const char *text, cJSON **calls, char **content) {
    const char *p = text;
    while (lmc_json_space(*p)) p++;
    if (!strncmp(p, PYTHON_TAG, sizeof PYTHON_TAG - 1))
        for (p += sizeof PYTHON_TAG - 1; lmc_json_space(*p);) p++;
    /* a call starts right there (cJSON would skip control characters too,
     * which a stream, deciding by the first character, sends as content) */
    cJSON *o = *p == '{' || *p == '[' ? cJSON_ParseWithOpts(p, NULL, true) : NULL; /* nothing may follow the call */
    cJSON *arr = cJSON_IsArray(o) ? o : NULL;
    int i = 0;
    for (const cJSON *e = arr ? arr->child : o; o && e; e = arr ? e->next : NULL, i++) {
        cJSON *c = call_of(e, i);
        if (!c) {
            cJSON_Delete(*calls);
            *calls = NULL;
            break;
        }
        if (!*calls) *calls = cJSON_CreateArray();
        cJSON_AddItemToArray(*calls, c);
    }
    cJSON_Delete(o);
    *content = *calls ? strdup("") : trimmed(text, strlen(text));
    return *content ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
}

lmc_status lmc_tool_calls_split(lmc_tool_format f, const char *text, cJSON **calls, char **content) {
    *calls = NULL;
    *content = NULL;
    if (!text) text = "";
    if (f == LMC_TOOLS_HERMES) return split_hermes(text, calls, content);
    if (f == LMC_TOOLS_JSON) return split_json(text, calls, content);
    *content = trimmed(text, strlen(text));
    return *content ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
}

size_t lmc_tool_calls_content_prefix(lmc_tool_format f, const char *text, size_t len) {
    if (f == LMC_TOOLS_HERMES) {
        for (size_t i = 0; i < len; i++) {
            size_t k = 0;
            while (k < sizeof OPEN - 1 && i + k < len && text[i + k] == OPEN[k]) k++;
            if (k == sizeof OPEN - 1 || i + k == len) return i; /* a whole opening tag, or the start of one */
        }
        return len;
    }
    if (f == LMC_TOOLS_JSON) {
        size_t i = 0;
        while (i < len && lmc_json_space(text[i])) i++;
        if (i == len) return 0;                            /* nothing to judge by yet */
        return text[i] == '{' || text[i] == '[' || text[i] == '<' ? 0 : len; /* a call (or the python tag) */
    }
    return len;
}

lmc_status lmc_model_tool_calls(const lmc_model *m, const char *text, char **calls_json, char **content) {
    if (!calls_json || !text) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_model_tool_calls: NULL argument");
    *calls_json = NULL;
    if (content) *content = NULL;
    LMC_CHECK(lmc_model_check(m));
    lmc_chat_template *t;
    LMC_CHECK(lmc_chat_template_load(m->dir, &t));
    lmc_tool_format f = lmc_tool_format_of(lmc_chat_template_source(t));
    lmc_chat_template_free(t);
    cJSON *calls;
    char *rest;
    LMC_CHECK(lmc_tool_calls_split(f, text, &calls, &rest));
    lmc_status st = LMC_OK;
    if (calls && !(*calls_json = cJSON_PrintUnformatted(calls))) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    cJSON_Delete(calls);
    if (content && st == LMC_OK) *content = rest;
    else free(rest);
    return st;
}

void lmc_tool_stream_feed(lmc_tool_stream *s, const char *piece, size_t n, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    lmc_strbuf_append(&s->text, piece, n);
    if (s->text.failed || !s->text.data) return; /* hold everything: finish reports the failure */
    size_t safe = lmc_tool_calls_content_prefix(s->format, s->text.data, s->text.len);
    if (safe > s->sent) {
        *out = s->text.data + s->sent;
        *out_len = safe - s->sent;
        s->sent = safe;
    }
}

lmc_status lmc_tool_stream_finish(lmc_tool_stream *s, cJSON **calls, char **content) {
    *calls = NULL;
    *content = NULL;
    if (s->text.failed) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    return lmc_tool_calls_split(s->format, s->text.data ? s->text.data + s->sent : "", calls, content);
}

void lmc_tool_stream_free(lmc_tool_stream *s) {
    lmc_strbuf_free(&s->text);
    memset(s, 0, sizeof *s);
}
