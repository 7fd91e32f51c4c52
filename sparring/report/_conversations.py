"""Pick a few episodes and shape them for the page as conversations.

Transcript text is untrusted: every piece is escaped here or by the template's autoescape;
the only markup added is ``<mark>`` around mentions of the target word, built from escaped
pieces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from ..transcripts import Episode
from ._data import Group, Run

ROLE_COLOURS = ["#C44E52", "#4C72B0", "#55A868", "#8172B3", "#DD8452", "#937860", "#DA8BC3", "#64B5CD"]
_PROMPT_ROLES = {"system", "user"}


@dataclass
class Line:
    """One message as shown: who, when, the text (escaped markup) and its tokens."""

    role: str
    colour: str
    side: str  # "left" or "right"
    turn: int
    html: Markup
    tokens: int | None
    deciding: bool = False
    cut: bool = False


@dataclass
class Conversation:
    """One episode as shown on the page."""

    title: str
    group: str
    id: str
    facts: list[tuple[str, str]]
    highlight: str | None
    models: dict[str, str]
    roles: dict[str, str]  # role -> colour
    lines: list[Line]
    status: str
    winner: str | None
    winner_colour: str | None
    reason: str


def pick(run: Run, limit: int = 3) -> list[Conversation]:
    """Up to ``limit`` episodes of the latest group that played: a decisive one, a tie, an evaluation game."""
    group = next((g for g in reversed(run.groups) if g.games or g.eval_games), None)
    if group is None:
        return []
    ok = [e for e in group.games if e.status == "ok" and e.outcome is not None]
    decisive = [e for e in ok if e.outcome.winner is not None]
    ties = [e for e in ok if e.outcome.winner is None]
    chosen: list[tuple[str, Episode]] = []
    if decisive:
        chosen.append((f"A decisive game ({group.label})", max(decisive, key=lambda e: len(e.messages))))
    if ties:
        chosen.append((f"A tie ({group.label})", max(ties, key=lambda e: len(e.messages))))
    if not chosen and group.games:
        chosen.append((f"A failed episode ({group.label})", group.games[0]))
    evaluated = [e for e in group.eval_games if e.status == "ok" and e.outcome is not None]
    if evaluated:
        chosen.append((f"An evaluation game against the opponent ({group.label})",
                       max(evaluated, key=lambda e: (e.outcome.winner is not None, len(e.messages)))))
    return [_conversation(title, group, episode, run.short) for title, episode in chosen[:limit]]


def _conversation(title: str, group: Group, episode: Episode, short) -> Conversation:
    speakers = list(dict.fromkeys([*episode.models, *(m.role for m in episode.messages if m.role not in _PROMPT_ROLES)]))
    colours = {role: ROLE_COLOURS[i % len(ROLE_COLOURS)] for i, role in enumerate(speakers)}
    target = episode.variables.get("target")
    highlight = str(target) if isinstance(target, (str, int)) and str(target).strip() else None
    lines = []
    spoken = [m for m in episode.messages if m.role not in _PROMPT_ROLES]
    for index, message in enumerate(spoken):
        lines.append(Line(
            role=message.role, colour=colours.get(message.role, "#666666"),
            side="left" if speakers.index(message.role) % 2 == 0 else "right", turn=message.turn,
            html=_marked(message.content, highlight),
            tokens=len(message.token_ids) if message.token_ids else (message.usage or {}).get("completion_tokens"),
            deciding=index == len(spoken) - 1 and episode.outcome is not None and episode.outcome.winner is not None,
            cut=message.finish_reason == "length",
        ))
    outcome = episode.outcome
    winner = outcome.winner if outcome else None
    return Conversation(
        title=title, group=group.label, id=episode.id, facts=_facts(episode.variables), highlight=highlight,
        models={role: short(spec) for role, spec in episode.models.items()}, roles=colours, lines=lines,
        status=episode.status, winner=winner, winner_colour=colours.get(winner) if winner else None,
        reason=outcome.reason if outcome else (episode.error or "not judged"),
    )


def _facts(variables: dict[str, Any]) -> list[tuple[str, str]]:
    """The episode's variables as (label, value) pairs: target word first, a question's text and gold answer."""
    facts = []
    if "target" in variables:
        facts.append(("target word", str(variables["target"])))
    for name, value in variables.items():
        if name == "target":
            continue
        if isinstance(value, dict) and "question" in value:
            facts.append(("question", str(value["question"])))
            if value.get("choices"):
                facts.append(("choices", " · ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(value["choices"]))))
            if "answer" in value:
                facts.append(("gold answer", str(value["answer"])))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            facts.append((name, str(value)))
        else:
            text = json.dumps(value, ensure_ascii=False, default=str)
            facts.append((name, text if len(text) <= 200 else text[:199] + "…"))
    return facts


def _marked(text: str, word: str | None) -> Markup:
    """``text`` escaped, with each mention of ``word`` (as a word start, any case) inside ``<mark>``."""
    if not word:
        return escape(text)
    pattern = re.compile(rf"(?<![\w]){re.escape(word)}\w*", re.IGNORECASE)
    parts, last = [], 0
    for match in pattern.finditer(text):
        parts.append(escape(text[last:match.start()]))
        parts.append(Markup("<mark>") + escape(match.group(0)) + Markup("</mark>"))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)
