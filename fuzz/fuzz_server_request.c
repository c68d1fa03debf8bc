/* libFuzzer target for the server's request parser (src/server/request.c):
 * the input is a request body, parsed as a chat request and as a completion
 * request, then as an embeddings request. Either it is refused with a message (and a field name that is a
 * string), or the parsed request holds what lmc_stream_start_prompt needs:
 * at least one message with a role and content, or a prompt; options inside
 * the ranges the parser promises. */
#include <stdint.h>
#include <string.h>

#include "server/request.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_generate_options defaults = lmc_generate_options_default();
    for (int kind = 0; kind < 2; kind++) {
        lmc_srv_request r;
        lmc_srv_error err;
        bool ok = lmc_srv_parse_request((lmc_srv_kind)kind, (const char *)data, size, &defaults, &r, &err);
        if (!ok) {
            REQUIRE(err.message[0] != 0);
            REQUIRE(memchr(err.param, 0, sizeof err.param) != NULL);
            REQUIRE(r.msgs == NULL && r.prompt == NULL && r.ids == NULL && r.messages_json == NULL && r.tools_json == NULL);
            continue;
        }
        if (kind == LMC_SRV_CHAT) {
            /* the messages as the template's JSON array; as lmc_messages too unless tool parts are among them */
            REQUIRE(r.messages_json && r.messages_json[0] == '[');
            REQUIRE(!r.msgs == (r.n_msgs == 0));
            for (size_t i = 0; i < r.n_msgs; i++) REQUIRE(r.msgs[i].role && r.msgs[i].content);
            REQUIRE(!r.tools_json || r.tools_json[0] == '[');
        } else {
            REQUIRE(r.prompt || r.n_ids > 0);
        }
        REQUIRE(r.gen.max_tokens >= 1 || (r.gen.max_tokens == 0 && r.echo));
        REQUIRE(!r.echo || (kind == LMC_SRV_COMPLETION && !r.stream));
        REQUIRE(r.gen.sampler.temperature >= 0 && r.gen.sampler.temperature <= 2);
        REQUIRE(r.gen.sampler.top_p > 0 && r.gen.sampler.top_p <= 1);
        REQUIRE(r.gen.n_stop_strings >= 0 && r.gen.n_stop_strings <= LMC_SRV_MAX_STOPS);
        for (int i = 0; i < r.gen.n_stop_strings; i++) REQUIRE(r.gen.stop_strings[i] != NULL);
        REQUIRE(!r.include_usage || r.stream);
        REQUIRE(r.n >= 1 && r.n <= LMC_SRV_MAX_CHOICES); /* streamed or not */
        REQUIRE(r.gen.top_logprobs >= 0 && r.gen.top_logprobs <= LMC_MAX_TOP_LOGPROBS);
        REQUIRE(r.gen.n_logit_bias >= 0 && (!r.gen.n_logit_bias || r.gen.logit_bias));
        for (int i = 0; i < r.gen.n_logit_bias; i++)
            REQUIRE(r.gen.logit_bias[i].id >= 0 && r.gen.logit_bias[i].bias >= -100 && r.gen.logit_bias[i].bias <= 100);
        REQUIRE(!r.gen.top_logprobs || r.gen.logprobs);
        REQUIRE(kind == LMC_SRV_CHAT || (!r.tools_json && !r.template_vars));
        REQUIRE(!r.template_vars || (r.template_vars[0] == '{' && r.gen.template_vars_json == r.template_vars));
        lmc_srv_request_free(&r);
    }
    /* the same body as an embeddings request */
    lmc_srv_embed_request e;
    lmc_srv_error err;
    if (lmc_srv_parse_embed_request((const char *)data, size, &e, &err)) {
        REQUIRE(e.n >= 1 && e.n <= 2048 && e.dimensions >= 0);
        for (size_t i = 0; i < e.n; i++) REQUIRE((e.inputs[i].text != NULL) != (e.inputs[i].n_ids > 0));
        lmc_srv_embed_request_free(&e);
    } else {
        REQUIRE(err.message[0] != 0 && e.inputs == NULL);
    }
    return 0;
}
