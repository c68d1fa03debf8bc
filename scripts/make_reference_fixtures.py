#!/usr/bin/env python3
"""Reference fixtures for lmc's C tests, computed with the Hugging Face libraries.

Runs on a machine with tokenizers, transformers, torch, numpy (and jinja2, which transformers uses
for chat templates): the GPU machine. Everything runs on the CPU. From the repository root (or
anywhere: paths are resolved from this file's location):

    python3 scripts/make_reference_fixtures.py --check       # fail fast: import, build, render,
                                                             # run every step in a temp dir; writes nothing
    python3 scripts/make_reference_fixtures.py --all         # tokenizers + models
    python3 scripts/make_reference_fixtures.py tokenizers    # only tests/data/tokenizer/*
    python3 scripts/make_reference_fixtures.py models        # only tests/data/models/* (same as
                                                             # scripts/make_golden_models.py)

Inputs: tests/data/tokenizer/corpus.jsonl (committed; scripts/make_tokenizer_corpus.py writes it)
and .cache/tokenizers/{gemma3,llama3_1,qwen3}/{tokenizer.json,tokenizer_config.json}
(scripts/fetch_tokenizers.sh). If .cache is not in the copy of the repository on the GPU machine,
carry it there (it is git-ignored).

Outputs of `tokenizers` (all UTF-8 JSON Lines written with ensure_ascii=False, one object per line;
control characters appear as JSON escapes):

  tests/data/tokenizer/expected_NAME.jsonl   NAME in gemma3, llama3_1, qwen3; one line per corpus
      text, in corpus order, keys in this order:
      {"id": N, "ids": [...], "ids_nospecial": [...], "decoded": "...", "decoded_skip": "..."}
        ids            tokenizers.Tokenizer.from_file(tokenizer.json).encode(text, add_special_tokens=True).ids
        ids_nospecial  the same with add_special_tokens=False
        decoded        transformers.AutoTokenizer.from_pretrained(folder).decode(ids)
        decoded_skip   the same tokenizer's decode(ids, skip_special_tokens=True)
      (decode honours tokenizer_config.json, e.g. llama3_1's clean_up_tokenization_spaces: true.)
      The script also encodes every text with transformers (both ways) and checks that the ids
      equal the tokenizers library's; mismatches are reported (and listed in expected_meta.json).

  tests/data/tokenizer/templates_NAME.jsonl  one line per (conversation, add_generation_prompt):
      {"messages": [...], "add_generation_prompt": bool, "extra": {...}, "rendered": "..."}
      rendered = tokenizer.apply_chat_template(messages, tokenize=False,
                     add_generation_prompt=..., **extra)
      When the template raises (e.g. Gemma's "roles must alternate"), "error": "message" replaces
      "rendered". Conversations: system+user, user only, user+assistant+user, a long multi-turn,
      unicode, leading/trailing whitespace, empty content, special-token strings in content,
      ending with an assistant turn, two user turns in a row, system only; each with and
      without add_generation_prompt. llama3_1 always gets extra {"date_string": "26 Jul 2024"};
      qwen3 adds enable_thinking false/true, assistant turns with reasoning_content and with an
      inline <think> block, and a tool call + tool result (with and without a tools list);
      gemma3 adds content given as a list [{"type": "text", "text": ...}].

  tests/data/tokenizer/expected_meta.json    versions used and, per family, the ids of texts whose
      transformers encoding differed from the tokenizers library's (should be empty) and of texts
      whose decode(ids_nospecial) is not the text itself (informational: clean-up, normalisation).

Tests should require exact equality with every field (ids, decoded strings, renderings).

Outputs of `models`: see scripts/make_golden_models.py (tiny golden checkpoints in bf16 and MLX
4-bit, their logits and greedy continuations, tolerances).

Deterministic: reruns give identical files for the same library versions. Exit status 0 when every
check passed, 3 when files were written but a check failed (read the PROBLEM lines), 1 when a part
stopped with an exception (its traceback is printed; the other part still runs, so one run reports
every failure).

Bringing the results back from a machine that returns only a few files: pack them, e.g.
    tar czf OUTDIR/tokenizer.tgz tests/data/tokenizer && tar czf OUTDIR/models.tgz tests/data/models
(about 3 MB and 10 MB) and unpack them at the repository root here.
"""
import argparse
import copy
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network there: never try the Hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ["gemma3", "llama3_1", "qwen3"]
TOKENIZER_DIR = os.path.join(REPO, ".cache", "tokenizers")
CORPUS = os.path.join(REPO, "tests", "data", "tokenizer", "corpus.jsonl")


def resolve(path):
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def read_corpus():
    if not os.path.exists(CORPUS):
        import make_tokenizer_corpus

        make_tokenizer_corpus.main()
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Chat template cases.

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! How are you?"}
A1 = {"role": "assistant", "content": "I'm fine, thank you. How can I help?"}
U2 = {"role": "user", "content": "What is 2+2?"}


def common_conversations():
    long_turns = [SYS]
    for i in range(5):
        long_turns.append({"role": "user", "content": "Question %d: tell me fact number %d." % (i + 1, i + 1)})
        if i < 4:
            long_turns.append({"role": "assistant", "content": "Fact %d: water boils at %d degrees at sea level." % (i + 1, 100)})
    return [
        [SYS, U1],
        [U2],
        [U1, A1, U2],
        long_turns,
        [{"role": "user", "content": "Привет 👋 你好 مرحبا नमस्ते — café vs cafe\u0301, 👨‍👩‍👧‍👦 🇫🇷"},
         {"role": "assistant", "content": "こんにちは！ 안녕하세요. Ελληνικά."},
         {"role": "user", "content": "日本語で答えてください。"}],
        [{"role": "system", "content": "  padded system prompt \n"},
         {"role": "user", "content": "\n\n  leading and trailing whitespace \t\n"},
         {"role": "assistant", "content": "  reply with spaces  "},
         {"role": "user", "content": " again "}],
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": "literal <|im_start|> <start_of_turn> <|eot_id|> <bos> <think> tokens"}],
        [U1, A1],
        [U1, {"role": "user", "content": "Are you there?"}],
        [SYS],
    ]


def family_cases(name):
    """(messages, extra) pairs; each is rendered with and without add_generation_prompt."""
    cases = [(m, {}) for m in common_conversations()]
    if name == "llama3_1":
        cases = [(m, {"date_string": "26 Jul 2024"}) for m, _ in cases]
    elif name == "qwen3":
        reasoning = {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "2 plus 2 makes 4."}
        inline = {"role": "assistant", "content": "<think>\nAdd the numbers.\n</think>\n\nIt is 4."}
        tool_call = {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}}]}
        tool_result = {"role": "tool", "content": "{\"temperature\": 21}"}
        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                           "required": ["city"]}}}]
        cases += [
            ([U2], {"enable_thinking": False}),
            ([U2], {"enable_thinking": True}),
            ([SYS, U1], {"enable_thinking": False}),
            ([U1, A1, U2], {"enable_thinking": False}),
            ([U2, reasoning, U1], {}),
            ([U2, reasoning], {}),
            ([U2, inline, U1], {}),
            ([U2, inline], {}),
            ([U2, tool_call, tool_result], {}),
            ([SYS, U2, tool_call, tool_result], {"tools": tools}),
        ]
    elif name == "gemma3":
        cases += [
            ([{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
              {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there "}]}], {}),
            ([{"role": "user", "content": [{"type": "text", "text": "  list content  "}]},
              {"role": "assistant", "content": "string reply"},
              {"role": "user", "content": [{"type": "text", "text": "and again"}]}], {}),
        ]
    return cases


def render_templates(tok, name):
    records = []
    for messages, extra in family_cases(name):
        for agp in (False, True):
            rec = {"messages": messages, "add_generation_prompt": agp, "extra": extra}
            try:
                out = tok.apply_chat_template(copy.deepcopy(messages), tokenize=False,
                                              add_generation_prompt=agp, **copy.deepcopy(extra))
                if not isinstance(out, str):
                    raise TypeError("apply_chat_template returned %s, expected str" % type(out).__name__)
                rec["rendered"] = out
            except Exception as e:  # noqa: BLE001 - the template's own error is the fixture
                if isinstance(e, TypeError) and "apply_chat_template returned" in str(e):
                    raise
                rec["error"] = str(e)
            records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------


def tokenizer_fixtures(out_dir, limit=None):
    """Writes expected_*.jsonl, templates_*.jsonl and expected_meta.json into out_dir."""
    import tokenizers
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    corpus = read_corpus()
    if limit:
        corpus = corpus[:limit] + corpus[-1:]
    os.makedirs(out_dir, exist_ok=True)
    problems = []
    meta = {"versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
            "corpus_texts": len(corpus), "families": {}}
    for name in FAMILIES:
        folder = os.path.join(TOKENIZER_DIR, name)
        tk = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        hf = AutoTokenizer.from_pretrained(folder)
        lines, enc_mismatch, not_roundtrip = [], [], []
        for rec in corpus:
            text = rec["text"]
            ids = tk.encode(text, add_special_tokens=True).ids
            ids_ns = tk.encode(text, add_special_tokens=False).ids
            if (list(hf.encode(text, add_special_tokens=True)) != ids
                    or list(hf.encode(text, add_special_tokens=False)) != ids_ns):
                enc_mismatch.append(rec["id"])
            decoded = hf.decode(ids)
            decoded_skip = hf.decode(ids, skip_special_tokens=True)
            if hf.decode(ids_ns) != text:
                not_roundtrip.append(rec["id"])
            lines.append({"id": rec["id"], "ids": ids, "ids_nospecial": ids_ns,
                          "decoded": decoded, "decoded_skip": decoded_skip})
        write_jsonl(os.path.join(out_dir, "expected_%s.jsonl" % name), lines)
        templates = render_templates(hf, name)
        write_jsonl(os.path.join(out_dir, "templates_%s.jsonl" % name), templates)
        errors = sum(1 for t in templates if "error" in t)
        meta["families"][name] = {
            "tokenizer_class": type(hf).__name__,
            "transformers_encode_mismatch_ids": enc_mismatch,
            "decode_not_roundtrip_ids": not_roundtrip,
            "templates": len(templates), "template_errors": errors,
        }
        if enc_mismatch:
            problems.append("%s: transformers' encode differs from the tokenizers library for %d texts "
                            "(ids %s)" % (name, len(enc_mismatch), enc_mismatch[:20]))
        print("  %-9s %d texts (%d tokens), transformers encode mismatches %d, decode != text %d, "
              "%d template renderings (%d errors), %s" % (
                  name, len(lines), sum(len(x["ids"]) for x in lines), len(enc_mismatch),
                  len(not_roundtrip), len(templates), errors, type(hf).__name__), flush=True)
    with open(os.path.join(out_dir, "expected_meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for p in problems:
        print("PROBLEM: " + p)
    return problems


def dir_size(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for fn in files:
            total += os.path.getsize(os.path.join(dirpath, fn))
    return total


def check():
    """Fail fast on the GPU machine: every import, every tokenizer, every template, every model
    config, every forward pass, in a temporary folder. Writes nothing in the repository."""
    import numpy
    import safetensors
    import tokenizers
    import torch
    import transformers
    import jinja2

    print("check: python %s, torch %s, transformers %s, tokenizers %s, safetensors %s, numpy %s, jinja2 %s"
          % (sys.version.split()[0], torch.__version__, transformers.__version__, tokenizers.__version__,
             safetensors.__version__, numpy.__version__, jinja2.__version__))
    for name in FAMILIES:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            p = os.path.join(TOKENIZER_DIR, name, fn)
            if not os.path.exists(p):
                raise SystemExit("check: missing %s (run scripts/fetch_tokenizers.sh, or carry .cache)" % p)
    import make_golden_models

    with tempfile.TemporaryDirectory(prefix="lmc-fixtures-check-") as tmp:
        status = guarded("tokenizers", lambda: 3 if tokenizer_fixtures(os.path.join(tmp, "tokenizer"), limit=30) else 0)
        status = max(status, guarded("models", lambda: make_golden_models.run(os.path.join(tmp, "models"), check_only=True)))
    print("check: OK" if status == 0 else "check: FAILED (status %d, see above)" % status)
    return status


def guarded(what, fn):
    """Runs one part; an exception is printed and turned into status 1 so the other part still runs
    (one run on the GPU machine reports every failure)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        print("ERROR: the %s part stopped with the exception above" % what, flush=True)
        return 1


def main():
    ap = argparse.ArgumentParser(description="lmc reference fixtures (see the module docstring).")
    ap.add_argument("what", nargs="*", help="which fixtures to write: tokenizers, models")
    ap.add_argument("--all", action="store_true", help="tokenizers and models")
    ap.add_argument("--check", action="store_true", help="dry run in a temporary folder; writes nothing")
    ap.add_argument("--out-tokenizer", default="tests/data/tokenizer", help="relative to the repository root")
    ap.add_argument("--out-models", default="tests/data/models", help="relative to the repository root")
    args = ap.parse_args()
    if args.check:
        return check()
    unknown = set(args.what) - {"tokenizers", "models"}
    if unknown:
        ap.error("unknown fixture kind(s) %s: say tokenizers and/or models" % sorted(unknown))
    what = set(args.what) | ({"tokenizers", "models"} if args.all else set())
    if not what:
        ap.error("say what to write: tokenizers, models, --all, or --check")
    status = 0
    if "tokenizers" in what:
        out = resolve(args.out_tokenizer)
        print("tokenizers -> %s" % os.path.relpath(out, REPO), flush=True)
        status = guarded("tokenizers", lambda: 3 if tokenizer_fixtures(out) else 0)
    if "models" in what:
        import make_golden_models

        out = resolve(args.out_models)
        os.makedirs(out, exist_ok=True)
        print("models -> %s" % os.path.relpath(out, REPO), flush=True)
        status = max(status, guarded("models", lambda: make_golden_models.run(out)))
    total = sum(dir_size(resolve(p)) for p in (args.out_tokenizer, args.out_models) if os.path.isdir(resolve(p)))
    print("fixtures total: %.2f MB (tests/data/tokenizer + tests/data/models)" % (total / 1e6))
    return status


if __name__ == "__main__":
    sys.exit(main())
