/* Moving arrays between devices. */
#include "ops/ops_internal.h"

lmc_array *lmc_array_to(const lmc_array *a, lmc_device dev) {
    if (lmc_ops_null_input("lmc_array_to", 1, &a)) return NULL;
    if ((unsigned)dev >= LMC_DEVICE_COUNT) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_array_to: no device %d", (int)dev);
        return NULL;
    }
    if (a->buf->device == dev) return lmc_array_retain((lmc_array *)a);
    /* Copy the elements as they lie in a contiguous array on the source device. */
    lmc_array *c = lmc_array_is_contiguous(a) ? lmc_array_retain((lmc_array *)a) : lmc_contiguous(a);
    lmc_array *out = c ? lmc_array_new(a->dtype, a->ndim, a->shape, dev) : NULL;
    if (out && lmc_device_copy(lmc_array_ptr(out), dev, lmc_array_ptr(c), c->buf->device,
                               (size_t)out->size * lmc_dtype_size(out->dtype)) != LMC_OK) {
        lmc_array_free(out);
        out = NULL;
    }
    lmc_array_free(c);
    return out;
}
