/* lmc train: LoRA fine-tuning on a JSONL dataset, the adapter written in
 * the PEFT layout. Progress goes to stderr (a bar redrawn in place on a
 * terminal, plain lines otherwise); --log-json prints one JSON object per
 * step on stdout. The first Ctrl-C stops after the current step, saves the
 * adapter so far to -o and exits with 130; a second one kills the process. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmc/finetune.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: lmc train -m DIR --data train.jsonl -o ADAPTER_DIR [options]\n"
            "  -m, --model DIR          model folder (bf16/f32 or MLX-quantised base; its weights stay frozen)\n"
            "  --data FILE              training data, JSON Lines: {\"text\"}, {\"prompt\",\"completion\"},\n"
            "                           {\"messages\"} or {\"input_ids\",\"loss_mask\"} per line\n"
            "  --valid FILE             validation data (same forms); loss every 50 steps and at the end\n"
            "  -o, --output DIR         where the adapter goes (adapter_config.json, adapter_model.safetensors)\n"
            "  --rank R                 LoRA rank (default 8)\n"
            "  --alpha A                LoRA alpha; scale = alpha / rank (default 16)\n"
            "  --dropout P              dropout on the adapters' input, 0 <= P < 1 (default 0)\n"
            "  --targets LIST           modules to adapt: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj\n"
            "                           or all-linear (default q_proj,v_proj)\n"
            "  --lr LR                  peak learning rate (default 1e-4)\n"
            "  --weight-decay WD        AdamW decoupled weight decay (default 0.01)\n"
            "  --lr-schedule KIND       constant, linear or cosine decay to 0 at the last step (default constant)\n"
            "  --warmup N               linear warm-up steps (default 0)\n"
            "  --grad-clip NORM         global gradient-norm clip, 0 = off (default 1)\n"
            "  --steps N                optimiser steps (default 100)\n"
            "  --batch B                examples per step (default 4)\n"
            "  --seq-len L              truncate examples to L tokens (default 512)\n"
            "  --grad-checkpoint        recompute each decoder layer in backward: less memory, one more forward\n"
            "  --dtype f32|bf16         dtype of the adapter weights (default f32)\n"
            "  --seed S                 shuffling, initialisation and dropout (default 0)\n"
            "  --adapter-init DIR       continue from a PEFT adapter folder (its rank, alpha, targets, dropout\n"
            "                           and dtype are used; --rank/--alpha/--targets/--dropout/--dtype not allowed)\n"
            "  --save-every N           also save to -o every N steps (default 0: only at the end)\n"
            "  --log-json               one JSON object per step on stdout: step, loss, lr, grad_norm, tokens,\n"
            "                           tokens_per_s, peak_memory, elapsed_s (and valid_loss when computed)\n"
            "  -t, --threads N          CPU threads (default: all cores)\n"
            "Ctrl-C saves the adapter trained so far to -o and exits with status 130.\n");
}

static lmc_cancel g_cancel;

static void on_sigint(int sig) {
    (void)sig;
    g_cancel.flag = 1; /* async-signal-safe; the loop checks it before each step */
}

typedef struct progress {
    bool tty, json;
    bool open; /* a progress bar line waits for its newline */
} progress;

static void format_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static bool on_step(void *user, const lmc_train_progress *p) {
    progress *pr = user;
    if (pr->json) {
        printf("{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6g,\"tokens\":%lld,\"tokens_per_s\":%.1f,"
               "\"peak_memory\":%zu,\"elapsed_s\":%.3f",
               (long long)p->step, p->loss, p->lr, p->grad_norm, (long long)p->tokens, p->tokens_per_s, p->peak_memory,
               p->elapsed_s);
        if (!isnan(p->valid_loss)) printf(",\"valid_loss\":%.6f", p->valid_loss);
        printf("}\n");
        fflush(stdout);
    }
    char eta[32];
    format_eta(p->eta_s, eta, sizeof eta);
    if (pr->tty) {
        const int width = 24;
        int filled = (int)(width * p->step / p->steps);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s\033[K", bar, (long long)p->step,
                (long long)p->steps, p->loss, p->tokens_per_s, eta);
        pr->open = true;
        if (!isnan(p->valid_loss)) {
            fprintf(stderr, "\nstep %lld: validation loss %.4f\n", (long long)p->step, p->valid_loss);
            pr->open = false;
        }
    } else {
        fprintf(stderr, "step %lld/%lld loss %.4f lr %.3g grad_norm %.3g %.0f tok/s peak %.1f MiB ETA %s\n",
                (long long)p->step, (long long)p->steps, p->loss, p->lr, p->grad_norm, p->tokens_per_s,
                p->peak_memory / 1048576.0, eta);
        if (!isnan(p->valid_loss)) fprintf(stderr, "step %lld: validation loss %.4f\n", (long long)p->step, p->valid_loss);
    }
    fflush(stderr);
    return true;
}

static lmc_dataset *load_data(lmc_model *m, const char *path) {
    lmc_dataset *ds = NULL;
    if (lmc_dataset_load(m, path, &ds) != LMC_OK) {
        fprintf(stderr, "lmc train: %s\n", lmc_last_error());
        return NULL;
    }
    if (lmc_dataset_skipped(ds))
        fprintf(stderr, "lmc train: %s: skipped %zu examples with nothing to learn\n", path, lmc_dataset_skipped(ds));
    return ds;
}

int cmd_train(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *valid_path = NULL, *out_dir = NULL, *init = NULL;
    lmc_lora_config lc = lmc_lora_config_default();
    lmc_train_config tc = lmc_train_config_default();
    lmc_load_options lo = lmc_load_options_default();
    bool json = false, lora_opts = false;
    long long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--grad-checkpoint")) {
            tc.grad_checkpoint = true;
            continue;
        }
        if (!strcmp(a, "--log-json")) {
            json = true;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "lmc train: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "lmc train: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--valid")) valid_path = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out_dir = v;
        else if (!strcmp(a, "--adapter-init")) init = v;
        else if (!strcmp(a, "--rank")) {
            if (!lmc_cli_int("train", a, v, 1, 65536, &n)) return 2;
            lc.rank = (int)n;
            lora_opts = true;
        } else if (!strcmp(a, "--alpha")) {
            if (!lmc_cli_float("train", a, v, 1e-9, 1e9, &lc.alpha)) return 2;
            lora_opts = true;
        } else if (!strcmp(a, "--dropout")) {
            if (!lmc_cli_float("train", a, v, 0.0, 0.999999, &lc.dropout)) return 2;
            lora_opts = true;
        } else if (!strcmp(a, "--targets")) {
            lc.targets = v;
            lora_opts = true;
        } else if (!strcmp(a, "--dtype")) {
            if (!lmc_cli_float_dtype("train", a, v, false, &lc.dtype)) return 2;
            lora_opts = true;
        } else if (!strcmp(a, "--lr")) {
            if (!lmc_cli_float("train", a, v, 0.0, 10.0, &tc.adamw.lr)) return 2;
        } else if (!strcmp(a, "--weight-decay")) {
            if (!lmc_cli_float("train", a, v, 0.0, 100.0, &tc.adamw.weight_decay)) return 2;
        } else if (!strcmp(a, "--lr-schedule")) {
            if (!strcmp(v, "constant")) tc.schedule.kind = LMC_LR_CONSTANT;
            else if (!strcmp(v, "linear")) tc.schedule.kind = LMC_LR_LINEAR;
            else if (!strcmp(v, "cosine")) tc.schedule.kind = LMC_LR_COSINE;
            else {
                fprintf(stderr, "lmc train: --lr-schedule expects constant, linear or cosine, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--warmup")) {
            if (!lmc_cli_int("train", a, v, 0, 1000000000, &n)) return 2;
            tc.schedule.warmup_steps = n;
        } else if (!strcmp(a, "--grad-clip")) {
            if (!lmc_cli_float("train", a, v, 0.0, 1e12, &tc.grad_clip)) return 2;
        } else if (!strcmp(a, "--steps")) {
            if (!lmc_cli_int("train", a, v, 1, 1000000000, &n)) return 2;
            tc.steps = n;
        } else if (!strcmp(a, "--batch")) {
            if (!lmc_cli_int("train", a, v, 1, 65536, &n)) return 2;
            tc.batch_size = (int)n;
        } else if (!strcmp(a, "--seq-len")) {
            if (!lmc_cli_int("train", a, v, 2, 1 << 24, &n)) return 2;
            tc.seq_len = n;
        } else if (!strcmp(a, "--seed")) {
            if (!lmc_cli_int("train", a, v, 0, INT64_MAX, &n)) return 2;
            tc.seed = lc.seed = (uint64_t)n;
        } else if (!strcmp(a, "--save-every")) {
            if (!lmc_cli_int("train", a, v, 0, 1000000000, &n)) return 2;
            tc.save_every = n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!lmc_cli_int("train", a, v, 1, 256, &n)) return 2;
            lo.threads = (int)n;
        } else {
            fprintf(stderr, "lmc train: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !data || !out_dir) {
        fprintf(stderr, "lmc train: -m DIR, --data FILE and -o ADAPTER_DIR are required\n");
        usage(stderr);
        return 2;
    }
    if (init && lora_opts) {
        fprintf(stderr, "lmc train: --adapter-init takes rank, alpha, targets, dropout and dtype from the adapter; "
                        "drop --rank/--alpha/--targets/--dropout/--dtype\n");
        return 2;
    }
    if (tc.schedule.warmup_steps > tc.steps) {
        fprintf(stderr, "lmc train: --warmup (%lld) is more than --steps (%lld)\n", (long long)tc.schedule.warmup_steps,
                (long long)tc.steps);
        return 2;
    }
    tc.save_dir = out_dir;
    /* Fail now rather than after training when -o cannot be written. */
    if ((mkdir(out_dir, 0777) != 0 && errno != EEXIST) || access(out_dir, W_OK) != 0) {
        fprintf(stderr, "lmc train: -o %s: cannot write there: %s\n", out_dir, strerror(errno));
        return 1;
    }

    lmc_model *m = NULL;
    if (lmc_model_load(model_dir, &lo, &m) != LMC_OK) {
        fprintf(stderr, "lmc train: %s\n", lmc_last_error());
        return 1;
    }
    int rc = 1;
    lmc_lora *lora = NULL;
    lmc_dataset *train = NULL, *valid = NULL;
    lmc_status st = init ? lmc_lora_load(m, init, &lora) : lmc_lora_create(m, &lc, &lora);
    if (st != LMC_OK) {
        /* An unknown target name is a usage error; anything else a runtime one. */
        fprintf(stderr, "lmc train: %s%s\n", init ? "--adapter-init: " : "", lmc_last_error());
        rc = st == LMC_ERR_INVALID_ARGUMENT && !init ? 2 : 1;
        goto done;
    }
    train = load_data(m, data);
    if (!train || (valid_path && !(valid = load_data(m, valid_path)))) goto done;
    lmc_lora_config used = lmc_lora_get_config(lora);
    fprintf(stderr, "lmc train: rank %d alpha %g LoRA on %s (%lld trainable parameters), %zu training examples%s, "
                    "%lld steps of %d\n",
            used.rank, used.alpha, used.targets, (long long)lmc_lora_num_elements(lora), lmc_dataset_size(train),
            valid ? ", validation set given" : "", (long long)tc.steps, tc.batch_size);

    progress pr = {.tty = isatty(fileno(stderr)) != 0, .json = json};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C gets the default action */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    st = lmc_train(lora, train, valid, &tc, on_step, &pr, &g_cancel);
    sigaction(SIGINT, &old, NULL);
    if (pr.open) fputc('\n', stderr);
    if (st == LMC_ERR_CANCELLED) {
        fprintf(stderr, "lmc train: interrupted: %s\n", lmc_last_error());
        rc = 130;
    } else if (st != LMC_OK) {
        fprintf(stderr, "lmc train: %s\n", lmc_last_error());
    } else if (lmc_lora_save(lora, out_dir) != LMC_OK) {
        fprintf(stderr, "lmc train: %s\n", lmc_last_error());
    } else {
        fprintf(stderr, "lmc train: adapter saved to %s\n", out_dir);
        rc = 0;
    }
done:
    lmc_dataset_free(train);
    lmc_dataset_free(valid);
    lmc_lora_free(lora);
    lmc_model_free(m);
    return rc;
}
