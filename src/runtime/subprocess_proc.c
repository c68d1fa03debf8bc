/* Child processes with pipes: see subprocess_proc.h. */
#include "runtime/subprocess_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* --- splitting a command line into words -------------------------------------- */

typedef struct word_list {
    char **v;
    int n, cap;
    char *cur;             /* the word being built */
    size_t len, wcap;
    bool in_word;          /* a word has started (quotes alone start an empty word) */
} word_list;

static bool word_putc(word_list *w, char ch) {
    if (w->len + 2 > w->wcap) {
        size_t cap = w->wcap ? w->wcap * 2 : 32;
        char *p = realloc(w->cur, cap);
        if (!p) return false;
        w->cur = p;
        w->wcap = cap;
    }
    w->cur[w->len++] = ch;
    w->cur[w->len] = 0;
    w->in_word = true;
    return true;
}

static bool word_end(word_list *w) {
    if (!w->in_word) return true;
    if (w->n + 2 > w->cap) {
        int cap = w->cap ? w->cap * 2 : 8;
        char **v = realloc(w->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        w->v = v;
        w->cap = cap;
    }
    char *word = w->cur ? w->cur : strdup("");
    if (!word) return false;
    w->v[w->n++] = word;
    w->v[w->n] = NULL;
    w->cur = NULL;
    w->len = w->wcap = 0;
    w->in_word = false;
    return true;
}

void lmc_words_free(char **words) {
    for (int i = 0; words && words[i]; i++) free(words[i]);
    free(words);
}

lmc_status lmc_split_words(const char *cmd, char ***words, int *n) {
    *words = NULL;
    *n = 0;
    if (!cmd) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "command is NULL");
    word_list w = {0};
    lmc_status st = LMC_OK;
    bool oom = false;
    for (const char *p = cmd; *p && st == LMC_OK && !oom; p++) {
        char ch = *p;
        if (ch == ' ' || ch == '\t' || ch == '\n') {
            oom = !word_end(&w);
        } else if (ch == '\'') {
            const char *close = strchr(p + 1, '\'');
            if (!close) {
                st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "command \"%s\": unterminated single quote", cmd);
                break;
            }
            w.in_word = true;
            for (const char *q = p + 1; q < close && !oom; q++) oom = !word_putc(&w, *q);
            p = close;
        } else if (ch == '"') {
            w.in_word = true;
            for (p++;; p++) {
                if (!*p) {
                    st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "command \"%s\": unterminated double quote", cmd);
                    break;
                }
                if (*p == '"') break;
                if (*p == '$' || *p == '`') {
                    st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                                       "command \"%s\": '%c' inside \"...\" would be expanded by a shell; lmc does "
                                       "no expansion (escape it as \\%c or use '...')",
                                       cmd, *p, *p);
                    break;
                }
                if (*p == '\\' && p[1] && strchr("\"\\$`\n", p[1])) {
                    p++;
                    if (*p == '\n') continue; /* line continuation */
                }
                if (!word_putc(&w, *p)) {
                    oom = true;
                    break;
                }
            }
            if (st != LMC_OK || oom) break; /* p may be at the end of cmd */
        } else if (ch == '\\') {
            if (!p[1]) {
                st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "command \"%s\": a backslash ends the command", cmd);
                break;
            }
            p++;
            if (*p != '\n') oom = !word_putc(&w, *p);
        } else if (strchr("$`|&;<>()", ch) || (ch == '#' && !w.in_word)) {
            st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                               "command \"%s\": unquoted '%c' is shell syntax; the command is run directly, not by a "
                               "shell (quote it, or use sh -c '...')",
                               cmd, ch);
        } else {
            oom = !word_putc(&w, ch);
        }
    }
    if (st == LMC_OK && !oom) oom = !word_end(&w);
    if (oom) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == LMC_OK && w.n == 0) st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "command \"%s\" is empty", cmd);
    free(w.cur);
    if (st != LMC_OK) {
        lmc_words_free(w.v);
        return st;
    }
    *words = w.v;
    *n = w.n;
    return LMC_OK;
}

/* --- time ----------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int ms_until(double deadline) {
    double left = deadline - now_s();
    if (left <= 0) return 0;
    if (left > 3600) return 3600 * 1000;
    return (int)(left * 1000) + 1;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/* --- spawning ----------------------------------------------------------------- */

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* The child's environment: ours with `extra` replacing or adding variables. */
static char **child_environment(const char *const *extra, int n_extra) {
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = calloc(n + (size_t)n_extra + 1, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strcspn(environ[i], "=");
        bool replaced = false;
        for (int j = 0; j < n_extra && !replaced; j++)
            replaced = !strncmp(extra[j], environ[i], klen) && extra[j][klen] == '=';
        if (!replaced) env[k++] = environ[i];
    }
    for (int j = 0; j < n_extra; j++) {
        bool dup = false; /* a later KEY= wins over an earlier one */
        size_t klen = strcspn(extra[j], "=");
        for (int l = j + 1; l < n_extra && !dup; l++) dup = !strncmp(extra[l], extra[j], klen + 1);
        if (!dup) env[k++] = (char *)extra[j];
    }
    env[k] = NULL;
    return env;
}

/* argv0 as given when it holds a '/', else the first executable file of
 * that name in the PATH of env. Returns a malloc'd path or NULL. */
static char *find_program(const char *argv0, char *const *env) {
    if (strchr(argv0, '/')) return strdup(argv0);
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (size_t i = 0; env[i]; i++)
        if (!strncmp(env[i], "PATH=", 5)) path = env[i] + 5;
    size_t alen = strlen(argv0);
    for (const char *dir = path;;) {
        size_t dlen = strcspn(dir, ":");
        char *cand = malloc(dlen + alen + 3);
        if (!cand) return NULL;
        snprintf(cand, dlen + alen + 3, "%.*s/%s", (int)(dlen ? dlen : 1), dlen ? dir : ".", argv0);
        struct stat sb;
        if (stat(cand, &sb) == 0 && S_ISREG(sb.st_mode) && access(cand, X_OK) == 0) return cand;
        free(cand);
        if (!dir[dlen]) return NULL;
        dir += dlen + 1;
    }
}

lmc_status lmc_child_spawn(lmc_child *c, char *const argv[], const char *const *env, int n_env) {
    memset(c, 0, sizeof *c);
    c->in_fd = c->out_fd = c->err_fd = -1;
    c->max_line = (size_t)16 << 20;
    for (int i = 0; i < n_env; i++)
        if (!env[i] || !strchr(env[i], '=') || env[i][0] == '=')
            return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "environment entry \"%s\" is not KEY=VALUE",
                                 env[i] ? env[i] : "(null)");
    char **cenv = child_environment(env, n_env);
    if (!cenv) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    char *prog = find_program(argv[0], cenv);
    if (!prog) {
        free(cenv);
        return lmc_set_error(LMC_ERR_NOT_FOUND, "program \"%s\" not found in PATH", argv[0]);
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    lmc_status st = LMC_OK;
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        st = lmc_set_error(LMC_ERR_IO, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool have_fa = false, have_attr = false;
    if (st == LMC_OK) {
        have_fa = posix_spawn_file_actions_init(&fa) == 0;
        have_attr = posix_spawnattr_init(&attr) == 0;
        if (!have_fa || !have_attr) st = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (st == LMC_OK) {
        /* The pipes are close-on-exec; dup2 gives the child plain 0, 1, 2. */
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        /* Own process group (signals reach its helpers too, and a terminal's
         * Ctrl-C goes to us, not straight to the bridge), default signal
         * handling (we may ignore SIGPIPE; the child should not inherit it)
         * and nothing blocked. */
        sigset_t all, none;
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        sigemptyset(&none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        int e = posix_spawn(&c->pid, prog, &fa, &attr, argv, cenv);
        if (e) {
            c->pid = 0;
            st = lmc_set_error(LMC_ERR_IO, "cannot start \"%s\": %s", prog, strerror(e));
        }
    }
    if (have_fa) posix_spawn_file_actions_destroy(&fa);
    if (have_attr) posix_spawnattr_destroy(&attr);
    free(prog);
    free(cenv);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    if (st != LMC_OK) {
        close_fd(&c->in_fd);
        close_fd(&c->out_fd);
        close_fd(&c->err_fd);
        return st;
    }
    fcntl(c->in_fd, F_SETFL, fcntl(c->in_fd, F_GETFL) | O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, fcntl(c->out_fd, F_GETFL) | O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, fcntl(c->err_fd, F_GETFL) | O_NONBLOCK);
    return LMC_OK;
}

/* --- stderr and stdout draining -------------------------------------------------- */

/* Reads whatever stderr holds into the ring; closes it at end of file. */
static void drain_stderr(lmc_child *c) {
    char chunk[4096];
    while (c->err_fd >= 0) {
        ssize_t r = read(c->err_fd, chunk, sizeof chunk);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++) c->tail[(c->tail_total + (size_t)i) % LMC_STDERR_TAIL] = chunk[i];
            c->tail_total += (size_t)r;
        } else if (r == 0) {
            close_fd(&c->err_fd);
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) close_fd(&c->err_fd);
            break;
        }
    }
}

/* Reads what stdout holds into buf: 1 when the pipe is empty for now (or a
 * line is already too long), 0 at end of file, -1 on an error. */
static int fill_stdout(lmc_child *c) {
    for (;;) {
        if (c->start && c->start + c->len + 65536 > c->cap) {
            memmove(c->buf, c->buf + c->start, c->len);
            c->start = 0;
        }
        if (c->len + 65536 + 1 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 131072;
            char *p = realloc(c->buf, cap);
            if (!p) return -1;
            c->buf = p;
            c->cap = cap;
        }
        ssize_t r = read(c->out_fd, c->buf + c->start + c->len, 65536);
        if (r > 0) {
            c->len += (size_t)r;
            if (c->len > c->max_line + 1) return 1;
        } else if (r == 0) {
            return 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

size_t lmc_child_stderr_tail(lmc_child *c, char *buf, size_t cap) {
    drain_stderr(c);
    if (!cap) return 0;
    size_t n = c->tail_total < LMC_STDERR_TAIL ? c->tail_total : LMC_STDERR_TAIL;
    size_t from = c->tail_total - n, skip = 0;
    if (c->tail_total > LMC_STDERR_TAIL || n + 1 > cap) {
        /* Cut: start after the first newline of what is kept. */
        if (n + 1 > cap) {
            from += n - (cap - 1);
            n = cap - 1;
        }
        for (size_t i = 0; i < n; i++)
            if (c->tail[(from + i) % LMC_STDERR_TAIL] == '\n') {
                skip = i + 1;
                break;
            }
    }
    size_t k = 0;
    for (size_t i = skip; i < n; i++) buf[k++] = c->tail[(from + i) % LMC_STDERR_TAIL];
    while (k && (buf[k - 1] == '\n' || buf[k - 1] == ' ' || buf[k - 1] == '\r' || buf[k - 1] == '\t')) k--;
    buf[k] = 0;
    return k;
}

/* --- reading and writing -------------------------------------------------------- */

lmc_child_result lmc_child_read_line(lmc_child *c, double timeout, const volatile int *cancel, char **line,
                                     size_t *len) {
    *line = NULL;
    *len = 0;
    double deadline = now_s() + timeout;
    for (;;) {
        /* c->scanned bytes of the pending data are known to hold no newline. */
        char *nl = c->len > c->scanned ? memchr(c->buf + c->start + c->scanned, '\n', c->len - c->scanned) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->start));
            if (n > c->max_line) return LMC_CHILD_OVERSIZED;
            *line = c->buf + c->start;
            *len = n && (*line)[n - 1] == '\r' ? n - 1 : n;
            (*line)[*len] = 0;
            c->start += n + 1;
            c->len -= n + 1;
            c->scanned = 0;
            return LMC_CHILD_OK;
        }
        c->scanned = c->len;
        if (c->len > c->max_line) return LMC_CHILD_OVERSIZED;
        if (c->out_fd < 0) return LMC_CHILD_EOF;
        if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) return LMC_CHILD_CANCELLED;
        int wait_ms = ms_until(deadline);
        if (wait_ms == 0) return LMC_CHILD_TIMEOUT;
        if (cancel && wait_ms > 20) wait_ms = 20;
        struct pollfd pf[2] = {{.fd = c->out_fd, .events = POLLIN}, {.fd = c->err_fd, .events = POLLIN}};
        int r = poll(pf, c->err_fd >= 0 ? 2 : 1, wait_ms);
        if (r < 0 && errno != EINTR) return LMC_CHILD_IO;
        if (r <= 0) continue;
        if (c->err_fd >= 0 && pf[1].revents) drain_stderr(c);
        if (pf[0].revents) {
            int f = fill_stdout(c);
            if (f < 0) return LMC_CHILD_IO;
            if (f == 0) close_fd(&c->out_fd);
        }
    }
}

lmc_child_result lmc_child_write_line(lmc_child *c, const char *data, size_t len, double timeout) {
    if (c->in_fd < 0) return LMC_CHILD_EOF;
    /* A reader that is gone makes write() raise SIGPIPE, whose default is to
     * kill us: block it on this thread while writing, and swallow one that
     * we caused (but not one that was already pending). */
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    lmc_child_result res = LMC_CHILD_OK;
    double deadline = now_s() + timeout;
    const char nl = '\n';
    size_t done = 0, total = len + 1;
    while (done < total) {
        const char *p = done < len ? data + done : &nl;
        size_t n = done < len ? len - done : 1;
        ssize_t w = write(c->in_fd, p, n);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EPIPE) {
            res = LMC_CHILD_EOF;
            break;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            res = LMC_CHILD_IO;
            break;
        }
        int wait_ms = ms_until(deadline);
        if (wait_ms == 0) {
            res = LMC_CHILD_TIMEOUT;
            break;
        }
        struct pollfd pf[2] = {{.fd = c->in_fd, .events = POLLOUT}, {.fd = c->err_fd, .events = POLLIN}};
        if (poll(pf, c->err_fd >= 0 ? 2 : 1, wait_ms) > 0 && c->err_fd >= 0 && pf[1].revents) drain_stderr(c);
    }
    if (res == LMC_CHILD_EOF && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) == -1 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return res;
}

/* --- exit and reaping ------------------------------------------------------------- */

static bool try_reap(lmc_child *c) {
    if (c->reaped || !c->pid) return true;
    int status;
    pid_t r = waitpid(c->pid, &status, WNOHANG);
    if (r == c->pid || (r < 0 && errno == ECHILD)) {
        c->status = r == c->pid ? status : 0;
        c->reaped = true;
        return true;
    }
    return false;
}

bool lmc_child_wait(lmc_child *c, double seconds) {
    double deadline = now_s() + seconds;
    for (;;) {
        if (try_reap(c)) return true;
        /* Keep the pipes flowing so that a child writing on its way out does not block. */
        drain_stderr(c);
        if (c->out_fd >= 0) {
            c->start = c->len = c->scanned = 0;
            if (fill_stdout(c) <= 0) close_fd(&c->out_fd);
            c->start = c->len = 0;
        }
        int ms = ms_until(deadline);
        if (ms == 0) return false;
        sleep_ms(ms < 5 ? ms : 5);
    }
}

void lmc_child_stop(lmc_child *c, double grace) {
    if (c->pid && !c->reaped) {
        close_fd(&c->in_fd); /* end of input asks a bridge to exit */
        if (!lmc_child_wait(c, grace)) {
            kill(-c->pid, SIGTERM);
            if (!lmc_child_wait(c, 1.0)) {
                kill(-c->pid, SIGKILL);
                int status;
                while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {}
                c->status = status;
                c->reaped = true;
            }
        }
    }
    drain_stderr(c);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    free(c->buf);
    c->buf = NULL;
    c->start = c->len = c->cap = c->scanned = 0;
}

void lmc_child_describe_exit(const lmc_child *c, char *buf, size_t cap) {
    if (!c->reaped) snprintf(buf, cap, "is still running");
    else if (WIFEXITED(c->status)) snprintf(buf, cap, "exited with status %d", WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(c->status), strsignal(WTERMSIG(c->status)));
    else snprintf(buf, cap, "ended with wait status %d", c->status);
}
