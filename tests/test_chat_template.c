/* Chat templates: the real templates of Gemma 3, Llama 3.1 and Qwen 3
 * (tokenizer_config.json in LMC_TOKENIZER_DIR, fetched by
 * scripts/fetch_tokenizers.sh) rendered for typical conversations, the
 * folder loader on small fixtures, and the `lmc template` command.
 *
 * The expected prompts were worked out by reading each template's logic
 * (and agree with jinja2's rendering of the same template). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lmc/chat_template.h"
#include "test_util.h"

#define SYS_USER "[{\"role\": \"system\", \"content\": \"You are helpful.\"}, {\"role\": \"user\", \"content\": \"Hello!\"}]"
#define USER_ONLY "[{\"role\": \"user\", \"content\": \"Hi\"}]"
#define MULTI_TURN                                                                                                \
    "[{\"role\": \"user\", \"content\": \"Q1\"}, {\"role\": \"assistant\", \"content\": \"A1\"}, {\"role\": \"user\", " \
    "\"content\": \"Q2\"}]"

typedef struct real_case {
    const char *model;    /* folder under LMC_TOKENIZER_DIR */
    const char *messages; /* JSON */
    bool gen;             /* add_generation_prompt */
    const char *extra;    /* JSON object or NULL */
    const char *expected;
} real_case;

static const real_case REAL[] = {
    /* Gemma 3: the system prompt is folded into the first user turn; assistant is "model". */
    {"gemma3", SYS_USER, false, NULL, "<bos><start_of_turn>user\nYou are helpful.\n\nHello!<end_of_turn>\n"},
    {"gemma3", SYS_USER, true, NULL, "<bos><start_of_turn>user\nYou are helpful.\n\nHello!<end_of_turn>\n<start_of_turn>model\n"},
    {"gemma3", USER_ONLY, false, NULL, "<bos><start_of_turn>user\nHi<end_of_turn>\n"},
    {"gemma3", USER_ONLY, true, NULL, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"},
    {"gemma3", MULTI_TURN, false, NULL,
     "<bos><start_of_turn>user\nQ1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nQ2<end_of_turn>\n"},
    {"gemma3", MULTI_TURN, true, NULL,
     "<bos><start_of_turn>user\nQ1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nQ2<end_of_turn>\n"
     "<start_of_turn>model\n"},
    /* content as a list of parts; text is trimmed, images become <start_of_image> */
    {"gemma3",
     "[{\"role\": \"system\", \"content\": [{\"type\": \"text\", \"text\": \"Be brief.\"}]}, {\"role\": \"user\", \"content\": "
     "[{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"  What is this?  \"}]}]",
     true, NULL, "<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>What is this?<end_of_turn>\n<start_of_turn>model\n"},

    /* Llama 3.1 (the checkpoint's plain template): headers per turn, content trimmed, BOS once. */
    {"llama3_1", SYS_USER, false, NULL,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"},
    {"llama3_1", SYS_USER, true, NULL,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3_1", USER_ONLY, false, NULL, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"},
    {"llama3_1", USER_ONLY, true, "{\"date_string\": \"26 Jul 2024\"}",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3_1", MULTI_TURN, true, "{\"date_string\": \"26 Jul 2024\"}",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
     "A1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3_1", "[{\"role\": \"user\", \"content\": \"  padded \\n\"}]", false, NULL,
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"},

    /* Qwen 3: ChatML; thinking handled per turn. */
    {"qwen3", SYS_USER, false, NULL, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"},
    {"qwen3", SYS_USER, true, NULL,
     "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen3", SYS_USER, true, "{\"enable_thinking\": false}",
     "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
     "<think>\n\n</think>\n\n"},
    {"qwen3", USER_ONLY, false, NULL, "<|im_start|>user\nHi<|im_end|>\n"},
    {"qwen3", USER_ONLY, true, "{\"enable_thinking\": true}", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen3", MULTI_TURN, false, NULL,
     "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"},
    {"qwen3", MULTI_TURN, true, "{\"enable_thinking\": false}",
     "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
     "<|im_start|>assistant\n<think>\n\n</think>\n\n"},
    /* The final assistant turn after the last query keeps its reasoning, split out of the content. */
    {"qwen3", "[{\"role\": \"user\", \"content\": \"Q1\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhmm\\n</think>\\n\\nA1\"}]",
     false, NULL, "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nA1<|im_end|>\n"},
    /* ... while earlier assistant turns lose it. */
    {"qwen3",
     "[{\"role\": \"user\", \"content\": \"Q1\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhmm\\n</think>\\n\\nA1\"}, "
     "{\"role\": \"user\", \"content\": \"Q2\"}]",
     false, NULL, "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"},
    /* Tools, a tool call with arguments as an object, and two tool responses merged into one user turn. */
    {"qwen3",
     "[{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": "
     "\"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}}]}, "
     "{\"role\": \"tool\", \"content\": \"20\"}, {\"role\": \"tool\", \"content\": \"sunny\"}]",
     true,
     "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
     "\"properties\": {\"city\": {\"type\": \"string\", \"default\": 1.0}}}}}]}",
     "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
     "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
     "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
     "\"properties\": {\"city\": {\"type\": \"string\", \"default\": 1.0}}}}}\n</tools>\n\n"
     "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML "
     "tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
     "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
     "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n20\n</tool_response>\n"
     "<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"},
};

static bool have_tokenizers(void) {
    struct stat st;
    char path[1024];
    snprintf(path, sizeof path, "%s/qwen3/tokenizer_config.json", LMC_TOKENIZER_DIR);
    return stat(path, &st) == 0;
}

static void test_real_templates(void) {
    if (!have_tokenizers()) {
        CHECKF(0, "tokenizer files missing in %s: run scripts/fetch_tokenizers.sh", LMC_TOKENIZER_DIR);
        return;
    }
    for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
        const real_case *rc = &REAL[i];
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", LMC_TOKENIZER_DIR, rc->model);
        lmc_chat_template *t = NULL;
        lmc_status s = lmc_chat_template_load(dir, &t);
        CHECKF(s == LMC_OK, "load %s: %s", dir, lmc_last_error());
        if (s != LMC_OK) continue;
        lmc_chat_template_options opt = lmc_chat_template_options_default();
        opt.add_generation_prompt = rc->gen;
        opt.extra_json = rc->extra;
        char *out = NULL;
        s = lmc_chat_template_apply(t, rc->messages, &opt, &out);
        CHECKF(s == LMC_OK, "case %zu (%s): %s", i, rc->model, lmc_last_error());
        if (s == LMC_OK)
            CHECKF(strcmp(out, rc->expected) == 0, "case %zu (%s, gen=%d)\n  got      \"%s\"\n  expected \"%s\"", i, rc->model,
                   rc->gen, out, rc->expected);
        free(out);
        lmc_chat_template_free(t);
    }
}

/* The folder's own special tokens, and the errors a template raises on bad conversations. */
static void test_real_tokens_and_errors(void) {
    if (!have_tokenizers()) {
        CHECKF(0, "tokenizer files missing in %s: run scripts/fetch_tokenizers.sh", LMC_TOKENIZER_DIR);
        return;
    }
    char dir[1024];
    lmc_chat_template *t = NULL;
    snprintf(dir, sizeof dir, "%s/gemma3", LMC_TOKENIZER_DIR);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_OK);
    CHECK_STR(lmc_chat_template_bos_token(t), "<bos>");
    CHECK_STR(lmc_chat_template_eos_token(t), "<end_of_turn>");
    char *out = NULL;
    /* Two user turns in a row: Gemma's template raises. */
    lmc_status s = lmc_chat_template_apply(t, "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]",
                                           NULL, &out);
    CHECK(s == LMC_ERR_INVALID_ARGUMENT);
    CHECK(out == NULL);
    CHECKF(strstr(lmc_last_error(), "Conversation roles must alternate user/assistant/user/assistant/...") != NULL, "%s",
           lmc_last_error());
    /* Caller-given tokens replace the folder's. */
    lmc_chat_template_options opt = lmc_chat_template_options_default();
    opt.bos_token = "[BOS]";
    CHECK(lmc_chat_template_apply(t, USER_ONLY, &opt, &out) == LMC_OK);
    CHECK_STR(out, "[BOS]<start_of_turn>user\nHi<end_of_turn>\n");
    free(out);
    /* Malformed messages. */
    CHECK(lmc_chat_template_apply(t, "{\"role\": \"user\"}", NULL, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_chat_template_apply(t, "[{\"role\": \"user\", ", NULL, &out) == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "messages: invalid JSON") != NULL);
    CHECK(lmc_chat_template_apply(t, USER_ONLY, &(lmc_chat_template_options){.extra_json = "[1]"}, &out) == LMC_ERR_INVALID_ARGUMENT);
    lmc_chat_template_free(t);

    /* Qwen 3 has no BOS: bos_token stays undefined. */
    snprintf(dir, sizeof dir, "%s/qwen3", LMC_TOKENIZER_DIR);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_OK);
    CHECK(lmc_chat_template_bos_token(t) == NULL);
    CHECK_STR(lmc_chat_template_eos_token(t), "<|im_end|>");
    CHECK(strstr(lmc_chat_template_source(t), "enable_thinking") != NULL);
    lmc_chat_template_free(t);
}

/* lmc_chat_template_render takes the template source directly. */
static void test_render_source(void) {
    lmc_chat_template_options opt = lmc_chat_template_options_default();
    opt.bos_token = "<s>";
    opt.eos_token = "</s>";
    opt.add_generation_prompt = true;
    opt.extra_json = "{\"sep\": \" | \", \"tools\": [1]}";
    const char *tmpl =
        "{{ bos_token }}{% for m in messages %}{{ m.role }}={{ m.content }}{{ sep if not loop.last }}{% endfor %}"
        "{% if add_generation_prompt %}{{ eos_token }}{% endif %}{{ tools|length }}{{ documents }}";
    char *out = NULL;
    CHECK(lmc_chat_template_render(tmpl, MULTI_TURN, &opt, &out) == LMC_OK);
    CHECK_STR(out, "<s>user=Q1 | assistant=A1 | user=Q2</s>1None");
    free(out);
    /* Undefined tokens render as "" (jinja2's default Undefined). */
    CHECK(lmc_chat_template_render("[{{ bos_token }}]", "[]", NULL, &out) == LMC_OK);
    CHECK_STR(out, "[]");
    free(out);
    CHECK(lmc_chat_template_render("{% if %}", "[]", NULL, &out) == LMC_ERR_FORMAT);
    CHECK(out == NULL);
    CHECK(lmc_chat_template_render(NULL, "[]", NULL, &out) == LMC_ERR_INVALID_ARGUMENT);
}

static void test_loader_fixtures(void) {
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]";
    char dir[1024];
    lmc_chat_template *t = NULL;
    char *out = NULL;

    /* A list of named templates: "default" is used; tokens may be {"content": ...} objects. */
    snprintf(dir, sizeof dir, "%s/chat_template/list_default", LMC_TEST_DATA);
    CHECKF(lmc_chat_template_load(dir, &t) == LMC_OK, "%s", lmc_last_error());
    CHECK_STR(lmc_chat_template_bos_token(t), "<s>");
    CHECK(lmc_chat_template_apply(t, msgs, NULL, &out) == LMC_OK);
    CHECK_STR(out, "<s>[user] hi</s>[assistant] yo</s><x>,<y>|False");
    free(out);
    lmc_chat_template_free(t);

    /* chat_template.jinja wins over tokenizer_config.json; one trailing newline is dropped. */
    snprintf(dir, sizeof dir, "%s/chat_template/jinja_file", LMC_TEST_DATA);
    CHECKF(lmc_chat_template_load(dir, &t) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_chat_template_apply(t, msgs, NULL, &out) == LMC_OK);
    CHECK_STR(out, "user: hi\nassistant: yo\n");
    free(out);
    CHECK_STR(lmc_chat_template_eos_token(t), "<E>");
    lmc_chat_template_free(t);

    snprintf(dir, sizeof dir, "%s/chat_template/no_template", LMC_TEST_DATA);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_ERR_NOT_FOUND);
    CHECK(t == NULL);
    CHECK(strstr(lmc_last_error(), "no chat template") != NULL);

    snprintf(dir, sizeof dir, "%s/chat_template/bad_json", LMC_TEST_DATA);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "tokenizer_config.json: malformed JSON") != NULL);

    snprintf(dir, sizeof dir, "%s/chat_template/list_no_default", LMC_TEST_DATA);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "none named \"default\"") != NULL);

    snprintf(dir, sizeof dir, "%s/chat_template/does_not_exist", LMC_TEST_DATA);
    CHECK(lmc_chat_template_load(dir, &t) == LMC_ERR_NOT_FOUND);
}

/* Runs `lmc template` with stdin from a file; returns the exit status and the output. */
static int run_cli(const char *args, const char *input, char *out, size_t cap) {
    char in_path[1024], cmd[4096];
    snprintf(in_path, sizeof in_path, "%s/test_chat_template_input.json", LMC_BUILD_DIR);
    FILE *f = fopen(in_path, "wb");
    if (!f) return -1;
    fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s/lmc' template %s < '%s' 2>/dev/null", LMC_BUILD_DIR, args, in_path);
    int rc = run_command(cmd, out, cap);
    remove(in_path);
    return rc;
}

static void test_cli(void) {
    char lmc[1024];
    struct stat st;
    snprintf(lmc, sizeof lmc, "%s/lmc", LMC_BUILD_DIR);
    if (stat(lmc, &st) != 0) {
        CHECKF(0, "%s not built", lmc);
        return;
    }
    char out[4096], args[2048];
    snprintf(args, sizeof args, "-m '%s/chat_template/list_default' --add-generation-prompt", LMC_TEST_DATA);
    CHECK(run_cli(args, "[{\"role\": \"user\", \"content\": \"hi\"}]", out, sizeof out) == 0);
    CHECK_STR(out, "<s>[user] hi</s><x>,<y>|False");
    if (have_tokenizers()) {
        snprintf(args, sizeof args, "-m '%s/qwen3' --add-generation-prompt --var enable_thinking=false", LMC_TOKENIZER_DIR);
        CHECK(run_cli(args, USER_ONLY, out, sizeof out) == 0);
        CHECK_STR(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    }
    /* Usage and runtime errors. */
    CHECK(run_cli("", "[]", out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s/chat_template/list_default' --var x=notjson", LMC_TEST_DATA);
    CHECK(run_cli(args, "[]", out, sizeof out) == 2);
    snprintf(args, sizeof args, "-m '%s/chat_template/list_default'", LMC_TEST_DATA);
    CHECK(run_cli(args, "not json", out, sizeof out) == 1);
    snprintf(args, sizeof args, "-m '%s/chat_template/no_template'", LMC_TEST_DATA);
    CHECK(run_cli(args, "[]", out, sizeof out) == 1);
}

int main(void) {
    RUN(test_real_templates);
    RUN(test_real_tokens_and_errors);
    RUN(test_render_source);
    RUN(test_loader_fixtures);
    RUN(test_cli);
    return TEST_REPORT();
}
