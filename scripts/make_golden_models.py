#!/usr/bin/env python3
"""Golden tiny models for lmc's model tests (issue 4), computed with Hugging Face transformers.

Run on the machine that has torch + transformers + safetensors (the GPU machine; everything
here runs on its CPU in float32, so no TF32 or GPU kernel differences enter the numbers):

    python3 scripts/make_golden_models.py                # writes tests/data/models/
    python3 scripts/make_golden_models.py --check        # full dry run in a temp dir, writes nothing
    python3 scripts/make_reference_fixtures.py --all     # tokenizer fixtures + this

It needs .cache/tokenizers/{gemma3,llama3_1,qwen3}/ (scripts/fetch_tokenizers.sh) to tokenise
the prompts with the real tokenizers.

What it writes, for each variant NAME in llama, qwen2, qwen3, gemma3, gemma3_softcap:

  tests/data/models/NAME/            a Hugging Face style checkpoint, bf16
      config.json        written by this script in the layout of the real checkpoints'
                         config.json (rope_scaling/rope_theta, rope_local_base_freq,
                         sliding_window_pattern + layer_types, torch_dtype ...), not
                         transformers' own v5 re-serialisation, so lmc reads what users have.
      model.safetensors  bf16 weights under the real checkpoints' names
                         (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...;
                         no lm_head.weight when the embeddings are tied). metadata {"format": "pt"}.
      tokenizer.json.ref one line: the family folder under .cache/tokenizers (gemma3, llama3_1
                         or qwen3). The tokenizer files are not copied (33 MB for gemma3): a test
                         copies or symlinks .cache/tokenizers/FAMILY/{tokenizer.json,
                         tokenizer_config.json} next to config.json in a temp folder.
      golden.safetensors f32/i32 reference tensors (below), metadata {"format": "pt"}.
      golden.json        the same facts for humans and cJSON: prompts (text, ids, whether the
                         tokenizer's special tokens were added), greedy ids and margins,
                         tolerances, versions and the self-checks this script ran.

  tests/data/models/NAME_mlx4/       the same model as an mlx-community style 4-bit checkpoint
      config.json        NAME's config.json plus "quantization" and "quantization_config"
                         (identical): {"group_size": G, "bits": 4, "mode": "affine"}; the variants
                         qwen2 and gemma3_softcap omit "mode" as older mlx-lm did (both forms
                         exist in the wild).
      model.safetensors  every Linear (q/k/v/o_proj, gate/up/down_proj, lm_head when untied) and
                         the embedding as NAME.weight (uint32, [out, in*4/32], packed),
                         NAME.scales and NAME.biases (bf16, [out, in/G]); norms and Qwen 2's
                         q/k/v .bias stay bf16. metadata {"format": "mlx"}.
      tokenizer.json.ref, golden.safetensors, golden.json as above; the reference numbers are
                         transformers run on the DEQUANTISED weights
                         w = float32(scale_bf16) * q + float32(bias_bf16) (computed in float32).

golden.safetensors tensors, for prompt k in 0, 1:
  prompt_ids_k     int32 [T]      the prompt fed to the model (see "prompts" below)
  logits_k         f32   [T, V]   transformers' logits at every prompt position (one forward pass)
  greedy_ids_k     int32 [N]      N = 48 tokens from generate(do_sample=False), EOS ignored
  greedy_margin_k  f32   [N]      top1 - top2 logit at each greedy step (from one forward pass over
                                  prompt + greedy ids; step i uses position T-1+i)

Sizes: vocab_size V = 2048 for every variant (not the real vocabularies: gemma3's 262144 x hidden
would be far too big), hidden 64 (96 for Gemma), prompts of 14 and 46 words. The prompts are real
English sentences built only from words that the three real tokenizers encode as single tokens
with id < 2048, so prompt_ids_k are exactly the real tokenizer's ids, unmapped:
  gemma3 (family gemma3): tokenizer(text, add_special_tokens=True)  -> starts with <bos> = 2
  qwen2, qwen3 (family qwen3): tokenizer(text, add_special_tokens=True) (Qwen adds nothing)
  llama (family llama3_1): tokenizer(text, add_special_tokens=False): <|begin_of_text|> is
                           128000, outside the tiny vocabulary, so it is left out.
The script asserts this (every id < V). config.json keeps the real bos/eos ids of each family
(eos ids >= V are simply never produced); greedy runs ignore EOS, so tests should generate with
EOS ignored (lmc generate --ignore-eos) or compare only the prefix before an EOS id.

The architectures (each built from the real checkpoints' config conventions at small sizes):
  llama          Llama 3.2 style: GQA 4 heads / 2 KV heads, head_dim 16, SwiGLU, tied embeddings,
                 rope_scaling {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                 "high_freq_factor": 4, "original_max_position_embeddings": 64} with rope_theta
                 500000 (head_dim 16 puts rotary frequencies in all three llama3 bands).
  qwen2          Qwen 2.5 style: q/k/v biases, untied lm_head, GQA 4/2, rope_theta 1e6.
  qwen3          Qwen 3 style: head_dim 32 != hidden/heads = 16, q_norm/k_norm, GQA 4/2, tied.
  gemma3         Gemma 3 1B style (model_type gemma3_text): 7 layers, layer_types 5 sliding +
                 1 full + 1 sliding (sliding_window_pattern 6), sliding_window 16 < prompt 46,
                 rope_local_base_freq 10000 on sliding layers, rope_theta 1e6 on full ones,
                 query_pre_attn_scalar 24 (!= head_dim 32, so using head_dim is caught), hidden 96
                 (embedding scale sqrt(96) is not a power of two), GQA 4 heads / 1 KV head,
                 (1+w) RMSNorm with pre/post attention and feed-forward norms, q/k norms,
                 GELU-tanh, tied embeddings.
  gemma3_softcap gemma3 with final_logit_softcapping 10.0, linear rope_scaling factor 8 on the
                 full-attention layers (as Gemma 3 4B+), and 2 KV heads.
Weights: numpy PCG64 with a fixed seed per variant, drawn in the order of the tensor list;
linear N(0, 0.2), embeddings and untied heads N(0, 0.4), Qwen 2 biases N(0, 0.2), norm weights
1 + N(0, 0.1) (Gemma: N(0, 0.1), as it uses 1 + w); Gemma's embeddings N(0, 0.05) and its final
norm weight shifted by +5 (its input is scaled by sqrt(hidden): with large tied embeddings the
random model just repeats its input token). All rounded to bf16. Logits are a few units wide and
greedy runs visit many different tokens. The seeds were chosen (with the independent
re-implementation below) so that every greedy run has >= 32 clear steps.
Deterministic: reruns give identical files.

Tolerances the C tests should use (lmc computing in f32 on the same weights; the differences are
summation order and libm): logits max |lmc - golden| <= 2e-3 absolute (logits are O(1..10)); the
mlx4 variants the same (the reference used the same dequantised values lmc computes). Greedy: compare
greedy_ids_k step by step while every step so far had greedy_margin_k >= 5e-3; at least 32 steps
are comparable for every variant (the script reports the count; see golden.json "greedy_clear_steps").
golden.json "checks" records what this script measured: an independent float32 re-implementation
of each architecture written here from the config semantics (not transformers' code) against
transformers' logits ("ref_max_abs_diff", required < 5e-4; typically ~1e-5), and, per trait,
max |re-implementation with that trait switched off - transformers' logits| ("sensitivity": llama3
rope scaling, the sliding window, the local rope base, query_pre_attn_scalar, soft-capping, q/k
norms, biases; "window_plus_one" uses a window one longer). Large values show that transformers
applies the trait and that the fixtures would catch an implementation that forgets it.

MLX 4-bit quantisation follows mlx's affine quantize exactly (mlx/backend/cpu/quantized.cpp,
template quantize<T, U>, and the fallback in mlx/ops.cpp affine_quantize, ml-explore/mlx):
per group of G consecutive input weights (float32 arithmetic): w_max, w_min;
n_bins = 2^bits - 1; scale = max((w_max - w_min) / n_bins, 1e-7); if |w_min| > |w_max| the edge
is w_min and scale stays positive, else the edge is w_max and scale = -scale; q0 = rint(edge /
scale); if q0 != 0: scale = edge / q0, bias = edge; else bias = 0. Each weight:
q = clip(rint((w - bias) / scale), 0, n_bins); eight 4-bit values per uint32, element k of each
run of 8 in bits 4k..4k+3 (least significant first). scales and biases are stored cast to the
weight dtype (bf16, round to nearest even). Which modules: mlx-lm's quantize_model (mlx_lm/utils.py,
ml-explore/mlx-lm) quantises every module with to_quantized (Linear, Embedding) whose input dim is
a multiple of G, and writes config["quantization"] and config["quantization_config"].

Exit status: 0 when every check passed; 3 when the files were written but a check failed (read
the "PROBLEM" lines: a fixture that disagrees with the stated semantics must not be committed
blindly); 1 on an error that stopped it before writing.
"""
import argparse
import copy
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(REPO, ".cache", "tokenizers")
VOCAB = 2048
MAX_NEW_TOKENS = 48
PROMPTS = [
    "The people in the world will find a new way to work and play",
    "The man had a long day at work so he did not want to go out but she said that they "
    "should take the car to the new place and find some good work for all of them to see "
    "before the end of the year",
]
LOGITS_TOL = 2e-3
MARGIN_CLEAR = 5e-3  # > 2 * LOGITS_TOL: a clear step cannot flip within the tolerance
REF_TOL = 5e-4  # independent re-implementation vs transformers (both f32 on the CPU)

# ---------------------------------------------------------------------------------------------
# Variants: config.json exactly as written (real-checkpoint layout), plus what this script needs.


def _gemma_layer_types(n, pattern):
    return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]


VARIANTS = {
    "llama": {
        "family": "llama3_1", "add_special_tokens": False, "group_size": 64, "mode_key": True, "seed": 1101,
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009], "head_dim": 16, "hidden_act": "silu",
            "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
            "max_position_embeddings": 131072, "mlp_bias": False, "num_attention_heads": 4,
            "num_hidden_layers": 3, "num_key_value_heads": 2, "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 64, "rope_type": "llama3"},
            "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
            "use_cache": True, "vocab_size": VOCAB,
        },
    },
    "qwen2": {
        "family": "qwen3", "add_special_tokens": True, "group_size": 32, "mode_key": False, "seed": 4202,
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
            "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
            "intermediate_size": 160, "max_position_embeddings": 32768, "max_window_layers": 3,
            "num_attention_heads": 4, "num_hidden_layers": 3, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
            "sliding_window": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "use_cache": True, "use_sliding_window": False, "vocab_size": VOCAB,
        },
    },
    "qwen3": {
        "family": "qwen3", "add_special_tokens": True, "group_size": 64, "mode_key": True, "seed": 2303,
        "config": {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
            "eos_token_id": 151645, "head_dim": 32, "hidden_act": "silu", "hidden_size": 64,
            "initializer_range": 0.02, "intermediate_size": 192, "max_position_embeddings": 40960,
            "max_window_layers": 3, "num_attention_heads": 4, "num_hidden_layers": 3,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None,
            "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": True,
            "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
            "vocab_size": VOCAB,
        },
    },
    "gemma3": {
        "family": "gemma3", "add_special_tokens": True, "group_size": 32, "mode_key": True, "seed": 404,
        # Small embeddings (the input is scaled by sqrt(hidden)) and a large final norm keep the
        # tied head from copying the input token forever; the logits stay a few units wide.
        "init": {"embed": 0.05, "final_norm_shift": 5.0},
        "config": {
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None,
            "bos_token_id": 2, "eos_token_id": [1, 106], "final_logit_softcapping": None,
            "head_dim": 32, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 96,
            "initializer_range": 0.02, "intermediate_size": 128,
            "layer_types": _gemma_layer_types(7, 6), "max_position_embeddings": 32768,
            "num_attention_heads": 4, "num_hidden_layers": 7, "num_key_value_heads": 1,
            "pad_token_id": 0, "query_pre_attn_scalar": 24, "rms_norm_eps": 1e-06,
            "rope_local_base_freq": 10000.0, "rope_scaling": None, "rope_theta": 1000000.0,
            "sliding_window": 16, "sliding_window_pattern": 6, "tie_word_embeddings": True,
            "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": VOCAB,
        },
    },
}
VARIANTS["gemma3_softcap"] = copy.deepcopy(VARIANTS["gemma3"])
VARIANTS["gemma3_softcap"].update({"mode_key": False, "seed": 2505})
VARIANTS["gemma3_softcap"]["config"].update({
    "final_logit_softcapping": 10.0, "num_key_value_heads": 2,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
})


# Standard deviations of the random weights (a variant's "init" overrides them).
INIT_STD = {"linear": 0.2, "embed": 0.4, "head": 0.4, "bias": 0.2, "norm": 0.1, "final_norm_shift": 0.0}


def is_gemma(cfg):
    return cfg["model_type"] in ("gemma3", "gemma3_text")


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def tensor_specs(cfg):
    """(name, shape, kind) of every weight of the checkpoint, in a fixed order."""
    H, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    gemma = is_gemma(cfg)
    qk_norm = gemma or cfg["model_type"] == "qwen3"
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    specs = [("model.embed_tokens.weight", (V, H), "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        specs.append((p + "input_layernorm.weight", (H,), "norm"))
        for name, out_dim in (("q_proj", nh * hd), ("k_proj", nkv * hd), ("v_proj", nkv * hd)):
            specs.append((p + "self_attn.%s.weight" % name, (out_dim, H), "linear"))
            if qkv_bias:
                specs.append((p + "self_attn.%s.bias" % name, (out_dim,), "bias"))
        specs.append((p + "self_attn.o_proj.weight", (H, nh * hd), "linear"))
        if qk_norm:
            specs.append((p + "self_attn.q_norm.weight", (hd,), "norm"))
            specs.append((p + "self_attn.k_norm.weight", (hd,), "norm"))
        specs.append((p + "post_attention_layernorm.weight", (H,), "norm"))
        if gemma:
            specs.append((p + "pre_feedforward_layernorm.weight", (H,), "norm"))
            specs.append((p + "post_feedforward_layernorm.weight", (H,), "norm"))
        specs.append((p + "mlp.gate_proj.weight", (I, H), "linear"))
        specs.append((p + "mlp.up_proj.weight", (I, H), "linear"))
        specs.append((p + "mlp.down_proj.weight", (H, I), "linear"))
    specs.append(("model.norm.weight", (H,), "norm"))
    if not cfg["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (V, H), "head"))
    return specs


# ---------------------------------------------------------------------------------------------
# bf16 and safetensors in plain numpy (no torch needed: testable anywhere).


def f32_to_bf16_bits(x):
    """Round float32 to bf16 (nearest, ties to even), as torch and mlx do. Returns uint16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


_ST_DTYPES = {"BF16": np.uint16, "F32": np.float32, "I32": np.int32, "U32": np.uint32}


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype tag, numpy array). Data laid out in name order."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tag, arr = tensors[name]
        arr = np.ascontiguousarray(arr, dtype=_ST_DTYPES[tag])
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def check_with_library(path, tensors):
    """Where the safetensors library is installed, it must read back exactly what was written."""
    try:
        from safetensors import safe_open
    except ImportError:
        return
    import torch

    with safe_open(path, framework="pt") as f:
        names = set(f.keys())
        if names != set(tensors):
            raise RuntimeError("%s: safetensors reads names %s" % (path, sorted(names ^ set(tensors))))
        for name, (tag, arr) in tensors.items():
            t = f.get_tensor(name).contiguous()
            if list(t.shape) != list(np.shape(arr)):
                raise RuntimeError("%s: safetensors reads %s with shape %s" % (path, name, list(t.shape)))
            got = None
            for convert in (lambda: t.view(torch.uint8).numpy(), lambda: t.numpy()):
                try:  # bytes of any dtype (bf16 and uint32 have little numpy support in torch)
                    got = convert().tobytes()
                    break
                except (RuntimeError, TypeError):
                    continue
            want = np.ascontiguousarray(arr, dtype=np.dtype(_ST_DTYPES[tag]).newbyteorder("<")).tobytes()
            if got is not None and got != want:
                raise RuntimeError("%s: safetensors reads %s differently" % (path, name))


def read_safetensors(path):
    """name -> (dtype tag, numpy array); used to check what was written."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.dtype(_ST_DTYPES[h["dtype"]]).newbyteorder("<"))
        out[name] = (h["dtype"], arr.reshape(h["shape"]))
    return out


# ---------------------------------------------------------------------------------------------
# Weights and MLX quantisation.


def make_weights(variant):
    """name -> bf16 bits (uint16 array), seeded and deterministic."""
    cfg = variant["config"]
    std = dict(INIT_STD, **variant.get("init", {}))
    rng = np.random.default_rng(variant["seed"])
    gemma = is_gemma(cfg)
    out = {}
    for name, shape, kind in tensor_specs(cfg):
        z = rng.standard_normal(shape)
        if kind in ("linear", "embed", "head", "bias"):
            w = std[kind] * z
        elif kind == "norm":
            w = std["norm"] * z if gemma else 1.0 + std["norm"] * z
            if name == "model.norm.weight":
                w = w + std["final_norm_shift"]
        else:
            raise AssertionError(kind)
        out[name] = f32_to_bf16_bits(w.astype(np.float32))
    return out


def mlx_affine_quantize(w, group_size, bits=4):
    """Port of mlx's affine quantize (mlx/backend/cpu/quantized.cpp quantize<T,U>).

    w: float32 [rows, cols] holding bf16 values. Returns (packed uint32 [rows, cols*bits/32],
    scales bf16 bits [rows, cols/G], biases bf16 bits [rows, cols/G])."""
    assert bits == 4 and w.shape[-1] % group_size == 0
    rows, cols = w.shape
    g = w.astype(np.float32).reshape(-1, group_size)
    n_bins = np.float32((1 << bits) - 1)
    eps = np.float32(1e-7)
    w_max = g.max(axis=1)
    w_min = g.min(axis=1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, eps).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nonzero = q0 != 0
    safe_q0 = np.where(nonzero, q0, np.float32(1))
    scale = np.where(nonzero, edge / safe_q0, scale).astype(np.float32)
    bias = np.where(nonzero, edge, np.float32(0)).astype(np.float32)
    q = np.rint((g - bias[:, None]) / scale[:, None])
    q = np.clip(q, 0, n_bins).astype(np.uint32).reshape(rows, cols // 8, 8)
    packed = np.zeros((rows, cols // 8), dtype=np.uint32)
    for k in range(8):
        packed |= q[:, :, k] << np.uint32(4 * k)
    return (packed, f32_to_bf16_bits(scale).reshape(rows, cols // group_size),
            f32_to_bf16_bits(bias).reshape(rows, cols // group_size))


def mlx_dequantize(packed, scales, biases, group_size, bits=4):
    """w = scale * q + bias in float32, from the stored bf16 scales and biases."""
    rows = packed.shape[0]
    q = np.zeros(packed.shape + (8,), dtype=np.uint32)
    for k in range(8):
        q[:, :, k] = (packed >> np.uint32(4 * k)) & np.uint32(0xF)
    q = q.reshape(rows, -1, group_size).astype(np.float32)
    s = bf16_bits_to_f32(scales)[:, :, None]
    b = bf16_bits_to_f32(biases)[:, :, None]
    return (s * q + b).astype(np.float32).reshape(rows, -1)


def quantized_name(name, cfg):
    """Whether mlx-lm quantises this tensor: Linear and Embedding weights."""
    return name.endswith("_proj.weight") or name in ("model.embed_tokens.weight", "lm_head.weight")


def quantize_weights(weights, variant):
    """bf16 checkpoint -> (mlx tensors for safetensors, dequantised float32 weights)."""
    G = variant["group_size"]
    tensors, deq = {}, {}
    for name, bits16 in weights.items():
        w = bf16_bits_to_f32(bits16)
        if quantized_name(name, variant["config"]):
            packed, scales, biases = mlx_affine_quantize(w, G)
            base = name[: -len(".weight")]
            tensors[name] = ("U32", packed)
            tensors[base + ".scales"] = ("BF16", scales)
            tensors[base + ".biases"] = ("BF16", biases)
            deq[name] = mlx_dequantize(packed, scales, biases, G)
        else:
            tensors[name] = ("BF16", bits16)
            deq[name] = w
    return tensors, deq


def mlx_config(variant):
    cfg = copy.deepcopy(variant["config"])
    q = {"group_size": variant["group_size"], "bits": 4}
    if variant["mode_key"]:
        q["mode"] = "affine"
    cfg["quantization"] = q
    cfg["quantization_config"] = dict(q)
    return cfg


# ---------------------------------------------------------------------------------------------
# Independent float32 re-implementation (from the config semantics, not transformers' code),
# used only to check that transformers interpreted config.json as documented above.


def ref_logits(torch, cfg, W, ids, off=()):
    """W: name -> float32 torch tensor. off: traits to switch off (for the sensitivity report)."""
    F = torch.nn.functional
    gemma = is_gemma(cfg)
    H, nh, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    T = len(ids)

    def norm(v, w):
        v = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps)
        return v * (1.0 + w) if gemma else v * w

    def inv_freq(base, scaling):
        inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type"))
        if scaling is None or "rope_scaling" in off:
            return inv
        if kind == "linear":
            return inv / scaling["factor"]
        if kind == "llama3":
            factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
            old = scaling["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > old / lo, inv / factor, inv)
            smooth = (old / wavelen - lo) / (hi - lo)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wavelen < old / hi) * ~(wavelen > old / lo)
            return torch.where(medium, smoothed, scaled)
        raise ValueError("ref_logits: rope type %r not implemented" % kind)

    pos = torch.arange(T, dtype=torch.float32)

    def cos_sin(inv):
        f = pos[:, None] * inv[None, :]
        e = torch.cat([f, f], dim=-1)
        return e.cos(), e.sin()

    def rope(v, cs):
        cos, sin = cs
        v1, v2 = v[..., : hd // 2], v[..., hd // 2:]
        return v * cos + torch.cat([-v2, v1], dim=-1) * sin

    layer_types = cfg.get("layer_types") or ["full_attention"] * cfg["num_hidden_layers"]
    global_cs = cos_sin(inv_freq(cfg["rope_theta"], cfg.get("rope_scaling")))
    local_base = cfg["rope_theta"] if "local_base" in off else cfg.get("rope_local_base_freq", cfg["rope_theta"])
    local_cs = cos_sin(inv_freq(local_base, None)) if gemma else global_cs
    if gemma:
        scaling = (hd if "query_pre_attn_scalar" in off else cfg["query_pre_attn_scalar"]) ** -0.5
    else:
        scaling = hd ** -0.5
    qi = torch.arange(T)[:, None]
    ki = torch.arange(T)[None, :]
    causal = ki <= qi
    window = cfg.get("sliding_window") or 0
    if "window_plus_one" in off:
        window += 1
    sliding = causal & ((qi - ki) < window)

    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    if gemma:
        x = x * torch.tensor(H ** 0.5, dtype=torch.float32)
    use_bias = "biases" not in off
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = norm(x, W[p + "input_layernorm.weight"])

        def proj(name, v):
            out = v @ W[p + name + ".weight"].T
            b = W.get(p + name + ".bias")
            return out + b if (b is not None and use_bias) else out

        q = proj("self_attn.q_proj", h).view(T, nh, hd).transpose(0, 1)
        k = proj("self_attn.k_proj", h).view(T, nkv, hd).transpose(0, 1)
        v = proj("self_attn.v_proj", h).view(T, nkv, hd).transpose(0, 1)
        if p + "self_attn.q_norm.weight" in W and "qk_norm" not in off:
            q = norm(q, W[p + "self_attn.q_norm.weight"])
            k = norm(k, W[p + "self_attn.k_norm.weight"])
        is_sliding = layer_types[i] == "sliding_attention" and "window" not in off
        cs = local_cs if layer_types[i] == "sliding_attention" else global_cs
        q, k = rope(q, cs), rope(k, cs)
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        s = (q @ k.transpose(1, 2)) * scaling
        cap = cfg.get("attn_logit_softcapping")
        if cap:
            s = torch.tanh(s / cap) * cap
        s = s.masked_fill(~(sliding if is_sliding else causal), float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(0, 1).reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        if gemma:
            x = x + norm(a, W[p + "post_attention_layernorm.weight"])
            h = norm(x, W[p + "pre_feedforward_layernorm.weight"])
        else:
            x = x + a
            h = norm(x, W[p + "post_attention_layernorm.weight"])
        gate = h @ W[p + "mlp.gate_proj.weight"].T
        act = F.gelu(gate, approximate="tanh") if gemma else F.silu(gate)
        m = (act * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        x = x + (norm(m, W[p + "post_feedforward_layernorm.weight"]) if gemma else m)
    x = norm(x, W["model.norm.weight"])
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    logits = x @ head.T
    cap = cfg.get("final_logit_softcapping")
    if cap and "softcap" not in off:
        logits = torch.tanh(logits / cap) * cap
    return logits


SENSITIVITY = {
    "llama": ["rope_scaling"],
    "qwen2": ["biases"],
    "qwen3": ["qk_norm"],
    "gemma3": ["window", "window_plus_one", "local_base", "query_pre_attn_scalar", "qk_norm"],
    "gemma3_softcap": ["softcap", "rope_scaling", "window"],
}

# ---------------------------------------------------------------------------------------------
# transformers side.


class Problems:
    def __init__(self):
        self.items = []

    def add(self, msg):
        print("PROBLEM: " + msg, flush=True)
        self.items.append(msg)


def tokenize_prompts(name, variant):
    from tokenizers import Tokenizer

    path = os.path.join(TOKENIZER_DIR, variant["family"], "tokenizer.json")
    tk = Tokenizer.from_file(path)
    out = []
    for text in PROMPTS:
        ids = tk.encode(text, add_special_tokens=variant["add_special_tokens"]).ids
        bad = [i for i in ids if i >= VOCAB]
        if bad:
            raise RuntimeError("%s: prompt %r has ids >= vocab %d: %s" % (name, text, VOCAB, bad))
        out.append(ids)
    return out


def load_hf_model(torch, folder):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    except TypeError:  # transformers before `dtype=` existed
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def verify_loaded_weights(torch, model, cfg, W, name):
    """Every saved tensor must be in the model unchanged; nothing in the model may be left
    randomly initialised; tied heads must really be tied."""
    sd = model.state_dict()
    saved = set(W)
    # Parameters only: persistent buffers (if a version has any) are computed, not loaded.
    try:
        params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    except TypeError:  # torch < 2.0
        params = {n for n, _ in model.named_parameters()}
    have = params | (saved & set(sd))
    tied = cfg["tie_word_embeddings"]
    extra = sorted(k for k in have - saved if not (tied and k == "lm_head.weight"))
    missing = sorted(saved - have)
    if extra or missing:
        raise RuntimeError("%s: transformers' parameter names differ from the checkpoint's: "
                           "in the model only %s; in the file only %s" % (name, extra, missing))
    for k in saved:
        if sd[k].dtype != torch.float32:
            raise RuntimeError("%s: %s loaded as %s, expected float32" % (name, k, sd[k].dtype))
        if not torch.equal(sd[k], W[k]):
            raise RuntimeError("%s: %s differs from the saved weights after loading" % (name, k))
    if tied and "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"], W["model.embed_tokens.weight"]):
        raise RuntimeError("%s: lm_head is not tied to the embeddings" % name)


def set_weights(torch, model, W):
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in W.items():
            params[k].copy_(v)


def greedy(torch, model, prompt_ids, problems, label):
    """Greedy ids from generate(do_sample=False) with EOS off, plus per-step top-2 margins from
    one forward pass over prompt + generated ids. A manual argmax loop cross-checks generate."""
    from transformers import GenerationConfig

    N = MAX_NEW_TOKENS
    T = len(prompt_ids)
    manual = list(prompt_ids)
    with torch.no_grad():
        for _ in range(N):
            logits = model(input_ids=torch.tensor([manual])).logits[0, -1]
            manual.append(int(torch.argmax(logits)))
    manual = manual[T:]
    gen = None
    try:
        gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=N, eos_token_id=None,
                              pad_token_id=0, bos_token_id=None)
        model.generation_config = gc
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([prompt_ids]),
                                 attention_mask=torch.ones(1, T, dtype=torch.long), generation_config=gc)
        gen = [int(t) for t in out[0, T:]]
        if len(gen) != N:
            problems.add("%s: generate returned %d tokens, expected %d; using the manual greedy loop"
                         % (label, len(gen), N))
            gen = None
    except Exception as e:  # noqa: BLE001 - reported, and the manual loop still gives a reference
        problems.add("%s: generate failed (%s: %s); using the manual greedy loop" % (label, type(e).__name__, e))
    ids = gen if gen is not None else manual
    with torch.no_grad():
        full = model(input_ids=torch.tensor([list(prompt_ids) + ids[:-1]])).logits[0]
    steps = full[T - 1:]
    top2 = torch.topk(steps, 2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    argmax = torch.argmax(steps, dim=-1).tolist()
    clear = 0
    for i in range(N):
        if margins[i] < MARGIN_CLEAR:
            break
        if argmax[i] != ids[i] or manual[i] != ids[i]:
            problems.add("%s: step %d: generate gave %d, full-forward argmax %d, manual loop %d "
                         "(margin %.4g)" % (label, i, ids[i], argmax[i], manual[i], margins[i]))
            break
        clear += 1
    return ids, margins, clear


def run_variant(torch, name, variant, out_root, problems, versions):
    cfg = variant["config"]
    prompts = tokenize_prompts(name, variant)
    weights = make_weights(variant)
    W_bf16 = {k: torch.from_numpy(bf16_bits_to_f32(v).copy()) for k, v in weights.items()}
    mlx_tensors, deq = quantize_weights(weights, variant)
    W_q = {k: torch.from_numpy(v.copy()) for k, v in deq.items()}
    summary = {}

    for suffix, W, tensors, config, fmt in (
        ("", W_bf16, {k: ("BF16", v) for k, v in weights.items()}, cfg, "pt"),
        ("_mlx4", W_q, mlx_tensors, mlx_config(variant), "mlx"),
    ):
        label = name + suffix
        folder = os.path.join(out_root, label)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors, {"format": fmt})
        check_with_library(os.path.join(folder, "model.safetensors"), tensors)
        with open(os.path.join(folder, "tokenizer.json.ref"), "w") as f:
            f.write(variant["family"] + "\n")

        # transformers reads the bf16 folder (the MLX one it cannot read); for the mlx4 variant the
        # dequantised weights replace the loaded ones.
        model = load_hf_model(torch, os.path.join(out_root, name))
        verify_loaded_weights(torch, model, cfg, W_bf16, name)
        if suffix:
            set_weights(torch, model, W)
            verify_loaded_weights(torch, model, cfg, W, label)

        golden = {}
        checks = {"ref_max_abs_diff": [], "sensitivity": {}}
        meta_prompts, meta_greedy = [], []
        for k, ids in enumerate(prompts):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0].float()
                ref = ref_logits(torch, cfg, W, ids)
            if tuple(logits.shape) != (len(ids), VOCAB):
                raise RuntimeError("%s: logits shape %s" % (label, tuple(logits.shape)))
            diff = float((logits - ref).abs().max())
            checks["ref_max_abs_diff"].append(diff)
            if not diff < REF_TOL:
                problems.add("%s prompt %d: independent re-implementation differs from transformers "
                             "by %.3g (> %g): config.json semantics and transformers disagree"
                             % (label, k, diff, REF_TOL))
            if k == len(prompts) - 1:
                for trait in SENSITIVITY[name]:
                    with torch.no_grad():
                        d = float((ref_logits(torch, cfg, W, ids, off=(trait,)) - logits).abs().max())
                    checks["sensitivity"][trait] = d
                    if trait != "window_plus_one" and d < 50 * LOGITS_TOL:
                        problems.add("%s: the re-implementation with %s switched off is within %.3g of "
                                     "transformers' logits: transformers ignores %s, or the fixture would "
                                     "not catch its absence" % (label, trait, d, trait))
            gen, margins, clear = greedy(torch, model, ids, problems, "%s prompt %d" % (label, k))
            if clear < 32:
                problems.add("%s prompt %d: only %d greedy steps have a clear margin (want >= 32)"
                             % (label, k, clear))
            golden["prompt_ids_%d" % k] = ("I32", np.array(ids, dtype=np.int32))
            golden["logits_%d" % k] = ("F32", logits.numpy().astype(np.float32))
            golden["greedy_ids_%d" % k] = ("I32", np.array(gen, dtype=np.int32))
            golden["greedy_margin_%d" % k] = ("F32", np.array(margins, dtype=np.float32))
            meta_prompts.append({"text": PROMPTS[k], "add_special_tokens": variant["add_special_tokens"], "ids": ids})
            meta_greedy.append({"ids": gen, "margins": [round(m, 6) for m in margins], "clear_steps": clear})
        write_safetensors(os.path.join(folder, "golden.safetensors"), golden, {"format": "pt"})
        check_with_library(os.path.join(folder, "golden.safetensors"), golden)

        rope_seen = getattr(model.config, "rope_parameters", None) or getattr(model.config, "rope_scaling", None)
        meta = {
            "variant": label, "model_type": cfg["model_type"], "family": variant["family"],
            "quantization": config.get("quantization"), "vocab_size": VOCAB,
            "prompts": meta_prompts, "max_new_tokens": MAX_NEW_TOKENS, "greedy": meta_greedy,
            "greedy_clear_steps": [g["clear_steps"] for g in meta_greedy],
            "tolerances": {"logits_max_abs": LOGITS_TOL, "greedy_margin_clear": MARGIN_CLEAR},
            "checks": checks, "transformers_rope_parameters": json.loads(json.dumps(rope_seen, default=str)),
            "versions": versions,
        }
        with open(os.path.join(folder, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
            f.write("\n")
        summary[label] = meta
        print("  %-20s prompts %s  ref diff %s  clear greedy steps %s  sensitivity %s" % (
            label, [len(p) for p in prompts], ["%.1e" % d for d in checks["ref_max_abs_diff"]],
            meta["greedy_clear_steps"], {t: round(d, 3) for t, d in checks["sensitivity"].items()}), flush=True)
    return summary


def versions_info():
    import torch
    import transformers
    import tokenizers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "numpy": np.__version__}


def self_test_quantize():
    """Plain numpy checks of the MLX port (run by --check and before writing)."""
    rng = np.random.default_rng(7)
    w = bf16_bits_to_f32(f32_to_bf16_bits(rng.standard_normal((8, 128)).astype(np.float32) * 0.1))
    for G in (32, 64):
        packed, s, b = mlx_affine_quantize(w, G)
        assert packed.shape == (8, 16) and s.shape == (8, 128 // G)
        deq = mlx_dequantize(packed, s, b, G)
        step = np.abs(bf16_bits_to_f32(s)).repeat(G, axis=1)
        err = np.abs(deq - w)
        # rint gives half a step; mlx moves the scale so that 0 is exact (scale = edge / q0),
        # which can push the far end of a group past n_bins where it is clipped: one step at most.
        assert np.all(err <= 1.05 * step), err.max()
    # packing order: element k of 8 in bits 4k..4k+3
    # (w = -15..0: |w_min| > |w_max|, so scale = +1, bias = -15 and q = w + 15 = 0..15;
    # with w = 0..15 mlx picks the edge w_max, scale = -1, bias = 15 and q = 15 - w.)
    w = np.tile(np.arange(16, dtype=np.float32) - 15, 4)[None, :]
    packed, s, b = mlx_affine_quantize(w, 32)
    assert packed[0, 0] == 0x76543210 and packed[0, 1] == 0xFEDCBA98, hex(packed[0, 0])
    assert bf16_bits_to_f32(s)[0, 0] == 1 and bf16_bits_to_f32(b)[0, 0] == -15
    packed, s, b = mlx_affine_quantize(w + 15, 32)
    assert packed[0, 0] == 0x89ABCDEF and bf16_bits_to_f32(s)[0, 0] == -1 and bf16_bits_to_f32(b)[0, 0] == 15
    assert np.array_equal(mlx_dequantize(packed, s, b, 32), w + 15)


def run(out_root, check_only=False):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    self_test_quantize()
    versions = versions_info()
    print("make_golden_models: %s" % versions, flush=True)
    problems = Problems()
    summary = {}
    for name, variant in VARIANTS.items():
        summary.update(run_variant(torch, name, variant, out_root, problems, versions))
    return finish("make_golden_models", out_root, check_only, problems, "%d folders, " % len(summary))


def finish(tool, out_root, check_only, problems, what=""):
    """Prints the size of what was written and every problem; the exit status (0 or 3)."""
    total = 0
    for dirpath, _, files in os.walk(out_root):
        for fn in files:
            total += os.path.getsize(os.path.join(dirpath, fn))
    print("%s: %s%.2f MB in %s%s" % (tool, what, total / 1e6, out_root, " (temporary: --check)" if check_only else ""))
    if problems.items:
        print("%s: %d PROBLEM(s):" % (tool, len(problems.items)))
        for p in problems.items:
            print("  - " + p)
        return 3
    print("%s: all checks passed" % tool)
    return 0


def cli_main(run, description, default_out, tmp_prefix, argv=None):
    """--out DIR (relative to the repository root) or --check (a temporary folder, nothing kept)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=default_out, help="output folder, relative to the repository root")
    ap.add_argument("--check", action="store_true", help="build everything in a temporary folder; write nothing")
    args = ap.parse_args(argv)
    if args.check:
        tmp = tempfile.mkdtemp(prefix=tmp_prefix)
        try:
            return run(tmp, check_only=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = args.out if os.path.isabs(args.out) else os.path.join(REPO, args.out)
    os.makedirs(out, exist_ok=True)
    return run(out)


def main(argv=None):
    return cli_main(run, "Golden tiny models for lmc (see the module docstring).", "tests/data/models", "lmc-golden-", argv)

if __name__ == "__main__":
    sys.exit(main())
