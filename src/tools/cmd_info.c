/* lmc info: what a model folder holds. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "lmc/lora.h"
#include "tools/cli.h"
#include "tools/cli_options.h"

int cmd_info(int argc, char **argv) {
    lmc_cli_gen g;
    lmc_cli_gen_init(&g);
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r = lmc_cli_gen_option("info", &g, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lmc info -m DIR [--json] [--adapter DIR] [--backend NAME --bridge CMD ...]\n%s", lmc_cli_gen_usage);
            return 0;
        } else {
            fprintf(stderr, "lmc info: unknown argument '%s'\nusage: lmc info -m DIR [--json]\n", argv[i]);
            return 2;
        }
    }
    lmc_model *m = lmc_cli_load_model("info", &g);
    if (!m) return 1;
    lmc_model_info in;
    if (lmc_model_get_info(m, &in) != LMC_OK) {
        fprintf(stderr, "lmc info: %s\n", lmc_last_error());
        lmc_model_free(m);
        return 1;
    }
    const lmc_lora *ad = lmc_model_adapter(m);
    lmc_lora_config ac = lmc_lora_get_config(ad);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "architecture", in.architecture);
        cJSON_AddNumberToObject(o, "vocab_size", (double)in.vocab_size);
        cJSON_AddNumberToObject(o, "num_layers", (double)in.num_layers);
        cJSON_AddNumberToObject(o, "hidden_size", (double)in.hidden_size);
        cJSON_AddNumberToObject(o, "intermediate_size", (double)in.intermediate_size);
        cJSON_AddNumberToObject(o, "num_heads", (double)in.num_heads);
        cJSON_AddNumberToObject(o, "num_kv_heads", (double)in.num_kv_heads);
        cJSON_AddNumberToObject(o, "head_dim", (double)in.head_dim);
        cJSON_AddNumberToObject(o, "context_length", (double)in.context_length);
        cJSON_AddNumberToObject(o, "sliding_window", (double)in.sliding_window);
        cJSON_AddNumberToObject(o, "quant_bits", in.quant_bits);
        cJSON_AddNumberToObject(o, "quant_group_size", in.quant_group_size);
        if (in.activation_bits) cJSON_AddNumberToObject(o, "activation_bits", in.activation_bits);
        cJSON_AddNumberToObject(o, "num_parameters", (double)in.num_parameters);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)in.weight_bytes);
        cJSON_AddStringToObject(o, "dtype", in.dtype);
        cJSON *smp = cJSON_AddObjectToObject(o, "sampling");
        cJSON_AddNumberToObject(smp, "temperature", in.sampler.temperature);
        cJSON_AddNumberToObject(smp, "top_k", in.sampler.top_k);
        cJSON_AddNumberToObject(smp, "top_p", in.sampler.top_p);
        cJSON_AddNumberToObject(smp, "min_p", in.sampler.min_p);
        cJSON_AddNumberToObject(smp, "repeat_penalty", in.sampler.repeat_penalty);
        if (ad) {
            cJSON *a = cJSON_AddObjectToObject(o, "adapter");
            cJSON_AddStringToObject(a, "path", g.load.adapter_dir);
            cJSON_AddNumberToObject(a, "rank", ac.rank);
            cJSON_AddNumberToObject(a, "alpha", ac.alpha);
            cJSON_AddStringToObject(a, "targets", ac.targets);
            cJSON_AddStringToObject(a, "dtype", lmc_dtype_name(ac.dtype));
            cJSON_AddNumberToObject(a, "num_parameters", (double)lmc_lora_num_elements(ad));
        }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s ? s : "{}");
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("architecture      %s\n", in.architecture);
        printf("parameters        %lld (%.2f B)\n", (long long)in.num_parameters, (double)in.num_parameters / 1e9);
        printf("weights           %.1f MB (%s%s)\n", (double)in.weight_bytes / 1e6, in.dtype,
               in.quant_bits ? ", MLX-quantised" : "");
        if (in.quant_bits)
            printf("quantisation      %d-bit, group size %d%s\n", in.quant_bits, in.quant_group_size,
                   in.activation_bits == 8 ? "; activations int8 (per block of 64)"
                   : in.activation_bits    ? "; activations exact"
                                           : "");
        printf("layers            %lld\n", (long long)in.num_layers);
        printf("hidden size       %lld (intermediate %lld)\n", (long long)in.hidden_size, (long long)in.intermediate_size);
        printf("attention heads   %lld (key/value heads %lld, head dim %lld)\n", (long long)in.num_heads,
               (long long)in.num_kv_heads, (long long)in.head_dim);
        printf("vocabulary        %lld\n", (long long)in.vocab_size);
        printf("context length    %lld\n", (long long)in.context_length);
        if (in.sliding_window) printf("sliding window    %lld\n", (long long)in.sliding_window);
        printf("sampling          temperature %g, top-k %d, top-p %g, min-p %g, repeat penalty %g\n", in.sampler.temperature,
               in.sampler.top_k, in.sampler.top_p, in.sampler.min_p, in.sampler.repeat_penalty);
        if (ad)
            printf("LoRA adapter      %s: rank %d, alpha %g, %s (%s, %lld parameters)\n", g.load.adapter_dir, ac.rank,
                   ac.alpha, ac.targets, lmc_dtype_name(ac.dtype), (long long)lmc_lora_num_elements(ad));
    }
    lmc_model_free(m);
    return 0;
}
