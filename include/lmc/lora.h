/* lmc/lora.h — LoRA adapters: attach, train-time loss and gradients, PEFT
 * files, merge.
 *
 * A LoRA adapter adds to a chosen Linear (float or MLX-quantised, whose
 * weights stay frozen and stay quantised) a low-rank update:
 *
 *     y = base(x) + scale * (dropout(x) @ Aᵀ) @ Bᵀ,   scale = alpha / rank
 *
 * with A [rank, in] and B [out, rank], exactly as PEFT's LoraLayer. New
 * adapters start as PEFT's do: A Kaiming-uniform (a = sqrt(5)), B zero, so the
 * model's outputs are unchanged until training moves B.
 *
 * Files are PEFT's: a folder with adapter_config.json ("peft_type": "LORA",
 * "r", "lora_alpha", "lora_dropout", "target_modules", "bias": "none",
 * "task_type": "CAUSAL_LM") and adapter_model.safetensors holding
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight  [r, in]
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight  [out, r]
 * (mlp.gate_proj / up_proj / down_proj likewise), so adapters move between
 * lmc and Python both ways.
 *
 * An adapter set belongs to one model: while it exists the model's forward
 * passes (generation, logits, batches) include it. lmc_lora_free detaches it.
 * Attaching and detaching must not race with forward passes on other
 * threads; an optimiser updating the parameters in place must not either.
 *
 * Reading PEFT folders: target_modules may be a list of module names (a
 * module is adapted when its full name, e.g. model.layers.3.self_attn.q_proj,
 * equals an entry or ends with "." + entry) or "all-linear";
 * layers_to_transform, use_rslora (scale alpha / sqrt(r)), and rank_pattern /
 * alpha_pattern keyed by plain names are honoured. Regular-expression
 * targets or patterns, use_dora, bias other than "none", modules_to_save,
 * fan_in_fan_out and the other features lmc lacks are errors naming the
 * file and field. A and B keep the file's dtype (f32 or bf16; f16 is read
 * as f32).
 */
#ifndef LMC_LORA_H
#define LMC_LORA_H

#include "lmc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_lora_config {
    int rank;            /* 8 */
    double alpha;        /* 16; scale = alpha / rank */
    double dropout;      /* 0; applied to the adapter's input while training */
    /* Comma-separated module names among q_proj, k_proj, v_proj, o_proj,
     * gate_proj, up_proj, down_proj, or "all-linear" for all seven.
     * Default "q_proj,v_proj". */
    const char *targets;
    lmc_dtype dtype;     /* of A and B: LMC_F32 (default) or LMC_BF16 */
    uint64_t seed;       /* initialisation of A, and dropout masks (0) */
} lmc_lora_config;
LMC_API lmc_lora_config lmc_lora_config_default(void);

typedef struct lmc_lora lmc_lora;

/* Attaches fresh adapters (A random, B zero) to every targeted layer of a
 * native model. Errors: an unknown target name, rank < 1, a model that
 * already has an adapter set, a backend without a native decoder. */
LMC_API lmc_status lmc_lora_create(lmc_model *m, const lmc_lora_config *cfg, lmc_lora **out);
/* Attaches the adapter in a PEFT folder (errors name the file, the tensor
 * and the shape expected; tensors for modules the model lacks, or that the
 * config does not target, are errors). The set is the caller's. */
LMC_API lmc_status lmc_lora_load(lmc_model *m, const char *dir, lmc_lora **out);
/* Writes adapter_config.json and adapter_model.safetensors into dir
 * (created if missing), replacing files atomically (temp file + rename). */
LMC_API lmc_status lmc_lora_save(const lmc_lora *l, const char *dir);
/* Detaches the adapters from their model and frees them. A set the caller
 * created or loaded may outlive its model: closing the model detaches it,
 * and it can then only be saved, inspected and freed. */
LMC_API void lmc_lora_free(lmc_lora *l);
/* The adapter set attached to a model (borrowed; NULL when none), e.g. the
 * one loaded through lmc_load_options.adapter_dir, which the model owns. */
LMC_API const lmc_lora *lmc_model_adapter(const lmc_model *m);

/* The configuration in use (targets as a canonical comma list). */
LMC_API lmc_lora_config lmc_lora_get_config(const lmc_lora *l);
/* The trainable arrays, A then B of each adapted layer in layer order
 * (borrowed; updated in place by an optimiser), and their PEFT names. */
LMC_API int lmc_lora_num_params(const lmc_lora *l);
LMC_API lmc_array *const *lmc_lora_params(const lmc_lora *l);
LMC_API const char *lmc_lora_param_name(const lmc_lora *l, int i);
/* Total trainable elements. */
LMC_API int64_t lmc_lora_num_elements(const lmc_lora *l);

/* Causal-LM loss of a batch and its gradients with respect to every LoRA
 * parameter. ids, targets: i32 [B, T]; mask: [B, T] (1 = learn, any
 * integer/bool/float type; NULL = all). The logits at position t score
 * targets[b, t] (the caller shifts). The loss is the mask-weighted mean
 * token cross-entropy (lmc_cross_entropy). grads gets lmc_lora_num_params
 * new f32 arrays, in lmc_lora_params order (may be NULL: loss only, no
 * recording). The pass uses no KV cache: positions 0..T-1, causal (and
 * sliding-window) attention, so right padding leaves real positions alone. Dropout is applied
 * when training is true; gradient checkpointing per decoder layer when
 * checkpoint is true (same loss and gradients, lower peak memory). */
typedef struct lmc_lora_step_options {
    bool training;       /* true: dropout on */
    bool checkpoint;     /* false */
    uint64_t dropout_seed; /* varies the dropout masks per step */
} lmc_lora_step_options;
LMC_API lmc_lora_step_options lmc_lora_step_options_default(void);
LMC_API lmc_status lmc_lora_loss_and_grad(lmc_lora *l, const lmc_array *ids, const lmc_array *targets,
                                          const lmc_array *mask, const lmc_lora_step_options *opt, double *loss,
                                          lmc_array **grads);

/* Writes a new checkpoint folder: the base weights with every adapter merged
 * (W + scale * B @ A, rounded once to bf16; quantised layers are dequantised
 * first, so the result is a bf16 model), config.json without the
 * quantization entries, and the tokenizer files copied. out_dir must not be
 * the model's own folder. Weights up to 2 GiB go into one
 * model.safetensors; more into files of about 2 GiB named by
 * model.safetensors.index.json, computed and written one file at a time, so
 * fusing needs about one file's memory whatever the model's size. */
LMC_API lmc_status lmc_lora_fuse(const lmc_lora *l, const char *out_dir);

#ifdef __cplusplus
}
#endif
#endif
