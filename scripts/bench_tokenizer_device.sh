#!/usr/bin/env bash
# Tokenizer benchmark, lmc beside the Hugging Face tokenizers library, on a
# machine that cannot build lmc (the GPU machine: x86-64, Python 3 with
# tokenizers, no -dev packages, no internet).
#
# Two steps:
#
# 1. On the build machine, after `cmake --build build`:
#        scripts/bench_tokenizer_device.sh pack [PACK]      (PACK: build-tokbench)
#    copies into PACK/ (ignored by git, as every /build*/ folder is):
#        PACK/lmc                               build/lmc (liblmc is linked in)
#        PACK/lib/libcjson.so.1, libpcre2-8.so.0, libutf8proc.so.2
#                                               the shared libraries it needs,
#                                               as ldd resolves them here
#        PACK/tokenizers/{gemma3,llama3_1,qwen3}/tokenizer.json.gz, tokenizer_config.json.gz
#                                               from .cache/tokenizers (links followed),
#                                               gzipped: run's carry takes at most
#                                               64 MiB with the working tree
#    about 11 MB in all.
#
# 2. On the device, from the repository root, carrying exactly that folder
#    (PACK must be inside the checkout that run copies; carry: ["build-tokbench"]):
#        scripts/bench_tokenizer_device.sh run [PACK]
#    It checks that PACK/lmc runs with LD_LIBRARY_PATH=PACK/lib and that
#    Python imports tokenizers (exits 1 with the reason when not), unpacks the
#    tokenizer files into PACK/unpacked/, writes the benchmark text with
#    scripts/make_bench_text.py (from tracked files), runs
#    `lmc bench tokenizer` and scripts/bench_tokenizer_hf.py with
#    RAYON_NUM_THREADS=1 over the same text for the three tokenizers, and
#    prints one table: encode MB/s of both and their ratio, load ms of both,
#    and the token counts, which must be equal (exit 1 when they are not).
#    The raw JSON lines are kept in PACK/results/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
names="gemma3 llama3_1 qwen3"
libs="libcjson.so.1 libpcre2-8.so.0 libutf8proc.so.2"
fail() { echo "bench_tokenizer_device: $*" >&2; exit 1; }
# gzip through Python, which both machines have.
gz() { python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(open(sys.argv[1], "rb"), gzip.open(sys.argv[2], "wb", 6))' "$1" "$2"; }
gunz() { python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1], "rb"), open(sys.argv[2], "wb"))' "$1" "$2"; }

mode=${1:-}
pack=${2:-build-tokbench}
case "$pack" in /*) ;; *) pack="$root/$pack" ;; esac

if [ "$mode" = pack ]; then
    [ -x "$root/build/lmc" ] || fail "build/lmc not found: build first (cmake --build build)"
    rm -rf "$pack"
    mkdir -p "$pack/lib"
    cp "$root/build/lmc" "$pack/lmc"
    for l in $libs; do
        src=$(ldd "$root/build/lmc" | awk -v l="$l" '$1 == l { print $3 }')
        [ -n "$src" ] && [ -f "$src" ] || fail "ldd does not resolve $l for build/lmc"
        cp -L "$src" "$pack/lib/$l"
    done
    for n in $names; do
        [ -f "$root/.cache/tokenizers/$n/tokenizer.json" ] || fail ".cache/tokenizers/$n missing (scripts/fetch_tokenizers.sh)"
        mkdir -p "$pack/tokenizers/$n"
        for f in tokenizer.json tokenizer_config.json; do gz "$root/.cache/tokenizers/$n/$f" "$pack/tokenizers/$n/$f.gz"; done
    done
    echo "packed $(du -sh "$pack" | cut -f1) into $pack; on the device: scripts/bench_tokenizer_device.sh run $(basename "$pack")"
    exit 0
fi
[ "$mode" = run ] || fail "usage: $0 pack|run [PACK]"

# --- checks: each failure says what is wrong ---
[ -d "$pack" ] || fail "$pack not found: carry the folder made by '$0 pack'"
[ -x "$pack/lmc" ] || fail "$pack/lmc missing or not executable"
for l in $libs; do [ -f "$pack/lib/$l" ] || fail "$pack/lib/$l missing"; done
export LD_LIBRARY_PATH="$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! "$pack/lmc" bench --help >/dev/null 2>"$pack/lmc.err"; then
    echo "bench_tokenizer_device: $pack/lmc does not run here:" >&2
    cat "$pack/lmc.err" >&2
    ldd "$pack/lmc" >&2 || true
    exit 1
fi
python3 -c "import tokenizers" 2>/dev/null || fail "python3 cannot import tokenizers"
dirs=()
for n in $names; do
    mkdir -p "$pack/unpacked/$n"
    for f in tokenizer.json tokenizer_config.json; do
        [ -f "$pack/tokenizers/$n/$f.gz" ] || fail "$pack/tokenizers/$n/$f.gz missing"
        gunz "$pack/tokenizers/$n/$f.gz" "$pack/unpacked/$n/$f" || fail "cannot unpack $pack/tokenizers/$n/$f.gz"
    done
    dirs+=("$pack/unpacked/$n")
done

# --- the text and the two benchmarks ---
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
out="$pack/results"
mkdir -p "$out"
python3 "$root/scripts/make_bench_text.py" "$out/bench.txt"
margs=()
for d in "${dirs[@]}"; do margs+=(-m "$d"); done
"$pack/lmc" bench tokenizer --json "${margs[@]}" "$out/bench.txt" > "$out/lmc.jsonl" || fail "lmc bench tokenizer failed"
python3 "$root/scripts/bench_tokenizer_hf.py" --json "$out/bench.txt" "${dirs[@]}" > "$out/hf.jsonl" || fail "bench_tokenizer_hf.py failed"

python3 - "$out/lmc.jsonl" "$out/hf.jsonl" <<'EOF'
import json, sys
def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]
lmc, hf = rows(sys.argv[1]), rows(sys.argv[2])
m = next(r for r in lmc if r["bench"] == "machine")
hm = next(r for r in hf if r["bench"] == "machine")
text = next(r for r in lmc if r["bench"] == "text")
print(f"machine: {m['cpu']}, {m['cpus']} cpus, load average {m['loadavg']:.2f}; lmc {m['version']}, "
      f"tokenizers {hm['tokenizers']} (RAYON_NUM_THREADS={hm['rayon_threads']}); one thread each")
print(f"text: {text['bytes'] / 1e6:.2f} MB in {text['chunks']} chunks; load: median of 5; encode: median of 5 passes")
print()
print(f"{'tokenizer':<10} {'lmc MB/s':>9} {'HF MB/s':>9} {'ratio':>6}   {'lmc load ms':>11} {'HF load ms':>10}   {'tokens lmc / HF':>21}")
hrows = {r["name"]: r for r in hf if r["bench"] == "tokenizer"}
bad = False
for r in (r for r in lmc if r["bench"] == "tokenizer"):
    h = hrows[r["name"]]
    same = r["tokens"] == h["tokens"]
    bad |= not same
    print(f"{r['name']:<10} {r['encode_mbps']:9.2f} {h['encode_mbps']:9.2f} {r['encode_mbps'] / h['encode_mbps']:5.2f}x"
          f"   {r['load_ms']:11.1f} {h['load_ms']:10.1f}   {r['tokens']:>9} / {h['tokens']:<9}{'' if same else ' MISMATCH'}")
if bad:
    print("token counts differ: lmc and HF do not encode the text the same way", file=sys.stderr)
    sys.exit(1)
EOF
