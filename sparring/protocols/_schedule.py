"""Who speaks next: fixed schedules, a next speaker chosen by expression, and phases that chain schedules.

`schedule_rounds` yields the episode's rounds one at a time, each as its phase's name and the roles
that speak in it; it is resumed after the round's messages are posted, so a ``dynamic`` schedule's
``next`` expression and every ``until`` see what was just said (through ``now()``, the rule names
of the episode so far).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import JudgeError
from ._expressions import compile_expression, render
from ._schema import ScheduleSpec
from ._seats import as_role

if TYPE_CHECKING:
    from ._loader import Protocol

Round = tuple[str | None, list[str]]
"""A round: the name of its phase (None outside phases) and the roles that speak in it, at once."""


def schedule_rounds(protocol: "Protocol", variables: Mapping[str, Any],
                    now: Callable[[], Mapping[str, Any]]) -> Iterator[Round]:
    """The rounds of an episode, decided as it goes.

    Args:
        protocol (`Protocol`): whose ``schedule`` to follow.
        variables (`Mapping`): the episode's variables; with seats, a seat named in ``order`` (or
            chosen by ``first``/``next``) speaks as the role it plays this episode (`as_role`).
        now: the rule names after the messages so far (`Judge.rule_context`); called only when a
            ``next``, ``first`` or ``until`` needs them.

    Raises (while iterating):
        `ExpressionError`: an expression fails; `JudgeError`: ``next`` names a role outside ``order``.
    """
    schedule = protocol.spec.schedule
    if schedule.type != "phases":
        yield from _rounds(protocol, variables, schedule, "schedule", now)
        return
    until = compile_expression(schedule.until, protocol.where("schedule.until")) if schedule.until else None
    for index, phase in enumerate(schedule.phases):
        for round_ in _rounds(protocol, variables, phase, f"schedule.phases.{index}", now):
            yield round_
            if until is not None and until(**now()):
                return


def _rounds(protocol: "Protocol", variables, schedule: ScheduleSpec, field: str, now) -> Iterator[Round]:
    until = compile_expression(schedule.until, protocol.where(f"{field}.until")) if schedule.until else None
    if schedule.type == "dynamic":
        speaker = _first(protocol, variables, schedule, field, now)
        choose = compile_expression(schedule.next, protocol.where(f"{field}.next"))
        for _ in range(schedule.max_turns):
            yield schedule.name, [speaker]
            context = now()
            if until is not None and until(**context):
                return
            speaker = _speaker(protocol, variables, schedule, f"{field}.next", choose(**context))
            if speaker is None:
                return
        return
    for speakers in schedule.speaking_rounds():
        yield schedule.name, [as_role(protocol, variables, name) for name in speakers]
        if until is not None and until(**now()):
            return


def _first(protocol: "Protocol", variables, schedule: ScheduleSpec, field: str, now) -> str:
    if schedule.first is None:
        return as_role(protocol, variables, schedule.order[0])
    if "{" not in schedule.first:
        return _speaker(protocol, variables, schedule, f"{field}.first", schedule.first)
    chosen = render(schedule.first, now(), protocol.where(f"{field}.first"))
    return (_speaker(protocol, variables, schedule, f"{field}.first", chosen)
            or as_role(protocol, variables, schedule.order[0]))


def _speaker(protocol: "Protocol", variables, schedule: ScheduleSpec, field: str, chosen: Any) -> str | None:
    """``chosen`` (a role, or a seat) as a role of ``order``; None (the schedule ends) for none or blank text."""
    if chosen is None or (isinstance(chosen, str) and chosen.strip().lower() in ("", "none")):
        return None
    name = as_role(protocol, variables, str(chosen).strip())
    if name not in [as_role(protocol, variables, n) for n in schedule.order]:
        raise JudgeError(f"{protocol.where(field)}: chose {chosen!r}, which is not a role of this schedule's order "
                         f"{schedule.order}; give a role name, or none to end")
    return name


__all__ = ["Round", "schedule_rounds"]
