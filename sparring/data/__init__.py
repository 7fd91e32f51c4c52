"""Training datasets built from transcripts: imitation, SPAG and SAIE rows (`build_dataset`).

Each row is one trained assistant turn, the chat its speaker saw rebuilt from the transcript with
the turn last, plus its role, reward, weight and type (`load_rows` reads a built dataset back);
SPAG's rewards come from `spag_rewards`. `sparring data build` writes these datasets and
`sparring.trainer` trains on them.
"""

from ._data import DataSummary, build_dataset
from ._rewards import RewardAssignment, TurnReward, spag_rewards
from ._rows import load_rows

__all__ = [
    "DataSummary",
    "RewardAssignment",
    "TurnReward",
    "build_dataset",
    "load_rows",
    "spag_rewards",
]
