"""Training on datasets built from transcripts (`sparring.data`) with TRL: imitation, SPAG and SAIE
trainers (`TRAINERS`, used by `train`), their settings and presets, and the self-play loop (`SelfPlay`)."""

from ._config import TRAINERS, TrainConfig, TrainResult
from ._presets import PRESETS, preset_settings
from ._regenerate import train_saie_regenerated
from ._selfplay import EpochRecord, SelfPlay, SelfPlayConfig, final_verdict, play_stats
from ._train import train

__all__ = [
    "PRESETS",
    "EpochRecord",
    "SelfPlay",
    "SelfPlayConfig",
    "TRAINERS",
    "TrainConfig",
    "TrainResult",
    "final_verdict",
    "play_stats",
    "preset_settings",
    "train",
    "train_saie_regenerated",
]
