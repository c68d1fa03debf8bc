/* Buffers and per-device memory accounting. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/array.h"

typedef struct device_memory {
    atomic_size_t active;
    atomic_size_t peak;
    atomic_size_t mapped;
    atomic_size_t limit;
} device_memory;

static device_memory g_mem[LMC_DEVICE_COUNT];

lmc_status lmc_memory_reserve(lmc_device dev, size_t nbytes) {
    device_memory *m = &g_mem[dev];
    size_t limit = atomic_load(&m->limit);
    size_t cur = atomic_load(&m->active);
    for (;;) {
        if (nbytes > SIZE_MAX - cur || (limit && cur + nbytes > limit))
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY,
                                 "allocating %zu bytes would exceed the memory limit of %zu bytes (%zu in use)",
                                 nbytes, limit, cur);
        if (atomic_compare_exchange_weak(&m->active, &cur, cur + nbytes)) break;
    }
    size_t now = cur + nbytes, peak = atomic_load(&m->peak);
    while (now > peak && !atomic_compare_exchange_weak(&m->peak, &peak, now)) {}
    return LMC_OK;
}

void lmc_memory_unreserve(lmc_device dev, size_t nbytes) { atomic_fetch_sub(&g_mem[dev].active, nbytes); }

void lmc_memory_add_mapped(lmc_device dev, int64_t delta) {
    if (delta >= 0) atomic_fetch_add(&g_mem[dev].mapped, (size_t)delta);
    else atomic_fetch_sub(&g_mem[dev].mapped, (size_t)-delta);
}

lmc_memory_stats lmc_memory(lmc_device dev) {
    lmc_memory_stats s = {0};
    if ((unsigned)dev >= LMC_DEVICE_COUNT) return s;
    s.active_bytes = atomic_load(&g_mem[dev].active);
    s.peak_bytes = atomic_load(&g_mem[dev].peak);
    s.mapped_bytes = atomic_load(&g_mem[dev].mapped);
    s.limit_bytes = atomic_load(&g_mem[dev].limit);
    return s;
}

void lmc_memory_set_limit(lmc_device dev, size_t bytes) {
    if ((unsigned)dev < LMC_DEVICE_COUNT) atomic_store(&g_mem[dev].limit, bytes);
}

void lmc_memory_reset_peak(lmc_device dev) {
    if ((unsigned)dev < LMC_DEVICE_COUNT) atomic_store(&g_mem[dev].peak, atomic_load(&g_mem[dev].active));
}

/* --- a cache of small freed buffers ------------------------------------------
 * A decode step makes and drops tens of small arrays per layer, and glibc's
 * aligned_alloc and free (with their consolidation) were ~45 % of a small
 * op's time. Freed buffers of up to 2^CACHE_MAX_LOG2 = 64 KiB (struct and
 * data together; a decode step's activations are 4-32 KiB) wait here, by
 * power-of-two class of their allocated size, at most CACHE_DEPTH a class
 * (under 1 MiB in all; 256 KiB classes cost 2 MiB of peak RSS, and Gemma-3-1B
 * runs within a few MiB of its budget); allocation takes one of its class
 * first. Not in sanitizer builds: AddressSanitizer must see every free. */
#if defined(__SANITIZE_ADDRESS__)
#define LMC_BUFFER_CACHE 0
#else
#define LMC_BUFFER_CACHE 1
#endif
enum { CACHE_MIN_LOG2 = 6, CACHE_MAX_LOG2 = 16, CACHE_DEPTH = 8 };

static struct {
    pthread_mutex_t lock;
    lmc_buffer *slot[LMC_DEVICE_COUNT][CACHE_MAX_LOG2 - CACHE_MIN_LOG2 + 1][CACHE_DEPTH];
    int count[LMC_DEVICE_COUNT][CACHE_MAX_LOG2 - CACHE_MIN_LOG2 + 1];
} g_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The bytes to allocate for nbytes: a multiple of the alignment, never 0
 * (0-size arrays still get a valid pointer), a power of two when cached. */
static size_t alloc_size(size_t nbytes, int *cls) {
    size_t alloc = (nbytes + 63) & ~(size_t)63;
    if (alloc == 0) alloc = 64;
    *cls = -1;
    if (LMC_BUFFER_CACHE && alloc <= (size_t)1 << CACHE_MAX_LOG2) {
        int l = CACHE_MIN_LOG2;
        while (((size_t)1 << l) < alloc) l++;
        *cls = l - CACHE_MIN_LOG2;
        alloc = (size_t)1 << l;
    }
    return alloc;
}

static lmc_buffer *cache_take(lmc_device dev, int cls) {
    lmc_buffer *b = NULL;
    pthread_mutex_lock(&g_cache.lock);
    if (g_cache.count[dev][cls] > 0) b = g_cache.slot[dev][cls][--g_cache.count[dev][cls]];
    pthread_mutex_unlock(&g_cache.lock);
    return b;
}

static bool cache_put(lmc_buffer *b, int cls) {
    bool kept = false;
    lmc_device dev = b->device;
    pthread_mutex_lock(&g_cache.lock);
    if (g_cache.count[dev][cls] < CACHE_DEPTH) {
        g_cache.slot[dev][cls][g_cache.count[dev][cls]++] = b;
        kept = true;
    }
    pthread_mutex_unlock(&g_cache.lock);
    return kept;
}

/* --- large freed buffers held for reuse while a hold is open --------------
 * A training step makes and drops the same large arrays every step
 * (logits of [seq, vocab], activations of every layer). Given back to the
 * system, each came back as fresh pages the kernel clears: ~10 % of a LoRA
 * step. While a hold is open (lmc_train opens one), freed CPU buffers of
 * HOLD_MIN bytes or more wait here, up to a quarter of the peak of
 * allocated bytes in all, and an allocation of the same size takes one.
 * The last lmc_buffer_hold_end frees them. Not in sanitizer builds. */
enum { HOLD_MIN = 256 << 10, HOLD_SLOTS = 128 };

static struct {
    int depth;
    int n;
    size_t bytes;
    lmc_buffer *slot[HOLD_SLOTS];
    size_t alloc[HOLD_SLOTS];
} g_hold;

void lmc_buffer_hold_begin(void) {
    pthread_mutex_lock(&g_cache.lock);
    g_hold.depth++;
    pthread_mutex_unlock(&g_cache.lock);
}

static void buffer_free_now(lmc_buffer *b) {
    if (b->device == LMC_CPU) free(b->data);
    else lmc_device_free(b->device, b->data);
    free(b);
}

void lmc_buffer_hold_end(void) {
    lmc_buffer *drop[HOLD_SLOTS];
    int n = 0;
    pthread_mutex_lock(&g_cache.lock);
    if (g_hold.depth > 0 && --g_hold.depth == 0) {
        n = g_hold.n;
        memcpy(drop, g_hold.slot, (size_t)n * sizeof *drop);
        g_hold.n = 0;
        g_hold.bytes = 0;
    }
    pthread_mutex_unlock(&g_cache.lock);
    for (int i = 0; i < n; i++) buffer_free_now(drop[i]);
}

size_t lmc_buffer_held_bytes(void) {
    pthread_mutex_lock(&g_cache.lock);
    size_t b = g_hold.bytes;
    pthread_mutex_unlock(&g_cache.lock);
    return b;
}

static lmc_buffer *hold_take(size_t alloc) {
    lmc_buffer *b = NULL;
    pthread_mutex_lock(&g_cache.lock);
    for (int i = 0; i < g_hold.n; i++)
        if (g_hold.alloc[i] == alloc) {
            b = g_hold.slot[i];
            g_hold.bytes -= alloc;
            g_hold.slot[i] = g_hold.slot[--g_hold.n];
            g_hold.alloc[i] = g_hold.alloc[g_hold.n];
            break;
        }
    pthread_mutex_unlock(&g_cache.lock);
    return b;
}

static bool hold_put(lmc_buffer *b, size_t alloc) {
    bool kept = false;
    pthread_mutex_lock(&g_cache.lock);
    if (g_hold.depth > 0 && g_hold.n < HOLD_SLOTS && g_hold.bytes + alloc <= atomic_load(&g_mem[LMC_CPU].peak) / 4) {
        g_hold.slot[g_hold.n] = b;
        g_hold.alloc[g_hold.n++] = alloc;
        g_hold.bytes += alloc;
        kept = true;
    }
    pthread_mutex_unlock(&g_cache.lock);
    return kept;
}

lmc_buffer *lmc_buffer_alloc(lmc_device dev, size_t nbytes) {
    if ((unsigned)dev >= LMC_DEVICE_COUNT) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "no device %d", (int)dev);
        return NULL;
    }
    if (lmc_memory_reserve(dev, nbytes) != LMC_OK) return NULL;
    /* Small buffers come back from the cache, on every device: a GPU's work
     * runs in one stream, so a buffer freed after its last use was queued can
     * serve the next op queued (cudaMallocAsync + cudaFreeAsync were a good
     * part of a small op's ~7 us of host time there). */
    int cls = -1;
    size_t alloc = alloc_size(nbytes, &cls);
    lmc_buffer *b = cls >= 0 ? cache_take(dev, cls) : NULL;
    if (!b && LMC_BUFFER_CACHE && dev == LMC_CPU && alloc >= HOLD_MIN) b = hold_take(alloc);
    if (b) {
        b->nbytes = nbytes;
        atomic_init(&b->refcount, 1);
        return b;
    }
    b = calloc(1, sizeof *b);
    void *data = NULL;
    bool ok = b && (dev == LMC_CPU ? (data = aligned_alloc(64, alloc)) != NULL
                                   : lmc_device_malloc(dev, alloc, &data) == LMC_OK); /* which says why */
    if (!ok) {
        if (!b || dev == LMC_CPU) lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", nbytes);
        free(b);
        lmc_memory_unreserve(dev, nbytes);
        return NULL;
    }
    b->data = data;
    b->nbytes = nbytes;
    b->device = dev;
    b->counted = true;
    atomic_init(&b->refcount, 1);
    return b;
}

lmc_buffer *lmc_buffer_wrap(void *data, size_t nbytes, lmc_device dev, void (*release)(void *), void *ctx) {
    lmc_buffer *b = calloc(1, sizeof *b);
    if (!b) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    b->data = data;
    b->nbytes = nbytes;
    b->device = dev;
    b->release = release;
    b->release_ctx = ctx;
    atomic_init(&b->refcount, 1);
    return b;
}

void lmc_buffer_retain(lmc_buffer *b) { atomic_fetch_add(&b->refcount, 1); }

void lmc_buffer_release(lmc_buffer *b) {
    if (!b || atomic_fetch_sub(&b->refcount, 1) != 1) return;
    if (b->counted) {
        lmc_memory_unreserve(b->device, b->nbytes);
        int cls;
        size_t alloc = alloc_size(b->nbytes, &cls);
        if (cls >= 0 && cache_put(b, cls)) return;
        if (LMC_BUFFER_CACHE && b->device == LMC_CPU && alloc >= HOLD_MIN && hold_put(b, alloc)) return;
        buffer_free_now(b);
        return;
    }
    if (b->release) b->release(b->release_ctx);
    free(b);
}
