/* Golden model fixtures (written by scripts/make_golden_models.py): each
 * tests/data/models/NAME holds config.json, model.safetensors,
 * golden.safetensors and tokenizer.json.ref naming the tokenizer family.
 * model_fixture_dir() assembles a loadable folder in a temp dir: links to
 * the checkpoint files plus the family's real tokenizer files. */
#ifndef LMC_TEST_MODEL_FIXTURE_H
#define LMC_TEST_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmc/lmc.h"

static inline int fixture_link(const char *from, const char *dir, const char *name) {
    char to[4096];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    unlink(to);
    return symlink(from, to);
}

/* Returns a malloc'd temp dir path (caller removes it with model_fixture_cleanup), or NULL. */
static inline char *model_fixture_dir(const char *name) {
    char src[4096], ref[64] = {0};
    snprintf(src, sizeof src, "%s/models/%s/tokenizer.json.ref", LMC_TEST_DATA, name);
    FILE *f = fopen(src, "r");
    if (!f) {
        fprintf(stderr, "missing golden model fixture %s (run scripts/make_golden_models.py on the GPU machine)\n", src);
        return NULL;
    }
    if (!fgets(ref, sizeof ref, f)) ref[0] = 0;
    fclose(f);
    ref[strcspn(ref, "\r\n ")] = 0;
    char tmpl[] = "/tmp/lmc-model-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return NULL;
    dir = strdup(dir);
    const char *files[] = {"config.json", "model.safetensors", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(src, sizeof src, "%s/models/%s/%s", LMC_TEST_DATA, name, files[i]);
        if (access(src, F_OK) == 0) fixture_link(src, dir, files[i]);
    }
    const char *tok[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", LMC_TOKENIZER_DIR, ref, tok[i]);
        if (access(src, F_OK) != 0) {
            fprintf(stderr, "missing %s (run scripts/fetch_tokenizers.sh)\n", src);
            free(dir);
            return NULL;
        }
        fixture_link(src, dir, tok[i]);
    }
    return dir;
}

/* Tensor name of a golden.safetensors as malloc'd floats (dims 0 and 1 in
 * *n0 / *n1 when not NULL; 1 for a missing dim), or NULL when absent. */
static inline float *fixture_read_f32(lmc_safetensors *st, const char *name, int64_t *n0, int64_t *n1) {
    lmc_array *a = lmc_safetensors_get(st, name);
    if (!a) return NULL;
    int64_t n = lmc_array_size(a);
    float *v = malloc((size_t)n * sizeof *v);
    if (v) lmc_array_read(a, LMC_F32, v, (size_t)n);
    if (n0) *n0 = lmc_array_dim(a, 0);
    if (n1) *n1 = lmc_array_ndim(a) > 1 ? lmc_array_dim(a, 1) : 1;
    lmc_array_free(a);
    return v;
}

/* The same as malloc'd int32 (count in *n). */
static inline int32_t *fixture_read_i32(lmc_safetensors *st, const char *name, int64_t *n) {
    lmc_array *a = lmc_safetensors_get(st, name);
    if (!a) return NULL;
    *n = lmc_array_size(a);
    int32_t *v = malloc((size_t)*n * sizeof *v);
    if (v) lmc_array_read(a, LMC_I32, v, (size_t)*n);
    lmc_array_free(a);
    return v;
}

/* Loads a tiny model made by `lmc make-model --preset PRESET --tokenizer
 * FAMILY` (random weights, a real tokenizer) into *m, with load options opt
 * (NULL: the defaults); returns its malloc'd temp dir (remove with
 * model_fixture_cleanup), or NULL with *m NULL. */
static inline char *tiny_model_with(const char *preset, const char *family, const lmc_load_options *opt, lmc_model **m) {
    *m = NULL;
    char tmpl[] = "/tmp/lmc-tiny-XXXXXX";
    if (!mkdtemp(tmpl)) return NULL;
    char *dir = strdup(tmpl), cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "%s/lmc make-model --preset %s --tokenizer %s/%s -o %s/m >/dev/null 2>&1", LMC_BUILD_DIR,
             preset, LMC_TOKENIZER_DIR, family, dir);
    snprintf(path, sizeof path, "%s/m", dir);
    if (system(cmd) != 0 || lmc_model_load(path, opt, m) != LMC_OK) {
        fprintf(stderr, "tiny model %s: %s\n", preset, lmc_last_error());
        *m = NULL;
    }
    return dir;
}

static inline char *tiny_model(const char *preset, const char *family, lmc_model **m) {
    return tiny_model_with(preset, family, NULL, m);
}

/* In a test function (test_util.h included): dir and m from tiny_model, or
 * a failed check, the temp dir removed, and return. */
#define TINY_MODEL_OR_RETURN(dir, m, preset, family)                \
    do {                                                            \
        (dir) = tiny_model(preset, family, &(m));                   \
        if (!(m)) {                                                 \
            CHECKF(0, "%s: %s", preset, lmc_last_error());          \
            model_fixture_cleanup(dir);                             \
            return;                                                 \
        }                                                           \
    } while (0)

static inline void model_fixture_cleanup(char *dir) {
    if (!dir) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

#endif
