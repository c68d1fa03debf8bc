/* lmc embed: a vector for each prompt of a JSON Lines input, computed in
 * batches (lmc_embed). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/cli_options.h"
#include "tools/cli_prompts.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc embed -m DIR [--pooling last|mean] [--no-normalize] [--batch-size N] < prompts.jsonl\n"
            "  input: one JSON object per line: {\"prompt\": TEXT}, {\"messages\": [...]} or {\"prompt_ids\": [1, 2, 3]};\n"
            "         blank lines are skipped\n"
            "  output: one line per input line, in order: {\"embedding\": [...], \"tokens\", \"error\"}\n"
            "  --pooling P              last (default: the last token's final hidden state, as LLM embedders such as\n"
            "                           Qwen3-Embedding use) or mean (over the prompt's tokens)\n"
            "  --no-normalize           keep the vectors' length (default: unit length)\n"
            "  --batch-size N           prompts per forward pass (default %d)\n"
            "  -m, --model DIR          model folder\n"
            "  -t, --threads N          CPU threads (default: all cores)\n"
            "  --context N              context length bound (default: the model's)\n"
            "  --adapter DIR            apply a LoRA adapter (PEFT folder)\n"
            "  --backend cpu|cuda       where the model runs\n"
            "metrics are printed to standard error.\n",
            LMC_BATCH_DEFAULT_SIZE);
}

static bool embed_option(const char *a) {
    const char *ok[] = {"-m", "--model", "-t", "--threads", "--context", "--adapter", "--backend"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(a, ok[i])) return true;
    return false;
}

int cmd_embed(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    lmc_embed_options opt = lmc_embed_options_default();
    for (int i = 1; i < argc; i++) {
        long long n;
        if (embed_option(argv[i])) {
            if (lmc_cli_gen_option("embed", &g, argc, argv, &i) < 0) return 2;
        } else if (!strcmp(argv[i], "--pooling") && i + 1 < argc) {
            const char *p = argv[++i];
            if (!strcmp(p, "last")) opt.pooling = LMC_POOLING_LAST;
            else if (!strcmp(p, "mean")) opt.pooling = LMC_POOLING_MEAN;
            else {
                fprintf(stderr, "lmc embed: --pooling must be last or mean, got '%s'\n", p);
                return 2;
            }
        } else if (!strcmp(argv[i], "--no-normalize")) {
            opt.normalize = false;
        } else if (!strcmp(argv[i], "--batch-size") && i + 1 < argc) {
            if (!lmc_cli_int("embed", "--batch-size", argv[++i], 1, 4096, &n)) return 2;
            opt.max_batch = (int)n;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc embed: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    lmc_cli_prompts in;
    lmc_model *m = lmc_cli_prompts_and_model("embed", &g, &in);
    if (!m) return 1;
    lmc_embedding *res = NULL;
    lmc_batch_metrics mt;
    lmc_status st = lmc_embed(m, in.valid, in.n_valid, &opt, &res, &mt);
    if (st != LMC_OK) {
        fprintf(stderr, "lmc embed: %s\n", lmc_last_error());
        lmc_embeddings_free(res, in.n_valid);
        lmc_cli_prompts_free(&in);
        lmc_model_free(m);
        return 1;
    }
    for (size_t i = 0, k = 0; i < in.n; i++) {
        cJSON *o = cJSON_CreateObject();
        long at = lmc_cli_ran(&in, i, &k);
        const lmc_embedding *r = at >= 0 ? &res[at] : NULL;
        if (r && r->status == LMC_OK) {
            cJSON_AddItemToObject(o, "embedding", cJSON_CreateFloatArray(r->values, (int)r->dim));
            cJSON_AddNumberToObject(o, "tokens", (double)r->prompt_tokens);
        } else {
            cJSON_AddNullToObject(o, "embedding");
            cJSON_AddNullToObject(o, "tokens");
        }
        lmc_cli_print_line(&in, i, r != NULL, r && r->status != LMC_OK ? (r->error ? r->error : "failed") : NULL, o);
    }
    fflush(stdout);
    lmc_cli_print_batch_metrics(stderr, "embed", &mt);
    lmc_embeddings_free(res, in.n_valid);
    lmc_cli_prompts_free(&in);
    lmc_model_free(m);
    return 0;
}
