/* Per-thread scratch buffers (see scratch.h). A thread's buffers hang off a
 * thread-local record; a pthread key's destructor frees them when the thread
 * exits, and an atexit handler frees those of the thread that calls exit
 * (key destructors do not run for it). */
#include "core/scratch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/error.h"

typedef struct scratch_set {
    void *buf[LMC_SCRATCH_SLOTS];
    size_t cap[LMC_SCRATCH_SLOTS];
    bool registered; /* the key holds this set, so it is freed at thread exit */
} scratch_set;

static _Thread_local scratch_set t_set;
static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void free_set(void *arg) {
    scratch_set *s = arg;
    for (int i = 0; i < LMC_SCRATCH_SLOTS; i++) {
        free(s->buf[i]);
        s->buf[i] = NULL;
        s->cap[i] = 0;
    }
}

static void free_own_set(void) { free_set(&t_set); }

static void init_key(void) {
    pthread_key_create(&g_key, free_set);
    atexit(free_own_set);
}

static _Atomic int g_fail_slot = -1;

void lmc_scratch_fail_for_testing(int slot) { atomic_store(&g_fail_slot, slot); }

void *lmc_scratch(int slot, size_t bytes) {
    scratch_set *s = &t_set;
    if (atomic_load_explicit(&g_fail_slot, memory_order_relaxed) == slot) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of scratch space (test)", bytes);
        return NULL;
    }
    if (bytes <= s->cap[slot]) return s->buf[slot];
    if (!s->registered) {
        pthread_once(&g_once, init_key);
        pthread_setspecific(g_key, s);
        s->registered = true;
    }
    /* Half again as much as asked, so a slowly growing size reallocates rarely. */
    size_t cap = (bytes + bytes / 2 + 63) / 64 * 64;
    free(s->buf[slot]);
    s->buf[slot] = aligned_alloc(64, cap);
    s->cap[slot] = s->buf[slot] ? cap : 0;
    if (!s->buf[slot])
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of scratch space", bytes);
    return s->buf[slot];
}
