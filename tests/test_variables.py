"""Variable sources: inline lists, files, built-in lists, questions, ranges, uniforms, k draws, derived
values and unpacked pairs; seeding, --set, load errors; a game that reads numbers from messages."""

from __future__ import annotations

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from sparring.errors import ProtocolError
from sparring.protocols import parse_protocol, play
from sparring.protocols._variables import VariableSampler
from sparring.transcripts import read_transcripts

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
    with pytest.raises(ProtocolError, match=r"--set colur: .* has no such variable \(did you mean 'colour'\?\)"):
        VariableSampler(protocol, {"colur": "red"})
    (tmp_path / "facts.jsonl").write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    with pytest.raises(ProtocolError,
                       match=r"variables.fact.field: .*facts.jsonl record 2 has no field 'text'; its fields are \['txt'\]"):
        VariableSampler(protocol)


DRAWS = """\
name: draws
variables:
  n: {range: [1, 100]}
  even: {range: {min: 0, max: 20, step: 2}, order: sequential}
  x: {uniform: [0.5, 1.5]}
  pair: {values: [{word: cat, hint: animal}, {word: rose, hint: flower}, {word: oak, hint: tree}], unpack: [word, hint]}
  two: {values: [red, green, blue], k: 2, unpack: [first, second]}
  double: {expr: n * 2}
  clue: {expr: "hint | upper ~ ' ' ~ (word | length)"}
  sizes: {expr: "numbers('a ' ~ n ~ ' and twenty')"}
roles:
  a: {system: "{{ word }} ({{ hint }}), {{ first }} {{ second }}, {{ double }} {{ clue }} {{ sizes }}"}
schedule: {order: [a], max_turns: 1}
"""


def test_ranges_uniforms_unpacked_pairs_k_draws_and_derived_values():
    protocol = parse_protocol(DRAWS)
    episodes = [VariableSampler(protocol, seed=3).sample(i) for i in range(30)]
    for i, v in enumerate(episodes):
        assert type(v["n"]) is int and 1 <= v["n"] <= 100 and v["even"] == (2 * i) % 22
        assert type(v["x"]) is float and 0.5 <= v["x"] <= 1.5
        assert (v["word"], v["hint"]) == (v["pair"]["word"], v["pair"]["hint"])  # drawn together
        assert v["two"] == [v["first"], v["second"]] and v["first"] != v["second"]
        assert v["double"] == 2 * v["n"] and v["clue"] == f"{v['hint'].upper()} {len(v['word'])}"
        assert v["sizes"] == [v["n"], 20]
    assert len({v["n"] for v in episodes}) > 10 and {v["word"] for v in episodes} == {"cat", "rose", "oak"}


def test_sampling_is_deterministic_and_each_sample_a_fresh_copy():
    protocol = parse_protocol(DRAWS)
    sampler = VariableSampler(protocol, seed=7)
    order = [sampler.sample(i) for i in (4, 0, 9)]
    assert order == [VariableSampler(protocol, seed=7).sample(i) for i in (4, 0, 9)]  # any order, any sampler
    assert sampler.sample(0) == order[1] and sampler.sample(0) is not sampler.sample(0)
    first = sampler.sample(0)
    first["pair"]["word"] = "changed"
    assert sampler.sample(0)["pair"]["word"] != "changed"
    assert [VariableSampler(protocol, seed=8).sample(i) for i in range(5)] != [sampler.sample(i) for i in range(5)]


def test_set_fixes_any_kind_and_derived_values_follow():
    protocol = parse_protocol(DRAWS)
    fixed = VariableSampler(protocol, {"n": 5, "x": 0.7, "even": 3}, seed=1).sample(2)
    assert (fixed["n"], fixed["x"], fixed["even"], fixed["double"], fixed["sizes"]) == (5, 0.7, 3, 10, [5, 20])
    pair = VariableSampler(protocol, {"pair": {"word": "dog", "hint": "pet"}}).sample(0)
    assert (pair["word"], pair["hint"], pair["clue"]) == ("dog", "pet", "PET 3")  # a fixed value is unpacked too
    word = VariableSampler(protocol, {"word": "mouse"}).sample(0)
    assert word["word"] == "mouse" and word["clue"].endswith(" 5")  # an unpacked name can be fixed on its own
    assert VariableSampler(protocol, {"double": 1}).sample(0)["double"] == 1
    with pytest.raises(ProtocolError, match=r"variables.pair.unpack: the --set value has no key 'hint'"):
        VariableSampler(protocol, {"pair": {"word": "dog"}})
    with pytest.raises(ProtocolError, match="has no such variable; its variables are .*'first', 'hint'"):
        VariableSampler(protocol, {"nope": 1})


def test_unpacked_names_are_known_to_templates_and_records_unpack(tmp_path):
    with pytest.raises(ProtocolError, match=r"undefined name 'secret'; this field may use the variables \['clue', "
                                            r"'double', 'even', 'first', 'hint', 'n', 'pair', 'second', 'sizes', 'two', "
                                            r"'word', 'x'\]"):
        parse_protocol(DRAWS.replace("{{ word }}", "{{ secret }}"))
    records = PROTOCOL.replace("city: {file: cities.csv, field: name, order: sequential}",
                               "city: {file: cities.csv, unpack: [name, country]}")
    records = records.replace("problem: {questions: \"arithmetic\"}", "problem: {questions: arithmetic, unpack: [question, answer]}")
    records = records.replace("{{ city }}", "{{ name }} in {{ country }} {{ question }} {{ answer }}")
    (tmp_path / "sources.yaml").write_text(records)
    _protocol(tmp_path)  # writes the data files
    v = VariableSampler(parse_protocol(records, tmp_path / "sources.yaml"), seed=2).sample(0)
    assert (v["name"], v["country"]) in {("Lyon", "France"), ("Osaka", "Japan")} and v["city"]["name"] == v["name"]
    assert (v["question"], v["answer"]) == (v["problem"]["question"], v["problem"]["answer"])


def _bad(text: str, tmp_path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, path)
    return str(caught.value).removeprefix(f"{path}:")


BAD = """\
name: bad
variables:
  n: {{values: [0, 1]}}
{variable}
roles:
  a: {{system: hi}}
schedule: {{order: [a], max_turns: 1}}
"""


@pytest.mark.parametrize(("variable", "expected"), [
    ("  r: {range: [10, 1]}", "4: variables.r.range: min (10) is greater than max (1)"),
    ("  r:\n    range:\n      min: 10\n      max: 1", "6: variables.r.range: min (10) is greater than max (1)"),
    ("  r: {range: [1.5, 3]}", "4: variables.r.range.min: Input should be a valid integer"),
    ("  u: {uniform: [2, 1]}", "4: variables.u: uniform: low (2) is greater than high (1)"),
    ("  d:\n    expr: 10 / n", "5: variables.d.expr: fails on the sample episode (the first value of every "
                                "variable): '10 / n': ZeroDivisionError: division by zero"),
    ("  d: {expr: m + 1}", "4: variables.d.expr: undefined name 'm'; this field may use the variables listed "
                           "before it, ['n'], and the helpers"),
    ("  d: {expr: later + 1}\n  later: {values: [1]}", "4: variables.d.expr: 'later' is defined after d; a derived "
                                                      "variable may use only the variables listed before it: ['n']"),
    ("  d: {expr: d + 1}", "4: variables.d.expr: 'd' is defined by this variable itself"),
    ("  d: {expr: 'n +'}", "4: variables.d.expr: bad expression"),
    ("  d: {expr: \"[1] | map('string')\"}", "4: variables.d.expr: fails on the sample episode"),
    ("  p: {values: [{n: 1}], unpack: [n]}", "4: variables.p.unpack: 'n' is already a variable name"),
    ("  p: {values: [[1, 2]], unpack: [q, q]}", "4: variables.p.unpack: 'q' is already a variable name"),
    ("  p:\n    values: [{w: a, h: b}, {w: c}]\n    unpack: [w, h]", "6: variables.p.unpack: value 2 has no key 'h'"),
    ("  p: {values: [a], unpack: [w]}", "4: variables.p.unpack: value 1 is 'a', not a mapping with keys ['w'] nor a list"),
    ("  p: {range: [1, 2], unpack: [w]}", "4: variables.p: unpack: the values of range are numbers"),
    ("  p: {values: [a], k: 2}", "4: variables.p.k: asks for 2 distinct values of a list of 1"),
    ("  p: {values: [a, b], k: 2, unpack: [w]}", "4: variables.p: unpack: 1 names for the k=2 values drawn"),
    ("  p: {uniform: [0, 1], order: sequential}", "4: variables.p: order: not with uniform"),
    ("  p: {expr: n, range: [1, 2]}", "4: variables.p: give exactly one of values, file, questions, builtin, range, "
                                      "uniform, expr (got ['range', 'expr'])"),
])
def test_load_errors_name_file_line_and_field(variable, expected, tmp_path):
    assert _bad(BAD.format(variable=variable), tmp_path).startswith(expected)


GUESS = """\
name: guess
variables:
  target: {range: [1, 20]}
  low: {expr: target - 1}
roles:
  guesser: {system: "Guess my number, from one to twenty."}
schedule: {order: [guesser], max_turns: 3}
judge:
  rules:
    - when: number(message) == target
      winner: guesser
      reason: guessed
    - when: (number_range(message) or [none])[0] == low
      reason: a range is no guess
rewards:
  guesser: "1 if winner == 'guesser' else 0"
"""
WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen",
         "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


async def test_a_game_reads_numbers_from_messages_and_draws_a_range(tmp_path):
    protocol = parse_protocol(GUESS)
    targets = [VariableSampler(protocol, seed=4).sample(i)["target"] for i in range(2)]
    replies = iter([[f"Is it higher than {WORDS[t % 20]}?", f"I guess {WORDS[t - 1]}!", "unused"] for t in targets]
                   + [[f"Is it between {targets[1] - 1} and 20?", "unused"]])

    def clients(role, spec):
        return ReplayChatCompletionClient(next(replies))

    await play(protocol, 2, tmp_path / "a", {}, clients=clients, seed=4, concurrency=1)
    episodes = sorted(read_transcripts(tmp_path / "a" / "transcripts.jsonl"), key=lambda e: e.id)
    assert sorted(e.variables["target"] for e in episodes) == sorted(targets)
    assert all(e.variables["low"] == e.variables["target"] - 1 for e in episodes)
    assert [e.outcome.reason for e in episodes] == ["guessed", "guessed"] and all(e.rewards == {"guesser": 1} for e in episodes)
    assert [len(e.messages) for e in episodes] == [2, 2]  # the first message names another number
    await play(protocol, 1, tmp_path / "b", {}, clients=clients, seed=4, overrides={"target": targets[1]})
    (ranged,) = read_transcripts(tmp_path / "b" / "transcripts.jsonl")
    assert ranged.outcome.reason == "a range is no guess" and ranged.variables["low"] == targets[1] - 1
