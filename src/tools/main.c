#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmc/base.h"
#include "tools/cli.h"

/* Subcommands are declared here and listed in the table below. */
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_discover(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_fuse(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);

static const lmc_cli_command commands[] = {
    {"generate", cmd_generate, "generate text from a prompt"},
    {"chat", cmd_chat, "chat with a model (interactive, or one --message)"},
    {"classify", cmd_classify, "next token (and logits) for many prompts, batched (JSON Lines)"},
    {"embed", cmd_embed, "a vector per prompt (last-token or mean pooling), batched (JSON Lines)"},
    {"batch", cmd_batch, "generate for many prompts at once (JSON Lines)"},
    {"serve", cmd_serve, "serve a model over HTTP with OpenAI's API (chat, completions, streaming)"},
    {"train", cmd_train, "fine-tune a LoRA adapter on a JSONL dataset (PEFT layout)"},
    {"info", cmd_info, "describe a model folder"},
    {"discover", cmd_discover, "find model folders under a directory"},
    {"logits", cmd_logits, "write the logits of a forward pass to a safetensors file"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (JSON array)"},
    {"detokenize", cmd_detokenize, "token ids (JSON array) on stdin -> text"},
    {"template", cmd_template, "render a chat template for messages on stdin"},
    {"bench", cmd_bench, "benchmark kernels (lmc bench ops) and models (lmc bench -m DIR)"},
    {"fuse", cmd_fuse, "merge a LoRA adapter into a new bf16 checkpoint folder"},
    {"make-model", cmd_make_model, "write a random-weight checkpoint with a real model's shapes"},
    {NULL, NULL, NULL},
};

double lmc_cli_t0;

char *lmc_cli_read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { free(buf); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static void usage(FILE *out) {
    fprintf(out, "lmc %s — run and fine-tune language models locally\n\nusage: lmc COMMAND [options]\n\ncommands:\n", lmc_version());
    for (const lmc_cli_command *c = commands; c->name; c++) fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "\n`lmc COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
#ifdef __GLIBC__
    /* glibc hands large freed blocks back to the kernel (mmap above a moving
     * threshold, heap trimming), and the next forward pass faults the same
     * pages in again: ~290k page faults and 3 % of the CPU time of three
     * 512-token Qwen3-0.6B prefills. The CLI keeps them; peak RSS moves by a
     * few MiB. A library can't decide this for its host process (embedders:
     * mallopt, or GLIBC_TUNABLES=glibc.malloc.trim_threshold=...). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lmc_cli_t0 = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("lmc %s\n", lmc_version()); return 0; }
    for (const lmc_cli_command *c = commands; c->name; c++)
        if (!strcmp(argv[1], c->name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "lmc: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
