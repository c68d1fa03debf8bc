/* Conformance of chat-template rendering with transformers.
 *
 * tests/data/tokenizer/templates_<name>.jsonl (name = gemma3, llama3_1,
 * qwen3) hold renderings made by transformers' apply_chat_template on the
 * GPU machine, one JSON object per line:
 *   {"messages": [...], "add_generation_prompt": bool, "extra": {...}, "rendered": "..."}
 * Each line is rendered with the real tokenizer folder in LMC_TOKENIZER_DIR
 * and must match byte for byte. A missing or empty file is a failure. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "lmc/chat_template.h"
#include "test_util.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* End of the JSON value starting at s (a string, number, literal, array or object). */
static const char *value_end(const char *s) {
    int depth = 0;
    const char *p = s;
    do {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (*p) p++;
        } else if (*p == '[' || *p == '{') {
            depth++;
            p++;
        } else if (*p == ']' || *p == '}') {
            depth--;
            p++;
        } else if (depth == 0) {
            while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ') p++;
        } else {
            p++;
        }
    } while (*p && depth > 0);
    return p;
}

/* The raw text of a top-level member of the JSON object on this line, so
 * that numbers keep their spelling (1.0 stays a float); NULL when absent. */
static char *raw_member(const char *line, const char *key) {
    size_t klen = strlen(key);
    const char *p = strchr(line, '{');
    if (!p) return NULL;
    p++;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (*p != '"') return NULL;
        const char *kstart = p + 1, *kend = value_end(p) - 1;
        p = kend + 1;
        while (*p == ' ' || *p == ':') p++;
        const char *vend = value_end(p);
        if ((size_t)(kend - kstart) == klen && memcmp(kstart, key, klen) == 0) {
            char *out = malloc((size_t)(vend - p) + 1);
            memcpy(out, p, (size_t)(vend - p));
            out[vend - p] = 0;
            return out;
        }
        p = vend;
    }
    return NULL;
}

static void check_model(const char *name) {
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/tokenizer/templates_%s.jsonl", LMC_TEST_DATA, name);
    snprintf(dir, sizeof dir, "%s/%s", LMC_TOKENIZER_DIR, name);
    char *text = read_text(path);
    if (!text) {
        CHECKF(0, "%s is missing: it holds transformers' renderings (made on the GPU machine) that this test compares with", path);
        return;
    }
    lmc_chat_template *t = NULL;
    if (lmc_chat_template_load(dir, &t) != LMC_OK) {
        CHECKF(0, "cannot load the chat template of %s: %s (run scripts/fetch_tokenizers.sh)", dir, lmc_last_error());
        free(text);
        return;
    }
    int lines = 0, matched = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!*line) continue;
        lines++;
        cJSON *j = cJSON_Parse(line);
        const cJSON *rendered = j ? cJSON_GetObjectItemCaseSensitive(j, "rendered") : NULL;
        const cJSON *gen = j ? cJSON_GetObjectItemCaseSensitive(j, "add_generation_prompt") : NULL;
        char *messages = raw_member(line, "messages"), *extra = raw_member(line, "extra");
        const cJSON *error = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
        if (j && cJSON_IsString(error) && messages) {
            /* transformers raised: lmc must fail too, with the template's own message. */
            lmc_chat_template_options opt = lmc_chat_template_options_default();
            opt.add_generation_prompt = cJSON_IsTrue(gen);
            char *out = NULL;
            lmc_status s = lmc_chat_template_apply(t, messages, &opt, &out);
            bool same = s != LMC_OK && strstr(lmc_last_error(), error->valuestring) != NULL;
            CHECKF(same, "%s line %d: transformers raised \"%s\"; lmc gave status %d: %s", path, lines,
                   error->valuestring, (int)s, s == LMC_OK ? out : lmc_last_error());
            matched += same;
            free(out);
        } else if (!j || !cJSON_IsString(rendered) || !messages) {
            CHECKF(0, "%s line %d: not an object with \"messages\" and \"rendered\" (or \"error\")", path, lines);
        } else {
            lmc_chat_template_options opt = lmc_chat_template_options_default();
            opt.add_generation_prompt = cJSON_IsTrue(gen);
            opt.extra_json = extra && strcmp(extra, "null") != 0 ? extra : NULL;
            char *out = NULL;
            lmc_status s = lmc_chat_template_apply(t, messages, &opt, &out);
            CHECKF(s == LMC_OK, "%s line %d: %s", path, lines, lmc_last_error());
            if (s == LMC_OK) {
                bool same = strcmp(out, rendered->valuestring) == 0;
                CHECKF(same, "%s line %d:\n  lmc          \"%s\"\n  transformers \"%s\"", path, lines, out, rendered->valuestring);
                matched += same;
            }
            free(out);
        }
        free(messages);
        free(extra);
        cJSON_Delete(j);
    }
    CHECKF(lines > 0, "%s has no renderings", path);
    fprintf(stderr, "%s: %d/%d renderings match transformers\n", name, matched, lines);
    lmc_chat_template_free(t);
    free(text);
}

static void test_gemma3(void) { check_model("gemma3"); }
static void test_llama3_1(void) { check_model("llama3_1"); }
static void test_qwen3(void) { check_model("qwen3"); }

int main(void) {
    RUN(test_gemma3);
    RUN(test_llama3_1);
    RUN(test_qwen3);
    return TEST_REPORT();
}
