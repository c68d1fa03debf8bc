/* Internal pieces of the safetensors reader shared with the writer,
 * the checkpoint layer and the fuzz target. */
#ifndef LMC_IO_SAFETENSORS_INTERNAL_H
#define LMC_IO_SAFETENSORS_INTERNAL_H

#include "core/array.h"
#include "lmc/safetensors.h"

/* Parses and validates a safetensors image held in `buf` (which the handle
 * retains; tensors become views of it). `path` names the file in messages.
 * Used by lmc_safetensors_open on a mapping and by the fuzzer on its input. */
lmc_status lmc_safetensors_open_buffer(const char *path, lmc_buffer *buf, lmc_safetensors **out);

/* The safetensors name of an lmc dtype ("F32", "BF16", ...). */
const char *lmc_safetensors_dtype_tag(lmc_dtype dt);

/* Queues the file's mapping for its move onto 2 MiB pages in the background
 * (core/huge_pages.h); the bytes of the file when queued, else 0 (not a
 * mapped file, nothing to gain here). Queuing twice is harmless. */
size_t lmc_safetensors_promote(lmc_safetensors *st);
/* Bytes of the file moved so far. */
size_t lmc_safetensors_promoted(const lmc_safetensors *st);
/* Bytes of the mapped file (0 when the handle views a caller's buffer). */
size_t lmc_safetensors_file_size(const lmc_safetensors *st);

/* lmc_safetensors_promote on every file of the checkpoint, when their sum
 * fits lmc_huge_pages_affordable; the bytes queued. */
size_t lmc_checkpoint_promote(lmc_checkpoint *ck);
/* Bytes of the checkpoint moved so far. */
size_t lmc_checkpoint_promoted(const lmc_checkpoint *ck);

#endif
