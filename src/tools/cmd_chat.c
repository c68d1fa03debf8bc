/* lmc chat: a conversation with the model's own chat template. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out, "usage: lmc chat -m DIR [--system TEXT] [--message TEXT] [options]\n"
                 "Interactive unless --message is given: type a message, the reply streams back;\n"
                 "an empty line or end of input ends the chat.\n"
                 "  --system TEXT            a system message first\n"
                 "  --message TEXT           one user turn, print the reply, exit\n"
                 "  --stats                  after each reply, its figures on standard error (prompt tokens,\n"
                 "                           how many came from the prompt cache, tokens/s, first-token time)\n"
                 "  --no-prompt-cache        compute each turn's whole prompt (by default only what is new\n"
                 "                           since the last reply is computed)\n"
                 "  --tools T                tools the model may call: OpenAI function definitions, a JSON\n"
                 "                           array as text or @FILE; the template renders them, and each\n"
                 "                           call a reply makes is also printed on standard error\n"
                 "  --tool-choice C          with --tools: auto (default), none, required (the reply is one\n"
                 "                           call) or a tool's name (one call of it)\n"
                 "  (with --tools, a line /tool TEXT answers the calls of the last reply: TEXT goes back as\n"
                 "  a tool message, as an application returns a tool's result, and the model replies)\n"
                 "%s",
            lmc_cli_gen_usage);
}

static bool print_piece(void *user, int32_t id, const char *text, size_t len) {
    (void)user;
    (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

typedef struct conversation {
    lmc_message *msgs;
    char **owned;
    size_t n, cap;
} conversation;

static bool add(conversation *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        lmc_message *m = realloc(c->msgs, cap * sizeof *m);
        if (m) c->msgs = m;
        char **o = realloc(c->owned, cap * sizeof *o);
        if (o) c->owned = o;
        if (!m || !o) return false;
        c->cap = cap;
    }
    char *copy = strdup(content);
    if (!copy) return false;
    c->owned[c->n] = copy;
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = copy;
    c->n++;
    return true;
}

static void conversation_free(conversation *c) {
    for (size_t i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
}

/* The calls a reply makes, one line each on standard error: "[tool call] NAME ARGUMENTS". */
static void print_calls(const lmc_model *m, const char *text) {
    char *calls = NULL;
    if (lmc_model_tool_calls(m, text, &calls, NULL) != LMC_OK || !calls) return;
    cJSON *arr = cJSON_Parse(calls);
    for (const cJSON *c = arr ? arr->child : NULL; c; c = c->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "name"));
        const char *args = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "arguments"));
        fprintf(stderr, "[tool call] %s %s\n", name ? name : "?", args ? args : "{}");
    }
    cJSON_Delete(arr);
    free(calls);
}

/* One turn: generate, print, and record the reply. Returns false on error. */
static bool turn(lmc_model *m, conversation *c, const char *tools, const lmc_generate_options *opt, bool stats) {
    lmc_generation out = {0};
    lmc_status s;
    if (tools) {
        char *msgs = NULL;
        s = lmc_json_messages(c->msgs, c->n, &msgs);
        if (s == LMC_OK) s = lmc_chat_json(m, msgs, tools, opt, &out);
        free(msgs);
    } else {
        s = lmc_chat(m, c->msgs, c->n, opt, &out);
    }
    printf("\n");
    fflush(stdout);
    bool ok = s == LMC_OK;
    if (ok && tools) print_calls(m, out.text ? out.text : "");
    if (ok && stats) lmc_cli_print_metrics_line(stderr, &out);
    if (!ok) fprintf(stderr, "lmc chat: %s\n", lmc_last_error());
    else if (!add(c, "assistant", out.text ? out.text : "")) ok = false;
    lmc_generation_clear(&out);
    return ok;
}

int cmd_chat(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    const char *system = NULL, *message = NULL, *tools = NULL;
    char *tools_file = NULL; /* --tools @FILE's text */
    bool stats = false;
    for (int i = 1; i < argc; i++) {
        int r = lmc_cli_gen_option("chat", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if (!strcmp(argv[i], "--message") && i + 1 < argc) message = argv[++i];
        else if (!strcmp(argv[i], "--stats")) stats = true;
        else if (!strcmp(argv[i], "--no-prompt-cache")) g.gen.prompt_cache = false;
        else if (!strcmp(argv[i], "--tools") && i + 1 < argc && !tools) tools = argv[++i];
        else if (!strcmp(argv[i], "--tool-choice") && i + 1 < argc) g.gen.tool_choice = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc chat: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (g.gen.tool_choice && !tools) {
        fprintf(stderr, "lmc chat: --tool-choice needs --tools\n");
        return 2;
    }
    if (tools && !lmc_cli_text_or_file("chat", "--tools", tools, 1 << 22, &tools, &tools_file)) return 1;
    lmc_model *m = lmc_cli_load_model("chat", &g);
    if (!m) {
        free(tools_file);
        return 1;
    }
    g.gen.on_token = print_piece;
    conversation c = {0};
    int rc = 0;
    if (system && !add(&c, "system", system)) rc = 1;
    if (message) {
        if (rc == 0 && (!add(&c, "user", message) || !turn(m, &c, tools, &g.gen, stats))) rc = 1;
    } else {
        char *line = NULL;
        size_t cap = 0;
        for (;;) {
            fprintf(stderr, "> ");
            ssize_t len = getline(&line, &cap, stdin);
            if (len <= 0) break;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) break;
            if (!strncmp(line, "/tool", 5) && (line[5] == ' ' || line[5] == 0)) {
                if (!tools) {
                    fprintf(stderr, "lmc chat: /tool answers a tool call: start the chat with --tools\n");
                    continue;
                }
                if (!add(&c, "tool", line[5] ? line + 6 : "")) {
                    rc = 1;
                    break;
                }
                /* a template that has no tool messages refuses it: the chat goes on without it */
                if (!turn(m, &c, tools, &g.gen, stats)) free(c.owned[--c.n]);
                continue;
            }
            if (!add(&c, "user", line) || !turn(m, &c, tools, &g.gen, stats)) {
                rc = 1;
                break;
            }
        }
        free(line);
    }
    conversation_free(&c);
    lmc_model_free(m);
    free(tools_file);
    return rc;
}
