/* The sampler's weight pass sixteen lanes at a time (see sampler_exp.h):
 * the same IEEE operations as the four-lane and scalar forms (ISO C, so no
 * multiply-add is fused), hence the same bits. Compiled for AVX-512, called
 * only where that path is active. */
#include "runtime/sampler_exp.h"

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

LMC_DEFINE_SAMPLER_WEIGHTS(lmc_sampler_weights_avx512, v16f, v16i)
