/* Training data: JSONL examples turned into token ids and a per-token mask
 * (mask[i] = 1: ids[i] is a target, predicted from ids[0..i-1]). The four
 * forms are described in lmc/finetune.h; each line is parsed, checked and
 * tokenised on its own, and every error names the file, the line and the
 * field. An example that ends up with no target at all (an all-zero mask,
 * or a single token, which nothing precedes) is skipped and counted
 * (lmc_dataset_skipped); a file without any usable example is an error. */
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/utf8.h"
#include "io/json_util.h"
#include "lmc/chat_template.h"
#include "lmc/finetune.h"
#include "lmc/tokenizer.h"
#include "runtime/model_internal.h"

struct lmc_dataset {
    size_t n, cap;         /* examples */
    size_t *off;           /* example i is ids/mask[off[i] .. off[i+1]) (n + 1 entries) */
    int32_t *ids;
    uint8_t *mask;
    size_t len, len_cap;   /* tokens stored */
    size_t skipped;
};

/* What one line is parsed with. */
typedef struct loader {
    const char *path;
    size_t line;
    lmc_model *m;
    const lmc_tokenizer *tok;
    int64_t vocab;
    int32_t eos;                  /* appended to text and completions; -1 when the tokenizer has none */
    lmc_chat_template *tmpl;      /* loaded at the first "messages" line */
} loader;

/* One example being built. */
typedef struct example {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} example;

static lmc_status line_error(const loader *L, lmc_status s, const char *field, const char *msg) {
    if (field) return lmc_set_error(s, "%s:%zu: field \"%s\": %s", L->path, L->line, field, msg);
    return lmc_set_error(s, "%s:%zu: %s", L->path, L->line, msg);
}

static lmc_status example_push(example *e, const int32_t *ids, size_t n, uint8_t mask) {
    if (n == 0) return LMC_OK; /* (an empty example has no buffers to offset) */
    if (e->n + n > e->cap) {
        size_t cap = e->cap ? e->cap : 64;
        while (cap < e->n + n) cap *= 2;
        int32_t *ni = realloc(e->ids, cap * sizeof *ni);
        if (ni) e->ids = ni;
        uint8_t *nm = realloc(e->mask, cap);
        if (nm) e->mask = nm;
        if (!ni || !nm) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory reading a dataset");
        e->cap = cap;
    }
    memcpy(e->ids + e->n, ids, n * sizeof *ids);
    memset(e->mask + e->n, mask, n);
    e->n += n;
    return LMC_OK;
}

static void example_clear(example *e) {
    free(e->ids);
    free(e->mask);
    memset(e, 0, sizeof *e);
}

/* Tokenises a string field; every id must fit the model's vocabulary (a
 * random-weight test model may be smaller than its tokenizer). */
static lmc_status encode(const loader *L, const char *field, const char *text, bool add_special, int32_t **ids,
                         size_t *n) {
    lmc_status st = lmc_tokenizer_encode(L->tok, text, strlen(text), add_special, ids, n);
    if (st != LMC_OK) {
        lmc_error_prefix("%s:%zu: field \"%s\"", L->path, L->line, field);
        return st;
    }
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= L->vocab) {
            st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                               "%s:%zu: field \"%s\": the tokenizer gives id %d, outside the model's vocabulary of %lld",
                               L->path, L->line, field, (*ids)[i], (long long)L->vocab);
            lmc_tokenizer_free_ids(*ids);
            *ids = NULL;
            return st;
        }
    return LMC_OK;
}

/* A string field that must be present. */
static lmc_status get_string(const loader *L, const cJSON *obj, const char *field, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!v) return line_error(L, LMC_ERR_FORMAT, field, "missing");
    if (!cJSON_IsString(v)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected a string, got %s", lmc_json_type_name(v));
        return line_error(L, LMC_ERR_FORMAT, field, msg);
    }
    *out = v->valuestring;
    return LMC_OK;
}

/* Appends the EOS token (as a target) unless the example already ends with one. */
static lmc_status append_eos(const loader *L, example *e) {
    if (L->eos < 0 || (e->n > 0 && lmc_tokenizer_is_eos(L->tok, e->ids[e->n - 1]))) return LMC_OK;
    return example_push(e, &L->eos, 1, 1);
}

/* {"text"}: every token is learned, BOS as the tokenizer adds it, EOS appended. */
static lmc_status load_text(const loader *L, const cJSON *obj, example *e) {
    const char *text;
    int32_t *ids = NULL;
    size_t n = 0;
    LMC_CHECK(get_string(L, obj, "text", &text));
    LMC_CHECK(encode(L, "text", text, true, &ids, &n));
    lmc_status st = example_push(e, ids, n, 1);
    lmc_tokenizer_free_ids(ids);
    LMC_CHECK(st);
    return append_eos(L, e);
}

/* {"prompt", "completion"}: the prompt with the tokenizer's special tokens,
 * the completion without, then EOS; only the completion and EOS are learned. */
static lmc_status load_prompt_completion(const loader *L, const cJSON *obj, example *e) {
    const char *prompt, *completion;
    LMC_CHECK(get_string(L, obj, "prompt", &prompt));
    LMC_CHECK(get_string(L, obj, "completion", &completion));
    int32_t *ids = NULL;
    size_t n = 0;
    LMC_CHECK(encode(L, "prompt", prompt, true, &ids, &n));
    lmc_status st = example_push(e, ids, n, 0);
    lmc_tokenizer_free_ids(ids);
    LMC_CHECK(st);
    LMC_CHECK(encode(L, "completion", completion, false, &ids, &n));
    st = example_push(e, ids, n, 1);
    lmc_tokenizer_free_ids(ids);
    LMC_CHECK(st);
    return append_eos(L, e);
}

/* {"input_ids", "loss_mask"}: used as given. */
static lmc_status load_ids(const loader *L, const cJSON *obj, example *e) {
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(obj, "input_ids");
    const cJSON *mask = cJSON_GetObjectItemCaseSensitive(obj, "loss_mask");
    char msg[160];
    if (!cJSON_IsArray(ids)) {
        snprintf(msg, sizeof msg, "expected an array of token ids, got %s", lmc_json_type_name(ids));
        return line_error(L, LMC_ERR_FORMAT, "input_ids", msg);
    }
    if (!mask) return line_error(L, LMC_ERR_FORMAT, "loss_mask", "missing (it goes with input_ids)");
    if (!cJSON_IsArray(mask)) {
        snprintf(msg, sizeof msg, "expected an array of 0 and 1, got %s", lmc_json_type_name(mask));
        return line_error(L, LMC_ERR_FORMAT, "loss_mask", msg);
    }
    int ni = cJSON_GetArraySize(ids), nm = cJSON_GetArraySize(mask);
    if (ni != nm) {
        snprintf(msg, sizeof msg, "has %d entries but input_ids has %d", nm, ni);
        return line_error(L, LMC_ERR_FORMAT, "loss_mask", msg);
    }
    const cJSON *id = ids->child, *mk = mask->child;
    for (int i = 0; i < ni; i++, id = id->next, mk = mk->next) {
        uint64_t v, b;
        if (!lmc_json_uint(id, &v) || v >= (uint64_t)L->vocab) {
            snprintf(msg, sizeof msg, "entry %d is %s; token ids are integers in [0, %lld)", i,
                     cJSON_IsNumber(id) ? "outside the model's vocabulary" : lmc_json_type_name(id),
                     (long long)L->vocab);
            return line_error(L, LMC_ERR_FORMAT, "input_ids", msg);
        }
        if (cJSON_IsBool(mk)) b = cJSON_IsTrue(mk);
        else if (!lmc_json_uint(mk, &b) || b > 1) {
            snprintf(msg, sizeof msg, "entry %d is not 0 or 1", i);
            return line_error(L, LMC_ERR_FORMAT, "loss_mask", msg);
        }
        int32_t t = (int32_t)v;
        LMC_CHECK(example_push(e, &t, 1, (uint8_t)b));
    }
    return LMC_OK;
}

/* Renders messages[0..k) and tokenises the text (which already holds BOS
 * and the like, as transformers' apply_chat_template assumes). */
static lmc_status render_prefix(const loader *L, const cJSON *msgs, int k, bool gen_prompt, int32_t **ids, size_t *n) {
    cJSON *arr = cJSON_CreateArray();
    const cJSON *it = msgs->child;
    for (int j = 0; arr && j < k; j++, it = it->next) cJSON_AddItemReferenceToArray(arr, (cJSON *)it);
    char *json = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (!json) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory rendering messages");
    lmc_chat_template_options co = lmc_chat_template_options_default();
    co.add_generation_prompt = gen_prompt;
    char *text = NULL;
    lmc_status st = lmc_chat_template_apply(L->tmpl, json, &co, &text);
    free(json);
    if (st != LMC_OK) {
        lmc_error_prefix("%s:%zu: field \"messages\": the chat template failed", L->path, L->line);
        return st;
    }
    st = encode(L, "messages", text, false, ids, n);
    free(text);
    return st;
}

static bool is_prefix(const int32_t *p, size_t np, const int32_t *ids, size_t n) {
    return np <= n && memcmp(p, ids, np * sizeof *p) == 0;
}

/* {"messages"}: the conversation rendered with the chat template; the
 * assistant turns are learned, each from the token after its opening header
 * through its end-of-turn token. Where a turn starts is found by rendering
 * the messages before it with the generation prompt; where it ends by
 * rendering it as the last message and taking the last special token of the
 * turn (<|im_end|>, <|eot_id|>, <end_of_turn>); the tokens after it (a
 * newline) are not learned. Both renderings must tokenise to a prefix of the
 * whole conversation. Some templates render the last assistant turn
 * differently from earlier ones (Qwen 3 adds an empty think block to the
 * final turn only); when the inclusive rendering is not a prefix, the turn
 * ends at its first special token instead. A turn whose start is not a
 * prefix, or with no end-of-turn token, is an error. */
static lmc_status load_messages(loader *L, const cJSON *obj, example *e) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    char msg[200];
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        snprintf(msg, sizeof msg, "expected a non-empty array of messages, got %s",
                 cJSON_IsArray(msgs) ? "an empty array" : lmc_json_type_name(msgs));
        return line_error(L, LMC_ERR_FORMAT, "messages", msg);
    }
    int nmsg = cJSON_GetArraySize(msgs), k = 0;
    for (const cJSON *it = msgs->child; it; it = it->next, k++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        if (!cJSON_IsObject(it) || !cJSON_IsString(role)) {
            snprintf(msg, sizeof msg, "message %d %s", k,
                     !cJSON_IsObject(it) ? "is not an object" : "has no \"role\" string");
            return line_error(L, LMC_ERR_FORMAT, "messages", msg);
        }
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (content && !cJSON_IsString(content) && !cJSON_IsArray(content) && !cJSON_IsNull(content)) {
            snprintf(msg, sizeof msg, "message %d: \"content\" is %s (expected a string or a list of parts)", k,
                     lmc_json_type_name(content));
            return line_error(L, LMC_ERR_FORMAT, "messages", msg);
        }
    }
    if (!L->tmpl) {
        lmc_status st = lmc_chat_template_load(L->m->dir, &L->tmpl);
        if (st != LMC_OK) {
            lmc_error_prefix("%s:%zu: field \"messages\" needs the model's chat template", L->path, L->line);
            return st;
        }
    }
    int32_t *all = NULL, *pre = NULL;
    size_t n_all = 0, n_pre = 0;
    LMC_CHECK(render_prefix(L, msgs, nmsg, false, &all, &n_all));
    lmc_status st = example_push(e, all, n_all, 0);
    k = 0;
    for (const cJSON *it = msgs->child; st == LMC_OK && it; it = it->next, k++) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(it, "role")->valuestring, "assistant") != 0) continue;
        st = render_prefix(L, msgs, k, true, &pre, &n_pre);
        if (st != LMC_OK) break;
        size_t start = n_pre, end = 0;
        bool ok = is_prefix(pre, n_pre, all, n_all);
        lmc_tokenizer_free_ids(pre);
        pre = NULL;
        if (!ok) {
            snprintf(msg, sizeof msg,
                     "message %d: the chat template renders the conversation before this assistant turn "
                     "differently from the whole conversation, so the turn cannot be located",
                     k);
            st = line_error(L, LMC_ERR_UNSUPPORTED, "messages", msg);
            break;
        }
        st = render_prefix(L, msgs, k + 1, false, &pre, &n_pre);
        if (st != LMC_OK) break;
        if (n_pre > start && is_prefix(pre, n_pre, all, n_all)) {
            end = n_pre;
            while (end > start && !lmc_tokenizer_is_special(L->tok, all[end - 1])) end--;
            if (end == start) end = n_pre; /* no end-of-turn token: the whole rendering of the turn */
        } else {
            for (size_t i = start; i < n_all && !end; i++)
                if (lmc_tokenizer_is_special(L->tok, all[i])) end = i + 1;
        }
        lmc_tokenizer_free_ids(pre);
        pre = NULL;
        if (end <= start) {
            snprintf(msg, sizeof msg, "message %d: no end-of-turn token found after this assistant turn", k);
            st = line_error(L, LMC_ERR_UNSUPPORTED, "messages", msg);
            break;
        }
        memset(e->mask + start, 1, end - start);
    }
    lmc_tokenizer_free_ids(all);
    return st;
}

/* Parses one non-blank line into an example. */
static lmc_status load_line(loader *L, const char *text, size_t len, example *e) {
    size_t at = 0;
    if (!lmc_utf8_valid(text, len, &at)) {
        char msg[96];
        snprintf(msg, sizeof msg, "invalid UTF-8 at column %zu", at + 1);
        return line_error(L, LMC_ERR_FORMAT, NULL, msg);
    }
    if (lmc_json_has_nul_escape(text, len, &at)) {
        char msg[96];
        snprintf(msg, sizeof msg, "\\u0000 at column %zu is not allowed", at + 1);
        return line_error(L, LMC_ERR_FORMAT, NULL, msg);
    }
    cJSON *obj = lmc_json_parse(text, len, &at);
    if (!obj) {
        char msg[96];
        snprintf(msg, sizeof msg, "malformed JSON at column %zu", at + 1);
        return line_error(L, LMC_ERR_FORMAT, NULL, msg);
    }
    lmc_status st;
    bool has_text = cJSON_HasObjectItem(obj, "text"), has_msgs = cJSON_HasObjectItem(obj, "messages"),
         has_ids = cJSON_HasObjectItem(obj, "input_ids"),
         has_pc = cJSON_HasObjectItem(obj, "prompt") || cJSON_HasObjectItem(obj, "completion");
    int forms = has_text + has_msgs + has_ids + has_pc;
    if (!cJSON_IsObject(obj)) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected a JSON object, got %s", lmc_json_type_name(obj));
        st = line_error(L, LMC_ERR_FORMAT, NULL, msg);
    } else if (forms == 0)
        st = line_error(L, LMC_ERR_FORMAT, NULL,
                        "no \"text\", \"prompt\"/\"completion\", \"messages\" or \"input_ids\" field");
    else if (forms > 1)
        st = line_error(L, LMC_ERR_FORMAT, NULL,
                        "more than one of \"text\", \"prompt\"/\"completion\", \"messages\" and \"input_ids\"");
    else if (has_text) st = load_text(L, obj, e);
    else if (has_pc) st = load_prompt_completion(L, obj, e);
    else if (has_msgs) st = load_messages(L, obj, e);
    else st = load_ids(L, obj, e);
    cJSON_Delete(obj);
    return st;
}

static lmc_status dataset_add(lmc_dataset *ds, const example *e) {
    if (ds->n + 2 > ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 64;
        size_t *off = realloc(ds->off, cap * sizeof *off);
        if (!off) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory reading a dataset");
        ds->off = off;
        ds->cap = cap;
    }
    if (ds->len + e->n > ds->len_cap) {
        size_t cap = ds->len_cap ? ds->len_cap : 4096;
        while (cap < ds->len + e->n) cap *= 2;
        int32_t *ids = realloc(ds->ids, cap * sizeof *ids);
        if (ids) ds->ids = ids;
        uint8_t *mask = realloc(ds->mask, cap);
        if (mask) ds->mask = mask;
        if (!ids || !mask) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory reading a dataset");
        ds->len_cap = cap;
    }
    memcpy(ds->ids + ds->len, e->ids, e->n * sizeof *e->ids);
    memcpy(ds->mask + ds->len, e->mask, e->n);
    ds->len += e->n;
    ds->off[0] = 0;
    ds->off[++ds->n] = ds->len;
    return LMC_OK;
}

/* True when some token after the first is a target. */
static bool has_target(const example *e) {
    for (size_t i = 1; i < e->n; i++)
        if (e->mask[i]) return true;
    return false;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

lmc_status lmc_dataset_load(lmc_model *m, const char *path, lmc_dataset **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_dataset_load: out is NULL");
    *out = NULL;
    if (!path) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_dataset_load: path is NULL");
    LMC_CHECK(lmc_model_check(m));
    loader L = {.path = path, .m = m, .tok = lmc_model_tokenizer(m)};
    if (!L.tok) return lmc_set_error(LMC_ERR_UNSUPPORTED, "datasets need a model with its own tokenizer (backend %s)",
                                     m->backend);
    lmc_model_info info;
    LMC_CHECK(lmc_model_get_info(m, &info));
    L.vocab = info.vocab_size;
    /* EOS as transformers' tokenizer.eos_token_id has it, else the first EOS id the model stops at. */
    const char *eos_tok = lmc_tokenizer_eos_token(L.tok);
    const int32_t *eos_ids;
    L.eos = eos_tok ? lmc_tokenizer_token_to_id(L.tok, eos_tok) : -1;
    if (L.eos < 0 && lmc_tokenizer_eos(L.tok, &eos_ids) > 0) L.eos = eos_ids[0];
    if (L.eos >= L.vocab) L.eos = -1; /* a test model smaller than its tokenizer: nothing appended */

    FILE *f = fopen(path, "rb");
    if (!f) return lmc_set_error(LMC_ERR_IO, "%s: cannot open", path);
    lmc_dataset *ds = calloc(1, sizeof *ds);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    lmc_status st = ds ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    example e = {0};
    while (st == LMC_OK && (got = getline(&line, &line_cap, f)) >= 0) {
        L.line++;
        if (blank(line, (size_t)got)) continue;
        e.n = 0;
        st = load_line(&L, line, (size_t)got, &e);
        if (st != LMC_OK) break;
        if (!has_target(&e)) ds->skipped++;
        else st = dataset_add(ds, &e);
    }
    if (st == LMC_OK && ferror(f)) st = lmc_set_error(LMC_ERR_IO, "%s: read error", path);
    if (st == LMC_OK && ds->n == 0)
        st = lmc_set_error(LMC_ERR_FORMAT, "%s: no example with a token to learn (%zu skipped)", path, ds->skipped);
    example_clear(&e);
    free(line);
    fclose(f);
    lmc_chat_template_free(L.tmpl);
    if (st != LMC_OK) {
        lmc_dataset_free(ds);
        return st;
    }
    *out = ds;
    return LMC_OK;
}

void lmc_dataset_free(lmc_dataset *ds) {
    if (!ds) return;
    free(ds->off);
    free(ds->ids);
    free(ds->mask);
    free(ds);
}

size_t lmc_dataset_size(const lmc_dataset *ds) { return ds ? ds->n : 0; }

size_t lmc_dataset_skipped(const lmc_dataset *ds) { return ds ? ds->skipped : 0; }

lmc_status lmc_dataset_example(const lmc_dataset *ds, size_t i, const int32_t **ids, const uint8_t **mask, size_t *n) {
    if (!ds || i >= ds->n)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "dataset example %zu out of range (%zu examples)", i,
                             ds ? ds->n : 0);
    if (ids) *ids = ds->ids + ds->off[i];
    if (mask) *mask = ds->mask + ds->off[i];
    if (n) *n = ds->off[i + 1] - ds->off[i];
    return LMC_OK;
}
