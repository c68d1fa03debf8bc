/* Weights moved onto 2 MiB pages in the background (core/huge_pages.h):
 * every byte stays where it was, readers running meanwhile see the right
 * bytes throughout, the moved part really is anonymous memory, a region can
 * be forgotten at any point, and a model generates the same tokens before,
 * during and after the move as without it. Where transparent huge pages are
 * off, nothing is adopted and the tests check just that. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/huge_pages.h"
#include "io/safetensors_internal.h"
#include "lmc/lmc.h"
#include "model_fixture.h"
#include "runtime/kv_cache.h"
#include "runtime/model_internal.h"
#include "test_util.h"

enum { MIB = 1 << 20, HUGE = 2 << 20 };

/* The byte at offset i of test file `seed`: differs from page to page and file to file. */
static uint8_t byte_at(uint32_t seed, size_t i) {
    uint32_t x = (uint32_t)(i / 8) * 2654435761u ^ seed * 40503u;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    return (uint8_t)(x >> (8 * (i % 4)));
}

/* A temp file of len bytes of pattern `seed`, mapped read-only and private
 * (as lmc_safetensors_open maps a checkpoint); NULL on failure. */
static uint8_t *map_pattern(uint32_t seed, size_t len) {
    char path[] = "/tmp/lmc-huge-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    unlink(path);
    uint8_t *buf = malloc(MIB);
    bool ok = buf != NULL;
    for (size_t at = 0; ok && at < len; at += MIB) {
        size_t n = len - at < MIB ? len - at : MIB;
        for (size_t i = 0; i < n; i++) buf[i] = byte_at(seed, at + i);
        ok = pwrite(fd, buf, n, (off_t)at) == (ssize_t)n;
    }
    free(buf);
    void *p = ok ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

/* Offset of the first wrong byte of [p, p + len), or len. */
static size_t first_wrong(const uint8_t *p, uint32_t seed, size_t from, size_t len) {
    for (size_t i = from; i < len; i++)
        if (p[i] != byte_at(seed, i)) return i;
    return len;
}

/* Bytes of [lo, hi) that /proc/self/smaps counts as "field" (Anonymous, AnonHugePages, Rss ...). */
static size_t smaps_bytes(const void *lo, const void *hi, const char *field) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    size_t total = 0, flen = strlen(field);
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= (uintptr_t)lo && b <= (uintptr_t)hi;
            continue;
        }
        unsigned long kib;
        if (inside && !strncmp(line, field, flen) && line[flen] == ':' && sscanf(line + flen + 1, "%lu", &kib) == 1)
            total += (size_t)kib * 1024;
    }
    fclose(f);
    return total;
}

/* The length of a mapping of len bytes: whole 4 KiB pages. */
static size_t pages_of(size_t len) { return (len + 4095) & ~(size_t)4095; }

/* Whole 2 MiB pages inside [p, p + len): what a region moves. */
static size_t whole_pages(const void *p, size_t len) {
    uintptr_t a = (uintptr_t)p, first = (a + HUGE - 1) & ~(uintptr_t)(HUGE - 1), end = (a + len) & ~(uintptr_t)(HUGE - 1);
    return end > first ? end - first : 0;
}

typedef struct reader {
    const uint8_t *p;
    size_t len;
    uint32_t seed;
    atomic_bool stop;
    long rounds, wrong;
} reader;

/* Checks 4 KiB windows across the whole mapping until told to stop. */
static void *read_loop(void *arg) {
    reader *r = arg;
    size_t at = 0;
    while (!atomic_load(&r->stop) || r->rounds < 64) {
        size_t end = r->len - at < 4096 ? r->len : at + 4096;
        for (size_t i = first_wrong(r->p, r->seed, at, end); i < end; i = first_wrong(r->p, r->seed, i + 1, end)) r->wrong++;
        at = (at + 3 * MIB + 4096 * 7) % r->len;
        r->rounds++;
    }
    return NULL;
}

static void test_small_and_unavailable(void) {
    CHECK(lmc_huge_pages_adopt(NULL, 64 * MIB) == NULL);
    CHECK(lmc_huge_pages_moved(NULL) == 0);
    lmc_huge_pages_forget(NULL); /* ignored */
    CHECK(lmc_huge_pages_affordable(0));
    CHECK(!lmc_huge_pages_affordable(SIZE_MAX / 2));
    uint8_t *p = map_pattern(7, MIB); /* no whole 2 MiB page inside */
    CHECK(p != NULL);
    if (!p) return;
    CHECK(lmc_huge_pages_adopt(p, MIB) == NULL);
    munmap(p, MIB);
    if (!lmc_huge_pages_available()) {
        uint8_t *q = map_pattern(8, 16 * MIB);
        CHECK(q && lmc_huge_pages_adopt(q, 16 * MIB) == NULL); /* nothing to gain: nothing adopted */
        if (q) munmap(q, 16 * MIB);
        fprintf(stderr, "transparent huge pages are off here: only the refusals are tested\n");
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* The cgroup memory limit is read from v1 and v2 layouts, the smallest of a
 * cgroup and its ancestors, with "max" and v1's "unlimited" ignored. */
static void test_cgroup_limit(void) {
    char root[] = "/tmp/lmc-cg-XXXXXX", path[256], cmd[512];
    CHECK(mkdtemp(root) != NULL);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/memory/a/b %s/svc/inner", root, root);
    CHECK(system(cmd) == 0);
#define PUT(rel, text) (snprintf(path, sizeof path, "%s/%s", root, rel), write_text(path, text))
    PUT("memory/memory.limit_in_bytes", "9223372036854771712\n"); /* v1 root: unlimited */
    PUT("memory/a/memory.limit_in_bytes", "536870912\n");
    PUT("memory/a/b/memory.limit_in_bytes", "1073741824\n");
    PUT("svc/memory.max", "2147483648\n");
    PUT("svc/inner/memory.max", "max\n");
    PUT("v1", "5:cpu,memory:/a/b\n1:cpu:/\n");
    PUT("v2", "0::/svc/inner\n");
    PUT("both", "4:memory:/a/b\n0::/svc/inner\n");
    PUT("none", "0::/elsewhere\n");
#undef PUT
    char f[256];
    snprintf(f, sizeof f, "%s/v1", root);
    CHECK(lmc_huge_pages_cgroup_limit(f, root) == 536870912ull); /* the parent's is smaller */
    snprintf(f, sizeof f, "%s/v2", root);
    CHECK(lmc_huge_pages_cgroup_limit(f, root) == 2147483648ull); /* "max" here, 2 GiB above */
    snprintf(f, sizeof f, "%s/both", root);
    CHECK(lmc_huge_pages_cgroup_limit(f, root) == 536870912ull);
    snprintf(f, sizeof f, "%s/none", root);
    CHECK(lmc_huge_pages_cgroup_limit(f, root) == 0);
    snprintf(f, sizeof f, "%s/missing", root);
    CHECK(lmc_huge_pages_cgroup_limit(f, root) == 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
}

/* A region moved while another thread reads it: same bytes throughout and
 * after, and the moved part anonymous memory. */
static void test_move_under_readers(void) {
    if (!lmc_huge_pages_available()) return;
    size_t len = 21 * MIB + 12345; /* a partial piece and a partial page at the end */
    uint8_t *p = map_pattern(1, len);
    CHECK(p != NULL);
    if (!p) return;
    size_t expect = whole_pages(p, len);
    CHECK(expect >= 18 * MIB);
    reader r = {.p = p, .len = len, .seed = 1};
    atomic_init(&r.stop, false);
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, read_loop, &r) == 0;
    CHECK(threaded);
    lmc_huge_region *reg = lmc_huge_pages_adopt(p, len);
    CHECK(reg != NULL);
    lmc_huge_pages_wait();
    atomic_store(&r.stop, true);
    if (threaded) pthread_join(t, NULL);
    CHECKF(r.wrong == 0, "%ld wrong bytes seen by the reader in %ld windows", r.wrong, r.rounds);
    CHECKF(lmc_huge_pages_moved(reg) == expect, "moved %zu of %zu", lmc_huge_pages_moved(reg), expect);
    CHECKF(first_wrong(p, 1, 0, len) == len, "byte %zu differs after the move", first_wrong(p, 1, 0, len));
    size_t anon = smaps_bytes(p, p + pages_of(len), "Anonymous");
    CHECKF(anon == expect, "anonymous bytes %zu, moved %zu", anon, expect);
    fprintf(stderr, "moved %zu MiB; AnonHugePages %zu MiB (what the kernel could give)\n", expect / MIB,
            smaps_bytes(p, p + pages_of(len), "AnonHugePages") / MIB);
    lmc_huge_pages_forget(reg);
    CHECK(first_wrong(p, 1, 0, len) == len); /* forgetting a finished region leaves the bytes */
    CHECK(munmap(p, len) == 0);
}

/* Regions forgotten before, during and after their move: the queue goes on
 * with the others, and every mapping keeps its bytes. */
static void test_forget(void) {
    if (!lmc_huge_pages_available()) return;
    size_t len_a = 64 * MIB, len_b = 16 * MIB + 100, len_c = 8 * MIB;
    uint8_t *a = map_pattern(2, len_a), *b = map_pattern(3, len_b), *c = map_pattern(4, len_c);
    CHECK(a && b && c);
    if (!a || !b || !c) return;
    lmc_huge_region *ra = lmc_huge_pages_adopt(a, len_a), *rb = lmc_huge_pages_adopt(b, len_b),
                    *rc = lmc_huge_pages_adopt(c, len_c);
    CHECK(ra && rb && rc);
    lmc_huge_pages_forget(rb); /* queued behind a: unlinked */
    lmc_huge_pages_forget(ra); /* in flight or queued: stops after at most a piece */
    CHECK(lmc_huge_pages_moved(rc) <= whole_pages(c, len_c));
    lmc_huge_pages_wait();
    CHECKF(lmc_huge_pages_moved(rc) == whole_pages(c, len_c), "c moved %zu", lmc_huge_pages_moved(rc));
    lmc_huge_pages_forget(rc);
    CHECK(first_wrong(a, 2, 0, len_a) == len_a);
    CHECK(first_wrong(b, 3, 0, len_b) == len_b);
    CHECK(first_wrong(c, 4, 0, len_c) == len_c);
    CHECK(smaps_bytes(b, b + pages_of(len_b), "Anonymous") == 0); /* b never started */
    CHECK(munmap(a, len_a) == 0 && munmap(b, len_b) == 0 && munmap(c, len_c) == 0);
    lmc_huge_pages_wait(); /* an empty queue: returns */
}

/* A child forked while a region moves: its forget and wait return (no
 * worker there to wait for) and its bytes are right; the parent's move goes on. */
static void test_fork(void) {
    if (!lmc_huge_pages_available()) return;
    size_t len = 64 * MIB;
    uint8_t *p = map_pattern(5, len);
    CHECK(p != NULL);
    if (!p) return;
    lmc_huge_region *r = lmc_huge_pages_adopt(p, len);
    CHECK(r != NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* a hang fails the child, not the whole test run */
        lmc_huge_pages_forget(r);
        lmc_huge_pages_wait();
        _exit(first_wrong(p, 5, 0, len) == len ? 0 : 1);
    }
    CHECK(pid > 0);
    int status = 0;
    if (pid > 0) CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    lmc_huge_pages_wait();
    CHECK(lmc_huge_pages_moved(r) == whole_pages(p, len));
    lmc_huge_pages_forget(r);
    CHECK(first_wrong(p, 5, 0, len) == len);
    CHECK(munmap(p, len) == 0);
}

/* THPeligible of the mapping holding p in /proc/self/smaps (-1: not found). */
static int thp_eligible(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int v = -1;
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) inside = a <= (uintptr_t)p && (uintptr_t)p < b;
        else if (inside && sscanf(line, "THPeligible: %d", &v) == 1) break;
    }
    fclose(f);
    return v;
}

static bool thp_mode_madvise(void) {
    char *s = read_file_all("/sys/kernel/mm/transparent_hugepage/enabled", NULL);
    bool m = s && strstr(s, "[madvise]");
    free(s);
    return m;
}

/* A KV cache's large storage is advised onto huge pages: its mapping becomes
 * eligible where the mode is "madvise" (under "always" it is anyway). */
static void test_kv_cache_advised(void) {
    lmc_kv_cache c;
    CHECK(lmc_kv_cache_init(&c, 1, NULL, 1, 8, 128, 8192, LMC_F32) == LMC_OK);
    CHECK(lmc_kv_cache_reserve(&c, 4096) == LMC_OK); /* 16 MiB each for K and V */
    const char *k = lmc_array_ptr(c.layers[0].k);
    size_t n = lmc_array_nbytes(c.layers[0].k);
    const char *inner = (const char *)(((uintptr_t)k + HUGE - 1) & ~(uintptr_t)(HUGE - 1)); /* a whole page inside */
    CHECK(n == (size_t)16 * MIB && inner + HUGE <= k + n);
    if (thp_mode_madvise()) CHECKF(thp_eligible(inner) == 1, "THPeligible %d", thp_eligible(inner));
    else if (!lmc_huge_pages_available()) CHECK(thp_eligible(inner) == 0);
    lmc_kv_cache_free(&c);
    /* a plain allocation of the same size is not (the advice is what makes it) */
    char *plain = malloc(16 * MIB);
    const char *pin = (const char *)(((uintptr_t)plain + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    if (plain && thp_mode_madvise()) CHECK(thp_eligible(pin) == 0);
    free(plain);
}

/* Greedy ids of a 24-token answer to a fixed prompt. */
static bool answer(lmc_model *m, int32_t *ids) {
    static const int32_t prompt[] = {9707, 11, 1879, 0, 374, 264, 1273, 13};
    lmc_generate_options go = lmc_generate_options_default();
    go.max_tokens = 24;
    go.ignore_eos = true;
    go.sampler.temperature = 0;
    lmc_generation g = {0};
    bool ok = lmc_generate_ids(m, prompt, sizeof prompt / sizeof *prompt, &go, &g) == LMC_OK && g.n_ids == 24;
    if (ok) memcpy(ids, g.ids, 24 * sizeof *ids);
    lmc_generation_clear(&g);
    return ok;
}

/* A model (tiny-qwen3: a 19 MB embedding file) answers the same with its
 * weights on the file mapping, while they move and after. */
static void test_model_same_answer(void) {
    lmc_load_options off = lmc_load_options_default(), on = lmc_load_options_default();
    off.huge_pages = false;
    lmc_model *m = NULL;
    char *dir = tiny_model_with("tiny-qwen3", "qwen3", &off, &m);
    CHECKF(m != NULL, "%s", lmc_last_error());
    int32_t want[24], during[24], after[24];
    bool ok = m && answer(m, want);
    CHECK(ok);
    CHECK(!m || lmc_checkpoint_promoted(m->dec->ck) == 0);
    lmc_model_free(m);
    char path[4200];
    snprintf(path, sizeof path, "%s/m", dir ? dir : "");
    m = NULL;
    CHECK(dir && lmc_model_load(path, &on, &m) == LMC_OK);
    if (ok && m) {
        CHECK(answer(m, during));
        lmc_huge_pages_wait();
        CHECK(answer(m, after));
        CHECK(!memcmp(want, during, sizeof want));
        CHECK(!memcmp(want, after, sizeof want));
        size_t moved = lmc_checkpoint_promoted(m->dec->ck);
        if (lmc_huge_pages_available() && lmc_huge_pages_affordable(32 * MIB))
            CHECKF(moved >= 16 * MIB, "moved %zu bytes of a 19 MB file", moved);
        else
            CHECK(moved == 0);
    }
    lmc_model_free(m); /* unmaps what moved and what did not */
    model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_small_and_unavailable);
    RUN(test_cgroup_limit);
    RUN(test_move_under_readers);
    RUN(test_forget);
    RUN(test_kv_cache_advised);
    RUN(test_fork);
    RUN(test_model_same_answer);
    return TEST_REPORT();
}
