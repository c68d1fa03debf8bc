/* Minimal test harness: CHECK records a failure and continues; TEST_MAIN
 * runs the listed test functions and exits non-zero when any check failed. */
#ifndef LMC_TEST_UTIL_H
#define LMC_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int t_failures = 0;
static int t_checks = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        t_checks++;                                                              \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECKF(cond, ...)                                                        \
    do {                                                                         \
        t_checks++;                                                              \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol)                                                  \
    do {                                                                               \
        double ta_ = (double)(a), tb_ = (double)(b);                                   \
        CHECKF(fabs(ta_ - tb_) <= (atol) + (rtol) * fabs(tb_) || (isnan(ta_) && isnan(tb_)), \
               "%s = %.9g, %s = %.9g", #a, ta_, #b, tb_);                              \
    } while (0)

#define CHECK_STR(a, b)                                                          \
    do {                                                                         \
        const char *sa_ = (a), *sb_ = (b);                                       \
        CHECKF(sa_ && sb_ && strcmp(sa_, sb_) == 0, "\"%s\" != \"%s\"", sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)"); \
    } while (0)

#define RUN(fn)                                   \
    do {                                          \
        int before_ = t_failures;                 \
        fn();                                     \
        fprintf(stderr, "%s %s\n", t_failures == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#define TEST_REPORT()                                                             \
    (fprintf(stderr, "%d checks, %d failed\n", t_checks, t_failures), t_failures ? 1 : 0)

/* The whole file at path (malloc'd, NUL-terminated; *n, when not NULL, gets
 * its length), or NULL when it cannot be opened. */
static inline char *read_file_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)(len > 0 ? len : 0) + 1);
    size_t got = p ? fread(p, 1, (size_t)(len > 0 ? len : 0), f) : 0;
    fclose(f);
    if (p) p[got] = 0;
    if (n) *n = got;
    return p;
}

/* Runs a shell command; its standard output (up to cap - 1 bytes) goes to
 * out, NUL-terminated. Returns its exit status, or -1 when it could not run
 * or did not exit. */
static inline int run_command(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, cap - 1, p) : 0;
    out[n] = 0;
    if (!p) return -1;
    int st = pclose(p);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
