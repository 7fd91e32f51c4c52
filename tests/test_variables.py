"""Variable sources: inline lists, files relative to the protocol, built-in lists, questions; seeding."""

from __future__ import annotations

import pytest

from sparring.errors import ProtocolError
from sparring.protocols import parse_protocol
from sparring.protocols._variables import VariableSampler

PROTOCOL = """\
name: sources
variables:
  colour: {values: [red, green, blue]}
  word: {file: words.txt}
  city: {file: cities.csv, field: name, order: sequential}
  fact: {file: facts.jsonl, field: text}
  noun: {builtin: taboo_words}
  problem: {questions: "arithmetic"}
roles:
  a: {system: "{{ colour }} {{ word }} {{ city }} {{ fact }} {{ noun }} {{ problem.question }}"}
schedule: {order: [a], max_turns: 1}
"""


def _protocol(tmp_path):
    (tmp_path / "words.txt").write_text("# a comment\nalpha\n\nbeta\n")
    (tmp_path / "cities.csv").write_text("name,country\nLyon,France\nOsaka,Japan\n")
    (tmp_path / "facts.jsonl").write_text('{"text": "water is wet"}\n{"text": "fire is hot"}\n')
    path = tmp_path / "sources.yaml"
    path.write_text(PROTOCOL)
    return parse_protocol(PROTOCOL, path)


def test_every_source_and_reproducible_sampling(tmp_path):
    sampler = VariableSampler(_protocol(tmp_path), seed=5)
    first = [sampler.sample(i) for i in range(4)]
    assert first == [VariableSampler(_protocol(tmp_path), seed=5).sample(i) for i in range(4)]
    assert {v["word"] for v in first} <= {"alpha", "beta"}
    assert [v["city"] for v in first] == ["Lyon", "Osaka", "Lyon", "Osaka"]
    assert all(v["fact"] in ("water is wet", "fire is hot") and v["colour"] in ("red", "green", "blue") for v in first)
    problem = first[0]["problem"]
    assert problem["question"].startswith("What is the result of") and problem["answer"].lstrip("-").isdigit()


def test_overrides_and_their_errors(tmp_path):
    protocol = _protocol(tmp_path)
    assert VariableSampler(protocol, {"colour": "violet"}).sample(0)["colour"] == "violet"
    with pytest.raises(ProtocolError, match="has no such variable"):
        VariableSampler(protocol, {"flavour": "x"})
    (tmp_path / "facts.jsonl").write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    with pytest.raises(ProtocolError, match="record 2 has no field 'text'"):
        VariableSampler(protocol)
