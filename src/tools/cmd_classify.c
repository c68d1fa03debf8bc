/* lmc classify: the next token after each prompt of a JSON Lines input,
 * computed in batches (lmc_classify). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"
#include "lmc/tokenizer.h"
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
            "  --labels A,B,...         score these answers: \"labels\" {A: logprob, ...} under the model (each\n"
            "                           label's first token) and \"label\", the most probable one\n"
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

/* --labels: the names, split at commas, and the first token of each. */
typedef struct label_set {
    char *buf;
    char **names;
    int32_t *ids;
    int n;
} label_set;

static void labels_free(label_set *ls) {
    free(ls->buf);
    free(ls->names);
    free(ls->ids);
}

static bool labels_prepare(lmc_model *m, const char *arg, label_set *ls) {
    const lmc_tokenizer *tok = lmc_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "lmc classify: --labels: %s\n", lmc_last_error());
        return false;
    }
    size_t cap = strlen(arg) + 1;
    ls->buf = strdup(arg);
    ls->names = calloc(cap, sizeof *ls->names);
    ls->ids = calloc(cap, sizeof *ls->ids);
    if (!ls->buf || !ls->names || !ls->ids) {
        fprintf(stderr, "lmc classify: out of memory\n");
        return false;
    }
    for (char *p = ls->buf, *next; p; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = 0;
        int32_t *ids = NULL;
        size_t n = 0;
        if (!*p || lmc_tokenizer_encode(tok, p, strlen(p), false, &ids, &n) != LMC_OK || n == 0) {
            fprintf(stderr, "lmc classify: --labels: label %d ('%s') %s\n", ls->n + 1, p, *p ? "has no tokens" : "is empty");
            lmc_tokenizer_free_ids(ids);
            return false;
        }
        for (int k = 0; k < ls->n; k++)
            if (ls->ids[k] == ids[0] || !strcmp(ls->names[k], p)) {
                fprintf(stderr, "lmc classify: --labels: '%s' and '%s' begin with the same token (%d); reword one\n",
                        ls->names[k], p, ids[0]);
                lmc_tokenizer_free_ids(ids);
                return false;
            }
        ls->names[ls->n] = p;
        ls->ids[ls->n++] = ids[0];
        lmc_tokenizer_free_ids(ids);
    }
    return true;
}

int cmd_classify(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    g.gen.sampler.temperature = 0;
    g.model_sampling = false; /* scoring is greedy unless the command line says otherwise */
    lmc_classify_options opt = lmc_classify_options_default();
    const char *labels = NULL;
    for (int i = 1; i < argc; i++) {
        long long n;
        if (classify_option(argv[i])) {
            if (lmc_cli_gen_option("classify", &g, argc, argv, &i) < 0) return 2;
        } else if (!strcmp(argv[i], "--logits")) {
            opt.return_logits = true;
        } else if (!strcmp(argv[i], "--labels") && i + 1 < argc) {
            labels = argv[++i];
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
    lmc_model *m = lmc_cli_prompts_and_model("classify", &g, &in);
    if (!m) return 1;
    label_set ls = {0};
    if (labels && !labels_prepare(m, labels, &ls)) {
        labels_free(&ls);
        lmc_cli_prompts_free(&in);
        lmc_model_free(m);
        return 2;
    }
    opt.labels = ls.ids;
    opt.n_labels = ls.n;
    lmc_classify_result *res = NULL;
    lmc_batch_metrics mt;
    lmc_status st = lmc_classify(m, in.valid, in.n_valid, &opt, &res, &mt);
    if (st != LMC_OK) {
        fprintf(stderr, "lmc classify: %s\n", lmc_last_error());
        lmc_classify_results_free(res, in.n_valid);
        lmc_cli_prompts_free(&in);
        labels_free(&ls);
        lmc_model_free(m);
        return 1;
    }
    for (size_t i = 0, k = 0; i < in.n; i++) {
        cJSON *o = cJSON_CreateObject();
        long at = lmc_cli_ran(&in, i, &k);
        const lmc_classify_result *r = at >= 0 ? &res[at] : NULL;
        if (r && r->status == LMC_OK) {
            cJSON_AddNumberToObject(o, "token_id", r->token_id);
            cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
            cJSON_AddNumberToObject(o, "logprob", r->logprob);
            if (r->logits) cJSON_AddItemToObject(o, "logits", cJSON_CreateFloatArray(r->logits, (int)r->n_logits));
            if (r->label_logprobs) {
                cJSON *l = cJSON_AddObjectToObject(o, "labels");
                int best = 0;
                for (int j = 0; j < ls.n; j++) {
                    cJSON_AddNumberToObject(l, ls.names[j], lmc_json_logprob(r->label_logprobs[j]));
                    if (r->label_logprobs[j] > r->label_logprobs[best]) best = j;
                }
                cJSON_AddStringToObject(o, "label", ls.names[best]);
            }
        } else {
            cJSON_AddNullToObject(o, "token_id");
            cJSON_AddNullToObject(o, "text");
            cJSON_AddNullToObject(o, "logprob");
        }
        lmc_cli_print_line(&in, i, r != NULL, r && r->status != LMC_OK ? (r->error ? r->error : "failed") : NULL, o);
    }
    fflush(stdout);
    lmc_cli_print_batch_metrics(stderr, "classify", &mt);
    lmc_classify_results_free(res, in.n_valid);
    lmc_cli_prompts_free(&in);
    labels_free(&ls);
    lmc_model_free(m);
    return 0;
}
