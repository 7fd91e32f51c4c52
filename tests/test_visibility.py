"""One visibility rule, checked on what the model clients were actually sent.

Scripted games replay canned replies through AutoGen's `ReplayChatCompletionClient`, whose
``create_calls`` hold every request. Each test checks the requests against the rule (`sees`,
`history`, a simultaneous round's speakers not seeing each other, template ``messages``, speaker
names and labels), and every game checks that `episode_views` rebuilds, turn by turn, exactly
the requests each role's client received (so play and training data cannot drift).
"""

from __future__ import annotations

import pytest
from autogen_core.models import AssistantMessage, UserMessage
from autogen_ext.models.openai._openai_client import to_oai_type
from autogen_ext.models.replay import ReplayChatCompletionClient

from _games import assert_views_match_requests, message_key, play_replayed, sent
from sparring.errors import ProtocolError
from sparring.protocols import episode_views, load_protocol, parse_protocol, play
from sparring.protocols._visibility import speaker_label
from sparring.transcripts import Episode, ProtocolRef, TranscriptMessage, read_transcripts

SEEN = "{{ messages | map(attribute='role') | join(',') }}"

ROUND_ROBIN = """
name: round_robin_game
roles:
  host:
    system: You host.
    prompt: "host sees [%s]"
    history: %s
  guest:
    system: You are a guest.
    prompt: "guest sees [%s]"
  observer:
    system: You only hear the host.
    prompt: "observer sees [%s]"
    sees: [host]
schedule:
  type: round_robin
  order: [host, guest, observer]
  max_turns: 6
""" % (SEEN, "{history}", SEEN, SEEN)

SIMULTANEOUS = """
name: simultaneous_game
roles:
  d1: &debater
    system: You debate.
    prompt: "round {{ round }}: you see [%s]"
    history: {history}
  d2: *debater
  d3: *debater
schedule:
  type: simultaneous
  order: [d1, d2, d3]
  rounds: 3
""" % SEEN


async def _play(protocol, tmp_path):
    """Play one episode on replay clients; the episode and each role's client."""
    replies = {role: [f"{role} said {k}" for k in range(10)] for role in protocol.spec.roles}
    episode, clients = await play_replayed(protocol, tmp_path, replies)
    assert_views_match_requests(protocol, episode, clients)
    return episode, clients


async def test_round_robin_history_all(tmp_path):
    protocol = parse_protocol(ROUND_ROBIN.replace("{history}", "all"))
    episode, clients = await _play(protocol, tmp_path)
    assert [m.role for m in episode.messages] == ["host", "guest", "observer"] * 2
    # the host sees two roles: labelled; its own reply is its assistant turn after the prompt it answered
    assert sent(clients, "host", 1) == [
        ("SystemMessage", "You host.", None), ("UserMessage", "host sees []", "user"),
        ("AssistantMessage", "host said 0", "host"), ("UserMessage", "guest: guest said 0", "guest"),
        ("UserMessage", "observer: observer said 0", "observer"),
        ("UserMessage", "host sees [host,guest,observer]", "user")]
    # `sees` filters the model context and the template's `messages` alike; one role heard: no label
    assert sent(clients, "observer", 1) == [
        ("SystemMessage", "You only hear the host.", None), ("UserMessage", "host said 0", "host"),
        ("UserMessage", "observer sees [host]", "user"), ("AssistantMessage", "observer said 0", "observer"),
        ("UserMessage", "host said 1", "host"), ("UserMessage", "observer sees [host,observer,host]", "user")]


async def test_round_robin_last_round_holds_only_the_message_before(tmp_path):
    """In a round robin every message is a round: `last_round` is the one message just before the turn."""
    protocol = parse_protocol(ROUND_ROBIN.replace("{history}", "last_round"))
    episode, clients = await _play(protocol, tmp_path)
    assert sent(clients, "host", 0) == [("SystemMessage", "You host.", None), ("UserMessage", "host sees []", "user")]
    assert sent(clients, "host", 1) == [("SystemMessage", "You host.", None),
                                         ("UserMessage", "observer: observer said 0", "observer"),
                                         ("UserMessage", "host sees [observer]", "user")]
    assert len(clients["guest"].create_calls[1]["messages"]) == 7  # history: all, the whole episode so far


async def test_simultaneous_last_round(tmp_path):
    protocol = parse_protocol(SIMULTANEOUS.replace("{history}", "last_round"))
    episode, clients = await _play(protocol, tmp_path)
    assert [(m.role, m.round) for m in episode.messages] == [(f"d{a}", r) for r in range(3) for a in (1, 2, 3)]
    # round 0: nothing seen, not even the other speakers of the round
    assert sent(clients, "d2", 0) == [("SystemMessage", "You debate.", None),
                                       ("UserMessage", "round 0: you see []", "user")]
    # round 2: only round 1, its own answer first (as its assistant turn, without the old prompt)
    assert sent(clients, "d2", 2) == [
        ("SystemMessage", "You debate.", None), ("AssistantMessage", "d2 said 1", "d2"),
        ("UserMessage", "d1: d1 said 1", "d1"), ("UserMessage", "d3: d3 said 1", "d3"),
        ("UserMessage", "round 2: you see [d2,d1,d3]", "user")]


async def test_simultaneous_speakers_never_see_their_own_round(tmp_path):
    protocol = parse_protocol(SIMULTANEOUS.replace("{history}", "all"))
    episode, clients = await _play(protocol, tmp_path)
    for role in ("d1", "d2", "d3"):
        for r, call in enumerate(clients[role].create_calls):
            seen = [m.content for m in call["messages"][1:-1]]
            assert not any(f"said {r}" in text for text in seen)  # nothing of its own round
            assert sum("said" in text for text in seen) == 3 * r  # every earlier round, its own answers included
    assert sent(clients, "d3", 1)[-1] == ("UserMessage", "round 1: you see [d3,d1,d2]", "user")
    assert sent(clients, "d1", 2)[-1] == ("UserMessage", "round 2: you see [d1,d2,d3,d1,d2,d3]", "user")


async def test_three_roles_reach_the_model_with_their_author(tmp_path):
    """Another role's message carries its author as ``source`` (OpenAI's ``name``) and as a label in the text."""
    protocol = load_protocol("debate")
    assert speaker_label(protocol, "debater_1", "debater_2") == "debater_2: "
    episode, clients = await _play(protocol, tmp_path)
    assert episode.outcome is not None
    call = clients["debater_1"].create_calls[1]["messages"]
    others = [m for m in call if isinstance(m, UserMessage) and m.source != "user"]
    assert [(m.source, m.content) for m in others] == [("debater_2", "debater_2: debater_2 said 0"),
                                                       ("debater_3", "debater_3: debater_3 said 0")]
    assert isinstance(call[-4], AssistantMessage) and call[-3:-1] == others  # right before the prompt
    assert "The 2 messages before this one are the most recent answers" in call[-1].content
    (oai,) = to_oai_type(others[0])
    assert (oai["role"], oai["name"], oai["content"]) == ("user", "debater_2", "debater_2: debater_2 said 0")
    # the transcript keeps what was written, without the label
    assert [m.content for m in episode.messages[:3]] == [f"debater_{a} said 0" for a in (1, 2, 3)]


async def test_an_empty_speaker_label_turns_labels_off(tmp_path):
    protocol = parse_protocol(ROUND_ROBIN.replace("{history}", "all") + 'speaker_label: ""\n')
    episode, clients = await _play(protocol, tmp_path)
    handed = [m for m in clients["host"].create_calls[1]["messages"] if isinstance(m, UserMessage) and m.source != "user"]
    assert [(m.source, m.content) for m in handed] == [("guest", "guest said 0"), ("observer", "observer said 0")]


async def test_a_speaker_label_template_labels_every_role(tmp_path):
    protocol = parse_protocol(ROUND_ROBIN.replace("{history}", "all") + 'speaker_label: "[{{ speaker | upper }}] "\n')
    episode, clients = await _play(protocol, tmp_path)
    assert sent(clients, "observer", 1)[1] == ("UserMessage", "[HOST] host said 0", "host")  # one role heard, labelled


def test_two_player_games_send_no_labels():
    for name in ("adversarial_taboo", "saie"):
        protocol = load_protocol(name)
        first, second = protocol.spec.roles
        assert speaker_label(protocol, first, second) == "" and speaker_label(protocol, second, first) == ""


def test_views_of_a_record_without_logged_prompts_or_rounds():
    """The views render the prompts the engine would have handed, from the same rule."""
    protocol = parse_protocol(SIMULTANEOUS.replace("{history}", "last_round"))
    said = [TranscriptMessage(role=f"d{a}", content=f"d{a} said {r}") for r in range(2) for a in (1, 2, 3)]
    episode = Episode(id="x", protocol=ProtocolRef(name=protocol.name), variables={}, messages=said)
    view = episode_views(protocol, episode)[4]
    assert [message_key(m) for m in view.llm_messages(with_target=False)] == [
        ("SystemMessage", "You debate.", None), ("AssistantMessage", "d2 said 0", "d2"),
        ("UserMessage", "d1: d1 said 0", "d1"), ("UserMessage", "d3: d3 said 0", "d3"),
        ("UserMessage", "round 1: you see [d2,d1,d3]", "user")]
    assert [m.content for m in view.history] == ["d2 said 0", "d1 said 0", "d3 said 0"]


@pytest.mark.parametrize("text, expected", [
    (ROUND_ROBIN.replace("{history}", "previous_rounds"), "roles.host.history: 'previous_rounds' is no longer accepted: "
                                                          "use 'all'"),
    (ROUND_ROBIN.replace("{history}", "all") + 'speaker_label: "{{ author }}: "\n', "speaker_label: undefined name 'author'"),
    (ROUND_ROBIN.replace("{history}", "all") + 'speaker_label: "{{ speaker "\n', "speaker_label: bad template"),
])
def test_bad_visibility_settings_are_rejected(text, expected):
    with pytest.raises(ProtocolError, match="last_round|speaker_label") as caught:
        parse_protocol(text)
    assert expected in str(caught.value)


async def test_an_llm_judges_replies_reach_no_player_and_no_view(tmp_path):
    """An LLM judge asked after every message: its replies sit between the players' messages in the
    transcript, yet no player received them and the views rebuild what the players were sent."""
    text = ROUND_ROBIN.replace("{history}", "all") + """judge:
  llm:
    when: each_message
    system: You referee.
    prompt: "{{ transcript }} Go on?"
    verdicts:
      continue: {decides: false}
      stop: {reason: stopped}
"""
    protocol = parse_protocol(text)
    clients: dict[str, ReplayChatCompletionClient] = {}

    def factory(role, spec):
        replies = ["VERDICT: continue"] * 10 if role == "judge" else [f"{role} said {k}" for k in range(10)]
        clients[role] = ReplayChatCompletionClient(replies)
        return clients[role]

    summary = await play(protocol, 1, tmp_path, {r: "replay" for r in [*protocol.spec.roles, "judge"]}, clients=factory)
    (episode,) = read_transcripts(summary.path, strict=True)
    assert episode.status == "ok", episode.error
    assert [m.role for m in episode.messages] == ["host", "judge", "guest", "judge", "observer", "judge"] * 2
    judge = clients.pop("judge")
    assert all("VERDICT" not in m.content for c in clients.values() for call in c.create_calls for m in call["messages"])
    assert len(judge.create_calls) == 6
    assert_views_match_requests(protocol, episode, clients)
