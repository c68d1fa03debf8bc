/* lmc_split_words: a bridge command split as a POSIX shell splits words,
 * with no expansion, and shell syntax refused. Expected words were checked
 * against `sh -c 'for w in CMD; do printf "[%s]" "$w"; done'` style runs. */
#include "runtime/subprocess_proc.h"
#include "test_util.h"

/* Joins the words as "[w1][w2]..." for comparison. */
static const char *split(const char *cmd) {
    static char out[1024];
    char **w;
    int n;
    if (lmc_split_words(cmd, &w, &n) != LMC_OK) return NULL;
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) k += (size_t)snprintf(out + k, sizeof out - k, "[%s]", w[i]);
    CHECK(w[n] == NULL);
    lmc_words_free(w);
    return out;
}

static void test_plain_words(void) {
    CHECK_STR(split("python3 bridges/transformers_bridge.py"), "[python3][bridges/transformers_bridge.py]");
    CHECK_STR(split("  a \t b\nc  "), "[a][b][c]");
    CHECK_STR(split("x"), "[x]");
    CHECK_STR(split("a=b c~d *.py ?"), "[a=b][c~d][*.py][?]"); /* no globbing, no tilde expansion */
    CHECK_STR(split("a#b"), "[a#b]");                         /* # only starts a comment at a word's start */
}

static void test_quotes(void) {
    CHECK_STR(split("'/opt/my venv/bin/python' -u"), "[/opt/my venv/bin/python][-u]");
    CHECK_STR(split("\"a b\" 'c d'"), "[a b][c d]");
    CHECK_STR(split("'it'\\''s'"), "[it's]");          /* the classic way to quote a single quote */
    CHECK_STR(split("\"say \\\"hi\\\"\""), "[say \"hi\"]");
    CHECK_STR(split("\"a\\\\b\" \"a\\nb\""), "[a\\b][a\\nb]"); /* in "...", \ only escapes \ \" $ ` newline */
    CHECK_STR(split("\"\\$HOME\" '$HOME'"), "[$HOME][$HOME]"); /* $ is literal when escaped or in '...' */
    CHECK_STR(split("'' \"\" x"), "[][][x]");          /* empty quotes are empty words */
    CHECK_STR(split("pre'mid'\"post\""), "[premidpost]");
    CHECK_STR(split("'a|b;c&d'"), "[a|b;c&d]");        /* operators are fine when quoted */
}

static void test_backslashes(void) {
    CHECK_STR(split("a\\ b c"), "[a b][c]");
    CHECK_STR(split("\\'x\\\""), "['x\"]");
    CHECK_STR(split("a\\\nb"), "[ab]");                /* line continuation */
    CHECK_STR(split("\\$HOME"), "[$HOME]");
}

static void test_errors(void) {
    const char *bad[] = {"'open", "\"open", "trailing\\", "", "   ", "a | b", "a; b", "a && b", "a > out", "$HOME/x",
                         "`id`", "(sub)", "# comment", "\"$HOME\"", "\"`id`\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char **w = (char **)1;
        int n = -1;
        lmc_status st = lmc_split_words(bad[i], &w, &n);
        CHECKF(st == LMC_ERR_INVALID_ARGUMENT && w == NULL && n == 0, "\"%s\" gave %d", bad[i], st);
        CHECKF(strstr(lmc_last_error(), "command") != NULL, "%s", lmc_last_error());
    }
    CHECK(strstr((lmc_split_words("a | b", &(char **){0}, &(int){0}), lmc_last_error()), "shell syntax") != NULL);
    CHECK(strstr((lmc_split_words("'x", &(char **){0}, &(int){0}), lmc_last_error()), "unterminated single quote") != NULL);
    CHECK(lmc_split_words(NULL, &(char **){0}, &(int){0}) == LMC_ERR_INVALID_ARGUMENT);
}

int main(void) {
    RUN(test_plain_words);
    RUN(test_quotes);
    RUN(test_backslashes);
    RUN(test_errors);
    return TEST_REPORT();
}
