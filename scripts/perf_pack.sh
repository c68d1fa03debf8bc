#!/bin/sh
# Packs this machine's `perf` with every library it loads and its own dynamic
# loader into .gpu/perf.tar.xz (ignored by git), for the GPU machine's host,
# which has no perf: carried there (run's carry [".gpu"]) and started through
# the packed loader it runs whatever glibc the host has. The VM there has no
# cycle counter; sample the task clock (perf's default event there):
#   mkdir -p /tmp/pf && tar -C /tmp/pf -xJf .gpu/perf.tar.xz
#   PERF="/tmp/pf/perf/lib/ld-linux-x86-64.so.2 --library-path /tmp/pf/perf/lib /tmp/pf/perf/perf"
#   $PERF record -F 1999 -o /tmp/p.data LMC_COMMAND...
#   $PERF report -i /tmp/p.data --no-children --sort symbol
# (symbols need an unstripped lmc: scripts/cpu_pack.sh strips its copy).
#   usage: scripts/perf_pack.sh
set -eu
cd "$(dirname "$0")/.."
perf=$(command -v perf)
stage=$(mktemp -d)
mkdir -p "$stage/perf/lib" .gpu
cp "$perf" "$stage/perf/perf"
for lib in $(ldd "$perf" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do cp -L "$lib" "$stage/perf/lib/"; done
tar -C "$stage" -cJf .gpu/perf.tar.xz perf
rm -rf "$stage"
du -sh .gpu/perf.tar.xz
