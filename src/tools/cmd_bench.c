/* lmc bench: benchmarks.
 *   lmc bench ops [--threads N] [--json]   kernels (bench/bench_ops.c)
 *   lmc bench batch -m DIR [...]           batched against sequential inference (bench/bench_batch.c)
 * Benchmarks of whole models (`lmc bench -m DIR ...`) dispatch from the
 * marked point below. */
#include <stdio.h>
#include <string.h>

#include "bench_batch.h"
#include "bench_ops.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc bench ops [--threads N] [--json]\n"
            "       lmc bench batch -m DIR [--threads N] [...]   (lmc bench batch --help)\n\n"
            "  ops          matmul (f32, bf16, 4-bit) at decode and prefill shapes of a 1B model,\n"
            "               rms_norm, rope and attention, each beside the memory bandwidth\n"
            "               measured in the same run with the same threads\n"
            "  --threads N  worker threads (default: all CPUs, or LMC_NUM_THREADS)\n"
            "  --json       one JSON object per line\n"
            "  batch        classify prompts/s at batch 1, 8, 32 and batch-generate tokens/s at\n"
            "               batch 1, 4, 16, each beside batch 1 of the same run\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "ops")) return lmc_bench_ops(argc - 1, argv + 1);
    if (!strcmp(argv[1], "batch")) return lmc_bench_batch(argc - 1, argv + 1);
    /* Model benchmarks (`lmc bench -m DIR ...`) go here. */
    fprintf(stderr, "lmc bench: unknown benchmark '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
