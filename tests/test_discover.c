/* Model-folder discovery on a temporary tree: quantised, sharded, nested and
 * Hugging Face cache-style (symlinked files) models, bad configs, a dangling
 * shard link, folders without weights, symlink loops, a second path to a
 * model, and folders that cannot be read. Root ignores permission bits, so
 * unreadable folders are made by a path longer than PATH_MAX (opendir fails
 * with ENAMETOOLONG) and, when not running as root, also by chmod 000. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmc/model.h"
#include "test_util.h"

static char root[64];

static void put(const char *rel, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "wb");
    CHECKF(f != NULL, "cannot create %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void dir(const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    CHECKF(mkdir(p, 0755) == 0, "mkdir %s: %s", p, strerror(errno));
}

static void link_to(const char *target, const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    CHECKF(symlink(target, p) == 0, "symlink %s: %s", p, strerror(errno));
}

/* root/rel, kept until free_paths(). */
static char *paths[128];
static int n_paths;
static char *path_of(const char *rel) {
    char *s = malloc(strlen(root) + strlen(rel) + 2);
    sprintf(s, "%s/%s", root, rel);
    if (n_paths < 128) paths[n_paths++] = s;
    return s;
}
static void free_paths(void) {
    while (n_paths > 0) free(paths[--n_paths]);
}

typedef struct expect {
    const char *path;
    const char *arch;
    int bits, group, files;
    const char *error; /* NULL: none */
} expect;

static void check_results(const lmc_discovered_model *got, size_t n, const expect *want, size_t nw) {
    CHECKF(n == nw, "%zu entries, expected %zu", n, nw);
    for (size_t i = 0; i < n && i < nw; i++) {
        const lmc_discovered_model *g = &got[i];
        const expect *w = &want[i];
        CHECK_STR(g->path, w->path);
        CHECK_STR(g->architecture, w->arch);
        CHECKF(g->quant_bits == w->bits && g->quant_group_size == w->group && g->num_safetensors == w->files,
               "%s: bits %d group %d files %d", g->path, g->quant_bits, g->quant_group_size, g->num_safetensors);
        if (w->error)
            CHECK_STR(g->error, w->error);
        else
            CHECKF(g->error == NULL, "%s: unexpected error %s", g->path, g->error);
    }
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  %.100s%s | %s | q%d/%d | %d files | %s\n", got[i].path, strlen(got[i].path) > 100 ? "..." : "", got[i].architecture, got[i].quant_bits,
                got[i].quant_group_size, got[i].num_safetensors, got[i].error ? got[i].error : "-");
}

/* A chain of folders with 250-character names, deep enough that the full
 * path of the last one (deep_path) reaches PATH_MAX. */
static char *deep_path;
static void make_deep(const char *rel, int levels) {
    char name[251];
    memset(name, 'd', 250);
    name[250] = 0;
    int fd = open(path_of(rel), O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    size_t len = strlen(path_of(rel)) + (size_t)levels * 251 + 1;
    deep_path = malloc(len);
    strcpy(deep_path, path_of(rel));
    for (int i = 0; i < levels && fd >= 0; i++) {
        CHECK(mkdirat(fd, name, 0755) == 0);
        int sub = openat(fd, name, O_RDONLY | O_DIRECTORY);
        close(fd);
        fd = sub;
        strcat(deep_path, "/");
        strcat(deep_path, name);
    }
    if (fd >= 0) close(fd);
}

static void test_tree(void) {
    strcpy(root, "/tmp/lmc_discover_XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    const char *st = "safetensors bytes do not matter here";

    dir("a_quant");
    put("a_quant/config.json", "{\"model_type\": \"qwen3\", \"quantization\": {\"group_size\": 64, \"bits\": 4}}");
    put("a_quant/model.safetensors", st);
    put("a_quant/tokenizer.json", "{}");

    dir("b_sharded");
    put("b_sharded/config.json", "{\"model_type\": \"llama\", \"hidden_size\": 16}");
    put("b_sharded/model-00001-of-00003.safetensors", st);
    put("b_sharded/model-00002-of-00003.safetensors", st);
    put("b_sharded/model-00003-of-00003.safetensors", st);
    put("b_sharded/model.safetensors.index.json", "{}"); /* not a .safetensors file */
    link_to("b_sharded", "0_alias");                    /* sorts first: b_sharded is reported under this path */

    dir("c_bad_json");
    put("c_bad_json/config.json", "{\"model_type\": \"llama\",, }");
    put("c_bad_json/model.safetensors", st);

    dir("d_no_weights");
    put("d_no_weights/config.json", "{\"model_type\": \"llama\"}");
    dir("d_no_weights/sub");
    put("d_no_weights/sub/notes.txt", "no model here");

    link_to("nowhere", "dangling");

    dir("e_nested");
    dir("e_nested/inner");
    put("e_nested/inner/config.json",
        "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"text_config\": {\"model_type\": \"gemma3_text\"},"
        " \"quantization_config\": {\"bits\": 8, \"group_size\": 32}}");
    put("e_nested/inner/model.safetensors", st);
    link_to("../..", "e_nested/inner/up"); /* a loop back to the root */

    dir("f_config_dir"); /* config.json is a folder */
    dir("f_config_dir/config.json");
    put("f_config_dir/model.safetensors", st);

    dir("g_config_dangling"); /* config.json is a link to nothing */
    link_to("missing.json", "g_config_dangling/config.json");
    put("g_config_dangling/weights.safetensors", st);

    dir("h_weights_only");
    put("h_weights_only/model.safetensors", st);

    /* Hugging Face cache layout: files are symlinks into blobs/. */
    dir("hf");
    dir("hf/models--org--m");
    dir("hf/models--org--m/blobs");
    dir("hf/models--org--m/snapshots");
    dir("hf/models--org--m/snapshots/abc123");
    put("hf/models--org--m/blobs/1f2e", "{\"model_type\": \"gemma3\", \"quantization\": null, "
                                        "\"quantization_config\": {\"bits\": 4, \"group_size\": 128}}");
    put("hf/models--org--m/blobs/9a8b", st);
    link_to("../../blobs/1f2e", "hf/models--org--m/snapshots/abc123/config.json");
    link_to("../../blobs/9a8b", "hf/models--org--m/snapshots/abc123/model.safetensors");

    dir("i_notype");
    put("i_notype/config.json", "{\"architectures\": [\"Mystery\"]}");
    put("i_notype/x.safetensors", st);

    dir("j_badquant");
    put("j_badquant/config.json", "{\"model_type\": \"llama\", \"quantization\": {\"bits\": \"four\"}}");
    put("j_badquant/x.safetensors", st);

    dir("k_array");
    put("k_array/config.json", "[1, 2]");
    put("k_array/x.safetensors", st);

    dir("l_badtype");
    put("l_badtype/config.json", "{\"model_type\": 3}");
    put("l_badtype/x.safetensors", st);

    link_to(".", "loop");

    dir("o_partial"); /* an unfinished download: one shard is a dangling link */
    put("o_partial/config.json", "{\"model_type\": \"qwen2\"}");
    put("o_partial/model-00001-of-00002.safetensors", st);
    link_to("../blobs/missing", "o_partial/model-00002-of-00002.safetensors");

    dir("m_deep");
    size_t deep_levels = (PATH_MAX - strlen(path_of("m_deep"))) / 251 + 1;
    make_deep("m_deep", (int)deep_levels);
    CHECK(strlen(deep_path) >= PATH_MAX);

    bool as_root = geteuid() == 0;
    if (!as_root) {
        dir("n_locked");
        put("n_locked/config.json", "{\"model_type\": \"llama\"}");
        put("n_locked/model.safetensors", st);
        chmod(path_of("n_locked"), 0);
    }

    put("readme.txt", "a file at the top");
    link_to("a_quant", "z_link_to_model"); /* a_quant was entered already */

    expect want[16] = {
        {path_of("0_alias"), "llama", 0, 0, 3, NULL},
        {path_of("a_quant"), "qwen3", 4, 64, 1, NULL},
        {path_of("c_bad_json"), "", 0, 0, 1, "config.json: invalid JSON at byte 24"},
        {path_of("e_nested/inner"), "gemma3_text", 8, 32, 1, NULL},
        {path_of("f_config_dir"), "", 0, 0, 1, "config.json: not a regular file"},
        {path_of("g_config_dangling"), "", 0, 0, 1, "config.json: cannot open: No such file or directory"},
        {path_of("hf/models--org--m/snapshots/abc123"), "gemma3", 4, 128, 1, NULL},
        {path_of("i_notype"), "", 0, 0, 1, NULL},
        {path_of("j_badquant"), "", 0, 0, 1, "config.json: quantization.bits is not an integer in [0, 1024]"},
        {path_of("k_array"), "", 0, 0, 1, "config.json: top level is not a JSON object"},
        {path_of("l_badtype"), "", 0, 0, 1, "config.json: model_type is not a string"},
        {deep_path, "", 0, 0, 0, "cannot read folder: File name too long"},
        {path_of("o_partial"), "", 0, 0, 2, "model-00002-of-00002.safetensors: No such file or directory"},
    };
    size_t nw = 13;
    if (!as_root) { /* n_locked sorts between m_deep and o_partial */
        want[nw] = want[nw - 1];
        want[nw - 1] = (expect){path_of("n_locked"), "", 0, 0, 0, "cannot read folder: Permission denied"};
        nw++;
    }
    fprintf(stderr, "  running as %s: unreadable folders made by %s\n", as_root ? "root" : "a user",
            as_root ? "an over-long path" : "an over-long path and chmod 000");

    lmc_discovered_model *got = NULL;
    size_t n = 0;
    lmc_status s = lmc_discover(root, &got, &n);
    CHECKF(s == LMC_OK, "discover: %s", lmc_last_error());
    check_results(got, n, want, nw);
    lmc_discovered_free(got, n);

    /* The same with a trailing slash, and the walk is stable. */
    char slashed[80];
    snprintf(slashed, sizeof slashed, "%s//", root);
    s = lmc_discover(slashed, &got, &n);
    CHECK(s == LMC_OK);
    check_results(got, n, want, nw);
    lmc_discovered_free(got, n);

    /* A model folder given directly, through a symlink. */
    s = lmc_discover(path_of("z_link_to_model"), &got, &n);
    CHECK(s == LMC_OK && n == 1);
    if (n == 1) {
        CHECK_STR(got[0].path, path_of("z_link_to_model"));
        CHECK_STR(got[0].architecture, "qwen3");
    }
    lmc_discovered_free(got, n);

    /* A folder with nothing: success, no entries. */
    s = lmc_discover(path_of("d_no_weights"), &got, &n);
    CHECK(s == LMC_OK && n == 0 && got == NULL);

    /* Missing folder, a file, a dangling link: errors naming the path. */
    s = lmc_discover(path_of("no_such"), &got, &n);
    CHECK(s == LMC_ERR_NOT_FOUND && got == NULL && n == 0);
    CHECKF(strstr(lmc_last_error(), "no_such"), "%s", lmc_last_error());
    s = lmc_discover(path_of("readme.txt"), &got, &n);
    CHECK(s == LMC_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(lmc_last_error(), "readme.txt") && strstr(lmc_last_error(), "not a folder"), "%s", lmc_last_error());
    s = lmc_discover(path_of("dangling"), &got, &n);
    CHECK(s == LMC_ERR_NOT_FOUND);
    CHECK(lmc_discover(NULL, &got, &n) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(lmc_discover(root, NULL, &n) == LMC_ERR_INVALID_ARGUMENT);
    lmc_discovered_free(NULL, 0);

    if (!as_root) chmod(path_of("n_locked"), 0755);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    free(deep_path);
    free_paths();
}

int main(void) {
    RUN(test_tree);
    return TEST_REPORT();
}
