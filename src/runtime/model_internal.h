/* The model handle behind lmc/model.h. */
#ifndef LMC_RUNTIME_MODEL_INTERNAL_H
#define LMC_RUNTIME_MODEL_INTERNAL_H

#include <stdatomic.h>

#include "lmc/model.h"
#include "lmc/tokenizer.h"
#include "models/decoder.h"

struct lmc_model {
    char *dir;
    char backend[32];
    lmc_decoder *dec;
    lmc_tokenizer *tok;
    lmc_load_options opt;
    int64_t context_length;   /* effective bound on caches */
    int32_t eos[LMC_MAX_EOS + 16];
    int n_eos;
};

/* Non-zero when the handle is usable; otherwise records LMC_ERR_CLOSED. */
lmc_status lmc_model_check(const lmc_model *m);
bool lmc_model_is_eos(const lmc_model *m, int32_t id);
double lmc_now(void);

#endif
