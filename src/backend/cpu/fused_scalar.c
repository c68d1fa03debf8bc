/* Scalar reference kernels for the fused ops: straightforward loops over
 * strided elements with sums in double — the oracle the fast paths are
 * tested against. Single-threaded on purpose (no chunking to reason about). */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/fused_internal.h"

static double ld(const lmc_array *a, int64_t off) {
    return lmc_load_f64((const char *)lmc_array_ptr(a) + off * (int64_t)lmc_dtype_size(a->dtype), a->dtype);
}
static void st(lmc_array *a, int64_t off, double v) {
    lmc_store_f64((char *)lmc_array_ptr(a) + off * (int64_t)lmc_dtype_size(a->dtype), a->dtype, v);
}

/* Walks the rows (all axes but the last) of out and x. */
#define FOR_ROWS(out, x)                                                                   \
    lmc_index_iter it;                                                                     \
    const lmc_array *ops_[2] = {out, x};                                                   \
    lmc_index_init(&it, (x)->ndim - 1, (x)->shape, 2, ops_);                               \
    int64_t D = (x)->shape[(x)->ndim - 1], sx = (x)->strides[(x)->ndim - 1];               \
    int64_t so = (out)->strides[(out)->ndim - 1];                                          \
    do

lmc_status lmc_cpu_rms_norm_scalar(lmc_array *out, const lmc_array *x, const lmc_array *w, float eps, bool one_plus_weight) {
    FOR_ROWS(out, x) {
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) {
            double v = ld(x, it.off[1] + d * sx);
            ss += v * v;
        }
        double r = 1.0 / sqrt(ss / (double)D + (double)eps);
        for (int64_t d = 0; d < D; d++) {
            double g = w ? ld(w, d * w->strides[0]) + (one_plus_weight ? 1.0 : 0.0) : 1.0;
            st(out, it.off[0] + d * so, ld(x, it.off[1] + d * sx) * r * g);
        }
    }
    while (lmc_index_next(&it));
    return LMC_OK;
}

lmc_status lmc_cpu_layer_norm_scalar(lmc_array *out, const lmc_array *x, const lmc_array *w, const lmc_array *b, float eps) {
    FOR_ROWS(out, x) {
        double mean = 0.0, var = 0.0;
        for (int64_t d = 0; d < D; d++) mean += ld(x, it.off[1] + d * sx);
        mean /= (double)D;
        for (int64_t d = 0; d < D; d++) {
            double c = ld(x, it.off[1] + d * sx) - mean;
            var += c * c;
        }
        double r = 1.0 / sqrt(var / (double)D + (double)eps);
        for (int64_t d = 0; d < D; d++) {
            double v = (ld(x, it.off[1] + d * sx) - mean) * r;
            if (w) v *= ld(w, d * w->strides[0]);
            if (b) v += ld(b, d * b->strides[0]);
            st(out, it.off[0] + d * so, v);
        }
    }
    while (lmc_index_next(&it));
    return LMC_OK;
}

lmc_status lmc_cpu_rope_scalar(lmc_array *out, const lmc_array *x, const lmc_rope_params *p, const lmc_array *inv_freqs,
                               const lmc_array *positions) {
    int nd = x->ndim;
    int64_t half = p->dims / 2;
    const float *inv = lmc_array_ptr(inv_freqs);
    int64_t sinv = inv_freqs->strides[0];
    FOR_ROWS(out, x) {
        int64_t t = it.idx[nd - 2], bi = nd >= 3 ? it.idx[0] : 0;
        int32_t pos = lmc_rope_pos(positions, bi, t);
        for (int64_t d = p->dims; d < D; d++) st(out, it.off[0] + d * so, ld(x, it.off[1] + d * sx));
        for (int64_t i = 0; i < half; i++) {
            float ang = lmc_rope_angle(pos, p->scale, inv[i * sinv]);
            double c = cosf(ang), s = sinf(ang);
            int64_t i0 = p->traditional ? 2 * i : i, i1 = p->traditional ? 2 * i + 1 : i + half;
            double x0 = ld(x, it.off[1] + i0 * sx), x1 = ld(x, it.off[1] + i1 * sx);
            st(out, it.off[0] + i0 * so, x0 * c - x1 * s);
            st(out, it.off[0] + i1 * so, x1 * c + x0 * s);
        }
    }
    while (lmc_index_next(&it));
    return LMC_OK;
}

lmc_status lmc_cpu_sdpa_scalar(lmc_array *out, const lmc_array *q, const lmc_array *k, const lmc_array *v,
                               const lmc_sdpa_params *p) {
    int64_t B = q->shape[0], Hq = q->shape[1], Tq = q->shape[2], D = q->shape[3];
    int64_t Hkv = k->shape[1], Tk = k->shape[2], Dv = v->shape[3], group = Hq / Hkv;
    const lmc_array *m = p->mask;
    double *s = malloc((size_t)(Tk ? Tk : 1) * sizeof(double));
    bool *vis = malloc((size_t)(Tk ? Tk : 1));
    if (!s || !vis) {
        free(s);
        free(vis);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "lmc_sdpa: out of memory");
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Tq; i++) {
                int64_t hk = h / group, qpos = Tk - Tq + i;
                int64_t qo = b * q->strides[0] + h * q->strides[1] + i * q->strides[2];
                double mx = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    int64_t ko = b * k->strides[0] + hk * k->strides[1] + j * k->strides[2];
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; d++) dot += ld(q, qo + d * q->strides[3]) * ld(k, ko + d * k->strides[3]);
                    double sc = dot * p->scale;
                    if (p->softcap > 0.0f) sc = p->softcap * tanh(sc / p->softcap);
                    vis[j] = true;
                    if (p->causal && j > qpos) vis[j] = false;
                    if (p->window > 0 && qpos - j >= p->window) vis[j] = false;
                    if (m) {
                        double mv = ld(m, b * m->strides[0] + h * m->strides[1] + i * m->strides[2] + j * m->strides[3]);
                        if (m->dtype == LMC_BOOL) vis[j] = vis[j] && mv != 0.0;
                        else sc += mv;
                    }
                    s[j] = sc;
                    if (vis[j] && sc > mx) mx = sc;
                }
                double sum = 0.0;
                for (int64_t j = 0; j < Tk; j++) {
                    s[j] = vis[j] && mx > -INFINITY ? exp(s[j] - mx) : 0.0;
                    sum += s[j];
                }
                int64_t oo = b * out->strides[0] + h * out->strides[1] + i * out->strides[2];
                for (int64_t e = 0; e < Dv; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < Tk; j++)
                        if (s[j] != 0.0)
                            acc += s[j] * ld(v, b * v->strides[0] + hk * v->strides[1] + j * v->strides[2] + e * v->strides[3]);
                    st(out, oo + e * out->strides[3], sum > 0.0 ? acc / sum : 0.0);
                }
            }
    free(s);
    free(vis);
    return LMC_OK;
}
