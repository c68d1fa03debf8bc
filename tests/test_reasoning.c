/* Splitting a thinking model's <think> block off its reply (runtime/reasoning.h):
 * whole replies, and the same replies fed in pieces of every size, which
 * must hand out exactly what the whole split gives. */
#include <stdlib.h>

#include "runtime/reasoning.h"
#include "test_util.h"

typedef struct split_case {
    const char *reply, *reasoning, *content;
} split_case;

static const split_case cases[] = {
    {"<think>\nThe user wants 2+2.\n</think>\n\nIt is 4.", "The user wants 2+2.", "It is 4."},
    {"\n<think>\n\n</think>\n\nHello", "", "Hello"},
    {"<think>\nstill thinking when cut", "still thinking when cut", ""},
    {"No thinking here.", "", "No thinking here."},
    {"<thinking> is not the tag", "", "<thinking> is not the tag"},
    {" <think>a</think>b</think>", "a", "b</think>"},
    {"<think>x\n</thin", "x\n</thin", ""},
    {"<think>\ncut after newlines\n\r\n", "cut after newlines", ""},
    {"", "", ""},
};

static void test_whole(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *r, *c;
        CHECK(lmc_reasoning_split(cases[i].reply, &r, &c) == LMC_OK);
        CHECKF(r && !strcmp(r, cases[i].reasoning), "case %zu: reasoning '%s'", i, r ? r : "");
        CHECKF(c && !strcmp(c, cases[i].content), "case %zu: content '%s'", i, c ? c : "");
        free(r);
        free(c);
    }
}

static void test_stream(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (size_t step = 1; step <= 8; step++) {
            lmc_reasoning_stream s = {0};
            char r[256] = {0}, c[256] = {0};
            size_t rl = 0, cl = 0, len = strlen(cases[i].reply);
            for (size_t at = 0; at <= len; at += step) {
                size_t n = at + step <= len ? step : len - at;
                bool final = at + step > len;
                const char *rp, *cp;
                size_t rn, cn;
                lmc_reasoning_feed(&s, cases[i].reply + at, n, final, &rp, &rn, &cp, &cn);
                CHECK(rl + rn < sizeof r && cl + cn < sizeof c);
                memcpy(r + rl, rp, rn);
                memcpy(c + cl, cp, cn);
                rl += rn;
                cl += cn;
                if (final) break;
            }
            CHECKF(!strcmp(r, cases[i].reasoning), "case %zu step %zu: reasoning '%s', expected '%s'", i, step, r,
                   cases[i].reasoning);
            CHECKF(!strcmp(c, cases[i].content), "case %zu step %zu: content '%s', expected '%s'", i, step, c,
                   cases[i].content);
            lmc_reasoning_stream_free(&s);
        }
    }
}

static void test_template(void) {
    CHECK(lmc_reasoning_template("{{ '<think>\\n' }}...{{ '</think>' }}"));
    CHECK(!lmc_reasoning_template("{% for m in messages %}{{ m.content }}{% endfor %}"));
    CHECK(!lmc_reasoning_template(NULL));
}

int main(void) {
    RUN(test_whole);
    RUN(test_stream);
    RUN(test_template);
    return TEST_REPORT();
}
