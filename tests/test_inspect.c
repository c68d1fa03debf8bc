/* Attention inspection: shapes, and causality (a prefix's queries and keys
 * equal the first positions of the whole prompt's). */
#include <math.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

static double max_diff_prefix(const lmc_array *a, const lmc_array *b, int64_t t) {
    /* a [H, T1, D], b [H, T2, D]: compare positions < t. */
    int64_t H = lmc_array_dim(a, 0), D = lmc_array_dim(a, 2), Ta = lmc_array_dim(a, 1), Tb = lmc_array_dim(b, 1);
    float *va = malloc((size_t)(H * Ta * D) * sizeof *va), *vb = malloc((size_t)(H * Tb * D) * sizeof *vb);
    lmc_array_read(a, LMC_F32, va, (size_t)(H * Ta * D));
    lmc_array_read(b, LMC_F32, vb, (size_t)(H * Tb * D));
    double worst = 0;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < t; i++)
            for (int64_t d = 0; d < D; d++) {
                double x = fabs(va[(h * Ta + i) * D + d] - vb[(h * Tb + i) * D + d]);
                if (x > worst) worst = x;
            }
    free(va);
    free(vb);
    return worst;
}

static void check(const char *variant) {
    char *dir = model_fixture_dir(variant);
    lmc_model *m = NULL;
    CHECKF(dir && lmc_model_load(dir, NULL, &m) == LMC_OK, "%s: %s", variant, lmc_last_error());
    if (!m) return;
    lmc_model_info info;
    lmc_model_get_info(m, &info);
    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = (int32_t)(100 + 37 * i) % (int32_t)info.vocab_size;
    lmc_attention_capture full, part;
    CHECK(lmc_model_inspect_attention(m, ids, 20, &full) == LMC_OK);
    CHECK(lmc_model_inspect_attention(m, ids, 9, &part) == LMC_OK);
    CHECK(full.n_layers == info.num_layers && part.n_layers == info.num_layers);
    for (int l = 0; l < full.n_layers; l++) {
        const lmc_array *q = full.queries[l], *k = full.keys[l];
        CHECK(lmc_array_ndim(q) == 3 && lmc_array_dim(q, 0) == info.num_heads && lmc_array_dim(q, 1) == 20 &&
              lmc_array_dim(q, 2) == info.head_dim && lmc_array_dtype(q) == LMC_F32);
        CHECK(lmc_array_dim(k, 0) == info.num_kv_heads && lmc_array_dim(k, 1) == 20);
        CHECKF(max_diff_prefix(part.queries[l], q, 9) < 1e-5, "%s layer %d queries", variant, l);
        CHECKF(max_diff_prefix(part.keys[l], k, 9) < 1e-5, "%s layer %d keys", variant, l);
    }
    lmc_attention_capture_clear(&full);
    lmc_attention_capture_clear(&part);
    CHECK(lmc_model_inspect_attention(m, ids, 0, &full) == LMC_ERR_INVALID_ARGUMENT);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

int main(void) {
    int64_t live = lmc_live_arrays();
    check("qwen3");
    check("gemma3");
    check("llama_mlx4");
    CHECK(lmc_live_arrays() == live);
    return TEST_REPORT();
}
