/* Minimal use of the lmc C API: load a model folder and stream a greedy
 * continuation of a prompt.
 *
 *   build/example_generate MODEL_DIR "prompt text" [max_tokens]
 */
#include <lmc/lmc.h>
#include <stdio.h>
#include <stdlib.h>

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    (void)user;
    (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    lmc_model *m;
    if (lmc_model_load(argv[1], NULL, &m) != LMC_OK) {
        fprintf(stderr, "load failed: %s\n", lmc_last_error());
        return 1;
    }
    lmc_generate_options opt = lmc_generate_options_default();
    opt.max_tokens = argc > 3 ? atoi(argv[3]) : 32;
    opt.sampler.temperature = 0;
    opt.on_token = on_token;
    lmc_generation out;
    lmc_status s = lmc_generate(m, argv[2], &opt, &out);
    printf("\n");
    if (s != LMC_OK) fprintf(stderr, "generate failed: %s\n", lmc_last_error());
    else
        fprintf(stderr, "%lld prompt tokens, %lld generated (%s), %.1f tok/s decode\n",
                (long long)out.metrics.prompt_tokens, (long long)out.metrics.generated_tokens,
                lmc_stop_reason_name(out.stop_reason), out.metrics.decode_tokens_per_second);
    lmc_generation_clear(&out);
    lmc_model_free(m);
    return s == LMC_OK ? 0 : 1;
}
