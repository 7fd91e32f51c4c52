"""Sample a protocol's variables for each episode, reproducibly from the run's seed.

Each variable is drawn from a list (``values``, ``file``, ``builtin``, ``questions``, ``range``; ``k``
distinct values at once), drawn from ``uniform``, or derived (``expr``) from the variables listed
before it; ``unpack`` gives a value's parts as variables of their own, so they are drawn together.
"""

from __future__ import annotations

import copy
import csv
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError, SparringError, did_you_mean
from ._expressions import HELPERS, compile_expression, undeclared_names
from ._questions import load_questions
from ._seats import SEATS, seating
from ._schema import VariableSpec
from ._state import json_value
from ._taboo import load_taboo_words

if TYPE_CHECKING:
    from ._loader import Protocol

BUILTIN_LISTS = {"taboo_words": load_taboo_words}


class VariableError(ProtocolError):
    """A variable's source, values or names are wrong.

    Args:
        message (`str`): the whole message, naming the field (``variables.NAME.FIELD: ...``).
        loc (`tuple`): the field's path in the protocol file, for its line (``("variables", NAME, FIELD)``).
    """

    def __init__(self, message: str, loc: tuple[str, ...]):
        super().__init__(message)
        self.loc = loc


class VariableSampler:
    """Loads each variable's source once and draws values for episode ``index``.

    Args:
        protocol (`Protocol`): whose variables to sample.
        overrides (`dict[str, Any]`, defaults to {}): fixed values (``--set VAR=VALUE``): a fixed variable
            is not drawn, its ``unpack`` names come from the fixed value, and derived variables are
            computed from it. An unpacked name may be fixed on its own.
        seed (`int`, defaults to 0): the run's seed; episode ``i`` always gets the same values.

    Raises:
        `ProtocolError`: an override names no variable, or a source or a fixed value is unusable.
    """

    def __init__(self, protocol: "Protocol", overrides: dict[str, Any] | None = None, seed: int = 0):
        self.seed, self._protocol = seed, protocol
        self._fixed = dict(overrides or {})
        check_variable_names(protocol, self._fixed, "--set")
        self._variables = [_Variable(protocol, name, load=name not in self._fixed) for name in protocol.spec.variables]
        for variable in self._variables:
            if variable.name in self._fixed:
                variable.unpacked(self._fixed[variable.name], "the --set value")
        if SEATS in self._fixed:
            seating(protocol, {}, self._fixed[SEATS])

    def sample(self, index: int) -> dict[str, Any]:
        """The variables of episode ``index``: a fresh copy, so nothing one episode does reaches another.

        Raises:
            `ExpressionError`: a derived variable fails on this episode's values.
        """
        rng = random.Random(f"{self.seed}:{index}")
        values: dict[str, Any] = {}
        for variable in self._variables:
            name = variable.name
            values[name] = self._fixed[name] if name in self._fixed else variable.value(values, index, rng)
            values.update({n: self._fixed.get(n, v) for n, v in variable.unpacked(values[name]).items()})
        if self._protocol.spec.seats:
            values[SEATS] = seating(self._protocol, values, self._fixed.get(SEATS))
        return copy.deepcopy(values)


def with_first_value(protocol: "Protocol", name: str, sample: dict[str, Any] | None) -> dict[str, Any] | None:
    """Check variable ``name`` and add its first value to ``sample`` (the sample episode validation
    tries: the first value of each list, the low end of a uniform, derived values computed from it).

    Args:
        sample (`dict | None`): the first values of the variables listed before ``name`` and of the
            names they unpack; None when one of them cannot be read before a run.

    Returns:
        `dict | None`: ``sample`` with ``name`` and its unpacked names; None when ``name`` or an
        earlier variable draws from a Hugging Face dataset (read when a run starts).

    Raises:
        `VariableError`: the source, the names or the first value are wrong; names the field.
    """
    variable = _Variable(protocol, name, offline=True)
    if sample is None or (variable.pooled and variable.pool is None):
        return None
    try:
        value = variable.value(sample)
    except SparringError as error:  # only a derived value can fail
        raise variable.error("expr", f"fails on the sample episode (the first value of every variable): "
                                     f"{getattr(error, 'detail', error)}") from error
    return {**sample, name: value, **variable.unpacked(value)}


class _Variable:
    """One variable of a protocol, checked: its pool of values (when it draws from one), its compiled
    expression (when derived) and the names it unpacks."""

    def __init__(self, protocol: "Protocol", name: str, offline: bool = False, load: bool = True):
        self.name, self.spec = name, protocol.spec.variables[name]
        self.where = protocol.where(f"variables.{name}.expr")
        self.pooled = self.spec.source not in ("uniform", "expr")
        self._check_names(protocol)
        self.derive = compile_expression(self.spec.expr, self.where) if self.spec.expr is not None else None
        self.pool = load_pool(self.spec, protocol.base_dir, name, offline) if self.pooled and load else None
        if self.pool is not None:
            self._check_pool()

    def error(self, field: str, message: str) -> VariableError:
        """A `VariableError` naming ``variables.NAME.FIELD``."""
        return _error(self.name, field, message)

    def value(self, values: Mapping[str, Any], index: int = 0, rng: random.Random | None = None) -> Any:
        """The value of episode ``index``, drawn with ``rng``; without ``rng``, the first value (the low
        end of a uniform). A derived value is computed from ``values`` (those listed before it).

        Raises:
            `ExpressionError`, `JudgeError`: a derived value fails, or is not plain data.
        """
        spec, pool, k = self.spec, self.pool, self.spec.k
        if self.derive is not None:
            return json_value(self.derive(**values), self.where)
        if spec.uniform is not None:
            return spec.uniform[0] if rng is None else rng.uniform(*spec.uniform)
        if rng is None or spec.order == "sequential":
            return pool[index % len(pool)] if k is None else [pool[(index * k + j) % len(pool)] for j in range(k)]
        return rng.choice(pool) if k is None else rng.sample(pool, k)

    def unpacked(self, value: Any, which: str = "a value") -> dict[str, Any]:
        """The variables ``unpack`` takes from ``value``: its keys (a mapping) or its items (a list).

        Raises:
            `VariableError`: ``value`` lacks one of the names, or is a list of another length.
        """
        names = self.spec.unpack
        if not names:
            return {}
        if isinstance(value, Mapping):
            missing = [n for n in names if n not in value]
            if missing:
                raise self.error("unpack", f"{which} has no key {missing[0]!r}: {_short(value)}")
            return {n: value[n] for n in names}
        if isinstance(value, (list, tuple)) and len(value) == len(names):
            return dict(zip(names, value))
        raise self.error("unpack", f"{which} is {_short(value)}, not a mapping with keys {names} nor a list of "
                                   f"{len(names)} values")

    def _check_names(self, protocol: "Protocol") -> None:
        """Unpacked names are new; a derived variable uses only the variables listed before it."""
        variables = protocol.spec.variables
        order = list(variables)
        position = order.index(self.name)
        earlier, later = ([n for other in others for n in (other, *(variables[other].unpack or ()))]
                          for others in (order[:position], order[position + 1:]))
        own = [self.name, *(self.spec.unpack or ())]
        for name in self.spec.unpack or ():
            if own.count(name) > 1 or name in earlier or name in later:
                raise self.error("unpack", f"{name!r} is already a variable name; each name may be defined once")
        if self.spec.expr is None:
            return
        used = sorted(undeclared_names(self.spec.expr, expression=True) - set(earlier) - set(HELPERS) - {"true", "false", "none"})
        if not used:
            return
        if used[0] in own or used[0] in later:
            defined = "by this variable itself" if used[0] in own else f"after {self.name}"
            raise self.error("expr", f"{used[0]!r} is defined {defined}; a derived variable may use only the variables "
                                     f"listed before it: {earlier}")
        raise self.error("expr", f"undefined name {used[0]!r}; this field may use the variables listed before it, "
                                 f"{earlier}, and the helpers {sorted(HELPERS)}")

    def _check_pool(self) -> None:
        """``k`` is at most the pool's size; every value has the parts ``unpack`` names."""
        if self.spec.k is not None and self.spec.k > len(self.pool):
            raise self.error("k", f"asks for {self.spec.k} distinct values of a list of {len(self.pool)}")
        if self.spec.unpack and self.spec.k is None:
            for position, value in enumerate(self.pool, 1):
                self.unpacked(value, f"value {position}")


def check_variable_names(protocol: "Protocol", names: Iterable[str], option: str) -> None:
    """A `ProtocolError` naming ``option`` and the first of ``names`` that is no variable of ``protocol``."""
    known = protocol.spec.variable_names
    for name in sorted(set(names) - set(known)):
        raise ProtocolError(f"{option} {name}: {protocol.name} has no such variable" + did_you_mean(name, known)
                            + f"; its variables are {sorted(known)}")


def _error(name: str, field: str, message: str) -> VariableError:
    return VariableError(f"variables.{name}.{field}: {message}", ("variables", name, field))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_pool(spec: VariableSpec, base_dir: Path, name: str, offline: bool = False) -> Sequence[Any] | None:
    """The values one variable is drawn from (a list, or a `range` for ``range``).

    Args:
        offline (`bool`, defaults to False): do not read Hugging Face datasets (validation): return
            None for a ``questions`` source that is not ``arithmetic`` or a local file.

    Raises:
        `VariableError`: the source is missing, unreadable or empty; names the field and the fix.
    """
    if spec.values is not None:
        pool = list(spec.values)
    elif spec.range is not None:
        pool = spec.range.numbers()
    elif spec.builtin is not None:
        if spec.builtin not in BUILTIN_LISTS:
            raise _error(name, "builtin", f"unknown list {spec.builtin!r}; known: {sorted(BUILTIN_LISTS)}")
        pool = list(BUILTIN_LISTS[spec.builtin]())
    elif spec.questions is not None:
        source = spec.questions
        if not source.startswith("arithmetic") and (base_dir / source).exists():
            source = str(base_dir / source)
        elif source.endswith((".jsonl", ".json")):
            raise _error(name, "questions", f"{base_dir / source} not found (paths are relative to the protocol file)")
        elif offline and not source.startswith("arithmetic"):
            return None
        try:
            pool = [q.model_dump() for q in load_questions(source)]
        except ProtocolError as error:  # a bad questions file: its message names the file and line
            raise VariableError(str(error), ("variables", name, "questions")) from error
    else:
        pool = _read_file(base_dir / spec.file, spec.field, name)
    if not pool:
        raise VariableError(f"variables.{name}: the source gave no values", ("variables", name))
    return pool


def _read_file(path: Path, field: str | None, name: str) -> list[Any]:
    if not path.is_file():
        raise _error(name, "file", f"{path} not found (paths are relative to the protocol file)")
    text = path.read_text()
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise VariableError(f"{path}:{number}: invalid JSON: {error.msg}", ("variables", name, "file")) from error
    elif path.suffix == ".csv":
        records = list(csv.DictReader(text.splitlines()))
    else:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if field is None:
        return records
    missing = next((i for i, r in enumerate(records, 1) if not isinstance(r, dict) or field not in r), None)
    if missing is not None:
        record = records[missing - 1]
        has = f"its fields are {sorted(record)}" if isinstance(record, dict) else f"it is {_short(record)}, not a mapping"
        raise _error(name, "field", f"{path} record {missing} has no field {field!r}; {has}")
    return [r[field] for r in records]
