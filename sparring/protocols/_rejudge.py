"""Re-judge logged episodes under a protocol's current rules (`sparring judge`).

Re-judging never harms its input: the output may not be the input file, an existing output is
replaced only when asked, and it is written to a temporary file in the same directory that
replaces it in one step (`os.replace`) once every episode is written, so a crash leaves the
previous output (or none) in place. Each id is judged once, from its latest record.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import JudgeError, SparringError, TranscriptError
from ..transcripts import Episode, ProtocolRef, latest_by_id, read_transcripts
from ._judges import Judge
from ._loader import Protocol
from ._play import PlaySummary, error_line
from ._schedule import schedule_rounds
from ._state import with_states


@dataclass
class RejudgeSummary(PlaySummary):
    """A `PlaySummary` of a re-judged file, plus what re-judging left out.

    Attributes:
        malformed (`int`): lines of the input skipped as malformed.
        duplicates (`int`): records dropped because a later record has the same id.
        capped (`int`): episodes with more player messages than the schedule allows (its turn caps,
            or an ``until`` that would have stopped it); only those it allows were judged.
        failures (`list[str]`): ``"ID: error"`` for each episode the judge failed on; those are
            written with ``status: error``.
    """

    malformed: int = 0
    duplicates: int = 0
    capped: int = 0
    failures: list[str] = field(default_factory=list)


def rejudge(
    protocol: Protocol,
    source: Path,
    out: Path | None = None,
    allow_hooks: bool = False,
    force: bool = False,
    overwrite: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
) -> RejudgeSummary:
    """Judge every episode of ``source`` again; write them with their new outcomes to ``out``.

    Records from other tools need only ``id``, ``protocol.name``, ``variables`` and ``messages``
    (``role``, ``content``); malformed lines are skipped and counted in ``summary.malformed``.
    Of several records with one id only the latest is judged and written. Episodes logged with
    ``status: error`` are kept as they are. Only the messages the protocol's schedule allows
    are judged: those before its ``ScheduleSpec.max_messages() + 1``-th player message (so an
    LLM judge's reply to the last allowed message counts, one after a later message does not),
    and none after the round where an ``until`` would have stopped the game (`within_rounds`);
    the later ones stay in the record unjudged. An episode the judge fails on is written with
    ``status: error`` and its message, and the run goes on.

    Args:
        protocol (`Protocol`): the rules to judge by.
        source (`Path`): the transcript to read.
        out (`Path | None`): where to write the re-judged episodes; `None` only summarises.
        allow_hooks (`bool`, defaults to False): run the protocol's Python hook.
        force (`bool`, defaults to False): judge records of other protocols too.
        overwrite (`bool`, defaults to False): replace an ``out`` that already holds data.
        on_start (`Callable[[int], None] | None`): called with the number of episodes to judge, once read.
        on_episode (`Callable[[Episode], None] | None`): called with each episode once judged (a progress bar).

    Returns:
        `RejudgeSummary`: the outcomes, and what was dropped, capped or failed.

    Raises:
        `TranscriptError`: ``source`` is missing; ``out`` is ``source`` itself, a directory, or
            not empty without ``overwrite``; records name another protocol without ``force``;
            ``out`` cannot be written.
        `JudgeError`: the protocol names a hook and ``allow_hooks`` is not set, or it is an environment's
            (its environment decided each game).
    """
    if protocol.spec.environment is not None:
        raise JudgeError(f"{protocol.name}: its environment ({protocol.spec.environment.textarena}) decided each game "
                         "as it was played; there are no rules to judge its transcripts by again")
    judge = Judge(protocol, allow_hooks)
    reader = read_transcripts(source)
    if out is not None:
        _check_output(Path(source), Path(out), overwrite)
    records = list(reader)
    episodes = latest_by_id(records)
    foreign = Counter(e.protocol.name for e in episodes.values() if e.protocol.name != protocol.name)
    if foreign and not force:
        names = ", ".join(f"{count} under {name!r}" for name, count in foreign.most_common())
        raise TranscriptError(
            f"{source}: {sum(foreign.values())} of {len(episodes)} records were played under another protocol "
            f"({names}), not {protocol.name!r}: judge them with their own protocol, or pass --force to judge "
            f"them as {protocol.name} anyway"
        )
    summary = RejudgeSummary(protocol.name, list(protocol.spec.roles), path=out,
                             malformed=len(reader.skipped), duplicates=len(records) - len(episodes))
    ref = ProtocolRef(name=protocol.name, hash=protocol.hash)
    cap = protocol.spec.schedule.max_messages()
    if on_start is not None:
        on_start(len(episodes))
    with _replace_atomically(Path(out)) if out is not None else contextlib.nullcontext() as file:
        for episode in episodes.values():
            if episode.status == "ok":
                messages, capped = within_schedule(protocol, [m.model_dump() for m in episode.messages], cap)
                try:
                    messages = with_states(protocol, episode.variables, messages)
                    messages, stopped = within_rounds(protocol, judge, episode.variables, messages)
                    summary.capped += capped or stopped
                    outcome, _ = judge.judge(episode.variables, messages)
                    update = {"outcome": outcome.record(protocol),
                              "rewards": judge.rewards(outcome, episode.variables, messages)}
                except SparringError as error:
                    line = error_line(error)
                    summary.failures.append(f"{episode.id}: {line}")
                    update = {"status": "error", "error": f"judging failed: {line}", "outcome": None, "rewards": {}}
                episode = episode.model_copy(update={"protocol": ref, **update})
            summary.add(episode)
            if file is not None:
                file.write((episode.to_json_line() + "\n").encode("utf-8"))
            if on_episode is not None:
                on_episode(episode)
    return summary


def within_schedule(protocol: Protocol, messages: list[dict], cap: int) -> tuple[list[dict], bool]:
    """The messages to judge: all before the ``cap + 1``-th player message (an LLM judge's replies
    are no player messages, so one after the ``cap``-th is kept); and whether any were left out."""
    llm = protocol.spec.judge.llm
    players = 0
    for index, message in enumerate(messages):
        if llm is None or message["role"] != llm.role:
            if players == cap:
                return messages[:index], True
            players += 1
    return messages, False


def within_rounds(protocol: Protocol, judge: Judge, variables: dict, messages: list[dict]) -> tuple[list[dict], bool]:
    """The messages before the point where play would have stopped the schedule (an ``until`` that
    turned true, a dynamic ``next`` that chose nobody), and whether any were left out.

    The schedule is followed as play follows it (`schedule_rounds`), each round taking as many player
    messages as it has speakers, so ``until`` sees the same messages and state it would have seen.
    """
    llm = protocol.spec.judge.llm
    players = [i for i, message in enumerate(messages) if llm is None or message["role"] != llm.role]
    taken = 0
    rounds = schedule_rounds(protocol, variables, lambda: judge.rule_context(
        variables, [messages[i] for i in players[:taken]]))
    for _, speakers in rounds:
        taken += len(speakers)
        if taken >= len(players):
            return messages, False
    return messages[:players[taken]], True


def _check_output(source: Path, out: Path, overwrite: bool) -> None:
    """Refuse an output that is the input itself, a directory, or (without ``overwrite``) not empty."""
    if out.exists() and os.path.samefile(source, out):
        raise TranscriptError(
            f"-o {out} is the input transcript {source} itself: write the re-judged episodes to another "
            f"file, e.g. -o {source.with_name(source.stem + '-rejudged.jsonl')}"
        )
    if out.is_dir():
        raise TranscriptError(f"-o {out} is a directory: give the path of a .jsonl file to write")
    if out.exists() and out.stat().st_size > 0 and not overwrite:
        raise TranscriptError(
            f"-o {out} already holds data: pass --overwrite to replace it, or give another -o file"
        )


@contextlib.contextmanager
def _replace_atomically(path: Path) -> Iterator[IO[bytes]]:
    """A binary file to write that replaces ``path`` in one step when the block ends without error.

    It is a temporary file next to ``path`` (the target of a symlink), fsync'ed before
    `os.replace`; on any failure it is removed and ``path`` is left as it was.

    Raises:
        `TranscriptError`: the file cannot be created, written or moved into place.
    """
    target = path.resolve()
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        file = temporary.open("xb")
    except OSError as error:
        raise TranscriptError(f"cannot write {path}: {error}") from error
    try:
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise TranscriptError(f"cannot write {path}: {error}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
