#!/usr/bin/env python3
"""The same-run baseline for `lmc bench -b cuda`: transformers (PyTorch) on
the same GPU and the same bf16 bench model folder (made by `lmc make-model`),
prefill of 512 random tokens and 128 greedy decode steps with a KV cache,
median of 5 after a warm-up. Prints one line: model, prefill tok/s, decode tok/s.
    usage: bench_cuda_hf.py MODEL_DIR [-p 512] [-n 128]"""
import argparse, statistics, time

import torch
import transformers
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("-p", type=int, default=512)
ap.add_argument("-n", type=int, default=128)
ap.add_argument("-r", type=int, default=5)
a = ap.parse_args()
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).cuda().eval()
vocab = model.config.vocab_size
g = torch.Generator().manual_seed(0)


def prefill():
    ids = torch.randint(0, vocab, (1, a.p), generator=g).cuda()
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad():
        model(ids, use_cache=True)
    torch.cuda.synchronize()
    return a.p / (time.perf_counter() - t)


def decode():
    ids = torch.randint(0, vocab, (1, 1), generator=g).cuda()
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.n):
            out = model(tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
            tok.item()  # the host reads each token, as a generation loop does
        torch.cuda.synchronize()
    return a.n / (time.perf_counter() - t)


prefill(), decode()  # warm-up
pp = statistics.median(prefill() for _ in range(a.r))
tg = statistics.median(decode() for _ in range(a.r))
print(f"transformers {transformers.__version__} / torch {torch.__version__} bf16 {a.model}: pp{a.p} {pp:.1f} tok/s, tg{a.n} {tg:.1f} tok/s")
