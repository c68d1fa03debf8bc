/* Bad checkpoints give their documented errors, naming the file, field or
 * tensor; nothing crashes and nothing leaks. Each case starts from a copy of
 * a golden model folder and breaks one thing. */
#include <sys/stat.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "models/config.h"
#include "model_fixture.h"
#include "test_util.h"

static char *g_dir; /* a loadable qwen3 folder (links) */

/* A fresh folder with copies (not links) of the golden model files, so they can be edited. */
static char *copy_model(void) {
    char tmpl[] = "/tmp/lmc-bad-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return NULL;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -L %s/* %s/", g_dir, dir);
    if (system(cmd) != 0) return NULL;
    return strdup(dir);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *read_text(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return read_file_all(p, NULL);
}

/* Replaces the first occurrence of `from` in config.json by `to`. */
static void edit_config(const char *dir, const char *from, const char *to) {
    char *s = read_text(dir, "config.json");
    char *at = s ? strstr(s, from) : NULL;
    if (!at) {
        CHECKF(0, "config.json has no '%s'", from);
        free(s);
        return;
    }
    size_t n = strlen(s) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    write_text(dir, "config.json", out);
    free(s);
    free(out);
}

static void expect_load_error(const char *dir, lmc_status want, const char *fragment, const char *what) {
    lmc_model *m = NULL;
    lmc_status s = lmc_model_load(dir, NULL, &m);
    CHECKF(s == want && m == NULL, "%s: status %d (%s), wanted %d", what, (int)s, lmc_last_error(), (int)want);
    CHECKF(strstr(lmc_last_error(), fragment) != NULL, "%s: message '%s' lacks '%s'", what, lmc_last_error(), fragment);
    lmc_model_free(m);
}

static void cleanup(char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}

static void test_missing_folder_and_config(void) {
    expect_load_error("/nonexistent/model", LMC_ERR_IO, "config.json", "missing folder");
    char *d = copy_model();
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", d);
    unlink(p);
    expect_load_error(d, LMC_ERR_IO, "config.json", "no config.json");
    cleanup(d);
}

static void test_bad_json_and_fields(void) {
    char *d = copy_model();
    write_text(d, "config.json", "{\"model_type\": \"qwen3\", ");
    expect_load_error(d, LMC_ERR_FORMAT, "invalid JSON", "truncated JSON");
    write_text(d, "config.json", "[1, 2]");
    expect_load_error(d, LMC_ERR_FORMAT, "expected a JSON object", "JSON array");
    cleanup(d);
    d = copy_model();
    edit_config(d, "\"qwen3\"", "\"mistral\"");
    expect_load_error(d, LMC_ERR_UNSUPPORTED, "unsupported architecture: mistral", "unknown model_type");
    cleanup(d);
    d = copy_model();
    edit_config(d, "\"hidden_size\": 64", "\"hidden_size\": \"64\"");
    expect_load_error(d, LMC_ERR_FORMAT, "hidden_size", "string hidden_size");
    cleanup(d);
    d = copy_model();
    edit_config(d, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_load_error(d, LMC_ERR_FORMAT, "num_key_value_heads", "heads not a multiple");
    cleanup(d);
}

static void test_shape_mismatch(void) {
    char *d = copy_model();
    edit_config(d, "\"intermediate_size\": 192", "\"intermediate_size\": 200");
    expect_load_error(d, LMC_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight' has shape [192, 64], expected [200, 64]",
                      "wrong intermediate size");
    cleanup(d);
}

static void test_missing_tensor(void) {
    /* Rewrite model.safetensors without one tensor. */
    char *d = copy_model();
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", g_dir);
    snprintf(q, sizeof q, "%s/model.safetensors", d);
    lmc_safetensors *st;
    CHECK(lmc_safetensors_open(p, &st) == LMC_OK);
    size_t n = lmc_safetensors_count(st), k = 0;
    const char **names = calloc(n, sizeof *names);
    lmc_array **arrays = calloc(n, sizeof *arrays);
    for (size_t i = 0; i < n; i++) {
        const char *name = lmc_safetensors_name(st, i);
        if (!strcmp(name, "model.layers.1.mlp.up_proj.weight")) continue;
        names[k] = name;
        arrays[k++] = lmc_safetensors_get(st, name);
    }
    CHECK(k == n - 1);
    unlink(q);
    CHECK(lmc_safetensors_write(q, k, names, (const lmc_array *const *)arrays, 0, NULL, NULL) == LMC_OK);
    for (size_t i = 0; i < k; i++) lmc_array_free(arrays[i]);
    free(arrays);
    free(names);
    lmc_safetensors_close(st);
    expect_load_error(d, LMC_ERR_NOT_FOUND, "missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [192, 64])",
                      "missing tensor");
    cleanup(d);
}

static void test_truncated_safetensors(void) {
    char *d = copy_model();
    char q[4096];
    snprintf(q, sizeof q, "%s/model.safetensors", d);
    struct stat sb;
    CHECK(stat(q, &sb) == 0);
    CHECK(truncate(q, sb.st_size - 100) == 0);
    expect_load_error(d, LMC_ERR_FORMAT, "model.safetensors", "truncated safetensors");
    CHECK(truncate(q, 4) == 0);
    expect_load_error(d, LMC_ERR_FORMAT, "model.safetensors", "4-byte safetensors");
    unlink(q);
    expect_load_error(d, LMC_ERR_NOT_FOUND, "safetensors", "no safetensors at all");
    cleanup(d);
}

static void test_missing_tokenizer_and_options(void) {
    char *d = copy_model();
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    unlink(p);
    expect_load_error(d, LMC_ERR_IO, "tokenizer.json", "no tokenizer.json");
    /* The tokenizer loads on a second thread while the weights load: its
     * message comes over whole, and the weights' error still comes first. */
    write_text(d, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}");
    for (int threads = 1; threads <= 2; threads++) {
        lmc_set_num_threads(threads);
        expect_load_error(d, LMC_ERR_FORMAT, "tokenizer.json: merge 0 (byte 56) is not two tokens", "bad merges");
    }
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    unlink(p);
    expect_load_error(d, LMC_ERR_NOT_FOUND, "safetensors", "no weights and bad merges");
    lmc_set_num_threads(0);
    cleanup(d);
    lmc_load_options o = lmc_load_options_default();
    o.backend = "tpu";
    lmc_model *m = NULL;
    CHECK(lmc_model_load(g_dir, &o, &m) == LMC_ERR_UNSUPPORTED && strstr(lmc_last_error(), "tpu"));
    o = lmc_load_options_default();
    o.prefill_chunk = -1;
    CHECK(lmc_model_load(g_dir, &o, &m) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "prefill_chunk"));
    const int bad_bits[] = {16, 4, -8, 32};
    for (int i = 0; i < 4; i++) {
        o = lmc_load_options_default();
        o.activation_bits = bad_bits[i];
        CHECK(lmc_model_load(g_dir, &o, &m) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "activation_bits"));
    }
    o = lmc_load_options_default();
    o.activation_bits = 8;
    o.backend = "subprocess";
    o.bridge = "false";
    CHECK(lmc_model_load(g_dir, &o, &m) == LMC_ERR_UNSUPPORTED && strstr(lmc_last_error(), "activation_bits"));
    CHECK(lmc_model_load(NULL, NULL, &m) == LMC_ERR_INVALID_ARGUMENT);
}

static void test_quantization_config(void) {
    char *d = copy_model();
    edit_config(d, "\"model_type\"", "\"quantization\": {\"bits\": 3, \"group_size\": 64}, \"model_type\"");
    expect_load_error(d, LMC_ERR_UNSUPPORTED, "3-bit", "3-bit quantization");
    cleanup(d);
    d = copy_model();
    edit_config(d, "\"model_type\"", "\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}, \"model_type\"");
    expect_load_error(d, LMC_ERR_UNSUPPORTED, "gptq", "GPTQ checkpoint");
    cleanup(d);
}

/* generation_config.json's sampling: read into lmc_model_info.sampler;
 * do_sample false is greedy; a bad field fails the load naming the file
 * and the field. */
static void test_generation_config_sampling(void) {
    char *dir = copy_model();
    if (!dir) {
        CHECK(0);
        return;
    }
    lmc_model *m = NULL;
    lmc_model_info in;
    write_text(dir, "generation_config.json",
               "{\"do_sample\": true, \"temperature\": 0.6, \"top_k\": 20, \"top_p\": 0.95, \"min_p\": 0.05, "
               "\"repetition_penalty\": 1.1, \"eos_token_id\": [151645]}");
    CHECK(lmc_model_load(dir, NULL, &m) == LMC_OK && lmc_model_get_info(m, &in) == LMC_OK);
    if (m) {
        CHECK_CLOSE(in.sampler.temperature, 0.6, 1e-6, 0);
        CHECK(in.sampler.top_k == 20);
        CHECK_CLOSE(in.sampler.top_p, 0.95, 1e-6, 0);
        CHECK_CLOSE(in.sampler.min_p, 0.05, 1e-6, 0);
        CHECK_CLOSE(in.sampler.repeat_penalty, 1.1, 1e-6, 0);
        CHECK(in.sampler.seed == lmc_sampler_config_default().seed);
    }
    lmc_model_free(m);
    m = NULL;
    write_text(dir, "generation_config.json", "{\"do_sample\": false, \"temperature\": 0.7}");
    CHECK(lmc_model_load(dir, NULL, &m) == LMC_OK && lmc_model_get_info(m, &in) == LMC_OK && in.sampler.temperature == 0);
    lmc_model_free(m);
    write_text(dir, "generation_config.json", "{\"temperature\": \"hot\"}");
    expect_load_error(dir, LMC_ERR_FORMAT, "generation_config.json: temperature must be a number", "temperature type");
    write_text(dir, "generation_config.json", "{\"top_p\": 2}");
    expect_load_error(dir, LMC_ERR_INVALID_ARGUMENT, "generation_config.json: sampler: top_p", "top_p range");
    write_text(dir, "generation_config.json", "{\"do_sample\": 1}");
    expect_load_error(dir, LMC_ERR_FORMAT, "do_sample must be true or false", "do_sample type");
    /* past a float's range: refused naming the value the file holds (not the inf it would become) */
    write_text(dir, "generation_config.json", "{\"temperature\": 1e300}");
    expect_load_error(dir, LMC_ERR_FORMAT, "generation_config.json: temperature 1e+300 is out of range", "temperature range");
    write_text(dir, "generation_config.json", "{\"repetition_penalty\": -1e39}");
    expect_load_error(dir, LMC_ERR_FORMAT, "repetition_penalty -1e+39 is out of range", "penalty range");
    /* no file: lmc's defaults */
    char p[4200];
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    unlink(p);
    m = NULL;
    CHECK(lmc_model_load(dir, NULL, &m) == LMC_OK && lmc_model_get_info(m, &in) == LMC_OK);
    CHECK(m && in.sampler.temperature == lmc_sampler_config_default().temperature && in.sampler.top_k == 0);
    lmc_model_free(m);
    cleanup(dir);
}

/* config.json values out of range are refused with the field's name (a
 * double cast to an int out of range would be undefined behaviour; a
 * negative epsilon or RoPE base would give NaN logits). fuzz_model_config
 * checks the same invariants on random files. */
static void expect_config(const char *fields, lmc_status want, const char *fragment) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"model_type\": \"%s\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2%s}",
             strstr(fields, "query_pre_attn_scalar") ? "gemma3_text" : "qwen3", fields);
    lmc_model_config c;
    lmc_status s = lmc_model_config_parse(json, strlen(json), "x/config.json", &c);
    CHECKF(s == want, "%s: status %d (%s), wanted %d", fields, (int)s, lmc_last_error(), (int)want);
    if (want != LMC_OK)
        CHECKF(strstr(lmc_last_error(), fragment) && strstr(lmc_last_error(), "x/config.json"),
               "%s: message '%s' lacks '%s'", fields, lmc_last_error(), fragment);
}

static void test_config_ranges(void) {
    expect_config(", \"eos_token_id\": 1e300", LMC_ERR_FORMAT, "eos_token_id");
    expect_config(", \"eos_token_id\": [1, -5]", LMC_ERR_FORMAT, "eos_token_id");
    expect_config(", \"eos_token_id\": 2147483648", LMC_ERR_FORMAT, "eos_token_id");
    expect_config(", \"bos_token_id\": 2.5", LMC_ERR_FORMAT, "bos_token_id");
    expect_config(", \"pad_token_id\": \"0\"", LMC_ERR_FORMAT, "pad_token_id");
    expect_config(", \"quantization\": {\"bits\": 1e300, \"group_size\": 64}", LMC_ERR_FORMAT, "bits must be an integer");
    expect_config(", \"quantization\": {\"bits\": 4, \"group_size\": 64.5}", LMC_ERR_FORMAT, "group_size");
    expect_config(", \"rope_theta\": -10000", LMC_ERR_FORMAT, "rope_theta");
    expect_config(", \"rope_theta\": 1e39", LMC_ERR_FORMAT, "rope_theta");
    expect_config(", \"rms_norm_eps\": -1e-6", LMC_ERR_FORMAT, "rms_norm_eps");
    expect_config(", \"query_pre_attn_scalar\": 0", LMC_ERR_FORMAT, "query_pre_attn_scalar");
    expect_config(", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 1e300}", LMC_ERR_FORMAT, "factor");
    expect_config(", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, \"rope_theta\": 0}", LMC_ERR_FORMAT,
                  "rope_theta");
    expect_config(", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
                  "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 1e300}",
                  LMC_ERR_FORMAT, "original_max_position_embeddings");
    expect_config(", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 0, "
                  "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}",
                  LMC_ERR_FORMAT, "low_freq_factor");
    /* what real configs hold still parses */
    expect_config(", \"eos_token_id\": [1, 2], \"bos_token_id\": 0, \"pad_token_id\": null, \"rms_norm_eps\": 0, "
                  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, "
                  "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
                  LMC_OK, NULL);
    lmc_model_config c;
    const char *ok = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, "
                     "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"eos_token_id\": [7, 9], \"bos_token_id\": 5}";
    CHECK(lmc_model_config_parse(ok, strlen(ok), "x/config.json", &c) == LMC_OK);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 7 && c.eos_ids[1] == 9 && c.bos_id == 5 && c.pad_id == -1);
    /* a negative pad or bos id is "none" (configs write -1), not an error */
    const char *neg = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"pad_token_id\": -1, \"bos_token_id\": -3}";
    CHECK(lmc_model_config_parse(neg, strlen(neg), "x/config.json", &c) == LMC_OK && c.pad_id == -1 && c.bos_id == -1);
}

int main(void) {
    g_dir = model_fixture_dir("qwen3");
    if (!g_dir) return 1;
    int64_t live = lmc_live_arrays();
    RUN(test_missing_folder_and_config);
    RUN(test_bad_json_and_fields);
    RUN(test_shape_mismatch);
    RUN(test_missing_tensor);
    RUN(test_truncated_safetensors);
    RUN(test_missing_tokenizer_and_options);
    RUN(test_quantization_config);
    RUN(test_generation_config_sampling);
    RUN(test_config_ranges);
    CHECK(lmc_live_arrays() == live);
    model_fixture_cleanup(g_dir);
    return TEST_REPORT();
}
