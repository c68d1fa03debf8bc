#!/bin/bash
# Runs on another x86-64 machine (the GPU machine's host CPU), in a copy of
# the repository that carries .gpu/ (made by scripts/cpu_pack.sh): the CPU
# test suite, each test over every kernel path the CPU has (AMX included
# where it has AMX), then issue 8's bench round (scripts/bench_round.py)
# and the batch bench on two CPUs of different physical cores: --bench on
# the MLX 4-bit bench models, --bench-bf16 on the bf16 ones; --ops instead
# times the 4-bit models' decoder ops (lmc bench --ops) at one and two
# threads, exact and int8 activations: what fails to halve is serial.
#   usage: scripts/cpu_check.sh [--no-tests] [--bench | --bench-bf16 | --ops] [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
tests=1
bench=
if [ "${1:-}" = --no-tests ]; then tests=0; shift; fi
ops=0
case "${1:-}" in --bench) bench=q4; shift ;; --bench-bf16) bench=bf16; shift ;; --ops) bench=q4 ops=1; shift ;; esac
out=${1:-${OUT:-/tmp}}
here=$(pwd -P)
mkdir -p .gpu/cpu && tar -C .gpu/cpu -xJf .gpu/cpu.tar.xz || exit 1
{ [ -d .gpu/tokenizers ] || tar -C .gpu -xJf .gpu/tokenizers.tar.xz; } || exit 1
# The build tree and its tests name the sources and the tree by the paths
# they were built at: make those paths lead here.
src_at=$(cat .gpu/cpu/SOURCE_AT)
built_at=$(cat .gpu/cpu/BUILT_AT)
if [ "$src_at" != "$here" ] && [ ! -e "$src_at" ]; then
    mkdir -p "$(dirname "$src_at")" && ln -s "$here" "$src_at"
fi
[ -e "$built_at" ] || ln -s "$here/.gpu/cpu/build" "$built_at"
mkdir -p .cache && { [ -e .cache/tokenizers ] || ln -s "$here/.gpu/tokenizers" .cache/tokenizers; }
export LD_LIBRARY_PATH="$here/.gpu/cpu/lib:$built_at:${LD_LIBRARY_PATH:-}"
lmc=$built_at/lmc
# two CPUs on different physical cores (the issue's machine: two cores)
cpus=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3)' | sed 's/  */ /g'
grep -o -w -E 'amx_(tile|int8|bf16)|avx512_bf16|avx512_vnni' /proc/cpuinfo | sort | uniq -c | awk '{printf "%s ", $2} END {print ""}'
rc=0
if [ $tests = 1 ]; then
    echo "== tests (ctest, $(nproc) jobs)"
    ctest --test-dir "$built_at" -j"$(nproc)" --output-on-failure -E '^test_cuda$' 2>&1 | tee "$out/cpu_tests.log" |
        grep -E 'tests passed|tests failed|Failed|\*\*\*|cpu path' | head -40
    rc=${PIPESTATUS[0]}
    echo "ctest exit: $rc"
fi
[ -n "$bench" ] || exit $rc
models=/tmp/m-$bench
mkdir -p "$models"
for preset in qwen3-0.6b:qwen3 llama3.2-1b:llama gemma3-1b:gemma3; do
    p=${preset%%:*} dir=$models/${preset##*:}-$bench
    [ -d "$dir" ] || "$lmc" make-model --preset "$p" $([ "$bench" = q4 ] && echo --q4) -o "$dir" >/dev/null || exit 1
done
if [ $ops = 1 ]; then
    for m in qwen3 llama gemma3; do
        for run in "-t 1" "-t 2" "-t 2 --activation-bits 8"; do
            echo "== $m $run, CPUs $cpus"
            taskset -c "$cpus" "$lmc" bench -m "$models/$m-q4" -p 512 -n 128 -r 2 $run --ops 2>&1
        done
    done 2>&1 | tee "$out/cpu_ops.log"
    exit $rc
fi
echo "== bench round ($bench), CPUs $cpus"
taskset -c "$cpus" python3 scripts/bench_round.py --lmc "$lmc" --models "$models" --threads 1,2 --reps 2 --no-batch 2>&1 |
    tee "$out/cpu_bench_$bench.log"
echo "== batch (qwen3 $bench), CPUs $cpus"
taskset -c "$cpus" "$lmc" bench batch -m "$models/qwen3-$bench" -t 2 --only generate 2>&1 | tee -a "$out/cpu_bench_$bench.log"
exit $rc
