/* The sampler chain: turns one row of logits into the next token.
 *
 * Order (llama.cpp / Hugging Face semantics), each stage seeing the output of
 * the one before:
 *   1. repeat penalty: for each distinct id among the last repeat_last_n
 *      entries of the history (-1: all of it), a logit > 0 is divided by the
 *      penalty and any other logit is multiplied by it (the CTRL rule);
 *   2. temperature: logits / T; T = 0 is greedy (argmax, ties to the lowest
 *      id) and skips every later stage;
 *   3. top-k: keep the k largest logits (ties to the lowest id);
 *   4. top-p: keep the smallest set of most probable tokens whose cumulative
 *      probability (under the distribution left by top-k) reaches p; at least
 *      one token is always kept;
 *   5. min-p: drop tokens whose probability is below min_p times the largest
 *      probability;
 *   6. draw from the renormalised remaining distribution with the sampler's
 *      seeded generator (xoshiro256**, runtime/rng.h).
 * Logits: NaN and +inf are errors (LMC_ERR_INVALID_ARGUMENT); -inf marks an
 * impossible token; a row that is all -inf is an error. The top-p and
 * min-p thresholds are lowered by a relative 1e-6, so that a tie that holds
 * in exact arithmetic (mass exactly p; probability exactly min_p times the
 * largest) counts as reached despite float rounding.
 */
#ifndef LMC_RUNTIME_SAMPLER_H
#define LMC_RUNTIME_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "lmc/model.h"

typedef struct lmc_sampler lmc_sampler;

/* Validates cfg (NULL: lmc_sampler_config_default()) and creates a sampler
 * whose generator starts at cfg->seed. Each invalid field is reported as
 * LMC_ERR_INVALID_ARGUMENT naming the field and the value. */
lmc_status lmc_sampler_create(const lmc_sampler_config *cfg, lmc_sampler **out);

/* Chooses the next token from logits[vocab] (modified in place by the repeat
 * penalty). history holds the prompt and the ids generated so far (every id
 * must lie in [0, vocab)). *logprob (may be NULL) receives the log-probability
 * of the chosen token under the final distribution; for greedy sampling,
 * under the softmax of the penalised logits. */
lmc_status lmc_sampler_sample(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history,
                              size_t n_history, int32_t *token, float *logprob);

/* A token that can still be drawn after the chain's filters, with its
 * unnormalised weight exp((logit - max) / T). */
typedef struct lmc_sampler_candidate {
    int32_t id;
    float logit;  /* after the repeat penalty, before temperature */
    float weight;
} lmc_sampler_candidate;

/* Runs stages 1-5 without drawing: *cand points at the *n remaining tokens
 * (valid until the next call on s), *total is the sum of their weights. The
 * order is by decreasing logit (ties by id) when top-k or top-p ran,
 * otherwise by id. Greedy samplers leave the argmax alone with weight 1.
 * Does not advance the generator. */
lmc_status lmc_sampler_filter(lmc_sampler *s, float *logits, int64_t vocab, const int32_t *history,
                              size_t n_history, const lmc_sampler_candidate **cand, size_t *n, double *total);

/* The model's own distribution over logits[vocab] (untouched; before any
 * penalty or temperature): *lse receives log(sum_i exp(logits[i])), so token
 * i's log-probability is logits[i] - *lse, and top[0..n_top) the n_top most
 * probable tokens with their log-probabilities, most probable first (ties:
 * lower id first; fewer than n_top possible tokens leave id -1 and
 * -INFINITY). NaN or +inf logits are an error, as in lmc_sampler_sample. */
lmc_status lmc_logprobs_scan(const float *logits, int64_t vocab, int n_top, double *lse, lmc_token_logprob *top);

/* Appends one generated token's entry to a result's log-probabilities: *lp
 * and *top (n_top per step; NULL and untouched when n_top is 0) hold n
 * steps and grow by one, from raw, the step's logits before the sampler
 * changed them. */
lmc_status lmc_logprobs_append(const float *raw, int64_t vocab, int32_t tok, int n_top, size_t n, float **lp,
                               lmc_token_logprob **top);

/* NULL is ignored. */
void lmc_sampler_free(lmc_sampler *s);

#endif
