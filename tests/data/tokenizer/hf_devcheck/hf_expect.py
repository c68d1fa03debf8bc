# Runs HF tokenizers/transformers over corpus.jsonl for each tokenizer folder.
import json, sys, os, platform
out_dir = sys.argv[2]
import tokenizers
print("tokenizers", tokenizers.__version__)
try:
    import transformers
    print("transformers", transformers.__version__)
except Exception as e:
    transformers = None
    print("no transformers", e)
corpus = [json.loads(l) for l in open("corpus.jsonl")]
for name in ["gemma3", "llama3_1", "qwen3"]:
    d = os.path.join(sys.argv[1], name)
    tk = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    hf = transformers.AutoTokenizer.from_pretrained(d) if transformers else None
    with open(os.path.join(out_dir, f"expected_{name}.jsonl"), "w") as f:
        for c in corpus:
            ids = tk.encode(c["text"], add_special_tokens=True).ids
            ids_ns = tk.encode(c["text"], add_special_tokens=False).ids
            rec = {"id": c["id"], "ids": ids, "ids_nospecial": ids_ns}
            if hf is not None:
                rec["hf_ids"] = hf(c["text"])["input_ids"]
                rec["decoded"] = hf.decode(ids)
                rec["decoded_skip"] = hf.decode(ids, skip_special_tokens=True)
            rec["tk_decoded"] = tk.decode(ids, skip_special_tokens=False)
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
    print(name, "done")
