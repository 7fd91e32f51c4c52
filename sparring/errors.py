"""Errors raised by sparring. Each one says what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known`` to ``value``, or ``""`` if none is close.

    Example:
        >>> did_you_mean("lerner", ["learner", "partner"]), did_you_mean("x", ["learner"])
        (" (did you mean 'learner'?)", '')
    """
    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SparringError(Exception):
    """Base class of every error sparring raises on purpose; the CLI prints it on one line."""


class BackendError(SparringError):
    """A model spec, a model file or a model server could not be used."""


class ProtocolError(SparringError):
    """A protocol file is invalid; the message names the file, the line and the field."""


class JudgeError(SparringError):
    """A judge rule or verdict could not be evaluated."""


class TranscriptError(SparringError):
    """A transcript file is missing, unreadable or malformed; the message names the file and line."""


class TrainingError(SparringError):
    """Training could not start or finish: bad settings, an empty dataset or an unusable output directory."""


class ReportError(SparringError):
    """A report could not be made: the directory holds nothing a report can show, or it cannot be written."""


class BenchmarkError(SparringError):
    """A benchmark could not run: lm-eval missing, an unknown task, a model spec it cannot evaluate, a bad bench.json."""


class RunFileError(SparringError):
    """A run file (``epoch.json``, ``winrate.json``, ...) is unreadable or malformed; the message names the
    file and the field."""


class ConfigFileError(SparringError):
    """A config file (``--config``) could not be read, or holds a key or value its command does not take."""


class TrackingError(SparringError):
    """An experiment tracker (``--report-to``) is unknown, not installed or could not start; the message says what to do."""


class ArgumentError(SparringError, ValueError):
    """A library function was called with a value it does not take (also a `ValueError`, as Python's own are)."""
