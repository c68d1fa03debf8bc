#!/bin/sh
# Builds lmc with the CUDA backend here (nvcc needs no GPU) and packs what the
# GPU machine needs to run it into .gpu/ (ignored by git; name it in the
# device call's carry): the CUDA test, the CLI, the shared libraries the
# project depends on that a bare CUDA image may lack, and the tokenizers.
# scripts/cuda_check.sh unpacks and runs them there.
#   usage: scripts/cuda_pack.sh [BUILD_DIR]   (default build-cuda)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-cuda}
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLMC_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
cmake --build "$build" -j"$(nproc)" --target test_cuda lmc_cli >/dev/null
# Compressed: the device call carries at most 64 MiB with the repository.
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib" .gpu
cp "$build/tests/test_cuda" "$build/lmc" "$stage/bin/"
strip "$stage"/bin/*
for lib in $(ldd "$build/tests/test_cuda" "$build/lmc" | awk '/=>/ {print $3}' | sort -u); do
    case "$lib" in
    */libc.so*|*/libm.so*|*/libpthread*|*/libdl*|*/librt*|*/libgcc_s*|*/libstdc++*|*cublas*|*cudart*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
    esac
done
tar -C "$stage" -cJf .gpu/lmc.tar.xz bin lib
rm -rf "$stage"
[ -f .gpu/tokenizers.tar.xz ] || tar -C .cache -cJf .gpu/tokenizers.tar.xz tokenizers
du -sh .gpu/*
