"""Sample a protocol's variables for each episode, reproducibly from the run's seed."""

from __future__ import annotations

import copy
import csv
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError
from ._questions import load_questions
from ._schema import VariableSpec
from ._taboo import load_taboo_words

if TYPE_CHECKING:
    from ._loader import Protocol

BUILTIN_LISTS = {"taboo_words": load_taboo_words}


class VariableSampler:
    """Loads each variable's source once and draws values for episode ``index``.

    Args:
        protocol (`Protocol`): whose variables to sample.
        overrides (`dict[str, Any]`, defaults to {}): fixed values (``--set VAR=VALUE``) or lists.
        seed (`int`, defaults to 0): the run's seed; episode ``i`` always gets the same values.
    """

    def __init__(self, protocol: "Protocol", overrides: dict[str, Any] | None = None, seed: int = 0):
        self.seed = seed
        self._fixed = dict(overrides or {})
        unknown = set(self._fixed) - set(protocol.spec.variables)
        if unknown:
            raise ProtocolError(f"--set {sorted(unknown)[0]}: {protocol.name} has no such variable; "
                                f"its variables are {sorted(protocol.spec.variables)}")
        self._pools = {name: (spec, load_pool(spec, protocol.base_dir, name)) for name, spec in protocol.spec.variables.items()
                       if name not in self._fixed}

    def sample(self, index: int) -> dict[str, Any]:
        """The variables of episode ``index``: a fresh copy, so nothing one episode does reaches another."""
        rng = random.Random(f"{self.seed}:{index}")
        values = {}
        for name, (spec, pool) in self._pools.items():
            values[name] = pool[index % len(pool)] if spec.order == "sequential" else rng.choice(pool)
        return copy.deepcopy({**values, **self._fixed})


def load_pool(spec: VariableSpec, base_dir: Path, name: str, offline: bool = False) -> list[Any] | None:
    """The values one variable is drawn from.

    Args:
        offline (`bool`, defaults to False): do not read Hugging Face datasets (validation): return
            None for a ``questions`` source that is not ``arithmetic`` or a local file.

    Raises:
        `ProtocolError`: the source is missing, unreadable or empty; names the field and the fix.
    """
    if spec.values is not None:
        pool = list(spec.values)
    elif spec.builtin is not None:
        if spec.builtin not in BUILTIN_LISTS:
            raise ProtocolError(f"variables.{name}.builtin: unknown list {spec.builtin!r}; known: {sorted(BUILTIN_LISTS)}")
        pool = list(BUILTIN_LISTS[spec.builtin]())
    elif spec.questions is not None:
        source = spec.questions
        if not source.startswith("arithmetic") and (base_dir / source).exists():
            source = str(base_dir / source)
        elif source.endswith((".jsonl", ".json")):
            raise ProtocolError(f"variables.{name}.questions: {base_dir / source} not found (paths are relative to "
                                "the protocol file)")
        elif offline and not source.startswith("arithmetic"):
            return None
        pool = [q.model_dump() for q in load_questions(source)]
    else:
        pool = _read_file(base_dir / spec.file, spec.field, name)
    if not pool:
        raise ProtocolError(f"variables.{name}: the source gave no values")
    return pool


def _read_file(path: Path, field: str | None, name: str) -> list[Any]:
    if not path.is_file():
        raise ProtocolError(f"variables.{name}.file: {path} not found (paths are relative to the protocol file)")
    text = path.read_text()
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ProtocolError(f"{path}:{number}: invalid JSON: {error.msg}") from error
    elif path.suffix == ".csv":
        records = list(csv.DictReader(text.splitlines()))
    else:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if field is None:
        return records
    missing = next((i for i, r in enumerate(records, 1) if field not in r), None)
    if missing is not None:
        raise ProtocolError(f"{path}: record {missing} has no field {field!r} (variables.{name}.field)")
    return [r[field] for r in records]
