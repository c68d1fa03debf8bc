/* lmc/safetensors.h — reading and writing safetensors files and checkpoints.
 *
 * The format (https://github.com/huggingface/safetensors): 8 bytes holding N,
 * a little-endian u64; N bytes of UTF-8 JSON mapping each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} plus an optional
 * "__metadata__" object of string values; then the data section, where each
 * tensor's row-major, little-endian bytes lie at [begin, end) relative to the
 * start of the data section.
 *
 * Validation. A file is opened only when everything in its header checks
 * out; otherwise LMC_ERR_FORMAT with a message naming the file and, where
 * there is one, the tensor (LMC_ERR_IO when the file cannot be opened, is a
 * directory or cannot be mapped). The rules:
 *   - the file holds at least the 8 length bytes; N <= 100,000,000 (the
 *     reference implementation's limit) and the header lies within the file;
 *   - the header is valid UTF-8 and one JSON object, followed only by JSON
 *     whitespace (writers pad it with spaces);
 *   - every entry other than "__metadata__" is an object with exactly the
 *     fields "dtype" (a known safetensors dtype name), "shape" (at most 8
 *     non-negative integers) and "data_offsets" (two integers, begin <= end,
 *     end within the data section), with end - begin equal to the dtype size
 *     times the element count (computed with overflow checks);
 *   - no name appears twice (tensors, metadata keys, fields);
 *   - "__metadata__", when present, maps strings to strings (null is read as
 *     no metadata, as the reference does; MLX writes it);
 *   - no string holds the escape \u0000 (C strings cannot carry a NUL);
 *   - the tensors tile the data section exactly: sorted by offset, each
 *     begins where the previous one ends, the first at 0 and the last at the
 *     end of the file. This is the reference implementation's rule (its
 *     validate() and MetadataIncompleteBuffer error): no overlaps, no gaps,
 *     no trailing bytes, so no byte is read as two tensors and nothing is
 *     hidden in the file.
 * JSON numbers are read by cJSON as doubles, so shape and offset values must
 * be integers below 2^53 (larger ones cannot be represented exactly).
 *
 * Dtypes. BOOL, U8, I32, U32, I64, F16, BF16 and F32 map to lmc dtypes. I8,
 * I16, U16, U64, F64, F8_E4M3, F8_E5M2, F8_E8M0 and MLX's C64 are known (a
 * file holding them opens and validates) but lmc has no dtype for them:
 * lmc_safetensors_info and _get fail with LMC_ERR_UNSUPPORTED naming the
 * tensor and dtype; lmc_safetensors_dtype_name still reports them.
 *
 * Zero copy. The file is mapped once (read-only, MAP_PRIVATE) and each
 * tensor is an lmc_array viewing the mapping; the mapping is unmapped when
 * the handle is closed AND the last array viewing it is freed, so arrays may
 * outlive the handle. Mapped bytes are counted in lmc_memory().mapped_bytes.
 * The arrays are read-only: writing through lmc_array_data() faults.
 *
 * Alignment. lmc kernels load elements through typed pointers, so element
 * data must be aligned to the element size. Files written by the reference
 * implementation (and by lmc_safetensors_write with larger element types
 * first) are aligned; others (MLX does not pad its header) may not be.
 * A tensor whose data is not aligned to its element size is copied into an
 * aligned, lmc-allocated array (counted as active memory) — correct, but not
 * zero copy. lmc_safetensors_is_aligned tells which case applies.
 *
 * Threads. An open handle is only read: several threads may call the
 * query and _get functions on it at once (not _close).
 */
#ifndef LMC_SAFETENSORS_H
#define LMC_SAFETENSORS_H

#include "lmc/array.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest header accepted, in bytes (the reference implementation's limit). */
#define LMC_SAFETENSORS_MAX_HEADER 100000000u

typedef struct lmc_safetensors lmc_safetensors;

/* --- one file -------------------------------------------------------------- */

/* Opens and validates a safetensors file; *out receives the handle. */
LMC_API lmc_status lmc_safetensors_open(const char *path, lmc_safetensors **out);
/* Closes the handle (NULL is ignored). Arrays obtained from it stay valid. */
LMC_API void lmc_safetensors_close(lmc_safetensors *st);
/* The path the file was opened with. */
LMC_API const char *lmc_safetensors_path(const lmc_safetensors *st);
/* Number of tensors. */
LMC_API size_t lmc_safetensors_count(const lmc_safetensors *st);
/* Name of tensor i (0 <= i < count) in header order; NULL when out of range. */
LMC_API const char *lmc_safetensors_name(const lmc_safetensors *st, size_t i);
/* True when the file holds a tensor of that name. */
LMC_API bool lmc_safetensors_contains(const lmc_safetensors *st, const char *name);
/* The stored dtype name ("BF16", "F64", ...) of a tensor; NULL (with
 * LMC_ERR_NOT_FOUND) when there is no such tensor. */
LMC_API const char *lmc_safetensors_dtype_name(const lmc_safetensors *st, const char *name);
/* Dtype and shape of a tensor without touching its data. Any output pointer
 * may be NULL; shape needs room for LMC_MAX_DIMS values. LMC_ERR_NOT_FOUND
 * when missing, LMC_ERR_UNSUPPORTED when its dtype has no lmc equivalent. */
LMC_API lmc_status lmc_safetensors_info(const lmc_safetensors *st, const char *name, lmc_dtype *dtype, int *ndim,
                                        int64_t *shape);
/* True when the tensor's data is aligned to its element size, i.e. _get
 * returns a zero-copy view (false for a missing tensor). */
LMC_API bool lmc_safetensors_is_aligned(const lmc_safetensors *st, const char *name);
/* The tensor as a new array (a view of the mapping, or an aligned copy; see
 * above). NULL with LMC_ERR_NOT_FOUND naming the tensor and file when
 * missing, LMC_ERR_UNSUPPORTED for dtypes lmc lacks. */
LMC_API lmc_array *lmc_safetensors_get(const lmc_safetensors *st, const char *name);
/* Value of a "__metadata__" key, or NULL when absent. */
LMC_API const char *lmc_safetensors_metadata(const lmc_safetensors *st, const char *key);
/* Number of "__metadata__" entries, and the i-th key (in header order). */
LMC_API size_t lmc_safetensors_metadata_count(const lmc_safetensors *st);
LMC_API const char *lmc_safetensors_metadata_key(const lmc_safetensors *st, size_t i);

/* --- checkpoints (one or more files) ---------------------------------------- */

typedef struct lmc_checkpoint lmc_checkpoint;

/* Opens a checkpoint. `path` is either a .safetensors file, or a directory
 * holding, in order of preference:
 *   - model.safetensors.index.json, whose "weight_map" maps each tensor name
 *     to a file in the directory; every file listed must exist and hold the
 *     tensors mapped to it (tensors a shard holds beyond its map are ignored);
 *   - model.safetensors;
 *   - one or more *.safetensors files, all opened (sorted by name); a tensor
 *     name found in two of them is an error.
 * Errors name the index and/or file and tensor concerned. */
LMC_API lmc_status lmc_checkpoint_open(const char *path, lmc_checkpoint **out);
/* Closes every file of the checkpoint (NULL is ignored); arrays stay valid. */
LMC_API void lmc_checkpoint_close(lmc_checkpoint *ck);
/* Number of tensors over all files. */
LMC_API size_t lmc_checkpoint_count(const lmc_checkpoint *ck);
/* Name of tensor i: index order for an index, else file by file in header order. */
LMC_API const char *lmc_checkpoint_name(const lmc_checkpoint *ck, size_t i);
/* The file holding a tensor (borrowed, valid until the checkpoint is closed),
 * or NULL with LMC_ERR_NOT_FOUND. */
LMC_API lmc_safetensors *lmc_checkpoint_find(const lmc_checkpoint *ck, const char *name);
/* Like lmc_safetensors_info / _get, across all files. */
LMC_API lmc_status lmc_checkpoint_info(const lmc_checkpoint *ck, const char *name, lmc_dtype *dtype, int *ndim,
                                       int64_t *shape);
LMC_API lmc_array *lmc_checkpoint_get(const lmc_checkpoint *ck, const char *name);
/* The files of the checkpoint (borrowed handles). */
LMC_API size_t lmc_checkpoint_file_count(const lmc_checkpoint *ck);
LMC_API lmc_safetensors *lmc_checkpoint_file(const lmc_checkpoint *ck, size_t i);

/* --- writing ---------------------------------------------------------------- */

/* Writes n arrays (CPU, any lmc dtype, any layout: non-contiguous arrays are
 * written row-major) under the given unique names, in the given order, plus
 * n_meta "__metadata__" string pairs (keys unique, may be 0). The header is
 * padded with spaces to a multiple of 8 bytes as the reference writer does;
 * put larger element types first to keep every tensor aligned for zero-copy
 * reads. The file is written to "<path>.tmp", flushed to disk and renamed
 * over `path`, so a failure never leaves a partial file at `path`. */
LMC_API lmc_status lmc_safetensors_write(const char *path, size_t n, const char *const *names,
                                         const lmc_array *const *arrays, size_t n_meta,
                                         const char *const *meta_keys, const char *const *meta_values);

#ifdef __cplusplus
}
#endif
#endif
