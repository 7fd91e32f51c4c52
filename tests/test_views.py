"""What a role saw before each turn (`episode_views`), rebuilt from transcripts.

Scripted games replay canned replies through AutoGen's `ReplayChatCompletionClient`: each view
must equal, message for message, what the client was sent (``create_calls``). Hand-made
episodes check visibility (`sees`, rounds, speaker labels) and the plain view of foreign records;
a short real game on the embedded model checks the logged ``prompt_tokens``. `test_visibility.py`
checks the rule itself on what the replay clients were sent.
"""

from __future__ import annotations

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from sparring.protocols import episode_views, load_protocol, parse_protocol, play
from sparring.transcripts import Episode, ProtocolRef, TranscriptMessage, read_transcripts

THREE_ROLES = """
name: three_roles
variables:
  topic: {values: [tea]}
roles:
  host:
    system: "You host a chat about {{ topic }}. You are {{ role }} of {{ roles | join(',') }}."
    prompt: "Turn {{ turn }}, round {{ round }}: speak."
  guest:
    system: "You are a guest ({{ params.mood }})."
    params: {mood: "curious about {{ topic }}"}
  observer:
    system: "You only hear the host."
    sees: [host]
schedule:
  type: round_robin
  order: [host, guest, observer]
  max_turns: 6
"""

REPLIES = {"host": ["H1", "H2"], "guest": ["G1", "G2"], "observer": ["O1", "O2"]}


def _message(role: str, content: str, turn: int, round_number: int | None = None, **extra) -> TranscriptMessage:
    return TranscriptMessage(role=role, content=content, turn=turn,
                             round=turn if round_number is None else round_number, **extra)


def _episode(name: str, variables: dict, messages: list[TranscriptMessage]) -> Episode:
    return Episode(id=f"{name}-0", protocol=ProtocolRef(name=name), variables=variables, messages=messages)


async def _play_scripted(protocol, tmp_path, replies):
    clients = {}

    def factory(role, spec):
        clients[role] = ReplayChatCompletionClient(list(replies[role]))
        return clients[role]

    summary = await play(protocol, 1, tmp_path, {r: "replay" for r in protocol.spec.roles}, clients=factory)
    (episode,) = read_transcripts(summary.path, strict=True)
    return episode, clients


def _sent(client: ReplayChatCompletionClient, call: int) -> list:
    return [(type(m).__name__, m.content) for m in client.create_calls[call]["messages"]]


def _seen(view) -> list:
    return [(type(m).__name__, m.content) for m in view.llm_messages(with_target=False)]


async def test_views_equal_what_each_role_was_sent(tmp_path):
    protocol = parse_protocol(THREE_ROLES)
    episode, clients = await _play_scripted(protocol, tmp_path, REPLIES)
    assert [m.content for m in episode.messages] == ["H1", "G1", "O1", "H2", "G2", "O2"]
    views = episode_views(protocol, episode)
    assert [v.index for v in views] == list(range(6))
    calls = {role: 0 for role in REPLIES}
    for view in views:
        assert _seen(view) == _sent(clients[view.role], calls[view.role])
        calls[view.role] += 1
    # spelled out: the observer sees only the host (and its own replies), unlabelled: it hears one role
    assert _seen(views[5]) == [("SystemMessage", "You only hear the host."), ("UserMessage", "H1"),
                               ("AssistantMessage", "O1"), ("UserMessage", "H2")]
    # the guest hears two roles: their messages carry their author's name
    assert _seen(views[4]) == [("SystemMessage", "You are a guest (curious about tea)."), ("UserMessage", "host: H1"),
                               ("AssistantMessage", "G1"), ("UserMessage", "observer: O1"), ("UserMessage", "host: H2")]
    host = views[3]
    assert host.system == "You host a chat about tea. You are host of host,guest,observer."
    assert host.prompt == "Turn 3, round 3: speak." and episode.messages[3].prompt == host.prompt
    assert host.chat()[-1] == {"role": "assistant", "content": "H2"}
    assert [m.role for m in host.history] == ["host", "guest", "observer"]


def test_prompts_are_rendered_when_not_logged():
    """A foreign record of a known protocol (no logged prompts, no rounds) gets the prompts the engine would send."""
    protocol = parse_protocol(THREE_ROLES)
    said = [("host", "H1"), ("guest", "G1"), ("observer", "O1"), ("host", "H2")]
    episode = _episode("three_roles", {"topic": "tea"}, [TranscriptMessage(role=r, content=c) for r, c in said])
    views = episode_views(protocol, episode)
    assert views[0].prompt == "Turn 0, round 0: speak."
    assert views[3].prompt == "Turn 3, round 3: speak."
    assert _seen(views[3])[1:] == [("UserMessage", "Turn 0, round 0: speak."), ("AssistantMessage", "H1"),
                                   ("UserMessage", "guest: G1"), ("UserMessage", "observer: O1"),
                                   ("UserMessage", "Turn 3, round 3: speak.")]


async def test_simultaneous_debate_sees_only_previous_rounds(tmp_path):
    protocol = load_protocol("debate")
    replies = {f"debater_{i}": [f"R0 by {i}. The answer is {i}.", f"R1 by {i}. The answer is 1."] for i in (1, 2, 3)}
    episode, clients = await _play_scripted(protocol, tmp_path, replies)
    assert [m.round for m in episode.messages] == [0, 0, 0, 1, 1, 1]
    views = episode_views(protocol, episode)
    for view in views:
        assert _seen(view) == _sent(clients[view.role], 0 if view.index < 3 else 1)
    second = views[4]  # debater_2 in round 1: its own round-0 answer, then the others' round-0 answers
    kinds = [(type(m).__name__, m.content[:19]) for m in second.context]
    assert kinds == [("UserMessage", episode.messages[1].prompt[:19]), ("AssistantMessage", "R0 by 2. The answer"),
                     ("UserMessage", "debater_1: R0 by 1."), ("UserMessage", "debater_3: R0 by 3.")]
    assert "R1 by 1" not in str(second.chat(with_target=False))
    # without logged rounds, rounds come from the schedule
    bare = episode.model_copy(update={"messages": [m.model_copy(update={"round": 0, "prompt": None})
                                                   for m in episode.messages]})
    assert [_seen(v) for v in episode_views(protocol, bare)] == [_seen(v) for v in views]


def test_plain_view_of_a_foreign_record():
    episode = _episode("somebody_elses_game", {}, [_message("a", "one", 0), _message("b", "two", 1),
                                                   _message("a", "three", 2, prompt="Go on.")])
    views = episode_views(None, episode)
    assert views[2].chat() == [{"role": "assistant", "content": "one"}, {"role": "user", "content": "two"},
                               {"role": "user", "content": "Go on."}, {"role": "assistant", "content": "three"}]
    assert views[1].system is None and views[1].chat() == [{"role": "user", "content": "one"},
                                                           {"role": "assistant", "content": "two"}]


def test_judge_verdicts_get_no_view():
    protocol = load_protocol("adversarial_taboo")
    episode = _episode("adversarial_taboo", {"target": "apple"},
                       [_message("attacker", "Red fruit?", 0), _message("defender", "Cherry?", 1),
                        _message("judge", "tie", 2)])
    assert [v.role for v in episode_views(protocol, episode)] == ["attacker", "defender"]


@pytest.mark.slow
async def test_prompt_tokens_of_a_real_game_equal_the_view(tmp_path, engine):
    """The strongest check: the logged prompt_tokens of each message equal the tokenized view."""
    from sparring.agents import model_client

    protocol = load_protocol("adversarial_taboo")

    def clients(role, spec):
        return model_client("hf:smollm2-135m", temperature=0.7, max_tokens=8, seed=3)

    summary = await play(protocol, 1, tmp_path, {r: "hf:smollm2-135m" for r in protocol.spec.roles},
                         clients=clients, overrides={"target": "mountain"})
    (episode,) = read_transcripts(summary.path, strict=True)
    assert episode.status == "ok" and len(episode.messages) >= 2
    views = episode_views(protocol, episode)
    assert len(views) == len(episode.messages)
    for view, message in zip(views, episode.messages):
        assert message.usage["prompt_tokens"] == len(engine.encode_chat(view.chat(with_target=False)))
    assert views[0].chat()[0] == {"role": "system", "content": views[0].system}
    assert 'The secret word is "mountain"' in views[0].system
    # the dataset rows are these views: every turn's prompt has the logged length
    from sparring.data import build_dataset, load_rows

    build_dataset("imitation", [summary.path], tmp_path / "data", roles=["attacker", "defender"])
    rows = load_rows(tmp_path / "data")
    assert rows.num_rows == len(episode.messages)
    for row, message in zip(rows, episode.messages):
        assert row["messages"][-1] == {"role": "assistant", "content": message.content}
        assert len(engine.encode_chat(row["messages"][:-1])) == message.usage["prompt_tokens"]
