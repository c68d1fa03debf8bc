/* lmc batch: a continuation of each prompt of a JSON Lines input, generated
 * in batches (lmc_batch_generate). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/cli_options.h"
#include "tools/cli_prompts.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc batch -m DIR [--batch-size N] [options] < prompts.jsonl\n"
            "  input: one JSON object per line: {\"prompt\": TEXT}, {\"messages\": [{\"role\", \"content\"}, ...]}\n"
            "         or {\"prompt_ids\": [1, 2, 3]}; blank lines are skipped\n"
            "  output: one line per input line, in order: {\"ids\", \"text\", \"stop_reason\", \"error\"}\n"
            "  --batch-size N           sequences decoded together (default %d)\n"
            "  (prompt i samples with seed + i)\n"
            "%s"
            "metrics are printed to standard error.\n",
            LMC_BATCH_DEFAULT_SIZE, lmc_cli_gen_usage);
}

int cmd_batch(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    lmc_batch_options opt = lmc_batch_options_default();
    for (int i = 1; i < argc; i++) {
        long long n;
        int r = lmc_cli_gen_option("batch", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--batch-size") && i + 1 < argc) {
            if (!lmc_cli_int("batch", "--batch-size", argv[++i], 1, 4096, &n)) return 2;
            opt.max_batch = (int)n;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc batch: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    opt.gen = g.gen;
    lmc_cli_prompts in;
    lmc_model *m = lmc_cli_prompts_and_model("batch", &g, &in);
    if (!m) return 1;
    lmc_batch_result *res = NULL;
    lmc_batch_metrics mt;
    lmc_status st = lmc_batch_generate(m, in.valid, in.n_valid, &opt, &res, &mt);
    if (st != LMC_OK) {
        fprintf(stderr, "lmc batch: %s\n", lmc_last_error());
        lmc_batch_results_free(res, in.n_valid);
        lmc_cli_prompts_free(&in);
        lmc_model_free(m);
        return 1;
    }
    for (size_t i = 0, k = 0; i < in.n; i++) {
        cJSON *o = cJSON_CreateObject();
        long at = lmc_cli_ran(&in, i, &k);
        const lmc_batch_result *r = at >= 0 ? &res[at] : NULL;
        cJSON *ids = cJSON_CreateArray();
        for (size_t j = 0; r && j < r->n_ids; j++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[j]));
        cJSON_AddItemToObject(o, "ids", ids);
        cJSON_AddStringToObject(o, "text", r && r->text ? r->text : "");
        cJSON_AddStringToObject(o, "stop_reason", lmc_stop_reason_name(r ? r->stop_reason : LMC_STOP_ERROR));
        lmc_cli_print_line(&in, i, r != NULL, r && r->status != LMC_OK ? (r->error ? r->error : "failed") : NULL, o);
    }
    fflush(stdout);
    lmc_cli_print_batch_metrics(stderr, "batch", &mt);
    lmc_batch_results_free(res, in.n_valid);
    lmc_cli_prompts_free(&in);
    lmc_model_free(m);
    return 0;
}
