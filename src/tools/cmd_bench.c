/* lmc bench: benchmarks.
 *   lmc bench ops [--threads N] [--only GROUP] [--best] [--json]   kernels (bench/bench_ops.c)
 *   lmc bench tokenizer -m DIR FILE [--json]  tokenizer load and encode
 *                                          (bench/bench_tokenizer.c)
 *   lmc bench batch -m DIR [...]           batched against sequential inference (bench/bench_batch.c)
 *   lmc bench train -m DIR [...]           LoRA training tokens/s and memory (bench/bench_train.c)
 *   lmc bench -m DIR [options]             a whole model (bench/bench_model.c) */
#include <stdio.h>
#include <string.h>

#include "bench_batch.h"
#include "bench_model.h"
#include "bench_ops.h"
#include "bench_tokenizer.h"
#include "bench_train.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc bench ops [--threads N] [--only matmul|qmatmul|qdecode|fused|sampler|cores] [--best] [--json]\n"
            "       lmc bench tokenizer -m DIR [-m DIR...] TEXT_FILE [--json]\n"
            "       lmc bench -m DIR [-p 512] [-n 128] [-c CHUNK] [-t THREADS] [-r REPEATS] [--json]\n"
            "       lmc bench -m DIR --ttft [-p 16] [-t THREADS] [--json]\n"
            "       lmc bench batch -m DIR [--threads N] [...]   (lmc bench batch --help)\n"
            "       lmc bench train -m DIR [-m DIR] [--seq-len 512] [...]   (lmc bench train --help)\n\n"
            "  ops          matmul (f32, bf16, 4-bit) at decode and prefill shapes of a 1B model,\n"
            "               rms_norm, rope, attention and the sampler, each beside the memory\n"
            "               bandwidth measured in the same run with the same threads\n"
            "  tokenizer    load time of DIR's tokenizer (median of 5) and single-threaded\n"
            "               encode MB/s over TEXT_FILE (median of 5 passes)\n"
            "  --only G     just one group of the ops bench: matmul, qmatmul, qdecode (a whole\n"
            "               Qwen3-0.6B token's 4-bit products, kernel only), fused, sampler,\n"
            "               or cores (AMX and AVX-512 throughput, one thread vs all)\n"
            "  --threads N  worker threads (default: all CPUs, or LMC_NUM_THREADS)\n"
            "  --best       each case's fastest call, not the mean (steadier on a shared host)\n"
            "  --json       one JSON object per line\n"
            "  batch        classify prompts/s at batch 1, 8, 32 and batch-generate tokens/s at\n"
            "               batch 1, 4, 16, each beside batch 1 of the same run\n"
            "  train        LoRA training tokens/s and peak memory (rank 8 on q_proj,v_proj by\n"
            "               default), without and with gradient checkpointing\n\n"
            "  -m DIR       prefill (pp) and decode (tg) tokens/s of a model, mean ± sd over\n"
            "               repeats, beside the decode bound (weight bytes / read bandwidth);\n"
            "               `lmc bench -m DIR --help` lists the options\n");
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
    if (!strcmp(argv[1], "train")) return lmc_bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenizer")) return lmc_bench_tokenizer(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-m")) return lmc_bench_model(argc, argv);
    fprintf(stderr, "lmc bench: unknown benchmark '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
