/* libFuzzer target for the safetensors reader: the input is a whole file.
 * It is parsed in place (no copy, no mapping), so AddressSanitizer sees any
 * read past its end; every tensor that opens is read back in full and
 * checked against the bytes it must view. */
#include <stdint.h>
#include <string.h>

#include "io/safetensors_internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_buffer *buf = lmc_buffer_wrap((void *)data, size, LMC_CPU, NULL, NULL);
    if (!buf) return 0;
    lmc_safetensors *st = NULL;
    lmc_status s = lmc_safetensors_open_buffer("fuzz.safetensors", buf, &st);
    lmc_buffer_release(buf); /* the handle keeps its own reference */
    if (s != LMC_OK) {
        REQUIRE(st == NULL && lmc_last_error()[0] != 0);
        return 0;
    }
    for (size_t i = 0; i < lmc_safetensors_count(st); i++) {
        const char *name = lmc_safetensors_name(st, i);
        REQUIRE(name && lmc_safetensors_contains(st, name));
        lmc_dtype dt;
        int ndim;
        int64_t shape[LMC_MAX_DIMS];
        if (lmc_safetensors_info(st, name, &dt, &ndim, shape) != LMC_OK) {
            REQUIRE(lmc_last_status() == LMC_ERR_UNSUPPORTED);
            continue;
        }
        lmc_array *a = lmc_safetensors_get(st, name);
        if (!a) {
            /* Only an unaligned copy can fail (memory); views cannot. */
            REQUIRE(!lmc_safetensors_is_aligned(st, name));
            continue;
        }
        REQUIRE(lmc_array_dtype(a) == dt && lmc_array_ndim(a) == ndim);
        size_t nbytes = lmc_array_nbytes(a);
        const uint8_t *p = lmc_array_data(a);
        if (lmc_safetensors_is_aligned(st, name) && nbytes)
            REQUIRE(p >= data && p + nbytes <= data + size); /* a view inside the input */
        unsigned sum = 0;
        for (size_t k = 0; k < nbytes; k++) sum += p[k]; /* touch every byte */
        REQUIRE(sum <= 255u * nbytes);
        lmc_array_free(a);
    }
    for (size_t i = 0; i < lmc_safetensors_metadata_count(st); i++)
        REQUIRE(lmc_safetensors_metadata(st, lmc_safetensors_metadata_key(st, i)) != NULL);
    lmc_safetensors_close(st);
    return 0;
}
