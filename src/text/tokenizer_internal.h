/* Internal pieces of the tokenizer (include/lmc/tokenizer.h is the public
 * side). The pipeline follows the Hugging Face tokenizers library:
 *   added-token split -> normalizer -> pre-tokenizer -> BPE -> post-processor
 * and, back, id -> token string -> decoder chain -> clean-up. Each stage is a
 * small tagged struct parsed from its tokenizer.json object. */
#ifndef LMC_TEXT_TOKENIZER_INTERNAL_H
#define LMC_TEXT_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "lmc/tokenizer.h"

/* ---- growable buffers ---- */

typedef struct tk_buf {
    char *p;
    size_t len, cap;
} tk_buf;

lmc_status tk_buf_reserve(tk_buf *b, size_t extra);
lmc_status tk_buf_append(tk_buf *b, const void *data, size_t n);
void tk_buf_free(tk_buf *b);

typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;

lmc_status tk_ids_push(tk_ids *ids, int32_t id);

/* A list of strings kept in one buffer. `origin` marks the piece that starts
 * at offset 0 of the original input (Metaspace's prepend_scheme "first"). */
typedef struct tk_piece {
    size_t off, len;
    bool origin;
} tk_piece;

typedef struct tk_pieces {
    tk_buf text;
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

lmc_status tk_pieces_add(tk_pieces *p, const char *s, size_t n, bool origin);
/* Registers the bytes appended to p->text since offset `off` as one piece. */
lmc_status tk_pieces_commit(tk_pieces *p, size_t off, bool origin);
void tk_pieces_clear(tk_pieces *p);
void tk_pieces_free(tk_pieces *p);

/* ---- large tables ----
 * Zeroed memory for a hash table: from 2 MiB up it is mapped on its own and
 * transparent huge pages are asked for (fewer page faults while it fills,
 * fewer TLB misses for lookups all over it); smaller ones come from calloc.
 * Free with the same size. */
void *tk_table_alloc(size_t size);
void tk_table_free(void *p, size_t size);
/* Gives back the pages of a table past its first `keep` bytes (a part of a
 * huge page too); returns the size to free it with. */
size_t tk_table_shrink(void *p, size_t size, size_t keep);
/* Makes *p (a table of *size bytes, or NULL and 0) hold at least `need`
 * bytes: doubles it into a new table and copies (a copy costs less than the
 * page faults of growing memory in 4 KiB pages). */
lmc_status tk_table_grow(void **p, size_t *size, size_t need);

/* ---- string -> id hash map ----
 * A slot holds only the key's hash and its value; the key itself is read
 * from the owner's tables, keys[val] and lens[val] (for the vocabulary: the
 * id -> token table), so every string is stored once. Values must index
 * those tables, and a key must be there before it is put. */

typedef struct tk_strmap_slot {
    uint32_t hash;
    uint32_t val1; /* value + 1; 0 marks an empty slot */
} tk_strmap_slot;

typedef struct tk_strmap {
    tk_strmap_slot *slots;
    size_t cap, n; /* a key's home slot is its hash scaled to cap; the load stays under 2/3 */
    const char *const *keys;
    const uint32_t *lens;
    /* Keys whose value's table entry now holds another string (two tokens
     * with one id): looked through, newest first, after a miss. */
    struct tk_strmap_spilled { const char *key; uint32_t len; int32_t val; } *spilled;
    size_t n_spilled;
} tk_strmap;

uint32_t tk_hash(const char *s, size_t n);
/* memcmp(a, b, n) == 0 for the short strings of hash lookups, without a
 * library call: two overlapping loads cover 1 to 16 bytes. */
static inline bool tk_bytes_eq(const char *a, const char *b, size_t n) {
    uint64_t x, y, u, v;
    if (n >= 8 && n <= 16) {
        __builtin_memcpy(&x, a, 8), __builtin_memcpy(&y, b, 8);
        __builtin_memcpy(&u, a + n - 8, 8), __builtin_memcpy(&v, b + n - 8, 8);
        return x == y && u == v;
    }
    if (n >= 4 && n < 8) {
        uint32_t p, q, r, t;
        __builtin_memcpy(&p, a, 4), __builtin_memcpy(&q, b, 4);
        __builtin_memcpy(&r, a + n - 4, 4), __builtin_memcpy(&t, b + n - 4, 4);
        return p == q && r == t;
    }
    if (n < 4) return n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]);
    return __builtin_memcmp(a, b, n) == 0;
}
/* A map for `expected` keys, read from keys[val] and lens[val]. */
lmc_status tk_strmap_init(tk_strmap *m, size_t expected, const char *const *keys, const uint32_t *lens);
/* Inserts or overwrites; keys[val] must already hold the key. */
void tk_strmap_put(tk_strmap *m, const char *key, size_t len, int32_t val);
/* The value for key, or -1. */
int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len);
/* The same with the key's tk_hash already computed. */
void tk_strmap_put_h(tk_strmap *m, const char *key, size_t len, uint32_t hash, int32_t val);
int32_t tk_strmap_get_h(const tk_strmap *m, const char *key, size_t len, uint32_t hash);
/* Keeps key -> val findable before keys[val] is changed to another string. */
lmc_status tk_strmap_spill(tk_strmap *m, const char *key, size_t len, int32_t val);
/* The slot where a key of this hash is looked for first. */
static inline size_t tk_strmap_home(const tk_strmap *m, uint32_t hash) { return (size_t)(((uint64_t)hash * m->cap) >> 32); }
/* Starts loading that slot. */
static inline void tk_strmap_prefetch(const tk_strmap *m, uint32_t hash) {
    if (m->cap) __builtin_prefetch(&m->slots[tk_strmap_home(m, hash)]);
}
void tk_strmap_free(tk_strmap *m);

/* ---- patterns (tokenizer.json {"String": ...} or {"Regex": ...}) ---- */

typedef struct tk_pattern {
    char *literal; /* set for a String pattern */
    size_t literal_len;
    pcre2_code *re; /* set for a Regex pattern */
} tk_pattern;

typedef struct tk_match {
    size_t start, end;
    bool is_match;
} tk_match;

typedef struct tk_matches {
    tk_match *v;
    size_t n, cap;
} tk_matches;

typedef enum tk_behavior {
    TK_REMOVED,
    TK_ISOLATED,
    TK_MERGED_WITH_PREVIOUS,
    TK_MERGED_WITH_NEXT,
    TK_CONTIGUOUS,
} tk_behavior;

/* Compiles a regex written for Oniguruma (as HF uses) with PCRE2 in UTF and
 * Unicode-property mode; \s and \S are rewritten to Oniguruma's White_Space set. */
lmc_status tk_regex_compile(const char *pattern, pcre2_code **out);
lmc_status tk_pattern_parse(const cJSON *j, const char *where, tk_pattern *out);
void tk_pattern_free(tk_pattern *p);
/* Splits s[0..n) into matched and unmatched stretches covering all of it. */
lmc_status tk_pattern_find(const tk_pattern *p, const char *s, size_t n, tk_matches *out);
lmc_status tk_regex_find(const pcre2_code *re, const char *s, size_t n, tk_matches *out);
/* Every character for which pred holds is its own match. */
lmc_status tk_predicate_find(bool (*pred)(uint32_t), const char *s, size_t n, tk_matches *out);
/* Applies a split behaviour to matches of `s`, appending the kept parts to out. */
lmc_status tk_split_apply(const tk_matches *m, tk_behavior behavior, bool invert, const char *s, bool origin,
                          tk_pieces *out);
lmc_status tk_behavior_parse(const cJSON *j, const char *where, tk_behavior *out);

/* ---- normalizers ---- */

typedef enum tk_norm_type {
    TK_NORM_NFC,
    TK_NORM_NFD,
    TK_NORM_NFKC,
    TK_NORM_NFKD,
    TK_NORM_LOWERCASE,
    TK_NORM_REPLACE,
    TK_NORM_PREPEND,
    TK_NORM_STRIP,
    TK_NORM_SEQUENCE,
} tk_norm_type;

typedef struct tk_normalizer {
    tk_norm_type type;
    tk_pattern pattern; /* Replace */
    char *content;      /* Replace, Prepend */
    size_t content_len;
    bool strip_left, strip_right;
    struct tk_normalizer *items; /* Sequence */
    size_t n_items;
} tk_normalizer;

lmc_status tk_normalizer_parse(const cJSON *j, tk_normalizer *out);
void tk_normalizer_free(tk_normalizer *n);
/* Normalizes s[0..n) into out (cleared first). */
lmc_status tk_normalize(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out);

/* ---- pre-tokenizers ---- */

typedef enum tk_pretok_type {
    TK_PRE_SPLIT,
    TK_PRE_BYTELEVEL,
    TK_PRE_METASPACE,
    TK_PRE_DIGITS,
    TK_PRE_PUNCTUATION,
    TK_PRE_WHITESPACE,
    TK_PRE_WHITESPACE_SPLIT,
    TK_PRE_SEQUENCE,
} tk_pretok_type;

typedef enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend;

typedef struct tk_pretokenizer {
    tk_pretok_type type;
    tk_pattern pattern;   /* Split */
    pcre2_code *re;       /* ByteLevel with use_regex, Whitespace */
    tk_behavior behavior; /* Split, Punctuation */
    bool invert;
    bool add_prefix_space, use_regex; /* ByteLevel */
    char replacement[5];              /* Metaspace */
    size_t replacement_len;
    tk_prepend prepend_scheme;
    bool split;
    bool individual_digits; /* Digits */
    struct tk_pretokenizer *items;
    size_t n_items;
} tk_pretokenizer;

lmc_status tk_pretokenizer_parse(const cJSON *j, tk_pretokenizer *out);
void tk_pretokenizer_free(tk_pretokenizer *p);
/* Splits (and for ByteLevel/Metaspace rewrites) the pieces of *io in place;
 * scratch is a second list the function may use. */
lmc_status tk_pretokenize(const tk_pretokenizer *p, tk_pieces *io, tk_pieces *scratch);

/* ---- the scanner for model.vocab and model.merges (tokenizer_json.c) ----
 * These two sections are nearly all of a large tokenizer.json (32 of
 * gemma3's 33 MB); the scanner reads them into flat arrays and checks the
 * whole document's JSON syntax, and cJSON then parses only the rest: the
 * document with the two sections' text replaced by {} and []. */

typedef struct tk_vocab_entry {
    const char *key; /* decoded, NUL-terminated, in tk_json_model.arena */
    uint32_t len, hash; /* hash: tk_hash of the key, computed while it is in cache */
    int32_t id;
} tk_vocab_entry;

typedef struct tk_merge_text {
    const char *l, *r; /* into the document, or decoded into tk_json_model.scratch */
    uint32_t ll, rl;
    uint32_t hl, hr; /* tk_hash of each side */
} tk_merge_text;

/* The tables that follow from model.vocab alone. The scanner builds them
 * while its helper thread scans model.merges (see tk_json_scan);
 * tk_bpe_parse takes them over, or builds them itself when the scanner did
 * not (any failure there is left to that second try, which reports it). */
typedef struct tk_vocab_tables {
    bool built;
    tk_strmap map;       /* token -> id; a repeated token: its last id */
    const char **id_str; /* token by id (into the scanner's arena), NULL where none; tables of n_ids entries */
    uint32_t *id_len;
    size_t n_ids;        /* 1 + the largest id */
    int32_t *char_ids;   /* id of each single code point < 0x10000, -1 where none */
    uint8_t *space_join; /* see tk_bpe.space_join; NULL when no token is U+2581 */
} tk_vocab_tables;

lmc_status tk_vocab_tables_build(const tk_vocab_entry *vocab, size_t n, tk_vocab_tables *out);
void tk_vocab_tables_free(tk_vocab_tables *v);

typedef struct tk_json_model {
    bool has_vocab, has_merges; /* model.vocab was an object, model.merges an array */
    size_t vocab_start, vocab_end, merges_start, merges_end; /* their byte ranges */
    tk_vocab_entry *vocab; /* tables (tk_table_alloc) of vocab_size and merges_size bytes */
    size_t n_vocab, vocab_size;
    tk_merge_text *merges;
    size_t n_merges, merges_size;
    char *arena;   /* the vocabulary's strings, a table of arena_size bytes (tk_bpe_parse takes it over) */
    size_t arena_size;
    char *scratch; /* merge strings that held escapes */
    tk_vocab_tables tables; /* built when model.vocab came before model.merges and a helper thread scanned the latter */
    cJSON *rest; /* tk_json_rest's, when the helper thread parsed it */
} tk_json_model;

/* Scans a tokenizer.json document: LMC_ERR_FORMAT naming the byte offset
 * when it is not valid JSON (RFC 8259, UTF-8), or when model.vocab or
 * model.merges has entries of the wrong shape; otherwise fills *m (sections
 * that are absent or of another JSON type are left for the caller to report).
 * The document must outlive *m. Documents of tk_json_helper_min bytes and
 * more are scanned on two threads when lmc_num_threads() allows; the result
 * is the same. */
lmc_status tk_json_scan(const char *doc, size_t len, tk_json_model *m);
/* 1 MiB; tests lower it to take the two-thread path on small documents. */
extern size_t tk_json_helper_min;
/* The text of the document with model.vocab and model.merges (the ranges in
 * m, where it has them) replaced by {} and [] (*out is cleared first):
 * all that is left to read of a document that tk_json_scan accepted. */
lmc_status tk_json_rest_text(const char *doc, size_t len, const tk_json_model *m, tk_buf *out);
/* That text parsed by cJSON. */
lmc_status tk_json_rest(const char *doc, size_t len, const tk_json_model *m, cJSON **out);
/* Parses a rest text (tk_json_rest_text's, or the cache's). */
lmc_status tk_json_rest_parse(const char *text, size_t len, cJSON **out);
void tk_json_model_free(tk_json_model *m);

/* ---- the BPE model ---- */

/* Tables are indexed by token id, so ids must stay near the token count:
 * an id of 2^31 in a three-token file would otherwise ask for gigabytes.
 * Real files number their tokens 0, 1, 2, ... (added ones right after). */
static inline bool tk_id_in_range(int64_t id, size_t n_tokens) { return id < 4 * (int64_t)n_tokens + 1024; }

typedef struct tk_merge_entry {
    uint64_t key;  /* (left id << 32) | right id */
    uint32_t rank; /* 1 + the merge's index in the list; 0 marks an empty slot */
    int32_t new_id;
} tk_merge_entry;

typedef struct tk_bpe_cache tk_bpe_cache;

typedef struct tk_bpe {
    tk_strmap vocab;
    const char **id_str; /* model vocabulary by id (into `arena`), NULL where none; tables of n_ids entries */
    uint32_t *id_len;
    size_t n_ids;        /* 1 + the largest model id */
    char *arena;         /* a table of arena_size bytes */
    size_t arena_size;
    tk_merge_entry *merges;
    size_t merges_half;    /* the table is two halves of merges_half slots */
    char *unk_token;
    int32_t unk_id;
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix ("" when unset) */
    size_t prefix_len, suffix_len;
    int32_t byte_ids[256]; /* ids of "<0xXX>", -1 where missing */
    int32_t *char_ids;     /* id of each single code point < 0x10000, -1 where none */
    /* Splitting words before U+2581 (see tk_bpe_encode_word): set when the
     * model allows it, with a bit for each code point c < 0x10000 that some
     * token holds right before a U+2581 (no split after those). */
    uint8_t *space_join;
    tk_bpe_cache *cache;
} tk_bpe;

/* The tables of a tk_bpe that follow from model.vocab and model.merges
 * alone, as the tokenizer cache holds them (tokenizer_cache.c). */
typedef struct tk_bpe_tables {
    tk_vocab_tables vocab;   /* built set; char_ids and space_join NULL where the finished model has none */
    char *arena;             /* the strings of vocab.id_str (and of spilled keys), a table of arena_size bytes */
    size_t arena_size;
    tk_merge_entry *merges;  /* NULL when the file had no model.merges */
    size_t merges_half;
} tk_bpe_tables;

void tk_bpe_tables_free(tk_bpe_tables *t);

/* Builds the model from the "model" object (whose vocab and merges cJSON
 * did not see) and either the scanner's vocab and merges (sc; takes over
 * sc->arena) or tables from the cache (cached, sc NULL; takes them all).
 * The options (prefix, suffix, unk, byte fallback, ...) come from `model`
 * on both paths. A change to the tables it builds needs a new
 * TK_CACHE_VERSION. */
lmc_status tk_bpe_parse(const cJSON *model, tk_json_model *sc, tk_bpe_tables *cached, tk_bpe *out);
void tk_bpe_free(tk_bpe *b);
/* Changes whenever the hashing that places keys in the tables changes (tk_hash,
 * the strmap's and the merge table's slots): the cache records it, so that
 * tables written by another build are not read with other hashes. */
uint64_t tk_bpe_layout_id(void);
/* Appends the ids of one pre-tokenized word. Thread-safe. */
lmc_status tk_bpe_encode_word(const tk_bpe *b, const char *w, size_t n, tk_ids *out);

/* ---- the tokenizer cache (tokenizer_cache.c) ----
 * lmc_tokenizer_load keeps what parsing DIR/tokenizer.json costs most (the
 * BPE tables, and the text of the rest of the document) in a file of the
 * cache folder, named after the tokenizer.json's real path and valid while
 * that file is the same (device, inode, size, modification and change
 * times); the next load of the folder reads the tables back instead of
 * parsing the JSON. Every failure to find, read, check or write a cache file
 * is silent: the load parses tokenizer.json as it would without the cache. */

/* A 64-bit checksum, fed in pieces: multiply-xor over 8-byte words in four
 * lanes. The result depends only on the bytes fed, not on how they were cut;
 * any change to one 8-byte word (at the same length) changes it. */
typedef struct tk_sum {
    uint64_t lane[4];
    unsigned char tail[32];
    size_t n_tail;
    uint64_t len;
} tk_sum;

void tk_sum_init(tk_sum *s);
void tk_sum_update(tk_sum *s, const void *p, size_t n);
uint64_t tk_sum_final(const tk_sum *s);
uint64_t tk_sum64(const void *p, size_t n);

/* Bump it whenever what tk_bpe_parse builds from a given tokenizer.json
 * changes (which merges win, what char_ids or space_join hold, ...) or the
 * file's layout does: old files are then ignored. tk_bpe_layout_id catches
 * changes of the hash functions by itself. */
enum { TK_CACHE_VERSION = 1 };

/* The file: this header, then its sections in order:
 *   rest        rest_len bytes: tk_json_rest_text of tokenizer.json
 *   arena       arena_len bytes: the vocabulary's strings, each NUL-terminated
 *   id_len      uint32[n_ids]
 *   id_off      uint64[n_ids]: offset of id i's string in the arena, UINT64_MAX where none
 *   slots       tk_strmap_slot[map_cap]: the vocabulary map
 *   spilled     {uint64 offset, uint32 len, int32 id}[n_spilled]
 *   merges      tk_merge_entry[2 * merges_half]
 *   char_ids    {uint32 code point, int32 id}[n_char_ids]: the entries that are not -1
 *   space_join  uint32[n_space_join]: the code points whose bit is set
 * All numbers in the machine's byte order (the header records it). */
typedef struct tk_cache_header {
    char magic[8];                 /* "lmctokc" */
    uint32_t version, byte_order;  /* TK_CACHE_VERSION, 0x01020304 */
    uint32_t abi[4];               /* sizeof tk_cache_header, tk_strmap_slot, tk_merge_entry, void * */
    uint64_t layout;               /* tk_bpe_layout_id() */
    /* tokenizer.json as it was read */
    uint64_t dev, ino, size, mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
    uint64_t flags;                /* TK_CACHE_MERGES | TK_CACHE_CHAR_IDS | TK_CACHE_SPACE_JOIN */
    uint64_t rest_len, arena_len, n_ids, map_cap, map_n, n_spilled, merges_half, n_char_ids, n_space_join;
    uint64_t checksum;             /* tk_sum64 of the whole file with this field 0 */
} tk_cache_header;

enum { TK_CACHE_MERGES = 1, TK_CACHE_CHAR_IDS = 2, TK_CACHE_SPACE_JOIN = 4 };

/* Where the cache of one tokenizer.json lives, and that file's identity. */
typedef struct tk_cache_key {
    char dir[4096], path[4200];
    uint64_t dev, ino, size, mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
    bool settled; /* changed more than tk_cache_settle_s ago: safe to cache */
} tk_cache_key;

/* The cache's place for tokenizer.json at json_path, open as fd; false when
 * caching is off (LMC_CACHE_DIR=off, or no folder to use). */
bool tk_cache_key_init(const char *json_path, int fd, tk_cache_key *k);
/* The cached tables and the rest of the document (parsed) for k's file,
 * or false (nothing to free). */
bool tk_cache_read(const tk_cache_key *k, tk_bpe_tables *tables, cJSON **rest);
/* Writes the cache file for k from a loaded model and its rest text. */
void tk_cache_write(const tk_cache_key *k, const tk_bpe *b, const char *rest, size_t rest_len);

/* A tokenizer.json whose change time is less than this many seconds ago
 * (2) is not cached: a further change within the file system's timestamp
 * granularity would go unseen. Tests set it to 0. */
extern int tk_cache_settle_s;
/* Counts of loads served from a cache file and of cache files written (for tests). */
extern unsigned long tk_cache_loads, tk_cache_writes;

/* ---- decoders ---- */

typedef enum tk_dec_type {
    TK_DEC_BYTELEVEL,
    TK_DEC_REPLACE,
    TK_DEC_BYTEFALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_METASPACE,
    TK_DEC_SEQUENCE,
} tk_dec_type;

typedef struct tk_decoder {
    tk_dec_type type;
    tk_pattern pattern; /* Replace */
    char *content;
    size_t content_len;
    uint32_t strip_char; /* Strip */
    size_t strip_start, strip_stop;
    uint32_t replacement; /* Metaspace */
    tk_prepend prepend_scheme;
    struct tk_decoder *items;
    size_t n_items;
} tk_decoder;

lmc_status tk_decoder_parse(const cJSON *j, tk_decoder *out);
void tk_decoder_free(tk_decoder *d);
/* Runs the decoder over the token strings in *io (the list is rewritten).
 * keep_bytes: byte-level and byte-fallback bytes that are not whole UTF-8
 * characters stay as they are instead of becoming U+FFFD. */
lmc_status tk_decode_chain(const tk_decoder *d, tk_pieces *io, tk_pieces *scratch, bool keep_bytes);
/* True when the chain contains a ByteFallback decoder. */
bool tk_decoder_has_bytefallback(const tk_decoder *d);

/* ---- post-processors ---- */

typedef enum tk_post_type {
    TK_POST_TEMPLATE, /* TemplateProcessing, BertProcessing, RobertaProcessing */
    TK_POST_BYTELEVEL,
    TK_POST_SEQUENCE,
} tk_post_type;

typedef struct tk_postproc {
    tk_post_type type;
    /* Template for a single sequence: ids with -1 where the sequence goes. */
    int32_t *single;
    size_t n_single;
    struct tk_postproc *items;
    size_t n_items;
} tk_postproc;

/* ---- added tokens ---- */

typedef struct tk_added {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
} tk_added;

/* A byte trie over added-token contents for leftmost-longest matching. */
typedef struct tk_trie_node {
    int32_t child, sibling; /* -1 when none */
    int32_t token;          /* index into the added list, -1 when not a token end */
    uint8_t byte;
} tk_trie_node;

typedef struct tk_trie {
    tk_trie_node *nodes;
    size_t n, cap;
    int32_t root_child[256]; /* direct first-byte table */
} tk_trie;

struct lmc_tokenizer {
    tk_bpe bpe;
    bool has_normalizer, has_pretokenizer, has_decoder, has_postproc;
    tk_normalizer normalizer;
    tk_pretokenizer pretokenizer;
    tk_decoder decoder;
    tk_postproc postproc;
    bool decoder_bytefallback;

    tk_added *added;
    size_t n_added;
    tk_strmap added_map; /* content -> index into added */
    const char **added_str; /* the map's keys: added[i].content and .len by index */
    uint32_t *added_len;
    tk_trie trie_raw, trie_norm;
    bool has_norm_trie;

    /* Token strings for decoding come from tk_token_str: an added token's
     * content overrides the model's string for its id. */
    uint8_t *tok_flags;   /* TK_TOK_SPECIAL | TK_TOK_ADDED, by id (vocab_size entries) */
    uint32_t *added_ids;  /* for each id of an added token, the index in `added` of its last entry; sorted by id */
    size_t n_added_ids;
    size_t vocab_size;

    /* From tokenizer_config.json / config.json / generation_config.json. */
    bool clean_up_spaces;
    int32_t bos_id, pad_id;
    int32_t *eos_ids;
    size_t n_eos;
    char *chat_template, *bos_token, *eos_token, *pad_token;
};

enum { TK_TOK_SPECIAL = 1, TK_TOK_ADDED = 2 };

/* The string of token `id` (its length in *len), or NULL for an id with none. */
const char *tk_token_str(const lmc_tokenizer *t, int32_t id, uint32_t *len);

/* Decodes ids to the raw decoder output (no clean-up), appending to out. */
lmc_status tk_decode_raw(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, bool keep_bytes,
                        tk_buf *out);
/* transformers' clean_up_tokenization, rewriting b in place. */
void tk_cleanup_spaces(tk_buf *b);

#endif
