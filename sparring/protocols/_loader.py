"""Load a protocol from a YAML file or a built-in name, with errors that name file, line and field."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from ..errors import ProtocolError
from ._expressions import CONTEXT_NAMES, HELPERS, TemplateSyntaxError, compile_expression, undeclared_names
from ._schema import ProtocolSpec

BUILTIN_DIR = resources.files("sparring.protocols") / "builtin"


@dataclass(frozen=True)
class Protocol:
    """A validated protocol and where it came from.

    Args:
        spec (`ProtocolSpec`): the parsed file.
        text (`str`): the YAML source; its hash identifies the protocol version in transcripts.
        path (`Path | None`): the file, for resolving relative data files (None for a string).
    """

    spec: ProtocolSpec
    text: str
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def where(self, field: str) -> str:
        """``FILE: field`` for error messages: the protocol file (or name) and a field path."""
        return f"{self.path or self.name}: {field}"


def builtin_names() -> list[str]:
    """Names of the protocols shipped with sparring."""
    return sorted(p.name.removesuffix(".yaml") for p in BUILTIN_DIR.iterdir() if p.name.endswith(".yaml"))


def load_protocol(source: str | Path) -> Protocol:
    """Load a protocol by built-in name (e.g. ``adversarial_taboo``) or from a YAML file path.

    Raises:
        `ProtocolError`: the file is missing or invalid; the message names the file, line and field.

    Example:
        >>> load_protocol("adversarial_taboo").spec.schedule.order  # doctest: +SKIP
        ['attacker', 'defender']
    """
    path = Path(source)
    if path.suffix not in (".yaml", ".yml"):
        builtin = BUILTIN_DIR / f"{source}.yaml"
        if not builtin.is_file():
            raise ProtocolError(f"unknown protocol {str(source)!r}: built-ins are {', '.join(builtin_names())}, "
                                "or give a path to a .yaml file")
        return parse_protocol(builtin.read_text(), Path(str(builtin)))
    if not path.is_file():
        raise ProtocolError(f"protocol file not found: {path}")
    return parse_protocol(path.read_text(), path)


def parse_protocol(text: str, path: Path | None = None) -> Protocol:
    """Validate protocol YAML ``text`` (read from ``path``, if any)."""
    where = str(path) if path else "<protocol>"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ProtocolError(f"{where}{line}: invalid YAML: {getattr(error, 'problem', error)}") from error
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}:1: a protocol is a mapping with name, roles, schedule, ...")
    try:
        spec = ProtocolSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        field = ".".join(map(str, loc)) or "(top level)"
        raise ProtocolError(f"{where}:{_line(root, loc)}: {field}: {message}") from error
    _check_roles(spec, root, where)
    _check_templates(spec, root, where)
    return Protocol(spec, text, path)


def _check_roles(spec: ProtocolSpec, root, where: str) -> None:
    """Every role a schedule, a visibility list, a rule or a reward names must exist."""
    references = [(("schedule", "order", i), name) for i, name in enumerate(spec.schedule.order)]
    references += [(("rewards", name), name) for name in spec.rewards]
    for role_name, role in spec.roles.items():
        references += [(("roles", role_name, "sees", i), name) for i, name in enumerate(role.sees)] if role.sees != "all" else []
    for group in ("rules", "final"):
        for i, rule in enumerate(getattr(spec.judge, group)):
            references += [(("judge", group, i, "roles", j), name) for j, name in enumerate(rule.roles or [])]
            references += [(("judge", group, i, "winner"), rule.winner)] if rule.winner is not None else []
    llm = spec.judge.llm
    if llm is not None:
        if llm.role in spec.roles:
            raise ProtocolError(f"{where}:{_line(root, ('judge', 'llm', 'role'))}: judge.llm.role: {llm.role!r} is a "
                                "player role; give the judge another name")
        references += [(("judge", "llm", "verdicts", v, "winner"), o.winner) for v, o in llm.verdicts.items() if o.winner]
    if spec.judge.default.winner is not None:
        references.append((("judge", "default", "winner"), spec.judge.default.winner))
    for loc, name in references:
        if name not in spec.roles:
            raise ProtocolError(f"{where}:{_line(root, loc)}: {'.'.join(map(str, loc))}: unknown role {name!r}; "
                                f"roles are {sorted(spec.roles)}")


def _check_templates(spec: ProtocolSpec, root, where: str) -> None:
    """Parse every template and expression; reject names that are neither variables nor provided."""
    known = set(spec.variables) | CONTEXT_NAMES | set(HELPERS) | {"winner", "reason"}
    checks: list[tuple[tuple, str, bool]] = []
    for name, role in spec.roles.items():
        checks.append((("roles", name, "system"), role.system, False))
        if role.prompt is not None:
            checks.append((("roles", name, "prompt"), role.prompt, False))
        checks += [(("roles", name, "params", k), v, False) for k, v in role.params.items() if isinstance(v, str)]
    for group in ("rules", "final"):
        checks += [(("judge", group, i, "when"), rule.when, True) for i, rule in enumerate(getattr(spec.judge, group))]
    checks += [(("rewards", role), expr, True) for role, expr in spec.rewards.items()]
    if spec.judge.llm is not None:
        checks += [(("judge", "llm", "system"), spec.judge.llm.system, False), (("judge", "llm", "prompt"), spec.judge.llm.prompt, False)]
    for loc, source, expression in checks:
        field = ".".join(map(str, loc))
        try:
            names = undeclared_names(source, expression)
            if expression:
                compile_expression(source)
        except TemplateSyntaxError as error:
            raise ProtocolError(f"{where}:{_line(root, loc)}: {field}: bad {'expression' if expression else 'template'}: "
                                f"{error.message}") from error
        unknown = sorted(names - known)
        if unknown:
            raise ProtocolError(f"{where}:{_line(root, loc)}: {field}: undefined template variable {unknown[0]!r}; "
                                f"defined are the variables {sorted(spec.variables)}, the context names "
                                f"{sorted(CONTEXT_NAMES - {'true', 'false', 'none'})} and helpers {sorted(HELPERS)}")


def _line(node, loc: Iterable[Any]) -> int:
    """The 1-based line of the YAML node at path ``loc`` (the deepest node that exists)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line
