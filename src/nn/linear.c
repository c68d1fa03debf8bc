/* Linear and Embedding layers, float or MLX affine-quantised (lmc/nn.h),
 * with an optional LoRA adapter (nn/linear_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "lmc/nn.h"
#include "lmc/ops.h"
#include "nn/linear_internal.h"
#include "ops/linalg_internal.h"
#include "ops/quant_internal.h"

struct lmc_linear {
    int64_t in, out;
    lmc_array *w;              /* float [out, in], or packed u32 [out, in*bits/32] */
    lmc_array *scales, *biases; /* [out, in/group_size] when quantised, else NULL */
    int group_size, bits;       /* 0 for a float layer */
    lmc_array *bias;            /* [out] or NULL */
    const lmc_linear_adapter *adapter; /* borrowed LoRA adapter, or NULL */
};

static bool is_float(lmc_dtype dt) { return dt == LMC_F32 || dt == LMC_F16 || dt == LMC_BF16; }

static lmc_status check_bias(const lmc_array *bias, int64_t out) {
    if (!bias) return LMC_OK;
    char b[128];
    if (!is_float(bias->dtype) || bias->ndim != 1 || bias->shape[0] != out)
        return lmc_set_error(LMC_ERR_SHAPE, "linear: bias %s %s does not match %lld output features",
                             lmc_dtype_name(bias->dtype), lmc_shape_str(bias->ndim, bias->shape, b, sizeof b),
                             (long long)out);
    return LMC_OK;
}

/* A reference to a contiguous version of a that belongs to the layer: a
 * itself when contiguous (one more reference), else a copy taken out of any
 * open scope (scopes would free it at their end). */
static lmc_array *owned_contiguous(const lmc_array *a) {
    lmc_array *c = lmc_contiguous(a);
    if (c != a)
        while (c && c->scope) lmc_scope_keep(c);
    return c;
}

/* Weights are kept contiguous (a new reference when they already are, as
 * mapped checkpoint tensors are), so row gathers are plain copies. */
static lmc_linear *make(const lmc_array *w, const lmc_array *scales, const lmc_array *biases, const lmc_array *bias,
                        int64_t in, int64_t out, int group_size, int bits) {
    lmc_linear *l = calloc(1, sizeof *l);
    if (!l) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "linear: out of memory");
        return NULL;
    }
    l->in = in;
    l->out = out;
    l->group_size = group_size;
    l->bits = bits;
    l->w = owned_contiguous(w);
    l->scales = scales ? owned_contiguous(scales) : NULL;
    l->biases = biases ? owned_contiguous(biases) : NULL;
    l->bias = bias ? lmc_array_retain((lmc_array *)bias) : NULL;
    if (!l->w || (scales && !l->scales) || (biases && !l->biases)) {
        lmc_linear_free(l);
        return NULL;
    }
    return l;
}

lmc_linear *lmc_linear_new(const lmc_array *weight, const lmc_array *bias) {
    if (!weight) {
        if (lmc_last_status() == LMC_OK) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: weight is NULL");
        return NULL;
    }
    char b[128];
    if (!is_float(weight->dtype) || weight->ndim != 2) {
        lmc_set_error(LMC_ERR_SHAPE, "linear: weight must be a 2-d float array [out, in], got %s %s",
                      lmc_dtype_name(weight->dtype), lmc_shape_str(weight->ndim, weight->shape, b, sizeof b));
        return NULL;
    }
    if (check_bias(bias, weight->shape[0]) != LMC_OK) return NULL;
    return make(weight, NULL, NULL, bias, weight->shape[1], weight->shape[0], 0, 0);
}

lmc_linear *lmc_linear_new_quantized(const lmc_array *wq, const lmc_array *scales, const lmc_array *biases,
                                     const lmc_array *bias, int group_size, int bits) {
    const char *op = "quantized linear";
    if (!wq || !scales || !biases) {
        if (lmc_last_status() == LMC_OK) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: a quantised part is NULL", op);
        return NULL;
    }
    int64_t in = lmc_quant_check(op, wq, scales, biases, group_size, bits);
    if (in < 0) return NULL;
    if (wq->ndim != 2) {
        char b[128];
        lmc_set_error(LMC_ERR_SHAPE, "%s: packed weights must be 2-d [out, in*bits/32], got %s", op,
                      lmc_shape_str(wq->ndim, wq->shape, b, sizeof b));
        return NULL;
    }
    if (check_bias(bias, wq->shape[0]) != LMC_OK) return NULL;
    return make(wq, scales, biases, bias, in, wq->shape[0], group_size, bits);
}

lmc_linear *lmc_linear_quantize(const lmc_linear *l, int group_size, int bits) {
    if (!l) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: layer is NULL");
        return NULL;
    }
    if (l->bits) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: the layer is already quantised (%d bits)", l->bits);
        return NULL;
    }
    lmc_array *s = NULL, *b = NULL;
    lmc_array *wq = lmc_quantize(l->w, group_size, bits, &s, &b);
    lmc_linear *q = wq ? lmc_linear_new_quantized(wq, s, b, l->bias, group_size, bits) : NULL;
    lmc_array_free(wq);
    lmc_array_free(s);
    lmc_array_free(b);
    return q;
}

void lmc_linear_free(lmc_linear *l) {
    if (!l) return;
    lmc_array_free(l->w);
    lmc_array_free(l->scales);
    lmc_array_free(l->biases);
    lmc_array_free(l->bias);
    free(l);
}

/* y[i] = x @ m[i]ᵀ over x's last axis, for n matrices [out_i, in]: x is
 * flattened once and the products run as one batch of the device's kernels
 * (on the GPU at decode one launch for all). On failure every y[i] is NULL. */
static lmc_status rows_times_t_many(const lmc_array *x, int n, const lmc_array *const *m, lmc_array **y) {
    int64_t in = x->shape[x->ndim - 1], s2[2] = {x->size / in, in}, shape[LMC_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    lmc_array *x2 = lmc_reshape(x, 2, s2), *mt[LMC_QMM_MANY_MAX] = {0}, *y2[LMC_QMM_MANY_MAX] = {0};
    lmc_status st = x2 ? LMC_OK : lmc_last_status();
    if (st == LMC_OK) { /* x2, the transposes and the results stay alive until the batch ends */
        lmc_matmul_batch_begin(x2);
        for (int i = 0; i < n && st == LMC_OK; i++) {
            mt[i] = lmc_transpose(m[i]);
            y2[i] = mt[i] ? lmc_matmul(x2, mt[i]) : NULL;
            if (!y2[i]) st = lmc_last_status();
        }
        lmc_status end = lmc_matmul_batch_end(x2);
        if (st == LMC_OK) st = end;
    }
    for (int i = 0; i < n; i++) {
        shape[x->ndim - 1] = m[i]->shape[0];
        y[i] = st == LMC_OK ? lmc_reshape(y2[i], x->ndim, shape) : NULL;
        if (!y[i] && st == LMC_OK) st = lmc_last_status();
        lmc_array_free(mt[i]);
        lmc_array_free(y2[i]);
    }
    lmc_array_free(x2);
    if (st != LMC_OK)
        for (int i = 0; i < n; i++) {
            lmc_array_free(y[i]);
            y[i] = NULL;
        }
    return st;
}

/* x [..., in] as the rows of a 2-d array [N, in] times mᵀ (m [n, in]), back to [..., n]. */
static lmc_array *rows_times_t(const lmc_array *x, const lmc_array *m) {
    lmc_array *y;
    return rows_times_t_many(x, 1, &m, &y) == LMC_OK ? y : NULL;
}

/* SplitMix64's finaliser: mixes a step seed with an adapter's seed. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Inverted dropout of the adapter's input (PEFT's nn.Dropout): elements kept
 * with probability 1 - p and scaled by 1 / (1 - p). The mask is a constant
 * of the step, so only the multiplication is recorded. */
static lmc_array *adapter_dropout(const lmc_array *x, double p, uint64_t seed) {
    lmc_scope_begin();
    lmc_array *u = lmc_random_uniform(LMC_F32, x->ndim, x->shape, 0.0, 1.0, seed);
    lmc_array *keep = lmc_mul_scalar(lmc_astype(lmc_less(u, lmc_scalar(1.0 - p, LMC_F32)), LMC_F32), 1.0 / (1.0 - p));
    lmc_array *y = lmc_scope_keep(lmc_mul(x, keep));
    lmc_scope_end();
    return y;
}

/* scale * (dropout(x) @ Aᵀ) @ Bᵀ, in the order PEFT computes it. */
static lmc_array *adapter_forward(const lmc_linear_adapter *ad, const lmc_array *x, const lmc_linear_run *run) {
    lmc_array *xd = run && run->training && ad->dropout > 0.0
                        ? adapter_dropout(x, ad->dropout, mix64(run->seed ^ mix64(ad->seed)))
                        : lmc_array_retain((lmc_array *)x);
    lmc_array *t = xd ? rows_times_t(xd, ad->a) : NULL;
    lmc_array *u = t ? rows_times_t(t, ad->b) : NULL;
    lmc_array *y = u ? lmc_mul_scalar(u, ad->scale) : NULL;
    lmc_array_free(xd);
    lmc_array_free(t);
    lmc_array_free(u);
    return y;
}

lmc_array *lmc_linear_forward(const lmc_linear *l, const lmc_array *x) { return lmc_linear_forward_run(l, x, NULL); }

static bool check_input(const lmc_linear *l, const lmc_array *x) {
    if (!l || !x) {
        if (lmc_last_status() == LMC_OK) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: %s is NULL", l ? "x" : "layer");
        return false;
    }
    char b[128];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != l->in) {
        lmc_set_error(LMC_ERR_SHAPE, "linear: x %s does not end in the layer's %lld input features",
                      lmc_shape_str(x->ndim, x->shape, b, sizeof b), (long long)l->in);
        return false;
    }
    return true;
}

/* The layer's output from its base product y = x @ Wᵀ (taken over): plus
 * the bias, plus the adapter's update. */
static lmc_array *add_bias_and_adapter(const lmc_linear *l, const lmc_array *x, lmc_array *y, const lmc_linear_run *run) {
    if (y && l->bias) {
        lmc_array *yb = lmc_add(y, l->bias);
        lmc_array_free(y);
        y = yb;
    }
    if (y && l->adapter) {
        lmc_array *d = adapter_forward(l->adapter, x, run);
        lmc_array *yd = d ? lmc_add(y, d) : NULL;
        lmc_array_free(d);
        lmc_array_free(y);
        y = yd;
    }
    return y;
}

lmc_array *lmc_linear_forward_run(const lmc_linear *l, const lmc_array *x, const lmc_linear_run *run) {
    if (!check_input(l, x)) return NULL;
    lmc_array *y;
    if (l->bits) y = lmc_quantized_matmul(x, l->w, l->scales, l->biases, l->group_size, l->bits);
    else y = rows_times_t(x, l->w); /* all leading dimensions as the rows of one 2-d product */
    return add_bias_and_adapter(l, x, y, run);
}

lmc_status lmc_linear_forward_many(int n, lmc_linear *const *l, const lmc_array *x, const lmc_linear_run *run,
                                   lmc_array **y) {
    for (int i = 0; i < n; i++) y[i] = NULL;
    if (n < 1 || n > LMC_QMM_MANY_MAX)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: %d layers at once (1 to %d)", n, LMC_QMM_MANY_MAX);
    for (int i = 0; i < n; i++)
        if (!check_input(l[i], x)) return lmc_last_status();
    /* The quantised layers' products in one batch, the float layers' in
     * another; then biases and adapters (which read the products). */
    lmc_qmm_weights w[LMC_QMM_MANY_MAX];
    const lmc_array *fw[LMC_QMM_MANY_MAX];
    lmc_array *q[LMC_QMM_MANY_MAX] = {0}, *f[LMC_QMM_MANY_MAX] = {0};
    int nq = 0, nf = 0;
    for (int i = 0; i < n; i++) {
        if (l[i]->bits) w[nq++] = (lmc_qmm_weights){l[i]->w, l[i]->scales, l[i]->biases, l[i]->group_size, l[i]->bits};
        else fw[nf++] = l[i]->w;
    }
    lmc_status st = nq ? lmc_quantized_matmul_many(x, nq, w, q) : LMC_OK; /* all NULL on failure */
    if (st == LMC_OK && nf) st = rows_times_t_many(x, nf, fw, f);
    int jq = 0, jf = 0; /* q[jq..nq) and f[jf..nf) not yet taken over */
    for (int i = 0; i < n && st == LMC_OK; i++) {
        lmc_array *base = l[i]->bits ? q[jq++] : f[jf++];
        y[i] = add_bias_and_adapter(l[i], x, base, run);
        if (!y[i]) st = lmc_last_status();
    }
    if (st != LMC_OK) {
        for (; jq < nq; jq++) lmc_array_free(q[jq]);
        for (; jf < nf; jf++) lmc_array_free(f[jf]);
        for (int i = 0; i < n; i++) {
            lmc_array_free(y[i]);
            y[i] = NULL;
        }
    }
    return st;
}

lmc_status lmc_linear_set_adapter(lmc_linear *l, const lmc_linear_adapter *ad) {
    if (!l) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: layer is NULL");
    if (ad) {
        const lmc_array *a = ad->a, *b = ad->b;
        char s1[64], s2[64];
        if (!a || !b || a->ndim != 2 || b->ndim != 2 || a->shape[1] != l->in || b->shape[0] != l->out ||
            b->shape[1] != a->shape[0] || !lmc_dtype_is_float(a->dtype) || !lmc_dtype_is_float(b->dtype))
            return lmc_set_error(LMC_ERR_SHAPE, "linear: adapter A %s and B %s do not fit a layer [%lld, %lld]",
                                 a ? lmc_shape_str(a->ndim, a->shape, s1, sizeof s1) : "(none)",
                                 b ? lmc_shape_str(b->ndim, b->shape, s2, sizeof s2) : "(none)", (long long)l->out,
                                 (long long)l->in);
        if (!(ad->dropout >= 0.0 && ad->dropout < 1.0))
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "linear: adapter dropout must be in [0, 1), got %g", ad->dropout);
    }
    l->adapter = ad;
    return LMC_OK;
}

const lmc_linear_adapter *lmc_linear_get_adapter(const lmc_linear *l) { return l ? l->adapter : NULL; }

lmc_array *lmc_linear_dense_weight(const lmc_linear *l) {
    if (!l->bits) return lmc_array_retain(l->w);
    lmc_array *s = lmc_astype(l->scales, LMC_F32), *b = lmc_astype(l->biases, LMC_F32);
    lmc_array *w = s && b ? lmc_dequantize(l->w, s, b, l->group_size, l->bits) : NULL;
    lmc_array_free(s);
    lmc_array_free(b);
    return w;
}

lmc_status lmc_linear_to_device(lmc_linear *l, lmc_device dev) {
    lmc_array **fields[4] = {&l->w, &l->scales, &l->biases, &l->bias};
    lmc_array *moved[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) {
        if (!*fields[i]) continue;
        moved[i] = lmc_array_unscope(lmc_array_to(*fields[i], dev));
        if (!moved[i]) {
            for (int j = 0; j < i; j++) lmc_array_free(moved[j]);
            return lmc_last_status();
        }
    }
    for (int i = 0; i < 4; i++) {
        if (!*fields[i]) continue;
        lmc_array_free(*fields[i]);
        *fields[i] = moved[i];
    }
    return LMC_OK;
}

/* rows[i] = table[ids[i]] for a contiguous 2-d table (a gather of whole
 * rows), on the table's device (a device's row copies are queued, not waited for). */
static lmc_array *gather_rows(const lmc_array *table, const int64_t *ids, int64_t n) {
    int64_t shape[2] = {n, table->shape[1]};
    lmc_device dev = table->buf->device;
    lmc_array *out = lmc_array_new(table->dtype, 2, shape, dev);
    if (!out) return NULL;
    size_t row = (size_t)table->shape[1] * lmc_dtype_size(table->dtype);
    const char *src = lmc_array_ptr(table);
    char *dst = lmc_array_ptr(out);
    for (int64_t i = 0; i < n; i++) {
        if (lmc_device_copy(dst + (size_t)i * row, dev, src + (size_t)ids[i] * row, dev, row) != LMC_OK) {
            lmc_array_free(out);
            return NULL;
        }
    }
    return out;
}

lmc_array *lmc_embedding_lookup(const lmc_linear *table, const lmc_array *ids) {
    if (!table || !ids) {
        if (lmc_last_status() == LMC_OK)
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "embedding: %s is NULL", table ? "ids" : "table");
        return NULL;
    }
    if (lmc_dtype_is_float(ids->dtype) || ids->dtype == LMC_BOOL || ids->ndim + 1 > LMC_MAX_DIMS) {
        lmc_set_error(LMC_ERR_SHAPE, "embedding: ids must be integers with fewer than %d dimensions, got %s",
                      LMC_MAX_DIMS, lmc_dtype_name(ids->dtype));
        return NULL;
    }
    int64_t n = ids->size;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!idx) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "embedding: out of memory for %lld ids", (long long)n);
        return NULL;
    }
    if (lmc_array_read(ids, LMC_I64, idx, (size_t)n) != LMC_OK) {
        free(idx);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= table->out) {
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "embedding: id %lld (at position %lld) is out of range for a table of %lld rows",
                          (long long)idx[i], (long long)i, (long long)table->out);
            free(idx);
            return NULL;
        }
    }
    lmc_array *rows;
    if (table->bits) {
        /* Gather the packed rows with their scales and biases, then dequantise just those. */
        lmc_array *wq = gather_rows(table->w, idx, n), *s = gather_rows(table->scales, idx, n),
                  *b = gather_rows(table->biases, idx, n);
        /* In f32: s·q + b is generally not representable in the scales' dtype,
         * and rounding it there would move every row off the true weights. */
        lmc_array *s32 = s ? lmc_astype(s, LMC_F32) : NULL, *b32 = b ? lmc_astype(b, LMC_F32) : NULL;
        rows = wq && s32 && b32 ? lmc_dequantize(wq, s32, b32, table->group_size, table->bits) : NULL;
        lmc_array_free(wq);
        lmc_array_free(s);
        lmc_array_free(b);
        lmc_array_free(s32);
        lmc_array_free(b32);
    } else {
        rows = gather_rows(table->w, idx, n);
    }
    free(idx);
    int64_t shape[LMC_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = table->in;
    lmc_array *out = lmc_reshape(rows, ids->ndim + 1, shape);
    lmc_array_free(rows);
    return out;
}

int64_t lmc_linear_in_features(const lmc_linear *l) { return l ? l->in : 0; }
int64_t lmc_linear_out_features(const lmc_linear *l) { return l ? l->out : 0; }
int lmc_linear_bits(const lmc_linear *l) { return l ? l->bits : 0; }
int lmc_linear_group_size(const lmc_linear *l) { return l ? l->group_size : 0; }
const lmc_array *lmc_linear_weight(const lmc_linear *l) { return l ? l->w : NULL; }
const lmc_array *lmc_linear_scales(const lmc_linear *l) { return l ? l->scales : NULL; }
const lmc_array *lmc_linear_biases(const lmc_linear *l) { return l ? l->biases : NULL; }
const lmc_array *lmc_linear_bias(const lmc_linear *l) { return l ? l->bias : NULL; }
