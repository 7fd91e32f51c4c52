"""A whisper channel: a role's `to` expression addresses a message to some roles only."""

from __future__ import annotations

import json

import pytest

from sparring.errors import ProtocolError

from _games import ReplayClients
from sparring.protocols import episode_views, load_protocol, play
from sparring.transcripts import Episode

WHISPERS = r"""
name: whispers
roles:
  alice:
    system: "You are Alice. Start a message with @bob or @carol to tell one of them only."
    to: 'match(message, "^@(bob|carol)\\b")[0] if match(message, "^@(bob|carol)\\b") else none'
  bob: {system: "You are Bob."}
  carol: {system: "You are Carol."}
schedule: {type: round_robin, order: [alice, bob, carol], max_turns: 6}
"""


def _contents(client) -> list[list[str]]:
    return [[m.content for m in call["messages"][1:]] for call in client.create_calls]


async def test_a_whisper_reaches_only_its_addressee(tmp_path):
    path = tmp_path / "whispers.yaml"
    path.write_text(WHISPERS)
    protocol = load_protocol(path)
    clients = ReplayClients({"alice": ["@bob the key is under the mat", "Hello all."], "bob": ["Thanks.", "Ok."],
                       "carol": ["What?", "Hi."]})
    await play(protocol, 1, tmp_path / "run", {}, clients=clients)
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "transcripts.jsonl").read_text().splitlines()]
    assert record["status"] == "ok", record["error"]
    assert [m.get("to") for m in record["messages"]] == [["bob"], None, None, None, None, None]
    bob, carol = _contents(clients.made["bob"]), _contents(clients.made["carol"])
    assert "alice: @bob the key is under the mat" in bob[0]
    assert not any("key" in text for call in carol for text in call)  # carol never hears the whisper
    assert "alice: Hello all." in carol[1]
    views = {v.index: v for v in episode_views(protocol, Episode.model_validate(record))}
    for role, made in clients.made.items():  # training views rebuild what each was sent, whispers included
        sent = [[m.content for m in call["messages"]] for call in made.create_calls]
        rebuilt = [[m["content"] for m in v.chat(with_target=False)] for v in views.values() if v.role == role]
        assert rebuilt == sent


def test_a_bad_to_expression_is_reported_at_load(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(WHISPERS.replace("to: 'match", "to: 'mach"))
    with pytest.raises(ProtocolError, match=r":6: roles.alice.to: undefined name 'mach'"):
        load_protocol(path)


@pytest.mark.parametrize(("field", "source", "named"), [
    ("to", "to: \"'bobb'\"", "'bobb'"),
    ("to", "to: \"['bob', 'karol'] if turn > 0 else none\"", "'karol'"),
    ("next", "next: \"'bob' if role == 'alice' else 'dave'\"", "'dave'"),
])
def test_a_constant_that_names_no_role_is_reported_at_load(tmp_path, field, source, named):
    """A role name written as a constant in `to` or `next` is checked at load, not at the first turn."""
    text = WHISPERS.replace(WHISPERS.splitlines()[5], "    " + source) if field == "to" else WHISPERS.replace(
        "schedule: {type: round_robin, order: [alice, bob, carol], max_turns: 6}",
        "schedule: {type: dynamic, order: [alice, bob, carol], max_turns: 6, " + source + "}")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProtocolError, match=rf"bad.yaml:\d+: (roles.alice.to|schedule.next): gives {named}, which is no role"):
        load_protocol(path)
    computed = WHISPERS  # a `to` computed from the message stays a run-time check
    path.write_text(computed)
    load_protocol(path)
