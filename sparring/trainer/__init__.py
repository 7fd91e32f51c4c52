"""Training from transcripts: datasets for imitation, SPAG and SAIE, trained with TRL."""

from ._config import TrainConfig, TrainResult
from ._data import DataSummary, build_dataset
from ._rewards import RewardAssignment, TurnReward, spag_rewards
from ._presets import PRESETS, preset_settings
from ._rows import load_rows
from ._regenerate import train_saie_regenerated
from ._selfplay import EpochRecord, SelfPlay, SelfPlayConfig, final_verdict, play_stats
from ._train import train

__all__ = [
    "DataSummary",
    "PRESETS",
    "EpochRecord",
    "RewardAssignment",
    "SelfPlay",
    "SelfPlayConfig",
    "TrainConfig",
    "TrainResult",
    "TurnReward",
    "build_dataset",
    "final_verdict",
    "load_rows",
    "play_stats",
    "preset_settings",
    "spag_rewards",
    "train",
    "train_saie_regenerated",
]
