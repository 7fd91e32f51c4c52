#!/usr/bin/env bash
# The main job on the embedded default model (sets up .venv first if needed): one short epoch of
# SPAG self-play on Adversarial Taboo (play, judge, build the SPAG data, train a LoRA adapter for a
# few steps, evaluate it against the starting model on held-out words), then the HTML report.
# GAMES, EVAL_GAMES and STEPS change the sizes; running it again resumes the run in runs/main.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/sparring selfplay --protocol adversarial_taboo --model hf:smollm2-135m --epochs 1 \
    --games "${GAMES:-64}" --eval-games "${EVAL_GAMES:-16}" --max-steps "${STEPS:-8}" --out runs/main "$@"
.venv/bin/sparring report runs/main -o runs/main/report.html
