/* Core: arrays, views, reference counting, scopes, memory accounting,
 * dtype conversions and the thread pool. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "core/array.h"
#include "core/cpu.h"
#include "core/scratch.h"
#include "core/threadpool.h"
#include "lmc/ops.h"
#include "test_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Independent bf16 reference: pick the nearer of the two neighbours in
 * double arithmetic, ties to the even one. */
static uint16_t ref_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    double dlo = bits_to_f32(lo), dhi = (hi & 0x7fffffffu) >= 0x7f800000u ? (f > 0 ? INFINITY : -INFINITY) : bits_to_f32(hi);
    if ((lo & 0x7fffffffu) == 0x7f800000u) return (uint16_t)(lo >> 16); /* Inf */
    double d = f;
    /* Beyond the largest finite bf16, the "next" value is Inf at the overflow threshold. */
    if ((hi & 0x7f800000u) == 0x7f800000u) {
        double max = bits_to_f32(lo), thr = max + (double)(bits_to_f32(lo) - bits_to_f32(lo - 0x10000u)) / 2;
        if (fabs(d) >= fabs(thr)) return (uint16_t)((u & 0x80000000u) >> 16 | 0x7f80u);
        return (uint16_t)(lo >> 16);
    }
    double elo = fabs(d - dlo), ehi = fabs(dhi - d);
    if (elo < ehi) return (uint16_t)(lo >> 16);
    if (ehi < elo) return (uint16_t)(hi >> 16);
    return ((lo >> 16) & 1) ? (uint16_t)(hi >> 16) : (uint16_t)(lo >> 16);
}

static void test_bf16_conversion(void) {
    /* Hand-checked values. */
    CHECK(lmc_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(lmc_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(lmc_f32_to_bf16(bits_to_f32(0x3f808000u)) == 0x3f80); /* tie, even stays */
    CHECK(lmc_f32_to_bf16(bits_to_f32(0x3f818000u)) == 0x3f82); /* tie, odd rounds up */
    CHECK(lmc_f32_to_bf16(bits_to_f32(0x3f808001u)) == 0x3f81);
    CHECK(lmc_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(lmc_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(lmc_f32_to_bf16(bits_to_f32(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to Inf */
    uint16_t n = lmc_f32_to_bf16(NAN);
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    CHECK(lmc_f32_to_bf16(bits_to_f32(0x7f800001u)) != 0x7f80); /* signalling NaN stays NaN */
    /* Every bf16 value survives bf16 -> f32 -> bf16. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmc_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (lmc_f32_to_bf16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d bf16 values did not round-trip", bad);
    /* Random f32 bit patterns against the independent reference. */
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)next_u64();
        float f = bits_to_f32(u);
        if (isnan(f)) continue;
        if (lmc_f32_to_bf16(f) != ref_bf16(f)) bad++;
    }
    CHECKF(bad == 0, "%d random floats rounded differently from the reference", bad);
}

static void test_f16_conversion(void) {
    CHECK(lmc_f32_to_f16(1.0f) == 0x3c00);
    CHECK(lmc_f32_to_f16(-2.0f) == 0xc000);
    CHECK(lmc_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(lmc_f32_to_f16(65520.0f) == 0x7c00);   /* halfway to 2^16 rounds to Inf */
    CHECK(lmc_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(lmc_f32_to_f16(ldexpf(1, -24)) == 0x0001); /* smallest subnormal */
    CHECK(lmc_f32_to_f16(ldexpf(1, -25)) == 0x0000); /* tie to even: zero */
    CHECK(lmc_f32_to_f16(ldexpf(3, -26)) == 0x0001); /* 0.75 ulp rounds up */
    CHECK(lmc_f32_to_f16(ldexpf(3, -25)) == 0x0002); /* 1.5 ulp: tie to even (2) */
    CHECK(lmc_f32_to_f16(-0.0f) == 0x8000);
    CHECK((lmc_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (lmc_f32_to_f16(NAN) & 0x3ff));
    CHECK(lmc_f16_to_f32(0x3555) == 0x1.554p-2f);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmc_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (lmc_f32_to_f16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d f16 values did not round-trip", bad);
    /* GCC's _Float16 conversion is an independent correctly-rounded reference. */
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)next_u64();
        /* Half the samples in f16's range, where rounding is interesting. */
        if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u % (0x47800000u - 0x33000000u)));
        float f = bits_to_f32(u);
        if (isnan(f)) continue;
        _Float16 h = (_Float16)f;
        uint16_t ref;
        memcpy(&ref, &h, 2);
        if (lmc_f32_to_f16(f) != ref) bad++;
    }
    CHECKF(bad == 0, "%d random floats rounded differently from _Float16", bad);
}

static void test_views_and_refcount(void) {
    int64_t live0 = lmc_live_arrays();
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    int64_t shape[3] = {2, 3, 4};
    lmc_array *a = lmc_array_from_data(data, LMC_F32, 3, shape);
    CHECK(a && lmc_array_size(a) == 24 && lmc_array_is_contiguous(a));
    lmc_array *t = lmc_transpose(a);
    CHECK(t && lmc_array_shape(t)[0] == 4 && lmc_array_shape(t)[2] == 2);
    CHECK(lmc_array_data(t) == lmc_array_data(a)); /* a view, no copy */
    CHECK(!lmc_array_is_contiguous(t));
    /* t[i][j][k] = a[k][j][i] */
    float out[24];
    CHECK(lmc_array_read(t, LMC_F32, out, 24) == LMC_OK);
    CHECK(out[0] == 0 && out[1] == 12 && out[2] == 4 && out[6] == 1);
    lmc_array *s = lmc_slice(a, 2, 3, 0, -2); /* elements 3, 1 */
    CHECK(s && lmc_array_shape(s)[2] == 2);
    float so[12];
    CHECK(lmc_array_read(s, LMC_F32, so, 12) == LMC_OK);
    CHECK(so[0] == 3 && so[1] == 1 && so[2] == 7 && so[11] == 21);
    lmc_array *sl = lmc_slice(a, -1, -100, LMC_END, 1);
    CHECK(sl && lmc_array_shape(sl)[2] == 4);
    lmc_array *empty = lmc_slice(a, 1, 2, 1, 1);
    CHECK(empty && lmc_array_shape(empty)[1] == 0 && lmc_array_size(empty) == 0);
    /* Freeing the base keeps the views' buffer alive. */
    lmc_array_free(a);
    CHECK(lmc_array_read(t, LMC_F32, out, 24) == LMC_OK && out[1] == 12);
    lmc_array_free(t);
    lmc_array_free(s);
    lmc_array_free(sl);
    lmc_array_free(empty);
    CHECK(lmc_live_arrays() == live0);
}

static void test_reshape(void) {
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    int64_t shape[3] = {2, 3, 4};
    lmc_array *a = lmc_array_from_data(data, LMC_F32, 3, shape);
    int64_t s1[2] = {6, -1};
    lmc_array *r = lmc_reshape(a, 2, s1);
    CHECK(r && lmc_array_shape(r)[1] == 4 && lmc_array_data(r) == lmc_array_data(a));
    /* Splitting an axis of a transposed view is still a view; merging
     * transposed axes needs a copy. */
    int perm[3] = {1, 0, 2};
    lmc_array *p = lmc_permute(a, perm); /* [3, 2, 4] */
    int64_t s2[4] = {3, 2, 2, 2};
    lmc_array *rv = lmc_reshape(p, 4, s2);
    CHECK(rv && lmc_array_data(rv) == lmc_array_data(a));
    int64_t s3[2] = {6, 4};
    lmc_array *rc = lmc_reshape(p, 2, s3);
    CHECK(rc && lmc_array_data(rc) != lmc_array_data(a) && lmc_array_is_contiguous(rc));
    float o[24];
    CHECK(lmc_array_read(rc, LMC_F32, o, 24) == LMC_OK);
    /* row 1 of rc is p[0][1] = a[1][0] = 12..15 */
    CHECK(o[4] == 12 && o[7] == 15 && o[8] == 4);
    int64_t bad[2] = {5, -1};
    CHECK(lmc_reshape(a, 2, bad) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    CHECK(strstr(lmc_last_error(), "[2, 3, 4]") != NULL);
    int64_t two_infer[2] = {-1, -1};
    CHECK(lmc_reshape(a, 2, two_infer) == NULL);
    lmc_array_free(r);
    lmc_array_free(p);
    lmc_array_free(rv);
    lmc_array_free(rc);
    lmc_array_free(a);
}

static void test_broadcast_expand_concat(void) {
    float v[3] = {1, 2, 3};
    int64_t s[1] = {3};
    lmc_array *a = lmc_array_from_data(v, LMC_F32, 1, s);
    int64_t bs[2] = {2, 3};
    lmc_array *b = lmc_broadcast_to(a, 2, bs);
    CHECK(b && lmc_array_strides(b)[0] == 0);
    float o[6];
    CHECK(lmc_array_read(b, LMC_F32, o, 6) == LMC_OK && o[3] == 1 && o[5] == 3);
    int64_t bad[2] = {2, 4};
    CHECK(lmc_broadcast_to(a, 2, bad) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    lmc_array *e = lmc_expand_dims(a, 0);
    CHECK(e && lmc_array_ndim(e) == 2 && lmc_array_shape(e)[0] == 1);
    lmc_array *q = lmc_squeeze(e, 0);
    CHECK(q && lmc_array_ndim(q) == 1);
    CHECK(lmc_squeeze(a, 0) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    const lmc_array *parts[2] = {b, e};
    lmc_array *c = lmc_concatenate(2, parts, 0);
    CHECK(c && lmc_array_shape(c)[0] == 3);
    float co[9];
    CHECK(lmc_array_read(c, LMC_F32, co, 9) == LMC_OK && co[6] == 1 && co[8] == 3);
    /* bf16 + f32 concatenation promotes to f32. */
    lmc_array *h = lmc_empty(LMC_BF16, 2, (int64_t[]){1, 3});
    CHECK(lmc_write_slice(h, (int64_t[]){0, 0}, e) == LMC_OK);
    const lmc_array *mixed[2] = {h, b};
    lmc_array *m = lmc_concatenate(2, mixed, 0);
    CHECK(m && lmc_array_dtype(m) == LMC_F32);
    CHECK(lmc_array_read(m, LMC_F32, co, 9) == LMC_OK && co[0] == 1 && co[2] == 3 && co[8] == 3);
    const lmc_array *wrong[2] = {a, b};
    CHECK(lmc_concatenate(2, wrong, 0) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    /* write_slice bounds */
    lmc_array *z = lmc_empty(LMC_F32, 2, (int64_t[]){4, 3});
    CHECK(lmc_write_slice(z, (int64_t[]){2, 0}, b) == LMC_OK);
    CHECK(lmc_write_slice(z, (int64_t[]){3, 0}, b) == LMC_ERR_SHAPE);
    lmc_array *objs[] = {a, b, e, q, c, h, m, z};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) lmc_array_free(objs[i]);
}

static void test_scopes(void) {
    int64_t live0 = lmc_live_arrays();
    lmc_memory_stats m0 = lmc_memory(LMC_CPU);
    int64_t s[2] = {64, 64};
    lmc_array *kept = NULL, *outer_kept = NULL;
    lmc_scope_begin();
    {
        lmc_array *a = lmc_empty(LMC_F32, 2, s);
        lmc_array *t = lmc_transpose(a);
        lmc_scope_begin();
        {
            lmc_array *c = lmc_copy(t);
            lmc_array *d = lmc_copy(c);
            lmc_array_free(d); /* freed early by hand: the scope must not free it again */
            kept = lmc_scope_keep(lmc_copy(c));
        }
        lmc_scope_end();
        CHECK(kept != NULL && lmc_live_arrays() == live0 + 3);
        outer_kept = lmc_scope_keep(lmc_reshape(a, 1, (int64_t[]){4096}));
    }
    lmc_scope_end();
    /* kept moved into the outer scope and was freed with it; outer_kept survives. */
    CHECK(lmc_live_arrays() == live0 + 1);
    CHECK(lmc_array_size(outer_kept) == 4096);
    lmc_array_free(outer_kept);
    CHECK(lmc_live_arrays() == live0);
    CHECK(lmc_memory(LMC_CPU).active_bytes == m0.active_bytes);
    /* An array retained inside a scope survives its end with one reference. */
    lmc_scope_begin();
    lmc_array *r = lmc_array_retain(lmc_empty(LMC_F32, 2, s));
    lmc_scope_end();
    CHECK(lmc_array_size(r) == 4096);
    lmc_array_free(r);
    CHECK(lmc_live_arrays() == live0);
}

/* Freed small buffers are reused (memory.c's cache): live arrays never
 * share storage, a reused buffer holds its new size and one reference, the
 * accounting returns to where it was, and the limit still applies. */
/* The hold of large freed buffers: none outside a hold; inside, a freed
 * 1 MiB buffer serves the next allocation of its size (zeros asked for are
 * zeros), another size gets fresh memory, the held bytes stay within a
 * quarter of the peak, and the last end frees them. */
static void test_buffer_hold(void) {
    lmc_memory_stats m0 = lmc_memory(LMC_CPU);
    int64_t n = 262144, other = 300000; /* 1 MiB of f32, and more */
    lmc_array_free(lmc_zeros(LMC_F32, 1, &n));
    CHECK(lmc_buffer_held_bytes() == 0);
    lmc_buffer_hold_begin();
    lmc_buffer_hold_begin(); /* nested */
    lmc_array *big[8];
    for (int i = 0; i < 8; i++) big[i] = lmc_zeros(LMC_F32, 1, &n); /* a peak of 8 MiB or more */
    void *first = big[0]->buf->data;
    for (int64_t j = 0; j < n; j++) ((float *)lmc_array_data(big[0]))[j] = 7.0f;
    for (int i = 0; i < 8; i++) lmc_array_free(big[i]);
    size_t held = lmc_buffer_held_bytes();
    lmc_array *again = lmc_zeros(LMC_F32, 1, &n), *fresh = lmc_zeros(LMC_F32, 1, &other);
    int64_t nonzero = 0;
    for (int64_t j = 0; j < n; j++) nonzero += ((const float *)lmc_array_data(again))[j] != 0.0f;
    CHECK(nonzero == 0);
#if defined(__SANITIZE_ADDRESS__)
    CHECK(held == 0); /* sanitizer builds hold nothing: AddressSanitizer must see every free */
    (void)first;
#else
    CHECKF(held >= ((size_t)1 << 20) && held <= lmc_memory(LMC_CPU).peak_bytes / 4, "held %zu of peak %zu", held,
           lmc_memory(LMC_CPU).peak_bytes);
    CHECK(again->buf->data == first); /* the first one freed */
    CHECK(fresh && lmc_buffer_held_bytes() == held - ((size_t)1 << 20)); /* none of fresh's size was held */
#endif
    lmc_array_free(again);
    lmc_array_free(fresh);
    lmc_buffer_hold_end();
    CHECK(lmc_buffer_held_bytes() > 0 || held == 0); /* the outer hold is still open */
    lmc_buffer_hold_end();
    CHECK(lmc_buffer_held_bytes() == 0);
    lmc_buffer_hold_end(); /* an end without a begin does nothing */
    lmc_array_free(lmc_zeros(LMC_F32, 1, &n));
    CHECK(lmc_buffer_held_bytes() == 0 && lmc_memory(LMC_CPU).active_bytes == m0.active_bytes);
}

static void test_buffer_reuse(void) {
    lmc_memory_stats m0 = lmc_memory(LMC_CPU);
    enum { N = 40 };
    const int64_t sizes[] = {0, 1, 15, 16, 17, 1000, 1024, 4096, 65536, 65537, 100000};
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            lmc_array *a[N];
            for (int i = 0; i < N; i++) {
                a[i] = lmc_zeros(LMC_F32, 1, &sizes[k]);
                CHECK(a[i] && a[i]->buf->nbytes == (size_t)sizes[k] * 4 && atomic_load(&a[i]->buf->refcount) == 1);
                float *d = lmc_array_data(a[i]);
                int64_t nonzero = 0; /* zeros, whatever the buffer held before */
                for (int64_t j = 0; j < sizes[k]; j++) nonzero += d[j] != 0.0f;
                CHECK(nonzero == 0);
                for (int64_t j = 0; j < sizes[k]; j++) d[j] = (float)(i + 1);
            }
            int shared = 0, wrong = 0;
            for (int i = 0; i < N; i++) {
                for (int j = 0; j < i; j++) shared += sizes[k] > 0 && a[i]->buf->data == a[j]->buf->data;
                const float *d = lmc_array_data(a[i]);
                for (int64_t j = 0; j < sizes[k]; j++) wrong += d[j] != (float)(i + 1);
            }
            CHECKF(shared == 0 && wrong == 0, "size %lld: %d shared, %d overwritten", (long long)sizes[k], shared, wrong);
            for (int i = 0; i < N; i++) lmc_array_free(a[i]);
        }
    CHECK(lmc_memory(LMC_CPU).active_bytes == m0.active_bytes);
    /* a limit below a cached buffer's size still refuses it */
    int64_t n = 1000;
    lmc_array_free(lmc_zeros(LMC_F32, 1, &n));
    lmc_memory_set_limit(LMC_CPU, m0.active_bytes + 100);
    CHECK(lmc_zeros(LMC_F32, 1, &n) == NULL && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY);
    lmc_memory_set_limit(LMC_CPU, 0);
}

static void test_memory_limit(void) {
    lmc_memory_reset_peak(LMC_CPU);
    lmc_memory_stats m0 = lmc_memory(LMC_CPU);
    int64_t big[1] = {1 << 20};
    lmc_array *a = lmc_empty(LMC_F32, 1, big);
    lmc_memory_stats m1 = lmc_memory(LMC_CPU);
    CHECK(m1.active_bytes == m0.active_bytes + (4u << 20));
    CHECK(m1.peak_bytes >= m1.active_bytes);
    lmc_memory_set_limit(LMC_CPU, m1.active_bytes + (1u << 20));
    lmc_array *b = lmc_empty(LMC_F32, 1, big); /* 4 MiB > 1 MiB headroom */
    CHECK(b == NULL && lmc_last_status() == LMC_ERR_OUT_OF_MEMORY);
    CHECK(strstr(lmc_last_error(), "memory limit") != NULL);
    CHECK(lmc_memory(LMC_CPU).active_bytes == m1.active_bytes);
    lmc_array *small = lmc_empty(LMC_F32, 1, (int64_t[]){1024});
    CHECK(small != NULL);
    lmc_memory_set_limit(LMC_CPU, 0);
    lmc_array_free(small);
    lmc_array_free(a);
    CHECK(lmc_memory(LMC_CPU).active_bytes == m0.active_bytes);
    lmc_memory_reset_peak(LMC_CPU);
    CHECK(lmc_memory(LMC_CPU).peak_bytes == m0.active_bytes);
    /* Shapes that overflow are rejected before allocating. */
    int64_t huge[3] = {1ll << 40, 1ll << 30, 16};
    CHECK(lmc_empty(LMC_F32, 3, huge) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
    int64_t neg[1] = {-1};
    CHECK(lmc_empty(LMC_F32, 1, neg) == NULL && lmc_last_status() == LMC_ERR_SHAPE);
}

static void sum_chunk(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    int64_t *counts = ctx;
    for (int64_t i = begin; i < end; i++) __atomic_fetch_add(&counts[i], 1, __ATOMIC_RELAXED);
}

static void test_threadpool(void) {
    enum { N = 100003 };
    static int64_t counts[N];
    for (int threads = 1; threads <= 4; threads++) {
        CHECK(lmc_set_num_threads(threads) == LMC_OK);
        CHECK(lmc_num_threads() == threads);
        for (int rep = 0; rep < 50; rep++) {
            memset(counts, 0, sizeof counts);
            lmc_parallel_for(N, 7, sum_chunk, counts);
            int bad = 0;
            for (int i = 0; i < N; i++) bad += counts[i] != 1;
            CHECKF(bad == 0, "%d indices not visited exactly once with %d threads", bad, threads);
        }
    }
    CHECK(lmc_set_num_threads(100000) == LMC_ERR_INVALID_ARGUMENT);
    lmc_set_num_threads(0);
    CHECK(lmc_num_threads() >= 1);
}

/* Many tiny jobs back to back (decode's pattern): each index once, chunk t
 * always [t*chunk, ...) with thread == t, whichever thread claimed it. */
typedef struct {
    int64_t n, chunk;
    int nthreads;
    int64_t *counts;
    int bad_thread;
} small_job;

static void small_chunk(void *ctx, int64_t begin, int64_t end, int thread) {
    small_job *j = ctx;
    if (thread < 0 || thread >= j->nthreads || begin != thread * j->chunk ||
        end != (begin + j->chunk < j->n ? begin + j->chunk : j->n))
        __atomic_fetch_add(&j->bad_thread, 1, __ATOMIC_RELAXED);
    for (int64_t i = begin; i < end; i++) __atomic_fetch_add(&j->counts[i], 1, __ATOMIC_RELAXED);
}

/* A chunk that itself calls lmc_parallel_for: the inner call runs serially. */
static void nested_chunk(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    int64_t *counts = ctx;
    for (int64_t i = begin; i < end; i++) lmc_parallel_for(8, 1, sum_chunk, counts + i * 8);
}

typedef struct {
    int64_t counts[4096];
    int bad;
} submitter;

static void *submit_many(void *arg) {
    submitter *s = arg;
    for (int rep = 0; rep < 300; rep++) {
        memset(s->counts, 0, sizeof s->counts);
        lmc_parallel_for(4096, 16, sum_chunk, s->counts);
        for (int i = 0; i < 4096; i++) s->bad += s->counts[i] != 1;
    }
    return NULL;
}

static void test_threadpool_many_small(void) {
    static int64_t counts[64 * 8];
    for (int threads = 2; threads <= 3; threads++) {
        lmc_set_num_threads(threads);
        int bad = 0, bad_thread = 0;
        for (int rep = 0; rep < 20000; rep++) {
            int64_t n = 1 + rep % 37;
            small_job j = {.n = n, .nthreads = threads, .counts = counts};
            int64_t grain = 1 + rep % 3, units = (n + grain - 1) / grain;
            int used = units < threads ? (int)units : threads;
            j.chunk = (units + used - 1) / used * grain;
            memset(counts, 0, (size_t)n * sizeof counts[0]);
            lmc_parallel_for(n, grain, small_chunk, &j);
            for (int64_t i = 0; i < n; i++) bad += counts[i] != 1;
            bad_thread += j.bad_thread;
        }
        CHECKF(bad == 0 && bad_thread == 0, "%d threads: %d indices wrong, %d chunks out of place", threads, bad,
               bad_thread);
        /* nested: 64 outer indices, each running an inner job over 8 */
        memset(counts, 0, sizeof counts);
        lmc_parallel_for(64, 1, nested_chunk, counts);
        bad = 0;
        for (int i = 0; i < 64 * 8; i++) bad += counts[i] != 1;
        CHECKF(bad == 0, "nested, %d threads: %d indices wrong", threads, bad);
        /* concurrent submitters: jobs from several threads are serialised */
        submitter subs[3];
        pthread_t th[3];
        memset(subs, 0, sizeof subs);
        for (int i = 0; i < 3; i++) CHECK(pthread_create(&th[i], NULL, submit_many, &subs[i]) == 0);
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            CHECKF(subs[i].bad == 0, "concurrent submitter %d: %d indices wrong", i, subs[i].bad);
        }
    }
    lmc_set_num_threads(0);
}

/* lmc_parallel_split: every index exactly once, pieces inside one part and
 * aligned to the quantum, the parts contiguous and one per thread; with a
 * slow first part the other threads take over its back. */
typedef struct {
    int64_t n, quantum, nparts_seen;
    int64_t *counts;
    int bad_piece;
    int slow_ns; /* part 0 sleeps this long per piece */
    _Atomic int npieces0;
    pthread_t piece0_thread[256]; /* who ran each piece of part 0, and where it began */
    int64_t piece0_begin[256];
} split_job_t;

/* Pieces of part 0 run by a thread other than the one that ran its first
 * quantum (its owner, who takes the front): the help it got. */
static int part0_help(const split_job_t *j) {
    int n = atomic_load(&j->npieces0), owner = -1, help = 0;
    for (int i = 0; i < n && i < 256; i++)
        if (j->piece0_begin[i] == 0) owner = i;
    for (int i = 0; owner >= 0 && i < n && i < 256; i++) help += !pthread_equal(j->piece0_thread[i], j->piece0_thread[owner]);
    return help;
}

static void split_chunk(void *ctx, int64_t begin, int64_t end, int part) {
    split_job_t *j = ctx;
    int threads = lmc_num_threads();
    int64_t units = (j->n + j->quantum - 1) / j->quantum;
    int parts = threads < units ? threads : (int)units;
    int64_t pb = units * part / parts * j->quantum, pe = units * (part + 1) / parts * j->quantum;
    if (pe > j->n) pe = j->n;
    if (begin < pb || end > pe || begin >= end || begin % j->quantum || (end % j->quantum && end != j->n))
        __atomic_store_n(&j->bad_piece, 1, __ATOMIC_RELAXED);
    if (part == 0) {
        int k = atomic_fetch_add(&j->npieces0, 1);
        if (k < 256) {
            j->piece0_thread[k] = pthread_self();
            j->piece0_begin[k] = begin;
        }
    }
    if (part == 0 && j->slow_ns) {
        struct timespec ts = {0, j->slow_ns};
        nanosleep(&ts, NULL);
    }
    for (int64_t i = begin; i < end; i++) __atomic_fetch_add(&j->counts[i], 1, __ATOMIC_RELAXED);
}

static void test_threadpool_split(void) {
    enum { N = 100000 };
    static int64_t counts[N];
    static split_job_t j;
    const int64_t ns[] = {1, 31, 32, 33, 1000, 4097, N}, quanta[] = {1, 32, 1000};
    for (int threads = 1; threads <= 3; threads++) {
        lmc_set_num_threads(threads);
        for (int a = 0; a < 7; a++)
            for (int b = 0; b < 3; b++) {
                memset(&j, 0, sizeof j);
                j.n = ns[a];
                j.quantum = quanta[b];
                j.counts = counts;
                memset(counts, 0, (size_t)j.n * sizeof counts[0]);
                lmc_parallel_split(j.n, j.quantum, split_chunk, &j);
                int bad = 0;
                for (int64_t i = 0; i < j.n; i++) bad += counts[i] != 1;
                CHECKF(bad == 0 && !j.bad_piece, "%d threads, n %lld quantum %lld: %d indices wrong, bad piece %d", threads,
                       (long long)j.n, (long long)j.quantum, bad, j.bad_piece);
            }
        if (threads > 1) {
            /* part 0 is slow: still every index once, and another thread
             * helps with it. Whether one does depends on the scheduler (on
             * a busy machine a worker may not run at all during the job), so
             * up to five tries. */
            int helped = 0;
            for (int attempt = 0; attempt < 5 && !helped; attempt++) {
                memset(&j, 0, sizeof j);
                j.n = 64 * 32;
                j.quantum = 32;
                j.counts = counts;
                j.slow_ns = 500000;
                memset(counts, 0, (size_t)j.n * sizeof counts[0]);
                lmc_parallel_split(j.n, j.quantum, split_chunk, &j);
                int bad = 0;
                for (int64_t i = 0; i < j.n; i++) bad += counts[i] != 1;
                CHECK(bad == 0 && !j.bad_piece);
                helped = part0_help(&j) > 0;
            }
            CHECKF(helped, "%d threads: nobody helped the slow part in five tries", threads);
        }
    }
    lmc_set_num_threads(0);
}

/* lmc_pool_stats: counts each multi-threaded region once, none while off
 * or with one thread; waiting is part of the region's time. */
static void spin_chunk(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)thread;
    volatile double *acc = ctx;
    for (int64_t i = begin; i < end; i++)
        for (int k = 0; k < 1000; k++) *acc += 1e-9;
}

static void test_pool_stats(void) {
    static volatile double acc;
    lmc_set_num_threads(2);
    lmc_pool_stats_enable(true);
    for (int i = 0; i < 5; i++) lmc_parallel_for(64, 1, spin_chunk, (void *)&acc);
    lmc_pool_stats s = lmc_pool_stats_get();
    CHECKF(s.regions == 5, "%lld regions", (long long)s.regions);
    CHECK(s.region_s > 0 && s.wait_s >= 0 && s.wait_s <= s.region_s && s.serial_s >= 0);
    lmc_pool_stats_enable(false);
    lmc_parallel_for(64, 1, spin_chunk, (void *)&acc);
    CHECK(lmc_pool_stats_get().regions == 0);
    lmc_set_num_threads(1);
    lmc_pool_stats_enable(true);
    lmc_parallel_for(64, 1, spin_chunk, (void *)&acc);
    CHECK(lmc_pool_stats_get().regions == 0);
    lmc_pool_stats_enable(false);
    lmc_set_num_threads(0);
}

/* Per-thread scratch: aligned, kept while big enough, grown when not, and
 * separate per slot and per thread. */
static void *scratch_other_thread(void *arg) {
    (void)arg;
    return lmc_scratch(LMC_SCRATCH_QMM_X, 100);
}

static void test_scratch(void) {
    char *a = lmc_scratch(LMC_SCRATCH_QMM_X, 1000);
    CHECK(a && (uintptr_t)a % 64 == 0);
    memset(a, 1, 1000);
    CHECK(lmc_scratch(LMC_SCRATCH_QMM_X, 500) == a && lmc_scratch(LMC_SCRATCH_QMM_X, 1000) == a);
    char *b = lmc_scratch(LMC_SCRATCH_SDPA, 1000);
    CHECK(b && b != a);
    char *c = lmc_scratch(LMC_SCRATCH_QMM_X, 100000);
    CHECK(c && (uintptr_t)c % 64 == 0);
    memset(c, 2, 100000);
    pthread_t th;
    void *other = NULL;
    CHECK(pthread_create(&th, NULL, scratch_other_thread, NULL) == 0);
    pthread_join(th, &other);
    CHECK(other && other != c); /* freed with its thread */
}

static void test_errors_and_cpu(void) {
    lmc_clear_error();
    CHECK(lmc_last_status() == LMC_OK && lmc_last_error()[0] == 0);
    CHECK(lmc_transpose(NULL) == NULL && lmc_last_status() == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(lmc_status_name(LMC_ERR_FORMAT), "format error") == 0);
    lmc_cpu_info c = lmc_cpu();
    CHECK(c.path != NULL);
    fprintf(stderr, "cpu path: %s (avx2 %d avx512f %d avx512_bf16 %d amx_bf16 %d)\n", c.path, c.avx2, c.avx512f,
            c.avx512_bf16, c.amx_bf16);
    CHECK(lmc_dtype_size(LMC_BF16) == 2 && lmc_dtype_size(LMC_I64) == 8);
    CHECK(strcmp(lmc_dtype_name(LMC_BF16), "bfloat16") == 0);
}

int main(void) {
    RUN(test_bf16_conversion);
    RUN(test_f16_conversion);
    RUN(test_views_and_refcount);
    RUN(test_reshape);
    RUN(test_broadcast_expand_concat);
    RUN(test_scopes);
    RUN(test_memory_limit);
    RUN(test_buffer_reuse);
    RUN(test_buffer_hold);
    RUN(test_threadpool);
    RUN(test_threadpool_many_small);
    RUN(test_threadpool_split);
    RUN(test_pool_stats);
    RUN(test_scratch);
    RUN(test_errors_and_cpu);
    return TEST_REPORT();
}
