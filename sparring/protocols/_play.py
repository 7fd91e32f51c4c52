"""Play many episodes of a protocol concurrently, writing each transcript as it ends."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping


from ..errors import ProtocolError, SparringError
from ..runs import TRANSCRIPTS_FILE
from ..settings import PlayConfig
from ..transcripts import (Episode, ProtocolRef, TranscriptWriter, completed_ids, episode_id, latest_by_id,
                           read_transcripts)
from ._episode import ClientFactory, EpisodeTeam
from ._judges import Judge
from ._loader import Protocol
from ._seats import seat_of
from ._variables import VariableSampler

TRANSCRIPTS = TRANSCRIPTS_FILE  # `sparring.runs`


@dataclass
class PlaySummary:
    """What a run played: outcome counts, wins per role, errors, tokens and time."""

    protocol: str
    roles: list[str]
    games: int = 0
    errors: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    wins: Counter = field(default_factory=Counter)
    completion_tokens: int = 0
    seconds: float = 0.0
    path: Path | None = None
    other_versions: int = 0
    """Of the episodes a resumed run kept, those played under another version (hash) of the protocol."""

    def add(self, episode: Episode) -> None:
        self.games += 1
        if episode.status == "error":
            self.errors += 1
            return
        self.reasons[episode.outcome.reason] += 1
        if episode.outcome.winner is not None:
            self.wins[episode.outcome.winner] += 1
        self.completion_tokens += episode.usage.get("completion_tokens", 0)

    @property
    def decisive(self) -> int:
        return sum(self.wins.values())

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


def too_many_errors(failed: int, played: int, max_share: float) -> bool:
    """A run's exit rule: whether more than ``max_share`` of the ``played`` episodes failed (``--max-error-share``).

    Example:
        >>> too_many_errors(1, 10, 0.1), too_many_errors(2, 10, 0.1)
        (False, True)
    """
    return played > 0 and failed / played > max_share


def role_models(protocol: Protocol, default: str, overrides: dict[str, str]) -> dict[str, str]:
    """The model spec of each role (of each seat, in a protocol with seats): ``--role NAME=SPEC``,
    else the protocol's, else the run's default.

    A scripted role has no model: it gets no spec, and naming it in ``overrides`` is an error. In a
    protocol with seats, models sit in seats (a seat's role changes between episodes), so
    ``overrides`` name seats; a role's own ``model`` does not apply.
    """
    spec = protocol.spec
    names = spec.seats or spec.roles
    unknown = set(overrides) - set(names) - ({spec.judge.llm.role} if spec.judge.llm else set())
    if unknown:
        name = sorted(unknown)[0]
        if spec.seats and name in spec.roles:
            raise ProtocolError(f"--role {name}=...: in {protocol.name} models sit in seats, and the role each seat "
                                f"plays is drawn per episode; name a seat: {list(spec.seats)}")
        raise ProtocolError(f"--role {name}=...: {protocol.name} has no such {'seat' if spec.seats else 'role'}; "
                            f"its {'seats' if spec.seats else 'roles'} are {sorted(names)}")
    scripted = sorted(name for name in overrides if name in spec.roles and spec.roles[name].scripted)
    if scripted:
        raise ProtocolError(f"--role {scripted[0]}=...: {scripted[0]!r} is a scripted role of {protocol.name} (its "
                            "messages are its script): it has no model")
    if spec.seats:
        models = {seat: overrides.get(seat) or default for seat in spec.seats}
    else:
        models = {name: overrides.get(name) or role.model or default for name, role in spec.roles.items() if not role.scripted}
    llm = spec.judge.llm
    if llm is not None:
        models[llm.role] = overrides.get(llm.role) or llm.model or default
    return models


def spec_clients(models: dict[str, str]) -> ClientFactory:
    """A client factory over model specs: each role gets a fresh client with its own sampling settings.

    Every spec is parsed here, before anything is written: a malformed one, or one that carries
    an API key (which would end up in every transcript), fails the run at once.
    """
    from ..agents import ModelSpec, model_client

    for spec in models.values():
        ModelSpec.parse(spec)

    return lambda role, spec: model_client(models[role], **spec.sampling.settings())


def check_play(protocol: Protocol, out_dir: Path, overrides: dict[str, Any] | None = None, seed: int = 0,
               resume: bool = False) -> VariableSampler:
    """What `play` refuses before it writes anything: a folder holding transcripts without
    ``resume``, and ``--set`` overrides the protocol cannot take.

    Returns:
        `VariableSampler`: the episodes' variables, drawn from ``seed`` with the overrides.

    Raises:
        `ProtocolError`: naming the folder or the ``--set`` value and what to do instead.
    """
    path = out_dir / TRANSCRIPTS
    if path.exists() and path.stat().st_size and not resume:
        raise ProtocolError(f"{path} already holds transcripts: pass --resume to continue that run, or another --out")
    return VariableSampler(protocol, overrides, seed)


async def play(
    protocol: Protocol,
    games: int,
    out_dir: Path,
    models: dict[str, str],
    clients: ClientFactory | None = None,
    concurrency: int = PlayConfig.concurrency,
    seed: int = 0,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    allow_hooks: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
    exclude: Mapping[str, Collection] | None = None,
) -> PlaySummary:
    """Play ``games`` episodes into ``out_dir/transcripts.jsonl``; return the run's summary.

    Args:
        protocol (`Protocol`): what to play.
        games (`int`): episodes in the run (with ``resume``, those already written count).
        out_dir (`Path`): where the transcripts go.
        models (`dict[str, str]`): role -> model spec (seat -> spec in a protocol with seats; see
            `role_models`); each transcript records its roles' specs.
        clients: role client factory (default: `spec_clients(models)`); tests pass replay clients.
        concurrency (`int`, defaults to 32): episodes in flight at once.
        seed (`int`, defaults to 0): episode ``i`` of a seed always gets the same id and variables.
        resume (`bool`, defaults to False): skip episodes already written (errors are replayed).
        overrides (`dict`): fixed variable values (``--set``).
        on_episode: called with each episode as it is written (progress bars).
        exclude (`Mapping[str, Collection]`): variable -> values not to play (held-out evaluation,
            e.g. ``{"target": words_seen_in_training}``). An episode index whose variables hit one
            is skipped and later indexes are drawn until ``games`` episodes are found; ids stay
            those of their indexes, so ``resume`` works as without it.

    Raises:
        `ProtocolError`: the output already holds transcripts and ``resume`` is not set; ``exclude``
            names an unknown variable or leaves too few episodes.
    """
    sampler = check_play(protocol, out_dir, overrides, seed, resume)
    path = out_dir / TRANSCRIPTS
    done = completed_ids(path, missing_ok=True) if resume else set()
    judge = Judge(protocol, allow_hooks)
    clients = clients or spec_clients(models)
    summary = PlaySummary(protocol.name, list(protocol.spec.roles), path=path)
    indexes = _allowed_indexes(protocol, sampler, games, exclude) if exclude else range(games)
    todo = [i for i in indexes if episode_id(protocol.name, i, seed) not in done]
    summary.skipped = games - len(todo)
    if done:
        kept = latest_by_id(read_transcripts(path, strict=False)).values()
        summary.other_versions = sum(e.id in done and e.protocol.hash not in (None, protocol.hash) for e in kept)
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    # Writes (each ends in an fsync) run on one thread of their own, in order, so the games' event
    # loop never waits on the disk; a write once queued completes even if the run is cancelled.
    with TranscriptWriter(path) as writer, ThreadPoolExecutor(1, thread_name_prefix="sparring-writer") as disk:

        async def one(index: int) -> None:
            async with gate:
                episode = await play_episode(protocol, index, seed, sampler, judge, models, clients)
            await asyncio.get_running_loop().run_in_executor(disk, writer.write, episode)
            summary.add(episode)
            if on_episode is not None:
                on_episode(episode)

        await asyncio.gather(*(one(i) for i in todo))
    summary.seconds = time.perf_counter() - started
    return summary


def _allowed_indexes(protocol: Protocol, sampler: VariableSampler, games: int,
                     exclude: Mapping[str, Collection]) -> list[int]:
    """The first ``games`` episode indexes whose sampled variables use no excluded value."""
    unknown = set(exclude) - set(protocol.spec.variable_names)
    if unknown:
        raise ProtocolError(f"exclude: {protocol.name} has no variable {sorted(unknown)[0]!r}; "
                            f"its variables are {sorted(protocol.spec.variable_names)}")
    indexes: list[int] = []
    index, limit = 0, 100 * games + 1000
    while len(indexes) < games:
        if index == limit:
            raise ProtocolError(f"exclude: only {len(indexes)} of the first {limit} episodes of {protocol.name} avoid "
                                f"the excluded values of {sorted(exclude)}; exclude fewer values or play fewer games")
        variables = sampler.sample(index)
        if not any(_hits(variables[name], values) for name, values in exclude.items()):
            indexes.append(index)
        index += 1
    return indexes


def _hits(value: Any, values: Collection) -> bool:
    try:
        return value in values
    except TypeError:  # an unhashable value (a question record) against a set
        return any(value == other for other in values)


def error_line(failure: BaseException) -> str:
    """A failure as the one line a transcript records: our errors as they say it, others with their type
    (without a closing period, so a sentence can follow it)."""
    text = str(failure) if isinstance(failure, SparringError) else f"{type(failure).__name__}: {failure}"
    return " ".join(text.split()).rstrip(".") or type(failure).__name__


def is_protocol_error(protocol: Protocol, error: str) -> bool:
    """Whether an episode's error line is the protocol's: a template, rule, reward or schedule of it
    failed (such errors start with `Protocol.where`'s ``FILE: field``), not a backend or a model."""
    return error.startswith(protocol.where(""))


def what_to_fix(protocol: Protocol, errors: Collection[str]) -> str:
    """What a run stopped by failed episodes should fix before ``--resume`` replays them, from their error lines.

    Example:
        >>> from sparring.protocols import load_protocol
        >>> game = load_protocol("twenty_questions")
        >>> what_to_fix(game, [f"{game.where('judge.rules.0.when')}: 'x / 0': ZeroDivisionError"]).split(" (")[0]
        'fix the protocol'
        >>> what_to_fix(game, ["openai:m@http://h/v1: connection refused"])
        'fix the backend (the model or its server)'
    """
    own = sum(is_protocol_error(protocol, error) for error in errors)
    where = protocol.path or protocol.name
    if errors and own == len(errors):
        return f"fix the protocol ({where})"
    if not own:
        return "fix the backend (the model or its server)"
    return f"fix the protocol ({where}; {own} of the {len(errors)} errors are its) and the backend (the model or its server)"


def _speakers(protocol: Protocol) -> dict[str, Any]:
    """Every model user of an episode: the roles (not the scripted ones), and the LLM judge if there is one."""
    speakers: dict[str, Any] = {name: role for name, role in protocol.spec.roles.items() if not role.scripted}
    if protocol.spec.judge.llm is not None:
        speakers[protocol.spec.judge.llm.role] = protocol.spec.judge.llm
    return speakers


def seeded(speaker, ident: str, name: str):
    """``speaker`` (the spec of role or LLM judge ``name``) with its ``sampling.seed``, if it has one, made this episode's own:
    the same episode draws the same tokens every time, different episodes and roles draw differently."""
    if speaker.sampling.seed is None:
        return speaker
    digest = hashlib.sha256(f"{speaker.sampling.seed}:{ident}:{name}".encode()).digest()
    sampling = speaker.sampling.model_copy(update={"seed": int.from_bytes(digest[:4], "big")})
    return speaker.model_copy(update={"sampling": sampling})


async def play_episode(protocol, index, seed, sampler, judge, models, clients) -> Episode:
    """Play episode ``index``; a failure becomes an episode with ``status: error``, never an exception."""
    started = time.time()
    ident = episode_id(protocol.name, index, seed)
    team, variables = None, {}
    try:
        variables = sampler.sample(index)
        seated = {r: seat_of(protocol, variables, r) for r in _speakers(protocol)}  # the name each model sits under
        speakers = {r: clients(seated[r], seeded(s, ident, r)) for r, s in _speakers(protocol).items()}
        models = {r: models[seat] for r, seat in seated.items() if seat in models}  # recorded per role, as always
        if protocol.spec.environment is None:
            team = EpisodeTeam(protocol, variables, speakers, judge)
            outcome = await team.run()
            rewards = judge.rewards(outcome, variables, team.messages)
        else:  # its environment plays, decides and scores the game
            from ._textarena import ArenaTeam, arena_variables

            variables = arena_variables(ident)
            team = ArenaTeam(protocol, variables, speakers)
            outcome = await team.run()
            rewards = team.rewards
        status, error, outcome_record = "ok", None, outcome.record(protocol)
    except Exception as failure:  # noqa: BLE001 - one bad episode (a rule, a backend, a bug) never stops a run
        outcome_record, rewards, status, error = None, {}, "error", error_line(failure)
    messages = team.messages if team is not None else []
    usage = Counter()
    for message in messages:
        for call in (message, *(message.get("attempts") or ())):  # rejected replies cost tokens too
            usage.update(call.get("usage") or {})
    return Episode(
        id=ident,
        protocol=ProtocolRef(name=protocol.name, hash=protocol.hash),
        variables=variables, models=models, messages=messages, outcome=outcome_record, rewards=rewards,
        status=status, error=error, usage=dict(usage),
        timings={"started": started, "seconds": round(time.time() - started, 3)},
    )
