"""Read a move out of a message: regular-expression captures, and numbers in digits or in words.

Pure functions over strings, also exposed as helpers in templates and rule expressions (see
``_expressions.HELPERS``, which gives the regular-expression helpers the evaluation's deadline):

- `match` and `match_all` return capture groups (`Groups`: a tuple whose named groups are also
  reachable by name);
- `number`, `numbers` and `number_range` read numbers as people write them (``-3``, ``1,234.5``,
  ``twenty-one``, ``one hundred and five``, ``2.5 million``) and ranges (``10-20``,
  ``between ten and twenty``). One scanner (`_scan`) reads them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any, NamedTuple

import regex as _re


class Groups(tuple):
    """The capture groups of one match: a tuple (``m[0]`` is the first group), whose named groups are
    also reachable by name (``m.mine`` or ``m["mine"]``). A group that took no part in the match is
    None. A group named like a tuple method (``count``, ``index``) is reached as ``m["count"]``.

    Example:
        >>> m = match("I offer 60 for me", r"offer (?P<mine>\\d+)")
        >>> m[0], m.mine, m["mine"], list(m)
        ('60', '60', '60', ['60'])
    """

    _named: dict[str, str | None]

    def __new__(cls, groups: Iterable[str | None], named: Mapping[str, str | None]) -> "Groups":
        self = super().__new__(cls, groups)
        self._named = dict(named)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self._named[key] if isinstance(key, str) else super().__getitem__(key)

    def __getattr__(self, name: str) -> str | None:
        try:
            return self.__dict__["_named"][name]
        except KeyError:
            raise AttributeError(f"the pattern has no group named {name!r}") from None

    def __reduce__(self) -> tuple:  # copies and pickles keep the names
        return Groups, (tuple(self), self._named)


def match(text: str | None, pattern: str, timeout: float | None = None) -> Groups | None:
    """The capture groups of the first match of ``pattern`` in ``text``, or None when there is none.

    A pattern without groups gives the whole match as its one group. ``pattern`` is a Python
    regular expression (the ``regex`` module); ``(?i)`` makes it ignore case.

    Raises:
        `TimeoutError`: the search took longer than ``timeout`` seconds.

    Example:
        >>> match("My offer: 60 for me, 40 for you", r"(\\d+) for me, (\\d+) for you")
        ('60', '40')
        >>> match("I guess 42", r"\\d+"), match("no digits", r"\\d+")
        (('42',), None)
    """
    found = _re.search(pattern, text or "", timeout=timeout)
    return None if found is None else _groups(found)


def match_all(text: str | None, pattern: str, timeout: float | None = None) -> list[Groups]:
    """The capture groups of every match of ``pattern`` in ``text``, in order (non-overlapping).

    Raises:
        `TimeoutError`: the search took longer than ``timeout`` seconds.

    Example:
        >>> match_all("a=1, b=2", r"(?P<key>\\w)=(?P<value>\\d)")
        [('a', '1'), ('b', '2')]
        >>> [m.value for m in match_all("a=1, b=2", r"(?P<key>\\w)=(?P<value>\\d)")]
        ['1', '2']
    """
    return [_groups(found) for found in _re.finditer(pattern, text or "", timeout=timeout)]


def _groups(found: Any) -> Groups:
    return Groups(found.groups() if found.re.groups else (found.group(0),), found.groupdict())


def number(text: str | None) -> int | float | None:
    """The first number in ``text``, or None when it holds none.

    Digits may have a sign (``-3``, ``−3``, ``+3``), thousands separators (``1,234``) and decimals
    (``2.5``: a float; everything else is an int); English number words count too, up to the
    trillions (``seven``, ``twenty-one``, ``twenty one``, ``one hundred and five``, ``a thousand``,
    ``minus five``), as does a scale after digits (``2.5 million``). Not read as numbers: digits
    inside a word (``mp3``, ``A1``) or after a period (``v1.2``), ordinals (``first``; but ``42nd`` is
    42), fractions (``3/4`` is 3 and 4), exponents and numbers of over 100 digits. Words count as
    numbers wherever they are: ``"the one I like"`` holds 1.

    Example:
        >>> number("I guess 42."), number("Is it higher than fifty?"), number("no idea")
        (42, 50, None)
        >>> number("one hundred and five"), number("-1,234.5"), number("about 2.5 million")
        (105, -1234.5, 2500000.0)
    """
    found = _scan(text or "")
    return found[0].value if found else None


def numbers(text: str | None) -> list[int | float]:
    """Every number in ``text``, in order (read as `number` reads one).

    Example:
        >>> numbers("My offer: 60 for me, 40 for you")
        [60, 40]
        >>> numbers("twenty-one, seven and two thousand and ten; 60/40")
        [21, 7, 2010, 60, 40]
    """
    return [found.value for found in _scan(text or "")]


def number_range(text: str | None) -> list[int | float] | None:
    """The first range stated in ``text`` as ``[low, high]`` (the smaller first), or None.

    A range is two numbers (read as `number` reads them) joined by ``-``, ``–``, ``—``, ``to``,
    ``through`` or ``thru``, or ``between X and Y``.

    Example:
        >>> number_range("It is between 10 and 20"), number_range("from twenty to ten")
        ([10, 20], [10, 20])
        >>> number_range("pick 1-100"), number_range("-5 to 5"), number_range("10 or 20")
        ([1, 100], [-5, 5], None)
    """
    text = text or ""
    for low, high in pairwise(_scan(text)):
        gap = text[low.end:high.start]
        if _RANGE_GAP.fullmatch(gap) or (_AND_GAP.fullmatch(gap) and _BETWEEN.search(text[:low.start])):
            return sorted([low.value, high.value])
    return None


_RANGE_GAP = _re.compile(r"\s*(?:-|\u2013|\u2014|to|through|thru)\s*", _re.IGNORECASE)
_AND_GAP = _re.compile(r"\s*and\s*", _re.IGNORECASE)
_BETWEEN = _re.compile(r"\bbetween\s*$", _re.IGNORECASE)

_UNITS = dict(zip("zero one two three four five six seven eight nine".split(), range(10)))
_TEENS = dict(zip("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split(), range(10, 20)))
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10)))
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_WORDS = {**{w: ("unit", v) for w, v in _UNITS.items()}, **{w: ("teen", v) for w, v in _TEENS.items()},
          **{w: ("tens", v) for w, v in _TENS.items()}, **{w: ("scale", v) for w, v in _SCALES.items()},
          "hundred": ("hundred", 100), "minus": ("minus", -1), "negative": ("minus", -1), "a": ("a", 1), "and": ("and", 0)}
_MAX_DIGITS = 100  # longer numbers are not read (and scaled floats stay finite)

# Digits: a sign only right before them, not inside a word, nor right after a digit or a period
# ("10-20" holds 10 and 20, "v1.2" no number); or a number word ("twenty-one" is one word).
_TOKEN = _re.compile(
    r"(?<![\w.])(?P<digits>[-+\u2212]?(?=\d)(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
    rf"|\b(?P<compound>(?:{'|'.join(_TENS)})-(?:{'|'.join(w for w in _UNITS if w != 'zero')}))\b"
    rf"|\b(?P<word>{'|'.join(sorted(_WORDS, key=len, reverse=True))})\b",
    _re.IGNORECASE,
)


class _Token(NamedTuple):
    kind: str  # digits, unit, teen, tens, compound, hundred, scale, minus, a, and
    value: int | float
    start: int
    end: int


class _Number(NamedTuple):
    value: int | float
    start: int
    end: int


def _scan(text: str) -> list[_Number]:
    """Every number in ``text`` with where it is: each run of tokens joined by spaces only is read
    left to right, each number as long as the grammar allows (`_signed`)."""
    found: list[_Number] = []
    for run in _runs(text):
        i = 0
        while i < len(run):
            parsed = _signed(run, i)
            if parsed is None:
                i += 1
                continue
            value, end = parsed
            found.append(_Number(value, run[i].start, run[end - 1].end))
            i = end
    return found


def _runs(text: str) -> list[list[_Token]]:
    """The number tokens of ``text``, grouped into runs of tokens separated only by whitespace."""
    runs: list[list[_Token]] = []
    previous_end = None
    for token in _TOKEN.finditer(text):
        if token["digits"] is not None:
            written = token["digits"].replace(",", "").replace("\u2212", "-")
            if sum(c.isdigit() for c in written) > _MAX_DIGITS:
                previous_end = None
                continue
            item = _Token("digits", float(written) if "." in written else int(written), *token.span())
        elif token["compound"] is not None:
            tens, unit = token["compound"].lower().split("-")
            item = _Token("compound", _TENS[tens] + _UNITS[unit], *token.span())
        else:
            item = _Token(*_WORDS[token["word"].lower()], *token.span())
        if previous_end is not None and text[previous_end:item.start].isspace():
            runs[-1].append(item)
        else:
            runs.append([item])
        previous_end = item.end
    return runs


def _signed(run: list[_Token], i: int) -> tuple[int | float, int] | None:
    """The number starting at ``run[i]`` (``minus`` + `_scaled`) and the index after it."""
    sign = 1
    if run[i].kind == "minus":
        sign, i = -1, i + 1
    parsed = _scaled(run, i)
    return None if parsed is None else (sign * parsed[0], parsed[1])


def _scaled(run: list[_Token], i: int) -> tuple[int | float, int] | None:
    """Groups with decreasing scales: ``two million [and] five thousand [and] ten``."""
    parsed = _group(run, i)
    if parsed is None:
        return None
    total, (value, j) = 0, parsed
    smallest = float("inf")
    while j < len(run) and run[j].kind == "scale" and run[j].value < smallest:
        total, smallest, j = total + value * run[j].value, run[j].value, j + 1
        value = 0
        after = j + (j < len(run) and run[j].kind == "and")
        rest = _group(run, after) if after < len(run) and run[after].kind != "digits" else None
        # "two thousand and five thousand" is two numbers: the next group starts a larger scale
        if rest is not None and not (rest[1] < len(run) and run[rest[1]].kind == "scale" and run[rest[1]].value >= smallest):
            value, j = rest
    return total + value, j


def _group(run: list[_Token], i: int) -> tuple[int | float, int] | None:
    """A number below a thousand in words (``nineteen``, ``a hundred``, ``three hundred and five``),
    digits (``300``, ``3 hundred``), or ``a`` before a scale (``a million``)."""
    if i >= len(run):
        return None
    token = run[i]
    if token.kind == "a":
        following = run[i + 1].kind if i + 1 < len(run) else None
        if following == "scale":
            return 1, i + 1
        if following != "hundred":
            return None
        value, j = 1, i + 1
    elif token.kind == "digits":
        value, j = token.value, i + 1
    else:
        parsed = _below_hundred(run, i)
        if parsed is None:
            return None
        value, j = parsed
    if j < len(run) and run[j].kind == "hundred":
        value, j = value * 100, j + 1
        after = j + (j < len(run) and run[j].kind == "and")
        rest = _below_hundred(run, after)
        if token.kind != "digits" and rest is not None and not (rest[1] < len(run) and run[rest[1]].kind == "hundred"):
            value, j = value + rest[0], rest[1]  # not "one hundred and two hundred"
    return value, j


def _below_hundred(run: list[_Token], i: int) -> tuple[int, int] | None:
    """``seven``, ``seventeen``, ``seventy``, ``seventy seven`` (or ``seventy-seven``)."""
    if i >= len(run) or run[i].kind not in ("unit", "teen", "tens", "compound"):
        return None
    value = run[i].value
    if run[i].kind == "tens" and i + 1 < len(run) and run[i + 1].kind == "unit" and run[i + 1].value > 0:
        return value + run[i + 1].value, i + 2
    return value, i + 1


__all__ = ["Groups", "match", "match_all", "number", "number_range", "numbers"]
