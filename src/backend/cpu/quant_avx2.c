/* AVX2 quantised matmul (needs AVX2 and FMA), driven by lmc_qmm_run.
 *
 * 4 bits: 32 bytes of a weight row (64 elements, one "block") are loaded
 * into a ymm whose u32 lane j holds elements 8j..8j+7; for each nibble
 * position t, (v >> 4t) & 15 converted to f32 is multiplied with x laid out
 * to match (xp[block][t][j] = x[64*block + 8j + t]). 8 bits: 32 bytes are 32
 * elements, lane j holding 4j..4j+3 in bytes t = 0..3. The f32 lanes each
 * cover one u32 word, hence one group, so the group scales are permuted into
 * lanes once per block (F = 0 in the plan: y = q). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant.h"

static inline float load_x(const void *x, lmc_dtype dt, int64_t k) {
    switch (dt) {
    case LMC_F32: return ((const float *)x)[k];
    case LMC_BF16: return lmc_quant_bf16(((const uint16_t *)x)[k]);
    default: return lmc_f16_to_f32(((const uint16_t *)x)[k]);
    }
}

/* Elements per block: 64 for 4 bits, 32 for 8 bits; epl = 32 / bits per lane. */
static void prep_x(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row;
    const int64_t E = p->bits == 4 ? 64 : 32, epl = 32 / p->bits;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / E, j = (k % E) / epl, t = k % epl;
        float v = load_x(x, p->xdt, k);
        xp[(b * epl + t) * 8 + j] = v;
        sx[k / p->group_size] += v;
    }
}

/* sF = s and cF = b for weight row n (y = q), zero past G. */
static void prep_w(const lmc_qmm_plan *p, int64_t n, float *sF, float *cF) {
    int64_t i = n * p->G;
    int64_t g = 0;
    if (p->sdt == LMC_F32) {
        memcpy(sF, (const float *)p->scales + i, (size_t)p->G * sizeof(float));
        memcpy(cF, (const float *)p->biases + i, (size_t)p->G * sizeof(float));
        g = p->G;
    } else if (p->sdt == LMC_BF16) {
        const uint16_t *s = (const uint16_t *)p->scales + i, *b = (const uint16_t *)p->biases + i;
        for (; g + 8 <= p->G; g += 8) {
            _mm256_store_ps(sF + g, _mm256_castsi256_ps(_mm256_slli_epi32(
                                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + g))), 16)));
            _mm256_store_ps(cF + g, _mm256_castsi256_ps(_mm256_slli_epi32(
                                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + g))), 16)));
        }
        for (; g < p->G; g++) {
            sF[g] = lmc_quant_bf16(s[g]);
            cF[g] = lmc_quant_bf16(b[g]);
        }
    } else {
        const uint16_t *s = (const uint16_t *)p->scales + i, *b = (const uint16_t *)p->biases + i;
        for (; g + 8 <= p->G; g += 8) {
            _mm256_store_ps(sF + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + g))));
            _mm256_store_ps(cF + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + g))));
        }
        for (; g < p->G; g++) {
            sF[g] = lmc_f16_to_f32(s[g]);
            cF[g] = lmc_f16_to_f32(b[g]);
        }
    }
    for (; g < p->G_pad; g++) sF[g] = cF[g] = 0.0f;
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void kernel_body(const lmc_qmm_plan *p, const uint8_t *w,
                                                              const float *sF, const float *cF, const uint8_t *xp,
                                                              const float *sx, const int MR, const int BITS,
                                                              float *res) {
    const int E = BITS == 4 ? 64 : 32, epl = 32 / BITS, gs = p->group_size; /* lane l: elements l*epl.. of a block */
    const __m256i qmask = _mm256_set1_epi32((1 << BITS) - 1);
    /* lane l covers elements [l*epl, (l+1)*epl) of the block: its group within the block */
    const __m256i gidx = _mm256_loadu_si256((const __m256i *)p->gidx);
    const int64_t nblk = (p->K + E - 1) / E, full = p->K / E;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nblk; b++) {
        __m256i v = b < full ? _mm256_loadu_si256((const __m256i *)(w + b * 32))
                             : _mm256_maskload_epi32((const int *)(w + b * 32),
                                                     _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0));
        int64_t g = (b * E) >> p->gshift;
        __m256 s = gs >= E ? _mm256_set1_ps(sF[g]) : _mm256_permutevar8x32_ps(_mm256_loadu_ps(sF + g), gidx);
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
#pragma GCC unroll 8
        for (int t = 0; t < epl; t++) {
            __m256 y = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, t * BITS), qmask));
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const float *xb = (const float *)(xp + (size_t)r * p->xp_bytes) + (b * epl + t) * 8;
                a[r] = _mm256_fmadd_ps(y, _mm256_load_ps(xb), a[r]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) acc[r] = _mm256_fmadd_ps(a[r], s, acc[r]);
    }
    for (int64_t g = 0; g < p->G_pad; g += 8) {
        __m256 c = _mm256_load_ps(cF + g);
        for (int r = 0; r < MR; r++) acc[r] = _mm256_fmadd_ps(c, _mm256_loadu_ps(sx + r * p->G_pad + g), acc[r]);
    }
    for (int r = 0; r < MR; r++) res[r] = hsum(acc[r]);
}

static void kernel(const lmc_qmm_plan *p, const uint8_t *w, const float *sF, const float *cF, const uint8_t *xp,
                   const float *sx, int mr, float *res) {
#define KB(MR)                                                                   \
    case MR:                                                                     \
        if (p->bits == 4) kernel_body(p, w, sF, cF, xp, sx, MR, 4, res);        \
        else kernel_body(p, w, sF, cF, xp, sx, MR, 8, res);                     \
        break;
    switch (mr) {
        KB(1)
        KB(2)
        KB(3)
        KB(4)
    }
#undef KB
}

lmc_status lmc_quantized_matmul_avx2(lmc_array *out, const lmc_array *x, const lmc_array *wq,
                                     const lmc_array *scales, const lmc_array *biases, int group_size, int bits) {
    if (bits != 4 && bits != 8) return lmc_quantized_matmul_scalar(out, x, wq, scales, biases, group_size, bits);
    lmc_qmm_plan p;
    memset(&p, 0, sizeof p);
    p.M = x->shape[0];
    p.K = x->shape[1];
    p.N = out->shape[1];
    p.G = p.K / group_size;
    p.group_size = group_size;
    p.bits = bits;
    p.wq = lmc_array_ptr(wq);
    p.row_bytes = (size_t)p.K * (size_t)bits / 8;
    p.scales = lmc_array_ptr(scales);
    p.biases = lmc_array_ptr(biases);
    p.sdt = scales->dtype;
    p.x = lmc_array_ptr(x);
    p.xdt = x->dtype;
    p.out = lmc_array_ptr(out);
    p.odt = out->dtype;
    p.mr = 4;
    p.F = 0.0f;
    p.gshift = __builtin_ctz((unsigned)group_size);
    for (int l = 0; l < 16; l++) p.gidx[l] = l * (32 / bits) / group_size; /* a lane covers one u32 word */
    /* x in f32, whole blocks (64 elements for 4 bits, 32 for 8), rounded up to 64 bytes */
    int64_t E = bits == 4 ? 64 : 32;
    p.xp_bytes = ((size_t)((p.K + E - 1) / E * E) * sizeof(float) + 63) / 64 * 64;
    p.prep_x = prep_x;
    p.prep_w = prep_w;
    p.kernel = kernel;
    return lmc_qmm_run(&p);
}
