/* The fast fused kernels, written once in plain C with loops the compiler
 * vectorises, and compiled per ISA: fused_avx2.c and fused_avx512.c include
 * this file with LMC_FUSED_ISA set (avx2 / avx512) so each gets the vector
 * width of its instruction set. Math in f32; parallel over rows (norms,
 * rope) or over (batch, head, query block) for attention, which uses an
 * online (flash-style) softmax so the scores never exist as a whole. */
#include <math.h>
#include <stdlib.h>

/* GCC's -O2 vectorises only loops that need no scalar remainder; these
 * kernels are written to be vectorised, so ask for the full cost model. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif
#include <string.h>

#include "backend/cpu/fused_internal.h"
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

/* Sum of a[i]*b[i] with 16 partial sums (vectorises without reassociation flags). */
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef struct norm_job {
    lmc_array *out;
    const lmc_array *x;
    const float *w, *b; /* f32 copies, (1 + w) already applied; NULL when absent */
    float eps;
    bool layer;
    float *scratch; /* D floats per thread */
} norm_job;

static void norm_rows(void *ctx, int64_t r0, int64_t r1, int thread) {
    const norm_job *j = ctx;
    int64_t D = j->x->shape[j->x->ndim - 1], sx = j->x->strides[j->x->ndim - 1];
    float *row = j->scratch + (size_t)thread * (size_t)D;
    for (int64_t r = r0; r < r1; r++) {
        load_row(row, j->x, row_offset(j->x, r), D, sx);
        float mean = 0.0f;
        if (j->layer) {
            float acc[16] = {0};
            int64_t d = 0;
            for (; d + 16 <= D; d += 16)
                for (int l = 0; l < 16; l++) acc[l] += row[d + l];
            for (int l = 0; l < 16; l++) mean += acc[l];
            for (; d < D; d++) mean += row[d];
            mean /= (float)D;
            for (d = 0; d < D; d++) row[d] -= mean;
        }
        float rs = 1.0f / sqrtf(dot_f32(row, row, D) / (float)D + j->eps);
        if (j->w && j->b)
            for (int64_t d = 0; d < D; d++) row[d] = row[d] * rs * j->w[d] + j->b[d];
        else if (j->w)
            for (int64_t d = 0; d < D; d++) row[d] = row[d] * rs * j->w[d];
        else if (j->b)
            for (int64_t d = 0; d < D; d++) row[d] = row[d] * rs + j->b[d];
        else
            for (int64_t d = 0; d < D; d++) row[d] *= rs;
        store_row(j->out, r, row, D);
    }
}

static lmc_status norm_run(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps,
                           bool one_plus_weight, bool layer) {
    int64_t D = x->shape[x->ndim - 1], rows = x->size / (D ? D : 1);
    int nt = lmc_num_threads();
    float *buf = malloc(((size_t)nt + 2) * (size_t)D * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", layer ? "lmc_layer_norm" : "lmc_rms_norm");
    norm_job j = {.out = out, .x = x, .eps = eps, .layer = layer, .scratch = buf + 2 * D};
    if (w) {
        float *wf = buf;
        load_row(wf, w, 0, D, w->strides[0]);
        if (one_plus_weight)
            for (int64_t d = 0; d < D; d++) wf[d] += 1.0f;
        j.w = wf;
    }
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

/* --- rope ------------------------------------------------------------------- */

typedef struct rope_job {
    lmc_array *out;
    const lmc_array *x;
    const lmc_rope_params *p;
    const float *cs; /* per position row: half cos then half sin */
    int64_t T, B1;   /* B1: x's first axis size when positions are [B, T], else 1 */
    float *scratch;  /* D floats per thread */
} rope_job;

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
        if (j->p->traditional) {
            for (int64_t i = 0; i < half; i++) {
                float x0 = row[2 * i], x1 = row[2 * i + 1];
                o[2 * i] = x0 * c[i] - x1 * s[i];
                o[2 * i + 1] = x1 * c[i] + x0 * s[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) o[i] = row[i] * c[i] - row[i + half] * s[i];
            for (int64_t i = 0; i < half; i++) o[i + half] = row[i + half] * c[i] + row[i] * s[i];
        }
        for (int64_t d = j->p->dims; d < D; d++) o[d] = row[d];
        store_row(j->out, r, o, D);
    }
}

lmc_status FUSED_FN(lmc_cpu_rope)(lmc_array *out, const lmc_array *x, const lmc_rope_params *p,
                                  const lmc_array *inv_freqs, const lmc_array *positions) {
    int nd = x->ndim;
    int64_t T = x->shape[nd - 2], D = x->shape[nd - 1], half = p->dims / 2;
    int64_t B1 = positions->ndim == 2 ? x->shape[0] : 1;
    int nt = lmc_num_threads();
    size_t table = (size_t)(B1 * T * 2 * half);
    float *buf = malloc((table + (size_t)nt * 2 * (size_t)D) * sizeof(float) + 16);
    if (!buf) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_rope: out of memory");
    const float *inv = lmc_array_ptr(inv_freqs);
    /* cos/sin of each (position, frequency) once, in f32 as HF computes them. */
    for (int64_t bi = 0; bi < B1; bi++)
        for (int64_t t = 0; t < T; t++) {
            float *c = buf + (bi * T + t) * 2 * half;
            int32_t pos = lmc_rope_pos(positions, bi, t);
            for (int64_t i = 0; i < half; i++) {
                float ang = lmc_rope_angle(pos, p->scale, inv[i * inv_freqs->strides[0]]);
                c[i] = cosf(ang);
                c[half + i] = sinf(ang);
            }
        }
    rope_job j = {.out = out, .x = x, .p = p, .cs = buf, .T = T, .B1 = B1, .scratch = buf + table};
    lmc_parallel_for(x->size / D, D >= 4096 ? 1 : 4096 / D + 1, rope_rows, &j);
    free(buf);
    return LMC_OK;
}

/* --- attention -------------------------------------------------------------- */

enum { SDPA_QB = 16, SDPA_KB = 64 };

/* e^x elementwise for x <= 0 in a form the compiler vectorises (expf does
 * not): x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial to r^7
 * (relative error < 1e-7), 2^n through the exponent bits. Inputs below -87
 * are clamped (the caller zeroes hidden keys itself). */
static void exp_block(float *x, int n) {
    for (int i = 0; i < n; i++) {
        float v = x[i] < -87.0f ? -87.0f : x[i];
        int32_t ni = (int32_t)(v * 1.44269504088896341f - 0.5f); /* v <= 0: the nearest integer, within 1/2 */
        float f = (float)ni;
        float r = v - f * 0.693145751953125f - f * 1.42860682030941723e-6f;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        union { int32_t i; float f; } scale = {.i = (ni + 127) * (1 << 23)};
        x[i] = p * scale.f;
    }
}

/* A task is one query block of one KV head: the `group` query heads that
 * share that head are processed together (rows r = g * nq + i for head g of
 * the group and query i of the block), so each key/value block is loaded
 * and transposed once for all of them — in decode (one query) the whole
 * group is one task. */
typedef struct sdpa_job {
    lmc_array *out;
    const lmc_array *q, *k, *v;
    const lmc_sdpa_params *p;
    int64_t B, Hq, Hkv, Tq, Tk, D, Dv, group, qb, qblocks, rows;
    float *scratch;
    size_t scratch_floats;
} sdpa_job;

static void sdpa_blocks(void *ctx, int64_t t0, int64_t t1, int thread) {
    const sdpa_job *j = ctx;
    const lmc_sdpa_params *p = j->p;
    const lmc_array *q = j->q, *k = j->k, *v = j->v, *mask = p->mask;
    int64_t D = j->D, Dv = j->Dv, R = j->rows;
    float *qf = j->scratch + (size_t)thread * j->scratch_floats; /* R x D, pre-scaled */
    float *kf = qf + R * D;                                      /* KB x D */
    float *kt = kf + SDPA_KB * D;                                /* D x KB (kf transposed) */
    float *vf = kt + SDPA_KB * D;                                /* KB x Dv */
    float *acc = vf + SDPA_KB * Dv;                              /* R x Dv */
    float *mrow = acc + R * Dv, *lrow = mrow + R, *s = lrow + R; /* R, R, KB */
    for (int64_t t = t0; t < t1; t++) {
        int64_t qb = t % j->qblocks, bh = t / j->qblocks, hk = bh % j->Hkv, b = bh / j->Hkv;
        int64_t i0 = qb * j->qb, nq = j->Tq - i0 < j->qb ? j->Tq - i0 : j->qb, nr = nq * j->group;
        int64_t shift = j->Tk - j->Tq; /* query i sits at key position shift + i */
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = hk * j->group + r / nq, i = i0 + r % nq;
            float *qr = qf + r * D;
            load_row(qr, q, b * q->strides[0] + h * q->strides[1] + i * q->strides[2], D, q->strides[3]);
            if (p->softcap == 0.0f)
                for (int64_t d = 0; d < D; d++) qr[d] *= p->scale;
            mrow[r] = -INFINITY;
            lrow[r] = 0.0f;
        }
        memset(acc, 0, (size_t)(nr * Dv) * sizeof(float));
        /* Keys this block can see at all. */
        int64_t kend = j->Tk, kbeg = 0;
        if (p->causal && shift + i0 + nq < kend) kend = shift + i0 + nq;
        if (kend < 0) kend = 0;
        if (p->window > 0 && shift + i0 - p->window + 1 > 0) kbeg = shift + i0 - p->window + 1;
        for (int64_t k0 = kbeg; k0 < kend; k0 += SDPA_KB) {
            int64_t nk = kend - k0 < SDPA_KB ? kend - k0 : SDPA_KB;
            for (int64_t c = 0; c < nk; c++) {
                load_row(kf + c * D, k, b * k->strides[0] + hk * k->strides[1] + (k0 + c) * k->strides[2], D, k->strides[3]);
                load_row(vf + c * Dv, v, b * v->strides[0] + hk * v->strides[1] + (k0 + c) * v->strides[2], Dv,
                         v->strides[3]);
            }
            for (int64_t c = nk; c < SDPA_KB; c++) memset(kf + c * D, 0, (size_t)D * sizeof(float));
            for (int64_t c = 0; c < SDPA_KB; c++)
                for (int64_t d = 0; d < D; d++) kt[d * SDPA_KB + c] = kf[c * D + d];
            for (int64_t r = 0; r < nr; r++) {
                int64_t h = hk * j->group + r / nq, i = i0 + r % nq, qpos = shift + i;
                /* scores of this query against the whole key block, vectorised over keys */
                for (int c = 0; c < SDPA_KB; c++) s[c] = 0.0f;
                for (int64_t d = 0; d < D; d++) {
                    float qd = qf[r * D + d];
                    const float *kd = kt + d * SDPA_KB;
                    for (int c = 0; c < SDPA_KB; c++) s[c] += qd * kd[c];
                }
                float bm = -INFINITY;
                for (int64_t c = 0; c < nk; c++) {
                    int64_t kpos = k0 + c;
                    float sc = s[c];
                    if (p->softcap > 0.0f) sc = p->softcap * tanhf(sc * p->scale / p->softcap);
                    bool hide = (p->causal && kpos > qpos) || (p->window > 0 && qpos - kpos >= p->window);
                    if (mask) {
                        const char *mp = (const char *)lmc_array_ptr(mask) +
                                         (b * mask->strides[0] + h * mask->strides[1] + i * mask->strides[2] +
                                          kpos * mask->strides[3]) * (int64_t)lmc_dtype_size(mask->dtype);
                        if (mask->dtype == LMC_BOOL) hide = hide || !*(const uint8_t *)mp;
                        else if (mask->dtype == LMC_F32) sc += *(const float *)mp;
                        else sc += (float)lmc_load_f64(mp, mask->dtype);
                    }
                    s[c] = hide ? -INFINITY : sc;
                    if (s[c] > bm) bm = s[c];
                }
                if (bm == -INFINITY) continue; /* nothing visible in this block */
                float mnew = mrow[r] > bm ? mrow[r] : bm;
                float corr = mrow[r] == -INFINITY ? 0.0f : expf(mrow[r] - mnew);
                for (int64_t c = nk; c < SDPA_KB; c++) s[c] = -INFINITY;
                float w[SDPA_KB];
                for (int c = 0; c < SDPA_KB; c++) w[c] = s[c] - mnew;
                exp_block(w, SDPA_KB);
                for (int c = 0; c < SDPA_KB; c++) w[c] = s[c] == -INFINITY ? 0.0f : w[c];
                float *ar = acc + r * Dv, l = lrow[r] * corr;
                for (int64_t e = 0; e < Dv; e++) ar[e] *= corr;
                for (int64_t c = 0; c < nk; c++) {
                    if (w[c] == 0.0f) continue;
                    l += w[c];
                    const float *vr = vf + c * Dv;
                    float wc = w[c];
                    for (int64_t e = 0; e < Dv; e++) ar[e] += wc * vr[e];
                }
                lrow[r] = l;
                mrow[r] = mnew;
            }
        }
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = hk * j->group + r / nq, i = i0 + r % nq;
            float *ar = acc + r * Dv, inv = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
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
    j.group = j.Hq / j.Hkv;
    /* about SDPA_QB rows per task, at least one query of every head of the group */
    j.qb = SDPA_QB / j.group > 0 ? SDPA_QB / j.group : 1;
    j.rows = j.qb * j.group;
    j.qblocks = (j.Tq + j.qb - 1) / j.qb;
    j.scratch_floats = (size_t)(j.rows * j.D + 2 * SDPA_KB * j.D + SDPA_KB * j.Dv + j.rows * j.Dv + 2 * j.rows + SDPA_KB);
    int nt = lmc_num_threads();
    j.scratch = malloc((size_t)nt * j.scratch_floats * sizeof(float));
    if (!j.scratch) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_sdpa: out of memory");
    int64_t tasks = j.B * j.Hkv * j.qblocks;
    int64_t work = j.rows * j.Tk * (j.D + j.Dv);
    lmc_parallel_for(tasks, work >= 32768 ? 1 : 32768 / (work + 1) + 1, sdpa_blocks, &j);
    free(j.scratch);
    return LMC_OK;
}
