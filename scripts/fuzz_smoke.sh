#!/usr/bin/env bash
# Builds the fuzzers with clang (libFuzzer + ASan + UBSan) and runs each for
# N seconds (default 60) from its seed corpus:
#   fuzz_safetensors      fuzz/corpus/safetensors, fuzz/safetensors.dict
#   fuzz_tokenizer_json   fuzz/corpus/tokenizer_json, fuzz/tokenizer_json.dict
#   fuzz_tokenizer_cache  fuzz/corpus/tokenizer_cache, fuzz/tokenizer_cache.dict
#   fuzz_server_request   fuzz/corpus/server_request, fuzz/server_request.dict
#   fuzz_json_constraint  fuzz/corpus/json_constraint, fuzz/json_constraint.dict
#   fuzz_json_schema      fuzz/corpus/json_schema, fuzz/json_schema.dict
#   fuzz_json_mask        fuzz/corpus/json_mask, fuzz/json_mask.dict
#   fuzz_jinja            fuzz/corpus/jinja, fuzz/jinja.dict
#   fuzz_model_config     fuzz/corpus/model_config, fuzz/model_config.dict
#   fuzz_reply            fuzz/corpus/reply, fuzz/reply.dict
#   fuzz_tokenize         fuzz/corpus/tokenize, fuzz/tokenize.dict (the real
#                         tokenizers of .cache/tokenizers: scripts/fetch_tokenizers.sh)
#   fuzz_dataset          fuzz/corpus/dataset, fuzz/dataset.dict (LoRA training
#                         JSONL with the tiny Qwen 3 golden model)
#   fuzz_generation_config fuzz/corpus/generation_config, fuzz/generation_config.dict
#   fuzz_adapter_config   fuzz/corpus/adapter_config, fuzz/adapter_config.dict
#   fuzz_bridge           fuzz/corpus/bridge, fuzz/bridge.dict (a subprocess
#                         bridge's stdout lines)
# Exits non-zero when the build fails or a fuzzer finds a crash, leak or
# timeout; the input that triggered it is saved under build-fuzz/artifacts/.
#   scripts/fuzz_smoke.sh [seconds]      (LMC_FUZZ_BUILD overrides build-fuzz)
set -euo pipefail

secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LMC_FUZZ_BUILD:-$root/build-fuzz}
targets="safetensors tokenizer_json tokenizer_cache server_request json_constraint json_schema json_mask jinja model_config reply tokenize dataset generation_config adapter_config bridge"

command -v clang >/dev/null || { echo "fuzz_smoke: clang not found" >&2; exit 1; }
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMC_FUZZ=ON >/dev/null
for t in $targets; do cmake --build "$build" -j2 --target "fuzz_$t"; done

# New inputs go to scratch corpora; the seeds in the tree stay as they are.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/artifacts"
export LMC_FUZZ_TOKENIZERS="$root/.cache/tokenizers" LMC_FUZZ_MODELS="$root/tests/data/models"
for t in $targets; do
    mkdir -p "$work/$t"
    "$build/fuzz/fuzz_$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -dict="$root/fuzz/$t.dict" -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 \
        "$work/$t" "$root/fuzz/corpus/$t"
    echo "fuzz_smoke: fuzz_$t: no crash in ${secs}s"
done
