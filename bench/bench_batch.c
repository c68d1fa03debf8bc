/* lmc bench batch -m DIR: batched against sequential throughput.
 *
 * Classify: prompts of --prompt-tokens random ids (default 64) at batch
 * sizes 1 (at most 4 prompts), 8 and 32 (prompts/s). Batch generate: --gen-prompt-tokens ids
 * (default 16) per prompt and --gen-tokens greedy tokens each (default 32,
 * EOS ignored) at batch sizes 1, 4 and 16 (aggregate generated tokens/s over
 * the whole call, prefill included, and over decode alone). Batch size 1 is
 * the sequential baseline; each ratio divides by the figure of the same run.
 */
#include "bench_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_model.h"
#include "bench_ops.h"
#include "lmc/lmc.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc bench batch -m DIR [options]\n"
            "  -m, --model DIR            model folder (e.g. from lmc make-model --preset qwen3-0.6b --q4)\n"
            "  -t, --threads N            CPU threads (default: all cores)\n"
            "  --activation-bits N        24 (default) or 8: 4/8-bit products' input exact or int8\n"
            "  --prompt-tokens N          classify prompt length (default 64)\n"
            "  --classify-prompts N       prompts per classify run (default 32; batch 1 runs min(N, 4))\n"
            "  --gen-prompt-tokens N      batch-generate prompt length (default 16)\n"
            "  --gen-tokens N             tokens generated per sequence (default 32)\n"
            "  --only classify|generate   run one of the two parts\n"
            "  --prefill-chunk N          tokens per prefill forward pass (load option; default 64)\n");
}

/* n prompts of len random ids in [1, vocab) (fixed seed). */
static int32_t *random_ids(size_t n, int64_t len, int64_t vocab, lmc_batch_prompt *ps) {
    int32_t *ids = malloc((size_t)((int64_t)n * len) * sizeof *ids);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; ids && i < (int64_t)n * len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(1 + x % (uint64_t)(vocab - 1));
    }
    for (size_t i = 0; ids && i < n; i++) ps[i] = (lmc_batch_prompt){.ids = ids + (int64_t)i * len, .n_ids = (size_t)len};
    return ids;
}

static int bench_classify(lmc_model *m, int64_t vocab, int64_t len, int n_prompts) {
    static const int sizes[] = {1, 8, 32};
    lmc_batch_prompt *ps = calloc((size_t)n_prompts, sizeof *ps);
    int32_t *ids = ps ? random_ids((size_t)n_prompts, len, vocab, ps) : NULL;
    if (!ids) {
        free(ps);
        fprintf(stderr, "lmc bench: out of memory\n");
        return 1;
    }
    double base = 0;
    for (int s = 0; s < 3; s++) {
        lmc_classify_options o = lmc_classify_options_default();
        o.max_batch = sizes[s];
        size_t n = sizes[s] == 1 && n_prompts > 4 ? 4 : (size_t)n_prompts; /* a rate: a few prompts suffice */
        lmc_classify_result *r = NULL;
        lmc_batch_metrics mt;
        if (lmc_classify(m, ps, n, &o, &r, &mt) != LMC_OK) {
            fprintf(stderr, "lmc bench: classify: %s\n", lmc_last_error());
            free(ids);
            free(ps);
            return 1;
        }
        lmc_classify_results_free(r, n);
        if (sizes[s] == 1) base = mt.prompts_per_second;
        printf("classify   batch %2d: %3zu prompts x %lld tokens  %8.2f prompts/s  %9.1f prompt tok/s  %.2fx batch 1  "
               "(%.2f s, peak %.0f MiB)\n",
               sizes[s], n, (long long)len, mt.prompts_per_second, mt.prefill_tokens_per_second,
               base > 0 ? mt.prompts_per_second / base : 0, mt.seconds, (double)mt.peak_memory_bytes / 1048576.0);
        fflush(stdout);
    }
    free(ids);
    free(ps);
    return 0;
}

static int bench_generate(lmc_model *m, int64_t vocab, int64_t len, int gen) {
    static const int sizes[] = {1, 4, 16};
    lmc_batch_prompt ps[16];
    int32_t *ids = random_ids(16, len, vocab, ps);
    if (!ids) {
        fprintf(stderr, "lmc bench: out of memory\n");
        return 1;
    }
    double base = 0, base_dec = 0;
    for (int s = 0; s < 3; s++) {
        lmc_batch_options o = lmc_batch_options_default();
        o.gen.sampler.temperature = 0;
        o.gen.ignore_eos = true;
        o.gen.max_tokens = gen;
        o.max_batch = sizes[s];
        size_t n = (size_t)sizes[s];
        lmc_batch_result *r = NULL;
        lmc_batch_metrics mt;
        if (lmc_batch_generate(m, ps, n, &o, &r, &mt) != LMC_OK) {
            fprintf(stderr, "lmc bench: batch generate: %s\n", lmc_last_error());
            free(ids);
            return 1;
        }
        lmc_batch_results_free(r, n);
        double dec_s = mt.seconds - mt.prefill_seconds;
        /* The first token of each sequence comes from the prefill. */
        double dec = dec_s > 0 ? (double)(mt.generated_tokens - (int64_t)n) / dec_s : 0;
        if (sizes[s] == 1) {
            base = mt.tokens_per_second;
            base_dec = dec;
        }
        printf("generate   batch %2d: %3zu x %d tokens  %8.1f tok/s aggregate  %.2fx batch 1  | decode only %8.1f tok/s  "
               "%.2fx  (%.2f s, prefill %.2f s, peak %.0f MiB)\n",
               sizes[s], n, gen, mt.tokens_per_second, base > 0 ? mt.tokens_per_second / base : 0, dec,
               base_dec > 0 ? dec / base_dec : 0, mt.seconds, mt.prefill_seconds,
               (double)mt.peak_memory_bytes / 1048576.0);
        fflush(stdout);
    }
    free(ids);
    return 0;
}

/* One untimed short generation, so that no measured run pays for paging
 * the weights in (they are mmapped) or for first-use allocations. */
static int warm_up(lmc_model *m, int64_t vocab, int64_t len) {
    lmc_batch_prompt p;
    int32_t *ids = random_ids(1, len, vocab, &p);
    lmc_batch_options o = lmc_batch_options_default();
    o.gen.sampler.temperature = 0;
    o.gen.ignore_eos = true;
    o.gen.max_tokens = 2;
    lmc_batch_result *r = NULL;
    lmc_status st = ids ? lmc_batch_generate(m, &p, 1, &o, &r, NULL) : LMC_ERR_OUT_OF_MEMORY;
    if (st != LMC_OK) fprintf(stderr, "lmc bench: warm-up: %s\n", ids ? lmc_last_error() : "out of memory");
    lmc_batch_results_free(r, 1);
    free(ids);
    return st == LMC_OK ? 0 : 1;
}

int lmc_bench_batch(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    long long prompt_tokens = 64, classify_prompts = 32, gen_prompt = 16, gen_tokens = 32;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-t") || !strcmp(a, "--threads") ||
            !strcmp(a, "--activation-bits")) {
            if (lmc_cli_gen_option("bench", &g, argc, argv, &i) < 0) return 2;
        } else if (!strcmp(a, "--prompt-tokens") && v) {
            if (!lmc_cli_int("bench", a, argv[++i], 1, 1 << 20, &prompt_tokens)) return 2;
        } else if (!strcmp(a, "--classify-prompts") && v) {
            if (!lmc_cli_int("bench", a, argv[++i], 1, 4096, &classify_prompts)) return 2;
        } else if (!strcmp(a, "--gen-prompt-tokens") && v) {
            if (!lmc_cli_int("bench", a, argv[++i], 1, 1 << 20, &gen_prompt)) return 2;
        } else if (!strcmp(a, "--gen-tokens") && v) {
            if (!lmc_cli_int("bench", a, argv[++i], 1, 1 << 20, &gen_tokens)) return 2;
        } else if (!strcmp(a, "--prefill-chunk") && v) {
            long long c;
            if (!lmc_cli_int("bench", a, argv[++i], 1, 1 << 20, &c)) return 2;
            g.load.prefill_chunk = c;
        } else if (!strcmp(a, "--only") && v && (!strcmp(v, "classify") || !strcmp(v, "generate"))) {
            only = argv[++i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc bench: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    lmc_model *m = lmc_cli_load_model("bench", &g);
    if (!m) return 1;
    lmc_bench_settle_weights(m);
    lmc_model_info info;
    lmc_model_get_info(m, &info);
    lmc_bench_print_machine();
    printf("model: %s, %lld layers, hidden %lld, vocab %lld, %s%s%s, %.0f MiB of weights\n", info.architecture,
           (long long)info.num_layers, (long long)info.hidden_size, (long long)info.vocab_size,
           info.quant_bits ? "quantised " : "", info.quant_bits ? (info.quant_bits == 4 ? "4-bit" : "8-bit") : info.dtype,
           info.activation_bits == 8 ? ", int8 activations" : "", (double)info.weight_bytes / 1048576.0);
    fflush(stdout);
    int rc = warm_up(m, info.vocab_size, gen_prompt);
    if (!rc && (!only || !strcmp(only, "classify"))) rc = bench_classify(m, info.vocab_size, prompt_tokens, (int)classify_prompts);
    if (!rc && (!only || !strcmp(only, "generate"))) rc = bench_generate(m, info.vocab_size, gen_prompt, (int)gen_tokens);
    lmc_model_free(m);
    return rc;
}
