"""Progress of long work: rich bars on a terminal, plain lines in a log file or a pipe."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress, TextColumn

from sparring.progress import LINES_PER_TASK, LineProgress, progress_display


def _log_console() -> Console:
    return Console(file=io.StringIO(), width=200)  # a file, as `sparring selfplay ... > run.log` gives


def test_a_terminal_gets_rich_bars_and_a_log_gets_lines():
    assert isinstance(progress_display(Console(force_terminal=True), TextColumn("x")), Progress)
    assert isinstance(progress_display(_log_console(), TextColumn("x")), LineProgress)


def test_a_long_task_prints_a_line_at_each_tenth_with_the_time_left():
    console = _log_console()
    with progress_display(console) as progress:
        task = progress.add_task("epoch 1: evaluating", total=160)
        for _ in range(160):
            progress.advance(task)
    lines = console.file.getvalue().splitlines()
    assert len(lines) == LINES_PER_TASK
    assert lines[0].startswith("epoch 1: evaluating: 16/160, 0:00:00 elapsed, ETA ")
    assert lines[-1] == "epoch 1: evaluating: 160/160, 0:00:00 elapsed"  # done: no time left to estimate


def test_a_total_told_later_and_extra_fields_show():
    console = _log_console()
    progress = LineProgress(console)
    task = progress.add_task("training", loss="")
    progress.advance(task)  # no total yet: nothing to say
    assert console.file.getvalue() == ""
    progress.update(task, total=2, completed=2, loss="loss 0.5")
    assert console.file.getvalue().splitlines() == ["training: 2/2, 0:00:00 elapsed, loss 0.5"]


def test_training_steps_in_a_log_are_lines():
    from types import SimpleNamespace

    from sparring.trainer._progress import StepProgress

    console = _log_console()
    bar, state = StepProgress(console=console), SimpleNamespace(is_world_process_zero=True, max_steps=2, global_step=0)
    bar.on_train_begin(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 0.25})
    state.global_step = 2
    bar.on_step_end(None, state, None)
    bar.on_train_end(None, state, None)
    assert console.file.getvalue().splitlines() == ["training: 2/2, 0:00:00 elapsed, loss 0.25"]
