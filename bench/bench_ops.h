/* `lmc bench ops`: kernel throughput beside the measured memory bandwidth. */
#ifndef LMC_BENCH_OPS_H
#define LMC_BENCH_OPS_H

#include <stddef.h>

/* argv[0] is "ops"; options: --threads N, --json. Returns the exit status. */
int lmc_bench_ops(int argc, char **argv);
/* The CPU's model name from /proc/cpuinfo ("unknown CPU" when absent). */
void lmc_bench_cpu_model(char *buf, size_t cap);

#endif
