/* The fast fused kernels, written once in plain C with loops the compiler
 * vectorises (attention's inner loops in AVX2 / AVX-512 intrinsics behind
 * one set of vector macros), and compiled per ISA: fused_avx2.c and
 * fused_avx512.c include this file with LMC_FUSED_ISA set (avx2 / avx512) so
 * each gets the vector width of its instruction set. Math in f32; parallel
 * over rows (norms, rope) or over (batch, head, query block) for attention,
 * which uses an online (flash-style) softmax so the scores never exist as a
 * whole. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* GCC's -O2 vectorises only loops that need no scalar remainder; these
 * kernels are written to be vectorised, so ask for the full cost model. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif
#include <string.h>

#include <immintrin.h>

#include "backend/cpu/fused_internal.h"
#include "core/scratch.h"
#include "core/threadpool.h"

#define FUSED_CAT2(a, b) a##_##b
#define FUSED_CAT(a, b) FUSED_CAT2(a, b)
#define FUSED_FN(name) FUSED_CAT(name, LMC_FUSED_ISA)

/* n elements of t from element offset off with stride s, as f32. */
static void load_row(float *dst, const lmc_array *t, int64_t off, int64_t n, int64_t s) {
    const char *p = (const char *)lmc_array_ptr(t) + off * (int64_t)lmc_dtype_size(t->dtype);
    if (s == 1 && t->dtype == LMC_BF16) {
        const uint16_t *h = (const uint16_t *)p;
        for (int64_t i = 0; i < n; i++) {
            union { uint32_t u; float f; } c = {.u = (uint32_t)h[i] << 16};
            dst[i] = c.f;
        }
        return;
    }
    if (s == 1 && t->dtype == LMC_F16) { /* F16C (both ISAs here have it): exact, 8 at a time */
        const uint16_t *h = (const uint16_t *)p;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
        for (; i < n; i++) dst[i] = _cvtsh_ss(h[i]);
        return;
    }
    if (s == 1) {
        lmc_convert(dst, LMC_F32, p, t->dtype, (size_t)n);
        return;
    }
    size_t sz = lmc_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++) lmc_convert(dst + i, LMC_F32, p + i * s * (int64_t)sz, t->dtype, 1);
}

/* out is contiguous (fused_internal.h): row r starts at element r * n. */
static void store_row(lmc_array *out, int64_t r, const float *src, int64_t n) {
    char *p = (char *)lmc_array_ptr(out) + r * n * (int64_t)lmc_dtype_size(out->dtype);
    lmc_convert(p, out->dtype, src, LMC_F32, (size_t)n);
}

/* Element offset of row r (all axes but the last, row-major) in t. */
static int64_t row_offset(const lmc_array *t, int64_t r) {
    int64_t off = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        off += r % t->shape[d] * t->strides[d];
        r /= t->shape[d];
    }
    return off;
}

typedef struct norm_job {
    lmc_array *out;
    const lmc_array *x;
    const float *w, *b; /* f32 copies, (1 + w) already applied; NULL when absent */
    float eps;
    bool layer;
    float *scratch; /* D floats per thread */
} norm_job;

/* One row: y = (x - mean) * rs * w + b (mean only for layer norm). x and y
 * may be the same buffer: each element is read before it is written. */
static void norm_row(const norm_job *j, const float *x, float *y, int64_t D) {
    float mean = 0.0f;
    if (j->layer) {
        float acc[16] = {0};
        int64_t d = 0;
        for (; d + 16 <= D; d += 16)
            for (int l = 0; l < 16; l++) acc[l] += x[d + l];
        for (int l = 0; l < 16; l++) mean += acc[l];
        for (; d < D; d++) mean += x[d];
        mean /= (float)D;
    }
    /* x - mean is x exactly when mean is 0 (also for -0 and NaN): one form for both norms */
    float acc[16] = {0}, ss = 0.0f; /* the sum of squares with 16 partial sums (vectorises without reassociation flags) */
    int64_t d = 0;
    for (; d + 16 <= D; d += 16)
        for (int l = 0; l < 16; l++) acc[l] += (x[d + l] - mean) * (x[d + l] - mean);
    for (int l = 0; l < 16; l++) ss += acc[l];
    for (; d < D; d++) ss += (x[d] - mean) * (x[d] - mean);
    float rs = 1.0f / sqrtf(ss / (float)D + j->eps);
    if (j->w && j->b)
        for (d = 0; d < D; d++) y[d] = (x[d] - mean) * rs * j->w[d] + j->b[d];
    else if (j->w)
        for (d = 0; d < D; d++) y[d] = (x[d] - mean) * rs * j->w[d];
    else if (j->b)
        for (d = 0; d < D; d++) y[d] = (x[d] - mean) * rs + j->b[d];
    else
        for (d = 0; d < D; d++) y[d] = (x[d] - mean) * rs;
}

static void norm_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    const norm_job *j = ctx;
    int64_t D = j->x->shape[j->x->ndim - 1], sx = j->x->strides[j->x->ndim - 1];
    /* f32 rows in place, f32 out: no copies in and out (a decode step's norms are many and short) */
    bool direct = j->x->dtype == LMC_F32 && sx == 1 && j->out->dtype == LMC_F32;
    float *row = j->scratch + (size_t)thread * (size_t)D;
    for (int64_t r = r0; r < r1; r++) {
        if (direct) {
            norm_row(j, (const float *)lmc_array_ptr(j->x) + row_offset(j->x, r), (float *)lmc_array_ptr(j->out) + r * D, D);
            continue;
        }
        load_row(row, j->x, row_offset(j->x, r), D, sx);
        norm_row(j, row, row, D);
        store_row(j->out, r, row, D);
    }
}

/* w [D] as f32 in wf, (1 + w) when one_plus_weight; returns wf. */
static const float *norm_weights(float *wf, const lmc_array *w, int64_t D, bool one_plus_weight) {
    load_row(wf, w, 0, D, w->strides[0]);
    if (one_plus_weight)
        for (int64_t d = 0; d < D; d++) wf[d] += 1.0f;
    return wf;
}

static lmc_status norm_run(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps,
                           bool one_plus_weight, bool layer) {
    int64_t D = x->shape[x->ndim - 1], rows = x->size / (D ? D : 1);
    int nt = lmc_num_threads();
    float *buf = malloc(((size_t)nt + 2) * (size_t)D * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", layer ? "lmc_layer_norm" : "lmc_rms_norm");
    norm_job j = {.out = out, .x = x, .eps = eps, .layer = layer, .scratch = buf + 2 * D};
    if (w) j.w = norm_weights(buf, w, D, one_plus_weight);
    if (b) {
        load_row(buf + D, b, 0, D, b->strides[0]);
        j.b = buf + D;
    }
    lmc_parallel_for(rows, D >= 4096 ? 1 : 4096 / D + 1, norm_rows, &j);
    free(buf);
    return LMC_OK;
}

lmc_status FUSED_FN(lmc_cpu_rms_norm)(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps,
                                      bool one_plus_weight) {
    return norm_run(out, x, w, NULL, eps, one_plus_weight, false);
}

lmc_status FUSED_FN(lmc_cpu_layer_norm)(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b,
                                        float eps) {
    return norm_run(out, x, w, b, eps, false, true);
}

/* --- add + rms_norm (kernels.h: one pass of what add then rms_norm give) ---- */

typedef struct add_norm_job {
    norm_job n;            /* out, eps and the f32 weights */
    lmc_array *sum;        /* contiguous, as out */
    const lmc_array *a, *b;
} add_norm_job;

static void add_norm_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    const add_norm_job *j = ctx;
    const lmc_array *a = j->a, *b = j->b;
    int64_t D = a->shape[a->ndim - 1];
    float *ra = j->n.scratch + (size_t)thread * 2 * (size_t)D, *rb = ra + D;
    for (int64_t r = r0; r < r1; r++) {
        float *s = (float *)lmc_array_ptr(j->sum) + r * D;
        load_row(ra, a, row_offset(a, r), D, a->strides[a->ndim - 1]);
        load_row(rb, b, row_offset(b, r), D, b->strides[b->ndim - 1]);
        for (int64_t d = 0; d < D; d++) s[d] = ra[d] + rb[d];
        norm_row(&j->n, s, (float *)lmc_array_ptr(j->n.out) + r * D, D);
    }
}

lmc_status FUSED_FN(lmc_cpu_add_rms_norm)(lmc_array *out, lmc_array *sum, const lmc_array *a, const lmc_array *b,
                                          const lmc_array *w, float eps, bool one_plus_weight) {
    int64_t D = a->shape[a->ndim - 1], rows = a->size / (D ? D : 1);
    int nt = lmc_num_threads();
    float *buf = malloc(((size_t)2 * nt + 1) * (size_t)D * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "add_rms_norm: out of memory");
    add_norm_job j = {.n = {.out = out, .eps = eps, .scratch = buf + D}, .sum = sum, .a = a, .b = b};
    if (w) j.n.w = norm_weights(buf, w, D, one_plus_weight);
    lmc_parallel_for(rows, D >= 4096 ? 1 : 4096 / D + 1, add_norm_rows, &j);
    free(buf);
    return LMC_OK;
}

/* --- rope ------------------------------------------------------------------- */

typedef struct rope_job {
    lmc_array *out;
    const lmc_array *x;
    const lmc_rope_params *p;
    const float *cs; /* per position row: half cos then half sin */
    int64_t T, B1;   /* B1: x's first axis size when positions are [B, T], else 1 */
    float *scratch;  /* D floats per thread */
} rope_job;

/* One row of D features rotated by its position's cos c and sin s (half =
 * dims / 2 of each); the features past dims are copied. */
static inline void rope_row(const lmc_rope_params *p, const float *c, const float *s, const float *row, float *o,
                            int64_t D) {
    int64_t half = p->dims / 2;
    if (p->traditional) {
        for (int64_t i = 0; i < half; i++) {
            float x0 = row[2 * i], x1 = row[2 * i + 1];
            o[2 * i] = x0 * c[i] - x1 * s[i];
            o[2 * i + 1] = x1 * c[i] + x0 * s[i];
        }
    } else {
        for (int64_t i = 0; i < half; i++) o[i] = row[i] * c[i] - row[i + half] * s[i];
        for (int64_t i = 0; i < half; i++) o[i + half] = row[i + half] * c[i] + row[i] * s[i];
    }
    for (int64_t d = p->dims; d < D; d++) o[d] = row[d];
}

static void rope_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    const rope_job *j = ctx;
    int nd = j->x->ndim;
    int64_t D = j->x->shape[nd - 1], sx = j->x->strides[nd - 1], half = j->p->dims / 2;
    int64_t rows_per_b = j->x->size / D / j->B1;
    float *row = j->scratch + (size_t)thread * 2 * (size_t)D, *o = row + D;
    for (int64_t r = r0; r < r1; r++) {
        int64_t t = r % j->T, bi = j->B1 > 1 ? r / rows_per_b : 0;
        const float *c = j->cs + (bi * j->T + t) * 2 * half, *s = c + half;
        load_row(row, j->x, row_offset(j->x, r), D, sx);
        rope_row(j->p, c, s, row, o, D);
        store_row(j->out, r, o, D);
    }
}

/* The last tables of cos/sin made on this thread, kept by their angles:
 * a forward pass rotates q and k of every layer at the same positions with
 * one or two sets of frequencies (Gemma 3's local and global), and the
 * cosf/sinf of a table were most of a step's rope time (Qwen3-0.6B: 56
 * tables of 64 angles a token where one is needed; a prefill chunk of 64
 * tokens made its 4096 angles' cosf/sinf serially in every layer). A table
 * is found again only when every angle is the same float, so its values are
 * the ones cosf/sinf would give. */
enum { ROPE_MEMO_SLOTS = 2, ROPE_MEMO_MAX = 1 << 16 }; /* angles a kept table may have (768 KiB) */
typedef struct rope_memo {
    size_t n, cap; /* angles held and room; n 0: empty */
    float *ang;    /* cap angles, then 2 cap floats of the table */
} rope_memo;
typedef struct rope_memos {
    rope_memo slot[ROPE_MEMO_SLOTS];
    int next; /* the slot the next new table takes */
} rope_memos;
/* Made on a thread's first rope and freed when the thread ends. */
static pthread_key_t g_rope_memo_key;
static bool g_rope_memo_ok;
static void rope_memos_free(void *p) {
    rope_memos *m = p;
    for (int k = 0; k < ROPE_MEMO_SLOTS; k++) free(m->slot[k].ang);
    free(m);
}
static void rope_memo_key_init(void) { g_rope_memo_ok = pthread_key_create(&g_rope_memo_key, rope_memos_free) == 0; }

static rope_memos *rope_memos_here(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rope_memo_key_init);
    if (!g_rope_memo_ok) return NULL;
    rope_memos *m = pthread_getspecific(g_rope_memo_key);
    if (!m && (m = calloc(1, sizeof *m)) && pthread_setspecific(g_rope_memo_key, m) != 0) {
        free(m);
        m = NULL;
    }
    return m;
}

/* cs[row * 2 * half ...]: half cos then half sin for each of the rows'
 * angles (ang, rows * half of them). */
static void rope_table(float *cs, const float *ang, int64_t rows, int64_t half) {
    size_t n = (size_t)(rows * half);
    rope_memos *ms = n <= ROPE_MEMO_MAX ? rope_memos_here() : NULL; /* none: the table is made every time */
    for (int k = 0; ms && k < ROPE_MEMO_SLOTS; k++) {
        const rope_memo *m = &ms->slot[k];
        if (m->n == n && !memcmp(m->ang, ang, n * sizeof *ang)) {
            memcpy(cs, m->ang + m->cap, 2 * n * sizeof *cs);
            return;
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < half; i++) {
            float a = ang[r * half + i];
            cs[r * 2 * half + i] = cosf(a);
            cs[r * 2 * half + half + i] = sinf(a);
        }
    if (!ms) return;
    rope_memo *m = &ms->slot[ms->next];
    if (m->cap < n) { /* grown to the largest table seen, never shrunk */
        free(m->ang);
        *m = (rope_memo){0};
        if (!(m->ang = malloc(3 * n * sizeof *m->ang))) return; /* not kept: made again next time */
        m->cap = n;
    }
    ms->next = (ms->next + 1) % ROPE_MEMO_SLOTS;
    m->n = n;
    memcpy(m->ang, ang, n * sizeof *ang);
    memcpy(m->ang + m->cap, cs, 2 * n * sizeof *cs);
}

/* The cos/sin table of positions [B1, T] (B1 = 1: positions [T]) into cs,
 * 2 * half floats a row; ang holds B1 * T * half floats of work space. */
static void rope_cos_sin(float *cs, float *ang, const lmc_rope_params *p, const lmc_array *inv_freqs,
                         const lmc_array *positions, int64_t B1, int64_t T) {
    int64_t half = p->dims / 2;
    const float *inv = lmc_array_ptr(inv_freqs);
    /* cos/sin of each (position, frequency) once, in f32 as HF computes them. */
    for (int64_t bi = 0; bi < B1; bi++)
        for (int64_t t = 0; t < T; t++) {
            int32_t pos = lmc_rope_pos(positions, bi, t);
            for (int64_t i = 0; i < half; i++)
                ang[(bi * T + t) * half + i] = lmc_rope_angle(pos, p->scale, inv[i * inv_freqs->strides[0]]);
        }
    rope_table(cs, ang, B1 * T, half);
}

lmc_status FUSED_FN(lmc_cpu_rope)(lmc_array *out, const lmc_array *x, const lmc_rope_params *p,
                                  const lmc_array *inv_freqs, const lmc_array *positions) {
    int nd = x->ndim;
    int64_t T = x->shape[nd - 2], D = x->shape[nd - 1], half = p->dims / 2;
    int64_t B1 = positions->ndim == 2 ? x->shape[0] : 1;
    int nt = lmc_num_threads();
    size_t table = (size_t)(B1 * T * 2 * half);
    /* the table, the threads' scratch rows, then the angles */
    float *buf = malloc((table + (size_t)nt * 2 * (size_t)D + table / 2) * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_rope: out of memory");
    rope_cos_sin(buf, buf + table + (size_t)nt * 2 * (size_t)D, p, inv_freqs, positions, B1, T);
    rope_job j = {.out = out, .x = x, .p = p, .cs = buf, .T = T, .B1 = B1, .scratch = buf + table};
    lmc_parallel_for(x->size / D, D >= 4096 ? 1 : 4096 / D + 1, rope_rows, &j);
    free(buf);
    return LMC_OK;
}

/* --- rope_qk (kernels.h: q's and k's rms_norm and rope in one pass) --------- */

typedef struct rope_qk_job {
    lmc_array *const *out;
    const lmc_array *const *x;
    const lmc_rope_params *p;
    const float *cs;   /* as rope_job's */
    int64_t T, B1;
    bool norm;
    norm_job n[2];     /* eps and x[i]'s f32 norm weights */
    int64_t rows0;     /* rows of x[0]; x[1]'s follow them */
    float *scratch;    /* 2 D floats per thread */
} rope_qk_job;

/* The same arithmetic as rms_norm's rows and then rope's, on one row in hand. */
static void rope_qk_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    const rope_qk_job *j = ctx;
    int64_t D = j->x[0]->shape[3], half = j->p->dims / 2;
    float *row = j->scratch + (size_t)thread * 2 * (size_t)D, *o = row + D;
    for (int64_t r = r0; r < r1; r++) {
        int i = r >= j->rows0;
        int64_t ri = i ? r - j->rows0 : r;
        const lmc_array *x = j->x[i];
        int64_t t = ri % j->T, bi = j->B1 > 1 ? ri / (x->shape[1] * j->T) : 0;
        const float *c = j->cs + (bi * j->T + t) * 2 * half, *s = c + half;
        load_row(row, x, row_offset(x, ri), D, x->strides[3]);
        if (j->norm) norm_row(&j->n[i], row, row, D);
        rope_row(j->p, c, s, row, o, D);
        store_row(j->out[i], ri, o, D);
    }
}

lmc_status FUSED_FN(lmc_cpu_rope_qk)(lmc_array *const out[2], const lmc_array *const x[2], bool norm,
                                     const lmc_array *const w[2], float eps, bool one_plus_weight,
                                     const lmc_rope_params *p, const lmc_array *inv_freqs,
                                     const lmc_array *positions) {
    int64_t B = x[0]->shape[0], T = x[0]->shape[2], D = x[0]->shape[3], half = p->dims / 2;
    int64_t B1 = positions->ndim == 2 ? B : 1;
    int nt = lmc_num_threads();
    size_t table = (size_t)(B1 * T * 2 * half);
    /* the table, two norm weights, the threads' scratch rows, then the angles */
    float *buf = malloc((table + 2 * (size_t)D + (size_t)nt * 2 * (size_t)D + table / 2) * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "rope_qk: out of memory");
    float *wf = buf + table, *scratch = wf + 2 * D;
    rope_cos_sin(buf, scratch + (size_t)nt * 2 * (size_t)D, p, inv_freqs, positions, B1, T);
    rope_qk_job j = {.out = out, .x = x, .p = p, .cs = buf, .T = T, .B1 = B1, .norm = norm,
                     .rows0 = x[0]->size / D, .scratch = scratch};
    for (int i = 0; i < 2; i++) {
        j.n[i].eps = eps;
        if (norm && w[i]) j.n[i].w = norm_weights(wf + i * D, w[i], D, one_plus_weight);
    }
    int64_t rows = j.rows0 + x[1]->size / D;
    lmc_parallel_for(rows, D >= 4096 ? 1 : 4096 / D + 1, rope_qk_rows, &j);
    free(buf);
    return LMC_OK;
}

/* --- attention -------------------------------------------------------------- */

/* A task holds about SDPA_QB query rows; keys go in blocks of SDPA_KB. */
/* Where few query rows read the cache in place (decode), a thread streams
 * it with little arithmetic per byte: rows are prefetched into L2 about
 * SDPA_PF_BYTES ahead in the order they are read (a block's keys, its
 * values, the next block's keys, ..., the next head's), so memory does not
 * wait at each head's short runs of rows (tg128 reads 1-128 keys a head),
 * and L1 is not flooded with rows read a block later. */
enum { SDPA_QB = 64, SDPA_KB = 64, SDPA_PF_BYTES = 8192 };

/* The attention inner loops keep their accumulators in vector registers,
 * written with intrinsics so the FMAs stay fused under -std=c17 (which
 * turns off contraction) and the tiles stay in registers. VW floats a
 * vector; SC_NR query rows share each loaded key vector in the scores; P·V
 * holds two rows of up to PV_NV vectors of the output. */
#include <immintrin.h>
#if defined(__AVX512F__)
typedef __m512 vec;
#define VW 16
#define SC_NR 4
#define PV_NV 8
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vfma _mm512_fmadd_ps
#define vmul _mm512_mul_ps
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmax _mm512_max_ps
#define vset1 _mm512_set1_ps
#define vzero _mm512_setzero_ps
#define vsum _mm512_reduce_add_ps
#define vhmax _mm512_reduce_max_ps
#define vfnma _mm512_fnmadd_ps
#define vround(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(f) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(127)), 23))
#define vzero_where_ninf(s, w) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, vset1(-INFINITY), _CMP_NEQ_UQ), w)
#else
typedef __m256 vec;
#define VW 8
#define SC_NR 2
#define PV_NV 4
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vfma _mm256_fmadd_ps
#define vmul _mm256_mul_ps
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmax _mm256_max_ps
#define vset1 _mm256_set1_ps
#define vzero _mm256_setzero_ps
#define vfnma _mm256_fnmadd_ps
#define vround(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(f) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(127)), 23))
#define vzero_where_ninf(s, w) _mm256_and_ps(_mm256_cmp_ps(s, vset1(-INFINITY), _CMP_NEQ_UQ), w)
static inline float vsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
#define SDPA_INLINE static inline __attribute__((always_inline))

/* Rows of a key or value block as the prefetch sees them: n rows of
 * row_bytes, stride bytes apart. */
typedef struct sdpa_rows {
    const char *base;
    int64_t stride, row_bytes, n;
} sdpa_rows;

/* Prefetches row i of the sequence cur, then next (i past cur's end falls
 * into next). */
SDPA_INLINE void sdpa_prefetch_row(const sdpa_rows *cur, const sdpa_rows *next, int64_t i) {
    const sdpa_rows *r = cur;
    if (i >= cur->n) {
        i -= cur->n;
        r = next;
        if (i >= r->n) return;
    }
    const char *a = r->base + i * r->stride;
    for (int64_t off = 0; off < r->row_bytes; off += 64) _mm_prefetch(a + off, _MM_HINT_T1);
}

/* e^x for x <= 0: x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor
 * polynomial to r^7 (relative error < 1e-7), 2^n through the exponent bits.
 * Inputs below -87 are clamped (the caller zeroes hidden keys itself). */
static inline vec vexp(vec x) {
    vec v = vmax(vset1(-87.0f), x); /* max returns its second operand for NaN: NaN stays NaN */
    vec f = vround(vmul(v, vset1(1.44269504088896341f)));
    vec r = vfnma(f, vset1(0.693145751953125f), v);
    r = vfnma(f, vset1(1.42860682030941723e-6f), r);
    vec p = vset1(1.0f / 5040.0f);
    p = vfma(p, r, vset1(1.0f / 720.0f));
    p = vfma(p, r, vset1(1.0f / 120.0f));
    p = vfma(p, r, vset1(1.0f / 24.0f));
    p = vfma(p, r, vset1(1.0f / 6.0f));
    p = vfma(p, r, vset1(0.5f));
    p = vfma(p, r, vset1(1.0f));
    p = vfma(p, r, vset1(1.0f));
    return vmul(p, vpow2i(f));
}

/* Key and value rows read in place: f32, or f16 / bf16 widened in registers
 * (exactly, so the arithmetic is that of the same rows stored as f32). */
enum { KV_F32, KV_F16, KV_BF16 };

SDPA_INLINE vec vload_kv(const void *p, int64_t i, const int kd) {
    if (kd == KV_F32) return vload((const float *)p + i);
#if defined(__AVX512F__)
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    if (kd == KV_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#else
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (kd == KV_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#endif
}

/* kt (D x SDPA_KB) = the nk key rows K (stride ks) transposed, zero after
 * nk. With AVX-512, 16 x 16 tiles go through registers (unpack within
 * 128-bit lanes, then lane shuffles); the rest element by element. */
static void transpose_keys(const float *K, int64_t ks, int64_t nk, int64_t D, float *kt) {
    int64_t c0 = 0, dfull = 0;
#if defined(__AVX512F__)
    dfull = D / 16 * 16;
    for (; c0 + 16 <= nk; c0 += 16)
        for (int64_t d0 = 0; d0 < dfull; d0 += 16) {
            __m512 r[16], a[16], b[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(K + (c0 + i) * ks + d0);
            for (int i = 0; i < 16; i += 2) {
                a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            /* b[4g + k], lane l: column 4l + k of rows 4g..4g+3 */
            for (int g = 0; g < 16; g += 4) {
                __m512d x0 = _mm512_castps_pd(a[g]), x1 = _mm512_castps_pd(a[g + 1]);
                __m512d x2 = _mm512_castps_pd(a[g + 2]), x3 = _mm512_castps_pd(a[g + 3]);
                b[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
                b[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
                b[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
                b[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
            }
            for (int k = 0; k < 4; k++) {
                __m512 c_lo = _mm512_shuffle_f32x4(b[k], b[4 + k], 0x44), c_hi = _mm512_shuffle_f32x4(b[k], b[4 + k], 0xEE);
                __m512 d_lo = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0x44);
                __m512 d_hi = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0xEE);
                float *o = kt + (d0 + k) * SDPA_KB + c0;
                _mm512_storeu_ps(o, _mm512_shuffle_f32x4(c_lo, d_lo, 0x88));
                _mm512_storeu_ps(o + 4 * SDPA_KB, _mm512_shuffle_f32x4(c_lo, d_lo, 0xDD));
                _mm512_storeu_ps(o + 8 * SDPA_KB, _mm512_shuffle_f32x4(c_hi, d_hi, 0x88));
                _mm512_storeu_ps(o + 12 * SDPA_KB, _mm512_shuffle_f32x4(c_hi, d_hi, 0xDD));
            }
        }
    for (int64_t c = 0; c < c0; c++)
        for (int64_t d = dfull; d < D; d++) kt[d * SDPA_KB + c] = K[c * ks + d];
#endif
    for (int64_t c = c0; c < nk; c++)
        for (int64_t d = 0; d < D; d++) kt[d * SDPA_KB + c] = K[c * ks + d];
    for (int64_t c = nk; c < SDPA_KB; c++)
        for (int64_t d = 0; d < D; d++) kt[d * SDPA_KB + c] = 0.0f;
    (void)dfull;
}

/* Scores of NR query rows (stride qs) against the SDPA_KB keys of the
 * transposed block kt (D x SDPA_KB), 4 vectors of keys at a time: each
 * loaded key vector serves all NR rows. */
SDPA_INLINE void score_tile_t(const float *q, int64_t qs, const float *kt, int64_t D, float *S, const int NR) {
    for (int col = 0; col < SDPA_KB; col += 4 * VW) {
        vec a[SC_NR][4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) a[r][v] = vzero();
        for (int64_t d = 0; d < D; d++) {
            const float *kd = kt + d * SDPA_KB + col;
            vec k0 = vload(kd), k1 = vload(kd + VW), k2 = vload(kd + 2 * VW), k3 = vload(kd + 3 * VW);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                vec b = vset1(q[r * qs + d]);
                a[r][0] = vfma(b, k0, a[r][0]);
                a[r][1] = vfma(b, k1, a[r][1]);
                a[r][2] = vfma(b, k2, a[r][2]);
                a[r][3] = vfma(b, k3, a[r][3]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) vstore(S + r * SDPA_KB + col + v * VW, a[r][v]);
    }
}

/* Scores of NR query rows against nk key rows (stride ks), as dot products
 * over Dp (a multiple of VW, rows zero-padded): for few rows, where
 * transposing the key block would cost more than the scores. Four keys at a
 * time keep 4 * NR independent accumulators in flight. */
SDPA_INLINE void score_tile_dot(const float *q, int64_t qs, const void *K, int64_t ks, int64_t nk, const sdpa_rows *pf,
                                int64_t Dp, float *S, const int NR, const int kd) {
    /* rows ahead that make SDPA_PF_BYTES */
    const int64_t pfd = pf ? (SDPA_PF_BYTES + pf[0].row_bytes - 1) / pf[0].row_bytes : 0;
    int64_t c = 0;
    for (; c + 4 <= nk; c += 4) {
        vec a[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) a[r][u] = vzero();
        const int64_t kc = c * ks;
        if (pf)
            for (int u = 0; u < 4; u++) sdpa_prefetch_row(&pf[0], &pf[1], c + u + pfd);
        for (int64_t d = 0; d < Dp; d += VW) {
            vec k0 = vload_kv(K, kc + d, kd), k1 = vload_kv(K, kc + ks + d, kd), k2 = vload_kv(K, kc + 2 * ks + d, kd),
                k3 = vload_kv(K, kc + 3 * ks + d, kd);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                vec qv = vload(q + r * qs + d);
                a[r][0] = vfma(qv, k0, a[r][0]);
                a[r][1] = vfma(qv, k1, a[r][1]);
                a[r][2] = vfma(qv, k2, a[r][2]);
                a[r][3] = vfma(qv, k3, a[r][3]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) S[r * SDPA_KB + c + u] = vsum(a[r][u]);
    }
    for (; c < nk; c++) {
        vec a[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) a[r] = vzero();
        for (int64_t d = 0; d < Dp; d += VW) {
            vec kv = vload_kv(K, c * ks + d, kd);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) a[r] = vfma(vload(q + r * qs + d), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) S[r * SDPA_KB + c] = vsum(a[r]);
    }
}

/* Two output rows a0, a1 (NV vectors each) rescaled by c0, c1 and plus the
 * weighted value rows: p0[c] * V[c] and p1[c] * V[c] for the nk keys, the
 * accumulators in registers for the whole key block. */
SDPA_INLINE void pv_tile(float *a0, float *a1, float c0, float c1, const float *p0, const float *p1, const void *V,
                         int64_t v0, int64_t vs, int64_t nk, const sdpa_rows *pf, const int NV, const int vd) {
    const int64_t pfd = pf ? (SDPA_PF_BYTES + pf[0].row_bytes - 1) / pf[0].row_bytes : 0;
    vec x0[PV_NV], x1[PV_NV];
    vec s0 = vset1(c0), s1 = vset1(c1);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        x0[v] = vmul(vload(a0 + v * VW), s0);
        x1[v] = vmul(vload(a1 + v * VW), s1);
    }
    for (int64_t c = 0; c < nk; c++) {
        const int64_t vr = v0 + c * vs;
        if (pf) sdpa_prefetch_row(&pf[0], &pf[1], c + pfd);
        vec b0 = vset1(p0[c]), b1 = vset1(p1[c]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            vec t = vload_kv(V, vr + v * VW, vd);
            x0[v] = vfma(b0, t, x0[v]);
            x1[v] = vfma(b1, t, x1[v]);
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        vstore(a0 + v * VW, x0[v]);
        vstore(a1 + v * VW, x1[v]);
    }
}

/* A task is one query block of one KV head: the `group` query heads that
 * share that head are processed together (rows r = g * nq + i for head g of
 * the group and query i of the block), so each key/value block is loaded
 * (and transposed) once for all of them — in decode (one query) the whole
 * group is one task. Rows are padded to Dp / Dvp floats (multiples of VW,
 * zeros after D / Dv); f32 keys and values with unit stride and no padding
 * are read in place. */
typedef struct sdpa_job {
    lmc_array *out;
    const lmc_array *q, *k, *v;
    const lmc_sdpa_params *p;
    int64_t B, Hq, Hkv, Tq, Tk, D, Dv, Dp, Dvp, group, qb, qblocks, rows;
    int64_t hparts, gsub; /* a task takes gsub = group / hparts of the group's query heads */
    bool k_direct, v_direct; /* f32 rows read in place */
    int k_half, v_half;      /* KV_F16 / KV_BF16: 16-bit rows that may be read in place (few query rows), else KV_F32 */
    size_t scratch_floats;      /* per thread (lmc_scratch) */
    _Atomic bool out_of_memory; /* a thread found no scratch */
} sdpa_job;

/* Row r of the task's scores: softcap, mask and causal/window visibility
 * (hidden keys and the padding after nk become -inf). */
static void sdpa_visibility(const sdpa_job *j, float *sr, int64_t b, int64_t h, int64_t i, int64_t k0, int64_t nk,
                            bool use_mask) {
    const lmc_sdpa_params *p = j->p;
    const lmc_array *mask = use_mask ? p->mask : NULL;
    int64_t qpos = j->Tk - j->Tq + i;
    if (p->softcap > 0.0f)
        for (int64_t c = 0; c < nk; c++) sr[c] = p->softcap * tanhf(sr[c] * p->scale / p->softcap);
    if (mask) {
        size_t msz = lmc_dtype_size(mask->dtype);
        const char *mp = (const char *)lmc_array_ptr(mask) +
                         (b * mask->strides[0] + h * mask->strides[1] + i * mask->strides[2] + k0 * mask->strides[3]) *
                             (int64_t)msz;
        int64_t ms = mask->strides[3] * (int64_t)msz;
        if (mask->dtype == LMC_BOOL) {
            for (int64_t c = 0; c < nk; c++)
                if (!*(const uint8_t *)(mp + c * ms)) sr[c] = -INFINITY;
        } else if (mask->dtype == LMC_F32) {
            for (int64_t c = 0; c < nk; c++) sr[c] += *(const float *)(mp + c * ms);
        } else {
            for (int64_t c = 0; c < nk; c++) sr[c] += (float)lmc_load_f64(mp + c * ms, mask->dtype);
        }
    }
    int64_t lo = p->window > 0 ? qpos - p->window + 1 : INT64_MIN, hi = p->causal ? qpos : INT64_MAX;
    for (int c = 0; c < SDPA_KB; c++) {
        int64_t kpos = k0 + c;
        sr[c] = c < nk && kpos >= lo && kpos <= hi ? sr[c] : -INFINITY;
    }
}

/* Online softmax of one row over this block: sr becomes the weights, *corr
 * the factor for the earlier accumulator, m and l the running max and sum. A
 * row with nothing visible here keeps its state (weights 0, factor 1). */
static void sdpa_softmax_row(float *sr, float *m, float *l, float *corr) {
    vec mx = vload(sr);
    for (int c = VW; c < SDPA_KB; c += VW) mx = vmax(mx, vload(sr + c));
    float bm = vhmax(mx);
    if (bm == -INFINITY) {
        for (int c = 0; c < SDPA_KB; c++) sr[c] = 0.0f;
        *corr = 1.0f;
        return;
    }
    float mnew = *m > bm ? *m : bm;
    *corr = *m == -INFINITY ? 0.0f : expf(*m - mnew);
    vec sum = vzero(), mv = vset1(mnew);
    for (int c = 0; c < SDPA_KB; c += VW) {
        vec x = vload(sr + c), w = vzero_where_ninf(x, vexp(vsub(x, mv)));
        vstore(sr + c, w);
        sum = vadd(sum, w);
    }
    *l = *l * *corr + vsum(sum);
    *m = mnew;
}

/* Whether the mask leaves keys k0..k0+nk-1 of batch row b alone for every
 * query and head (a key-padding mask [B, 1, 1, Tk] broadcast over them, all
 * true or all 0.0 here): then the block is treated as unmasked. */
static bool sdpa_mask_trivial(const lmc_array *mask, int64_t b, int64_t k0, int64_t nk) {
    if (mask->strides[1] != 0 || mask->strides[2] != 0) return false;
    size_t msz = lmc_dtype_size(mask->dtype);
    const char *mp = (const char *)lmc_array_ptr(mask) + (b * mask->strides[0] + k0 * mask->strides[3]) * (int64_t)msz;
    int64_t ms = mask->strides[3] * (int64_t)msz;
    for (int64_t c = 0; c < nk; c++) {
        if (mask->dtype == LMC_BOOL) {
            if (!*(const uint8_t *)(mp + c * ms)) return false;
        } else if (lmc_load_f64(mp + c * ms, mask->dtype) != 0.0) {
            return false;
        }
    }
    return true;
}

/* What task t reads: batch row b, KV head hk, its first query head h0,
 * query rows i0..i0+nq-1 (nr rows in all over the task's heads), and the
 * keys kbeg..kend-1 it can see at all, from the head's rows at kbase and
 * vbase. */
typedef struct sdpa_span {
    int64_t b, hk, h0, i0, nq, nr, kbeg, kend;
    const char *kbase, *vbase;
} sdpa_span;

static sdpa_span sdpa_task_span(const sdpa_job *j, int64_t t) {
    const lmc_sdpa_params *p = j->p;
    const lmc_array *k = j->k, *v = j->v;
    sdpa_span s;
    int64_t qb = t % j->qblocks, hp = t / j->qblocks % j->hparts, bh = t / (j->qblocks * j->hparts);
    s.hk = bh % j->Hkv;
    s.b = bh / j->Hkv;
    s.h0 = s.hk * j->group + hp * j->gsub;
    s.i0 = qb * j->qb;
    s.nq = j->Tq - s.i0 < j->qb ? j->Tq - s.i0 : j->qb;
    s.nr = s.nq * j->gsub;
    int64_t shift = j->Tk - j->Tq; /* query i sits at key position shift + i */
    s.kend = j->Tk;
    s.kbeg = 0;
    if (p->causal && shift + s.i0 + s.nq < s.kend) s.kend = shift + s.i0 + s.nq;
    if (s.kend < 0) s.kend = 0;
    if (p->window > 0 && shift + s.i0 - p->window + 1 > 0) s.kbeg = shift + s.i0 - p->window + 1;
    /* Key blocks start at multiples of SDPA_KB (keys before the window
     * are masked), and the score path depends on the head group alone
     * for a few queries: so a query's arithmetic is the same whether it
     * comes alone (decode) or with up to three others (lookup decoding
     * verifying drafts), and the two give the same bits. */
    s.kbeg = s.kbeg / SDPA_KB * SDPA_KB;
    size_t ksz = lmc_dtype_size(k->dtype), vsz = lmc_dtype_size(v->dtype);
    s.kbase = (const char *)lmc_array_ptr(k) + (s.b * k->strides[0] + s.hk * k->strides[1]) * (int64_t)ksz;
    s.vbase = (const char *)lmc_array_ptr(v) + (s.b * v->strides[0] + s.hk * v->strides[1]) * (int64_t)vsz;
    return s;
}

/* The rows of span s's key block at k0 (values: is_v), as the prefetch sees them. */
static sdpa_rows sdpa_block_rows(const sdpa_job *j, const sdpa_span *s, int64_t k0, bool is_v) {
    const lmc_array *a = is_v ? j->v : j->k;
    int64_t sz = (int64_t)lmc_dtype_size(a->dtype), nk = s->kend - k0 < SDPA_KB ? s->kend - k0 : SDPA_KB;
    return (sdpa_rows){.base = (is_v ? s->vbase : s->kbase) + k0 * a->strides[2] * sz,
                       .stride = a->strides[2] * sz,
                       .row_bytes = (is_v ? j->Dv : j->D) * sz,
                       .n = nk > 0 ? nk : 0};
}

static void sdpa_blocks(void *ctx, int64_t t0, int64_t t1, int thread) {
    const sdpa_job *j = ctx;
    const lmc_sdpa_params *p = j->p;
    const lmc_array *q = j->q, *k = j->k, *v = j->v;
    int64_t D = j->D, Dv = j->Dv, Dp = j->Dp, Dvp = j->Dvp, R = j->rows;
    (void)thread;
    float *qf = lmc_scratch(LMC_SCRATCH_SDPA, j->scratch_floats * sizeof(float)); /* R x Dp, pre-scaled */
    if (!qf) {
        atomic_store(&((sdpa_job *)ctx)->out_of_memory, true);
        return;
    }
    float *kf = qf + R * Dp;                                     /* KB x Dp (keys not read in place) */
    float *kt = kf + SDPA_KB * Dp;                               /* D x KB (keys transposed) */
    float *vf = kt + SDPA_KB * D;                                /* KB x Dvp (values not read in place) */
    float *acc = vf + SDPA_KB * Dvp;                             /* (R + 1) x Dvp */
    float *S = acc + (R + 1) * Dvp;                              /* (R + 1) x KB scores, then weights */
    float *mrow = S + (R + 1) * SDPA_KB, *lrow = mrow + R, *corr = lrow + R; /* R + 1 */
    size_t ksz = lmc_dtype_size(k->dtype), vsz = lmc_dtype_size(v->dtype);
    for (int64_t t = t0; t < t1; t++) {
        const sdpa_span sp = sdpa_task_span(j, t);
        const int64_t b = sp.b, hk = sp.hk, h0 = sp.h0, i0 = sp.i0, nq = sp.nq, nr = sp.nr, kbeg = sp.kbeg, kend = sp.kend;
        const char *kbase = sp.kbase, *vbase = sp.vbase;
        int64_t shift = j->Tk - j->Tq;
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = h0 + r / nq, i = i0 + r % nq;
            float *qr = qf + r * Dp;
            load_row(qr, q, b * q->strides[0] + h * q->strides[1] + i * q->strides[2], D, q->strides[3]);
            if (p->softcap == 0.0f)
                for (int64_t d = 0; d < D; d++) qr[d] *= p->scale;
            for (int64_t d = D; d < Dp; d++) qr[d] = 0.0f;
            mrow[r] = -INFINITY;
            lrow[r] = 0.0f;
        }
        memset(acc, 0, (size_t)((nr + 1) * Dvp) * sizeof(float));
        /* the spare row R pairs with an odd last row in P·V: weights 0 */
        memset(S + nr * SDPA_KB, 0, SDPA_KB * sizeof(float));
        corr[nr] = 1.0f;
        bool transpose = j->Tq > 4 ? nr >= 8 : j->gsub >= 8;
        /* 16-bit keys and values are widened in registers where few rows
         * read them (decode: the cache's bytes are what costs); with many
         * rows, converted once per block into the f32 buffers */
        int kd = transpose ? KV_F32 : j->k_half, vd = transpose ? KV_F32 : j->v_half;
        /* decode: the first task's first keys now; a later task's were
         * asked for by the task before it (the prefetch runs on into the
         * next task's rows) */
        if (!transpose && t == t0 && kbeg < kend) {
            sdpa_rows first = sdpa_block_rows(j, &sp, kbeg, false), none = {.n = 0};
            for (int64_t i = 0; i * first.row_bytes < SDPA_PF_BYTES; i++) sdpa_prefetch_row(&first, &none, i);
        }
        for (int64_t k0 = kbeg; k0 < kend; k0 += SDPA_KB) {
            int64_t nk = kend - k0 < SDPA_KB ? kend - k0 : SDPA_KB;
            /* key and value rows of this block: in place, or converted and padded */
            const void *K, *V;
            int64_t ks, vs;
            if (j->k_direct || kd != KV_F32) {
                K = kbase + k0 * k->strides[2] * (int64_t)ksz;
                ks = k->strides[2];
            } else if (j->k_half != KV_F32) { /* whole vectors, widened a vector at a time */
                const char *kb = kbase + k0 * k->strides[2] * (int64_t)ksz;
                for (int64_t c = 0; c < nk; c++)
                    for (int64_t d = 0; d < D; d += VW) vstore(kf + c * Dp + d, vload_kv(kb, c * k->strides[2] + d, j->k_half));
                K = kf;
                ks = Dp;
            } else {
                for (int64_t c = 0; c < nk; c++) {
                    float *kr = kf + c * Dp;
                    load_row(kr, k, b * k->strides[0] + hk * k->strides[1] + (k0 + c) * k->strides[2], D, k->strides[3]);
                    for (int64_t d = D; d < Dp; d++) kr[d] = 0.0f;
                }
                K = kf;
                ks = Dp;
            }
            if (j->v_direct || vd != KV_F32) {
                V = vbase + k0 * v->strides[2] * (int64_t)vsz;
                vs = v->strides[2];
            } else if (j->v_half != KV_F32) {
                const char *vb = vbase + k0 * v->strides[2] * (int64_t)vsz;
                for (int64_t c = 0; c < nk; c++)
                    for (int64_t e = 0; e < Dv; e += VW) vstore(vf + c * Dvp + e, vload_kv(vb, c * v->strides[2] + e, j->v_half));
                V = vf;
                vs = Dvp;
            } else {
                for (int64_t c = 0; c < nk; c++) {
                    float *vr = vf + c * Dvp;
                    load_row(vr, v, b * v->strides[0] + hk * v->strides[1] + (k0 + c) * v->strides[2], Dv, v->strides[3]);
                    for (int64_t e = Dv; e < Dvp; e++) vr[e] = 0.0f;
                }
                V = vf;
                vs = Dvp;
            }
            /* many rows: while this block's arithmetic runs, the next block's
             * keys and values come into L2 (the transpose and P·V would
             * otherwise wait on them, ~15 % of a long prefill) */
            if (transpose && k0 + SDPA_KB < kend) {
                const sdpa_rows nk_rows = sdpa_block_rows(j, &sp, k0 + SDPA_KB, false),
                                nv_rows = sdpa_block_rows(j, &sp, k0 + SDPA_KB, true), none = {.n = 0};
                for (int64_t i = 0; i < nk_rows.n; i++) {
                    sdpa_prefetch_row(&nk_rows, &none, i);
                    sdpa_prefetch_row(&nv_rows, &none, i);
                }
            }
            /* decode: what the prefetch runs through while the scores read
             * this block's keys (then its values) and P·V its values (then
             * the next block's keys, or the next task's) */
            sdpa_rows kpf[2], vpf[2];
            if (!transpose) {
                kpf[0] = sdpa_block_rows(j, &sp, k0, false);
                kpf[1] = vpf[0] = sdpa_block_rows(j, &sp, k0, true);
                if (k0 + SDPA_KB < kend) {
                    vpf[1] = sdpa_block_rows(j, &sp, k0 + SDPA_KB, false);
                } else if (t + 1 < t1) {
                    const sdpa_span next = sdpa_task_span(j, t + 1);
                    vpf[1] = sdpa_block_rows(j, &next, next.kbeg, false);
                } else {
                    vpf[1] = (sdpa_rows){.n = 0};
                }
            }
            /* scores of every row against the block */
            if (transpose) {
                transpose_keys((const float *)K, ks, nk, D, kt);
                int64_t r = 0;
                for (; r + SC_NR <= nr; r += SC_NR) score_tile_t(qf + r * Dp, Dp, kt, D, S + r * SDPA_KB, SC_NR);
                for (; r < nr; r++) score_tile_t(qf + r * Dp, Dp, kt, D, S + r * SDPA_KB, 1);
            } else {
/* the key dtype as a constant, so each inlined copy loads one way */
#define SCORE_DOT(n)                                                                              \
    (kd == KV_F16    ? score_tile_dot(qr, Dp, K, ks, nk, r == 0 ? kpf : NULL, Dp, sr, n, KV_F16)                       \
     : kd == KV_BF16 ? score_tile_dot(qr, Dp, K, ks, nk, r == 0 ? kpf : NULL, Dp, sr, n, KV_BF16)                      \
                     : score_tile_dot(qr, Dp, K, ks, nk, r == 0 ? kpf : NULL, Dp, sr, n, KV_F32))
                for (int64_t r = 0; r < nr; r += 4) {
                    const float *qr = qf + r * Dp;
                    float *sr = S + r * SDPA_KB;
                    switch (nr - r < 4 ? nr - r : 4) {
                    case 1: SCORE_DOT(1); break;
                    case 2: SCORE_DOT(2); break;
                    case 3: SCORE_DOT(3); break;
                    default: SCORE_DOT(4); break;
#undef SCORE_DOT
                    }
                }
            }
            /* A block every row sees whole (no mask in effect, no softcap,
             * left of the causal diagonal of the first query, inside the
             * window of the last) needs no per-key visibility. */
            bool use_mask = p->mask && !sdpa_mask_trivial(p->mask, b, k0, nk);
            bool whole = !use_mask && p->softcap == 0.0f && (!p->causal || k0 + nk - 1 <= shift + i0) &&
                         (p->window == 0 || shift + i0 + nq - 1 - k0 < p->window);
            for (int64_t r = 0; r < nr; r++) {
                float *sr = S + r * SDPA_KB;
                if (!whole) sdpa_visibility(j, sr, b, h0 + r / nq, i0 + r % nq, k0, nk, use_mask);
                else
                    for (int64_t c = nk; c < SDPA_KB; c++) sr[c] = -INFINITY;
                sdpa_softmax_row(sr, &mrow[r], &lrow[r], &corr[r]);
            }
            /* P·V, two rows at a time, PV_NV vectors of the output at a time */
            for (int64_t r = 0; r < nr; r += 2) {
                int64_t r1 = r + 1 < nr ? r + 1 : nr; /* the spare row */
                float *a0 = acc + r * Dvp, *a1 = acc + r1 * Dvp;
                const sdpa_rows *vpf_here = !transpose && r == 0 ? vpf : NULL;
                const float *p0 = S + r * SDPA_KB, *p1 = S + r1 * SDPA_KB;
                for (int64_t e = 0; e < Dvp; e += PV_NV * VW) {
                    int64_t nv = (Dvp - e) / VW < PV_NV ? (Dvp - e) / VW : PV_NV;
                    switch (nv) {
#define PV_CALL(n)                                                                                \
    (vd == KV_F16    ? pv_tile(a0 + e, a1 + e, corr[r], corr[r1], p0, p1, V, e, vs, nk, e == 0 ? vpf_here : NULL, n, KV_F16)   \
     : vd == KV_BF16 ? pv_tile(a0 + e, a1 + e, corr[r], corr[r1], p0, p1, V, e, vs, nk, e == 0 ? vpf_here : NULL, n, KV_BF16)  \
                     : pv_tile(a0 + e, a1 + e, corr[r], corr[r1], p0, p1, V, e, vs, nk, e == 0 ? vpf_here : NULL, n, KV_F32))
#define PV_CASE(n) \
    case n: PV_CALL(n); break;
                    PV_CASE(1) PV_CASE(2) PV_CASE(3)
#if PV_NV == 8
                    PV_CASE(4) PV_CASE(5) PV_CASE(6) PV_CASE(7)
#endif
                    default: PV_CALL(PV_NV); break;
#undef PV_CASE
#undef PV_CALL
                    }
                }
            }
        }
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = h0 + r / nq, i = i0 + r % nq;
            float *ar = acc + r * Dvp, inv = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
            for (int64_t e = 0; e < Dv; e++) ar[e] *= inv;
            store_row(j->out, (b * j->Hq + h) * j->Tq + i, ar, Dv);
        }
    }
}

lmc_status FUSED_FN(lmc_cpu_sdpa)(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,
                                  const lmc_sdpa_params *p) {
    sdpa_job j = {.out = out, .q = q, .k = k, .v = v, .p = p};
    j.B = q->shape[0];
    j.Hq = q->shape[1];
    j.Tq = q->shape[2];
    j.D = q->shape[3];
    j.Hkv = k->shape[1];
    j.Tk = k->shape[2];
    j.Dv = v->shape[3];
    j.Dp = (j.D + VW - 1) / VW * VW;
    j.Dvp = (j.Dv + VW - 1) / VW * VW;
    j.k_direct = k->dtype == LMC_F32 && k->strides[3] == 1 && j.Dp == j.D;
    j.v_direct = v->dtype == LMC_F32 && v->strides[3] == 1 && j.Dvp == j.Dv;
    j.k_half = k->strides[3] != 1 || j.Dp != j.D ? KV_F32 : k->dtype == LMC_F16 ? KV_F16 : k->dtype == LMC_BF16 ? KV_BF16 : KV_F32;
    j.v_half = v->strides[3] != 1 || j.Dvp != j.Dv ? KV_F32 : v->dtype == LMC_F16 ? KV_F16 : v->dtype == LMC_BF16 ? KV_BF16 : KV_F32;
    j.group = j.Hq / j.Hkv;
    /* about SDPA_QB rows per task, at least one query of every head of the group */
    j.qb = SDPA_QB / j.group > 0 ? SDPA_QB / j.group : 1;
    j.rows = j.qb * j.group;
    j.qblocks = (j.Tq + j.qb - 1) / j.qb;
    j.scratch_floats = (size_t)(j.rows * j.Dp + SDPA_KB * j.Dp + SDPA_KB * j.D + SDPA_KB * j.Dvp + (j.rows + 1) * j.Dvp +
                                (j.rows + 1) * SDPA_KB + 3 * (j.rows + 1));
    /* One task in all (decode with one KV head, as Gemma-3-1B has) would leave
     * the other threads idle: then the group's query heads go to two tasks,
     * each reading the keys and values once. Fixed by the shapes alone, so
     * results do not depend on the thread count. */
    j.hparts = j.B * j.Hkv * j.qblocks == 1 && j.group % 2 == 0 ? 2 : 1;
    j.gsub = j.group / j.hparts;
    int64_t tasks = j.B * j.Hkv * j.qblocks * j.hparts;
    int64_t work = j.rows * j.Tk * (j.D + j.Dv);
    /* Each task writes its own rows whole, so the cut does not change a bit:
     * a thread that is done helps from the back of the other's part (a host
     * that slows one vCPU does not hold the step up). */
    lmc_parallel_split(tasks, work >= 32768 ? 1 : 32768 / (work + 1) + 1, sdpa_blocks, &j);
    if (atomic_load(&j.out_of_memory))
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_sdpa: out of memory for %zu bytes of work space",
                             j.scratch_floats * sizeof(float));
    return LMC_OK;
}
