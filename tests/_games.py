"""Helpers shared by the protocol tests: replay clients that keep what each role was sent, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from sparring.errors import ProtocolError
from sparring.protocols import load_protocol


class ReplayClients:
    """A client factory for `play(..., clients=...)`: each role replays its replies; ``made[role]`` is its client."""

    def __init__(self, replies: dict[str, list[str]]):
        self.replies, self.made = replies, {}

    def __call__(self, role, spec):
        self.made[role] = ReplayChatCompletionClient(list(self.replies[role]))
        return self.made[role]


def load_error(text: str, tmp_path: Path, name: str = "bad.yaml") -> str:
    """The one-line error loading ``text`` (written to ``tmp_path / name``) gives."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    return str(caught.value)


def message_key(message) -> tuple:
    """An AutoGen message as ``(type, content, source)``, to compare requests."""
    return type(message).__name__, message.content, getattr(message, "source", None)


def sent(clients: dict, role: str, call: int) -> list[tuple]:
    """The `message_key`s of ``role``'s ``call``-th request."""
    return [message_key(m) for m in clients[role].create_calls[call]["messages"]]


def assert_views_match_requests(protocol, episode, clients: dict) -> None:
    """Every model call's request (``clients``: role -> replay client) is exactly the view `episode_views`
    rebuilds from the transcript, rejected replies included; scripted messages have no view, and the
    default views are the same less the rejected replies'."""
    from sparring.agents._embedded_client import to_chat_messages
    from sparring.protocols import episode_views

    every = episode_views(protocol, episode, include_invalid=True)
    assert not any(episode.messages[v.index].scripted for v in every)
    calls = {role: iter(client.create_calls) for role, client in clients.items()}
    for view in every:
        request = next(calls[view.role])["messages"]
        assert [message_key(m) for m in view.llm_messages(with_target=False)] == [message_key(m) for m in request]
        assert view.chat(with_target=False) == to_chat_messages(request)
    assert all(next(rest, None) is None for rest in calls.values())
    assert episode_views(protocol, episode) == [v for v in every if not v.invalid]
