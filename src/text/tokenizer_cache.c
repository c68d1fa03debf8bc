/* The tokenizer cache: the BPE tables of a parsed tokenizer.json and the
 * text of the rest of the document, in one file per tokenizer.json, so that
 * the next lmc_tokenizer_load of the folder reads them back (a few
 * megabytes of read()) instead of scanning tens of megabytes of JSON and
 * resolving half a million merges. See tokenizer_internal.h for the file's
 * layout.
 *
 * Where: $LMC_CACHE_DIR (the value "off" turns the cache off), else
 * $XDG_CACHE_HOME/lmc, else $HOME/.cache/lmc. The file is
 * tokenizer-HASH.lmctok, HASH being the tk_sum64 of tokenizer.json's real
 * path: one file per tokenizer.json, which a changed file overwrites. The
 * header holds the file's identity (device, inode, size, modification and
 * change times), which must match a fresh fstat. Only files of the
 * current user that nobody else may write are read.
 *
 * Writing a file also removes the folder's cache files unused for 30 days
 * (reading one marks it used) and temporary files older than an hour.
 *
 * A cache file is trusted only after every check: header, identity, sizes
 * against the file's size, the checksum of the whole file, and the
 * structure (every offset inside the arena, every id inside the tables, a
 * free slot in each hash table so that lookups end). Anything wrong, and
 * the load goes the JSON way and writes a fresh file. Nothing here prints
 * or fails a load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmc/base.h"
#include "text/tokenizer_internal.h"

int tk_cache_settle_s = 2;
unsigned long tk_cache_loads, tk_cache_writes;

/* ---- checksum ---- */

static const uint64_t SUM_K = 0x9E3779B97F4A7C15ull;

/* Each step is a bijection of the lane for a given word, and of the word
 * for a given lane: a changed word always changes the lane. */
static inline uint64_t sum_step(uint64_t lane, uint64_t w) {
    lane = (lane ^ w) * SUM_K;
    return lane ^ (lane >> 29);
}

static void sum_block(tk_sum *s, const unsigned char *p) {
    uint64_t w[4];
    memcpy(w, p, 32);
    for (int i = 0; i < 4; i++) s->lane[i] = sum_step(s->lane[i], w[i]);
}

void tk_sum_init(tk_sum *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 4; i++) s->lane[i] = 0x243F6A8885A308D3ull * (uint64_t)(i + 1);
}

void tk_sum_update(tk_sum *s, const void *data, size_t n) {
    const unsigned char *p = data;
    if (!n) return;
    s->len += n;
    if (s->n_tail) {
        size_t take = 32 - s->n_tail < n ? 32 - s->n_tail : n;
        memcpy(s->tail + s->n_tail, p, take);
        s->n_tail += take;
        p += take;
        n -= take;
        if (s->n_tail < 32) return;
        sum_block(s, s->tail);
        s->n_tail = 0;
    }
    /* Four independent chains: the multiplies overlap (several GB/s). */
    uint64_t a = s->lane[0], b = s->lane[1], c = s->lane[2], d = s->lane[3];
    for (; n >= 32; p += 32, n -= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        a = sum_step(a, w[0]);
        b = sum_step(b, w[1]);
        c = sum_step(c, w[2]);
        d = sum_step(d, w[3]);
    }
    s->lane[0] = a, s->lane[1] = b, s->lane[2] = c, s->lane[3] = d;
    memcpy(s->tail, p, n);
    s->n_tail = n;
}

uint64_t tk_sum_final(const tk_sum *s) {
    tk_sum t = *s;
    if (t.n_tail) {
        memset(t.tail + t.n_tail, 0, 32 - t.n_tail);
        sum_block(&t, t.tail);
    }
    uint64_t h = t.len * SUM_K;
    for (int i = 0; i < 4; i++) h = sum_step(h, t.lane[i]);
    return h;
}

uint64_t tk_sum64(const void *p, size_t n) {
    tk_sum s;
    tk_sum_init(&s);
    tk_sum_update(&s, p, n);
    return tk_sum_final(&s);
}

/* ---- where ---- */

/* The cache folder, or false when caching is off or there is none. */
static bool cache_dir(char *out, size_t cap) {
    const char *env = getenv("LMC_CACHE_DIR");
    int n;
    if (env && *env) {
        if (!strcmp(env, "off")) return false;
        n = snprintf(out, cap, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && env[0] == '/') {
        n = snprintf(out, cap, "%s/lmc", env);
    } else if ((env = getenv("HOME")) && *env) {
        n = snprintf(out, cap, "%s/.cache/lmc", env);
    } else {
        return false;
    }
    return n > 0 && (size_t)n < cap;
}

bool tk_cache_key_init(const char *json_path, int fd, tk_cache_key *k) {
    memset(k, 0, sizeof *k);
    if (!cache_dir(k->dir, sizeof k->dir)) return false;
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(json_path, real) || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    int n = snprintf(k->path, sizeof k->path, "%s/tokenizer-%016llx.lmctok", k->dir, (unsigned long long)tk_sum64(real, strlen(real)));
    if (n <= 0 || (size_t)n >= sizeof k->path) return false;
    k->dev = (uint64_t)st.st_dev;
    k->ino = (uint64_t)st.st_ino;
    k->size = (uint64_t)st.st_size;
    k->mtime_sec = (uint64_t)st.st_mtim.tv_sec;
    k->mtime_nsec = (uint64_t)st.st_mtim.tv_nsec;
    k->ctime_sec = (uint64_t)st.st_ctim.tv_sec;
    k->ctime_nsec = (uint64_t)st.st_ctim.tv_nsec;
    /* A file changed within the clock's granularity before it was read could
     * change again with the same size and times (every change sets the
     * change time to the kernel's clock, which users cannot set); such a
     * file waits until its change time is behind. */
    k->settled = tk_cache_settle_s <= 0 || st.st_ctim.tv_sec + tk_cache_settle_s < time(NULL);
    return true;
}

/* ---- reading ---- */

typedef struct cache_spilled {
    uint64_t off;
    uint32_t len;
    int32_t id;
} cache_spilled;

typedef struct cache_char {
    uint32_t cp;
    int32_t id;
} cache_char;

_Static_assert(sizeof(cache_spilled) == sizeof(struct tk_strmap_spilled), "spilled entries are read in place");

static const char MAGIC[8] = "lmctokc";
static const uint32_t BYTE_ORDER_MARK = 0x01020304;

enum { N_SECTIONS = 9 };

/* The section sizes a header gives, or false when they overflow or do not
 * add up to the file's size. */
static bool section_sizes(const tk_cache_header *h, uint64_t file_size, uint64_t sz[N_SECTIONS]) {
    const uint64_t counts[N_SECTIONS] = {h->rest_len, h->arena_len, h->n_ids, h->n_ids, h->map_cap, h->n_spilled,
                                         h->merges_half, h->n_char_ids, h->n_space_join};
    const uint64_t unit[N_SECTIONS] = {1, 1, 4, 8, sizeof(tk_strmap_slot), sizeof(cache_spilled), 2 * sizeof(tk_merge_entry),
                                       sizeof(cache_char), 4};
    uint64_t total = sizeof *h;
    for (int i = 0; i < N_SECTIONS; i++) {
        if (counts[i] > file_size) return false; /* no product below can overflow */
        sz[i] = counts[i] * unit[i];
        total += sz[i];
    }
    return total == file_size;
}

static bool header_ok(const tk_cache_header *h, const tk_cache_key *k) {
    return !memcmp(h->magic, MAGIC, sizeof MAGIC) && h->version == TK_CACHE_VERSION && h->byte_order == BYTE_ORDER_MARK &&
           h->abi[0] == sizeof(tk_cache_header) && h->abi[1] == sizeof(tk_strmap_slot) && h->abi[2] == sizeof(tk_merge_entry) &&
           h->abi[3] == sizeof(void *) && h->layout == tk_bpe_layout_id() && h->dev == k->dev && h->ino == k->ino &&
           h->size == k->size && h->mtime_sec == k->mtime_sec && h->mtime_nsec == k->mtime_nsec && h->ctime_sec == k->ctime_sec &&
           h->ctime_nsec == k->ctime_nsec && !(h->flags & ~(uint64_t)(TK_CACHE_MERGES | TK_CACHE_CHAR_IDS | TK_CACHE_SPACE_JOIN)) &&
           !!(h->flags & TK_CACHE_MERGES) == (h->merges_half > 0) && (h->flags & TK_CACHE_CHAR_IDS || !h->n_char_ids) &&
           (h->flags & TK_CACHE_SPACE_JOIN || !h->n_space_join) &&
           /* space_join is used only with char_ids (tk_bpe_encode_word) */
           (!(h->flags & TK_CACHE_SPACE_JOIN) || h->flags & TK_CACHE_CHAR_IDS) && h->n_ids <= INT32_MAX && h->map_cap > 0 &&
           h->map_n < h->map_cap && h->map_n * 3 <= h->map_cap * 2 && h->n_spilled <= h->n_ids;
}

/* A reader's state: the tables so far, and a bit per id that has a string. */
typedef struct cache_reader {
    tk_bpe_tables *t;
    uint64_t *has_str;
    size_t map_used;
} cache_reader;

/* A string at arena offset off of len bytes, NUL-terminated inside the arena. */
static bool arena_string_ok(const tk_bpe_tables *t, uint64_t off, uint64_t len) {
    return off < t->arena_size && len < t->arena_size - off && t->arena[off + len] == 0;
}

/* Each section's entries [from, to) are checked as soon as they are read,
 * while they are in the CPU's cache; offsets become pointers there. The
 * sections before (the arena, id_len) are complete by then. */
typedef bool (*check_fn)(cache_reader *r, size_t from, size_t to);

/* id_off, read into id_str: each uint64 offset becomes a pointer in place. */
static bool check_ids(cache_reader *r, size_t from, size_t to) {
    tk_vocab_tables *v = &r->t->vocab;
    for (size_t i = from; i < to; i++) {
        uint64_t off;
        memcpy(&off, &v->id_str[i], sizeof off);
        if (off == UINT64_MAX) {
            v->id_str[i] = NULL;
            continue;
        }
        if (!arena_string_ok(r->t, off, v->id_len[i])) return false;
        v->id_str[i] = r->t->arena + off;
        r->has_str[i / 64] |= 1ull << (i % 64);
    }
    return true;
}

/* Every value of the map is an id with a string (a bit table of 32 KiB for
 * 262144 ids, not id_str, which is 2 MiB to look all over). */
static bool check_slots(cache_reader *r, size_t from, size_t to) {
    const tk_vocab_tables *v = &r->t->vocab;
    for (size_t i = from; i < to; i++) {
        uint32_t val1 = v->map.slots[i].val1;
        if (!val1) continue;
        if (val1 - 1 >= v->n_ids || !(r->has_str[(val1 - 1) / 64] >> ((val1 - 1) % 64) & 1)) return false;
        r->map_used++;
    }
    return true;
}

static bool check_spilled(cache_reader *r, size_t from, size_t to) {
    tk_vocab_tables *v = &r->t->vocab;
    for (size_t i = from; i < to; i++) {
        cache_spilled c; /* read into the entry: its offset becomes the key pointer */
        memcpy(&c, &v->map.spilled[i], sizeof c);
        if (c.id < 0 || (size_t)c.id >= v->n_ids || !arena_string_ok(r->t, c.off, c.len)) return false;
        v->map.spilled[i] = (struct tk_strmap_spilled){r->t->arena + c.off, c.len, c.id};
    }
    return true;
}

/* Merge entries (a unit is one slot of each half here: from and to count
 * bytes / (2 * entry), so each entry is seen once). */
static bool check_merges(cache_reader *r, size_t from, size_t to) {
    const tk_bpe_tables *t = r->t;
    size_t n_ids = t->vocab.n_ids;
    bool bad = false; /* no branch per entry: the loop runs at the speed of memory */
    for (size_t i = 2 * from; i < 2 * to; i++) {
        const tk_merge_entry *e = &t->merges[i];
        bad |= e->rank != 0 && ((e->key >> 32) >= n_ids) | ((e->key & 0xFFFFFFFFu) >= n_ids) | ((uint64_t)(uint32_t)e->new_id >= n_ids);
    }
    return !bad;
}

enum { IO_CHUNK = 256 << 10 }; /* read, summed and checked in pieces that stay in the CPU's cache */

static bool read_part(int fd, void *dst, size_t n, size_t unit, tk_sum *sum, check_fn check, cache_reader *r) {
    char *p = dst;
    size_t done = 0;
    while (done < n) {
        ssize_t got = read(fd, p + done, n - done < IO_CHUNK ? n - done : IO_CHUNK);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        if (sum) tk_sum_update(sum, p + done, (size_t)got);
        size_t from = done / unit;
        done += (size_t)got;
        if (check && !check(r, from, done / unit)) return false;
    }
    return true;
}

/* What needs the whole file: the map's count, a free slot in each half of
 * the merge table (else a lookup never ends), the character tables. */
static bool tables_ok(const tk_cache_header *h, cache_reader *r, const cache_char *chars, const uint32_t *joins) {
    tk_bpe_tables *t = r->t;
    tk_vocab_tables *v = &t->vocab;
    if (r->map_used != v->map.n) return false; /* which the header keeps under 2/3 of cap: lookups end */
    for (size_t half = 0; half < 2 && t->merges; half++) {
        bool has_empty = false;
        for (size_t i = half * t->merges_half; i < (half + 1) * t->merges_half && !has_empty; i++) has_empty = !t->merges[i].rank;
        if (!has_empty) return false;
    }
    if (v->char_ids) {
        for (uint32_t cp = 0; cp < 0x10000; cp++) v->char_ids[cp] = -1;
        for (size_t i = 0; i < h->n_char_ids; i++) {
            if (chars[i].cp >= 0x10000 || chars[i].id < 0 || (size_t)chars[i].id >= v->n_ids) return false;
            v->char_ids[chars[i].cp] = chars[i].id;
        }
    }
    for (size_t i = 0; v->space_join && i < h->n_space_join; i++) {
        if (joins[i] >= 0x10000) return false;
        v->space_join[joins[i] >> 3] |= (uint8_t)(1u << (joins[i] & 7));
    }
    return true;
}

/* The rest text is parsed by cJSON (a few milliseconds for gemma3's 0.9 MB)
 * on a second thread while this one reads and checks the tables, as the
 * JSON path's helper thread does. */
typedef struct rest_parse {
    pthread_t thread;
    bool started;
    const char *text;
    size_t len;
    cJSON *root;
} rest_parse;

static void *rest_main(void *arg) {
    rest_parse *p = arg;
    if (tk_json_rest_parse(p->text, p->len, &p->root) != LMC_OK) p->root = NULL;
    return NULL;
}

static void rest_start(rest_parse *p, const char *text, size_t len) {
    *p = (rest_parse){.text = text, .len = len};
    p->started = len >= (64 << 10) && lmc_num_threads() >= 2 && pthread_create(&p->thread, NULL, rest_main, p) == 0;
}

static cJSON *rest_finish(rest_parse *p) {
    if (p->started) pthread_join(p->thread, NULL);
    else if (p->text) rest_main(p);
    return p->root;
}

bool tk_cache_read(const tk_cache_key *k, tk_bpe_tables *t, cJSON **rest) {
    memset(t, 0, sizeof *t);
    *rest = NULL;
    int fd = open(k->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    tk_cache_header h;
    uint64_t sz[N_SECTIONS];
    cache_reader r = {.t = t};
    char *text = NULL;
    cache_char *chars = NULL;
    uint32_t *joins = NULL;
    rest_parse parse = {0};
    /* Only a file of this user's that others cannot write (the cache folder may be shared). */
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & (S_IWGRP | S_IWOTH)) &&
              read_part(fd, &h, sizeof h, 1, NULL, NULL, NULL) &&
              header_ok(&h, k) && section_sizes(&h, (uint64_t)st.st_size, sz);
    if (ok) {
        tk_sum sum;
        tk_sum_init(&sum);
        tk_cache_header zeroed = h;
        zeroed.checksum = 0;
        tk_sum_update(&sum, &zeroed, sizeof zeroed);
        tk_vocab_tables *v = &t->vocab;
        /* Allocated as the JSON path allocates them, so that tk_bpe_free frees them alike. */
        text = malloc(h.rest_len + 1);
        t->arena_size = h.arena_len;
        t->arena = tk_table_alloc(t->arena_size);
        v->n_ids = h.n_ids;
        v->id_str = tk_table_alloc(v->n_ids * sizeof *v->id_str);
        v->id_len = tk_table_alloc(v->n_ids * sizeof *v->id_len);
        v->map = (tk_strmap){.cap = h.map_cap, .n = h.map_n, .n_spilled = h.n_spilled};
        v->map.slots = tk_table_alloc(v->map.cap * sizeof *v->map.slots);
        v->map.spilled = h.n_spilled ? malloc(h.n_spilled * sizeof *v->map.spilled) : NULL;
        v->map.keys = v->id_str;
        v->map.lens = v->id_len;
        t->merges_half = h.merges_half;
        t->merges = h.merges_half ? tk_table_alloc(t->merges_half * 2 * sizeof *t->merges) : NULL;
        if (h.flags & TK_CACHE_CHAR_IDS) v->char_ids = malloc(0x10000 * sizeof *v->char_ids);
        if (h.flags & TK_CACHE_SPACE_JOIN) v->space_join = calloc(0x10000 / 8, 1);
        v->built = true;
        chars = malloc(sz[7] ? sz[7] : 1);
        joins = malloc(sz[8] ? sz[8] : 1);
        r.has_str = calloc(h.n_ids / 64 + 1, sizeof *r.has_str);
        ok = text && t->arena && v->id_str && v->id_len && v->map.slots && (!h.n_spilled || v->map.spilled) &&
             (!h.merges_half || t->merges) && (!(h.flags & TK_CACHE_CHAR_IDS) || v->char_ids) &&
             (!(h.flags & TK_CACHE_SPACE_JOIN) || v->space_join) && chars && joins && r.has_str;
        struct { void *dst; size_t unit; check_fn check; } part[N_SECTIONS] = {
            {text, 1, NULL},
            {t->arena, 1, NULL},
            {v->id_len, 4, NULL},
            {v->id_str, 8, check_ids},
            {v->map.slots, sizeof(tk_strmap_slot), check_slots},
            {v->map.spilled, sizeof(cache_spilled), check_spilled},
            {t->merges, 2 * sizeof(tk_merge_entry), check_merges},
            {chars, sizeof(cache_char), NULL},
            {joins, 4, NULL},
        };
        for (int i = 0; i < N_SECTIONS && ok; i++) {
            ok = read_part(fd, part[i].dst, sz[i], part[i].unit, &sum, part[i].check, &r);
            /* cJSON reads any bytes safely: the checksum is checked meanwhile. */
            if (ok && i == 0) rest_start(&parse, text, h.rest_len);
        }
        ok = ok && tk_sum_final(&sum) == h.checksum && tables_ok(&h, &r, chars, joins);
    }
    /* Its modification time says when it was last used (see sweep). */
    if (ok) (void)futimens(fd, NULL);
    close(fd);
    *rest = rest_finish(&parse);
    free(text);
    free(chars);
    free(joins);
    free(r.has_str);
    if (!ok || !*rest) {
        tk_bpe_tables_free(t);
        cJSON_Delete(*rest);
        *rest = NULL;
        return false;
    }
    return true;
}

/* ---- writing ---- */

static bool write_part(int fd, const void *src, size_t n, tk_sum *sum) {
    const char *p = src;
    if (sum) tk_sum_update(sum, src, n);
    while (n) {
        ssize_t put = write(fd, p, n < IO_CHUNK ? n : IO_CHUNK);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return false;
        p += put;
        n -= (size_t)put;
    }
    return true;
}

/* Makes the folder and its parents (mode 0700 for those it makes). */
static bool make_dirs(const char *dir) {
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p) return false;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return false;
        p[i] = c;
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Cache files are never needed, only useful: a folder's cache files unused
 * for SWEEP_AGE (a read sets a file's modification time) and temporary
 * files left by writers that did not finish are removed whenever a cache
 * file is written, so that files of deleted or changed folders do not pile
 * up. Only names this file makes, owned by this user. */
enum { SWEEP_AGE = 30 * 24 * 3600, SWEEP_TMP_AGE = 3600 };

/* tokenizer-<16 hex digits>.lmctok, and with ".XXXXXX" after it when *tmp. */
static bool cache_name(const char *name, bool *tmp) {
    static const char pre[] = "tokenizer-", ext[] = ".lmctok";
    if (strncmp(name, pre, sizeof pre - 1)) return false;
    name += sizeof pre - 1;
    for (int i = 0; i < 16; i++)
        if (!strchr("0123456789abcdef", name[i]) || !name[i]) return false;
    name += 16;
    if (strncmp(name, ext, sizeof ext - 1)) return false;
    name += sizeof ext - 1;
    *tmp = *name != 0;
    return !*name || (name[0] == '.' && strlen(name) == 7);
}

static void sweep(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        bool tmp;
        struct stat st;
        if (!cache_name(e->d_name, &tmp) || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != geteuid())
            continue;
        if (st.st_mtime < now - (tmp ? SWEEP_TMP_AGE : SWEEP_AGE)) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* The arena offset of a string of b, or false when it is not in the arena. */
static bool offset_of(const tk_bpe *b, const char *s, uint32_t len, uint64_t *off) {
    if (s < b->arena || s >= b->arena + b->arena_size || (size_t)(s - b->arena) + len >= b->arena_size) return false;
    *off = (uint64_t)(s - b->arena);
    return true;
}

/* The sections' contents as they go to the file, in memory. */
typedef struct cache_parts {
    uint64_t *id_off;
    cache_spilled *spilled;
    cache_char *chars;
    uint32_t *joins;
} cache_parts;

static bool build_parts(const tk_bpe *b, tk_cache_header *h, cache_parts *p) {
    const tk_strmap *m = &b->vocab;
    p->id_off = malloc((b->n_ids ? b->n_ids : 1) * sizeof *p->id_off);
    p->spilled = malloc((m->n_spilled ? m->n_spilled : 1) * sizeof *p->spilled);
    p->chars = malloc(0x10000 * sizeof *p->chars);
    p->joins = malloc(0x10000 * sizeof *p->joins);
    if (!p->id_off || !p->spilled || !p->chars || !p->joins) return false;
    /* Only the arena's used part is kept: up to the end of its last string. */
    uint64_t used = 0;
    for (size_t i = 0; i < b->n_ids; i++) {
        p->id_off[i] = UINT64_MAX;
        if (b->id_str[i] && !offset_of(b, b->id_str[i], b->id_len[i], &p->id_off[i])) return false;
        if (b->id_str[i] && p->id_off[i] + b->id_len[i] + 1 > used) used = p->id_off[i] + b->id_len[i] + 1;
    }
    for (size_t i = 0; i < m->n_spilled; i++) {
        p->spilled[i] = (cache_spilled){0, m->spilled[i].len, m->spilled[i].val};
        if (!offset_of(b, m->spilled[i].key, m->spilled[i].len, &p->spilled[i].off)) return false;
        if (p->spilled[i].off + m->spilled[i].len + 1 > used) used = p->spilled[i].off + m->spilled[i].len + 1;
    }
    for (uint32_t cp = 0; b->char_ids && cp < 0x10000; cp++)
        if (b->char_ids[cp] >= 0) p->chars[h->n_char_ids++] = (cache_char){cp, b->char_ids[cp]};
    for (uint32_t cp = 0; b->space_join && cp < 0x10000; cp++)
        if (b->space_join[cp >> 3] >> (cp & 7) & 1) p->joins[h->n_space_join++] = cp;
    h->arena_len = used;
    h->n_ids = b->n_ids;
    h->map_cap = m->cap;
    h->map_n = m->n;
    h->n_spilled = m->n_spilled;
    h->merges_half = b->merges_half;
    h->flags = (b->merges ? TK_CACHE_MERGES : 0) | (b->char_ids ? TK_CACHE_CHAR_IDS : 0) | (b->space_join ? TK_CACHE_SPACE_JOIN : 0);
    return m->cap > 0 && !!b->merges == (b->merges_half > 0);
}

void tk_cache_write(const tk_cache_key *k, const tk_bpe *b, const char *rest, size_t rest_len) {
    if (!k->settled || !make_dirs(k->dir)) return;
    tk_cache_header h = {.version = TK_CACHE_VERSION,
                         .byte_order = BYTE_ORDER_MARK,
                         .abi = {sizeof(tk_cache_header), sizeof(tk_strmap_slot), sizeof(tk_merge_entry), sizeof(void *)},
                         .layout = tk_bpe_layout_id(),
                         .dev = k->dev,
                         .ino = k->ino,
                         .size = k->size,
                         .mtime_sec = k->mtime_sec,
                         .mtime_nsec = k->mtime_nsec,
                         .ctime_sec = k->ctime_sec,
                         .ctime_nsec = k->ctime_nsec,
                         .rest_len = rest_len};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    cache_parts p = {0};
    char tmp[4300];
    int fd = -1;
    bool ok = build_parts(b, &h, &p) && snprintf(tmp, sizeof tmp, "%s.XXXXXX", k->path) < (int)sizeof tmp &&
              (fd = mkstemp(tmp)) >= 0;
    if (ok) {
        /* The header goes first with checksum 0 (as summed), then again with it. */
        tk_sum sum;
        tk_sum_init(&sum);
        ok = write_part(fd, &h, sizeof h, &sum) && write_part(fd, rest, rest_len, &sum) &&
             write_part(fd, b->arena, h.arena_len, &sum) && write_part(fd, b->id_len, b->n_ids * sizeof *b->id_len, &sum) &&
             write_part(fd, p.id_off, b->n_ids * sizeof *p.id_off, &sum) &&
             write_part(fd, b->vocab.slots, b->vocab.cap * sizeof *b->vocab.slots, &sum) &&
             write_part(fd, p.spilled, h.n_spilled * sizeof *p.spilled, &sum) &&
             write_part(fd, b->merges, b->merges_half * 2 * sizeof *b->merges, &sum) &&
             write_part(fd, p.chars, h.n_char_ids * sizeof *p.chars, &sum) &&
             write_part(fd, p.joins, h.n_space_join * sizeof *p.joins, &sum);
        h.checksum = tk_sum_final(&sum);
        ok = ok && lseek(fd, 0, SEEK_SET) == 0 && write_part(fd, &h, sizeof h, NULL);
        ok = close(fd) == 0 && ok;
        /* rename replaces any older file at once: readers see the old file or the new one. */
        ok = ok && rename(tmp, k->path) == 0;
        if (!ok) unlink(tmp);
    }
    free(p.id_off);
    free(p.spilled);
    free(p.chars);
    free(p.joins);
    if (ok) __atomic_fetch_add(&tk_cache_writes, 1, __ATOMIC_RELAXED);
    sweep(k->dir);
}
