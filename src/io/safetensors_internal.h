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

#endif
