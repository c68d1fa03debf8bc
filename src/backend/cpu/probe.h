/* Register-only throughput loops (src/backend/cpu/probe_amx.c): how much of
 * a core's AMX or AVX-512 units a thread gets. Call the AMX kinds only when
 * lmc_cpu_path_max() is LMC_PATH_AMX, the FMA one from LMC_PATH_AVX512. */
#ifndef LMC_BACKEND_CPU_PROBE_H
#define LMC_BACKEND_CPU_PROBE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum lmc_probe_kind {
    LMC_PROBE_AMX_BF16, /* TDPBF16PS: 16 x 16 x 32 multiply-adds each */
    LMC_PROBE_AMX_INT8, /* TDPBUSD: 16 x 16 x 64 */
    LMC_PROBE_AVX512_FMA, /* VFMADD on 16 floats */
} lmc_probe_kind;

/* Runs `iters` instructions of the kind; returns a value of the result so
 * the work is not optimised away. */
float lmc_cpu_probe(lmc_probe_kind kind, int64_t iters);

#endif
