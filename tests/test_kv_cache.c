/* KV cache storage: positions survive every growth, full layers grow by
 * half their capacity (so a long generation copies O(n), not O(n^2)),
 * sliding layers stay bounded, a reservation makes the storage once, and
 * the full layers' storage is one allocation (so it can sit on 2 MiB pages). */
#include "runtime/kv_cache.h"

#include "lmc/ops.h"
#include "test_util.h"

enum { B = 2, H = 2, D = 4, WINDOW = 8 };

/* Element `at` of an f32 array (any strides). */
static double get(const lmc_array *a, const int64_t *at) {
    int64_t off = 0;
    for (int i = 0; i < a->ndim; i++) off += at[i] * a->strides[i];
    return ((const float *)lmc_array_ptr(a))[off];
}

/* The value stored for (b, h, pos, d): distinct for every element, exact in f32. */
static float val(int64_t b, int64_t h, int64_t pos, int64_t d, int kv) {
    return (float)(((pos * B + b) * H + h) * D + d) + (kv ? 0.5f : 0.0f);
}

/* Appends position pos to every layer; checks the returned views end at pos. */
static bool append(lmc_kv_cache *c, int64_t pos) {
    float k[B * H * D], v[B * H * D];
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t d = 0; d < D; d++) {
                k[(b * H + h) * D + d] = val(b, h, pos, d, 0);
                v[(b * H + h) * D + d] = val(b, h, pos, d, 1);
            }
    int64_t shape[4] = {B, H, 1, D};
    lmc_array *ka = lmc_array_from_data(k, LMC_F32, 4, shape), *va = lmc_array_from_data(v, LMC_F32, 4, shape);
    bool ok = ka && va;
    for (int l = 0; ok && l < c->n_layers; l++) {
        lmc_array *k_all = NULL, *v_all = NULL;
        ok = lmc_kv_cache_update(c, l, ka, va, &k_all, &v_all) == LMC_OK;
        if (ok) {
            int64_t L = k_all->shape[2];
            /* a sliding layer's view: the window - 1 positions before the new one, and it */
            int64_t w = c->layers[l].window;
            ok = L >= 1 && (!w || L <= (pos + 1 < w ? pos + 1 : w)) && get(k_all, (int64_t[]){B - 1, H - 1, L - 1, D - 1}) == val(B - 1, H - 1, pos, D - 1, 0);
        }
        lmc_array_free(k_all);
        lmc_array_free(v_all);
    }
    lmc_array_free(ka);
    lmc_array_free(va);
    if (ok) lmc_kv_cache_advance(c, 1);
    return ok;
}

/* Every stored position of layer l from first to pos - 1 holds its values. */
static bool holds_all(const lmc_kv_cache *c, int l) {
    const lmc_layer_cache *lc = &c->layers[l];
    for (int64_t i = 0; i < lc->len; i++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++) {
                    int64_t at[4] = {b, h, i, d};
                    int64_t pos = lc->first_pos + i;
                    if (get(lc->k, at) != val(b, h, pos, d, 0) ||
                        get(lc->v, at) != val(b, h, pos, d, 1))
                        return false;
                }
    return true;
}

static int64_t cap_of(const lmc_kv_cache *c, int l) { return c->layers[l].k ? c->layers[l].k->shape[2] : 0; }

static void test_growth_is_geometric(void) {
    lmc_kv_cache c;
    int64_t windows[2] = {0, WINDOW};
    CHECK(lmc_kv_cache_init(&c, 2, windows, B, H, D, 100000, LMC_F32) == LMC_OK);
    int64_t caps[32], ncaps = 0, want = 0, max_sliding = 0;
    bool ok = true;
    for (int64_t pos = 0; pos < 3000 && ok; pos++) {
        ok = append(&c, pos);
        if (ncaps == 0 || cap_of(&c, 0) != caps[ncaps - 1]) {
            if (ncaps < 32) caps[ncaps] = cap_of(&c, 0);
            ncaps++;
        }
        if (cap_of(&c, 1) > max_sliding) max_sliding = cap_of(&c, 1);
        if (pos % 500 == 0 || pos == 2999) CHECKF(holds_all(&c, 0) && holds_all(&c, 1), "at position %lld", (long long)pos);
    }
    CHECK(ok);
    /* 256, then half again each time, in whole steps of 256 */
    for (int64_t i = 0; i < ncaps && i < 32; i++) {
        want = i == 0 ? LMC_KV_GROW_STEP : (caps[i - 1] * 3 / 2 + LMC_KV_GROW_STEP - 1) / LMC_KV_GROW_STEP * LMC_KV_GROW_STEP;
        CHECKF(caps[i] == want, "capacity %lld is %lld, expected %lld", (long long)i, (long long)caps[i], (long long)want);
    }
    CHECKF(ncaps == 6, "%lld capacities for 3000 positions", (long long)ncaps); /* 256 384 768 1280 2048 3072 */
    /* the sliding layer holds window - 1 + 1 positions: one step */
    CHECK(max_sliding == LMC_KV_GROW_STEP);
    lmc_kv_cache_free(&c);
}

static void test_growth_bounded_by_context(void) {
    lmc_kv_cache c;
    CHECK(lmc_kv_cache_init(&c, 1, NULL, B, H, D, 300, LMC_F32) == LMC_OK);
    bool ok = true;
    for (int64_t pos = 0; pos < 300 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    CHECK(cap_of(&c, 0) == 300);
    CHECK(holds_all(&c, 0));
    CHECK(!append(&c, 300));
    CHECK(strstr(lmc_last_error(), "context length 300") != NULL);
    lmc_kv_cache_free(&c);
}

static void test_reserve(void) {
    lmc_kv_cache c;
    int64_t windows[2] = {0, WINDOW};
    CHECK(lmc_kv_cache_init(&c, 2, windows, B, H, D, 5000, LMC_F32) == LMC_OK);
    CHECK(lmc_kv_cache_reserve(&c, 1000) == LMC_OK);
    CHECK(cap_of(&c, 0) == 1000);
    CHECK(cap_of(&c, 1) == 0); /* sliding layers are bounded by their window, not reserved */
    const lmc_array *storage = c.layers[0].k;
    bool ok = true;
    for (int64_t pos = 0; pos < 1000 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    CHECK(c.layers[0].k == storage); /* never grown */
    CHECK(holds_all(&c, 0) && holds_all(&c, 1));
    /* a larger reservation keeps what is stored; one past max_len is cut to it */
    CHECK(lmc_kv_cache_reserve(&c, 9000) == LMC_OK);
    CHECK(cap_of(&c, 0) == 5000);
    CHECK(holds_all(&c, 0));
    /* a smaller one changes nothing */
    storage = c.layers[0].k;
    CHECK(lmc_kv_cache_reserve(&c, 10) == LMC_OK);
    CHECK(c.layers[0].k == storage);
    for (int64_t pos = 1000; pos < 1300 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    CHECK(holds_all(&c, 0) && holds_all(&c, 1));
    lmc_kv_cache_free(&c);
}

/* The full layers' k and v are disjoint views of one buffer, grown and
 * reserved together; a sliding layer keeps storage of its own. Positions
 * written to one layer never show in another (disjointness, by values). */
static void test_full_layers_share_storage(void) {
    enum { NL = 4 };
    lmc_kv_cache c;
    int64_t windows[NL] = {0, WINDOW, 0, 0};
    CHECK(lmc_kv_cache_init(&c, NL, windows, B, H, D, 5000, LMC_F32) == LMC_OK);
    bool ok = true;
    for (int round = 0; round < 3 && ok; round++) {
        /* round 0: grown by appends; 1: a reservation over stored positions; 2: grown again past it */
        if (round == 1) CHECK(lmc_kv_cache_reserve(&c, 700) == LMC_OK);
        int64_t upto = round == 0 ? 300 : round == 1 ? 600 : 900;
        for (int64_t pos = c.pos; pos < upto && ok; pos++) ok = append(&c, pos);
        CHECK(ok);
        const lmc_buffer *shared = c.layers[0].k->buf;
        size_t lo[2 * NL], hi[2 * NL];
        int n = 0;
        for (int l = 0; l < NL; l++) {
            CHECKF(holds_all(&c, l), "round %d layer %d", round, l);
            if (windows[l]) {
                CHECK(c.layers[l].k->buf != shared && c.layers[l].v->buf != shared);
                continue;
            }
            const lmc_array *kv[2] = {c.layers[l].k, c.layers[l].v};
            for (int i = 0; i < 2; i++) {
                CHECKF(kv[i]->buf == shared, "round %d layer %d %s", round, l, i ? "v" : "k");
                CHECK(lmc_array_is_contiguous(kv[i]) && cap_of(&c, l) == cap_of(&c, 0));
                lo[n] = kv[i]->offset;
                hi[n++] = kv[i]->offset + lmc_array_nbytes(kv[i]);
            }
        }
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) CHECKF(hi[i] <= lo[j] || hi[j] <= lo[i], "round %d: views %d and %d overlap", round, i, j);
    }
    CHECK(cap_of(&c, 0) > 700); /* round 2 grew past the reservation */
    lmc_kv_cache_free(&c);
}

/* Keeping some batch rows: their positions stay, the others go, and the
 * full layers are one allocation again. */
static void test_select_rows(void) {
    lmc_kv_cache c;
    int64_t windows[3] = {0, WINDOW, 0};
    CHECK(lmc_kv_cache_init(&c, 3, windows, B, H, D, 5000, LMC_F32) == LMC_OK);
    bool ok = true;
    for (int64_t pos = 0; pos < 300 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    int32_t keep[1] = {B - 1};
    CHECK(lmc_kv_cache_select_rows(&c, keep, 1) == LMC_OK);
    CHECK(c.batch == 1);
    for (int l = 0; l < 3; l++) {
        const lmc_layer_cache *lc = &c.layers[l];
        CHECK(lc->k->shape[0] == 1 && lc->v->shape[0] == 1);
        for (int64_t i = 0; i < lc->len; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t d = 0; d < D; d++) {
                    int64_t at[4] = {0, h, i, d};
                    CHECKF(get(lc->k, at) == val(B - 1, h, lc->first_pos + i, d, 0) &&
                               get(lc->v, at) == val(B - 1, h, lc->first_pos + i, d, 1),
                           "layer %d position %lld", l, (long long)(lc->first_pos + i));
                }
    }
    CHECK(c.layers[0].k->buf == c.layers[2].k->buf && c.layers[0].v->buf == c.layers[0].k->buf);
    CHECK(c.layers[1].k->buf != c.layers[0].k->buf);
    CHECK(cap_of(&c, 0) == cap_of(&c, 2) && cap_of(&c, 0) >= 300);
    CHECK(lmc_kv_cache_select_rows(&c, keep, 1) != LMC_OK); /* row 1 of a batch of 1 */
    lmc_clear_error();
    lmc_kv_cache_free(&c);
}

/* Layers whose k is LMC_KV_OWN_BYTES or more keep arrays of their own (a
 * long cache grows a layer at a time), and their positions hold. */
static void test_large_layers_own_storage(void) {
    lmc_kv_cache c;
    int64_t windows[3] = {0, WINDOW, 0};
    int64_t big = LMC_KV_OWN_BYTES / (B * H * D * (int64_t)sizeof(float)) + 100; /* positions for one such array */
    CHECK(lmc_kv_cache_init(&c, 3, windows, B, H, D, big + 1000, LMC_F32) == LMC_OK);
    CHECK(lmc_kv_cache_reserve(&c, 300) == LMC_OK);
    CHECK(c.layers[0].k->buf == c.layers[2].k->buf); /* small: one allocation */
    bool ok = true;
    for (int64_t pos = 0; pos < 300 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    CHECK(lmc_kv_cache_reserve(&c, big) == LMC_OK);
    CHECK(cap_of(&c, 0) == big && cap_of(&c, 2) == big);
    CHECK(lmc_array_nbytes(c.layers[0].k) >= LMC_KV_OWN_BYTES);
    const lmc_buffer *bufs[4] = {c.layers[0].k->buf, c.layers[0].v->buf, c.layers[2].k->buf, c.layers[2].v->buf};
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) CHECKF(bufs[i] != bufs[j], "arrays %d and %d share a buffer", i, j);
    for (int64_t pos = 300; pos < 400 && ok; pos++) ok = append(&c, pos);
    CHECK(ok);
    for (int l = 0; l < 3; l++) CHECKF(holds_all(&c, l), "layer %d", l);
    lmc_kv_cache_free(&c);
}

int main(void) {
    RUN(test_growth_is_geometric);
    RUN(test_growth_bounded_by_context);
    RUN(test_reserve);
    RUN(test_full_layers_share_storage);
    RUN(test_select_rows);
    RUN(test_large_layers_own_storage);
    return TEST_REPORT();
}
