/* Internal layout of arrays and buffers, shared by ops and backends. */
#ifndef LMC_CORE_ARRAY_H
#define LMC_CORE_ARRAY_H

#include <stdatomic.h>

#include "lmc/array.h"
#include "core/error.h"

/* A block of memory on one device, shared by every view of it. */
typedef struct lmc_buffer {
    void *data;
    size_t nbytes;
    lmc_device device;
    atomic_int refcount;
    bool counted;                   /* counts toward active bytes (allocated by lmc) */
    void (*release)(void *ctx);     /* borrowed memory: called instead of freeing data */
    void *release_ctx;
} lmc_buffer;

struct lmc_scope;

struct lmc_array {
    lmc_buffer *buf;
    size_t offset;                  /* bytes from buf->data to element 0 */
    lmc_dtype dtype;
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    int64_t strides[LMC_MAX_DIMS];  /* in elements; 0 on broadcast axes */
    int64_t size;
    atomic_int refcount;
    struct lmc_scope *scope;        /* owning scope, or NULL */
    size_t scope_slot;
    void *grad_node;                /* autograd: this array's node on a tape (src/train/tape.h), or NULL */
};

/* Implemented by the autograd tape (src/train/tape.c): an array with a
 * grad_node is dying, so its node must forget it. */
void lmc_tape_forget(lmc_array *a);

/* Buffers -------------------------------------------------------------- */

/* Allocates nbytes (64-byte aligned) on dev, checking the memory limit. */
lmc_buffer *lmc_buffer_alloc(lmc_device dev, size_t nbytes);
/* Wraps memory lmc does not own; `release(ctx)` runs when the buffer dies. */
lmc_buffer *lmc_buffer_wrap(void *data, size_t nbytes, lmc_device dev, void (*release)(void *), void *ctx);
void lmc_buffer_retain(lmc_buffer *b);
void lmc_buffer_release(lmc_buffer *b);
/* While a hold is open (begin/end pairs nest), freed CPU buffers of 256 KiB
 * or more are kept, up to a quarter of the peak of allocated bytes, for
 * allocations of the same size (a training step's arrays come back every
 * step); the last end frees them. lmc_buffer_held_bytes: how many are kept. */
void lmc_buffer_hold_begin(void);
void lmc_buffer_hold_end(void);
size_t lmc_buffer_held_bytes(void);

/* Device memory (core/device.c): allocation on a device other than the CPU,
 * and copies between any two devices (host <-> device copies are complete
 * when the call returns; device -> device ones are ordered on the device). */
bool lmc_device_usable(lmc_device dev);
lmc_status lmc_device_malloc(lmc_device dev, size_t nbytes, void **out);
void lmc_device_free(lmc_device dev, void *p);
lmc_status lmc_device_copy(void *dst, lmc_device dst_dev, const void *src, lmc_device src_dev, size_t nbytes);

/* Device memory accounting used by allocators. */
lmc_status lmc_memory_reserve(lmc_device dev, size_t nbytes); /* fails over the limit */
void lmc_memory_unreserve(lmc_device dev, size_t nbytes);
void lmc_memory_add_mapped(lmc_device dev, int64_t delta);

/* Arrays ----------------------------------------------------------------- */

/* A new contiguous, uninitialised array on dev. */
lmc_array *lmc_array_new(lmc_dtype dt, int ndim, const int64_t *shape, lmc_device dev);
/* A view of `buf` (takes a new reference on it) with the given layout. */
lmc_array *lmc_array_view(lmc_buffer *buf, size_t offset, lmc_dtype dt, int ndim, const int64_t *shape,
                          const int64_t *strides);
/* Takes `a` out of whatever scope owns it: the caller owns it from now on
 * (for long-lived state such as weights and caches made inside a scope). */
lmc_array *lmc_array_unscope(lmc_array *a);
/* Row-major strides for a shape; returns the element count. */
int64_t lmc_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* Pointer to element 0 (CPU only). */
static inline void *lmc_array_ptr(const lmc_array *a) { return (char *)a->buf->data + a->offset; }
/* Normalises a possibly negative axis; -1 (with an error set) when out of range. */
int lmc_normalize_axis(int axis, int ndim);
/* Validates a shape given by the caller (ndim range, no negative dims, size overflow). */
lmc_status lmc_check_shape(int ndim, const int64_t *shape);
/* Formats a shape as "[2, 3, 4]" into buf (for error messages). */
const char *lmc_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* Element access as double, for scalar reference kernels. */
double lmc_load_f64(const void *p, lmc_dtype dt);
void lmc_store_f64(void *p, lmc_dtype dt, double v);
/* Converts n contiguous elements between dtypes. */
void lmc_convert(void *dst, lmc_dtype dst_dt, const void *src, lmc_dtype src_dt, size_t n);

/* Walks every element of an n-d index space in row-major order: call
 * lmc_index_next until it returns false. Offsets of up to 4 operands. */
typedef struct lmc_index_iter {
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    int64_t idx[LMC_MAX_DIMS];
    int nops;
    int64_t strides[4][LMC_MAX_DIMS];
    int64_t off[4];
} lmc_index_iter;
void lmc_index_init(lmc_index_iter *it, int ndim, const int64_t *shape, int nops, const lmc_array *const *ops);
bool lmc_index_next(lmc_index_iter *it);

#endif
