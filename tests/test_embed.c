/* Embeddings (lmc_embed). The last token's final hidden state is what the
 * output head reads, so the golden models check it against transformers:
 * the head applied here, in double, to lmc's vector must give transformers'
 * logits at the prompt's last position. Then: mean pooling is the mean of
 * the last-token vectors of every prefix (causal attention), a prompt's
 * vector does not depend on its batch, normalising gives unit vectors, and
 * bad calls are refused. */
#include <math.h>

#include "lmc/lmc.h"
#include "model_fixture.h"
#include "test_util.h"

static lmc_embed_options raw(lmc_pooling p) {
    lmc_embed_options o = lmc_embed_options_default();
    o.pooling = p;
    o.normalize = false;
    return o;
}

/* The output head's weight as floats [V, H] (bf16 checkpoints). */
static float *head_weight(const char *name, int64_t *V, int64_t *H) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s/model.safetensors", LMC_TEST_DATA, name);
    lmc_safetensors *st;
    if (lmc_safetensors_open(path, &st) != LMC_OK) return NULL;
    float *w = fixture_read_f32(st, "lm_head.weight", V, H);
    if (!w) w = fixture_read_f32(st, "model.embed_tokens.weight", V, H); /* tied */
    lmc_safetensors_close(st);
    return w;
}

static void against_transformers(const char *name, double softcap) {
    char *dir = model_fixture_dir(name), path[4096];
    lmc_model *m = NULL;
    lmc_safetensors *gold = NULL;
    snprintf(path, sizeof path, "%s/models/%s/golden.safetensors", LMC_TEST_DATA, name);
    int64_t V = 0, H = 0;
    float *w = head_weight(name, &V, &H);
    if (!dir || !w || lmc_model_load(dir, NULL, &m) != LMC_OK || lmc_safetensors_open(path, &gold) != LMC_OK) {
        CHECKF(0, "%s: %s", name, lmc_last_error());
        goto done;
    }
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        char n[64];
        int64_t T = 0, rows = 0, Vg = 0;
        snprintf(n, sizeof n, "prompt_ids_%d", k);
        int32_t *ids = fixture_read_i32(gold, n, &T);
        snprintf(n, sizeof n, "logits_%d", k);
        float *ref = fixture_read_f32(gold, n, &rows, &Vg);
        CHECK(ids && ref && rows == T && Vg == V);
        lmc_batch_prompt p = {.ids = ids, .n_ids = (size_t)T};
        lmc_embed_options o = raw(LMC_POOLING_LAST);
        lmc_embedding *e = NULL;
        CHECK(ids && ref && lmc_embed(m, &p, 1, &o, &e, NULL) == LMC_OK && e && e[0].status == LMC_OK);
        if (e && e[0].values && ref && Vg == V) {
            CHECK(e[0].dim == H && e[0].prompt_tokens == T);
            for (int64_t v = 0; v < V; v++) {
                double z = 0;
                for (int64_t j = 0; j < H; j++) z += (double)w[v * H + j] * e[0].values[j];
                if (softcap > 0) z = tanh(z / softcap) * softcap;
                double d = fabs(z - ref[(T - 1) * V + v]);
                worst = d > worst ? d : worst;
            }
        }
        lmc_embeddings_free(e, 1);
        free(ids);
        free(ref);
    }
    printf("%s: the head on lmc's last-token vector is within %.2g of transformers' logits\n", name, worst);
    CHECKF(worst <= 3e-3, "%s: %.3g", name, worst);
done:
    free(w);
    lmc_safetensors_close(gold);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

static void test_against_transformers(void) {
    against_transformers("qwen3", 0);
    against_transformers("llama", 0);
    against_transformers("qwen2", 0);
    against_transformers("gemma3_softcap", 10.0); /* its config.json's final_logit_softcapping */
}

static lmc_model *g_model;
static int32_t g_ids[] = {785, 1251, 304, 279, 1879, 686, 1477, 264, 501, 1616, 13, 576};
enum { NIDS = sizeof g_ids / sizeof *g_ids };

/* Mean pooling = the mean of the last-token vectors of the prefixes. */
static void test_mean_is_mean_of_prefixes(void) {
    lmc_batch_prompt p[NIDS];
    for (int t = 0; t < NIDS; t++) p[t] = (lmc_batch_prompt){.ids = g_ids, .n_ids = (size_t)t + 1};
    lmc_embed_options last = raw(LMC_POOLING_LAST), mean = raw(LMC_POOLING_MEAN);
    last.max_batch = 5; /* several sub-batches, different paddings */
    lmc_embedding *el = NULL, *em = NULL;
    CHECK(lmc_embed(g_model, p, NIDS, &last, &el, NULL) == LMC_OK);
    CHECK(lmc_embed(g_model, &p[NIDS - 1], 1, &mean, &em, NULL) == LMC_OK);
    if (el && em && em[0].values) {
        double worst = 0, scale = 0;
        for (int64_t j = 0; j < em[0].dim; j++) {
            double s = 0;
            for (int t = 0; t < NIDS; t++) s += el[t].values ? el[t].values[j] : NAN;
            s /= NIDS;
            worst = fmax(worst, fabs(s - em[0].values[j]));
            scale = fmax(scale, fabs(s));
        }
        CHECKF(worst <= 1e-4 * scale + 1e-6, "mean pooling off by %.3g (scale %.3g)", worst, scale);
    }
    lmc_embeddings_free(el, NIDS);
    lmc_embeddings_free(em, 1);
}

/* A prompt's vector alone and inside a padded batch; unit length when normalised. */
static void test_batch_and_normalize(void) {
    lmc_batch_prompt p[3] = {{.ids = g_ids, .n_ids = 3}, {.ids = g_ids, .n_ids = NIDS}, {.ids = g_ids + 4, .n_ids = 6}};
    for (int pool = 0; pool < 2; pool++) {
        lmc_embed_options o = lmc_embed_options_default();
        o.pooling = (lmc_pooling)pool;
        lmc_embedding *all = NULL;
        CHECK(lmc_embed(g_model, p, 3, &o, &all, NULL) == LMC_OK);
        for (int i = 0; all && i < 3; i++) {
            lmc_embedding *one = NULL;
            CHECK(lmc_embed(g_model, &p[i], 1, &o, &one, NULL) == LMC_OK);
            double d = 0, norm = 0;
            for (int64_t j = 0; one && one[0].values && all[i].values && j < all[i].dim; j++) {
                d = fmax(d, fabs(one[0].values[j] - all[i].values[j]));
                norm += (double)all[i].values[j] * all[i].values[j];
            }
            CHECKF(all[i].values && d <= 1e-5, "pooling %d prompt %d: batch vs alone %.3g", pool, i, d);
            CHECK_CLOSE(norm, 1.0, 1e-5, 0);
            lmc_embeddings_free(one, 1);
        }
        lmc_embeddings_free(all, 3);
    }
}

static void test_errors(void) {
    lmc_embed_options o = lmc_embed_options_default();
    o.pooling = (lmc_pooling)7;
    lmc_embedding *e = NULL;
    lmc_batch_prompt p = {.ids = g_ids, .n_ids = 3};
    CHECK(lmc_embed(g_model, &p, 1, &o, &e, NULL) == LMC_ERR_INVALID_ARGUMENT && !e);
    CHECK(strstr(lmc_last_error(), "pooling") != NULL);
    o = lmc_embed_options_default();
    CHECK(lmc_embed(g_model, &p, 1, &o, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    /* a bad prompt fails alone */
    int32_t bad_ids[] = {1, 1 << 30};
    lmc_batch_prompt two[2] = {{.ids = bad_ids, .n_ids = 2}, {.ids = g_ids, .n_ids = 4}};
    CHECK(lmc_embed(g_model, two, 2, &o, &e, NULL) == LMC_OK && e);
    if (e) {
        CHECK(e[0].status == LMC_ERR_INVALID_ARGUMENT && e[0].error && strstr(e[0].error, "outside the vocabulary") && !e[0].values);
        CHECK(e[1].status == LMC_OK && e[1].values);
    }
    lmc_embeddings_free(e, 2);
    /* cancelled before it starts */
    lmc_cancel c = {0};
    lmc_cancel_request(&c);
    o.cancel = &c;
    CHECK(lmc_embed(g_model, &p, 1, &o, &e, NULL) == LMC_ERR_CANCELLED && e && e[0].status == LMC_ERR_CANCELLED);
    lmc_embeddings_free(e, 1);
}

int main(void) {
    RUN(test_against_transformers);
    char *dir = model_fixture_dir("qwen3");
    if (!dir || lmc_model_load(dir, NULL, &g_model) != LMC_OK) {
        fprintf(stderr, "cannot load the qwen3 golden model: %s\n", lmc_last_error());
        return 1;
    }
    RUN(test_mean_is_mean_of_prefixes);
    RUN(test_batch_and_normalize);
    RUN(test_errors);
    lmc_model_free(g_model);
    model_fixture_cleanup(dir);
    return TEST_REPORT();
}
