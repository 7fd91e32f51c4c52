"""The on-disk layout of a run: its file and folder names, its JSON records, and one atomic writer.

A self-play run (``sparring selfplay --out OUT``, `sparring.trainer`)::

    OUT/
      selfplay.json            SELFPLAY_FILE: the run's settings (SelfPlayFile, "sparring.selfplay/1")
      run_config.yaml          RUN_CONFIG_FILE: every option's value (`sparring.config_files`)
      tensorboard/             TENSORBOARD_DIR: tracked metrics (`sparring.tracking`)
      baseline/                BASELINE_DIR: the starting model
        winrate.json | accuracy.json, transcripts.jsonl, bench.json
      epoch_K/                 epoch_dir(OUT, K); epoch_0: the imitation or warm-up stage
        games/transcripts.jsonl      GAMES_DIR, TRANSCRIPTS_FILE: the epoch's episodes
        data/                        DATA_DIR: the dataset, data.jsonl, summary.json (DATA_SUMMARY_FILE)
        adapter/                     ADAPTER_DIR: the trained model, training_log.json (TRAINING_LOG_FILE)
        eval/                        EVAL_DIR: transcripts.jsonl and winrate.json or accuracy.json
        bench.json                   BENCH_FILE: lm-eval scores (BenchFile, "sparring.bench/1")
        epoch.json                   EPOCH_FILE: what the epoch did, written last (EpochFile, "sparring.epoch/1")

A play or evaluation output (``sparring play``, ``sparring eval ... --out OUT``)::

    OUT/
      transcripts.jsonl        TRANSCRIPTS_FILE
      winrate.json             WINRATE_FILE (WinRateFile, "sparring.winrate/1"), `sparring eval winrate`
      accuracy.json            ACCURACY_FILE (AccuracyFile, "sparring.accuracy/1"), `sparring debate`, `eval qa`
      bench.json               BENCH_FILE, `sparring eval bench`
      run_config.yaml          RUN_CONFIG_FILE

Every JSON file is written with `write_json` (a temporary file in the same folder, flushed and synced,
then renamed: a crash leaves the old file or the new one). A record's ``schema`` comes first; a
file without one (written before records were versioned) still reads, and so do keys a record does
not know. `read_record` raises `RunFileError` naming the file (and the field) when a file is malformed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import RunFileError

SELFPLAY_FILE = "selfplay.json"
EPOCH_FILE = "epoch.json"
WINRATE_FILE = "winrate.json"
ACCURACY_FILE = "accuracy.json"
BENCH_FILE = "bench.json"
DATA_SUMMARY_FILE = "summary.json"
DATA_ROWS_FILE = "data.jsonl"
TRAINING_LOG_FILE = "training_log.json"
RUN_CONFIG_FILE = "run_config.yaml"
TRANSCRIPTS_FILE = "transcripts.jsonl"
GAMES_DIR = "games"
EVAL_DIR = "eval"
DATA_DIR = "data"
ADAPTER_DIR = "adapter"
BASELINE_DIR = "baseline"
TENSORBOARD_DIR = "tensorboard"
EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
"""An epoch folder's name (``epoch_K``); group 1 is K."""



def epoch_dir(root: Path, k: int) -> Path:
    """``root/epoch_K``."""
    return Path(root) / f"epoch_{k}"


def epoch_dirs(root: Path) -> list[tuple[int, Path]]:
    """The ``epoch_K`` folders of ``root`` as (K, folder), by K."""
    return sorted((int(m.group(1)), p) for p in Path(root).iterdir() if p.is_dir() and (m := EPOCH_DIR.match(p.name)))


# -- writing and reading ------------------------------------------------------------------------

def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file beside it, flushed and synced, then renamed over
    it, so a crash leaves the old file or the new one; no temporary file is left behind. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as stream:  # the usual permissions (umask), unlike mkstemp's
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (``indent`` 2, a final newline; a `Record` as its `Record.to_json`) atomically
    (`write_text`). Values JSON does not know (paths) are written as text. Returns ``path``."""
    if isinstance(data, Record):
        data = data.to_json()
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def read_json(path: Path, shape: type | None = None) -> Any:
    """The JSON of ``path``; with ``shape`` (dict or list) it must be one.

    Raises:
        `RunFileError`: the file is missing, unreadable, not JSON, or not a ``shape``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(f"{path}: cannot read it ({error})") from error
    if shape is not None and not isinstance(data, shape):
        raise RunFileError(f"{path}: not a JSON {'object' if shape is dict else 'list' if shape is list else shape}")
    return data


R = TypeVar("R", bound="Record")


def parse_record(data: Any, model: type[R], path: Path | str = "<record>") -> R:
    """``data`` (a file's JSON) as a ``model``; ``path`` names it in errors.

    Raises:
        `RunFileError`: not an object, another record's ``schema``, or a field of the wrong type.
    """
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: not a JSON object")
    schema = data.get("schema")
    family = model.SCHEMA.partition("/")[0] + "/"
    if schema is not None and not (isinstance(schema, str) and schema.startswith(family)):
        raise RunFileError(f"{path}: field 'schema': {schema!r} is not a {model.SCHEMA} record")
    try:
        record = model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(the record)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise RunFileError(f"{path}: field '{field}': {first['msg']}{more}") from error
    record._source = data
    return record


def read_record(path: Path, model: type[R]) -> R:
    """The ``model`` record in ``path`` (one written with or without ``schema``, unknown keys kept).

    Raises:
        `RunFileError`: the file is unreadable or malformed; the message names it and the field.
    """
    return parse_record(read_json(path), model, path)


def write_record(path: Path, model: type[Record], data: Mapping[str, Any]) -> Path:
    """Write ``data`` (a writer's dict, checked against ``model``) to ``path`` with ``model``'s ``schema`` first,
    the rest as given (`write_json`). Returns ``path``.

    Raises:
        `RunFileError`: ``data`` is not a ``model`` record (a bug in the writer).
    """
    parse_record(dict(data), model, path)
    return write_json(path, {"schema": model.SCHEMA, **{k: v for k, v in data.items() if k != "schema"}})


# -- the records -----------------------------------------------------------------------------------

class Record(BaseModel):
    """A versioned JSON record of a run: ``schema`` (``"sparring.NAME/VERSION"``) and its fields; keys it does
    not know are kept (``extra``), so files of older or newer versions still load."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    SCHEMA: ClassVar[str] = "sparring.record/1"
    schema_id: str | None = Field(default=None, alias="schema")
    _source: dict[str, Any] | None = PrivateAttr(default=None)

    def to_json(self) -> dict[str, Any]:
        """The record as the file holds it: ``schema`` first, then the fields and the extra keys."""
        data = self.model_dump(mode="json", by_alias=True)
        data.pop("schema", None)
        return {"schema": self.SCHEMA, **data}

    def as_dict(self) -> dict[str, Any]:
        """The record's fields and extra keys without ``schema`` (e.g. for a dataclass's ``**``): a record read
        from a file gives the file's values as they are (an ``int`` where a ``float`` is typed stays one)."""
        if self._source is not None:
            return {key: value for key, value in self._source.items() if key != "schema"}
        data = self.model_dump(by_alias=True)
        data.pop("schema", None)
        return data


class SelfPlayFile(Record):
    """``selfplay.json``: a self-play run's settings (`SelfPlayConfig.to_dict` and the ``kind`` in effect); those
    a continued run must match are typed, the others kept as they are."""

    SCHEMA: ClassVar[str] = "sparring.selfplay/1"
    protocol: str
    model: str
    kind: str | None = None
    games: int | None = None
    seed: int | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    warmup: int | None = None
    out: str | None = None
    epochs: int | None = None


class EpochFile(Record):
    """``epoch_K/epoch.json``: what one epoch did (the self-play loop's record of it, `EpochRecord`); written last."""

    SCHEMA: ClassVar[str] = "sparring.epoch/1"
    epoch: int
    model: str
    trained: bool = False
    note: str = ""
    next_model: str = ""
    play: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None


class Part(BaseModel):
    """A nested part of a record (no ``schema`` of its own); unknown keys kept."""

    model_config = ConfigDict(extra="allow")


class RoleTallyRecord(Part):
    """One role's outcomes in ``winrate.json``'s ``by_role``."""

    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    errors: int = 0


class WinRateFile(Record):
    """``winrate.json``: `sparring.evaluation.WinRate.to_dict`, the model's outcomes against the opponent."""

    SCHEMA: ClassVar[str] = "sparring.winrate/1"
    model: str | None = None
    opponent: str | None = None
    protocol: str | None = None
    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    errors: int = 0
    win_rate: float
    win_ci: tuple[float, float] | None = None
    loss_rate: float | None = None
    loss_ci: tuple[float, float] | None = None
    tie_rate: float | None = None
    tie_ci: tuple[float, float] | None = None
    by_role: dict[str, RoleTallyRecord] = Field(default_factory=dict)


class MethodScoreRecord(Part):
    """One method's score in ``accuracy.json``'s ``methods``."""

    correct: int = 0
    total: int = 0
    accuracy: float
    ci: tuple[float, float] | None = None


class AccuracyFile(Record):
    """``accuracy.json``: `sparring.evaluation.QAResult.to_dict`, accuracies per method on one question set."""

    SCHEMA: ClassVar[str] = "sparring.accuracy/1"
    questions: int = 0
    methods: dict[str, MethodScoreRecord]
    model: str | None = None
    source: str | None = None
    errors: int = 0
    agents: int = 1
    rounds: int = 1


class BenchFile(Record):
    """``bench.json``: lm-eval scores of one model (`sparring.evaluation._bench`, whose docstring shows it)."""

    SCHEMA: ClassVar[str] = "sparring.bench/1"
    model: str | None = None
    backend: str | None = None
    tasks: list[str] = Field(default_factory=list)
    limit: int | None = None
    num_fewshot: int | None = None
    lm_eval_version: str | None = None
    created: str = ""
    seconds: float | None = 0.0
    results: dict[str, dict[str, Any]]


BENCH_SCHEMA = BenchFile.SCHEMA
RECORDS: dict[str, type[Record]] = {SELFPLAY_FILE: SelfPlayFile, EPOCH_FILE: EpochFile, WINRATE_FILE: WinRateFile,
                                    ACCURACY_FILE: AccuracyFile, BENCH_FILE: BenchFile}
"""The record of each versioned file, by its name."""
