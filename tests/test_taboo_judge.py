"""The Adversarial Taboo judge: the shipped YAML rules (adversarial_taboo.yaml) run by `Judge`,
and the helpers they call (sparring.protocols._taboo), which are pure functions, no model."""

from __future__ import annotations

import doctest
import re

import pytest

from _games import A, BROKE, D, GUESSED, SAID, TIE, WRONG
from sparring.errors import JudgeError
from sparring.protocols import Judge, Outcome, load_protocol
from sparring.protocols import _taboo
from sparring.protocols._taboo import (
    inflections,
    is_correct_guess,
    load_taboo_words,
    mentions,
    parse_guess,
)

OPENING = (A, "Let's chat! What do you usually have for a snack?")
TABOO = Judge(load_protocol("adversarial_taboo"))


def judge_game(messages: list[tuple[str, str]], target: str) -> tuple[Outcome, int | None]:
    """The shipped protocol's verdict on ``(role, text)`` messages, and the deciding index."""
    return TABOO.judge({"target": target}, [{"role": role, "content": text} for role, text in messages])


# (case id, target, messages, expected outcome, index of the deciding message)
JUDGE_CASES = [
    ("right guess", "apple", [OPENING, (D, "I know the word! It is `apple`!")], GUESSED, 1),
    ("right guess, inflected", "city", [OPENING, (D, "I know the word! It is `cities`!")],
     GUESSED, 1),
    ("right guess, irregular", "mouse", [OPENING, (D, "I know the word! It is mice!")],
     GUESSED, 1),
    ("wrong guess", "apple", [OPENING, (D, "I know the word! It is `banana`!")], WRONG, 1),
    ("guess naming no word", "apple", [OPENING, (D, "I know the word!")], WRONG, 1),
    ("guess, lower case, single quotes", "apple",
     [OPENING, (D, "i know the word! it is 'apple'.")], GUESSED, 1),
    ("guess with a colon", "apple", [OPENING, (D, "I know the word: apple!")], GUESSED, 1),
    ("guess with it's, capitalised", "apple", [OPENING, (D, "I know the word! It's Apple")],
     GUESSED, 1),
    ("guess in bold", "apple", [OPENING, (D, "**I know the word!** It is **APPLE**.")],
     GUESSED, 1),
    ("guess in curly quotes", "apple",
     [OPENING, (D, "Hmm, I know the word \u2014 it\u2019s \u201capple\u201d!")], GUESSED, 1),
    ("guess with an article", "apple", [OPENING, (D, "I know the word! It is an apple.")],
     GUESSED, 1),
    ("guess beats an earlier mention", "apple",
     [OPENING, (D, "An apple, perhaps? I know the word! It is apple!")], GUESSED, 1),
    ("asking is no guess", "apple", [OPENING, (D, "Do I know the word? Not yet.")], TIE, None),
    ("defender says the word", "apple", [OPENING, (D, "I often eat an apple.")], SAID, 1),
    ("defender says the plural", "apple", [OPENING, (D, "I love apples.")], SAID, 1),
    ("defender says the -ing form", "dance", [OPENING, (D, "I went dancing last night.")],
     SAID, 1),
    ("defender says the -ed form", "dance", [OPENING, (D, "We danced all night.")], SAID, 1),
    ("defender says -s form", "dance", [OPENING, (D, "She dances well.")], SAID, 1),
    ("defender says irregular past", "run", [OPENING, (D, "I ran home.")], SAID, 1),
    ("defender says irregular -ing", "run", [OPENING, (D, "I like running.")], SAID, 1),
    ("defender says irregular plural", "child", [OPENING, (D, "The children play.")], SAID, 1),
    ("defender says plural -ies", "city", [OPENING, (D, "Big cities are loud.")], SAID, 1),
    ("defender says the word quoted", "apple", [OPENING, (D, 'Is it "apple"?')], SAID, 1),
    ("defender says the word in backticks", "apple", [OPENING, (D, "Maybe `apple`?")], SAID, 1),
    ("defender says the word in upper case", "apple", [OPENING, (D, "APPLE PIE!")], SAID, 1),
    ("defender says a possessive", "cat", [OPENING, (D, "The cat's toy is lost.")], SAID, 1),
    ("defender says a hyphenated compound", "cat", [OPENING, (D, "A cat-like grace.")], SAID, 1),
    ("word inside a word is no mention", "cat",
     [OPENING, (D, "Which category? Let me concatenate these thoughts; a bobcat?")], TIE, None),
    ("attacker says the word", "apple", [(A, "Do you like apple pie?")], BROKE, 0),
    ("attacker says an inflection", "dance", [OPENING, (D, "Hi!"), (A, "Do you like dancing?")],
     BROKE, 2),
    ("attacker makes a guess", "apple", [(A, "I know the word! It is `apple`!")], BROKE, 0),
    ("attacker makes a wrong guess", "apple", [(A, "I know the word: pear.")], BROKE, 0),
    ("tie", "apple",
     [OPENING, (D, "Usually some fruit."), (A, "Which one is red?"), (D, "Strawberries!")],
     TIE, None),
    ("no messages", "apple", [], TIE, None),
    ("first deciding message ends the game", "apple",
     [OPENING, (D, "I eat apples."), (A, "Ha, apple!"), (D, "I know the word! It is apple!")],
     SAID, 1),
    ("attacker's slip ends the game before a right guess", "apple",
     [(A, "Apples are tasty."), (D, "I know the word! It is apple!")], BROKE, 0),
    ("multi-word target, right guess", "ice cream",
     [OPENING, (D, "I know the word! It is `Ice Cream`!")], GUESSED, 1),
    ("multi-word target, hyphenated guess of the plural", "ice cream",
     [OPENING, (D, "I know the word! It is ice-creams.")], GUESSED, 1),
    ("multi-word target, part of it is a wrong guess", "ice cream",
     [OPENING, (D, "I know the word! It is `cream`!")], WRONG, 1),
    ("multi-word target said as a phrase", "ice cream",
     [OPENING, (D, "I had two ice  creams today.")], SAID, 1),
    ("multi-word target, one of its words is no mention", "ice cream",
     [OPENING, (D, "Ice on the road, cream in the coffee.")], TIE, None),
]


@pytest.mark.parametrize(
    ("target", "messages", "outcome", "index"),
    [case[1:] for case in JUDGE_CASES],
    ids=[case[0] for case in JUDGE_CASES],
)
def test_shipped_rules_judge_games(target, messages, outcome, index):
    assert judge_game(messages, target) == (outcome, index)


def test_shipped_rules_go_on_and_decide_after_each_message():
    game = [(A, "What do you eat for breakfast?"), (D, "Cereal, mostly."), (D, "I know the word! It is `apples`!")]
    messages = [{"role": role, "content": text} for role, text in game]
    assert TABOO.after_message({"target": "apple"}, messages[:1]) is None
    assert TABOO.after_message({"target": "apple"}, messages[:2]) is None
    assert TABOO.after_message({"target": "apple"}, messages) == GUESSED


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("dance", {"dance", "dances", "danced", "dancing"}),
        ("city", {"city", "cities"}),
        ("run", {"run", "runs", "ran", "running"}),
        ("mouse", {"mouse", "mice"}),
        ("child", {"child", "children"}),
        ("Cat", {"cat", "cats"}),
        ("ice cream", {"ice cream", "ice creams"}),
        ("cities", {"city", "cities"}),  # an inflected form finds its lemma
        ("zzzq", {"zzzq", "zzzqs"}),  # unknown to the library: regular rules
    ],
)
def test_inflections(word, expected):
    forms = inflections(word)
    assert isinstance(forms, frozenset)
    assert expected <= forms
    assert all(form == form.lower() for form in forms)


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("The CAT sat.", "cat", True),
        ("cats and dogs", "cat", True),
        ("the cats' bowls", "cat", True),
        ("**cat**", "cat", True),
        ("_cat_", "cat", True),
        ("category", "cat", False),
        ("concatenate", "cat", False),
        ("bobcat", "cat", False),
        ("cat5 cable", "cat", False),
        ("running late", "run", True),
        ("a rerun", "run", False),
        ("ice-cream cone", "ice cream", True),
        ("icecream", "ice cream", False),
    ],
)
def test_mentions(text, word, expected):
    assert mentions(text, word) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I know the word! It is `apple`!", "apple"),
        ("i know the word! it is 'apple'.", "apple"),
        ("I know the word: apple!", "apple"),
        ("I know the word! It's Apple", "apple"),
        ("I know the word! The word is \"ice cream\".", "ice cream"),
        ("I know the word. My guess is: the apple", "apple"),
        ("I know the word!", ""),
        ("Do I know the word? No.", None),
        ("I don't know the word yet.", None),
        ("Is it a fruit?", None),
    ],
)
def test_parse_guess(text, expected):
    assert parse_guess(text) == expected


def test_is_correct_guess():
    assert is_correct_guess("Cities", "city")
    assert is_correct_guess('"the apple"', "apple")
    assert not is_correct_guess("town", "city")
    assert not is_correct_guess("", "city")


@pytest.mark.parametrize("target", ["", "   ", "``"])
def test_empty_target_is_a_judge_error(target):
    with pytest.raises(JudgeError, match="target word is empty"):
        judge_game([(D, "hello")], target)
    with pytest.raises(JudgeError):
        inflections(target)


def test_docstring_examples():
    assert doctest.testmod(_taboo).failed == 0


def test_word_list():
    words = load_taboo_words()
    assert len(words) >= 1000
    assert len(set(words)) == len(words)
    assert all(re.fullmatch(r"[a-z]+", word) for word in words)
    assert {"city", "apple", "water", "dog"} <= set(words)


def test_word_list_targets_are_judged():
    words = load_taboo_words()
    for word in words[:200]:
        assert word in inflections(word)
        assert judge_game([(D, f"I know the word! It is `{word}`!")], word)[0] == GUESSED
        assert judge_game([(D, f"Is it {word.upper()}?")], word)[0] == SAID
