"""Load the model a spec names for training (LoRA, a continued adapter, or all weights) and save the result."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..agents._spec import ModelSpec, check_adapter_dir, resolve_model_dir
from ..errors import BackendError, TrainingError
from ..runs import TRAINING_LOG_FILE
from ._config import TrainConfig


def training_dtype():
    """bfloat16 on a CUDA device that computes it, else float32 (CPU training stays exact)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def require_local_weights(model: str) -> ModelSpec:
    """The parsed spec of ``model``, which is to be trained: a `TrainingError` unless it is an ``hf:`` spec,
    a `BackendError` if its model or adapter is not there."""
    spec = ModelSpec.parse(model)
    if spec.scheme != "hf":
        raise TrainingError(f"--model {model}: training needs local weights (an hf: spec)")
    return spec.check_present()


def load_for_training(config: TrainConfig):
    """Load the model and tokenizer of ``config.model``, ready to train.

    - LoRA (the default): a fresh adapter of rank ``lora_r`` on every linear projection of the
      attention and MLP blocks (PEFT ``target_modules="all-linear"``, no dropout so the untrained
      policy scores exactly like the reference);
    - a spec with ``+ADAPTER``: that adapter loaded trainable and continued (its own rank and
      targets are kept), so the result is again one base plus one adapter;
    - ``full``: the bare model, every weight trainable.

    Returns:
        `(model, tokenizer)`; the tokenizer always has a pad token.

    Raises:
        `BackendError`: the model or the adapter cannot be found or loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = require_local_weights(config.model)
    adapter = check_adapter_dir(spec.adapter) if spec.adapter else None
    source = resolve_model_dir(spec.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=training_dtype())
    except OSError as error:
        raise BackendError(f"cannot load model {spec.model!r}: {str(error).splitlines()[0]}") from error
    if tokenizer.chat_template is None:
        raise TrainingError(f"model {spec.model!r} has no chat template: train an instruction-tuned model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    if config.full:
        return model, tokenizer
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter is not None:
        try:
            return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tokenizer
        except Exception as error:  # noqa: BLE001 - PEFT raises many types for a bad adapter
            raise BackendError(f"cannot load adapter {spec.adapter} to continue it: {error}") from error
    from transformers import set_seed

    set_seed(config.seed)  # the adapter's initial weights follow --seed
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tokenizer


def staging_dir(output: Path) -> Path:
    """Where a run writes before the result is complete: a sibling that never looks like an adapter."""
    return output.parent / f".{output.name}.partial"


def check_output(output: Path) -> None:
    """Refuse an output directory that already holds something."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise TrainingError(f"--output {output} already exists and is not empty: remove it or choose another directory")


def save_result(trainer, tokenizer, staging: Path, merge: bool) -> None:
    """Write the adapter (or full model), the tokenizer, the log and optionally ``merged/`` into ``staging``.

    Called on every process (saving gathers sharded weights); only the main process writes.
    """
    trainer.save_model(str(staging))
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(staging))
    (staging / TRAINING_LOG_FILE).write_text(json.dumps(trainer.state.log_history, indent=1))
    if merge:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(staging / "merged"))
        tokenizer.save_pretrained(str(staging / "merged"))


def publish(staging: Path, output: Path) -> None:
    """Move the finished run into place (one rename; an empty ``output`` left by the user is replaced)."""
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, output)


def discard(staging: Path) -> None:
    """Remove what an earlier, interrupted run left behind."""
    shutil.rmtree(staging, ignore_errors=True)
