"""SPAG's prompt variation for training: the rules' wording and the dialogue format drawn at random.

SPAG's ``randomly_convert_game_history_to_query`` picks one of 8 paraphrases of the rules and
one of several dialogue layouts for every training sample, so the policy does not overfit one
template. Here the system prompt is the played one or one of the protocol's
``training.system_variants`` for the role (Jinja2 over the same variables), and the dialogue is
either the multi-turn chat as played or the history flattened into one user message with
speaker labels. Draws come from a seeded `random.Random`, so a seed always gives the same data.
"""

from __future__ import annotations

import random
from dataclasses import replace

from ..protocols import Protocol
from ..protocols._views import TurnView
from ..protocols._visibility import system_prompt

FORMATS = ("chat", "flat")
"""The dialogue formats: ``chat`` (as played) and ``flat`` (one user message with speaker labels)."""


def flat_dialogue(view: TurnView) -> str:
    """The view's history as one user message (``role: text`` lines, the speaker's own marked), then its prompt."""
    lines = [f"{m.role}{' (you)' if m.role == view.role else ''}: {m.content}" for m in view.history]
    parts = ["The dialogue so far:\n" + "\n".join(lines)] if lines else []
    parts.append(view.prompt if view.prompt is not None else
                 (f"Write your next message as {view.role}." if lines else f"You speak first, as {view.role}."))
    return "\n\n".join(parts)


def varied_chat(view: TurnView, protocol: Protocol | None, variables: dict, rng: random.Random) -> list[dict]:
    """The training chat of one turn with a random system wording and dialogue format.

    Args:
        view (`TurnView`): the turn, as played (see `episode_views`).
        protocol (`Protocol | None`): its protocol (None: a plain view; only the format varies).
        variables (`dict`): the episode's variables, to render a system variant.
        rng (`random.Random`): the seeded source of the draws.

    Returns:
        `list[dict]`: chat messages, the turn's text last as the assistant message.
    """
    variants = protocol.spec.training.system_variants.get(view.role, []) if protocol is not None else []
    system = view.system
    pick = rng.randrange(len(variants) + 1) if variants and system is not None else 0
    if pick:
        system = system_prompt(protocol, variables, view.role, variants[pick - 1])
    if rng.choice(FORMATS) == "chat":
        return replace(view, system=system).chat()
    head = [{"role": "system", "content": system}] if system is not None else []
    return head + [{"role": "user", "content": flat_dialogue(view)}, {"role": "assistant", "content": view.target}]


__all__ = ["FORMATS", "flat_dialogue", "varied_chat"]
