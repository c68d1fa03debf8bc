#include "tools/cli_prompts.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/cli_options.h"

/* Records why the line cannot be used; returns false. */
static bool item_error(lmc_cli_prompt *it, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = strlen(msg) + 32;
    it->error = malloc(len);
    if (it->error) snprintf(it->error, len, "line %d: %s", it->line, msg);
    return false;
}

/* Fills it from one line of JSON (NUL-terminated). */
static bool parse_line(lmc_cli_prompt *it, const char *line) {
    cJSON *j = cJSON_Parse(line);
    it->json = j;
    if (!j) return item_error(it, "not valid JSON");
    if (!cJSON_IsObject(j)) return item_error(it, "expected a JSON object");
    cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "prompt_ids");
    if ((text != NULL) + (msgs != NULL) + (ids != NULL) != 1)
        return item_error(it, "give exactly one of \"prompt\", \"messages\" or \"prompt_ids\"");
    if (text) {
        if (!cJSON_IsString(text)) return item_error(it, "\"prompt\" must be a string");
        it->prompt.text = text->valuestring;
    } else if (msgs) {
        int n = cJSON_GetArraySize(msgs);
        if (!cJSON_IsArray(msgs) || n == 0) return item_error(it, "\"messages\" must be a non-empty array");
        if (!(it->messages = calloc((size_t)n, sizeof *it->messages))) return item_error(it, "out of memory");
        int k = 0;
        cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content))
                return item_error(it, "message %d needs string \"role\" and \"content\"", k);
            it->messages[k++] = (lmc_message){role->valuestring, content->valuestring};
        }
        it->prompt.messages = it->messages;
        it->prompt.n_messages = (size_t)n;
    } else {
        int n = cJSON_GetArraySize(ids);
        if (!cJSON_IsArray(ids)) return item_error(it, "\"prompt_ids\" must be an array of token ids");
        if (n > 0 && !(it->ids = malloc((size_t)n * sizeof *it->ids))) return item_error(it, "out of memory");
        int k = 0;
        cJSON *x;
        cJSON_ArrayForEach(x, ids) {
            double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
            if (v < 0 || v > INT32_MAX || v != floor(v))
                return item_error(it, "\"prompt_ids\"[%d] is not a token id (an integer in [0, %d])", k, INT32_MAX);
            it->ids[k++] = (int32_t)v;
        }
        it->prompt.ids = it->ids;
        it->prompt.n_ids = (size_t)n; /* an empty list is reported by the library as an empty prompt */
    }
    return true;
}

bool lmc_cli_read_prompts(const char *cmd, FILE *f, lmc_cli_prompts *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *buf = lmc_cli_read_all(f, &len);
    if (!buf) {
        fprintf(stderr, "lmc %s: cannot read the prompts from standard input\n", cmd);
        return false;
    }
    size_t cap = 0;
    int line = 0;
    bool ok = true;
    for (char *p = buf; ok && p < buf + len; line++) {
        char *end = memchr(p, '\n', (size_t)(buf + len - p));
        if (!end) end = buf + len;
        bool has_nul = memchr(p, 0, (size_t)(end - p)) != NULL;
        *end = 0;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        char *q = p;
        p = end + 1;
        while (*q == ' ' || *q == '\t') q++;
        if (!*q && !has_nul) continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            lmc_cli_prompt *ni = realloc(out->items, cap * sizeof *ni);
            if (!ni) {
                ok = false;
                break;
            }
            out->items = ni;
        }
        lmc_cli_prompt *it = &out->items[out->n++];
        memset(it, 0, sizeof *it);
        it->line = line + 1;
        if (has_nul) item_error(it, "holds a NUL byte");
        else parse_line(it, q);
    }
    free(buf);
    out->valid = calloc(out->n ? out->n : 1, sizeof *out->valid);
    out->valid_item = calloc(out->n ? out->n : 1, sizeof *out->valid_item);
    if (!ok || !out->valid || !out->valid_item) {
        fprintf(stderr, "lmc %s: out of memory\n", cmd);
        lmc_cli_prompts_free(out);
        return false;
    }
    for (size_t i = 0; i < out->n; i++)
        if (!out->items[i].error) {
            out->valid[out->n_valid] = out->items[i].prompt;
            out->valid_item[out->n_valid++] = i;
        }
    return true;
}

void lmc_cli_prompts_free(lmc_cli_prompts *p) {
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].error);
        cJSON_Delete(p->items[i].json);
        free(p->items[i].messages);
        free(p->items[i].ids);
    }
    free(p->items);
    free(p->valid);
    free(p->valid_item);
    memset(p, 0, sizeof *p);
}

void lmc_cli_print_batch_metrics(FILE *f, const char *cmd, const lmc_batch_metrics *m) {
    fprintf(f,
            "[%s: %lld prompts, %lld prompt tokens (%lld with padding), %lld generated tokens | %.3f s (prefill %.3f s) | "
            "%.2f prompts/s, %.1f generated tok/s, %.1f prefill tok/s | peak memory %.1f MiB]\n",
            cmd, (long long)m->prompts, (long long)m->prompt_tokens, (long long)m->padded_tokens,
            (long long)m->generated_tokens, m->seconds, m->prefill_seconds, m->prompts_per_second, m->tokens_per_second,
            m->prefill_tokens_per_second, (double)m->peak_memory_bytes / (1024.0 * 1024.0));
}

long lmc_cli_ran(const lmc_cli_prompts *p, size_t i, size_t *k) {
    if (*k < p->n_valid && p->valid_item[*k] == i) return (long)(*k)++;
    return -1;
}

void lmc_cli_print_line(const lmc_cli_prompts *p, size_t i, bool ran, const char *why, void *obj) {
    cJSON *o = obj;
    if (ran && !why) {
        cJSON_AddNullToObject(o, "error");
    } else if (!ran) {
        cJSON_AddStringToObject(o, "error", p->items[i].error);
    } else {
        char msg[1024];
        snprintf(msg, sizeof msg, "line %d: %s", p->items[i].line, why);
        cJSON_AddStringToObject(o, "error", msg);
    }
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

lmc_model *lmc_cli_prompts_and_model(const char *cmd, struct lmc_cli_gen *g, lmc_cli_prompts *in) {
    if (!lmc_cli_read_prompts(cmd, stdin, in)) return NULL;
    lmc_model *m = lmc_cli_load_model(cmd, g);
    if (!m) lmc_cli_prompts_free(in);
    return m;
}
