/* Device memory: where a buffer's bytes live and how they move.
 *
 * The CPU is malloc; CUDA goes through the backend's runtime functions
 * (src/backend/cuda/cuda_launch.h, plain C), present only in builds with
 * LMC_CUDA=ON. Everything above core reaches device memory through these. */
#include <stdlib.h>
#include <string.h>

#include "core/array.h"

#ifdef LMC_HAVE_CUDA
#include "backend/cuda/cuda_launch.h"
#endif

static const char *device_name(lmc_device dev) { return dev == LMC_CPU ? "cpu" : dev == LMC_CUDA ? "cuda" : "?"; }

bool lmc_device_usable(lmc_device dev) {
    if (dev == LMC_CPU) return true;
#ifdef LMC_HAVE_CUDA
    if (dev == LMC_CUDA) return lmc_cuda_device_count() > 0;
#endif
    return false;
}

static lmc_status not_built(lmc_device dev) {
#ifdef LMC_HAVE_CUDA
    if (dev == LMC_CUDA)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "no CUDA device is usable on this machine (no GPU, or no driver)");
#endif
    return lmc_set_error(LMC_ERR_UNSUPPORTED, "device %s is not built into this lmc (configure with -DLMC_CUDA=ON)",
                         device_name(dev));
}

lmc_status lmc_device_malloc(lmc_device dev, size_t nbytes, void **out) {
    *out = NULL;
    (void)nbytes;
    if (!lmc_device_usable(dev)) return not_built(dev);
#ifdef LMC_HAVE_CUDA
    if (dev == LMC_CUDA) {
        int e = lmc_cuda_malloc(out, nbytes);
        if (e) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "cuda: out of device memory allocating %zu bytes (%s)", nbytes,
                                    lmc_cuda_error_string(e));
        return LMC_OK;
    }
#endif
    return lmc_set_error(LMC_ERR_INTERNAL, "lmc_device_malloc: not for the CPU");
}

void lmc_device_free(lmc_device dev, void *p) {
    (void)dev;
    (void)p;
#ifdef LMC_HAVE_CUDA
    if (dev == LMC_CUDA && p) lmc_cuda_free(p);
#endif
}

lmc_status lmc_device_copy(void *dst, lmc_device dst_dev, const void *src, lmc_device src_dev, size_t nbytes) {
    if (!nbytes) return LMC_OK;
    if (dst_dev == LMC_CPU && src_dev == LMC_CPU) {
        memcpy(dst, src, nbytes);
        return LMC_OK;
    }
    lmc_device other = dst_dev != LMC_CPU ? dst_dev : src_dev;
    if (!lmc_device_usable(other)) return not_built(other);
#ifdef LMC_HAVE_CUDA
    int kind = src_dev == LMC_CPU ? 0 : dst_dev == LMC_CPU ? 1 : 2;
    int e = lmc_cuda_memcpy(dst, src, nbytes, kind);
    if (e) return lmc_set_error(LMC_ERR_INTERNAL, "cuda: copying %zu bytes %s -> %s failed (%s)", nbytes,
                                device_name(src_dev), device_name(dst_dev), lmc_cuda_error_string(e));
    return LMC_OK;
#else
    return not_built(other);
#endif
}

bool lmc_device_available(lmc_device dev) { return (unsigned)dev < LMC_DEVICE_COUNT && lmc_device_usable(dev); }
