/* `lmc bench tokenizer -m DIR [-m DIR...] TEXT_FILE [--json]`: for each
 * tokenizer folder, the load time of lmc_tokenizer_load (median of LOADS
 * loads) and the encode throughput over TEXT_FILE on one thread (median of
 * PASSES passes over the whole file).
 *
 * Load times come three ways: `load` parses tokenizer.json with the
 * tokenizer cache off (LMC_CACHE_DIR=off), `first` is one load into an
 * empty cache folder of its own (parsing and writing the cache file), and
 * `cached` loads from that file (median of LOADS). The folder is removed
 * afterwards; the user's cache is neither read nor written.
 *
 * The text is cut into chunks of at least CHUNK bytes ending after a "\n",
 * one lmc_tokenizer_encode call per chunk without special tokens, exactly
 * as scripts/bench_tokenizer_hf.py cuts it for the Hugging Face library.
 * Times are wall-clock; the process CPU time is printed beside them, since
 * on a shared machine the wall time also counts waiting for a core. */
#include "bench_ops.h"
#include "bench_tokenizer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmc/tokenizer.h"

enum { CHUNK = 4096, LOADS = 5, PASSES = 5 };

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *text = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size + 1))) {
        *len = fread(text, 1, (size_t)size, f);
        if (*len != (size_t)size) {
            free(text);
            text = NULL;
        }
    }
    fclose(f);
    return text;
}

/* The folder's last path component, for the report. */
static const char *short_name(const char *dir, char *buf, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    snprintf(buf, cap, "%.*s", (int)(n - s), dir + s);
    return buf;
}

/* Prints s as a JSON string. */
static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

typedef struct text_chunks {
    const char *text;
    size_t len, n, *starts; /* chunk c is [starts[c], starts[c + 1]) */
} text_chunks;

/* One load of dir: wall and CPU seconds into *wall and *cpu; the tokenizer into *tok (freed first). */
static int timed_load(const char *dir, lmc_tokenizer **tok, double *wall, double *cpu) {
    lmc_tokenizer_free(*tok);
    *tok = NULL;
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (lmc_tokenizer_load(dir, tok) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    *wall = clock_s(CLOCK_MONOTONIC) - w0;
    *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return 0;
}

/* The number of files in a folder (the cache folder: 0 or 1). */
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

static void remove_cache_dir(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static int bench_one(const char *dir, const text_chunks *tc, bool json) {
    double wall[LOADS > PASSES ? LOADS : PASSES], cpu[LOADS > PASSES ? LOADS : PASSES];
    lmc_tokenizer *tok = NULL;
    /* Without the cache, then into an empty cache folder of the bench's own, then from it. */
    char *user_cache = getenv("LMC_CACHE_DIR") ? strdup(getenv("LMC_CACHE_DIR")) : NULL;
    char cache_dir[] = "/tmp/lmc-bench-cache-XXXXXX";
    int rc = 0;
    double load_ms = 0, load_cpu_ms = 0, first_ms = -1, cached_ms = -1, cached_cpu_ms = -1;
    setenv("LMC_CACHE_DIR", "off", 1);
    for (int i = 0; i < LOADS && !rc; i++) rc = timed_load(dir, &tok, &wall[i], &cpu[i]);
    if (!rc) {
        load_ms = median(wall, LOADS) * 1e3;
        load_cpu_ms = median(cpu, LOADS) * 1e3;
    }
    if (!rc && mkdtemp(cache_dir)) {
        setenv("LMC_CACHE_DIR", cache_dir, 1);
        rc = timed_load(dir, &tok, &wall[0], &cpu[0]);
        first_ms = wall[0] * 1e3;
        /* No file when tokenizer.json changed in the last seconds (see tokenizer_cache.c). */
        if (!rc && count_files(cache_dir) == 1) {
            for (int i = 0; i < LOADS && !rc; i++) rc = timed_load(dir, &tok, &wall[i], &cpu[i]);
            cached_ms = median(wall, LOADS) * 1e3;
            cached_cpu_ms = median(cpu, LOADS) * 1e3;
        }
        remove_cache_dir(cache_dir);
    }
    if (user_cache) setenv("LMC_CACHE_DIR", user_cache, 1);
    else unsetenv("LMC_CACHE_DIR");
    free(user_cache);
    if (rc) {
        lmc_tokenizer_free(tok);
        return rc;
    }

    size_t ntok = 0;
    for (int p = 0; p < PASSES; p++) {
        ntok = 0;
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t c = 0; c < tc->n; c++) {
            int32_t *ids;
            size_t n;
            if (lmc_tokenizer_encode(tok, tc->text + tc->starts[c], tc->starts[c + 1] - tc->starts[c], false, &ids, &n) !=
                LMC_OK) {
                fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
                lmc_tokenizer_free(tok);
                return 1;
            }
            ntok += n;
            lmc_tokenizer_free_ids(ids);
        }
        wall[p] = (double)tc->len / (clock_s(CLOCK_MONOTONIC) - w0) / 1e6;
        cpu[p] = (double)tc->len / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e6;
    }
    double mbps = median(wall, PASSES), cpu_mbps = median(cpu, PASSES);
    lmc_tokenizer_free(tok);

    char name[256];
    short_name(dir, name, sizeof name);
    if (json) {
        printf("{\"bench\":\"tokenizer\",\"name\":");
        json_str(name);
        printf(",\"load_ms\":%.1f,\"load_cpu_ms\":%.1f", load_ms, load_cpu_ms);
        /* null where no cache file was made */
        if (cached_ms >= 0) printf(",\"load_first_ms\":%.1f,\"load_cached_ms\":%.1f,\"load_cached_cpu_ms\":%.1f", first_ms, cached_ms, cached_cpu_ms);
        else printf(",\"load_first_ms\":null,\"load_cached_ms\":null,\"load_cached_cpu_ms\":null");
        printf(",\"encode_mbps\":%.3f,\"encode_cpu_mbps\":%.3f,\"tokens\":%zu,\"bytes\":%zu,\"threads\":1}\n", mbps, cpu_mbps, ntok,
               tc->len);
    } else {
        printf("%-10s load %7.1f ms (cpu %7.1f ms)   ", name, load_ms, load_cpu_ms);
        if (cached_ms >= 0) printf("cached %6.1f ms (cpu %6.1f ms; first %6.1f ms)   ", cached_ms, cached_cpu_ms, first_ms);
        else printf("cached    n/a (no cache file: tokenizer.json changed seconds ago?)   ");
        printf("encode %7.2f MB/s (cpu-time %7.2f MB/s)   %zu tokens\n", mbps, cpu_mbps, ntok);
    }
    fflush(stdout);
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: lmc bench tokenizer -m DIR [-m DIR...] TEXT_FILE [--json]\n"
                 "  load time of DIR's tokenizer (median of %d loads; without the tokenizer cache,\n"
                 "  then from a cache file made for the run: `cached`, and `first`, the load that\n"
                 "  wrote it) and encode throughput over TEXT_FILE on one thread (median of %d\n"
                 "  passes, chunks of >= %d bytes cut at \"\\n\")\n",
            LOADS, PASSES, CHUNK);
}

int lmc_bench_tokenizer(int argc, char **argv) {
    const char *dirs[64], *file = NULL;
    int ndirs = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            if (ndirs == 64) { fprintf(stderr, "lmc bench: at most 64 tokenizers\n"); return 2; }
            dirs[ndirs++] = argv[++i];
        } else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else {
            fprintf(stderr, "lmc bench: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!ndirs || !file) {
        fprintf(stderr, "lmc bench: tokenizer needs -m DIR and a text file\n");
        usage(stderr);
        return 2;
    }
    text_chunks tc = {0};
    char *text = read_text(file, &tc.len);
    if (!text) {
        fprintf(stderr, "lmc bench: cannot read %s\n", file);
        return 1;
    }
    tc.text = text;
    tc.starts = malloc((tc.len / CHUNK + 2) * sizeof *tc.starts);
    if (!tc.starts) {
        fprintf(stderr, "lmc bench: out of memory\n");
        free(text);
        return 1;
    }
    for (size_t at = 0; at < tc.len;) {
        tc.starts[tc.n++] = at;
        size_t end = at + CHUNK < tc.len ? at + CHUNK : tc.len;
        while (end < tc.len && text[end - 1] != '\n') end++;
        at = end;
    }
    tc.starts[tc.n] = tc.len;

    char model[256];
    lmc_bench_cpu_name(model, sizeof model);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double loads[3];
    lmc_bench_load_average(loads);
    double la = loads[0];
    if (json) {
        printf("{\"bench\":\"machine\",\"cpu\":");
        json_str(model);
        printf(",\"cpus\":%ld,\"loadavg\":%.2f,\"version\":\"%s\"}\n", ncpu, la, lmc_version());
        printf("{\"bench\":\"text\",\"file\":");
        json_str(file);
        printf(",\"bytes\":%zu,\"chunks\":%zu}\n", tc.len, tc.n);
    } else {
        printf("machine: %s, %ld cpus, load average %.2f (lmc %s)\n", model, ncpu, la, lmc_version());
        printf("text: %s, %.2f MB in %zu chunks; load: median of %d, encode: median of %d passes, 1 thread\n", file,
               (double)tc.len / 1e6, tc.n, LOADS, PASSES);
    }
    int rc = 0;
    for (int i = 0; i < ndirs && rc == 0; i++) rc = bench_one(dirs[i], &tc, json);
    free(tc.starts);
    free(text);
    return rc;
}
