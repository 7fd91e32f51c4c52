"""Read what a run directory holds, coping with every missing or damaged piece.

Two layouts are understood: a self-play run (``selfplay.json`` and ``epoch_K/`` folders, see
`sparring.trainer`) and a plain play or evaluation output (``transcripts.jsonl``, perhaps a
``winrate.json`` or ``accuracy.json``), shown as a single group. Benchmark scores (``bench.json``
of ``baseline/`` and ``epoch_K/``, or of a directory and its sub-folders) are read beside either,
or alone (`load_benches`). Anything absent is noted in
``missing``, in words, and the report goes on without it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from ..errors import ReportError, SparringError
from ..runs import (ACCURACY_FILE, ADAPTER_DIR, BASELINE_DIR, BENCH_FILE, EPOCH_DIR, EPOCH_FILE, EVAL_DIR, GAMES_DIR,
                    SELFPLAY_FILE, TRAINING_LOG_FILE, TRANSCRIPTS_FILE, WINRATE_FILE, AccuracyFile, EpochFile, Record,
                    RunFileError, SelfPlayFile, WinRateFile, parse_record, read_json)
from ..transcripts import Episode, latest_by_id, read_transcripts

TRANSCRIPTS = TRANSCRIPTS_FILE  # the names of a run's files and folders: `sparring.runs`
_EPOCH_DIR = EPOCH_DIR
_PROMPT_ROLES = {"system", "user"}


@dataclass
class PlayStats:
    """What one group of episodes played: counts, outcomes, tokens and speed."""

    games: int = 0
    errors: int = 0
    reasons: Counter = field(default_factory=Counter)
    wins: Counter = field(default_factory=Counter)
    completion_tokens: int = 0
    seconds: float = 0.0
    turns: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.games - self.errors

    @property
    def decisive(self) -> int:
        return sum(self.wins.values())

    @property
    def decisive_share(self) -> float:
        """The share of games without an error that had a winner."""
        return self.decisive / self.judged if self.judged else 0.0

    def share(self, reasons: Collection[str]) -> float:
        """The share of games without an error whose outcome reason is one of ``reasons``."""
        return sum(self.reasons[r] for r in set(reasons)) / self.judged if self.judged else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def episodes_per_minute(self) -> float:
        return 60 * self.games / self.seconds if self.seconds else 0.0

    @property
    def mean_turns(self) -> float:
        return statistics.fmean(self.turns) if self.turns else 0.0

    @classmethod
    def of(cls, episodes: list[Episode]) -> PlayStats:
        """Counted from the transcripts; the time is that of `playing_seconds`."""
        stats = cls()
        intervals = []
        for episode in episodes:
            stats.games += 1
            stats.turns.append(sum(m.role not in _PROMPT_ROLES for m in episode.messages))
            tokens = episode.usage.get("completion_tokens") or sum((m.usage or {}).get("completion_tokens", 0)
                                                                   for m in episode.messages)
            stats.tokens.append(tokens)
            stats.completion_tokens += tokens
            if "started" in episode.timings:
                start = episode.timings["started"]
                intervals.append((start, start + episode.timings.get("seconds", 0.0)))
            if episode.status != "ok" or episode.outcome is None:
                stats.errors += 1
                continue
            stats.reasons[episode.outcome.reason] += 1
            if episode.outcome.winner is not None:
                stats.wins[episode.outcome.winner] += 1
        stats.seconds = playing_seconds(intervals)
        return stats


def playing_seconds(intervals: list[tuple[float, float]]) -> float:
    """The time during which at least one episode was being played, from their (start, end) times.

    A run stopped and resumed later plays in spells; the time between them is not playing time,
    so speeds measured over it would be too low.
    """
    total, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        total += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return total


@dataclass
class Group:
    """One epoch of a self-play run, or the whole of a plain run.

    Args:
        label (`str`): ``"epoch 2"`` or ``"run"``.
        number (`int | None`): the epoch number (None for a plain run).
        path (`Path`): its folder.
        info (`dict | None`): ``epoch.json``.
        games (`list[Episode]`): its played episodes (latest record per id).
        eval_games (`list[Episode]`): its evaluation episodes.
        winrate (`dict | None`), accuracy (`dict | None`): the evaluation results.
        training_log (`list[dict] | None`): the trainer's log history.
        stats (`PlayStats`): counted from ``games``.
    """

    label: str
    number: int | None
    path: Path
    info: dict[str, Any] | None = None
    games: list[Episode] = field(default_factory=list)
    eval_games: list[Episode] = field(default_factory=list)
    winrate: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    training_log: list[dict[str, Any]] | None = None
    stats: PlayStats = field(default_factory=PlayStats)

    @property
    def losses(self) -> list[tuple[float, float]]:
        """(step, loss) points of the training log."""
        return self.metric("loss")

    def metric(self, key: str) -> list[tuple[float, float]]:
        """(step, value) points of one logged training metric (``loss``, ``kl``, ``grad_norm``, ...)."""
        points = []
        for entry in self.training_log or []:
            if isinstance(entry, dict) and _number(entry.get(key)) is not None:
                points.append((float(entry.get("step", len(points) + 1)), float(entry[key])))
        return points

    @property
    def evidence(self) -> dict[str, Any] | None:
        """The evaluation's tests against the start model (``epoch.json``'s ``eval.evidence``), if any."""
        evaluation = (self.info or {}).get("eval")
        evidence = evaluation.get("evidence") if isinstance(evaluation, dict) else None
        return evidence if isinstance(evidence, dict) and isinstance(evidence.get("verdict"), str) else None


@dataclass
class BenchEntry:
    """One ``bench.json`` (lm-eval scores, `sparring.evaluation._bench`) of a run: a row of the benchmark table.

    Args:
        label (`str`): ``"start model"``, ``"epoch 2"``, or the folder's name in a plain directory.
        path (`Path`): the file.
        data (`dict`): its content (checked by `read_bench`).
        order (`int`): where the row goes (the start model first, then the epochs).
    """

    label: str
    path: Path
    data: dict[str, Any]
    order: int = 0


def load_benches(path: Path, missing: list[str]) -> list[BenchEntry]:
    """The ``bench.json`` files of a run: ``baseline/`` (the start model) and ``epoch_K/`` of a self-play run,
    else the directory's own and those of its sub-folders (e.g. several `sparring eval bench --out` folders)."""
    from ..evaluation._bench import BenchmarkError, read_bench

    found: list[tuple[str, int, Path]] = []
    epochs = [(int(m.group(1)), p) for p in path.iterdir() if p.is_dir() and (m := _EPOCH_DIR.match(p.name))]
    if epochs or (path / BASELINE_DIR / BENCH_FILE).is_file():
        found.append(("start model", -1, path / BASELINE_DIR / BENCH_FILE))
        found += [(f"epoch {number}", number, folder / BENCH_FILE) for number, folder in epochs]
    else:
        found.append((path.name or str(path), -1, path / BENCH_FILE))
        found += [(folder.name, 0, folder / BENCH_FILE) for folder in sorted(path.iterdir()) if folder.is_dir()]
    entries = []
    for label, order, file in found:
        if not file.is_file():
            continue
        try:
            entries.append(BenchEntry(label, file, read_bench(file), order))
        except BenchmarkError as error:
            missing.append(f"{file.relative_to(path)} is not a usable benchmark record ({error}); left out")
    return sorted(entries, key=lambda entry: entry.order)


@dataclass
class Run:
    """A run directory as the report sees it."""

    path: Path
    kind: str  # "selfplay", "play" or "bench" (bench.json files only)
    settings: dict[str, Any] | None
    groups: list[Group]
    missing: list[str]
    benches: list[BenchEntry] = field(default_factory=list)

    @property
    def protocol(self) -> str | None:
        if self.settings and self.settings.get("protocol"):
            return str(self.settings["protocol"])
        episode = next((e for g in self.groups for e in g.games + g.eval_games), None)
        return episode.protocol.name if episode else None

    @property
    def episodes(self) -> int:
        return sum(len(g.games) for g in self.groups)

    def short(self, spec: str) -> str:
        """A model spec with this run's directory left out of adapter paths (``hf:base+epoch_1/adapter``)."""
        for prefix in {f"{self.path}/", f"{self.path.resolve()}/"}:
            spec = spec.replace(prefix, "")
        return spec


def load_run(path: Path) -> Run:
    """Read a self-play run directory or a plain play/evaluation directory.

    Raises:
        `ReportError`: ``path`` is not a directory, or holds neither ``epoch_K/`` folders, a
            ``transcripts.jsonl`` nor a ``bench.json`` (a directory of benchmark results only is a run of
            kind ``"bench"``, with no groups).
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory: pass the --out directory of `sparring selfplay` or `sparring play`")
    missing: list[str] = []
    epochs = sorted((int(m.group(1)), p) for p in path.iterdir() if p.is_dir() and (m := _EPOCH_DIR.match(p.name)))
    settings = _record(path / SELFPLAY_FILE, SelfPlayFile, missing, path)
    if epochs:
        if settings is None and not (path / SELFPLAY_FILE).exists():
            missing.append(f"{SELFPLAY_FILE} (the run's settings) is missing")
        groups = [_epoch(number, folder, missing, path) for number, folder in epochs]
        return Run(path, "selfplay", settings, groups, missing, load_benches(path, missing))
    benches = load_benches(path, missing)
    if not (path / TRANSCRIPTS).is_file() and benches:
        return Run(path, "bench", settings, [], missing, benches)
    if not (path / TRANSCRIPTS).is_file():
        raise ReportError(f"{path} holds neither epoch_K/ folders, a {TRANSCRIPTS} nor a bench.json: point `sparring "
                          "report` at the --out directory of `sparring selfplay`, `sparring play` or `sparring eval`")
    group = Group("run", None, path, games=_episodes(path / TRANSCRIPTS, missing, path))
    if not group.games and not benches and _has_lines(path / TRANSCRIPTS):
        raise ReportError(f"{path / TRANSCRIPTS}: no readable episode ({'; '.join(missing)}): it holds no sparring "
                          "transcripts; point `sparring report` at the --out directory of `sparring play`, "
                          "`sparring eval` or `sparring selfplay`")
    _evaluation(group, path, missing, path)
    group.stats = PlayStats.of(group.games)
    return Run(path, "play", settings, [group], missing, benches)


def _epoch(number: int, folder: Path, missing: list[str], root: Path) -> Group:
    group = Group(f"epoch {number}", number, folder)
    group.info = _record(folder / EPOCH_FILE, EpochFile, missing, root)
    info = group.info or {}
    where = f"epoch {number}"
    if group.info is None and not (folder / EPOCH_FILE).exists():
        missing.append(f"{where}: no {EPOCH_FILE} (the epoch was interrupted or is still running)")
    if (folder / GAMES_DIR / TRANSCRIPTS).is_file():
        group.games = _episodes(folder / GAMES_DIR / TRANSCRIPTS, missing, root)
    elif number > 0 and not ("play" in info and info["play"] is None):  # play None: an epoch that plays no games (gold-sft)
        missing.append(f"{where}: no {GAMES_DIR}/{TRANSCRIPTS} (no games played yet)")
    group.stats = PlayStats.of(group.games)
    group.training_log = _json(folder / ADAPTER_DIR / TRAINING_LOG_FILE, missing, root, list)
    if group.training_log is None and not (folder / ADAPTER_DIR / TRAINING_LOG_FILE).exists():
        why = "not trained (its note says why)" if info.get("trained") is False else "not trained yet"
        missing.append(f"{where}: no {ADAPTER_DIR}/{TRAINING_LOG_FILE} ({why})")
    if (folder / EVAL_DIR / TRANSCRIPTS).is_file():
        group.eval_games = _episodes(folder / EVAL_DIR / TRANSCRIPTS, missing, root)
    _evaluation(group, folder / EVAL_DIR, missing, root)
    recorded = info.get("eval") if isinstance(info.get("eval"), dict) else None
    group.winrate = group.winrate or _winrate(recorded)
    group.accuracy = group.accuracy or _accuracy(recorded)
    if group.winrate is None and group.accuracy is None and number > 0:
        missing.append(f"{where}: no evaluation ({EVAL_DIR}/{WINRATE_FILE} or {EVAL_DIR}/{ACCURACY_FILE})")
    return group


def _evaluation(group: Group, folder: Path, missing: list[str], root: Path) -> None:
    """Read ``winrate.json`` and ``accuracy.json`` of ``folder`` into the group, noting unusable ones."""
    for name, record, clean, attribute in ((WINRATE_FILE, WinRateFile, _winrate, "winrate"),
                                           (ACCURACY_FILE, AccuracyFile, _accuracy, "accuracy")):
        notes: list[str] = []
        loaded = _record(folder / name, record, notes, root)
        setattr(group, attribute, clean(loaded))
        if loaded is not None and getattr(group, attribute) is None:
            missing.append(f"{(folder / name).relative_to(root)} holds no usable figures; left out")
        else:
            missing += notes


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _interval(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) is not None for v in value):
        return [float(v) for v in value]
    return None


def _winrate(data: Any) -> dict[str, Any] | None:
    """A win-rate record with numeric rates and intervals (None without a numeric ``win_rate``)."""
    if not isinstance(data, dict) or _number(data.get("win_rate")) is None:
        return None
    clean = dict(data)
    for key in ("win", "loss", "tie"):
        clean[f"{key}_rate"], clean[f"{key}_ci"] = _number(data.get(f"{key}_rate")), _interval(data.get(f"{key}_ci"))
    return clean


def _accuracy(data: Any) -> dict[str, Any] | None:
    """An accuracy record keeping the methods with a numeric accuracy (None without any)."""
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, dict):
        return None
    kept = {name: {**m, "accuracy": _number(m.get("accuracy")), "ci": _interval(m.get("ci"))}
            for name, m in methods.items() if isinstance(m, dict) and _number(m.get("accuracy")) is not None}
    return {**data, "methods": kept} if kept else None


def _json(file: Path, missing: list[str], root: Path, shape: type) -> Any:
    """The file's JSON if it is a ``shape`` (dict or list); else None, with a note unless the file is absent."""
    if not file.is_file():
        return None
    try:
        data = read_json(file)
    except RunFileError as error:
        missing.append(f"{file.relative_to(root)} could not be read ({error.__cause__ or error}); left out")
        return None
    if not isinstance(data, shape):
        missing.append(f"{file.relative_to(root)} is not a JSON {'object' if shape is dict else 'list'}; left out")
        return None
    return data


def _record(file: Path, record: type[Record], missing: list[str], root: Path) -> dict[str, Any] | None:
    """The file's JSON object (`_json`), checked against its ``record`` (`sparring.runs`): a field of the wrong
    type is noted, and the rest is still shown (the report reads each figure it shows with care). Its
    ``schema`` is left out: the report shows what the file says, not its version."""
    data = _json(file, missing, root, dict)
    if data is None:
        return None
    try:
        parse_record(data, record, file.relative_to(root))
    except RunFileError as error:
        missing.append(f"{error}; the rest of it is shown")
    return {key: value for key, value in data.items() if key != "schema"}


def _has_lines(file: Path) -> bool:
    """Whether ``file`` holds anything but blank space (an empty transcripts file is a run not yet started)."""
    try:
        with file.open("rb") as f:
            return any(line.strip() for line in f)
    except OSError:
        return True  # unreadable: `_episodes` has said why


def _episodes(file: Path, missing: list[str], root: Path) -> list[Episode]:
    try:
        reader = read_transcripts(file)
        episodes = list(latest_by_id(reader).values())
    except (SparringError, OSError) as error:
        missing.append(f"{file.relative_to(root)} could not be read ({error}); left out")
        return []
    if reader.skipped:
        missing.append(f"{file.relative_to(root)}: skipped {len(reader.skipped)} unreadable line(s)")
    return episodes
