/* Model handles: loading a checkpoint folder, information, the backend
 * registry, and forward passes for logits. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/json_util.h"
#include "io/safetensors_internal.h"
#include "lmc/lora.h"
#include "lmc/ops.h"
#include "ops/quant_internal.h"
#include "runtime/model_internal.h"
#include "runtime/sampler.h"
#include "runtime/json_constraint.h"
#include "train/lora_internal.h"

double lmc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- backends ------------------------------------------------------------- */

static const lmc_backend *const g_backend_table[] = {&lmc_backend_cpu, &lmc_backend_cuda, &lmc_backend_subprocess};
static const char *const g_backends[] = {"cpu", "cuda", "subprocess", NULL};

const char *const *lmc_backends(void) { return g_backends; }
const char *lmc_default_backend(void) { return "cpu"; }

const lmc_backend *lmc_backend_find(const char *name) {
    for (size_t i = 0; name && i < sizeof g_backend_table / sizeof *g_backend_table; i++)
        if (!strcmp(g_backend_table[i]->name, name)) return g_backend_table[i];
    return NULL;
}

bool lmc_backend_available(const char *name) {
    const lmc_backend *be = lmc_backend_find(name);
    return be && (!be->available || be->available());
}

static const char *cuda_unavailable_reason(void) {
#ifdef LMC_HAVE_CUDA
    return "no usable CUDA device on this machine (no GPU, or no driver)";
#else
    return "this lmc was built without CUDA (configure with -DLMC_CUDA=ON)";
#endif
}

/* --- loading ---------------------------------------------------------------- */

lmc_load_options lmc_load_options_default(void) {
    return (lmc_load_options){.backend = NULL, .context_length = 0, .prefill_chunk = 0, .threads = 0,
                              .memory_limit = 0, .adapter_dir = NULL, .prompt_cache_slots = 1, .kv_cache_dtype = LMC_F32, .activation_bits = 24, .huge_pages = true, .bridge = NULL, .bridge_env = NULL,
                              .n_bridge_env = 0, .bridge_timeout = 0};
}

lmc_status lmc_model_check(const lmc_model *m) {
    if (!m) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!m->be) return lmc_set_error(LMC_ERR_CLOSED, "model is closed");
    return LMC_OK;
}

lmc_decoder *lmc_model_native(const lmc_model *m, const char *what) {
    if (lmc_model_check(m) != LMC_OK) return NULL;
    if (!m->dec) lmc_set_error(LMC_ERR_UNSUPPORTED, "%s: not supported by backend %s", what, m->backend);
    return m->dec;
}

bool lmc_model_is_eos(const lmc_model *m, int32_t id) {
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos[i] == id) return true;
    return false;
}

static void add_eos(lmc_model *m, int32_t id) {
    if (id < 0 || lmc_model_is_eos(m, id) || m->n_eos >= (int)(sizeof m->eos / sizeof *m->eos)) return;
    m->eos[m->n_eos++] = id;
}

lmc_status lmc_sampling_config_parse(const char *json, size_t len, const char *path, lmc_sampler_config *out) {
    *out = lmc_sampler_config_default();
    cJSON *g = lmc_json_parse(json, len, NULL);
    if (!cJSON_IsObject(g)) {
        cJSON_Delete(g);
        return lmc_set_error(LMC_ERR_FORMAT, "%s: not a JSON object", path);
    }
    static const char *const keys[] = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty"};
    lmc_status st = LMC_OK;
    for (size_t i = 0; st == LMC_OK && i < sizeof keys / sizeof *keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, keys[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            st = lmc_set_error(LMC_ERR_FORMAT, "%s: %s must be a number", path, keys[i]);
            break;
        }
        double x = v->valuedouble;
        /* the float fields take what a float holds (a wider value would become inf, and the
         * sampler's message would name inf instead of what the file says) */
        if (i != 2 && !(fabs(x) <= FLT_MAX)) {
            st = lmc_set_error(LMC_ERR_FORMAT, "%s: %s %g is out of range", path, keys[i], x);
            break;
        }
        if (i == 0) out->temperature = (float)x;
        else if (i == 1) out->top_p = (float)x;
        else if (i == 2) out->top_k = x < 0 ? -1 : x > 1e9 ? 1000000000 : (int)x;
        else if (i == 3) out->min_p = (float)x;
        else out->repeat_penalty = (float)x;
    }
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(g, "do_sample");
    if (st == LMC_OK && ds && !cJSON_IsNull(ds) && !cJSON_IsBool(ds))
        st = lmc_set_error(LMC_ERR_FORMAT, "%s: do_sample must be true or false", path);
    if (st == LMC_OK && cJSON_IsFalse(ds)) out->temperature = 0; /* transformers: greedy */
    cJSON_Delete(g);
    lmc_sampler *check = NULL;
    if (st == LMC_OK && lmc_sampler_create(out, &check) != LMC_OK) {
        lmc_error_prefix("%s", path); /* the sampler's message names the field out of range */
        st = lmc_last_status();
    }
    lmc_sampler_free(check);
    return st;
}

/* generation_config.json's sampling in dir; a folder without the file keeps
 * lmc's defaults. */
static lmc_status read_sampling(const char *dir, lmc_sampler_config *out) {
    *out = lmc_sampler_config_default();
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (access(path, F_OK) != 0) return LMC_OK; /* no file: lmc's defaults */
    char *json;
    size_t len;
    LMC_CHECK(lmc_read_file(path, 1u << 20, &json, &len));
    lmc_status st = lmc_sampling_config_parse(json, len, path, out);
    free(json);
    return st;
}

lmc_status lmc_model_load(const char *dir, const lmc_load_options *opt_in, lmc_model **out) {
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_model_load: out is NULL");
    *out = NULL;
    if (!dir) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_model_load: dir is NULL");
    lmc_load_options opt = opt_in ? *opt_in : lmc_load_options_default();
    const char *backend = opt.backend ? opt.backend : lmc_default_backend();
    const lmc_backend *be = lmc_backend_find(backend);
    if (!be) return lmc_set_error(LMC_ERR_UNSUPPORTED, "no backend \"%s\" (backends: cpu, cuda, subprocess)", backend);
    if (be == &lmc_backend_cuda && !lmc_backend_available(backend))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "backend \"cuda\" is not available: %s", cuda_unavailable_reason());
    if (!lmc_backend_available(backend))
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "backend \"%s\" is not available here", backend);
    if (opt.context_length < 0) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "context_length must be >= 0, got %lld", (long long)opt.context_length);
    if (opt.prefill_chunk < 0)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "prefill_chunk must be > 0 (or 0: the backend's), got %lld",
                             (long long)opt.prefill_chunk);
    if (!opt.prefill_chunk) opt.prefill_chunk = be == &lmc_backend_cuda ? LMC_PREFILL_CHUNK_CUDA : LMC_PREFILL_CHUNK_CPU;
    if (opt.kv_cache_dtype != LMC_F32 && opt.kv_cache_dtype != LMC_BF16 && opt.kv_cache_dtype != LMC_F16)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "kv_cache_dtype must be float32, bfloat16 or float16, got %s",
                             lmc_dtype_name(opt.kv_cache_dtype));
    if (opt.activation_bits != 0 && opt.activation_bits != 24 && opt.activation_bits != 8)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "activation_bits must be 24 or 8, got %d", opt.activation_bits);
    if (opt.prompt_cache_slots < 0 || opt.prompt_cache_slots > 64)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "prompt_cache_slots must be in 0..64, got %d", opt.prompt_cache_slots);
    if (opt.activation_bits == 8 && be != &lmc_backend_cpu)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "activation_bits 8 (int8 activations): backend \"cpu\" only, not %s", backend);
    if (opt.adapter_dir && be != &lmc_backend_cpu)
        return lmc_set_error(LMC_ERR_UNSUPPORTED, "LoRA adapters (%s): not supported by backend %s", opt.adapter_dir, backend);
    if (opt.threads > 0) LMC_CHECK(lmc_set_num_threads(opt.threads));
    /* The limit is on the memory the model computes in: the GPU's for "cuda". */
    if (opt.memory_limit) lmc_memory_set_limit(be == &lmc_backend_cuda ? LMC_CUDA : LMC_CPU, opt.memory_limit);

    lmc_model *m = calloc(1, sizeof *m);
    if (!m) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    pthread_mutex_init(&m->prompt_lock, NULL);
    m->n_prompt_slots = opt.prompt_cache_slots ? opt.prompt_cache_slots : 1;
    m->prompt_slots = calloc((size_t)m->n_prompt_slots, sizeof *m->prompt_slots);
    m->dir = m->prompt_slots ? strdup(dir) : NULL;
    snprintf(m->backend, sizeof m->backend, "%s", backend);
    m->opt = opt;
    /* The caller's strings are not kept. */
    m->opt.adapter_dir = NULL;
    m->opt.backend = NULL;
    m->opt.bridge = NULL;
    m->opt.bridge_env = NULL;
    m->opt.n_bridge_env = 0;
    lmc_status s = m->dir ? be->load(m, dir, &opt) : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    if (s != LMC_OK) {
        pthread_mutex_destroy(&m->prompt_lock);
        free(m->prompt_slots);
        free(m->dir);
        free(m);
        return s;
    }
    m->be = be;
    if ((s = read_sampling(dir, &m->sampling)) != LMC_OK) {
        lmc_model_free(m);
        return s;
    }
    if (opt.adapter_dir) {
        /* The model owns an adapter it loads (freed when it closes). */
        lmc_lora *l = NULL;
        s = lmc_lora_load(m, opt.adapter_dir, &l);
        if (s != LMC_OK) {
            lmc_model_free(m);
            return s;
        }
        m->lora_owned = true;
    }
    *out = m;
    return LMC_OK;
}

/* --- the native backend ("cpu") ------------------------------------------------ */

/* The tokenizer loads on a second thread while the weights load (where
 * two threads are allowed): each takes a good part of the time to first
 * token (a 1B model's weights; gemma3's 33 MB tokenizer.json), and neither
 * needs the other. Its error message is thread-local, so it is carried over. */
typedef struct tokenizer_job {
    const char *dir;
    lmc_tokenizer *tok;
    lmc_status st;
    char msg[1024];
} tokenizer_job;

static void *tokenizer_job_run(void *arg) {
    tokenizer_job *job = arg;
    job->st = lmc_tokenizer_load(job->dir, &job->tok);
    if (job->st != LMC_OK) snprintf(job->msg, sizeof job->msg, "%s", lmc_last_error());
    return NULL;
}

static lmc_status cpu_load(lmc_model *m, const char *dir, const lmc_load_options *opt) {
    lmc_model_config cfg;
    LMC_CHECK(lmc_model_config_load(dir, &cfg));
    tokenizer_job job = {.dir = dir};
    pthread_t thread;
    bool threaded = lmc_num_threads() >= 2 && pthread_create(&thread, NULL, tokenizer_job_run, &job) == 0;
    lmc_status s = lmc_decoder_load(dir, &cfg, &m->dec);
    if (threaded) pthread_join(thread, NULL);
    else if (s == LMC_OK) tokenizer_job_run(&job);
    /* The weights' error first, as when the two load one after the other. */
    if (s == LMC_OK && job.st != LMC_OK) s = lmc_set_error(job.st, "%s", job.msg);
    if (s != LMC_OK) {
        lmc_tokenizer_free(job.tok);
        lmc_decoder_free(m->dec);
        m->dec = NULL;
        return s;
    }
    m->tok = job.tok;
    atomic_store(&m->dec->promote_pending, opt->huge_pages); /* after the first forward pass */
    m->dec->kv_dtype = opt->kv_cache_dtype;
    m->dec->activation_bits = opt->activation_bits == 8 ? 8 : 24;
    m->context_length = cfg.max_position_embeddings;
    if (opt->context_length > 0 && opt->context_length < m->context_length) m->context_length = opt->context_length;
    for (int i = 0; i < cfg.n_eos; i++) add_eos(m, cfg.eos_ids[i]);
    const int32_t *tok_eos;
    size_t n_tok_eos = lmc_tokenizer_eos(m->tok, &tok_eos);
    for (size_t i = 0; i < n_tok_eos; i++) add_eos(m, tok_eos[i]);
    return LMC_OK;
}

static void cpu_close(lmc_model *m) {
    lmc_decoder_free(m->dec);
    lmc_tokenizer_free(m->tok);
    m->dec = NULL;
    m->tok = NULL;
}

void lmc_model_close(lmc_model *m) {
    if (!m || !m->be) return;
    lmc_model_clear_prompt_cache(m);
    if (m->lora) {
        /* The model's own adapter goes with it; a caller's set is detached
         * and outlives the model (lmc_lora_free still frees it). */
        lmc_lora *l = m->lora;
        bool owned = m->lora_owned;
        lmc_lora_model_closed(l);
        m->lora = NULL;
        m->lora_owned = false;
        if (owned) lmc_lora_free(l);
    }
    m->be->close(m);
    m->be = NULL;
}

void lmc_model_free(lmc_model *m) {
    if (!m) return;
    lmc_model_close(m);
    lmc_token_bytes_free(m->token_bytes);
    pthread_mutex_destroy(&m->prompt_lock);
    free(m->prompt_slots);
    free(m->dir);
    free(m);
}

const lmc_tokenizer *lmc_model_tokenizer(const lmc_model *m) {
    if (lmc_model_check(m) != LMC_OK) return NULL;
    if (!m->tok)
        lmc_set_error(LMC_ERR_UNSUPPORTED, "a local tokenizer: not supported by backend %s (its bridge tokenises)",
                      m->backend);
    return m->tok;
}

lmc_status lmc_model_get_info(const lmc_model *m, lmc_model_info *out) {
    LMC_CHECK(lmc_model_check(m));
    if (!out) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "lmc_model_get_info: out is NULL");
    LMC_CHECK(m->be->info(m, out));
    out->sampler = m->sampling;
    return LMC_OK;
}

lmc_array *lmc_model_logits(lmc_model *m, const int32_t *ids, size_t n, bool all_positions) {
    if (lmc_model_check(m) != LMC_OK) return NULL;
    if (!m->be->logits) {
        lmc_set_error(LMC_ERR_UNSUPPORTED, "logits: not supported by backend %s", m->backend);
        return NULL;
    }
    return m->be->logits(m, ids, n, all_positions);
}

static lmc_status cpu_info(const lmc_model *m, lmc_model_info *out) {
    const lmc_model_config *c = &m->dec->cfg;
    memset(out, 0, sizeof *out);
    snprintf(out->architecture, sizeof out->architecture, "%s", c->model_type);
    out->vocab_size = c->vocab_size;
    out->num_layers = c->num_layers;
    out->hidden_size = c->hidden_size;
    out->intermediate_size = c->intermediate_size;
    out->num_heads = c->num_heads;
    out->num_kv_heads = c->num_kv_heads;
    out->head_dim = c->head_dim;
    out->context_length = c->max_position_embeddings;
    out->sliding_window = c->sliding_window;
    out->quant_bits = c->quant.bits;
    out->quant_group_size = c->quant.bits ? c->quant.group_size : 0;
    out->activation_bits = lmc_quant_has_activation_bits(c->quant.bits) && m->be == &lmc_backend_cpu ? m->dec->activation_bits : 0;
    out->num_parameters = m->dec->num_parameters;
    out->weight_bytes = m->dec->weight_bytes;
    const lmc_array *w = m->dec->final_norm;
    snprintf(out->dtype, sizeof out->dtype, "%s", lmc_dtype_name(lmc_array_dtype(w)));
    return LMC_OK;
}

static lmc_array *cpu_logits(lmc_model *m, const int32_t *ids, size_t n, bool all_positions) {
    if (!ids || n == 0) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "logits: no ids given");
        return NULL;
    }
    int64_t V = m->dec->cfg.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "token id %d at index %zu is outside the vocabulary (0..%lld)", ids[i], i, (long long)V - 1);
            return NULL;
        }
    if ((int64_t)n > m->context_length) {
        lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%zu tokens exceed the context length %lld", n, (long long)m->context_length);
        return NULL;
    }
    lmc_kv_cache cache;
    if (lmc_decoder_cache_init(m->dec, &cache, 1, (int64_t)n) != LMC_OK) return NULL;
    lmc_array *result = NULL;
    lmc_scope_begin();
    lmc_array *parts[64];
    int nparts = 0;
    int64_t chunk = m->opt.prefill_chunk;
    if ((int64_t)n / chunk >= 64) chunk = ((int64_t)n + 63) / 64;
    bool ok = true;
    for (int64_t at = 0; at < (int64_t)n && ok; at += chunk) {
        int64_t len = (int64_t)n - at < chunk ? (int64_t)n - at : chunk;
        int64_t shape[2] = {1, len};
        lmc_array *idc = lmc_array_from_data(ids + at, LMC_I32, 2, shape);
        bool last = at + len == (int64_t)n;
        lmc_forward_args args = {.last_only = !all_positions};
        if (!all_positions && !last) args.hidden = true; /* intermediate chunks only fill the cache: no lm_head */
        lmc_array *lg = lmc_decoder_forward(m->dec, &cache, idc, &args);
        ok = lg != NULL;
        if (ok && (all_positions || last)) parts[nparts++] = lg;
    }
    if (ok) {
        lmc_array *cat = nparts == 1 ? parts[0] : lmc_concatenate(nparts, (const lmc_array *const *)parts, 1);
        int64_t V2[2] = {all_positions ? (int64_t)n : 1, V};
        lmc_array *r = all_positions ? lmc_reshape(cat, 2, V2) : lmc_reshape(cat, 1, &V);
        result = lmc_scope_keep(lmc_contiguous(r));
    }
    lmc_scope_end();
    lmc_kv_cache_free(&cache);
    return result;
}

/* --- the native decoder on a GPU ("cuda") -------------------------------------------
 *
 * The same decoder and generation loop as "cpu", with every weight uploaded
 * once at load and each forward pass run by the CUDA kernel table; logits
 * come back to the host, where the sampler runs. */

static bool cuda_available(void) { return lmc_device_available(LMC_CUDA); }

static lmc_status cuda_load(lmc_model *m, const char *dir, const lmc_load_options *opt) {
    lmc_load_options host = *opt;
    host.huge_pages = false; /* the host mapping is read once, for the upload */
    LMC_CHECK(cpu_load(m, dir, &host));
    lmc_status s = lmc_decoder_to_device(m->dec, LMC_CUDA);
    if (s != LMC_OK) cpu_close(m);
    return s;
}

const lmc_backend lmc_backend_cuda = {
    .name = "cuda",
    .available = cuda_available,
    .load = cuda_load,
    .close = cpu_close,
    .info = cpu_info,
    .logits = cpu_logits,
};

const lmc_backend lmc_backend_cpu = {
    .name = "cpu",
    .available = NULL, /* always */
    .load = cpu_load,
    .close = cpu_close,
    .info = cpu_info,
    .logits = cpu_logits,
    /* streams: the native loop in generate.c */
};

const lmc_token_bytes *lmc_model_token_bytes(lmc_model *m) {
    if (lmc_model_check(m) != LMC_OK) return NULL;
    if (!m->tok || !m->dec) {
        lmc_set_error(LMC_ERR_UNSUPPORTED, "JSON mode: not supported by backend %s", m->be->name);
        return NULL;
    }
    pthread_mutex_lock(&m->prompt_lock);
    if (!m->token_bytes) lmc_token_bytes_build(m->tok, m->dec->cfg.vocab_size, &m->token_bytes);
    const lmc_token_bytes *tb = m->token_bytes;
    pthread_mutex_unlock(&m->prompt_lock);
    return tb;
}
