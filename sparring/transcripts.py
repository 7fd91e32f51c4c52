"""Transcripts: one JSON line per episode, written as each episode ends (DESIGN §3.3).

Records we write are strict (``extra="forbid"``). Reading is lenient about the shape: a record
from elsewhere needs only ``id``, ``protocol.name``, ``variables`` and ``messages`` (``role``,
``content``); unknown keys are dropped (so they are not written back). A torn last line (a
crash mid-write, or a run still writing) is skipped and counted; a malformed line elsewhere
raises `TranscriptError` when ``strict``, else it is skipped with its reason.

Resume: `completed_ids` gives the ids to skip; a replayed episode appends a new record and
`latest_by_id` keeps the last record per id, so summaries never count an id twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticSerializationError

from .errors import TranscriptError

TRANSCRIPT_SCHEMA = "sparring.transcript/1"
_LENIENT = {"lenient": True}
_log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


class _Record(BaseModel):
    """Strict when built in code; validated with ``context={"lenient": True}`` unknown keys are dropped."""

    # "constants" writes -Infinity/NaN (a logprob may be -inf) so that they read back as floats.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, ser_json_inf_nan="constants")

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get("lenient"):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            return {k: v for k, v in data.items() if k in known}
        return data


class JudgeReading(_Record):
    """How one reply of an LLM judge was read: which attempt it was, and its verdict and scores or why it failed."""

    attempt: int = Field(1, description="1 for the first reply of one judging, 2 for the first retry, ...")
    verdict: str | None = Field(None, description="the verdict the reply gives; None when it gives no valid one")
    scores: dict[str, float] = Field({}, description="score name -> value, from lines 'SCORE NAME: NUMBER'")
    error: str | None = Field(None, description="why the reply was not accepted (a retry followed, or the episode failed)")


class RejectedAttempt(_Record):
    """A reply that its role's ``valid`` expression rejected, and the error it was sent back with."""

    content: str = Field(description="the rejected reply")
    error: str = Field(description="the role's rendered invalid_prompt, handed to it (only) before it was asked again")
    token_ids: list[int] | None = Field(None, description="generated token ids")
    logprobs: list[float] | None = Field(None, description="per-token log-probabilities")
    finish_reason: str | None = Field(None, description="'stop' or 'length', where the backend said")
    seconds: float | None = Field(None, description="wall time of the model call")
    usage: dict[str, int] | None = Field(None, description="prompt_tokens and completion_tokens of the call")


class TranscriptMessage(_Record):
    """One message of an episode; `token_ids`/`logprobs` only where the backend gave them."""

    role: str = Field(description="the role that spoke (or 'system'/'user' for prompts)")
    seat: str | None = Field(None, description="protocols with seats: the seat the role played from (what others saw)")
    content: str = Field(description="the message text")
    turn: int = Field(0, description="the turn number, from 0")
    round: int = Field(0, description="the schedule round, from 0 (simultaneous speakers share one)")
    token_ids: list[int] | None = Field(None, description="generated token ids")
    logprobs: list[float] | None = Field(None, description="per-token log-probabilities")
    finish_reason: str | None = Field(None, description="'stop' or 'length', where the backend said")
    seconds: float | None = Field(None, description="wall time of the model call")
    usage: dict[str, int] | None = Field(None, description="prompt_tokens and completion_tokens of the call")
    prompt: str | None = Field(None, description="the protocol's per-turn prompt the role was handed before speaking")
    state: dict[str, Any] | None = Field(None, description="the game state after this message (protocols with `state`)")
    phase: str | None = Field(None, description="the schedule phase it was spoken in (phased schedules)")
    to: list[str] | None = Field(None, description="the roles it was addressed to (its author's `to`); none: all")
    judged: JudgeReading | None = Field(None, description="LLM judge replies only: how the reply was read")
    scripted: bool | None = Field(None, description="true for a scripted role's message (its script rendered, no model)")
    attempts: list[RejectedAttempt] | None = Field(
        None, description="roles with `valid`: the rejected replies of this turn before this message, in order")
    invalid: bool | None = Field(
        None, description="true when this message was rejected too and its role had no retry left (on_invalid decided)")


class ProtocolRef(_Record):
    """The protocol an episode was played under: its name and content hash."""

    name: str = Field(description="protocol id, e.g. 'taboo'")
    hash: str | None = Field(None, description="hash of the protocol's content, to spot edits")


class Outcome(_Record):
    """How an episode ended: the winning role or team (``None`` for a tie) and why."""

    winner: str | None = Field(None, description="the winning role or team; None for a tie")
    reason: str = Field(description="the stop or verdict reason, e.g. 'target word guessed'")
    winners: list[str] | None = Field(None, description="when a team won: its roles (each one won)",
                                      exclude_if=lambda value: value is None)  # records without teams stay as they were

    @property
    def winning_roles(self) -> list[str]:
        """The roles that won: the team's (``winners``), else the winner alone, none for a tie."""
        return list(self.winners) if self.winners is not None else [self.winner] if self.winner is not None else []


class Episode(_Record):
    """One transcript record: a played (or failed) episode.

    Raises:
        pydantic.ValidationError: a wrong type, an unknown key, or status "error" without `error`.

    Example:
        >>> ep = Episode(id="taboo-0-000000", protocol=ProtocolRef(name="taboo"), variables={},
        ...              messages=[TranscriptMessage(role="attacker", content="Hi")])
        >>> ep.to_json_line()[:33]
        '{"schema":"sparring.transcript/1"'
    """

    schema_: str = Field(TRANSCRIPT_SCHEMA, alias="schema", description="record format version")
    id: str = Field(description="episode id, unique within a run (see `episode_id`)")
    protocol: ProtocolRef = Field(description="the protocol's name and hash")
    variables: dict[str, Any] = Field(description="the protocol variables of this episode")
    models: dict[str, str] = Field({}, description="role -> model spec")
    messages: list[TranscriptMessage] = Field(description="the messages, in order")
    outcome: Outcome | None = Field(None, description="winner and reason; None if not judged")
    rewards: dict[str, float] = Field({}, description="role -> reward")
    status: Literal["ok", "error"] = Field("ok", description="'error' if the episode failed")
    error: str | None = Field(None, description="the error message when status is 'error'")
    timings: dict[str, float] = Field({}, description="e.g. started, finished (epoch s), seconds")
    usage: dict[str, int] = Field({}, description="e.g. prompt_tokens, completion_tokens")

    @model_validator(mode="after")
    def _error_needs_message(self) -> Episode:
        if self.status == "error" and not self.error:
            raise ValueError("status is 'error' but `error` is empty: set `error` to the failure message")
        return self

    def to_json_line(self) -> str:
        """The record as one line of JSON (no newline), ``schema`` first."""
        return self.model_dump_json(by_alias=True)


def episode_id(protocol_name: str, index: int, seed: int) -> str:
    """A deterministic id ``"{protocol_name}-{seed}-{index:06d}"``, so a resumed run regenerates it.

    Raises:
        TranscriptError: if `index` (the episode's position in the run, from 0) is negative.

    Example:
        >>> episode_id("taboo", 7, seed=42)
        'taboo-42-000007'
    """
    if index < 0:
        raise TranscriptError(f"episode index must be >= 0, got {index}: count episodes from 0")
    return f"{protocol_name}-{seed}-{index:06d}"


class SkippedLine(NamedTuple):
    """A line the reader skipped: its 1-based number and why."""

    line: int
    reason: str


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """JSON-decode one line: (object, "") or (None, reason)."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"not valid JSON ({e})"
    return (obj, "") if isinstance(obj, dict) else (None, f"not a JSON object (got {type(obj).__name__})")


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        if err["type"] == "missing":
            parts.append(f"{loc}: missing (readers need id, protocol.name, variables, messages[].role/content)")
        else:
            parts.append(f"{loc}: {err['msg']} (got {str(err.get('input'))[:40]!r})")
    return "; ".join(parts) + ("; ..." if e.error_count() > 3 else "")


class TranscriptReader(Iterator[Episode]):
    """Episodes of a transcript (see `read_transcripts`); `skipped` and `torn_tail` fill in as it goes."""

    def __init__(self, path: PathLike, strict: bool = False) -> None:
        self.path, self.strict = Path(path), strict
        if not self.path.is_file():
            raise TranscriptError(
                f"transcript not found (or not a file): {self.path}; check the path, or play a run to create it"
            )
        self.skipped: list[SkippedLine] = []
        self.torn_tail = False
        self._episodes = self._read()

    def __next__(self) -> Episode:
        return next(self._episodes)

    def _read(self) -> Iterator[Episode]:
        with self.path.open("rb") as f:
            for n, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                obj, reason = _parse(raw)
                if obj is None and not raw.endswith(b"\n"):  # only the last line can lack "\n"
                    self.torn_tail = True
                    self.skipped.append(SkippedLine(n, f"torn last line ({reason})"))
                    return
                if obj is not None:
                    try:
                        yield Episode.model_validate(obj, context=_LENIENT)
                        continue
                    except ValidationError as e:
                        reason = _describe(e)
                if self.strict:
                    raise TranscriptError(f"{self.path}:{n}: {reason}. Fix or delete that line, or read with strict=False")
                _log.warning("skipping %s:%d: %s", self.path, n, reason)
                self.skipped.append(SkippedLine(n, reason))


def read_transcripts(path: PathLike, strict: bool = False) -> TranscriptReader:
    """Read a transcript's episodes lazily, in file order. Blank lines are ignored.

    Args:
        path (`str | PathLike`): the ``.jsonl`` file.
        strict (`bool`, defaults to `False`): raise on a malformed line instead of skipping it
            (a torn last line is skipped either way).

    Returns:
        `TranscriptReader`: an iterator of `Episode`; ``.skipped`` lists `SkippedLine`s
        (line, reason) and ``.torn_tail`` tells whether the last line was torn.

    Raises:
        TranscriptError: the file is missing; with `strict`, a malformed line (names file:line).

    Example:
        >>> reader = read_transcripts("runs/taboo.jsonl")  # doctest: +SKIP
        >>> episodes = list(reader); reader.skipped  # doctest: +SKIP
        []
    """
    return TranscriptReader(path, strict=strict)


def latest_by_id(episodes: Iterable[Episode]) -> dict[str, Episode]:
    """id -> the last record of that id (a replay supersedes the earlier record), in first-seen order.

    Example:
        >>> failed = Episode(id="x", protocol=ProtocolRef(name="p"), variables={}, messages=[],
        ...                  status="error", error="timeout")
        >>> latest_by_id([failed, failed.model_copy(update={"status": "ok"})])["x"].status
        'ok'
    """
    latest: dict[str, Episode] = {}
    for ep in episodes:
        latest[ep.id] = ep
    return latest


def first_error(path: PathLike) -> str | None:
    """The error of the first episode in ``path`` whose latest record failed, or `None` (also for no file)."""
    if not Path(path).exists():
        return None
    return next((e.error for e in latest_by_id(read_transcripts(path, strict=False)).values() if e.status == "error"),
                None)


def completed_ids(path: PathLike, include_errors: bool = False, missing_ok: bool = False) -> set[str]:
    """Ids that ``--resume`` skips: those whose latest record is ``ok`` (error episodes are replayed).

    Args:
        path (`str | PathLike`): the transcript file.
        include_errors (`bool`, defaults to `False`): also skip ids whose latest record failed.
        missing_ok (`bool`, defaults to `False`): a missing file gives an empty set.

    Returns:
        `set[str]`: the ids already done.

    Raises:
        TranscriptError: the file is missing (and not `missing_ok`).

    Example:
        >>> completed_ids("runs/taboo.jsonl", missing_ok=True)  # doctest: +SKIP
        {'taboo-0-000000'}
    """
    if missing_ok and not Path(path).exists():
        return set()
    latest = latest_by_id(read_transcripts(path))
    return {i for i, ep in latest.items() if include_errors or ep.status == "ok"}


class TranscriptWriter:
    """Appends one line per episode; each `write` is flushed and fsync'ed before it returns.

    Opening repairs a crash's torn tail: an incomplete last line is truncated; a complete JSON
    object lacking only its newline gets one. Complete lines are never lost. `write` is
    synchronous and locked, so asyncio tasks on one loop (which cannot interleave inside it)
    and threads (``asyncio.to_thread``) both write whole lines. One writer per file: other
    processes are not locked out.

    Args:
        path (`str | PathLike`): the ``.jsonl`` file; parent directories are created.

    Raises:
        TranscriptError: the file cannot be opened.

    Example:
        >>> with TranscriptWriter("runs/taboo.jsonl") as out:  # doctest: +SKIP
        ...     out.write(episode)
    """

    def __init__(self, path: PathLike) -> None:
        self.path, self.written = Path(path), 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a+b")
            self.repaired_bytes = self._repair_tail()  # bytes of a torn last line dropped
        except OSError as e:
            raise TranscriptError(f"cannot open transcript {self.path} for appending: {e}") from e

    def _repair_tail(self) -> int:
        f = self._file
        start = end = f.seek(0, os.SEEK_END)
        while start > 0:  # scan back in chunks for the start of the last line
            step = min(start, 1 << 16)
            f.seek(start - step)
            i = f.read(step).rfind(b"\n")
            start = start - step + i + 1 if i >= 0 else start - step
            if i >= 0:
                break
        if start == end:  # empty, or ends with a newline
            return 0
        f.seek(start)
        complete = _parse(f.read())[0] is not None
        if complete:
            f.write(b"\n")
        else:
            f.truncate(start)
            _log.warning("%s: dropped a torn last line (%d bytes) before appending", self.path, end - start)
        f.flush()
        os.fsync(f.fileno())
        return 0 if complete else end - start

    def write(self, episode: Episode) -> None:
        """Append `episode` as one line, then flush and fsync.

        Raises:
            TranscriptError: the writer is closed, or the episode holds values JSON cannot encode.
        """
        try:
            data = (episode.to_json_line() + "\n").encode("utf-8")
        except PydanticSerializationError as e:
            msg = f"episode {episode.id!r} cannot be written as JSON: {e}; keep variables JSON-serialisable"
            raise TranscriptError(msg) from e
        with self._lock:
            if self._file.closed:
                raise TranscriptError(f"TranscriptWriter({self.path}) is closed: write inside its `with` block")
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.written += 1

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> TranscriptWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
