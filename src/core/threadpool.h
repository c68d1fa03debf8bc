/* A fixed pool of worker threads for CPU kernels.
 *
 * lmc_parallel_for splits [0, n) into one contiguous chunk per thread, in a
 * fixed way for a given thread count, so reductions done per chunk are
 * deterministic. Chunk t always runs as fn(ctx, begin, end, t), on whichever
 * thread claims it first (the caller included). Calls from inside a
 * worker (nested parallelism) run serially on that worker. */
#ifndef LMC_CORE_THREADPOOL_H
#define LMC_CORE_THREADPOOL_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*lmc_range_fn)(void *ctx, int64_t begin, int64_t end, int thread);

/* Runs fn over [0, n) using up to lmc_num_threads() threads; chunks are
 * multiples of `grain` (>= 1) except the last. */
void lmc_parallel_for(int64_t n, int64_t grain, lmc_range_fn fn, void *ctx);

/* Runs fn over [0, n) cut into one contiguous part per thread (multiples of
 * `quantum`, >= 1, except the last): each part is taken from its front by
 * the thread that claims it, a quarter of what is left at a time (at least
 * 4 quanta), so each thread reads one stream start to end (its prefetches
 * run into its own next piece); a thread whose part is done takes single
 * quanta from the back of the part with the most left, so a slow or
 * descheduled thread holds up nobody and the threads end together.
 * fn(ctx, begin, end, part), possibly on two threads at once for one part:
 * for work whose result at each index does not depend on how [0, n) is cut
 * (each output written for one index alone, as the matmuls' weight rows). */
void lmc_parallel_split(int64_t n, int64_t quantum, lmc_range_fn fn, void *ctx);

/* Where a calling thread's time goes around the parallel regions (for
 * benchmarks; one caller at a time is assumed). Regions that run on one
 * thread (one thread configured, or nested) are not counted. */
typedef struct lmc_pool_stats {
    int64_t regions; /* parallel regions run */
    double region_s; /* the caller's time inside them */
    double wait_s;   /* of which waiting for chunks other threads were running */
    double serial_s; /* the caller's time between two regions less than 1 ms apart: its serial work */
} lmc_pool_stats;

/* Starts counting from zero (on) or stops (off). */
void lmc_pool_stats_enable(bool on);
lmc_pool_stats lmc_pool_stats_get(void);

/* Runs fn(ctx, t, t+1, t) once for each t < nthreads, in parallel where threads are free. */
void lmc_parallel_run(int nthreads, lmc_range_fn fn, void *ctx);

#endif
