"""Answer extraction, normalisation, matching and voting (sparring.protocols._answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparring.protocols._answers import (
    answers_match,
    extract_answer,
    extract_boxed,
    gsm8k_gold,
    majority_vote,
    normalize_number,
)

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k"
needs_gsm8k = pytest.mark.skipif(not GSM8K.is_dir(), reason=f"GSM8K not found at {GSM8K}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("She has 1,234 marbles.", "1234"),
        ("Revenue was $1,234,567.50 in total", "1234567.5"),
        ("The temperature is -3 degrees", "-3"),
        ("It costs $2.50", "2.5"),
        ("It costs $5", "5"),
        ("About 50% of them", "50"),
        ("10-3 = 7", "7"),  # a minus between numbers is not a sign
        ("x = -3", "-3"),
        ("values 3,5", "5"),  # not a thousands separator
        ("first 1,234, then 17", "17"),
        ("Half is 1/2", "0.5"),
        ("The answer is 18. Check: 9 + 9 = 18, over 2 days", "18"),  # answer-is beats trailing 2
        ("Answer: 7\nThat took me 3 tries.", "7"),
        ("**Answer:** $1,000 (in 12 months)", "1000"),
        ("She makes 9 * 2 = $18.\n#### 18\nsee note 3", "18"),
        ("so \\boxed{24} after 3 steps", "24"),
        ("\\boxed{\\frac{3}{4}} from 5 cases", "0.75"),
        ("\\boxed{12 \\text{ dollars}} and 4", "12"),
        ("The answer is 5. No wait, the answer is 6. Over 2 days.", "6"),  # last marker wins
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{42}", "42"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("\\boxed{ {a}, {b} } end", "{a}, {b}"),
        ("good \\boxed{7} then broken \\boxed{8", "7"),  # unbalanced last box: the one before
        ("no box", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_answer(text, "boxed") == expected
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I choose (B).", "B"),
        ("B) is the right option", "B"),
        ("(b) seems right", "B"),
        ("The answer is B because the rest are wrong.", "B"),
        ("Answer: (c)", "C"),
        ("At first (A) looked right, but the answer is (D).", "D"),
        ("Between (A) and B) I pick B)", "B"),
        ("The answer is I think unclear", None),  # "I" is a word, not a choice
        ("the answer is a mystery", None),  # a lower-case bare letter is a word
        ("No options at all, 42", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_answer(text, "choice") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So \\boxed{1,234}.", "1234"),  # a boxed number is normalised
        ("So \\boxed{(B)}.", "B"),
        ("So \\boxed{x+1}.", "x+1"),
        ("Options (A) 3 and (B) 4. The answer is (B).", "B"),
        ("The answer is 42 (see step (A)).", "42"),  # the marker names a number
        ("I go with (C), 12 is wrong", "C"),  # a clear (X) choice
        ("The answer is A.", "A"),
        ("Step 1 gives 5, step 2 gives 9", "9"),
        ("nothing", None),
    ],
)
def test_extract_auto(text, expected):
    assert extract_answer(text) == expected


def test_extract_unknown_kind():
    with pytest.raises(ValueError, match="unknown answer kind 'letter'"):
        extract_answer("42", "letter")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234.0", "1234"),
        ("2.50", "2.5"),
        ("$5", "5"),
        ("\\$5", "5"),
        ("-$5", "-5"),
        ("50%", "50"),
        ("3/4", "0.75"),
        ("-1/8", "-0.125"),
        ("\\frac{3}{4}", "0.75"),
        ("  42. ", "42"),
        ("-0.0", "0"),
        (".5", "0.5"),
        ("1e3", "1000"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("\u22127", "-7"),
        ("1,2", None),
        ("12 apples", None),
        ("1/0", None),
        ("", None),
        ("abc", None),
        ("nan", None),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("predicted", "gold", "kind", "expected"),
    [
        ("18", "18", "auto", True),
        ("18.0", "18", "auto", True),
        ("$1,234", "1234", "number", True),
        ("so the answer is 1,234.0", "1234", "auto", True),  # a whole reply is fine
        ("0.3333333", "1/3", "auto", True),  # within 1e-6
        ("0.333", "1/3", "auto", False),
        ("17", "18", "auto", False),
        ("no number", "18", "number", False),
        (None, "18", "auto", False),
        ("(b)", "B", "auto", True),
        ("b", "(B)", "choice", True),
        ("I think the answer is (C).", "c", "auto", True),
        ("(A)", "B", "choice", False),
        ("  Paris ", "paris", "auto", True),
        ("New   York.", "new york", "auto", True),
        ("so \\boxed{x+1}", "X+1", "boxed", True),
        ("London", "Paris", "auto", False),
    ],
)
def test_answers_match(predicted, gold, kind, expected):
    assert answers_match(predicted, gold, kind) is expected


def test_answers_match_unknown_kind():
    with pytest.raises(ValueError, match="unknown answer kind"):
        answers_match("1", "1", "fuzzy")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["12", None, "15", "15", "12", "15"], "15"),
        (["12", "15", "15", "12"], "12"),  # tie: first seen wins
        (["15", "12", "12", "15"], "15"),
        ([None, "7"], "7"),
        (["18", "18.0", "$18", "20", "20"], "18"),  # counted by value, first spelling returned
        (["Paris", "paris ", "London"], "Paris"),
        ([None, None], None),
        ([], None),
    ],
)
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


def test_gsm8k_gold_synthetic():
    assert gsm8k_gold("So 3 + 4 = <<3+4=7>>7.\n#### 7") == "7"
    assert gsm8k_gold("...\n#### 1,000,000") == "1000000"
    assert gsm8k_gold("...\n#### -12") == "-12"
    with pytest.raises(ValueError, match="no '####'"):
        gsm8k_gold("The answer is 7")
    with pytest.raises(ValueError, match="not a number"):
        gsm8k_gold("#### seven")


@needs_gsm8k
def test_gsm8k_gold_real_lines():
    lines = (GSM8K / "test.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert gsm8k_gold(first["answer"]) == "18"  # Janet's ducks
    for line in lines:
        answer = json.loads(line)["answer"]
        gold = gsm8k_gold(answer)
        written = answer.rpartition("####")[2].strip()
        assert gold == written.replace(",", "")  # every gold answer is an integer
        assert int(gold) == int(written.replace(",", ""))
        assert answers_match(f"So the answer is {written}.", gold)


@needs_gsm8k
def test_gsm8k_gold_with_thousands_separator():
    lines = (GSM8K / "train.jsonl").read_text(encoding="utf-8").splitlines()
    grouped = [json.loads(x)["answer"] for x in lines if "#### 1,000,000" in x]
    assert grouped and all(gsm8k_gold(a) == "1000000" for a in grouped)
