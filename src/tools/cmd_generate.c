/* lmc generate: text from a prompt, streamed as it is produced. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"
#include "lmc/tokenizer.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out, "usage: lmc generate -m DIR (-p TEXT | --prompt-ids 1,2,3) [options]\n"
                 "  -p, --prompt TEXT        prompt text (special tokens such as BOS added as the tokenizer does)\n"
                 "  --prompt-ids IDS         prompt as comma-separated token ids, used as given\n"
                 "  --json                   print one JSON object: ids, prompt_ids (when tokenised here), text,\n"
                 "                           stop_reason, metrics\n"
                 "  --logprobs N             record each token's log-probability under the model and its N (0..20)\n"
                 "                           most probable alternatives: \"logprobs\" and \"top_logprobs\" with --json,\n"
                 "                           otherwise one line per token on standard error\n"
                 "%s",
            lmc_cli_gen_usage);
}

static bool print_piece(void *user, int32_t id, const char *text, size_t len) {
    (void)user;
    (void)id;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

/* A token's text decoded alone ("" when it cannot be). */
static char *token_text(const lmc_tokenizer *tok, int32_t id) {
    char *t = NULL;
    if (!tok || lmc_tokenizer_decode(tok, &id, 1, false, &t, NULL) != LMC_OK) t = NULL;
    return t ? t : strdup("");
}

/* {"id", "text", "bytes", "logprob"} */
static cJSON *entry_json(const lmc_tokenizer *tok, int32_t id, float lp) {
    cJSON *e = cJSON_CreateObject();
    char *t = token_text(tok, id);
    cJSON_AddNumberToObject(e, "id", id);
    cJSON_AddStringToObject(e, "text", t ? t : "");
    lmc_json_add_token_bytes(e, tok, id);
    cJSON_AddNumberToObject(e, "logprob", lmc_json_logprob(lp));
    free(t);
    return e;
}

/* --logprobs: into o with --json, else one line per token on stderr. */
static void report_logprobs(const lmc_tokenizer *tok, const lmc_generation *out, cJSON *o) {
    int nt = out->n_top_logprobs;
    cJSON *lps = o ? cJSON_AddArrayToObject(o, "logprobs") : NULL, *tops = o ? cJSON_AddArrayToObject(o, "top_logprobs") : NULL;
    for (size_t i = 0; out->logprobs && i < out->n_ids; i++) {
        const lmc_token_logprob *top = out->top_logprobs ? out->top_logprobs + i * (size_t)nt : NULL;
        if (o) {
            cJSON_AddItemToArray(lps, cJSON_CreateNumber(lmc_json_logprob(out->logprobs[i])));
            cJSON *row = cJSON_CreateArray();
            for (int j = 0; top && j < nt; j++)
                if (top[j].id >= 0) cJSON_AddItemToArray(row, entry_json(tok, top[j].id, top[j].logprob));
            cJSON_AddItemToArray(tops, row);
            continue;
        }
        cJSON *e = entry_json(tok, out->ids[i], out->logprobs[i]);
        char *s = cJSON_PrintUnformatted(e);
        fprintf(stderr, "%zu %s", i, s ? s : "");
        free(s);
        cJSON_Delete(e);
        for (int j = 0; top && j < nt; j++) {
            if (top[j].id < 0) continue;
            char *t = token_text(tok, top[j].id);
            cJSON *q = cJSON_CreateString(t ? t : "");
            char *qs = cJSON_PrintUnformatted(q);
            fprintf(stderr, "%s %s %.4f", j ? "," : " |", qs ? qs : "", top[j].logprob);
            free(qs);
            cJSON_Delete(q);
            free(t);
        }
        fputc('\n', stderr);
    }
}

static cJSON *ids_json(const int32_t *ids, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

int cmd_generate(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    const char *prompt = NULL, *prompt_ids = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r = lmc_cli_gen_option("generate", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if (!strcmp(argv[i], "--prompt-ids") && i + 1 < argc) prompt_ids = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--logprobs") && i + 1 < argc) {
            long long k;
            if (!lmc_cli_int("generate", "--logprobs", argv[++i], 0, LMC_MAX_TOP_LOGPROBS, &k)) return 2;
            g.gen.logprobs = true;
            g.gen.top_logprobs = (int)k;
        }
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc generate: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!prompt == !prompt_ids) {
        fprintf(stderr, "lmc generate: give exactly one of -p TEXT or --prompt-ids IDS\n");
        usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (prompt_ids && !lmc_cli_ids("generate", "--prompt-ids", prompt_ids, &ids, &n)) return 2;
    lmc_model *m = lmc_cli_load_model("generate", &g);
    if (!m) {
        free(ids);
        return 1;
    }
    /* A backend that tokenises on its side (subprocess) gets the text itself. */
    const lmc_tokenizer *tok = prompt ? lmc_model_tokenizer(m) : NULL;
    if (tok && lmc_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n) != LMC_OK) {
        fprintf(stderr, "lmc generate: %s\n", lmc_last_error());
        lmc_model_free(m);
        return 1;
    }
    if (!json) g.gen.on_token = print_piece;
    lmc_generation out;
    lmc_status s = prompt && !tok ? lmc_generate(m, prompt, &g.gen, &out) : lmc_generate_ids(m, ids, n, &g.gen, &out);
    int rc = 0;
    if (s != LMC_OK && out.stop_reason != LMC_STOP_CANCELLED) {
        fprintf(stderr, "%slmc generate: %s\n", json ? "" : "\n", lmc_last_error());
        rc = 1;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "ids", ids_json(out.ids, out.n_ids));
        if (ids) cJSON_AddItemToObject(o, "prompt_ids", ids_json(ids, n));
        cJSON_AddStringToObject(o, "text", out.text ? out.text : "");
        cJSON_AddStringToObject(o, "stop_reason", lmc_stop_reason_name(out.stop_reason));
        if (g.gen.logprobs) report_logprobs(lmc_model_tokenizer(m), &out, o);
        char *txt = cJSON_PrintUnformatted(o);
        /* Metrics are printed by hand for fixed float formatting. */
        size_t tl = txt ? strlen(txt) : 0;
        if (tl) {
            txt[tl - 1] = 0;
            printf("%s,\"metrics\":", txt);
            lmc_cli_print_metrics_json(stdout, &out.metrics);
            printf("}\n");
        }
        free(txt);
        cJSON_Delete(o);
    } else {
        printf("\n");
        if (g.gen.logprobs) report_logprobs(lmc_model_tokenizer(m), &out, NULL);
        lmc_cli_print_metrics_line(stderr, &out);
    }
    lmc_generation_clear(&out);
    if (prompt) lmc_tokenizer_free_ids(ids);
    else free(ids);
    lmc_model_free(m);
    return rc;
}
