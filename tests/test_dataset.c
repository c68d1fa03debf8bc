/* Training data: the four JSONL forms, their masks (checked against ids the
 * test computes itself through the tokenizer and chat-template APIs), and
 * errors naming the file, line and field. Models are random-weight tiny
 * models with real vocabularies, made by `lmc make-model`. */
#include <unistd.h>

#include "lmc/chat_template.h"
#include "lmc/finetune.h"
#include "lmc/tokenizer.h"
#include "test_util.h"

static char g_tmp[64];
static lmc_model *g_model; /* tiny-qwen3 */

static lmc_model *make_model(const char *preset, const char *tok) {
    char cmd[8192], dir[256];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, preset);
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset %s --tokenizer %s/%s -o %s 2>/dev/null", LMC_BUILD_DIR, preset,
             LMC_TOKENIZER_DIR, tok, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "make-model %s failed\n", preset);
        return NULL;
    }
    lmc_model *m = NULL;
    if (lmc_model_load(dir, NULL, &m) != LMC_OK) fprintf(stderr, "load %s: %s\n", dir, lmc_last_error());
    return m;
}

static const char *write_jsonl(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* ids of text through the tokenizer, appended to buf. */
static size_t enc(const lmc_tokenizer *tok, const char *text, bool special, int32_t *buf, size_t at) {
    int32_t *ids;
    size_t n;
    if (lmc_tokenizer_encode(tok, text, strlen(text), special, &ids, &n) != LMC_OK) return at;
    memcpy(buf + at, ids, n * sizeof *ids);
    lmc_tokenizer_free_ids(ids);
    return at + n;
}

static int32_t eos_of(const lmc_tokenizer *tok) { return lmc_tokenizer_token_to_id(tok, lmc_tokenizer_eos_token(tok)); }

static void check_example(const lmc_dataset *ds, size_t i, const int32_t *ids, const uint8_t *mask, size_t n) {
    const int32_t *gi;
    const uint8_t *gm;
    size_t gn;
    CHECK(lmc_dataset_example(ds, i, &gi, &gm, &gn) == LMC_OK);
    CHECKF(gn == n, "example %zu: %zu tokens, expected %zu", i, gn, n);
    if (gn != n) return;
    CHECKF(memcmp(gi, ids, n * sizeof *ids) == 0, "example %zu: ids differ", i);
    CHECKF(memcmp(gm, mask, n) == 0, "example %zu: mask differs", i);
}

static void test_text_and_prompt_completion(void) {
    lmc_model *m = g_model;
    const lmc_tokenizer *tok = lmc_model_tokenizer(m);
    int32_t eos = eos_of(tok);
    CHECK(eos >= 0);
    const char *p = write_jsonl("pc.jsonl", "{\"text\": \"The cat sat on the mat.\"}\n"
                                            "\n"
                                            "{\"prompt\": \"Q: 2+2?\\nA:\", \"completion\": \" 4\"}\n"
                                            "{\"text\": \"ends already<|im_end|>\", \"id\": 7}\n");
    lmc_dataset *ds;
    CHECKF(lmc_dataset_load(m, p, &ds) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_dataset_size(ds) == 3 && lmc_dataset_skipped(ds) == 0);
    int32_t ids[256];
    uint8_t mask[256];
    /* text: the tokenizer's own specials, every token learned, EOS appended */
    size_t n = enc(tok, "The cat sat on the mat.", true, ids, 0);
    ids[n++] = eos;
    memset(mask, 1, n);
    check_example(ds, 0, ids, mask, n);
    /* prompt + completion + EOS; only the completion and EOS learned */
    size_t np = enc(tok, "Q: 2+2?\nA:", true, ids, 0);
    n = enc(tok, " 4", false, ids, np);
    ids[n++] = eos;
    memset(mask, 0, np);
    memset(mask + np, 1, n - np);
    CHECK(n >= np + 2);
    check_example(ds, 1, ids, mask, n);
    /* a text that already ends with EOS gets no second one */
    n = enc(tok, "ends already<|im_end|>", true, ids, 0);
    CHECK(ids[n - 1] == eos);
    memset(mask, 1, n);
    check_example(ds, 2, ids, mask, n);
    lmc_dataset_free(ds);
}

static void test_input_ids(void) {
    lmc_model *m = g_model;
    const char *p = write_jsonl("ids.jsonl", "{\"input_ids\": [5, 6, 7, 8], \"loss_mask\": [0, 0, 1, 1]}\n"
                                             "{\"input_ids\": [9, 10], \"loss_mask\": [0, 0]}\n"
                                             "{\"input_ids\": [11, 12, 13], \"loss_mask\": [false, true, true]}\n");
    lmc_dataset *ds;
    CHECKF(lmc_dataset_load(m, p, &ds) == LMC_OK, "%s", lmc_last_error());
    /* the all-zero mask is skipped and counted */
    CHECK(lmc_dataset_size(ds) == 2 && lmc_dataset_skipped(ds) == 1);
    check_example(ds, 0, (int32_t[]){5, 6, 7, 8}, (uint8_t[]){0, 0, 1, 1}, 4);
    check_example(ds, 1, (int32_t[]){11, 12, 13}, (uint8_t[]){0, 1, 1}, 3);
    CHECK(lmc_dataset_example(ds, 2, NULL, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    lmc_dataset_free(ds);
}

/* The masked spans, decoded with their special tokens, are exactly each
 * assistant turn's text through its end-of-turn token; the ids are the
 * whole rendered conversation. */
static void check_messages(lmc_model *m, const char *dir, const char *const *turns, int n_turns) {
    const lmc_tokenizer *tok = lmc_model_tokenizer(m);
    const char *conv = "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                       "{\"role\":\"user\",\"content\":\"Hello\"},"
                       "{\"role\":\"assistant\",\"content\":\"Hi there\"},"
                       "{\"role\":\"user\",\"content\":\"Bye\"},"
                       "{\"role\":\"assistant\",\"content\":\"Goodbye!\"}]";
    char line[1024];
    snprintf(line, sizeof line, "{\"messages\": %s}\n", conv);
    const char *p = write_jsonl("msgs.jsonl", line);
    lmc_dataset *ds;
    CHECKF(lmc_dataset_load(m, p, &ds) == LMC_OK, "%s: %s", dir, lmc_last_error());
    if (!ds) return;
    lmc_chat_template *t;
    char *text = NULL;
    CHECK(lmc_chat_template_load(dir, &t) == LMC_OK);
    CHECK(lmc_chat_template_apply(t, conv, NULL, &text) == LMC_OK);
    static int32_t want[4096];
    size_t nw = enc(tok, text, false, want, 0);
    const int32_t *ids;
    const uint8_t *mask;
    size_t n;
    CHECK(lmc_dataset_example(ds, 0, &ids, &mask, &n) == LMC_OK);
    CHECKF(n == nw && memcmp(ids, want, n * sizeof *ids) == 0, "%s: ids are not the rendered conversation", dir);
    int span = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mask[i]) continue;
        size_t j = i;
        while (j < n && mask[j]) j++;
        char *s = NULL;
        CHECK(lmc_tokenizer_decode(tok, ids + i, j - i, false, &s, NULL) == LMC_OK);
        CHECKF(span < n_turns && !strcmp(s, turns[span]), "%s: span %d is \"%s\"", dir, span, s);
        lmc_tokenizer_free_text(s);
        span++;
        i = j;
    }
    CHECKF(span == n_turns, "%s: %d masked spans", dir, span);
    free(text);
    lmc_chat_template_free(t);
    lmc_dataset_free(ds);
}

static void test_messages(void) {
    struct {
        const char *preset, *tok;
        const char *turns[2];
    } cases[] = {
        /* Qwen 3 gives the final turn (only) an empty think block, which is learned with it. */
        {"tiny-qwen3", "qwen3", {"Hi there<|im_end|>", "<think>\n\n</think>\n\nGoodbye!<|im_end|>"}},
        {"tiny-llama", "llama3_1", {"Hi there<|eot_id|>", "Goodbye!<|eot_id|>"}},
        {"tiny-gemma3", "gemma3", {"Hi there<end_of_turn>", "Goodbye!<end_of_turn>"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lmc_model *m = make_model(cases[c].preset, cases[c].tok);
        CHECK(m != NULL);
        if (!m) continue;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s", g_tmp, cases[c].preset);
        check_messages(m, dir, cases[c].turns, 2);
        lmc_model_free(m);
    }
}

/* Loading path fails; the message holds every fragment. */
static void expect_error(lmc_model *m, const char *content, lmc_status want, const char *const *frags) {
    const char *p = write_jsonl("bad.jsonl", content);
    lmc_dataset *ds = (lmc_dataset *)1;
    lmc_status st = lmc_dataset_load(m, p, &ds);
    CHECKF(st == want, "status %d (%s) for %s", st, lmc_last_error(), content);
    CHECK(ds == NULL);
    for (int i = 0; frags[i]; i++) CHECKF(strstr(lmc_last_error(), frags[i]) != NULL, "\"%s\" lacks \"%s\"", lmc_last_error(), frags[i]);
}

static void test_errors(void) {
    lmc_model *m = g_model;
    const char *ok = "{\"text\": \"fine\"}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s{\"text\": \"unterminated}\n", ok);
    expect_error(m, buf, LMC_ERR_FORMAT, (const char *[]){"bad.jsonl:2:", "malformed JSON", NULL});
    snprintf(buf, sizeof buf, "%s\n%s{\"text\": 5}\n", ok, ok);
    expect_error(m, buf, LMC_ERR_FORMAT, (const char *[]){"bad.jsonl:4:", "\"text\"", "expected a string", NULL});
    expect_error(m, "{\"prompt\": \"x\"}\n", LMC_ERR_FORMAT, (const char *[]){":1:", "\"completion\"", "missing", NULL});
    expect_error(m, "{\"input_ids\": [1, 2, 999999999], \"loss_mask\": [0, 1, 1]}\n", LMC_ERR_FORMAT,
                 (const char *[]){":1:", "\"input_ids\"", "entry 2", "vocabulary", NULL});
    expect_error(m, "{\"input_ids\": [1, -2], \"loss_mask\": [0, 1]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"\"input_ids\"", "entry 1", NULL});
    expect_error(m, "{\"input_ids\": [1, 2, 3], \"loss_mask\": [0, 1]}\n", LMC_ERR_FORMAT,
                 (const char *[]){":1:", "\"loss_mask\"", "2 entries", "3", NULL});
    expect_error(m, "{\"input_ids\": [1, 2], \"loss_mask\": [0, 2]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"\"loss_mask\"", "entry 1", "not 0 or 1", NULL});
    expect_error(m, "{\"input_ids\": \"1 2\", \"loss_mask\": [0, 1]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"\"input_ids\"", "a string", NULL});
    expect_error(m, "{\"input_ids\": [1, 2]}\n", LMC_ERR_FORMAT, (const char *[]){"\"loss_mask\"", "missing", NULL});
    expect_error(m, "[1, 2]\n", LMC_ERR_FORMAT, (const char *[]){":1:", "expected a JSON object", NULL});
    expect_error(m, "{\"txt\": \"typo\"}\n", LMC_ERR_FORMAT, (const char *[]){":1:", "no \"text\"", NULL});
    expect_error(m, "{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}\n", LMC_ERR_FORMAT,
                 (const char *[]){"more than one", NULL});
    expect_error(m, "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"\"messages\"", "message 0", "\"content\"", NULL});
    expect_error(m, "{\"messages\": [{\"content\": \"hi\"}]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"\"messages\"", "message 0", "\"role\"", NULL});
    expect_error(m, "{\"messages\": []}\n", LMC_ERR_FORMAT, (const char *[]){"\"messages\"", "empty", NULL});
    expect_error(m, "{\"text\": \"a\\u0000b\"}\n", LMC_ERR_FORMAT, (const char *[]){":1:", "\\u0000", NULL});
    expect_error(m, "{\"text\": \"\xff\"}\n", LMC_ERR_FORMAT, (const char *[]){":1:", "UTF-8", NULL});
    /* nothing to learn at all */
    expect_error(m, "\n{\"input_ids\": [1, 2], \"loss_mask\": [1, 0]}\n", LMC_ERR_FORMAT,
                 (const char *[]){"no example", "1 skipped", NULL});
    expect_error(m, "", LMC_ERR_FORMAT, (const char *[]){"no example", NULL});
    lmc_dataset *ds;
    CHECK(lmc_dataset_load(m, "/nonexistent/x.jsonl", &ds) == LMC_ERR_IO);
    CHECK(strstr(lmc_last_error(), "/nonexistent/x.jsonl") != NULL);
}

/* A template whose generation prompt never appears in a rendered
 * conversation: the assistant turn cannot be located, a clear error. */
static void test_template_without_prefix(void) {
    char dir[256], cmd[1024];
    snprintf(dir, sizeof dir, "%s/odd", g_tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && ln -sf %s/tiny-qwen3/* %s/", dir, g_tmp, dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s/chat_template.jinja", dir);
    FILE *f = fopen(cmd, "w");
    fputs("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}ASSISTANT>{% endif %}", f);
    fclose(f);
    lmc_model *m;
    CHECKF(lmc_model_load(dir, NULL, &m) == LMC_OK, "%s", lmc_last_error());
    const char *p = write_jsonl("odd.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                                             "{\"role\": \"assistant\", \"content\": \"b\"}]}\n");
    lmc_dataset *ds;
    CHECK(lmc_dataset_load(m, p, &ds) == LMC_ERR_UNSUPPORTED);
    CHECKF(strstr(lmc_last_error(), "odd.jsonl:1:") && strstr(lmc_last_error(), "message 1") &&
               strstr(lmc_last_error(), "cannot be located"), "%s", lmc_last_error());
    lmc_model_free(m);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lmc-dataset-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    lmc_model *m = g_model = make_model("tiny-qwen3", "qwen3");
    if (!m) return 1;
    RUN(test_text_and_prompt_completion);
    RUN(test_input_ids);
    RUN(test_errors);
    RUN(test_template_without_prefix);
    lmc_model_free(m);
    RUN(test_messages);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return TEST_REPORT();
}
