"""Progress of long work, on a terminal as rich bars and in a log file or a pipe as plain lines.

rich draws nothing live when its console is no terminal, and a transient bar leaves nothing when
it ends, so a run sent to a log (``nohup sparring selfplay ... > run.log``) would say nothing for
hours. `progress_display` gives such a console `LineProgress` instead: the same calls, and a line
per task at every tenth of its total (with the time so far and the estimated time left).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

LINES_PER_TASK = 10
"""How many lines a task of known total prints at most, evenly spaced (the last at its end)."""


def progress_display(console, *extra_columns):
    """A transient rich `Progress` on ``console`` (what runs, done of total, time so far, the estimated
    time left, then ``extra_columns``), or a `LineProgress` where the console is no terminal."""
    if not console.is_terminal:
        return LineProgress(console)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), *extra_columns, console=console, transient=True)


@dataclass
class _Task:
    description: str
    total: float | None
    fields: dict[str, Any]
    completed: float = 0
    started: float = field(default_factory=time.monotonic)
    shown: int = 0  # how many of its LINES_PER_TASK lines are printed


class LineProgress:
    """The calls of rich's `Progress` that sparring makes (``add_task``, ``update``, ``advance``,
    ``start``, ``stop``, ``console``, a context manager), printing plain lines to ``console``.

    Example:
        >>> from rich.console import Console
        >>> with LineProgress(Console(width=100)) as progress:
        ...     task = progress.add_task("playing", total=4)
        ...     for _ in range(4):
        ...         progress.advance(task)
        playing: 1/4, 0:00:00 elapsed, ETA 0:00:00
        playing: 2/4, 0:00:00 elapsed, ETA 0:00:00
        playing: 3/4, 0:00:00 elapsed, ETA 0:00:00
        playing: 4/4, 0:00:00 elapsed
    """

    def __init__(self, console) -> None:
        self.console = console
        self._tasks: list[_Task] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start: lines are printed as work is done."""

    def stop(self) -> None:
        """Nothing to take down: the lines printed stay."""

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        """A new task; its id for `update` and `advance`."""
        self._tasks.append(_Task(description, total, fields))
        return len(self._tasks) - 1

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        """Change a task as rich's `Progress.update` does; print a line if it reached its next step."""
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        self._maybe_print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count ``advance`` more units of work done on a task."""
        self.update(task_id, advance=advance)

    def _maybe_print(self, task: _Task) -> None:
        if not task.total or task.total <= 0:
            return
        reached = min(LINES_PER_TASK, math.floor(task.completed / task.total * LINES_PER_TASK))
        if reached <= task.shown:
            return
        task.shown = reached
        elapsed = time.monotonic() - task.started
        parts = [f"{task.description}: {task.completed:g}/{task.total:g}", f"{_clock(elapsed)} elapsed"]
        if 0 < task.completed < task.total:
            parts.append(f"ETA {_clock(elapsed / task.completed * (task.total - task.completed))}")
        parts += [str(value) for value in task.fields.values() if value not in (None, "")]
        self.console.print(", ".join(parts), highlight=False, markup=False)


def _clock(seconds: float) -> str:
    """``H:MM:SS`` as rich's progress columns show time."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


__all__ = ["LINES_PER_TASK", "LineProgress", "progress_display"]
