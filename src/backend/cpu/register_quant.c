/* Placeholder registration until the quant kernels land: leaves the entries
 * NULL, which the ops layer reports as "kernel not available". */
#include "backend/cpu/cpu_kernels.h"

void lmc_cpu_register_quant(lmc_kernels *k, lmc_cpu_path path) {
    (void)k;
    (void)path;
}
