"""Game state and computed outcomes: declared state, functional updates, rules and rewards that read what was played."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparring.errors import ProtocolError

from _games import ReplayClients
from sparring.protocols import Judge, load_protocol, play, rejudge
from sparring.protocols._state import initial_state

GUESS = """\
name: guess
variables:
  secret: {values: [37]}
  top: {values: [100]}
state:
  low: 1
  high: "{{ top }}"
  guesses: 0
  last: "{{ none }}"
  note: "between 1 and {{ top }}"
update:
  - roles: [guesser]
    set:
      guesses: "state.guesses + 1"
      last: "message | replace('I guess ', '') | int"
  - roles: [guesser]
    when: "state.last < secret"
    set: {low: "state.last + 1"}
  - roles: [guesser]
    when: "state.last > secret"
    set: {high: "state.last - 1"}
roles:
  guesser:
    system: "Guess a number {{ state.note }}."
    prompt: "Range now {{ state.low }}-{{ state.high }} after {{ state.guesses }} guesses. Guess."
  host:
    system: "You know the number."
schedule: {type: round_robin, order: [guesser, host], max_turns: 6}
judge:
  rules:
    - roles: [guesser]
      when: "state.last == secret"
      winner: "{{ messages[-1].role }}"
      reason: "found {{ secret }} in {{ state.guesses }} guesses"
  default: {when: "true", winner: host, reason: "out of guesses; the last was {{ state.last }}"}
rewards:
  guesser: "(1 / state.guesses) if winner == 'guesser' else 0"
  host: "0 if winner == 'guesser' else (messages | length)"
"""


def _protocol(tmp_path: Path, text: str = GUESS):
    path = tmp_path / "guess.yaml"
    path.write_text(text)
    return load_protocol(path)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]


async def test_state_updates_after_each_message_and_decides(tmp_path):
    protocol = _protocol(tmp_path)
    clients = ReplayClients({"guesser": ["I guess 50", "I guess 25", "I guess 37"], "host": ["lower", "higher"]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    (record,) = _records(tmp_path / "run")
    assert record["status"] == "ok", record["error"]
    states = [m["state"] for m in record["messages"]]
    first = {"low": 1, "high": 49, "guesses": 1, "last": 50, "note": "between 1 and 100"}
    second = {**first, "low": 26, "guesses": 2, "last": 25}
    assert states == [first, first, second, second, {**second, "guesses": 3, "last": 37}]
    assert record["outcome"] == {"winner": "guesser", "reason": "found 37 in 3 guesses"}
    assert record["rewards"] == {"guesser": pytest.approx(1 / 3), "host": 0.0}
    # the guesser's templates saw the state: its system prompt once, each turn's prompt
    calls = clients.made["guesser"].create_calls
    assert calls[0]["messages"][0].content == "Guess a number between 1 and 100."
    assert [c["messages"][-1].content for c in calls] == [
        "Range now 1-100 after 0 guesses. Guess.", "Range now 1-49 after 1 guesses. Guess.",
        "Range now 26-49 after 2 guesses. Guess."]


async def test_a_computed_default_reason_and_a_reward_over_the_messages(tmp_path):
    protocol = _protocol(tmp_path)
    clients = ReplayClients({"guesser": ["I guess 50", "I guess 10", "I guess 20"], "host": ["lower", "higher", "higher"]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    (record,) = _records(tmp_path / "run")
    assert record["outcome"] == {"winner": "host", "reason": "out of guesses; the last was 20"}
    assert record["rewards"] == {"guesser": 0.0, "host": 6.0}


async def test_re_judging_restores_the_state_and_the_outcome(tmp_path):
    protocol = _protocol(tmp_path)
    clients = ReplayClients({"guesser": ["I guess 50", "I guess 25", "I guess 37"], "host": ["lower", "higher"]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    summary = rejudge(protocol, tmp_path / "run" / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert summary.errors == 0
    (played,), (again,) = _records(tmp_path / "run"), [json.loads(tmp_path.joinpath("again.jsonl").read_text())]
    assert again["outcome"] == played["outcome"] and again["rewards"] == played["rewards"]
    # a record without logged states (from elsewhere) is judged the same: the state is recomputed
    bare = [{k: v for k, v in m.items() if k != "state"} for m in played["messages"]]
    outcome, index = Judge(protocol).judge(played["variables"], bare)
    assert (outcome.winner, outcome.reason, index) == ("guesser", "found 37 in 3 guesses", 4)


async def test_a_computed_winner_that_is_no_role_fails_its_episode(tmp_path):
    protocol = _protocol(tmp_path, GUESS.replace('winner: "{{ messages[-1].role }}"', 'winner: "{{ messages[-1].content }}"'))
    clients = ReplayClients({"guesser": ["I guess 37"], "host": []})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    (record,) = _records(tmp_path / "run")
    assert record["status"] == "error"
    assert "guess.yaml: judge.rules.0.winner" in record["error"] and "'I guess 37', which is no role" in record["error"]


def test_initial_values_keep_their_type():
    protocol = load_protocol_text(GUESS)
    assert initial_state(protocol, {"secret": 37, "top": 100}) == {
        "low": 1, "high": 100, "guesses": 0, "last": None, "note": "between 1 and 100"}


def load_protocol_text(text: str):
    from sparring.protocols import parse_protocol

    return parse_protocol(text)


@pytest.mark.parametrize("change,message", [
    (("      guesses: \"state.guesses + 1\"", "      guesses: \"state.guesses + bonus\""),
     ":14: update.0.set.guesses: undefined name 'bonus'"),
    (("  note: \"between 1 and {{ top }}\"", "  note: \"{{ message }}\""), ":10: state.note: undefined name 'message'"),
    (("  - roles: [guesser]\n    when: \"state.last < secret\"", "  - roles: [guest]\n    when: \"state.last < secret\""),
     ":16: update.1.roles.0: unknown role 'guest'"),
    (("    set: {low: \"state.last + 1\"}", "    set: {}"), "update.1.set: Dictionary should have at least 1 item"),
    (("  high: \"{{ top }}\"", "  high: \"{{ top / 0 }}\""), ":7: state.high: fails on a sample episode: 'top / 0': ZeroDivisionError"),
    (("      reason: \"found {{ secret }}", "      reason: \"found {{ secret }"), "judge.rules.0.reason: bad template"),
])
def test_state_mistakes_are_reported_at_load(change, message, tmp_path):
    old, new = change
    assert old in GUESS
    path = tmp_path / "bad.yaml"
    path.write_text(GUESS.replace(old, new))
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    assert message in str(caught.value), str(caught.value)


def test_a_misspelt_state_key_is_reported_at_load(tmp_path):
    from _games import load_error

    message = load_error(GUESS.replace('when: "state.last == secret"', 'when: "state.lst == secret"'), tmp_path)
    assert "judge.rules.0.when: state.lst: the state has no such key" in message
    assert "['guesses', 'high', 'last', 'low', 'note']" in message
