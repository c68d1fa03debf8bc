/* safetensors: round trips of every dtype through the writer and reader,
 * files laid out like the reference implementation's, sharded checkpoints,
 * and a corpus of corrupted files each rejected with its own error. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/array.h"
#include "lmc/safetensors.h"
#include "test_util.h"

static char g_dir[256]; /* a fresh temporary directory for the files the tests write */

/* Paths under g_dir; each call reuses one of 4 buffers, so copy a path that must live longer. */
static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) { return (unsigned char *)read_file_all(path, n); }

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void put_u64le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A file image: 8-byte length `hlen` (the real header length unless
 * override), the header text, then data_len bytes 0, 1, 2, ... */
static size_t make_image(unsigned char *out, const char *header, uint64_t hlen_override, size_t data_len) {
    size_t h = strlen(header);
    put_u64le(out, hlen_override ? hlen_override : h);
    memcpy(out + 8, header, h);
    for (size_t i = 0; i < data_len; i++) out[8 + h + i] = (unsigned char)i;
    return 8 + h + data_len;
}

/* True when the last error's message contains every fragment given. */
static bool msg_has(const char *a, const char *b) {
    const char *m = lmc_last_error();
    return strstr(m, a) && (!b || strstr(m, b));
}

/* --- round trips -------------------------------------------------------------- */

static lmc_array *patterned(lmc_dtype dt, int ndim, const int64_t *shape, int seed) {
    lmc_array *a = lmc_empty(dt, ndim, shape);
    unsigned char *p = lmc_array_data(a);
    size_t n = lmc_array_nbytes(a);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 37 + (size_t)seed * 11 + 5);
    if (dt == LMC_BOOL)
        for (size_t i = 0; i < n; i++) p[i] &= 1;
    return a;
}

static bool same_array(const lmc_array *a, const lmc_array *b) {
    if (!a || !b || lmc_array_dtype(a) != lmc_array_dtype(b) || lmc_array_ndim(a) != lmc_array_ndim(b)) return false;
    for (int d = 0; d < lmc_array_ndim(a); d++)
        if (lmc_array_shape(a)[d] != lmc_array_shape(b)[d]) return false;
    return lmc_array_nbytes(a) == lmc_array_nbytes(b) &&
           memcmp(lmc_array_data(a), lmc_array_data(b), lmc_array_nbytes(a)) == 0;
}

static void test_round_trip_all_dtypes(void) {
    int64_t live0 = lmc_live_arrays();
    const lmc_dtype dts[] = {LMC_F32, LMC_F16, LMC_BF16, LMC_I32, LMC_U32, LMC_U8, LMC_BOOL, LMC_I64};
    const char *tags[] = {"F32", "F16", "BF16", "I32", "U32", "U8", "BOOL", "I64"};
    enum { ND = 8, PER = 3 };
    /* Per dtype: a 2-d tensor, a 0-d scalar and a 0-size tensor. */
    const int64_t s2[] = {3, 5}, s0size[] = {4, 0, 2};
    lmc_array *arrays[ND * PER];
    const char *names[ND * PER];
    char namebuf[ND * PER][32];
    for (int i = 0; i < ND; i++) {
        arrays[PER * i] = patterned(dts[i], 2, s2, i);
        arrays[PER * i + 1] = patterned(dts[i], 0, NULL, i + 100);
        arrays[PER * i + 2] = patterned(dts[i], 3, s0size, 0);
        snprintf(namebuf[PER * i], 32, "m.%s.matrix", tags[i]);
        snprintf(namebuf[PER * i + 1], 32, "m.%s.scalar", tags[i]);
        snprintf(namebuf[PER * i + 2], 32, "m.%s.empty", tags[i]);
        for (int k = 0; k < PER; k++) names[PER * i + k] = namebuf[PER * i + k];
    }
    const char *path = tmp_path("all.safetensors");
    CHECK(lmc_safetensors_write(path, ND * PER, names, (const lmc_array *const *)arrays, 0, NULL, NULL) == LMC_OK);
    CHECK(!exists(tmp_path("all.safetensors.tmp")));

    /* The header length is a multiple of 8, as the reference writer pads it. */
    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw && n >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    CHECK(hlen % 8 == 0 && raw[8] == '{' && raw[8 + hlen - 1] != 0);
    free(raw);

    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(path, &st) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_safetensors_count(st) == ND * PER);
    for (int i = 0; i < ND * PER; i++) {
        CHECK_STR(lmc_safetensors_name(st, (size_t)i), names[i]); /* header order = write order */
        lmc_array *b = lmc_safetensors_get(st, names[i]);
        CHECKF(same_array(arrays[i], b), "tensor %s", names[i]);
        CHECK_STR(lmc_safetensors_dtype_name(st, names[i]), tags[i / PER]);
        lmc_dtype dt;
        int ndim;
        int64_t shape[LMC_MAX_DIMS];
        CHECK(lmc_safetensors_info(st, names[i], &dt, &ndim, shape) == LMC_OK);
        CHECK(dt == dts[i / PER] && ndim == lmc_array_ndim(arrays[i]));
        lmc_array_free(b);
    }
    CHECK(lmc_safetensors_metadata_count(st) == 0);
    lmc_safetensors_close(st);
    for (int i = 0; i < ND * PER; i++) lmc_array_free(arrays[i]);
    CHECK(lmc_live_arrays() == live0);
}

static void test_metadata_round_trip(void) {
    const int64_t shape[] = {2};
    lmc_array *a = patterned(LMC_F32, 1, shape, 1);
    const char *name = "odd \"name\" \\ with\ttab and ünïcödé";
    const char *keys[] = {"format", "quote\"back\\slash", "newline", "empty", "utf8"};
    const char *values[] = {"pt", "v\"\\", "line1\nline2\r\x01", "", "日本語 ✓"};
    const char *path = tmp_path("meta.safetensors");
    CHECK(lmc_safetensors_write(path, 1, &name, (const lmc_array *const *)&a, 5, keys, values) == LMC_OK);
    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(path, &st) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_safetensors_metadata_count(st) == 5);
    for (int i = 0; i < 5; i++) {
        CHECK_STR(lmc_safetensors_metadata_key(st, (size_t)i), keys[i]);
        CHECK_STR(lmc_safetensors_metadata(st, keys[i]), values[i]);
    }
    CHECK(lmc_safetensors_metadata(st, "absent") == NULL);
    CHECK(lmc_safetensors_contains(st, name));
    lmc_array *b = lmc_safetensors_get(st, name);
    CHECK(same_array(a, b));
    lmc_array_free(b);
    lmc_safetensors_close(st);
    lmc_array_free(a);
}

static void test_write_non_contiguous(void) {
    /* A 3x4 f32 matrix 0..11; its transpose (4x3, strides [1, 4]), a column
     * slice with an offset, and a broadcast row are written row-major. */
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i;
    const int64_t shape[] = {3, 4};
    lmc_array *base = lmc_array_from_data(v, LMC_F32, 2, shape);
    const int64_t tshape[] = {4, 3}, tstrides[] = {1, 4};
    lmc_array *t = lmc_array_view(base->buf, 0, LMC_F32, 2, tshape, tstrides);
    const int64_t sshape[] = {3, 2}, sstrides[] = {4, 2}; /* columns 1 and 3 */
    lmc_array *s = lmc_array_view(base->buf, 1 * sizeof(float), LMC_F32, 2, sshape, sstrides);
    const int64_t bshape[] = {2, 4}, bstrides[] = {0, 1}; /* row 2 twice */
    lmc_array *b = lmc_array_view(base->buf, 8 * sizeof(float), LMC_F32, 2, bshape, bstrides);
    CHECK(!lmc_array_is_contiguous(t) && !lmc_array_is_contiguous(s) && !lmc_array_is_contiguous(b));
    const char *names[] = {"t", "s", "b"};
    const lmc_array *arrays[] = {t, s, b};
    const char *path = tmp_path("strided.safetensors");
    CHECK(lmc_safetensors_write(path, 3, names, arrays, 0, NULL, NULL) == LMC_OK);
    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(path, &st) == LMC_OK, "%s", lmc_last_error());
    const float want_t[] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
    const float want_s[] = {1, 3, 5, 7, 9, 11};
    const float want_b[] = {8, 9, 10, 11, 8, 9, 10, 11};
    const float *want[] = {want_t, want_s, want_b};
    const size_t count[] = {12, 6, 8};
    for (int k = 0; k < 3; k++) {
        lmc_array *r = lmc_safetensors_get(st, names[k]);
        CHECK(r && lmc_array_is_contiguous(r) && (size_t)lmc_array_size(r) == count[k]);
        CHECKF(r && memcmp(lmc_array_data(r), want[k], count[k] * sizeof(float)) == 0, "tensor %s", names[k]);
        for (int d = 0; r && d < 2; d++) CHECK(lmc_array_shape(r)[d] == lmc_array_shape(arrays[k])[d]);
        lmc_array_free(r);
    }
    lmc_safetensors_close(st);
    lmc_array_free(t);
    lmc_array_free(s);
    lmc_array_free(b);
    lmc_array_free(base);
}

/* Arrays keep the mapping alive after the handle is closed; the mapping is
 * counted as mapped bytes, never as active bytes, and goes with the last array. */
static void test_arrays_outlive_handle(void) {
    int64_t live0 = lmc_live_arrays();
    size_t mapped0 = lmc_memory(LMC_CPU).mapped_bytes;
    const int64_t shape[] = {64, 64};
    lmc_array *a = patterned(LMC_BF16, 2, shape, 3);
    const char *name = "w";
    const char *path = tmp_path("outlive.safetensors");
    CHECK(lmc_safetensors_write(path, 1, &name, (const lmc_array *const *)&a, 0, NULL, NULL) == LMC_OK);
    size_t file_size = 0;
    free(read_bytes(path, &file_size));

    lmc_safetensors *st = NULL;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == mapped0 + file_size);
    size_t active0 = lmc_memory(LMC_CPU).active_bytes;
    CHECK(lmc_safetensors_is_aligned(st, "w"));
    lmc_array *b1 = lmc_safetensors_get(st, "w");
    lmc_array *b2 = lmc_safetensors_get(st, "w");
    CHECK(lmc_memory(LMC_CPU).active_bytes == active0); /* zero copy */
    CHECK(lmc_array_data(b1) == lmc_array_data(b2));
    lmc_safetensors_close(st);
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == mapped0 + file_size); /* still mapped for b1, b2 */
    CHECK(same_array(a, b1) && same_array(a, b2));
    lmc_array_free(b1);
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == mapped0 + file_size);
    lmc_array_free(b2);
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == mapped0);

    /* Arrays created inside a scope from a file are released at its end. */
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    lmc_scope_begin();
    lmc_array *in_scope = lmc_safetensors_get(st, "w");
    CHECK(in_scope != NULL);
    lmc_safetensors_close(st);
    lmc_scope_end();
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == mapped0);
    lmc_array_free(a);
    CHECK(lmc_live_arrays() == live0);
}

/* Tensors whose data is not aligned to their element size are copied. */
static void test_unaligned_tensors(void) {
    const int64_t s3[] = {3}, s4[] = {4};
    lmc_array *u = patterned(LMC_U8, 1, s3, 1);
    lmc_array *f = patterned(LMC_F32, 1, s4, 2);
    const char *names[] = {"bytes", "floats"};
    const lmc_array *arrays[] = {u, f};
    const char *path = tmp_path("unaligned.safetensors");
    CHECK(lmc_safetensors_write(path, 2, names, arrays, 0, NULL, NULL) == LMC_OK);
    lmc_safetensors *st = NULL;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    CHECK(lmc_safetensors_is_aligned(st, "bytes"));
    CHECK(!lmc_safetensors_is_aligned(st, "floats")); /* data section offset 3 */
    size_t active0 = lmc_memory(LMC_CPU).active_bytes;
    lmc_array *g = lmc_safetensors_get(st, "floats");
    CHECK(g && (uintptr_t)lmc_array_data(g) % 4 == 0);
    CHECK(lmc_memory(LMC_CPU).active_bytes == active0 + 16); /* an lmc-owned copy */
    CHECK(same_array(f, g));
    lmc_safetensors_close(st);
    lmc_array_free(g);
    CHECK(lmc_memory(LMC_CPU).active_bytes == active0);
    lmc_array_free(u);
    lmc_array_free(f);
}

static void test_writer_errors(void) {
    const int64_t s[] = {2};
    lmc_array *a = patterned(LMC_F32, 1, s, 0);
    const lmc_array *arrays[] = {a, a};
    const char *dup[] = {"x", "x"};
    const char *path = tmp_path("bad_write.safetensors");
    CHECK(lmc_safetensors_write(path, 2, dup, arrays, 0, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(msg_has("tensor name 'x' is given twice", NULL));
    const char *meta_name[] = {"__metadata__"};
    CHECK(lmc_safetensors_write(path, 1, meta_name, arrays, 0, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    const char *bad_utf8[] = {"a\xff"};
    CHECK(lmc_safetensors_write(path, 1, bad_utf8, arrays, 0, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(msg_has("not valid UTF-8", NULL));
    const lmc_array *nulls[] = {NULL};
    const char *one[] = {"y"};
    CHECK(lmc_safetensors_write(path, 1, one, nulls, 0, NULL, NULL) == LMC_ERR_INVALID_ARGUMENT);
    const char *keys[] = {"k", "k"}, *vals[] = {"1", "2"};
    CHECK(lmc_safetensors_write(path, 1, one, arrays, 2, keys, vals) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(msg_has("metadata key 'k' is given twice", NULL));
    CHECK(!exists(path));

    /* Failures leave neither the target nor the temporary file behind. */
    CHECK(lmc_safetensors_write("/nonexistent-dir/x.safetensors", 1, one, arrays, 0, NULL, NULL) == LMC_ERR_IO);
    CHECK(msg_has("/nonexistent-dir/x.safetensors", NULL));
    const char *dir_target = tmp_path("target_is_dir");
    CHECK(mkdir(dir_target, 0755) == 0);
    CHECK(lmc_safetensors_write(dir_target, 1, one, arrays, 0, NULL, NULL) == LMC_ERR_IO);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", dir_target);
    CHECK(!exists(tmpname));
    struct stat sb;
    CHECK(stat(dir_target, &sb) == 0 && S_ISDIR(sb.st_mode));

    /* Writing over an existing file replaces it whole. */
    const char *names2[] = {"first"};
    CHECK(lmc_safetensors_write(path, 1, names2, arrays, 0, NULL, NULL) == LMC_OK);
    const char *names3[] = {"second"};
    CHECK(lmc_safetensors_write(path, 1, names3, arrays, 0, NULL, NULL) == LMC_OK);
    lmc_safetensors *st = NULL;
    CHECK(lmc_safetensors_open(path, &st) == LMC_OK);
    CHECK(lmc_safetensors_count(st) == 1 && lmc_safetensors_contains(st, "second"));
    lmc_safetensors_close(st);
    lmc_array_free(a);
}

/* --- files laid out by the reference implementation ------------------------------ */

/* The exact bytes the reference Rust serializer (which Python's safetensors
 * wraps) produces for {"attn0": F32 [1, 1, 2, 3] = 0..5}, from its test
 * test_serialization_forced_alignement: a 65-byte header padded with 7
 * spaces to 72 so the data is 8-byte aligned. */
static const unsigned char k_reference_attn0[] = {
    72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
    121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
    44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
    34,  58,  91,  48,  44,  50,  52,  93,  125, 125, 32,  32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
    0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};

static void test_reference_layout(void) {
    size_t n;
    unsigned char *file = read_bytes(LMC_TEST_DATA "/safetensors/reference_attn0.safetensors", &n);
    CHECK(file && n == sizeof k_reference_attn0 && memcmp(file, k_reference_attn0, n) == 0);
    free(file);

    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(LMC_TEST_DATA "/safetensors/reference_attn0.safetensors", &st) == LMC_OK, "%s",
           lmc_last_error());
    lmc_array *a = lmc_safetensors_get(st, "attn0");
    CHECK(a && lmc_array_ndim(a) == 4 && lmc_array_shape(a)[3] == 3 && lmc_array_dtype(a) == LMC_F32);
    CHECK(lmc_safetensors_is_aligned(st, "attn0"));
    for (int i = 0; a && i < 6; i++) CHECK(((const float *)lmc_array_data(a))[i] == (float)i);
    lmc_array_free(a);
    lmc_safetensors_close(st);

    /* Our writer produces the same bytes for the same tensor. */
    const int64_t shape[] = {1, 1, 2, 3};
    const float v[] = {0, 1, 2, 3, 4, 5};
    lmc_array *w = lmc_array_from_data(v, LMC_F32, 4, shape);
    const char *name = "attn0";
    const char *path = tmp_path("attn0.safetensors");
    CHECK(lmc_safetensors_write(path, 1, &name, (const lmc_array *const *)&w, 0, NULL, NULL) == LMC_OK);
    file = read_bytes(path, &n);
    CHECK(file && n == sizeof k_reference_attn0 && memcmp(file, k_reference_attn0, n) == 0);
    free(file);
    lmc_array_free(w);
}

/* hf_tiny.safetensors is hand-assembled in the reference writer's layout:
 * "__metadata__" first, tensors sorted by descending dtype alignment (I64,
 * F32, BF16, BOOL), the header padded with spaces to a multiple of 8. Its
 * layout is checked byte by byte here, then read through the library. */
static void test_hand_assembled_file(void) {
    const char *header =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,3],\"data_offsets\":[0,24]},"
        "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[24,40]},"
        "\"norm\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[40,46]},"
        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[46,48]}}";
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    size_t n;
    const char *path = LMC_TEST_DATA "/safetensors/hf_tiny.safetensors";
    unsigned char *f = read_bytes(path, &n);
    CHECK(f && n == 8 + padded + 48);
    uint64_t hlen = 0;
    for (int i = 7; f && i >= 0; i--) hlen = hlen << 8 | f[i];
    CHECK(hlen == padded);
    CHECK(f && memcmp(f + 8, header, hl) == 0);
    for (size_t i = hl; f && i < padded; i++) CHECK(f[8 + i] == ' ');
    const unsigned char *data = f ? f + 8 + padded : NULL;
    /* I64 0, 1, 2 little-endian; F32 1.0 = 00 00 80 3f; BF16 1.0 = 80 3f; BOOL 1, 0. */
    CHECK(data && data[0] == 0 && data[8] == 1 && data[16] == 2 && data[23] == 0);
    CHECK(data && data[26] == 0x80 && data[27] == 0x3f && data[40] == 0x80 && data[41] == 0x3f);
    CHECK(data && data[46] == 1 && data[47] == 0);
    free(f);

    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(path, &st) == LMC_OK, "%s", lmc_last_error());
    CHECK_STR(lmc_safetensors_metadata(st, "format"), "pt");
    CHECK(lmc_safetensors_count(st) == 4);
    CHECK_STR(lmc_safetensors_name(st, 0), "position_ids");
    CHECK_STR(lmc_safetensors_name(st, 3), "mask");
    const char *names[] = {"position_ids", "weight", "norm", "mask"};
    for (int i = 0; i < 4; i++) CHECKF(lmc_safetensors_is_aligned(st, names[i]), "%s", names[i]);

    lmc_array *pos = lmc_safetensors_get(st, "position_ids");
    CHECK(pos && lmc_array_dtype(pos) == LMC_I64 && lmc_array_ndim(pos) == 2 && lmc_array_shape(pos)[1] == 3);
    int64_t pv[3] = {-1, -1, -1};
    memcpy(pv, lmc_array_data(pos), sizeof pv);
    CHECK(pv[0] == 0 && pv[1] == 1 && pv[2] == 2);
    lmc_array *w = lmc_safetensors_get(st, "weight");
    float wv[4];
    CHECK(lmc_array_read(w, LMC_F32, wv, 4) == LMC_OK);
    CHECK(wv[0] == 1.0f && wv[1] == -2.0f && wv[2] == 0.5f && wv[3] == 3.25f);
    lmc_array *norm = lmc_safetensors_get(st, "norm");
    float nv[3];
    CHECK(lmc_array_dtype(norm) == LMC_BF16 && lmc_array_read(norm, LMC_F32, nv, 3) == LMC_OK);
    CHECK(nv[0] == 1.0f && nv[1] == -0.5f && nv[2] == 2.0f);
    lmc_array *mask = lmc_safetensors_get(st, "mask");
    CHECK(lmc_array_dtype(mask) == LMC_BOOL && ((const uint8_t *)lmc_array_data(mask))[0] == 1);
    lmc_array_free(pos);
    lmc_array_free(w);
    lmc_array_free(norm);
    lmc_array_free(mask);

    /* Lookups of a missing tensor name it and the file. */
    CHECK(lmc_safetensors_get(st, "lm_head.weight") == NULL);
    CHECK(lmc_last_status() == LMC_ERR_NOT_FOUND && msg_has("'lm_head.weight'", "hf_tiny.safetensors"));
    CHECK(lmc_safetensors_info(st, "nope", NULL, NULL, NULL) == LMC_ERR_NOT_FOUND);
    CHECK(!lmc_safetensors_contains(st, "nope") && lmc_safetensors_name(st, 4) == NULL);
    lmc_safetensors_close(st);
}

/* Headers with no tensors are valid (the reference's test_empty vectors). */
static void test_empty_files(void) {
    unsigned char img[256];
    size_t n = make_image(img, "{}      ", 0, 0);
    write_bytes(tmp_path("empty_header.safetensors"), img, n);
    lmc_safetensors *st = NULL;
    CHECK(lmc_safetensors_open(tmp_path("empty_header.safetensors"), &st) == LMC_OK);
    CHECK(lmc_safetensors_count(st) == 0);
    lmc_safetensors_close(st);
    n = make_image(img, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", 0, 0);
    CHECK(n == 48); /* the reference's 40-byte header */
    write_bytes(tmp_path("empty_meta.safetensors"), img, n);
    CHECK(lmc_safetensors_open(tmp_path("empty_meta.safetensors"), &st) == LMC_OK);
    CHECK_STR(lmc_safetensors_metadata(st, "framework"), "pt");
    lmc_safetensors_close(st);
    /* MLX writes "__metadata__": null when saving without metadata; the
     * reference reads it as absent. An escaped backslash before "u0000" is
     * not a NUL escape. */
    n = make_image(img, "{\"__metadata__\":null,\"a\\\\u0000\":" "{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 0, 1);
    write_bytes(tmp_path("null_meta.safetensors"), img, n);
    CHECKF(lmc_safetensors_open(tmp_path("null_meta.safetensors"), &st) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_safetensors_metadata_count(st) == 0 && lmc_safetensors_contains(st, "a\\u0000"));
    lmc_safetensors_close(st);
    /* Writing nothing gives the same 16 bytes as the reference: {} and 6 spaces. */
    CHECK(lmc_safetensors_write(tmp_path("nothing.safetensors"), 0, NULL, NULL, 0, NULL, NULL) == LMC_OK);
    unsigned char *f = read_bytes(tmp_path("nothing.safetensors"), &n);
    CHECK(f && n == 16 && memcmp(f, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(f);
}

/* Dtypes safetensors knows but lmc lacks: the file opens, the tensor is
 * refused by name. */
static void test_unsupported_dtype(void) {
    unsigned char img[256];
    size_t n = make_image(img,
                          "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                          "\"i\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[16,18]},"
                          "\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[18,26]}}",
                          0, 26);
    const char *path = tmp_path("f64.safetensors");
    write_bytes(path, img, n);
    lmc_safetensors *st = NULL;
    CHECKF(lmc_safetensors_open(path, &st) == LMC_OK, "%s", lmc_last_error());
    CHECK_STR(lmc_safetensors_dtype_name(st, "d"), "F64");
    CHECK(lmc_safetensors_get(st, "d") == NULL);
    CHECK(lmc_last_status() == LMC_ERR_UNSUPPORTED && msg_has("tensor 'd' has dtype F64", "f64.safetensors"));
    CHECK(lmc_safetensors_info(st, "i", NULL, NULL, NULL) == LMC_ERR_UNSUPPORTED);
    CHECK(msg_has("tensor 'i' has dtype I8", NULL));
    CHECK(lmc_safetensors_get(st, "c") == NULL && msg_has("tensor 'c' has dtype C64", NULL));
    lmc_safetensors_close(st);
}

/* --- the corrupted corpus ----------------------------------------------------------- */

typedef struct bad_case {
    const char *what;
    const char *header;   /* header text (NULL: use raw/raw_len instead) */
    uint64_t hlen;        /* length field override, 0 = the real length */
    size_t data_len;      /* bytes of data after the header */
    const char *raw;      /* a whole file given byte by byte */
    size_t raw_len;
    const char *fragment; /* expected in the message */
    const char *tensor;   /* the tensor the message must name, or NULL */
} bad_case;

#define T(name, dtype, shape, b, e) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static const bad_case k_bad[] = {
    {"empty file", NULL, 0, 0, "", 0, "file is empty", NULL},
    {"3 bytes", NULL, 0, 0, "\x10\x00\x00", 3, "file is 3 bytes, shorter than the 8-byte header length", NULL},
    {"7 bytes", NULL, 0, 0, "\x02\x00\x00\x00\x00\x00\x00", 7, "shorter than the 8-byte header length", NULL},
    {"header length past EOF", "{}", 100, 0, NULL, 0, "header length 100 runs past the end of the file", NULL},
    {"header length huge", "{}", 0xffffffffffffffffull, 0, NULL, 0, "header length 18446744073709551615 is larger than the limit", NULL},
    {"header length just over 100 MB", "{}", 100000001, 0, NULL, 0, "is larger than the limit of 100000000 bytes", NULL},
    {"header not JSON", "{not json}", 0, 0, NULL, 0, "header is not valid JSON (error near byte", NULL},
    {"header empty", "", 0, 0, NULL, 0, "header is not valid JSON", NULL},
    {"header truncated JSON", "{\"a\":{\"dtype\":", 0, 0, NULL, 0, "header is not valid JSON", NULL},
    {"garbage after JSON", "{}  x", 0, 0, NULL, 0, "header is not valid JSON (error near byte 4", NULL},
    {"NUL padding", "{}\0\0", 0, 0, NULL, 0, "not valid JSON", NULL},
    {"header is an array", "[1, 2]", 0, 0, NULL, 0, "header is an array, not a JSON object", NULL},
    {"header is a string", "\"x\"", 0, 0, NULL, 0, "header is a string, not a JSON object", NULL},
    {"invalid UTF-8", "{\"w\xff\":{}}", 0, 0, NULL, 0, "header is not valid UTF-8 (byte 3 of the header)", NULL},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, 0, NULL, 0, "not valid UTF-8", NULL},
    {"UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, 0, NULL, 0, "not valid UTF-8", NULL},
    {"truncated UTF-8", "{\"w\":{}}\xe6\x97", 0, 0, NULL, 0, "not valid UTF-8", NULL},
    {"entry not an object", "{\"w\":[1]}", 0, 0, NULL, 0, "entry is an array, not an object", "w"},
    {"missing dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, NULL, 0, "missing \"dtype\"", "w"},
    {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 0, 8, NULL, 0, "missing \"shape\"", "w"},
    {"missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, 8, NULL, 0, "missing \"data_offsets\"", "w"},
    {"unexpected field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"offsets\":[0,8]}}", 0, 8,
     NULL, 0, "unexpected field 'offsets'", "w"},
    {"field twice", "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, NULL, 0,
     "field 'dtype' appears twice", "w"},
    {"dtype not a string", "{" T("w", "F32", "[2]", 0, 8) ",\"v\":{\"dtype\":4,\"shape\":[],\"data_offsets\":[8,12]}}",
     0, 12, NULL, 0, "\"dtype\" is a number, not a string", "v"},
    {"unknown dtype", "{" T("w", "Q4", "[2]", 0, 8) "}", 0, 8, NULL, 0, "unknown dtype 'Q4'", "w"},
    {"lowercase dtype", "{" T("w", "f32", "[2]", 0, 8) "}", 0, 8, NULL, 0, "unknown dtype 'f32'", "w"},
    {"shape not an array", "{" T("w", "F32", "2", 0, 8) "}", 0, 8, NULL, 0, "\"shape\" is a number, not an array", "w"},
    {"negative shape", "{" T("w", "F32", "[2,-1]", 0, 8) "}", 0, 8, NULL, 0, "shape dimension 1 is negative (-1)", "w"},
    {"non-integer shape", "{" T("w", "F32", "[1.5]", 0, 8) "}", 0, 8, NULL, 0, "shape dimension 0 (1.5) is not an integer", "w"},
    {"string in shape", "{" T("w", "F32", "[\"2\"]", 0, 8) "}", 0, 8, NULL, 0, "shape dimension 0 is a string, not an integer", "w"},
    {"shape beyond 2^53", "{" T("w", "U8", "[9007199254740993]", 0, 8) "}", 0, 8, NULL, 0, "is not an integer below 2^53", "w"},
    {"too many dims", "{" T("w", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 0, 8, NULL, 0,
     "shape has 9 dimensions; lmc supports at most 8", "w"},
    {"element count overflow", "{" T("w", "U8", "[4294967296,4294967296,2]", 0, 8) "}", 0, 8, NULL, 0,
     "shape [4294967296, 4294967296, 2] with dtype U8 is larger than 2^64 bytes", "w"},
    {"byte count overflow", "{" T("w", "F32", "[2147483648,2147483648]", 0, 8) "}", 0, 8, NULL, 0,
     "with dtype F32 is larger than 2^64 bytes", "w"},
    {"offsets not a pair", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 0, 16, NULL, 0,
     "\"data_offsets\" is not an array of two integers", "w"},
    {"negative offset", "{" T("w", "F32", "[2]", -8, 0) "}", 0, 8, NULL, 0, "are not two non-negative integers", "w"},
    {"offsets reversed", "{" T("w", "F32", "[2]", 8, 0) "}", 0, 8, NULL, 0, "data_offsets [8, 0] are reversed", "w"},
    {"offsets past the end", "{" T("w", "F32", "[4]", 0, 16) "}", 0, 8, NULL, 0,
     "data_offsets [0, 16] run past the end of the data section (8 bytes)", "w"},
    {"size mismatch", "{" T("model.embed_tokens.weight", "BF16", "[10,8]", 0, 100) "}", 0, 100, NULL, 0,
     "data_offsets [0, 100] do not match dtype BF16 and shape [10, 8] (160 bytes)", "model.embed_tokens.weight"},
    {"overlapping tensors", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 0, 12, NULL, 0,
     "data_offsets [4, 12] overlap tensor 'a' [0, 8]", "b"},
    {"same range twice", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "U8", "[8]", 0, 8) "}", 0, 8, NULL, 0,
     "overlap tensor 'a' [0, 8]", "b"},
    {"gap between tensors", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[1]", 12, 16) "}", 0, 16, NULL, 0,
     "bytes [8, 12) of the data section belong to no tensor", NULL},
    {"trailing bytes", "{" T("a", "F32", "[2]", 0, 8) "}", 0, 12, NULL, 0,
     "the data section is 12 bytes but the tensors end at byte 8", NULL},
    {"duplicate names", "{" T("w", "F32", "[2]", 0, 8) "," T("w", "F32", "[2]", 8, 16) "}", 0, 16, NULL, 0,
     "name appears twice", "w"},
    {"metadata value a number", "{\"__metadata__\":{\"format\":\"pt\",\"step\":1}}", 0, 0, NULL, 0,
     "\"__metadata__\" value for 'step' is a number, not a string", NULL},
    {"metadata not an object", "{\"__metadata__\":[\"pt\"]}", 0, 0, NULL, 0, "\"__metadata__\" is an array", NULL},
    {"NUL escape in a name", "{" T("a\\u0000b", "F32", "[2]", 0, 8) "}", 0, 8, NULL, 0,
     "header holds the escape \\u0000 (byte 3 of the header)", NULL},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, NULL, 0, "\"__metadata__\" appears twice", NULL},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, NULL, 0,
     "\"__metadata__\" key 'k' appears twice", NULL},
};

/* LMC_SHOW_ERRORS=1 prints every message, to read them as a user would. */
static void test_corrupted_corpus(void) {
    unsigned char img[512];
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        const bad_case *c = &k_bad[i];
        size_t n;
        if (c->header) {
            /* Headers with NULs inside are spelled with explicit length below. */
            n = make_image(img, c->header, c->hlen, c->data_len);
        } else {
            memcpy(img, c->raw, c->raw_len);
            n = c->raw_len;
        }
        if (strcmp(c->what, "NUL padding") == 0) { /* "{}" then two NUL bytes: 4 header bytes */
            put_u64le(img, 4);
            memcpy(img + 8, "{}\0\0", 4);
            n = 12;
        }
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        const char *path = tmp_path(name);
        write_bytes(path, img, n);
        lmc_safetensors *st = (lmc_safetensors *)1;
        lmc_clear_error();
        lmc_status s = lmc_safetensors_open(path, &st);
        char tensor_part[200] = "";
        if (c->tensor) snprintf(tensor_part, sizeof tensor_part, "tensor '%s'", c->tensor);
        CHECKF(s == LMC_ERR_FORMAT && st == NULL, "%s: status %d, %s", c->what, (int)s, lmc_last_error());
        CHECKF(msg_has(c->fragment, name), "%s: message \"%s\" lacks \"%s\" or the file name", c->what,
               lmc_last_error(), c->fragment);
        if (getenv("LMC_SHOW_ERRORS")) fprintf(stderr, "%-28s %s\n", c->what, lmc_last_error());
        if (c->tensor) CHECKF(msg_has(tensor_part, NULL), "%s: message \"%s\" lacks %s", c->what, lmc_last_error(), tensor_part);
        if (s == LMC_OK) lmc_safetensors_close(st);
    }
}

static void test_not_a_file(void) {
    lmc_safetensors *st = NULL;
    CHECK(lmc_safetensors_open(tmp_path("missing.safetensors"), &st) == LMC_ERR_IO && st == NULL);
    CHECK(msg_has("missing.safetensors: cannot open: No such file or directory", NULL));
    CHECK(mkdir(tmp_path("a_dir.safetensors"), 0755) == 0);
    CHECK(lmc_safetensors_open(tmp_path("a_dir.safetensors"), &st) == LMC_ERR_IO && st == NULL);
    CHECK(msg_has("a_dir.safetensors: is a directory", NULL));
    CHECK(lmc_safetensors_open(NULL, &st) == LMC_ERR_INVALID_ARGUMENT);
    /* A FIFO is refused without blocking on it. */
    CHECK(mkfifo(tmp_path("fifo.safetensors"), 0644) == 0);
    CHECK(lmc_safetensors_open(tmp_path("fifo.safetensors"), &st) == LMC_ERR_IO);
    CHECK(msg_has("fifo.safetensors: not a regular file", NULL));
}

/* --- checkpoints ------------------------------------------------------------------ */

static void write_one(const char *path, const char *name, lmc_array *a) {
    CHECKF(lmc_safetensors_write(path, 1, &name, (const lmc_array *const *)&a, 0, NULL, NULL) == LMC_OK, "%s",
           lmc_last_error());
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static void test_sharded_checkpoint(void) {
    int64_t live0 = lmc_live_arrays();
    const int64_t s[] = {2, 3};
    lmc_array *a = patterned(LMC_BF16, 2, s, 1), *b = patterned(LMC_F32, 2, s, 2), *c = patterned(LMC_U32, 2, s, 3);
    CHECK(mkdir(tmp_path("sharded"), 0755) == 0);
    const char *names1[] = {"model.layers.0.w", "model.embed"};
    const lmc_array *arrays1[] = {a, b};
    CHECK(lmc_safetensors_write(tmp_path("sharded/model-00001-of-00002.safetensors"), 2, names1, arrays1, 0, NULL,
                                NULL) == LMC_OK);
    write_one(tmp_path("sharded/model-00002-of-00002.safetensors"), "lm_head.weight", c);
    write_text(tmp_path("sharded/model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 60},\n \"weight_map\": {\n"
               "  \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
               "  \"model.embed\": \"model-00001-of-00002.safetensors\",\n"
               "  \"model.layers.0.w\": \"model-00001-of-00002.safetensors\"}}\n");
    lmc_checkpoint *ck = NULL;
    CHECKF(lmc_checkpoint_open(tmp_path("sharded"), &ck) == LMC_OK, "%s", lmc_last_error());
    CHECK(lmc_checkpoint_count(ck) == 3 && lmc_checkpoint_file_count(ck) == 2);
    CHECK_STR(lmc_checkpoint_name(ck, 0), "lm_head.weight"); /* index order */
    CHECK_STR(lmc_checkpoint_name(ck, 2), "model.layers.0.w");
    CHECK(lmc_checkpoint_name(ck, 3) == NULL);
    CHECK(lmc_checkpoint_find(ck, "model.embed") == lmc_checkpoint_file(ck, 1));
    CHECK(lmc_checkpoint_find(ck, "lm_head.weight") == lmc_checkpoint_file(ck, 0));
    lmc_dtype dt;
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    CHECK(lmc_checkpoint_info(ck, "lm_head.weight", &dt, &ndim, shape) == LMC_OK);
    CHECK(dt == LMC_U32 && ndim == 2 && shape[0] == 2 && shape[1] == 3);
    lmc_array *ga = lmc_checkpoint_get(ck, "model.layers.0.w");
    lmc_array *gb = lmc_checkpoint_get(ck, "model.embed");
    lmc_array *gc = lmc_checkpoint_get(ck, "lm_head.weight");
    CHECK(lmc_checkpoint_get(ck, "model.norm") == NULL && lmc_last_status() == LMC_ERR_NOT_FOUND);
    CHECK(msg_has("no tensor named 'model.norm'", NULL));
    lmc_checkpoint_close(ck);
    CHECK(same_array(a, ga) && same_array(b, gb) && same_array(c, gc)); /* outlive the checkpoint */
    lmc_array_free(ga);
    lmc_array_free(gb);
    lmc_array_free(gc);

    /* Without the index: every *.safetensors file, sorted; file by file. */
    CHECK(unlink(tmp_path("sharded/model.safetensors.index.json")) == 0);
    CHECK(lmc_checkpoint_open(tmp_path("sharded"), &ck) == LMC_OK);
    CHECK(lmc_checkpoint_count(ck) == 3);
    CHECK_STR(lmc_checkpoint_name(ck, 0), "model.layers.0.w");
    CHECK_STR(lmc_checkpoint_name(ck, 2), "lm_head.weight");
    lmc_checkpoint_close(ck);

    /* A name in two files is an error naming both. */
    write_one(tmp_path("sharded/extra.safetensors"), "model.embed", a);
    CHECK(lmc_checkpoint_open(tmp_path("sharded"), &ck) == LMC_ERR_FORMAT && ck == NULL);
    CHECK(msg_has("tensor 'model.embed' is in both 'extra.safetensors' and 'model-00001-of-00002.safetensors'", NULL));
    CHECK(unlink(tmp_path("sharded/extra.safetensors")) == 0);

    /* model.safetensors is preferred over other files; a file path opens alone. */
    write_one(tmp_path("sharded/model.safetensors"), "only", a);
    CHECK(lmc_checkpoint_open(tmp_path("sharded"), &ck) == LMC_OK);
    CHECK(lmc_checkpoint_count(ck) == 1 && lmc_checkpoint_file_count(ck) == 1);
    lmc_checkpoint_close(ck);
    CHECK(lmc_checkpoint_open(tmp_path("sharded/model-00002-of-00002.safetensors"), &ck) == LMC_OK);
    CHECK(lmc_checkpoint_count(ck) == 1 && lmc_checkpoint_get(ck, "only") == NULL);
    CHECK(msg_has("model-00002-of-00002.safetensors: no tensor named 'only'", NULL));
    lmc_checkpoint_close(ck);

    lmc_array_free(a);
    lmc_array_free(b);
    lmc_array_free(c);
    CHECK(lmc_live_arrays() == live0);
}

static void test_checkpoint_errors(void) {
    const int64_t s[] = {4};
    lmc_array *a = patterned(LMC_F32, 1, s, 1);
    CHECK(mkdir(tmp_path("ck"), 0755) == 0);
    write_one(tmp_path("ck/shard-1.safetensors"), "w1", a);
    char index[512];
    snprintf(index, sizeof index, "%s", tmp_path("ck/model.safetensors.index.json"));
    lmc_checkpoint *ck = (lmc_checkpoint *)1;

    write_text(index, "{\"weight_map\": {\"w1\": \"shard-1.safetensors\", \"w2\": \"shard-2.safetensors\"}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_IO && ck == NULL);
    CHECK(msg_has("model.safetensors.index.json: tensor 'w2' is mapped to 'shard-2.safetensors', which cannot be "
                  "opened",
                  "shard-2.safetensors: cannot open: No such file or directory"));

    write_text(index, "{\"weight_map\": {\"w1\": \"shard-1.safetensors\", \"w3\": \"shard-1.safetensors\"}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("tensor 'w3' is mapped to 'shard-1.safetensors', which does not contain it", "index.json"));

    write_text(index, "{\"weight_map\": {\"w1\": \"../shard-1.safetensors\"}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("is not a file name inside the checkpoint directory", NULL));

    write_text(index, "{\"weight_map\": {\"w1\": \"shard-1.safetensors\", \"w1\": \"shard-1.safetensors\"}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("tensor 'w1' is listed twice", NULL));

    write_text(index, "{\"weight_map\": {\"w1\": 3}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("weight_map value for tensor 'w1' is a number", NULL));

    write_text(index, "{\"metadata\": {}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("index.json: no \"weight_map\" object", NULL));

    write_text(index, "{\"weight_map\": {\"w1\": \"shard-1.safetensors\"");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("index.json: not valid JSON", NULL));

    /* A shard that is itself corrupt: the shard's own message, prefixed. */
    write_bytes(tmp_path("ck/shard-1.safetensors"), "\x01\x00", 2);
    write_text(index, "{\"weight_map\": {\"w1\": \"shard-1.safetensors\"}}");
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_FORMAT);
    CHECK(msg_has("which cannot be opened", "shard-1.safetensors: file is 2 bytes"));

    CHECK(unlink(index) == 0 && unlink(tmp_path("ck/shard-1.safetensors")) == 0);
    CHECK(lmc_checkpoint_open(tmp_path("ck"), &ck) == LMC_ERR_NOT_FOUND);
    CHECK(msg_has("no model.safetensors.index.json, model.safetensors or *.safetensors file", NULL));
    CHECK(lmc_checkpoint_open(tmp_path("no_such_dir"), &ck) == LMC_ERR_IO);
    CHECK(msg_has("no_such_dir: cannot open", NULL));
    lmc_array_free(a);
}

/* The fuzzer's seed corpus stays meaningful: files named bad_* are rejected
 * with a format error, every other one opens. */
static void test_fuzz_seeds(void) {
    const char *dir = LMC_TEST_DATA "/../../fuzz/corpus/safetensors";
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot list %s", dir);
    int seen = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        lmc_safetensors *st = NULL;
        lmc_status s = lmc_safetensors_open(path, &st);
        bool bad = strncmp(de->d_name, "bad_", 4) == 0;
        CHECKF(bad ? s == LMC_ERR_FORMAT : s == LMC_OK, "%s: %s", de->d_name, lmc_last_error());
        lmc_safetensors_close(st);
        seen++;
    }
    if (d) closedir(d);
    CHECK(seen >= 8);
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lmc_test_safetensors_XXXXXX");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_round_trip_all_dtypes);
    RUN(test_metadata_round_trip);
    RUN(test_write_non_contiguous);
    RUN(test_arrays_outlive_handle);
    RUN(test_unaligned_tensors);
    RUN(test_writer_errors);
    RUN(test_reference_layout);
    RUN(test_hand_assembled_file);
    RUN(test_empty_files);
    RUN(test_unsupported_dtype);
    RUN(test_corrupted_corpus);
    RUN(test_not_a_file);
    RUN(test_fuzz_seeds);
    RUN(test_sharded_checkpoint);
    RUN(test_checkpoint_errors);
    CHECK(lmc_memory(LMC_CPU).mapped_bytes == 0);
    nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return TEST_REPORT();
}
