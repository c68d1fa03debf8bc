/* lmc/array.h — n-dimensional arrays, reference counting and scopes.
 *
 * Ownership: every function that returns an lmc_array* returns a new
 * reference that the caller owns and must release with lmc_array_free()
 * — unless a scope is open on the calling thread, in which case the scope
 * owns it and releases it at lmc_scope_end() (the caller may still free it
 * earlier, or take it out of the scope with lmc_scope_keep()).
 *
 * Arrays are views: a buffer plus dtype, shape, element strides and a byte
 * offset. Transpose, broadcast and slice share the buffer without copying.
 * A function that fails returns NULL and records the error (lmc_last_error);
 * functions taking arrays accept NULL inputs and return NULL, so a chain of
 * calls can be checked once at the end.
 */
#ifndef LMC_ARRAY_H
#define LMC_ARRAY_H

#include "lmc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMC_MAX_DIMS 8

typedef struct lmc_array lmc_array;

/* --- creation ------------------------------------------------------------ */

/* A new contiguous array holding a copy of `data` (row-major, dtype dt). */
LMC_API lmc_array *lmc_array_from_data(const void *data, lmc_dtype dt, int ndim, const int64_t *shape);
/* A contiguous array over caller memory without copying; `release(ctx)` is
 * called when the last view of it is freed (may be NULL). Not counted as
 * active memory. */
LMC_API lmc_array *lmc_array_wrap(void *data, lmc_dtype dt, int ndim, const int64_t *shape,
                                  void (*release)(void *ctx), void *ctx);
/* An uninitialised contiguous array (contents unspecified). */
LMC_API lmc_array *lmc_empty(lmc_dtype dt, int ndim, const int64_t *shape);
LMC_API lmc_array *lmc_zeros(lmc_dtype dt, int ndim, const int64_t *shape);
LMC_API lmc_array *lmc_ones(lmc_dtype dt, int ndim, const int64_t *shape);
LMC_API lmc_array *lmc_full(double value, lmc_dtype dt, int ndim, const int64_t *shape);
/* A 0-d array. */
LMC_API lmc_array *lmc_scalar(double value, lmc_dtype dt);
/* [start, stop) in steps of step (step != 0), as a 1-d array. */
LMC_API lmc_array *lmc_arange(double start, double stop, double step, lmc_dtype dt);
/* Seeded random arrays: the same seed gives the same values on every
 * machine and thread count. */
LMC_API lmc_array *lmc_random_normal(lmc_dtype dt, int ndim, const int64_t *shape, double mean, double std, uint64_t seed);
LMC_API lmc_array *lmc_random_uniform(lmc_dtype dt, int ndim, const int64_t *shape, double low, double high, uint64_t seed);

/* --- properties ---------------------------------------------------------- */

LMC_API int lmc_array_ndim(const lmc_array *a);
LMC_API const int64_t *lmc_array_shape(const lmc_array *a);
/* Size of one axis; negative axes count from the end. */
LMC_API int64_t lmc_array_dim(const lmc_array *a, int axis);
/* Element strides (not bytes). */
LMC_API const int64_t *lmc_array_strides(const lmc_array *a);
LMC_API int64_t lmc_array_size(const lmc_array *a);
LMC_API size_t lmc_array_nbytes(const lmc_array *a);
LMC_API lmc_dtype lmc_array_dtype(const lmc_array *a);
LMC_API lmc_device lmc_array_device(const lmc_array *a);
/* True when the elements are laid out row-major without gaps. */
LMC_API bool lmc_array_is_contiguous(const lmc_array *a);
/* A copy of `a` on device dev (LMC_CPU or LMC_CUDA), contiguous; a new
 * reference to `a` itself when it is already there. Fails with
 * LMC_ERR_UNSUPPORTED when the device is not built in or not usable. */
LMC_API lmc_array *lmc_array_to(const lmc_array *a, lmc_device dev);
/* True when arrays can live on dev here (the CPU always; CUDA in a build
 * with -DLMC_CUDA=ON on a machine with a usable GPU). */
LMC_API bool lmc_device_available(lmc_device dev);
/* Address of the first element (CPU arrays); NULL for other devices. */
LMC_API void *lmc_array_data(const lmc_array *a);
/* Copies the elements, row-major, converted to dtype `dt`, into dst (room
 * for `count` elements; count must equal the array's size). Arrays on a
 * device are copied to the host first (the call waits for the device). */
LMC_API lmc_status lmc_array_read(const lmc_array *a, lmc_dtype dt, void *dst, size_t count);
/* The single element of a size-1 array as a double. */
LMC_API lmc_status lmc_array_item(const lmc_array *a, double *out);

/* --- references and scopes ------------------------------------------------ */

/* Adds a reference; returns a. */
LMC_API lmc_array *lmc_array_retain(lmc_array *a);
/* Drops a reference (NULL is ignored). The buffer is freed with its last view. */
LMC_API void lmc_array_free(lmc_array *a);

/* Opens a scope on the calling thread. Arrays created until the matching
 * lmc_scope_end() belong to it. Scopes nest. */
LMC_API void lmc_scope_begin(void);
/* Moves `a` out of the innermost scope into the enclosing one (or to the
 * caller when there is none); returns a. */
LMC_API lmc_array *lmc_scope_keep(lmc_array *a);
/* Releases every array still owned by the innermost scope and closes it. */
LMC_API void lmc_scope_end(void);
/* Number of live arrays created by lmc on all threads (for leak checks). */
LMC_API int64_t lmc_live_arrays(void);

#ifdef __cplusplus
}
#endif
#endif
