"""Dynamic turn order and phases: the next speaker by expression, schedules chained, ends by expression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparring.errors import ProtocolError

from _games import ReplayClients
from sparring.protocols import episode_views, load_protocol, play, rejudge
from sparring.transcripts import Episode

MODERATED = """\
name: moderated
roles:
  moderator: {system: "You moderate. Name who speaks next: alice, bob or done."}
  alice: {system: "You are Alice."}
  bob: {system: "You are Bob."}
schedule:
  type: dynamic
  order: [moderator, alice, bob]
  first: moderator
  next: "'moderator' if role != 'moderator' else (none if (message | trim | lower) == 'done' else (message | trim | lower))"
  max_turns: 9
judge:
  final:
    - when: "messages | selectattr('role', 'equalto', 'bob') | list | length > 0"
      winner: bob
      reason: "bob spoke {{ messages | selectattr('role', 'equalto', 'bob') | list | length }} times"
"""

PHASED = """\
name: phased
variables:
  item: {values: [spy]}
roles:
  a: {system: "Player A.", prompt: "{{ 'Vote: who is the spy?' if phase == 'vote' else 'Talk.' }}"}
  b: {system: "Player B."}
  c: {system: "Player C."}
schedule:
  type: phases
  phases:
    - name: talk
      type: round_robin
      order: [a, b, c]
      max_turns: 6
      until: "'vote now' in message"
    - name: vote
      type: simultaneous
      order: [a, b, c]
judge:
  final:
    - when: "true"
      winner: "{{ messages | selectattr('phase', 'equalto', 'vote') | map(attribute='content') | list | majority_vote }}"
      reason: "{{ phase }} decided"
"""


def _write(tmp_path: Path, text: str, name: str = "game.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _record(out: Path) -> dict:
    (record,) = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    return record


async def test_the_next_speaker_is_chosen_by_expression(tmp_path):
    protocol = load_protocol(_write(tmp_path, MODERATED))
    clients = ReplayClients({"moderator": ["bob", "Alice", "bob", "done"], "alice": ["Hi."], "bob": ["Yo.", "Again."]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    record = _record(tmp_path / "run")
    assert record["status"] == "ok", record["error"]
    assert [m["role"] for m in record["messages"]] == ["moderator", "bob", "moderator", "alice", "moderator", "bob",
                                                      "moderator"]
    assert [m["round"] for m in record["messages"]] == list(range(7))
    assert record["outcome"] == {"winner": "bob", "reason": "bob spoke 2 times"}
    again = rejudge(protocol, tmp_path / "run" / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert again.reasons == {"bob spoke 2 times": 1}


async def test_a_dynamic_schedule_stops_at_max_turns_and_refuses_an_unknown_speaker(tmp_path):
    protocol = load_protocol(_write(tmp_path, MODERATED))
    clients = ReplayClients({"moderator": ["alice"] * 5, "alice": ["Me."] * 5, "bob": []})
    await play(protocol, 1, tmp_path / "capped", {}, clients=clients)
    assert len(_record(tmp_path / "capped")["messages"]) == 9
    clients = ReplayClients({"moderator": ["carol"], "alice": [], "bob": []})
    await play(protocol, 1, tmp_path / "bad", {}, clients=clients)
    record = _record(tmp_path / "bad")
    assert record["status"] == "error" and "schedule.next: chose 'carol'" in record["error"]


async def test_phases_chain_schedules_and_until_ends_a_phase(tmp_path):
    protocol = load_protocol(_write(tmp_path, PHASED))
    clients = ReplayClients({"a": ["I am not the spy.", "c"], "b": ["Me neither, vote now.", "c"], "c": ["Nor me.", "a"]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    record = _record(tmp_path / "run")
    assert record["status"] == "ok", record["error"]
    assert [(m["role"], m["phase"], m["round"]) for m in record["messages"]] == [
        ("a", "talk", 0), ("b", "talk", 1), ("a", "vote", 2), ("b", "vote", 2), ("c", "vote", 2)]
    assert record["outcome"] == {"winner": "c", "reason": "vote decided"}
    # the vote is simultaneous: no voter saw another's vote
    assert all("c" not in [m.content for m in call["messages"][1:]] for call in clients.made["c"].create_calls)
    assert protocol.spec.schedule.order == ["a", "b", "c"] and protocol.spec.schedule.max_messages() == 9
    assert [call["messages"][-1].content for call in clients.made["a"].create_calls] == ["Talk.", "Vote: who is the spy?"]
    views = episode_views(protocol, Episode.model_validate(record))
    assert [v.prompt for v in views if v.role == "a"] == ["Talk.", "Vote: who is the spy?"]


@pytest.mark.parametrize("text,message", [
    (MODERATED.replace("  max_turns: 9\n", ""), "schedule: a 'dynamic' schedule needs `next`"),
    (MODERATED.replace("first: moderator", "first: carol"), ":9: schedule.first: 'carol' is not in this schedule's order"),
    (MODERATED.replace("next: \"'moderator' if", "next: \"nobody if"), "schedule.next: undefined name 'nobody'"),
    (PHASED.replace("      until: \"'vote now' in message\"", "      until: \"'vote now' in mesage\""),
     "schedule.phases.0.until: undefined name 'mesage'"),
    (PHASED.replace("      order: [a, b, c]\n      max_turns", "      order: [a, d]\n      max_turns"),
     "schedule.phases.0.order.1: unknown role 'd'"),
    (PHASED.replace("  type: phases\n  phases:", "  type: phases\n  phase:"), "schedule.phase: unknown key 'phase' (did you mean 'phases'?)"),
])
def test_schedule_mistakes_are_reported_at_load(text, message, tmp_path):
    with pytest.raises(ProtocolError) as caught:
        load_protocol(_write(tmp_path, text, "bad.yaml"))
    assert message in str(caught.value), str(caught.value)
