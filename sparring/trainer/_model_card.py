"""The model card written next to a trained adapter: what it was trained from, on what, and how."""

from __future__ import annotations

import json
from pathlib import Path

from ._config import TrainConfig

KIND_TEXT = {
    "sft": "supervised fine-tuning on the trained assistant turns (TRL SFTTrainer)",
    "spag": "SPAG offline policy optimisation (clipped importance ratio, KL to the playing model, SFT mixed in)",
    "saie": "supervised fine-tuning on SAIE learner turns (TRL SFTTrainer)",
}


def data_summary(data: Path) -> dict | None:
    """The ``summary.json`` that `sparring data build` wrote next to the dataset, if any."""
    try:
        return json.loads((data / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def model_card(config: TrainConfig, base_dir: str, steps: int, final_loss: float | None, seconds: float,
               play_spec: str) -> str:
    """Markdown naming the base model, the adapter continued, the data (with its summary) and every setting."""
    spec = config.spec
    summary = data_summary(config.data)
    lines = [
        "---",
        f"base_model: {base_dir}",
        "library_name: " + ("transformers" if config.full else "peft"),
        "tags: [sparring, " + config.kind + ", trl]",
        "---",
        "",
        f"# {config.output.name}",
        "",
        f"Trained by `sparring train {config.kind}`: {KIND_TEXT[config.kind]}.",
        "",
        f"- **Base model**: `{spec.scheme}:{spec.model}` (weights from `{base_dir}`)",
        f"- **Adapter of**: `{spec.adapter}` (continued, so the result is one base plus one adapter)"
        if spec.adapter else "- **Adapter of**: none (a fresh adapter)" if not config.full else "- **Weights**: all trained",
        f"- **Data**: `{config.data}`",
        f"- **Play it**: `{play_spec}`",
        f"- **Steps**: {steps}; final logged loss: {'n/a' if final_loss is None else f'{final_loss:.4f}'}; "
        f"{seconds:.1f} s",
        "",
        "## Data summary",
        "",
    ]
    if summary is None:
        lines.append("No summary.json next to the data.")
    else:
        lines += [f"- {key}: {json.dumps(value)}" for key, value in summary.items()]
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {json.dumps(value)} |" for key, value in config.to_dict().items()]
    lines += ["", "Training log: `training_log.json` (the Trainer's log history).", ""]
    return "\n".join(lines)
