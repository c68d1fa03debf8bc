/* The fast fused kernels compiled for AVX-512 (the code is in fused_fast.h). */
#define LMC_FUSED_ISA avx512
#include "backend/cpu/fused_fast.h"
