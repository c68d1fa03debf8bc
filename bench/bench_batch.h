/* `lmc bench batch`: classify and batch-generate throughput at several batch
 * sizes, each beside batch size 1 measured in the same run. */
#ifndef LMC_BENCH_BATCH_H
#define LMC_BENCH_BATCH_H

/* argv[0] is "batch"; see the usage text. Returns the exit status. */
int lmc_bench_batch(int argc, char **argv);

#endif
