/* Background promotion of read-only file mappings onto anonymous 2 MiB
 * pages (see huge_pages.h for why and how).
 *
 * One worker thread serves a FIFO of regions and exits when the queue is
 * empty; adopting a region starts it again. The worker runs at the lowest
 * priority: on a machine whose cores all run the model it moves pieces only
 * when a core is free, so the copy never slows the tokens it is meant to
 * speed up by more than the memory traffic of one piece at a time. */
#include "core/huge_pages.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    HUGE = 2 << 20,  /* the x86-64 (and arm64 4 KiB-granule) PMD size */
    PIECE = 8 << 20, /* moved at once: bytes held twice at most, and a separate VMA each */
};

struct lmc_huge_region {
    char *base;            /* first 2 MiB boundary inside the mapping */
    size_t len;            /* whole 2 MiB pages from base */
    size_t moved;          /* bytes from base already on anonymous memory */
    bool cancel;           /* forget asked the worker to stop */
    bool queued;           /* in g_queue (the worker unlinks the region it finishes) */
    lmc_huge_region *next; /* queue order */
};

/* a rounded up / down to a 2 MiB boundary */
static uintptr_t huge_up(uintptr_t a) { return (a + HUGE - 1) & ~(uintptr_t)(HUGE - 1); }
static uintptr_t huge_down(uintptr_t a) { return a & ~(uintptr_t)(HUGE - 1); }

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER; /* a piece moved, a region left the queue */
static lmc_huge_region *g_queue;
static bool g_worker_running;

static bool read_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[256] = "";
    bool ok = fgets(line, sizeof line, f) && (strstr(line, "[always]") || strstr(line, "[madvise]"));
    fclose(f);
    return ok;
}

static bool g_available;
static void init_available(void) { g_available = read_available(); }

bool lmc_huge_pages_available(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_available);
    return g_available;
}

/* The number in file `path` ("max" and v1's "unlimited" near 2^63 read as 0). */
static unsigned long long read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1 || v >= (1ull << 62)) v = 0;
    fclose(f);
    return v;
}

unsigned long long lmc_huge_pages_cgroup_limit(const char *cgroup_file, const char *root) {
    FILE *f = fopen(cgroup_file, "r");
    if (!f) return 0;
    unsigned long long best = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c2 = 0;
        char *ctrl = c1 + 1, *save = NULL, dir[1400];
        bool v2 = c1 == line + 1 && line[0] == '0' && !*ctrl, v1 = false; /* "0::/path"; v1: "N:a,memory,b:/path" */
        for (char *t = strtok_r(ctrl, ",", &save); t && !v1; t = strtok_r(NULL, ",", &save)) v1 = !strcmp(t, "memory");
        if (!v1 && !v2) continue;
        const char *file;
        snprintf(dir, sizeof dir, "%s%s%s", root, v1 ? "/memory" : "", c2 + 1);
        file = v1 ? "memory.limit_in_bytes" : "memory.max";
        for (;;) { /* this cgroup, then each ancestor up to the hierarchy's root */
            char path[1500];
            snprintf(path, sizeof path, "%s/%s", dir, file);
            unsigned long long v = read_limit(path);
            if (v && (!best || v < best)) best = v;
            char *slash = strrchr(dir, '/');
            if (!slash || (size_t)(slash - dir) < strlen(root) + (v1 ? 7 : 0)) break;
            *slash = 0;
        }
    }
    fclose(f);
    return best;
}

bool lmc_huge_pages_affordable(size_t bytes) {
    unsigned long long limit = lmc_huge_pages_cgroup_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    if (limit && bytes > limit / 2) return false;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(f);
    return found && bytes <= kib * 1024ull / 2;
}

/* Moves [p, p + n) (2 MiB-aligned, whole pages) onto a fresh anonymous
 * mapping at the same addresses. False, with the piece untouched, when the
 * kernel refuses memory or the move. */
static bool move_piece(char *p, size_t n) {
    size_t span = n + HUGE;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return false;
    char *s = (char *)huge_up((uintptr_t)raw); /* 2 MiB-aligned inside */
    if (s > raw) munmap(raw, (size_t)(s - raw));
    if (raw + span > s + n) munmap(s + n, (size_t)(raw + span - (s + n)));
    madvise(s, n, MADV_HUGEPAGE); /* advice only: without it the copy still works, on small pages */
    memcpy(s, p, n);
    if (mprotect(s, n, PROT_READ) != 0 || mremap(s, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
        munmap(s, n);
        return false;
    }
    return true;
}

static void *worker(void *arg) {
    (void)arg;
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19); /* this thread only (Linux) */
    pthread_mutex_lock(&g_lock);
    while (g_queue) {
        lmc_huge_region *r = g_queue;
        while (!r->cancel && r->moved < r->len) {
            size_t n = r->len - r->moved < PIECE ? r->len - r->moved : PIECE;
            char *p = r->base + r->moved;
            pthread_mutex_unlock(&g_lock);
            bool ok = move_piece(p, n);
            pthread_mutex_lock(&g_lock);
            if (!ok) break; /* out of memory or refused: the rest stays on the file */
            r->moved += n;
            pthread_cond_broadcast(&g_changed);
        }
        g_queue = r->next;
        r->queued = false;
        pthread_cond_broadcast(&g_changed);
    }
    g_worker_running = false;
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

void lmc_huge_pages_advise(void *p, size_t n) {
    uintptr_t first = huge_up((uintptr_t)p), end = huge_down((uintptr_t)p + n);
    if (p && end > first && lmc_huge_pages_available()) madvise((void *)first, end - first, MADV_HUGEPAGE);
}

/* fork() copies the queue but not the worker: the child's regions leave the
 * queue (the move stops there; the bytes are the same either way), so its
 * forget and wait never wait for a thread that does not exist. The lock is
 * held across fork so the child never inherits it locked mid-update. */
static void fork_prepare(void) { pthread_mutex_lock(&g_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&g_lock); }
static void fork_child(void) {
    for (lmc_huge_region *r = g_queue; r; r = r->next) r->queued = false;
    g_queue = NULL;
    g_worker_running = false;
    pthread_mutex_unlock(&g_lock);
}
static void register_fork_handlers(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

lmc_huge_region *lmc_huge_pages_adopt(void *addr, size_t len) {
    if (!addr || !lmc_huge_pages_available()) return NULL;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
    uintptr_t first = huge_up((uintptr_t)addr), end = huge_down((uintptr_t)addr + len);
    if (end <= first) return NULL;
    lmc_huge_region *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->base = (char *)first;
    r->len = end - first;
    r->queued = true;
    pthread_mutex_lock(&g_lock);
    lmc_huge_region **tail = &g_queue;
    while (*tail) tail = &(*tail)->next;
    *tail = r;
    if (!g_worker_running) {
        pthread_attr_t attr;
        pthread_t t;
        bool started = pthread_attr_init(&attr) == 0;
        if (started) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            started = pthread_create(&t, &attr, worker, NULL) == 0;
            pthread_attr_destroy(&attr);
        }
        if (!started) { /* no thread: nothing is promoted, nothing else changes */
            *tail = NULL;
            pthread_mutex_unlock(&g_lock);
            free(r);
            return NULL;
        }
        g_worker_running = true;
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

void lmc_huge_pages_forget(lmc_huge_region *r) {
    if (!r) return;
    pthread_mutex_lock(&g_lock);
    r->cancel = true;
    if (r->queued && g_queue != r) { /* not started: just unlink it */
        lmc_huge_region **p = &g_queue;
        while (*p != r) p = &(*p)->next;
        *p = r->next;
        r->queued = false;
        pthread_cond_broadcast(&g_changed);
    }
    while (r->queued) pthread_cond_wait(&g_changed, &g_lock); /* the worker's current region: it stops after the piece in flight */
    pthread_mutex_unlock(&g_lock);
    free(r);
}

size_t lmc_huge_pages_moved(const lmc_huge_region *r) {
    if (!r) return 0;
    pthread_mutex_lock(&g_lock);
    size_t m = r->moved;
    pthread_mutex_unlock(&g_lock);
    return m;
}

void lmc_huge_pages_wait(void) {
    pthread_mutex_lock(&g_lock);
    while (g_queue) pthread_cond_wait(&g_changed, &g_lock);
    pthread_mutex_unlock(&g_lock);
}
