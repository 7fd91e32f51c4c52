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
