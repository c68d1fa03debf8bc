/* libFuzzer target for the tokenizer cache reader (src/text/tokenizer_cache.c):
 * the input is a cache file. Its identity fields and layout id are set to
 * those of a stand-in tokenizer.json and its checksum is made right, so
 * that the fuzzer reaches the structure checks and whatever a file that
 * passes them feeds to the tokenizer; then lmc_tokenizer_load reads it.
 * The stand-in tokenizer.json ("{}") does not load, so a load that
 * succeeds came from the cache file; a tokenizer that loads encodes,
 * decodes and looks up tokens. Seeds: cache files of small tokenizers
 * (fuzz/corpus/tokenizer_cache). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmc/tokenizer.h"
#include "text/tokenizer_internal.h"
#include "fuzz.h"

static char g_dir[64];
static tk_cache_key g_key;

/* The stand-in folder goes when the fuzzer exits. */
static void cleanup(void) {
    char path[256];
    unlink(g_key.path);
    snprintf(path, sizeof path, "%s/cache", g_dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    unlink(path);
    rmdir(g_dir);
}

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lmc-fuzz-cache-XXXXXX");
    REQUIRE(mkdtemp(g_dir));
    char path[256];
    snprintf(path, sizeof path, "%s/cache", g_dir);
    setenv("LMC_CACHE_DIR", path, 1);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f && fputs("{}", f) >= 0 && fclose(f) == 0);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0 && tk_cache_key_init(path, fd, &g_key));
    close(fd);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) setup();
    uint8_t *file = malloc(size ? size : 1);
    memcpy(file, data, size);
    if (size >= sizeof(tk_cache_header)) {
        tk_cache_header h;
        memcpy(&h, file, sizeof h);
        h.layout = tk_bpe_layout_id();
        h.dev = g_key.dev, h.ino = g_key.ino, h.size = g_key.size;
        h.mtime_sec = g_key.mtime_sec, h.mtime_nsec = g_key.mtime_nsec;
        h.ctime_sec = g_key.ctime_sec, h.ctime_nsec = g_key.ctime_nsec;
        h.checksum = 0;
        memcpy(file, &h, sizeof h);
        h.checksum = tk_sum64(file, size);
        memcpy(file, &h, sizeof h);
    }
    FILE *f = fopen(g_key.path, "wb");
    REQUIRE(f && fwrite(file, 1, size, f) == size && fclose(f) == 0);
    free(file);

    unsigned long loads = tk_cache_loads;
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load(g_dir, &t);
    if (st != LMC_OK) {
        /* Rejected: the stand-in tokenizer.json's own error. */
        REQUIRE(t == NULL && tk_cache_loads == loads && strstr(lmc_last_error(), "missing 'model'"));
        return 0;
    }
    REQUIRE(tk_cache_loads == loads + 1);
    static const char *texts[] = {"Hello world", "ab \u2581a caf\u00E9 <s>", "\xF0\x9F\x98\x80 x\ny"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids;
        size_t n;
        if (lmc_tokenizer_encode(t, texts[i], strlen(texts[i]), true, &ids, &n) != LMC_OK) continue;
        char *text;
        if (lmc_tokenizer_decode(t, ids, n, false, &text, NULL) == LMC_OK) lmc_tokenizer_free_text(text);
        lmc_tokenizer_free_ids(ids);
    }
    size_t vocab = lmc_tokenizer_vocab_size(t);
    for (size_t id = 0; id < vocab && id < 512; id++) {
        const char *s = lmc_tokenizer_id_to_token(t, (int32_t)id);
        if (s) (void)lmc_tokenizer_token_to_id(t, s);
    }
    lmc_tokenizer_free(t);
    return 0;
}
