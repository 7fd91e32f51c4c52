#!/usr/bin/env bash
# The main job on the embedded default model (sets up .venv first if needed).
# Until the game engine lands this is a short chat with the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/sparring models
exec .venv/bin/sparring chat --model hf:smollm2-135m --temperature 0 --max-tokens 96 \
    "In two sentences, what is the game of Taboo?"
