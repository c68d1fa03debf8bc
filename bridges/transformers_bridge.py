#!/usr/bin/env python3
"""lmc subprocess bridge for Hugging Face transformers.

    lmc generate --backend subprocess \\
        --bridge "python3 bridges/transformers_bridge.py --device cuda --dtype bfloat16" \\
        -m MODEL_DIR -p "Hello"

Loads MODEL_DIR with AutoTokenizer and AutoModelForCausalLM and speaks lmc's
JSON Lines protocol (docs/subprocess-protocol.md, server side in
lmc_bridge.py). Generation is a plain loop over the model with its KV cache
(past_key_values): one forward pass per token, the token sent as soon as it
is known, a cancel honoured between tokens. Sampling follows lmc's order:
repeat penalty -> temperature -> top-k -> top-p -> min-p -> seeded draw;
temperature 0 is greedy (argmax, ties to the lowest id).

Options:
  --device auto|cpu|cuda|cuda:N|mps   (default auto: cuda, then mps, then cpu)
  --dtype auto|float32|bfloat16|float16 (default auto: the checkpoint's)
  --trust-remote-code                  allow the folder's own model code

To use a virtual environment, run its Python: --bridge "/path/venv/bin/python
bridges/transformers_bridge.py", or add --bridge-env PATH=/path/venv/bin:...
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmc_bridge import BridgeError, Model, Server  # noqa: E402

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError as e:  # a start-up failure that lmc reports with this text
    print(f"transformers_bridge: {e}. This Python ({sys.executable}) needs torch and transformers; "
          f"point --bridge at the Python of an environment that has them.", file=sys.stderr)
    sys.exit(1)


def pick_device(name):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def sample(logits, history, s, gen):
    """One token id from f32 logits [V] (on the CPU) with lmc's sampler semantics."""
    logits = logits.clone()
    penalty = float(s.get("repeat_penalty", 1.0))
    last_n = int(s.get("repeat_last_n", 64))
    if penalty != 1.0 and history and last_n != 0:
        recent = history if last_n < 0 else history[-last_n:]
        idx = torch.tensor(sorted(set(recent)), dtype=torch.long)
        vals = logits[idx]
        logits[idx] = torch.where(vals > 0, vals / penalty, vals * penalty)
    temperature = float(s.get("temperature", 0.8))
    if temperature <= 0:
        return int(torch.argmax(logits))  # the first maximum: ties go to the lowest id
    logits = logits / temperature
    top_k = int(s.get("top_k", 0))
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    top_p = float(s.get("top_p", 1.0))
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the more probable tokens
        drop = order[before >= top_p]
        probs[drop] = 0
    min_p = float(s.get("min_p", 0.0))
    if min_p > 0:
        probs[probs < min_p * probs.max()] = 0
    probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=gen))


class HFModel(Model):
    def __init__(self, path, options, args):
        if not os.path.isdir(path):
            raise BridgeError(f"load: model folder not found: {path}", "not_found")
        self.device = pick_device(args.device)
        kw = {"trust_remote_code": args.trust_remote_code}
        if args.dtype != "auto":
            kw["dtype"] = getattr(torch, args.dtype)
        else:
            kw["dtype"] = "auto"
        self.tok = AutoTokenizer.from_pretrained(path, trust_remote_code=args.trust_remote_code)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kw)
        except TypeError:  # transformers before 4.56 calls it torch_dtype
            kw["torch_dtype"] = kw.pop("dtype")
            model = AutoModelForCausalLM.from_pretrained(path, **kw)
        self.model = model.to(self.device).eval()
        cfg = self.model.config
        self.text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self._info = self._make_info()
        self._eos = self._eos_ids()

    def _make_info(self):
        c = self.text_cfg
        params = list(self.model.parameters())
        heads = getattr(c, "num_attention_heads", 0) or 0
        hidden = getattr(c, "hidden_size", 0) or 0
        q = getattr(self.model.config, "quantization_config", None)
        q = q.to_dict() if hasattr(q, "to_dict") else (q or {})
        return {
            "architecture": getattr(c, "model_type", "") or "",
            "vocab_size": getattr(c, "vocab_size", 0) or 0,
            "num_layers": getattr(c, "num_hidden_layers", 0) or 0,
            "hidden_size": hidden,
            "intermediate_size": getattr(c, "intermediate_size", 0) or 0,
            "num_heads": heads,
            "num_kv_heads": getattr(c, "num_key_value_heads", 0) or heads,
            "head_dim": getattr(c, "head_dim", 0) or (hidden // heads if heads else 0),
            "context_length": getattr(c, "max_position_embeddings", 0) or 0,
            "sliding_window": getattr(c, "sliding_window", 0) or 0,
            "quant_bits": int(q.get("bits", 0) or 0),
            "quant_group_size": int(q.get("group_size", 0) or 0),
            "num_parameters": sum(p.numel() for p in params),
            "weight_bytes": sum(p.numel() * p.element_size() for p in params),
            "dtype": str(params[0].dtype).replace("torch.", "") if params else "",
            "device": str(self.device),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def _eos_ids(self):
        ids = set()
        for src in (getattr(self.model, "generation_config", None), self.model.config, self.text_cfg):
            v = getattr(src, "eos_token_id", None) if src is not None else None
            if isinstance(v, int):
                ids.add(v)
            elif isinstance(v, (list, tuple)):
                ids.update(i for i in v if isinstance(i, int))
        if isinstance(self.tok.eos_token_id, int):
            ids.add(self.tok.eos_token_id)
        return ids

    def info(self):
        return self._info

    def context_length(self):
        return self._info["context_length"]

    def encode(self, text, add_special_tokens):
        return list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])

    def chat_ids(self, messages):
        if not getattr(self.tok, "chat_template", None):
            raise BridgeError("chat: the tokenizer has no chat template", "unsupported")
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already holds BOS and the like, as lmc's native chat assumes.
        return self.encode(text, False)

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=True)

    def eos_ids(self):
        return self._eos

    def _forward(self, ids, past):
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            try:
                out = self.model(input_ids=x, past_key_values=past, use_cache=True, logits_to_keep=1)
            except TypeError:  # older transformers: every position's logits
                out = self.model(input_ids=x, past_key_values=past, use_cache=True)
        return out.logits[0, -1].float().cpu(), out.past_key_values

    def tokens(self, prompt_ids, sampling):
        gen = torch.Generator(device="cpu").manual_seed(int(sampling.get("seed", 0)))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        history = list(prompt_ids)
        logits, past = self._forward(prompt_ids, None)
        while True:
            tok = sample(logits, history, sampling, gen)
            history.append(tok)
            yield tok
            logits, past = self._forward([tok], past)

    def metrics(self):
        if self.device.type == "cuda":
            return {"peak_memory_bytes": torch.cuda.max_memory_allocated(self.device),
                    "active_memory_bytes": torch.cuda.memory_allocated(self.device)}
        return {}


def main():
    ap = argparse.ArgumentParser(description="lmc subprocess bridge for Hugging Face transformers")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    ap.add_argument("--trust-remote-code", action="store_true")
    args = ap.parse_args()
    server = Server("transformers", transformers.__version__, lambda path, options: HFModel(path, options, args))
    server.run()
    server.exit(0)


if __name__ == "__main__":
    sys.exit(main())
