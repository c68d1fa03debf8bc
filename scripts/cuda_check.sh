#!/bin/bash
# Runs on the GPU machine, in a copy of the repository that carries .gpu/
# (made by scripts/cuda_pack.sh): the CUDA backend's tests against the CPU,
# then decode and prefill figures of generated bench models on the GPU, and
# (--lookup) decode with and without prompt-lookup decoding.
#   usage: scripts/cuda_check.sh [--bench] [--lookup] [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
bench=0
lookup=0
if [ "${1:-}" = --bench ]; then bench=1; shift; fi
if [ "${1:-}" = --lookup ]; then lookup=1; shift; fi
out=${1:-${OUT:-/tmp}}
here=$(pwd)
tar -C .gpu -xJf .gpu/lmc.tar.xz && { [ -d .gpu/tokenizers ] || tar -C .gpu -xJf .gpu/tokenizers.tar.xz; } || exit 1
# The test binary names its data by the path it was built at.
built_at=$(strings .gpu/bin/test_cuda | grep -m1 '/tests/data$' | sed 's|/tests/data$||')
if [ -n "$built_at" ] && [ "$built_at" != "$here" ] && [ ! -e "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -s "$here" "$built_at"
fi
mkdir -p .cache && { [ -e .cache/tokenizers ] || ln -s "$here/.gpu/tokenizers" .cache/tokenizers; }
export LD_LIBRARY_PATH="$here/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LMC_CACHE_DIR=/tmp/lmc-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== test_cuda"
.gpu/bin/test_cuda 2>&1 | tee "$out/test_cuda.log" | grep -v '^ok '
rc=$?
echo "test_cuda exit: $rc"
if [ $lookup = 1 ]; then
    echo "== lookup decoding (GPU): 128 greedy tokens after a repeated sentence, plain then --lookup 3, twice"
    mkdir -p /tmp/m
    prompt=$(python3 -c "print(' '.join(['The quick brown fox jumps over the lazy dog.'] * 12))")
    for preset in qwen3-0.6b llama3.2-1b; do
        for q in "" --q4; do
            dir=/tmp/m/$preset${q:+-q4}
            [ -d "$dir" ] || .gpu/bin/lmc make-model --preset $preset $q -o "$dir" >/dev/null || exit 1
            for lk in 0 3 0 3; do
                .gpu/bin/lmc generate -m "$dir" --backend cuda -p "$prompt" --temperature 0 --max-tokens 128 --ignore-eos \
                    --lookup $lk --json 2>/dev/null | python3 -c "
import json, sys, hashlib
j = json.load(sys.stdin); m = j['metrics']
print('$preset${q:+ 4-bit} lookup $lk: decode %.1f tok/s, drafts %d, taken %d, ids %s' % (m['decode_tokens_per_second'],
      m['draft_tokens'], m['accepted_draft_tokens'], hashlib.md5(json.dumps(j['ids']).encode()).hexdigest()[:8]))" \
                    | tee -a "$out/lookup_cuda.log"
            done
        done
    done
fi
[ $bench = 1 ] || exit $rc
echo "== bench (GPU)"
mkdir -p /tmp/m
for preset in qwen3-0.6b llama3.2-1b gemma3-1b; do
    for q in "" --q4; do
        dir=/tmp/m/$preset${q:+-q4}
        .gpu/bin/lmc make-model --preset $preset $q -o "$dir" >/dev/null || exit 1
        .gpu/bin/lmc bench -m "$dir" -b cuda -p 512 -n 128 -r 5 2>&1 | tee -a "$out/bench_cuda.log" | grep -E '^\| [a-z]|GPU memory|GPU|lmc bench'
        if [ -z "$q" ]; then
            python3 scripts/bench_cuda_hf.py "$dir" 2>&1 | tee -a "$out/bench_cuda.log" | tail -1
        fi
    done
done
exit $rc
