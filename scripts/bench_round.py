#!/usr/bin/env python3
"""One round of issue 8's CPU measurements, printed as the Markdown tables of
bench/RESULTS.md.

For each bench model folder present under --models (names as made by
`lmc make-model --preset qwen3-0.6b|llama3.2-1b|gemma3-1b [--q4]`), and each
thread count: `lmc bench -m DIR -t T -r R --json` (pp512 and tg128 beside the
read bandwidth measured by the same run, and the calling thread's share of
the time spent outside the parallel regions) and `lmc bench -m DIR --ttft -t T
--json` twice, in a tokenizer cache folder of the round's own (LMC_CACHE_DIR):
first with no cache file (cold: the load parses tokenizer.json and writes the
cache), then with it (warm, as every later start of the model); then `lmc bench batch --only generate` on the Qwen3 models. The load
average is printed before every run: figures from a busy machine are not
comparable (read the tokens per CPU-second columns then).

    python3 scripts/bench_round.py --lmc build/lmc --models /tmp/m [--threads 1,2] [--reps 2] [--activation-bits 8]

Make the models first, e.g.
    build/lmc make-model --preset qwen3-0.6b --q4 -o /tmp/m/qwen3-q4
    build/lmc make-model --preset qwen3-0.6b -o /tmp/m/qwen3-bf16
(likewise llama-q4, llama-bf16 from llama3.2-1b and gemma3-q4, gemma3-bf16
from gemma3-1b). Only the standard library is used.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

MODELS = [  # folder, shape, weights
    ("qwen3-q4", "Qwen3-0.6B", "4-bit"),
    ("llama-q4", "Llama-3.2-1B", "4-bit"),
    ("gemma3-q4", "Gemma-3-1B", "4-bit"),
    ("qwen3-bf16", "Qwen3-0.6B", "bf16"),
    ("llama-bf16", "Llama-3.2-1B", "bf16"),
    ("gemma3-bf16", "Gemma-3-1B", "bf16"),
]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(cmd, env=None):
    print(f"# load {loadavg()}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def serial(row):
    """The calling thread's share of the time between parallel regions (none with one thread)."""
    return f"{100 * row['serial_fraction']:.1f}" if row.get("regions_per_token") else "–"


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmc", default="build/lmc")
    ap.add_argument("--models", default="/tmp/m")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--activation-bits", type=int, choices=(24, 8), default=24,
                    help="4- and 8-bit models: exact (24, default) or int8 activations (lmc's --activation-bits)")
    a = ap.parse_args()
    ab = ["--activation-bits", str(a.activation_bits)]
    threads = [int(t) for t in a.threads.split(",")]

    rows = []
    for folder, shape, weights in MODELS:
        d = os.path.join(a.models, folder)
        if not os.path.isfile(os.path.join(d, "config.json")):
            print(f"# {d}: not there, skipped", file=sys.stderr)
            continue
        for t in threads:
            load = loadavg()
            res = {r["test"]: r for r in json_lines(run([a.lmc, "bench", "-m", d, "-t", str(t), "-r", str(a.reps), "--json"] + ab))}
            cache = tempfile.mkdtemp(prefix="lmc-round-cache-")
            env = dict(os.environ, LMC_CACHE_DIR=cache)
            ttft_cmd = [a.lmc, "bench", "-m", d, "--ttft", "-t", str(t), "--json"] + ab
            cold = json_lines(run(ttft_cmd, env))[0]
            ttft = json_lines(run(ttft_cmd, env))[0]
            shutil.rmtree(cache, ignore_errors=True)
            pp, tg = res["pp512"], res["tg128"]
            rows.append((shape, weights, t, pp, tg, ttft, cold, load))

    print("| shape | weights | threads | pp512 tok/s | tg128 tok/s | read GB/s | tg128 of bound | "
          "TTFT, 16 tokens (load + prefill) | TTFT, no tokenizer cache | serial % pp / tg | peak RSS / budget | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    mib = 1 << 20
    for shape, weights, t, pp, tg, ttft, cold, load in rows:
        print(f"| {shape} | {weights} | {t} | {pp['mean']:.1f} ± {pp['sd']:.1f} | {tg['mean']:.2f} ± {tg['sd']:.2f} | "
              f"{tg['bandwidth_gbs']:.1f} | {100 * tg['bound_fraction']:.0f} % | "
              f"{ttft['seconds']:.3f} s ({ttft['load_s']:.3f} + {ttft['first_token_s']:.3f}) | "
              f"{cold['seconds']:.3f} s ({cold['load_s']:.3f} + {cold['first_token_s']:.3f}) | "
              f"{serial(pp)} / {serial(tg)} | "
              f"{tg['peak_rss_bytes'] / mib:.0f} / {tg['rss_budget_bytes'] / mib:.0f} MiB | {load} |")

    if a.no_batch:
        return
    print()
    print("| weights | threads | batch 1 tok/s | batch 4 | batch 16 | batch 16 ÷ batch 1 (decode only) | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    pat = re.compile(r"generate\s+batch\s+(\d+):.*?([\d.]+) tok/s aggregate\s+([\d.]+)x batch 1\s+\|\s+decode only\s+"
                     r"([\d.]+) tok/s\s+([\d.]+)x")
    for folder, weights in (("qwen3-q4", "4-bit"), ("qwen3-bf16", "bf16")):
        d = os.path.join(a.models, folder)
        if not os.path.isdir(d):
            continue
        for t in threads:
            load = loadavg()
            out = run([a.lmc, "bench", "batch", "-m", d, "-t", str(t), "--only", "generate"] + ab)
            got = {int(m.group(1)): m for m in pat.finditer(out)}
            if not all(b in got for b in (1, 4, 16)):
                sys.exit(f"unexpected bench batch output:\n{out}")
            print(f"| {weights} | {t} | {float(got[1].group(2)):.1f} | {float(got[4].group(2)):.1f} | "
                  f"{float(got[16].group(2)):.1f} | {float(got[16].group(3)):.2f}× ({float(got[16].group(5)):.2f}×) | {load} |")


if __name__ == "__main__":
    main()
