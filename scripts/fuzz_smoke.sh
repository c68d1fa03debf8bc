#!/usr/bin/env bash
# Builds the safetensors fuzzer with clang (libFuzzer + ASan + UBSan) and runs
# it for N seconds (default 60) from the seed corpus in fuzz/corpus/safetensors.
# Exits non-zero when the build fails or the fuzzer finds a crash, leak or
# timeout; the input that triggered it is saved under build-fuzz/artifacts/.
#   scripts/fuzz_smoke.sh [seconds]      (LMC_FUZZ_BUILD overrides build-fuzz)
set -euo pipefail

secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LMC_FUZZ_BUILD:-$root/build-fuzz}

command -v clang >/dev/null || { echo "fuzz_smoke: clang not found" >&2; exit 1; }
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMC_FUZZ=ON >/dev/null
cmake --build "$build" -j2 --target fuzz_safetensors

# New inputs go to a scratch corpus; the seeds in the tree stay as they are.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/artifacts"
"$build/fuzz/fuzz_safetensors" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -dict="$root/fuzz/safetensors.dict" -artifact_prefix="$build/artifacts/" -print_final_stats=1 \
    "$work" "$root/fuzz/corpus/safetensors"
echo "fuzz_smoke: no crash in ${secs}s"
