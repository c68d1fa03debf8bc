/* lmc tokenize -m DIR [--no-special]: UTF-8 text on stdin -> JSON array of ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/tokenizer.h"
#include "tools/cli.h"

static void tokenize_usage(FILE *out) {
    fprintf(out, "usage: lmc tokenize -m DIR [--no-special]\n"
                 "Reads UTF-8 text on stdin and prints its token ids as one JSON array.\n"
                 "  -m, --model DIR   folder with tokenizer.json (and tokenizer_config.json)\n"
                 "  --no-special      do not add special tokens such as BOS\n"
                 "(lmc bench tokenizer -m DIR FILE times loading and encoding.)\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    bool special = true;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--no-special")) special = false;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { tokenize_usage(stdout); return 0; }
        else {
            fprintf(stderr, "lmc tokenize: unknown argument '%s'\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "lmc tokenize: -m DIR is required\n");
        tokenize_usage(stderr);
        return 2;
    }
    lmc_tokenizer *tok;
    if (lmc_tokenizer_load(dir, &tok) != LMC_OK) {
        fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
        return 1;
    }
    size_t len;
    char *text = lmc_cli_read_all(stdin, &len);
    if (!text) {
        fprintf(stderr, "lmc tokenize: cannot read stdin\n");
        lmc_tokenizer_free(tok);
        return 1;
    }
    int32_t *ids;
    size_t n;
    int rc = 0;
    if (lmc_tokenizer_encode(tok, text, len, special, &ids, &n) != LMC_OK) {
        fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
        rc = 1;
    } else {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        printf("]\n");
        lmc_tokenizer_free_ids(ids);
    }
    free(text);
    lmc_tokenizer_free(tok);
    return rc;
}
