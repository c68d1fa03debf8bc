/* Prompt-lookup decoding (lmc_generate_options.lookup_tokens): on the golden
 * models of every architecture, bf16 and MLX 4-bit (Gemma's sliding-window
 * caches included), on every CPU kernel path, generation with lookup gives
 * the ids and log-probabilities of generation without it, bit for bit,
 * greedy and sampled, with repetitive prompts so that drafts are taken; a
 * stop string, max_tokens and a later turn from the prompt cache agree too;
 * bad values are refused. */
#include <math.h>

#include "core/cpu.h"
#include "lmc/lmc.h"
#include "model_fixture.h"
#include "runtime/model_internal.h"
#include "test_util.h"

static const char *variants[] = {"llama", "qwen2", "qwen3", "gemma3", "gemma3_softcap",
                                 "llama_mlx4", "qwen2_mlx4", "qwen3_mlx4", "gemma3_mlx4", "gemma3_softcap_mlx4"};

/* Token ids (inside the golden models' 2048-token vocabularies) that
 * repeat, so that the last two often occurred before. */
static const int32_t PROMPT_A[] = {11, 22, 33, 44, 55, 11, 22, 33, 44, 55, 11, 22, 33, 44, 55, 11, 22};
static const int32_t PROMPT_B[] = {7, 300, 301, 9, 7, 300, 301, 9, 7, 300, 301, 9, 7, 300};
static const struct {
    const int32_t *ids;
    size_t n;
} PROMPTS[] = {{PROMPT_A, sizeof PROMPT_A / sizeof *PROMPT_A}, {PROMPT_B, sizeof PROMPT_B / sizeof *PROMPT_B}};

static int64_t g_taken, g_rejected; /* over all variants: both paths of lookup were seen */

static bool same(const lmc_generation *a, const lmc_generation *b) {
    if (a->n_ids != b->n_ids || a->stop_reason != b->stop_reason) return false;
    for (size_t i = 0; i < a->n_ids; i++)
        if (a->ids[i] != b->ids[i] || memcmp(&a->logprobs[i], &b->logprobs[i], sizeof(float))) return false;
    return a->text_len == b->text_len && !memcmp(a->text, b->text, a->text_len);
}

static void run_pair(const char *name, lmc_model *m, const int32_t *ids, size_t n, lmc_generate_options o,
                     int64_t *drafted, int64_t *accepted) {
    o.logprobs = true;
    o.prompt_cache = false;
    lmc_generation plain, look;
    CHECKF(lmc_generate_ids(m, ids, n, &o, &plain) == LMC_OK, "%s: %s", name, lmc_last_error());
    o.lookup_tokens = LMC_LOOKUP_MAX;
    CHECKF(lmc_generate_ids(m, ids, n, &o, &look) == LMC_OK, "%s: %s", name, lmc_last_error());
    CHECKF(same(&plain, &look), "%s (path %s, temperature %.1f): lookup decoding changed the reply:\n  %s\n  %s", name,
           lmc_cpu_path_name(lmc_cpu_path_active()), (double)o.sampler.temperature, plain.text, look.text);
    CHECK(plain.metrics.draft_tokens == 0 && look.metrics.accepted_draft_tokens <= look.metrics.draft_tokens);
    *drafted += look.metrics.draft_tokens;
    *accepted += look.metrics.accepted_draft_tokens;
    lmc_generation_clear(&plain);
    lmc_generation_clear(&look);
}

static void check_variant(const char *name) {
    char *dir = model_fixture_dir(name);
    CHECKF(dir != NULL, "%s: fixture", name);
    if (!dir) return;
    lmc_model *m = NULL;
    CHECKF(lmc_model_load(dir, NULL, &m) == LMC_OK, "%s: load: %s", name, lmc_last_error());
    int64_t drafted = 0, accepted = 0;
    lmc_cpu_path max = lmc_cpu_path_max();
#ifdef LMC_SANITIZED
    int first = (int)max;
#else
    int first = LMC_PATH_SCALAR;
#endif
    for (int p = first; m && p <= (int)max; p++) {
        lmc_cpu_path_set((lmc_cpu_path)p);
        for (size_t i = 0; i < sizeof PROMPTS / sizeof *PROMPTS; i++) {
            lmc_generate_options o = lmc_generate_options_default();
            o.max_tokens = 64;
            o.ignore_eos = true;
            o.sampler.temperature = 0;
            run_pair(name, m, PROMPTS[i].ids, PROMPTS[i].n, o, &drafted, &accepted);
            o.sampler.temperature = 0.9f;
            o.sampler.seed = 7;
            o.sampler.repeat_penalty = 1.1f;
            run_pair(name, m, PROMPTS[i].ids, PROMPTS[i].n, o, &drafted, &accepted);
        }
    }
    lmc_cpu_path_set(max);
    printf("%s: %lld drafts, %lld taken\n", name, (long long)drafted, (long long)accepted);
    g_taken += accepted;
    g_rejected += drafted - accepted;
    if (m) {
        /* max_tokens and a stop string end it where plain generation does */
        lmc_generate_options o = lmc_generate_options_default();
        o.sampler.temperature = 0;
        o.ignore_eos = true;
        for (int mt = 1; mt <= 6; mt++) {
            o.max_tokens = mt;
            run_pair(name, m, PROMPT_A, sizeof PROMPT_A / sizeof *PROMPT_A, o, &drafted, &accepted);
        }
        o.max_tokens = 40;
        lmc_generation ref;
        CHECK(lmc_generate_ids(m, PROMPT_B, sizeof PROMPT_B / sizeof *PROMPT_B, &o, &ref) == LMC_OK);
        char stop[64] = "";
        if (ref.text_len > 8) { /* a piece of the reply's middle, cut at a character boundary */
            size_t at = ref.text_len / 2, len = 0;
            while (at > 0 && ((unsigned char)ref.text[at] & 0xC0) == 0x80) at--;
            while (len < 6 && at + len < ref.text_len) len++;
            while (at + len < ref.text_len && ((unsigned char)ref.text[at + len] & 0xC0) == 0x80) len++;
            memcpy(stop, ref.text + at, len);
        }
        lmc_generation_clear(&ref);
        const char *stops[] = {stop};
        o.stop_strings = stops;
        o.n_stop_strings = stop[0] ? 1 : 0;
        run_pair(name, m, PROMPT_B, sizeof PROMPT_B / sizeof *PROMPT_B, o, &drafted, &accepted);
        /* with JSON mode and logit_bias, which act where each step samples */
        o.n_stop_strings = 0;
        o.json_object = true;
        lmc_logit_bias bias[1] = {{PROMPT_A[2], 2.0f}};
        o.logit_bias = bias;
        o.n_logit_bias = 1;
        run_pair(name, m, PROMPT_A, sizeof PROMPT_A / sizeof *PROMPT_A, o, &drafted, &accepted);
        o.json_object = false;
        o.n_logit_bias = 0;
        /* a generation with lookup leaves a prompt cache that a later turn
         * uses as it would one left without lookup */
        lmc_generate_options c = lmc_generate_options_default();
        c.sampler.temperature = 0;
        c.ignore_eos = true;
        c.max_tokens = 24;
        c.logprobs = true;
        lmc_generation first_turn, second[2];
        for (int k = 0; k < 2; k++) {
            lmc_model_clear_prompt_cache(m);
            c.lookup_tokens = k ? LMC_LOOKUP_MAX : 0;
            CHECK(lmc_generate_ids(m, PROMPT_B, sizeof PROMPT_B / sizeof *PROMPT_B, &c, &first_turn) == LMC_OK);
            int32_t turn2[128];
            size_t n2 = 0;
            for (size_t i = 0; i < sizeof PROMPT_B / sizeof *PROMPT_B; i++) turn2[n2++] = PROMPT_B[i];
            for (size_t i = 0; i < first_turn.n_ids && n2 < 120; i++) turn2[n2++] = first_turn.ids[i];
            turn2[n2++] = 7;
            turn2[n2++] = 300;
            c.lookup_tokens = 0;
            CHECK(lmc_generate_ids(m, turn2, n2, &c, &second[k]) == LMC_OK);
            CHECK(second[k].metrics.cached_prompt_tokens > 0);
            lmc_generation_clear(&first_turn);
        }
        CHECKF(same(&second[0], &second[1]), "%s: the turn after a lookup generation differs", name);
        lmc_generation_clear(&second[0]);
        lmc_generation_clear(&second[1]);
    }
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

static void test_options(void) {
    lmc_generate_options o = lmc_generate_options_default();
    CHECK(o.lookup_tokens == 0);
    o.lookup_tokens = LMC_LOOKUP_MAX + 1;
    CHECK(lmc_generate_check_options(&o) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "lookup_tokens"));
    o.lookup_tokens = -1;
    CHECK(lmc_generate_check_options(&o) == LMC_ERR_INVALID_ARGUMENT);
    /* batch generation refuses it rather than ignore it */
    char *dir = model_fixture_dir("qwen3");
    lmc_model *m = NULL;
    if (dir && lmc_model_load(dir, NULL, &m) == LMC_OK) {
        int32_t ids[] = {1, 2, 3};
        lmc_batch_prompt p = {.ids = ids, .n_ids = 3};
        lmc_batch_options bo = lmc_batch_options_default();
        bo.gen.lookup_tokens = 2;
        lmc_batch_result *r = NULL;
        CHECK(lmc_batch_generate(m, &p, 1, &bo, &r, NULL) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "lookup"));
        lmc_batch_results_free(r, 1);
    }
    lmc_model_free(m);
    if (dir) model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_options);
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        fprintf(stderr, "%s\n", variants[i]);
        check_variant(variants[i]);
    }
    CHECKF(g_taken >= 50 && g_rejected >= 20, "drafts taken %lld, rejected %lld: too few for the test to mean much",
           (long long)g_taken, (long long)g_rejected);
    return TEST_REPORT();
}
