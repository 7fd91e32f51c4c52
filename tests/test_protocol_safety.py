"""Protocols that go wrong stay safe: failures stay in their episode, the context is read-only,
cost is bounded, and validation catches what it can at load (issue: protocols you can trust)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient
from typer.testing import CliRunner

from _games import load_error
from sparring.cli import app
from sparring.protocols import load_protocol, play
from sparring.protocols._expressions import ExpressionError, TemplateSyntaxError, compile_expression, render

GAME = """\
name: fails
variables:
  n: {{values: [1, 0, 2], order: sequential}}
  pattern: {{values: ["("]}}
  key: {{values: [nope]}}
  item: {{values: [{{question: "2+2?"}}]}}
roles:
  alice:
    system: "{system}"
    params: {{tone: calm}}
    prompt: "Say something."
    sampling: {{temperature: 0, max_tokens: 2}}
schedule: {{type: round_robin, order: [alice], max_turns: 1}}
judge:
  rules:
    - when: "{rule}"
      winner: alice
      reason: decided
rewards:
  alice: "{reward}"
"""


def _game(system: str = "Hello.", rule: str = "false", reward: str = "1") -> str:
    return GAME.format(system=system, rule=rule, reward=reward)


# One protocol per failure kind: each fails while episodes are played (none is caught at load).
FAILURES = {
    "rule expression": (_game(rule="(message | length) / 0 > 1"), "judge.rules.0.when", "ZeroDivisionError"),
    "reward expression": (_game(reward="1 / n"), "rewards.alice", "ZeroDivisionError"),
    "template": (_game(system="Solve {{ item.answer }}"), "roles.alice.system", "UndefinedError"),
    "helper": (_game(rule="mentions(message, '')"), "judge.rules.0.when", "target word is empty"),
    "sandbox refusal": (_game(rule="messages.append(1)"), "judge.rules.0.when", "SecurityError"),
    "bad regex": (_game(rule="regex(message, pattern)"), "judge.rules.0.when", "error"),
    "overflow": (_game(rule="2.0 ** 100000 > 1"), "judge.rules.0.when", "OverflowError"),
    "undefined params key": (_game(system="Be {{ params[key] }}."), "roles.alice.system", "UndefinedError"),
    "cost limit": (_game(rule="('a' * 10**9) | length > 1"), "judge.rules.0.when", "over a cost limit"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_a_failure_stays_in_its_episode(kind, tmp_path):
    text, field, what = FAILURES[kind]
    protocol = tmp_path / f"{kind.replace(' ', '_')}.yaml"
    protocol.write_text(text)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["play", str(protocol), "--games", "3", "--out", str(out)])
    assert result.exit_code == 2, result.output  # more than --max-error-share (0.1) failed
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    records = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(records) == 3  # every episode is in the file
    failed = [r for r in records if r["status"] == "error"]
    assert failed and len(failed) == (1 if kind == "reward expression" else 3)
    for record in failed:
        assert str(protocol) in record["error"] and field in record["error"] and what in record["error"], record["error"]
        assert "\n" not in record["error"]
    assert "episodes failed" in result.stderr


@pytest.mark.slow
def test_a_bad_protocol_prints_no_traceback_from_the_console_script(tmp_path):
    protocol = tmp_path / "bad.yaml"
    protocol.write_text(FAILURES["rule expression"][0])
    run = subprocess.run([sys.executable, "-m", "sparring.cli", "play", str(protocol), "--games", "3",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "judge.rules.0.when" in run.stderr
    judged = subprocess.run([sys.executable, "-m", "sparring.cli", "judge", str(protocol),
                             str(tmp_path / "run" / "transcripts.jsonl"), "-o", str(tmp_path / "judged.jsonl")],
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in judged.stderr, judged.stderr


# --- the context is read-only -------------------------------------------------------------------

MUTABLE = """\
name: mutations
variables:
  item: {values: [{question: "2+2?", answer: "4", tags: [a]}, {question: "3+3?", answer: "6", tags: [b]}], order: sequential}
roles:
  alice:
    system: "{% if SYSTEM %}{% endif %}Question: {{ item.question }}"
    params: {tone: calm}
    prompt: "Go."
  bob:
    system: "You are Bob."
schedule: {type: round_robin, order: [alice, bob], max_turns: 2}
judge:
  rules:
    - when: "RULE"
      winner: alice
      reason: decided
"""

ATTEMPTS = [
    ("messages.append({'role': 'bob', 'content': 'forged'})", "false"),
    ("false", "messages[0].update({'content': 'forged'})"),
    ("item.update({'answer': '5'})", "false"),
    ("item.tags.append('x')", "false"),
    ("params.update({'tone': 'angry'})", "false"),
    ("false", "messages.pop()"),
    ("false", "item.pop('answer')"),
    ("false", "messages[0].clear()"),
]


def _replay():
    return lambda role, spec: ReplayChatCompletionClient([f"{role} says hi", f"{role} again"])


@pytest.mark.parametrize("system,rule", ATTEMPTS)
async def test_mutation_attempts_are_refused_and_change_nothing(system, rule, tmp_path):
    clean = load_protocol_text(MUTABLE.replace("SYSTEM", "false").replace("RULE", "false"), tmp_path / "clean.yaml")
    tried = load_protocol_text(MUTABLE.replace("SYSTEM", system).replace("RULE", rule), tmp_path / "tried.yaml")
    await play(clean, 2, tmp_path / "clean", {}, clients=_replay())
    await play(tried, 2, tmp_path / "tried", {}, clients=_replay())
    clean_records = _records(tmp_path / "clean")
    tried_records = _records(tmp_path / "tried")
    for before, after in zip(clean_records, tried_records):
        assert after["status"] == "error" and "unsafe" in after["error"]
        assert after["variables"] == before["variables"]  # pristine, in this episode and the next
        played = [(m["role"], m["content"]) for m in after["messages"]]
        assert played == [(m["role"], m["content"]) for m in before["messages"]][: len(played)]
    assert [r["variables"] for r in tried_records] == [
        {"item": {"question": "2+2?", "answer": "4", "tags": ["a"]}},
        {"item": {"question": "3+3?", "answer": "6", "tags": ["b"]}},
    ]


def load_protocol_text(text: str, path: Path):
    path.write_text(text)
    return load_protocol(path)


def _records(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    return sorted(records, key=lambda r: r["id"])


@pytest.mark.parametrize(("field", "source"), [
    ("rule", "message.__class__ is not none"),
    ("rule", "(message | attr('__class__')) is not none"),
    ("reward", "range.__self__ is defined and 1"),
    ("system", "Hi {{ item.__class__.__mro__ }}"),
    ("rule", "messages | map(attribute='content.__class__') | list | length > 0"),
    ("rule", "messages | map('attr', '__class__') | list | length > 0"),
    ("rule", "messages | selectattr('__class__') | list | length > 0"),
    ("rule", "messages | sort(attribute='__class__') | length > 0"),
    ("rule", "messages | sum(attribute='__len__') > 0"),
    ("rule", "message['__class__'] is defined"),
    ("system", "{% set ns = namespace(n=0) %}{% set ns.__n = 1 %}{{ ns.n }}"),
])
def test_an_internal_attribute_is_refused_at_load(field, source, tmp_path):
    error = load_error(_game(**{field: source}), tmp_path)
    assert "reads the attribute '__" in error and "refused by the sandbox" in error
    where = {"rule": "16: judge.rules.0.when", "reward": "20: rewards.alice", "system": "9: roles.alice.system"}
    assert f"bad.yaml:{where[field]}: reads the attribute" in error


@pytest.mark.parametrize("source", [
    "x.__class__ is defined", "x.__class__ is not none", "(x | attr('__len__')) is none",
    # a name starting with '_' that the value does not have: Jinja would give undefined, not a refusal
    "f.__self__ is defined", "(f | attr('__self__')) is defined", "f['__self__'] is defined", "x._nope is defined",
    # a name computed while playing, which validation cannot see
    "(x | attr(name)) is not none", "x[name] is not none", "(items | map(attribute=name) | list) is defined",
    "'{0.__class__}'.format(x) is defined", "d._key is defined",
])
def test_a_refused_attribute_is_an_error_never_a_value(source):
    """Jinja's default gives a refused attribute an undefined value, which `is defined` and `is not
    none` test quietly; here the evaluation fails (the episode's error)."""
    with pytest.raises(ExpressionError, match="unsafe"):
        compile_expression(source)(x="text", f=range, name="__class__", items=["a"], d={"_key": 1})


def test_a_key_starting_with_an_underscore_is_read_with_brackets():
    evaluate = compile_expression("[d['_key'], d['_missing'] is defined]")
    assert evaluate(d={"_key": 1}) == [1, False]
    with pytest.raises(ExpressionError, match=r"read the key as \['_key'\]"):
        compile_expression("d._key")(d={"_key": 1})


@pytest.mark.parametrize("source", ["message | random", "messages | map('random') | list"])
def test_nothing_judges_at_random(source):
    """A rule judges the same messages the same way every time (a re-judge, a resumed run)."""
    with pytest.raises((ExpressionError, TemplateSyntaxError), match="random"):
        compile_expression(source)(message="abc", messages=["ab"])


def test_a_helper_cannot_mutate_its_arguments_either():
    messages = [{"role": "a", "content": "hi"}]
    with pytest.raises(ExpressionError, match="unsafe"):
        compile_expression("messages.extend(messages)")(messages=messages)
    with pytest.raises(ExpressionError, match="unsafe"):
        render("{{ messages.insert(0, 1) }}", {"messages": messages})
    assert messages == [{"role": "a", "content": "hi"}]


# --- bounded cost ---------------------------------------------------------------------------------

COSTLY = [
    "'a' * 10**9",
    "range(10**10) | list",
    "9 ** (9 ** 8)",
    "[1] * 10**9",
    "'%999999999s' % 'a'",
    "'{:>999999999}'.format(1)",
    "'a' | center(10**9)",
    "(range(10**5) | list) * 10**5",
]
COSTLY_TEMPLATES = [
    "{% for i in range(10**5) %}{% for j in range(10**5) %}{{ i * j }}{% endfor %}{% endfor %}",
    "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    "{% for a in big %}{% for b in big %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
]


@pytest.mark.parametrize("source", COSTLY)
def test_costly_expressions_fail_fast(source):
    started = time.thread_time()  # the limit is CPU time on the evaluating thread (a busy machine adds wall time)
    with pytest.raises(ExpressionError, match="f.yaml: judge.rules.0.when") as caught:
        compile_expression(source, "f.yaml: judge.rules.0.when")()
    assert time.thread_time() - started < 3, caught.value


@pytest.mark.parametrize("template", COSTLY_TEMPLATES)
def test_costly_templates_fail_fast(template):
    started = time.thread_time()
    with pytest.raises(ExpressionError, match="over a cost limit"):
        render(template, {"big": "x" * 100_000}, "f.yaml: roles.a.system")
    assert time.thread_time() - started < 3


BOMBS = {
    "rule": _game(rule="('a' * 10**9) | length > 1"),
    "reward": _game(reward="9 ** (9 ** 8)"),
    "template": _game(system="{% for i in range(10**5) %}{% for j in range(10**5) %}{{ i }}{% endfor %}{% endfor %}"),
    "range": _game(system="{{ range(10**10) | list }}"),
    "aliases": "name: bomb\n" + "".join(
        f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]\n" if i else "a: &a [lol]\n"
        for i in range(10)) + "roles: {alice: {system: hi}}\nschedule: {order: [alice]}\n",
    "nesting": _game(rule="(" * 5000 + "1" + ")" * 5000),
}


@pytest.mark.slow
def test_validating_costly_protocols_is_fast_and_small(tmp_path):
    """Each file is validated in a fresh process: finished in seconds, under 1 GB of memory."""
    for name, text in BOMBS.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    # peak memory from VmHWM: it starts afresh at exec, unlike ru_maxrss (which a child inherits from pytest)
    script = textwrap.dedent("""
        import sys, time
        from sparring.protocols import load_protocol
        from sparring.errors import ProtocolError
        started = time.perf_counter()
        try:
            load_protocol(sys.argv[1])
            result = "ok"
        except ProtocolError as error:
            result = "refused: " + str(error)
        peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
        print(f"{time.perf_counter() - started:.2f}", peak, result)
    """)
    outcomes = {}
    for name in BOMBS:
        run = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}.yaml")], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        seconds, rss_kb, result = run.stdout.split(" ", 2)
        assert float(seconds) < 5, (name, seconds)
        assert int(rss_kb) < 1024 * 1024, (name, rss_kb)
        outcomes[name] = result
    assert outcomes["rule"].startswith("ok")  # rules are not run at load; play refuses it (above)
    assert "over a cost limit" in outcomes["reward"] and "rewards.alice" in outcomes["reward"]
    assert outcomes["template"].startswith("ok") and outcomes["range"].startswith("ok")
    assert "aliases" in outcomes["aliases"] and "expands to over" in outcomes["aliases"]
    assert "nested too deeply" in outcomes["nesting"]


# --- validation at load ---------------------------------------------------------------------------



def test_a_reward_must_give_a_number(tmp_path):
    message = load_error(_game(reward="'high' if winner == role else 'low'"), tmp_path)
    assert ":20: rewards.alice: gives 'high' (str)" in message and "must be a number" in message
    assert "rewards.alice: fails on a sample" in load_error(_game(reward="1 / (n - 1)"), tmp_path)


def test_params_references_are_checked(tmp_path):
    message = load_error(_game(system="Be {{ params.mood }}."), tmp_path)
    assert "roles.alice.system: params.mood: role 'alice' has no such parameter" in message and "['tone']" in message
    assert "params.mood" in load_error(_game(system="Be {{ params['mood'] }}."), tmp_path)
    load_protocol_text(_game(system="Be {{ params.tone }}."), tmp_path / "ok.yaml")


def test_data_files_and_builtin_lists_are_resolved_at_load(tmp_path):
    missing = _game().replace("n: {values: [1, 0, 2], order: sequential}", "n: {file: numbers.txt}")
    assert ":3: variables.n.file:" in load_error(missing, tmp_path) and "not found" in load_error(missing, tmp_path)
    (tmp_path / "numbers.jsonl").write_text('{"n": 1}\n{"n": \n')
    broken = _game().replace("n: {values: [1, 0, 2], order: sequential}", "n: {file: numbers.jsonl}")
    assert "numbers.jsonl:2: invalid JSON" in load_error(broken, tmp_path)
    unknown = _game().replace("n: {values: [1, 0, 2], order: sequential}", "n: {builtin: colours}")
    assert "unknown list 'colours'" in load_error(unknown, tmp_path)
    questions = _game().replace("n: {values: [1, 0, 2], order: sequential}", "n: {questions: mine.jsonl}")
    assert "variables.n.questions" in load_error(questions, tmp_path)


def test_duplicate_keys_are_an_error(tmp_path):
    message = load_error(_game().replace("  alice:\n    system:", "  alice:\n    model: hf:x\n    model: hf:y\n    system:"), tmp_path)
    assert ":10: duplicate key 'model' (first on line 9)" in message


def test_a_regex_that_cannot_compile_is_an_error(tmp_path):
    message = load_error(_game(rule="regex(message, '(unclosed')"), tmp_path)
    assert "judge.rules.0.when: the regular expression '(unclosed' does not compile" in message
    assert "does not compile" in load_error(_game(rule="message | regex('[a-')"), tmp_path)


def test_names_are_checked_per_field(tmp_path):
    assert "undefined name 'message'" in load_error(_game(system="You said {{ message }}"), tmp_path)
    assert "given to rules only" in load_error(_game(system="You said {{ message }}"), tmp_path)
    assert "undefined name 'outcome'" in load_error(_game(rule="outcome is none"), tmp_path)
    assert "undefined name 'winner'" in load_error(_game(rule="winner == 'alice'"), tmp_path)


def test_training_system_variants_are_checked_at_load(tmp_path):
    text = _game() + "training:\n  system_variants:\n    alice: ['Hi {{ secret }}']\n"
    assert "training.system_variants.alice.0: undefined name 'secret'" in load_error(text, tmp_path)
    text = _game() + "training:\n  system_variants:\n    alice: ['Hi {{ params.mood }}']\n"
    assert "params.mood" in load_error(text, tmp_path)


def test_training_variation_templates_are_checked_at_load(tmp_path):
    variation = ("training:\n  variation:\n    history_prefixes: ['\\n - ']\n    system_prefixes: [Rules]\n"
                 "    speaker_labels:\n      - {own: '{{ speaker }}', others: '{{ speakr }}'}\n"
                 "    instructions:\n      alice: 'You are {{ role }}.'\n")
    assert ("training.variation.speaker_labels.0.others: undefined name 'speakr'"
            in load_error(_game() + variation, tmp_path))
    fixed = variation.replace("speakr", "speaker")
    assert "training.variation.instructions.alice: undefined name 'secret'" in load_error(
        _game() + fixed.replace("{{ role }}", "{{ secret }}"), tmp_path)
    assert "training.variation.instructions.carol: unknown role 'carol'" in load_error(
        _game() + fixed.replace("alice:", "carol:"), tmp_path)
