/* The sampler chain (see sampler.h for the order and the rules).
 *
 * Speed matters at vocabularies of 262144: every stage is a linear pass
 * except the sorts, which only ever see the tokens they need. Top-k selects
 * its k tokens with a bounded heap and radix-sorts those k. Top-p without
 * top-k first histograms the probability mass by weight (8 buckets per
 * halving), finds the bucket where the cumulative mass reaches p, and sorts
 * only the tokens in that bucket and above. The pass that weighs every token
 * (temperature > 0) runs in four-lane vectors on the thread pool, in fixed
 * chunks, so results do not depend on the thread count (see weigh).
 */
#include "runtime/sampler.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "runtime/rng.h"
#include "runtime/sampler_exp.h"

/* Probabilities are computed in float (relative error about 1e-7), so an
 * equality that holds in exact arithmetic (a cumulative mass equal to top_p,
 * a probability equal to min_p times the largest) may miss by a rounding
 * step. Both thresholds are lowered by this relative amount so that such
 * ties count as reached; the mass this can move is below 1e-6. */
#define REL_SLACK 1e-6

/* Top-p histogram (see top_p_bucket): 8 buckets per halving of the weight,
 * down to weights of 2^-64. */
enum { TOP_P_BUCKETS = 512, BUCKETS_PER_OCTAVE_LOG2 = 3 };

struct lmc_sampler {
    lmc_sampler_config cfg;
    lmc_rng rng;
    int64_t cap;                 /* vocabulary size the scratch arrays hold */
    lmc_sampler_candidate *cand; /* [cap] the tokens still in the chain */
    uint64_t *keys, *keys_tmp;   /* [cap] radix-sort keys */
    size_t radix_count[8][256];  /* radix-sort digit counts */
    uint32_t *seen;              /* [seen_cap]: seen[id] == epoch marks an id already penalised */
    int64_t seen_cap;
    uint32_t epoch;
    double *bsum;                /* [cap_bsum] block sums of the weights (weigh) */
    int64_t *chunk_count;        /* candidates each chunk of the weigh pass wrote */
    int64_t cap_bsum;
};

lmc_sampler_config lmc_sampler_config_default(void) {
    lmc_sampler_config c = {
        .temperature = 0.8f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
    };
    return c;
}

const char *lmc_stop_reason_name(lmc_stop_reason r) {
    switch (r) {
    case LMC_STOP_NONE: return "none";
    case LMC_STOP_EOS: return "eos";
    case LMC_STOP_TOKEN: return "stop_token";
    case LMC_STOP_STRING: return "stop_string";
    case LMC_STOP_MAX_TOKENS: return "max_tokens";
    case LMC_STOP_CONTEXT: return "context";
    case LMC_STOP_CANCELLED: return "cancelled";
    case LMC_STOP_ERROR: return "error";
    }
    return "unknown";
}

/* --- creation ---------------------------------------------------------- */

static lmc_status validate_config(const lmc_sampler_config *c) {
    /* Comparisons are written so that NaN fails them. */
    if (!(isfinite(c->temperature) && c->temperature >= 0))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: temperature must be finite and >= 0, got %g",
                             (double)c->temperature);
    if (c->top_k < 0)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: top_k must be >= 0, got %d", c->top_k);
    if (!(c->top_p > 0 && c->top_p <= 1))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: top_p must be in (0, 1], got %g", (double)c->top_p);
    if (!(c->min_p >= 0 && c->min_p <= 1))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: min_p must be in [0, 1], got %g", (double)c->min_p);
    if (!(isfinite(c->repeat_penalty) && c->repeat_penalty > 0))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: repeat_penalty must be finite and > 0, got %g",
                             (double)c->repeat_penalty);
    if (c->repeat_last_n < -1)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: repeat_last_n must be >= -1, got %d",
                             c->repeat_last_n);
    return LMC_OK;
}

lmc_status lmc_sampler_create(const lmc_sampler_config *cfg, lmc_sampler **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: out is NULL");
    *out = NULL;
    lmc_sampler_config c = cfg ? *cfg : lmc_sampler_config_default();
    LMC_CHECK(validate_config(&c));
    lmc_sampler *s = calloc(1, sizeof *s);
    if (!s) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->cfg = c;
    lmc_rng_seed(&s->rng, c.seed);
    *out = s;
    return LMC_OK;
}

void lmc_sampler_free(lmc_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->keys);
    free(s->keys_tmp);
    free(s->seen);
    free(s->bsum);
    free(s->chunk_count);
    free(s);
}

/* --- stage 1: checks and repeat penalty --------------------------------- */

/* Four floats at a time with the compiler's generic vectors (SSE on any
 * x86-64, NEON on arm64), two vectors per step: the scans below run over
 * the whole vocabulary for every token, and one float at a time they took
 * ~0.3 ms at 152k tokens (2 % of a Qwen3-0.6B decode step). */
typedef float v4f __attribute__((vector_size(16)));
enum { DRAW_BLOCK = 64 }; /* tokens per block of the weight sums (a multiple of 4) */
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

typedef double v2d __attribute__((vector_size(16)));

static inline bool any4(v4i m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }

/* (w0 + w2, w1 + w3) in double: sums of weights are kept in double, as a
 * top-p cut near 1 depends on the total to ~1e-8. */
static inline v2d sum_pairs(v4f w) {
    v2d lo = {w[0], w[1]}, hi = {w[2], w[3]};
    return lo + hi;
}

LMC_DEFINE_EXP_NEG_VEC(exp_neg4, v4f, v4i)

static lmc_status check_logits(const float *logits, int64_t vocab) {
    v4i bad = {0};
    int64_t i = 0;
    for (; i + 8 <= vocab; i += 8) {
        v4f a = load4(logits + i), b = load4(logits + i + 4);
        bad |= (a != a) | (a == INFINITY) | (b != b) | (b == INFINITY);
    }
    bool any = any4(bad);
    for (; i < vocab; i++) any |= isnan(logits[i]) || logits[i] == INFINITY;
    if (!any) return LMC_OK;
    for (i = 0; i < vocab; i++) { /* the first bad one, for the message */
        float x = logits[i];
        if (isnan(x)) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: logits contain NaN (token %lld)", (long long)i);
        if (x == INFINITY)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: logits contain +inf (token %lld)", (long long)i);
    }
    return LMC_OK;
}

static inline v4f max4(v4f a, v4f b) {
    v4i gt = a > b;
    return (v4f)((gt & (v4i)a) | (~gt & (v4i)b));
}

/* The lowest id holding the largest logit (NaN-free logits), or -1 when
 * every logit is -inf. */
static int64_t argmax_logits(const float *logits, int64_t vocab) {
    v4f m0 = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, m1 = m0;
    int64_t i = 0;
    for (; i + 8 <= vocab; i += 8) {
        m0 = max4(load4(logits + i), m0);
        m1 = max4(load4(logits + i + 4), m1);
    }
    m0 = max4(m0, m1);
    float m = -INFINITY;
    for (int l = 0; l < 4; l++) m = m0[l] > m ? m0[l] : m;
    for (; i < vocab; i++) m = logits[i] > m ? logits[i] : m;
    if (m == -INFINITY) return -1;
    /* the first index holding m: blocks of 64 compared at once, then one by one */
    const v4f mm = {m, m, m, m};
    for (i = 0; i + 64 <= vocab; i += 64) {
        v4i eq = {0};
        for (int k = 0; k < 64; k += 4) eq |= load4(logits + i + k) == mm;
        if (any4(eq)) break;
    }
    for (; i < vocab; i++)
        if (logits[i] == m) return i;
    return -1; /* not reached: m is one of the logits */
}

static lmc_status apply_repeat_penalty(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history,
                                       size_t n_history) {
    float penalty = s->cfg.repeat_penalty;
    if (penalty == 1.0f || s->cfg.repeat_last_n == 0 || n_history == 0) return LMC_OK;
    if (!history) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: history is NULL but n_history is %zu", n_history);
    if (vocab > s->seen_cap) {
        uint32_t *seen = calloc((size_t)vocab, sizeof *seen);
        if (!seen) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "sampler: out of memory for %lld marks", (long long)vocab);
        free(s->seen);
        s->seen = seen;
        s->seen_cap = vocab;
        s->epoch = 0;
    }
    /* A fresh epoch forgets the marks of the previous call without clearing. */
    if (++s->epoch == 0) {
        memset(s->seen, 0, (size_t)s->seen_cap * sizeof *s->seen);
        s->epoch = 1;
    }
    size_t window = s->cfg.repeat_last_n < 0 ? n_history : (size_t)s->cfg.repeat_last_n;
    size_t start = n_history > window ? n_history - window : 0;
    for (size_t i = start; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= vocab)
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: history[%zu] = %d is not a token id (vocab %lld)", i,
                                 id, (long long)vocab);
        if (s->seen[id] == s->epoch) continue;
        s->seen[id] = s->epoch;
        float x = logits[id];
        float y = x > 0 ? x / penalty : x * penalty;
        /* A penalty below 1 can push a huge logit past the float range; keep
         * a possible token possible and finite. */
        if (isinf(y) && isfinite(x)) y = copysignf(FLT_MAX, y);
        logits[id] = y;
    }
    return LMC_OK;
}

/* Checks the arguments, applies stage 1 and finds the largest logit (lowest
 * id among ties). */
static lmc_status prepare(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history, size_t n_history,
                          int64_t *argmax) {
    if (!s || !logits) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: NULL sampler or logits");
    if (vocab <= 0 || vocab > INT32_MAX)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: vocabulary size %lld out of range", (long long)vocab);
    LMC_CHECK(check_logits(logits, vocab));
    LMC_CHECK(apply_repeat_penalty(s, logits, vocab, history, n_history));
    int64_t best = argmax_logits(logits, vocab);
    if (best < 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: every logit is -inf, no token is possible");
    *argmax = best;
    return LMC_OK;
}

/* --- stages 3-5 ----------------------------------------------------------- */

/* Rank order: larger logit first, lower id among equal logits. */
static bool ranks_below(const lmc_sampler_candidate *a, const lmc_sampler_candidate *b) {
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void swap_cand(lmc_sampler_candidate *a, lmc_sampler_candidate *b) {
    lmc_sampler_candidate t = *a;
    *a = *b;
    *b = t;
}

/* Temperature enters here and only here: every stage after it sees the
 * weights exp((logit - max) / T), with the largest exactly 1. Dividing the
 * gap (never the logit itself) cannot overflow to +inf at a tiny T. */
static float weight_of(float max, float logit, float temperature) { return lmc_exp_neg(-((max - logit) / temperature)); }

/* weight_of for four logits at once, lane by lane the same arithmetic. */
static inline v4f weight_of4(v4f max, v4f logit, v4f temperature) { return exp_neg4(-((max - logit) / temperature)); }

/* lmc_sampler_weights_avx512 / _avx2 where that path runs, else NULL (the
 * four-lane weight_of4 then). */
typedef void (*weights_fn)(const float *logits, int64_t n, float max, float temperature, float *out);
static weights_fn wide_weights(void) {
    lmc_cpu_path path = lmc_cpu_path_active();
    return path >= LMC_PATH_AVX512 ? lmc_sampler_weights_avx512 : path >= LMC_PATH_AVX2 ? lmc_sampler_weights_avx2 : NULL;
}

/* Sort key for rank order: ascending keys are descending logits, then
 * ascending ids. The high half maps the float's bits to an unsigned integer
 * that orders like the float (-0 first made +0 so both zeros tie), inverted. */
static uint64_t rank_key(float logit, int32_t id) {
    uint32_t u;
    float x = logit + 0.0f;
    memcpy(&u, &x, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t)~u << 32 | (uint32_t)id;
}

static float key_logit(uint64_t key) {
    uint32_t u = ~(uint32_t)(key >> 32);
    u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Sorts c[0..n) by rank: an LSD radix sort on rank_key (8-bit digits,
 * skipping digits every key shares), insertion sort for short runs. Weights
 * are recomputed from the logits with weight_of, giving the same values. */
static void sort_by_rank(lmc_sampler *s, lmc_sampler_candidate *c, size_t n, float max, float temperature) {
    uint64_t *key = s->keys, *tmp = s->keys_tmp;
    for (size_t i = 0; i < n; i++) key[i] = rank_key(c[i].logit, c[i].id);
    if (n <= 64) {
        for (size_t i = 1; i < n; i++) {
            uint64_t k = key[i];
            size_t j = i;
            for (; j > 0 && key[j - 1] > k; j--) key[j] = key[j - 1];
            key[j] = k;
        }
    } else {
        size_t (*count)[256] = s->radix_count;
        memset(count, 0, sizeof s->radix_count);
        for (size_t i = 0; i < n; i++)
            for (int d = 0; d < 8; d++) count[d][(key[i] >> (8 * d)) & 0xff]++;
        for (int d = 0; d < 8; d++) {
            size_t *cnt = count[d], sum = 0;
            if (cnt[(key[0] >> (8 * d)) & 0xff] == n) continue; /* one value: the pass changes nothing */
            for (int v = 0; v < 256; v++) {
                size_t t = cnt[v];
                cnt[v] = sum;
                sum += t;
            }
            for (size_t i = 0; i < n; i++) tmp[cnt[(key[i] >> (8 * d)) & 0xff]++] = key[i];
            uint64_t *t = key;
            key = tmp;
            tmp = t;
        }
    }
    for (size_t i = 0; i < n; i++) {
        float x = key_logit(key[i]);
        c[i] = (lmc_sampler_candidate){(int32_t)(uint32_t)key[i], x, weight_of(max, x, temperature)};
    }
}

/* Min-heap on rank: h[0] is the lowest-ranked of the tokens kept so far. */
static void heap_sift_down(lmc_sampler_candidate *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_below(&h[l], &h[m])) m = l;
        if (r < n && ranks_below(&h[r], &h[m])) m = r;
        if (m == i) return;
        swap_cand(&h[i], &h[m]);
        i = m;
    }
}

static void heap_sift_up(lmc_sampler_candidate *h, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ranks_below(&h[i], &h[p])) return;
        swap_cand(&h[i], &h[p]);
        i = p;
    }
}

/* Stage 3: the k best possible tokens (unsorted). Ids arrive in increasing
 * order, so a newcomer equal to the heap's worst ranks below it and never
 * displaces it. */
static size_t select_top_k(lmc_sampler_candidate *h, const float *logits, int64_t vocab, size_t k) {
    size_t n = 0;
    for (int64_t id = 0; id < vocab; id++) {
        float x = logits[id];
        if (x == -INFINITY) continue;
        if (n < k) {
            h[n] = (lmc_sampler_candidate){(int32_t)id, x, 0};
            heap_sift_up(h, n++);
        } else if (x > h[0].logit) {
            h[0] = (lmc_sampler_candidate){(int32_t)id, x, 0};
            heap_sift_down(h, n, 0);
        }
    }
    return n;
}

/* Top-p histogram bucket of a weight in [0, 1]: the distance of its float
 * bits from those of 1.0 in steps of 2^-BUCKETS_PER_OCTAVE_LOG2 of an
 * exponent step, i.e. 8 buckets per halving; weights below 2^-64 share the
 * last bucket. Monotone in the weight, so all tokens of a bucket outrank
 * those of the next. */
static size_t top_p_bucket(float weight) {
    uint32_t u;
    memcpy(&u, &weight, sizeof u);
    uint32_t d = (0x3f800000u - u) >> (23 - BUCKETS_PER_OCTAVE_LOG2);
    return d < TOP_P_BUCKETS ? d : TOP_P_BUCKETS - 1;
}

/* Weights below this (relative to the largest, 1) are left out of the
 * candidates when a filter would drop them anyway: min-p at or above it, or
 * top-p once the tokens at or above it carry the nucleus's mass. Writing
 * and histogramming every token of a 150k vocabulary cost ~1.5 ms a token. */
#define TINY_WEIGHT 0x1p-20f

/* The one pass over the whole vocabulary for temperature > 0: every token's
 * weight, summed per block of DRAW_BLOCK into s->bsum (two lanes of double,
 * a block at a time, always in the same order), and, when c is given, the
 * possible tokens of weight >= floor written in id order from c + the
 * chunk's first id, counted per chunk. Chunks of WEIGH_CHUNK blocks run on
 * the thread pool; every sum and list depends on the chunk alone, so the
 * results are the same for any thread count. */
enum { WEIGH_CHUNK = 64 }; /* blocks a chunk: 4096 tokens */

typedef struct weigh_job {
    const float *logits;
    int64_t vocab;
    float max, temperature, floor;
    double *bsum;
    lmc_sampler_candidate *c; /* NULL: sums only */
    int64_t *count;           /* [chunks] candidates written by each */
} weigh_job;

static void weigh_chunks(void *ctx, int64_t j0, int64_t j1, int thread) {
    (void)thread;
    const weigh_job *w = ctx;
    const float max = w->max, T = w->temperature, floor = w->floor;
    const v4f mv = {max, max, max, max}, tv = {T, T, T, T}, fv = {floor, floor, floor, floor};
    const v4f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    /* a whole block's weights sixteen or eight at a time where AVX-512 or AVX2
     * runs (the same bits); the sums and the candidates then go four at a
     * time as always */
    const weights_fn wide = wide_weights();
    float wb[DRAW_BLOCK];
    for (int64_t j = j0; j < j1; j++) {
        int64_t first = j * WEIGH_CHUNK * DRAW_BLOCK, n = 0;
        int64_t end = first + WEIGH_CHUNK * DRAW_BLOCK < w->vocab ? first + WEIGH_CHUNK * DRAW_BLOCK : w->vocab;
        lmc_sampler_candidate *c = w->c ? w->c + first : NULL;
        for (int64_t b0 = first; b0 < end; b0 += DRAW_BLOCK) {
            int64_t b1 = b0 + DRAW_BLOCK < end ? b0 + DRAW_BLOCK : end;
            v2d sum = {0, 0};
            bool have = wide && b1 - b0 == DRAW_BLOCK;
            if (have) wide(w->logits + b0, DRAW_BLOCK, max, T, wb);
            for (int64_t i = b0; i < b1; i += 4) {
                float wt[4], x[4];
                int lanes = b1 - i < 4 ? (int)(b1 - i) : 4;
                if (lanes == 4) {
                    v4f xv = load4(w->logits + i), wv = have ? load4(wb + (i - b0)) : weight_of4(mv, xv, tv);
                    sum += sum_pairs(wv);
                    if (!c || !any4((wv >= fv) & (xv != ninf))) continue;
                    memcpy(wt, &wv, sizeof wt);
                    memcpy(x, &xv, sizeof x);
                } else {
                    for (int l = 0; l < lanes; l++) {
                        x[l] = w->logits[i + l];
                        wt[l] = weight_of(max, x[l], T);
                        sum[0] += wt[l];
                    }
                    if (!c) continue;
                }
                for (int l = 0; l < lanes; l++)
                    if (x[l] != -INFINITY && wt[l] >= floor) c[n++] = (lmc_sampler_candidate){(int32_t)(i + l), x[l], wt[l]};
            }
            w->bsum[b0 / DRAW_BLOCK] = sum[0] + sum[1];
        }
        if (w->count) w->count[j] = n;
    }
}

/* Runs the pass (see weigh_job); returns the total weight, the block sums
 * added in block order. */
static lmc_status weigh(lmc_sampler *s, const float *logits, int64_t vocab, float max, lmc_sampler_candidate *c,
                        float floor, double *total) {
    int64_t nb = (vocab + DRAW_BLOCK - 1) / DRAW_BLOCK, chunks = (nb + WEIGH_CHUNK - 1) / WEIGH_CHUNK;
    if (nb > s->cap_bsum) {
        double *b = realloc(s->bsum, (size_t)nb * sizeof *b);
        if (b) s->bsum = b;
        int64_t *n = realloc(s->chunk_count, (size_t)chunks * sizeof *n);
        if (n) s->chunk_count = n;
        if (!b || !n) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "sampler: out of memory for %lld block sums", (long long)nb);
        s->cap_bsum = nb;
    }
    weigh_job w = {logits, vocab, max, s->cfg.temperature, floor, s->bsum, c, c ? s->chunk_count : NULL};
    lmc_parallel_for(chunks, 1, weigh_chunks, &w);
    double t = 0;
    for (int64_t b = 0; b < nb; b++) t += s->bsum[b];
    *total = t;
    return LMC_OK;
}

/* Without top-k: the possible tokens of weight >= floor in id order (the
 * chunks' lists moved together), with the total weight of every token, the
 * weight of those collected (*kept) and (when mass is given) their top-p
 * histogram. Four interleaved histograms keep neighbouring tokens, which
 * mostly fall in the same bucket, from waiting on each other's update; row
 * 0 gets the sum. */
static lmc_status collect_all(lmc_sampler *s, const float *logits, int64_t vocab, float max, float floor,
                              size_t *n_out, double *total, double *kept, double (*mass)[TOP_P_BUCKETS]) {
    lmc_sampler_candidate *c = s->cand;
    LMC_CHECK(weigh(s, logits, vocab, max, c, floor, total));
    int64_t chunks = ((vocab + DRAW_BLOCK - 1) / DRAW_BLOCK + WEIGH_CHUNK - 1) / WEIGH_CHUNK;
    size_t n = 0;
    for (int64_t j = 0; j < chunks; j++) {
        int64_t first = j * WEIGH_CHUNK * DRAW_BLOCK, cnt = s->chunk_count[j];
        if (cnt && (size_t)first != n) memmove(c + n, c + first, (size_t)cnt * sizeof *c);
        n += (size_t)cnt;
    }
    double k = 0;
    for (size_t i = 0; i < n; i++) {
        k += c[i].weight;
        if (mass) mass[c[i].id & 3][top_p_bucket(c[i].weight)] += c[i].weight;
    }
    if (mass)
        for (int b = 0; b < TOP_P_BUCKETS; b++) mass[0][b] += mass[1][b] + mass[2][b] + mass[3][b];
    *kept = k;
    *n_out = n;
    return LMC_OK;
}

static double total_weight(const lmc_sampler_candidate *c, size_t n) {
    double t = 0;
    for (size_t i = 0; i < n; i++) t += c[i].weight;
    return t;
}

/* Stage 4: keeps the shortest rank-ordered prefix whose weight reaches
 * top_p * total. When c is not sorted yet (mass holds its histogram), only
 * the buckets down to the one where the cumulative mass reaches the target
 * are sorted; the rest cannot be in the prefix. */
static size_t apply_top_p(lmc_sampler *s, lmc_sampler_candidate *c, size_t n, const double *mass, double total,
                          float max, float temperature, float top_p) {
    double target = top_p * total * (1 - REL_SLACK);
    if (mass) {
        size_t last = 0;
        double cum = mass[0];
        while (cum < target && last < TOP_P_BUCKETS - 1) cum += mass[++last];
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (top_p_bucket(c[i].weight) <= last) c[m++] = c[i];
        n = m;
        sort_by_rank(s, c, n, max, temperature);
    }
    double cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].weight;
        if (cum >= target) return i + 1;
    }
    return n; /* the bucket sums reached the target but this order fell short by rounding */
}

/* Stage 5: the largest weight is exactly 1 (the argmax survives every
 * stage), so the threshold is min_p itself. Keeps the order. */
static size_t apply_min_p(lmc_sampler_candidate *c, size_t n, float min_p) {
    double threshold = min_p * (1 - REL_SLACK);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].weight >= threshold) c[m++] = c[i];
    return m;
}

static lmc_status reserve(lmc_sampler *s, int64_t vocab) {
    if (vocab <= s->cap) return LMC_OK;
    size_t v = (size_t)vocab;
    lmc_sampler_candidate *c = realloc(s->cand, v * sizeof *c);
    if (c) s->cand = c;
    uint64_t *k = realloc(s->keys, v * sizeof *k);
    if (k) s->keys = k;
    uint64_t *t = realloc(s->keys_tmp, v * sizeof *t);
    if (t) s->keys_tmp = t;
    if (!c || !k || !t)
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "sampler: out of memory for %lld candidates", (long long)vocab);
    s->cap = vocab;
    return LMC_OK;
}

/* Stages 2-5 for temperature > 0 on logits already through stage 1. */
static lmc_status run_filters(lmc_sampler *s, const float *logits, int64_t vocab, float max, size_t *n_out,
                              double *total_out) {
    LMC_CHECK(reserve(s, vocab));
    const lmc_sampler_config *cfg = &s->cfg;
    float temperature = cfg->temperature;
    lmc_sampler_candidate *c = s->cand;
    size_t n;
    double total;
    double mass[4][TOP_P_BUCKETS] = {{0}}, (*hist)[TOP_P_BUCKETS] = NULL;
    if (cfg->top_k > 0 && cfg->top_k < vocab) {
        n = select_top_k(c, logits, vocab, (size_t)cfg->top_k);
        sort_by_rank(s, c, n, max, temperature);
        total = total_weight(c, n);
    } else {
        bool top_p = cfg->top_p < 1.0f;
        if (top_p) hist = mass;
        /* tiny weights left out where no filter could keep them (checked for top-p below) */
        float floor = top_p || cfg->min_p * (1 - REL_SLACK) >= TINY_WEIGHT ? TINY_WEIGHT : 0.0f;
        double kept;
        LMC_CHECK(collect_all(s, logits, vocab, max, floor, &n, &total, &kept, hist));
        if (floor > 0 && top_p && kept < cfg->top_p * total * (1 - REL_SLACK)) {
            /* the nucleus reaches below the floor: every token */
            memset(mass, 0, sizeof mass);
            LMC_CHECK(collect_all(s, logits, vocab, max, 0.0f, &n, &total, &kept, hist));
        }
    }
    if (cfg->top_p < 1.0f) n = apply_top_p(s, c, n, hist ? hist[0] : NULL, total, max, temperature, cfg->top_p);
    if (cfg->min_p > 0.0f) n = apply_min_p(c, n, cfg->min_p);
    /* The draw's running sum must end at this total: re-add in the final
     * order whenever a filter ran. */
    if (cfg->top_p < 1.0f || cfg->min_p > 0.0f) total = total_weight(c, n);
    *n_out = n;
    *total_out = total;
    return LMC_OK;
}

/* Temperature alone (no filter): the inverse-CDF draw over every token in id
 * order, without writing candidates. One vector pass weighs the tokens and
 * sums them per block of DRAW_BLOCK; the draw finds its block from the
 * block sums, then its token by re-weighing that block alone. */

static lmc_status draw_all(lmc_sampler *s, const float *logits, int64_t vocab, float max, int32_t *token,
                           float *logprob) {
    int64_t nb = (vocab + DRAW_BLOCK - 1) / DRAW_BLOCK;
    const float T = s->cfg.temperature;
    double total;
    LMC_CHECK(weigh(s, logits, vocab, max, NULL, 0.0f, &total));
    /* The block where the running sum passes u, then the token inside it; if
     * rounding leaves u past every sum, the last token of non-zero weight. */
    double u = lmc_rng_uniform(&s->rng) * total, cum = 0;
    int64_t b = 0;
    while (b < nb - 1 && !(u < cum + s->bsum[b])) cum += s->bsum[b++];
    int64_t i0 = b * DRAW_BLOCK, i1 = i0 + DRAW_BLOCK < vocab ? i0 + DRAW_BLOCK : vocab, pick = -1, last = -1;
    for (int64_t i = i0; i < i1; i++) {
        float w = weight_of(max, logits[i], T);
        if (w > 0) last = i;
        cum += w;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    if (pick < 0) { /* past the sums by rounding: the last token that can be drawn */
        for (int64_t bb = b; bb >= 0 && last < 0; bb--)
            for (int64_t i = bb * DRAW_BLOCK; i < (bb + 1) * DRAW_BLOCK && i < vocab; i++)
                if (weight_of(max, logits[i], T) > 0) last = i;
        pick = last;
    }
    *token = (int32_t)pick;
    if (logprob) *logprob = (float)(log((double)weight_of(max, logits[pick], T)) - log(total));
    return LMC_OK;
}

/* --- public entry points ---------------------------------------------------- */

lmc_status lmc_sampler_filter(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history, size_t n_history,
                              const lmc_sampler_candidate **cand, size_t *n, double *total) {
    if (!cand || !n || !total) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: NULL output");
    int64_t best;
    LMC_CHECK(prepare(s, logits, vocab, history, n_history, &best));
    if (s->cfg.temperature == 0) {
        LMC_CHECK(reserve(s, 1));
        s->cand[0] = (lmc_sampler_candidate){(int32_t)best, logits[best], 1.0f};
        *cand = s->cand;
        *n = 1;
        *total = 1.0;
        return LMC_OK;
    }
    LMC_CHECK(run_filters(s, logits, vocab, logits[best], n, total));
    *cand = s->cand;
    return LMC_OK;
}

lmc_status lmc_sampler_sample(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history, size_t n_history,
                              int32_t *token, float *logprob) {
    if (!token) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: token is NULL");
    int64_t best;
    LMC_CHECK(prepare(s, logits, vocab, history, n_history, &best));
    float max = logits[best];

    if (s->cfg.temperature == 0) {
        *token = (int32_t)best;
        if (logprob) {
            double z = 0;
            for (int64_t i = 0; i < vocab; i++) z += expf(logits[i] - max); /* -inf gives 0 */
            *logprob = (float)-log(z);
        }
        return LMC_OK;
    }

    const lmc_sampler_config *cfg = &s->cfg;
    if ((cfg->top_k <= 0 || cfg->top_k >= vocab) && cfg->top_p >= 1.0f && cfg->min_p <= 0.0f)
        return draw_all(s, logits, vocab, max, token, logprob);
    size_t n;
    double total;
    LMC_CHECK(run_filters(s, logits, vocab, max, &n, &total));
    const lmc_sampler_candidate *c = s->cand;
    /* Inverse-CDF draw over the kept weights in their current order. If
     * rounding leaves u at or past the last sum, take the last token of
     * non-zero weight. */
    double u = lmc_rng_uniform(&s->rng) * total, cum = 0;
    size_t pick = n;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].weight;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    if (pick == n) {
        pick = n - 1;
        while (pick > 0 && c[pick].weight == 0) pick--;
    }
    *token = c[pick].id;
    if (logprob) *logprob = (float)(log((double)c[pick].weight) - log(total));
    return LMC_OK;
}

/* --- log-probabilities of the model's distribution ------------------------ */

lmc_status lmc_logprobs_scan(const float *logits, int64_t vocab, int n_top, double *lse, lmc_token_logprob *top) {
    if (!logits || vocab <= 0 || !lse || n_top < 0 || (n_top && !top))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logprobs: bad arguments");
    LMC_CHECK(check_logits(logits, vocab));
    int64_t best = argmax_logits(logits, vocab);
    if (best < 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "sampler: every logit is -inf, no token is possible");
    /* sum exp(logit - max) in four lanes, each block of 256 added into a double */
    const float max = logits[best];
    const v4f mv = {max, max, max, max}, one = {1.0f, 1.0f, 1.0f, 1.0f};
    double sum = 0;
    int64_t i = 0;
    const weights_fn wide = wide_weights();
    float wb[256];
    while (i + 4 <= vocab) {
        v4f acc = {0};
        if (wide && i + 256 <= vocab) { /* the same weights, a wider vector at a time, added in the same order */
            wide(logits + i, 256, max, 1.0f, wb);
            for (int k = 0; k < 256; k += 4) acc += load4(wb + k);
            i += 256;
        } else {
            for (int64_t end = i + 256 < vocab ? i + 256 : vocab; i + 4 <= end; i += 4) acc += weight_of4(mv, load4(logits + i), one);
        }
        sum += (double)acc[0] + acc[1] + acc[2] + acc[3];
    }
    for (; i < vocab; i++) sum += weight_of(max, logits[i], 1.0f);
    *lse = (double)max + log(sum);
    /* the n_top largest by insertion into a sorted list: a later id with an
     * equal logit never displaces an earlier one */
    for (int k = 0; k < n_top; k++) top[k] = (lmc_token_logprob){-1, -INFINITY};
    int have = 0;
    for (int64_t j = 0; j < vocab && n_top; j++) {
        float x = logits[j];
        if (have == n_top && !(x > top[n_top - 1].logprob)) continue;
        if (x == -INFINITY) continue;
        int k = have < n_top ? have++ : n_top - 1;
        while (k > 0 && top[k - 1].logprob < x) {
            top[k] = top[k - 1];
            k--;
        }
        top[k] = (lmc_token_logprob){(int32_t)j, x};
    }
    for (int k = 0; k < have; k++) top[k].logprob = (float)((double)top[k].logprob - *lse);
    return LMC_OK;
}

lmc_status lmc_logprobs_append(const float *raw, int64_t vocab, int32_t tok, int n_top, size_t n, float **lp,
                               lmc_token_logprob **top) {
    lmc_token_logprob step[LMC_MAX_TOP_LOGPROBS];
    if (n_top > LMC_MAX_TOP_LOGPROBS || tok < 0 || tok >= vocab)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logprobs: bad arguments");
    double lse;
    LMC_CHECK(lmc_logprobs_scan(raw, vocab, n_top, &lse, step));
    float *l = realloc(*lp, (n + 1) * sizeof *l);
    if (!l) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    *lp = l;
    l[n] = (float)((double)raw[tok] - lse);
    if (n_top) {
        lmc_token_logprob *t = realloc(*top, (n + 1) * (size_t)n_top * sizeof *t);
        if (!t) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        *top = t;
        memcpy(t + n * (size_t)n_top, step, (size_t)n_top * sizeof *t);
    }
    return LMC_OK;
}
