#!/usr/bin/env bash
# The main job on the embedded default model (sets up .venv first if needed): a round of
# Adversarial Taboo self-play, judged by SPAG's rules, transcripts in runs/main/.
# (Training on them arrives with the trainer; this becomes a full self-play epoch then.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sparring play adversarial_taboo --model hf:smollm2-135m --games "${GAMES:-32}" \
    --out runs/main --resume "$@"
