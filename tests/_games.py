"""Helpers shared by the protocol tests: replay clients that keep what each role was sent, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from sparring.errors import ProtocolError
from sparring.protocols import Outcome, load_protocol

# The roles and outcomes of both Adversarial Taboo judges (adversarial_taboo and adversarial_taboo_spag)
A, D = "attacker", "defender"
GUESSED = Outcome(D, "defender guessed the word")
WRONG = Outcome(A, "defender guessed wrong")
SAID = Outcome(A, "defender said the word")
BROKE = Outcome(D, "attacker breaks the rules")
TIE = Outcome(None, "tie")


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
    from sparring.agents.clients._messages import to_chat_messages
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


def line_of(text: str, fragment: str) -> int:
    """The 1-based number of the first line of ``text`` holding ``fragment``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def assert_load_error(text: str, old: str, new: str, fragment: str, expected: str, tmp_path: Path) -> None:
    """``text`` with ``old`` (once in it) replaced by ``new`` fails to load with ``FILE:LINE: ...expected...``,
    LINE being the line of ``fragment``."""
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    message = load_error(changed, tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line_of(changed, fragment)}: "), message
    assert expected in message, message


def assert_rejudged_alike(protocol, path: Path, episodes: list, tmp_path: Path) -> dict:
    """`rejudge` of the transcripts at ``path`` gives each of ``episodes`` its outcome and rewards again
    (and no judging error); returns the re-judged episodes by id."""
    from sparring.protocols import rejudge
    from sparring.transcripts import read_transcripts

    judged = rejudge(protocol, path, tmp_path / "again.jsonl")
    assert judged.errors == 0, judged.failures
    again = {e.id: e for e in read_transcripts(tmp_path / "again.jsonl", strict=True)}
    for episode in episodes:
        assert again[episode.id].outcome == episode.outcome and again[episode.id].rewards == episode.rewards
    return again


async def play_replayed(protocol, tmp_path: Path, replies: dict[str, list[str]], **options):
    """One episode of ``protocol`` on `ReplayClients` into ``tmp_path`` (``options`` go to `play`: seed,
    overrides); it must end ``ok``. Returns the episode and each model role's client."""
    from sparring.protocols import play, role_models
    from sparring.transcripts import read_transcripts

    clients = ReplayClients(replies)
    summary = await play(protocol, 1, tmp_path, role_models(protocol, "replay", {}), clients=clients, **options)
    (episode,) = read_transcripts(summary.path, strict=True)
    assert episode.status == "ok", episode.error
    return episode, clients.made
