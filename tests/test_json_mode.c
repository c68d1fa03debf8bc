/* JSON mode: the recogniser of JSON-object prefixes against cJSON and a
 * table of invalid texts, the token mask on a small vocabulary, and
 * generation with json_object on a tiny Qwen3 model (real tokenizer): every
 * reply is a prefix of a JSON object, a reply that ended is one (cJSON
 * agrees), and batch generation makes the same replies. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "runtime/json_constraint.h"
#include "model_fixture.h"
#include "test_util.h"

static bool accepts(const char *text, size_t n, bool *done) {
    lmc_json_state s;
    lmc_json_init(&s, NULL);
    for (size_t i = 0; i < n; i++)
        if (!lmc_json_step(&s, (unsigned char)text[i])) return false;
    *done = lmc_json_done(&s);
    return true;
}

static void test_valid(void) {
    const char *docs[] = {
        "{}",
        " {\"a\": 1}",
        "{\"a\":[1,-2,3.5,-0.25e+10,0,1E-3,true,false,null,\"x\\\"y\\\\\\u00e9\\n\"],\"b\":{\"c\":{}}}",
        "{\n  \"name\": \"caf\xc3\xa9\",\n  \"n\": []\n}",
        "{\"\":\"\",\"k\\u0041\":[[],[{}]]}",
        "{\"\\ud83d\\ude00\":\"\\uD83D\\uDE00 ok\"}",
        "{\"\xf0\x9f\x98\x80\":\"\xe6\x97\xa5\xed\x9f\xbf\xf4\x8f\xbf\xbf\xc2\x80\"}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        size_t n = strlen(docs[i]);
        for (size_t k = 0; k < n; k++) {
            bool done = true;
            CHECKF(accepts(docs[i], k, &done) && !done, "doc %zu: prefix of %zu bytes", i, k);
        }
        bool done = false;
        CHECKF(accepts(docs[i], n, &done) && done, "doc %zu whole", i);
        cJSON *j = cJSON_ParseWithOpts(docs[i], NULL, true);
        CHECKF(cJSON_IsObject(j), "cJSON on doc %zu", i);
        cJSON_Delete(j);
    }
}

static void test_invalid(void) {
    const char *bad[] = {
        "[]", "\"x\"", "1", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1,}", "{,}", "{'a':1}",
        "{\"a\" 1}", "{\"a\":tru}", "{\"a\":nul1}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}",
        "{\"a\":[1 2]}", "{\"a\":[1,]}", "{\"a\":1}}", "{\"a\":1} x", "{\"a\":1}{}", "{a:1}", "{\"a\":-}", "{\"a\":1e}",
        "{\"a\":[}", "{\"a\":{]}",
        /* UTF-16 surrogates alone, or a high half followed by something else */
        "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}", "{\"\\ud800x\":1}",
        /* strings are valid UTF-8: no stray or missing continuation bytes, overlong forms, surrogates, > U+10FFFF */
        "{\"a\":\"\x80\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xc3x\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xe0\x80\x80\"}",
        "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf0\x8f\xbf\xbf\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"\xff\":1}", "{\"\xe6\x97\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool done = false;
        bool ok = accepts(bad[i], strlen(bad[i]), &done);
        CHECKF(!ok || !done, "'%s' accepted as a whole object", bad[i]);
    }
    /* depth and white space are bounded */
    char deep[LMC_JSON_MAX_DEPTH + 8] = "{\"a\":";
    size_t n = strlen(deep);
    while (n < sizeof deep - 1) deep[n++] = '[';
    deep[n] = 0;
    bool done;
    CHECK(!accepts(deep, n, &done));
    char spaces[LMC_JSON_MAX_SPACE + 2];
    memset(spaces, ' ', sizeof spaces - 1);
    spaces[sizeof spaces - 1] = 0;
    CHECK(accepts(spaces, LMC_JSON_MAX_SPACE, &done) && !accepts(spaces, LMC_JSON_MAX_SPACE + 1, &done));
}

/* Random one-byte changes of valid documents: whatever the recogniser takes
 * as a whole object, cJSON parses as one. */
static void test_mutations(void) {
    const char *seed = "{\"a\": [1, -2.5e3, true, null, \"s\\n\"], \"b\": {\"c\": false}}";
    const char alphabet[] = "{}[]\":,-+.0123456789eEtrufalsn \\x";
    uint64_t r = 12345;
    int whole = 0;
    for (int it = 0; it < 20000; it++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", seed);
        size_t n = strlen(buf);
        for (int k = 0; k < 2; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            buf[r % n] = alphabet[(r >> 20) % (sizeof alphabet - 1)];
        }
        bool done = false;
        if (accepts(buf, n, &done) && done) {
            whole++;
            cJSON *j = cJSON_ParseWithOpts(buf, NULL, true);
            CHECKF(cJSON_IsObject(j), "accepted, but cJSON refuses: %s", buf);
            cJSON_Delete(j);
        }
    }
    CHECK(whole > 100); /* the test saw many mutants that stay valid */
}

/* A six-token vocabulary: what the mask lets through in a few states. */
static void test_mask(void) {
    const char *texts[] = {"{", "}", "\"a\"", ":", "1", " x", "", "<eos>"};
    enum { V = 8 };
    lmc_token_bytes tb = {.vocab = V};
    uint32_t off[V + 1] = {0};
    bool special[V] = {false, false, false, false, false, false, false, true};
    char bytes[64];
    size_t len = 0;
    for (int t = 0; t < V; t++) {
        off[t] = (uint32_t)len;
        if (!special[t]) memcpy(bytes + len, texts[t], strlen(texts[t])), len += strlen(texts[t]);
    }
    off[V] = (uint32_t)len;
    tb.off = off, tb.bytes = bytes, tb.special = special;
    int32_t eos = 7;
    lmc_json_state s;
    lmc_json_init(&s, NULL);
    float lg[V];
    for (int t = 0; t < V; t++) lg[t] = 1;
    lmc_json_mask(&s, &tb, &eos, 1, lg);
    for (int t = 0; t < V; t++) CHECKF((lg[t] == 1) == (t == 0), "start: token %d", t); /* only "{" */
    const int32_t walk[] = {0, 2, 3, 4};                                                  /* {"a":1 */
    for (size_t i = 0; i < sizeof walk / sizeof *walk; i++) CHECK(lmc_json_advance(&s, &tb, walk[i]));
    for (int t = 0; t < V; t++) lg[t] = 1;
    lmc_json_mask(&s, &tb, &eos, 1, lg);
    for (int t = 0; t < V; t++) CHECKF((lg[t] == 1) == (t == 1 || t == 4), "after 1: token %d", t); /* } or more digits */
    CHECK(lmc_json_advance(&s, &tb, 1) && lmc_json_done(&s));
    for (int t = 0; t < V; t++) lg[t] = 2;
    lmc_json_mask(&s, &tb, &eos, 1, lg);
    for (int t = 0; t < V; t++) CHECKF((lg[t] == 2) == (t == 7), "done: token %d", t); /* EOS only */
    CHECK(!lmc_json_advance(&s, &tb, 6) && !lmc_json_advance(&s, &tb, 7));
}

static void test_generation(void) {
    lmc_model *m;
    char *dir;
    TINY_MODEL_OR_RETURN(dir, m, "tiny-qwen3", "qwen3");
    int32_t prompt[] = {785, 1251, 304};
    int ended = 0;
    enum { N = 8 };
    lmc_generation g[N];
    for (int k = 0; k < N; k++) {
        lmc_generate_options o = lmc_generate_options_default();
        o.json_object = true;
        o.sampler.temperature = 1.5f;
        o.sampler.seed = (uint64_t)k;
        o.max_tokens = 120;
        CHECK(lmc_generate_ids(m, prompt, 3, &o, &g[k]) == LMC_OK);
        bool done = false;
        CHECKF(accepts(g[k].text, g[k].text_len, &done), "seed %d: not a JSON-object prefix: %s", k, g[k].text);
        CHECK(done == (g[k].stop_reason == LMC_STOP_EOS));
        CHECK(g[k].stop_reason == LMC_STOP_EOS || g[k].stop_reason == LMC_STOP_MAX_TOKENS);
        if (g[k].stop_reason == LMC_STOP_EOS) {
            ended++;
            cJSON *j = cJSON_ParseWithOpts(g[k].text, NULL, true);
            CHECKF(cJSON_IsObject(j), "seed %d ended but is not an object: %s", k, g[k].text);
            cJSON_Delete(j);
        }
    }
    printf("JSON mode: %d of %d sampled replies closed their object within 120 tokens\n", ended, N);
    /* batch generation: the same replies (prompt i draws with seed + i) */
    lmc_batch_prompt ps[N];
    for (int k = 0; k < N; k++) ps[k] = (lmc_batch_prompt){.ids = prompt, .n_ids = 3};
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen.json_object = true;
    bo.gen.sampler.temperature = 1.5f;
    bo.gen.sampler.seed = 0;
    bo.gen.max_tokens = 120;
    bo.max_batch = 4;
    lmc_batch_result *br = NULL;
    CHECK(lmc_batch_generate(m, ps, N, &bo, &br, NULL) == LMC_OK);
    for (int k = 0; br && k < N; k++) {
        CHECKF(br[k].n_ids == g[k].n_ids && br[k].stop_reason == g[k].stop_reason, "batch row %d: %zu ids (%s), stream %zu (%s)",
               k, br[k].n_ids, lmc_stop_reason_name(br[k].stop_reason), g[k].n_ids, lmc_stop_reason_name(g[k].stop_reason));
        bool done = false;
        CHECK(br[k].text && accepts(br[k].text, br[k].text_len, &done) && done == (br[k].stop_reason == LMC_STOP_EOS));
    }
    lmc_batch_results_free(br, N);
    for (int k = 0; k < N; k++) lmc_generation_clear(&g[k]);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_valid);
    RUN(test_invalid);
    RUN(test_mutations);
    RUN(test_mask);
    RUN(test_generation);
    return TEST_REPORT();
}
