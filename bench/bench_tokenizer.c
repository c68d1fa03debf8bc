#include "bench_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmc/tokenizer.h"

enum { CHUNK = 4096, REPEAT = 3 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void print_machine(void) {
    char model[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            const char *v = strchr(line, ':');
            if (v) snprintf(model, sizeof model, "%s", v + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
    printf("machine: %s, %ld cpus\n", model, sysconf(_SC_NPROCESSORS_ONLN));
}

int bench_tokenizer(const char *dir, const char *text_file) {
    FILE *f = fopen(text_file, "rb");
    if (!f) {
        fprintf(stderr, "lmc tokenize: cannot open %s\n", text_file);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t len = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!text) return 1;

    /* Chunks of at least CHUNK bytes ending at a line end, as the Python side cuts them. */
    size_t nchunks = 0, *starts = malloc((len / CHUNK + 2) * sizeof *starts);
    for (size_t at = 0; at < len;) {
        starts[nchunks++] = at;
        size_t end = at + CHUNK < len ? at + CHUNK : len;
        while (end < len && text[end - 1] != '\n') end++;
        at = end;
    }
    starts[nchunks] = len;

    print_machine();
    printf("text: %s, %.2f MB in %zu chunks\n", text_file, (double)len / 1e6, nchunks);
    double t0 = now_s();
    lmc_tokenizer *tok;
    if (lmc_tokenizer_load(dir, &tok) != LMC_OK) {
        fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
        free(text);
        free(starts);
        return 1;
    }
    double load = now_s() - t0, best = 1e30;
    size_t ntok = 0;
    for (int r = 0; r < REPEAT; r++) {
        ntok = 0;
        t0 = now_s();
        for (size_t c = 0; c < nchunks; c++) {
            int32_t *ids;
            size_t n;
            if (lmc_tokenizer_encode(tok, text + starts[c], starts[c + 1] - starts[c], false, &ids, &n) != LMC_OK) {
                fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
                break;
            }
            ntok += n;
            lmc_tokenizer_free_ids(ids);
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("%s: load %.0f ms, encode %.2f MB/s, %zu tokens (1 thread, best of %d)\n", dir, load * 1e3, (double)len / best / 1e6,
           ntok, REPEAT);
    lmc_tokenizer_free(tok);
    free(text);
    free(starts);
    return 0;
}
