"""SPAG's reward assignment (Cheng et al. 2024, ``tools/assign_rewards.py`` of their code), as a pure function.

Only decisive games are used: episodes that failed, ties (winner null) and games with a dropped
reason (for Adversarial Taboo, "attacker breaks the rules") are left out. In a used game the
winner's k-th turn (k = 1, 2, ...) gets the coefficient ``(1/decay)**k`` (later turns weigh
more), normalised so that the winner's turns of one game sum to 1. Every sample of a role gets
the weight ``n_decisive / (2 * n_role_wins)``, so that in expectation each of the two players
carries half of the learning whatever its win rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import ArgumentError
from ..transcripts import Episode

DECAY = 0.8
"""SPAG's ``decay_weight``: each later winner turn's reward grows by 1/0.8."""


@dataclass(frozen=True)
class TurnReward:
    """One trained turn: the message ``index`` of episode ``episode_id``, spoken by ``role``."""

    episode_id: str
    index: int
    role: str
    reward: float
    weight: float


@dataclass
class RewardAssignment:
    """The result of `spag_rewards`.

    Args:
        samples (`list[TurnReward]`): the winners' turns, in episode and message order.
        games_used (`int`): decisive games used (``n_decisive``).
        wins (`Counter`): role -> games it won among those used.
        weights (`dict[str, float]`): role -> the weight of its samples.
        dropped (`Counter`): reason -> episodes left out.
    """

    samples: list[TurnReward] = field(default_factory=list)
    games_used: int = 0
    wins: Counter = field(default_factory=Counter)
    weights: dict[str, float] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)


def drop_reason(episode: Episode, drop_reasons: Iterable[str] = ()) -> str | None:
    """Why a decisive-games-only trainer leaves ``episode`` out, or None when it is used.

    Returns ``"error"`` (status error), ``"not judged"`` (no outcome), the outcome's reason when
    it is listed in ``drop_reasons``, ``"tie"`` (winner null), ``"winner did not speak"``.
    """
    if episode.status == "error":
        return "error"
    if episode.outcome is None:
        return "not judged"
    if episode.outcome.reason in set(drop_reasons):
        return episode.outcome.reason
    if episode.outcome.winner is None:
        return "tie"
    if not any(m.role in episode.outcome.winning_roles for m in episode.messages):
        return "winner did not speak"
    return None


def turn_rewards(turns: int, decay: float = DECAY) -> list[float]:
    """Rewards of a winner's ``turns`` turns: ``(1/decay)**k`` for k = 1..turns, normalised to sum to 1.

    Example:
        >>> [round(r, 4) for r in turn_rewards(2)]
        [0.4444, 0.5556]
    """
    if not 0 < decay <= 1:
        raise ArgumentError(f"decay must be in (0, 1], got {decay}")
    coefficients = [(1 / decay) ** k for k in range(1, turns + 1)]
    total = sum(coefficients)
    return [c / total for c in coefficients]


def spag_rewards(
    episodes: Iterable[Episode], drop_reasons: Iterable[str] = (), decay: float = DECAY
) -> RewardAssignment:
    """Assign SPAG's rewards and role weights to the winners' turns of judged episodes.

    Args:
        episodes (`Iterable[Episode]`): judged episodes (one record per id: see `latest_by_id`).
        drop_reasons (`Iterable[str]`): outcome reasons whose games are left out, e.g.
            ``["attacker breaks the rules"]``.
        decay (`float`, defaults to 0.8): each later winner turn's reward grows by ``1/decay``.

    Returns:
        `RewardAssignment`: samples with ``reward`` (summing to 1 per game) and ``weight``
        (``n_decisive / (2 * n_role_wins)``), counts of wins and of dropped episodes by reason.

    Example:
        >>> from sparring.transcripts import Outcome, ProtocolRef, TranscriptMessage
        >>> ep = Episode(id="g", protocol=ProtocolRef(name="t"), variables={}, outcome=Outcome(winner="a", reason="r"),
        ...              messages=[TranscriptMessage(role="a", content="x"), TranscriptMessage(role="b", content="y")])
        >>> spag_rewards([ep]).samples
        [TurnReward(episode_id='g', index=0, role='a', reward=1.0, weight=0.5)]
    """
    drop_reasons = set(drop_reasons)
    result = RewardAssignment()
    games: list[tuple[Episode, list[str]]] = []
    for episode in episodes:
        reason = drop_reason(episode, drop_reasons)
        if reason is not None:
            result.dropped[reason] += 1
            continue
        games.append((episode, episode.outcome.winning_roles))  # a winning team: each of its roles won
        result.wins.update(episode.outcome.winning_roles)
    result.games_used = len(games)
    result.weights = {role: result.games_used / (2 * wins) for role, wins in result.wins.items()}
    for episode, winners in games:
        for winner in winners:
            indices = [i for i, m in enumerate(episode.messages) if m.role == winner]
            for index, reward in zip(indices, turn_rewards(len(indices), decay)):
                result.samples.append(TurnReward(episode.id, index, winner, reward, result.weights[winner]))
    return result


__all__ = ["DECAY", "RewardAssignment", "TurnReward", "drop_reason", "spag_rewards", "turn_rewards"]
