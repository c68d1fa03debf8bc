/* Arrays: views over reference-counted buffers, and thread-local scopes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/array.h"

static atomic_llong g_live_arrays;

/* --- scopes ---------------------------------------------------------------- */

typedef struct lmc_scope {
    lmc_array **items;
    size_t len, cap;
    struct lmc_scope *parent;
} lmc_scope;

static _Thread_local lmc_scope *t_scope;

static bool scope_add(lmc_scope *s, lmc_array *a) {
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        lmc_array **items = realloc(s->items, cap * sizeof *items);
        if (!items) return false;
        s->items = items;
        s->cap = cap;
    }
    a->scope = s;
    a->scope_slot = s->len;
    s->items[s->len++] = a;
    return true;
}

static void scope_remove(lmc_array *a) {
    lmc_scope *s = a->scope;
    s->items[a->scope_slot] = NULL;
    a->scope = NULL;
}

void lmc_scope_begin(void) {
    lmc_scope *s = calloc(1, sizeof *s);
    if (!s) abort(); /* a few bytes: no sensible recovery, and scopes must balance */
    s->parent = t_scope;
    t_scope = s;
}

lmc_array *lmc_scope_keep(lmc_array *a) {
    if (!a || !a->scope) return a;
    lmc_scope *parent = a->scope->parent;
    scope_remove(a);
    if (parent && !scope_add(parent, a)) {
        /* Could not record it in the parent: the caller owns it instead, which leaks
         * at worst but never frees something still in use. */
        a->scope = NULL;
    }
    return a;
}

lmc_array *lmc_array_unscope(lmc_array *a) {
    if (a && a->scope) scope_remove(a);
    return a;
}

void lmc_scope_end(void) {
    lmc_scope *s = t_scope;
    if (!s) return;
    t_scope = s->parent;
    /* Release in reverse creation order; an array freed here may not appear twice. */
    for (size_t i = s->len; i-- > 0;) {
        lmc_array *a = s->items[i];
        if (!a) continue;
        a->scope = NULL;
        lmc_array_free(a);
    }
    free(s->items);
    free(s);
}

int64_t lmc_live_arrays(void) { return atomic_load(&g_live_arrays); }

/* --- construction ---------------------------------------------------------- */

int64_t lmc_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = n;
        n *= shape[i];
    }
    return n;
}

const char *lmc_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

lmc_status lmc_check_shape(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > LMC_MAX_DIMS)
        return lmc_set_error(LMC_ERR_SHAPE, "arrays have 0 to %d dimensions, got %d", LMC_MAX_DIMS, ndim);
    if (ndim > 0 && !shape) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "shape is NULL");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return lmc_set_error(LMC_ERR_SHAPE, "dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] && n > INT64_MAX / 16 / shape[i])
            return lmc_set_error(LMC_ERR_SHAPE, "shape is too large (element count overflows)");
        n *= shape[i];
    }
    return LMC_OK;
}

int lmc_normalize_axis(int axis, int ndim) {
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) {
        lmc_set_error(LMC_ERR_SHAPE, "axis %d is out of range for an array of %d dimensions", axis, ndim);
        return -1;
    }
    return a;
}

lmc_array *lmc_array_view(lmc_buffer *buf, size_t offset, lmc_dtype dt, int ndim, const int64_t *shape,
                          const int64_t *strides) {
    lmc_array *a = calloc(1, sizeof *a);
    if (!a) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    lmc_buffer_retain(buf);
    a->buf = buf;
    a->offset = offset;
    a->dtype = dt;
    a->ndim = ndim;
    a->size = 1;
    for (int i = 0; i < ndim; i++) {
        a->shape[i] = shape[i];
        a->strides[i] = strides[i];
        a->size *= shape[i];
    }
    atomic_init(&a->refcount, 1);
    atomic_fetch_add(&g_live_arrays, 1);
    if (t_scope && !scope_add(t_scope, a)) {
        lmc_array_free(a);
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    return a;
}

lmc_array *lmc_array_new(lmc_dtype dt, int ndim, const int64_t *shape, lmc_device dev) {
    if ((unsigned)dt >= LMC_DTYPE_COUNT) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "invalid dtype %d", (int)dt);
        return NULL;
    }
    if (lmc_check_shape(ndim, shape) != LMC_OK) return NULL;
    int64_t strides[LMC_MAX_DIMS];
    int64_t n = lmc_contiguous_strides(ndim, shape, strides);
    lmc_buffer *buf = lmc_buffer_alloc(dev, (size_t)n * lmc_dtype_size(dt));
    if (!buf) return NULL;
    lmc_array *a = lmc_array_view(buf, 0, dt, ndim, shape, strides);
    lmc_buffer_release(buf);
    return a;
}

lmc_array *lmc_empty(lmc_dtype dt, int ndim, const int64_t *shape) { return lmc_array_new(dt, ndim, shape, LMC_CPU); }

lmc_array *lmc_array_from_data(const void *data, lmc_dtype dt, int ndim, const int64_t *shape) {
    lmc_array *a = lmc_array_new(dt, ndim, shape, LMC_CPU);
    if (!a) return NULL;
    size_t nbytes = (size_t)a->size * lmc_dtype_size(dt);
    if (nbytes && !data) {
        lmc_array_free(a);
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "data is NULL");
        return NULL;
    }
    if (nbytes) memcpy(lmc_array_ptr(a), data, nbytes);
    return a;
}

lmc_array *lmc_array_wrap(void *data, lmc_dtype dt, int ndim, const int64_t *shape, void (*release)(void *ctx),
                          void *ctx) {
    if ((unsigned)dt >= LMC_DTYPE_COUNT) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "invalid dtype %d", (int)dt);
        return NULL;
    }
    if (lmc_check_shape(ndim, shape) != LMC_OK) return NULL;
    int64_t strides[LMC_MAX_DIMS];
    int64_t n = lmc_contiguous_strides(ndim, shape, strides);
    if (n && !data) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "data is NULL");
        return NULL;
    }
    lmc_buffer *buf = lmc_buffer_wrap(data, (size_t)n * lmc_dtype_size(dt), LMC_CPU, release, ctx);
    if (!buf) return NULL;
    lmc_array *a = lmc_array_view(buf, 0, dt, ndim, shape, strides);
    lmc_buffer_release(buf);
    return a;
}

/* --- references ------------------------------------------------------------ */

lmc_array *lmc_array_retain(lmc_array *a) {
    if (a) atomic_fetch_add(&a->refcount, 1);
    return a;
}

void lmc_array_free(lmc_array *a) {
    if (!a || atomic_fetch_sub(&a->refcount, 1) != 1) return;
    if (a->scope) scope_remove(a);
    if (a->grad_node) lmc_tape_forget(a);
    lmc_buffer_release(a->buf);
    atomic_fetch_sub(&g_live_arrays, 1);
    free(a);
}

/* --- properties ------------------------------------------------------------ */

int lmc_array_ndim(const lmc_array *a) { return a ? a->ndim : 0; }
const int64_t *lmc_array_shape(const lmc_array *a) { return a ? a->shape : NULL; }
const int64_t *lmc_array_strides(const lmc_array *a) { return a ? a->strides : NULL; }
int64_t lmc_array_size(const lmc_array *a) { return a ? a->size : 0; }
size_t lmc_array_nbytes(const lmc_array *a) { return a ? (size_t)a->size * lmc_dtype_size(a->dtype) : 0; }
lmc_dtype lmc_array_dtype(const lmc_array *a) { return a ? a->dtype : LMC_F32; }
lmc_device lmc_array_device(const lmc_array *a) { return a ? a->buf->device : LMC_CPU; }
void *lmc_array_data(const lmc_array *a) { return a && a->buf->device == LMC_CPU ? lmc_array_ptr(a) : NULL; }

int64_t lmc_array_dim(const lmc_array *a, int axis) {
    if (!a) return 0;
    int ax = lmc_normalize_axis(axis, a->ndim);
    return ax < 0 ? 0 : a->shape[ax];
}

bool lmc_array_is_contiguous(const lmc_array *a) {
    if (!a) return false;
    int64_t expect = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        if (a->shape[i] != 1 && a->strides[i] != expect) return false;
        expect *= a->shape[i];
    }
    return true;
}

/* --- element walking ------------------------------------------------------- */

void lmc_index_init(lmc_index_iter *it, int ndim, const int64_t *shape, int nops, const lmc_array *const *ops) {
    memset(it, 0, sizeof *it);
    it->ndim = ndim;
    it->nops = nops;
    for (int d = 0; d < ndim; d++) it->shape[d] = shape[d];
    for (int k = 0; k < nops; k++)
        for (int d = 0; d < ndim; d++) it->strides[k][d] = ops[k]->strides[d];
}

bool lmc_index_next(lmc_index_iter *it) {
    for (int d = it->ndim - 1; d >= 0; d--) {
        if (++it->idx[d] < it->shape[d]) {
            for (int k = 0; k < it->nops; k++) it->off[k] += it->strides[k][d];
            return true;
        }
        for (int k = 0; k < it->nops; k++) it->off[k] -= it->strides[k][d] * (it->shape[d] - 1);
        it->idx[d] = 0;
    }
    return false;
}

lmc_status lmc_array_read(const lmc_array *a, lmc_dtype dt, void *dst, size_t count) {
    if (!a) return lmc_last_status() != LMC_OK ? lmc_last_status() : lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "array is NULL");
    if (a->buf->device != LMC_CPU && (size_t)a->size == count) {
        lmc_array *h = lmc_array_unscope(lmc_array_to(a, LMC_CPU));
        lmc_status s = h ? lmc_array_read(h, dt, dst, count) : lmc_last_status();
        lmc_array_free(h);
        return s;
    }
    if ((size_t)a->size != count)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_array_read: array has %lld elements, destination %zu",
                             (long long)a->size, count);
    if (count == 0) return LMC_OK;
    size_t ds = lmc_dtype_size(dt), ss = lmc_dtype_size(a->dtype);
    if (lmc_array_is_contiguous(a)) {
        lmc_convert(dst, dt, lmc_array_ptr(a), a->dtype, count);
        return LMC_OK;
    }
    lmc_index_iter it;
    lmc_index_init(&it, a->ndim, a->shape, 1, &a);
    const char *base = lmc_array_ptr(a);
    size_t i = 0;
    do {
        lmc_convert((char *)dst + i * ds, dt, base + it.off[0] * (int64_t)ss, a->dtype, 1);
        i++;
    } while (lmc_index_next(&it));
    return LMC_OK;
}

lmc_status lmc_array_item(const lmc_array *a, double *out) {
    if (!a) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "array is NULL");
    if (a->size != 1) return lmc_set_error(LMC_ERR_SHAPE, "lmc_array_item needs one element, array has %lld", (long long)a->size);
    if (a->buf->device != LMC_CPU) {
        lmc_array *h = lmc_array_unscope(lmc_array_to(a, LMC_CPU));
        if (!h) return lmc_last_status();
        *out = lmc_load_f64(lmc_array_ptr(h), h->dtype);
        lmc_array_free(h);
        return LMC_OK;
    }
    *out = lmc_load_f64(lmc_array_ptr(a), a->dtype);
    return LMC_OK;
}
