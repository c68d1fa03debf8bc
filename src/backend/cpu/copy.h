/* CPU copy/convert and fill kernels (entries `copy` and `fill`): scalar,
 * and an AVX2 copy whose float conversions (f32 <-> bf16 / f16) run a
 * vector at a time with the scalar rounding bit for bit. */
#ifndef LMC_BACKEND_CPU_COPY_H
#define LMC_BACKEND_CPU_COPY_H

#include "backend/kernels.h"

/* Converts n contiguous elements (lmc_convert's contract). */
typedef void (*lmc_convert_fn)(void *dst, lmc_dtype dst_dt, const void *src, lmc_dtype src_dt, size_t n);

lmc_status lmc_cpu_copy_with(lmc_array *out, const lmc_array *in, lmc_convert_fn convert);
lmc_status lmc_cpu_copy_scalar(lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_copy_avx2(lmc_array *out, const lmc_array *in);
lmc_status lmc_cpu_fill_scalar(lmc_array *out, double value);

#endif
