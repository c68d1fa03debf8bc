/* CPU fused kernels: the scalar oracle (fused_scalar.c) and the fast
 * versions (fused_fast.h, compiled once per ISA by fused_avx2.c and
 * fused_avx512.c). Kernel contract beyond backend/kernels.h: out is
 * contiguous; the sdpa mask, when given, is already broadcast to
 * [B, Hq, Tq, Tk] (stride 0 on broadcast axes). */
#ifndef LMC_BACKEND_CPU_FUSED_INTERNAL_H
#define LMC_BACKEND_CPU_FUSED_INTERNAL_H

#include "backend/cpu/cpu_kernels.h"

lmc_status lmc_cpu_rms_norm_scalar(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight);
lmc_status lmc_cpu_layer_norm_scalar(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps);
lmc_status lmc_cpu_rope_scalar(lmc_array *out, const lmc_array *x, const lmc_rope_params *p, const lmc_array *inv_freqs,
                               const lmc_array *positions);
lmc_status lmc_cpu_sdpa_scalar(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,
                               const lmc_sdpa_params *p);

#define LMC_DECLARE_FUSED(isa)                                                                                         \
    lmc_status lmc_cpu_rms_norm_##isa(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps,              \
                                      bool one_plus_weight);                                                           \
    lmc_status lmc_cpu_layer_norm_##isa(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b,    \
                                        float eps);                                                                    \
    lmc_status lmc_cpu_rope_##isa(lmc_array *out, const lmc_array *x, const lmc_rope_params *p,                        \
                                  const lmc_array *inv_freqs, const lmc_array *positions);                             \
    lmc_status lmc_cpu_sdpa_##isa(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,          \
                                  const lmc_sdpa_params *p);                                                           \
    lmc_status lmc_cpu_add_rms_norm_##isa(lmc_array *out, lmc_array *sum, const lmc_array *a, const lmc_array *b,      \
                                          const lmc_array *w, float eps, bool one_plus_weight);                        \
    lmc_status lmc_cpu_rope_qk_##isa(lmc_array *const out[2], const lmc_array *const x[2], bool norm,                 \
                                     const lmc_array *const w[2], float eps, bool one_plus_weight,                     \
                                     const lmc_rope_params *p, const lmc_array *inv_freqs, const lmc_array *positions);
LMC_DECLARE_FUSED(avx2)
LMC_DECLARE_FUSED(avx512)

/* The position of token t in batch row bi (positions i32 [T] or [B, T]). */
static inline int32_t lmc_rope_pos(const lmc_array *positions, int64_t bi, int64_t t) {
    const int32_t *p = (const int32_t *)lmc_array_ptr(positions);
    if (positions->ndim == 1) return p[t * positions->strides[0]];
    return p[bi * positions->strides[0] + t * positions->strides[1]];
}

/* HF's angle, in f32: position * scale * inv_freq. */
static inline float lmc_rope_angle(int32_t pos, float scale, float inv_freq) { return ((float)pos * scale) * inv_freq; }

#endif
