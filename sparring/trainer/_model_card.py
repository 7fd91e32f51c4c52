"""The model card written next to a trained adapter: what it was trained from, on what, and how."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..agents._spec import ModelSpec
from ..runs import DATA_SUMMARY_FILE, RunFileError, read_json
from ._config import TrainConfig

KIND_TEXT = {
    "sft": "supervised fine-tuning on the trained assistant turns (TRL SFTTrainer)",
    "spag": "SPAG offline policy optimisation (clipped importance ratio, KL to the playing model, SFT mixed in)",
    "saie": "supervised fine-tuning on SAIE learner turns (TRL SFTTrainer)",
}


def data_summary(data: Path) -> dict | None:
    """The ``summary.json`` that `sparring data build` wrote next to the dataset, if any."""
    try:
        return read_json(Path(data) / DATA_SUMMARY_FILE)
    except RunFileError:
        return None


def base_model_name(spec: ModelSpec) -> str:
    """The name a trained adapter records for its base model, never the local conversion cache's path.

    A hub id as it is (``HuggingFaceTB/SmolLM2-135M-Instruct``: PEFT and the hub find it); a model
    directory by its absolute path; otherwise the spec sparring resolves (``hf:smollm2-135m``, the
    embedded GGUF, or ``hf:FILE.gguf``). sparring itself never reads it back: ``hf:BASE+ADAPTER``
    names the base, and `sparring serve --engine vllm` takes the base as ``--model``.

    Example:
        >>> base_model_name(ModelSpec.parse("hf:smollm2-135m+runs/epoch_1/adapter"))
        'hf:smollm2-135m'
        >>> base_model_name(ModelSpec.parse("hf:Qwen/Qwen2.5-0.5B-Instruct"))
        'Qwen/Qwen2.5-0.5B-Instruct'
    """
    path = Path(spec.model).expanduser()
    if not spec.model.endswith(".gguf") and path.is_dir():
        return str(path.resolve())
    is_hub_id = spec.model.count("/") == 1 and not spec.model.startswith((".", "/", "~")) and not path.exists()
    return spec.model if is_hub_id else f"{spec.scheme}:{spec.model}"


def record_base_model(adapter: Path, name: str) -> None:
    """Set ``base_model_name_or_path`` of ``adapter/adapter_config.json`` to ``name`` (`base_model_name`).

    PEFT writes the path the base was loaded from, here a local cache directory; the name travels
    with the adapter instead. The file is replaced in one step; a full model (no adapter_config.json)
    is left as it is.
    """
    file = Path(adapter) / "adapter_config.json"
    if not file.is_file():
        return
    settings = json.loads(file.read_text())
    settings["base_model_name_or_path"] = name
    staging = file.with_name(f".{file.name}.tmp")
    staging.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    os.replace(staging, file)


def model_card(config: TrainConfig, base_dir: str, steps: int, final_loss: float | None, seconds: float,
               play_spec: str) -> str:
    """Markdown naming the base model (by name, `base_model_name`), the adapter continued, the data (with its
    summary) and every setting; ``base_dir`` is where its weights were read from."""
    spec = config.spec
    summary = data_summary(config.data)
    lines = [
        "---",
        f"base_model: {base_model_name(spec)}",
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
