#!/usr/bin/env bash
# The CPU experiments of docs/experiments.md, on the embedded default model (SmolLM2-135M-Instruct):
#
#   spag   3 epochs of SPAG self-play on Adversarial Taboo, evaluated against the starting model
#          after each epoch (per-role win rates, p-values, verdict);
#   saie   3 epochs of SAIE (both stances) and of plain SFT on the gold rationales of the same
#          questions (ARMS adds the supportive-only and adversarial-only arms), each scored on the
#          same held-out arithmetic by the learner alone, then compared arm against arm
#          (ARMS adds gold-sft-matched: plain SFT on as many gold rationales per epoch as SAIE's
#          largest epoch had rows, MATCHED_QUESTIONS, so it trains at least as many steps);
#          QUESTION_SET=addition (the default) plays two-number sums ("What is 48+34?"), which
#          the 135M model sometimes gets right; QUESTION_SET=arithmetic plays Du et al.'s
#          a+b*c+d-e*f, which it never does (docs/experiments.md).
#
# Each run is a `sparring selfplay` directory under runs/experiments/ (run it again to resume after a
# kill; OUT moves them), followed by its HTML report. Sizes come from the environment; the defaults are what
# docs/experiments.md measured on a 2-core machine:
#   PROTOCOL (adversarial_taboo_spag)  GAMES (64)  EVAL_GAMES (160: +-5 points at a 10% win rate)   for spag
#   QUESTIONS (64)  EVAL_QUESTIONS (200)  WARMUP (32)  QUESTION_SET (addition)   for saie
#   ARMS ("both gold-sft"; also supportive, adversarial: the one-stance baselines;
#         gold-sft-matched: the step-matched SFT control)  MATCHED_QUESTIONS (124)   for saie
#   EPOCHS (3)
# Usage: bash experiments/cpu_selfplay.sh [spag|saie|all] [extra selfplay options...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
what="${1:-all}"
shift || true
out="${OUT:-runs/experiments}"
sparring=.venv/bin/sparring
epochs="${EPOCHS:-3}"

run() {  # NAME, then selfplay options
    local name="$1"; shift
    "$sparring" selfplay --epochs "$epochs" --out "$out/$name" "$@"
    "$sparring" report "$out/$name" -o "$out/$name/report.html"
}

if [ "$what" = spag ] || [ "$what" = all ]; then
    run spag --protocol "${PROTOCOL:-adversarial_taboo_spag}" --games "${GAMES:-64}" \
        --eval-games "${EVAL_GAMES:-160}" "$@"
fi
if [ "$what" = saie ] || [ "$what" = all ]; then
    saie=(--games "${QUESTIONS:-64}" --eval-games "${EVAL_QUESTIONS:-200}" --warmup "${WARMUP:-32}")
    set_name="${QUESTION_SET:-addition}"
    if [ "$set_name" = addition ]; then
        # the built-in saie protocol on sums of two numbers: training questions and disjoint held-out ones
        mkdir -p "$out"
        .venv/bin/python - "$out" <<'PY'
import json, random, sys
from pathlib import Path

out = Path(sys.argv[1]).resolve()
pairs = random.Random(0).sample([(a, b) for a in range(10, 90) for b in range(10, 90)], 1000)
for name, part in (("addition_train", pairs[:500]), ("addition_heldout", pairs[500:])):
    with open(out / f"{name}.jsonl", "w") as f:
        for i, (a, b) in enumerate(part):
            f.write(json.dumps({"id": f"{name}-{i}", "question": f"What is {a}+{b}?", "answer": str(a + b),
                                "rationale": f"{a}+{b} = {a + b}."}) + "\n")
protocol = Path("sparring/protocols/builtin/saie.yaml").read_text()
assert "    questions: arithmetic\n" in protocol
assert protocol.count("\nname: saie\n") == 1
protocol = protocol.replace("\nname: saie\n", "\nname: saie_addition\n")
(out / "saie_addition.yaml").write_text(protocol.replace(
    "    questions: arithmetic\n", f"    questions: {out / 'addition_train.jsonl'}\n"))
PY
        saie+=(--protocol "$out/saie_addition.yaml" --eval-questions "$out/addition_heldout.jsonl")
        prefix=saie-addition
    else
        saie+=(--protocol saie)
        prefix=saie
    fi
    for arm in ${ARMS:-both gold-sft}; do
        case "$arm" in
            both) run "$prefix-both" "${saie[@]}" "$@" ;;
            supportive|adversarial) run "$prefix-$arm" "${saie[@]}" --set "stance=$arm" "$@" ;;
            gold-sft) run "$prefix-gold-sft" "${saie[@]}" --kind gold-sft "$@" ;;
            gold-sft-matched)  # the last --games wins
                run "$prefix-gold-sft-matched" "${saie[@]}" --kind gold-sft --games "${MATCHED_QUESTIONS:-124}" "$@" ;;
            *) echo "ARMS: unknown arm '$arm' (both, supportive, adversarial, gold-sft, gold-sft-matched)" >&2
               exit 2 ;;
        esac
    done
    for arm in ${ARMS:-both gold-sft}; do  # each discussion arm against each SFT arm, question by question
        for control in gold-sft gold-sft-matched; do
            if [ "${arm#gold-sft}" = "$arm" ] && [ -d "$out/$prefix-$control" ]; then
                "$sparring" eval compare "$out/$prefix-$arm" "$out/$prefix-$control"
            fi
        done
    done
fi
