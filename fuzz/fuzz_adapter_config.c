/* libFuzzer target for adapter_config.json (src/train/lora_files.c): the
 * input is the whole document, read for a 4-layer model whose tensors are
 * named "model.layers.N....". Either it is refused with a message that names
 * the file (and the plan is left empty), or the plan holds what the loader
 * needs: at least one module, in layer then module order, each once, with a
 * rank in [1, 65536] and a positive finite alpha; the dropout in [0, 1). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "lmc/lmc.h"
#include "train/lora_internal.h"
#include "fuzz.h"

enum { LAYERS = 4 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_lora_plan p;
    lmc_status st = lmc_lora_plan_parse("adapter_config.json", (const char *)data, size, "model.", LAYERS, &p);
    if (st != LMC_OK) {
        REQUIRE(st == LMC_ERR_FORMAT || st == LMC_ERR_UNSUPPORTED || st == LMC_ERR_OUT_OF_MEMORY);
        REQUIRE(st == LMC_ERR_OUT_OF_MEMORY || !strncmp(lmc_last_error(), "adapter_config.json: ", 21));
        REQUIRE(p.n == 0 && p.e == NULL && p.base_model == NULL);
        return 0;
    }
    REQUIRE(p.n >= 1 && p.n <= LAYERS * LMC_DEC_NUM_MODULES && p.e != NULL);
    REQUIRE(p.cfg.rank >= 1 && p.cfg.rank <= 65536 && p.cfg.alpha > 0 && isfinite(p.cfg.alpha));
    REQUIRE(p.cfg.dropout >= 0 && p.cfg.dropout < 1);
    unsigned kinds = 0;
    for (int i = 0; i < p.n; i++) {
        const lmc_lora_plan_entry *e = &p.e[i];
        REQUIRE(e->layer >= 0 && e->layer < LAYERS && e->module >= 0 && e->module < LMC_DEC_NUM_MODULES);
        REQUIRE(e->rank >= 1 && e->rank <= 65536 && e->alpha > 0 && isfinite(e->alpha));
        if (i) REQUIRE(e->layer * LMC_DEC_NUM_MODULES + e->module > p.e[i - 1].layer * LMC_DEC_NUM_MODULES + p.e[i - 1].module);
        kinds |= 1u << e->module;
    }
    REQUIRE(kinds == p.kinds);
    REQUIRE(!p.all_linear || kinds == (1u << LMC_DEC_NUM_MODULES) - 1);
    lmc_lora_plan_free(&p);
    return 0;
}
