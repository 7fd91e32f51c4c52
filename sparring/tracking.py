"""Experiment tracking (``--report-to``): game metrics logged to TensorBoard, Weights & Biases or Trackio.

`sparring play`, `selfplay`, `eval winrate` and `eval qa` take ``--report-to`` with the names
transformers uses for its ``report_to`` (``none``, ``tensorboard``, ``wandb``, ``trackio``,
comma-separated; ``all``: every one of them that is installed), and log their metrics as flat
keys: ``play/...`` (games, outcomes, shares, speed), ``eval/...`` (win, loss and tie rates with
their 95% intervals, or accuracies), ``selfplay/...`` (each epoch's data and training). One
function turns each kind of record into metrics (`play_metrics`, `winrate_metrics`,
`accuracy_metrics`, `epoch_metrics`), so every command logs the same keys.

Where they go:

- ``tensorboard``: ``RUN_DIR/tensorboard/games/`` (a `SummaryWriter`); `sparring selfplay` also
  sends each epoch's TRL training metrics to ``RUN_DIR/tensorboard/train/epoch_K/``, so
  ``tensorboard --logdir RUN_DIR`` shows both;
- ``wandb``: a run in project ``$WANDB_PROJECT`` (default ``sparring``) under ``RUN_DIR/wandb/``
  (or ``$WANDB_DIR``); every ``WANDB_*`` variable applies (``WANDB_MODE=offline`` logs without an
  account). In `selfplay` the Trainer's W&B callback logs into the same run;
- ``trackio``: a run in project ``sparring``, stored where trackio keeps its runs (``$TRACKIO_DIR``).

Example:
    >>> with open_tracker("none", Path("runs/play")) as tracker:
    ...     tracker.log({"play/games": 8}, step=0)
    >>> tracker.names
    []
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from . import runs
from .errors import TrackingError

TRACKERS = ("tensorboard", "wandb", "trackio")
"""The trackers sparring logs its own metrics to, named as transformers names them."""
TENSORBOARD_DIR = runs.TENSORBOARD_DIR
"""``RUN_DIR/tensorboard/``: ``games/`` holds sparring's metrics, ``train/epoch_K/`` selfplay's training metrics."""
GAMES_RUN = "games"
TRAIN_RUN = "train"
DEFAULT_PROJECT = "sparring"
_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


def report_names(report_to: str, known: Iterable[str]) -> list[str]:
    """``report_to`` split at commas, every name checked: ``none``, ``all`` or one of ``known``, and each of
    `TRACKERS` it names installed.

    The one rule behind every ``--report-to``: `sparring train` checks against all of transformers'
    integrations, the other commands against `TRACKERS`.

    Raises:
        `TrackingError`: a name is not known, or a tracker it names is not installed (the message says
            what to pip install).

    Example:
        >>> report_names("none, tensorboard", TRACKERS)
        ['none', 'tensorboard']
    """
    known = tuple(known)
    names = [name.strip() for name in str(report_to).split(",")]
    unknown = [name for name in names if name not in ("none", "all", *known)]
    if unknown:
        raise TrackingError(f"--report-to {report_to}: unknown {unknown}; expected none, all or "
                            f"comma-separated names among {', '.join(sorted(known))}")
    for name in names:
        if name in _MODULES and not installed(name):
            raise TrackingError(_missing(name))
    return names


def trackers(report_to: str) -> list[str]:
    """The trackers ``report_to`` asks for, checked before anything runs: known and installed.

    ``none`` is none; ``all`` is every one of `TRACKERS` that is installed (as in transformers).

    Raises:
        `TrackingError`: an unknown name, or a tracker whose package is missing (the message says
            what to pip install).

    Example:
        >>> trackers("none")
        []
    """
    names = report_names(report_to, TRACKERS)
    if "all" in names:
        return [name for name in TRACKERS if installed(name)]
    return list(dict.fromkeys(name for name in names if name != "none"))


def installed(tracker: str) -> bool:
    """Whether the package ``tracker`` logs through can be imported (TensorBoard: tensorboard or tensorboardX)."""
    return any(_importable(module) for module in _MODULES[tracker])


def _importable(module: str) -> bool:
    if module in sys.modules:  # None there means "not importable" (tests use it to hide a package)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing(tracker: str) -> str:
    return f"--report-to {tracker} needs the {tracker} package: pip install 'sparring[{tracker}]'"


class Tracker:
    """Logs flat metrics to the trackers a ``--report-to`` asked for; a context manager (closing finishes the runs).

    Open it with `open_tracker`. With no tracker, `log` does nothing.
    """

    def __init__(self, sinks: list[Any]):
        self._sinks = sinks

    @property
    def names(self) -> list[str]:
        """The trackers it logs to."""
        return [sink.name for sink in self._sinks]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` (key -> number; other values and NaN are left out) at ``step``."""
        clean = {key: float(value) for key, value in metrics.items()
                 if isinstance(value, (int, float)) and not math.isnan(value)}
        if clean:
            for sink in self._sinks:
                sink.log(clean, int(step))

    def close(self) -> None:
        """Flush and close every tracker (W&B and Trackio runs are finished)."""
        sinks, self._sinks = self._sinks, []
        for sink in reversed(sinks):
            sink.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_tracker(report_to: str, run_dir: Path, *, config: Mapping[str, Any] | None = None,
                 name: str | None = None, step_key: str = "step") -> Tracker:
    """Open the trackers ``report_to`` names for a run in ``run_dir`` (see the module docstring for where each logs).

    Args:
        report_to (`str`): ``none``, ``tensorboard``, ``wandb``, ``trackio``, comma-separated, or ``all``.
        run_dir (`Path`): the command's output directory.
        config (`Mapping | None`): the run's settings (W&B and Trackio config; TensorBoard text ``config``).
        name (`str | None`): the run's name in W&B and Trackio (``WANDB_NAME`` wins).
        step_key (`str`, defaults to ``"step"``): W&B's x-axis for these metrics (``"epoch"`` in self-play),
            logged beside them.

    Raises:
        `TrackingError`: a tracker is unknown or not installed, or could not start.
    """
    names = trackers(report_to)
    settings = _plain(dict(config or {}))
    sinks: list[Any] = []
    try:
        for tracker in names:
            opener = {"tensorboard": _TensorBoard, "wandb": _Wandb, "trackio": _Trackio}[tracker]
            sinks.append(opener(Path(run_dir), settings, name, step_key))
    except BaseException:
        for sink in reversed(sinks):
            sink.close()
        raise
    return Tracker(sinks)


@contextmanager
def tensorboard_logging_dir(folder: Path) -> Iterator[None]:
    """While inside, transformers' TensorBoard callback writes to ``folder`` (``TENSORBOARD_LOGGING_DIR``)."""
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = before


# --- metrics -------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def play_metrics(stats: Mapping[str, Any], roles: Iterable[str] = (), prefix: str = "play") -> dict[str, float]:
    """A play record (`sparring.trainer.play_stats`' dict, ``epoch.json``'s ``play``) as flat metrics.

    ``play/games``, ``play/errors``, ``play/decisive_share``, ``play/rule_break_share``,
    ``play/tokens_per_second``, ``play/episodes_per_minute``, ``play/mean_turns``,
    ``play/completion_tokens``, ``play/seconds``, ``play/outcome/<reason>`` (counts),
    ``play/wins/<role>`` (counts) and ``play/win_rate/<role>`` (over the games without an error); every
    one of ``roles`` gets those two, a role that never won 0.

    Example:
        >>> play_metrics({"games": 4, "errors": 0, "reasons": {"won": 3, "tie": 1}, "wins": {"a": 3}})["play/win_rate/a"]
        0.75
    """
    keys = ("games", "errors", "decisive_share", "rule_break_share", "tokens_per_second", "episodes_per_minute",
            "mean_turns", "completion_tokens", "seconds")
    metrics = {f"{prefix}/{key}": stats[key] for key in keys if _number(stats.get(key))}
    for reason, count in (stats.get("reasons") or {}).items():
        metrics[f"{prefix}/outcome/{reason}"] = count
    judged = (stats.get("games") or 0) - (stats.get("errors") or 0)
    for role, count in ({role: 0 for role in roles} | dict(stats.get("wins") or {})).items():
        metrics[f"{prefix}/wins/{role}"] = count
        if judged > 0:
            metrics[f"{prefix}/win_rate/{role}"] = count / judged
    return metrics


def winrate_metrics(record: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """A win-rate record (`WinRate.to_dict`, ``winrate.json``) as flat metrics.

    ``eval/games``, ``eval/errors``, ``eval/wins``, ``eval/losses``, ``eval/ties``,
    ``eval/win_rate`` with ``eval/win_rate_low`` and ``eval/win_rate_high`` (the Wilson 95%
    interval), the same for ``loss_rate`` and ``tie_rate``, and per role assignment
    ``eval/by_role/<role>/win_rate`` and ``.../games``.

    Example:
        >>> winrate_metrics({"win_rate": 0.5, "win_ci": [0.2, 0.8]})
        {'eval/win_rate': 0.5, 'eval/win_rate_low': 0.2, 'eval/win_rate_high': 0.8}
    """
    metrics = {f"{prefix}/{key}": record[key] for key in ("games", "errors", "wins", "losses", "ties")
               if _number(record.get(key))}
    for outcome in ("win", "loss", "tie"):
        if _number(record.get(f"{outcome}_rate")):
            metrics[f"{prefix}/{outcome}_rate"] = record[f"{outcome}_rate"]
        ci = record.get(f"{outcome}_ci")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            metrics[f"{prefix}/{outcome}_rate_low"], metrics[f"{prefix}/{outcome}_rate_high"] = ci
    for role, tally in (record.get("by_role") or {}).items():
        judged = tally.get("games", 0) - tally.get("errors", 0)
        metrics[f"{prefix}/by_role/{role}/games"] = tally.get("games", 0)
        if judged > 0:
            metrics[f"{prefix}/by_role/{role}/win_rate"] = tally.get("wins", 0) / judged
    return metrics


def accuracy_metrics(record: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """An accuracy record (`QAResult.to_dict`, ``accuracy.json``) as flat metrics.

    ``eval/questions``, ``eval/errors`` and per method (``single_agent``, ``majority_vote``,
    ``debate``, ``reflection``; SAIE's ``learner_prompt``) ``eval/<method>/accuracy`` with
    ``..._low`` and ``..._high`` (the Wilson 95% interval), ``correct`` and ``total``.

    Example:
        >>> accuracy_metrics({"methods": {"debate": {"accuracy": 0.5, "ci": [0.1, 0.9]}}})["eval/debate/accuracy_high"]
        0.9
    """
    metrics = {f"{prefix}/{key}": record[key] for key in ("questions", "errors") if _number(record.get(key))}
    for method, score in (record.get("methods") or {}).items():
        metrics.update(_score_metrics(score, f"{prefix}/{method}"))
    return metrics


def _score_metrics(score: Mapping[str, Any], prefix: str) -> dict[str, float]:
    metrics = {f"{prefix}/{key}": score[key] for key in ("accuracy", "correct", "total") if _number(score.get(key))}
    ci = score.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        metrics[f"{prefix}/accuracy_low"], metrics[f"{prefix}/accuracy_high"] = ci
    return metrics


def epoch_metrics(record: Mapping[str, Any], roles: Iterable[str] = ()) -> dict[str, float]:
    """One self-play epoch (``epoch.json``, `EpochRecord` as a dict) as flat metrics, logged at step = the epoch.

    `play_metrics` of its games (``roles``: the protocol's), `winrate_metrics` (games) or `accuracy_metrics` (SAIE, with
    ``eval/baseline/accuracy``: the starting model's) of its evaluation, the p-value of the
    evidence against the starting model (``eval/p_value``; per role ``eval/by_role/<role>/p_value``
    and the starting model's own ``eval/by_role/<role>/baseline_win_rate``),
    and ``selfplay/trained`` (1 or 0), ``selfplay/data_rows``, ``selfplay/train_steps``,
    ``selfplay/final_loss``.
    """
    metrics: dict[str, float] = {}
    if record.get("play"):
        metrics.update(play_metrics(record["play"], roles))
    evaluation = record.get("eval") or {}
    if "methods" in evaluation:
        metrics.update(accuracy_metrics(evaluation))
        if isinstance(evaluation.get("baseline"), Mapping):
            metrics.update(_score_metrics(evaluation["baseline"], "eval/baseline"))
    elif evaluation:
        metrics.update(winrate_metrics(evaluation))
    evidence = evaluation.get("evidence") or {}
    p_value = evidence.get("p_value", (evidence.get("overall") or {}).get("p_value"))
    if _number(p_value):
        metrics["eval/p_value"] = p_value
    for role, entry in (evidence.get("roles") or {}).items():
        for key, name in (("p_value", "p_value"), ("baseline_rate", "baseline_win_rate")):
            if isinstance(entry, Mapping) and _number(entry.get(key)):
                metrics[f"eval/by_role/{role}/{name}"] = entry[key]
    metrics["selfplay/trained"] = float(bool(record.get("trained")))
    data, train = record.get("data") or {}, record.get("train") or {}
    if _number(data.get("rows")):
        metrics["selfplay/data_rows"] = data["rows"]
    if _number(train.get("steps")):
        metrics["selfplay/train_steps"] = train["steps"]
    if _number(train.get("final_loss")):
        metrics["selfplay/final_loss"] = train["final_loss"]
    return metrics


# --- the trackers ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with paths, sets and tuples turned into JSON values (what W&B and Trackio configs take)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, run_dir: Path, config: dict, name: str | None, step_key: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise TrackingError(_missing("tensorboard")) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR / GAMES_RUN))
        if config:
            text = json.dumps(config, indent=2, sort_keys=True)
            self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    name = "wandb"

    def __init__(self, run_dir: Path, config: dict, name: str | None, step_key: str):
        try:
            import wandb
        except ImportError:
            raise TrackingError(_missing("wandb")) from None
        settings: dict[str, Any] = {"config": config}
        if not os.environ.get("WANDB_PROJECT"):
            settings["project"] = DEFAULT_PROJECT
        if not os.environ.get("WANDB_DIR"):
            run_dir.mkdir(parents=True, exist_ok=True)
            settings["dir"] = str(run_dir)
        if name and not os.environ.get("WANDB_NAME"):
            settings["name"] = name
        try:
            self.run = wandb.init(**settings)
        except Exception as error:  # noqa: BLE001 - wandb's own errors (no API key, no network) vary
            line = " ".join(str(error).split())
            raise TrackingError(f"--report-to wandb could not start a run: {line} (log in with `wandb login`, "
                                "or set WANDB_MODE=offline to log to files only)") from None
        self.step_key = step_key
        self.defined: set[str] = set()
        self.run.define_metric(step_key)

    def log(self, metrics: dict[str, float], step: int) -> None:
        # Each key's own x-axis: the Trainer's callback logs into the same run with its global step
        # (and defines "*" against it), so W&B's own step is not ours to set.
        for key in metrics.keys() - self.defined:
            self.run.define_metric(key, step_metric=self.step_key)
            self.defined.add(key)
        self.run.log({**metrics, self.step_key: step})

    def close(self) -> None:
        self.run.finish()


class _Trackio:
    name = "trackio"

    def __init__(self, run_dir: Path, config: dict, name: str | None, step_key: str):
        try:
            import trackio
        except ImportError:
            raise TrackingError(_missing("trackio")) from None
        self.trackio = trackio
        try:
            self.run = trackio.init(project=DEFAULT_PROJECT, name=name, config=config)
        except Exception as error:  # noqa: BLE001
            raise TrackingError(f"--report-to trackio could not start a run: {' '.join(str(error).split())}") from None

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)  # this run's, whatever run the Trainer's callback started since

    def close(self) -> None:
        current = getattr(getattr(self.trackio, "context_vars", None), "current_run", None)
        if current is not None and current.get() is self.run:
            self.trackio.finish()
        else:
            self.run.finish()
