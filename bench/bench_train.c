/* lmc bench train -m DIR [-m DIR ...]: LoRA training throughput and memory.
 *
 * For each model folder (e.g. a Qwen3-0.6B-shaped one from `lmc make-model
 * --preset qwen3-0.6b`, bf16, and the same with --q4), trains a fresh
 * rank-8 adapter on q_proj,v_proj (by default) over batches of random token
 * ids of --seq-len tokens, all learned, through lmc_train: without and then
 * with gradient checkpointing. The first step is a warm-up and is not
 * timed; tokens/s counts the input positions of the timed steps, in wall
 * time and per CPU-second of the process (all threads; on a busy machine
 * the figure closer to a quiet machine's with one thread). Peak
 * memory is lmc's high-water mark of allocated bytes during the run (the
 * memory-mapped weights are reported apart, as mapped). */
#include "bench_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_model.h"
#include "bench_ops.h"
#include "lmc/lmc.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out, "usage: lmc bench train -m DIR [-m DIR ...] [options]\n"
                 "  -m, --model DIR      model folder (repeatable: e.g. a bf16 and a 4-bit one)\n"
                 "  -t, --threads N      CPU threads (default: all cores)\n"
                 "  --seq-len L          tokens per example (default 512)\n"
                 "  --batch B            examples per step (default 1)\n"
                 "  --steps N            timed steps after one warm-up step (default 2)\n"
                 "  --rank R             LoRA rank (default 8)\n"
                 "  --targets LIST       adapted modules (default q_proj,v_proj)\n"
                 "  --only plain|checkpoint  run one of the two\n");
}

typedef struct timing {
    double first_end, last_end; /* elapsed seconds after the warm-up step and after the last */
    double cpu_first, cpu_last; /* the process's CPU seconds at the same points */
    double loss;
    size_t peak;
} timing;

static bool on_step(void *user, const lmc_train_progress *p) {
    timing *t = user;
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    double cpu = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    if (p->step == 1) t->first_end = p->elapsed_s, t->cpu_first = cpu;
    t->last_end = p->elapsed_s;
    t->cpu_last = cpu;
    t->loss = p->loss;
    if (p->peak_memory > t->peak) t->peak = p->peak_memory;
    return true;
}

/* A JSONL file of `batch` examples of len random ids in [1, vocab), every target learned. */
static bool write_data(const char *path, int batch, int64_t len, int64_t vocab) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int b = 0; b < batch; b++) {
        fputs("{\"input_ids\": [", f);
        for (int64_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            fprintf(f, "%s%lld", i ? "," : "", (long long)(1 + x % (uint64_t)(vocab - 1)));
        }
        fputs("], \"loss_mask\": [", f);
        for (int64_t i = 0; i < len; i++) fputs(i ? ",1" : "0", f);
        fputs("]}\n", f);
    }
    return fclose(f) == 0;
}

static int bench_one(const char *dir, const lmc_load_options *lo, const lmc_lora_config *lc, int batch, int64_t seq_len,
                     int64_t steps, const char *only) {
    lmc_model *m = NULL;
    if (lmc_model_load(dir, lo, &m) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        return 1;
    }
    lmc_bench_settle_weights(m);
    lmc_model_info info;
    lmc_model_get_info(m, &info);
    printf("model: %s (%s, %lld layers, hidden %lld, vocab %lld, %s%s, %.0f MiB of weights)\n", dir, info.architecture,
           (long long)info.num_layers, (long long)info.hidden_size, (long long)info.vocab_size,
           info.quant_bits ? "quantised " : "", info.quant_bits ? (info.quant_bits == 4 ? "4-bit" : "8-bit") : info.dtype,
           (double)info.weight_bytes / 1048576.0);
    char path[] = "/tmp/lmc-bench-train-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || !write_data(path, batch, seq_len, info.vocab_size)) {
        fprintf(stderr, "lmc bench: cannot write a temporary dataset\n");
        if (fd >= 0) close(fd), unlink(path);
        lmc_model_free(m);
        return 1;
    }
    close(fd);
    lmc_dataset *ds = NULL;
    int rc = 0;
    if (lmc_dataset_load(m, path, &ds) != LMC_OK) {
        fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
        rc = 1;
    }
    unlink(path);
    for (int ck = 0; ck < 2 && rc == 0; ck++) {
        if (only && strcmp(only, ck ? "checkpoint" : "plain") != 0) continue;
        lmc_lora *l = NULL;
        if (lmc_lora_create(m, lc, &l) != LMC_OK) {
            fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
            rc = 1;
            break;
        }
        lmc_train_config tc = lmc_train_config_default();
        tc.steps = steps + 1;
        tc.batch_size = batch;
        tc.seq_len = seq_len;
        tc.grad_checkpoint = ck != 0;
        timing t = {0};
        if (lmc_train(l, ds, NULL, &tc, on_step, &t, NULL) != LMC_OK) {
            fprintf(stderr, "lmc bench: %s\n", lmc_last_error());
            rc = 1;
        } else {
            double s = t.last_end - t.first_end, cpu = t.cpu_last - t.cpu_first;
            double tokens = (double)steps * batch * (double)(seq_len - 1);
            printf("  rank %d on %s, %-16s %8.1f tokens/s  %8.1f tokens/CPU-s  %7.2f s/step  peak %8.1f MiB allocated  "
                   "(+%.0f MiB mapped)  loss %.3f\n",
                   lc->rank, lc->targets, ck ? "checkpointing:" : "no checkpointing:", tokens / s, tokens / cpu,
                   s / (double)steps,
                   (double)t.peak / 1048576.0, (double)lmc_memory(LMC_CPU).mapped_bytes / 1048576.0, t.loss);
        }
        fflush(stdout);
        lmc_lora_free(l);
    }
    lmc_dataset_free(ds);
    lmc_model_free(m);
    return rc;
}

int lmc_bench_train(int argc, char **argv) {
    const char *dirs[8];
    int n_dirs = 0;
    lmc_load_options lo = lmc_load_options_default();
    lmc_lora_config lc = lmc_lora_config_default();
    long long seq_len = 512, batch = 1, steps = 2, v;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "lmc bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && n_dirs < 8) dirs[n_dirs++] = val;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!lmc_cli_int("bench", a, val, 1, 256, &v)) return 2;
            lo.threads = (int)v;
        } else if (!strcmp(a, "--seq-len")) {
            if (!lmc_cli_int("bench", a, val, 2, 1 << 20, &seq_len)) return 2;
        } else if (!strcmp(a, "--batch")) {
            if (!lmc_cli_int("bench", a, val, 1, 4096, &batch)) return 2;
        } else if (!strcmp(a, "--steps")) {
            if (!lmc_cli_int("bench", a, val, 1, 1000000, &steps)) return 2;
        } else if (!strcmp(a, "--rank")) {
            if (!lmc_cli_int("bench", a, val, 1, 65536, &v)) return 2;
            lc.rank = (int)v;
        } else if (!strcmp(a, "--targets")) lc.targets = val;
        else if (!strcmp(a, "--only") && (!strcmp(val, "plain") || !strcmp(val, "checkpoint"))) only = val;
        else {
            fprintf(stderr, "lmc bench: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (n_dirs == 0) {
        fprintf(stderr, "lmc bench train: -m DIR is required\n");
        usage(stderr);
        return 2;
    }
    if (lo.threads > 0) lmc_set_num_threads(lo.threads);
    lmc_bench_print_machine();
    printf("LoRA training: batch %lld x seq len %lld, %lld timed steps after 1 warm-up, adapter f32\n", batch, seq_len,
           steps);
    fflush(stdout);
    int rc = 0;
    for (int i = 0; i < n_dirs && rc == 0; i++)
        rc = bench_one(dirs[i], &lo, &lc, (int)batch, seq_len, steps, only);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) printf("peak resident set of the process: %.0f MiB\n", ru.ru_maxrss / 1024.0);
    return rc;
}
