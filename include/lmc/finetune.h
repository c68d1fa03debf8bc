/* lmc/finetune.h — training data and the LoRA training loop.
 *
 * A dataset is a JSONL file, one example per line, in one of four forms
 * (the form may differ from line to line):
 *   {"text": "..."}                     learn every token (BOS as the tokenizer adds it)
 *   {"prompt": "...", "completion": "..."}
 *                                       learn the completion's tokens only
 *   {"messages": [{"role": ..., "content": ...}, ...]}
 *                                       rendered with the model's chat template;
 *                                       learn the assistant turns only
 *   {"input_ids": [...], "loss_mask": [...]}
 *                                       used as given (no BOS added); loss_mask[i] = 1
 *                                       when input_ids[i] is a target, predicted from
 *                                       the tokens before it
 * Every example becomes ids and a per-token mask (mask[i] = 1: ids[i] is a
 * target; the first token never is, nothing precedes it). "text" and
 * "completion" get the tokenizer's EOS token (tokenizer_config.json's
 * eos_token, else the first EOS id) appended and learned unless they already
 * end with an EOS id. "messages" learn each assistant turn from its first
 * token through its end-of-turn token (<|im_end|>, <|eot_id|>,
 * <end_of_turn>), found by rendering the conversation's prefixes; a template
 * under which that cannot be done is an error. Examples without any target
 * (e.g. an all-zero loss_mask) are skipped and counted. Errors name the
 * file, the line and the field.
 *
 *     lmc_dataset *ds;
 *     lmc_dataset_load(model, "train.jsonl", &ds);
 *     lmc_lora *lora;
 *     lmc_lora_create(model, &lcfg, &lora);
 *     lmc_train_config tc = lmc_train_config_default();
 *     tc.steps = 200;
 *     lmc_train(lora, ds, NULL, &tc, NULL, NULL, NULL);
 *     lmc_lora_save(lora, "adapter/");
 */
#ifndef LMC_FINETUNE_H
#define LMC_FINETUNE_H

#include "lmc/lora.h"
#include "lmc/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_dataset lmc_dataset;

/* Reads and tokenises a JSONL file with the model's tokenizer (and chat
 * template for "messages"). Blank lines are skipped. Token ids must fit the
 * model's vocabulary. A file without a usable example is an error. */
LMC_API lmc_status lmc_dataset_load(lmc_model *m, const char *path, lmc_dataset **out);
LMC_API void lmc_dataset_free(lmc_dataset *ds);
/* Examples kept, and examples skipped because they had no target. */
LMC_API size_t lmc_dataset_size(const lmc_dataset *ds);
LMC_API size_t lmc_dataset_skipped(const lmc_dataset *ds);
/* Example i: its token ids and mask (borrowed, n entries each). */
LMC_API lmc_status lmc_dataset_example(const lmc_dataset *ds, size_t i, const int32_t **ids, const uint8_t **mask,
                                       size_t *n);

typedef struct lmc_train_config {
    int64_t steps;              /* optimiser steps (100) */
    int batch_size;             /* examples per step (4) */
    int64_t seq_len;            /* longer examples are truncated to this many tokens (512) */
    lmc_adamw_config adamw;     /* lr 1e-4 (the peak learning rate), weight decay 0.01 */
    lmc_lr_schedule schedule;   /* kind and warm-up (constant, none); its lr is replaced by
                                   adamw.lr; total_steps = steps when 0. Step s (1-based)
                                   uses lmc_lr_at(schedule, s - 1). */
    double grad_clip;           /* global-norm clip; 0 = off (1.0) */
    bool grad_checkpoint;       /* per decoder layer (false) */
    uint64_t seed;              /* shuffling (a new permutation each epoch) and dropout (0) */
    int64_t valid_every;        /* steps between validation losses when a validation set is given (50; 0 = only at the end) */
    int64_t save_every;         /* steps between saves to save_dir (0 = off) */
    const char *save_dir;       /* where periodic and interrupt saves go (NULL = none) */
} lmc_train_config;
LMC_API lmc_train_config lmc_train_config_default(void);

/* What the loop reports after each step (valid_loss set at the steps where
 * a validation ran, after it). */
typedef struct lmc_train_progress {
    int64_t step, steps;        /* 1-based step just taken, of steps */
    double loss;                /* this step's training loss */
    double valid_loss;          /* NAN unless a validation ran at this step */
    double lr;                  /* learning rate used by this step */
    double grad_norm;           /* before clipping */
    int64_t tokens;             /* target tokens in this step's batch */
    double tokens_per_s;        /* input tokens (padding excluded) per second, this step */
    double elapsed_s, eta_s;
    size_t peak_memory;         /* lmc's CPU allocation high-water mark in bytes since training
                                   began (lmc_memory; lmc_train resets the peak when it starts;
                                   memory-mapped weights not included) */
} lmc_train_progress;
/* Return false to stop (as a cancel does). */
typedef bool (*lmc_train_callback)(void *user, const lmc_train_progress *p);

/* Trains the adapter's parameters with AdamW on batches drawn from train
 * (shuffled by seed, epoch after epoch; padded to the longest example of
 * the batch, padding masked out; the logits at t score ids[t + 1] where
 * mask[t + 1] is set). valid may be NULL: otherwise lmc_evaluate runs every
 * valid_every steps and after the last. cfg NULL: the defaults. Returns
 * LMC_OK after cfg->steps steps (the caller saves the result), or
 * LMC_ERR_CANCELLED when cancel (may be NULL; checked before each step) is
 * requested or the callback returns false; when stopped early with a
 * save_dir, the adapter so far is saved there first and the message says
 * where. The adapter's dropout is seeded by seed and the step. */
LMC_API lmc_status lmc_train(lmc_lora *lora, const lmc_dataset *train, const lmc_dataset *valid,
                             const lmc_train_config *cfg, lmc_train_callback cb, void *user, lmc_cancel *cancel);

/* Mean masked loss over a whole dataset, in order, batch_size examples at a
 * time truncated to seq_len tokens (no dropout, no gradients); the mean is
 * over all target tokens. */
LMC_API lmc_status lmc_evaluate(lmc_lora *lora, const lmc_dataset *ds, int batch_size, int64_t seq_len, double *loss);

#ifdef __cplusplus
}
#endif
#endif
