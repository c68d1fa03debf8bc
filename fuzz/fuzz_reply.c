/* libFuzzer target for what lmc serve reads out of a model's reply: the
 * <think> block (src/runtime/reasoning.c) and tool calls in both formats
 * (src/runtime/tool_calls.c). A reply is model output, so anything can come.
 *
 * Input: one byte that seeds how the reply is cut into pieces, then the
 * reply (NUL bytes read as 'x': the whole-reply functions take C strings).
 * Checked, for each splitter, that the streamed form agrees with the whole
 * reply's, as a client sees them with "stream": true and false:
 *   - reasoning: the pieces handed out as reasoning join to the whole
 *     split's reasoning, and those handed out as content to its content;
 *   - tool calls: the calls are the same (ids included), and the content
 *     sent early plus the content at the end is the whole split's content
 *     up to white space (the whole split trims once, the stream per part). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"
#include "runtime/reasoning.h"
#include "runtime/tool_calls.h"
#include "fuzz.h"

/* Piece lengths from a seed: 1..16 bytes, a small LCG. */
static size_t next_piece(uint32_t *state) {
    *state = *state * 1103515245u + 12345u;
    return 1 + (*state >> 16) % 16;
}

/* a without JSON white space equals b without it. */
static bool same_but_space(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0, j = 0;
    for (;;) {
        while (i < an && lmc_json_space(a[i])) i++;
        while (j < bn && lmc_json_space(b[j])) j++;
        if (i == an || j == bn) return i == an && j == bn;
        if (a[i++] != b[j++]) return false;
    }
}

static void check_reasoning(const char *text, size_t n, uint32_t seed) {
    char *r, *c;
    REQUIRE(lmc_reasoning_split(text, &r, &c) == LMC_OK);
    lmc_strbuf rs = {0}, cs = {0};
    lmc_reasoning_stream s = {0};
    for (size_t at = 0; at <= n;) {
        size_t k = next_piece(&seed);
        if (k > n - at) k = n - at;
        bool final = at + k == n;
        const char *rp, *cp;
        size_t rn, cn;
        lmc_reasoning_feed(&s, text + at, k, final, &rp, &rn, &cp, &cn);
        lmc_strbuf_append(&rs, rp, rn);
        lmc_strbuf_append(&cs, cp, cn);
        at += k;
        if (final) break;
    }
    REQUIRE(!rs.failed && !cs.failed);
    REQUIRE(rs.len == strlen(r) && (!rs.len || !memcmp(rs.data, r, rs.len)));
    REQUIRE(cs.len == strlen(c) && (!cs.len || !memcmp(cs.data, c, cs.len)));
    lmc_reasoning_stream_free(&s);
    lmc_strbuf_free(&rs);
    lmc_strbuf_free(&cs);
    free(r);
    free(c);
}

static char *print_calls(const cJSON *calls) { return calls ? cJSON_PrintUnformatted(calls) : NULL; }

static void check_tools(lmc_tool_format f, const char *text, size_t n, uint32_t seed) {
    cJSON *calls;
    char *content;
    REQUIRE(lmc_tool_calls_split(f, text, &calls, &content) == LMC_OK);
    lmc_tool_stream s = {.format = f};
    lmc_strbuf sent = {0};
    for (size_t at = 0; at < n;) {
        size_t k = next_piece(&seed);
        if (k > n - at) k = n - at;
        const char *out;
        size_t out_n;
        lmc_tool_stream_feed(&s, text + at, k, &out, &out_n);
        lmc_strbuf_append(&sent, out, out_n);
        at += k;
    }
    cJSON *scalls;
    char *scontent;
    REQUIRE(lmc_tool_stream_finish(&s, &scalls, &scontent) == LMC_OK);
    lmc_strbuf_puts(&sent, scontent);
    REQUIRE(!sent.failed);
    REQUIRE(same_but_space(sent.data ? sent.data : "", sent.len, content, strlen(content)));
    char *a = print_calls(calls), *b = print_calls(scalls);
    REQUIRE((a == NULL) == (b == NULL));
    if (a) REQUIRE(!strcmp(a, b));
    if (f == LMC_TOOLS_NONE) REQUIRE(!calls);
    free(a);
    free(b);
    cJSON_Delete(calls);
    cJSON_Delete(scalls);
    free(content);
    free(scontent);
    lmc_tool_stream_free(&s);
    lmc_strbuf_free(&sent);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t seed = data[0];
    size_t n = size - 1;
    char *text = malloc(n + 1);
    if (!text) return 0;
    for (size_t i = 0; i < n; i++) text[i] = data[1 + i] ? (char)data[1 + i] : 'x';
    text[n] = 0;
    check_reasoning(text, n, seed);
    check_tools(LMC_TOOLS_HERMES, text, n, seed);
    check_tools(LMC_TOOLS_JSON, text, n, seed);
    check_tools(LMC_TOOLS_NONE, text, n, seed);
    free(text);
    return 0;
}
