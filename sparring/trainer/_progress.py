"""A progress bar of training: optimiser steps done of all, time so far, the estimated time left, the loss
(plain lines where the output is no terminal)."""

from __future__ import annotations

from transformers import TrainerCallback


class StepProgress(TrainerCallback):
    """Shows a rich progress bar on the main process while a `Trainer` runs (the logged loss lines
    still print above it); the bar goes when training ends."""

    def __init__(self, console=None) -> None:
        self._console = console  # rich's default console (stdout) when None
        self._progress = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not state.max_steps:
            return
        from rich import get_console
        from rich.progress import TextColumn

        from ..progress import progress_display

        self._progress = progress_display(self._console or get_console(), TextColumn("{task.fields[loss]}"))
        self._progress.start()
        self._task = self._progress.add_task("training", total=state.max_steps, loss="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is not None and isinstance((logs or {}).get("loss"), (int, float)):
            self._progress.update(self._task, loss=f"loss {logs['loss']:.4g}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
