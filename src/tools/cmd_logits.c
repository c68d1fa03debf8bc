/* lmc logits: f32 logits of one forward pass, written as safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/safetensors.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

static const char usage_text[] = "usage: lmc logits -m DIR [--adapter DIR] --ids 1,2,3 [--all] -o FILE.safetensors\n"
                                 "Writes the logits of the last position ([V]), or of every position ([T, V]) with\n"
                                 "--all, as the f32 tensor \"logits\".\n";

int cmd_logits(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    const char *ids_s = NULL, *out = NULL;
    bool all = false;
    for (int i = 1; i < argc; i++) {
        int r = lmc_cli_gen_option("logits", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_s = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--all")) all = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc logits: unknown argument '%s'\n%s", argv[i], usage_text);
            return 2;
        }
    }
    if (!ids_s || !out) {
        fprintf(stderr, "lmc logits: --ids and -o are required\n%s", usage_text);
        return 2;
    }
    int32_t *ids;
    size_t n;
    if (!lmc_cli_ids("logits", "--ids", ids_s, &ids, &n)) return 2;
    lmc_model *m = lmc_cli_load_model("logits", &g);
    if (!m) {
        free(ids);
        return 1;
    }
    int rc = 0;
    lmc_array *lg = lmc_model_logits(m, ids, n, all);
    const char *name = "logits";
    if (!lg || lmc_safetensors_write(out, 1, &name, (const lmc_array *const *)&lg, 0, NULL, NULL) != LMC_OK) {
        fprintf(stderr, "lmc logits: %s\n", lmc_last_error());
        rc = 1;
    }
    lmc_array_free(lg);
    lmc_model_free(m);
    free(ids);
    return rc;
}
