"""`train(config)`: load the data and the model, run the kind's trainer, and publish the adapter."""

from __future__ import annotations

import importlib
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..data import load_rows
from ..errors import TrainingError
from ._config import TRAINERS, TrainConfig, TrainResult, trained_spec
from ._model_card import base_model_name, data_summary, model_card, record_base_model


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.data`` with the loss of ``config.kind``; write ``config.output``.

    The run writes into a hidden sibling (``.NAME.partial``) and renames it to ``config.output``
    only when the adapter, the tokenizer, ``training_log.json`` and ``README.md`` are all there,
    so an interrupted run never leaves something that looks like a finished adapter. Under
    ``accelerate launch`` every process trains and the main process writes.

    Args:
        config (`TrainConfig`): what to train and how.

    Returns:
        `TrainResult` with the output directory, steps, final loss, seconds, log history and the
        spec that plays the result (``hf:BASE+OUTPUT``, or ``hf:OUTPUT`` with ``full``).

    Raises:
        `TrainingError`: the data is missing or empty, or the output directory is taken.
        `BackendError`: the model or adapter cannot be loaded.

    Example:
        >>> train(TrainConfig(data=Path("runs/data"), model="hf:smollm2-135m",
        ...                   output=Path("runs/adapter"), kind="spag", max_steps=10))  # doctest: +SKIP
    """
    import torch
    from accelerate import PartialState

    from ._model import check_output, discard, load_for_training, publish, save_result, staging_dir

    started = time.perf_counter()
    rows = _training_rows(config)
    check_output(config.output)
    config.report_destinations()  # before the model loads
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes under torchrun: gloo
    staging = staging_dir(config.output)
    if state.is_main_process:
        discard(staging)
    state.wait_for_everyone()
    continuing = config.spec.adapter is not None
    with _quiet():
        model, tokenizer = load_for_training(config)
        _base_read_locally(model, config)
        trainer = build_trainer(config, model, tokenizer, rows, staging, continuing)
        from ._progress import StepProgress

        trainer.add_callback(StepProgress())
        trainer.train()
        save_result(trainer, tokenizer, staging, config.merge)
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    spec = config.spec
    play_spec = trained_spec(config.model, config.output, config.full)
    seconds = time.perf_counter() - started
    if state.is_main_process:
        from ..agents._spec import resolve_model_dir

        card = model_card(config, resolve_model_dir(spec.model), trainer.state.global_step,
                          losses[-1] if losses else None, seconds, play_spec)
        record_base_model(staging, base_model_name(spec))  # by name, not the local cache path PEFT wrote
        (staging / "README.md").write_text(card)
        publish(staging, config.output)
    state.wait_for_everyone()
    return TrainResult(output=config.output, steps=trainer.state.global_step, final_loss=losses[-1] if losses else None,
                       seconds=seconds, log_history=history, play_spec=play_spec)


def build_trainer(config: TrainConfig, model, tokenizer, rows, output_dir: Path, continuing: bool = False):
    """The trainer of ``config.kind`` (`TRAINERS`) on ``rows``, writing into ``output_dir``.

    Args:
        config (`TrainConfig`): the run's settings; ``kind`` picks the trainer.
        model: the model from `load_for_training`.
        tokenizer: its tokenizer.
        rows (`datasets.Dataset`): the checked rows (`_training_rows`).
        output_dir (`Path`): the trainer's output directory.
        continuing (`bool`, defaults to False): the model continues an adapter.
    """
    module, name = TRAINERS[config.kind]
    return getattr(importlib.import_module(module, __package__), name)(config, model, tokenizer, rows, output_dir,
                                                                       continuing)


def _base_read_locally(model, config: TrainConfig) -> None:
    """A continued adapter names its base by name (`record_base_model`); point the loaded copy at the local
    directory again, where PEFT looks for the base's config.json when it saves (no hub lookup, no warning)."""
    settings = getattr(model, "peft_config", None)
    if not config.spec.adapter or not isinstance(settings, dict):
        return
    from ..agents._spec import resolve_model_dir

    for adapter in settings.values():
        adapter.base_model_name_or_path = resolve_model_dir(config.spec.model)


def _training_rows(config: TrainConfig):
    """The dataset's rows, checked: present, not empty, with the columns the kind needs."""
    data = config.data
    if not data.is_dir():
        raise TrainingError(f"--data {data}: no such directory; build one with `sparring data build`")
    rows = load_rows(data)
    if len(rows) == 0:
        summary = data_summary(data)
        said = (f"`sparring data build` kept 0 rows from {summary.get('episodes', '?')} episodes; dropped: "
                f"{summary.get('dropped', {})}") if summary else "no summary.json beside it"
        raise TrainingError(f"--data {data} holds no training rows ({said}): play more games or change the data kind")
    needed = {"messages"} | ({"reward", "weight", "type"} if config.kind == "spag" else set())
    missing = needed - set(rows.column_names)
    if missing:
        raise TrainingError(f"--data {data}: rows lack {sorted(missing)} needed by `train {config.kind}`; "
                            f"rebuild it with `sparring data build {'spag' if config.kind == 'spag' else '...'}`")
    last = rows[0]["messages"][-1] if rows[0]["messages"] else {}
    if last.get("role") != "assistant":
        raise TrainingError(f"--data {data}: row 0's last message is {last.get('role')!r}, expected the assistant "
                            "turn to train on")
    return rows


@contextmanager
def _quiet():
    """Keep the console to the loss lines: no per-step dataset bars, no library deprecation notices."""
    import datasets
    from transformers.utils import logging as transformers_logging

    shown = datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)(\..*)?$")
            yield
    finally:
        if shown[0]:
            datasets.enable_progress_bars()
        if shown[1]:
            transformers_logging.enable_progress_bar()
