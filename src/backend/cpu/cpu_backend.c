/* Builds one CPU kernel table per path, once, on first use. */
#include <pthread.h>

#include "backend/cpu/cpu_kernels.h"

static lmc_kernels g_tables[LMC_PATH_AMX + 1];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    static const char *names[] = {"cpu-scalar", "cpu-avx2", "cpu-avx512", "cpu-amx"};
    lmc_cpu_path max = lmc_cpu_path_max();
    for (int p = LMC_PATH_SCALAR; p <= (int)max; p++) {
        lmc_kernels *k = &g_tables[p];
        k->name = names[p];
        lmc_cpu_register_elementwise(k, (lmc_cpu_path)p);
        lmc_cpu_register_linalg(k, (lmc_cpu_path)p);
        lmc_cpu_register_quant(k, (lmc_cpu_path)p);
    }
}

const lmc_kernels *lmc_cpu_kernels_for_path(lmc_cpu_path path) {
    pthread_once(&g_once, build_tables);
    lmc_cpu_path max = lmc_cpu_path_max();
    return &g_tables[path > max ? max : path];
}

const lmc_kernels *lmc_cpu_kernels_scalar(void) { return lmc_cpu_kernels_for_path(LMC_PATH_SCALAR); }
const lmc_kernels *lmc_cpu_kernels(void) { return lmc_cpu_kernels_for_path(lmc_cpu_path_active()); }

const lmc_kernels *lmc_kernels_for(lmc_device dev) {
    if (dev == LMC_CPU) return lmc_cpu_kernels();
#ifdef LMC_HAVE_CUDA
    if (dev == LMC_CUDA) return lmc_cuda_kernels();
#endif
    lmc_set_error(LMC_ERR_UNSUPPORTED, "no kernels for device %s in this build (configure with -DLMC_CUDA=ON)",
                  dev == LMC_CUDA ? "cuda" : "?");
    return NULL;
}
