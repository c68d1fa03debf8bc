/* The fast fused kernels compiled for AVX2+FMA (the code is in fused_fast.h). */
#define LMC_FUSED_ISA avx2
#include "backend/cpu/fused_fast.h"
