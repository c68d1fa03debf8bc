#include "tools/cli_options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"

bool lmc_cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "lmc %s: %s expects an integer in [%lld, %lld], got '%s'\n", cmd, opt, lo, hi, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

bool lmc_cli_activation_bits(const char *cmd, const char *opt, const char *s, int *out) {
    if (!s || (strcmp(s, "24") && strcmp(s, "8"))) {
        fprintf(stderr, "lmc %s: %s expects 24 or 8, got '%s'\n", cmd, opt, s ? s : "");
        return false;
    }
    *out = atoi(s);
    return true;
}

bool lmc_cli_float_dtype(const char *cmd, const char *opt, const char *s, bool allow_f16, lmc_dtype *out) {
    if (s && !strcmp(s, "f32")) *out = LMC_F32;
    else if (s && !strcmp(s, "bf16")) *out = LMC_BF16;
    else if (s && allow_f16 && !strcmp(s, "f16")) *out = LMC_F16;
    else {
        fprintf(stderr, "lmc %s: %s expects %s, got '%s'\n", cmd, opt, allow_f16 ? "f32, bf16 or f16" : "f32 or bf16",
                s ? s : "");
        return false;
    }
    return true;
}

bool lmc_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "lmc %s: %s expects a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

bool lmc_cli_text_or_file(const char *cmd, const char *opt, const char *val, size_t max, const char **text,
                          char **owned) {
    *owned = NULL;
    *text = val;
    if (val[0] != '@') return true;
    size_t len;
    if (lmc_read_file(val + 1, max, owned, &len) != LMC_OK) {
        fprintf(stderr, "lmc %s: %s: %s\n", cmd, opt, lmc_last_error());
        return false;
    }
    *text = *owned;
    return true;
}

bool lmc_cli_ids(const char *cmd, const char *opt, const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16, len = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && p && *p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "lmc %s: %s expects comma-separated token ids, got '%s'\n", cmd, opt, s);
            free(v);
            return false;
        }
        if (len == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[len++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!v || len == 0) {
        fprintf(stderr, "lmc %s: %s expects at least one token id\n", cmd, opt);
        free(v);
        return false;
    }
    *ids = v;
    *n = len;
    return true;
}

void lmc_cli_gen_init(lmc_cli_gen *g) {
    memset(g, 0, sizeof *g);
    g->load = lmc_load_options_default();
    g->gen = lmc_generate_options_default();
    g->gen.stop_strings = g->stops;
    g->load.bridge_env = g->bridge_env;
    g->model_sampling = true;
}

const char lmc_cli_gen_usage[] =
    "  -m, --model DIR          model folder (config.json, *.safetensors, tokenizer files)\n"
    "  --max-tokens N           tokens to generate at most (default 256)\n"
    "  --temperature T          0 = greedy (default 0.8)\n"
    "                           (sampling options not given come from the model's generation_config.json)\n"
    "  --top-k K                keep the K most likely tokens (0 = off)\n"
    "  --top-p P                nucleus sampling (1 = off)\n"
    "  --min-p M                drop tokens below M x the top probability (0 = off)\n"
    "  --repeat-penalty R       penalise recent tokens (1 = off)\n"
    "  --seed S                 random seed (default 0)\n"
    "  --stop STR               stop before this text (repeatable)\n"
    "  --ignore-eos             keep generating past end-of-sequence tokens\n"
    "  --json-object            JSON mode: the reply is one JSON object (tokens that cannot continue one are ruled out)\n"
    "  --json-schema S          the reply follows a JSON Schema: S is the schema's JSON text, or @FILE\n"
    "  --lookup N               prompt-lookup decoding with up to N (1..3) drafts a step: the same reply,\n"
    "                           sooner where text repeats (default 0: off)\n"
    "  --chat-template-vars J   extra chat-template variables, a JSON object, e.g. '{\"enable_thinking\": false}'\n"
    "  --adapter DIR            apply a LoRA adapter (PEFT folder: adapter_config.json, adapter_model.safetensors)\n"
    "  -t, --threads N          CPU threads (default: all cores)\n"
    "  --context N              context length bound (default: the model's)\n"
    "  --kv-cache-dtype T       f32 (default), bf16 or f16: keys and values as cached (16 bits: half the memory)\n"
    "  --activation-bits N      24 (default) or 8: 4- and 8-bit weights' products keep their input exact\n"
    "                           (f32's precision) or round it to int8 per block of 64 (as llama.cpp: faster\n"
    "                           prefill and batches, logits move by a few percent)\n"
    "  --no-huge-pages          keep the weights on the file mapping's 4 KiB pages (default: moved onto\n"
    "                           2 MiB pages in the background after the first forward pass, for faster decode)\n"
    "  --prompt-cache-slots N   finished generations whose KV caches are kept for reuse (1-64, default 1;\n"
    "                           more serve interleaved conversations, at a KV cache of memory each)\n"
    "  --backend NAME           cpu (default), cuda (an NVIDIA GPU; builds with -DLMC_CUDA=ON) or subprocess\n"
    "  --bridge CMD             backend subprocess: the bridge command, split as a shell splits words,\n"
    "                           e.g. \"python3 bridges/transformers_bridge.py\" (implies --backend subprocess)\n"
    "  --bridge-timeout S       seconds bounding the bridge's start-up and each reply (default 120)\n"
    "  --bridge-env KEY=VALUE   add to the bridge's environment (repeatable), e.g. VIRTUAL_ENV=...\n";

static char *schema_text; /* --json-schema @FILE's text */
static void free_schema_text(void) { free(schema_text); }

int lmc_cli_gen_option(const char *cmd, lmc_cli_gen *g, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long n;
    double d;
#define NEEDS_VALUE()                                                      \
    if (!val) {                                                            \
        fprintf(stderr, "lmc %s: %s needs a value\n", cmd, a);             \
        return -1;                                                         \
    }                                                                      \
    (*i)++
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        NEEDS_VALUE();
        g->model_dir = val;
    } else if (!strcmp(a, "--max-tokens")) {
        NEEDS_VALUE();
        if (!lmc_cli_int(cmd, a, val, 0, 1 << 30, &n)) return -1;
        g->gen.max_tokens = (int)n;
    } else if (!strcmp(a, "--temperature")) {
        NEEDS_VALUE();
        g->sampler_set |= LMC_CLI_SET_TEMPERATURE;
        if (!lmc_cli_float(cmd, a, val, 0, 100, &d)) return -1;
        g->gen.sampler.temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        NEEDS_VALUE();
        g->sampler_set |= LMC_CLI_SET_TOP_K;
        if (!lmc_cli_int(cmd, a, val, 0, 1 << 30, &n)) return -1;
        g->gen.sampler.top_k = (int)n;
    } else if (!strcmp(a, "--top-p")) {
        NEEDS_VALUE();
        g->sampler_set |= LMC_CLI_SET_TOP_P;
        if (!lmc_cli_float(cmd, a, val, 1e-9, 1, &d)) return -1;
        g->gen.sampler.top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        NEEDS_VALUE();
        g->sampler_set |= LMC_CLI_SET_MIN_P;
        if (!lmc_cli_float(cmd, a, val, 0, 1, &d)) return -1;
        g->gen.sampler.min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        NEEDS_VALUE();
        g->sampler_set |= LMC_CLI_SET_REPEAT;
        if (!lmc_cli_float(cmd, a, val, 1e-6, 100, &d)) return -1;
        g->gen.sampler.repeat_penalty = (float)d;
    } else if (!strcmp(a, "--seed")) {
        NEEDS_VALUE();
        if (!lmc_cli_int(cmd, a, val, 0, INT64_MAX, &n)) return -1;
        g->gen.sampler.seed = (uint64_t)n;
    } else if (!strcmp(a, "--stop")) {
        NEEDS_VALUE();
        if (g->gen.n_stop_strings == (int)(sizeof g->stops / sizeof *g->stops)) {
            fprintf(stderr, "lmc %s: too many --stop strings\n", cmd);
            return -1;
        }
        g->stops[g->gen.n_stop_strings++] = val;
    } else if (!strcmp(a, "--ignore-eos")) {
        g->gen.ignore_eos = true;
    } else if (!strcmp(a, "--json-object")) {
        g->gen.json_object = true;
    } else if (!strcmp(a, "--lookup")) {
        NEEDS_VALUE();
        long long v;
        if (!lmc_cli_int(cmd, a, val, 0, LMC_LOOKUP_MAX, &v)) return -1;
        g->gen.lookup_tokens = (int)v;
    } else if (!strcmp(a, "--json-schema")) {
        NEEDS_VALUE();
        if (val[0] == '@') { /* one schema file a process, freed at exit */
            if (schema_text) {
                fprintf(stderr, "lmc %s: --json-schema: given twice\n", cmd);
                return -1;
            }
            if (!lmc_cli_text_or_file(cmd, a, val, 1 << 20, &val, &schema_text)) return -1;
            atexit(free_schema_text);
        }
        g->gen.json_schema = val; /* compiled where generation starts, which reports a bad schema */
    } else if (!strcmp(a, "--chat-template-vars")) {
        NEEDS_VALUE();
        g->gen.template_vars_json = val; /* checked where the template renders, which names it */
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        NEEDS_VALUE();
        if (!lmc_cli_int(cmd, a, val, 1, 256, &n)) return -1;
        g->load.threads = (int)n;
    } else if (!strcmp(a, "--adapter")) {
        NEEDS_VALUE();
        g->load.adapter_dir = val;
    } else if (!strcmp(a, "--context")) {
        NEEDS_VALUE();
        if (!lmc_cli_int(cmd, a, val, 1, INT32_MAX, &n)) return -1;
        g->load.context_length = n;
    } else if (!strcmp(a, "--kv-cache-dtype")) {
        NEEDS_VALUE();
        if (!lmc_cli_float_dtype(cmd, a, val, true, &g->load.kv_cache_dtype)) return -1;
    } else if (!strcmp(a, "--activation-bits")) {
        NEEDS_VALUE();
        if (!lmc_cli_activation_bits(cmd, a, val, &g->load.activation_bits)) return -1;
    } else if (!strcmp(a, "--no-huge-pages")) {
        g->load.huge_pages = false;
    } else if (!strcmp(a, "--prompt-cache-slots")) {
        NEEDS_VALUE();
        if (!lmc_cli_int(cmd, a, val, 1, 64, &n)) return -1;
        g->load.prompt_cache_slots = (int)n;
    } else if (!strcmp(a, "--backend")) {
        NEEDS_VALUE();
        bool known = false;
        for (const char *const *b = lmc_backends(); *b; b++) known = known || !strcmp(*b, val);
        if (!known) {
            fprintf(stderr, "lmc %s: unknown backend '%s' (backends:", cmd, val);
            for (const char *const *b = lmc_backends(); *b; b++) fprintf(stderr, " %s", *b);
            fprintf(stderr, ")\n");
            return -1;
        } /* a known one that cannot run here: loading says why */
        g->load.backend = val;
    } else if (!strcmp(a, "--bridge")) {
        NEEDS_VALUE();
        g->load.bridge = val;
    } else if (!strcmp(a, "--bridge-timeout")) {
        NEEDS_VALUE();
        if (!lmc_cli_float(cmd, a, val, 0.001, 1e6, &d)) return -1;
        g->load.bridge_timeout = d;
    } else if (!strcmp(a, "--bridge-env")) {
        NEEDS_VALUE();
        if (!strchr(val, '=') || val[0] == '=') {
            fprintf(stderr, "lmc %s: --bridge-env expects KEY=VALUE, got '%s'\n", cmd, val);
            return -1;
        }
        if (g->load.n_bridge_env == (int)(sizeof g->bridge_env / sizeof *g->bridge_env)) {
            fprintf(stderr, "lmc %s: too many --bridge-env entries\n", cmd);
            return -1;
        }
        g->bridge_env[g->load.n_bridge_env++] = val;
    } else {
        return 0;
    }
#undef NEEDS_VALUE
    return 1;
}

lmc_model *lmc_cli_load_model(const char *cmd, lmc_cli_gen *g) {
    if (!g->model_dir) {
        fprintf(stderr, "lmc %s: -m DIR is required\n", cmd);
        return NULL;
    }
    if (g->load.bridge && !g->load.backend) g->load.backend = "subprocess";
    if (g->load.bridge && strcmp(g->load.backend, "subprocess")) {
        fprintf(stderr, "lmc %s: --bridge needs --backend subprocess (got --backend %s)\n", cmd, g->load.backend);
        return NULL;
    }
    lmc_model *m = NULL;
    if (lmc_model_load(g->model_dir, &g->load, &m) != LMC_OK) {
        fprintf(stderr, "lmc %s: %s\n", cmd, lmc_last_error());
        return NULL;
    }
    /* What the command line left out, the checkpoint's generation_config.json says (lmc_model_info.sampler). */
    lmc_model_info info;
    if (g->model_sampling && lmc_model_get_info(m, &info) == LMC_OK) {
        lmc_sampler_config *sc = &g->gen.sampler;
        if (!(g->sampler_set & LMC_CLI_SET_TEMPERATURE)) sc->temperature = info.sampler.temperature;
        if (!(g->sampler_set & LMC_CLI_SET_TOP_K)) sc->top_k = info.sampler.top_k;
        if (!(g->sampler_set & LMC_CLI_SET_TOP_P)) sc->top_p = info.sampler.top_p;
        if (!(g->sampler_set & LMC_CLI_SET_MIN_P)) sc->min_p = info.sampler.min_p;
        if (!(g->sampler_set & LMC_CLI_SET_REPEAT)) sc->repeat_penalty = info.sampler.repeat_penalty;
    }
    return m;
}

void lmc_cli_print_metrics_json(FILE *f, const lmc_metrics *m) {
    fprintf(f,
            "{\"prompt_tokens\":%lld,\"cached_prompt_tokens\":%lld,\"generated_tokens\":%lld,\"prefill_seconds\":%.6f,"
            "\"prefill_tokens_per_second\":%.3f,\"decode_seconds\":%.6f,\"decode_tokens_per_second\":%.3f,"
            "\"time_to_first_token\":%.6f,\"peak_memory_bytes\":%zu,\"active_memory_bytes\":%zu,\"draft_tokens\":%lld,"
            "\"accepted_draft_tokens\":%lld}",
            (long long)m->prompt_tokens, (long long)m->cached_prompt_tokens, (long long)m->generated_tokens,
            m->prefill_seconds, m->prefill_tokens_per_second, m->decode_seconds, m->decode_tokens_per_second,
            m->time_to_first_token, m->peak_memory_bytes, m->active_memory_bytes, (long long)m->draft_tokens,
            (long long)m->accepted_draft_tokens);
}

void lmc_cli_print_metrics_line(FILE *f, const lmc_generation *g) {
    const lmc_metrics *mt = &g->metrics;
    char cached[64] = "";
    if (mt->cached_prompt_tokens)
        snprintf(cached, sizeof cached, " (%lld from the prompt cache)", (long long)mt->cached_prompt_tokens);
    fprintf(f, "[prompt %lld tokens%s, %.1f tok/s | generated %lld tokens, %.1f tok/s | first token %.3f s | %s]\n",
            (long long)mt->prompt_tokens, cached, mt->prefill_tokens_per_second, (long long)mt->generated_tokens,
            mt->decode_tokens_per_second, mt->time_to_first_token, lmc_stop_reason_name(g->stop_reason));
}
