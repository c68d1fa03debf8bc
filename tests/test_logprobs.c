/* Log-probabilities (lmc_generate_options.logprobs / top_logprobs, classify
 * labels) against transformers: the golden models' logits at every prompt
 * position give the reference log-softmax, and a one-token generation from
 * each prefix of a golden prompt must report it. Then the properties that do
 * not need a reference: sampled tokens get the model's raw distribution
 * (whatever the temperature, filters and penalty), batch generation and
 * classify labels agree with lmc_generate, bad options are refused.
 *
 * Tolerance: the golden logits agree within 2e-3 absolute
 * (test_models_golden), and a log-softmax moves by at most twice that. */
#include <math.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

enum { NTOP = 5 };
#define LP_TOL 4e-3

static lmc_generate_options greedy(int max_tokens, int top) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 0;
    o.ignore_eos = true;
    o.max_tokens = max_tokens;
    o.logprobs = true;
    o.top_logprobs = top;
    return o;
}

/* The reference log-softmax of one row of transformers' logits, in double. */
static void log_softmax(const float *row, int64_t V, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int64_t i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    for (int64_t i = 0; i < V; i++) out[i] = (double)row[i] - mx - log(sum);
}

/* The k-th largest of ref (k < NTOP), by repeated selection. */
static double kth_largest(const double *ref, int64_t V, int k) {
    double prev = INFINITY, cur = -INFINITY;
    int64_t prev_id = -1;
    for (int j = 0; j <= k; j++) {
        cur = -INFINITY;
        int64_t id = -1;
        for (int64_t i = 0; i < V; i++)
            if ((ref[i] < prev || (ref[i] == prev && i > prev_id)) && (id < 0 || ref[i] > cur)) cur = ref[i], id = i;
        prev = cur;
        prev_id = id;
    }
    return cur;
}

static void check_model(const char *name) {
    char *dir = model_fixture_dir(name), path[4096];
    lmc_model *m = NULL;
    lmc_safetensors *st = NULL;
    snprintf(path, sizeof path, "%s/models/%s/golden.safetensors", LMC_TEST_DATA, name);
    if (!dir || lmc_model_load(dir, NULL, &m) != LMC_OK || lmc_safetensors_open(path, &st) != LMC_OK) {
        CHECKF(0, "%s: %s", name, lmc_last_error());
        lmc_model_free(m);
        model_fixture_cleanup(dir);
        return;
    }
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        char n[64];
        int64_t T = 0, rows = 0, V = 0;
        snprintf(n, sizeof n, "prompt_ids_%d", k);
        int32_t *prompt = fixture_read_i32(st, n, &T);
        snprintf(n, sizeof n, "logits_%d", k);
        float *logits = fixture_read_f32(st, n, &rows, &V);
        double *ref = V > 0 ? malloc((size_t)V * sizeof *ref) : NULL;
        CHECK(prompt && logits && ref && rows == T);
        /* one token after several prefixes of the prompt (the prompt cache makes each cheap) */
        int64_t lens[] = {1, 2, T / 2, T - 1, T};
        for (size_t c = 0; prompt && logits && ref && c < sizeof lens / sizeof *lens; c++) {
            int64_t t = lens[c];
            lmc_generate_options o = greedy(1, NTOP);
            lmc_generation g;
            if (lmc_generate_ids(m, prompt, (size_t)t, &o, &g) != LMC_OK) {
                CHECKF(0, "%s: %s", name, lmc_last_error());
                continue;
            }
            log_softmax(logits + (t - 1) * V, V, ref);
            CHECK(g.n_ids == 1 && g.logprobs && g.top_logprobs && g.n_top_logprobs == NTOP);
            if (g.n_ids != 1 || !g.logprobs || !g.top_logprobs) {
                lmc_generation_clear(&g);
                continue;
            }
            /* the chosen (greedy) token heads the list with the same number */
            CHECK(g.ids[0] == g.top_logprobs[0].id && g.logprobs[0] == g.top_logprobs[0].logprob);
            for (int j = 0; j < NTOP; j++) {
                const lmc_token_logprob *e = &g.top_logprobs[j];
                CHECKF(e->id >= 0 && e->id < V, "%s: top %d id %d", name, j, e->id);
                if (e->id < 0 || e->id >= V) continue;
                double d = fabs(e->logprob - ref[e->id]);
                worst = d > worst ? d : worst;
                CHECKF(d <= LP_TOL, "%s prompt %d len %lld: top %d (id %d) logprob %.6f, transformers %.6f", name, k,
                       (long long)t, j, e->id, e->logprob, ref[e->id]);
                /* no token the reference ranks higher is missing */
                CHECKF(e->logprob >= kth_largest(ref, V, j) - LP_TOL, "%s: top %d is %.6f, transformers' %d-th %.6f", name,
                       j, e->logprob, j + 1, kth_largest(ref, V, j));
                if (j) CHECK(e->logprob <= g.top_logprobs[j - 1].logprob);
            }
            lmc_generation_clear(&g);
        }
        free(prompt);
        free(logits);
        free(ref);
    }
    printf("%s: log-probabilities within %.2g of transformers'\n", name, worst);
    lmc_safetensors_close(st);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

static void test_against_transformers(void) {
    const char *names[] = {"qwen3", "llama_mlx4", "gemma3_softcap", "qwen2_mlx4"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) check_model(names[i]);
}

static lmc_model *g_model;
static int32_t g_prompt[] = {785, 1251, 304, 279, 1879, 686, 1477, 264, 501, 1616};
enum { NPROMPT = sizeof g_prompt / sizeof *g_prompt, NGEN = 6 };

/* A sampled run's log-probabilities are the model's own: each equals the
 * label log-probability classify reports for that token after the same
 * history, whatever temperature, top-k and repeat penalty did to the draw. */
static void test_sampled_use_model_distribution(void) {
    lmc_generate_options o = lmc_generate_options_default();
    o.sampler.temperature = 1.6f;
    o.sampler.top_k = 50;
    o.sampler.repeat_penalty = 1.5f;
    o.sampler.seed = 11;
    o.ignore_eos = true;
    o.max_tokens = NGEN;
    o.logprobs = true;
    lmc_generation g;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_OK);
    CHECK(g.n_ids == NGEN && g.logprobs && !g.top_logprobs && g.n_top_logprobs == 0);
    int32_t hist[NPROMPT + NGEN];
    memcpy(hist, g_prompt, sizeof g_prompt);
    memcpy(hist + NPROMPT, g.ids, g.n_ids * sizeof *g.ids);
    lmc_batch_prompt ps[NGEN];
    for (int i = 0; i < NGEN; i++) ps[i] = (lmc_batch_prompt){.ids = hist, .n_ids = (size_t)(NPROMPT + i)};
    for (int i = 0; i < NGEN && g.n_ids == NGEN; i++) {
        lmc_classify_options co = lmc_classify_options_default();
        co.labels = &g.ids[i];
        co.n_labels = 1;
        lmc_classify_result *r = NULL;
        CHECK(lmc_classify(g_model, &ps[i], 1, &co, &r, NULL) == LMC_OK);
        CHECK(r && r[0].status == LMC_OK && r[0].label_logprobs);
        if (r && r[0].label_logprobs) CHECK_CLOSE(g.logprobs[i], r[0].label_logprobs[0], 1e-3, 0);
        CHECK(g.logprobs[i] <= 0);
        lmc_classify_results_free(r, 1);
    }
    /* temperature does not change them: the same first token at another temperature */
    lmc_generation h;
    o.sampler.temperature = 0.3f;
    o.max_tokens = 1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &h) == LMC_OK);
    if (h.n_ids == 1 && g.n_ids && h.ids[0] == g.ids[0]) CHECK_CLOSE(h.logprobs[0], g.logprobs[0], 1e-6, 0);
    lmc_generation_clear(&h);
    lmc_generation_clear(&g);
}

/* Batch generation reports what lmc_generate reports, sequence by sequence. */
static void test_batch_matches_generate(void) {
    int32_t p2[] = {1616, 501, 264};
    lmc_batch_prompt ps[2] = {{.ids = g_prompt, .n_ids = NPROMPT}, {.ids = p2, .n_ids = 3}};
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen = greedy(NGEN, 3);
    lmc_batch_result *br = NULL;
    CHECK(lmc_batch_generate(g_model, ps, 2, &bo, &br, NULL) == LMC_OK);
    for (int b = 0; br && b < 2; b++) {
        lmc_generate_options o = greedy(NGEN, 3);
        lmc_generation g;
        CHECK(lmc_generate_ids(g_model, ps[b].ids, ps[b].n_ids, &o, &g) == LMC_OK);
        CHECK(br[b].n_ids == g.n_ids && br[b].n_top_logprobs == 3 && br[b].logprobs && br[b].top_logprobs);
        for (size_t i = 0; br[b].logprobs && i < g.n_ids && i < br[b].n_ids; i++) {
            CHECK(br[b].ids[i] == g.ids[i]);
            CHECK_CLOSE(br[b].logprobs[i], g.logprobs[i], 1e-3, 0);
            for (int j = 0; j < 3; j++) {
                const lmc_token_logprob *a = &br[b].top_logprobs[i * 3 + j], *e = &g.top_logprobs[i * 3 + j];
                CHECK_CLOSE(a->logprob, e->logprob, 1e-3, 0);
            }
        }
        lmc_generation_clear(&g);
    }
    lmc_batch_results_free(br, 2);
}

/* logit_bias: a ban and a boost steer greedy decoding, in a stream and in a
 * batch, and the log-probabilities stay the model's own (taken before). */
static void test_logit_bias(void) {
    lmc_generate_options o = greedy(3, 0);
    lmc_generation g0, g1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g0) == LMC_OK && g0.n_ids == 3);
    lmc_logit_bias ban = {g0.ids[0], -INFINITY}, boost = {7, 100.0f};
    o.logit_bias = &ban;
    o.n_logit_bias = 1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g1) == LMC_OK && g1.n_ids == 3);
    CHECK(g1.ids[0] != g0.ids[0]);
    /* the second choice of the unbiased model */
    CHECK(g1.logprobs && g0.logprobs && g1.logprobs[0] <= g0.logprobs[0]);
    lmc_generation_clear(&g1);
    o.logit_bias = &boost;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g1) == LMC_OK);
    CHECK(g1.n_ids == 3 && g1.ids[0] == 7 && g1.ids[1] == 7 && g1.ids[2] == 7);
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen = o;
    lmc_batch_prompt p = {.ids = g_prompt, .n_ids = NPROMPT};
    lmc_batch_result *br = NULL;
    CHECK(lmc_batch_generate(g_model, &p, 1, &bo, &br, NULL) == LMC_OK && br && br[0].n_ids == 3 && br[0].ids[0] == 7);
    lmc_batch_results_free(br, 1);
    lmc_generation_clear(&g1);
    lmc_generation_clear(&g0);
    lmc_logit_bias bad = {1 << 30, 1.0f};
    o.logit_bias = &bad;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g1) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "logit_bias[0]") != NULL);
    bad = (lmc_logit_bias){3, NAN};
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g1) == LMC_ERR_INVALID_ARGUMENT);
    bo.gen = o;
    CHECK(lmc_batch_generate(g_model, &p, 1, &bo, &br, NULL) == LMC_ERR_INVALID_ARGUMENT && !br);
}

static void test_options(void) {
    lmc_generate_options o = greedy(3, -1);
    lmc_generation g;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "top_logprobs") != NULL);
    o.top_logprobs = LMC_MAX_TOP_LOGPROBS + 1;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_ERR_INVALID_ARGUMENT);
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen = o;
    lmc_batch_result *br = NULL;
    lmc_batch_prompt p = {.ids = g_prompt, .n_ids = NPROMPT};
    CHECK(lmc_batch_generate(g_model, &p, 1, &bo, &br, NULL) == LMC_ERR_INVALID_ARGUMENT && !br);
    /* off: nothing recorded; top_logprobs alone implies logprobs */
    o = greedy(3, 0);
    o.logprobs = false;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_OK);
    CHECK(g.n_ids == 3 && !g.logprobs && !g.top_logprobs && g.n_top_logprobs == 0);
    lmc_generation_clear(&g);
    o.top_logprobs = LMC_MAX_TOP_LOGPROBS;
    CHECK(lmc_generate_ids(g_model, g_prompt, NPROMPT, &o, &g) == LMC_OK);
    CHECK(g.n_ids == 3 && g.logprobs && g.top_logprobs && g.n_top_logprobs == LMC_MAX_TOP_LOGPROBS);
    for (size_t i = 0; g.top_logprobs && i < g.n_ids; i++) {
        double mass = 0;
        for (int j = 0; j < LMC_MAX_TOP_LOGPROBS; j++) mass += exp(g.top_logprobs[i * LMC_MAX_TOP_LOGPROBS + j].logprob);
        CHECK(mass > 0 && mass <= 1 + 1e-5);
    }
    lmc_generation_clear(&g);
    /* classify labels outside the vocabulary, or a count without an array */
    lmc_classify_options co = lmc_classify_options_default();
    int32_t bad = 1 << 30;
    co.labels = &bad;
    co.n_labels = 1;
    lmc_classify_result *r = NULL;
    CHECK(lmc_classify(g_model, &p, 1, &co, &r, NULL) == LMC_ERR_INVALID_ARGUMENT && !r);
    CHECK(strstr(lmc_last_error(), "label 0") != NULL);
    co.labels = NULL;
    CHECK(lmc_classify(g_model, &p, 1, &co, &r, NULL) == LMC_ERR_INVALID_ARGUMENT && !r);
    co.n_labels = 0;
    CHECK(lmc_classify(g_model, &p, 1, &co, &r, NULL) == LMC_OK && r && !r[0].label_logprobs);
    lmc_classify_results_free(r, 1);
}

int main(void) {
    RUN(test_against_transformers);
    char *dir = model_fixture_dir("qwen3");
    if (!dir || lmc_model_load(dir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "cannot load the qwen3 golden model: %s\n", lmc_last_error());
        return 1;
    }
    RUN(test_sampled_use_model_distribution);
    RUN(test_batch_matches_generate);
    RUN(test_options);
    RUN(test_logit_bias);
    lmc_model_free(g_model);
    model_fixture_cleanup(dir);
    return TEST_REPORT();
}
