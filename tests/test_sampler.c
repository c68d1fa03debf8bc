/* Sampler chain: each stage on hand-made logits, the whole chain against a
 * naive full-sort reference on a 262144-token vocabulary, empirical
 * frequencies against the expected distribution, seeding, and rejection of
 * bad configurations and bad logits. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "core/error.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"
#include "runtime/sampler_exp.h"
#include "test_util.h"

/* Test-local random numbers, independent of the code under test. */
static uint64_t t_state = 12345;
static double t_uniform(void) {
    t_state = t_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(t_state >> 11) * 0x1.0p-53;
}
static double t_normal(void) {
    double u = t_uniform(), v = t_uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lmc_sampler *make(lmc_sampler_config cfg) {
    lmc_sampler *s = NULL;
    lmc_status st = lmc_sampler_create(&cfg, &s);
    CHECKF(st == LMC_OK, "create: %s", lmc_last_error());
    return s;
}

static lmc_sampler_config cfg_t(float temperature) {
    lmc_sampler_config c = lmc_sampler_config_default();
    c.temperature = temperature;
    return c;
}

/* The ids left by stages 1-5, in the order the filter returns them. */
static size_t kept_ids(lmc_sampler_config cfg, const float *logits_in, int64_t vocab, const int32_t *hist, size_t nh,
                       int32_t *ids) {
    float *logits = malloc((size_t)vocab * sizeof *logits);
    memcpy(logits, logits_in, (size_t)vocab * sizeof *logits);
    lmc_sampler *s = make(cfg);
    const lmc_sampler_candidate *c = NULL;
    size_t n = 0;
    double total = 0;
    lmc_status st = lmc_sampler_filter(s, logits, vocab, hist, nh, &c, &n, &total);
    CHECKF(st == LMC_OK, "filter: %s", lmc_last_error());
    for (size_t i = 0; i < n; i++) ids[i] = c[i].id;
    lmc_sampler_free(s);
    free(logits);
    return st == LMC_OK ? n : 0;
}

static void logits_from_probs(const double *p, int n, float *logits) {
    for (int i = 0; i < n; i++) logits[i] = (float)log(p[i]);
}

/* --- configuration ---------------------------------------------------------- */

static void check_rejected(lmc_sampler_config c, const char *field, const char *value) {
    lmc_sampler *s = (lmc_sampler *)0x1;
    lmc_status st = lmc_sampler_create(&c, &s);
    CHECKF(st == LMC_ERR_INVALID_ARGUMENT, "%s=%s accepted", field, value);
    CHECK(s == NULL);
    CHECKF(strstr(lmc_last_error(), field) && strstr(lmc_last_error(), value), "message \"%s\" lacks %s / %s",
           lmc_last_error(), field, value);
}

static void test_config(void) {
    lmc_sampler_config d = lmc_sampler_config_default();
    CHECK(d.temperature == 0.8f);
    CHECK(d.top_k == 0 && d.top_p == 1.0f && d.min_p == 0.0f && d.repeat_penalty == 1.0f && d.repeat_last_n == 64);

    lmc_sampler_config c;
    c = d; c.temperature = -1; check_rejected(c, "temperature", "-1");
    c = d; c.temperature = NAN; check_rejected(c, "temperature", "nan");
    c = d; c.temperature = INFINITY; check_rejected(c, "temperature", "inf");
    c = d; c.top_k = -3; check_rejected(c, "top_k", "-3");
    c = d; c.top_p = 0; check_rejected(c, "top_p", "0");
    c = d; c.top_p = 1.5f; check_rejected(c, "top_p", "1.5");
    c = d; c.top_p = NAN; check_rejected(c, "top_p", "nan");
    c = d; c.min_p = -0.25f; check_rejected(c, "min_p", "-0.25");
    c = d; c.min_p = 2; check_rejected(c, "min_p", "2");
    c = d; c.repeat_penalty = 0; check_rejected(c, "repeat_penalty", "0");
    c = d; c.repeat_penalty = -1.5f; check_rejected(c, "repeat_penalty", "-1.5");
    c = d; c.repeat_penalty = INFINITY; check_rejected(c, "repeat_penalty", "inf");
    c = d; c.repeat_last_n = -2; check_rejected(c, "repeat_last_n", "-2");

    /* The edges of each range are valid. */
    c = d; c.temperature = 0; c.top_p = 1; c.min_p = 1; c.repeat_last_n = -1; c.repeat_penalty = 0.5f;
    lmc_sampler *s = NULL;
    CHECK(lmc_sampler_create(&c, &s) == LMC_OK && s);
    lmc_sampler_free(s);
    CHECK(lmc_sampler_create(NULL, &s) == LMC_OK && s); /* NULL: the defaults */
    lmc_sampler_free(s);
    lmc_sampler_free(NULL);

    CHECK_STR(lmc_stop_reason_name(LMC_STOP_EOS), "eos");
    CHECK_STR(lmc_stop_reason_name(LMC_STOP_MAX_TOKENS), "max_tokens");
    CHECK_STR(lmc_stop_reason_name(LMC_STOP_STRING), "stop_string");
    CHECK_STR(lmc_stop_reason_name((lmc_stop_reason)99), "unknown");
}

/* --- the generator ------------------------------------------------------------ */

static void test_rng(void) {
    /* splitmix64 from 0 starts 0xe220a8397b1dcdaf (its published first
     * output); xoshiro256** from state {1,2,3,4} starts rotl(2*5,7)*9 = 11520. */
    lmc_rng r;
    lmc_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafull);
    lmc_rng x = {{1, 2, 3, 4}};
    CHECK(lmc_rng_next(&x) == 11520);
    CHECK(lmc_rng_next(&x) == 0); /* the first step leaves s[1] = 2 ^ (3 ^ 1) = 0 */
    double lo = 1, hi = 0, sum = 0;
    lmc_rng_seed(&r, 7);
    for (int i = 0; i < 100000; i++) {
        double u = lmc_rng_uniform(&r);
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        sum += u;
    }
    CHECK(lo >= 0 && lo < 1e-3 && hi < 1 && hi > 1 - 1e-3);
    CHECK_CLOSE(sum / 100000, 0.5, 0.005, 0);
}

/* --- stages on hand-made logits ------------------------------------------------- */

static void test_greedy(void) {
    lmc_sampler_config c = cfg_t(0);
    c.top_k = 1; c.top_p = 0.1f; c.min_p = 0.9f; /* ignored when greedy */
    lmc_sampler *s = make(c);
    float l1[] = {1, 3, 2, 3, -INFINITY};
    int32_t tok = -1;
    float lp = 0;
    CHECK(lmc_sampler_sample(s, l1, 5, NULL, 0, &tok, &lp) == LMC_OK);
    CHECK(tok == 1); /* tie between ids 1 and 3: the lower id */
    double z = exp(1.0) + 2 * exp(3.0) + exp(2.0);
    CHECK_CLOSE(lp, 3.0 - log(z), 1e-6, 0);
    float l2[] = {-INFINITY, -5, -INFINITY, -7};
    CHECK(lmc_sampler_sample(s, l2, 4, NULL, 0, &tok, NULL) == LMC_OK && tok == 1);
    /* Greedy never touches the generator: the same answer every time. */
    for (int i = 0; i < 10; i++) {
        float l3[] = {0.1f, 0.2f, 0.3f, 0.25f};
        CHECK(lmc_sampler_sample(s, l3, 4, NULL, 0, &tok, NULL) == LMC_OK && tok == 2);
    }
    lmc_sampler_free(s);
}

static void test_top_k(void) {
    lmc_sampler_config c = cfg_t(1);
    c.top_k = 2;
    float l[] = {1, 5, 3, 4, 2};
    int32_t ids[8];
    size_t n = kept_ids(c, l, 5, NULL, 0, ids);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 3);
    float ties[] = {2, 1, 2, 2, -INFINITY};
    n = kept_ids(c, ties, 5, NULL, 0, ids);
    CHECK(n == 2 && ids[0] == 0 && ids[1] == 2); /* equal logits: lower ids first */
    c.top_k = 4; /* more than the possible tokens: all four possible ones */
    n = kept_ids(c, ties, 5, NULL, 0, ids);
    CHECK(n == 4 && ids[0] == 0 && ids[1] == 2 && ids[2] == 3 && ids[3] == 1);
    c.top_k = 100; /* beyond the vocabulary: off */
    n = kept_ids(c, l, 5, NULL, 0, ids);
    CHECK(n == 5);
    /* Draws only ever produce the two survivors, both of them. */
    c.top_k = 2;
    lmc_sampler *s = make(c);
    int seen[5] = {0};
    for (int i = 0; i < 2000; i++) {
        float x[] = {1, 5, 3, 4, 2};
        int32_t tok = -1;
        CHECK(lmc_sampler_sample(s, x, 5, NULL, 0, &tok, NULL) == LMC_OK);
        if (tok >= 0 && tok < 5) seen[tok]++;
    }
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0 && seen[1] > 0 && seen[3] > 0);
    lmc_sampler_free(s);
}

static void test_top_p(void) {
    lmc_sampler_config c = cfg_t(1);
    double p[] = {0.5, 0.3, 0.2};
    float l[3];
    logits_from_probs(p, 3, l);
    int32_t ids[4];
    c.top_p = 0.5f;
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 1 && ids[0] == 0);
    c.top_p = 0.6f;
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 2 && ids[1] == 1);
    c.top_p = 0.8f; /* exactly 0.5 + 0.3 */
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 2);
    c.top_p = 0.81f;
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 3);
    c.top_p = 0.01f; /* always at least one */
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 1 && ids[0] == 0);

    /* Ids not in probability order; also through the top-k path. */
    double q[] = {0.2, 0.05, 0.5, 0.25};
    float lq[4];
    logits_from_probs(q, 4, lq);
    c.top_p = 0.7f;
    CHECK(kept_ids(c, lq, 4, NULL, 0, ids) == 2 && ids[0] == 2 && ids[1] == 3);
    /* top-p measures against the mass top-k left (0.95 for k = 3): p = 0.78
     * needs 0.741, reached by {2, 3} (0.75); without top-k it needs 0.78. */
    c.top_p = 0.78f;
    CHECK(kept_ids(c, lq, 4, NULL, 0, ids) == 3);
    c.top_k = 3;
    CHECK(kept_ids(c, lq, 4, NULL, 0, ids) == 2 && ids[0] == 2 && ids[1] == 3);
    c.top_p = 0.8f; /* needs 0.76 -> three */
    CHECK(kept_ids(c, lq, 4, NULL, 0, ids) == 3 && ids[2] == 0);

    /* top-p sees the tempered distribution: at T = 0.5, probs [0.5,0.3,0.2]
     * become proportional to [0.25, 0.09, 0.04] -> 0.658, 0.237, 0.105. */
    c = cfg_t(0.5f);
    c.top_p = 0.65f;
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 1);
    c.top_p = 0.66f;
    CHECK(kept_ids(c, l, 3, NULL, 0, ids) == 2);
}

static void test_min_p(void) {
    lmc_sampler_config c = cfg_t(1);
    double p[] = {0.1, 0.5, 0.15, 0.25};
    float l[4];
    logits_from_probs(p, 4, l);
    int32_t ids[4];
    c.min_p = 0.5f; /* threshold 0.25: 0.25 stays (not below) */
    CHECK(kept_ids(c, l, 4, NULL, 0, ids) == 2 && ids[0] == 1 && ids[1] == 3);
    c.min_p = 0.31f; /* threshold 0.155: 0.15 goes */
    CHECK(kept_ids(c, l, 4, NULL, 0, ids) == 2);
    c.min_p = 0.29f; /* threshold 0.145: 0.15 stays */
    CHECK(kept_ids(c, l, 4, NULL, 0, ids) == 3 && ids[0] == 1 && ids[1] == 2 && ids[2] == 3);
    c.min_p = 1; /* only the most probable */
    CHECK(kept_ids(c, l, 4, NULL, 0, ids) == 1 && ids[0] == 1);
    /* After top-p: min-p does not bring back what top-p removed. */
    c.min_p = 0.1f;
    c.top_p = 0.6f;
    CHECK(kept_ids(c, l, 4, NULL, 0, ids) == 2 && ids[0] == 1 && ids[1] == 3);
}

static void test_repeat_penalty(void) {
    lmc_sampler_config c = cfg_t(0);
    c.repeat_penalty = 2;
    int32_t tok;
    float l[] = {2, -1, 0.5f, 3, 0};
    int32_t hist[] = {0, 1, 1, 3, 4, 4};
    lmc_sampler *s = make(c);
    CHECK(lmc_sampler_sample(s, l, 5, hist, 6, &tok, NULL) == LMC_OK);
    /* >0 divided, <=0 multiplied, each distinct id once; id 2 untouched. */
    CHECK(l[0] == 1 && l[1] == -2 && l[2] == 0.5f && l[3] == 1.5f && l[4] == 0);
    CHECK(tok == 3);
    lmc_sampler_free(s);

    c.repeat_last_n = 2; /* only the last two entries (4, 4) */
    s = make(c);
    float l2[] = {2, -1, 0.5f, 3, -4};
    CHECK(lmc_sampler_sample(s, l2, 5, hist, 6, &tok, NULL) == LMC_OK);
    CHECK(l2[0] == 2 && l2[1] == -1 && l2[3] == 3 && l2[4] == -8);
    /* A second call starts afresh (marks from the last call are forgotten). */
    float l3[] = {2, -1, 0.5f, 3, -4};
    CHECK(lmc_sampler_sample(s, l3, 5, hist, 6, &tok, NULL) == LMC_OK && l3[4] == -8);
    lmc_sampler_free(s);

    c.repeat_last_n = 0; /* off */
    s = make(c);
    float l4[] = {2, -1};
    CHECK(lmc_sampler_sample(s, l4, 2, hist, 2, &tok, NULL) == LMC_OK && l4[0] == 2 && l4[1] == -1);
    lmc_sampler_free(s);

    c.repeat_last_n = -1; /* the whole history */
    c.repeat_penalty = 0.5f; /* below 1 favours repeats */
    s = make(c);
    float l5[] = {2, -1, 1};
    int32_t h5[] = {0, 1, 0, 0, 0};
    CHECK(lmc_sampler_sample(s, l5, 3, h5, 5, &tok, NULL) == LMC_OK && l5[0] == 4 && l5[1] == -0.5f && l5[2] == 1);
    /* Ids outside the vocabulary are an error naming the position. */
    int32_t bad[] = {0, 7};
    float l6[] = {2, -1, 1};
    CHECK(lmc_sampler_sample(s, l6, 3, bad, 2, &tok, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "history[1] = 7"), "%s", lmc_last_error());
    lmc_sampler_free(s);

    /* The penalty changes which token greedy picks: 3 -> 1.5 falls under 2. */
    c = cfg_t(0);
    c.repeat_penalty = 2;
    s = make(c);
    float l7[] = {2, 0, 0, 3};
    int32_t h7[] = {3};
    CHECK(lmc_sampler_sample(s, l7, 4, h7, 1, &tok, NULL) == LMC_OK && tok == 0);
    lmc_sampler_free(s);
}

static void test_bad_logits(void) {
    lmc_sampler *s = make(cfg_t(1));
    int32_t tok;
    float nan_l[] = {0, NAN, 1};
    CHECK(lmc_sampler_sample(s, nan_l, 3, NULL, 0, &tok, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "NaN") && strstr(lmc_last_error(), "token 1"), "%s", lmc_last_error());
    float inf_l[] = {0, 1, INFINITY};
    CHECK(lmc_sampler_sample(s, inf_l, 3, NULL, 0, &tok, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "+inf"), "%s", lmc_last_error());
    float none[] = {-INFINITY, -INFINITY};
    CHECK(lmc_sampler_sample(s, none, 2, NULL, 0, &tok, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "-inf"), "%s", lmc_last_error());
    float ok[] = {0};
    CHECK(lmc_sampler_sample(s, ok, 0, NULL, 0, &tok, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_sampler_sample(s, ok, 1, NULL, 0, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    /* -inf marks impossible tokens: never drawn. */
    int drawn_impossible = 0;
    for (int i = 0; i < 5000; i++) {
        float l[] = {0, -INFINITY, 0, -INFINITY};
        CHECK(lmc_sampler_sample(s, l, 4, NULL, 0, &tok, NULL) == LMC_OK);
        drawn_impossible += tok == 1 || tok == 3;
    }
    CHECK(drawn_impossible == 0);
    /* Huge finite logits do not overflow at a small temperature. */
    lmc_sampler_free(s);
    s = make(cfg_t(1e-6f));
    float big[] = {3e38f, -3e38f, 2.9e38f};
    float lp = 1;
    CHECK(lmc_sampler_sample(s, big, 3, NULL, 0, &tok, &lp) == LMC_OK && tok == 0 && lp == 0);
    lmc_sampler_free(s);
}

/* --- frequencies ---------------------------------------------------------------- */

static void check_frequencies(lmc_sampler_config c, const float *logits, int n, const double *expect, int draws) {
    lmc_sampler *s = make(c);
    int counts[16] = {0};
    float *x = malloc((size_t)n * sizeof *x);
    double worst_lp = 0;
    for (int i = 0; i < draws; i++) {
        memcpy(x, logits, (size_t)n * sizeof *x);
        int32_t tok = -1;
        float lp = 0;
        if (lmc_sampler_sample(s, x, n, NULL, 0, &tok, &lp) != LMC_OK || tok < 0 || tok >= n) {
            CHECKF(0, "sample failed: %s", lmc_last_error());
            break;
        }
        counts[tok]++;
        worst_lp = fmax(worst_lp, fabs(exp(lp) - expect[tok]));
    }
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)counts[i] / draws - expect[i]));
    CHECKF(worst <= 0.005, "max |frequency - expected| = %.5f", worst);
    CHECKF(worst_lp < 1e-5, "max |exp(logprob) - expected| = %g", worst_lp);
    fprintf(stderr, "  %d draws: max |frequency - expected| = %.5f\n", draws, worst);
    free(x);
    lmc_sampler_free(s);
}

static void test_frequencies(void) {
    /* Temperature 0.7 alone: softmax(logits / 0.7). */
    float l[] = {1.0f, 0.5f, 0.2f, -0.3f, 2.0f};
    double e[5], z = 0;
    for (int i = 0; i < 5; i++) z += e[i] = exp(l[i] / 0.7);
    for (int i = 0; i < 5; i++) e[i] /= z;
    check_frequencies(cfg_t(0.7f), l, 5, e, 200000);

    /* The chain: top-k 4 drops id 3; top-p 0.9 of what remains; min-p 0.2. */
    lmc_sampler_config c = cfg_t(0.7f);
    c.top_k = 4;
    float l2[] = {1.0f, 0.5f, 0.2f, -0.3f, 2.0f, -1.0f};
    double w[6] = {0}, zk = 0;
    int order[] = {4, 0, 1, 2}; /* the top 4 by logit */
    for (int i = 0; i < 4; i++) zk += w[order[i]] = exp(l2[order[i]] / 0.7);
    /* top-p 0.9: cumulative shares 0.698, 0.865, 0.947 -> three kept */
    double cum = 0;
    int kept = 0;
    while (kept < 4 && cum < 0.9 * zk) cum += w[order[kept++]];
    CHECK(kept == 3);
    for (int i = kept; i < 4; i++) w[order[i]] = 0;
    c.top_p = 0.9f;
    c.min_p = 0.2f; /* drops id 1: exp((0.5-2)/0.7) = 0.117 < 0.2 */
    for (int i = 0; i < 6; i++)
        if (w[i] > 0 && w[i] < 0.2 * w[4]) w[i] = 0;
    double zz = 0;
    for (int i = 0; i < 6; i++) zz += w[i];
    for (int i = 0; i < 6; i++) w[i] /= zz;
    CHECK(w[4] > 0 && w[0] > 0 && w[1] == 0 && w[2] == 0 && w[3] == 0 && w[5] == 0);
    check_frequencies(c, l2, 6, w, 200000);
}

/* --- seeds ------------------------------------------------------------------------ */

static void draw_sequence(uint64_t seed, const float *logits, int64_t vocab, int32_t *out, int n) {
    lmc_sampler_config c = cfg_t(1.0f);
    c.seed = seed;
    c.top_p = 0.95f;
    lmc_sampler *s = make(c);
    float *x = malloc((size_t)vocab * sizeof *x);
    for (int i = 0; i < n; i++) {
        memcpy(x, logits, (size_t)vocab * sizeof *x);
        out[i] = -1;
        CHECK(lmc_sampler_sample(s, x, vocab, NULL, 0, &out[i], NULL) == LMC_OK);
    }
    free(x);
    lmc_sampler_free(s);
}

static void test_seeds(void) {
    enum { V = 1000, N = 500 };
    float *l = malloc(V * sizeof *l);
    for (int i = 0; i < V; i++) l[i] = (float)t_normal();
    int32_t a[N], b[N], c[N];
    draw_sequence(42, l, V, a, N);
    draw_sequence(42, l, V, b, N);
    draw_sequence(43, l, V, c, N);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < N; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
    }
    CHECK(same_ab == N);
    CHECKF(same_ac < N / 4, "seeds 42 and 43 agree on %d of %d draws", same_ac, N);
    free(l);
}

/* --- against a naive reference on a full-size vocabulary ------------------------------ */

static const float *ref_logits;
static int ref_by_rank(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (ref_logits[a] != ref_logits[b]) return ref_logits[a] > ref_logits[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

/* Full sort, then the stages exactly as documented (double arithmetic,
 * the documented 1e-6 slack). Returns the kept count; ids in rank order. */
static size_t reference_kept(lmc_sampler_config c, const float *logits, int64_t vocab, int32_t *ids) {
    int64_t n = 0;
    for (int64_t i = 0; i < vocab; i++)
        if (logits[i] != -INFINITY) ids[n++] = (int32_t)i;
    ref_logits = logits;
    qsort(ids, (size_t)n, sizeof *ids, ref_by_rank);
    if (c.top_k > 0 && c.top_k < n) n = c.top_k;
    double max = logits[ids[0]], z = 0;
    for (int64_t i = 0; i < n; i++) z += exp((logits[ids[i]] - max) / c.temperature);
    if (c.top_p < 1) {
        double cum = 0;
        for (int64_t i = 0; i < n; i++) {
            cum += exp((logits[ids[i]] - max) / c.temperature);
            if (cum >= c.top_p * z * (1 - 1e-6)) {
                n = i + 1;
                break;
            }
        }
    }
    if (c.min_p > 0) {
        int64_t m = 0;
        while (m < n && exp((logits[ids[m]] - max) / c.temperature) >= c.min_p * (1 - 1e-6)) m++;
        n = m;
    }
    return (size_t)n;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void test_against_reference(void) {
    enum { V = 262144 };
    float *l = malloc(V * sizeof *l), *x = malloc(V * sizeof *x);
    int32_t *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    /* Logits shaped like a model's: a broad normal body, a few strong tokens,
     * some impossible ones. */
    for (int i = 0; i < V; i++) l[i] = (float)(2.5 * t_normal());
    for (int i = 0; i < 20; i++) l[(i * 7919) % V] = (float)(12 + i * 0.3);
    for (int i = 0; i < 100; i++) l[(i * 104729 + 13) % V] = -INFINITY;
    struct { float t; int k; float p, m; const char *name; } cases[] = {
        {0.8f, 0, 1.0f, 0.0f, "temperature 0.8"},
        {0.8f, 40, 1.0f, 0.0f, "top-k 40"},
        {0.8f, 40, 0.95f, 0.05f, "top-k 40, top-p 0.95, min-p 0.05"},
        {1.0f, 0, 0.9f, 0.0f, "top-p 0.9"},
        {1.5f, 0, 0.98f, 0.0f, "top-p 0.98, T 1.5"},
        {3.0f, 0, 0.5f, 0.0f, "top-p 0.5, T 3 (flat)"},
        {1.0f, 0, 1.0f, 0.05f, "min-p 0.05"},
        {0.7f, 5000, 0.9f, 0.0f, "top-k 5000, top-p 0.9"},
        /* the nucleus reaches weights below 2^-20 (the sampler then weighs every token) */
        {0.8f, 0, 0.99999f, 0.0f, "top-p 0.99999, T 0.8"},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        lmc_sampler_config c = cfg_t(cases[ci].t);
        c.top_k = cases[ci].k;
        c.top_p = cases[ci].p;
        c.min_p = cases[ci].m;
        size_t nw = reference_kept(c, l, V, want);
        size_t ng = kept_ids(c, l, V, NULL, 0, got);
        qsort(want, nw, sizeof *want, cmp_i32);
        qsort(got, ng, sizeof *got, cmp_i32);
        CHECKF(nw == ng && memcmp(want, got, nw * sizeof *want) == 0, "%s: reference keeps %zu, sampler %zu",
               cases[ci].name, nw, ng);

        /* Time a full sample() on this vocabulary. */
        lmc_sampler *s = make(c);
        int reps = 20;
        double t0 = now_seconds();
        for (int r = 0; r < reps; r++) {
            memcpy(x, l, V * sizeof *x);
            int32_t tok = -1;
            CHECK(lmc_sampler_sample(s, x, V, NULL, 0, &tok, NULL) == LMC_OK && tok >= 0);
        }
        double ms = (now_seconds() - t0) / reps * 1e3;
        fprintf(stderr, "  V=%d %-36s kept %7zu  %.3f ms/sample\n", V, cases[ci].name, ng, ms);
        lmc_sampler_free(s);
    }
    /* Greedy over the full vocabulary. */
    lmc_sampler *s = make(cfg_t(0));
    int32_t tok = -1;
    memcpy(x, l, V * sizeof *x);
    CHECK(lmc_sampler_sample(s, x, V, NULL, 0, &tok, NULL) == LMC_OK && tok == (19 * 7919) % V);
    lmc_sampler_free(s);
    free(l);
    free(x);
    free(want);
    free(got);
}

/* The weights: exp((logit - max) / T) within a few ulp of expf (the sampler
 * uses its own vectorised exp), 1 for the largest, 0 far below. */
static void test_weights(void) {
    enum { V = 20000 };
    float *l = malloc(V * sizeof *l);
    for (int i = 0; i < V; i++) l[i] = -0.0049f * (float)i; /* down to -98 */
    lmc_sampler_config c = cfg_t(1.0f);
    c.min_p = 1e-37f; /* the candidate path keeps (almost) every token */
    lmc_sampler *s = make(c);
    const lmc_sampler_candidate *cand = NULL;
    size_t n = 0;
    double total = 0;
    CHECK(lmc_sampler_filter(s, l, V, NULL, 0, &cand, &n, &total) == LMC_OK);
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = expf(cand[i].logit);
        if (cand[i].logit < -87.0f) {
            bad += cand[i].weight != 0.0f; /* (it should not be kept at all) */
            continue;
        }
        double rel = fabs((double)cand[i].weight - want) / want;
        if (rel > worst) worst = rel;
    }
    CHECKF(worst < 4.8e-7, "weights differ from expf by %.3g relative (4 ulp is 4.8e-7)", worst);
    CHECK(bad == 0 && n > 0 && cand[0].id == 0 && cand[0].weight == 1.0f);
    /* min-p 1e-37 keeps the weights down to exp(-85.2) (one either way at the boundary) */
    size_t want = 0;
    while (want < V && exp((double)l[want]) >= 1e-37 * (1 - 1e-6)) want++;
    CHECKF(n + 1 >= want && n <= want + 1, "%zu kept, %zu expected", n, want);
    lmc_sampler_free(s);
    free(l);
}

/* Temperature alone draws without building candidates; the same seed through
 * the candidate path (a min-p too small to drop anything) draws the same
 * tokens. */
static void test_fast_draw_matches(void) {
    enum { V = 5000, N = 3000 };
    float *l = malloc(V * sizeof *l), *x = malloc(V * sizeof *x);
    for (int i = 0; i < V; i++) l[i] = (float)(1.5 * t_normal());
    l[17] = -INFINITY;
    lmc_sampler_config a = cfg_t(0.9f), b = a;
    a.seed = b.seed = 11;
    b.min_p = 1e-20f;
    lmc_sampler *sa = make(a), *sb = make(b);
    int same = 0, hit17 = 0;
    for (int i = 0; i < N; i++) {
        int32_t ta = -1, tb = -2;
        float la = 0, lb = 0;
        memcpy(x, l, sizeof *x * V);
        CHECK(lmc_sampler_sample(sa, x, V, NULL, 0, &ta, &la) == LMC_OK);
        memcpy(x, l, sizeof *x * V);
        CHECK(lmc_sampler_sample(sb, x, V, NULL, 0, &tb, &lb) == LMC_OK);
        same += ta == tb && fabsf(la - lb) < 1e-5f;
        hit17 += ta == 17;
    }
    CHECKF(same == N, "%d of %d draws agree", same, N);
    CHECK(hit17 == 0);
    lmc_sampler_free(sa);
    lmc_sampler_free(sb);
    free(l);
    free(x);
}

/* n draws with temperature t, top-p p, min-p m and seed from logits l of
 * vocab V (x: scratch for the copy each draw may change). */
static void draw_n(float t, float p, float m, uint64_t seed, const float *l, float *x, int V, int n, int32_t *tok, float *lp) {
    lmc_sampler_config c = cfg_t(t);
    c.top_p = p;
    c.min_p = m;
    c.seed = seed;
    lmc_sampler *s = make(c);
    for (int i = 0; i < n; i++) {
        memcpy(x, l, (size_t)V * sizeof *x);
        CHECK(lmc_sampler_sample(s, x, V, NULL, 0, &tok[i], &lp[i]) == LMC_OK);
    }
    lmc_sampler_free(s);
}

/* The vocabulary pass runs on the thread pool in fixed chunks: the same
 * seed draws the same tokens (and log-probabilities) with 1, 2 and 3
 * threads, for each path (temperature alone, top-p, min-p). */
static void test_threads_same(void) {
    enum { V = 151936, N = 64 };
    float *l = malloc(V * sizeof *l), *x = malloc(V * sizeof *x);
    for (int i = 0; i < V; i++) l[i] = (float)(2.5 * t_normal());
    for (int i = 0; i < 20; i++) l[(i * 7919) % V] = (float)(12 + i * 0.3);
    struct { float t, p, m; } cases[] = {{0.8f, 1.0f, 0.0f}, {1.0f, 0.9f, 0.0f}, {0.9f, 1.0f, 0.05f}, {1.5f, 0.99f, 0.0f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int32_t tok[3][N];
        float lp[3][N];
        for (int threads = 1; threads <= 3; threads++) {
            lmc_set_num_threads(threads);
            draw_n(cases[ci].t, cases[ci].p, cases[ci].m, 5, l, x, V, N, tok[threads - 1], lp[threads - 1]);
        }
        CHECKF(!memcmp(tok[0], tok[1], sizeof tok[0]) && !memcmp(tok[0], tok[2], sizeof tok[0]) &&
                   !memcmp(lp[0], lp[1], sizeof lp[0]) && !memcmp(lp[0], lp[2], sizeof lp[0]),
               "case %zu: draws differ between thread counts", ci);
    }
    lmc_set_num_threads(0);
    free(l);
    free(x);
}

/* Every kernel path (scalar, AVX2, AVX-512: the weight pass runs sixteen
 * lanes at a time on the last) gives the same bits: the weights of a sweep
 * through exp's whole range, and the same draws and log-probabilities for
 * the same seed. */
static void test_paths_same(void) {
    enum { V = 151936, N = 48 };
    for (int wide = LMC_PATH_AVX2; wide <= LMC_PATH_AVX512 && wide <= (int)lmc_cpu_path_max(); wide++) {
        enum { S = 4096 };
        float *x = malloc(S * sizeof *x), *w = malloc(S * sizeof *w);
        for (int i = 0; i < S; i++) x[i] = i < S - 16 ? 4.0f - 0.025f * (float)i : (i % 2 ? -INFINITY : -1e30f);
        int diff = 0;
        for (int k = 0; k < 3; k++) {
            float max = 4.0f, temp = k == 0 ? 1.0f : k == 1 ? 0.07f : 3.3f;
            (wide == LMC_PATH_AVX512 ? lmc_sampler_weights_avx512 : lmc_sampler_weights_avx2)(x, S, max, temp, w);
            for (int i = 0; i < S; i++) {
                float want = lmc_exp_neg(-((max - x[i]) / temp));
                diff += memcmp(&want, &w[i], sizeof want) != 0;
            }
        }
        CHECKF(diff == 0, "%d of %d %s weights differ from the scalar ones", diff, 3 * S, lmc_cpu_path_name((lmc_cpu_path)wide));
        free(x);
        free(w);
    }
    float *l = malloc(V * sizeof *l), *x = malloc(V * sizeof *x);
    for (int i = 0; i < V; i++) l[i] = (float)(2.5 * t_normal());
    for (int i = 0; i < 20; i++) l[(i * 7919) % V] = (float)(12 + i * 0.3);
    l[3] = -INFINITY;
    struct { float t, p, m; } cases[] = {{0.8f, 1.0f, 0.0f}, {1.0f, 0.9f, 0.0f}, {0.9f, 1.0f, 0.05f}, {0.05f, 1.0f, 0.0f}};
    lmc_cpu_path before = lmc_cpu_path_active();
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int32_t tok[3][N];
        float lp[3][N];
        double lse[3];
        lmc_token_logprob top[3][5];
        int paths = 0;
        for (int path = LMC_PATH_SCALAR; path <= LMC_PATH_AVX512 && path <= (int)lmc_cpu_path_max(); path++, paths++) {
            lmc_cpu_path_set((lmc_cpu_path)path);
            draw_n(cases[ci].t, cases[ci].p, cases[ci].m, 9, l, x, V, N, tok[path], lp[path]);
            CHECK(lmc_logprobs_scan(l, V, 5, &lse[path], top[path]) == LMC_OK);
        }
        for (int p = 1; p < paths; p++) {
            CHECKF(!memcmp(tok[0], tok[p], sizeof tok[0]) && !memcmp(lp[0], lp[p], sizeof lp[0]),
                   "case %zu: path %s draws differently from scalar", ci, lmc_cpu_path_name((lmc_cpu_path)p));
            CHECKF(lse[0] == lse[p] && !memcmp(top[0], top[p], sizeof top[0]), "path %s: log-sum-exp %.17g, scalar %.17g",
                   lmc_cpu_path_name((lmc_cpu_path)p), lse[p], lse[0]);
        }
    }
    lmc_cpu_path_set(before);
    free(l);
    free(x);
}

/* Many equal logits (both zeros among them) through the radix sort: the
 * order must be exactly the rank order, ties by id. */
static void test_rank_order(void) {
    enum { V = 5000 };
    float *l = malloc(V * sizeof *l);
    int32_t *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    for (int i = 0; i < V; i++) l[i] = (float)(round(2 * t_normal()) / 2);
    for (int i = 0; i < V; i += 7) l[i] = (i / 7) % 2 ? -0.0f : 0.0f;
    for (int i = 3; i < V; i += 101) l[i] = -INFINITY;
    struct { int k; float p; } cases[] = {{3000, 1.0f}, {0, 0.7f}, {0, 0.999f}, {200, 0.9f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        lmc_sampler_config c = cfg_t(1.0f);
        c.top_k = cases[ci].k;
        c.top_p = cases[ci].p;
        size_t nw = reference_kept(c, l, V, want);
        size_t ng = kept_ids(c, l, V, NULL, 0, got);
        CHECKF(nw == ng && memcmp(want, got, nw * sizeof *want) == 0, "top-k %d, top-p %g: %zu vs %zu kept or order differs",
               cases[ci].k, (double)cases[ci].p, nw, ng);
    }
    free(l);
    free(want);
    free(got);
}

/* lmc_logprobs_scan: the log-sum-exp against a double reference, the top
 * list's order (ties to the lower id), impossible tokens, bad logits. */
static void test_logprobs_scan(void) {
    enum { V = 5000 };
    float *x = malloc(V * sizeof *x);
    lmc_rng rng;
    lmc_rng_seed(&rng, 99);
    for (int i = 0; i < V; i++) x[i] = (float)(lmc_rng_uniform(&rng) * 30.0 - 20.0);
    x[17] = x[4000] = 12.5f; /* a tie for the top: 17 first */
    x[9] = -INFINITY;
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    double lse, ref = mx + log(sum);
    lmc_token_logprob top[LMC_MAX_TOP_LOGPROBS];
    CHECK(lmc_logprobs_scan(x, V, 6, &lse, top) == LMC_OK);
    CHECK_CLOSE(lse, ref, 1e-5, 0);
    CHECK(top[0].id == 17 && top[1].id == 4000);
    for (int k = 0; k < 6; k++) {
        CHECK_CLOSE(top[k].logprob, (double)x[top[k].id] - ref, 1e-5, 0);
        if (k) CHECK(top[k].logprob <= top[k - 1].logprob);
    }
    int above = 0; /* nothing outside the list beats its last entry */
    for (int i = 0; i < V; i++) above += x[i] > x[top[5].id];
    CHECK(above == 5);
    /* two possible tokens, four asked for */
    float y[6] = {-INFINITY, 1.0f, -INFINITY, 3.0f, -INFINITY, -INFINITY};
    CHECK(lmc_logprobs_scan(y, 6, 4, &lse, top) == LMC_OK);
    CHECK_CLOSE(lse, 3.0 + log(1.0 + exp(-2.0)), 1e-6, 0);
    CHECK(top[0].id == 3 && top[1].id == 1 && top[2].id == -1 && top[3].id == -1);
    CHECK(top[2].logprob == -INFINITY);
    CHECK(lmc_logprobs_scan(y, 6, 0, &lse, NULL) == LMC_OK);
    y[1] = NAN;
    CHECK(lmc_logprobs_scan(y, 6, 2, &lse, top) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "NaN") != NULL);
    float z[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(lmc_logprobs_scan(z, 3, 1, &lse, top) == LMC_ERR_INVALID_ARGUMENT);
    /* appended entries grow with each step */
    float *lp = NULL;
    lmc_token_logprob *tl = NULL;
    CHECK(lmc_logprobs_append(x, V, 17, 3, 0, &lp, &tl) == LMC_OK);
    CHECK(lmc_logprobs_append(x, V, 9, 3, 1, &lp, &tl) == LMC_OK);
    CHECK(lp && tl && lp[0] == tl[0].logprob && lp[1] == -INFINITY && tl[3].id == 17);
    CHECK(lmc_logprobs_append(x, V, V, 3, 2, &lp, &tl) == LMC_ERR_INVALID_ARGUMENT);
    free(lp);
    free(tl);
    free(x);
}

int main(void) {
    RUN(test_config);
    RUN(test_rng);
    RUN(test_greedy);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_min_p);
    RUN(test_repeat_penalty);
    RUN(test_bad_logits);
    RUN(test_frequencies);
    RUN(test_seeds);
    RUN(test_against_reference);
    RUN(test_rank_order);
    RUN(test_logprobs_scan);
    RUN(test_weights);
    RUN(test_fast_draw_matches);
    RUN(test_threads_same);
    RUN(test_paths_same);
    return TEST_REPORT();
}
