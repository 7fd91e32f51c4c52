"""Every transcript of a run as one filterable list, and the win rate split by role assignment.

The list filters by epoch, by set (self-play or evaluation games), by outcome and by winner
with radio buttons and CSS alone (``:has(:checked)``), so the page still runs no script. Filter
values are referred to by index in class names, never by their (untrusted) text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..evaluation._wilson import wilson_interval
from ..transcripts import Episode
from ._data import Run

MAX_WITH_TEXT = 1000
"""Episodes whose messages the list holds; later ones are listed without their text (size of the page)."""
_PROMPT_ROLES = {"system", "user"}


@dataclass
class Filter:
    """One filter group: its name and its values (the class of value ``i`` is ``{key}-{i}``)."""

    key: str
    label: str
    values: list[str] = field(default_factory=list)

    def index(self, value: str) -> str:
        if value not in self.values:
            self.values.append(value)
        return f"{self.key}-{self.values.index(value)}"


@dataclass
class Listed:
    """One episode as a row of the list."""

    classes: str
    epoch: str
    set: str
    id: str
    outcome: str
    winner: str
    turns: int
    tokens: int
    models: str
    messages: list[tuple[str, str]] | None  # (role, text); None past MAX_WITH_TEXT


@dataclass
class Listing:
    filters: list[Filter]
    rows: list[Listed]
    without_text: int = 0


def transcript_list(run: Run, max_with_text: int = MAX_WITH_TEXT) -> Listing:
    """All played and evaluation episodes of the run, with the filters their values give."""
    filters = [Filter("e", "epoch"), Filter("s", "set"), Filter("o", "outcome"), Filter("w", "winner")]
    epoch, kind, outcome, winner = filters
    rows: list[Listed] = []
    for group in run.groups:
        for name, episodes in (("self-play", group.games), ("evaluation", group.eval_games)):
            for episode in episodes:
                reason, won = _outcome(episode)
                classes = " ".join([epoch.index(group.label), kind.index(name), outcome.index(reason),
                                    winner.index(won)])
                text = None
                if len(rows) < max_with_text:
                    text = [(m.role, m.content) for m in episode.messages if m.role not in _PROMPT_ROLES]
                rows.append(Listed(
                    classes=classes, epoch=group.label, set=name, id=episode.id, outcome=reason, winner=won,
                    turns=sum(m.role not in _PROMPT_ROLES for m in episode.messages),
                    tokens=episode.usage.get("completion_tokens") or sum((m.usage or {}).get("completion_tokens", 0)
                                                                         for m in episode.messages),
                    models=", ".join(f"{role}: {run.short(spec)}" for role, spec in episode.models.items()),
                    messages=text))
    return Listing([f for f in filters if len(f.values) > 1 or f.key == "o"], rows,
                   without_text=sum(r.messages is None for r in rows))


def _outcome(episode: Episode) -> tuple[str, str]:
    if episode.status != "ok" or episode.outcome is None:
        return "error", "error"
    return episode.outcome.reason, episode.outcome.winner or "tie"


def role_split(run: Run) -> list[dict[str, Any]]:
    """Per epoch and role assignment (the role the evaluated model played): games, win, loss and tie
    rates with 95% Wilson intervals, from ``winrate.json``'s ``by_role``."""
    rows = []
    for group in run.groups:
        by_role = (group.winrate or {}).get("by_role")
        if not isinstance(by_role, dict):
            continue
        first = True
        for role, tally in by_role.items():
            if not isinstance(tally, dict):
                continue
            counts = {k: tally.get(k) if isinstance(tally.get(k), int) else 0
                      for k in ("games", "wins", "losses", "ties", "errors")}
            judged = counts["wins"] + counts["losses"] + counts["ties"]
            rates = {key: (counts[key] / judged if judged else None, wilson_interval(counts[key], judged) if judged else None)
                     for key in ("wins", "losses", "ties")}
            rows.append({"label": group.label if first else "", "role": role, "games": counts["games"],
                         "errors": counts["errors"], **rates})
            first = False
    return rows
