"""Transcripts to training datasets: imitation, SPAG and SAIE rows (DESIGN §3.4).

Every row is one trained assistant turn: ``messages`` (the chat its speaker saw, rebuilt by
`episode_views`, the turn last), ``role``, ``reward``, ``weight``, ``type`` (``game`` or
``sft``) and ``episode_id`` (see `_rows`). Only model replies are rows: a scripted role's
messages are context, never rows, and a reply that its role's ``valid`` expression rejected is a
row only under the protocol's ``training.include_invalid`` (with the reward and weight of the
turn it was an attempt of). No message after the one that decided its episode (or after the
last its protocol's schedule allows) is ever a row, as SPAG's data builder cuts each game at its
deciding message (see `_Protocols.until_decided`). `build_dataset` writes the rows atomically: the
directory is built beside the output and renamed into place, so a failure never leaves half a
dataset.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SparringError, TrainingError, TranscriptError, did_you_mean
from ..protocols import Judge, Protocol, load_protocol, named_protocol
from ..protocols._answers import answers_match, extract_answer
from ..protocols._rejudge import within_schedule
from ..protocols._views import TurnView, episode_views, fits
from ..protocols._visibility import system_prompt, turn_prompt
from ..transcripts import Episode, latest_by_id, read_transcripts
from ._prompt_variants import varied_chat
from ._rewards import drop_reason, spag_rewards
from ._rows import check_output, load_rows, make_row, write_rows
from ._sft_data import read_sft_data

KINDS = ("imitation", "spag", "saie")
SAIE_ROLE = "learner"
WRONG_TURN = "learner turn with a wrong answer"


@dataclass
class DataSummary:
    """What `build_dataset` read, used and dropped.

    Args:
        kind (`str`): ``imitation``, ``spag`` or ``saie``.
        episodes (`int`): episodes read (the latest record per id).
        games_used (`int`): episodes that gave rows (spag: the decisive games, ``n_decisive``).
        rows (`int`): rows written; ``game_rows`` from episodes (gold rationales included),
            ``sft_rows`` from ``--sft-data``; ``gold_rows``: SAIE's gold-rationale fallbacks.
        dropped (`dict[str, int]`): reason -> count: episodes (``error``, ``tie``, an outcome
            reason such as ``attacker breaks the rules`` or ``incorrect``), ``malformed line``
            (transcript lines skipped) and, for saie, ``no gold rationale`` (questions) and
            ``learner turn with a wrong answer`` (turns of correct episodes left out).
        role_rows (`dict[str, int]`): game rows per role.
        weights (`dict[str, float]`): spag: each role's sample weight.
        warnings (`list[str]`): e.g. a protocol whose hash differs from the transcripts'.
        output (`str | None`): the dataset directory.
        sources (`list[str]`): the transcript files read (``train saie --regenerate`` replays them).
        protocol (`str | None`): the ``protocol`` argument (a name or a path), when one was given.
    """

    kind: str
    episodes: int = 0
    games_used: int = 0
    rows: int = 0
    game_rows: int = 0
    sft_rows: int = 0
    gold_rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    role_rows: dict[str, int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    output: str | None = None
    sources: list[str] = field(default_factory=list)
    protocol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (what ``summary.json`` holds)."""
        return asdict(self)


class _Protocols:
    """The protocol of each episode: the given one, else the built-in of its ``protocol.name``, else none."""

    def __init__(self, protocol: str | Path | Protocol | None, warnings: list[str]):
        self.explicit = load_protocol(protocol) if isinstance(protocol, (str, Path)) else protocol
        self.cache: dict[str, Protocol | None] = {}
        self.judges: dict[str, Judge] = {}
        self.warnings = warnings
        self._warned: set[tuple] = set()

    def _warn(self, key: tuple, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(text)  # the caller shows them: summary.warnings

    def views(self, episode: Episode, dropped: Counter) -> list[TurnView] | None:
        """The episode's turn views (rejected replies' too under the protocol's ``training.include_invalid``),
        or None (counted in ``dropped``, the first error kept as a warning) when its prompts cannot be
        rebuilt: one bad episode never stops a build."""
        try:
            protocol = self.get(episode)
            return episode_views(protocol, episode, protocol is not None and protocol.spec.training.include_invalid)
        except SparringError as error:
            dropped["prompts failed to render"] += 1
            self._warn(("views", type(error).__name__), f"episode {episode.id}: its prompts cannot be rebuilt, so it "
                                                        f"is left out (and any other like it): {error}")
            return None

    def until_decided(self, episode: Episode) -> Episode:
        """The episode without its messages after the one that decided it (or after the last its protocol's
        schedule allows), which are never rows: SPAG's data builder cuts each game at its deciding message.

        The deciding message is found by judging the episode again (`Judge.judge`); it stays whole when its
        protocol is unknown, when the current rules reach another outcome than the recorded one (which
        message decided that one is not known), or when they cannot judge it (a warning).
        """
        protocol = self.get(episode)
        if protocol is None or protocol.spec.environment is not None or episode.status != "ok" or episode.outcome is None:
            return episode  # an environment decided at its last message
        cap = protocol.spec.schedule.max_messages()
        messages, _ = within_schedule(protocol, [m.model_dump() for m in episode.messages], cap)
        try:
            if protocol.name not in self.judges:
                self.judges[protocol.name] = Judge(protocol)
            outcome, index = self.judges[protocol.name].judge(episode.variables, messages)
        except SparringError as error:
            self._warn(("judge", protocol.name), f"episodes of {protocol.name!r} cannot be judged again to find "
                                                 f"their deciding message ({error}): all their messages are used")
            return episode
        if (outcome.winner, outcome.reason) != (episode.outcome.winner, episode.outcome.reason):
            return episode
        keep = len(messages) if index is None else index + 1
        if keep == len(episode.messages):
            return episode
        return episode.model_copy(update={"messages": episode.messages[:keep]})

    def get(self, episode: Episode) -> Protocol | None:
        name = episode.protocol.name
        if self.explicit is not None:
            protocol = self.explicit
        else:
            if name not in self.cache:
                self.cache[name] = named_protocol(name)
            protocol = self.cache[name]
        if protocol is None:
            self._warn(("plain", name), f"protocol {name!r} is not built in (pass --protocol FILE): its episodes get "
                                        "a plain view (no system prompt, every earlier message visible)")
            return None
        if not fits(protocol, episode):
            self._warn(("fit", name, protocol.name),
                       f"episodes of {name!r} have speakers that {protocol.name!r} lacks: those get a plain view")
            return None
        if episode.protocol.hash and episode.protocol.hash != protocol.hash:
            self._warn(("hash", name, episode.protocol.hash),
                       f"transcripts of {name!r} were played under protocol hash {episode.protocol.hash}, but "
                       f"{protocol.name!r} now hashes to {protocol.hash}: prompts are rebuilt from the current file")
        return protocol


def read_episodes(transcripts: list[Path], summary: DataSummary) -> list[Episode]:
    """The latest record per id over all files; malformed lines are counted in ``summary.dropped``.

    Raises:
        `TranscriptError`: a file is missing, empty, or has no readable episode (names file and line).
    """
    episodes: list[Episode] = []
    skipped = 0
    for path in transcripts:
        reader = read_transcripts(path)
        found = list(reader)
        if not found:
            if reader.skipped:
                from ..importers import is_spag_file

                first = reader.skipped[0]
                hint = (f"it reads as a SPAG game file: import it first (`sparring import spag {path} -o "
                        f"{path.with_suffix('')}-transcripts.jsonl`) and build from the transcripts"
                        if is_spag_file(path) else "is it a sparring transcripts.jsonl?")
                raise TranscriptError(f"{path}:{first.line}: no readable episode in the file ({first.reason}); {hint}")
            raise TranscriptError(f"{path}: the transcript file is empty: play episodes into it first")
        episodes += found
        skipped += len(reader.skipped)
    if skipped:
        summary.dropped["malformed line"] = skipped
    latest = list(latest_by_id(episodes).values())
    summary.episodes = len(latest)
    return latest


def _refuse_unknown(option: str, given: set[str], known: set[str]) -> None:
    """A `TrainingError` for a value of ``option`` that none of the episodes has (a typo, most likely)."""
    for value in sorted(given - known):
        raise TrainingError(f"{option} {value!r}: no episode has it" + did_you_mean(value, sorted(known))
                            + f"; the episodes have {sorted(known)}")


def _imitation(episodes, protocols, drops, roles, vary, rng, summary) -> list[dict]:
    rows, dropped = [], Counter()
    for episode in episodes:
        reason = drop_reason(episode, drops) if roles is None else _roles_drop(episode, drops)
        if reason is not None:
            dropped[reason] += 1
            continue
        chosen = set(roles) if roles is not None else set(episode.outcome.winning_roles)
        views = protocols.views(episode, dropped)
        if views is None:
            continue
        summary.games_used += 1
        protocol = protocols.get(episode)
        for view in views:
            if view.role in chosen:  # the reward column: the role's reward in the game (SFT trains on every row alike)
                chat = varied_chat(view, protocol, episode, rng) if _varies(vary, protocol) else view.chat()
                rows.append(make_row(chat, view.role, episode.rewards.get(view.role, 1.0), 1.0, episode.id))
    _merge(summary.dropped, dropped)
    return rows


def _varies(vary: bool | None, protocol: Protocol | None) -> bool:
    """Whether a row's prompt is varied: as asked, else (None) where the protocol declares ``training.variation``."""
    return vary if vary is not None else protocol is not None and protocol.spec.training.variation is not None


def _roles_drop(episode: Episode, drops: set[str]) -> str | None:
    """With ``--roles`` every turn counts, whatever the outcome: only failures and dropped reasons are left out."""
    if episode.status == "error":
        return "error"
    return episode.outcome.reason if episode.outcome is not None and episode.outcome.reason in drops else None


def _spag(episodes, protocols, drops, vary, rng, summary) -> list[dict]:
    assignment = spag_rewards(episodes, drops)
    by_id = {e.id: e for e in episodes}
    views: dict[str, dict[int, list[TurnView]] | None] = {}  # episode -> message index -> its views
    rows, failed = [], Counter()
    for sample in assignment.samples:
        episode = by_id[sample.episode_id]
        protocol = protocols.get(episode)
        if episode.id not in views:
            found = protocols.views(episode, failed)
            views[episode.id] = _by_index(found) if found is not None else None
        if views[episode.id] is None:
            continue
        for view in views[episode.id].get(sample.index, []):  # none for a scripted or a rejected message
            chat = varied_chat(view, protocol, episode, rng) if _varies(vary, protocol) else view.chat()
            rows.append(make_row(chat, sample.role, sample.reward, sample.weight, episode.id))
    summary.games_used = assignment.games_used - sum(failed.values())
    summary.weights = dict(assignment.weights)
    _merge(summary.dropped, assignment.dropped + failed)
    return rows


def _by_index(views: list[TurnView]) -> dict[int, list[TurnView]]:
    """The views of each message, by its index: its rejected replies' (if included), then its own."""
    found: dict[int, list[TurnView]] = {}
    for view in views:
        found.setdefault(view.index, []).append(view)
    return found


def _question_key(episode: Episode) -> str:
    item = episode.variables.get("item")
    if isinstance(item, dict) and item.get("id") is not None:
        return str(item["id"])
    return json.dumps(item if item is not None else episode.variables, sort_keys=True, default=str)


def gold_solution(variables: dict[str, Any]) -> str | None:
    """The gold worked solution of a question episode (``item.rationale`` + the answer line), if it has one."""
    item = variables.get("item")
    if not isinstance(item, dict) or not item.get("rationale") or item.get("answer") is None:
        return None
    answer = str(item["answer"]).strip()
    final = f"({answer})" if item.get("choices") and len(answer) == 1 else answer
    return f"{str(item['rationale']).strip()}\nThe answer is {final}."


def _first_turn(protocol: Protocol | None, episode: Episode, role: str, gold: str) -> TurnView | None:
    """The role's first turn of the episode, with the gold text as its reply."""
    view = next((v for v in episode_views(protocol, episode) if v.role == role), None)
    if view is not None:
        return TurnView(view.index, role, view.system, view.context, view.prompt, view.history, gold)
    if protocol is None or role not in protocol.spec.roles:
        return None
    prompt = turn_prompt(protocol, episode.variables, role, 0, [])  # as play hands its first turn
    return TurnView(0, role, system_prompt(protocol, episode.variables, role), [], prompt, [], gold)


def _answers_right(text: str, variables: dict[str, Any]) -> bool:
    """Whether a learner turn's own answer matches the gold one (True when the question has no gold answer)."""
    item = variables.get("item")
    if not isinstance(item, dict) or item.get("answer") is None:
        return True
    return answers_match(extract_answer(text), str(item["answer"]))


def _saie(episodes, protocols, drops, roles, summary) -> list[dict]:
    learners = set(roles or [SAIE_ROLE])
    rows, dropped = [], Counter()
    questions: dict[str, list[Episode]] = {}
    solved: set[str] = set()
    for episode in episodes:
        key = _question_key(episode)
        questions.setdefault(key, []).append(episode)
        reason = drop_reason(episode, drops)
        if reason is None and episode.outcome.winner not in learners:
            reason = episode.outcome.reason
        if reason in ("tie", "winner did not speak"):
            reason = episode.outcome.reason  # e.g. "incorrect": the answer did not match
        if reason is not None:
            dropped[reason] += 1
            continue
        views = protocols.views(episode, dropped)
        if views is None:
            continue
        solved.add(key)
        summary.games_used += 1
        for view in views:
            if view.role not in learners:
                continue
            if not _answers_right(view.target, episode.variables):
                dropped[WRONG_TURN] += 1
                continue
            rows.append(make_row(view.chat(), view.role, 1.0, 1.0, episode.id))
    for key, group in questions.items():
        if key in solved:
            continue
        episode = next((e for e in group if e.status == "ok"), group[0])
        gold = gold_solution(episode.variables)
        try:
            view = _first_turn(protocols.get(episode), episode, sorted(learners)[0], gold) if gold else None
        except SparringError:
            dropped["prompts failed to render"] += 1
            continue
        if view is None:
            dropped["no gold rationale"] += 1
            continue
        rows.append(make_row(view.chat(), view.role, 1.0, 1.0, episode.id))
        summary.gold_rows += 1
    _merge(summary.dropped, dropped)
    return rows


def _merge(total: dict[str, int], counts: Counter) -> None:
    for reason, n in counts.items():
        total[reason] = total.get(reason, 0) + n


def build_dataset(
    kind: str,
    transcripts: list[Path],
    out_dir: Path,
    *,
    roles: list[str] | None = None,
    sft_data: Path | None = None,
    protocol: str | Path | Protocol | None = None,
    seed: int = 0,
    drop_reasons: list[str] | None = None,
    vary_prompts: bool | None = None,
    overwrite: bool = False,
) -> DataSummary:
    """Build a training dataset from judged transcripts and write it to ``out_dir``.

    Args:
        kind (`str`): ``imitation`` (the winners' turns, or every turn of ``roles``; weight 1, and
            as ``reward`` the role's reward in the episode, which SFT does not use), ``spag`` (SPAG's rewards and role weights over decisive games) or
            ``saie`` (the learner's turns of correct episodes whose own answer is right, so never a wrong
            first answer that the discussion then corrected; the gold rationale for questions
            never solved).
        transcripts (`list[Path]`): transcript files; a replayed id counts once (its latest record).
        out_dir (`Path`): the dataset directory (must be empty or absent unless ``overwrite``).
        roles (`list[str] | None`): imitation: train on these roles' turns in every non-failed
            episode; saie: the learner role(s) (default ``learner``).
        sft_data (`Path | None`): a JSONL of general SFT examples mixed in (type ``sft``, weight 1).
        protocol (`str | Path | Protocol | None`): the protocol the episodes were played under
            (default: the built-in named by each record; otherwise a plain view).
        seed (`int`, defaults to 0): seeds the prompt variation.
        drop_reasons (`list[str] | None`): outcome reasons never trained on (default: the
            protocol's ``training.drop_reasons``).
        vary_prompts (`bool | None`): vary the prompts (SPAG's query under the protocol's
            ``training.variation``, else system wording and dialogue format); default: on for spag,
            for imitation only where the protocol declares ``training.variation``.
        overwrite (`bool`, defaults to False): replace a non-empty ``out_dir``.

    Returns:
        `DataSummary`: also written to ``out_dir/summary.json``. Zero rows is not an error.

    Raises:
        `TranscriptError`: a transcript file is missing, empty or unreadable.
        `TrainingError`: an unknown kind, a bad ``--sft-data`` row, or a non-empty ``out_dir``.
        `ProtocolError`: the protocol cannot be loaded or its ``training`` section is invalid.

    Example:
        >>> summary = build_dataset("spag", [Path("runs/play/transcripts.jsonl")], Path("runs/data"))  # doctest: +SKIP
        >>> summary.rows, summary.dropped  # doctest: +SKIP
        (14, {'tie': 3, 'attacker breaks the rules': 1})
    """
    if kind not in KINDS:
        raise TrainingError(f"unknown dataset kind {kind!r}: use one of {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite)
    summary = DataSummary(kind=kind, sources=[str(Path(p).resolve()) for p in transcripts])
    if isinstance(protocol, (str, Path)):
        summary.protocol = str(protocol)
    sft = read_sft_data(Path(sft_data)) if sft_data is not None else []
    episodes = read_episodes([Path(p) for p in transcripts], summary)
    protocols = _Protocols(protocol, summary.warnings)
    found = [protocols.get(e) for e in episodes]
    defaults = {reason for p in found if p is not None for reason in p.spec.training.drop_reasons}
    if drop_reasons is None:
        drops = defaults
    else:
        drops = set(drop_reasons)
        _refuse_unknown("--drop-reason", drops, defaults | {e.outcome.reason for e in episodes if e.outcome})
    if roles:
        _refuse_unknown("--roles", set(roles), {m.role for e in episodes for m in e.messages} | {
            r for p in found if p is not None for r in p.spec.roles})
    episodes = [protocols.until_decided(e) for e in episodes]
    rng = random.Random(seed)
    if kind == "imitation":
        rows = _imitation(episodes, protocols, drops, roles, vary_prompts, rng, summary)
    elif kind == "spag":
        rows = _spag(episodes, protocols, drops, True if vary_prompts is None else vary_prompts, rng, summary)
    else:
        rows = _saie(episodes, protocols, drops, roles, summary)
    summary.game_rows = len(rows)
    summary.role_rows = dict(Counter(r["role"] for r in rows))
    rows += [make_row(chat, "sft", 0.0, 1.0, "", "sft") for chat in sft]
    summary.sft_rows, summary.rows = len(sft), len(rows)
    summary.output = str(out_dir)
    write_rows(rows, summary.to_dict(), out_dir)
    return summary


def build_gold_dataset(protocol: Protocol | str | Path, questions: int, out_dir: Path, *, seed: int = 0,
                       overrides: dict[str, Any] | None = None, role: str = SAIE_ROLE,
                       overwrite: bool = False) -> DataSummary:
    """Plain SFT rows on gold rationales: for episodes ``0..questions-1`` (the questions a run with
    ``seed`` plays), the ``role``'s first-turn chat with the question's gold solution as the reply.

    This is SAIE's "plain SFT on gold rationales" baseline and its warm-up stage: no discussion is
    played. Questions without a rationale give no row (counted as ``no gold rationale``).

    Raises:
        `TrainingError`: the protocol has no such role, or a non-empty ``out_dir``.
    """
    from ..protocols._variables import VariableSampler
    from ..transcripts import episode_id

    loaded = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    if role not in loaded.spec.roles:
        raise TrainingError(f"{loaded.name} has no role {role!r} to train on gold rationales")
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite)
    summary = DataSummary(kind="gold", protocol=loaded.name, output=str(out_dir))
    sampler = VariableSampler(loaded, overrides, seed)
    rows, dropped = [], Counter()
    for index in range(questions):
        variables = sampler.sample(index)
        gold = gold_solution(variables)
        if gold is None:
            dropped["no gold rationale"] += 1
            continue
        view = TurnView(0, role, system_prompt(loaded, variables, role), [],
                        turn_prompt(loaded, variables, role, 0, []), [], gold)
        rows.append(make_row(view.chat(), role, 1.0, 1.0, episode_id(loaded.name, index, seed)))
    summary.episodes, summary.games_used = questions, len(rows)
    summary.rows = summary.game_rows = summary.gold_rows = len(rows)
    summary.role_rows = {role: len(rows)} if rows else {}
    _merge(summary.dropped, dropped)
    write_rows(rows, summary.to_dict(), out_dir)
    return summary


__all__ = ["KINDS", "DataSummary", "build_dataset", "build_gold_dataset", "gold_solution", "load_rows", "read_episodes"]
