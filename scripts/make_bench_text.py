#!/usr/bin/env python3
"""Writes the mixed text that the tokenizer benchmarks encode
(`lmc bench tokenizer`, scripts/bench_tokenizer_hf.py,
scripts/bench_tokenizer_device.sh).

usage: python3 scripts/make_bench_text.py OUT_FILE

The text is built from files of this repository only, so every machine with
a checkout builds the same bytes (for the same commit) without a download:
the texts of the tokenizer conformance corpora (tests/data/tokenizer/
corpus.jsonl and hf_devcheck/corpus.jsonl: prose, whitespace runs, numbers,
code, Chinese, Japanese, Korean, Arabic, Hindi, emoji, long words, a 100 kB
document), interleaved with the repository's C sources and Markdown
documents (English comments and prose beside code), in sorted path order.
About 1.5 MB. Plain Python 3, no packages.
"""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = ["tests/data/tokenizer/corpus.jsonl", "tests/data/tokenizer/hf_devcheck/corpus.jsonl"]
SOURCE_DIRS = ["include", "src", "bench", "docs", "tests", "examples"]
SOURCE_EXT = (".c", ".h", ".md")


def corpus_texts():
    texts = []
    for rel in CORPORA:
        with open(os.path.join(REPO, rel), encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f if line.strip()]
    return texts


def source_texts():
    paths = []
    for d in SOURCE_DIRS:
        for root, dirs, files in os.walk(os.path.join(REPO, d)):
            dirs[:] = [x for x in dirs if x != "data"]  # fixtures are not text
            paths += [os.path.join(root, f) for f in files if f.endswith(SOURCE_EXT)]
    paths.append(os.path.join(REPO, "README.md"))
    out = []
    for p in sorted(paths):
        with open(p, encoding="utf-8") as f:
            out.append(f.read())
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    corpus, sources = corpus_texts(), source_texts()
    # One corpus text after each source file, the rest at the end.
    parts = []
    per = max(1, len(corpus) // max(1, len(sources)))
    for i, src in enumerate(sources):
        parts.append(src)
        parts += corpus[i * per:(i + 1) * per]
    parts += corpus[len(sources) * per:]
    with open(sys.argv[1], "w", encoding="utf-8", newline="") as f:
        f.write("\n\n".join(parts))


if __name__ == "__main__":
    main()
