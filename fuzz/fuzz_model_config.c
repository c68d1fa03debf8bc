/* libFuzzer target for config.json parsing (src/models/config.c): the input
 * is the file's text. Either it is refused with a message naming the file,
 * or the configuration is one the decoder can be built from: positive sizes
 * within the limits, heads that group evenly, finite positive RoPE bases,
 * norm epsilon and attention scale, a supported quantisation for the model
 * and for every override, and token ids that are ids. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "models/config.h"
#include "fuzz.h"

static const char k_path[] = "fuzz/config.json";

static void check_rope(const lmc_rope_config *r) {
    REQUIRE(isfinite(r->theta) && r->theta > 0);
    if (r->type != LMC_ROPE_DEFAULT) REQUIRE(isfinite(r->factor) && r->factor > 0);
    if (r->type == LMC_ROPE_LLAMA3) {
        REQUIRE(r->original_max_position_embeddings > 0);
        REQUIRE(isfinite(r->low_freq_factor) && r->low_freq_factor > 0);
        REQUIRE(isfinite(r->high_freq_factor) && r->high_freq_factor > 0);
        REQUIRE(r->low_freq_factor != r->high_freq_factor);
    }
}

static void check_quant(lmc_quant_spec q) {
    REQUIRE(q.bits == 0 || q.bits == 4 || q.bits == 8);
    if (q.bits) REQUIRE(q.group_size == 32 || q.group_size == 64 || q.group_size == 128);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_model_config c;
    lmc_status s = lmc_model_config_parse((const char *)data, size, k_path, &c);
    if (s != LMC_OK) {
        REQUIRE(s == LMC_ERR_FORMAT || s == LMC_ERR_UNSUPPORTED);
        REQUIRE(strstr(lmc_last_error(), k_path) != NULL);
        return 0;
    }
    REQUIRE(memchr(c.model_type, 0, sizeof c.model_type) != NULL);
    REQUIRE(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0);
    REQUIRE(c.num_layers > 0 && c.num_layers <= LMC_MAX_LAYERS);
    REQUIRE(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0);
    REQUIRE(c.head_dim > 0 && c.head_dim % 2 == 0);
    REQUIRE(c.max_position_embeddings >= 0);
    REQUIRE(isfinite(c.rms_norm_eps) && c.rms_norm_eps >= 0);
    REQUIRE(isfinite(c.attn_scale) && c.attn_scale > 0);
    REQUIRE(isfinite(c.final_logit_softcapping) && isfinite(c.attn_logit_softcapping));
    check_rope(&c.rope_global);
    check_rope(&c.rope_local);
    bool any_sliding = false;
    for (int64_t i = 0; i < c.num_layers; i++) any_sliding |= c.layer_sliding[i];
    REQUIRE(any_sliding ? c.sliding_window > 0 : c.sliding_window == 0);
    check_quant(c.quant);
    REQUIRE(c.n_quant_overrides >= 0 && c.n_quant_overrides <= LMC_MAX_QUANT_OVERRIDES);
    for (int i = 0; i < c.n_quant_overrides; i++) {
        REQUIRE(memchr(c.quant_overrides[i].name, 0, sizeof c.quant_overrides[i].name) != NULL);
        check_quant(c.quant_overrides[i].spec);
    }
    REQUIRE(c.n_eos >= 0 && c.n_eos <= LMC_MAX_EOS);
    for (int i = 0; i < c.n_eos; i++) REQUIRE(c.eos_ids[i] >= 0);
    REQUIRE(c.bos_id >= -1 && c.pad_id >= -1);
    REQUIRE(memchr(c.torch_dtype, 0, sizeof c.torch_dtype) != NULL);
    return 0;
}
