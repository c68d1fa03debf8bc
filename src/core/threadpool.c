#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/error.h"

enum { MAX_THREADS = 256, SPIN_ITERS = 20000 };

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done_cv;
    pthread_t threads[MAX_THREADS];
    int nworkers;               /* threads besides the caller */
    atomic_uint generation;     /* bumped for each job */
    atomic_int pending;         /* workers still running the current job */
    /* the current job */
    lmc_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    int active;                 /* threads running a chunk, caller included */
    bool stop;
    unsigned start_generation;  /* generation at the time workers were (re)created */
} pool;

static pool g_pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t g_pool_init = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_submit = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static int g_num_threads; /* 0 = not yet decided */
static _Thread_local bool t_in_worker;

static void run_chunk(pool *p, int t) {
    int64_t begin = (int64_t)t * p->chunk;
    int64_t end = begin + p->chunk;
    if (end > p->n) end = p->n;
    if (begin < end) p->fn(p->ctx, begin, end, t);
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg; /* 1..nworkers */
    pool *p = &g_pool;
    t_in_worker = true;
    /* The generation when this worker was created, not when it first runs: a
     * job published before the thread got scheduled must still be seen. */
    unsigned seen = p->start_generation;
    for (;;) {
        /* Spin briefly (decode issues many short jobs), then sleep. */
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && spins < SPIN_ITERS) {
            spins++;
            __builtin_ia32_pause();
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load(&p->generation)) == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->stop) return NULL;
        seen = gen;
        /* Every worker acknowledges every job, so none can still be reading
         * this job's fields when the next one is published. */
        if (id < p->active) run_chunk(p, id);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("LMC_NUM_THREADS");
    if (env && atoi(env) > 0) n = atoi(env);
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    return (int)n;
}

static void pool_stop(void) {
    pool *p = &g_pool;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
    p->nworkers = 0;
    p->stop = false;
}

/* Starts workers so that nthreads-1 exist (called with g_pool_init held). */
static void pool_resize(int nthreads) {
    pool *p = &g_pool;
    if (p->nworkers == nthreads - 1) return;
    if (p->nworkers) pool_stop();
    int want = nthreads - 1;
    p->start_generation = atomic_load(&p->generation);
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, (void *)(intptr_t)(i + 1)) != 0) break;
        p->nworkers = i + 1;
    }
}

static int ensure_pool(void) {
    pthread_mutex_lock(&g_pool_init);
    if (!g_num_threads) g_num_threads = default_threads();
    pool_resize(g_num_threads);
    int n = g_pool.nworkers + 1;
    pthread_mutex_unlock(&g_pool_init);
    return n;
}

lmc_status lmc_set_num_threads(int n) {
    if (n > MAX_THREADS) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "at most %d threads, got %d", MAX_THREADS, n);
    pthread_mutex_lock(&g_submit);
    pthread_mutex_lock(&g_pool_init);
    g_num_threads = n <= 0 ? default_threads() : n;
    pool_resize(g_num_threads);
    pthread_mutex_unlock(&g_pool_init);
    pthread_mutex_unlock(&g_submit);
    return LMC_OK;
}

int lmc_num_threads(void) {
    pthread_mutex_lock(&g_pool_init);
    if (!g_num_threads) g_num_threads = default_threads();
    int n = g_num_threads;
    pthread_mutex_unlock(&g_pool_init);
    return n;
}

static void dispatch(int active, int64_t n, int64_t chunk, lmc_range_fn fn, void *ctx) {
    pool *p = &g_pool;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    p->active = active;
    atomic_store(&p->pending, p->nworkers);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    t_in_worker = true;
    run_chunk(p, 0);
    t_in_worker = false;
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < SPIN_ITERS * 10) {
        spins++;
        __builtin_ia32_pause();
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void lmc_parallel_for(int64_t n, int64_t grain, lmc_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nthreads = t_in_worker ? 1 : ensure_pool();
    int64_t units = (n + grain - 1) / grain;
    if (units < nthreads) nthreads = (int)units;
    if (nthreads <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    int64_t chunk = (units + nthreads - 1) / nthreads * grain;
    int active = (int)((n + chunk - 1) / chunk);
    pthread_mutex_lock(&g_submit);
    dispatch(active, n, chunk, fn, ctx);
    pthread_mutex_unlock(&g_submit);
}

void lmc_parallel_run(int nthreads, lmc_range_fn fn, void *ctx) {
    if (nthreads <= 0) return;
    int avail = t_in_worker ? 1 : ensure_pool();
    if (nthreads > avail || nthreads == 1) {
        for (int t = 0; t < nthreads; t++) fn(ctx, t, t + 1, t);
        return;
    }
    pthread_mutex_lock(&g_submit);
    dispatch(nthreads, nthreads, 1, fn, ctx);
    pthread_mutex_unlock(&g_submit);
}
