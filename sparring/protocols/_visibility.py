"""Which messages a role sees, and the chat its model is sent: one rule, for play and for training data.

`EpisodeTeam` (play) and `episode_views` (training data rebuilt from transcripts) both build every
turn with these functions, so what a role's model was sent and what it is trained on cannot drift.

The rule, for ``role`` speaking in round ``r`` (see `visible`): it sees messages of rounds before
``r`` (never those of its own round: a simultaneous round's speakers do not see each other),
only of round ``r - 1`` under ``history: last_round``; of those, its own and those of the roles
in its ``sees`` (an author that is not a role, such as an LLM judge, is never seen; nor is a
rejected reply, nor a scripted message that rendered blank). Its model
gets, after its system prompt, these messages (see `model_context`) and then its per-turn prompt
(`turn_prompt`); its templates' ``messages`` are the same messages (`turn_context`).

Messages are mappings as the engine keeps them: ``role``, ``content``, ``round`` and, for a turn
that was handed one, ``prompt``; ``scripted``, ``invalid``, ``attempts`` and ``seat`` (protocols
with seats: other models know the author by it) where they apply. A
role's rejected replies (``attempts``) reach only its own model, during the turn they were
rejected in: never another role, never a later turn (see `EpisodeTeam._speak`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core.models import AssistantMessage, LLMMessage, UserMessage

from ..errors import JudgeError
from ._expressions import compile_expression, render
from ._loader import Protocol
from ._seats import seat_of
from ._state import current_state

DEFAULT_LABEL = "{{ speaker }}: "
"""The speaker label of a role that sees more than one other role, when the protocol sets none."""


def visible(protocol: Protocol | None, role: str, message: Mapping[str, Any], round_number: int) -> bool:
    """Whether ``role``'s model receives ``message`` when it speaks in round ``round_number``.

    Without a protocol (the plain view of a foreign record) every message of an earlier round is.
    A message addressed to some roles (its ``to``, from its author's ``to`` expression) reaches
    only them, besides its author.
    """
    if message["round"] >= round_number:
        return False
    if message.get("invalid") or (message.get("scripted") and not message["content"].strip()):
        return False  # a rejected reply reaches no one; a blank scripted message is no one's to read
    if protocol is None:
        return True
    author, spec = message["role"], protocol.spec.roles[role]
    if author not in protocol.spec.roles:
        return False
    if spec.history == "last_round" and message["round"] != round_number - 1:
        return False
    if author != role and message.get("to") is not None and role not in message["to"]:
        return False  # addressed to others only (the author's `to`)
    return author == role or spec.sees == "all" or author in spec.sees


def addressed_to(protocol: Protocol, role: str, context: Mapping[str, Any]) -> list[str] | None:
    """Whom ``role``'s new message is addressed to: its ``to`` expression evaluated over the rule names
    (``context``, the last message being the new one); None when it has none or it gives none.

    Raises:
        `ExpressionError`: the expression fails; `JudgeError`: it names something that is no role.
    """
    source = protocol.spec.roles[role].to
    if source is None:
        return None
    field = f"roles.{role}.to"
    chosen = compile_expression(source, protocol.where(field))(**context)
    if chosen is None or chosen == "":
        return None
    names = [chosen] if isinstance(chosen, str) else list(chosen) if isinstance(chosen, (list, tuple)) else None
    if names is None or any(not isinstance(n, str) or n not in protocol.spec.roles for n in names):
        raise JudgeError(f"{protocol.where(field)}: gave {chosen!r}; give a role, a list of roles or none "
                         f"(roles are {sorted(protocol.spec.roles)})")
    return names


def seen(protocol: Protocol | None, role: str, messages: Sequence[Mapping[str, Any]], round_number: int) -> list[int]:
    """The indices of the `visible` ``messages`` (the episode's so far), in the order ``role`` received them.

    Round by round; within a round its own reply comes first (others' replies of a simultaneous
    round reach it only at its next turn), then the others' in the order they were posted.
    """
    shown = [i for i, m in enumerate(messages) if visible(protocol, role, m, round_number)]
    return sorted(shown, key=lambda i: (messages[i]["round"], messages[i]["role"] != role, i))


def speaker_label(protocol: Protocol | None, role: str, speaker: str) -> str:
    """The text put before a message of ``speaker`` when it is handed to ``role``'s model.

    The protocol's ``speaker_label`` rendered over ``speaker``; when it sets none, `DEFAULT_LABEL`
    for a role that sees more than one other role of the schedule, else none (so a two-player
    game's messages are handed as they were written). A plain view has no labels.
    """
    if protocol is None:
        return ""
    template = protocol.spec.speaker_label
    if template is None:
        spec = protocol.spec
        sees = spec.roles[role].sees
        speakers = {r for n in spec.schedule.order for r in (spec.model_roles if n in spec.seats else [n])}
        others = {r for r in speakers if r != role and (sees == "all" or r in sees)}
        template = DEFAULT_LABEL if len(others) > 1 else ""
    return render(template, {"speaker": speaker}, where=protocol.where("speaker_label")) if template else ""


def model_context(protocol: Protocol | None, role: str, messages: Sequence[Mapping[str, Any]],
                  round_number: int) -> list[LLMMessage]:
    """What ``role``'s model holds, after its system prompt, before its turn in round ``round_number``.

    The `seen` messages: its own as its assistant turns (under ``history: all`` each after the
    per-turn prompt it answered, a user message from ``user``), others' as user messages whose
    ``source`` is their author and whose content starts with the `speaker_label`. The turn's own
    prompt (`turn_prompt`) comes after these.
    """
    keep_prompts = protocol is None or protocol.spec.roles[role].history == "all"
    labels: dict[str, str] = {}
    context: list[LLMMessage] = []
    for i in seen(protocol, role, messages, round_number):
        message = messages[i]
        author = message["role"]
        name = message.get("seat") or author  # in a protocol with seats, players know each other by seat
        if author == role:
            if keep_prompts and message.get("prompt") is not None:
                context.append(UserMessage(content=message["prompt"], source="user"))
            context.append(AssistantMessage(content=message["content"], source=role))
        else:
            if name not in labels:
                labels[name] = speaker_label(protocol, role, name)
            context.append(UserMessage(content=labels[name] + message["content"], source=name))
    return context


def role_params(protocol: Protocol, variables: dict[str, Any], role: str) -> dict[str, Any]:
    """A role's ``params``: string values rendered over the variables, others as they are."""
    params = protocol.spec.roles[role].params
    return {k: render(v, variables, where=protocol.where(f"roles.{role}.params.{k}")) if isinstance(v, str) else v
            for k, v in params.items()}


def turn_context(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int = 0,
                 messages: Sequence[Mapping[str, Any]] = (), phase: str | None = None) -> dict[str, Any]:
    """The names ``role``'s templates see at its turn in ``round_number``, ``messages`` being the episode's so far.

    The variables, ``role``, ``seat`` (the seat it plays from; the role itself without seats), ``roles``, ``params``, ``round``, ``turn`` (messages posted before the
    turn, or its simultaneous round, started), ``messages``: the ones it sees (`seen`), and ``state``:
    the game state after the episode's messages so far (the state is public to every role), and
    ``phase``: the name of the schedule phase the turn is in (none outside phases).
    """
    return {**variables, "role": role, "seat": seat_of(protocol, variables, role), "roles": list(protocol.spec.roles),
            "params": role_params(protocol, variables, role),
            "round": round_number, "turn": len(messages),
            "messages": [{k: v for k, v in messages[i].items() if k != "attempts"}  # rejected replies: no one's
                         for i in seen(protocol, role, messages, round_number)],
            "state": current_state(protocol, variables, messages), "phase": phase}


def system_prompt(protocol: Protocol, variables: dict[str, Any], role: str, template: str | None = None) -> str:
    """``role``'s system prompt for these variables (or ``template``, a training variant, in the same context)."""
    source = template if template is not None else protocol.spec.roles[role].system
    where = f"training.system_variants.{role}" if template is not None else f"roles.{role}.system"
    return render(source, turn_context(protocol, variables, role), where=protocol.where(where))


def turn_prompt(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int,
                messages: Sequence[Mapping[str, Any]], phase: str | None = None) -> str | None:
    """The per-turn prompt handed to ``role`` before its turn in ``round_number``; None when it has none
    or it renders blank (then nothing is handed)."""
    template = protocol.spec.roles[role].prompt
    if template is None:
        return None
    prompt = render(template, turn_context(protocol, variables, role, round_number, messages, phase),
                    where=protocol.where(f"roles.{role}.prompt"))
    return prompt if prompt.strip() else None


def script_message(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int,
                   messages: Sequence[Mapping[str, Any]], phase: str | None = None) -> str:
    """A scripted role's message at its turn in ``round_number``: its ``script`` rendered in its `turn_context`
    (a blank one is a message too, which no role receives: see `visible`)."""
    return render(protocol.spec.roles[role].script, turn_context(protocol, variables, role, round_number, messages, phase),
                  where=protocol.where(f"roles.{role}.script"))


def valid_reply(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int,
                messages: Sequence[Mapping[str, Any]], reply: str, phase: str | None = None) -> bool:
    """Whether ``role``'s ``valid`` expression holds for ``reply``, its reply at its turn in ``round_number``
    (always, for a role without one). It sees the `turn_context` and ``message``, the reply."""
    source = protocol.spec.roles[role].valid
    if source is None:
        return True
    check = compile_expression(source, protocol.where(f"roles.{role}.valid"))
    return bool(check(**turn_context(protocol, variables, role, round_number, messages, phase), message=reply))


def invalid_prompt(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int,
                   messages: Sequence[Mapping[str, Any]], reply: str, phase: str | None = None) -> str:
    """The error ``role`` is sent back after the invalid ``reply``: its ``invalid_prompt`` rendered over its
    `turn_context` and ``message``, the reply."""
    return render(protocol.spec.roles[role].invalid_prompt,
                  {**turn_context(protocol, variables, role, round_number, messages, phase), "message": reply},
                  where=protocol.where(f"roles.{role}.invalid_prompt"))


__all__ = ["DEFAULT_LABEL", "invalid_prompt", "model_context", "role_params", "script_message", "seen", "speaker_label",
           "system_prompt", "turn_context", "turn_prompt", "valid_reply", "visible"]
