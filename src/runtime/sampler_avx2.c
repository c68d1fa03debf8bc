/* The sampler's weight pass eight lanes at a time (see sampler_exp.h and
 * sampler_avx512.c): the same bits. Compiled for AVX2, called only where
 * that path is active. */
#include "runtime/sampler_exp.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

LMC_DEFINE_SAMPLER_WEIGHTS(lmc_sampler_weights_avx2, v8f, v8i)
