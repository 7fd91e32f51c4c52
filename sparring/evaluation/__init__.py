"""Evaluation: win rates with both role assignments, accuracy on question sets, Wilson intervals, exact tests."""

from ._qa import ACCURACY_FILE, MethodScore, QAResult, eval_qa
from ._learner import (LEARNER_PROMPT, compare_learner_evals, correct_by_question, eval_learner, learner_alone,
                       learner_eval_folder)
from ._significance import binomial_test, compare_accuracy, compare_to_baseline, fisher_exact, verdict
from ._wilson import wilson_interval
from ._winrate import WINRATE_FILE, Tally, WinRate, eval_winrate

__all__ = [
    "ACCURACY_FILE",
    "MethodScore",
    "QAResult",
    "Tally",
    "WINRATE_FILE",
    "WinRate",
    "LEARNER_PROMPT",
    "binomial_test",
    "compare_accuracy",
    "compare_learner_evals",
    "compare_to_baseline",
    "correct_by_question",
    "eval_learner",
    "eval_qa",
    "eval_winrate",
    "fisher_exact",
    "learner_alone",
    "learner_eval_folder",
    "verdict",
    "wilson_interval",
]
