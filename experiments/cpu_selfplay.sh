#!/usr/bin/env bash
# The CPU experiments of docs/experiments.md, on the embedded default model (SmolLM2-135M-Instruct):
#
#   spag   3 epochs of SPAG self-play on Adversarial Taboo, evaluated against the starting model
#          after each epoch (per-role win rates, p-values, verdict);
#   saie   3 epochs of SAIE (both stances) and of plain SFT on the gold rationales of the same
#          questions, each scored on the same held-out arithmetic by the learner alone.
#
# Each run is a `sparring selfplay` directory under runs/experiments/ (run it again to resume after a
# kill), followed by its HTML report. Sizes come from the environment; the defaults are what
# docs/experiments.md measured on a 2-core machine:
#   PROTOCOL (adversarial_taboo_spag)  GAMES (64)  EVAL_GAMES (96)   for spag
#   QUESTIONS (64)  EVAL_QUESTIONS (200)  WARMUP (32)                 for saie
#   EPOCHS (3)
# Usage: bash experiments/cpu_selfplay.sh [spag|saie|all] [extra selfplay options...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
what="${1:-all}"
shift || true
out=runs/experiments
sparring=.venv/bin/sparring
epochs="${EPOCHS:-3}"

run() {  # NAME, then selfplay options
    local name="$1"; shift
    "$sparring" selfplay --epochs "$epochs" --out "$out/$name" "$@"
    "$sparring" report "$out/$name" -o "$out/$name/report.html"
}

if [ "$what" = spag ] || [ "$what" = all ]; then
    run spag --protocol "${PROTOCOL:-adversarial_taboo_spag}" --games "${GAMES:-64}" \
        --eval-games "${EVAL_GAMES:-96}" "$@"
fi
if [ "$what" = saie ] || [ "$what" = all ]; then
    saie=(--protocol saie --games "${QUESTIONS:-64}" --eval-games "${EVAL_QUESTIONS:-200}" --warmup "${WARMUP:-32}")
    run saie-both "${saie[@]}" "$@"
    run saie-gold-sft "${saie[@]}" --kind gold-sft "$@"
fi
