/* lmc template: render a tokenizer folder's chat template for messages on stdin. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/chat_template.h"
#include "tools/cli.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc template -m DIR [--add-generation-prompt] [--var KEY=JSON]...\n\n"
            "Reads a JSON array of {\"role\", \"content\"} messages on stdin and prints the prompt\n"
            "that DIR's chat template renders for them (no newline added).\n\n"
            "  -m, --model DIR            folder with tokenizer_config.json (or chat_template.jinja)\n"
            "  --add-generation-prompt    end with the header of the assistant's turn\n"
            "  --var KEY=JSON             a template variable, e.g. --var enable_thinking=false\n"
            "                             or --var 'date_string=\"26 Jul 2024\"' (repeatable)\n");
}

/* Appends s to the heap string *buf (length *n); false when out of memory. */
static bool append(char **buf, size_t *n, const char *s) {
    size_t k = strlen(s);
    char *nb = realloc(*buf, *n + k + 1);
    if (!nb) return false;
    memcpy(nb + *n, s, k + 1);
    *buf = nb;
    *n += k;
    return true;
}

int cmd_template(int argc, char **argv) {
    const char *dir = NULL;
    bool gen = false;
    /* The extra variables as one JSON object. Values are copied as written
     * (cJSON only checks them) so that 1.0 stays a float for the template. */
    char *extra = NULL;
    size_t extra_n = 0;
    int rc = append(&extra, &extra_n, "{") ? 0 : 1;
    int nvars = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(extra);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) { fprintf(stderr, "lmc template: %s needs a folder\n", a); rc = 2; break; }
            dir = argv[++i];
        } else if (!strcmp(a, "--add-generation-prompt")) {
            gen = true;
        } else if (!strcmp(a, "--var")) {
            if (i + 1 >= argc) { fprintf(stderr, "lmc template: --var needs KEY=JSON\n"); rc = 2; break; }
            const char *kv = argv[++i];
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) { fprintf(stderr, "lmc template: --var '%s' is not KEY=JSON\n", kv); rc = 2; break; }
            cJSON *val = cJSON_Parse(eq + 1);
            if (!val) {
                fprintf(stderr, "lmc template: --var %.*s: value is not valid JSON: %s\n", (int)(eq - kv), kv, eq + 1);
                rc = 2;
                break;
            }
            cJSON_Delete(val);
            char *key = strndup(kv, (size_t)(eq - kv));
            cJSON *jkey = key ? cJSON_CreateString(key) : NULL;
            char *qkey = jkey ? cJSON_PrintUnformatted(jkey) : NULL;
            bool ok = qkey && (nvars == 0 || append(&extra, &extra_n, ",")) && append(&extra, &extra_n, qkey) &&
                      append(&extra, &extra_n, ":") && append(&extra, &extra_n, eq + 1);
            free(qkey);
            cJSON_Delete(jkey);
            free(key);
            if (!ok) { fprintf(stderr, "lmc template: out of memory\n"); rc = 1; break; }
            nvars++;
        } else {
            fprintf(stderr, "lmc template: unknown option '%s'\n", a);
            usage(stderr);
            rc = 2;
        }
    }
    if (rc == 0 && !append(&extra, &extra_n, "}")) { fprintf(stderr, "lmc template: out of memory\n"); rc = 1; }
    if (rc == 0 && !dir) {
        fprintf(stderr, "lmc template: -m DIR is required\n");
        usage(stderr);
        rc = 2;
    }
    char *input = NULL, *out = NULL;
    lmc_chat_template *t = NULL;
    if (rc == 0 && lmc_chat_template_load(dir, &t) != LMC_OK) {
        fprintf(stderr, "lmc template: %s\n", lmc_last_error());
        rc = 1;
    }
    if (rc == 0 && !(input = lmc_cli_read_all(stdin, NULL))) {
        fprintf(stderr, "lmc template: cannot read stdin\n");
        rc = 1;
    }
    if (rc == 0) {
        lmc_chat_template_options opt = lmc_chat_template_options_default();
        opt.add_generation_prompt = gen;
        opt.extra_json = extra;
        if (lmc_chat_template_apply(t, input, &opt, &out) != LMC_OK) {
            fprintf(stderr, "lmc template: %s\n", lmc_last_error());
            rc = 1;
        } else if (fwrite(out, 1, strlen(out), stdout) != strlen(out) || fflush(stdout) != 0) {
            fprintf(stderr, "lmc template: write error\n");
            rc = 1;
        }
    }
    free(out);
    free(input);
    free(extra);
    lmc_chat_template_free(t);
    return rc;
}
