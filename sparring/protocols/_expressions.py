"""Sandboxed Jinja2 templates and rule expressions, with the judging helpers they may call.

Protocol files never run Python: prompts are Jinja2 templates and rules are Jinja2 expressions,
both evaluated in Jinja2's `ImmutableSandboxedEnvironment` with `StrictUndefined`:

- an unknown name is an error rather than an empty string;
- what the sandbox refuses is an error, never a value: an attribute starting with ``_`` (whether
  or not the value has it, read as ``x._y``, ``x | attr(...)``, ``x["_y"]`` on a non-mapping or
  ``map(attribute=...)``), an unsafe method or callable; so ``x.__class__ is defined`` fails;
- expressions are parsed by the parser that runs them (`parse`), so what validates is what runs;
- nothing is random: Jinja's ``random`` filter (and ``lipsum``) are removed, so a rule judges the
  same messages the same way in play and in every re-judge;
- the context is read-only: ``messages.append(...)``, ``d.update(...)`` and every other method
  that changes a list, dict or set are refused, so an expression can never alter a transcript,
  a later episode or a re-judge;
- cost is bounded (`LIMITS`): each evaluation has a deadline, strings and lists it builds have a
  size limit, ``range`` has a budget per evaluation, and ``**``/``*`` refuse results past a
  size before computing them. Nothing is folded at compile time, so validating a file never
  runs an expression.

Every failure is raised as one `ExpressionError` naming the protocol file, the field and the
expression, so the episode it happened in is marked ``error`` and the run goes on.
"""

from __future__ import annotations

import contextvars
import functools
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import regex as _re
from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_attr
from jinja2.lexer import describe_token
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import JudgeError
from ._answers import answers_match, extract_answer, majority_vote
from ._parsing import match, match_all, number, number_range, numbers
from ._spag_taboo import spag_correct_guess, spag_guess, spag_mentions
from ._taboo import is_correct_guess, mentions, parse_guess


class ExpressionError(JudgeError):
    """A template or expression failed while it was evaluated; the message names where and what.

    Attributes:
        detail (`str`): the message without where (the expression and what went wrong).
    """

    def __init__(self, where: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """What one evaluation of a template or expression may cost.

    Args:
        seconds (`float`, defaults to 2): CPU time of one evaluation, counted on its own thread (so a
            busy machine or the engine holding the GIL does not count against it).
        max_string (`int`, defaults to 1,000,000): characters in a string it builds (and a template's output).
        max_items (`int`, defaults to 100,000): items in a list or tuple it builds.
        max_range (`int`, defaults to 100,000): ``range`` items over the whole evaluation.
        max_int_bits (`int`, defaults to 100,000): bits of an integer built by ``*`` or ``**``.
    """

    seconds: float = 2.0
    max_string: int = 1_000_000
    max_items: int = 100_000
    max_range: int = 100_000
    max_int_bits: int = 100_000


LIMITS = Limits()


class CostError(Exception):
    """An evaluation went past one of `LIMITS`."""


class _Budget:
    """The deadline and range budget of the evaluation under way."""

    def __init__(self, limits: Limits):
        self.deadline = time.thread_time() + limits.seconds
        self.range_left = limits.max_range

    def tick(self) -> None:
        if time.thread_time() > self.deadline:
            raise CostError(f"took longer than {LIMITS.seconds:g} s (the limit of one evaluation)")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("sparring_expression_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def _check_size(value: Any) -> Any:
    """``value``, if it is within the size limits."""
    if isinstance(value, str):
        if len(value) > LIMITS.max_string:
            raise CostError(f"a string of {len(value):,} characters (the limit is {LIMITS.max_string:,})")
    elif isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > LIMITS.max_items:
        raise CostError(f"a collection of {len(value):,} items (the limit is {LIMITS.max_items:,})")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > LIMITS.max_int_bits:
        raise CostError(f"an integer of {value.bit_length():,} bits (the limit is {LIMITS.max_int_bits:,})")
    return value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


def _int_bits(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value.bit_length()


def _guarded_multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
            size = _length(sequence) * max(times, 0)
            limit = LIMITS.max_string if isinstance(sequence, str) else LIMITS.max_items
            if size > limit:
                raise CostError(f"repeating a {type(sequence).__name__} would give {size:,} items (the limit is {limit:,})")
    if _int_bits(left) + _int_bits(right) > LIMITS.max_int_bits + 1:
        raise CostError(f"the product would have over {LIMITS.max_int_bits:,} bits")
    return left * right


def _guarded_power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and not isinstance(base, bool) and exponent > 0 and abs(base) > 1:
        bits = exponent * math.log2(abs(base))
        if bits > LIMITS.max_int_bits:
            raise CostError(f"{base} ** {exponent} would have about {bits:,.0f} bits (the limit is {LIMITS.max_int_bits:,})")
    return base ** exponent


def _guarded_add(left: Any, right: Any) -> Any:
    return _check_size(left + right)


def _guarded_modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_format_widths(left)
    return _check_size(left % right)


def _check_format_widths(template: str) -> None:
    """Refuse format strings whose widths or precisions would build huge strings (``%99999999s``)."""
    for width in _re.findall(r"\d+", template):
        if len(width) > 6 or int(width) > LIMITS.max_string:
            raise CostError(f"the format string asks for a width of {width} (the limit is {LIMITS.max_string:,})")


def _budgeted_range(*args: int) -> range:
    numbers = range(*args)
    budget = _budget.get()
    if budget is not None:
        budget.tick()
        budget.range_left -= len(numbers)
        if budget.range_left < 0:
            raise CostError(f"ranges over {LIMITS.max_range:,} items in all in one evaluation (the limit)")
    elif len(numbers) > LIMITS.max_range:
        raise CostError(f"a range of {len(numbers):,} items (the limit is {LIMITS.max_range:,})")
    return numbers


# The argument (after the value) of built-in filters that sets the size of what they build.
_SIZE_ARGUMENTS = {"center": 1, "indent": 1, "batch": 1, "slice": 1}


def _guarded(function: Callable, name: str) -> Callable:
    """``function`` (a filter or helper) with the deadline checked and its inputs and result size-limited."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        _tick()
        position = _SIZE_ARGUMENTS.get(name)
        if position is not None:
            position += hasattr(function, "jinja_pass_arg")  # the context Jinja passes first
            size = args[position] if len(args) > position else None
            if isinstance(size, int) and size > LIMITS.max_items:
                raise CostError(f"{name}({size}) asks for more than {LIMITS.max_items:,}")
        for value in (*args, *kwargs.values()):
            if isinstance(value, (list, tuple)):  # aggregates (join, sum) of large items
                total = sum(_length(item) for item in value)
                if total > LIMITS.max_string:
                    raise CostError(f"{name} over {total:,} characters or items (the limit is {LIMITS.max_string:,})")
        return _check_size(function(*args, **kwargs))

    return call


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with the cost of each evaluation bounded (see `LIMITS`)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/"})
    binop_overrides = {"*": _guarded_multiply, "**": _guarded_power, "+": _guarded_add, "%": _guarded_modulo}

    def call_binop(self, context, operator_name: str, left: Any, right: Any) -> Any:
        _tick()
        guard = self.binop_overrides.get(operator_name)
        return guard(left, right) if guard is not None else self.binop_table[operator_name](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if attribute.startswith("_"):  # refused whether or not it exists (a missing one would be undefined)
            self.unsafe_undefined(obj, attribute)
        value = super().getattr(obj, attribute)
        if attribute in ("format", "format_map") and isinstance(obj, str):
            _check_format_widths(obj)
        return _check_size(value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """A refused attribute is an error, never a value: Jinja's default, an undefined value, would
        let ``x.__class__ is defined`` quietly be false and ``is not none`` true."""
        raise SecurityError(refusal(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        if isinstance(argument, str) and argument.startswith("_"):
            # ``x["_y"]`` reads a key; where there is none, Jinja would read the attribute instead
            try:
                return _check_size(obj[argument])
            except (TypeError, LookupError):
                if isinstance(obj, Mapping):
                    return self.undefined(obj=obj, name=argument)
                self.unsafe_undefined(obj, argument)
        return _check_size(super().getitem(obj, argument))

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _tick()
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every ``{% for %}`` through `_LOOP_GUARD`, so each iteration checks the deadline."""
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Call(nodes.Name(_LOOP_GUARD, "load", lineno=loop.lineno), [loop.iter], [], None, None,
                                   lineno=loop.lineno)
        tree.set_environment(self)
        return tree


_LOOP_GUARD = "__sparring_loop__"


def refusal(obj: Any, attribute: str) -> str:
    """The message of a refused attribute (the sandbox's `SecurityError`)."""
    key = isinstance(obj, Mapping) and attribute in obj
    return (f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is unsafe "
            "(the sandbox refuses it in a protocol" + (f"; read the key as [{attribute!r}]" if key else "") + ")")


def _attr(environment: Any, obj: Any, name: Any) -> Any:
    """Jinja's ``attr`` filter, refusing a name starting with ``_`` also where the attribute is missing."""
    if isinstance(name, str) and name.startswith("_"):
        raise SecurityError(refusal(obj, name))
    return do_attr(environment, obj, name)


functools.update_wrapper(_attr, do_attr)  # keeps jinja_pass_arg: Jinja passes the environment first


def _guarded_loop(items: Any):
    """The items of a template loop, checking the deadline before each."""
    for item in items:
        _tick()
        yield item


def _with_deadline(search: Callable[..., Any]) -> Callable[[str, str], Any]:
    """A regular-expression helper ``search(text, pattern, timeout=...)``, given what is left of the
    evaluation's deadline (`LIMITS.seconds` outside an evaluation)."""

    @functools.wraps(search)
    def helper(text: str, pattern: str) -> Any:
        budget = _budget.get()
        # the regex module counts wall time: what is left of the CPU budget serves, as a match runs unpreempted
        timeout = max(budget.deadline - time.thread_time(), 0.001) if budget is not None else LIMITS.seconds
        try:
            return search(text, pattern, timeout=timeout)
        except TimeoutError as error:
            raise CostError(f"the regular expression {pattern!r} took longer than the evaluation's {LIMITS.seconds:g} s") from error

    return helper


def _regex(text: str, pattern: str, timeout: float | None = None) -> bool:
    """Whether ``pattern`` occurs in ``text`` (Python regular expressions)."""
    return _re.search(pattern, text or "", timeout=timeout) is not None


def _count(items: list, value: Any) -> int:
    return Counter(items)[value]


HELPERS: dict[str, Callable] = {
    "mentions": mentions,
    "guess": parse_guess,
    "correct_guess": is_correct_guess,
    "spag_mentions": spag_mentions,
    "spag_guess": spag_guess,
    "spag_correct_guess": spag_correct_guess,
    "extract_answer": extract_answer,
    "answers_match": answers_match,
    "majority_vote": majority_vote,
    "regex": _with_deadline(_regex),
    "count": _count,
    "match": _with_deadline(match),
    "match_all": _with_deadline(match_all),
    "number": number,
    "numbers": numbers,
    "number_range": number_range,
}
"""Functions every template and rule expression can call."""

CONTEXT_NAMES = {"role", "roles", "params", "turn", "round", "message", "messages", "true", "false", "none"}
"""Names the engine provides besides the protocol's variables and the helpers."""

_env = _Sandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False, optimized=False)
_env.globals.pop("lipsum", None)  # builds text of any size; nothing a protocol needs
_env.filters.pop("random", None)  # a rule must judge the same messages the same way every time (re-judging)
_env.filters["attr"] = _attr
_env.globals["range"] = _budgeted_range
_env.globals[_LOOP_GUARD] = _guarded_loop
_env.globals.update({name: _guarded(helper, name) for name, helper in HELPERS.items()})
# also as filters: `messages | map(attribute="content") | map("extract_answer")`
_env.filters.update(HELPERS)
_env.filters = {name: _guarded(f, name) for name, f in _env.filters.items()}


def filters() -> set[str]:
    """The names of the filters templates and expressions may use (Jinja's built-ins, less ``random``, and the helpers)."""
    return set(_env.filters)


def tests() -> set[str]:
    """The names of the tests (``x is even``) templates and expressions may use."""
    return set(_env.tests)


def undeclared_names(source: str, expression: bool = False) -> set[str]:
    """Names a template (or expression) uses that it does not define itself.

    Raises:
        `TemplateSyntaxError`: the source does not parse.
    """
    return set(meta.find_undeclared_variables(parse(source, expression))) - {_LOOP_GUARD}


def parse(source: str, expression: bool = False) -> nodes.Template:
    """The Jinja2 syntax tree of a template (or of an expression), without compiling or running it.

    An expression is parsed as `compile_expression` parses it (Jinja's parser, in the state inside
    ``{{ }}``), so what validates is what runs, and an error speaks of the expression the user wrote.

    Raises:
        `TemplateSyntaxError`: the source does not parse (also when it nests too deeply).
    """
    try:
        return _parse_expression(source) if expression else _env.parse(source)
    except RecursionError as error:
        raise TemplateSyntaxError("nested too deeply", 1) from error


def _parse_expression(source: str) -> nodes.Template:
    """An expression as a template printing it (what `meta` and the load checks walk)."""
    parser = Parser(_env, source, state="variable")
    try:
        expression = parser.parse_expression()
        token = parser.stream.current
        if token.type != "eof":
            raise TemplateSyntaxError(f"unexpected {describe_token(token)!r} after a complete expression", token.lineno)
    except TemplateSyntaxError as error:
        message = (error.message or "").replace("unexpected 'end of template'", "unexpected end of the expression")
        message = message.replace("end of template", "end of the expression").replace(
            "'end of print statement'", "'}}'").rstrip(".")
        hint = "an expression is written without {{ }}: `x > 1`, not `{{ x > 1 }}`"
        if source.strip().startswith("{{") and source.strip().endswith("}}"):
            message = hint
        elif "{{" in source or "}}" in source:
            message += f" ({hint})"
        raise TemplateSyntaxError(message, error.lineno) from error
    tree = nodes.Template([nodes.Output([expression], lineno=1)], lineno=1)
    tree.set_environment(_env)
    return tree


def _run(where: str, source: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` under a fresh budget; any failure becomes one `ExpressionError` line."""
    token = _budget.set(_Budget(LIMITS))
    try:
        return work()
    except ExpressionError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a template does wrong is the episode's error
        kind = "over a cost limit" if isinstance(error, (CostError, MemoryError, RecursionError)) else type(error).__name__
        raise ExpressionError(where, f"{_short(source)}: {kind}: {error}") from error
    finally:
        _budget.reset(token)


def render(template: str, context: Mapping[str, Any], where: str = "<template>") -> str:
    """Render a Jinja2 template in the sandbox, within `LIMITS`.

    Raises:
        `ExpressionError`: any failure, as one line naming ``where`` (``FILE: field``) and the template.

    Example:
        >>> render("Hello {{ name }}!", {"name": "Sam"})
        'Hello Sam!'
    """

    def work() -> str:
        compiled = _template(template)
        pieces, size = [], 0
        for piece in compiled.generate(**context):  # streamed, so a runaway loop is stopped as it goes
            _tick()
            size += len(piece)
            if size > LIMITS.max_string:
                raise CostError(f"the output passed {LIMITS.max_string:,} characters (the limit)")
            pieces.append(piece)
        return "".join(pieces)

    return _run(where, template, work)


@functools.lru_cache(maxsize=4096)
def _template(source: str):
    return _env.from_string(source)


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str, where: str = "<expression>") -> Callable[..., Any]:
    """Compile a rule expression once; call the result with the context as keyword arguments.

    Raises:
        `TemplateSyntaxError`: the expression does not parse.
        `ExpressionError` (when called): any failure, as one line naming ``where`` and the expression.

    Example:
        >>> compile_expression("n * 2 > 3")(n=2)
        True
    """
    compiled = _env.compile_expression(source, undefined_to_none=False)

    def evaluate(**context: Any) -> Any:
        def work() -> Any:
            value = compiled(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()  # an unknown name or attribute is an error, not a value
            return value

        return _run(where, source, work)

    return evaluate


def _short(source: str, limit: int = 120) -> str:
    text = " ".join(source.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


__all__ = ["CONTEXT_NAMES", "HELPERS", "LIMITS", "ExpressionError", "Limits", "TemplateSyntaxError",
           "compile_expression", "filters", "parse", "refusal", "render", "tests", "undeclared_names"]
