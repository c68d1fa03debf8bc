/* libFuzzer target for generation_config.json's sampling fields
 * (lmc_sampling_config_parse, src/runtime/model.c): the input is the file's
 * text. Either it is refused with a message naming the file, or the fields
 * are finite and in range and make a sampler. */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/model_internal.h"
#include "runtime/sampler.h"

static const char k_path[] = "fuzz/generation_config.json";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_sampler_config c;
    lmc_status s = lmc_sampling_config_parse((const char *)data, size, k_path, &c);
    if (s != LMC_OK) {
        REQUIRE(s == LMC_ERR_FORMAT || s == LMC_ERR_INVALID_ARGUMENT);
        REQUIRE(strstr(lmc_last_error(), k_path) != NULL);
        return 0;
    }
    REQUIRE(isfinite(c.temperature) && c.temperature >= 0);
    REQUIRE(isfinite(c.top_p) && isfinite(c.min_p) && isfinite(c.repeat_penalty));
    REQUIRE(c.top_k >= -1);
    lmc_sampler *smp = NULL;
    REQUIRE(lmc_sampler_create(&c, &smp) == LMC_OK);
    lmc_sampler_free(smp);
    return 0;
}
