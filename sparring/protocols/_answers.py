"""Answer extraction and comparison for debate (Du et al. 2023) and SAIE judging.

Pure functions over strings, also exposed as helpers in the sandboxed judge expressions:

- `extract_answer` finds the final answer in a reply: a number, a box or a choice letter;
- `normalize_number` turns a number as written (``"$1,234.0"``, ``"3/4"``) into a canonical one;
- `answers_match` compares a predicted answer with the gold one;
- `gsm8k_gold` reads the gold number of a GSM8K answer (``... #### 42``);
- `majority_vote` picks the most common answer of several agents.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

from ..errors import ArgumentError

KINDS = ("auto", "number", "boxed", "choice")
NUMBER_TOLERANCE = Decimal("1e-6")

# A number as written in prose: optional sign and currency, thousands separators, decimals, a
# fraction or a percent sign. Not inside a word or right after a digit ("5-3" holds 5 and 3).
_NUMBER = (
    r"(?<![\w.])(?:[-\u2212](?=[\\$\d.]))?(?:\\?\$\s?)?-?"
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)(?:\\?%)?"
)
_NUMBER_RE = re.compile(_NUMBER)
# An explicit final answer: "answer is X", "Answer: X", "**Answer:** X", "answer = X", "#### X".
_MARKER = r"(?:\banswer\b\**\s*(?:is\b|:|=)|####)[\s:*]*"
_MARKED_NUMBER_RE = re.compile(_MARKER + r"(" + _NUMBER + r")", re.IGNORECASE)
# A choice letter after a marker: "(c)" in any case, a bare letter only in upper case.
_MARKED_CHOICE_RE = re.compile(r"(?i:" + _MARKER + r")(?:\((?i:([A-J]))\)|([A-H])(?![\w'-]))")
_PAREN_CHOICE_RE = re.compile(r"\(([A-J])\)")  # "(B)": the clear form `auto` looks for
_ANY_CHOICE_RE = re.compile(r"\(([A-Ja-j])\)|(?<![\w(])([A-J])\)")  # "(b)", "(B)" or "B)"
_BOXED = "\\boxed{"
_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")
_GROUPED_NUMBER_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_FRACTION_RE = re.compile(r"([-+]?\d+)/(\d+)")


def normalize_number(text: str) -> str | None:
    """Turn a single number as written into a canonical string.

    Currency and percent signs, thousands separators, trailing zeros and a final period are
    dropped; a fraction (``3/4`` or ``\\frac{3}{4}``) becomes its decimal value.

    Args:
        text (`str`): the number, e.g. ``"$1,234.50"``, ``"-3"``, ``"50%"``, ``"3/4"``.

    Returns:
        `str | None`: the canonical number (``"1234.5"``), or `None` when the text is not
        one number (``"12 apples"``, ``"1,2"``, ``"1/0"``).

    Example:
        >>> normalize_number("1,234.0"), normalize_number("$5"), normalize_number("3/4")
        ('1234', '5', '0.75')
    """
    s = text.strip().rstrip(".").strip()
    s = _FRAC_RE.sub(r"\1/\2", s).replace("\u2212", "-")
    for mark in ("\\$", "$", "\\%", "%", "\\!"):
        s = s.replace(mark, "")
    s = s.strip()
    if _GROUPED_NUMBER_RE.fullmatch(s):
        s = s.replace(",", "")
    if s.startswith("--"):  # "-$-5" and the like
        return None
    fraction = _FRACTION_RE.fullmatch(s)
    if fraction:
        numerator, denominator = Decimal(fraction[1]), Decimal(fraction[2])
        if denominator == 0:
            return None
        return _format(numerator / denominator)
    if not _PLAIN_NUMBER_RE.fullmatch(s):
        return None
    return _format(Decimal(s))  # the pattern admits only finite numbers Decimal parses


def _format(value: Decimal) -> str:
    """Format a finite Decimal without exponent or trailing zeros; integers without a point."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _last_boxed(text: str) -> tuple[int, str] | None:
    """Position and content of the last balanced ``\\boxed{...}`` (nested braces kept)."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth, i = 1, start + len(_BOXED)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return start, text[start + len(_BOXED) : i - 1].strip()
        start = text.rfind(_BOXED, 0, start)  # unbalanced: try the one before
    return None


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in `text` (nested braces kept), or `None`."""
    found = _last_boxed(text)
    return found[1] if found else None


def _extract_number(text: str) -> str | None:
    """The last explicit answer (marker or box) if it holds a number, else the last number."""
    candidates = [(m.start(), normalize_number(m[1])) for m in _MARKED_NUMBER_RE.finditer(text)]
    boxed = _last_boxed(text)
    if boxed is not None:
        numbers = _NUMBER_RE.findall(boxed[1])
        value = normalize_number(boxed[1]) or (normalize_number(numbers[-1]) if numbers else None)
        candidates.append((boxed[0], value))
    candidates = [(position, value) for position, value in candidates if value is not None]
    if candidates:
        return max(candidates)[1]
    for token in reversed(_NUMBER_RE.findall(text)):
        value = normalize_number(token)
        if value is not None:
            return value
    return None


def _extract_choice(text: str) -> str | None:
    """The letter after the last answer marker, else the last ``(X)`` or ``X)``, upper-cased."""
    marked = list(_MARKED_CHOICE_RE.finditer(text))
    if marked:
        return (marked[-1][1] or marked[-1][2]).upper()
    written = list(_ANY_CHOICE_RE.finditer(text))
    if written:
        return (written[-1][1] or written[-1][2]).upper()
    return None


def _single_choice(text: str) -> str | None:
    """A lone letter, ``(b)`` or ``B)`` as the whole text, upper-cased; else `None`."""
    match = re.fullmatch(r"\(?([A-Ja-j])\)?\.?", text.strip())
    return match[1].upper() if match else None


def extract_answer(text: str, kind: str = "auto") -> str | None:
    """Find the final answer in a reply.

    Args:
        text (`str`): the reply.
        kind (`str`, defaults to ``"auto"``): what to look for:
            ``"number"``: the number of the last explicit answer (``answer is X``,
            ``Answer: X``, ``#### X``, ``\\boxed{X}``), else the last number in the text,
            normalised by `normalize_number`;
            ``"boxed"``: the content of the last ``\\boxed{...}``, as written;
            ``"choice"``: a multiple-choice letter (``(B)``, ``B)``, ``answer is B``,
            ``Answer: (c)``), upper-cased;
            ``"auto"``: the box if there is one (as a number or letter when it is one), else
            what the last answer marker names, else a ``(X)`` choice, else a number.

    Returns:
        `str | None`: the answer, or `None` when the text holds none of that kind.

    Example:
        >>> extract_answer("9 * 2 = 18, so the answer is $1,234.", "number")
        '1234'
        >>> extract_answer("I pick (b) after all. Answer: (c)", "choice")
        'C'
    """
    if kind == "number":
        return _extract_number(text)
    if kind == "boxed":
        return extract_boxed(text)
    if kind == "choice":
        return _extract_choice(text)
    _check_kind(kind)
    boxed = extract_boxed(text)
    if boxed is not None:
        return normalize_number(boxed) or _single_choice(boxed) or boxed
    marked = [(m.start(), "choice") for m in _MARKED_CHOICE_RE.finditer(text)]
    marked += [(m.start(), "number") for m in _MARKED_NUMBER_RE.finditer(text)]
    if marked:
        return extract_answer(text, max(marked)[1])
    if _PAREN_CHOICE_RE.search(text):
        return _extract_choice(text)
    return _extract_number(text)


def _check_kind(kind: str) -> None:
    """Raise `ValueError` naming the valid kinds when `kind` is not one."""
    if kind not in KINDS:
        raise ArgumentError(f"unknown answer kind {kind!r}; expected one of {', '.join(KINDS)}")


def _normalize_text(text: str) -> str:
    """Lower-case, collapse whitespace and drop a final period."""
    return " ".join(text.split()).rstrip(".").casefold()


def answers_match(predicted: str | None, gold: str, kind: str = "auto") -> bool:
    """Whether a predicted answer equals the gold one.

    Numbers compare by value (within 1e-6), choices by letter in any case, anything else as
    text with case and whitespace normalised. When `predicted` is not itself a bare number or
    letter, the answer is first extracted from it, so a whole reply can be passed.

    Args:
        predicted (`str | None`): the predicted answer or reply; `None` never matches.
        gold (`str`): the gold answer.
        kind (`str`, defaults to ``"auto"``): ``"number"``, ``"choice"``, ``"boxed"`` (text
            comparison) or ``"auto"`` (number if the gold is a number, choice if it is a
            letter, text otherwise).

    Returns:
        `bool`: `True` when they match.

    Example:
        >>> answers_match("so the answer is 1,234.0", "1234"), answers_match("(b)", "B")
        (True, True)
    """
    _check_kind(kind)
    if predicted is None:
        return False
    if kind == "auto":
        if normalize_number(gold) is not None:
            kind = "number"
        elif _single_choice(gold) is not None:
            kind = "choice"
    if kind == "number":
        pred = normalize_number(predicted) or _extract_number(predicted)
        ref = normalize_number(gold) or _extract_number(gold)
        if pred is None or ref is None:
            return False
        return abs(Decimal(pred) - Decimal(ref)) <= NUMBER_TOLERANCE
    if kind == "choice":
        pred = _single_choice(predicted) or _extract_choice(predicted)
        ref = _single_choice(gold) or _extract_choice(gold)
        return pred is not None and pred == ref
    boxed = extract_boxed(predicted)
    return _normalize_text(predicted if boxed is None else boxed) == _normalize_text(gold)


def gsm8k_gold(answer_field: str) -> str:
    """Read the gold number of a GSM8K answer, which ends with ``#### <number>``.

    Args:
        answer_field (`str`): the dataset's ``answer`` text (rationale, then ``#### 42``).

    Returns:
        `str`: the normalised number, e.g. ``"1000000"`` for ``#### 1,000,000``.

    Raises:
        `ValueError`: when there is no ``####`` or no single number after it.

    Example:
        >>> gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\\n#### 18")
        '18'
    """
    _, sep, tail = answer_field.rpartition("####")
    if not sep:
        raise ArgumentError("no '####' before the final answer")
    value = normalize_number(tail)
    if value is None:
        raise ArgumentError(f"{tail.strip()!r} after '####' is not a number")
    return value


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common answer, ignoring `None`; a tie goes to the one seen first.

    Answers are counted by value: numbers by `normalize_number` (``"18"`` and ``"18.0"`` are
    one answer), other text with case and whitespace normalised. The first answer of the
    winning group is returned as written.

    Args:
        answers (`list[str | None]`): one answer per agent, `None` where none was found.

    Returns:
        `str | None`: the winner, or `None` when every answer is `None`.

    Example:
        >>> majority_vote(["12", None, "15", "15.0", "12", "15"])
        '15'
    """
    keyed = [(normalize_number(a) or _normalize_text(a), a) for a in answers if a is not None]
    if not keyed:
        return None
    counts = Counter(key for key, _ in keyed)
    best = max(counts.values())
    return next(answer for key, answer in keyed if counts[key] == best)
