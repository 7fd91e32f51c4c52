"""Load a protocol from a YAML file or a built-in name, with errors that name file, line and field."""

from __future__ import annotations

import functools
import hashlib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

import regex
from jinja2 import nodes

from ..errors import ProtocolError, SparringError, did_you_mean
from ._expressions import HELPERS, TemplateSyntaxError, compile_expression, filters, parse, tests, undeclared_names
from ._schema import ProtocolSpec
from ._seats import SEATS, SeatError, seating
from ._state import initial_value
from ._variables import VariableError, with_first_value

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

    @functools.cached_property
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
    """Load a protocol by built-in name (e.g. ``adversarial_taboo``), from a YAML file path, or a TextArena
    environment's (``textarena:TicTacToe-v0``, the textarena extra; see `textarena_protocol`).

    Raises:
        `ProtocolError`: the file is missing or invalid; the message names the file, line and field.

    Example:
        >>> load_protocol("adversarial_taboo").spec.schedule.order  # doctest: +SKIP
        ['attacker', 'defender']
    """
    from ._textarena import SOURCE, textarena_protocol

    if isinstance(source, str) and source.startswith(SOURCE):
        return textarena_protocol(source.removeprefix(SOURCE))
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


def named_protocol(name: str) -> Protocol | None:
    """The protocol a transcript's ``protocol.name`` refers to without a file: a built-in's, or a TextArena
    environment's (``textarena.ENV_ID``); None for any other name (a protocol file's).

    Raises:
        `ProtocolError`: a TextArena name where textarena is not installed, or names no environment.
    """
    from ._textarena import NAME, SOURCE

    if name.startswith(NAME):
        return load_protocol(SOURCE + name.removeprefix(NAME))
    return load_protocol(name) if name in builtin_names() else None


MAX_FILE_BYTES = 10_000_000
"""A protocol file's size at most."""

MAX_YAML_NODES = 200_000
"""Values in a protocol file at most, with every YAML alias expanded (so alias bombs are refused);
put long lists in a data file (`variables.NAME.file`)."""


def parse_protocol(text: str, path: Path | None = None) -> Protocol:
    """Validate protocol YAML ``text`` (read from ``path``, if any).

    Raises:
        `ProtocolError`: one line ``FILE:LINE: field.path: what is wrong``.
    """
    where = str(path) if path else "<protocol>"
    if len(text) > MAX_FILE_BYTES:
        raise ProtocolError(f"{where}: the file has {len(text):,} characters, more than a protocol may "
                            f"({MAX_FILE_BYTES:,}); put long lists in a data file (variables.NAME.file)")
    root, data = _read_yaml(text, where)
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}:1: a protocol is a mapping with name, roles, schedule, ...")
    try:
        spec = ProtocolSpec.model_validate(data)
    except ValidationError as error:
        loc, message = _first_problem(error)
        field = ".".join(map(str, loc)) or "(top level)"
        raise ProtocolError(f"{where}:{_line(root, loc)}: {field}: {message}") from error
    _check_roles(spec, root, where)
    _check_templates(spec, root, where)
    protocol = Protocol(spec, text, path)
    _check_values(protocol, root, where)
    if spec.environment is not None:
        from ._textarena import check_environment

        check_environment(protocol)
    return protocol


def _first_problem(error: ValidationError) -> tuple[tuple, str]:
    """The location and message of the schema error to show: a key the schema does not know comes
    first (a misspelt ``wen:`` is why ``when`` is missing), with the closest known key and the list."""
    problems = error.errors()
    unknown = [p for p in problems if p["type"] == "extra_forbidden"]
    if not unknown:
        loc = _field_path(problems[0]["loc"])
        messages = [p["msg"].removeprefix("Value error, ") for p in problems if _field_path(p["loc"]) == loc]
        # a value that fits none of a union's types: one error per type, said as one
        first, *others = dict.fromkeys(messages)
        return loc, " or ".join([first, *(m.removeprefix("Input should be ") for m in others)])
    loc = tuple(unknown[0]["loc"])
    missing = [str(p["loc"][-1]) for p in problems if p["type"] == "missing" and tuple(p["loc"][:-1]) == loc[:-1]]
    known = _keys_at(ProtocolSpec, loc[:-1])
    return loc, (f"unknown key {str(loc[-1])!r}" + did_you_mean(str(loc[-1]), missing or sorted(known or ()))
                 + (f"; the keys here are {sorted(known)}" if known else ""))


_UNION_BRANCH = regex.compile(r"[a-z-]+\[.*\]|int|float|str|bool|none|[a-z]+-union")  # no field has such a name


def _field_path(loc: tuple) -> tuple:
    """An error's location without the names pydantic gives a union's branches (``literal['all']``)."""
    return tuple(part for part in loc if not (isinstance(part, str) and _UNION_BRANCH.fullmatch(part)))


def _keys_at(model: Any, loc: tuple) -> set[str] | None:
    """The keys the schema allows at ``loc`` (a mapping's keys and list indexes stepped over), or None."""
    for part in loc:
        model = _inner_model(model, part)
        if model is None:
            return None
    fields = getattr(model, "model_fields", None)
    return {info.alias or name for name, info in fields.items()} if fields is not None else None


def _inner_model(model: Any, part: Any) -> Any:
    fields = getattr(model, "model_fields", None)
    if fields is not None:
        info = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        return _unwrap(info.annotation) if info is not None else None
    origin, args = typing.get_origin(model), typing.get_args(model)
    if origin in (dict, list, tuple) and args:
        return _unwrap(args[-1] if origin is dict else args[0])
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` as ``X``; a union of several types stays as it is (no keys to list)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _read_yaml(text: str, where: str) -> tuple[yaml.Node, Any]:
    """The YAML node tree and its data; duplicate keys and oversized alias expansions are errors."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_nodes(root, where)
        return root, loader.construct_document(root)
    except yaml.YAMLError as error:
        raise ProtocolError(f"{where}{_yaml_problem(text, error)}") from error
    except RecursionError as error:
        raise ProtocolError(f"{where}: invalid YAML: nested too deeply") from error
    finally:
        loader.dispose()


def _yaml_problem(text: str, error: yaml.YAMLError) -> str:
    """``:LINE: invalid YAML: ...`` for a YAML error, LINE being where the mistake is.

    The parser reports where it noticed the mistake, which can be past it: a flow collection missing
    its ``,`` or closing ``}``/``]`` is noticed at the next value, often on a later line, so the line
    reported is that of the last token before (the end of the entry the mark is missing after);
    a quoted string never closed is noticed at the end of the file, so the line it opens on is reported.
    """
    mark, opened = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
    problem, context = getattr(error, "problem", None) or str(error), getattr(error, "context", None) or ""
    if mark is None:
        return f": invalid YAML: {problem}"
    line = mark.line + 1
    if "flow" in context and opened is not None:
        before = _token_before(text, mark.index)
        if before is not None and before.start_mark.line < mark.line:
            line = max(before.start_mark.line, opened.line) + 1
            kind = "mapping" if "mapping" in context else "sequence"
            closing = "}" if kind == "mapping" else "]"
            return (f":{line}: invalid YAML: a ',' or the closing {closing!r} is missing after this line's last value "
                    f"(the flow {kind} opened on line {opened.line + 1}; the parser stopped on line {mark.line + 1}: "
                    f"{problem})")
    elif "quoted" in context and "end of stream" in problem and opened is not None:
        return f":{opened.line + 1}: invalid YAML: the quoted string that opens on this line is never closed"
    else:
        quoted = _multiline_quoted_before(text, mark.index)
        if quoted is not None and quoted.end_mark.line >= mark.line - 1:
            return (f":{quoted.start_mark.line + 1}: invalid YAML: the quoted string that opens on this line is "
                    f"not closed on it (it runs on to the next {quoted.style} on line {quoted.end_mark.line + 1}, "
                    f"where the parser stopped: {problem}); close it on its own line")
    began = f" ({context} on line {opened.line + 1})" if context and opened is not None and opened.line != mark.line else ""
    hint = next((hint for start, hint in _PROBLEM_HINTS if problem.startswith(start)), "")
    return f":{line}: invalid YAML: {problem}{began}{hint}"


_PROBLEM_HINTS = [  # the parser's wording of a common mistake, and what to do about it
    ("found character '\\t'", "; YAML indents with spaces only: replace the tab with spaces"),
    ("expected <block end>, but found '<block mapping start>'",
     "; this line's indentation matches no key above it: indent it like the keys beside it"),
]


def _multiline_quoted_before(text: str, index: int) -> yaml.ScalarToken | None:
    """The last quoted scalar before character ``index`` if it spans lines (a closing quote forgotten)."""
    last = None
    for token in _tokens_before(text, index):
        if isinstance(token, yaml.ScalarToken) and token.style in ('"', "'"):
            last = token if token.start_mark.line < token.end_mark.line else None
    return last


def _token_before(text: str, index: int) -> yaml.Token | None:
    """The last YAML token that starts before character ``index`` (None if the scanner cannot reach it)."""
    skipped = (yaml.KeyToken, yaml.ValueToken, yaml.BlockEndToken)
    tokens = [token for token in _tokens_before(text, index) if not isinstance(token, skipped)]
    return tokens[-1] if tokens else None


def _tokens_before(text: str, index: int) -> list[yaml.Token]:
    """The YAML tokens that start before character ``index``, as far as the scanner gets."""
    tokens = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= index:
                break
            tokens.append(token)
    except yaml.YAMLError:
        pass
    return tokens


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse duplicate mapping keys, and documents that expand (through aliases) past `MAX_YAML_NODES`."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a cycle counts once; the constructor rejects what cannot be built
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in seen:
                        raise ProtocolError(f"{where}:{key.start_mark.line + 1}: duplicate key {key.value!r} (first on "
                                            f"line {seen[key.value]}): each key may appear once in a mapping")
                    seen[key.value] = key.start_mark.line + 1
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        if total > MAX_YAML_NODES:
            raise ProtocolError(f"{where}:{node.start_mark.line + 1}: this value expands to over {MAX_YAML_NODES:,} "
                                "values (YAML aliases included); a protocol may hold at most that many: put long "
                                "lists in a data file (variables.NAME.file)")
        sizes[id(node)] = total
        return total

    size(root)


def _check_roles(spec: ProtocolSpec, root, where: str) -> None:
    """Every role a schedule, a visibility list, a rule or a reward names must exist."""
    references = []
    for loc, schedule in _schedules(spec):
        references += [((*loc, "order", i), name) for i, name in enumerate(schedule.order)]
        if schedule.first is not None and "{" not in schedule.first and schedule.first not in schedule.order:
            raise ProtocolError(f"{where}:{_line(root, (*loc, 'first'))}: {'.'.join(map(str, (*loc, 'first')))}: "
                                f"{schedule.first!r} is not in this schedule's order {schedule.order}")
    references += [(("rewards", name), name) for name in spec.rewards]
    for role_name, role in spec.roles.items():
        references += [(("roles", role_name, "sees", i), name) for i, name in enumerate(role.sees)] if role.sees != "all" else []
        references += [(("roles", role_name, "on_invalid", "winner"), role.on_invalid.winner)] if role.on_invalid.winner else []
    for group in ("rules", "final"):
        for i, rule in enumerate(getattr(spec.judge, group)):
            references += [(("judge", group, i, "roles", j), name) for j, name in enumerate(rule.roles or [])]
            references += [(("judge", group, i, "winner"), rule.winner)] if rule.winner and not rule.computed_winner else []
    llm = spec.judge.llm
    if llm is not None:
        if llm.role in spec.roles:
            raise ProtocolError(f"{where}:{_line(root, ('judge', 'llm', 'role'))}: judge.llm.role: {llm.role!r} is a "
                                "player role; give the judge another name")
        references += [(("judge", "llm", "verdicts", v, "winner"), o.winner) for v, o in llm.verdicts.items() if o.winner]
    references += [(("update", i, "roles", j), name) for i, u in enumerate(spec.update) for j, name in enumerate(u.roles or [])]
    if spec.judge.default.winner is not None and not spec.judge.default.computed_winner:
        references.append((("judge", "default", "winner"), spec.judge.default.winner))
    references += [(("teams", team, i), name) for team, members in spec.teams.items() for i, name in enumerate(members)]
    for team in spec.teams:
        if team in spec.roles or team in spec.seats:
            raise ProtocolError(f"{where}:{_line(root, ('teams', team))}: teams.{team}: {team!r} is already the name of "
                                f"a {'role' if team in spec.roles else 'seat'}; give the team another name")
    for loc, name in references:
        also = spec.seats if loc[-1] == "first" or "order" in loc else spec.teams if loc[-1] == "winner" else {}
        if name not in spec.roles and name not in also:
            hint = f" (or a {'seat' if also is spec.seats else 'team'}: {list(also)})" if also else ""
            raise ProtocolError(f"{where}:{_line(root, loc)}: {'.'.join(map(str, loc))}: unknown role {name!r}; "
                                f"roles are {sorted(spec.roles)}{hint}")
    _check_seats(spec, root, where)


def _check_seats(spec: ProtocolSpec, root, where: str) -> None:
    """Seats are new names, one per role a model plays; a seat given as a plain name names such a role."""
    if not spec.seats:
        return
    if "seats" in spec.variable_names[:-1]:
        loc = ("variables", "seats") if "seats" in spec.variables else ("variables",)
        raise ProtocolError(f"{where}:{_line(root, loc)}: variables: 'seats' is the seating of a protocol with "
                            "`seats` (seat -> role); name the variable otherwise")
    for seat, source in spec.seats.items():
        prefix = f"{where}:{_line(root, ('seats', seat))}: seats.{seat}"
        if seat in spec.roles or (spec.judge.llm is not None and seat == spec.judge.llm.role):
            raise ProtocolError(f"{prefix}: {seat!r} is a role's name; seats and roles need different names "
                                "(roles are parts, such as 'spy'; seats are places, such as 'p1')")
        if "{" not in source and source not in spec.model_roles:
            raise ProtocolError(f"{prefix}: {source!r} is no role played by a model; give one of {spec.model_roles} "
                                "or a template rendering one")
    for name, role in spec.roles.items():
        if role.model is not None:
            raise ProtocolError(f"{where}:{_line(root, ('roles', name, 'model'))}: roles.{name}.model: in a protocol "
                                "with seats, models sit in seats, not roles (the role a seat plays is drawn per "
                                "episode): give them per seat, --role SEAT=SPEC")
    if len(spec.seats) != len(spec.model_roles):
        raise ProtocolError(f"{where}:{_line(root, ('seats',))}: seats: {len(spec.seats)} seat(s) for "
                            f"{len(spec.model_roles)} role(s) played by a model {spec.model_roles}; give one seat per role")


_SEEN_BY_ROLES = frozenset({"role", "seat", "roles", "params", "turn", "round", "messages", "state", "phase"})
_RULE_NAMES = frozenset({"role", "seat", "roles", "turn", "round", "message", "messages", "state", "phase"})
PROVIDED: dict[str, frozenset[str]] = {
    "system": _SEEN_BY_ROLES,
    "prompt": _SEEN_BY_ROLES,
    "script": _SEEN_BY_ROLES,
    "valid": _SEEN_BY_ROLES | {"message"},
    "invalid_prompt": _SEEN_BY_ROLES | {"message"},
    "params": frozenset(),
    "initial": frozenset(),
    "rule": _RULE_NAMES,
    "outcome": _RULE_NAMES,
    "update": _RULE_NAMES,
    "reward": frozenset({"role", "winner", "reason", "scores", "messages", "state"}),
    "judge": frozenset({"role", "roles", "messages", "transcript", "verdicts"}),
    "labels": frozenset({"speaker"}),
}
"""The names each kind of field is given besides the protocol's variables and the helpers."""


def _fields(spec: ProtocolSpec) -> list[tuple[tuple, str, str, str | None]]:
    """Every template and expression of a protocol: ``(location, source, kind, role)``."""
    fields: list[tuple[tuple, str, str, str | None]] = []
    for name, role in spec.roles.items():
        for kind in ("system", "prompt", "script", "valid"):
            if getattr(role, kind) is not None:
                fields.append((("roles", name, kind), getattr(role, kind), kind, name))
        if role.valid is not None:
            fields.append((("roles", name, "invalid_prompt"), role.invalid_prompt, "invalid_prompt", name))
        if role.to is not None:
            fields.append((("roles", name, "to"), role.to, "update", name))
        fields += [(("roles", name, "params", k), v, "params", name) for k, v in role.params.items() if isinstance(v, str)]
    for role, templates in spec.training.system_variants.items():
        fields += [(("training", "system_variants", role, i), t, "system", role) for i, t in enumerate(templates)]
    if spec.training.variation is not None:
        variation = spec.training.variation
        fields += [(("training", "variation", "instructions", role), text, "system", role)
                   for role, text in variation.instructions.items()]
        fields += [(("training", "variation", "speaker_labels", i, side), getattr(labels, side), "labels", None)
                   for i, labels in enumerate(variation.speaker_labels) for side in ("own", "others")]
    for group in ("rules", "final"):
        for i, rule in enumerate(getattr(spec.judge, group)):
            fields.append((("judge", group, i, "when"), rule.when, "rule", None))
            fields += _outcome_fields(("judge", group, i), rule)
    fields += _outcome_fields(("judge", "default"), spec.judge.default)
    fields += [(("state", key), value, "initial", None) for key, value in spec.state.items() if isinstance(value, str)]
    for loc, schedule in [*_schedules(spec), *([(("schedule",), spec.schedule)] if spec.schedule.phases else [])]:
        fields += [((*loc, "next"), schedule.next, "update", None)] if schedule.next is not None else []
        fields += [((*loc, "until"), schedule.until, "update", None)] if schedule.until is not None else []
        fields += [((*loc, "first"), schedule.first, "outcome", None)] if schedule.first and "{" in schedule.first else []
    for i, update in enumerate(spec.update):
        fields += [(("update", i, "when"), update.when, "update", None)] if update.when is not None else []
        fields += [(("update", i, "set", key), source, "update", None) for key, source in update.set.items()]
    fields += [(("rewards", role), expr, "reward", role) for role, expr in spec.rewards.items()]
    fields += [(("seats", seat), source, "initial", None) for seat, source in spec.seats.items() if "{" in source]
    if spec.judge.llm is not None:
        fields += [(("judge", "llm", "system"), spec.judge.llm.system, "judge", None),
                   (("judge", "llm", "prompt"), spec.judge.llm.prompt, "judge", None)]
    return fields


def _schedules(spec: ProtocolSpec) -> list[tuple[tuple, Any]]:
    """The schedule, or each of its phases, with its location in the file."""
    if spec.schedule.phases:
        return [(("schedule", "phases", i), phase) for i, phase in enumerate(spec.schedule.phases)]
    return [(("schedule",), spec.schedule)]


def _outcome_fields(loc: tuple, rule) -> list[tuple[tuple, str, str, str | None]]:
    """A rule's computed ``winner`` and templated ``reason``."""
    fields = [((*loc, "winner"), rule.winner, "outcome", None)] if rule.computed_winner else []
    return fields + ([((*loc, "reason"), rule.reason, "outcome", None)] if "{" in rule.reason else [])


def _check_templates(spec: ProtocolSpec, root, where: str) -> None:
    """Parse every template and expression; reject names the field is not given, unknown ``params``
    keys and regular expressions that do not compile."""
    variation_roles = spec.training.variation.instructions if spec.training.variation is not None else {}
    for loc, role in [*((("training", "system_variants", r), r) for r in spec.training.system_variants),
                      *((("training", "variation", "instructions", r), r) for r in variation_roles)]:
        if role not in spec.roles:
            raise ProtocolError(f"{where}:{_line(root, loc)}: {'.'.join(loc)}: unknown role {role!r}; "
                                f"roles are {sorted(spec.roles)}")
    for loc, source, kind, role in _fields(spec):
        expression = kind in ("rule", "reward", "update", "valid")
        prefix = f"{where}:{_line(root, loc)}: {'.'.join(map(str, loc))}"
        try:
            tree = parse(source, expression)
            names = undeclared_names(source, expression)
        except TemplateSyntaxError as error:
            raise ProtocolError(f"{prefix}: bad {'expression' if expression else 'template'}: "
                                f"{_syntax_problem(error.message or '')}") from error
        given = PROVIDED[kind] | {"true", "false", "none"}
        variables = set() if kind == "labels" else set(spec.variable_names)  # labels see the speaker alone
        unknown = sorted(names - variables - given - set(HELPERS))
        if unknown:
            hint = " (it is given to rules only: the last message's text)" if unknown[0] == "message" else ""
            raise ProtocolError(f"{prefix}: undefined name {unknown[0]!r}{hint}; this field may use the variables "
                                f"{sorted(variables)}, {sorted(PROVIDED[kind])} and the helpers {sorted(HELPERS)}")
        if kind in ("system", "prompt", "script", "valid", "invalid_prompt"):
            for key in _keys_read(tree, "params"):
                if key not in spec.roles[role].params:
                    raise ProtocolError(f"{prefix}: params.{key}: role {role!r} has no such parameter; its params are "
                                        f"{sorted(spec.roles[role].params)} (roles.{role}.params)")
        declared = set(spec.state) | {key for update in spec.update for key in update.set}
        for key in _keys_read(tree, "state") - declared:
            raise ProtocolError(f"{prefix}: state.{key}: the state has no such key; it has {sorted(declared)} "
                                "(declared in `state` or set by `update`)")
        if loc[-1] in ("to", "next") and kind == "update":
            allowed = set(spec.roles) if loc[-1] == "to" else set(spec.roles) | set(spec.seats or ())
            for name in _constant_results(tree) - allowed - {"", "none"}:
                raise ProtocolError(f"{prefix}: gives {name!r}, which is no role; roles are {sorted(spec.roles)}"
                                    + (" (or none to end)" if loc[-1] == "next" else " (or none: everyone)"))
        for attribute in _private_attributes(tree):
            raise ProtocolError(f"{prefix}: reads the attribute {attribute!r}: names starting with '_' are refused by "
                                "the sandbox (protocols see values and the helpers, not Python's internals)")
        for pattern in _constant_patterns(tree):
            if "\b" in pattern:
                raise ProtocolError(
                    f"{prefix}: the regular expression {pattern!r} holds a backspace character where a word boundary "
                    r"\b was probably meant: its backslash was decoded once too often (a double-quoted YAML string "
                    r"decodes backslashes, then the expression's string does). Write \\b in an unquoted or "
                    r"single-quoted YAML string or a block (>-), \\\\b in a double-quoted one")
            try:
                regex.compile(pattern)
            except regex.error as error:
                raise ProtocolError(f"{prefix}: the regular expression {pattern!r} does not compile: {error}") from error


def _syntax_problem(message: str) -> str:
    """A Jinja syntax error's message, with the closest known name for an unknown filter or test."""
    message = message.rstrip(".")
    unknown = regex.match(r"No (filter|test) named '([^']*)'", message)
    if unknown is None:
        return message
    kind, name = unknown.groups()
    if kind == "filter" and name == "random":
        return (f"{message} (a rule must judge the same messages the same way each time, so there is no `random`; "
                "draw random values as variables)")
    known = sorted(filters() if kind == "filter" else tests())
    return message + (did_you_mean(name, known) or f"; the {kind}s are {known}")


def _constant_results(tree: nodes.Node) -> set[str]:
    """The texts an expression gives where it gives a constant: ``'a'``, ``['a', 'b']``, either branch of
    ``'a' if x else 'b'``; what is computed at run time is not looked at."""
    def results(node: nodes.Node) -> set[str]:
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            return {node.value.strip()}
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return set().union(*(results(item) for item in node.items))
        if isinstance(node, nodes.CondExpr):
            return results(node.expr1) | (results(node.expr2) if node.expr2 is not None else set())
        return set()

    output = tree.body[0] if tree.body else None
    return results(output.nodes[0]) if isinstance(output, nodes.Output) and output.nodes else set()


# Filters that read an attribute of each item, and the position of that argument (after the value);
# each also takes it as ``attribute=``.
_ATTRIBUTE_ARGUMENTS = {"attr": 0, "selectattr": 0, "rejectattr": 0, "groupby": 0, "sum": 0, "sort": 2,
                        "unique": 1, "min": 1, "max": 1, "map": None}


def _private_attributes(tree: nodes.Node) -> list[str]:
    """The attributes starting with ``_`` that a template reads where it names them as constants
    (``x.__class__``, ``x | attr('_y')``, ``map(attribute='a.__dict__')``, ``x['__class__']``, ``ns._n``):
    the sandbox refuses every one, so a protocol using one can never run."""
    found = [node.attr for node in tree.find_all((nodes.Getattr, nodes.NSRef)) if node.attr.startswith("_")]
    for node in tree.find_all(nodes.Getitem):  # a dunder is no data key: x["__class__"] reads the attribute
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("__"):
            found.append(node.arg.value)
    for node in tree.find_all(nodes.Filter):
        if node.name not in _ATTRIBUTE_ARGUMENTS:
            continue
        position = _ATTRIBUTE_ARGUMENTS[node.name]
        if node.name == "map" and node.args and isinstance(node.args[0], nodes.Const) and node.args[0].value == "attr":
            position = 1  # map("attr", "name")
        arguments = [keyword.value for keyword in node.kwargs if keyword.key == "attribute"]
        arguments += [node.args[position]] if position is not None and len(node.args) > position else []
        for argument in arguments:
            if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
                found += [part for part in argument.value.split(".") if part.startswith("_")]
    return found


def _keys_read(tree: nodes.Node, name: str) -> set[str]:
    """The constant keys a template reads from the mapping ``name`` (``params.x``, ``state["x"]``)."""
    keys = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node.node, nodes.Name) and node.node.name == name:
            key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            if isinstance(key, str) and not (isinstance(node, nodes.Getattr) and hasattr(dict, key)):
                keys.add(key)  # (``params.items()`` is a method, not a key)
    return keys


_PATTERN_HELPERS = ("regex", "match", "match_all")


def _constant_patterns(tree: nodes.Node) -> list[str]:
    """The constant patterns given to the pattern helpers (`_PATTERN_HELPERS`), as a call or as a filter."""
    patterns = []
    for node in tree.find_all((nodes.Call, nodes.Filter)):
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in _PATTERN_HELPERS:
            argument = node.args[1] if len(node.args) > 1 else None
        elif isinstance(node, nodes.Filter) and node.name in _PATTERN_HELPERS:
            argument = node.args[0] if node.args else None
        else:
            continue
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
            patterns.append(argument.value)
    return patterns


def _check_values(protocol: Protocol, root, where: str) -> None:
    """Resolve the data files and built-in lists, then evaluate each reward on a sample of them:
    it must give a number for every possible winner."""
    spec = protocol.spec
    sample: dict[str, Any] | None = {}
    for name in spec.variables:
        try:
            sample = with_first_value(protocol, name, sample)
        except VariableError as error:
            raise ProtocolError(f"{where}:{_line(root, error.loc)}: {error}") from error
    if sample is None:
        return  # a Hugging Face dataset: read when a run starts, so rewards cannot be tried here
    if spec.seats:
        try:
            sample[SEATS] = seating(protocol, sample)
        except SeatError as error:
            raise ProtocolError(f"{where}:{_line(root, ('seats', error.seat))}: seats.{error.seat}: {error.detail} "
                                "(on a sample episode)") from error
    state = {}
    for key in spec.state:
        try:
            state[key] = initial_value(protocol, key, sample)
        except SparringError as error:
            raise ProtocolError(f"{where}:{_line(root, ('state', key))}: state.{key}: fails on a sample episode: "
                                f"{getattr(error, 'detail', error)}") from error
    rules = [*spec.judge.rules, *spec.judge.final, spec.judge.default]
    winners = [*spec.roles, *spec.teams, None]
    outcomes = {(winner, rule.reason, ()) for rule in rules for winner in (winners if rule.computed_winner else [rule.winner])}
    outcomes |= {(role.on_invalid.winner, role.on_invalid.reason, ()) for role in spec.roles.values() if role.valid}
    if spec.judge.llm is not None:  # a deciding verdict comes with every score; other outcomes with none
        outcomes |= {(verdict.winner, verdict.reason, tuple(spec.judge.llm.scores))
                     for verdict in spec.judge.llm.verdicts.values() if verdict.decides}
    for role, source in spec.rewards.items():
        loc = ("rewards", role)
        check = compile_expression(source, protocol.where(".".join(loc)))
        # what is played (messages, the state they lead to) has no sample: such a reward is checked where it evaluates
        played = bool(undeclared_names(source, expression=True) & {"messages", "state"})
        for winner, reason, scored in sorted(outcomes, key=str):
            try:
                value = check(**sample, role=role, winner=winner, reason=reason, scores=dict.fromkeys(scored, 0.0),
                              messages=[], state=state)
            except SparringError as error:
                if played:
                    continue
                raise ProtocolError(f"{where}:{_line(root, loc)}: rewards.{role}: fails on a sample episode "
                                    f"(winner {winner!r}, reason {reason!r}): {getattr(error, 'detail', error)}") from error
            if isinstance(value, str) or not isinstance(value, (int, float)):
                raise ProtocolError(f"{where}:{_line(root, loc)}: rewards.{role}: gives {value!r} "
                                    f"({type(value).__name__}) for winner {winner!r}, reason {reason!r}; a reward must be a number")


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
