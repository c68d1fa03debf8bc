/* `lmc bench train`: LoRA training tokens/s and peak memory, with and
 * without gradient checkpointing. */
#ifndef LMC_BENCH_TRAIN_H
#define LMC_BENCH_TRAIN_H

/* argv[0] is "train"; see the usage text. Returns the exit status. */
int lmc_bench_train(int argc, char **argv);

#endif
