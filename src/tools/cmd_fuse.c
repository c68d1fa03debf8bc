/* lmc fuse: merge a LoRA adapter into a new bf16 checkpoint folder. */
#include <stdio.h>
#include <string.h>

#include "lmc/lora.h"
#include "tools/cli.h"

static const char usage_text[] =
    "usage: lmc fuse -m DIR --adapter ADAPTER_DIR -o OUT_DIR\n"
    "Writes OUT_DIR: the model's weights with the adapter merged (W + scale * B @ A), all in bf16\n"
    "(quantised layers dequantised), config.json without quantisation, and the tokenizer files.\n"
    "OUT_DIR must not be the model's folder.\n";

int cmd_fuse(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "-m") || !strcmp(a, "--model") ? &model
                           : !strcmp(a, "--adapter")                 ? &adapter
                           : !strcmp(a, "-o") || !strcmp(a, "--output") ? &out
                                                                      : NULL;
        if (dst && i + 1 < argc) {
            *dst = argv[++i];
        } else if (dst) {
            fprintf(stderr, "lmc fuse: %s needs a value\n%s", a, usage_text);
            return 2;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc fuse: unknown argument '%s'\n%s", a, usage_text);
            return 2;
        }
    }
    if (!model || !adapter || !out) {
        fprintf(stderr, "lmc fuse: -m, --adapter and -o are required\n%s", usage_text);
        return 2;
    }
    lmc_load_options opt = lmc_load_options_default();
    opt.adapter_dir = adapter;
    opt.huge_pages = false; /* each weight is read once, to be written out */
    lmc_model *m = NULL;
    if (lmc_model_load(model, &opt, &m) != LMC_OK) {
        fprintf(stderr, "lmc fuse: %s\n", lmc_last_error());
        return 1;
    }
    int rc = 0;
    if (lmc_lora_fuse(lmc_model_adapter(m), out) != LMC_OK) {
        fprintf(stderr, "lmc fuse: %s\n", lmc_last_error());
        rc = 1;
    } else {
        fprintf(stderr, "lmc fuse: wrote %s\n", out);
    }
    lmc_model_free(m);
    return rc;
}
