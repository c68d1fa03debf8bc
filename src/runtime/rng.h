/* Seeded pseudo-random numbers for sampling: xoshiro256** seeded through
 * splitmix64. Integer arithmetic only, so a seed gives the same stream on
 * every machine and compiler. Not for cryptography. */
#ifndef LMC_RUNTIME_RNG_H
#define LMC_RUNTIME_RNG_H

#include <stdint.h>

typedef struct lmc_rng {
    uint64_t s[4];
} lmc_rng;

/* Starts the stream for `seed` (any value, 0 included). */
void lmc_rng_seed(lmc_rng *r, uint64_t seed);
/* The next 64 random bits. */
uint64_t lmc_rng_next(lmc_rng *r);
/* A uniform double in [0, 1) with 53 random bits. */
double lmc_rng_uniform(lmc_rng *r);

#endif
