/* Tokenizer benchmark: load time and single-threaded encode throughput,
 * run as `lmc tokenize -m DIR --bench TEXT_FILE`. scripts/bench_tokenizer_hf.py
 * measures the Hugging Face library the same way (same chunks). */
#ifndef LMC_BENCH_TOKENIZER_H
#define LMC_BENCH_TOKENIZER_H

/* Prints the machine, the load time of DIR's tokenizer and the encode MB/s
 * over TEXT_FILE; returns a process exit status. */
int bench_tokenizer(const char *dir, const char *text_file);

#endif
