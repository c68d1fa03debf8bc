/* AVX-512 quantised matmul (needs AVX512F/BW/BF16), driven by lmc_qmm_run.
 *
 * 4 bits: 64 bytes of a weight row (128 elements, one "block") are loaded
 * into a zmm. Its 16-bit lane w holds elements 4w..4w+3 in nibbles t=0..3.
 * Shifting nibble t to bits 3..6 and OR-ing 0x3F80 gives, per lane, the
 * bf16 number y = 1 + q/16 exactly, so four shift+ternlog pairs turn 128
 * weights into four bf16 vectors without any widening. x is laid out to
 * match (xp[block][t][part][w] = x[128*block + 4w + t]) and vdpbf16ps does 32
 * multiply-adds per instruction. bf16 x is used as is; f32 x is split into
 * three bf16 parts (hi + mid + lo, exact for normal numbers) and f16 into
 * two, so the product keeps f32 accuracy. f32 lane i of the accumulator
 * covers u32 word i (elements 8i..8i+7) and thus a single group; the group
 * scales are permuted into lanes once per block.
 *
 * 8 bits: lane j (u32) holds elements 4j..4j+3; byte t shifted to bits
 * 15..22 and OR-ed with 0x3F800000 is the f32 number y = 1 + q/256, and
 * plain f32 FMAs do the rest (8-bit weights are twice the bytes, so the
 * compute per byte is half). */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/quant.h"

/* --- preparing x -------------------------------------------------------- */

static inline float load_x(const void *x, lmc_dtype dt, int64_t k) {
    switch (dt) {
    case LMC_F32: return ((const float *)x)[k];
    case LMC_BF16: return lmc_quant_bf16(((const uint16_t *)x)[k]);
    default: return lmc_f16_to_f32(((const uint16_t *)x)[k]);
    }
}

static int bf16_parts(lmc_dtype dt) { return dt == LMC_BF16 ? 1 : dt == LMC_F16 ? 2 : 3; }

static void prep_x4(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    const int P = bf16_parts(p->xdt);
    uint16_t *xp = xp_row;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / 128, w = (k % 128) / 4, t = k % 4;
        uint16_t *dst = xp + ((b * 4 + t) * P) * 32 + w;
        float sum = 0.0f;
        if (P == 1) {
            dst[0] = ((const uint16_t *)x)[k];
            sum = lmc_quant_bf16(dst[0]);
        } else {
            float r = load_x(x, p->xdt, k);
            for (int part = 0; part < P; part++) {
                uint16_t h = lmc_f32_to_bf16(r);
                dst[part * 32] = h;
                sum += lmc_quant_bf16(h);
                r -= lmc_quant_bf16(h);
            }
        }
        sx[k / p->group_size] += sum;
    }
}

static void prep_x8(const lmc_qmm_plan *p, const void *x, void *xp_row, float *sx) {
    float *xp = xp_row;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b = k / 64, j = (k % 64) / 4, t = k % 4;
        float v = load_x(x, p->xdt, k);
        xp[(b * 4 + t) * 16 + j] = v;
        sx[k / p->group_size] += v;
    }
}

/* sF = F*s and cF = b - F*s for weight row n, zero past G. */
static void prep_w(const lmc_qmm_plan *p, int64_t n, float *sF, float *cF) {
    const __m512 F = _mm512_set1_ps(p->F);
    for (int64_t g = 0; g < p->G_pad; g += 16) {
        int64_t left = p->G - g;
        __mmask16 m = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        int64_t i = n * p->G + g;
        __m512 s, b;
        if (p->sdt == LMC_F32) {
            s = _mm512_maskz_loadu_ps(m, (const float *)p->scales + i);
            b = _mm512_maskz_loadu_ps(m, (const float *)p->biases + i);
        } else if (p->sdt == LMC_BF16) {
            s = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p->scales + i)), 16));
            b = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p->biases + i)), 16));
        } else {
            s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p->scales + i));
            b = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p->biases + i));
        }
        __m512 sf = _mm512_mul_ps(s, F);
        _mm512_store_ps(sF + g, sf);
        _mm512_store_ps(cF + g, _mm512_sub_ps(b, sf));
    }
}

/* --- kernels ------------------------------------------------------------ */

/* The scales of one block of E elements, one per f32 lane: lane l covers
 * elements [E*blk + l*E/16, E*blk + (l+1)*E/16), p->gidx[l] says which group
 * of the block that is. */
static inline __m512 block_scales(const lmc_qmm_plan *p, const float *sF, int64_t blk, int E, __m512i gidx) {
    int64_t g = (blk * E) >> p->gshift;
    if (p->group_size >= E) return _mm512_set1_ps(sF[g]);
    return _mm512_permutexvar_ps(gidx, _mm512_loadu_ps(sF + g));
}

/* rowacc[r] += sum_g cF_g * sx_g, then the horizontal sums. */
static inline __attribute__((always_inline)) void finish(const lmc_qmm_plan *p, const float *cF, const float *sx, int mr, __m512 *acc, float *res) {
    for (int64_t g = 0; g < p->G_pad; g += 16) {
        __m512 c = _mm512_load_ps(cF + g);
#pragma GCC unroll 4
        for (int r = 0; r < mr; r++) acc[r] = _mm512_fmadd_ps(c, _mm512_loadu_ps(sx + r * p->G_pad + g), acc[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) res[r] = _mm512_reduce_add_ps(acc[r]);
}

static inline __attribute__((always_inline)) void kernel4_body(const lmc_qmm_plan *p, const uint8_t *w,
                                                               const float *sF, const float *cF, const uint8_t *xp,
                                                               const float *sx, const int MR, const int P,
                                                               float *res) {
    const __m512i mask = _mm512_set1_epi16(0x0078), one = _mm512_set1_epi16(0x3F80);
    const __m512i gidx = _mm512_loadu_si512(p->gidx);
    const int64_t nblk = (p->K + 127) / 128, full = p->K / 128;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < nblk; b++) {
        __m512i v = b < full ? _mm512_loadu_si512(w + b * 64)
                             : _mm512_maskz_loadu_epi8((1ull << ((p->K % 128) / 2)) - 1, w + b * 64);
        /* (v & mask) | one: nibble t moved to bits 3..6 of each 16-bit lane */
        __m512i y[4] = {_mm512_ternarylogic_epi32(_mm512_slli_epi16(v, 3), mask, one, 0xEA),
                        _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 1), mask, one, 0xEA),
                        _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 5), mask, one, 0xEA),
                        _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 9), mask, one, 0xEA)};
        __m512 s = block_scales(p, sF, b, 128, gidx);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const __m512i *xb = (const __m512i *)(xp + (size_t)r * p->xp_bytes) + b * 4 * P;
            /* one chain per block; blocks are independent, so they overlap */
            __m512 a = _mm512_setzero_ps();
#pragma GCC unroll 3
            for (int part = 0; part < P; part++) {
                a = _mm512_dpbf16_ps(a, (__m512bh)y[0], (__m512bh)_mm512_load_si512(xb + 0 * P + part));
                a = _mm512_dpbf16_ps(a, (__m512bh)y[1], (__m512bh)_mm512_load_si512(xb + 1 * P + part));
                a = _mm512_dpbf16_ps(a, (__m512bh)y[2], (__m512bh)_mm512_load_si512(xb + 2 * P + part));
                a = _mm512_dpbf16_ps(a, (__m512bh)y[3], (__m512bh)_mm512_load_si512(xb + 3 * P + part));
            }
            acc[r] = _mm512_fmadd_ps(a, s, acc[r]);
        }
    }
    finish(p, cF, sx, MR, acc, res);
}

static void kernel4(const lmc_qmm_plan *p, const uint8_t *w, const float *sF, const float *cF, const uint8_t *xp,
                    const float *sx, int mr, float *res) {
    const int P = bf16_parts(p->xdt);
#define K4(MR)                                                                    \
    case MR:                                                                      \
        if (P == 1) kernel4_body(p, w, sF, cF, xp, sx, MR, 1, res);              \
        else if (P == 2) kernel4_body(p, w, sF, cF, xp, sx, MR, 2, res);         \
        else kernel4_body(p, w, sF, cF, xp, sx, MR, 3, res);                     \
        break;
    switch (mr) {
        K4(1)
        K4(2)
        K4(3)
        K4(4)
    }
#undef K4
}

static inline __attribute__((always_inline)) void kernel8_body(const lmc_qmm_plan *p, const uint8_t *w,
                                                               const float *sF, const float *cF, const uint8_t *xp,
                                                               const float *sx, const int MR, float *res) {
    const __m512i mask = _mm512_set1_epi32(0x007F8000), one = _mm512_set1_epi32(0x3F800000);
    const __m512i gidx = _mm512_loadu_si512(p->gidx);
    const int64_t nblk = (p->K + 63) / 64, full = p->K / 64;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < nblk; b++) {
        __m512i v = b < full ? _mm512_loadu_si512(w + b * 64) : _mm512_maskz_loadu_epi8((1ull << (p->K % 64)) - 1, w + b * 64);
        /* byte t moved to bits 15..22 of each 32-bit lane */
        __m512 y[4] = {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(v, 15), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_slli_epi32(v, 7), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 1), mask, one, 0xEA)),
                       _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 9), mask, one, 0xEA))};
        __m512 s = block_scales(p, sF, b, 64, gidx);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const float *xb = (const float *)(xp + (size_t)r * p->xp_bytes) + b * 64;
            __m512 a = _mm512_mul_ps(y[0], _mm512_load_ps(xb));
            a = _mm512_fmadd_ps(y[1], _mm512_load_ps(xb + 16), a);
            a = _mm512_fmadd_ps(y[2], _mm512_load_ps(xb + 32), a);
            a = _mm512_fmadd_ps(y[3], _mm512_load_ps(xb + 48), a);
            acc[r] = _mm512_fmadd_ps(a, s, acc[r]);
        }
    }
    finish(p, cF, sx, MR, acc, res);
}

static void kernel8(const lmc_qmm_plan *p, const uint8_t *w, const float *sF, const float *cF, const uint8_t *xp,
                    const float *sx, int mr, float *res) {
    switch (mr) {
    case 1: kernel8_body(p, w, sF, cF, xp, sx, 1, res); break;
    case 2: kernel8_body(p, w, sF, cF, xp, sx, 2, res); break;
    case 3: kernel8_body(p, w, sF, cF, xp, sx, 3, res); break;
    default: kernel8_body(p, w, sF, cF, xp, sx, 4, res); break;
    }
}

lmc_status lmc_quantized_matmul_avx512(lmc_array *out, const lmc_array *x, const lmc_array *wq,
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
    p.prep_w = prep_w;
    p.gshift = __builtin_ctz((unsigned)group_size);
    for (int l = 0; l < 16; l++) p.gidx[l] = l * (32 / bits) / group_size; /* a lane covers one u32 word */
    if (bits == 4) {
        p.F = 16.0f;
        p.xp_bytes = (size_t)((p.K + 127) / 128) * 4 * (size_t)bf16_parts(p.xdt) * 64;
        p.prep_x = prep_x4;
        p.kernel = kernel4;
    } else {
        p.F = 256.0f;
        p.xp_bytes = (size_t)((p.K + 63) / 64) * 256;
        p.prep_x = prep_x8;
        p.kernel = kernel8;
    }
    return lmc_qmm_run(&p);
}
