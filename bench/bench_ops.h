/* `lmc bench ops`: kernel throughput beside the measured memory bandwidth. */
#ifndef LMC_BENCH_OPS_H
#define LMC_BENCH_OPS_H

/* argv[0] is "ops"; options: --threads N, --json. Returns the exit status. */
int lmc_bench_ops(int argc, char **argv);

#endif
