/* Splitting <think> blocks off replies (see reasoning.h). */
#include "runtime/reasoning.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json_util.h"

static const char OPEN[] = "<think>", CLOSE[] = "</think>";
enum { UNKNOWN, THINKING, ANSWER_START, ANSWER };

bool lmc_reasoning_template(const char *src) { return src && strstr(src, OPEN) && strstr(src, CLOSE); }


static char *copy(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

/* The reasoning's text without the newlines around it, as templates write it. */
static void strip_newlines(const char **s, size_t *n) {
    while (*n && (**s == '\n' || **s == '\r')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == '\n' || (*s)[*n - 1] == '\r')) (*n)--;
}

lmc_status lmc_reasoning_split(const char *text, char **reasoning, char **content) {
    *reasoning = *content = NULL;
    if (!text) text = "";
    const char *p = text;
    while (lmc_json_space(*p)) p++;
    if (strncmp(p, OPEN, sizeof OPEN - 1)) {
        *reasoning = copy("", 0);
        *content = copy(text, strlen(text));
    } else {
        p += sizeof OPEN - 1;
        const char *end = strstr(p, CLOSE), *after = end ? end + sizeof CLOSE - 1 : p + strlen(p);
        size_t n = (size_t)((end ? end : after) - p);
        strip_newlines(&p, &n);
        while (lmc_json_space(*after)) after++;
        *reasoning = copy(p, n);
        *content = copy(after, strlen(after));
    }
    if (*reasoning && *content) return LMC_OK;
    free(*reasoning);
    free(*content);
    *reasoning = *content = NULL;
    return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
}

/* Length of the longest suffix of s[0, n) that is a proper prefix of tag. */
static size_t partial_tag(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    for (size_t k = t - 1; k > 0; k--)
        if (k <= n && !memcmp(s + n - k, tag, k)) return k;
    return 0;
}

void lmc_reasoning_feed(lmc_reasoning_stream *s, const char *piece, size_t n, bool final, const char **reasoning,
                        size_t *rn, const char **content, size_t *cn) {
    *reasoning = *content = "";
    *rn = *cn = 0;
    lmc_strbuf_append(&s->text, piece, n);
    if (!s->text.data) return;
    if (s->text.failed) final = true; /* hand out what is there rather than lose it */
    const char *t = s->text.data;
    const size_t len = s->text.len;
    if (s->state == UNKNOWN) {
        size_t i = 0;
        while (i < len && lmc_json_space(t[i])) i++;
        size_t have = len - i, need = sizeof OPEN - 1;
        if (have >= need && !memcmp(t + i, OPEN, need)) {
            s->state = THINKING;
            s->done = i + need;
            while (s->done < len && (t[s->done] == '\n' || t[s->done] == '\r')) s->done++;
        } else if (!final && (have == 0 || (have < need && !memcmp(t + i, OPEN, have)))) {
            return; /* may still become <think> */
        } else {
            s->state = ANSWER;
        }
    }
    if (s->state == THINKING) {
        if (!s->begun)
            while (s->done < len && (t[s->done] == '\n' || t[s->done] == '\r')) s->done++;
        const char *end = strstr(t + s->done, CLOSE);
        if (end) {
            size_t r = (size_t)(end - (t + s->done));
            const char *rp = t + s->done;
            while (r && (rp[r - 1] == '\n' || rp[r - 1] == '\r')) r--;
            *reasoning = rp, *rn = r;
            s->done = (size_t)(end - t) + sizeof CLOSE - 1;
            s->state = ANSWER_START;
        } else {
            /* hold back a possible start of </think> and trailing newlines (they
             * may precede it); at the end those newlines go, as the whole
             * reply's split drops them */
            size_t upto = final ? len : len - partial_tag(t + s->done, len - s->done, CLOSE);
            while (upto > s->done && (t[upto - 1] == '\n' || t[upto - 1] == '\r')) upto--;
            *reasoning = t + s->done, *rn = upto - s->done;
            s->begun |= upto > s->done;
            s->done = upto;
            return;
        }
    }
    if (s->state == ANSWER_START) {
        while (s->done < len && lmc_json_space(t[s->done])) s->done++;
        if (s->done == len) return;
        s->state = ANSWER;
    }
    if (s->state == ANSWER) {
        *content = t + s->done, *cn = len - s->done;
        s->done = len;
    }
}

void lmc_reasoning_stream_free(lmc_reasoning_stream *s) {
    lmc_strbuf_free(&s->text);
    memset(s, 0, sizeof *s);
}
