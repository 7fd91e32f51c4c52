"""Question sources (sparring.protocols._questions): arithmetic, JSONL, Hugging Face, dispatch."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from sparring.errors import ProtocolError, SparringError
from sparring.protocols._questions import (
    Question,
    arithmetic_questions,
    load_hf_questions,
    load_jsonl_questions,
    load_questions,
)

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k"
needs_gsm8k = pytest.mark.skipif(not GSM8K.is_dir(), reason=f"GSM8K not found at {GSM8K}")
ARITHMETIC_RE = re.compile(r"What is the result of (\d+)\+(\d+)\*(\d+)\+(\d+)-(\d+)\*(\d+)\?")


def write_jsonl(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- arithmetic ---------------------------------------------------------------------------------


def test_arithmetic_is_correct():
    questions = arithmetic_questions(200, seed=3)
    assert len(questions) == 200
    for q in questions:
        match = ARITHMETIC_RE.fullmatch(q.question)
        assert match, q.question
        a, b, c, d, e, f = (int(x) for x in match.groups())
        assert all(0 <= x < 30 for x in (a, b, c, d, e, f))
        assert q.answer == str(a + b * c + d - e * f)
        assert q.rationale.endswith(f"= {q.answer}.")
    assert len({q.id for q in questions}) == 200
    assert any(int(q.answer) < 0 for q in questions)  # negative results occur


def test_arithmetic_is_deterministic_and_private():
    random.seed(1)
    first = arithmetic_questions(20, seed=7)
    state = random.getstate()
    random.seed(2)
    assert arithmetic_questions(20, seed=7) == first
    random.seed(1)
    assert random.getstate() == state  # the global RNG was not used
    assert arithmetic_questions(20, seed=8) != first
    assert arithmetic_questions(5, seed=7) == first[:5]  # a prefix of the longer list


def test_arithmetic_edge_counts():
    assert arithmetic_questions(0, seed=0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        arithmetic_questions(-1, seed=0)


# -- JSONL --------------------------------------------------------------------------------------


def test_jsonl_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "qs.jsonl",
        json.dumps({"question": "2+2?", "answer": "Two and two.\n#### 4"}),
        "",
        "   ",
        json.dumps({"question": "Pick", "answer": "B", "choices": ["1", "2"], "id": "mc-1"}),
        json.dumps({"question": "Count", "answer": 1234, "rationale": "by hand", "extra": True}),
    )
    questions = load_jsonl_questions(path)
    assert questions == [
        Question(question="2+2?", answer="4", rationale="Two and two.", id="qs-1"),
        Question(question="Pick", answer="B", choices=["1", "2"], id="mc-1"),
        Question(question="Count", answer="1234", rationale="by hand", id="qs-5"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"answer": "4"}', "line 2: field 'question' is missing"),
        ('{"question": "", "answer": "4"}', "line 2: field 'question' is not a non-empty string"),
        ('{"question": "2+2?"}', "line 2: field 'answer' is missing"),
        ('{"question": "2+2?", "answer": [4]}', "line 2: field 'answer' is not a non-empty string"),
        ('{"question": "2+2?", "answer": true}', "line 2: field 'answer' is not"),
        ('{"question": "q", "answer": "so\\n#### four"}', "line 2: field 'answer': 'four' after '####'"),
        ('{"question": "q", "answer": "B", "choices": "AB"}', "line 2: field 'choices' must be a list"),
        ('{"question": "q", "answer": "1", "id": 1.5}', "line 2: field 'id' must be"),
        ('{"question": "q", "answer": "1", "rationale": 3}', "line 2: field 'rationale' must be a string"),
        ('{"question": "q", "answer": "1", "id": "q1"}', "line 2: field 'id' 'q1' repeats line 1"),
        ('["question", "answer"]', "line 2: expected a JSON object"),
        ('{"question": "q", "answer": ', "line 2: invalid JSON"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", '{"question": "ok", "answer": "1", "id": "q1"}', line)
    with pytest.raises(ProtocolError) as info:
        load_jsonl_questions(path)
    assert str(info.value).startswith(f"{path}, line 2:")
    assert message in str(info.value)
    assert isinstance(info.value, SparringError)


def test_jsonl_missing_and_empty_files(tmp_path):
    with pytest.raises(ProtocolError, match="no such question file"):
        load_jsonl_questions(tmp_path / "absent.jsonl")
    with pytest.raises(ProtocolError, match="no questions in the file"):
        load_jsonl_questions(write_jsonl(tmp_path / "empty.jsonl", "", ""))


@needs_gsm8k
def test_jsonl_real_gsm8k():
    questions = load_jsonl_questions(GSM8K / "test.jsonl")
    assert len(questions) == 1319
    first = questions[0]
    assert first.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.answer == "18"
    assert first.rationale.startswith("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")
    assert "####" not in first.rationale
    assert first.id == "test-1"
    assert all(re.fullmatch(r"-?\d+", q.answer) for q in questions)


# -- Hugging Face -------------------------------------------------------------------------------


def test_hf_unreachable_hub_suggests_a_local_path(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # both read the variable at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ProtocolError) as info:
        load_hf_questions("sparring-tests/no-such-dataset", config="main", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "'sparring-tests/no-such-dataset'" in message and "could not be loaded" in message
    assert "local JSONL path" in message


def test_hf_local_file(tmp_path):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        json.dumps({"problem": "1+1?", "solution": "One and one.\n#### 2"}),
        json.dumps({"problem": "2+3?", "solution": "#### 5"}),
    )
    questions = load_hf_questions(
        str(path),
        split="validation",
        question_field="problem",
        answer_field="solution",
        cache_dir=str(tmp_path / "c"),
    )
    assert [(q.question, q.answer, q.rationale, q.id) for q in questions] == [
        ("1+1?", "2", "One and one.", "data-validation-0"),
        ("2+3?", "5", None, "data-validation-1"),
    ]


def test_hf_missing_column_names_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", json.dumps({"prompt": "1+1?", "answer": "2"}))
    with pytest.raises(ProtocolError, match=r"no column 'question'; its columns are prompt, answer"):
        load_hf_questions(str(path), cache_dir=str(tmp_path / "c"))


@needs_gsm8k
def test_hf_local_gsm8k_directory(tmp_path):
    questions = load_hf_questions(str(GSM8K), split="test", cache_dir=str(tmp_path))
    assert len(questions) == 1319
    assert (questions[0].answer, questions[0].id) == ("18", "gsm8k-test-0")
    assert questions[0].rationale.startswith("Janet sells")
    with pytest.raises(ProtocolError, match="could not be loaded"):
        load_hf_questions(str(GSM8K), split="validation", cache_dir=str(tmp_path))


# -- dispatch -----------------------------------------------------------------------------------


def test_load_questions_arithmetic():
    assert load_questions("arithmetic", seed=4) == arithmetic_questions(100, seed=4)
    assert load_questions("arithmetic", n=7, seed=4) == arithmetic_questions(7, seed=4)
    assert load_questions("arithmetic:12", seed=4) == arithmetic_questions(12, seed=4)
    assert load_questions("arithmetic:12", n=3, seed=4) == arithmetic_questions(3, seed=4)
    assert load_questions("arithmetic:2", n=10) == arithmetic_questions(2, seed=0)
    assert load_questions("arithmetic:5:9", seed=4) == arithmetic_questions(5, seed=9)  # the source's seed wins
    assert load_questions("arithmetic:5:1")[0] != load_questions("arithmetic:5")[0]
    with pytest.raises(ProtocolError, match="'arithmetic:many'"):
        load_questions("arithmetic:many")
    with pytest.raises(ProtocolError, match="'arithmetic:5:x'.*SEED a whole number"):
        load_questions("arithmetic:5:x")
    with pytest.raises(ValueError, match="n must be"):
        load_questions("arithmetic", n=-2)


def test_load_questions_jsonl(tmp_path):
    lines = (json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(5))
    path = write_jsonl(tmp_path / "q.jsonl", *lines)
    assert load_questions(str(path)) == load_jsonl_questions(path)
    assert [q.answer for q in load_questions(str(path), n=2)] == ["0", "1"]
    with pytest.raises(ProtocolError, match="no such question file"):
        load_questions(str(tmp_path / "absent.jsonl"))  # not mistaken for a hub name


def test_load_questions_hf_name_config_split(monkeypatch):
    calls = []

    def fake_load_hf_questions(name, split="test", config=None):
        calls.append((name, config, split))
        return [Question(question="q", answer="1", id=str(i)) for i in range(4)]

    monkeypatch.setattr("sparring.protocols._questions.load_hf_questions", fake_load_hf_questions)
    assert len(load_questions("openai/gsm8k:main:train", n=2)) == 2
    load_questions("openai/gsm8k:main")
    load_questions("some/dataset")
    load_questions("some/dataset::validation")
    assert calls == [
        ("openai/gsm8k", "main", "train"),
        ("openai/gsm8k", "main", "test"),
        ("some/dataset", None, "test"),
        ("some/dataset", None, "validation"),
    ]


@needs_gsm8k
def test_load_questions_real_gsm8k_paths(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)  # keep ~/.cache clean
    by_file = load_questions(str(GSM8K / "test.jsonl"), n=3)
    assert [q.answer for q in by_file] == ["18", "3", "70000"]
    by_directory = load_questions(str(GSM8K), n=3)  # an existing directory: the json builder
    assert [q.question for q in by_directory] == [q.question for q in by_file]
