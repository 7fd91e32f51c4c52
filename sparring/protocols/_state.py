"""Game state: declared initial values, changed functionally after each message.

A protocol's ``state`` gives the initial values (strings are templates over the variables; a string
that is one ``{{ expression }}`` keeps the expression's type); its ``update`` entries compute new
values after each player message, from the state before and the message (``state``, ``message``,
``messages``, the variables, ``role``, ``roles``, ``turn``, ``round``). Nothing is mutated: each
message gets the state after it (``message["state"]``, written to the transcript), and the state
at any point is the last such value, or is recomputed from the messages when a record has none,
so play, templates, rules, rewards and re-judging all see the same state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import JudgeError
from ._expressions import compile_expression, render

if TYPE_CHECKING:
    from ._loader import Protocol

_ONE_EXPRESSION = re.compile(r"\{\{((?:(?!\}\}).)*)\}\}", re.DOTALL)


def initial_state(protocol: "Protocol", variables: Mapping[str, Any]) -> dict[str, Any]:
    """The state an episode with these variables starts from.

    Raises:
        `ExpressionError`: a template fails; `JudgeError`: a value cannot be written to a transcript.

    Example:
        >>> from sparring.protocols import parse_protocol
        >>> p = parse_protocol("name: g\\nvariables: {top: {values: [100]}}\\nstate: {low: 1, high: '{{ top }}', "
        ...                    "note: 'up to {{ top }}'}\\nroles: {a: {system: hi}}\\nschedule: {order: [a]}\\n")
        >>> initial_state(p, {"top": 100})
        {'low': 1, 'high': 100, 'note': 'up to 100'}
    """
    return {key: initial_value(protocol, key, variables) for key in protocol.spec.state}


def initial_value(protocol: "Protocol", key: str, variables: Mapping[str, Any]) -> Any:
    """The initial value of state ``key``: a string rendered over the variables (one ``{{ expression }}``
    keeps its type), any other value as it is.

    Raises:
        `ExpressionError`: the template fails; `JudgeError`: the value cannot be written to a transcript.
    """
    value, where = protocol.spec.state[key], protocol.where(f"state.{key}")
    if isinstance(value, str):
        whole = _ONE_EXPRESSION.fullmatch(value.strip())
        value = compile_expression(whole.group(1), where)(**variables) if whole else render(value, variables, where)
    return json_value(value, where)


def rule_names(protocol: "Protocol", variables: Mapping[str, Any], messages: Sequence[Mapping[str, Any]],
               state: Mapping[str, Any]) -> dict[str, Any]:
    """The names rules, updates and ``next``/``until`` see after the last of ``messages`` (the player
    messages so far; none at the start), ``state`` being the game state they see."""
    last = messages[-1] if messages else {"content": "", "role": None, "turn": 0, "round": 0}
    return {**variables, "message": last["content"], "role": last["role"], "seat": last.get("seat") or last["role"],
            "turn": last.get("turn", len(messages) - 1), "round": last.get("round", 0), "messages": list(messages),
            "roles": list(protocol.spec.roles), "state": state, "phase": last.get("phase")}


def next_state(protocol: "Protocol", state: Mapping[str, Any], variables: Mapping[str, Any],
               messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The state after the last of ``messages`` (the player messages so far), from the ``state`` before it.

    Each ``update`` entry whose ``roles`` include the author and whose ``when`` holds computes all of
    its ``set`` values from the state as it is before that entry; entries apply in order.

    Raises:
        `ExpressionError`: an expression fails; `JudgeError`: a value cannot be written to a transcript.
    """
    last = messages[-1]
    context = rule_names(protocol, variables, messages, state)
    current = dict(state)
    for index, update in enumerate(protocol.spec.update):
        if update.roles is not None and last["role"] not in update.roles:
            continue
        names = {**context, "state": current}
        if update.when is not None and not compile_expression(update.when, protocol.where(f"update.{index}.when"))(**names):
            continue
        changes = {}
        for key, source in update.set.items():
            where = protocol.where(f"update.{index}.set.{key}")
            changes[key] = json_value(compile_expression(source, where)(**names), where)
        current = {**current, **changes}
    return current


def current_state(protocol: "Protocol", variables: Mapping[str, Any], messages: Sequence[Mapping[str, Any]],
                  players: frozenset[str] | None = None) -> dict[str, Any]:
    """The state after ``messages`` (an episode's so far): the last one logged, else recomputed.

    ``players`` are the roles whose messages change the state (default: the protocol's roles; an LLM
    judge's replies do not).
    """
    if not (protocol.spec.state or protocol.spec.update):
        return {}
    players = players if players is not None else frozenset(protocol.spec.roles)
    moves = [m for m in messages if _moves_state(m, players)]
    if moves and moves[-1].get("state") is not None:
        return dict(moves[-1]["state"])
    return states_after(protocol, variables, moves)[-1]  # a record without logged states: recompute them all


def _moves_state(message: Mapping[str, Any], players: frozenset[str]) -> bool:
    """Whether a message changes the state: a player's, and not a reply rejected as invalid (``invalid``)."""
    return message["role"] in players and not message.get("invalid")


def states_after(protocol: "Protocol", variables: Mapping[str, Any],
                 players: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The initial state, then the state after each of ``players`` (player messages), recomputed."""
    states = [initial_state(protocol, variables)]
    for count in range(1, len(players) + 1):
        states.append(next_state(protocol, states[-1], variables, players[:count]))
    return states


def with_states(protocol: "Protocol", variables: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Copies of ``messages`` whose player messages carry the state after them, recomputed under
    ``protocol`` (a re-judge restores the state from the messages; a protocol without state adds none)."""
    if not (protocol.spec.state or protocol.spec.update):
        return [dict(m) for m in messages]
    players = frozenset(protocol.spec.roles)
    states = iter(states_after(protocol, variables, [m for m in messages if _moves_state(m, players)])[1:])
    return [{**m, "state": next(states)} if _moves_state(m, players) else dict(m) for m in messages]


def json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (tuples as lists), as a transcript records it.

    Raises:
        `JudgeError`: the value is not a number, string, boolean, none, list or mapping of those.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(item, where) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise JudgeError(f"{where}: gives a mapping with keys that are not strings; state keys must be text")
        return {k: json_value(v, where) for k, v in value.items()}
    raise JudgeError(f"{where}: gives {type(value).__name__} {value!r}, which a transcript cannot "
                     "record; a value it records is a number, text, true/false, none, a list or a mapping of those")
