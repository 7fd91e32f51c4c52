"""Scripted roles: a role whose message is a template, with no model (an oracle, a board, a referee).

Games are played on AutoGen's `ReplayChatCompletionClient` for the model roles; every expected
message and request is worked out by hand. Each game also checks that `episode_views` rebuilds
exactly what each model was sent, that a scripted role gets no client and no view, and that its
messages reach the others' models like any role's.
"""

from __future__ import annotations


import pytest
from _games import assert_views_match_requests, load_error, play_replayed, sent
from sparring.data import build_dataset, load_rows
from sparring.errors import ProtocolError
from sparring.protocols import episode_views, parse_protocol, role_models
from sparring.protocols._judges import Judge

HIGHER_LOWER = """
name: higher_lower
variables:
  secret: {values: [37]}
roles:
  guesser:
    system: Guess my number from 1 to 100. Reply with a number only.
    prompt: "{% if turn == 0 %}Your first guess?{% endif %}"
  oracle:
    script: >-
      {% set guess = messages[-1].content | trim | int %}{{ 'higher' if guess < secret
      else ('lower' if guess > secret else 'correct') }}
schedule:
  order: [guesser, oracle]
  max_turns: 10
judge:
  rules:
    - {roles: [oracle], when: message == "correct", winner: guesser, reason: found the number}
  default: {when: "true", winner: null, reason: out of guesses}
"""

BOARD = """
name: board_game
roles:
  x:
    system: You play X. Name a free cell 1-9.
    prompt: Your move.
    sees: [board]
  o:
    system: You play O. Name a free cell 1-9.
    prompt: Your move.
    sees: [board]
  board:
    script: >-
      {% set moves = messages | rejectattr('role', 'equalto', 'board') | map(attribute='content') | list %}
      {%- for row in [0, 1, 2] %}{% for col in [1, 2, 3] %}{% set cell = (3 * row + col) | string %}
      {{- ('X' if moves.index(cell) % 2 == 0 else 'O') if cell in moves else '.' }}{% endfor %}
      {{- '\\n' if row < 2 }}{% endfor %}
schedule:
  type: sequence
  order: [x, board, o, board, x, board]
"""

REFEREE = """
name: quiet_referee
roles:
  a:
    system: You are a.
    prompt: Speak, a.
  b:
    system: You are b.
    prompt: "b sees [{{ messages | map(attribute='role') | join(',') }}]"
  referee:
    script: "{% if turn >= 3 %}Time is up.{% endif %}"
schedule:
  type: sequence
  order: [a, referee, b, referee]
  rounds: 2
"""


async def _play(protocol, tmp_path, replies: dict[str, list[str]]):
    """One episode on replay clients; the episode, and the client of each role that got one."""
    episode, clients = await play_replayed(protocol, tmp_path, replies)
    assert_views_match_requests(protocol, episode, clients)
    return episode, clients


async def test_a_scripted_oracle_answers_higher_or_lower(tmp_path):
    protocol = parse_protocol(HIGHER_LOWER)
    assert role_models(protocol, "replay", {}) == {"guesser": "replay"}  # the oracle has no model
    episode, clients = await _play(protocol, tmp_path, {"guesser": ["50", "25", "37"]})
    assert set(clients) == {"guesser"}
    assert [(m.role, m.content, m.scripted) for m in episode.messages] == [
        ("guesser", "50", None), ("oracle", "lower", True), ("guesser", "25", None), ("oracle", "higher", True),
        ("guesser", "37", None), ("oracle", "correct", True)]
    oracle = episode.messages[1]
    assert (oracle.turn, oracle.round, oracle.prompt, oracle.usage, oracle.token_ids) == (1, 1, None, None, None)
    assert (episode.outcome.winner, episode.outcome.reason) == ("guesser", "found the number")
    assert episode.rewards == {"guesser": 1.0, "oracle": -1.0}
    assert episode.models == {"guesser": "replay"}
    # the oracle's words reach the guesser as user messages from the oracle; no prompt after the first turn
    assert sent(clients, "guesser", 2) == [
        ("SystemMessage", "Guess my number from 1 to 100. Reply with a number only.", None),
        ("UserMessage", "Your first guess?", "user"), ("AssistantMessage", "50", "guesser"),
        ("UserMessage", "lower", "oracle"), ("AssistantMessage", "25", "guesser"), ("UserMessage", "higher", "oracle")]
    # a re-judge reads the scripted messages as the players' they are
    outcome, index = Judge(protocol).judge(episode.variables, [m.model_dump() for m in episode.messages])
    assert (outcome.winner, outcome.reason, index) == ("guesser", "found the number", 5)


async def test_a_scripted_board_renders_the_moves(tmp_path):
    protocol = parse_protocol(BOARD)
    episode, clients = await _play(protocol, tmp_path, {"x": ["5", "1"], "o": ["9"]})
    assert set(clients) == {"x", "o"}
    boards = [m.content for m in episode.messages if m.role == "board"]
    assert boards == ["...\n.X.\n...", "...\n.X.\n..O", "X..\n.X.\n..O"]
    assert all(m.scripted for m in episode.messages if m.role == "board")
    # x and o see the board only (and their own moves): one role heard, so no speaker label
    assert sent(clients, "o", 0) == [("SystemMessage", "You play O. Name a free cell 1-9.", None),
                                      ("UserMessage", "...\n.X.\n...", "board"), ("UserMessage", "Your move.", "user")]
    assert sent(clients, "x", 1) == [
        ("SystemMessage", "You play X. Name a free cell 1-9.", None), ("UserMessage", "Your move.", "user"),
        ("AssistantMessage", "5", "x"), ("UserMessage", "...\n.X.\n...", "board"),
        ("UserMessage", "...\n.X.\n..O", "board"), ("UserMessage", "Your move.", "user")]


async def test_a_blank_scripted_message_is_logged_but_reaches_no_one(tmp_path):
    protocol = parse_protocol(REFEREE)
    replies = {"a": ["a said 0", "a said 1"], "b": ["b said 0", "b said 1"]}
    episode, clients = await _play(protocol, tmp_path, replies)
    assert [(m.role, m.content, m.turn) for m in episode.messages] == [
        ("a", "a said 0", 0), ("referee", "", 1), ("b", "b said 0", 2), ("referee", "Time is up.", 3),
        ("a", "a said 1", 4), ("referee", "Time is up.", 5), ("b", "b said 1", 6), ("referee", "Time is up.", 7)]
    # the blank message is in no model context and in no template's `messages`; b and a hear two roles: labelled
    assert sent(clients, "b", 0) == [("SystemMessage", "You are b.", None), ("UserMessage", "a: a said 0", "a"),
                                      ("UserMessage", "b sees [a]", "user")]
    assert sent(clients, "a", 1) == [
        ("SystemMessage", "You are a.", None), ("UserMessage", "Speak, a.", "user"), ("AssistantMessage", "a said 0", "a"),
        ("UserMessage", "b: b said 0", "b"), ("UserMessage", "referee: Time is up.", "referee"),
        ("UserMessage", "Speak, a.", "user")]


async def test_scripted_turns_are_context_never_rows(tmp_path):
    protocol = parse_protocol(HIGHER_LOWER)
    episode, _ = await _play(protocol, tmp_path / "play", {"guesser": ["50", "25", "37"]})
    path = tmp_path / "play" / "transcripts.jsonl"
    summary = build_dataset("imitation", [path], tmp_path / "data", roles=["guesser", "oracle"], protocol=protocol)
    assert summary.role_rows == {"guesser": 3}
    rows = load_rows(tmp_path / "data")
    assert [r["messages"][-1]["content"] for r in rows] == ["50", "25", "37"]
    assert rows[2]["messages"][-2:] == [{"role": "user", "content": "higher"}, {"role": "assistant", "content": "37"}]
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert spag.role_rows == {"guesser": 3}
    # the oracle won nothing here; were it the winner, it would still give no rows
    views = episode_views(protocol, episode)
    assert all(v.role == "guesser" for v in views)




@pytest.mark.parametrize("old, new, line, expected", [
    ("  oracle:\n", "  oracle:\n    model: hf:smollm2-135m\n", 10,
     "roles.oracle.model: a scripted role (script) has no model, so no model"),
    ("  oracle:\n", "  oracle:\n    sampling: {temperature: 0}\n", 10, "roles.oracle.sampling: a scripted role"),
    ("  oracle:\n", "  oracle:\n    prompt: Speak.\n", 10, "roles.oracle.prompt: a scripted role"),
    ("  oracle:\n", "  oracle:\n    system: You are the oracle.\n", 10, "roles.oracle.system: a scripted role"),
    ("  oracle:\n", "  oracle:\n    valid: message != ''\n", 10, "roles.oracle.valid: a scripted role"),
    ("    system: Guess my number from 1 to 100. Reply with a number only.\n", "    sees: all\n", 7,
     "roles.guesser: give the role a `system` prompt (a model plays it) or a `script`"),
    ("{% set guess = messages[-1]", "{% set guess = mesages[-1]", 10, "roles.oracle.script: undefined name 'mesages'"),
    ("{% set guess = messages[-1].content", "{% set guess = message", 10, "roles.oracle.script: undefined name 'message'"),
    ("{% set guess = messages[-1]", "{% set guess = params.x + messages[-1]", 10,
     "roles.oracle.script: params.x: role 'oracle' has no such parameter"),
    ("{% set guess", "{% set", 10, "roles.oracle.script: bad template"),
])
def test_bad_scripted_roles_name_file_line_and_field(tmp_path, old, new, line, expected):
    assert old in HIGHER_LOWER
    message = load_error(HIGHER_LOWER.replace(old, new, 1), tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line}: "), message
    assert expected in message, message


def test_a_scripted_role_takes_no_model_override():
    protocol = parse_protocol(HIGHER_LOWER)
    with pytest.raises(ProtocolError, match="--role oracle=...: 'oracle' is a scripted role of higher_lower"):
        role_models(protocol, "replay", {"oracle": "hf:smollm2-135m"})
    assert role_models(protocol, "replay", {"guesser": "other"}) == {"guesser": "other"}
