#!/usr/bin/env bash
# Builds lmc twice (Release, and Debug with ASan+UBSan), runs every ctest
# test in both, then runs every fuzzer briefly (scripts/fuzz_smoke.sh) when clang is present.
# Usage: scripts/test.sh [--quick]   (--quick: Release build only)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)
scripts/fetch_tokenizers.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [ "${1:-}" != "--quick" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLMC_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
  if [ -x scripts/fuzz_smoke.sh ] && command -v clang >/dev/null 2>&1; then
    scripts/fuzz_smoke.sh "${LMC_FUZZ_SECONDS:-30}"
  fi
fi
