/* libFuzzer target for LoRA training data (src/train/dataset.c): the input
 * is a JSONL file, read with the tiny Qwen 3 golden model (its checkpoint in
 * tests/data/models/qwen3, its real tokenizer and chat template from
 * .cache/tokenizers; $LMC_FUZZ_MODELS and $LMC_FUZZ_TOKENIZERS name those
 * folders). Either the file is refused with a message naming it (and, for
 * a bad line, the line), or every example holds at least two ids, all in
 * the model's vocabulary, and a mask of zeros and ones with a target after
 * the first token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmc/finetune.h"
#include "lmc/model.h"
#include "fuzz.h"

static lmc_model *g_model;
static int64_t g_vocab;
static char g_path[64];

static void link_into(const char *dir, const char *from_dir, const char *name) {
    char from[4096], to[4096], abs_dir[4096];
    if (!realpath(from_dir, abs_dir)) { /* a link's target is read relative to the link */
        perror(from_dir);
        exit(1);
    }
    snprintf(from, sizeof from, "%s/%s", abs_dir, name);
    snprintf(to, sizeof to, "%s/%s", dir, name);
    if (symlink(from, to) != 0) {
        perror(to);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *models = getenv("LMC_FUZZ_MODELS"), *toks = getenv("LMC_FUZZ_TOKENIZERS");
    char model_dir[4096], tok_dir[4096];
    snprintf(model_dir, sizeof model_dir, "%s/qwen3", models ? models : "tests/data/models");
    snprintf(tok_dir, sizeof tok_dir, "%s/qwen3", toks ? toks : ".cache/tokenizers");
    char tmpl[] = "/tmp/lmc-fuzz-model-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    if (!dir) exit(1);
    link_into(dir, model_dir, "config.json");
    link_into(dir, model_dir, "model.safetensors");
    link_into(dir, tok_dir, "tokenizer.json");
    link_into(dir, tok_dir, "tokenizer_config.json");
    if (lmc_model_load(dir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "fuzz_dataset: %s (set LMC_FUZZ_MODELS and LMC_FUZZ_TOKENIZERS)\n", lmc_last_error());
        exit(1);
    }
    lmc_model_info info;
    if (lmc_model_get_info(g_model, &info) != LMC_OK) exit(1);
    g_vocab = info.vocab_size;
    snprintf(g_path, sizeof g_path, "/tmp/lmc-fuzz-dataset-%d.jsonl", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, size, f) == size);
    fclose(f);
    lmc_dataset *ds = NULL;
    lmc_status s = lmc_dataset_load(g_model, g_path, &ds);
    if (s != LMC_OK) {
        REQUIRE(ds == NULL);
        REQUIRE(s == LMC_ERR_FORMAT || s == LMC_ERR_INVALID_ARGUMENT || s == LMC_ERR_UNSUPPORTED);
        REQUIRE(strstr(lmc_last_error(), g_path) != NULL);
        return 0;
    }
    REQUIRE(lmc_dataset_size(ds) >= 1);
    for (size_t i = 0; i < lmc_dataset_size(ds); i++) {
        const int32_t *ids;
        const uint8_t *mask;
        size_t n;
        REQUIRE(lmc_dataset_example(ds, i, &ids, &mask, &n) == LMC_OK);
        REQUIRE(n >= 2);
        bool target = false;
        for (size_t j = 0; j < n; j++) {
            REQUIRE(ids[j] >= 0 && ids[j] < g_vocab);
            REQUIRE(mask[j] <= 1);
            target |= j > 0 && mask[j];
        }
        REQUIRE(target);
    }
    lmc_dataset_free(ds);
    return 0;
}
