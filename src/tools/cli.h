/* The lmc CLI: one function per subcommand, each in src/tools/cmd_NAME.c.
 * A subcommand returns the process exit status (0 ok, 1 runtime error,
 * 2 usage error) and prints errors to stderr as "lmc NAME: message". */
#ifndef LMC_TOOLS_CLI_H
#define LMC_TOOLS_CLI_H

#include <stdio.h>

typedef struct lmc_cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} lmc_cli_command;

/* CLOCK_MONOTONIC seconds at main() entry: the origin of figures measured
 * "from process start" (lmc bench --ttft). */
extern double lmc_cli_t0;

/* Reads all of a stream into a NUL-terminated heap buffer; *len gets the byte count. */
char *lmc_cli_read_all(FILE *f, size_t *len);

#endif
