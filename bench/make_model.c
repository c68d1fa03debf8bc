/* lmc make-model: writes a random-weight checkpoint with the real shapes and
 * config of a known model (or a tiny one), for benchmarks and demos where no
 * weights can be downloaded.
 *
 *   lmc make-model --preset llama3.2-1b|qwen3-0.6b|gemma3-1b|tiny-llama|tiny-qwen3|tiny-gemma3
 *                  [--q4 | --q8 | --f16] [--group-size 64] [--seed S] [--tokenizer DIR] -o OUT
 *
 * Weights are drawn from N(0, 0.02) (norm weights near 1, or near 0 for
 * Gemma's 1+w form), stored in bf16 (f16 with --f16), or MLX 4- or 8-bit
 * affine with --q4 / --q8 (every linear layer and the embedding, bf16
 * scales and biases), written one layer
 * at a time so memory stays bounded. The tokenizer files are copied from
 * --tokenizer DIR (default .cache/tokenizers/FAMILY). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "lmc/ops.h"
#include "lmc/safetensors.h"
#include "tools/cli_options.h"

typedef struct preset {
    const char *name, *model_type, *family;
    int64_t vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_pos;
    double rope_theta, eps;
    int64_t sliding_window; /* gemma */
    int bos;
    int eos[3];
} preset;

static const preset presets[] = {
    {"llama3.2-1b", "llama", "llama3_1", 128256, 2048, 8192, 16, 32, 8, 64, 131072, 500000.0, 1e-5, 0, 128000, {128001, 128008, 128009}},
    {"qwen3-0.6b", "qwen3", "qwen3", 151936, 1024, 3072, 28, 16, 8, 128, 40960, 1000000.0, 1e-6, 0, 151643, {151645, 151643, -1}},
    {"gemma3-1b", "gemma3_text", "gemma3", 262144, 1152, 6912, 26, 4, 1, 256, 32768, 1000000.0, 1e-6, 512, 2, {1, 106, -1}},
    {"tiny-llama", "llama", "llama3_1", 128256, 64, 128, 2, 4, 2, 16, 4096, 500000.0, 1e-5, 0, 128000, {128001, 128008, 128009}},
    {"tiny-qwen3", "qwen3", "qwen3", 151936, 64, 128, 2, 4, 2, 32, 4096, 1000000.0, 1e-6, 0, 151643, {151645, 151643, -1}},
    {"tiny-gemma3", "gemma3_text", "gemma3", 262144, 64, 128, 7, 4, 1, 32, 4096, 1000000.0, 1e-6, 16, 2, {1, 106, -1}},
};

static bool write_config(const preset *p, const char *out, lmc_dtype dt, int bits, int group) {
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    bool gemma = !strcmp(p->model_type, "gemma3_text"), llama = !strcmp(p->model_type, "llama");
    cJSON_AddItemToArray(arch, cJSON_CreateString(gemma ? "Gemma3ForCausalLM" : llama ? "LlamaForCausalLM" : "Qwen3ForCausalLM"));
    cJSON_AddStringToObject(c, "model_type", p->model_type);
    cJSON_AddNumberToObject(c, "vocab_size", (double)p->vocab);
    cJSON_AddNumberToObject(c, "hidden_size", (double)p->hidden);
    cJSON_AddNumberToObject(c, "intermediate_size", (double)p->inter);
    cJSON_AddNumberToObject(c, "num_hidden_layers", (double)p->layers);
    cJSON_AddNumberToObject(c, "num_attention_heads", (double)p->heads);
    cJSON_AddNumberToObject(c, "num_key_value_heads", (double)p->kv_heads);
    cJSON_AddNumberToObject(c, "head_dim", (double)p->head_dim);
    cJSON_AddNumberToObject(c, "max_position_embeddings", (double)p->max_pos);
    cJSON_AddNumberToObject(c, "rms_norm_eps", p->eps);
    cJSON_AddNumberToObject(c, "rope_theta", p->rope_theta);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", 1);
    cJSON_AddStringToObject(c, "torch_dtype", dt == LMC_F16 ? "float16" : "bfloat16");
    cJSON_AddNumberToObject(c, "bos_token_id", p->bos);
    cJSON *eos = cJSON_AddArrayToObject(c, "eos_token_id");
    for (int i = 0; i < 3; i++)
        if (p->eos[i] >= 0) cJSON_AddItemToArray(eos, cJSON_CreateNumber(p->eos[i]));
    if (gemma) {
        cJSON_AddStringToObject(c, "hidden_activation", "gelu_pytorch_tanh");
        cJSON_AddNumberToObject(c, "query_pre_attn_scalar", (double)p->head_dim);
        cJSON_AddNumberToObject(c, "sliding_window", (double)p->sliding_window);
        cJSON_AddNumberToObject(c, "sliding_window_pattern", 6);
        cJSON_AddNumberToObject(c, "rope_local_base_freq", 10000.0);
    } else {
        cJSON_AddStringToObject(c, "hidden_act", "silu");
    }
    if (llama) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddNumberToObject(rs, "factor", 32.0);
        cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
        cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 8192);
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
    }
    if (bits) {
        const char *keys[] = {"quantization", "quantization_config"};
        for (int i = 0; i < 2; i++) {
            cJSON *q = cJSON_AddObjectToObject(c, keys[i]);
            cJSON_AddNumberToObject(q, "group_size", group);
            cJSON_AddNumberToObject(q, "bits", bits);
        }
    }
    char *txt = cJSON_Print(c);
    cJSON_Delete(c);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out);
    FILE *f = fopen(path, "w");
    bool ok = f && txt && fputs(txt, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) fprintf(stderr, "lmc make-model: cannot write %s: %s\n", path, strerror(errno));
    free(txt);
    return ok;
}

static bool copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    bool ok = in && out;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = false;
    return ok;
}

typedef struct shard {
    const char *names[64];
    char name_buf[64][256];
    lmc_array *arrays[64];
    int n;
} shard;

static void shard_add(shard *s, const char *name, lmc_array *a) {
    snprintf(s->name_buf[s->n], sizeof s->name_buf[s->n], "%s", name);
    s->names[s->n] = s->name_buf[s->n];
    s->arrays[s->n++] = a;
}

static void shard_clear(shard *s) {
    for (int i = 0; i < s->n; i++) lmc_array_free(s->arrays[i]);
    s->n = 0;
}

/* Adds NAME.weight (random, of dtype dt) — or NAME.weight/.scales/.biases quantised to `bits` (4 or 8; 0: none). */
static bool add_linear(shard *s, const char *name, int64_t out, int64_t in, lmc_dtype dt, int bits, int group, uint64_t seed) {
    int64_t shape[2] = {out, in};
    lmc_array *w = lmc_random_normal(dt, 2, shape, 0.0, 0.02, seed);
    if (!w) return false;
    char n[200];
    if (!bits) {
        snprintf(n, sizeof n, "%s.weight", name);
        shard_add(s, n, w);
        return true;
    }
    lmc_array *scales, *biases;
    lmc_array *wq = lmc_quantize(w, group, bits, &scales, &biases);
    lmc_array_free(w);
    if (!wq) return false;
    snprintf(n, sizeof n, "%s.weight", name);
    shard_add(s, n, wq);
    snprintf(n, sizeof n, "%s.scales", name);
    shard_add(s, n, scales);
    snprintf(n, sizeof n, "%s.biases", name);
    shard_add(s, n, biases);
    return true;
}

static bool add_norm(shard *s, const char *name, int64_t n, lmc_dtype dt, bool gemma, uint64_t seed) {
    int64_t shape[1] = {n};
    lmc_array *w = lmc_random_normal(dt, 1, shape, gemma ? 0.0 : 1.0, 0.05, seed);
    if (!w) return false;
    shard_add(s, name, w);
    return true;
}

static bool flush(shard *s, const char *out, int index, cJSON *weight_map) {
    char file[64], path[4096];
    snprintf(file, sizeof file, "model-%05d.safetensors", index);
    snprintf(path, sizeof path, "%s/%s", out, file);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    lmc_status st = lmc_safetensors_write(path, (size_t)s->n, s->names, (const lmc_array *const *)s->arrays, 1, mk, mv);
    for (int i = 0; i < s->n; i++) cJSON_AddStringToObject(weight_map, s->names[i], file);
    shard_clear(s);
    if (st != LMC_OK) fprintf(stderr, "lmc make-model: %s\n", lmc_last_error());
    return st == LMC_OK;
}

int cmd_make_model(int argc, char **argv) {
    const char *name = NULL, *out = NULL, *tokdir = NULL;
    int bits = 0;
    lmc_dtype dt = LMC_BF16;
    long long group = 64, seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokdir = argv[++i];
        else if (!strcmp(argv[i], "--q4")) bits = 4;
        else if (!strcmp(argv[i], "--q8")) bits = 8;
        else if (!strcmp(argv[i], "--f16")) dt = LMC_F16;
        else if (!strcmp(argv[i], "--group-size") && i + 1 < argc) {
            if (!lmc_cli_int("make-model", "--group-size", argv[++i], 32, 128, &group) || (group != 32 && group != 64 && group != 128)) {
                fprintf(stderr, "lmc make-model: --group-size must be 32, 64 or 128\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (!lmc_cli_int("make-model", "--seed", argv[++i], 0, INT64_MAX, &seed)) return 2;
        } else {
            fprintf(stderr, "lmc make-model: unknown argument '%s'\n", argv[i]);
            name = NULL;
            out = NULL;
            break;
        }
    }
    const preset *p = NULL;
    for (size_t i = 0; name && i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(presets[i].name, name)) p = &presets[i];
    if (!p || !out) {
        fprintf(stderr, "usage: lmc make-model --preset NAME [--q4 | --q8 | --f16] [--group-size 64] [--seed S] [--tokenizer DIR] -o OUT\n"
                        "presets:");
        for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) fprintf(stderr, " %s", presets[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (bits && dt != LMC_BF16) {
        fprintf(stderr, "lmc make-model: --f16 is for unquantised weights (quantised ones keep bf16 scales)\n");
        return 2;
    }
    char from[4096], to[4096], dflt[4096];
    if (!tokdir) {
        snprintf(dflt, sizeof dflt, ".cache/tokenizers/%s", p->family);
        tokdir = dflt;
    }
    const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json"};
    /* the tokenizer files first: a missing one leaves no empty folder behind */
    for (int i = 0; i < 2; i++) {
        if (snprintf(from, sizeof from, "%s/%s", tokdir, tok_files[i]) >= (int)sizeof from || access(from, R_OK) != 0) {
            fprintf(stderr, "lmc make-model: cannot read %s (run scripts/fetch_tokenizers.sh, or pass --tokenizer DIR)\n", from);
            return 1;
        }
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "lmc make-model: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        bool fits = snprintf(from, sizeof from, "%s/%s", tokdir, tok_files[i]) < (int)sizeof from &&
                    snprintf(to, sizeof to, "%s/%s", out, tok_files[i]) < (int)sizeof to;
        if (!fits || !copy_file(from, to)) {
            fprintf(stderr, "lmc make-model: cannot copy %s (run scripts/fetch_tokenizers.sh, or pass --tokenizer DIR)\n", from);
            return 1;
        }
    }
    if (!write_config(p, out, dt, bits, (int)group)) return 1;
    bool gemma = !strcmp(p->model_type, "gemma3_text"), qwen3 = !strcmp(p->model_type, "qwen3");
    cJSON *index = cJSON_CreateObject();
    cJSON_AddObjectToObject(index, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(index, "weight_map");
    shard s = {0};
    bool ok = true;
    int file = 1;
    uint64_t sd = (uint64_t)seed * 1000003u;
    ok = ok && add_linear(&s, "model.embed_tokens", p->vocab, p->hidden, dt, bits, (int)group, sd++);
    ok = ok && add_norm(&s, "model.norm.weight", p->hidden, dt, gemma, sd++);
    ok = ok && flush(&s, out, file++, wm);
    int64_t qd = p->heads * p->head_dim, kd = p->kv_heads * p->head_dim;
    for (int64_t l = 0; ok && l < p->layers; l++) {
        char n[160];
#define LIN(suffix, o, i) (snprintf(n, sizeof n, "model.layers.%lld.%s", (long long)l, suffix), add_linear(&s, n, o, i, dt, bits, (int)group, sd++))
#define NORM(suffix, d) (snprintf(n, sizeof n, "model.layers.%lld.%s.weight", (long long)l, suffix), add_norm(&s, n, d, dt, gemma, sd++))
        ok = LIN("self_attn.q_proj", qd, p->hidden) && LIN("self_attn.k_proj", kd, p->hidden) &&
             LIN("self_attn.v_proj", kd, p->hidden) && LIN("self_attn.o_proj", p->hidden, qd) &&
             LIN("mlp.gate_proj", p->inter, p->hidden) && LIN("mlp.up_proj", p->inter, p->hidden) &&
             LIN("mlp.down_proj", p->hidden, p->inter) && NORM("input_layernorm", p->hidden) &&
             NORM("post_attention_layernorm", p->hidden);
        if (ok && gemma) ok = NORM("pre_feedforward_layernorm", p->hidden) && NORM("post_feedforward_layernorm", p->hidden);
        if (ok && (gemma || qwen3)) ok = NORM("self_attn.q_norm", p->head_dim) && NORM("self_attn.k_norm", p->head_dim);
#undef LIN
#undef NORM
        if (ok) ok = flush(&s, out, file++, wm);
    }
    if (!ok && s.n) shard_clear(&s);
    if (!ok && lmc_last_status() != LMC_OK) fprintf(stderr, "lmc make-model: %s\n", lmc_last_error());
    if (ok) {
        char *txt = cJSON_Print(index);
        snprintf(to, sizeof to, "%s/model.safetensors.index.json", out);
        FILE *f = fopen(to, "w");
        ok = f && txt && fputs(txt, f) >= 0;
        if (f && fclose(f) != 0) ok = false;
        free(txt);
        if (!ok) fprintf(stderr, "lmc make-model: cannot write %s\n", to);
    }
    cJSON_Delete(index);
    if (ok) fprintf(stderr, "wrote %s (%s%s, random weights)\n", out, p->name, bits == 4 ? ", MLX 4-bit" : bits == 8 ? ", MLX 8-bit" : dt == LMC_F16 ? ", f16" : ", bf16");
    return ok ? 0 : 1;
}
