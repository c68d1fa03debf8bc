/* Placeholder registration until the element-wise kernels land: only copy
 * and fill; other entries stay NULL ("kernel not available"). */
#include "backend/cpu/copy.h"
#include "backend/cpu/cpu_kernels.h"

void lmc_cpu_register_elementwise(lmc_kernels *k, lmc_cpu_path path) {
    (void)path;
    k->copy = lmc_cpu_copy_scalar;
    k->fill = lmc_cpu_fill_scalar;
}
