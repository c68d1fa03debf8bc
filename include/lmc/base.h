/* lmc/base.h — status codes, error reporting, data types and memory accounting.
 *
 * Every public function that can fail returns an lmc_status (or NULL for a
 * constructor) and records a human-readable message in thread-local storage,
 * readable with lmc_last_error() until the next failing call on that thread.
 */
#ifndef LMC_BASE_H
#define LMC_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LMC_API __declspec(dllexport)
#else
#define LMC_API __attribute__((visibility("default")))
#endif

typedef enum lmc_status {
    LMC_OK = 0,
    LMC_ERR_INVALID_ARGUMENT = 1, /* a value the caller passed is out of range or inconsistent */
    LMC_ERR_SHAPE = 2,            /* shapes or dtypes do not fit the operation */
    LMC_ERR_OUT_OF_MEMORY = 3,    /* allocation failed or the memory limit would be exceeded */
    LMC_ERR_IO = 4,               /* a file could not be opened, read, mapped or written */
    LMC_ERR_FORMAT = 5,           /* a file is malformed (JSON, safetensors, tokenizer) */
    LMC_ERR_UNSUPPORTED = 6,      /* a valid but unsupported feature (architecture, component) */
    LMC_ERR_NOT_FOUND = 7,        /* a named item (tensor, file, token) does not exist */
    LMC_ERR_CANCELLED = 8,        /* the operation was cancelled by the caller */
    LMC_ERR_CLOSED = 9,           /* the handle was closed */
    LMC_ERR_INTERNAL = 10,        /* a bug in lmc */
} lmc_status;

/* The message of the last error on the calling thread ("" when none). */
LMC_API const char *lmc_last_error(void);
/* The status of the last error on the calling thread (LMC_OK when none). */
LMC_API lmc_status lmc_last_status(void);
/* Forget the last error on the calling thread. */
LMC_API void lmc_clear_error(void);
/* A short constant name for a status, e.g. "out of memory". */
LMC_API const char *lmc_status_name(lmc_status s);

typedef enum lmc_dtype {
    LMC_F32 = 0,
    LMC_F16 = 1,
    LMC_BF16 = 2,
    LMC_I32 = 3,
    LMC_U32 = 4,
    LMC_U8 = 5,
    LMC_BOOL = 6,
    LMC_I64 = 7, /* only as a storage type for safetensors I/O and indices */
    LMC_DTYPE_COUNT
} lmc_dtype;

LMC_API size_t lmc_dtype_size(lmc_dtype dt);
LMC_API const char *lmc_dtype_name(lmc_dtype dt);
LMC_API bool lmc_dtype_is_float(lmc_dtype dt);

/* Bit-exact conversions (round to nearest, ties to even; NaN stays NaN; overflow gives Inf). */
LMC_API uint16_t lmc_f32_to_bf16(float f);
LMC_API float lmc_bf16_to_f32(uint16_t h);
LMC_API uint16_t lmc_f32_to_f16(float f);
LMC_API float lmc_f16_to_f32(uint16_t h);

typedef enum lmc_device { LMC_CPU = 0, LMC_CUDA = 1, LMC_DEVICE_COUNT } lmc_device;

/* Memory accounting per device. Active bytes are the bytes of live buffers
 * that lmc allocated (memory-mapped checkpoint files are counted separately
 * as mapped bytes); peak is the high-water mark of active bytes since the
 * last reset. A limit of 0 means none; an allocation that would take active
 * bytes over the limit fails with LMC_ERR_OUT_OF_MEMORY. */
typedef struct lmc_memory_stats {
    size_t active_bytes;
    size_t peak_bytes;
    size_t mapped_bytes;
    size_t limit_bytes;
} lmc_memory_stats;

LMC_API lmc_memory_stats lmc_memory(lmc_device dev);
LMC_API void lmc_memory_set_limit(lmc_device dev, size_t bytes);
LMC_API void lmc_memory_reset_peak(lmc_device dev);

/* Threads used by CPU kernels (default: the number of online CPUs).
 * n <= 0 restores the default. Not to be called while kernels run. */
LMC_API lmc_status lmc_set_num_threads(int n);
LMC_API int lmc_num_threads(void);

/* The CPU features lmc detected and the kernel path it uses. */
typedef struct lmc_cpu_info {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512_bf16, avx512_vnni, avx512_fp16;
    bool amx_tile, amx_bf16, amx_int8;
    const char *path; /* "scalar", "avx2", "avx512" or "amx": the best path in use */
} lmc_cpu_info;

LMC_API lmc_cpu_info lmc_cpu(void);

#define LMC_VERSION_MAJOR 0
#define LMC_VERSION_MINOR 1
#define LMC_VERSION_PATCH 0
LMC_API const char *lmc_version(void);

#ifdef __cplusplus
}
#endif
#endif
