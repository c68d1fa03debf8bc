/* Prompts in JSON Lines for the batch commands (lmc classify, lmc batch):
 * one object per line holding exactly one of
 *   {"prompt": "text"}                                  tokenised with special tokens
 *   {"messages": [{"role": "user", "content": "..."}]}  chat template, generation prompt added
 *   {"prompt_ids": [1, 2, 3]}                           used as given
 * Blank lines are skipped. A line that cannot be read becomes an entry with
 * an error naming its line number, so the output can still have one line
 * per input line. */
#ifndef LMC_TOOLS_CLI_PROMPTS_H
#define LMC_TOOLS_CLI_PROMPTS_H

#include <stdio.h>

#include "lmc/model.h"

typedef struct lmc_cli_prompt {
    int line;                 /* 1-based line number in the input */
    char *error;              /* "line N: ..." when the line could not be read, else NULL */
    lmc_batch_prompt prompt;  /* valid when error is NULL */
    void *json;               /* the parsed line (owns the strings prompt points at) */
    lmc_message *messages;
    int32_t *ids;
} lmc_cli_prompt;

typedef struct lmc_cli_prompts {
    lmc_cli_prompt *items; size_t n;  /* one per non-blank input line */
    lmc_batch_prompt *valid;          /* the prompts of the readable lines, in order */
    size_t *valid_item;               /* valid[k] comes from items[valid_item[k]] */
    size_t n_valid;
} lmc_cli_prompts;

/* Reads all of f. Returns false (after printing "lmc CMD: ...") only when
 * the input itself cannot be read or memory runs out. */
bool lmc_cli_read_prompts(const char *cmd, FILE *f, lmc_cli_prompts *out);
void lmc_cli_prompts_free(lmc_cli_prompts *p);
/* The batch commands' start: the prompts from standard input into *in,
 * then the model g names; NULL (error printed, *in freed) when either fails. */
struct lmc_cli_gen;
lmc_model *lmc_cli_prompts_and_model(const char *cmd, struct lmc_cli_gen *g, lmc_cli_prompts *in);
/* Results come back for the readable lines only: input line i's index
 * among them (*k walks them in order, start at 0), or -1 when line i could
 * not be read. */
long lmc_cli_ran(const lmc_cli_prompts *p, size_t i, size_t *k);
/* Prints input line i's output object o (freeing it) with "error" added
 * last: null when why is NULL and the line ran; otherwise the line's own
 * reading error, or "line N: why". */
void lmc_cli_print_line(const lmc_cli_prompts *p, size_t i, bool ran, const char *why, void *o);
/* Prints batch metrics as one human-readable line to f. */
void lmc_cli_print_batch_metrics(FILE *f, const char *cmd, const lmc_batch_metrics *m);

#endif
