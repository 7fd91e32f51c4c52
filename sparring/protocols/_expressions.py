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

from ..errors import JudgeError
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


class ExpressionError(JudgeError):
    """A template or expression failed while it was evaluated; the message names where and what."""


def render(template: str, context: dict[str, Any], where: str = "<template>") -> str:
    """Render a Jinja2 template in the sandbox.

    Raises:
        `ExpressionError`: any failure, as one line naming ``where`` (``FILE: field``) and the template.
    """
    try:
        return _env.from_string(template).render(**context)
    except Exception as error:  # noqa: BLE001 - whatever a template does wrong is the episode's error
        raise ExpressionError(f"{where}: {_short(template)}: {type(error).__name__}: {error}") from error


def compile_expression(source: str, where: str = "<expression>") -> Callable[..., Any]:
    """Compile a rule expression once; call the result with the context as keyword arguments.

    Raises (when called):
        `ExpressionError`: any failure, as one line naming ``where`` and the expression.
    """
    compiled = _env.compile_expression(source, undefined_to_none=False)

    def evaluate(**context: Any) -> Any:
        try:
            return compiled(**context)
        except Exception as error:  # noqa: BLE001
            raise ExpressionError(f"{where}: {_short(source)}: {type(error).__name__}: {error}") from error

    return evaluate


def _short(source: str, limit: int = 120) -> str:
    text = " ".join(source.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


__all__ = ["CONTEXT_NAMES", "HELPERS", "ExpressionError", "TemplateSyntaxError", "compile_expression", "render", "undeclared_names"]
