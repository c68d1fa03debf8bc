/* Chat templates: the public API over the Jinja interpreter, and loading a
 * template plus its special tokens from a tokenizer folder. The variables
 * are those transformers' apply_chat_template passes: messages, tools and
 * documents (None unless given), add_generation_prompt, the special tokens
 * map, then the caller's extra variables. */
#include "lmc/chat_template.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/jinja.h"

struct lmc_chat_template {
    jinja_template *tmpl;
    char *source;
    char *specials_json; /* JSON object: bos_token, eos_token, ... as the template sees them */
    char *bos, *eos;
};

lmc_chat_template_options lmc_chat_template_options_default(void) {
    return (lmc_chat_template_options){.add_generation_prompt = false};
}

static lmc_status render_parsed(const jinja_template *t, const char *specials_json, const char *messages_json,
                                const lmc_chat_template_options *opt, char **out) {
    lmc_chat_template_options dflt = lmc_chat_template_options_default();
    if (!opt) opt = &dflt;
    if (!messages_json) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: messages is NULL");
    const char *p = messages_json;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p != '[') return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: messages must be a JSON array");
    jinja_ctx *c = jinja_ctx_new();
    if (!c) return lmc_last_status();
    lmc_status s = jinja_ctx_set_none(c, "tools");
    if (s == LMC_OK) s = jinja_ctx_set_none(c, "documents");
    if (s == LMC_OK) s = jinja_ctx_set_json(c, "messages", messages_json, strlen(messages_json));
    if (s == LMC_OK) s = jinja_ctx_set_bool(c, "add_generation_prompt", opt->add_generation_prompt);
    if (s == LMC_OK && specials_json) s = jinja_ctx_set_json_object(c, specials_json, strlen(specials_json), "special tokens");
    if (s == LMC_OK && opt->bos_token) s = jinja_ctx_set_str(c, "bos_token", opt->bos_token);
    if (s == LMC_OK && opt->eos_token) s = jinja_ctx_set_str(c, "eos_token", opt->eos_token);
    if (s == LMC_OK && opt->extra_json) s = jinja_ctx_set_json_object(c, opt->extra_json, strlen(opt->extra_json), "extra variables");
    if (s == LMC_OK) s = jinja_render(c, t, out, NULL);
    jinja_ctx_free(c);
    return s;
}

lmc_status lmc_chat_template_render(const char *tmpl, const char *messages_json, const lmc_chat_template_options *opt,
                                    char **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: out is NULL");
    *out = NULL;
    if (!tmpl) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: template is NULL");
    jinja_template *t = jinja_parse(tmpl, strlen(tmpl));
    if (!t) return lmc_last_status();
    lmc_status s = render_parsed(t, NULL, messages_json, opt, out);
    jinja_template_free(t);
    return s;
}

/* ---- loading from a folder ---------------------------------------------- */

/* Whole file as a NUL-terminated string; *missing tells a file that does not exist. */
static char *read_file(const char *path, bool *missing) {
    *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        if (!*missing) lmc_set_error(LMC_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        return NULL;
    }
    if (err) {
        free(buf);
        lmc_set_error(LMC_ERR_IO, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static char *path_join(const char *dir, const char *name) {
    size_t k = strlen(dir) + strlen(name) + 2;
    char *p = malloc(k);
    if (p) snprintf(p, k, "%s/%s", dir, name);
    return p;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* A special token as tokenizer_config.json writes it: "tok" or {"content": "tok", ...}. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

/* The template in tokenizer_config.json or chat_template.json: a string or a list of {name, template}. */
static lmc_status pick_template(const cJSON *ct, const char *path, char **out) {
    if (cJSON_IsString(ct)) {
        *out = dup_str(ct->valuestring);
        return *out ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    if (cJSON_IsArray(ct)) {
        const cJSON *item;
        cJSON_ArrayForEach(item, ct) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(item, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default")) {
                if (!cJSON_IsString(tmpl)) return lmc_set_error(LMC_ERR_FORMAT, "%s: chat_template \"default\" has no template string", path);
                *out = dup_str(tmpl->valuestring);
                return *out ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            }
        }
        return lmc_set_error(LMC_ERR_FORMAT, "%s: chat_template lists several templates but none named \"default\"", path);
    }
    return lmc_set_error(LMC_ERR_FORMAT, "%s: chat_template must be a string or a list of {name, template}", path);
}

/* Reads a JSON file into a cJSON tree; NULL with *missing for an absent file. */
static cJSON *read_json(const char *path, bool *missing, lmc_status *st) {
    *st = LMC_OK;
    char *text = read_file(path, missing);
    if (!text) {
        if (!*missing) *st = lmc_last_status();
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text ? (size_t)(at - text) : 0;
        *st = lmc_set_error(LMC_ERR_FORMAT, "%s: malformed JSON near byte %zu", path, off);
    }
    free(text);
    return j;
}

static lmc_status load_config(lmc_chat_template *t, const char *dir) {
    static const char *const token_names[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token", NULL};
    char *path = path_join(dir, "tokenizer_config.json");
    if (!path) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    bool missing;
    lmc_status st;
    cJSON *cfg = read_json(path, &missing, &st);
    if (!cfg) {
        free(path);
        return st; /* an absent tokenizer_config.json is not an error by itself */
    }
    cJSON *specials = cJSON_CreateObject();
    if (!specials) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; st == LMC_OK && token_names[i]; i++) {
        const char *text = token_text(cJSON_GetObjectItemCaseSensitive(cfg, token_names[i]));
        if (!text || !*text) continue; /* transformers leaves unset tokens out */
        cJSON_AddStringToObject(specials, token_names[i], text);
        if (i == 0) t->bos = dup_str(text);
        if (i == 1) t->eos = dup_str(text);
    }
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
    if (st == LMC_OK && cJSON_IsArray(extra)) {
        cJSON *list = cJSON_AddArrayToObject(specials, "additional_special_tokens");
        const cJSON *item;
        cJSON_ArrayForEach(item, extra) {
            const char *text = token_text(item);
            if (text) cJSON_AddItemToArray(list, cJSON_CreateString(text));
        }
    }
    if (st == LMC_OK) {
        t->specials_json = cJSON_PrintUnformatted(specials);
        if (!t->specials_json) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (st == LMC_OK && !t->source && ct && !cJSON_IsNull(ct)) st = pick_template(ct, path, &t->source);
    cJSON_Delete(specials);
    cJSON_Delete(cfg);
    free(path);
    return st;
}

lmc_status lmc_chat_template_load(const char *dir, lmc_chat_template **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: out is NULL");
    *out = NULL;
    if (!dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: folder is NULL");
    lmc_chat_template *t = calloc(1, sizeof *t);
    if (!t) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_status st = LMC_OK;
    bool missing;

    char *path = path_join(dir, "chat_template.jinja");
    if (!path) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK) {
        t->source = read_file(path, &missing);
        if (!t->source && !missing) st = lmc_last_status();
    }
    free(path);
    if (st == LMC_OK) st = load_config(t, dir);
    if (st == LMC_OK && !t->source) {
        path = path_join(dir, "chat_template.json");
        cJSON *j = path ? read_json(path, &missing, &st) : NULL;
        if (j) {
            const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
            if (ct) st = pick_template(ct, path, &t->source);
            cJSON_Delete(j);
        }
        free(path);
    }
    if (st == LMC_OK && !t->source)
        st = lmc_set_error(LMC_ERR_NOT_FOUND, "%s: no chat template (looked for chat_template.jinja, tokenizer_config.json's chat_template, chat_template.json)", dir);
    if (st == LMC_OK) {
        t->tmpl = jinja_parse(t->source, strlen(t->source));
        if (!t->tmpl) {
            st = lmc_last_status();
            lmc_error_prefix("%s: chat_template", dir);
        }
    }
    if (st != LMC_OK) {
        lmc_chat_template_free(t);
        return st;
    }
    *out = t;
    return LMC_OK;
}

lmc_status lmc_chat_template_apply(const lmc_chat_template *t, const char *messages_json,
                                   const lmc_chat_template_options *opt, char **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: out is NULL");
    *out = NULL;
    if (!t) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "chat template: template is NULL");
    return render_parsed(t->tmpl, t->specials_json, messages_json, opt, out);
}

const char *lmc_chat_template_source(const lmc_chat_template *t) { return t ? t->source : NULL; }
const char *lmc_chat_template_bos_token(const lmc_chat_template *t) { return t ? t->bos : NULL; }
const char *lmc_chat_template_eos_token(const lmc_chat_template *t) { return t ? t->eos : NULL; }

void lmc_chat_template_free(lmc_chat_template *t) {
    if (!t) return;
    jinja_template_free(t->tmpl);
    free(t->source);
    free(t->specials_json);
    free(t->bos);
    free(t->eos);
    free(t);
}
