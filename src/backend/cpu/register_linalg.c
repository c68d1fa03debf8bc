/* Fills the matmul and fused entries of a CPU kernel table for one path:
 * the scalar oracle first, then the fastest version the path allows. The
 * fused sequences (add_rms_norm, rope_qk) are the fast paths' only: the
 * scalar table runs their parts, so it stays the oracle for both. */
#include "backend/cpu/fused_internal.h"
#include "backend/cpu/matmul_internal.h"

static lmc_status matmul_avx2(lmc_array *out, const lmc_array *a, const lmc_array *b) {
    return lmc_cpu_matmul_blocked(out, a, b, &lmc_mm_isa_avx2);
}

static lmc_status matmul_avx512(lmc_array *out, const lmc_array *a, const lmc_array *b) {
    return lmc_cpu_matmul_blocked(out, a, b, &lmc_mm_isa_avx512);
}

void lmc_cpu_register_linalg(lmc_kernels *k, lmc_cpu_path path) {
    k->matmul = lmc_cpu_matmul_scalar;
    k->rms_norm = lmc_cpu_rms_norm_scalar;
    k->layer_norm = lmc_cpu_layer_norm_scalar;
    k->rope = lmc_cpu_rope_scalar;
    k->sdpa = lmc_cpu_sdpa_scalar;
    if (path >= LMC_PATH_AVX2) {
        k->matmul = matmul_avx2;
        k->rms_norm = lmc_cpu_rms_norm_avx2;
        k->layer_norm = lmc_cpu_layer_norm_avx2;
        k->rope = lmc_cpu_rope_avx2;
        k->sdpa = lmc_cpu_sdpa_avx2;
        k->add_rms_norm = lmc_cpu_add_rms_norm_avx2;
        k->rope_qk = lmc_cpu_rope_qk_avx2;
    }
    if (path >= LMC_PATH_AVX512) {
        k->matmul = matmul_avx512;
        k->rms_norm = lmc_cpu_rms_norm_avx512;
        k->layer_norm = lmc_cpu_layer_norm_avx512;
        k->rope = lmc_cpu_rope_avx512;
        k->sdpa = lmc_cpu_sdpa_avx512;
        k->add_rms_norm = lmc_cpu_add_rms_norm_avx512;
        k->rope_qk = lmc_cpu_rope_qk_avx512;
    }
    if (path >= LMC_PATH_AMX) k->matmul = lmc_cpu_matmul_amx;
}
