#!/usr/bin/env python3
"""Check that a LoRA adapter written by lmc loads in Hugging Face peft with the same outputs (issue 6).

Run on the machine that has torch + transformers + peft + safetensors (the GPU machine; runs on its
CPU in float32). Here, with lmc:

    build/lmc train -m MODEL ... -o ADAPTER                   # or any adapter lmc_lora_save wrote
    build/lmc logits -m MODEL --adapter ADAPTER --ids 1,2,3,4 --all -o lmc_logits.safetensors

then, there, with MODEL, ADAPTER and lmc_logits.safetensors in the copy of the repository:

    python3 scripts/check_lora_peft.py --model MODEL --adapter ADAPTER \\
        --ids 1,2,3,4 --logits lmc_logits.safetensors

MODEL is a Hugging Face style folder (config.json + *.safetensors, e.g. tests/data/models/qwen3; no
tokenizer needed). ADAPTER must hold adapter_config.json and adapter_model.safetensors. --ids is a
comma list, or @FILE.safetensors:NAME for an integer tensor in a file (2-D: its first row). The
logits file holds the f32 tensor "logits" (--logits-name to pick another): [T, V] from `--all`,
or [V] for the last position only.

What it does:
  1. base logits: transformers' AutoModelForCausalLM (float32, eager attention) on the ids;
  2. peft.PeftModel.from_pretrained(base model, ADAPTER): every LoRA parameter peft created must
     come from the file (same name with the adapter name removed, same shape, same values after
     peft's cast to the parameter's dtype) and the file must hold nothing else; a file tensor peft
     does not use, or a parameter left at its initial value, is a failure (peft itself only warns);
  3. compares lmc's logits with peft's: max |diff| and max |diff| / max |peft| are printed;
  4. prints how far the adapter moves the logits (max |peft - base|).

Exit status: 0 when max |lmc - peft| <= --atol (default 2e-3: both are f32 computations on the same
bf16 weights, as in tests/data/models) and the adapter moves the logits by more than 10 x --atol
(an adapter with B = 0, as a fresh one is, would pass any comparison: train a few steps first,
or pass --allow-no-effect); 1 when a check fails; 2 on bad arguments or unreadable files.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse_ids(spec):
    from safetensors.torch import load_file

    if spec.startswith("@"):
        path, _, name = spec[1:].rpartition(":")
        if not path:
            raise ValueError("--ids @FILE.safetensors:NAME expected, got %r" % spec)
        t = load_file(path)[name]
        if t.dim() == 2:
            t = t[0]
        if t.dim() != 1 or t.is_floating_point():
            raise ValueError("%s: tensor %s is not a 1-D or 2-D integer tensor" % (path, name))
        return [int(x) for x in t.tolist()]
    ids = [int(x) for x in spec.split(",") if x.strip()]
    if not ids:
        raise ValueError("--ids is empty")
    return ids


def main(argv=None):
    ap = argparse.ArgumentParser(description="lmc adapter vs peft (see the module docstring).")
    ap.add_argument("--model", required=True, help="base model folder (config.json + safetensors)")
    ap.add_argument("--adapter", required=True, help="adapter folder written by lmc")
    ap.add_argument("--ids", required=True, help="token ids: 1,2,3 or @FILE.safetensors:NAME")
    ap.add_argument("--logits", required=True, help="lmc's logits (.safetensors, from `lmc logits --all`)")
    ap.add_argument("--logits-name", default="logits", help="tensor name in --logits (default logits)")
    ap.add_argument("--atol", type=float, default=2e-3, help="max |lmc - peft| allowed (default 2e-3)")
    ap.add_argument("--allow-no-effect", action="store_true",
                    help="pass even when the adapter does not change the logits (e.g. B = 0)")
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    import make_golden_models as golden

    try:
        ids = parse_ids(args.ids)
        lmc = load_file(args.logits)[args.logits_name].float()
        file_tensors = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
        with open(os.path.join(args.adapter, "adapter_config.json")) as f:
            acfg = json.load(f)
    except (OSError, KeyError, ValueError) as e:
        print("check_lora_peft: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 2
    from peft import PeftModel

    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    x = torch.tensor([ids], dtype=torch.long)
    base = golden.load_hf_model(torch, args.model)
    with torch.no_grad():
        base_logits = base(input_ids=x).logits[0].float().clone()
    model = PeftModel.from_pretrained(base, args.adapter)
    model.eval()
    failures = []

    # Every LoRA parameter comes from the file, and the file holds nothing else.
    used = set()
    lora = 0
    for n, p in model.named_parameters():
        if ".lora_" not in n:
            continue
        lora += 1
        key = n.replace(".default.", ".")
        if key not in file_tensors:
            failures.append("peft parameter %s has no tensor %s in the adapter file" % (n, key))
            continue
        used.add(key)
        t = file_tensors[key]
        if tuple(t.shape) != tuple(p.shape):
            failures.append("%s: shape %s in the file, %s in peft" % (key, tuple(t.shape), tuple(p.shape)))
        elif not torch.equal(t.to(p.dtype), p.detach()):
            failures.append("%s: peft's parameter differs from the file after loading" % key)
    for key in sorted(set(file_tensors) - used):
        failures.append("adapter file tensor %s is not used by peft" % key)
    if lora == 0:
        failures.append("peft created no LoRA parameters from %s" % args.adapter)

    with torch.no_grad():
        ref = model(input_ids=x).logits[0].float()
    if lmc.dim() == 1:
        ref, base_logits = ref[-1], base_logits[-1]
    if tuple(lmc.shape) != tuple(ref.shape):
        failures.append("lmc's logits have shape %s, peft's %s" % (tuple(lmc.shape), tuple(ref.shape)))
        max_abs = rel = float("nan")
    else:
        max_abs = float((lmc - ref).abs().max())
        rel = max_abs / float(ref.abs().max())
        if not max_abs <= args.atol:
            failures.append("max |lmc - peft| = %.3g > %g" % (max_abs, args.atol))
    effect = float((ref - base_logits).abs().max())
    if not effect > 10 * args.atol and not args.allow_no_effect:
        failures.append("the adapter moves the logits by only %.3g (<= 10 x atol): this comparison cannot "
                        "tell a loaded adapter from an ignored one (--allow-no-effect to accept)" % effect)

    import peft
    import transformers

    print(json.dumps({
        "model": args.model, "adapter": args.adapter, "tokens": len(ids),
        "r": acfg.get("r"), "lora_alpha": acfg.get("lora_alpha"), "target_modules": acfg.get("target_modules"),
        "lora_parameters": lora, "max_abs_diff": max_abs, "max_rel_diff": rel, "atol": args.atol,
        "adapter_effect_max_abs": effect,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }, indent=1))
    if failures:
        for f in failures:
            print("FAIL: " + f)
        return 1
    print("check_lora_peft: OK (max |lmc - peft| %.3g <= %g; adapter effect %.3g)" % (max_abs, args.atol, effect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
