/* Child processes for the subprocess backend: splitting a command line into
 * words, spawning with pipes on stdin/stdout/stderr, reading stdout line by
 * line with a timeout, keeping the tail of stderr, writing without dying of
 * SIGPIPE, and stopping (graceful, then forced) with the child always reaped.
 *
 * This layer knows nothing of the protocol: it reports what happened
 * (a line, end of output, a timeout ...) and the caller words the error. */
#ifndef LMC_RUNTIME_SUBPROCESS_PROC_H
#define LMC_RUNTIME_SUBPROCESS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

/* Splits cmd into words as a POSIX shell does, without any expansion:
 * blanks separate words; '...' keeps everything literally; "..." keeps
 * everything but \" \\ \$ \` and backslash-newline; an unquoted backslash
 * quotes the next character. Shell syntax that would change the meaning
 * ($ and ` outside '...', | & ; < > ( ) unquoted, # at the start of a word)
 * is refused rather than passed on literally. Returns a NULL-terminated, malloc'd array
 * (free with lmc_words_free) and the count. */
lmc_status lmc_split_words(const char *cmd, char ***words, int *n);
void lmc_words_free(char **words);

enum { LMC_STDERR_TAIL = 8192 };   /* bytes of the child's stderr kept */

typedef struct lmc_child {
    pid_t pid;                    /* 0: none (never started or reaped) */
    int status;                   /* wait status once reaped */
    bool reaped;
    int in_fd, out_fd, err_fd;    /* our ends of the pipes; -1 when closed */
    char *buf;                    /* stdout bytes read but not yet returned */
    size_t start, len, cap;       /* pending bytes are buf[start, start + len) */
    size_t scanned;               /* of which this many hold no newline */
    size_t max_line;              /* a longer line is an error */
    char tail[LMC_STDERR_TAIL];   /* ring buffer of the last stderr bytes */
    size_t tail_total;            /* stderr bytes seen in all */
} lmc_child;

typedef enum lmc_child_result {
    LMC_CHILD_OK = 0,             /* a line was read / written */
    LMC_CHILD_EOF,                /* the child closed stdout (read) or stdin (write) */
    LMC_CHILD_TIMEOUT,
    LMC_CHILD_CANCELLED,          /* the cancel flag was raised while waiting */
    LMC_CHILD_OVERSIZED,          /* a line longer than max_line */
    LMC_CHILD_IO,                 /* a system call failed (errno kept) */
} lmc_child_result;

/* Starts argv[0] (searched in the PATH of the child's environment when it
 * has no '/') with the parent's environment plus env[0..n_env) ("KEY=VALUE",
 * replacing a variable of the same name), in its own process group, with
 * default signal dispositions. On failure nothing is left running. */
lmc_status lmc_child_spawn(lmc_child *c, char *const argv[], const char *const *env, int n_env);

/* Writes len bytes and a newline, waiting at most timeout seconds for the
 * pipe to take them. A child that is gone gives LMC_CHILD_EOF, never SIGPIPE. */
lmc_child_result lmc_child_write_line(lmc_child *c, const char *data, size_t len, double timeout);

/* Waits at most timeout seconds for a whole line on stdout and returns it
 * (NUL-terminated, without the newline, valid until the next read) in *line.
 * A non-NULL cancel flag is checked every few milliseconds. stderr is
 * drained into the tail while waiting. */
lmc_child_result lmc_child_read_line(lmc_child *c, double timeout, const volatile int *cancel, char **line,
                                     size_t *len);

/* Waits at most `seconds` for the child to exit, draining its output, and
 * reaps it. True when it has exited (or was already reaped). */
bool lmc_child_wait(lmc_child *c, double seconds);

/* Ends the child: closes its stdin, waits `grace` seconds for it to exit,
 * then sends SIGTERM to its process group and waits a second, then SIGKILL.
 * Always reaps it and closes every pipe. Safe to call twice. */
void lmc_child_stop(lmc_child *c, double grace);

/* "exited with status 3", "was killed by signal 11 (Segmentation fault)" or
 * "is still running" into buf. */
void lmc_child_describe_exit(const lmc_child *c, char *buf, size_t cap);

/* Reads what stderr holds right now into the tail, then copies the tail
 * (starting at a line boundary when it was cut, trailing blanks removed)
 * into buf; returns its length. */
size_t lmc_child_stderr_tail(lmc_child *c, char *buf, size_t cap);

#endif
