/* The LoRA training loop end to end on CPU, on the golden tiny Qwen 3 model
 * (tests/model_fixture.h: random weights large enough for sharp logits,
 * vocabulary 2048, Qwen 3's real tokenizer; the texts below use only ids
 * under 2048):
 * the loss goes down on a small repetitive text, runs are deterministic by
 * seed, the schedule gives lmc_lr_at's values, validation is reported,
 * a cancel saves the adapter, evaluation matches cross-entropy computed
 * here from the model's logits, and `lmc train` + `lmc generate --adapter`
 * work from the command line. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmc/finetune.h"
#include "lmc/ops.h"
#include "model_fixture.h"
#include "test_util.h"

static char g_tmp[64], *g_model_dir, g_train[160], g_valid[160];
static lmc_model *g_model;
static lmc_dataset *g_train_ds, *g_valid_ds;

#define MAX_STEPS 64
typedef struct record {
    int n;
    lmc_train_progress p[MAX_STEPS];
    int stop_at; /* return false at this step (0: never) */
} record;

static bool on_step(void *user, const lmc_train_progress *p) {
    record *r = user;
    if (r->n < MAX_STEPS) r->p[r->n++] = *p;
    return r->stop_at == 0 || p->step < r->stop_at;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static lmc_lora *new_lora(uint64_t seed) {
    lmc_lora_config lc = lmc_lora_config_default();
    lc.seed = seed;
    lmc_lora *l = NULL;
    lmc_status st = lmc_lora_create(g_model, &lc, &l);
    CHECKF(st == LMC_OK, "%s", lmc_last_error());
    return l;
}

static lmc_train_config small_config(int64_t steps) {
    lmc_train_config tc = lmc_train_config_default();
    tc.steps = steps;
    tc.batch_size = 2;
    tc.seq_len = 48;
    tc.adamw.lr = 1e-2;
    tc.adamw.weight_decay = 0.0;
    tc.valid_every = 0;
    return tc;
}

static int run(lmc_lora *l, const lmc_dataset *train, const lmc_dataset *valid, const lmc_train_config *tc, record *r) {
    r->n = 0;
    lmc_status st = lmc_train(l, train, valid, tc, on_step, r, NULL);
    return st;
}

/* The loss falls clearly on a small repetitive text, and a second run with
 * the same seed gives the same losses bit for bit. */
static void test_loss_down_and_deterministic(void) {
    const lmc_dataset *train = g_train_ds;
#ifdef LMC_SANITIZED
    const int64_t steps = 12; /* the sanitiser build checks memory more than convergence */
#else
    const int64_t steps = 40;
#endif
    lmc_train_config tc = small_config(steps);
    tc.seed = 7;
    record a = {0}, b = {0};
    lmc_lora *l = new_lora(7);
    CHECKF(run(l, train, NULL, &tc, &a) == LMC_OK, "%s", lmc_last_error());
    lmc_lora_free(l);
    CHECK(a.n == steps);
    double first = a.p[0].loss, last = a.p[a.n - 1].loss;
    fprintf(stderr, "  loss %.4f -> %.4f over %lld steps, %.0f tok/s, peak %.1f MiB\n", first, last, (long long)steps,
            a.p[a.n - 1].tokens_per_s, a.p[a.n - 1].peak_memory / 1048576.0);
#ifndef LMC_SANITIZED
    CHECKF(last < 0.5 * first, "loss %.4f -> %.4f", first, last);
#else
    CHECKF(last < first, "loss %.4f -> %.4f", first, last);
#endif
    for (int i = 0; i < a.n; i++) {
        CHECK(a.p[i].step == i + 1 && a.p[i].steps == steps);
        CHECK(isfinite(a.p[i].loss) && a.p[i].grad_norm > 0 && a.p[i].tokens > 0 && a.p[i].tokens_per_s > 0);
        CHECK(isnan(a.p[i].valid_loss) && a.p[i].peak_memory > 0);
    }
    l = new_lora(7);
    CHECKF(run(l, train, NULL, &tc, &b) == LMC_OK, "%s", lmc_last_error());
    lmc_lora_free(l);
    CHECK(b.n == a.n);
    bool same = b.n == a.n;
    for (int i = 0; same && i < a.n; i++) same = a.p[i].loss == b.p[i].loss && a.p[i].grad_norm == b.p[i].grad_norm;
    CHECKF(same, "two runs with seed 7 differ");
    /* Another seed shuffles (and initialises) differently. */
    tc.seed = 8;
    l = new_lora(8);
    record c = {0};
    tc.steps = 3;
    CHECK(run(l, train, NULL, &tc, &c) == LMC_OK);
    lmc_lora_free(l);
    CHECK(c.n == 3 && (c.p[1].loss != a.p[1].loss || c.p[2].loss != a.p[2].loss));
}

/* Gradient checkpointing gives the same losses; bf16 adapters (with
 * dropout) train too. */
static void test_checkpoint_and_bf16(void) {
    lmc_train_config tc = small_config(4);
    record a = {0}, b = {0};
    lmc_lora *l = new_lora(11);
    CHECK(run(l, g_train_ds, NULL, &tc, &a) == LMC_OK);
    lmc_lora_free(l);
    tc.grad_checkpoint = true;
    l = new_lora(11);
    CHECKF(run(l, g_train_ds, NULL, &tc, &b) == LMC_OK, "%s", lmc_last_error());
    lmc_lora_free(l);
    CHECK(a.n == 4 && b.n == 4);
    for (int i = 0; i < a.n && i < b.n; i++) CHECK_CLOSE(b.p[i].loss, a.p[i].loss, 1e-5, 1e-5);
    lmc_lora_config lc = lmc_lora_config_default();
    lc.dtype = LMC_BF16;
    lc.dropout = 0.1;
    CHECKF(lmc_lora_create(g_model, &lc, &l) == LMC_OK, "%s", lmc_last_error());
    tc = small_config(12);
    CHECKF(run(l, g_train_ds, NULL, &tc, &a) == LMC_OK, "%s", lmc_last_error());
    CHECKF(a.n == 12 && a.p[11].loss < a.p[0].loss, "bf16: loss %g -> %g", a.p[0].loss, a.p[a.n - 1].loss);
    CHECK(lmc_array_dtype(lmc_lora_params(l)[0]) == LMC_BF16);
    lmc_lora_free(l);
}

/* Every step's learning rate is lmc_lr_at(schedule, step - 1) with the peak
 * from adamw.lr and total_steps = steps. */
static void test_schedule(void) {
    const lmc_dataset *train = g_train_ds;
    lmc_train_config tc = small_config(8);
    tc.schedule.kind = LMC_LR_COSINE;
    tc.schedule.warmup_steps = 3;
    tc.adamw.lr = 2e-3;
    tc.grad_clip = 1e-3; /* clipping on: the norm reported is before clipping */
    lmc_lora *l = new_lora(1);
    record r = {0};
    CHECKF(run(l, train, NULL, &tc, &r) == LMC_OK, "%s", lmc_last_error());
    lmc_lora_free(l);
    lmc_lr_schedule s = lmc_lr_schedule_default();
    s.kind = LMC_LR_COSINE;
    s.lr = 2e-3;
    s.warmup_steps = 3;
    s.total_steps = 8;
    CHECK(r.n == 8);
    for (int i = 0; i < r.n; i++) CHECK_CLOSE(r.p[i].lr, lmc_lr_at(&s, i), 0, 1e-12);
    CHECK(r.p[0].lr == 0.0 && r.p[3].lr == 2e-3);
    CHECK(r.p[1].grad_norm > 1e-3);
}

/* Validation every 3 steps and at the end; the last one equals
 * lmc_evaluate on the trained adapter. */
static void test_validation(void) {
    const lmc_dataset *train = g_train_ds, *valid = g_valid_ds;
    lmc_train_config tc = small_config(7);
    tc.valid_every = 3;
    lmc_lora *l = new_lora(2);
    record r = {0};
    CHECKF(run(l, train, valid, &tc, &r) == LMC_OK, "%s", lmc_last_error());
    CHECK(r.n == 7);
    for (int i = 0; i < r.n; i++) {
        bool want = r.p[i].step % 3 == 0 || r.p[i].step == 7;
        CHECKF(want == !isnan(r.p[i].valid_loss), "step %lld valid_loss %g", (long long)r.p[i].step, r.p[i].valid_loss);
    }
    double vl = NAN;
    CHECK(lmc_evaluate(l, valid, tc.batch_size, tc.seq_len, &vl) == LMC_OK);
    CHECK(r.n == 7 && vl == r.p[6].valid_loss && vl > 0);
    /* Padding and batching do not change the mean. */
    double v1 = NAN, v3 = NAN;
    CHECK(lmc_evaluate(l, valid, 1, tc.seq_len, &v1) == LMC_OK);
    CHECK(lmc_evaluate(l, valid, 3, tc.seq_len, &v3) == LMC_OK);
    CHECK_CLOSE(v1, vl, 1e-5, 1e-5);
    CHECK_CLOSE(v3, vl, 1e-5, 1e-5);
    lmc_lora_free(l);
}

/* A fresh adapter (B = 0) leaves the model unchanged, so lmc_evaluate on one
 * example is the masked cross-entropy of the plain model's logits, shifted:
 * the logits at t score ids[t + 1] where mask[t + 1] is set. */
static void test_evaluate_matches_logits(void) {
    char path[200];
    snprintf(path, sizeof path, "%s/one.jsonl", g_tmp);
    const int32_t ids[8] = {983, 387, 476, 537, 311, 387, 11, 429};
    const uint8_t mask[8] = {1, 0, 1, 1, 0, 1, 1, 1};
    write_file(path, "{\"input_ids\": [983, 387, 476, 537, 311, 387, 11, 429], \"loss_mask\": [1, 0, 1, 1, 0, 1, 1, 1]}\n");
    lmc_dataset *ds;
    CHECKF(lmc_dataset_load(g_model, path, &ds) == LMC_OK, "%s", lmc_last_error());
    lmc_array *logits = lmc_model_logits(g_model, ids, 8, true);
    CHECK(logits && lmc_array_ndim(logits) == 2 && lmc_array_dim(logits, 0) == 8);
    if (!ds || !logits) return;
    int64_t V = lmc_array_dim(logits, 1);
    float *z = malloc((size_t)(8 * V) * sizeof *z);
    CHECK(lmc_array_read(logits, LMC_F32, z, (size_t)(8 * V)) == LMC_OK);
    double sum = 0;
    int count = 0;
    for (int t = 0; t + 1 < 8; t++) {
        if (!mask[t + 1]) continue;
        double mx = -INFINITY, se = 0;
        for (int64_t v = 0; v < V; v++) mx = fmax(mx, z[t * V + v]);
        for (int64_t v = 0; v < V; v++) se += exp(z[t * V + v] - mx);
        sum += mx + log(se) - z[t * V + ids[t + 1]];
        count++;
    }
    free(z);
    lmc_array_free(logits);
    lmc_lora *l = new_lora(3);
    double loss = NAN;
    CHECKF(lmc_evaluate(l, ds, 4, 64, &loss) == LMC_OK, "%s", lmc_last_error());
    CHECK_CLOSE(loss, sum / count, 1e-4, 1e-4);
    /* Truncation to 4 tokens keeps targets 2 and 3 only. */
    double l4 = NAN;
    CHECK(lmc_evaluate(l, ds, 1, 4, &l4) == LMC_OK);
    CHECK(isfinite(l4) && l4 != loss);
    CHECK(lmc_evaluate(l, ds, 0, 4, &l4) == LMC_ERR_INVALID_ARGUMENT);
    lmc_lora_free(l);
    lmc_dataset_free(ds);
}

static bool file_exists(const char *dir, const char *name) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

/* Reads all parameters into one float buffer. */
static float *read_params(const lmc_lora *l, int64_t *count) {
    int64_t total = lmc_lora_num_elements(l);
    float *buf = malloc((size_t)total * sizeof *buf), *p = buf;
    for (int i = 0; i < lmc_lora_num_params(l); i++) {
        const lmc_array *a = lmc_lora_params(l)[i];
        lmc_array_read(a, LMC_F32, p, (size_t)lmc_array_size(a));
        p += lmc_array_size(a);
    }
    *count = total;
    return buf;
}

/* A callback returning false stops the run: the adapter so far is saved to
 * save_dir and reloads with the same values; a cancel requested before the
 * first step saves too; periodic saves write the files. */
static void test_cancel_and_saves(void) {
    const lmc_dataset *train = g_train_ds;
    char dir[200];
    snprintf(dir, sizeof dir, "%s/cancelled", g_tmp);
    lmc_train_config tc = small_config(10);
    tc.save_dir = dir;
    lmc_lora *l = new_lora(4);
    record r = {.stop_at = 3};
    CHECK(run(l, train, NULL, &tc, &r) == LMC_ERR_CANCELLED);
    CHECK(r.n == 3);
    CHECKF(strstr(lmc_last_error(), dir) != NULL, "%s", lmc_last_error());
    CHECK(file_exists(dir, "adapter_config.json") && file_exists(dir, "adapter_model.safetensors"));
    int64_t n1 = 0, n2 = 0;
    float *trained = read_params(l, &n1);
    lmc_lora_free(l);
    CHECKF(lmc_lora_load(g_model, dir, &l) == LMC_OK, "%s", lmc_last_error());
    if (l) {
        float *loaded = read_params(l, &n2);
        CHECK(n1 == n2 && memcmp(trained, loaded, (size_t)n1 * sizeof *trained) == 0);
        free(loaded);
        lmc_lora_free(l);
    }
    free(trained);

    /* cancel before the first step, through the cancel handle */
    snprintf(dir, sizeof dir, "%s/cancel0", g_tmp);
    tc.save_dir = dir;
    lmc_cancel cancel = {0};
    lmc_cancel_request(&cancel);
    l = new_lora(4);
    r = (record){0};
    CHECK(lmc_train(l, train, NULL, &tc, on_step, &r, &cancel) == LMC_ERR_CANCELLED);
    CHECK(r.n == 0 && file_exists(dir, "adapter_model.safetensors"));
    /* no save_dir: cancelled, and the message says nothing was saved */
    tc.save_dir = NULL;
    CHECK(lmc_train(l, train, NULL, &tc, on_step, &r, &cancel) == LMC_ERR_CANCELLED);
    CHECK(strstr(lmc_last_error(), "not saved") != NULL);

    /* periodic saves */
    snprintf(dir, sizeof dir, "%s/periodic", g_tmp);
    tc = small_config(2);
    tc.save_every = 2;
    tc.save_dir = dir;
    CHECK(lmc_train(l, train, NULL, &tc, NULL, NULL, NULL) == LMC_OK);
    CHECK(file_exists(dir, "adapter_config.json") && file_exists(dir, "adapter_model.safetensors"));

    /* configuration errors */
    tc = small_config(0);
    CHECK(lmc_train(l, train, NULL, &tc, NULL, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "steps") != NULL);
    tc = small_config(1);
    tc.seq_len = 1;
    CHECK(lmc_train(l, train, NULL, &tc, NULL, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    tc = small_config(1);
    tc.grad_clip = -1;
    CHECK(lmc_train(l, train, NULL, &tc, NULL, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    lmc_lora_free(l);
}

static int sh(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* `lmc train --log-json` learns the text well enough that `lmc generate
 * --adapter` continues a training prompt with the learned words; flags out
 * of range exit 2 naming the flag. */
static void test_cli(void) {
    char cmd[2048], out[200], log[200], line[1024];
#ifdef LMC_SANITIZED
    const int steps = 10; /* too few to learn the text: the sanitiser build checks the paths, not the result */
#else
    const int steps = 40;
#endif
    snprintf(out, sizeof out, "%s/cli-adapter", g_tmp);
    snprintf(log, sizeof log, "%s/log.jsonl", g_tmp);
    snprintf(cmd, sizeof cmd,
             "%s/lmc train -m %s --data %s --valid %s --steps %d --batch 2 --seq-len 48 --lr 1e-2 --weight-decay 0 "
             "--targets q_proj,k_proj,v_proj --lr-schedule linear --warmup 2 --seed 5 --log-json -t 1 -o %s > %s 2>/dev/null",
             LMC_BUILD_DIR, g_model_dir, g_train, g_valid, steps, out, log);
    CHECK(sh(cmd) == 0);
    FILE *f = fopen(log, "r");
    int lines = 0;
    double first = NAN, last = NAN;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        CHECKF(strstr(line, "\"step\":") && strstr(line, "\"loss\":") && strstr(line, "\"lr\":") &&
                   strstr(line, "\"grad_norm\":") && strstr(line, "\"tokens_per_s\":") && strstr(line, "\"peak_memory\":"),
               "%s", line);
        const char *l = strstr(line, "\"loss\":");
        if (l) last = atof(l + 7);
        if (lines == 1) {
            first = last;
            CHECK(strstr(line, "\"lr\":0,") != NULL); /* warm-up starts at 0 */
        }
        CHECK((strstr(line, "\"valid_loss\":") != NULL) == (lines == steps));
    }
    if (f) fclose(f);
    CHECK(lines == steps);
    CHECKF(last < (steps >= 40 ? 0.5 : 1.0) * first, "loss %g -> %g", first, last);
    CHECK(file_exists(out, "adapter_config.json") && file_exists(out, "adapter_model.safetensors"));
    snprintf(cmd, sizeof cmd, "%s/lmc generate -m %s --adapter %s -p 'to be or' --max-tokens 3 --temperature 0 2>/dev/null",
             LMC_BUILD_DIR, g_model_dir, out);
    CHECK(run_command(cmd, line, sizeof line) == 0);
    CHECKF(steps < 40 || strncmp(line, " not to be", 10) == 0, "generated \"%s\"", line);
    /* continue from the adapter */
    snprintf(cmd, sizeof cmd, "%s/lmc train -m %s --data %s --steps 1 --seq-len 32 --adapter-init %s -o %s/cont 2>/dev/null >/dev/null",
             LMC_BUILD_DIR, g_model_dir, g_train, out, g_tmp);
    CHECK(sh(cmd) == 0);
    const char *bad[][2] = {
        {"--rank 0", "--rank"}, {"--dropout 1", "--dropout"}, {"--lr-schedule step", "--lr-schedule"},
        {"--dtype f16", "--dtype"}, {"--steps 0", "--steps"}, {"--seq-len 1", "--seq-len"}, {"--grad-clip -1", "--grad-clip"},
        {"--batch 0", "--batch"}, {"--targets q_proj,nope", "nope"}, {"--warmup 9", "--warmup"},
        {"--adapter-init x --rank 4", "--adapter-init"}, {"--bogus", "--bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s/lmc train -m %s --data %s --steps 3 %s -o %s/x > %s 2>&1", LMC_BUILD_DIR, g_model_dir,
                 g_train, bad[i][0], g_tmp, log);
        int rc = sh(cmd);
        f = fopen(log, "r");
        size_t got = f ? fread(line, 1, sizeof line - 1, f) : 0;
        line[got] = 0;
        if (f) fclose(f);
        CHECKF(rc == 2 && strstr(line, bad[i][1]), "%s: exit %d, \"%s\"", bad[i][0], rc, line);
    }
    /* -o that cannot be written fails before training */
    snprintf(cmd, sizeof cmd, "%s/lmc train -m %s --data %s -o %s/adapter_config.json/x > %s 2>&1", LMC_BUILD_DIR, g_model_dir,
             g_train, out, log);
    CHECK(sh(cmd) == 1);
    /* the training benchmark runs (tiny sizes) */
    snprintf(cmd, sizeof cmd, "%s/lmc bench train -m %s --seq-len 16 --steps 1 -t 1 > %s 2>&1", LMC_BUILD_DIR, g_model_dir, log);
    CHECK(sh(cmd) == 0);
    f = fopen(log, "r");
    size_t got = f ? fread(line, 1, sizeof line - 1, f) : 0;
    line[got] = 0;
    if (f) fclose(f);
    CHECKF(strstr(line, "machine:") && strstr(line, "no checkpointing:") && strstr(line, " checkpointing:") &&
               strstr(line, "tokens/s"), "%s", line);
    /* missing data file: a runtime error naming it */
    snprintf(cmd, sizeof cmd, "%s/lmc train -m %s --data %s/none.jsonl -o %s/x > %s 2>&1", LMC_BUILD_DIR, g_model_dir, g_tmp,
             g_tmp, log);
    CHECK(sh(cmd) == 1);
}

/* Ctrl-C during `lmc train`: the adapter so far is saved to -o, the message
 * says where, and the exit status is 130. */
static void test_cli_interrupt(void) {
    char lmc[300], out[200], err[200], line[1024];
    snprintf(lmc, sizeof lmc, "%s/lmc", LMC_BUILD_DIR);
    snprintf(out, sizeof out, "%s/interrupted", g_tmp);
    snprintf(err, sizeof err, "%s/interrupted.err", g_tmp);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fds[1], 1);
        dup2(e, 2);
        close(fds[0]);
        close(fds[1]);
        execl(lmc, "lmc", "train", "-m", g_model_dir, "--data", g_train, "--steps", "1000000", "--seq-len", "32", "-t", "1",
              "--log-json", "-o", out, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    bool stepped = f && fgets(line, sizeof line, f) != NULL; /* one step done: the handler is installed */
    kill(pid, SIGINT);
    while (f && fgets(line, sizeof line, f)) {
    }
    if (f) fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(stepped);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status %d", status);
    CHECK(file_exists(out, "adapter_config.json") && file_exists(out, "adapter_model.safetensors"));
    f = fopen(err, "r");
    size_t got = f ? fread(line, 1, sizeof line - 1, f) : 0;
    line[got] = 0;
    if (f) fclose(f);
    CHECKF(strstr(line, "saved to") && strstr(line, out), "%s", line);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lmc-train-XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    char cmd[1024];
    g_model_dir = model_fixture_dir("qwen3");
    if (!g_model_dir || lmc_model_load(g_model_dir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "cannot load the golden qwen3 model: %s\n", lmc_last_error());
        return 1;
    }
    lmc_set_num_threads(2);
    /* A small repetitive text, in several lines and a prompt/completion pair. */
    snprintf(g_train, sizeof g_train, "%s/train.jsonl", g_tmp);
    snprintf(g_valid, sizeof g_valid, "%s/valid.jsonl", g_tmp);
    write_file(g_train, "{\"text\": \"to be or not to be, that is all. we are what we are, and so it is.\"}\n"
                        "{\"text\": \"we are what we are, and so it is. to be or not to be, that is all.\"}\n"
                        "{\"text\": \"so it is, and we are what we are. to be or not to be\"}\n"
                        "{\"prompt\": \"to be or\", \"completion\": \" not to be, that is all.\"}\n");
    write_file(g_valid, "{\"text\": \"to be or not to be, and so it is.\"}\n"
                        "{\"text\": \"we are what we are\"}\n"
                        "{\"prompt\": \"we are\", \"completion\": \" what we are, and so it is.\"}\n");
    lmc_dataset *train = NULL, *valid = NULL;
    CHECKF(lmc_dataset_load(g_model, g_train, &train) == LMC_OK, "%s", lmc_last_error());
    CHECKF(lmc_dataset_load(g_model, g_valid, &valid) == LMC_OK, "%s", lmc_last_error());
    if (train && valid) {
        g_train_ds = train;
        g_valid_ds = valid;
        RUN(test_loss_down_and_deterministic);
        RUN(test_checkpoint_and_bf16);
        RUN(test_schedule);
        RUN(test_validation);
        RUN(test_cancel_and_saves);
    }
    RUN(test_evaluate_matches_logits);
    lmc_dataset_free(train);
    lmc_dataset_free(valid);
    lmc_model_free(g_model);
    RUN(test_cli);
    RUN(test_cli_interrupt);
    model_fixture_cleanup(g_model_dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return TEST_REPORT();
}
