/* The sampler's weight pass sixteen lanes at a time (see sampler_exp.h):
 * the same IEEE operations as the four-lane and scalar forms (ISO C, so no
 * multiply-add is fused), hence the same bits. Compiled for AVX-512, called
 * only where that path is active. */
#include "runtime/sampler_exp.h"

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

LMC_DEFINE_EXP_NEG_VEC(exp_neg16, v16f, v16i)

void lmc_sampler_weights_avx512(const float *logits, int64_t n, float max, float temperature, float *out) {
    const v16f mv = (v16f){0} + max, tv = (v16f){0} + temperature;
    for (int64_t i = 0; i + 16 <= n; i += 16) {
        v16f x;
        memcpy(&x, logits + i, sizeof x);
        v16f w = exp_neg16(-((mv - x) / tv));
        memcpy(out + i, &w, sizeof w);
    }
}
