#!/usr/bin/env python3
"""Load time and single-threaded encode throughput of the Hugging Face
tokenizers library, measured exactly as `lmc bench tokenizer`
(bench/bench_tokenizer.c) measures lmc, for a side-by-side comparison on the
same machine and the same text file.

usage: RAYON_NUM_THREADS=1 python3 scripts/bench_tokenizer_hf.py [--json] TEXT_FILE DIR [DIR...]

Each DIR holds a tokenizer.json. Load: Tokenizer.from_file, median of LOADS.
Encode: the text is cut into chunks of at least CHUNK bytes that end after a
"\\n", one encode(chunk, add_special_tokens=False) call per chunk; MB/s of
the median of PASSES passes over the whole text. With --json, one JSON
object per line (the same fields as lmc's --json lines).
"""
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers  # noqa: E402

CHUNK = 4096
LOADS = 5
PASSES = 5


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
    if cur and cur != [""]:
        out.append("".join(cur))
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    args = sys.argv[1:]
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(args[0], encoding="utf-8", newline="") as f:  # keep "\r\n" as lmc reads it
        text = f.read()
    nbytes = len(text.encode("utf-8"))
    parts = chunks(text)
    machine = {"bench": "machine", "cpu": cpu_model(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()[0],
               "tokenizers": tokenizers.__version__, "rayon_threads": os.environ.get("RAYON_NUM_THREADS")}
    if as_json:
        print(json.dumps(machine))
        print(json.dumps({"bench": "text", "file": args[0], "bytes": nbytes, "chunks": len(parts)}))
    else:
        print(f"machine: {machine['cpu']}, {machine['cpus']} cpus, load average {machine['loadavg']:.2f} "
              f"(tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS={machine['rayon_threads']})")
        print(f"text: {args[0]}, {nbytes / 1e6:.2f} MB in {len(parts)} chunks; load: median of {LOADS}, "
              f"encode: median of {PASSES} passes")
    for d in args[1:]:
        path = os.path.join(d, "tokenizer.json")
        loads = []
        for _ in range(LOADS):
            t0 = time.perf_counter()
            tok = tokenizers.Tokenizer.from_file(path)
            loads.append(time.perf_counter() - t0)
        rates, ntok = [], 0
        for _ in range(PASSES):
            t0 = time.perf_counter()
            ntok = sum(len(tok.encode(p, add_special_tokens=False).ids) for p in parts)
            rates.append(nbytes / (time.perf_counter() - t0) / 1e6)
        name = os.path.basename(os.path.normpath(d))
        load_ms, mbps = statistics.median(loads) * 1e3, statistics.median(rates)
        if as_json:
            print(json.dumps({"bench": "tokenizer", "name": name, "load_ms": round(load_ms, 1), "encode_mbps": round(mbps, 3),
                              "tokens": ntok, "bytes": nbytes, "threads": 1}))
        else:
            print(f"{name:<10} load {load_ms:7.1f} ms   encode {mbps:7.2f} MB/s   {ntok} tokens")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
