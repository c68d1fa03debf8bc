#!/usr/bin/env python3
"""Golden LoRA fixtures for lmc's fine-tuning tests (issue 6), computed with Hugging Face peft.

Run on the machine that has torch + transformers + peft + safetensors (the GPU machine; everything
runs on its CPU in float32, so no TF32 or GPU kernel differences enter the numbers):

    python3 scripts/make_lora_fixtures.py                 # writes tests/data/lora/
    python3 scripts/make_lora_fixtures.py --check         # full dry run in a temp dir, writes nothing

It reads the tiny golden base models tests/data/models/{llama,qwen3} (scripts/make_golden_models.py:
bf16 safetensors + config.json, vocab 2048), loaded by transformers in float32 (bf16 -> f32 is
exact; lmc computes in f32 on the same values). No tokenizer is needed: the batch is random ids.
Set PYTHONHASHSEED=0: peft keeps target_modules as a set and writes it in set order, so without a
fixed hash seed adapter_config.json lists the modules in a different order on each run.

What it writes, for each variant NAME in llama, qwen3:

  tests/data/lora/NAME/adapter/      the adapter exactly as peft's save_pretrained writes it
      adapter_config.json        peft's own ("peft_type": "LORA", "r", "lora_alpha",
                                 "target_modules", "lora_dropout": 0.0, "bias": "none",
                                 "task_type": "CAUSAL_LM", "base_model_name_or_path":
                                 "tests/data/models/NAME", ...). peft's README.md model card is removed.
      adapter_model.safetensors  f32 tensors named
                                 base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [r, in]
                                 base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight [out, r]
                                 (mlp.gate_proj/up_proj/down_proj likewise). A and B are BOTH seeded
                                 non-zero random values (numpy PCG64, seed per variant; A ~ N(0, 0.15),
                                 B ~ N(0, 0.1), rounded to f32), so the adapter changes the outputs and
                                 the gradients of A are not zero.
  tests/data/lora/NAME/reference.safetensors   (metadata {"format": "pt"})
      ids        i32 [2, T]   T = 13; sequence 0 has 13 tokens, sequence 1 has 9 then 4 padding
                              tokens (id 0, right padding). Random ids in [0, 2048).
      targets    i32 [2, T]   ids shifted left: targets[b, t] = ids[b, t + 1] for t < len_b - 1;
                              -100 at the last token of each sequence and on padding (never selected
                              by the mask; lmc_cross_entropy must ignore them).
      mask       f32 [2, T]   1 = learn: a "completion" span with a hole in it, padding and the last
                              token excluded (8 + 6 = 14 positions; see reference.json "batch").
      loss       f32 [1]      sum(mask * CE(logits[b, t], targets[b, t])) / sum(mask), logits =
                              peft_model(input_ids=ids).logits (no attention mask: right padding and
                              causal attention leave the real positions untouched), CE in f32.
      grad.NAME  f32          d loss / d NAME for every LoRA tensor NAME of adapter_model.safetensors
      losses     f32 [6]      torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
                              weight_decay 0.01, foreach=False) on the LoRA tensors only: losses[k] is
                              the loss before step k + 1 (losses[0] = loss), losses[5] after step 5.
      final.NAME f32          every LoRA tensor after the 5 steps.
      logits_0   f32 [13, V]  logits of the adapted model (initial adapter) for sequence 0 alone,
                              ids[0, :13] (for load checks: lmc generate/logits --adapter).
  tests/data/lora/NAME/reference.json   the same facts for humans and cJSON: lora config, batch
      (ids, lengths, targets, mask as lists), loss and losses as doubles, AdamW settings, parameter
      names in lmc's order (layer by layer; q,k,v,o,gate,up,down; A then B), tolerances, the checks
      this script ran and versions of torch, transformers, peft, numpy, safetensors.

Variants: llama (Llama 3.2 style, 3 layers): r 4, lora_alpha 8 (scale 2), target_modules q_proj,
v_proj. qwen3 (Qwen 3 style, head_dim 32 != hidden/heads, q/k norms): r 8, lora_alpha 16 (scale 2),
all seven linear modules q,k,v,o,gate,up,down_proj. lora_dropout 0, bias "none", no rslora/DoRA.

Self-checks (recorded in reference.json "checks"; a failure is a PROBLEM line and exit status 3):
  - transformers loads the base weights unchanged (bf16 -> f32 exactly);
  - peft's trainable parameters are exactly the LoRA A/B of the targeted modules; its scaling is
    alpha / r; the saved file holds exactly those tensors under the names above, with the values set;
  - PeftModel.from_pretrained of the saved folder reproduces the logits bit for bit;
  - an independent float32 re-implementation (make_golden_models.ref_logits on merged weights
    W + (alpha / r) * B @ A, differentiated by torch.autograd) gives the same loss (relative
    difference < 1e-5) and gradients (max |diff| / max |grad| < 1e-4 per tensor) as peft;
  - AdamW written out from lmc/train.h's formula (f32), fed the re-implementation's gradients,
    follows torch's AdamW trajectory (losses, final parameters);
  - sensitivity (how far a plausible bug moves the numbers; each must exceed the test tolerance
    below by a wide margin): the loss and gradients without the adapter, with scale 1 instead of
    alpha / r, with the mask ignored (all valid targets); the final parameters without weight
    decay or without bias correction.

Tolerances the C tests should use ("tolerances" in reference.json). lmc computes in f32 on the same
bf16-exact weights, so the differences are summation order and libm; the independent
re-implementation above is the yardstick (first run: loss ~1e-7 relative, gradients <= 8e-6 of
each tensor's max, parameters after 5 steps <= 1.3e-6 absolute and 7e-6 of the update's norm):
  loss_rel 1e-4                |loss - ref| / ref (ignoring the mask moves it >= 5e-3)
  grad_rel_to_max 1e-3         per tensor: max |g - ref| / max |ref| (plausible bugs: ~1)
  adamw_loss_rel 1e-4          each of the 6 losses
  adamw_param_abs 1e-5         max |p - ref| after 5 steps (an update is ~lr per step; an element
                               whose gradient is small has its Adam step decided by the ratio of
                               small numbers, hence 1e-5 rather than 1e-6)
  adamw_param_norm_rel 2e-4    |p - ref|_2 / |ref - initial|_2 over all tensors (forgetting weight
                               decay gives ~1.4e-3, max abs ~3e-5)
  logits_abs 2e-3              logits_0 (as the golden models)

Exit status: 0 when every check passed; 3 when the files were written but a check failed (read the
PROBLEM lines; do not commit such fixtures blindly); 1 on an error that stopped it.
"""
import json
import os
import re
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network there: never try the Hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import make_golden_models as golden  # noqa: E402  (weights I/O and the independent forward pass)

VOCAB = golden.VOCAB
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODULE_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                 "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
VARIANTS = {
    "llama": {"model": "llama", "r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"], "seed": 6101},
    "qwen3": {"model": "qwen3", "r": 8, "alpha": 16, "targets": list(ALL_LINEAR), "seed": 6303},
}
INIT_STD = {"A": 0.15, "B": 0.1}
LENGTHS = [13, 9]
PAD_ID = 0
IGNORE = -100
# Mask spans [start, last] inclusive, minus one hole, within the valid targets 0..len-2.
MASK_SPANS = [(3, 11, 6), (1, 7, 4)]
STEPS = 5
ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
# Self-check thresholds (peft vs the independent re-implementation, both f32 on the CPU).
REF_LOSS_RTOL = 1e-5
REF_GRAD_RTOL = 1e-4
REF_PARAM_ATOL = 5e-6
REF_PARAM_NORM_REL = 5e-5
# What the C tests should use (see the docstring).
TEST_TOL = {"loss_rel": 1e-4, "grad_rel_to_max": 1e-3, "adamw_loss_rel": 1e-4, "adamw_param_abs": 1e-5,
            "adamw_param_norm_rel": 2e-4, "logits_abs": 2e-3}
NAME_RE = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_(A|B)\.weight$")


def peft_name(module, layer, which):
    return "base_model.model.model.layers.%d.%s.%s.lora_%s.weight" % (layer, MODULE_PARENT[module], module, which)


def param_order(n_layers, targets):
    """LoRA tensor names in lmc's order: layer by layer, modules in ALL_LINEAR order, A then B."""
    mods = [m for m in ALL_LINEAR if m in targets]
    return [peft_name(m, i, w) for i in range(n_layers) for m in mods for w in ("A", "B")]


def make_batch(seed):
    rng = np.random.default_rng(seed)
    T = max(LENGTHS)
    ids = np.full((len(LENGTHS), T), PAD_ID, dtype=np.int32)
    targets = np.full((len(LENGTHS), T), IGNORE, dtype=np.int32)
    mask = np.zeros((len(LENGTHS), T), dtype=np.float32)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = rng.integers(0, VOCAB, size=n)
        targets[b, : n - 1] = ids[b, 1:n]
        start, last, hole = MASK_SPANS[b]
        assert last <= n - 2
        mask[b, start: last + 1] = 1
        mask[b, hole] = 0
    return ids, targets, mask


def masked_loss(torch, logits, targets, mask):
    """sum(mask * CE) / sum(mask) in f32; targets under mask 0 (e.g. -100) are never indexed."""
    V = logits.shape[-1]
    tgt = torch.where(mask > 0, targets, torch.zeros_like(targets)).long()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, V).float(), tgt.reshape(-1), reduction="none")
    return (nll.reshape(mask.shape) * mask).sum() / mask.sum()


# ---------------------------------------------------------------------------------------------
# The independent reference: merged weights through make_golden_models.ref_logits.


def ref_loss(torch, cfg, W, lora, scale, ids, targets, mask):
    """lora: peft name -> f32 tensor (may require grad). Returns the scalar loss."""
    Weff = dict(W)
    for name, a in lora.items():
        m = NAME_RE.match(name)
        if m.group(4) != "A":
            continue
        key = "model.layers.%s.%s.%s.weight" % (m.group(1), m.group(2), m.group(3))
        b = lora[name[: -len("A.weight")] + "B.weight"]
        Weff[key] = W[key] + scale * (b @ a)
    logits = torch.stack([golden.ref_logits(torch, cfg, Weff, row.tolist()) for row in ids])
    return masked_loss(torch, logits, targets, mask)


def ref_loss_and_grad(torch, cfg, W, lora, scale, ids, targets, mask):
    names = sorted(lora)
    leaves = {n: lora[n].detach().clone().requires_grad_(True) for n in names}
    loss = ref_loss(torch, cfg, W, leaves, scale, ids, targets, mask)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])
    return loss.item(), dict(zip(names, grads))


def adamw_formula(torch, params, grads, state, t, cfg, weight_decay=True, bias_correction=True):
    """One step of the update lmc/train.h states (PyTorch's AdamW), in f32, written out here."""
    lr, (b1, b2), eps, wd = cfg["lr"], cfg["betas"], cfg["eps"], cfg["weight_decay"]
    out = {}
    for n, p in params.items():
        g = grads[n]
        m, v = state.setdefault(n, (torch.zeros_like(p), torch.zeros_like(p)))
        if weight_decay:
            p = p - lr * wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[n] = (m, v)
        c1 = 1 - b1 ** t if bias_correction else 1.0
        c2 = 1 - b2 ** t if bias_correction else 1.0
        out[n] = p - (lr / c1) * m / (torch.sqrt(v / c2) + eps)
    return out


def ref_trajectory(torch, cfg, W, lora, scale, batch, **flags):
    params = {n: t.detach().clone() for n, t in lora.items()}
    state, losses = {}, []
    for t in range(1, STEPS + 1):
        loss, grads = ref_loss_and_grad(torch, cfg, W, params, scale, *batch)
        losses.append(loss)
        params = adamw_formula(torch, params, grads, state, t, ADAMW, **flags)
    losses.append(ref_loss_and_grad(torch, cfg, W, params, scale, *batch)[0])
    return losses, params


# ---------------------------------------------------------------------------------------------
# peft.


def lora_params(model):
    """peft's trainable parameters: file name (adapter name removed) -> parameter."""
    out = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".default." not in n:
            raise RuntimeError("unexpected trainable parameter %s" % n)
        out[n.replace(".default.", ".")] = p
    return out


def max_rel(torch, a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def norm_rel_update(torch, p, ref, init, order):
    """|p - ref|_2 / |ref - init|_2 over all tensors together."""
    d = torch.cat([(p[n] - ref[n]).flatten() for n in order])
    u = torch.cat([(ref[n] - init[n]).flatten() for n in order])
    return float(d.norm() / u.norm())


def run_variant(torch, name, variant, out_root, problems, versions):
    from peft import LoraConfig, PeftModel, get_peft_model

    model_rel = os.path.join("tests", "data", "models", variant["model"])
    model_dir = os.path.join(REPO, model_rel)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    raw = golden.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    W = {k: torch.from_numpy(golden.bf16_bits_to_f32(v).copy()) for k, (tag, v) in raw.items()}
    n_layers = cfg["num_hidden_layers"]
    r, alpha, targets = variant["r"], variant["alpha"], variant["targets"]
    scale = alpha / r
    checks = {}

    # Load by the relative path (cwd = repository root) so that adapter_config.json records
    # "tests/data/models/NAME", not this machine's absolute path.
    os.chdir(REPO)
    base = golden.load_hf_model(torch, model_rel)
    golden.verify_loaded_weights(torch, base, cfg, W, name)
    lcfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(base, lcfg)
    model.eval()  # dropout is 0 anyway; eval keeps any other train-mode behaviour out

    order = param_order(n_layers, targets)
    params = lora_params(model)
    if sorted(params) != sorted(order):
        raise RuntimeError("%s: peft's trainable parameters and the expected LoRA tensors differ in %s"
                           % (name, sorted(set(params) ^ set(order))))
    rng = np.random.default_rng(variant["seed"])
    init = {}
    with torch.no_grad():
        for n in order:
            which = NAME_RE.match(n).group(4)
            v = (INIT_STD[which] * rng.standard_normal(tuple(params[n].shape))).astype(np.float32)
            params[n].copy_(torch.from_numpy(v))
            init[n] = torch.from_numpy(v.copy())
    for mod in model.modules():
        if hasattr(mod, "scaling") and isinstance(mod.scaling, dict) and "default" in mod.scaling:
            if abs(mod.scaling["default"] - scale) > 1e-12:
                problems.add("%s: peft's scaling %r != alpha / r = %r" % (name, mod.scaling["default"], scale))

    # The adapter folder, as peft writes it.
    folder = os.path.join(out_root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    adapter_dir = os.path.join(folder, "adapter")
    model.save_pretrained(adapter_dir)
    readme = os.path.join(adapter_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    files = sorted(os.listdir(adapter_dir))
    if files != ["adapter_config.json", "adapter_model.safetensors"]:
        problems.add("%s: save_pretrained wrote %s" % (name, files))
    saved = golden.read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    if sorted(saved) != sorted(order):
        problems.add("%s: adapter_model.safetensors names differ: %s" % (name, sorted(set(saved) ^ set(order))))
    for n in order:
        tag, arr = saved.get(n, (None, None))
        if tag != "F32" or not np.array_equal(arr, init[n].numpy()):
            problems.add("%s: %s saved as %s, not the values set" % (name, n, tag))
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        acfg = json.load(f)
    for key, want in (("peft_type", "LORA"), ("r", r), ("lora_alpha", alpha), ("lora_dropout", 0.0),
                      ("bias", "none"), ("task_type", "CAUSAL_LM"), ("base_model_name_or_path", model_rel)):
        if acfg.get(key) != want:
            problems.add("%s: adapter_config.json %s = %r, expected %r" % (name, key, acfg.get(key), want))
    if sorted(acfg.get("target_modules") or []) != sorted(targets):
        problems.add("%s: adapter_config.json target_modules = %r" % (name, acfg.get("target_modules")))
    if acfg.get("use_rslora") or acfg.get("use_dora"):
        problems.add("%s: adapter_config.json turns on rslora/dora" % name)

    # The batch, the loss and the gradients.
    ids_np, targets_np, mask_np = make_batch(variant["seed"] + 1)
    ids, tg, mask = torch.from_numpy(ids_np), torch.from_numpy(targets_np), torch.from_numpy(mask_np)
    batch = (ids, tg, mask)

    def loss_fn():
        return masked_loss(torch, model(input_ids=ids.long()).logits, tg, mask)

    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    loss0 = loss.item()
    grads = {n: params[n].grad.detach().clone() for n in order}
    with torch.no_grad():
        full = model(input_ids=ids.long()).logits
        logits0 = model(input_ids=ids[:1, : LENGTHS[0]].long()).logits[0].float().clone()
    checks["batch_vs_single_logits_max_abs"] = float((full[0, : LENGTHS[0]] - logits0).abs().max())
    if checks["batch_vs_single_logits_max_abs"] > 1e-5:
        problems.add("%s: the batched logits of sequence 0 differ from its own by %.3g"
                     % (name, checks["batch_vs_single_logits_max_abs"]))

    # Reload through PeftModel.from_pretrained: same logits.
    reloaded = PeftModel.from_pretrained(golden.load_hf_model(torch, model_rel), adapter_dir)
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(input_ids=ids[:1, : LENGTHS[0]].long()).logits[0].float()
    checks["reload_logits_max_abs"] = float((again - logits0).abs().max())
    if checks["reload_logits_max_abs"] != 0.0:
        problems.add("%s: PeftModel.from_pretrained gives logits %.3g away" % (name, checks["reload_logits_max_abs"]))
    del reloaded

    # Independent reference: loss and gradients.
    rloss, rgrads = ref_loss_and_grad(torch, cfg, W, init, scale, *batch)
    checks["ref_loss_rel"] = abs(rloss - loss0) / abs(loss0)
    checks["ref_grad_rel_to_max"] = {n: max_rel(torch, rgrads[n], grads[n]) for n in order}
    worst_grad = max(checks["ref_grad_rel_to_max"].values())
    if not checks["ref_loss_rel"] < REF_LOSS_RTOL:
        problems.add("%s: the re-implementation's loss %.8g differs from peft's %.8g" % (name, rloss, loss0))
    if not worst_grad < REF_GRAD_RTOL:
        problems.add("%s: the re-implementation's gradients differ from peft's by %.3g of max" % (name, worst_grad))
    for n in order:
        if not float(grads[n].abs().max()) > 0:
            problems.add("%s: gradient of %s is zero" % (name, n))
    # Adam's first step is ~lr * sign(g): an element with |g| near zero is the one whose update a
    # tiny gradient error could flip (informational; expected ~5e-6 of max for the smallest).
    checks["grad_min_abs_rel_to_max"] = min(float(grads[n].abs().min() / grads[n].abs().max()) for n in order)

    # Sensitivity of the loss and gradients to plausible mistakes.
    sens = {}
    zero_b = {n: (torch.zeros_like(t) if n.endswith("lora_B.weight") else t) for n, t in init.items()}
    valid = (tg >= 0).float()
    for key, lora_alt, scale_alt, mask_alt in (("without_adapter", zero_b, scale, mask),
                                               ("scale_1", init, 1.0, mask), ("mask_ignored", init, scale, valid)):
        alt_loss, alt_grads = ref_loss_and_grad(torch, cfg, W, lora_alt, scale_alt, ids, tg, mask_alt)
        sens["loss_" + key] = abs(alt_loss - loss0)
        sens["grad_%s_rel_to_max" % key] = max(max_rel(torch, alt_grads[n], grads[n]) for n in order)

    # AdamW, five steps, torch's optimiser on peft's model.
    opt = torch.optim.AdamW([params[n] for n in order], lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
                            weight_decay=ADAMW["weight_decay"], foreach=False)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(loss_fn()))
    final = {n: params[n].detach().clone() for n in order}
    if abs(losses[0] - loss0) > 0:
        problems.add("%s: the first AdamW loss %.9g is not the loss %.9g" % (name, losses[0], loss0))
    if not losses[-1] < losses[0]:
        problems.add("%s: five AdamW steps did not lower the loss: %s" % (name, losses))

    rlosses, rfinal = ref_trajectory(torch, cfg, W, init, scale, batch)
    checks["ref_adamw_loss_rel"] = max(abs(a - b) / abs(b) for a, b in zip(rlosses, losses))
    checks["ref_adamw_param_max_abs"] = max(float((rfinal[n] - final[n]).abs().max()) for n in order)
    checks["ref_adamw_param_norm_rel"] = norm_rel_update(torch, rfinal, final, init, order)
    if not checks["ref_adamw_loss_rel"] < REF_LOSS_RTOL:
        problems.add("%s: the written-out AdamW's losses %s differ from torch's %s" % (name, rlosses, losses))
    if not (checks["ref_adamw_param_max_abs"] < REF_PARAM_ATOL
            and checks["ref_adamw_param_norm_rel"] < REF_PARAM_NORM_REL):
        problems.add("%s: the written-out AdamW's parameters differ from torch's by %.3g (%.3g of the update)"
                     % (name, checks["ref_adamw_param_max_abs"], checks["ref_adamw_param_norm_rel"]))
    for flag in ("weight_decay", "bias_correction"):
        _, alt = ref_trajectory(torch, cfg, W, init, scale, batch, **{flag: False})
        sens["params_no_%s_max_abs" % flag] = max(float((alt[n] - final[n]).abs().max()) for n in order)
        sens["params_no_%s_norm_rel" % flag] = norm_rel_update(torch, alt, final, init, order)
    sens["params_moved_max_abs"] = max(float((final[n] - init[n]).abs().max()) for n in order)
    checks["sensitivity"] = sens
    for key in ("without_adapter", "scale_1", "mask_ignored"):
        if not sens["loss_" + key] > 10 * TEST_TOL["loss_rel"] * loss0:
            problems.add("%s: %s moves the loss by only %.3g" % (name, key, sens["loss_" + key]))
        if not sens["grad_%s_rel_to_max" % key] > 10 * TEST_TOL["grad_rel_to_max"]:
            problems.add("%s: %s moves the gradients by only %.3g" % (name, key, sens["grad_%s_rel_to_max" % key]))
    for flag in ("weight_decay", "bias_correction"):
        if not sens["params_no_%s_norm_rel" % flag] > 3 * TEST_TOL["adamw_param_norm_rel"]:
            problems.add("%s: without %s the parameters move by only %.3g of the update (< 3 x the test "
                         "tolerance)" % (name, flag, sens["params_no_%s_norm_rel" % flag]))

    # Write the reference.
    tensors = {
        "ids": ("I32", ids_np), "targets": ("I32", targets_np), "mask": ("F32", mask_np),
        "loss": ("F32", np.array([loss0], dtype=np.float32)),
        "losses": ("F32", np.array(losses, dtype=np.float32)),
        "logits_0": ("F32", logits0.numpy().astype(np.float32)),
    }
    for n in order:
        tensors["grad." + n] = ("F32", grads[n].numpy().astype(np.float32))
        tensors["final." + n] = ("F32", final[n].numpy().astype(np.float32))
    path = os.path.join(folder, "reference.safetensors")
    golden.write_safetensors(path, tensors, {"format": "pt"})
    golden.check_with_library(path, tensors)

    meta = {
        "variant": name, "base_model": model_rel, "adapter": os.path.join("tests", "data", "lora", name, "adapter"),
        "lora": {"r": r, "lora_alpha": alpha, "scale": scale, "target_modules": targets, "lora_dropout": 0.0,
                 "bias": "none", "init": "A ~ N(0, %g), B ~ N(0, %g), numpy PCG64 seed %d, drawn in param_order"
                 % (INIT_STD["A"], INIT_STD["B"], variant["seed"])},
        "param_order": order,
        "param_shapes": {n: list(init[n].shape) for n in order},
        "batch": {"lengths": LENGTHS, "pad_id": PAD_ID, "ignore_target": IGNORE, "seed": variant["seed"] + 1,
                  "ids": ids_np.tolist(), "targets": targets_np.tolist(), "mask": mask_np.astype(int).tolist(),
                  "mask_positions": int(mask_np.sum())},
        "loss": loss0,
        "adamw": {"lr": ADAMW["lr"], "beta1": ADAMW["betas"][0], "beta2": ADAMW["betas"][1], "eps": ADAMW["eps"],
                  "weight_decay": ADAMW["weight_decay"], "steps": STEPS,
                  "optimizer": "torch.optim.AdamW(foreach=False)"},
        "losses": losses,
        "tensors": {
            "ids": "i32 [2, T] token ids, right-padded with pad_id",
            "targets": "i32 [2, T] ids shifted left; ignore_target at each sequence's last token and on padding",
            "mask": "f32 [2, T] 1 = position t's logits score targets[b, t] in the loss",
            "loss": "f32 [1] sum(mask * CE) / sum(mask) with the adapter as saved",
            "grad.NAME": "f32 d loss / d NAME, NAME a tensor of adapter/adapter_model.safetensors",
            "losses": "f32 [6] loss before each AdamW step, then after the last",
            "final.NAME": "f32 NAME after the AdamW steps",
            "logits_0": "f32 [lengths[0], V] logits of sequence 0 alone with the adapter as saved",
        },
        "tolerances": TEST_TOL,
        "checks": checks,
        "versions": versions,
    }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("  %-6s loss %.6f  losses %s  ref loss rel %.1e  ref grad rel %.1e  adamw ref %.1e/%.1e  "
          "sensitivity %s" % (name, loss0, ["%.5f" % x for x in losses], checks["ref_loss_rel"], worst_grad,
                              checks["ref_adamw_loss_rel"], checks["ref_adamw_param_max_abs"],
                              {k: float("%.3g" % v) for k, v in sens.items()}), flush=True)
    return meta


def versions_info():
    import peft
    import safetensors
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "peft_path": os.path.dirname(os.path.abspath(peft.__file__)), "numpy": np.__version__,
            "safetensors": safetensors.__version__}


def run(out_root, check_only=False):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    if os.environ.get("PYTHONHASHSEED") != "0":
        print("make_lora_fixtures: warning: PYTHONHASHSEED is not 0; target_modules order in "
              "adapter_config.json may differ between runs", flush=True)
    versions = versions_info()
    print("make_lora_fixtures: %s" % versions, flush=True)
    versions.pop("peft_path")
    problems = golden.Problems()
    for name, variant in VARIANTS.items():
        run_variant(torch, name, variant, out_root, problems, versions)
    return golden.finish("make_lora_fixtures", out_root, check_only, problems)


def main(argv=None):
    return golden.cli_main(run, "Golden LoRA fixtures for lmc (see the module docstring).", "tests/data/lora",
                           "lmc-lora-", argv)

if __name__ == "__main__":
    sys.exit(main())
