#!/usr/bin/env bash
# Sets lmc up on Debian 12 and runs its main job: generation, on a small
# random-weight Gemma 3-shaped model built on the spot with the real Gemma 3
# tokenizer (no model weights can be downloaded here, so the text is
# gibberish, but every stage — loading, tokenising, the decoder, sampling,
# streaming — is the real one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh
scripts/fetch_tokenizers.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
[ -f build/demo-gemma3/config.json ] || build/lmc make-model --preset tiny-gemma3 -o build/demo-gemma3
build/lmc info -m build/demo-gemma3
build/lmc generate -m build/demo-gemma3 -p "The quick brown fox" --max-tokens 24 --temperature 0.8 --seed 1
