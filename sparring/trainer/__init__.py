"""Training on datasets built from transcripts (`sparring.data`) with TRL: imitation, SPAG and SAIE
trainers (`TRAINERS`, used by `train`), their settings and presets, and the self-play loop (`SelfPlay`).

Names load on first use, so the CLI reads the settings classes without loading the loop or the trainers.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "PRESETS": "._presets",
    "preset_settings": "._presets",
    "TRAINERS": "._config",
    "SelfPlayConfig": "._config",
    "TrainConfig": "._config",
    "TrainResult": "._config",
    "train_saie_regenerated": "._regenerate",
    "EpochRecord": "._selfplay",
    "SelfPlay": "._selfplay",
    "final_verdict": "._selfplay",
    "play_stats": "._selfplay",
    "train": "._train",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
