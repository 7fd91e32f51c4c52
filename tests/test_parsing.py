"""Parsing helpers: regular-expression captures and numbers in digits, words and ranges (issue 11, item 1)."""

from __future__ import annotations

import copy
import doctest
import json
import pickle

import time

import pytest

from sparring.protocols import _expressions, _parsing
from sparring.protocols._expressions import ExpressionError, Limits, compile_expression, render
from sparring.protocols._parsing import match, match_all, number, number_range, numbers


def test_the_docstring_examples_hold():
    assert doctest.testmod(_parsing).failed == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("I guess 42.", [42]),
    ("-3 and +4 and \u22125", [-3, 4, -5]),
    ("$1,234.50 or 1,000,000", [1234.5, 1000000]),
    ("60/40, 10-20, 10 - 20", [60, 40, 10, 20, 10, 20]),
    ("1,2345 holds 1 and 2345", [1, 2345, 1, 2345]),
    ("A1, mp3 and v1.2 hold none; 42nd does", [42]),
    ("1" * 101 + " then 7", [7]),
])
def test_numbers_in_digits(text, expected):
    assert numbers(text) == expected
    assert all(type(n) in (int, float) for n in numbers(text))


def test_decimals_are_floats_and_the_rest_ints():
    assert type(number("2.5")) is float and type(number("2")) is int and type(number("twenty")) is int


@pytest.mark.parametrize(("text", "expected"), [
    ("Is it higher than fifty?", [50]),
    ("seven, Seventeen, seventy", [7, 17, 70]),
    ("twenty-one or twenty one", [21, 21]),
    ("one hundred and five", [105]),
    ("nineteen hundred", [1900]),
    ("a hundred, a thousand, a million", [100, 1000, 1000000]),
    ("three hundred twenty-one thousand four hundred", [321400]),
    ("two million and five thousand", [2005000]),
    ("two thousand and five thousand", [2000, 5000]),
    ("one hundred and two hundred", [100, 200]),
    ("one two three", [1, 2, 3]),
    ("minus five, negative 3", [-5, -3]),
    ("about 2.5 million, 3 hundred", [2500000.0, 300]),
    ("twenty zero", [20, 0]),
    ("often someone tends to", []),  # no number inside a word
    ("a cat and a dog", []),
])
def test_numbers_in_words(text, expected):
    assert numbers(text) == expected


def test_number_is_the_first_and_none_when_there_is_none():
    assert number("My offer: 60 for me, 40 for you") == 60
    assert number("no idea") is None and number("") is None and number(None) is None
    assert numbers("no idea") == [] and numbers(None) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("between 10 and 20", [10, 20]),
    ("It is between ten and twenty.", [10, 20]),
    ("from twenty to ten", [10, 20]),
    ("10-20", [10, 20]),
    ("10 \u2013 20", [10, 20]),
    ("ten-twenty", [10, 20]),
    ("1 through 5", [1, 5]),
    ("between -5 and 5", [-5, 5]),
    ("maybe 7, or 30 to 40", [30, 40]),
    ("between two thousand and five thousand", [2000, 5000]),
])
def test_number_range(text, expected):
    assert number_range(text) == expected


@pytest.mark.parametrize("text", ["10 and 20", "10 or 20", "just 5", "", None])
def test_no_range(text):
    assert number_range(text) is None


def test_match_gives_groups_by_position_and_by_name():
    found = match("My offer: 60 for me, 40 for you", r"(?P<mine>\d+) for me, (?P<yours>\d+) for you")
    assert found == ("60", "40") and list(found) == ["60", "40"]
    assert found[0] == found.mine == found["mine"] == "60" and found.yours == "40"
    assert match("I guess 42", r"\d+") == ("42",)  # no group: the whole match
    assert match("colour", r"colo(u)?r|(x)") == ("u", None)
    assert match("no digits", r"\d+") is None and match(None, r"\d+") is None
    with pytest.raises(AttributeError, match="no group named 'nope'"):
        found.nope  # noqa: B018


def test_groups_copy_pickle_and_serialise():
    found = match("7 of 10", r"(?P<got>\d+) of (?P<total>\d+)")
    for copied in (copy.deepcopy(found), pickle.loads(pickle.dumps(found))):
        assert copied == found and copied.total == "10"
    assert json.loads(json.dumps(found)) == ["7", "10"]


def test_match_all():
    found = match_all("a=1, b=2", r"(?P<key>\w)=(?P<value>\d)")
    assert found == [("a", "1"), ("b", "2")] and [m.value for m in found] == ["1", "2"]
    assert match_all("none here", r"\d") == []


def test_helpers_in_the_sandbox_as_functions_and_filters():
    context = {"message": "My offer: 60 for me, 40 for you"}  # in Jinja strings, \\d is \d
    assert compile_expression(r'match(message, "(?P<mine>\\d+) for me")[0] | int')(**context) == 60
    assert compile_expression(r'match(message, "(?P<mine>\\d+) for me").mine')(**context) == "60"
    assert compile_expression(r'message | match_all("(\\d+)") | map(attribute=0) | list')(**context) == ["60", "40"]
    assert compile_expression("number(message) + (message | numbers | last)")(**context) == 100
    assert compile_expression('number_range("between ten and twenty")')() == [10, 20]
    assert render(r'{{ match(message, "(\\d+) for me")[0] }}', context) == "60"
    with pytest.raises(ExpressionError, match="UndefinedError"):
        compile_expression(r'match(message, "(?P<mine>\\d+)").theirs')(**context)


@pytest.mark.slow
def test_the_deadline_counts_cpu_time_not_waiting(monkeypatch):
    """Waiting (a loaded machine, the engine's thread holding the GIL) does not count against an evaluation."""
    monkeypatch.setattr(_expressions, "LIMITS", Limits(seconds=0.3))

    def slow_items():
        for item in range(5):
            time.sleep(0.1)  # 0.5 s of wall time, almost no CPU time
            yield item

    def busy_items():
        while True:
            end = time.thread_time() + 0.05
            while time.thread_time() < end:  # CPU time on the evaluation's own thread
                pass
            yield 0

    assert render("{% for x in items %}{{ x }}{% endfor %}", {"items": slow_items()}) == "01234"
    with pytest.raises(ExpressionError, match="over a cost limit: took longer than 0.3 s"):
        render("{% for x in items %}{% endfor %}", {"items": busy_items()})


@pytest.mark.slow
def test_a_slow_pattern_stops_at_the_evaluation_deadline(monkeypatch):
    monkeypatch.setattr(_expressions, "LIMITS", Limits(seconds=0.3))
    for helper in ("match", "match_all", "regex"):
        check = compile_expression(f"{helper}(text, '(a|aa)+$')")
        with pytest.raises(ExpressionError, match="over a cost limit: the regular expression .* took longer"):
            check(text="a" * 60 + "b")
