/* Option parsing shared by the CLI's model commands. */
#ifndef LMC_TOOLS_CLI_OPTIONS_H
#define LMC_TOOLS_CLI_OPTIONS_H

#include <stdio.h>

#include "lmc/model.h"

/* Strict numbers: the whole string must parse and lie in [lo, hi];
 * otherwise prints "lmc CMD: OPTION expects ..." and returns false. */
bool lmc_cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
bool lmc_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* "f32", "bf16" (and "f16" when allowed) as a dtype; prints the error otherwise. */
bool lmc_cli_float_dtype(const char *cmd, const char *opt, const char *s, bool allow_f16, lmc_dtype *out);
/* --activation-bits: "24" or "8" into *out, else a message on stderr and false. */
bool lmc_cli_activation_bits(const char *cmd, const char *opt, const char *s, int *out);
/* An option's text: val itself, or with "@FILE" that file's contents (at
 * most max bytes) in *owned (malloc'd; NULL otherwise), so *text points at
 * one or the other. Prints "lmc CMD: OPTION: why" and returns false when
 * the file cannot be read. */
bool lmc_cli_text_or_file(const char *cmd, const char *opt, const char *val, size_t max, const char **text,
                          char **owned);
/* "1,2,3" -> ids (malloc'd). */
bool lmc_cli_ids(const char *cmd, const char *opt, const char *s, int32_t **ids, size_t *n);

/* Model and generation options common to generate, chat and batch. */
typedef struct lmc_cli_gen {
    const char *model_dir;
    lmc_load_options load;
    lmc_generate_options gen;
    const char *stops[64];
    const char *bridge_env[64];
    unsigned sampler_set;     /* LMC_CLI_SET_* of the sampling options given */
    bool model_sampling;      /* take the others from the model (lmc_model_info.sampler); default true */
} lmc_cli_gen;
enum { LMC_CLI_SET_TEMPERATURE = 1, LMC_CLI_SET_TOP_K = 2, LMC_CLI_SET_TOP_P = 4, LMC_CLI_SET_MIN_P = 8, LMC_CLI_SET_REPEAT = 16 };
void lmc_cli_gen_init(lmc_cli_gen *g);
/* Consumes argv[*i] (and its value) when it is a model/generation option:
 * returns 1 when consumed, 0 when not one of these, -1 on a bad value. */
int lmc_cli_gen_option(const char *cmd, lmc_cli_gen *g, int argc, char **argv, int *i);
/* Usage lines for those options. */
extern const char lmc_cli_gen_usage[];
/* Loads the model, printing an error on failure. */
lmc_model *lmc_cli_load_model(const char *cmd, lmc_cli_gen *g);
/* Prints metrics as a JSON object (no newline). */
void lmc_cli_print_metrics_json(FILE *f, const lmc_metrics *m);
/* One bracketed line of a generation's figures and stop reason. */
void lmc_cli_print_metrics_line(FILE *f, const lmc_generation *g);

#endif
