/* MLX affine quantisation: hand-checked vectors, round trips, and the
 * quantised matmul on every kernel path against the dequantised product. */
#include <stdint.h>

#include "core/array.h"
#include "core/cpu.h"
#include "core/scratch.h"
#include "lmc/ops.h"
#include "backend/cpu/quant.h" /* LMC_QMM_STREAMS, LMC_QMM_STREAM_ROWS */
#include "ops/quant_internal.h"
#include "test_util.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float item_f32(const lmc_array *a, int64_t i) {
    float v[1];
    /* contiguous arrays only */
    switch (lmc_array_dtype(a)) {
    case LMC_F32: v[0] = ((const float *)lmc_array_data(a))[i]; break;
    case LMC_BF16: v[0] = lmc_bf16_to_f32(((const uint16_t *)lmc_array_data(a))[i]); break;
    default: v[0] = lmc_f16_to_f32(((const uint16_t *)lmc_array_data(a))[i]); break;
    }
    return v[0];
}

static lmc_array *from_floats(const float *v, lmc_dtype dt, int ndim, const int64_t *shape) {
    lmc_array *f = lmc_array_from_data(v, LMC_F32, ndim, shape);
    if (dt == LMC_F32) return f;
    lmc_array *a = lmc_empty(dt, ndim, shape);
    lmc_convert(lmc_array_data(a), dt, lmc_array_data(f), LMC_F32, (size_t)lmc_array_size(f));
    lmc_array_free(f);
    return a;
}

/* Normal(mean, std) values from a fixed generator (splitmix64 + Box-Muller). */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static lmc_array *random_normal(lmc_dtype dt, int ndim, const int64_t *shape, double mean, double std, uint64_t seed) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        double u1 = ((double)(rng_next(&seed) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
        v[i] = (float)(mean + std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    lmc_array *a = from_floats(v, dt, ndim, shape);
    free(v);
    return a;
}

static lmc_array *zeros(lmc_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    void *v = calloc((size_t)n + 1, 8);
    lmc_array *a = lmc_array_from_data(v, dt, ndim, shape);
    free(v);
    return a;
}

/* --- hand-checked MLX vectors ---------------------------------------------
 * Derived by hand from MLX's CPU quantize (mlx/backend/cpu/quantized.cpp),
 * see the comment in src/backend/cpu/quant_scalar.c for the algorithm. */

/* w = 0, 1, ..., 63, group 64, 4 bits. min 0, max 63: |min| > |max| is false,
 * so scale = -(63/15) = -4.2f, edge = max = 63, q0 = rint(63 / -4.2f) = -15,
 * scale = 63 / -15 = -4.2f (0xC0866666), bias = 63. q_i = rint((63 - i) / 4.2):
 * i = 0..7 -> 15 15 15 14 14 14 14 13 (62/4.2 = 14.76, 60/4.2 = 14.29,
 * 59/4.2 = 14.05, 57/4.2 = 13.57, 56/4.2 = 13.33), packed with element 0 in
 * the low nibble: 0xDEEEEFFF; ... i = 56..63 -> 2 1 1 1 1 0 0 0: 0x00011112. */
static void test_vector_arange64(void) {
    float w[64];
    for (int i = 0; i < 64; i++) w[i] = (float)i;
    const uint32_t expect[8] = {0xdeeeefff, 0xbccccddd, 0xaaaaabbb, 0x88889999,
                                0x66667777, 0x44455555, 0x22233334, 0x00011112};
    int64_t shape[2] = {1, 64};
    for (int d = 0; d < 2; d++) {
        lmc_dtype dt = d == 0 ? LMC_F32 : LMC_BF16;
        lmc_array *a = from_floats(w, dt, 2, shape), *s = NULL, *b = NULL;
        lmc_array *q = lmc_quantize(a, 64, 4, &s, &b);
        CHECK(q && s && b);
        if (!q) continue;
        CHECK(lmc_array_dtype(q) == LMC_U32 && lmc_array_dim(q, 1) == 8 && lmc_array_dim(s, 1) == 1);
        CHECK(lmc_array_dtype(s) == dt && lmc_array_dtype(b) == dt);
        const uint32_t *words = lmc_array_data(q);
        for (int i = 0; i < 8; i++) CHECKF(words[i] == expect[i], "word %d = 0x%08x", i, words[i]);
        if (dt == LMC_F32) {
            CHECKF(f32_bits(item_f32(s, 0)) == 0xC0866666u, "scale bits 0x%08x", f32_bits(item_f32(s, 0)));
        } else {
            /* q is computed with the f32 scale; only the stored scale is rounded:
             * bf16(-4.2) = -4.1875 (0xC086: 4 * (1 + 6/128)). */
            CHECKF(((const uint16_t *)lmc_array_data(s))[0] == 0xC086, "bf16 scale 0x%04x",
                   ((const uint16_t *)lmc_array_data(s))[0]);
        }
        CHECK(item_f32(b, 0) == 63.0f);
        /* the edge (the maximum) comes back exactly: q = 0 there */
        lmc_array *dq = lmc_dequantize(q, s, b, 64, 4);
        CHECK(dq && lmc_array_dtype(dq) == dt && item_f32(dq, 63) == 63.0f);
        lmc_array_free(dq);
        lmc_array_free(a);
        lmc_array_free(q);
        lmc_array_free(s);
        lmc_array_free(b);
    }
}

/* w = -8, -7.5, ..., 7.5 (group 32, 4 bits): |min| = 8 > |max| = 7.5, so
 * scale = 15.5/15, edge = min = -8, q0 = rint(-8 / 1.0333) = -8, hence scale
 * = -8 / -8 = 1 and bias = -8. q = rint(w + 8) rounds halves to even:
 * 0 0 1 2 2 2 3 4 | 4 4 5 6 6 6 7 8 | 8 8 9 10 10 10 11 12 | 12 12 13 14 14 14 15 15
 * (the last, 15.5 -> 16, clipped to 15). */
static void test_vector_mixed_sign(void) {
    float w[32];
    for (int i = 0; i < 32; i++) w[i] = -8.0f + 0.5f * (float)i;
    const uint32_t expect[4] = {0x43222100, 0x87666544, 0xcbaaa988, 0xffeeedcc};
    int64_t shape[1] = {32};
    lmc_array *a = from_floats(w, LMC_F32, 1, shape), *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(a, 32, 4, &s, &b);
    CHECK(q != NULL);
    if (q) {
        const uint32_t *words = lmc_array_data(q);
        for (int i = 0; i < 4; i++) CHECKF(words[i] == expect[i], "word %d = 0x%08x", i, words[i]);
        CHECK(item_f32(s, 0) == 1.0f && item_f32(b, 0) == -8.0f);
    }
    lmc_array_free(a);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
}

/* Constant groups: max == min gives scale = -eps = -(float)1e-7 (0xB3D6BF95)
 * and q0 = rint(0.5 / -1e-7) = -5e6 != 0, so scale = 0.5 / -5e6 (the same
 * f32) and bias = 0.5; all q = 0 and 0.5 comes back exactly. A zero group has
 * q0 = 0, so the bias is 0 and the scale stays -eps. */
static void test_vector_constant(void) {
    float w[64];
    for (int i = 0; i < 32; i++) w[i] = 0.5f, w[32 + i] = 0.0f;
    int64_t shape[2] = {2, 32};
    lmc_array *a = from_floats(w, LMC_F32, 2, shape), *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(a, 32, 4, &s, &b);
    CHECK(q != NULL);
    if (q) {
        const uint32_t *words = lmc_array_data(q);
        for (int i = 0; i < 8; i++) CHECK(words[i] == 0);
        CHECKF(f32_bits(item_f32(s, 0)) == 0xB3D6BF95u, "0x%08x", f32_bits(item_f32(s, 0)));
        CHECKF(f32_bits(item_f32(s, 1)) == 0xB3D6BF95u, "0x%08x", f32_bits(item_f32(s, 1)));
        CHECK(item_f32(b, 0) == 0.5f && item_f32(b, 1) == 0.0f);
        lmc_array *dq = lmc_dequantize(q, s, b, 32, 4);
        CHECK(dq != NULL);
        for (int i = 0; dq && i < 64; i++) CHECK(item_f32(dq, i) == w[i]);
        lmc_array_free(dq);
    }
    lmc_array_free(a);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
}

/* 8 bits, w = -3, -2.75, ..., 4.75 (group 32): |min| = 3 < |max| = 4.75, so
 * scale = -(7.75/255), edge = 4.75, q0 = rint(4.75 / -0.030392) = rint(-156.3)
 * = -156, scale = 4.75 / -156 = -0.030448718 (0xBCF96F97), bias = 4.75.
 * q_i = rint((4.75 - w_i) / 0.030448718): 255 246 238 230 | 222 213 205 197 ...
 * one byte each, element 0 in the low byte: 0xE6EEF6FF, 0xC5CDD5DE, ... */
static void test_vector_8bit(void) {
    float w[32];
    for (int i = 0; i < 32; i++) w[i] = -3.0f + 0.25f * (float)i;
    const uint32_t expect[8] = {0xe6eef6ff, 0xc5cdd5de, 0xa4acb5bd, 0x838c949c,
                                0x636b737b, 0x424a525a, 0x21293139, 0x00081019};
    int64_t shape[1] = {32};
    lmc_array *a = from_floats(w, LMC_F32, 1, shape), *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(a, 32, 8, &s, &b);
    CHECK(q && lmc_array_dim(q, 0) == 8);
    if (q) {
        const uint32_t *words = lmc_array_data(q);
        for (int i = 0; i < 8; i++) CHECKF(words[i] == expect[i], "word %d = 0x%08x", i, words[i]);
        CHECKF(f32_bits(item_f32(s, 0)) == 0xBCF96F97u, "0x%08x", f32_bits(item_f32(s, 0)));
        CHECK(item_f32(b, 0) == 4.75f);
    }
    lmc_array_free(a);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
}

/* 3 and 6 bits: the same little-endian bit stream, element i at bit i*bits.
 * 3 bits, w_i = i % 8: scale = -1, bias = 7, q_i = 7 - i % 8; eight q make
 * the 24-bit value V = 7 | 6<<3 | 5<<6 | ... | 0<<21 = 0x053977, so word 0 =
 * V | (V & 0xFF) << 24 = 0x77053977 and word 1 = 0x39770539.
 * 6 bits, w_i = i: scale = 31 / -63, bias = 31, q = 63 61 59 57 55 53 ...:
 * word 0 = 63 | 61<<6 | 59<<12 | 57<<18 | 55<<24 | (53 & 3)<<30 = 0x77E7BF7F. */
static void test_vector_odd_bits(void) {
    float w[32];
    int64_t shape[1] = {32};
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 8);
    lmc_array *a = from_floats(w, LMC_F32, 1, shape), *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(a, 32, 3, &s, &b);
    CHECK(q && lmc_array_dim(q, 0) == 3);
    if (q) {
        const uint32_t *words = lmc_array_data(q);
        CHECKF(words[0] == 0x77053977u && words[1] == 0x39770539u, "0x%08x 0x%08x", words[0], words[1]);
        CHECK(item_f32(s, 0) == -1.0f && item_f32(b, 0) == 7.0f);
        lmc_array *dq = lmc_dequantize(q, s, b, 32, 3);
        for (int i = 0; dq && i < 32; i++) CHECK(item_f32(dq, i) == w[i]);
        lmc_array_free(dq);
    }
    lmc_array_free(a);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
    for (int i = 0; i < 32; i++) w[i] = (float)i;
    a = from_floats(w, LMC_F32, 1, shape);
    q = lmc_quantize(a, 32, 6, &s, &b);
    CHECK(q && lmc_array_dim(q, 0) == 6);
    if (q) {
        const uint32_t *words = lmc_array_data(q);
        CHECKF(words[0] == 0x77E7BF7Fu, "0x%08x", words[0]);
        CHECKF(f32_bits(item_f32(s, 0)) == 0xBEFBEFBFu, "0x%08x", f32_bits(item_f32(s, 0)));
        CHECK(item_f32(b, 0) == 31.0f);
    }
    lmc_array_free(a);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
}

static void test_errors(void) {
    int64_t shape[2] = {4, 96};
    lmc_array *w = zeros(LMC_F32, 2, shape), *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(w, 64, 4, &s, &b);
    CHECK(q == NULL && s == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[4, 96]") && strstr(lmc_last_error(), "64"), "%s", lmc_last_error());
    CHECK(lmc_quantize(w, 48, 4, &s, &b) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_quantize(w, 32, 7, &s, &b) == NULL && strstr(lmc_last_error(), "7 bits"));
    int64_t ishape[2] = {4, 96};
    lmc_array *wi = zeros(LMC_I32, 2, ishape);
    CHECK(lmc_quantize(wi, 32, 4, &s, &b) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array_free(wi);

    q = lmc_quantize(w, 32, 4, &s, &b);
    CHECK(q != NULL);
    /* wrong group size for these parts */
    CHECK(lmc_dequantize(q, s, b, 64, 4) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[4, 12]") && strstr(lmc_last_error(), "[4, 3]"), "%s", lmc_last_error());
    int64_t xshape[2] = {2, 64};
    lmc_array *x = zeros(LMC_F32, 2, xshape);
    CHECK(lmc_quantized_matmul(x, q, s, b, 32, 4) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECKF(strstr(lmc_last_error(), "[2, 64]") && strstr(lmc_last_error(), "96"), "%s", lmc_last_error());
    /* NULL inputs keep the earlier error */
    lmc_set_num_threads(0);
    CHECK(lmc_quantized_matmul(NULL, q, s, b, 32, 4) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array_free(x);
    lmc_array_free(w);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
}

/* --- round trips --------------------------------------------------------- */

static void test_round_trip(void) {
    const int bits_list[] = {2, 3, 4, 5, 6, 8};
    const int gs_list[] = {32, 64, 128};
    const lmc_dtype dts[] = {LMC_F32, LMC_BF16, LMC_F16};
    uint64_t seed = 1;
    for (int bi = 0; bi < 6; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int di = 0; di < 3; di++) {
                int bits = bits_list[bi], gs = gs_list[gi];
                lmc_dtype dt = dts[di];
                int64_t shape[3] = {3, 5, 256};
                lmc_array *w = random_normal(dt, 3, shape, 0.1, 2.0, seed++);
                lmc_array *s = NULL, *b = NULL;
                lmc_array *q = lmc_quantize(w, gs, bits, &s, &b);
                lmc_array *dq = lmc_dequantize(q, s, b, gs, bits);
                CHECKF(dq != NULL, "bits %d gs %d: %s", bits, gs, lmc_last_error());
                if (!dq) continue;
                CHECK(lmc_array_ndim(q) == 3 && lmc_array_dim(q, 2) == 256 * bits / 32 && lmc_array_dim(s, 2) == 256 / gs);
                CHECK(lmc_array_dtype(dq) == dt);
                /* f32 scales and biases give w = s*q + b in f32, one rounding (q*s is exact) */
                lmc_array *s32 = lmc_astype(s, LMC_F32), *b32 = lmc_astype(b, LMC_F32);
                lmc_array *dq32 = lmc_dequantize(q, s32, b32, gs, bits);
                CHECK(dq32 && lmc_array_dtype(dq32) == LMC_F32);
                lmc_array_free(s32);
                lmc_array_free(b32);
                int64_t n = lmc_array_size(w), bad = 0, bad_bits = 0, bad32 = 0;
                float nb = (float)((1 << bits) - 1);
                const uint8_t *bytes = lmc_array_data(q);
                for (int64_t i = 0; i < n; i++) {
                    size_t bit = (size_t)i * (size_t)bits;
                    uint32_t two = bytes[bit / 8];
                    if (bit % 8 + (size_t)bits > 8) two |= (uint32_t)bytes[bit / 8 + 1] << 8;
                    float qv = (float)((two >> (bit % 8)) & ((1u << bits) - 1));
                    float sc = item_f32(s, i / gs), bias = item_f32(b, i / gs);
                    float x = item_f32(w, i), y = item_f32(dq, i);
                    /* Half a step inside the grid. The grid starts exactly at
                     * the edge (q = 0) but scale = edge / q0 may leave the
                     * other end short of the far extreme by up to half a
                     * step, so a clipped q = n_bins may be one step off. Plus
                     * the rounding of scale, bias and result to dt. */
                    float tol = fabsf(sc) * (qv == nb ? 1.0f : 0.5f) * (1 + 1e-5f) + 1e-6f * (fabsf(bias) + fabsf(x));
                    if (dt != LMC_F32)
                        tol += (nb * fabsf(sc) + fabsf(bias) + fabsf(x)) * (dt == LMC_BF16 ? 1.0f / 128 : 1.0f / 1024);
                    if (!(fabsf(x - y) <= tol)) bad++;
                    /* MLX's dequantize: q*s then +b, each rounded to the scales' dtype */
                    float p = qv * sc, r;
                    if (dt == LMC_BF16) r = lmc_bf16_to_f32(lmc_f32_to_bf16(lmc_bf16_to_f32(lmc_f32_to_bf16(p)) + bias));
                    else if (dt == LMC_F16) r = lmc_f16_to_f32(lmc_f32_to_f16(lmc_f16_to_f32(lmc_f32_to_f16(p)) + bias));
                    else r = p + bias;
                    if (f32_bits(r) != f32_bits(y)) bad_bits++;
                    if (dq32 && f32_bits(p + bias) != f32_bits(((const float *)lmc_array_data(dq32))[i])) bad32++;
                }
                CHECKF(bad == 0, "bits %d gs %d %s: %lld elements off by more than scale/2", bits, gs,
                       lmc_dtype_name(dt), (long long)bad);
                CHECKF(bad32 == 0, "bits %d gs %d %s: %lld f32 dequantised values differ", bits, gs, lmc_dtype_name(dt),
                       (long long)bad32);
                lmc_array_free(dq32);
                CHECKF(bad_bits == 0, "bits %d gs %d %s: %lld dequantised values differ", bits, gs, lmc_dtype_name(dt),
                       (long long)bad_bits);
                lmc_array_free(w);
                lmc_array_free(q);
                lmc_array_free(s);
                lmc_array_free(b);
                lmc_array_free(dq);
            }
}

/* --- quantised matmul ----------------------------------------------------- */

/* Whether main has set int8 activations (lmc_quant_set_activation_bits(8)). */
static bool g_x8;

/* out[m, n] in double from the dequantised weights dq [N, K] (f32 copy);
 * mag = sum |x w| and xerr = sum_k |w_k| * (largest |x| in k's block of 128),
 * what rounding x to integers per block (the 4-bit SIMD kernels) may move the
 * result, per unit of the integers' relative step. */
static void reference(const float *x, const float *dq, int64_t M, int64_t N, int64_t K, double *ref, double *mag,
                      double *xerr) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = 0, a = 0, e = 0, bmax = 0;
            for (int64_t k = 0; k < K; k++) {
                if (k % 128 == 0) {
                    bmax = 0;
                    for (int64_t j = k; j < k + 128 && j < K; j++) bmax = fmax(bmax, fabs((double)x[m * K + j]));
                }
                acc += (double)x[m * K + k] * dq[n * K + k];
                a += fabs((double)x[m * K + k] * dq[n * K + k]);
                e += fabs((double)dq[n * K + k]) * bmax;
            }
            ref[m * N + n] = acc;
            mag[m * N + n] = a;
            xerr[m * N + n] = e;
        }
}

static void check_qmm(int64_t M, int64_t N, int64_t K, int gs, int bits, lmc_dtype xdt, lmc_dtype wdt, uint64_t seed) {
    int64_t wshape[2] = {N, K}, xshape[2] = {M, K};
    lmc_array *w = random_normal(wdt, 2, wshape, 0.0, 0.5, seed);
    lmc_array *x = random_normal(xdt, 2, xshape, 0.0, 1.0, seed + 1000);
    lmc_array *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(w, gs, bits, &s, &b);
    lmc_array *dq = lmc_dequantize(q, s, b, gs, bits);
    if (!dq) {
        CHECKF(0, "%s", lmc_last_error());
        return;
    }
    /* Exact dequantised weights in f32 (q*s + b without rounding to the
     * scales' dtype), and the rounded ones lmc_dequantize gives. */
    float *wx = malloc(sizeof(float) * (size_t)(N * K)), *wr = malloc(sizeof(float) * (size_t)(N * K));
    float *xf = malloc(sizeof(float) * (size_t)(M * K));
    double *ref = malloc(sizeof(double) * (size_t)(M * N)), *mag = malloc(sizeof(double) * (size_t)(M * N));
    double *ref2 = malloc(sizeof(double) * (size_t)(M * N)), *mag2 = malloc(sizeof(double) * (size_t)(M * N));
    double *xerr = malloc(sizeof(double) * (size_t)(M * N)), *xerr2 = malloc(sizeof(double) * (size_t)(M * N));
    const uint8_t *bytes = lmc_array_data(q);
    for (int64_t i = 0; i < N * K; i++) {
        /* element i at bits [i*bits, (i+1)*bits) of the little-endian stream */
        uint64_t bit = (uint64_t)i * (uint64_t)bits, two = bytes[bit / 8];
        if (bit % 8 + (uint64_t)bits > 8) two |= (uint64_t)bytes[bit / 8 + 1] << 8;
        float qv = (float)((two >> (bit % 8)) & ((1u << bits) - 1));
        wx[i] = qv * item_f32(s, i / gs) + item_f32(b, i / gs);
    }
    lmc_array_read(dq, LMC_F32, wr, (size_t)(N * K));
    lmc_array_read(x, LMC_F32, xf, (size_t)(M * K));
    /* int8 activations: every path, the scalar one too, multiplies x rounded
     * per block of 64 to q = rint(x * 127/max|x|), x' = max|x|/127 * q */
    const bool x8 = (bits == 4 || bits == 8) && g_x8;
    for (int64_t i = 0; x8 && i < M * K; i += 64) {
        int64_t n = K - i % K < 64 ? K - i % K : 64;
        float m = 0.0f;
        for (int64_t j = 0; j < n; j++) m = fmaxf(m, fabsf(xf[i + j]));
        float inv = m > 0.0f ? 127.0f / m : 0.0f;
        for (int64_t j = 0; j < n; j++) xf[i + j] = m / 127.0f * rintf(xf[i + j] * inv);
        i -= 64 - n; /* a row's last block of 32 */
    }
    reference(xf, wx, M, N, K, ref, mag, xerr);
    reference(xf, wr, M, N, K, ref2, mag2, xerr2);

    for (int path = LMC_PATH_SCALAR; path <= (int)lmc_cpu_path_max(); path++) {
        lmc_cpu_path_set((lmc_cpu_path)path);
        lmc_array *out = lmc_quantized_matmul(x, q, s, b, gs, bits);
        CHECKF(out && lmc_array_dtype(out) == xdt && lmc_array_dim(out, 0) == M && lmc_array_dim(out, 1) == N,
               "path %s: %s", lmc_cpu_path_name((lmc_cpu_path)path), lmc_last_error());
        if (!out) continue;
        /* f32 accumulation, plus the output's rounding to bf16 */
        double rel = 2e-6 * sqrt((double)K), out_rel = xdt == LMC_BF16 ? 1.0 / 256 : xdt == LMC_F16 ? 1.0 / 2048 : 0;
        /* half a unit of the 24-bit integer x per element (the scalar oracle
         * keeps x in f32) */
        double x16 = bits != 4 || path == LMC_PATH_SCALAR || x8 ? 0 : 0.5 / 8355711;
        double rel2 = lmc_array_dtype(s) == LMC_BF16 ? 1.0 / 128 : lmc_array_dtype(s) == LMC_F16 ? 1.0 / 1024 : 1e-6;
        int64_t bad = 0, bad2 = 0;
        for (int64_t i = 0; i < M * N; i++) {
            double got = item_f32(out, i);
            if (!(fabs(got - ref[i]) <= rel * mag[i] + x16 * xerr[i] + out_rel * fabs(ref[i]) + 1e-6)) {
                if (bad < 3)
                    fprintf(stderr, "  [%lld] got %.8g want %.8g (mag %.3g)\n", (long long)i, got, ref[i], mag[i]);
                bad++;
            }
            if (!(fabs(got - ref2[i]) <= (rel + rel2) * mag2[i] + x16 * xerr2[i] + out_rel * fabs(ref2[i]) + 1e-6)) bad2++;
        }
        CHECKF(bad == 0 && bad2 == 0, "path %s M %lld N %lld K %lld gs %d bits %d x %s w %s: %lld / %lld off", lmc_cpu_path_name((lmc_cpu_path)path),
               (long long)M, (long long)N, (long long)K, gs, bits, lmc_dtype_name(xdt), lmc_dtype_name(wdt),
               (long long)bad, (long long)bad2);
        lmc_array_free(out);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    free(wx);
    free(wr);
    free(xf);
    free(ref);
    free(mag);
    free(ref2);
    free(mag2);
    free(xerr);
    free(xerr2);
    lmc_array_free(w);
    lmc_array_free(x);
    lmc_array_free(q);
    lmc_array_free(s);
    lmc_array_free(b);
    lmc_array_free(dq);
}

static void test_qmm_paths(void) {
    /* every row count the kernels block differently (AVX-512: 4 rows a call;
     * AMX: tiles of 16 rows, from 6 rows on) */
    const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 33, 64, 130};
    const int gss[] = {32, 64, 128};
    uint64_t seed = 100;
    for (int mi = 0; mi < (int)(sizeof Ms / sizeof *Ms); mi++)
        for (int gi = 0; gi < 3; gi++)
            for (int bits = 4; bits <= 8; bits += 4) {
                int xd = (mi + gi + bits / 4) % 3;
                lmc_dtype xdt = xd == 0 ? LMC_F32 : xd == 1 ? LMC_BF16 : LMC_F16;
                /* K = 256 (whole blocks); N = 40 is no multiple of a thread chunk, 37 of a tile */
                check_qmm(Ms[mi], mi % 2 ? 37 : 40, 256, gss[gi], bits, xdt, xd == 1 ? LMC_BF16 : LMC_F32, seed++);
            }
    /* long rows (the AVX-512 kernel's chunks of K with 2 to 4 rows of x), with a tail block */
    check_qmm(7, 21, 4160, 64, 4, LMC_F32, LMC_BF16, 16);
    /* more than one task of 64 weight rows, K = 1024 */
    check_qmm(33, 131, 1024, 64, 4, LMC_BF16, LMC_BF16, 13);
    check_qmm(20, 70, 512, 128, 8, LMC_F32, LMC_BF16, 14);
    check_qmm(18, 65, 480, 32, 4, LMC_F32, LMC_F16, 15);
    /* K not a multiple of the 128-element SIMD block (tails), f16 x and scales */
    check_qmm(2, 33, 96, 32, 4, LMC_F32, LMC_BF16, 7);
    check_qmm(5, 17, 160, 32, 8, LMC_BF16, LMC_F32, 8);
    check_qmm(4, 24, 192, 64, 4, LMC_F16, LMC_F16, 9);
    check_qmm(1, 64, 384, 128, 8, LMC_F16, LMC_BF16, 10);
    /* other widths go through the scalar kernel on every path */
    check_qmm(3, 20, 128, 64, 3, LMC_F32, LMC_F32, 11);
    check_qmm(3, 20, 128, 32, 2, LMC_F32, LMC_BF16, 12);
}

/* x given as a 3-d array and as a strided view: the op copies it as needed.
 * (On a path below AMX, where 3 and 6 rows go through the same kernel.) */
static void test_qmm_views(void) {
    lmc_cpu_path_set(LMC_PATH_AVX512);
    int64_t wshape[2] = {48, 128}, xshape[2] = {6, 128};
    lmc_array *w = random_normal(LMC_BF16, 2, wshape, 0.0, 1.0, 5);
    lmc_array *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 6);
    lmc_array *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(w, 64, 4, &s, &b);
    lmc_array *full = lmc_quantized_matmul(x, q, s, b, 64, 4);
    /* rows 0, 2, 4 of x as a view */
    int64_t vshape[2] = {3, 128}, vstrides[2] = {256, 1};
    lmc_array *xv = lmc_array_view(x->buf, x->offset, LMC_F32, 2, vshape, vstrides);
    lmc_array *part = lmc_quantized_matmul(xv, q, s, b, 64, 4);
    CHECK(full && part);
    for (int r = 0; part && r < 3; r++)
        for (int n = 0; n < 48; n++) CHECK(item_f32(part, r * 48 + n) == item_f32(full, 2 * r * 48 + n));
    int64_t x3shape[3] = {2, 3, 128};
    lmc_array *x3 = lmc_array_view(x->buf, x->offset, LMC_F32, 3, x3shape, (int64_t[]){384, 128, 1});
    lmc_array *out3 = lmc_quantized_matmul(x3, q, s, b, 64, 4);
    CHECK(out3 && lmc_array_ndim(out3) == 3 && lmc_array_dim(out3, 2) == 48);
    for (int i = 0; out3 && i < 6 * 48; i++) CHECK(item_f32(out3, i) == item_f32(full, i));
    /* same thread count, same bits */
    lmc_array *again = lmc_quantized_matmul(x, q, s, b, 64, 4);
    CHECK(again && memcmp(lmc_array_data(again), lmc_array_data(full), 6 * 48 * sizeof(float)) == 0);
    lmc_array *list[] = {w, x, s, b, q, full, xv, part, x3, out3, again};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
    lmc_cpu_path_set(lmc_cpu_path_max());
}

/* Each row of the result depends on that row of x only: a SIMD path gives
 * every row bit for bit what any call taking the same kernel gives, so
 * batching sequences never changes one sequence's numbers within a kernel.
 * The kernels by rows of x: AVX2 one; AVX-512 the rows kernels (the M = 1
 * decode kernel among them) and, for 4 and 8 bits from LMC_QMM_PANEL_MIN_M
 * rows, the panel kernel; AMX from 6 rows its tiles, fewer the AVX-512 rows
 * kernels. Across kernels rows are only close (check_qmm). row_split: the
 * fewest rows of x that take the upper kernel (0: one kernel). */
static int64_t row_split(lmc_cpu_path path, int bits) {
    if (path == LMC_PATH_AMX) return 6;
    if (path == LMC_PATH_AVX512 && (bits == 4 || bits == 8)) return LMC_QMM_PANEL_MIN_M;
    return 0;
}

static lmc_array *rows_call(const lmc_array *x, int64_t first, int64_t rows, int64_t stride, const lmc_array *q,
                            const lmc_array *s, const lmc_array *b, int bits) {
    const int64_t K = x->shape[1];
    int64_t vshape[2] = {rows, K}, vstrides[2] = {stride * K, 1};
    lmc_array *xv = lmc_array_view(x->buf, x->offset + (size_t)(first * K) * sizeof(float), LMC_F32, 2, vshape, vstrides);
    lmc_array *out = lmc_quantized_matmul(xv, q, s, b, 64, bits);
    lmc_array_free(xv);
    return out;
}

static void check_rows_exact(int64_t K) {
    const int64_t M = 40, N = 53;
    for (int bits = 4; bits <= 8; bits += 4) {
        int64_t wshape[2] = {N, K}, xshape[2] = {M, K};
        lmc_array *w = random_normal(LMC_BF16, 2, wshape, 0.0, 0.5, 20 + (uint64_t)bits);
        lmc_array *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 30 + (uint64_t)bits);
        lmc_array *s = NULL, *b = NULL;
        lmc_array *q = lmc_quantize(w, 64, bits, &s, &b);
        for (int path = LMC_PATH_AVX2; path <= (int)lmc_cpu_path_max(); path++) {
            lmc_cpu_path_set((lmc_cpu_path)path);
            const int64_t split = row_split((lmc_cpu_path)path, bits);
            lmc_array *full = lmc_quantized_matmul(x, q, s, b, 64, bits);
            /* row blocks: below AMX's 6 rows, of 7 and 16 (the panel
             * kernel's first), 33 and 32; 1, 2 and 3 rows of x also take
             * the AVX-512 rows kernel's other groupings of weight rows (4
             * or 2 a call, the rest one by one) */
            const int64_t starts[] = {0, 5, 16, 9, 0, 24, 30, 33, 2, 8, 20}, lens[] = {1, 3, 1, 7, 16, 16, 2, 6, 33, 32, 15};
            for (int t = 0; t < (int)(sizeof lens / sizeof *lens); t++) {
                lmc_array *part = rows_call(x, starts[t], lens[t], 1, q, s, b, bits), *ref = full;
                int64_t at = starts[t]; /* the part's first row in ref */
                if (split && lens[t] < split) {
                    /* the lower kernel: against a call of split - 1 rows around the part */
                    const int64_t first = starts[t] < M - (split - 1) ? starts[t] : M - (split - 1);
                    ref = rows_call(x, first, split - 1, 1, q, s, b, bits);
                    at = starts[t] - first;
                }
                CHECK(full && ref && part);
                CHECKF(ref && part && !memcmp((const float *)lmc_array_data(ref) + at * N, lmc_array_data(part), (size_t)(lens[t] * N) * sizeof(float)),
                       "path %s bits %d rows %lld..%lld differ from a call of more rows with the same kernel",
                       lmc_cpu_path_name((lmc_cpu_path)path), bits, (long long)starts[t],
                       (long long)(starts[t] + lens[t] - 1));
                if (ref != full) lmc_array_free(ref);
                lmc_array_free(part);
            }
            /* strided views: rows 1, 3, .., 35 (18 rows, the upper kernel) against all rows, and rows 1, 3, .., 9
             * (5, the lower) against one-row calls */
            lmc_array *part = rows_call(x, 1, 18, 2, q, s, b, bits);
            for (int r = 0; full && part && r < 18; r++)
                CHECKF(!memcmp((const float *)lmc_array_data(full) + (2 * r + 1) * N,
                               (const float *)lmc_array_data(part) + r * N, (size_t)N * sizeof(float)),
                       "path %s bits %d: strided row %d", lmc_cpu_path_name((lmc_cpu_path)path), bits, 2 * r + 1);
            lmc_array_free(part);
            part = rows_call(x, 1, 5, 2, q, s, b, bits);
            for (int r = 0; part && r < 5; r++) {
                lmc_array *one = rows_call(x, 2 * r + 1, 1, 1, q, s, b, bits);
                CHECKF(one && !memcmp(lmc_array_data(one), (const float *)lmc_array_data(part) + r * N, (size_t)N * sizeof(float)),
                       "path %s bits %d: strided row %d of 5", lmc_cpu_path_name((lmc_cpu_path)path), bits, 2 * r + 1);
                lmc_array_free(one);
            }
            CHECK(part != NULL);
            lmc_array_free(part);
            lmc_array_free(full);
        }
        lmc_cpu_path_set(lmc_cpu_path_max());
        lmc_array *list[] = {w, x, s, b, q};
        for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
    }
}

/* Where the CPU has AMX: the AVX-512 panel kernel gives the AMX kernel's
 * bits (the same integers and the same f32 work in the same order), for 4
 * and 8 bits, every group size, K with a tail of 32 (groups of 32), and the x of main's
 * pass (24-bit or int8). Without AMX there is nothing to compare with. */
static void test_qmm_panels_match_amx(void) {
    if (lmc_cpu_path_max() < LMC_PATH_AMX) {
        fprintf(stderr, "  (no AMX on this CPU: nothing to compare the panels with)\n");
        return;
    }
    const int gss[] = {32, 64, 128};
    const int64_t Ks[] = {480, 512, 1024};
    for (int bits = 4; bits <= 8; bits += 4)
    for (int gi = 0; gi < 3; gi++)
        for (int64_t M = LMC_QMM_PANEL_MIN_M; M <= 40; M += 40 - LMC_QMM_PANEL_MIN_M) {
            const int64_t N = 37, K = Ks[gi];
            int64_t wshape[2] = {N, K}, xshape[2] = {M, K};
            lmc_array *w = random_normal(LMC_BF16, 2, wshape, 0.0, 0.5, 40 + (uint64_t)gi);
            lmc_array *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 50 + (uint64_t)M);
            lmc_array *s = NULL, *b = NULL;
            lmc_array *q = lmc_quantize(w, gss[gi], bits, &s, &b);
            lmc_cpu_path_set(LMC_PATH_AMX);
            lmc_array *amx = lmc_quantized_matmul(x, q, s, b, gss[gi], bits);
            lmc_cpu_path_set(LMC_PATH_AVX512);
            lmc_array *pan = lmc_quantized_matmul(x, q, s, b, gss[gi], bits);
            CHECKF(amx && pan && !memcmp(lmc_array_data(amx), lmc_array_data(pan), (size_t)(M * N) * sizeof(float)),
                   "bits %d gs %d M %lld K %lld x%s: the panels differ from AMX", bits, gss[gi], (long long)M, (long long)K,
                   g_x8 ? "8" : "24");
            lmc_cpu_path_set(lmc_cpu_path_max());
            lmc_array *list[] = {w, x, s, b, q, amx, pan};
            for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
        }
}

/* A kernel that finds no work space fails the product with an error naming
 * it (and leaves no partial result behind as a success); the next call,
 * with memory back, works. Each path's many-rows work space: the AVX-512
 * panels (16 rows of x or more), AMX's tiles; x's preparation on every
 * SIMD path. */
static void check_qmm_no_scratch(lmc_cpu_path path, int slot, int64_t M) {
    lmc_cpu_path_set(path);
    int64_t wshape[2] = {40, 256}, xshape[2] = {M, 256};
    lmc_array *w = random_normal(LMC_BF16, 2, wshape, 0.0, 0.5, 60);
    lmc_array *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 61);
    lmc_array *s = NULL, *b = NULL;
    lmc_array *q = lmc_quantize(w, 64, 4, &s, &b);
    lmc_array *good = lmc_quantized_matmul(x, q, s, b, 64, 4);
    lmc_scratch_fail_for_testing(slot);
    lmc_array *bad = lmc_quantized_matmul(x, q, s, b, 64, 4);
    lmc_scratch_fail_for_testing(-1);
    CHECKF(!bad && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY && strstr(lmc_last_error(), "out of memory"),
           "path %s slot %d M %lld: %s", lmc_cpu_path_name(path), slot, (long long)M, bad ? "no error" : lmc_last_error());
    lmc_array *again = lmc_quantized_matmul(x, q, s, b, 64, 4);
    CHECK(good && again && !memcmp(lmc_array_data(good), lmc_array_data(again), (size_t)(M * 40) * sizeof(float)));
    lmc_array *list[] = {w, x, s, b, q, good, bad, again};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
    lmc_cpu_path_set(lmc_cpu_path_max());
}

static void test_qmm_no_scratch(void) {
    for (int p = LMC_PATH_AVX2; p <= (int)lmc_cpu_path_max(); p++) check_qmm_no_scratch((lmc_cpu_path)p, LMC_SCRATCH_QMM_X, 3);
    if (lmc_cpu_path_max() >= LMC_PATH_AVX512) check_qmm_no_scratch(LMC_PATH_AVX512, LMC_SCRATCH_QMM_PANELS, 20);
    if (lmc_cpu_path_max() >= LMC_PATH_AMX) check_qmm_no_scratch(LMC_PATH_AMX, LMC_SCRATCH_QMM_AMX, 20);
}

static void test_qmm_rows_exact(void) {
    check_rows_exact(384);
    /* long rows: the AVX-512 kernel takes 2 to 4 x rows through K in chunks
     * (33 blocks and a half: more than one chunk for every row count, and a
     * tail block in the last) */
    check_rows_exact(4160);
}

/* lmc_quantized_matmul_many gives each weight bit for bit what a call of
 * its own gives, on every path and thread count, for weights of mixed
 * widths, group sizes and scale dtypes sharing x (those the SIMD paths can
 * batch and those they cannot); and a SIMD path's result does not depend on
 * the thread count (rows are cut into tasks differently per count). */
static void test_qmm_many(void) {
    enum { NW = 5 };
    const int64_t K = 256, Ns[NW] = {300, 37, 70, 64, 20};
    const int gs[NW] = {64, 64, 32, 128, 64}, bits[NW] = {4, 4, 8, 4, 3};
    const lmc_dtype wdt[NW] = {LMC_BF16, LMC_F32, LMC_BF16, LMC_F16, LMC_F32};
    lmc_array *w[NW], *q[NW], *s[NW], *b[NW];
    lmc_qmm_weights qw[NW];
    for (int i = 0; i < NW; i++) {
        int64_t shape[2] = {Ns[i], K};
        w[i] = random_normal(wdt[i], 2, shape, 0.0, 0.5, 40 + (uint64_t)i);
        q[i] = lmc_quantize(w[i], gs[i], bits[i], &s[i], &b[i]);
        qw[i] = (lmc_qmm_weights){q[i], s[i], b[i], gs[i], bits[i]};
    }
    const int64_t Ms[] = {1, 3, 9, 40}; /* 9 and 40 rows: the AMX kernel, which batches too */
    for (int mi = 0; mi < 4; mi++) {
        int64_t xshape[2] = {Ms[mi], K};
        lmc_array *x = random_normal(mi == 1 ? LMC_BF16 : LMC_F32, 2, xshape, 0.0, 1.0, 50 + (uint64_t)mi);
        for (int path = LMC_PATH_SCALAR; path <= (int)lmc_cpu_path_max(); path++) {
            lmc_cpu_path_set((lmc_cpu_path)path);
            lmc_array *first[NW] = {NULL};
            for (int threads = 1; threads <= 3; threads++) {
                lmc_set_num_threads(threads);
                lmc_array *many[NW];
                CHECKF(lmc_quantized_matmul_many(x, NW, qw, many) == LMC_OK, "%s", lmc_last_error());
                for (int i = 0; i < NW; i++) {
                    lmc_array *one = lmc_quantized_matmul(x, q[i], s[i], b[i], gs[i], bits[i]);
                    size_t bytes = (size_t)(Ms[mi] * Ns[i]) * lmc_dtype_size(lmc_array_dtype(x));
                    CHECKF(one && many[i] && !memcmp(lmc_array_data(one), lmc_array_data(many[i]), bytes),
                           "path %s, %d threads, M %lld: weight %d differs from its own call",
                           lmc_cpu_path_name((lmc_cpu_path)path), threads, (long long)Ms[mi], i);
                    if (threads == 1) first[i] = lmc_array_retain(one);
                    /* the scalar kernel's reduction order is its own at any count too */
                    else
                        CHECKF(one && !memcmp(lmc_array_data(one), lmc_array_data(first[i]), bytes),
                               "path %s, M %lld: weight %d differs between 1 and %d threads",
                               lmc_cpu_path_name((lmc_cpu_path)path), (long long)Ms[mi], i, threads);
                    lmc_array_free(one);
                    lmc_array_free(many[i]);
                }
            }
            for (int i = 0; i < NW; i++) lmc_array_free(first[i]);
        }
        lmc_array_free(x);
    }
    lmc_cpu_path_set(lmc_cpu_path_max());
    lmc_set_num_threads(0);
    /* errors: nothing is returned, nothing leaks */
    int64_t xshape[2] = {2, K + 32};
    lmc_array *xbad = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 60);
    lmc_array *out[NW] = {xbad};
    CHECK(lmc_quantized_matmul_many(xbad, NW, qw, out) == LMC_ERR_SHAPE && out[0] == NULL && out[NW - 1] == NULL);
    CHECK(lmc_quantized_matmul_many(xbad, 0, qw, out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_quantized_matmul_many(NULL, 2, qw, out) != LMC_OK && out[0] == NULL);
    lmc_array_free(xbad);
    for (int i = 0; i < NW; i++) {
        lmc_array_free(w[i]);
        lmc_array_free(q[i]);
        lmc_array_free(s[i]);
        lmc_array_free(b[i]);
    }
}

/* One row of x against long runs of weight rows: the decode kernels (4
 * and 8 bits) read a run as LMC_QMM_STREAMS streams side by side
 * (kernel_streams). Every path
 * against the oracle, one thread (the whole matrix is one run: rows not a
 * multiple of the streams, K with and without a tail block, each scale
 * dtype); rows around the streams' boundaries bit for bit what a matrix of
 * just those rows gives (adjacent rows, no streams); and a matrix long
 * enough for runs on two threads equal to one thread's result. */
static void test_qmm_streams(void) {
    const int64_t N = 4 * LMC_QMM_STREAM_ROWS + 6, q = N / 4;
    const struct { int64_t K; int gs; lmc_dtype xdt, wdt; } cfg[] = {
        {384, 64, LMC_F32, LMC_BF16}, {160, 32, LMC_BF16, LMC_F16}, {256, 128, LMC_F16, LMC_F32}};
    lmc_set_num_threads(1);
    for (int bits = 4; bits <= 8; bits += 4)
        for (int c = 0; c < 3; c++) check_qmm(1, N, cfg[c].K, cfg[c].gs, bits, cfg[c].xdt, cfg[c].wdt, 70 + (uint64_t)(c + bits));
    for (int cb = 0; cb < 6; cb++) {
        const int c = cb % 3, bits = cb < 3 ? 4 : 8;
        int64_t wshape[2] = {N, cfg[c].K}, xshape[2] = {1, cfg[c].K};
        lmc_array *w = random_normal(cfg[c].wdt, 2, wshape, 0.0, 0.5, 80 + (uint64_t)c);
        lmc_array *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 90 + (uint64_t)c);
        lmc_array *s = NULL, *b = NULL, *qw = lmc_quantize(w, cfg[c].gs, bits, &s, &b);
        for (int path = LMC_PATH_AVX2; qw && path <= (int)lmc_cpu_path_max(); path++) {
            lmc_cpu_path_set((lmc_cpu_path)path);
            lmc_array *full = lmc_quantized_matmul(x, qw, s, b, cfg[c].gs, bits);
            /* the first stream's start and end, the boundaries between streams, the rows after the last one */
            const int64_t starts[] = {0, q - 20, 2 * q - 3, 3 * q - 30, N - 40};
            for (int t = 0; full && t < 5; t++) {
                lmc_array *parts[3] = {qw, s, b}, *rows[3];
                for (int k = 0; k < 3; k++) {
                    lmc_array *v = lmc_slice(parts[k], 0, starts[t], starts[t] + 40, 1);
                    rows[k] = lmc_contiguous(v);
                    lmc_array_free(v);
                }
                lmc_array *few = lmc_quantized_matmul(x, rows[0], rows[1], rows[2], cfg[c].gs, bits);
                CHECKF(few && !memcmp((const float *)lmc_array_data(full) + starts[t], lmc_array_data(few), 40 * sizeof(float)),
                       "path %s bits %d K %lld: rows %lld..%lld differ from a matrix of those rows alone",
                       lmc_cpu_path_name((lmc_cpu_path)path), bits, (long long)cfg[c].K, (long long)starts[t],
                       (long long)starts[t] + 39);
                lmc_array_free(few);
                for (int k = 0; k < 3; k++) lmc_array_free(rows[k]);
            }
            lmc_array_free(full);
        }
        lmc_cpu_path_set(lmc_cpu_path_max());
        lmc_array *list[] = {w, x, s, b, qw};
        for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
    }
    /* two threads: pieces long enough for streams and short ones, the same result as one thread */
    int64_t wshape[2] = {20000, 256}, xshape[2] = {1, 256};
    lmc_array *w = random_normal(LMC_BF16, 2, wshape, 0.0, 0.5, 95), *x = random_normal(LMC_F32, 2, xshape, 0.0, 1.0, 96);
    lmc_array *s = NULL, *b = NULL, *qw = lmc_quantize(w, 64, 4, &s, &b);
    lmc_array *one = lmc_quantized_matmul(x, qw, s, b, 64, 4);
    lmc_set_num_threads(2);
    lmc_array *two = lmc_quantized_matmul(x, qw, s, b, 64, 4);
    CHECK(one && two && !memcmp(lmc_array_data(one), lmc_array_data(two), 20000 * sizeof(float)));
    lmc_set_num_threads(0);
    lmc_array *list[] = {w, x, s, b, qw, one, two};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) lmc_array_free(list[i]);
}

int main(void) {
    RUN(test_vector_arange64);
    RUN(test_vector_mixed_sign);
    RUN(test_vector_constant);
    RUN(test_vector_8bit);
    RUN(test_vector_odd_bits);
    RUN(test_errors);
    RUN(test_round_trip);
    RUN(test_qmm_paths);
    RUN(test_qmm_views);
    RUN(test_qmm_rows_exact);
    RUN(test_qmm_panels_match_amx);
    RUN(test_qmm_no_scratch);
    RUN(test_qmm_many);
    RUN(test_qmm_streams);
    /* int8 activations: the same checks, against x rounded as the kernels
     * round it (check_qmm), and the same row and batch identities */
    CHECK(lmc_quant_set_activation_bits(8) == 24 && lmc_quant_activation_bits() == 8);
    g_x8 = true;
    RUN(test_qmm_paths);
    RUN(test_qmm_rows_exact);
    RUN(test_qmm_panels_match_amx);
    RUN(test_qmm_many);
    RUN(test_qmm_streams);
    g_x8 = false;
    CHECK(lmc_quant_set_activation_bits(24) == 8);
    CHECKF(lmc_live_arrays() == 0, "%lld arrays leaked", (long long)lmc_live_arrays());
    return TEST_REPORT();
}
