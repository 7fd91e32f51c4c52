"""Seats: the players' public places, each playing a role drawn per episode (who is the spy, who moves first).

A protocol with ``seats`` maps each seat to a role per episode (a role name or a template over the
variables). Roles keep what a part is (its prompts, ``sees``, rules, rewards); seats are what
models sit in (models are given per seat) and what other players see of an author (speaker
labels). The seating is drawn with the variables and recorded among them as ``seats`` (seat ->
role), so templates, re-judging and training views read the same seating as play.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError
from ._expressions import ExpressionError, render

if TYPE_CHECKING:
    from ._loader import Protocol

SEATS = "seats"
"""The variable that holds an episode's seating (seat -> role), in protocols with ``seats``."""


class SeatError(ProtocolError):
    """A seat gave no usable role for an episode.

    Attributes:
        seat (`str`): the seat; detail (`str`): what was wrong, without where.
    """

    def __init__(self, protocol: "Protocol", seat: str, detail: str):
        super().__init__(f"{protocol.where(f'seats.{seat}')}: {detail}")
        self.seat, self.detail = seat, detail


def seating(protocol: "Protocol", variables: Mapping[str, Any], fixed: Any = None) -> dict[str, str]:
    """The episode's seat -> role mapping: each seat's template rendered over ``variables``, or ``fixed``
    (a ``--set seats=...`` value), checked the same way.

    Raises:
        `SeatError`: a seat's template fails or gives no model role, or two seats give the same role;
        `ProtocolError`: ``fixed`` is not a mapping of every seat.
    """
    spec = protocol.spec
    if fixed is not None:
        if not isinstance(fixed, Mapping) or list(fixed) != list(spec.seats):
            raise ProtocolError(f"--set seats: give every seat, in order, its role: a mapping with keys "
                                f"{list(spec.seats)} (e.g. {dict(zip(spec.seats, spec.model_roles))})")
        chosen = {seat: str(role) for seat, role in fixed.items()}
    else:
        chosen = {}
        for seat, source in spec.seats.items():
            try:
                chosen[seat] = render(source, variables, protocol.where(f"seats.{seat}")).strip() if "{" in source else source
            except ExpressionError as error:
                raise SeatError(protocol, seat, error.detail) from error
    taken: dict[str, str] = {}
    for seat, role in chosen.items():
        if role not in spec.model_roles:
            raise SeatError(protocol, seat, f"gave {role!r}, which is no role played by a model; give one of "
                                            f"{spec.model_roles}")
        if role in taken:
            raise SeatError(protocol, seat, f"gave {role!r}, as seat {taken[role]!r} did; each seat plays a different "
                                            f"role (every one of {spec.model_roles} once)")
        taken[role] = seat
    return chosen


def seat_of(protocol: "Protocol", variables: Mapping[str, Any], role: str) -> str:
    """The seat ``role`` plays from in an episode with these variables; the role itself without seats."""
    if protocol.spec.seats:
        for seat, seated in variables[SEATS].items():
            if seated == role:
                return seat
    return role


def as_role(protocol: "Protocol", variables: Mapping[str, Any], name: str) -> str:
    """``name`` as a role: a seat gives the role it plays this episode, a role stays itself."""
    return variables[SEATS].get(name, name) if protocol.spec.seats else name


__all__ = ["SEATS", "SeatError", "as_role", "seat_of", "seating"]
