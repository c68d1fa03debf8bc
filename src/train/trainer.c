/* The LoRA training loop: batches drawn from a dataset (shuffled by seed,
 * epoch after epoch), padded on the right, targets shifted by one; the loss
 * and LoRA gradients from lmc_lora_loss_and_grad; global-norm clipping;
 * the learning rate from the schedule; AdamW; periodic validation and
 * saves; cancellation that saves first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/array.h"
#include "core/error.h"
#include "lmc/finetune.h"
#include "runtime/model_internal.h"
#include "runtime/rng.h"

lmc_train_config lmc_train_config_default(void) {
    lmc_train_config c = {
        .steps = 100,
        .batch_size = 4,
        .seq_len = 512,
        .adamw = lmc_adamw_config_default(),
        .schedule = lmc_lr_schedule_default(),
        .grad_clip = 1.0,
        .valid_every = 50,
    };
    c.adamw.lr = 1e-4;
    c.adamw.weight_decay = 0.01;
    c.schedule.lr = c.adamw.lr;
    return c;
}

/* One padded batch: ids, targets and mask [B, T] with T = the longest
 * example (truncated to seq_len tokens) minus one. */
typedef struct batch {
    lmc_array *ids, *targets, *mask;
    int64_t input_tokens;  /* real (unpadded) input positions */
    int64_t target_tokens; /* positions with mask 1 */
} batch;

static void batch_free(batch *b) {
    lmc_array_free(b->ids);
    lmc_array_free(b->targets);
    lmc_array_free(b->mask);
    memset(b, 0, sizeof *b);
}

/* Builds the batch of examples idx[0..n): the logits at t score ids[t + 1]
 * where mask[t + 1] is set; positions past an example's end are padding,
 * masked out (right padding leaves the causal forward pass of the real
 * tokens unchanged). */
static lmc_status batch_make(const lmc_dataset *ds, const size_t *idx, int n, int64_t seq_len, batch *b) {
    memset(b, 0, sizeof *b);
    int64_t T = 1;
    for (int i = 0; i < n; i++) {
        size_t len;
        LMC_CHECK(lmc_dataset_example(ds, idx[i], NULL, NULL, &len));
        int64_t l = (int64_t)len < seq_len ? (int64_t)len : seq_len;
        if (l - 1 > T) T = l - 1;
    }
    int64_t shape[2] = {n, T};
    b->ids = lmc_zeros(LMC_I32, 2, shape);
    b->targets = lmc_zeros(LMC_I32, 2, shape);
    b->mask = lmc_zeros(LMC_U8, 2, shape);
    if (!b->ids || !b->targets || !b->mask) {
        batch_free(b);
        return lmc_last_status() ? lmc_last_status() : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int32_t *pi = lmc_array_data(b->ids), *pt = lmc_array_data(b->targets);
    uint8_t *pm = lmc_array_data(b->mask);
    for (int i = 0; i < n; i++) {
        const int32_t *ids;
        const uint8_t *mask;
        size_t len;
        lmc_dataset_example(ds, idx[i], &ids, &mask, &len);
        int64_t l = (int64_t)len < seq_len ? (int64_t)len : seq_len;
        for (int64_t t = 0; t + 1 < l; t++) {
            pi[i * T + t] = ids[t];
            pt[i * T + t] = ids[t + 1];
            pm[i * T + t] = mask[t + 1];
            b->target_tokens += mask[t + 1];
        }
        b->input_tokens += l - 1;
    }
    return LMC_OK;
}

/* The training order: a permutation of the dataset, reshuffled at the start
 * of every epoch from the seed and the epoch number. */
typedef struct order {
    size_t *perm, n, pos;
    uint64_t seed, epoch;
} order;

static void order_shuffle(order *o) {
    lmc_rng r;
    lmc_rng_seed(&r, o->seed ^ (0x9e3779b97f4a7c15ull * (o->epoch + 1)));
    for (size_t i = 0; i < o->n; i++) o->perm[i] = i;
    for (size_t i = o->n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(lmc_rng_next(&r) % i);
        size_t t = o->perm[i - 1];
        o->perm[i - 1] = o->perm[j];
        o->perm[j] = t;
    }
    o->pos = 0;
}

static size_t order_next(order *o) {
    if (o->pos == o->n) {
        o->epoch++;
        order_shuffle(o);
    }
    return o->perm[o->pos++];
}

static lmc_status check_config(const lmc_train_config *c) {
    const char *bad = NULL;
    if (c->steps < 1) bad = "steps must be >= 1";
    else if (c->batch_size < 1) bad = "batch_size must be >= 1";
    else if (c->seq_len < 2) bad = "seq_len must be >= 2 (one input and one target)";
    else if (!(c->grad_clip >= 0.0)) bad = "grad_clip must be >= 0 (0 = off)";
    else if (c->valid_every < 0) bad = "valid_every must be >= 0";
    else if (c->save_every < 0) bad = "save_every must be >= 0";
    else if (c->schedule.warmup_steps < 0 || c->schedule.total_steps < 0) bad = "warm-up and total steps must be >= 0";
    else if (!(c->adamw.lr >= 0.0) || !isfinite(c->adamw.lr)) bad = "the learning rate must be >= 0";
    if (bad) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "train: %s", bad);
    return LMC_OK;
}

/* Mean masked loss of examples [0, n) of ds, weighting each batch by its targets. */
static lmc_status evaluate(lmc_lora *lora, const lmc_dataset *ds, int batch_size, int64_t seq_len, double *loss) {
    size_t n = lmc_dataset_size(ds);
    size_t *idx = malloc((size_t)batch_size * sizeof *idx);
    if (!idx) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    lmc_lora_step_options opt = lmc_lora_step_options_default();
    opt.training = false;
    double sum = 0.0;
    int64_t count = 0;
    lmc_status st = LMC_OK;
    for (size_t i = 0; st == LMC_OK && i < n; i += (size_t)batch_size) {
        int nb = 0;
        for (size_t j = i; j < n && nb < batch_size; j++) idx[nb++] = j;
        batch b;
        st = batch_make(ds, idx, nb, seq_len, &b);
        if (st != LMC_OK) break;
        double l = 0.0;
        if (b.target_tokens > 0) st = lmc_lora_loss_and_grad(lora, b.ids, b.targets, b.mask, &opt, &l, NULL);
        sum += l * (double)b.target_tokens;
        count += b.target_tokens;
        batch_free(&b);
    }
    free(idx);
    *loss = count ? sum / (double)count : 0.0;
    return st;
}

lmc_status lmc_evaluate(lmc_lora *lora, const lmc_dataset *ds, int batch_size, int64_t seq_len, double *loss) {
    if (!lora || !ds || !loss) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "evaluate: NULL argument");
    *loss = NAN;
    if (batch_size < 1 || seq_len < 2)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "evaluate: need batch_size >= 1 and seq_len >= 2 (got %d, %lld)",
                             batch_size, (long long)seq_len);
    return evaluate(lora, ds, batch_size, seq_len, loss);
}

/* Saves to save_dir (when set) after a cancel and returns LMC_ERR_CANCELLED
 * with a message saying where the adapter went. */
static lmc_status stop_early(const lmc_lora *lora, const lmc_train_config *cfg, int64_t steps_done) {
    if (!cfg->save_dir)
        return lmc_set_error(LMC_ERR_CANCELLED, "training cancelled after %lld steps (no save_dir, adapter not saved)",
                             (long long)steps_done);
    lmc_status st = lmc_lora_save(lora, cfg->save_dir);
    if (st != LMC_OK) {
        lmc_error_prefix("training cancelled after %lld steps; saving the adapter failed", (long long)steps_done);
        return st;
    }
    return lmc_set_error(LMC_ERR_CANCELLED, "training cancelled after %lld steps; adapter saved to %s",
                         (long long)steps_done, cfg->save_dir);
}

lmc_status lmc_train(lmc_lora *lora, const lmc_dataset *train, const lmc_dataset *valid, const lmc_train_config *cfg,
                     lmc_train_callback cb, void *user, lmc_cancel *cancel) {
    if (!lora || !train) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "train: NULL adapter or dataset");
    lmc_train_config c = cfg ? *cfg : lmc_train_config_default();
    LMC_CHECK(check_config(&c));
    lmc_lr_schedule sched = c.schedule;
    sched.lr = c.adamw.lr;
    if (sched.total_steps == 0) sched.total_steps = c.steps;

    int np = lmc_lora_num_params(lora);
    lmc_array *const *params = lmc_lora_params(lora);
    lmc_adamw *opt = lmc_adamw_create(&c.adamw, np, params);
    if (!opt) return lmc_last_status();
    order ord = {.n = lmc_dataset_size(train), .seed = c.seed};
    ord.perm = malloc(ord.n * sizeof *ord.perm);
    size_t *idx = malloc((size_t)c.batch_size * sizeof *idx);
    lmc_array **grads = calloc((size_t)np + 1, sizeof *grads);
    lmc_status st = LMC_OK;
    if (!ord.perm || !idx || !grads || ord.n == 0)
        st = ord.n == 0 ? lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "train: the training set is empty")
                        : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    else order_shuffle(&ord);

    lmc_memory_reset_peak(LMC_CPU);
    lmc_buffer_hold_begin(); /* each step's large arrays are the last step's sizes */
    double t0 = lmc_now();
    lmc_lora_step_options so = lmc_lora_step_options_default();
    so.training = true;
    so.checkpoint = c.grad_checkpoint;
    for (int64_t step = 1; st == LMC_OK && step <= c.steps; step++) {
        if (lmc_cancel_requested(cancel)) {
            st = stop_early(lora, &c, step - 1);
            break;
        }
        double ts = lmc_now();
        for (int i = 0; i < c.batch_size; i++) idx[i] = order_next(&ord);
        batch b;
        st = batch_make(train, idx, c.batch_size, c.seq_len, &b);
        if (st != LMC_OK) break;
        lmc_train_progress p = {.step = step, .steps = c.steps, .valid_loss = NAN, .tokens = b.target_tokens};
        so.dropout_seed = c.seed * 1000003u + (uint64_t)step;
        st = lmc_lora_loss_and_grad(lora, b.ids, b.targets, b.mask, &so, &p.loss, grads);
        int64_t input_tokens = b.input_tokens;
        batch_free(&b);
        if (st == LMC_OK) st = lmc_clip_grad_norm(np, grads, c.grad_clip > 0 ? c.grad_clip : INFINITY, &p.grad_norm);
        p.lr = lmc_lr_at(&sched, step - 1);
        if (st == LMC_OK) st = lmc_adamw_set_lr(opt, p.lr);
        if (st == LMC_OK) st = lmc_adamw_step(opt, grads);
        for (int i = 0; i < np; i++) {
            lmc_array_free(grads[i]);
            grads[i] = NULL;
        }
        if (st != LMC_OK) break;
        double now = lmc_now();
        p.tokens_per_s = now > ts ? (double)input_tokens / (now - ts) : 0.0;
        p.elapsed_s = now - t0;
        p.eta_s = p.elapsed_s / (double)step * (double)(c.steps - step);
        if (valid && ((c.valid_every > 0 && step % c.valid_every == 0) || step == c.steps)) {
            st = evaluate(lora, valid, c.batch_size, c.seq_len, &p.valid_loss);
            if (st != LMC_OK) {
                lmc_error_prefix("validation at step %lld", (long long)step);
                break;
            }
        }
        if (c.save_dir && c.save_every > 0 && step % c.save_every == 0) {
            st = lmc_lora_save(lora, c.save_dir);
            if (st != LMC_OK) break;
        }
        p.peak_memory = lmc_memory(LMC_CPU).peak_bytes;
        if (cb && !cb(user, &p)) {
            st = stop_early(lora, &c, step);
            break;
        }
    }
    lmc_buffer_hold_end();
    free(grads);
    free(idx);
    free(ord.perm);
    lmc_adamw_free(opt);
    return st;
}
