/* `lmc bench -m DIR`: prefill and decode speed of a model beside the
 * bandwidth bound of decode, and (--ttft) time to first token. */
#ifndef LMC_BENCH_MODEL_H
#define LMC_BENCH_MODEL_H

#include "lmc/model.h"

/* argv[0] is "bench"; options as `lmc bench --help` lists. Returns the exit status. */
int lmc_bench_model(int argc, char **argv);

/* Starts the loaded model's move onto 2 MiB pages (lmc_load_options.huge_pages)
 * and waits for it, so that what a bench times is the steady state; the
 * seconds waited. Nothing to do for a model without a native decoder. */
double lmc_bench_settle_weights(lmc_model *m);

#endif
