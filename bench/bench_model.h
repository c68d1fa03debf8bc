/* `lmc bench -m DIR`: prefill and decode speed of a model beside the
 * bandwidth bound of decode, and (--ttft) time to first token. */
#ifndef LMC_BENCH_MODEL_H
#define LMC_BENCH_MODEL_H

/* argv[0] is "bench"; options as `lmc bench --help` lists. Returns the exit status. */
int lmc_bench_model(int argc, char **argv);

#endif
