/* Scalar CPU copy/convert and fill kernels (entries `copy` and `fill`). */
#ifndef LMC_BACKEND_CPU_COPY_H
#define LMC_BACKEND_CPU_COPY_H

#include "backend/kernels.h"

lmc_status lmc_cpu_copy_scalar(lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_fill_scalar(lmc_array *out, double value);

#endif
