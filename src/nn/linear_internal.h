/* LoRA adapters on lmc_linear: the part the decoder and src/train/lora.c see.
 *
 * An adapter attached to a layer adds a low-rank update to its output:
 *
 *     y = base(x) + scale * (dropout(x) @ Aᵀ) @ Bᵀ
 *
 * with A [rank, in] and B [out, rank] (f32 or bf16). The base weights (float
 * or quantised) are never touched. Every step is an op from lmc/ops.h, so a
 * tape records the update whenever A or B is being differentiated (the tape
 * knows them by identity: the arrays held here are the ones handed to
 * lmc_value_and_grad). The layer borrows the adapter; its owner (an lmc_lora
 * set) detaches it before freeing it.
 */
#ifndef LMC_NN_LINEAR_INTERNAL_H
#define LMC_NN_LINEAR_INTERNAL_H

#include "lmc/nn.h"

typedef struct lmc_linear_adapter {
    lmc_array *a;        /* [rank, in] */
    lmc_array *b;        /* [out, rank] */
    double scale;        /* alpha / rank (or alpha / sqrt(rank) with rsLoRA) */
    double dropout;      /* probability of zeroing an input element while training */
    uint64_t seed;       /* this adapter's own dropout stream, mixed with each step's seed */
} lmc_linear_adapter;

/* How a forward pass runs the adapters: dropout on (training) or off. The
 * masks depend only on (step seed, adapter seed), so running a layer again
 * (gradient checkpointing) draws the same masks. */
typedef struct lmc_linear_run {
    bool training;
    uint64_t seed;
} lmc_linear_run;

/* Attaches ad (borrowed) to l, or detaches with NULL. Shapes are checked. */
lmc_status lmc_linear_set_adapter(lmc_linear *l, const lmc_linear_adapter *ad);
const lmc_linear_adapter *lmc_linear_get_adapter(const lmc_linear *l);
/* lmc_linear_forward with the adapter run as `run` says (NULL: inference). */
lmc_array *lmc_linear_forward_run(const lmc_linear *l, const lmc_array *x, const lmc_linear_run *run);
/* y[i] = lmc_linear_forward_run(l[i], x, run) for n (1..8) layers that
 * read the same x (q/k/v, gate/up), with the quantised layers' products run
 * together in one batch (one parallel region); each y[i] is exactly the
 * single call's. On failure every y[i] is NULL and the status is returned. */
lmc_status lmc_linear_forward_many(int n, lmc_linear *const *l, const lmc_array *x, const lmc_linear_run *run,
                                   lmc_array **y);
/* The layer's weight as a float array [out, in]: the stored weight, or the
 * quantised one dequantised in f32 (scale·q + bias kept in f32). */
lmc_array *lmc_linear_dense_weight(const lmc_linear *l);
/* Moves the layer's arrays (weights, scales, biases, bias) to dev, as they
 * are stored (no dtype change). On failure the layer is unchanged. */
lmc_status lmc_linear_to_device(lmc_linear *l, lmc_device dev);

#endif
