/* Run-time CPU feature detection and the choice of kernel path. */
#ifndef LMC_CORE_CPU_H
#define LMC_CORE_CPU_H

#include "lmc/base.h"

/* Kernel paths from slowest to fastest; each needs the features of the ones before. */
typedef enum lmc_cpu_path { LMC_PATH_SCALAR = 0, LMC_PATH_AVX2 = 1, LMC_PATH_AVX512 = 2, LMC_PATH_AMX = 3 } lmc_cpu_path;

/* The best path this CPU supports, capped by the environment variable
 * LMC_CPU_PATH=scalar|avx2|avx512|amx (used by tests to force each path). */
lmc_cpu_path lmc_cpu_path_active(void);
/* The best path this CPU supports, ignoring LMC_CPU_PATH. */
lmc_cpu_path lmc_cpu_path_max(void);
/* Overrides the active path (capped by what the CPU supports); returns the path in effect. */
lmc_cpu_path lmc_cpu_path_set(lmc_cpu_path p);
const char *lmc_cpu_path_name(lmc_cpu_path p);

#endif
