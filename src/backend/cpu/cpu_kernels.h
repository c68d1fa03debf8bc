/* CPU kernel groups. Each group fills its entries of a kernel table for a
 * given path: LMC_PATH_SCALAR gives the scalar reference kernels; a higher
 * path replaces entries with faster versions where they exist (falling back
 * to lower paths), so the table for any path is complete. */
#ifndef LMC_BACKEND_CPU_KERNELS_H
#define LMC_BACKEND_CPU_KERNELS_H

#include "backend/kernels.h"
#include "core/cpu.h"

/* copy, fill, arange, random, unary, binary, where, reduce, softmax, cumsum,
 * sort, take, take_along, put_along (src/backend/cpu/elementwise*.c, reduce*.c, index*.c) */
void lmc_cpu_register_elementwise(lmc_kernels *k, lmc_cpu_path path);
/* matmul, rms_norm, layer_norm, rope, sdpa (src/backend/cpu/matmul*.c, fused*.c) */
void lmc_cpu_register_linalg(lmc_kernels *k, lmc_cpu_path path);
/* quantize, dequantize, quantized_matmul (src/backend/cpu/quant*.c) */
void lmc_cpu_register_quant(lmc_kernels *k, lmc_cpu_path path);

/* The table for a specific path (capped at what the CPU supports). */
const lmc_kernels *lmc_cpu_kernels_for_path(lmc_cpu_path path);

#endif
