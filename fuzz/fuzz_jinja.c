/* libFuzzer target for the Jinja interpreter behind chat templates
 * (src/text/jinja_*.c): a template comes with a model folder, so whatever a
 * tokenizer_config.json holds must give a rendering or an error, never a
 * crash or a hang.
 *
 * Input: template source, then a NUL byte and a JSON object whose keys
 * become the globals (messages, tools, add_generation_prompt, ...); with no
 * NUL the template renders with a small default conversation. Checked:
 *   - a parse error is LMC_ERR_FORMAT with a message;
 *   - a rendering is NUL-terminated at its length, or an error with a
 *     message (a template error, a limit, or malformed globals);
 *   - rendering twice with the same context gives the same result (a
 *     context is reusable, and nothing of one rendering leaks into the next).
 * The work and output limits are lowered so that one input stays fast; they
 * are the same checks the default limits run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/base.h"
#include "text/jinja.h"
#include "fuzz.h"

static const char k_default_globals[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"2+2?\"}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

static lmc_status render(const jinja_template *t, jinja_ctx *c, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    lmc_status s = jinja_render(c, t, out, len);
    if (s == LMC_OK) {
        REQUIRE(*out != NULL && (*out)[*len] == 0);
    } else {
        REQUIRE(*out == NULL);
        REQUIRE(s == LMC_ERR_INVALID_ARGUMENT || s == LMC_ERR_OUT_OF_MEMORY);
        REQUIRE(lmc_last_error()[0] != 0);
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t src_n = nul ? (size_t)(nul - data) : size;
    const char *globals = nul ? (const char *)nul + 1 : k_default_globals;
    size_t globals_n = nul ? size - src_n - 1 : strlen(k_default_globals);

    jinja_template *t = jinja_parse(src, src_n);
    if (!t) {
        lmc_status s = lmc_last_status();
        REQUIRE(s == LMC_ERR_FORMAT || s == LMC_ERR_OUT_OF_MEMORY);
        REQUIRE(lmc_last_error()[0] != 0);
        return 0;
    }
    jinja_ctx *c = jinja_ctx_new();
    REQUIRE(c != NULL);
    jinja_ctx_set_limits(c, (size_t)1 << 20, 200000);
    jinja_ctx_set_time(c, 1721952000); /* strftime_now: a fixed day, so two renderings agree */
    if (jinja_ctx_set_json_object(c, globals, globals_n, "globals") != LMC_OK) {
        REQUIRE(lmc_last_error()[0] != 0);
    } else {
        char *a, *b;
        size_t an, bn;
        lmc_status sa = render(t, c, &a, &an);
        lmc_status sb = render(t, c, &b, &bn);
        REQUIRE(sa == sb);
        if (sa == LMC_OK) REQUIRE(an == bn && memcmp(a, b, an) == 0);
        free(a);
        free(b);
    }
    jinja_ctx_free(c);
    jinja_template_free(t);
    return 0;
}
