"""Sandboxed Jinja2 templates and rule expressions, with the judging helpers they may call.

Protocol files never run Python: prompts are Jinja2 templates and rules are Jinja2 expressions,
both evaluated in Jinja2's `SandboxedEnvironment` with `StrictUndefined`, so an unknown name is
an error rather than an empty string.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from ._answers import answers_match, extract_answer, majority_vote
from ._taboo import is_correct_guess, mentions, parse_guess


def _regex(text: str, pattern: str) -> bool:
    return re.search(pattern, text or "") is not None


def _count(items: list, value: Any) -> int:
    return Counter(items)[value]


HELPERS: dict[str, Callable] = {
    "mentions": mentions,
    "guess": parse_guess,
    "correct_guess": is_correct_guess,
    "extract_answer": extract_answer,
    "answers_match": answers_match,
    "majority_vote": majority_vote,
    "regex": _regex,
    "count": _count,
}
"""Functions every template and rule expression can call."""

CONTEXT_NAMES = {"role", "roles", "params", "turn", "round", "message", "messages", "true", "false", "none"}
"""Names the engine provides besides the protocol's variables and the helpers."""

_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
_env.globals.update(HELPERS)
_env.filters.update(HELPERS)  # also as filters: `messages | map(attribute="content") | map("extract_answer")`


def undeclared_names(source: str, expression: bool = False) -> set[str]:
    """Names a template (or expression) uses that it does not define itself.

    Raises:
        `TemplateSyntaxError`: the source does not parse.
    """
    return set(meta.find_undeclared_variables(_env.parse("{{ (" + source + ") }}" if expression else source)))


def render(template: str, context: dict[str, Any]) -> str:
    """Render a Jinja2 template in the sandbox."""
    return _env.from_string(template).render(**context)


def compile_expression(source: str) -> Callable[..., Any]:
    """Compile a rule expression once; call the result with the context as keyword arguments."""
    return _env.compile_expression(source, undefined_to_none=False)


__all__ = ["CONTEXT_NAMES", "HELPERS", "TemplateSyntaxError", "compile_expression", "render", "undeclared_names"]
