/* lmc serve: an OpenAI-compatible HTTP server for one model (lmc/server.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmc/server.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out, "usage: lmc serve -m DIR [--host H] [--port P] [options]\n"
                 "Serves the model over HTTP with OpenAI's API: POST /v1/chat/completions, /v1/completions\n"
                 "(\"stream\": true for Server-Sent Events), GET /v1/models, /health. Runs until Ctrl-C / SIGTERM.\n"
                 "  --host H                 address to listen on (default 127.0.0.1; 0.0.0.0: every IPv4 interface)\n"
                 "  --port P                 TCP port (default 8080; 0: any free port)\n"
                 "  --name NAME              the model's id in /v1/models and responses (default: the folder's name)\n"
                 "  --max-body BYTES         larger request bodies are refused with 413 (default 8388608)\n"
                 "  --max-connections N      simultaneous connections (default 64)\n"
                 "  --idle-timeout S         close connections idle this many seconds (default 600; 0: never)\n"
                 "  --api-key KEY            require 'Authorization: Bearer KEY' (all but /health; default: the\n"
                 "                           environment variable LMC_API_KEY, else no key)\n"
                 "  --cors ORIGIN            let web pages from ORIGIN (or * for any) call the server from a browser\n"
                 "  --no-prompt-cache        compute each request's whole prompt\n"
                 "  --pooling last|mean      /v1/embeddings: the last token's vector (default) or the tokens' mean\n"
                 "  --raw-reasoning          keep a thinking model's <think> block in the content (default: it is\n"
                 "                           split off into message.reasoning_content)\n"
                 "  --quiet                  no line per request on standard error\n"
                 "The generation options below are defaults for what a request leaves out\n"
                 "(--max-tokens: by default until the context is full; --seed: by default a new random seed\n"
                 "for each request that names none).\n"
                 "%s",
            lmc_cli_gen_usage);
}

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(stop_pipe[1], &b, 1); /* async-signal-safe */
    (void)r;
}

int cmd_serve(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    g.gen.max_tokens = INT32_MAX;
    lmc_server_options so = lmc_server_options_default();
    so.log_requests = true;
    /* a key on the command line shows in `ps`; the environment does not */
    const char *env_key = getenv("LMC_API_KEY");
    if (env_key && *env_key) so.api_key = env_key;
    long long n;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed")) so.random_seed = false; /* the given seed is every request's default */
        int r = lmc_cli_gen_option("serve", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = !strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--name") ||
                           !strcmp(a, "--max-body") || !strcmp(a, "--max-connections") || !strcmp(a, "--idle-timeout") ||
                           !strcmp(a, "--api-key") || !strcmp(a, "--cors") || !strcmp(a, "--pooling");
        if (takes_value && !val) {
            fprintf(stderr, "lmc serve: %s needs a value\n", a);
            return 2;
        }
        if (takes_value) i++;
        if (!strcmp(a, "--host")) so.host = val;
        else if (!strcmp(a, "--name")) so.model_name = val;
        else if (!strcmp(a, "--api-key")) so.api_key = val;
        else if (!strcmp(a, "--cors")) so.cors_origin = val;
        else if (!strcmp(a, "--pooling")) {
            if (strcmp(val, "last") && strcmp(val, "mean")) {
                fprintf(stderr, "lmc serve: --pooling must be last or mean, got '%s'\n", val);
                return 2;
            }
            so.pooling = strcmp(val, "mean") ? LMC_POOLING_LAST : LMC_POOLING_MEAN;
        }
        else if (!strcmp(a, "--port")) {
            if (!lmc_cli_int("serve", a, val, 0, 65535, &n)) return 2;
            so.port = (int)n;
        } else if (!strcmp(a, "--max-body")) {
            if (!lmc_cli_int("serve", a, val, 1, (long long)1 << 40, &n)) return 2;
            so.max_body_bytes = (size_t)n;
        } else if (!strcmp(a, "--max-connections")) {
            if (!lmc_cli_int("serve", a, val, 1, 100000, &n)) return 2;
            so.max_connections = (int)n;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (!lmc_cli_int("serve", a, val, 0, 1 << 30, &n)) return 2;
            so.idle_timeout = (int)n;
        } else if (!strcmp(a, "--no-prompt-cache")) g.gen.prompt_cache = false;
        else if (!strcmp(a, "--quiet")) so.log_requests = false;
        else if (!strcmp(a, "--raw-reasoning")) so.raw_reasoning = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc serve: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if ((so.model_name && !*so.model_name) || (so.api_key && !*so.api_key)) {
        fprintf(stderr, "lmc serve: --%s must not be empty\n", so.model_name && !*so.model_name ? "name" : "api-key");
        return 2;
    }
    lmc_model *m = lmc_cli_load_model("serve", &g);
    if (!m) return 1;
    so.gen = g.gen;

    /* SIGINT and SIGTERM may arrive on any thread (the model's worker
     * threads exist already): the handler only writes the signal's number
     * to a pipe, which this thread waits on. A client that hangs up must
     * not kill the server with SIGPIPE. */
    if (pipe(stop_pipe)) {
        fprintf(stderr, "lmc serve: pipe: %s\n", strerror(errno));
        lmc_model_free(m);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lmc_server *srv = NULL;
    if (lmc_server_start(m, &so, &srv) != LMC_OK) {
        fprintf(stderr, "lmc serve: %s\n", lmc_last_error());
        lmc_model_free(m);
        return 1;
    }
    bool v6 = strchr(so.host, ':') != NULL;
    fprintf(stderr, "lmc serve: listening on http://%s%s%s:%d (OpenAI API under /v1; Ctrl-C stops)\n", v6 ? "[" : "",
            so.host, v6 ? "]" : "", lmc_server_port(srv));
    unsigned char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR) continue;
    fprintf(stderr, "lmc serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    lmc_server_stop(srv);
    lmc_model_free(m);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    return 0;
}
