#!/bin/sh
# Builds lmc for the CPU (Release) with its tests here and packs what another
# x86-64 Linux machine needs to run the test suite and the bench round there
# into .gpu/cpu.tar.xz (ignored by git; name .gpu in the device call's carry).
# The GPU machine's host is a Xeon with AMX: the only AMX this project can
# reach, so the `amx` kernel path is tested there (every test runs each path
# the CPU has). scripts/cpu_check.sh unpacks and runs it.
#   usage: scripts/cpu_pack.sh [BUILD_DIR]   (default build-pack)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-pack}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
stage=$(mktemp -d)
mkdir -p "$stage/build" "$stage/lib" .gpu
# The runnable part of the build tree: the CLI, the library, the tests and
# CTest's files, which name the tree and the sources by the paths of this
# machine (cpu_check.sh links those paths there).
(cd "$build" && find . \( -name CTestTestfile.cmake -o -path './tests/test_*' -type f -o -name lmc -type f \
    -o -name 'liblmc.so*' \) -print | tar -cf - -T -) | tar -C "$stage/build" -xf -
strip "$stage/build/lmc" "$stage"/build/tests/test_* 2>/dev/null || true
(cd "$build" && pwd -P) > "$stage/BUILT_AT"
pwd -P > "$stage/SOURCE_AT"
for lib in $(ldd "$build/lmc" "$build"/tests/test_* | awk '/=>/ {print $3}' | sort -u); do
    case "$lib" in
    */libc.so*|*/libm.so*|*/libpthread*|*/libdl*|*/librt*|*/libgcc_s*|*/libstdc++*|*/liblmc.so*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
    esac
done
tar -C "$stage" -cJf .gpu/cpu.tar.xz build lib BUILT_AT SOURCE_AT
rm -rf "$stage"
[ -f .gpu/tokenizers.tar.xz ] || tar -C .cache -cJf .gpu/tokenizers.tar.xz tokenizers
du -sh .gpu/*
