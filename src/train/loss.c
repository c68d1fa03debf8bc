/* Masked causal-LM cross-entropy. The forward pass is made of ops (run
 * without recording); the tape gets one node whose backward is the closed
 * form (softmax - onehot) · weight / total, which needs far less memory
 * than differentiating logsumexp and take_along_axis op by op. */
#include "train/tape.h"

static bool same_prefix(const lmc_array *a, const lmc_array *b) {
    if (a->ndim != b->ndim + 1) return false;
    for (int d = 0; d < b->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

lmc_array *lmc_cross_entropy(const lmc_array *logits, const lmc_array *targets, const lmc_array *mask) {
    const char *op = "lmc_cross_entropy";
    const lmc_array *in[2] = {logits, targets};
    for (int i = 0; i < 2; i++)
        if (!in[i]) {
            if (lmc_last_status() == LMC_OK) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: input %d is NULL", op, i);
            return NULL;
        }
    char b1[128], b2[128];
    if (logits->ndim < 1 || !lmc_dtype_is_float(logits->dtype)) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: logits must be a float array [..., V], got %s %s", op,
                      lmc_dtype_name(logits->dtype), lmc_shape_str(logits->ndim, logits->shape, b1, sizeof b1));
        return NULL;
    }
    lmc_dtype tdt = targets->dtype;
    if ((tdt != LMC_I32 && tdt != LMC_I64 && tdt != LMC_U32 && tdt != LMC_U8) || !same_prefix(logits, targets)) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: targets must be integers shaped like the logits %s without the last axis, got %s %s",
                      op, lmc_shape_str(logits->ndim, logits->shape, b1, sizeof b1), lmc_dtype_name(tdt),
                      lmc_shape_str(targets->ndim, targets->shape, b2, sizeof b2));
        return NULL;
    }
    if (mask && (!same_prefix(logits, mask) || !(lmc_dtype_is_float(mask->dtype) || mask->dtype == LMC_BOOL ||
                                                  mask->dtype == LMC_I32 || mask->dtype == LMC_U8))) {
        lmc_set_error(LMC_ERR_SHAPE, "%s: mask must be shaped like the targets %s, got %s %s", op,
                      lmc_shape_str(targets->ndim, targets->shape, b1, sizeof b1), lmc_dtype_name(mask->dtype),
                      lmc_shape_str(mask->ndim, mask->shape, b2, sizeof b2));
        return NULL;
    }

    lmc_tape *tape = lmc_tape_pause();
    lmc_scope_begin();
    lmc_array *w = mask ? lmc_astype(mask, LMC_F32) : lmc_ones(LMC_F32, targets->ndim, targets->shape);
    /* Masked-out targets may be anything (e.g. -100): use class 0 there. */
    lmc_array *t = lmc_where(lmc_not_equal(w, lmc_scalar(0, LMC_F32)), lmc_astype(targets, LMC_I32), lmc_scalar(0, LMC_I32));
    lmc_array *l = logits->dtype == LMC_F32 ? lmc_contiguous(logits) : lmc_astype(logits, LMC_F32);
    lmc_array *picked = lmc_squeeze(lmc_take_along_axis(l, lmc_expand_dims(t, -1), -1), -1);
    lmc_array *nll = lmc_sub(lmc_logsumexp(l, -1, false), picked);
    double total = 0.0;
    lmc_array *wsum = lmc_sum(w, LMC_ALL_AXES, false);
    lmc_array *loss = NULL;
    if (wsum && lmc_array_item(wsum, &total) == LMC_OK) {
        if (!(total > 0.0)) total = 1.0; /* no target to learn: the loss is 0, and so are its gradients */
        loss = lmc_div(lmc_sum(lmc_mul(nll, w), LMC_ALL_AXES, false), lmc_scalar(total, LMC_F32));
    }
    loss = lmc_scope_keep(loss);
    t = lmc_scope_keep(t);
    w = lmc_scope_keep(w);
    lmc_scope_end();
    lmc_tape_resume(tape);

    const lmc_array *saved[3] = {logits, t, w};
    lmc_op_params p = {.scalar = total};
    lmc_tape_record(LMC_OP_CROSS_ENTROPY, loss, 3, saved, &p);
    lmc_array_free(t);
    lmc_array_free(w);
    return loss;
}
