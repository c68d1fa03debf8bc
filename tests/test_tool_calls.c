/* Tool calling: reading calls out of replies in each template convention
 * (runtime/tool_calls.h), what streaming may send before a call, and
 * lmc_chat_json / lmc_model_tool_calls on golden models with the real Qwen3
 * template (which renders tools) and Gemma 3's (which cannot). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "lmc/chat_template.h"
#include "lmc/lmc.h"
#include <unistd.h>

#include "model_fixture.h"
#include "runtime/model_internal.h"
#include "runtime/tool_calls.h"
#include "test_util.h"

static const char *call_name(const cJSON *calls, int i) {
    const cJSON *c = cJSON_GetArrayItem(calls, i);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "function"), "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

static const char *call_args(const cJSON *calls, int i) {
    const cJSON *c = cJSON_GetArrayItem(calls, i);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "function"), "arguments");
    return cJSON_IsString(a) ? a->valuestring : NULL;
}

static void test_formats(void) {
    CHECK(lmc_tool_format_of(NULL) == LMC_TOOLS_NONE);
    CHECK(lmc_tool_format_of("{% for m in messages %}{{ m.content }}{% endfor %}") == LMC_TOOLS_NONE);
    CHECK(lmc_tool_format_of("{% if tools %}{{ tools | tojson }}{% endif %}") == LMC_TOOLS_JSON);
    CHECK(lmc_tool_format_of("{% if tools %}<tool_call>{% endif %}") == LMC_TOOLS_HERMES);
}

static void test_hermes(void) {
    cJSON *calls;
    char *content;
    /* two calls, thinking before them, arguments as an object and as a string */
    const char *reply = "<think>\nweather first\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                        "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": \"{\\\"tz\\\": 1}\"}\n"
                        "</tool_call>";
    CHECK(lmc_tool_calls_split(LMC_TOOLS_HERMES, reply, &calls, &content) == LMC_OK);
    CHECK(cJSON_GetArraySize(calls) == 2);
    CHECK_STR(call_name(calls, 0), "get_weather");
    CHECK_STR(call_args(calls, 0), "{\"city\":\"Paris\"}");
    CHECK_STR(call_name(calls, 1), "time");
    CHECK_STR(call_args(calls, 1), "{\"tz\": 1}");
    CHECK_STR(content, "<think>\nweather first\n</think>");
    const cJSON *id0 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "id"), *id1 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 1), "id");
    CHECK(cJSON_IsString(id0) && cJSON_IsString(id1) && strcmp(id0->valuestring, id1->valuestring));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "type")), "function");
    cJSON_Delete(calls);
    free(content);
    /* not calls: bad JSON, no name, an unclosed block stay in the content */
    const char *bad[] = {"a <tool_call>{not json}</tool_call> b", "<tool_call>{\"arguments\": {}}</tool_call>",
                         "x <tool_call>{\"name\": \"f\", \"arguments\": {}}", "plain text"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(lmc_tool_calls_split(LMC_TOOLS_HERMES, bad[i], &calls, &content) == LMC_OK);
        CHECKF(calls == NULL, "case %zu", i);
        CHECK_STR(content, bad[i]);
        cJSON_Delete(calls);
        free(content);
    }
    /* a call without arguments gets {} */
    CHECK(lmc_tool_calls_split(LMC_TOOLS_HERMES, " <tool_call>{\"name\": \"now\"}</tool_call> ", &calls, &content) == LMC_OK);
    CHECK(cJSON_GetArraySize(calls) == 1 && call_args(calls, 0) && !strcmp(call_args(calls, 0), "{}"));
    CHECK_STR(content, "");
    cJSON_Delete(calls);
    free(content);
}

static void test_json(void) {
    cJSON *calls;
    char *content;
    CHECK(lmc_tool_calls_split(LMC_TOOLS_JSON, " {\"name\": \"f\", \"parameters\": {\"x\": 2}}\n", &calls, &content) == LMC_OK);
    CHECK(cJSON_GetArraySize(calls) == 1);
    CHECK_STR(call_name(calls, 0), "f");
    CHECK_STR(call_args(calls, 0), "{\"x\":2}");
    CHECK_STR(content, "");
    cJSON_Delete(calls);
    free(content);
    CHECK(lmc_tool_calls_split(LMC_TOOLS_JSON, "<|python_tag|>[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\"}]", &calls,
                               &content) == LMC_OK);
    CHECK(cJSON_GetArraySize(calls) == 2);
    CHECK_STR(call_name(calls, 1), "b");
    cJSON_Delete(calls);
    free(content);
    const char *not_calls[] = {"The answer is {\"name\": 1}", "{\"name\": \"f\"} and more", "[{\"name\": \"a\"}, 3]", "{}"};
    for (size_t i = 0; i < sizeof not_calls / sizeof *not_calls; i++) {
        CHECK(lmc_tool_calls_split(LMC_TOOLS_JSON, not_calls[i], &calls, &content) == LMC_OK);
        CHECKF(!calls, "case %zu", i);
        CHECK_STR(content, not_calls[i]);
        cJSON_Delete(calls);
        free(content);
    }
    CHECK(lmc_tool_calls_split(LMC_TOOLS_NONE, "  <tool_call>{\"name\": \"f\"}</tool_call>\n", &calls, &content) == LMC_OK);
    CHECK(!calls);
    CHECK_STR(content, "<tool_call>{\"name\": \"f\"}</tool_call>");
    free(content);
}

static void test_stream_prefix(void) {
    const char *t = "Let me check. <tool_call>{";
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_HERMES, t, strlen(t)) == 14);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_HERMES, "ab <tool", 8) == 3);     /* may be a tag */
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_HERMES, "ab <toolbox>", 12) == 12); /* is not one */
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_HERMES, "a < b", 5) == 5);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_HERMES, "<", 1) == 0);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_JSON, "  ", 2) == 0);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_JSON, " {\"na", 5) == 0);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_JSON, "Sure", 4) == 4);
    CHECK(lmc_tool_calls_content_prefix(LMC_TOOLS_NONE, "<tool_call>", 11) == 11);
}

/* A reply fed in pieces of every size: the content sent while streaming is
 * what precedes the first call, the rest comes out of finish. */
static void stream_case(lmc_tool_format f, const char *reply, const char *sent_expect, int n_calls, const char *rest_expect) {
    for (size_t step = 1; step <= 9; step += 2) {
        lmc_tool_stream ts = {.format = f};
        char sent[512] = {0};
        size_t at = 0, len = strlen(reply);
        for (size_t i = 0; i < len; i += step) {
            const char *out;
            size_t n;
            lmc_tool_stream_feed(&ts, reply + i, i + step <= len ? step : len - i, &out, &n);
            CHECK(at + n < sizeof sent);
            memcpy(sent + at, out, n);
            at += n;
        }
        cJSON *calls;
        char *rest;
        CHECK(lmc_tool_stream_finish(&ts, &calls, &rest) == LMC_OK);
        CHECKF(!strcmp(sent, sent_expect), "step %zu: sent '%s', expected '%s'", step, sent, sent_expect);
        CHECKF(cJSON_GetArraySize(calls) == n_calls, "step %zu: %d calls", step, cJSON_GetArraySize(calls));
        CHECKF(rest && !strcmp(rest, rest_expect), "step %zu: rest '%s', expected '%s'", step, rest ? rest : "", rest_expect);
        cJSON_Delete(calls);
        free(rest);
        lmc_tool_stream_free(&ts);
    }
}

static void test_stream(void) {
    stream_case(LMC_TOOLS_HERMES,
                "Let me check. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
                "Let me check. ", 1, "");
    stream_case(LMC_TOOLS_HERMES, "No call <toolbox> here.\n", "No call <toolbox> here.\n", 0, "");
    stream_case(LMC_TOOLS_HERMES, "Ends in <tool", "Ends in ", 0, "<tool");
    stream_case(LMC_TOOLS_HERMES, "a<tool_call>{\"name\": \"f\"}</tool_call> b <tool_call>oops</tool_call>", "a", 1,
                "b <tool_call>oops</tool_call>");
    stream_case(LMC_TOOLS_JSON, " {\"name\": \"f\", \"parameters\": {}}", "", 1, "");
    stream_case(LMC_TOOLS_JSON, "Hello {x}", "Hello {x}", 0, "");
    stream_case(LMC_TOOLS_JSON, "{not a call", "", 0, "{not a call");
    /* a control character before the JSON: content, whole or streamed (the
     * stream decides by the first character; fuzz_reply found the two apart) */
    stream_case(LMC_TOOLS_JSON, "\x04{\"name\": \"f\"}", "\x04{\"name\": \"f\"}", 0, "");
    cJSON *calls;
    char *content;
    CHECK(lmc_tool_calls_split(LMC_TOOLS_JSON, "\x04{\"name\": \"f\"}", &calls, &content) == LMC_OK);
    CHECK(!calls);
    CHECK_STR(content, "\x04{\"name\": \"f\"}");
    free(content);
    stream_case(LMC_TOOLS_JSON, "<|python_tag|> {\"name\": \"f\"}", "", 1, "");
}

static const char *TOOLS = "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\","
                           " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]";
static const char *MSGS = "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", \"content\": \"\","
                          " \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\":"
                          " {\"city\": \"Paris\"}}}]}, {\"role\": \"tool\", \"content\": \"{\\\"temperature\\\": 21}\"}]";

/* Tiny random models with the families' real tokenizers and templates (the
 * golden models' vocabularies stop short of the templates' special tokens). */
static void test_chat_json(void) {
    lmc_model *m;
    char *dir, model_dir[4200];
    TINY_MODEL_OR_RETURN(dir, m, "tiny-qwen3", "qwen3");
    snprintf(model_dir, sizeof model_dir, "%s/m", dir);
    /* the prompt is the template's rendering with the tools, as transformers renders it (test_chat_template_conformance) */
    lmc_chat_template *t = NULL;
    char *prompt = NULL, extra[1024];
    snprintf(extra, sizeof extra, "{\"tools\": %s}", TOOLS);
    lmc_chat_template_options co = lmc_chat_template_options_default();
    co.add_generation_prompt = true;
    co.extra_json = extra;
    CHECK(lmc_chat_template_load(model_dir, &t) == LMC_OK && lmc_chat_template_apply(t, MSGS, &co, &prompt) == LMC_OK);
    CHECK(prompt && strstr(prompt, "<tools>") && strstr(prompt, "<tool_response>"));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(prompt && lmc_tokenizer_encode(lmc_model_tokenizer(m), prompt, strlen(prompt), false, &ids, &n) == LMC_OK);
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.max_tokens = 4;
    lmc_generation g, ref;
    CHECKF(lmc_chat_json(m, MSGS, TOOLS, &o, &g) == LMC_OK, "%s", lmc_last_error());
    CHECK(g.metrics.prompt_tokens == (int64_t)n);
    CHECK(lmc_generate_ids(m, ids, n, &o, &ref) == LMC_OK);
    CHECK(g.n_ids == ref.n_ids && !memcmp(g.ids, ref.ids, g.n_ids * sizeof *g.ids));
    lmc_generation_clear(&g);
    lmc_generation_clear(&ref);
    /* without tools: what lmc_chat renders for the same plain messages */
    lmc_message plain[1] = {{"user", "Weather in Paris?"}};
    CHECK(lmc_chat(m, plain, 1, &o, &ref) == LMC_OK);
    CHECK(lmc_chat_json(m, "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}]", NULL, &o, &g) == LMC_OK);
    CHECK(g.n_ids == ref.n_ids && g.metrics.prompt_tokens == ref.metrics.prompt_tokens);
    lmc_generation_clear(&g);
    lmc_generation_clear(&ref);
    CHECK(lmc_chat_json(m, "[{\"role\": \"user\", \"content\": \"x\"}]", "{\"not\": \"an array\"}", &o, &g) ==
          LMC_ERR_INVALID_ARGUMENT);
    /* template variables (Qwen3: no thinking), alone and with tools: the template renders both */
    char *rendered = NULL;
    snprintf(extra, sizeof extra, "{\"enable_thinking\": false, \"tools\": %s}", TOOLS);
    CHECK(lmc_chat_template_apply(t, MSGS, &co, &rendered) == LMC_OK && rendered && strstr(rendered, "<think>\n\n</think>") &&
          strstr(rendered, "<tools>"));
    int32_t *ids2 = NULL;
    size_t n2 = 0;
    CHECK(rendered && lmc_tokenizer_encode(lmc_model_tokenizer(m), rendered, strlen(rendered), false, &ids2, &n2) == LMC_OK);
    o.template_vars_json = "{\"enable_thinking\": false}";
    CHECK(lmc_chat_json(m, MSGS, TOOLS, &o, &g) == LMC_OK && g.metrics.prompt_tokens == (int64_t)n2 && n2 > n);
    lmc_generation_clear(&g);
    lmc_message one[1] = {{"user", "Weather in Paris?"}};
    lmc_generation with, without;
    CHECK(lmc_chat(m, one, 1, &o, &with) == LMC_OK);
    o.template_vars_json = NULL;
    CHECK(lmc_chat(m, one, 1, &o, &without) == LMC_OK);
    CHECK(with.metrics.prompt_tokens > without.metrics.prompt_tokens); /* the empty think block */
    lmc_generation_clear(&with);
    lmc_generation_clear(&without);
    o.template_vars_json = "[true]";
    CHECK(lmc_chat(m, one, 1, &o, &with) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "template_vars_json"));
    o.template_vars_json = NULL;
    lmc_tokenizer_free_ids(ids2);
    free(rendered);
    CHECK(lmc_chat_json(m, "not json", NULL, &o, &g) != LMC_OK);
    /* reading a reply's calls */
    char *calls = NULL, *content = NULL;
    CHECK(lmc_model_tool_calls(m, "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                                  "</tool_call>", &calls, &content) == LMC_OK);
    CHECK(calls && strstr(calls, "\"name\":\"get_weather\"") && strstr(calls, "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\""));
    CHECK_STR(content, "Checking.");
    free(calls);
    free(content);
    CHECK(lmc_model_tool_calls(m, "no calls here", &calls, NULL) == LMC_OK && calls == NULL);
    lmc_tokenizer_free_ids(ids);
    free(prompt);
    lmc_chat_template_free(t);
    lmc_model_free(m);
    model_fixture_cleanup(dir);

    /* Gemma 3's template never reads `tools`: offering them is refused, not ignored */
    dir = tiny_model("tiny-gemma3", "gemma3", &m);
    CHECK(m != NULL);
    if (m) {
        CHECK(lmc_chat_json(m, "[{\"role\": \"user\", \"content\": \"x\"}]", TOOLS, &o, &g) == LMC_ERR_UNSUPPORTED);
        CHECK(strstr(lmc_last_error(), "does not render tools") != NULL);
        CHECK(lmc_model_tool_calls(m, "<tool_call>{\"name\": \"f\"}</tool_call>", &calls, NULL) == LMC_OK && !calls);
    }
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

/* tool_choice "required" or a name: the reply is one call in the template's
 * convention, whatever the (random) model would say. */
static const char *ONE_TOOL =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\", \"maxLength\": 6}}, \"required\": [\"city\"]}}}]";
static const char *CALL_TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\", \"maxLength\": 6}}, \"required\": [\"city\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"toggle\", \"description\": \"no arguments but one\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"on\": {\"type\": \"boolean\"}},"
    " \"required\": [\"on\"], \"additionalProperties\": false}}}]";

/* Generates with tool_choice `choice` over `tools` on four seeds: every
 * reply must be one whole call (ended by its closing, not by max_tokens) of
 * `want` whose arguments follow that tool's parameters; `tags`: in Qwen's
 * <tool_call> tags. */
static void check_forced(lmc_model *m, const char *tools, const char *choice, const char *want, bool tags) {
    lmc_generate_options o = lmc_generate_options_default();
    o.tool_choice = choice;
    o.max_tokens = 400;
    o.sampler.temperature = 0.9f;
    int names[2] = {0, 0};
    for (int seed = 0; seed < 4; seed++) {
        o.sampler.seed = (uint64_t)seed;
        lmc_generation g;
        lmc_status st = lmc_chat_json(m, "[{\"role\": \"user\", \"content\": \"Paris?\"}]", tools, &o, &g);
        CHECKF(st == LMC_OK, "%s: %s", choice, lmc_last_error());
        if (st != LMC_OK) return;
        CHECKF(g.stop_reason == LMC_STOP_EOS, "%s seed %d: stop %d after %zu tokens: %s", choice, seed, (int)g.stop_reason,
               g.n_ids, g.text);
        if (tags)
            CHECKF(!strncmp(g.text, "<tool_call>\n", 12) && g.text_len > 25 &&
                       !strcmp(g.text + g.text_len - 13, "\n</tool_call>"),
                   "%s", g.text);
        char *calls = NULL, *content = NULL;
        CHECK(lmc_model_tool_calls(m, g.text, &calls, &content) == LMC_OK);
        cJSON *arr = calls ? cJSON_Parse(calls) : NULL;
        CHECKF(cJSON_GetArraySize(arr) == 1 && content && !*content, "seed %d: %s -> calls %s, content '%s'", seed, g.text,
               calls ? calls : "none", content ? content : "");
        const char *name = call_name(arr, 0), *args = call_args(arr, 0);
        cJSON *a = args ? cJSON_Parse(args) : NULL;
        if (name && a) {
            if (!strcmp(name, "get_weather")) {
                const cJSON *city = cJSON_GetObjectItemCaseSensitive(a, "city");
                CHECKF(cJSON_GetArraySize(a) == 1 && cJSON_IsString(city), "%s", args);
                names[0]++;
            } else {
                CHECKF(!strcmp(name, "toggle") && cJSON_GetArraySize(a) == 1 &&
                           cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(a, "on")),
                       "%s(%s)", name, args);
                names[1]++;
            }
            if (want) CHECK_STR(name, want);
        } else {
            CHECKF(0, "seed %d: no call read from %s", seed, g.text);
        }
        cJSON_Delete(a);
        cJSON_Delete(arr);
        free(calls);
        free(content);
        lmc_generation_clear(&g);
    }
    CHECKF(names[0] + names[1] == 4, "calls: %d get_weather, %d toggle", names[0], names[1]);
}

static void test_forced_calls(void) {
    lmc_model *m;
    char *dir;
    TINY_MODEL_OR_RETURN(dir, m, "tiny-qwen3", "qwen3");
    /* "required" with one tool: its parameters apply */
    check_forced(m, ONE_TOOL, "required", "get_weather", true);
    check_forced(m, CALL_TOOLS, "toggle", "toggle", true);
    check_forced(m, CALL_TOOLS, "get_weather", "get_weather", true);
    /* with several, the name read picks that tool's arguments (a tagged union) */
    check_forced(m, CALL_TOOLS, "required", NULL, true);
    lmc_generate_options o = lmc_generate_options_default();
    o.max_tokens = 8;
    o.sampler.temperature = 0;
    lmc_generation g, ref;
    const char *user = "[{\"role\": \"user\", \"content\": \"Paris?\"}]";
    /* "none": the template is not given the tools; "auto": the model decides (the same reply as no choice) */
    o.tool_choice = "none";
    CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &g) == LMC_OK);
    o.tool_choice = NULL;
    CHECK(lmc_chat_json(m, user, NULL, &o, &ref) == LMC_OK);
    CHECK(g.metrics.prompt_tokens == ref.metrics.prompt_tokens && g.n_ids == ref.n_ids &&
          !memcmp(g.ids, ref.ids, g.n_ids * sizeof *g.ids));
    lmc_generation_clear(&g);
    lmc_generation_clear(&ref);
    o.tool_choice = "auto";
    CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &g) == LMC_OK);
    o.tool_choice = NULL;
    CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &ref) == LMC_OK);
    CHECK(g.metrics.prompt_tokens == ref.metrics.prompt_tokens && g.n_ids == ref.n_ids &&
          !memcmp(g.ids, ref.ids, g.n_ids * sizeof *g.ids) && g.metrics.prompt_tokens > 100);
    lmc_generation_clear(&g);
    lmc_generation_clear(&ref);
    /* refusals, each naming what is wrong */
    o.tool_choice = "required";
    CHECK(lmc_chat_json(m, user, NULL, &o, &g) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "needs tools"));
    CHECK(lmc_generate(m, "Paris?", &o, &g) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "needs tools"));
    o.tool_choice = "nowhere";
    CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &g) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "'nowhere'"));
    o.tool_choice = "toggle";
    o.json_object = true;
    CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &g) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "json_object"));
    o.json_object = false;
    const char *bad = "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\","
                      " \"properties\": {\"n\": {\"type\": \"integer\", \"minimum\": 0}}}}}]";
    o.tool_choice = "f";
    CHECKF(lmc_chat_json(m, user, bad, &o, &g) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "minimum") &&
               strstr(lmc_last_error(), "tool_choice"),
           "%s", lmc_last_error());
    lmc_batch_prompt bp = {.text = "Paris?"};
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen.tool_choice = "required";
    lmc_batch_result *res = NULL;
    CHECK(lmc_batch_generate(m, &bp, 1, &bo, &res, NULL) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "tool_choice"));
    /* "none" holds for prompts without tools, as for lmc_generate: the same ids as no choice */
    bo.gen.tool_choice = "none";
    bo.gen.max_tokens = 6;
    bo.gen.sampler.temperature = 0;
    lmc_batch_result *none = NULL, *plain = NULL;
    CHECKF(lmc_batch_generate(m, &bp, 1, &bo, &none, NULL) == LMC_OK, "%s", lmc_last_error());
    bo.gen.tool_choice = NULL;
    CHECK(lmc_batch_generate(m, &bp, 1, &bo, &plain, NULL) == LMC_OK);
    CHECK(none && plain && none[0].n_ids == plain[0].n_ids && none[0].n_ids > 0 &&
          !memcmp(none[0].ids, plain[0].ids, plain[0].n_ids * sizeof(int32_t)));
    lmc_batch_results_free(none, 1);
    lmc_batch_results_free(plain, 1);
    lmc_model_free(m);
    model_fixture_cleanup(dir);

    /* Gemma 3's template has no call syntax: refused */
    dir = tiny_model("tiny-gemma3", "gemma3", &m);
    CHECK(m != NULL);
    if (m) {
        o = lmc_generate_options_default();
        o.tool_choice = "required";
        CHECK(lmc_chat_json(m, user, CALL_TOOLS, &o, &g) == LMC_ERR_UNSUPPORTED);
    }
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

/* The JSON call convention end to end (Llama 3.1's: a reply that is one
 * {"name", "parameters"} object): the npm Llama 3.1 tokenizer's template
 * does not render tools, so the tiny Llama model gets a template written
 * here that does (tools as JSON in a system turn, a call as a bare object).
 * Forced calls over one and several tools come back as calls whose
 * parameters follow the picked tool; a call in the conversation reaches the
 * template. */
static const char *JSON_CALL_TEMPLATE =
    "{{- bos_token }}{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\n"
    "Answer with a JSON object {\"name\": a function, \"parameters\": its arguments}. Functions:\n"
    "{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|eot_id|>{%- endif %}"
    "{%- for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
    "{%- if m.tool_calls %}{% for c in m.tool_calls %}{\"name\": \"{{ c.function.name }}\", \"parameters\": "
    "{{ c.function.arguments | tojson }}}{% endfor %}{% else %}{{ m.content }}{% endif %}<|eot_id|>{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

static void test_json_convention(void) {
    char tmpl[] = "/tmp/lmc-tiny-XXXXXX";
    char *dir = mkdtemp(tmpl) ? strdup(tmpl) : NULL, cmd[8192], path[4200];
    CHECK(dir != NULL);
    if (!dir) return;
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset tiny-llama --tokenizer %s/llama3_1 -o %s/m >/dev/null 2>&1",
             LMC_BUILD_DIR, LMC_TOKENIZER_DIR, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/m/chat_template.jinja", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(JSON_CALL_TEMPLATE, f) >= 0);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/m", dir);
    lmc_model *m = NULL;
    CHECKF(lmc_model_load(path, NULL, &m) == LMC_OK, "%s", lmc_last_error());
    if (m) {
        check_forced(m, ONE_TOOL, "required", "get_weather", false);
        check_forced(m, CALL_TOOLS, "toggle", "toggle", false);
        check_forced(m, CALL_TOOLS, "required", NULL, false);
        /* in this convention's words: a bare object whose arguments are "parameters" */
        lmc_generate_options o = lmc_generate_options_default();
        o.tool_choice = "toggle";
        o.max_tokens = 400;
        lmc_generation g;
        CHECK(lmc_chat_json(m, "[{\"role\": \"user\", \"content\": \"Lights?\"}]", CALL_TOOLS, &o, &g) == LMC_OK);
        const char *t = g.text ? g.text : "";
        while (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r') t++;
        CHECKF(*t == '{' && strstr(t, "\"parameters\"") && !strstr(t, "\"arguments\"") && !strstr(t, "<tool_call>"), "%s", g.text);
        lmc_generation_clear(&g);
        /* the prompt holds the tools and an earlier call in this convention (arguments as an object, as
         * transformers' templates take them; the server turns OpenAI's strings into objects) */
        const char *msgs = "[{\"role\": \"user\", \"content\": \"Paris?\"}, {\"role\": \"assistant\", \"content\": null,"
                           " \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
                           " \"arguments\": {\"city\": \"Paris\"}}}]},"
                           " {\"role\": \"tool\", \"content\": \"sunny\"}]";
        int32_t *ids = NULL;
        size_t n = 0, len = 0;
        lmc_tool_format format = LMC_TOOLS_NONE;
        char *prompt = NULL;
        lmc_status st = lmc_model_chat_json_ids(m, msgs, CALL_TOOLS, NULL, &ids, &n, &format);
        if (st == LMC_OK) st = lmc_tokenizer_decode(lmc_model_tokenizer(m), ids, n, false, &prompt, &len);
        CHECKF(st == LMC_OK && format == LMC_TOOLS_JSON && prompt &&
                   strstr(prompt, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}") &&
                   strstr(prompt, "\"toggle\""),
               "%s: %s", lmc_last_error(), prompt ? prompt : "");
        free(ids);
        free(prompt);
    }
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_formats);
    RUN(test_hermes);
    RUN(test_json);
    RUN(test_stream_prefix);
    RUN(test_stream);
    RUN(test_chat_json);
    RUN(test_forced_calls);
    RUN(test_json_convention);
    return TEST_REPORT();
}
