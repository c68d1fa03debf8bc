/* `lmc bench tokenizer`: tokenizer load time and single-threaded encode
 * throughput. scripts/bench_tokenizer_hf.py measures the Hugging Face library
 * the same way (same chunks, same medians) and
 * scripts/bench_tokenizer_device.sh puts the two side by side. */
#ifndef LMC_BENCH_TOKENIZER_H
#define LMC_BENCH_TOKENIZER_H

/* argv[0] is "tokenizer"; arguments: -m DIR (repeatable), TEXT_FILE, --json.
 * Returns the exit status. */
int lmc_bench_tokenizer(int argc, char **argv);

#endif
