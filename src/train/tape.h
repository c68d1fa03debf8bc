/* The autograd tape: the part the ops layer sees.
 *
 * Reverse-mode differentiation records, while a tape is active on the
 * calling thread, one node per op whose output depends on an array being
 * differentiated. Each op in src/ops calls lmc_tape_record() once after
 * computing its output; with no tape active that is a single branch, so
 * inference pays nothing else. A node keeps references to the op's inputs
 * and output (what its backward rule needs) and the op's parameters; the
 * rules themselves (src/train/grad_rules.c) are written with the forward
 * ops, so they run on whatever device the arrays live on.
 *
 * Which arrays are being differentiated: an array's grad_node points at its
 * node on the tape that recorded it. The inputs handed to lmc_vjp /
 * lmc_value_and_grad become leaf nodes; an op is recorded when at least one
 * input has a node on the *active* tape. Arrays with nodes on another tape
 * (an enclosing one, during a checkpoint's recomputation) count as constants.
 *
 * Lifetimes: a node holds views of its own (new array objects sharing the
 * buffers) of the inputs, and of the output when its rule needs it; it never
 * takes references to the caller's array objects, which may be scope-owned
 * and freed early. It points weakly at the output object (to clear its
 * grad_node when done); an array that dies tells its node (lmc_tape_forget).
 * Nodes live until the differentiation call returns; backward processes them
 * newest first and drops each node's views and accumulated gradient as soon
 * as it is done, so memory falls as backward proceeds. Leaves get back the
 * grad_node they had before.
 */
#ifndef LMC_TRAIN_TAPE_H
#define LMC_TRAIN_TAPE_H

#include "core/array.h"
#include "lmc/ops.h"
#include "lmc/train.h"

typedef enum lmc_op_id {
    LMC_OP_LEAF,           /* an input being differentiated */
    LMC_OP_UNARY,          /* p.code: lmc_unary_op */
    LMC_OP_BINARY,         /* p.code: lmc_binary_op (arithmetic ones; comparisons give bool) */
    LMC_OP_ADD_SCALAR,     /* p.scalar */
    LMC_OP_MUL_SCALAR,     /* p.scalar */
    LMC_OP_WHERE,          /* in: cond, x, y */
    LMC_OP_ASTYPE,
    LMC_OP_RESHAPE,        /* also expand_dims, squeeze: anything that keeps element order */
    LMC_OP_PERMUTE,        /* p.perm (swapaxes and transpose go through permute) */
    LMC_OP_BROADCAST_TO,
    LMC_OP_SLICE,          /* p.axis, p.start, p.stop, p.step as given to lmc_slice */
    LMC_OP_COPY,           /* contiguous, copy */
    LMC_OP_CONCATENATE,    /* p.axis; n inputs */
    LMC_OP_TAKE,           /* in: a, indices; p.axis */
    LMC_OP_TAKE_ALONG_AXIS,/* in: a, indices; p.axis */
    LMC_OP_REDUCE,         /* p.code: lmc_reduce_op (sum, mean, max, min, logsumexp); p.axis (or LMC_ALL_AXES), p.flag keepdims */
    LMC_OP_SOFTMAX,        /* p.axis; p.flag: log_softmax */
    LMC_OP_CUMSUM,         /* p.axis; p.flag: reverse */
    LMC_OP_MATMUL,
    LMC_OP_RMS_NORM,       /* in: x, w (may be NULL); p.eps, p.flag: one_plus_weight */
    LMC_OP_LAYER_NORM,     /* in: x, w, b (may be NULL); p.eps */
    LMC_OP_ROPE,           /* in: x, positions (i32), inv_freqs (f32); p.rope */
    LMC_OP_SDPA,           /* in: q, k, v, mask (may be NULL); p.sdpa (its mask pointer unused) */
    LMC_OP_QUANTIZED_MATMUL, /* in: x, wq, scales, biases; p.group_size, p.bits; differentiable in x only */
    LMC_OP_CROSS_ENTROPY,  /* in: logits, targets (cleaned), weights (f32); p.scalar: weight total */
    LMC_OP_CHECKPOINT,     /* in: the checkpointed function's inputs; p.fn, p.ctx */
    LMC_OP_NONDIFF,        /* an op without a backward rule (p.name): an error if a gradient reaches it */
    LMC_OP_COUNT
} lmc_op_id;

/* What a backward rule needs besides the arrays; each op fills its fields. */
typedef struct lmc_op_params {
    int code;
    int axis;
    bool flag;
    double scalar;
    float eps;
    int64_t start, stop, step;
    int perm[LMC_MAX_DIMS];
    lmc_rope_params rope;
    lmc_sdpa_params sdpa;
    int group_size, bits;
    const char *name;
    lmc_grad_fn fn;
    void *ctx;
} lmc_op_params;

typedef struct lmc_tape lmc_tape;

typedef struct lmc_grad_node {
    lmc_op_id op;
    lmc_tape *tape;
    lmc_op_params p;
    lmc_array *grad;       /* accumulated d(result)/d(output), f32, owned */
    lmc_array *obj;        /* the array whose grad_node is this node (weak): the op's output, or the leaf */
    void *saved_node;      /* leaves: obj's grad_node before this tape */
    lmc_array *out;        /* a view of the output when the rule needs it, else NULL */
    int n;
    lmc_array **in;        /* views of the inputs (entries may be NULL) */
    struct lmc_grad_node **in_node; /* the inputs' nodes on this tape (NULL: constant) */
} lmc_grad_node;

/* The recording tape of this thread, or NULL (also while backward runs).
 * Hidden, so the shared library reads it without a call. */
extern _Thread_local lmc_tape *lmc_tape_current __attribute__((visibility("hidden")));

void lmc_tape_record_op(lmc_op_id op, lmc_array *out, int n, const lmc_array *const *in, const lmc_op_params *p);

/* The hook each op calls after computing `out` (which may be NULL on failure). */
static inline void lmc_tape_record(lmc_op_id op, lmc_array *out, int n, const lmc_array *const *in,
                                   const lmc_op_params *p) {
    if (lmc_tape_current) lmc_tape_record_op(op, out, n, in, p);
}

/* True when `a` is being differentiated on the recording tape (for ops that
 * must refuse, e.g. in-place writes). */
bool lmc_tape_requires_grad(const lmc_array *a);

/* Pauses recording on this thread (for composite ops that record one node of
 * their own); returns the token to hand to lmc_tape_resume. */
lmc_tape *lmc_tape_pause(void);
void lmc_tape_resume(lmc_tape *t);

/* Backward rule of one node: sets gin[i] (f32, the shape of in[i]) for every
 * input with needs[i], from g = d(result)/d(out). Arrays made here belong to
 * the caller's scope. */
lmc_status lmc_grad_rule(const lmc_grad_node *node, const lmc_array *g, const bool *needs, lmc_array **gin);

/* Weights dequantised at a time by quantized_matmul's backward (tests lower it). */
extern int64_t lmc_grad_dequant_block;

/* True when the rule of `nd` reads the op's output (else the node does not
 * keep it, so its memory can go when the caller frees it). */
bool lmc_grad_rule_uses_output(const lmc_grad_node *nd);

/* A checkpoint node's backward: runs the function again under a tape. */
lmc_status lmc_checkpoint_backward(const lmc_grad_node *nd, const lmc_array *g, const bool *needs, lmc_array **gin);

/* Differentiates fn at inputs against the cotangent: *out gets fn's result
 * and grads[i] d<cotangent, fn>/d inputs[i] for each i with wants[i] (wants
 * NULL: all). cotangent NULL: fn's result must have one element, seeded
 * with 1. Used by lmc_vjp and by a checkpoint's backward. */
lmc_status lmc_vjp_masked(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, const bool *wants,
                          const lmc_array *cotangent, lmc_array **out, lmc_array **grads);

#endif
