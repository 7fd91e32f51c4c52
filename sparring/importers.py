"""Games played by other tools, as sparring transcripts.

`import_spag` reads the game files SPAG released (Cheng et al. 2024, repository ``Linear95/SPAG``,
``data/README.md``: e.g. ``gpt4_game_top30k_results.json``, GPT-4 playing itself on 30K target
words) in their own format: records ``{"history": [{"role": "attacker" | "defender", "content":
TEXT}, ...], "target_word": WORD, "max_turns": N}``, the fields the official
``tools/assign_rewards.py`` reads; other fields are ignored. Each record becomes an episode of the
built-in ``adversarial_taboo_spag``, judged again by that protocol's rules (the official judge)
through `rejudge`. The whole history is kept, as in the official file; `build_dataset` trains on a
game only up to its deciding message, as the official code does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import TranscriptError
from .protocols import Protocol, load_protocol, rejudge
from .protocols._rejudge import RejudgeSummary
from .transcripts import Episode, ProtocolRef, TranscriptMessage

SPAG_PROTOCOL = "adversarial_taboo_spag"
"""The built-in protocol SPAG's games are imported under."""
SPAG_ROLES = ("attacker", "defender")


def read_spag_games(path: Path) -> list[tuple[str, Any]]:
    """The records of a SPAG game file, each with where it is (for errors).

    As the official ``read_json_or_jsonl_data``: a ``.json`` file holds a JSON list of games (or one
    game), any other file one game per line (blank lines are skipped).

    Args:
        path (`Path`): the file.

    Returns:
        `list[tuple[str, Any]]`: ``(place, record)``: place is ``FILE: record I`` (I from 0), with
        ``:LINE`` after the file name for JSON lines.

    Raises:
        `TranscriptError`: the file is missing or unreadable, or not valid JSON (names the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TranscriptError(f"{path}: cannot read the SPAG game file: {error}") from error
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TranscriptError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); SPAG's .json game files "
                                  "hold one list of games") from error
        except RecursionError as error:
            raise TranscriptError(f"{path}: nested too deeply to be a SPAG game file") from error
        games = data if isinstance(data, list) else [data]
        return [(f"{path}: record {i}", game) for i, game in enumerate(games)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:{number}: record {len(records)}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise TranscriptError(f"{path}:{number}: not valid JSON ({error.msg}); a SPAG .jsonl game file holds "
                                  "one game a line") from error
        except RecursionError as error:
            raise TranscriptError(f"{path}:{number}: nested too deeply to be a SPAG game") from error
    return records


_JSON_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "an object"}


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words: ``a string``, ``an integer``, ``null``..."""
    if value is None:
        return "null"
    return _JSON_KINDS.get(type(value), f"a {type(value).__name__}")


def _check(place: str, record: Any, turns: int) -> None:
    """Raise `TranscriptError` naming ``place`` unless ``record`` is a SPAG game of ``turns`` turns each."""

    def fail(problem: str) -> None:
        raise TranscriptError(f"{place}: {problem}; a SPAG game is {{'history': [{{'role': 'attacker' or 'defender', "
                              f"'content': TEXT}}, ...], 'target_word': WORD, 'max_turns': {turns}}}")

    if not isinstance(record, dict):
        fail(f"{_json_kind(record)}, not an object")
    for name, kind in (("history", list), ("target_word", str), ("max_turns", int)):
        if name not in record:
            fail(f"no {name!r}")
        if not isinstance(record[name], kind) or isinstance(record[name], bool):
            fail(f"{name!r} is {_json_kind(record[name])}, not {_JSON_KINDS[kind]}")
    if not record["target_word"].strip():
        fail("'target_word' is blank")
    if record["max_turns"] != turns:
        fail(f"'max_turns' is {record['max_turns']}: {SPAG_PROTOCOL} plays (and judges) {turns} turns each")
    for i, message in enumerate(record["history"]):
        if not isinstance(message, dict):
            fail(f"history[{i}] is {_json_kind(message)}, not an object")
        if message.get("role") not in SPAG_ROLES:
            fail(f"history[{i}] has role {message.get('role')!r}, not 'attacker' or 'defender'")
        if not isinstance(message.get("content"), str):
            fail(f"history[{i}] has no string 'content'")


def spag_episode(record: dict, episode_id: str, protocol: Protocol, model: str) -> Episode:
    """One SPAG game as an unjudged episode of ``protocol``: the target as ``target``, every message kept."""
    messages = [TranscriptMessage(role=m["role"], content=m["content"], turn=i, round=i)
                for i, m in enumerate(record["history"])]
    return Episode(id=episode_id, protocol=ProtocolRef(name=protocol.name, hash=protocol.hash),
                   variables={"target": record["target_word"]}, models={role: model for role in SPAG_ROLES},
                   messages=messages)


def import_spag(path: Path, out: Path, *, model: str = "gpt-4", overwrite: bool = False,
                on_start: Callable[[int], None] | None = None,
                on_episode: Callable[[Episode], None] | None = None) -> RejudgeSummary:
    """Import a SPAG game file as ``adversarial_taboo_spag`` transcripts, judged by the official rules.

    Every record is read and checked before anything is written; the transcripts are then written
    by `rejudge` (a temporary file replacing ``out`` in one step), so bad input leaves ``out`` as it
    was. Episode ids are ``{file stem}-{index:06d}``, so importing a file again gives the same ids.

    Args:
        path (`Path`): the SPAG game file (``.json``: a list; otherwise JSON lines).
        out (`Path`): the transcripts ``.jsonl`` to write.
        model (`str`, defaults to ``"gpt-4"``): the model that played, logged as both roles' model.
        overwrite (`bool`, defaults to False): replace an ``out`` that already holds data.
        on_start, on_episode: progress hooks, as `rejudge` takes them.

    Returns:
        `RejudgeSummary`: the outcomes counted; ``capped`` counts games longer than 10 messages
        (only the first 10 are judged, as officially).

    Raises:
        `TranscriptError`: the file is missing, not JSON, holds no games or a record lacks a field or
            has a wrong type (the message names the file, line and record); ``out`` is a directory or
            holds data without ``overwrite``.

    Example:
        >>> summary = import_spag(Path("gpt4_game_top30k_results.json"), Path("runs/gpt4.jsonl"))  # doctest: +SKIP
        >>> summary.games, summary.reasons.most_common(1)  # doctest: +SKIP
        (30000, [('defender guessed the word', ...)])
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise TranscriptError(f"SPAG game file not found (or not a file): {path}")
    if out.exists() and out.resolve() == path.resolve():
        raise TranscriptError(f"--out {out} is the SPAG file being imported: write the transcripts to another file")
    protocol = load_protocol(SPAG_PROTOCOL)
    turns = protocol.spec.schedule.max_messages() // len(SPAG_ROLES)
    records = read_spag_games(path)
    if not records:
        raise TranscriptError(f"{path}: holds no games")
    for place, record in records:
        _check(place, record, turns)
    episodes = [spag_episode(record, f"{path.stem}-{i:06d}", protocol, model) for i, (_, record) in enumerate(records)]
    staging = out.resolve().with_name(f".{out.name}.unjudged")  # one name: a run killed before it is removed is replaced
    try:
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text("".join(e.to_json_line() + "\n" for e in episodes), encoding="utf-8")
        return rejudge(protocol, staging, out, overwrite=overwrite, on_start=on_start, on_episode=on_episode)
    except OSError as error:
        raise TranscriptError(f"cannot write {out}: {error}") from error
    finally:
        staging.unlink(missing_ok=True)


def is_spag_file(path: Path) -> bool:
    """Whether ``path`` is a SPAG game file rather than sparring transcripts: a ``.json`` file (sparring
    writes ``.jsonl``), or JSON lines whose first record has SPAG's ``target_word`` and no ``protocol``."""
    path = Path(path)
    if path.suffix == ".json":
        return True
    try:
        with path.open("rb") as f:
            first = next((line for line in f if line.strip()), b"")
        record = json.loads(first) if first else None
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "target_word" in record and "protocol" not in record


__all__ = ["SPAG_PROTOCOL", "import_spag", "is_spag_file", "read_spag_games", "spag_episode"]
