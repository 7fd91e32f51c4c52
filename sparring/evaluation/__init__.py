"""Evaluation: win rates with both role assignments, accuracy on question sets, Wilson intervals."""

from ._qa import ACCURACY_FILE, MethodScore, QAResult, eval_qa
from ._wilson import wilson_interval
from ._winrate import WINRATE_FILE, Tally, WinRate, eval_winrate

__all__ = [
    "ACCURACY_FILE",
    "MethodScore",
    "QAResult",
    "Tally",
    "WINRATE_FILE",
    "WinRate",
    "eval_qa",
    "eval_winrate",
    "wilson_interval",
]
