/* The sampler's exp: the one definition its scalar, four-lane and
 * sixteen-lane (sampler_avx512.c) weight computations share, so that every
 * path gives the same bits and a seed draws the same token on any CPU. */
#ifndef LMC_RUNTIME_SAMPLER_EXP_H
#define LMC_RUNTIME_SAMPLER_EXP_H

#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0 (the sampler's weights): 1 at 0 exactly, 0 below -87
 * (where expf gives at most 1.6e-38), otherwise within a few ulp of expf.
 * The core is written once, as a macro, so the scalar and the vector
 * versions do the same IEEE operations in the same order and agree bit for
 * bit (runtime code is ISO C17: no FMA contraction). x = n ln2 + r with
 * |r| <= ln2/2 (n by the 1.5 * 2^23 rounding trick, ln2 in two parts for an
 * exact n * ln2_hi), then a degree-7 Taylor polynomial of r (truncation
 * below 1e-8 relative) times 2^n built from its bits (n >= -126 here).
 * (The CPU kernels' v_exp is the same method but fused multiply-adds on the
 * AVX paths, so its bits depend on the machine; these do not, and a seed
 * draws the same token on any CPU.) */
#define EXP_NEG_CORE(T, xc)                                                                                          \
    T t = (xc) * 1.44269504088896341f + 12582912.0f;                                                                 \
    T n = t - 12582912.0f;                                                                                           \
    T r = ((xc) - n * 0.693359375f) + n * 2.12194440e-4f;                                                            \
    T p = r * (1.0f / 5040.0f) + (1.0f / 720.0f);                                                                    \
    p = p * r + (1.0f / 120.0f);                                                                                     \
    p = p * r + (1.0f / 24.0f);                                                                                      \
    p = p * r + (1.0f / 6.0f);                                                                                       \
    p = p * r + 0.5f;                                                                                                \
    p = p * r + 1.0f;                                                                                                \
    p = p * r + 1.0f;

static inline float lmc_exp_neg(float x) {
    if (!(x >= -87.0f)) return 0.0f; /* and -inf */
    EXP_NEG_CORE(float, x)
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Defines NAME(x), lmc_exp_neg lane by lane for the float vector type VF
 * (int vector VI of the same lanes): the same operations in the same order. */
#define LMC_DEFINE_EXP_NEG_VEC(NAME, VF, VI)                                                                         \
    static inline VF NAME(VF x) {                                                                                    \
        const VF lo = (VF){0} - 87.0f;                                                                               \
        VI in = x >= lo;                                                                                             \
        VF xc = (VF)((in & (VI)x) | (~in & (VI)lo));                                                                 \
        EXP_NEG_CORE(VF, xc)                                                                                         \
        VI bits = (__builtin_convertvector(n, VI) + 127) << 23;                                                      \
        return (VF)(in & (VI)(p * (VF)bits));                                                                        \
    }

/* Defines NAME(logits, n, max, temperature, out): the weights of n logits
 * (n a multiple of VF's lanes) for the sampler's one pass,
 * exp(-((max - logit) / temperature)) as lmc_exp_neg gives it, a vector at a
 * time; for the files compiled for a wider instruction set. */
#define LMC_DEFINE_SAMPLER_WEIGHTS(NAME, VF, VI)                                                                     \
    LMC_DEFINE_EXP_NEG_VEC(NAME##_exp, VF, VI)                                                                       \
    void NAME(const float *logits, int64_t n, float max, float temperature, float *out) {                            \
        const VF mv = (VF){0} + max, tv = (VF){0} + temperature;                                                     \
        for (int64_t i = 0; i + (int64_t)(sizeof(VF) / 4) <= n; i += (int64_t)(sizeof(VF) / 4)) {                   \
            VF x;                                                                                                    \
            memcpy(&x, logits + i, sizeof x);                                                                        \
            VF w = NAME##_exp(-((mv - x) / tv));                                                                     \
            memcpy(out + i, &w, sizeof w);                                                                           \
        }                                                                                                            \
    }

/* Sixteen lanes (sampler_avx512.c) and eight (sampler_avx2.c), called only
 * where that kernel path is active. */
void lmc_sampler_weights_avx512(const float *logits, int64_t n, float max, float temperature, float *out);
void lmc_sampler_weights_avx2(const float *logits, int64_t n, float max, float temperature, float *out);

#endif
