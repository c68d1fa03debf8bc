/* LoRA adapter sets (lmc/lora.h): the state shared by lora.c (attach,
 * parameters, loss and gradients), lora_files.c (PEFT folders) and
 * lora_fuse.c (merged checkpoints). */
#ifndef LMC_TRAIN_LORA_INTERNAL_H
#define LMC_TRAIN_LORA_INTERNAL_H

#include "lmc/lora.h"
#include "models/decoder.h"

/* One adapted Linear: layer `layer`, module lmc_dec_module_names[module]. */
typedef struct lmc_lora_entry {
    int64_t layer;
    int module;
    int rank;
    double alpha;
    lmc_linear *lin;          /* the adapted layer (NULL once detached) */
    lmc_linear_adapter ad;    /* A and B owned here; the layer points at this */
} lmc_lora_entry;

struct lmc_lora {
    lmc_model *m;             /* NULL once the model has been closed */
    lmc_lora_config cfg;      /* cfg.targets points at `targets` */
    char targets[160];
    bool use_rslora;          /* scale alpha / sqrt(rank) */
    char prefix[32];          /* the decoder's tensor prefix, e.g. "model." */
    int64_t num_layers;       /* of the model */
    char *base_model;         /* base_model_name_or_path written to adapter_config.json */
    int n;
    lmc_lora_entry *e;        /* layer order, then module order */
    lmc_array **params;       /* A0, B0, A1, B1, ... (borrowed from e) */
    char **names;             /* PEFT tensor names of params */
};

/* Canonical module kinds from a comma list or "all-linear": a bit per module.
 * Errors name the unknown entry. */
lmc_status lmc_lora_parse_targets(const char *targets, unsigned *mask);
/* Writes the canonical comma list of a mask. */
void lmc_lora_targets_str(unsigned mask, char *buf, size_t cap);

/* A set with room for n entries, bound to model m (native). The caller fills
 * the entries (layer, module, rank, alpha, A, B, dropout) then calls
 * lmc_lora_attach. */
lmc_status lmc_lora_alloc(lmc_model *m, int n, lmc_lora **out);
/* Computes scales, names and params, attaches every entry to its layer and
 * registers the set with the model. Frees the set on failure. */
lmc_status lmc_lora_attach(lmc_lora *l);
/* The model is closing: detach, forget the model. */
void lmc_lora_model_closed(lmc_lora *l);
/* The module's full name, e.g. "model.layers.3.self_attn.q_proj" for prefix
 * "model." (PEFT's tensor names are "base_model.model." + it + ".lora_A.weight"). */
void lmc_lora_module_name(const char *prefix, int64_t layer, int module, char *buf, size_t cap);
/* The dropout stream of entry i of a set configured with `seed`. */
uint64_t lmc_lora_entry_seed(uint64_t seed, int i);
/* lmc_lora_fuse writing its weights in dtype (LMC_BF16 there; LMC_F32 lets
 * tests check the merge itself, free of bf16 rounding) in files of about
 * shard_bytes (there LMC_LORA_FUSE_SHARD_BYTES; small ones let tests write
 * several). */
#define LMC_LORA_FUSE_SHARD_BYTES ((size_t)2 << 30)
lmc_status lmc_lora_fuse_as(const lmc_lora *l, const char *out_dir, lmc_dtype dtype, size_t shard_bytes);
/* Writes len bytes to path through "<path>.tmp", flushed and renamed over it. */
lmc_status lmc_lora_write_file(const char *path, const void *data, size_t len);
/* What adapter_config.json asks of a model of num_layers layers whose tensor
 * prefix is `prefix`: the adapted modules in layer order, then module order,
 * with their ranks and alphas (rank_pattern and alpha_pattern applied). */
typedef struct lmc_lora_plan_entry {
    int64_t layer;
    int module;
    int rank;     /* 1 .. 65536 */
    double alpha; /* > 0 */
} lmc_lora_plan_entry;
typedef struct lmc_lora_plan {
    lmc_lora_config cfg;       /* r, lora_alpha and lora_dropout (targets unset) */
    bool use_rslora;
    char *base_model;          /* base_model_name_or_path, or NULL */
    unsigned kinds;            /* a bit per module kind adapted somewhere */
    bool all_linear;           /* target_modules was "all-linear" */
    int n;                     /* >= 1 */
    lmc_lora_plan_entry *e;
} lmc_lora_plan;
/* Parses the config text (errors name path and the field; unsupported PEFT
 * features are LMC_ERR_UNSUPPORTED). *out is zeroed on failure. */
lmc_status lmc_lora_plan_parse(const char *path, const char *text, size_t len, const char *prefix, int64_t num_layers,
                               lmc_lora_plan *out);
void lmc_lora_plan_free(lmc_lora_plan *p);
/* The adapter's scale for an entry (alpha / rank, or alpha / sqrt(rank)). */
double lmc_lora_entry_scale(const lmc_lora *l, const lmc_lora_entry *e);

#endif
