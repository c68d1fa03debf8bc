/* `lmc bench ops`: kernel throughput beside the measured memory bandwidth. */
#ifndef LMC_BENCH_OPS_H
#define LMC_BENCH_OPS_H

#include <stddef.h>

/* argv[0] is "ops"; options: --threads N, --json. Returns the exit status. */
int lmc_bench_ops(int argc, char **argv);
/* Shared by the benchmarks. */

/* The CPU's model name from /proc/cpuinfo ("unknown CPU" when absent). */
void lmc_bench_cpu_name(char *buf, size_t cap);
/* The 1-, 5- and 15-minute load averages from /proc/loadavg (the machine
 * may be shared); all 0 when unreadable. */
void lmc_bench_load_average(double load[3]);
/* Prints "machine: CPU, N threads, kernel path P, load average A B C (lmc V)". */
void lmc_bench_print_machine(void);
/* Read bandwidth in GB/s (sums over a 512 MiB buffer, at least 1 s, with the
 * current thread count); when not NULL, *read_gbps_cpu gets the bytes read
 * per CPU-second of all threads, and *copy_gbps the copy bandwidth (bytes
 * read + written). Returns 0, or 1 with a message on stderr. */
int lmc_bench_bandwidth(double *read_gbps, double *read_gbps_cpu, double *copy_gbps);

#endif
