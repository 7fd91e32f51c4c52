"""Win rate of one model against another in a two-sided protocol, with both role assignments.

Half the games put ``model`` in the protocol's first role (e.g. the attacker) and ``opponent``
in the others; the other half swap them, so a protocol that favours one side does not favour
either model. The first half plays with seed ``2*seed``, the second with ``2*seed+1``: their
episode ids and variables differ, and no two evaluation seeds share either.

Example:
    ```python
    import asyncio
    from pathlib import Path
    from sparring.evaluation import eval_winrate

    result = asyncio.run(eval_winrate("adversarial_taboo", "hf:smollm2-135m+runs/sp/epoch_1/adapter",
                                      "hf:smollm2-135m", games=32, out_dir=Path("runs/eval")))
    print(result.win_rate, result.win_ci)
    ```
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

from ..errors import ProtocolError
from ..protocols import Protocol, load_protocol, play, role_models
from ..protocols._play import ClientFactory, spec_clients
from ..protocols._seats import SEATS
from ..runs import TRANSCRIPTS_FILE as TRANSCRIPTS, WINRATE_FILE, WinRateFile, write_record
from ..settings import WinRateConfig
from ..transcripts import Episode, latest_by_id, read_transcripts
from ._wilson import rate, wilson_interval


@dataclass
class Tally:
    """Outcomes of a set of games from the evaluated model's point of view."""

    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    errors: int = 0

    def add(self, episode: Episode, model_roles: Collection[str]) -> None:
        """Count one episode in which the model played ``model_roles``."""
        self.games += 1
        if episode.status != "ok" or episode.outcome is None:
            self.errors += 1
        elif episode.outcome.winner is None:
            self.ties += 1
        elif set(episode.outcome.winning_roles) & set(model_roles):
            self.wins += 1
        else:
            self.losses += 1

    @property
    def judged(self) -> int:
        """Games that ended without an error: the denominator of every rate."""
        return self.games - self.errors


@dataclass
class WinRate:
    """Win, loss and tie rates of ``model`` against ``opponent``, with Wilson 95% intervals.

    Rates are over the games that ended without an error (``errors`` are counted apart).

    Args:
        model (`str`), opponent (`str`), protocol (`str`): who played what.
        total (`Tally`): every game.
        by_role (`dict[str, Tally]`): the games of each role assignment, keyed by the role(s)
            the model played (``"attacker"``, ``"defender"``; in a protocol with seats, the roles
            its seats played in each game, e.g. ``"spy"``, ``"citizen_a+spy"``).
        path (`Path | None`): the transcripts.
    """

    model: str
    opponent: str
    protocol: str
    total: Tally = field(default_factory=Tally)
    by_role: dict[str, Tally] = field(default_factory=dict)
    path: Path | None = None

    @property
    def games(self) -> int:
        return self.total.games

    @property
    def wins(self) -> int:
        return self.total.wins

    @property
    def losses(self) -> int:
        return self.total.losses

    @property
    def ties(self) -> int:
        return self.total.ties

    @property
    def errors(self) -> int:
        return self.total.errors

    def _rate(self, count: int) -> float:
        return rate(count, self.total.judged)

    def _ci(self, count: int) -> tuple[float, float]:
        return wilson_interval(count, self.total.judged)

    @property
    def win_rate(self) -> float:
        return self._rate(self.total.wins)

    @property
    def win_ci(self) -> tuple[float, float]:
        return self._ci(self.total.wins)

    @property
    def loss_rate(self) -> float:
        return self._rate(self.total.losses)

    @property
    def loss_ci(self) -> tuple[float, float]:
        return self._ci(self.total.losses)

    @property
    def tie_rate(self) -> float:
        return self._rate(self.total.ties)

    @property
    def tie_ci(self) -> tuple[float, float]:
        return self._ci(self.total.ties)

    def to_dict(self) -> dict[str, Any]:
        """The record written to ``winrate.json`` (see the self-play run layout)."""
        t = self.total
        return {
            "model": self.model, "opponent": self.opponent, "protocol": self.protocol,
            "games": t.games, "wins": t.wins, "losses": t.losses, "ties": t.ties, "errors": t.errors,
            "win_rate": self.win_rate, "win_ci": list(self.win_ci),
            "loss_rate": self.loss_rate, "loss_ci": list(self.loss_ci),
            "tie_rate": self.tie_rate, "tie_ci": list(self.tie_ci),
            "by_role": {role: {"games": r.games, "wins": r.wins, "losses": r.losses, "ties": r.ties,
                               "errors": r.errors} for role, r in self.by_role.items()},
        }


async def eval_winrate(
    protocol: Protocol | str | Path,
    model: str,
    opponent: str,
    games: int,
    out_dir: Path,
    *,
    seed: int = 0,
    exclude: Mapping[str, Collection] | None = None,
    concurrency: int = WinRateConfig.concurrency,
    resume: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
    clients: Callable[[dict[str, str]], ClientFactory] | None = None,
) -> WinRate:
    """Play ``model`` against ``opponent`` with both role assignments; count wins, losses and ties.

    ``ceil(games/2)`` games put ``model`` in the protocol's first role and ``opponent`` in the
    others (an LLM judge, if any, uses its own model or else ``opponent``); the rest swap them.
    In a protocol with seats, the halves split the seats the same way (``model`` in the first seat,
    then in the others) and each game's seating decides the roles it played.
    Both halves play at once into ``out_dir/transcripts.jsonl``; the result is also written to
    ``out_dir/winrate.json``.

    Args:
        protocol (`Protocol | str | Path`): a loaded protocol, a built-in name or a YAML file;
            it needs at least two roles.
        model (`str`): the model spec evaluated.
        opponent (`str`): the model spec it plays against (e.g. the starting model).
        games (`int`): games in all, over both assignments.
        out_dir (`Path`): where ``transcripts.jsonl`` and ``winrate.json`` go.
        seed (`int`, defaults to 0): the run's seed (halves play with ``2*seed`` and ``2*seed+1``).
        exclude (`Mapping[str, Collection]`): variable values not to play (held-out evaluation,
            e.g. ``{"target": words_seen_in_training}``); see `sparring.protocols.play`.
        concurrency (`int`, defaults to 32): games in flight at once, over both halves.
        resume (`bool`, defaults to False): continue an evaluation already in ``out_dir``.
        on_episode: called with each episode as it is written (progress bars).
        clients: given a half's role -> spec mapping, a role client factory (tests pass replay
            clients); default: a client per spec.

    Returns:
        `WinRate`: the counts, rates and intervals; ``.to_dict()`` is what ``winrate.json`` holds.

    Raises:
        `ProtocolError`: the protocol has fewer than two roles, ``games`` is below 1, ``out_dir``
            already holds transcripts and ``resume`` is not set, or ``exclude`` leaves too few games.
    """
    loaded = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    # a scripted role (a referee, a board) plays no side; with seats, models sit in seats
    roles = list(loaded.spec.seats) or loaded.spec.model_roles
    if len(roles) < 2:
        raise ProtocolError(f"{loaded.name} has {len(roles)} role(s) played by a model ({roles}): a win rate needs "
                            "a protocol with two sides")
    if games < 1:
        raise ProtocolError(f"games={games}: evaluate at least 1 game (2 or more to cover both role assignments)")
    out_dir = Path(out_dir)
    path = out_dir / TRANSCRIPTS
    if path.exists() and path.stat().st_size and not resume:
        raise ProtocolError(f"{path} already holds transcripts: pass resume=True (--resume) to continue that "
                            "evaluation, or use another output directory")
    if resume and path.exists():
        _refuse_other_models(path, {model, opponent})
    first, rest = roles[0], roles[1:]
    halves = [  # (games, seed, role -> spec, the roles the model plays)
        ((games + 1) // 2, 2 * seed, {first: model, **{r: opponent for r in rest}}, [first]),
        (games // 2, 2 * seed + 1, {first: opponent, **{r: model for r in rest}}, rest),
    ]
    halves = [half for half in halves if half[0]]
    share = max(1, concurrency // len(halves))
    runs = []
    for count, half_seed, assignment, _ in halves:
        models = role_models(loaded, opponent, assignment)
        factory = (clients or spec_clients)(models)
        # Both halves append to one file: the check above stands for both, so each resumes.
        runs.append(play(loaded, count, out_dir, models, clients=factory, concurrency=share, seed=half_seed,
                         resume=True, on_episode=on_episode, exclude=exclude))
    await asyncio.gather(*runs)
    result = WinRate(model, opponent, loaded.name, path=path)
    latest = latest_by_id(read_transcripts(path))
    for count, half_seed, _, model_names in halves:
        for episode in _half(latest.values(), loaded.name, half_seed, count, exclude):
            model_roles = _played(loaded, episode, model_names)
            result.by_role.setdefault("+".join(model_roles), Tally()).add(episode, model_roles)
            result.total.add(episode, model_roles)
    write_record(out_dir / WINRATE_FILE, WinRateFile, result.to_dict())
    return result


def _refuse_other_models(path: Path, specs: set[str]) -> None:
    """A `ProtocolError` if an episode in ``path`` was played by a model other than ``specs``: resuming
    would count another model's games as these models'."""
    for episode in latest_by_id(read_transcripts(path, strict=False)).values():
        others = sorted(set(episode.models.values()) - specs)
        if others:
            raise ProtocolError(f"{path}: episode {episode.id} was played by {', '.join(others)}, not by "
                                f"{' or '.join(sorted(specs))}: resume an evaluation with its own --model and "
                                "--opponent, or use another output directory")


def _played(protocol: Protocol, episode: Episode, names: list[str]) -> list[str]:
    """The roles the model played in ``episode`` from ``names``: roles, or seats (their roles that episode)."""
    seating = episode.variables.get(SEATS) if protocol.spec.seats else None
    return sorted(seating.get(n, n) for n in names) if isinstance(seating, dict) else names


def _half(episodes, name: str, seed: int, count: int, exclude: Mapping[str, Collection] | None) -> list[Episode]:
    """The episodes of one half: ids ``{name}-{seed}-*`` that avoid ``exclude``, the first ``count`` by index."""
    prefix = f"{name}-{seed}-"
    mine = [e for e in episodes if e.id.startswith(prefix) and e.id[len(prefix):].isdigit()
            and not any(_excluded(e.variables.get(var), values) for var, values in (exclude or {}).items())]
    return sorted(mine, key=lambda e: int(e.id[len(prefix):]))[:count]


def _excluded(value: Any, values: Collection) -> bool:
    try:
        return value in values
    except TypeError:  # an unhashable value (a question record) against a set
        return any(value == other for other in values)
