/* The worker pool behind lmc_parallel_for, lmc_parallel_split and
 * lmc_parallel_run.
 *
 * A job is split into `active` chunks, fixed by the call: one per thread for
 * lmc_parallel_for (fixed for a given thread count) and for
 * lmc_parallel_split (whose chunk t works through part t and then helps the
 * others). The chunks are not
 * bound to threads: the caller and the workers claim them
 * one by one from a shared word, and chunk t always runs as fn(ctx, begin_t,
 * end_t, t), whoever runs it. So results do not depend on scheduling, and a
 * worker that is descheduled (a busy machine) or still asleep never holds up
 * the caller: the caller runs the chunks nobody has claimed yet, and only
 * waits for chunks another thread is running.
 *
 * Waiting is bounded by time, not by a count of `pause` instructions: a
 * thread spins for SPIN_NS (decode issues jobs microseconds apart, and a
 * spinning worker picks one up at once), then sleeps on a futex. Publishing a
 * job or finishing one makes a system call only when somebody sleeps.
 *
 * The claim word packs (generation << 32 | active << 16 | next): a thread
 * that claims chunk `next` of generation g with one compare-and-swap knows
 * the job's fields stay valid until it reports its chunks done (a thread
 * reports all it ran at once, when it finds none left), since the caller
 * does not return (nor publish the next job) before every chunk is done. A late worker that sees an exhausted or newer word claims nothing of
 * the old job. */
#include "core/threadpool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

enum { MAX_THREADS = 256 };
static const int64_t SPIN_NS = 50000; /* how long a waiting thread spins before it sleeps */

typedef struct pool {
    pthread_t threads[MAX_THREADS];
    int nworkers;                 /* threads besides the caller */
    _Atomic uint64_t claim;       /* generation << 32 | active << 16 | next chunk */
    _Atomic uint32_t generation;  /* futex word: bumped per job (and to stop) */
    _Atomic uint32_t remaining;   /* futex word: chunks of the current job not yet done */
    _Atomic int idle_sleepers;    /* workers asleep on `generation` */
    _Atomic int caller_sleeping;  /* the caller is asleep on `remaining` */
    _Atomic bool stop;
    /* the current job: written before the claim word is published */
    lmc_range_fn fn;
    void *ctx;
    int64_t n, chunk;
} pool;

static pool g_pool;
static pthread_mutex_t g_pool_init = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_submit = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static int g_num_threads; /* 0 = not yet decided */
static _Thread_local bool t_in_worker;

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *word != value or SPIN_NS pass; true when it changed. The
 * clock is read once per 32 pauses (a pause is tens of cycles). */
static bool spin_while_equal(_Atomic uint32_t *word, uint32_t value) {
    int64_t deadline = 0;
    for (int i = 1;; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != value) return true;
        __builtin_ia32_pause();
        if (i % 32 == 0) {
            int64_t t = now_ns();
            if (!deadline) deadline = t + SPIN_NS;
            else if (t > deadline) return false;
        }
    }
}

/* Claims one chunk of generation `gen`: its index, or -1 when none is left
 * (or the word already belongs to another job). */
static int claim_chunk(pool *p, uint32_t gen) {
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        uint32_t g = (uint32_t)(c >> 32);
        int active = (int)(c >> 16 & 0xffff), next = (int)(c & 0xffff);
        if (g != gen || next >= active) return -1;
        if (atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
            return next;
    }
}

/* Runs chunks of generation `gen` until none is left, then reports them
 * done with one update of the shared count (a job of many small tasks would
 * otherwise bounce that cache line between the cores once per task). */
static void run_chunks(pool *p, uint32_t gen, bool wake_caller) {
    uint32_t done = 0;
    for (int t; (t = claim_chunk(p, gen)) >= 0; done++) {
        int64_t begin = (int64_t)t * p->chunk;
        int64_t end = begin + p->chunk;
        if (end > p->n) end = p->n;
        if (begin < end) p->fn(p->ctx, begin, end, t);
    }
    if (done && atomic_fetch_sub_explicit(&p->remaining, done, memory_order_seq_cst) == done && wake_caller &&
        atomic_load_explicit(&p->caller_sleeping, memory_order_seq_cst))
        futex_wake_all(&p->remaining);
}

static void *worker_main(void *arg) {
    pool *p = &g_pool;
    t_in_worker = true;
    uint32_t seen = (uint32_t)(uintptr_t)arg; /* the generation when this worker was created */
    for (;;) {
        if (!spin_while_equal(&p->generation, seen)) {
            atomic_fetch_add_explicit(&p->idle_sleepers, 1, memory_order_seq_cst);
            while (atomic_load_explicit(&p->generation, memory_order_seq_cst) == seen) futex_wait(&p->generation, seen);
            atomic_fetch_sub_explicit(&p->idle_sleepers, 1, memory_order_relaxed);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_chunks(p, seen, true);
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

/* Publishes a new generation (a job or the stop signal) and wakes sleepers. */
static uint32_t bump_generation(pool *p) {
    uint32_t gen = atomic_fetch_add_explicit(&p->generation, 1, memory_order_seq_cst) + 1;
    if (atomic_load_explicit(&p->idle_sleepers, memory_order_seq_cst) > 0) futex_wake_all(&p->generation);
    return gen;
}

static void pool_stop(void) {
    pool *p = &g_pool;
    atomic_store(&p->stop, true);
    bump_generation(p);
    futex_wake_all(&p->generation); /* also any worker between its count and its wait */
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
    p->nworkers = 0;
    atomic_store(&p->stop, false);
}

/* Starts workers so that nthreads-1 exist (called with g_pool_init and g_submit held). */
static void pool_resize(int nthreads) {
    pool *p = &g_pool;
    if (p->nworkers == nthreads - 1) return;
    if (p->nworkers) pool_stop();
    uint32_t gen = atomic_load(&p->generation);
    for (int i = 0; i < nthreads - 1; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, (void *)(uintptr_t)gen) != 0) break;
        p->nworkers = i + 1;
    }
}

static int ensure_pool(void) {
    pthread_mutex_lock(&g_pool_init);
    if (!g_num_threads) g_num_threads = default_threads();
    if (g_pool.nworkers != g_num_threads - 1) {
        /* First use: no job can be running, but take the submit lock like lmc_set_num_threads. */
        pthread_mutex_unlock(&g_pool_init);
        pthread_mutex_lock(&g_submit);
        pthread_mutex_lock(&g_pool_init);
        pool_resize(g_num_threads);
        pthread_mutex_unlock(&g_submit);
    }
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

static _Atomic bool g_stats_on;
static lmc_pool_stats g_stats;   /* under g_submit */
static int64_t g_stats_last_end; /* when the last counted region ended, 0 for none */

void lmc_pool_stats_enable(bool on) {
    pthread_mutex_lock(&g_submit);
    memset(&g_stats, 0, sizeof g_stats);
    g_stats_last_end = 0;
    atomic_store(&g_stats_on, on);
    pthread_mutex_unlock(&g_submit);
}

lmc_pool_stats lmc_pool_stats_get(void) {
    pthread_mutex_lock(&g_submit);
    lmc_pool_stats s = g_stats;
    pthread_mutex_unlock(&g_submit);
    return s;
}

/* Runs `active` chunks of `chunk` indices over [0, n) on the caller and the workers. */
static void dispatch(int active, int64_t n, int64_t chunk, lmc_range_fn fn, void *ctx) {
    pool *p = &g_pool;
    bool stats = atomic_load_explicit(&g_stats_on, memory_order_relaxed);
    int64_t t_start = stats ? now_ns() : 0;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store_explicit(&p->remaining, (uint32_t)active, memory_order_relaxed);
    uint32_t gen = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->claim, (uint64_t)gen << 32 | (uint64_t)active << 16, memory_order_release);
    bump_generation(p);
    t_in_worker = true;
    run_chunks(p, gen, false);
    t_in_worker = false;
    int64_t t_mine = stats ? now_ns() : 0;
    /* Only chunks that other threads are running are left. */
    for (;;) {
        uint32_t left = atomic_load_explicit(&p->remaining, memory_order_acquire);
        if (!left) break;
        if (spin_while_equal(&p->remaining, left)) continue;
        atomic_store_explicit(&p->caller_sleeping, 1, memory_order_seq_cst);
        while ((left = atomic_load_explicit(&p->remaining, memory_order_seq_cst)) != 0) futex_wait(&p->remaining, left);
        atomic_store_explicit(&p->caller_sleeping, 0, memory_order_relaxed);
    }
    if (stats) {
        int64_t t_end = now_ns();
        g_stats.regions++;
        g_stats.region_s += (double)(t_end - t_start) * 1e-9;
        g_stats.wait_s += (double)(t_end - t_mine) * 1e-9;
        if (g_stats_last_end && t_start - g_stats_last_end < 1000000) g_stats.serial_s += (double)(t_start - g_stats_last_end) * 1e-9;
        g_stats_last_end = t_end;
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

enum { SPLIT_PIECE = 4 }; /* the fewest quanta an owner takes from the front of its part at once */

typedef struct split_job {
    _Atomic uint64_t part[MAX_THREADS]; /* front << 32 | back, in quanta; front == back: empty */
    int nparts;
    int64_t n, quantum;
    lmc_range_fn fn;
    void *ctx;
} split_job;

/* Takes quanta from the front (owner: a quarter of what is left, at least
 * SPLIT_PIECE, so a fn call spans many quanta while the back stays free for
 * helpers) or one from the back (thief) of part i; returns how many, with
 * *at the first. */
static int64_t split_take(split_job *s, int i, bool back, int64_t *at) {
    uint64_t w = atomic_load_explicit(&s->part[i], memory_order_acquire);
    for (;;) {
        int64_t f = (int64_t)(w >> 32), b = (int64_t)(uint32_t)w;
        int64_t k = back ? 1 : (b - f) / 4 > SPLIT_PIECE ? (b - f) / 4 : SPLIT_PIECE;
        int64_t take = b - f < k ? b - f : k;
        if (take <= 0) return 0;
        uint64_t nw = back ? (uint64_t)f << 32 | (uint64_t)(b - take) : (uint64_t)(f + take) << 32 | (uint64_t)b;
        if (atomic_compare_exchange_weak_explicit(&s->part[i], &w, nw, memory_order_acq_rel, memory_order_acquire)) {
            *at = back ? b - take : f;
            return take;
        }
    }
}

static void split_run(split_job *s, int i, int64_t at, int64_t q) {
    int64_t begin = at * s->quantum, end = (at + q) * s->quantum;
    s->fn(s->ctx, begin, end < s->n ? end : s->n, i);
}

static void split_part(void *vctx, int64_t t0, int64_t t1, int thread) {
    (void)t1;
    (void)thread;
    split_job *s = vctx;
    int own = (int)t0;
    int64_t at, q;
    while ((q = split_take(s, own, false, &at)) > 0) split_run(s, own, at, q);
    for (;;) { /* help the part with the most left, from its back */
        int best = -1;
        int64_t most = 0;
        for (int i = 0; i < s->nparts; i++) {
            uint64_t w = atomic_load_explicit(&s->part[i], memory_order_relaxed);
            int64_t left = (int64_t)(uint32_t)w - (int64_t)(w >> 32);
            if (left > most) {
                most = left;
                best = i;
            }
        }
        if (best < 0) return;
        if ((q = split_take(s, best, true, &at)) > 0) split_run(s, best, at, q);
    }
}

void lmc_parallel_split(int64_t n, int64_t quantum, lmc_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (quantum < 1) quantum = 1;
    int nthreads = t_in_worker ? 1 : ensure_pool();
    int64_t units = (n + quantum - 1) / quantum;
    if (nthreads > units) nthreads = (int)units;
    if (nthreads <= 1 || units > UINT32_MAX) {
        fn(ctx, 0, n, 0);
        return;
    }
    split_job s = {.nparts = nthreads, .n = n, .quantum = quantum, .fn = fn, .ctx = ctx};
    for (int i = 0; i < nthreads; i++) {
        int64_t f = units * i / nthreads, b = units * (i + 1) / nthreads;
        atomic_init(&s.part[i], (uint64_t)f << 32 | (uint64_t)b);
    }
    pthread_mutex_lock(&g_submit);
    dispatch(nthreads, nthreads, 1, split_part, &s);
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
