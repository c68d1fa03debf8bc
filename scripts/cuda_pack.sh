#!/bin/sh
# Builds lmc with the CUDA backend here (nvcc needs no GPU) and packs what the
# GPU machine needs to run it into .gpu/ (ignored by git): the CUDA test, the
# CLI, and the shared libraries the project depends on that a bare CUDA image
# may lack. scripts/cuda_check.sh runs them there.
#   usage: scripts/cuda_pack.sh [BUILD_DIR]   (default build-cuda)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-cuda}
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLMC_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
cmake --build "$build" -j"$(nproc)" --target test_cuda lmc_cli
rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
cp "$build/tests/test_cuda" "$build/lmc" .gpu/bin/
for lib in $(ldd "$build/tests/test_cuda" "$build/lmc" | awk '/=>/ {print $3}' | sort -u); do
    case "$lib" in
    */libc.so*|*/libm.so*|*/libpthread*|*/libdl*|*/librt*|*/libgcc_s*|*/libstdc++*|*cublas*|*cudart*) ;;
    *) cp -L "$lib" .gpu/lib/ ;;
    esac
done
cp -r .cache/tokenizers .gpu/tokenizers
du -sh .gpu
