"""SPAG's prompt variation for training: the rules' wording and the dialogue format drawn at random.

SPAG's ``randomly_convert_game_history_to_query`` writes every training sample as one query drawn
from parts, so the policy does not overfit one template. A protocol with ``training.variation``
gets exactly that: per row, in SPAG's order, a history prefix, a set of speaker labels, a layout
(``chat``, ``chat_inverse``, ``alpaca``), a system prefix, the rules' wording (the played system
prompt or one of the role's ``training.system_variants``) and, for ``alpaca``, whether the rules
are prefixed and whether the instruction ends the query; the query is the row's one user message.
A protocol without it keeps the older variation: the played system prompt or a variant, and the
multi-turn chat as played or the history flattened into one user message with speaker labels.
Draws come from a seeded `random.Random`, so a seed always gives the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ..errors import ProtocolError
from ..protocols import Protocol
from ..protocols._expressions import render
from ..protocols._schema import SpeakerLabels, VariationSpec
from ..protocols._views import TurnView
from ..protocols._visibility import system_prompt, turn_context
from ..transcripts import Episode, TranscriptMessage

FORMATS = ("chat", "flat")
"""The dialogue formats without ``variation``: ``chat`` (as played), ``flat`` (one user message, speakers labelled)."""


@dataclass(frozen=True)
class QueryDraw:
    """The parts of one training query (see `VariationSpec`).

    Args:
        prefix (`str`): put before every history line, the rules line and the answer line.
        labels (`SpeakerLabels`): the speaker labels.
        layout (`str`): ``chat``, ``chat_inverse`` or ``alpaca``.
        system_prefix (`str`): the name of the rules line.
        rules (`int`): 0 for the played system prompt, ``k`` for the role's ``system_variants[k - 1]``.
        prefixed_rules (`bool`): alpaca: the rules start with ``system_prefix: ``.
        inline_answer (`bool`): alpaca: the instruction, its last character replaced by ``: ``, ends the query.
    """

    prefix: str
    labels: SpeakerLabels
    layout: str
    system_prefix: str
    rules: int
    prefixed_rules: bool = False
    inline_answer: bool = False


def draw_query(variation: VariationSpec, rules: int, rng: random.Random) -> QueryDraw:
    """Draw a query's parts in the order SPAG's function draws them.

    Args:
        variation (`VariationSpec`): the protocol's ``training.variation``.
        rules (`int`): how many wordings of the rules there are to draw from (1 + the role's variants).
        rng (`random.Random`): the seeded source of the draws.

    Returns:
        `QueryDraw`: the parts.
    """
    prefix, labels = rng.choice(variation.history_prefixes), rng.choice(variation.speaker_labels)
    layout, system_prefix = rng.choice(variation.layouts), rng.choice(variation.system_prefixes)
    wording = rng.randrange(rules)
    if layout != "alpaca":
        return QueryDraw(prefix, labels, layout, system_prefix, wording)
    prefixed = rng.random() < variation.alpaca_prefix_chance
    inline = rng.random() < variation.alpaca_inline_chance
    return QueryDraw(prefix, labels, layout, system_prefix, wording, prefixed, inline)


def query_text(draw: QueryDraw, variation: VariationSpec, rules: str, instruction: str,
               lines: list[tuple[str, str]], answer: str) -> str:
    """The query of SPAG's ``randomly_convert_game_history_to_query`` for these drawn parts.

    Args:
        draw (`QueryDraw`): the drawn parts.
        variation (`VariationSpec`): gives ``no_history`` and ``history_header``.
        rules (`str`): the drawn wording of the rules.
        instruction (`str`): the trained role's instruction.
        lines (`list[tuple[str, str]]`): the history as (label, text), oldest first.
        answer (`str`): the trained role's label, on the line its reply follows.

    Returns:
        `str`: the query; the reply follows it directly.

    Example:
        >>> spec = VariationSpec(history_prefixes=["\\n - "], speaker_labels=[{"own": "A", "others": "Q"}],
        ...                      system_prefixes=["Rules"], instructions={"a": "Answer."})
        >>> draw = QueryDraw("\\n - ", spec.speaker_labels[0], "chat", "Rules", 0)
        >>> query_text(draw, spec, "Be brief.", "Answer.", [("Q", "Hi")], "A")
        '\\n - Rules: Be brief.\\n\\nAnswer.\\n - Q: Hi\\n - A: '
    """
    p = draw.prefix
    history = "".join(f"{p}{label}: {text}" for label, text in lines)
    cue = f"{p}{answer}: "
    if draw.layout != "alpaca":
        system = f"{p}{draw.system_prefix}: {rules}\n\n{instruction}{'' if lines else variation.no_history}"
        return (history + system if draw.layout == "chat_inverse" else system + history) + cue
    query = f"{draw.system_prefix}: {rules}" if draw.prefixed_rules else rules
    query += f"{p}{variation.history_header}{history}\n\n" if lines else variation.no_history
    return query + (instruction[:-1] + ": " if draw.inline_answer else instruction + cue)


def query_history(protocol: Protocol, episode: Episode, view: TurnView) -> list[TranscriptMessage]:
    """The earlier messages a query lists: every player's before the turn, as SPAG lists a game's whole history.

    Left out: an LLM judge's replies, rejected replies, blank scripted messages, messages addressed
    to other roles only, and (where rounds are logged) those of the turn's own round.
    """
    messages = episode.messages
    rounds = any(m.round for m in messages)
    now = messages[view.index].round
    return [m for m in messages[:view.index]
            if m.role in protocol.spec.roles and not m.invalid and not (m.scripted and not m.content.strip())
            and (m.to is None or m.role == view.role or view.role in m.to) and not (rounds and m.round >= now)]


def flat_dialogue(view: TurnView) -> str:
    """The view's history as one user message (``role: text`` lines, the speaker's own marked), then its prompt."""
    lines = [f"{m.role}{' (you)' if m.role == view.role else ''}: {m.content}" for m in view.history]
    parts = ["The dialogue so far:\n" + "\n".join(lines)] if lines else []
    parts.append(view.prompt if view.prompt is not None else
                 (f"Write your next message as {view.role}." if lines else f"You speak first, as {view.role}."))
    return "\n\n".join(parts)


def _variants(view: TurnView, protocol: Protocol | None) -> list[str]:
    """The role's system variants (none for a plain view or a role without a system prompt)."""
    if protocol is None or view.system is None:
        return []
    return protocol.spec.training.system_variants.get(view.role, [])


def _system(view: TurnView, protocol: Protocol | None, variables: dict, pick: int) -> str | None:
    """The played system prompt (``pick`` 0) or the role's variant ``pick - 1``, rendered."""
    if pick == 0:
        return view.system
    return system_prompt(protocol, variables, view.role, _variants(view, protocol)[pick - 1])


def _query_chat(view: TurnView, protocol: Protocol, episode: Episode, rng: random.Random) -> list[dict]:
    variation = protocol.spec.training.variation
    if view.role not in variation.instructions:
        raise ProtocolError(f"{protocol.where('training.variation.instructions')}: no instruction for role "
                            f"{view.role!r}: give one for every role trained on")
    draw = draw_query(variation, len(_variants(view, protocol)) + 1, rng)
    where = protocol.where(f"training.variation.instructions.{view.role}")
    instruction = render(variation.instructions[view.role], turn_context(protocol, episode.variables, view.role), where)
    labels: dict[tuple[bool, str], str] = {}

    def label(own: bool, speaker: str) -> str:
        if (own, speaker) not in labels:
            template = draw.labels.own if own else draw.labels.others
            where = protocol.where("training.variation.speaker_labels")
            labels[own, speaker] = render(template, {"speaker": speaker}, where)
        return labels[own, speaker]

    lines = [(label(m.role == view.role, m.seat or m.role), m.content) for m in query_history(protocol, episode, view)]
    me = episode.messages[view.index]
    rules = _system(view, protocol, episode.variables, draw.rules) or ""
    query = query_text(draw, variation, rules, instruction, lines, label(True, me.seat or me.role))
    return [{"role": "user", "content": query}, {"role": "assistant", "content": view.target}]


def varied_chat(view: TurnView, protocol: Protocol | None, episode: Episode, rng: random.Random) -> list[dict]:
    """The training chat of one turn with a random prompt: SPAG's query under ``training.variation``,
    else a random system wording and dialogue format.

    Args:
        view (`TurnView`): the turn, as played (see `episode_views`).
        protocol (`Protocol | None`): its protocol (None: a plain view; only the format varies).
        episode (`Episode`): the episode of the turn (its variables and messages).
        rng (`random.Random`): the seeded source of the draws.

    Returns:
        `list[dict]`: chat messages, the turn's text last as the assistant message.

    Raises:
        `ProtocolError`: the protocol's ``variation`` has no instruction for the turn's role.
        `ExpressionError`: a variant, instruction or label template fails to render.
    """
    if protocol is not None and protocol.spec.training.variation is not None:
        return _query_chat(view, protocol, episode, rng)
    variants = _variants(view, protocol)
    system = _system(view, protocol, episode.variables, rng.randrange(len(variants) + 1) if variants else 0)
    if rng.choice(FORMATS) == "chat":
        return replace(view, system=system).chat()
    head = [{"role": "system", "content": system}] if system is not None else []
    return head + [{"role": "user", "content": flat_dialogue(view)}, {"role": "assistant", "content": view.target}]


__all__ = ["FORMATS", "QueryDraw", "draw_query", "flat_dialogue", "query_history", "query_text", "varied_chat"]
