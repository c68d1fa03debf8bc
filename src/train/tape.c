/* The autograd tape (see tape.h): recording, the backward walk, value and
 * gradient entry points, and gradient checkpointing. */
#include <stdlib.h>
#include <string.h>

#include "train/tape.h"

typedef enum { TAPE_RECORD, TAPE_GUARD } tape_mode;

struct lmc_tape {
    tape_mode mode;
    lmc_grad_node **nodes; /* in recording order, leaves first */
    size_t len, cap;
    lmc_status error;      /* a recording failure, reported when the call returns */
    /* TAPE_GUARD (a checkpointed function's first run, which records
     * nothing): arrays of `outer` it may use are its inputs only. */
    lmc_tape *outer;
    int n_allowed;
    lmc_array *const *allowed;
    const char *misused_by; /* the op that used another array of `outer` */
};

_Thread_local lmc_tape *lmc_tape_current;

/* a's node when it is on tape t. */
static lmc_grad_node *node_on(const lmc_array *a, const lmc_tape *t) {
    lmc_grad_node *nd = a ? a->grad_node : NULL;
    return nd && nd->tape == t ? nd : NULL;
}

bool lmc_tape_requires_grad(const lmc_array *a) {
    lmc_tape *t = lmc_tape_current;
    return t && t->mode == TAPE_RECORD && node_on(a, t);
}

lmc_tape *lmc_tape_pause(void) {
    lmc_tape *t = lmc_tape_current;
    lmc_tape_current = NULL;
    return t;
}

void lmc_tape_resume(lmc_tape *t) { lmc_tape_current = t; }

static bool push_node(lmc_tape *t, lmc_grad_node *nd) {
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        lmc_grad_node **nodes = realloc(t->nodes, cap * sizeof *nodes);
        if (!nodes) return false;
        t->nodes = nodes;
        t->cap = cap;
    }
    t->nodes[t->len++] = nd;
    return true;
}

static const char *const k_op_names[LMC_OP_COUNT] = {
    [LMC_OP_LEAF] = "input", [LMC_OP_UNARY] = "unary op", [LMC_OP_BINARY] = "binary op",
    [LMC_OP_ADD_SCALAR] = "add_scalar", [LMC_OP_MUL_SCALAR] = "mul_scalar", [LMC_OP_WHERE] = "where",
    [LMC_OP_ASTYPE] = "astype", [LMC_OP_RESHAPE] = "reshape", [LMC_OP_PERMUTE] = "permute",
    [LMC_OP_BROADCAST_TO] = "broadcast_to", [LMC_OP_SLICE] = "slice", [LMC_OP_COPY] = "copy",
    [LMC_OP_CONCATENATE] = "concatenate", [LMC_OP_TAKE] = "take", [LMC_OP_TAKE_ALONG_AXIS] = "take_along_axis",
    [LMC_OP_REDUCE] = "reduction", [LMC_OP_SOFTMAX] = "softmax", [LMC_OP_CUMSUM] = "cumsum",
    [LMC_OP_MATMUL] = "matmul", [LMC_OP_RMS_NORM] = "rms_norm", [LMC_OP_LAYER_NORM] = "layer_norm",
    [LMC_OP_ROPE] = "rope", [LMC_OP_SDPA] = "sdpa", [LMC_OP_QUANTIZED_MATMUL] = "quantized_matmul",
    [LMC_OP_CROSS_ENTROPY] = "cross_entropy", [LMC_OP_CHECKPOINT] = "checkpoint", [LMC_OP_NONDIFF] = "op",
};

static const char *op_name(lmc_op_id op, const lmc_op_params *p) {
    if (op == LMC_OP_NONDIFF && p && p->name) return p->name;
    return k_op_names[op];
}

/* A view of a owned by the tape alone (no scope, one reference). */
static lmc_array *own_view(const lmc_array *a) {
    if (!a) return NULL;
    return lmc_array_unscope(lmc_array_view(a->buf, a->offset, a->dtype, a->ndim, a->shape, a->strides));
}

/* Drops everything a node holds; its array forgets it (a leaf's gets its
 * previous node back). */
static void release_node(lmc_grad_node *nd) {
    if (nd->obj && nd->obj->grad_node == nd) nd->obj->grad_node = nd->op == LMC_OP_LEAF ? nd->saved_node : NULL;
    nd->obj = NULL;
    lmc_array_free(nd->out);
    nd->out = NULL;
    for (int i = 0; i < nd->n; i++) {
        lmc_array_free(nd->in[i]);
        nd->in[i] = NULL;
    }
    lmc_array_free(nd->grad);
    nd->grad = NULL;
}

static void free_node(lmc_grad_node *nd) {
    if (!nd) return;
    release_node(nd);
    free(nd->in);
    free(nd->in_node);
    free(nd);
}

void lmc_tape_forget(lmc_array *a) {
    /* Its node, and for a leaf the nodes it covered on enclosing tapes. */
    for (lmc_grad_node *nd = a->grad_node; nd; nd = nd->op == LMC_OP_LEAF ? nd->saved_node : NULL)
        if (nd->obj == a) nd->obj = NULL;
    a->grad_node = NULL;
}

void lmc_tape_record_op(lmc_op_id op, lmc_array *out, int n, const lmc_array *const *in, const lmc_op_params *p) {
    lmc_tape *t = lmc_tape_current;
    if (!out || t->error != LMC_OK) return;
    if (t->mode == TAPE_GUARD) {
        for (int i = 0; i < n && !t->misused_by; i++) {
            if (!node_on(in[i], t->outer)) continue;
            bool allowed = false;
            for (int j = 0; j < t->n_allowed && !allowed; j++) allowed = t->allowed[j] == in[i];
            if (!allowed) t->misused_by = op_name(op, p);
        }
        return;
    }
    if (!lmc_dtype_is_float(out->dtype)) return; /* integer and bool results carry no gradient */
    bool any = false;
    for (int i = 0; i < n && !any; i++) any = node_on(in[i], t) != NULL;
    if (!any) return;
    if (out->grad_node) {
        t->error = lmc_set_error(LMC_ERR_INTERNAL, "autograd: the result of %s is already recorded", op_name(op, p));
        return;
    }
    lmc_grad_node *nd = calloc(1, sizeof *nd);
    bool ok = nd && (nd->in = calloc((size_t)n, sizeof *nd->in)) && (nd->in_node = calloc((size_t)n, sizeof *nd->in_node));
    if (ok) {
        nd->op = op;
        nd->tape = t;
        if (p) nd->p = *p;
        nd->n = n;
        for (int i = 0; i < n && ok; i++) {
            nd->in_node[i] = node_on(in[i], t);
            ok = !in[i] || (nd->in[i] = own_view(in[i]));
        }
        if (ok && lmc_grad_rule_uses_output(nd)) ok = (nd->out = own_view(out)) != NULL;
    }
    if (!ok || !push_node(t, nd)) {
        free_node(nd);
        t->error = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "autograd: out of memory recording %s", op_name(op, p));
        return;
    }
    nd->obj = out;
    out->grad_node = nd;
}

/* --- backward ----------------------------------------------------------------- */

/* dst->grad += g (g lives in the current scope; dst keeps a reference). */
static lmc_status accumulate(lmc_grad_node *dst, lmc_array *g) {
    if (!dst->grad) {
        dst->grad = lmc_array_retain(g);
        return LMC_OK;
    }
    lmc_array *sum = lmc_add(dst->grad, g);
    if (!sum) return lmc_last_status();
    lmc_array_free(dst->grad);
    dst->grad = lmc_array_retain(sum);
    return LMC_OK;
}

static bool same_shape(const lmc_array *a, const lmc_array *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* Runs one node's rule and adds the results to its inputs' gradients. */
static lmc_status backward_node(lmc_grad_node *nd) {
    bool needs[nd->n > 0 ? nd->n : 1];
    lmc_array *gin[nd->n > 0 ? nd->n : 1];
    bool any = false;
    for (int i = 0; i < nd->n; i++) {
        needs[i] = nd->in_node[i] != NULL;
        any = any || needs[i];
        gin[i] = NULL;
    }
    if (!any) return LMC_OK;
    lmc_scope_begin(); /* everything the rule makes dies here unless accumulated */
    lmc_status s = lmc_grad_rule(nd, nd->grad, needs, gin);
    for (int i = 0; i < nd->n && s == LMC_OK; i++) {
        if (!needs[i]) continue;
        lmc_array *g = gin[i];
        if (!g || !same_shape(g, nd->in[i])) {
            char b1[128], b2[128];
            s = lmc_set_error(LMC_ERR_INTERNAL, "autograd: %s gave a gradient of shape %s for input %d of shape %s",
                              op_name(nd->op, &nd->p), g ? lmc_shape_str(g->ndim, g->shape, b1, sizeof b1) : "(none)",
                              i, lmc_shape_str(nd->in[i]->ndim, nd->in[i]->shape, b2, sizeof b2));
            break;
        }
        if (g->dtype != LMC_F32 && !(g = lmc_astype(g, LMC_F32))) {
            s = lmc_last_status();
            break;
        }
        s = accumulate(nd->in_node[i], g);
    }
    lmc_scope_end();
    return s;
}

/* Walks the tape newest first; each node is released once processed. */
static lmc_status backward(lmc_tape *t) {
    lmc_status s = LMC_OK;
    for (size_t i = t->len; i-- > 0 && s == LMC_OK;) {
        lmc_grad_node *nd = t->nodes[i];
        if (nd->op == LMC_OP_LEAF) continue;
        if (nd->grad) s = backward_node(nd);
        release_node(nd);
    }
    return s;
}

static void tape_free(lmc_tape *t) {
    for (size_t i = t->len; i-- > 0;) free_node(t->nodes[i]);
    free(t->nodes);
    t->nodes = NULL;
    t->len = t->cap = 0;
}

/* --- entry points -------------------------------------------------------------- */

/* The gradient handed to the caller: a fresh f32 array of the leaf's shape
 * that shares its buffer with nothing else (clipping scales it in place). */
static lmc_array *export_grad(const lmc_array *leaf, lmc_array *grad) {
    if (!grad) return lmc_zeros(LMC_F32, leaf->ndim, leaf->shape);
    if (grad->dtype == LMC_F32 && lmc_array_is_contiguous(grad) && atomic_load(&grad->refcount) == 1 &&
        atomic_load(&grad->buf->refcount) == 1)
        return lmc_array_view(grad->buf, grad->offset, LMC_F32, grad->ndim, grad->shape, grad->strides);
    return lmc_astype(grad, LMC_F32); /* always a copy */
}

lmc_status lmc_vjp_masked(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, const bool *wants,
                          const lmc_array *cotangent, lmc_array **out, lmc_array **grads) {
    const char *op = cotangent ? "lmc_vjp" : "lmc_value_and_grad";
    if (out) *out = NULL;
    for (int i = 0; grads && i < n; i++) grads[i] = NULL;
    if (!fn || !out || n < 0 || (n > 0 && (!inputs || !grads)))
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: fn, out, inputs and grads must be given", op);
    if (lmc_tape_current)
        return lmc_set_error(LMC_ERR_UNSUPPORTED,
                             "%s: called inside a function being differentiated (nested differentiation is not supported)",
                             op);
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: input %d is NULL", op, i);

    lmc_tape t = {.mode = TAPE_RECORD};
    lmc_status s = LMC_OK;
    for (int i = 0; i < n && s == LMC_OK; i++) {
        lmc_array *a = inputs[i];
        if ((wants && !wants[i]) || !lmc_dtype_is_float(a->dtype) || node_on(a, &t)) continue;
        lmc_grad_node *leaf = calloc(1, sizeof *leaf);
        if (!leaf || !push_node(&t, leaf)) {
            free(leaf);
            s = lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "%s: out of memory", op);
            break;
        }
        leaf->op = LMC_OP_LEAF;
        leaf->tape = &t;
        leaf->obj = a;
        leaf->saved_node = a->grad_node;
        a->grad_node = leaf;
    }

    lmc_array *y = NULL;
    if (s == LMC_OK) {
        lmc_tape_current = &t;
        y = fn(ctx, n, inputs);
        lmc_tape_current = NULL;
        if (!y) s = lmc_last_status() != LMC_OK ? lmc_last_status()
                                                 : lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: the function returned NULL", op);
        else if (t.error != LMC_OK) s = t.error;
    }
    if (s == LMC_OK && !lmc_dtype_is_float(y->dtype))
        s = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: the function's result is %s, not float", op,
                          lmc_dtype_name(y->dtype));
    if (s == LMC_OK && !cotangent && y->size != 1) {
        char b[128];
        s = lmc_set_error(LMC_ERR_SHAPE, "%s: the function's result must have one element, got shape %s", op,
                          lmc_shape_str(y->ndim, y->shape, b, sizeof b));
    }
    if (s == LMC_OK && cotangent && !same_shape(cotangent, y)) {
        char b1[128], b2[128];
        s = lmc_set_error(LMC_ERR_SHAPE, "%s: cotangent %s does not match the result %s", op,
                          lmc_shape_str(cotangent->ndim, cotangent->shape, b1, sizeof b1),
                          lmc_shape_str(y->ndim, y->shape, b2, sizeof b2));
    }

    lmc_scope_begin();
    lmc_grad_node *seed = s == LMC_OK ? node_on(y, &t) : NULL;
    if (seed) {
        lmc_array *g = cotangent ? lmc_astype(cotangent, LMC_F32) : lmc_ones(LMC_F32, y->ndim, y->shape);
        if (g) seed->grad = lmc_array_retain(g);
        else s = lmc_last_status();
    }
    if (s == LMC_OK) s = backward(&t);
    /* Gradients go to the caller's scope (or to the caller). */
    for (int i = 0; i < n && s == LMC_OK; i++) {
        if (wants && !wants[i]) continue;
        lmc_array *g = NULL;
        int first = i;
        for (int j = 0; j < i && first == i; j++)
            if (inputs[j] == inputs[i]) first = j;
        if (first < i) {
            g = lmc_copy(grads[first]); /* a repeated input gets its own copy */
        } else {
            lmc_grad_node *leaf = node_on(inputs[i], &t);
            g = export_grad(inputs[i], leaf ? leaf->grad : NULL);
            if (leaf) {
                lmc_array_free(leaf->grad);
                leaf->grad = NULL;
            }
        }
        if (!g) {
            s = lmc_last_status();
            break;
        }
        grads[i] = lmc_scope_keep(g);
    }
    lmc_scope_end();
    tape_free(&t);
    if (s != LMC_OK) {
        for (int i = 0; grads && i < n; i++) {
            lmc_array_free(grads[i]);
            grads[i] = NULL;
        }
        lmc_array_free(y);
        return s;
    }
    *out = y;
    return LMC_OK;
}

lmc_status lmc_vjp(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, const lmc_array *cotangent,
                   lmc_array **out, lmc_array **grads) {
    if (!cotangent) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_vjp: cotangent is NULL");
    return lmc_vjp_masked(fn, ctx, n, inputs, NULL, cotangent, out, grads);
}

lmc_status lmc_value_and_grad(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs, lmc_array **value,
                              lmc_array **grads) {
    return lmc_vjp_masked(fn, ctx, n, inputs, NULL, NULL, value, grads);
}

lmc_status lmc_checkpoint_backward(const lmc_grad_node *nd, const lmc_array *g, const bool *needs, lmc_array **gin) {
    /* The function is called with the caller's array objects where they are
     * still alive (it may reach the same arrays through its context), else
     * with the node's views of them. */
    lmc_array *args[nd->n > 0 ? nd->n : 1];
    for (int i = 0; i < nd->n; i++) {
        const lmc_grad_node *src = nd->in_node[i];
        args[i] = src && src->obj ? src->obj : nd->in[i];
    }
    lmc_array *y = NULL;
    lmc_status s = lmc_vjp_masked(nd->p.fn, nd->p.ctx, nd->n, args, needs, g, &y, gin);
    lmc_array_free(y);
    return s;
}

lmc_array *lmc_grad_checkpoint(lmc_grad_fn fn, void *ctx, int n, lmc_array *const *inputs) {
    if (!fn || n < 0 || (n > 0 && !inputs)) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_checkpoint: fn and inputs must be given");
        return NULL;
    }
    lmc_tape *t = lmc_tape_current;
    bool any = false;
    for (int i = 0; t && t->mode == TAPE_RECORD && i < n && !any; i++) any = node_on(inputs[i], t) != NULL;
    if (!any) return fn(ctx, n, inputs); /* nothing to save: a plain call (recorded as usual) */

    lmc_tape guard = {.mode = TAPE_GUARD, .outer = t, .n_allowed = n, .allowed = inputs};
    lmc_tape_current = &guard;
    lmc_array *y = fn(ctx, n, inputs);
    lmc_tape_current = t;
    if (y && guard.misused_by) {
        lmc_array_free(y);
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT,
                      "lmc_checkpoint: the function uses an array being differentiated that is not one of its inputs "
                      "(in %s); pass it as an input",
                      guard.misused_by);
        return NULL;
    }
    if (y && y->grad_node) { /* fn returned one of its inputs: record on a fresh view */
        lmc_array *alias = lmc_array_view(y->buf, y->offset, y->dtype, y->ndim, y->shape, y->strides);
        lmc_array_free(y);
        y = alias;
    }
    lmc_op_params p = {.fn = fn, .ctx = ctx};
    lmc_tape_record(LMC_OP_CHECKPOINT, y, n, (const lmc_array *const *)inputs, &p);
    return y;
}
