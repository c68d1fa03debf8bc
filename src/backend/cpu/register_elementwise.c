/* Fills the element-wise, reduction and indexing entries of a CPU kernel
 * table: the scalar reference kernels (copy and fill from copy.c), with SIMD
 * versions on top for the paths that have them (each SIMD kernel handles its
 * fast cases and calls the scalar kernel for the rest). */
#include "backend/cpu/copy.h"
#include "backend/cpu/cpu_loop.h"

void lmc_cpu_register_elementwise(lmc_kernels *k, lmc_cpu_path path) {
    k->copy = lmc_cpu_copy_scalar;
    k->fill = lmc_cpu_fill_scalar;
    k->arange = lmc_cpu_arange_scalar;
    k->random = lmc_cpu_random_scalar;
    k->unary = lmc_cpu_unary_scalar;
    k->binary = lmc_cpu_binary_scalar;
    k->where = lmc_cpu_where_scalar;
    k->reduce = lmc_cpu_reduce_scalar;
    k->softmax = lmc_cpu_softmax_scalar;
    k->cumsum = lmc_cpu_cumsum_scalar;
    k->sort = lmc_cpu_sort_scalar;
    k->take = lmc_cpu_take_scalar;
    k->take_along = lmc_cpu_take_along_scalar;
    k->put_along = lmc_cpu_put_along_scalar;
    if (path >= LMC_PATH_AVX2) {
        k->copy = lmc_cpu_copy_avx2;
        k->unary = lmc_cpu_unary_avx2;
        k->binary = lmc_cpu_binary_avx2;
        k->reduce = lmc_cpu_reduce_avx2;
        k->softmax = lmc_cpu_softmax_avx2;
        k->gated_act = lmc_cpu_gated_act_avx2;
    }
    if (path >= LMC_PATH_AVX512) {
        k->unary = lmc_cpu_unary_avx512;
        k->binary = lmc_cpu_binary_avx512;
        k->reduce = lmc_cpu_reduce_avx512;
        k->softmax = lmc_cpu_softmax_avx512;
        k->gated_act = lmc_cpu_gated_act_avx512;
    }
}
