/* lmc detokenize -m DIR [--skip-special]: JSON array of ids on stdin -> the
 * decoded text, exactly (no newline added). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "tools/cli.h"

static void detokenize_usage(FILE *out) {
    fprintf(out, "usage: lmc detokenize -m DIR [--skip-special]\n"
                 "Reads a JSON array of token ids on stdin and prints the decoded text.\n"
                 "  -m, --model DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
                 "  --skip-special    leave out special tokens\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *dir = NULL;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--skip-special")) skip = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { detokenize_usage(stdout); return 0; }
        else {
            fprintf(stderr, "lmc detokenize: unknown argument '%s'\n", argv[i]);
            detokenize_usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "lmc detokenize: -m DIR is required\n");
        detokenize_usage(stderr);
        return 2;
    }
    size_t len;
    char *input = lmc_cli_read_all(stdin, &len);
    if (!input) {
        fprintf(stderr, "lmc detokenize: cannot read stdin\n");
        return 1;
    }
    cJSON *arr = cJSON_ParseWithLength(input, len);
    free(input);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *bad = NULL;
    if (!cJSON_IsArray(arr)) bad = "stdin is not a JSON array of ids";
    else {
        ids = malloc(((size_t)cJSON_GetArraySize(arr) + 1) * sizeof *ids);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) {
            if (!cJSON_IsNumber(e) || e->valuedouble != (double)e->valueint || e->valueint < 0) {
                bad = "every element must be a non-negative integer id";
                break;
            }
            ids[n++] = e->valueint;
        }
    }
    cJSON_Delete(arr);
    if (bad) {
        fprintf(stderr, "lmc detokenize: %s\n", bad);
        free(ids);
        return 1;
    }
    lmc_tokenizer *tok;
    if (lmc_tokenizer_load(dir, &tok) != LMC_OK) {
        fprintf(stderr, "lmc detokenize: %s\n", lmc_last_error());
        free(ids);
        return 1;
    }
    char *text;
    size_t tlen;
    int rc = 0;
    if (lmc_tokenizer_decode(tok, ids, n, skip, &text, &tlen) != LMC_OK) {
        fprintf(stderr, "lmc detokenize: %s\n", lmc_last_error());
        rc = 1;
    } else {
        fwrite(text, 1, tlen, stdout);
        lmc_tokenizer_free_text(text);
    }
    free(ids);
    lmc_tokenizer_free(tok);
    return rc;
}
