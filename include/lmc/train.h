/* lmc/train.h — gradients, losses and the optimiser for fine-tuning.
 *
 * Differentiation is functional, as in MLX: lmc_value_and_grad runs a
 * function of arrays while recording the ops it calls, then walks the
 * record backwards to get the gradient of its (scalar) result with respect
 * to chosen inputs. The function may also use other arrays (through its
 * context); those are constants. Gradients are f32 arrays of the inputs'
 * shapes whatever the inputs' dtypes (bf16 parameters get f32 gradients).
 *
 *     static lmc_array *loss_fn(void *ctx, int n, lmc_array *const *params) {
 *         return lmc_cross_entropy(forward(ctx, params[0], params[1]), targets, mask);
 *     }
 *     lmc_array *loss, *grads[2];
 *     lmc_value_and_grad(loss_fn, ctx, 2, params, &loss, grads);
 *
 * Every op in lmc/ops.h that produces floats is differentiable except sort,
 * put_along_axis and scatter_add_along_axis (an error names them if a
 * gradient reaches them); comparisons, argmax/argmin and integer results
 * carry no gradient; lmc_write_slice refuses arrays being differentiated.
 * Recording is per thread; arrays being differentiated must not be used by
 * another thread's differentiation at the same time. Nested differentiation
 * (a gradient of a gradient) is not supported.
 */
#ifndef LMC_TRAIN_H
#define LMC_TRAIN_H

#include "lmc/array.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A differentiable function: a new array (or NULL with the error set)
 * computed from inputs[0..n-1] and whatever ctx holds. */
typedef lmc_array *(*lmc_grad_fn)(void *ctx, int n, lmc_array *const *inputs);

/* Runs fn(ctx, n, inputs); *value gets its result (one element, float) and
 * grads[i] d value / d inputs[i] (f32, shape of inputs[i]; zeros where the
 * value does not depend on it; a fresh contiguous array per entry). All
 * outputs are new references (see lmc/array.h). */
LMC_API lmc_status lmc_value_and_grad(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, lmc_array **value,
                                      lmc_array **grads);

/* Vector-Jacobian product: *out gets fn's result y (any shape) and grads[i]
 * the gradient of sum(cotangent * y) with respect to inputs[i]; cotangent
 * has y's shape. */
LMC_API lmc_status lmc_vjp(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, const lmc_array *cotangent,
                           lmc_array **out, lmc_array **grads);

/* Gradient checkpointing: returns fn(ctx, n, inputs) like a plain call, but
 * while differentiating only the inputs are kept for backward, not fn's
 * intermediates; backward runs fn again to get them. Same result and
 * gradients, lower peak memory, one more forward pass. fn must compute the
 * same thing when run again (seeded randomness) and take every array being
 * differentiated that it uses as one of `inputs` (an error says so
 * otherwise). Outside differentiation it is a plain call. */
LMC_API lmc_array *lmc_grad_checkpoint(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs);

/* --- losses ----------------------------------------------------------------- */

/* Causal-LM cross-entropy: logits [..., V] (float), targets [...] (integer
 * class ids), mask [...] (NULL: all ones; bool, integer or float weights,
 * 1 = learn). Returns the f32 scalar sum(mask * nll) / sum(mask), computed
 * with logsumexp in f32; 0 (with zero gradients) when the mask sums to 0.
 * Targets where the mask is 0 are ignored and may hold anything (e.g. -100).
 * The caller shifts: logits at position t score the target at t + 1. */
LMC_API lmc_array *lmc_cross_entropy(const lmc_array *logits, const lmc_array *targets, const lmc_array *mask);

/* --- AdamW ------------------------------------------------------------------ */

/* PyTorch's torch.optim.AdamW: decoupled weight decay, bias correction,
 * eps added outside the square root. */
typedef struct lmc_adamw_config {
    double lr;            /* 1e-3 */
    double beta1, beta2;  /* 0.9, 0.999 */
    double eps;           /* 1e-8 */
    double weight_decay;  /* 0.01 */
} lmc_adamw_config;
LMC_API lmc_adamw_config lmc_adamw_config_default(void);

typedef struct lmc_adamw lmc_adamw;
/* An optimiser for n float parameters (updated in place by each step; the
 * optimiser keeps references to them). Moments are f32 and start at zero. */
LMC_API lmc_adamw *lmc_adamw_create(const lmc_adamw_config *cfg, int n, lmc_array *const *params);
/* Sets the learning rate used by the next steps (e.g. from lmc_lr_at). */
LMC_API lmc_status lmc_adamw_set_lr(lmc_adamw *opt, double lr);
/* One step with grads[i] for params[i] (any float dtype, params' shapes):
 *   p -= lr * wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
 * The arithmetic is f32; bf16/f16 parameters are rounded once per step. */
LMC_API lmc_status lmc_adamw_step(lmc_adamw *opt, lmc_array *const *grads);
/* Steps taken so far. */
LMC_API int64_t lmc_adamw_steps(const lmc_adamw *opt);
/* The first (which = 0) or second (1) moment of parameter i (a borrowed
 * f32 array, for saving and inspection). */
LMC_API const lmc_array *lmc_adamw_moment(const lmc_adamw *opt, int i, int which);
LMC_API void lmc_adamw_free(lmc_adamw *opt);

/* Global-norm clipping as torch.nn.utils.clip_grad_norm_: total = the L2
 * norm of all grads together; when max_norm / (total + 1e-6) < 1 every grad
 * is scaled by it in place. *total_norm (may be NULL) gets the norm before
 * clipping. max_norm must be > 0. */
LMC_API lmc_status lmc_clip_grad_norm(int n, lmc_array *const *grads, double max_norm, double *total_norm);

/* --- learning-rate schedules -------------------------------------------------- */

typedef enum lmc_lr_kind {
    LMC_LR_CONSTANT, /* warm-up, then lr (transformers' get_constant_schedule_with_warmup) */
    LMC_LR_LINEAR,   /* warm-up, then linear decay to 0 at total_steps (get_linear_schedule_with_warmup) */
    LMC_LR_COSINE    /* warm-up, then half a cosine to 0 at total_steps (get_cosine_schedule_with_warmup) */
} lmc_lr_kind;

typedef struct lmc_lr_schedule {
    lmc_lr_kind kind;      /* LMC_LR_CONSTANT */
    double lr;             /* peak learning rate: 1e-4 */
    int64_t warmup_steps;  /* 0: no warm-up; during it lr * step / warmup_steps */
    int64_t total_steps;   /* the step where linear/cosine reach 0 (ignored by constant) */
} lmc_lr_schedule;
LMC_API lmc_lr_schedule lmc_lr_schedule_default(void);
/* The learning rate for 0-based optimiser step `step` (what transformers'
 * LambdaLR gives after `step` scheduler steps: 0 at step 0 with warm-up). */
LMC_API double lmc_lr_at(const lmc_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
