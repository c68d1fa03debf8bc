/* lmc classify: the next token after each prompt of a JSON Lines input,
 * computed in batches (lmc_classify). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/cli_options.h"
#include "tools/cli_prompts.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc classify -m DIR [--logits] [--batch-size N] [options] < prompts.jsonl\n"
            "  input: one JSON object per line: {\"prompt\": TEXT}, {\"messages\": [{\"role\", \"content\"}, ...]}\n"
            "         or {\"prompt_ids\": [1, 2, 3]}; blank lines are skipped\n"
            "  output: one line per input line, in order: {\"token_id\", \"text\", \"logprob\", \"error\"}\n"
            "  --logits                 also print \"logits\": the full last-position vector\n"
            "  --batch-size N           prompts per forward pass (default %d)\n"
            "  -m, --model DIR          model folder\n"
            "  --temperature T          0 = greedy (the default here); prompt i samples with seed + i\n"
            "  --top-k K, --top-p P, --min-p M, --repeat-penalty R, --seed S   as for lmc generate\n"
            "  -t, --threads N          CPU threads (default: all cores)\n"
            "  --context N              context length bound (default: the model's)\n"
            "  --adapter DIR            apply a LoRA adapter (PEFT folder)\n"
            "metrics are printed to standard error.\n",
            LMC_BATCH_DEFAULT_SIZE);
}

/* The generation options that mean something for classification. */
static bool classify_option(const char *a) {
    const char *ok[] = {"-m", "--model", "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                        "--seed", "-t", "--threads", "--context", "--adapter"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(a, ok[i])) return true;
    return false;
}

static void print_line(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

int cmd_classify(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    g.gen.sampler.temperature = 0;
    lmc_classify_options opt = lmc_classify_options_default();
    for (int i = 1; i < argc; i++) {
        long long n;
        if (classify_option(argv[i])) {
            if (lmc_cli_gen_option("classify", &g, argc, argv, &i) < 0) return 2;
        } else if (!strcmp(argv[i], "--logits")) {
            opt.return_logits = true;
        } else if (!strcmp(argv[i], "--batch-size") && i + 1 < argc) {
            if (!lmc_cli_int("classify", "--batch-size", argv[++i], 1, 4096, &n)) return 2;
            opt.max_batch = (int)n;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc classify: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    opt.sampler = g.gen.sampler;
    lmc_cli_prompts in;
    if (!lmc_cli_read_prompts("classify", stdin, &in)) return 1;
    lmc_model *m = lmc_cli_load_model("classify", &g);
    if (!m) {
        lmc_cli_prompts_free(&in);
        return 1;
    }
    lmc_classify_result *res = NULL;
    lmc_batch_metrics mt;
    lmc_status st = lmc_classify(m, in.valid, in.n_valid, &opt, &res, &mt);
    if (st != LMC_OK) {
        fprintf(stderr, "lmc classify: %s\n", lmc_last_error());
        lmc_classify_results_free(res, in.n_valid);
        lmc_cli_prompts_free(&in);
        lmc_model_free(m);
        return 1;
    }
    for (size_t i = 0, k = 0; i < in.n; i++) {
        cJSON *o = cJSON_CreateObject();
        const lmc_classify_result *r = k < in.n_valid && in.valid_item[k] == i ? &res[k++] : NULL;
        if (r && r->status == LMC_OK) {
            cJSON_AddNumberToObject(o, "token_id", r->token_id);
            cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
            cJSON_AddNumberToObject(o, "logprob", r->logprob);
            if (r->logits) cJSON_AddItemToObject(o, "logits", cJSON_CreateFloatArray(r->logits, (int)r->n_logits));
            cJSON_AddNullToObject(o, "error");
        } else {
            char msg[1024];
            if (r) snprintf(msg, sizeof msg, "line %d: %s", in.items[i].line, r->error ? r->error : "failed");
            cJSON_AddNullToObject(o, "token_id");
            cJSON_AddNullToObject(o, "text");
            cJSON_AddNullToObject(o, "logprob");
            cJSON_AddStringToObject(o, "error", r ? msg : in.items[i].error);
        }
        print_line(o);
    }
    fflush(stdout);
    lmc_cli_print_batch_metrics(stderr, "classify", &mt);
    lmc_classify_results_free(res, in.n_valid);
    lmc_cli_prompts_free(&in);
    lmc_model_free(m);
    return 0;
}
