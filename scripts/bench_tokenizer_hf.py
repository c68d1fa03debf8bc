#!/usr/bin/env python3
"""Encode throughput of the Hugging Face tokenizers library, single-threaded,
for comparison with `bench_tokenizer` (bench/bench_tokenizer.c) on the same
machine and the same text file.

usage: RAYON_NUM_THREADS=1 python3 scripts/bench_tokenizer_hf.py TEXT_FILE DIR [DIR...]

Each DIR holds a tokenizer.json. The text is encoded in chunks of about
CHUNK bytes (split after a "\\n"), one call per chunk, as lmc's bench does;
the best of REPEAT passes is reported, plus the load time of tokenizer.json.
"""
import os
import platform
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers  # noqa: E402

CHUNK = 4096
REPEAT = 3


def chunks(text):
    out, cur, size = [], [], 0
    lines = [l + "\n" for l in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    for line in lines:
        cur.append(line)
        size += len(line.encode("utf-8"))
        if size >= CHUNK:
            out.append("".join(cur))
            cur, size = [], 0
    if cur:
        out.append("".join(cur))
    return out


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    text = open(sys.argv[1], encoding="utf-8").read()
    nbytes = len(text.encode("utf-8"))
    parts = chunks(text)
    print(f"machine: {platform.processor() or platform.machine()} {os.cpu_count()} cpus; tokenizers {tokenizers.__version__}")
    print(f"text: {sys.argv[1]}, {nbytes / 1e6:.2f} MB in {len(parts)} chunks")
    for d in sys.argv[2:]:
        t0 = time.perf_counter()
        tok = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        load = time.perf_counter() - t0
        best, ntok = float("inf"), 0
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            ntok = sum(len(tok.encode(p, add_special_tokens=False).ids) for p in parts)
            best = min(best, time.perf_counter() - t0)
        print(f"{os.path.basename(os.path.normpath(d))}: load {load * 1e3:.0f} ms, encode {nbytes / best / 1e6:.2f} MB/s, {ntok} tokens")


if __name__ == "__main__":
    main()
