/* Data types: sizes, names, bit-exact f16/bf16 conversions and generic
 * element access used by the scalar reference kernels. */
#include <math.h>
#include <string.h>

#include "core/array.h"

static const struct { const char *name; size_t size; bool is_float; } g_dtypes[LMC_DTYPE_COUNT] = {
    [LMC_F32] = {"float32", 4, true},  [LMC_F16] = {"float16", 2, true}, [LMC_BF16] = {"bfloat16", 2, true},
    [LMC_I32] = {"int32", 4, false},   [LMC_U32] = {"uint32", 4, false}, [LMC_U8] = {"uint8", 1, false},
    [LMC_BOOL] = {"bool", 1, false},   [LMC_I64] = {"int64", 8, false},
};

size_t lmc_dtype_size(lmc_dtype dt) { return (unsigned)dt < LMC_DTYPE_COUNT ? g_dtypes[dt].size : 0; }
const char *lmc_dtype_name(lmc_dtype dt) { return (unsigned)dt < LMC_DTYPE_COUNT ? g_dtypes[dt].name : "invalid"; }
bool lmc_dtype_is_float(lmc_dtype dt) { return (unsigned)dt < LMC_DTYPE_COUNT && g_dtypes[dt].is_float; }

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t lmc_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow carries into Inf */
    return (uint16_t)(u >> 16);
}

float lmc_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
uint16_t lmc_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((abs >> 13) & 0x3ffu); /* NaN stays NaN */
    if (abs >= 0x477ff000u) return sign | 0x7c00u; /* rounds to >= 65520: Inf */
    if (abs < 0x38800000u) {
        /* Subnormal or zero in f16: value = m * 2^-24; round the f32 value to
         * a multiple of 2^-24 with ties to even. */
        if (abs < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 exactly ties to 0) */
        uint32_t exp = abs >> 23;             /* biased f32 exponent, 102..112 */
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exp;           /* 14..24: bits dropped to reach units of 2^-24 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    /* Normal: rebias exponent (127 -> 15) and round 23 -> 10 mantissa bits. */
    uint32_t v = abs - 0x38000000u; /* (127-15) << 23 */
    uint32_t q = v >> 13, rem = v & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

float lmc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

double lmc_load_f64(const void *p, lmc_dtype dt) {
    switch (dt) {
    case LMC_F32: return *(const float *)p;
    case LMC_F16: return lmc_f16_to_f32(*(const uint16_t *)p);
    case LMC_BF16: return lmc_bf16_to_f32(*(const uint16_t *)p);
    case LMC_I32: return *(const int32_t *)p;
    case LMC_U32: return *(const uint32_t *)p;
    case LMC_U8: return *(const uint8_t *)p;
    case LMC_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
    case LMC_I64: return (double)*(const int64_t *)p;
    default: return 0.0;
    }
}

/* Float to integer conversions truncate toward zero and saturate; NaN gives 0. */
static double clamp_int(double v, double lo, double hi) {
    if (isnan(v)) return 0.0;
    v = trunc(v);
    return v < lo ? lo : v > hi ? hi : v;
}

void lmc_store_f64(void *p, lmc_dtype dt, double v) {
    switch (dt) {
    case LMC_F32: *(float *)p = (float)v; break;
    case LMC_F16: *(uint16_t *)p = lmc_f32_to_f16((float)v); break;
    case LMC_BF16: *(uint16_t *)p = lmc_f32_to_bf16((float)v); break;
    case LMC_I32: *(int32_t *)p = (int32_t)clamp_int(v, -2147483648.0, 2147483647.0); break;
    case LMC_U32: *(uint32_t *)p = (uint32_t)clamp_int(v, 0.0, 4294967295.0); break;
    case LMC_U8: *(uint8_t *)p = (uint8_t)clamp_int(v, 0.0, 255.0); break;
    case LMC_BOOL: *(uint8_t *)p = v != 0.0; break;
    case LMC_I64: *(int64_t *)p = (int64_t)clamp_int(v, -9223372036854775808.0, 9223372036854774784.0); break;
    default: break;
    }
}

void lmc_convert(void *dst, lmc_dtype dst_dt, const void *src, lmc_dtype src_dt, size_t n) {
    size_t ds = lmc_dtype_size(dst_dt), ss = lmc_dtype_size(src_dt);
    if (dst_dt == src_dt) {
        memcpy(dst, src, n * ds);
        return;
    }
    /* Common float paths without the double round trip (which would double-round f16/bf16). */
    if (src_dt == LMC_F32 && dst_dt == LMC_BF16) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = lmc_f32_to_bf16(((const float *)src)[i]);
        return;
    }
    if (src_dt == LMC_BF16 && dst_dt == LMC_F32) {
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] = lmc_bf16_to_f32(((const uint16_t *)src)[i]);
        return;
    }
    if (src_dt == LMC_F32 && dst_dt == LMC_F16) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = lmc_f32_to_f16(((const float *)src)[i]);
        return;
    }
    if (src_dt == LMC_F16 && dst_dt == LMC_F32) {
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] = lmc_f16_to_f32(((const uint16_t *)src)[i]);
        return;
    }
    for (size_t i = 0; i < n; i++)
        lmc_store_f64((char *)dst + i * ds, dst_dt, lmc_load_f64((const char *)src + i * ss, src_dt));
}
