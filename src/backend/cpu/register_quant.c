/* Fills the quantisation entries of a CPU kernel table for one path.
 * quantize/dequantize run at load or conversion time (and for the few
 * embedding rows a lookup reads), so the scalar kernels serve every path;
 * quantized_matmul has AVX2 and AVX-512 versions (the decode hot loop) and an
 * AMX one for many rows (prefill, batched decode). Batches of quantized_matmul
 * calls that share x run in one parallel region. */
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/quant.h"

void lmc_cpu_register_quant(lmc_kernels *k, lmc_cpu_path path) {
    k->quantize = lmc_quantize_scalar;
    k->dequantize = lmc_dequantize_scalar;
    k->quantized_matmul = lmc_quantized_matmul_scalar;
    if (path >= LMC_PATH_AVX2) k->quantized_matmul = lmc_quantized_matmul_avx2;
    if (path >= LMC_PATH_AVX512) k->quantized_matmul = lmc_quantized_matmul_avx512;
    if (path >= LMC_PATH_AMX) k->quantized_matmul = lmc_quantized_matmul_amx;
    /* the SIMD paths queue their plans in a batch (lmc_qmm_run); the scalar kernel just runs */
    k->batch_begin = lmc_qmm_batch_begin;
    k->batch_end = lmc_qmm_batch_end;
}
