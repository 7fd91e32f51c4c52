"""Named training presets: the official SPAG settings (``--preset spag``) and a LoRA counterpart.

The SPAG values are those of the official training commands (Linear95/SPAG README: ``train.py``
with ``--train_method OfflinePO`` for self-play and ``SFTwithKL`` for imitation): full weights,
learning rate 2e-6 (self-play) and 5e-6 (imitation), cosine schedule, 3% warm-up, weight decay 0,
1 epoch, 2048 tokens, KL 0.2 (self-play) and 0.1 (imitation), SFT coefficient 0.5, ratio clip
0.2, and 128 samples per optimiser step (2 per device x 8 accumulation x 8 GPUs; here 4 x 32 on
one process: divide ``grad_accum`` by the number of processes under ``accelerate launch``).

The ``-lora`` presets train a LoRA adapter (rank 16, alpha 32) instead, at 10x the full
fine-tuning learning rate: LoRA's best learning rate sits about 10x above full fine-tuning's
(Schulman et al., "LoRA Without Regret", 2025). That is a rule of thumb, not an equivalence; the
full presets reproduce the paper.

A preset gives defaults: any setting given explicitly (a CLI flag) wins over it.
"""

from __future__ import annotations

from typing import Any

from ..errors import TrainingError

_SPAG_COMMON: dict[str, Any] = {
    "full": True, "epochs": 1.0, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "batch_size": 4, "grad_accum": 32,
    "max_length": 2048,
}
_LORA = {"full": False, "lora_r": 16, "lora_alpha": 32}

PRESETS: dict[str, dict[str, Any]] = {
    "spag": {**_SPAG_COMMON, "lr": 2e-6, "kl_coeff": 0.2, "sft_coeff": 0.5, "clip_range": 0.2},
    "spag-imitation": {**_SPAG_COMMON, "lr": 5e-6, "kl_coeff": 0.1},
    "spag-lora": {**_SPAG_COMMON, **_LORA, "lr": 2e-5, "kl_coeff": 0.2, "sft_coeff": 0.5, "clip_range": 0.2},
    "spag-imitation-lora": {**_SPAG_COMMON, **_LORA, "lr": 5e-5, "kl_coeff": 0.1},
}
"""Preset name -> `TrainConfig` settings."""


def preset_settings(name: str | None) -> dict[str, Any]:
    """The settings of a preset (an empty dict for None).

    Raises:
        `TrainingError`: no preset of that name (the message lists them).

    Example:
        >>> preset_settings("spag")["lr"], preset_settings("spag")["lr_scheduler"]
        (2e-06, 'cosine')
    """
    if name is None:
        return {}
    if name not in PRESETS:
        raise TrainingError(f"--preset {name!r}: no such preset; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def imitation_preset(name: str | None) -> str | None:
    """The imitation-stage preset that goes with a self-play preset (``spag`` -> ``spag-imitation``).

    Example:
        >>> imitation_preset("spag-lora")
        'spag-imitation-lora'
    """
    if name is None:
        return None
    preset_settings(name)
    paired = name.replace("spag", "spag-imitation", 1)
    return name if "imitation" in name or paired not in PRESETS else paired


__all__ = ["PRESETS", "imitation_preset", "preset_settings"]
