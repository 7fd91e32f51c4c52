"""Invalid moves: a role's `valid` expression, the error sent back, retries, then `on_invalid`.

Games are played on AutoGen's `ReplayChatCompletionClient`; every expected message, request and
row is worked out by hand. Each game checks that `episode_views` (with ``include_invalid``: one
view per model call) rebuilds exactly what each client was sent, that a rejected reply reaches
no other role and no later turn, and that it is a training row only when the protocol asks.
"""

from __future__ import annotations


import pytest
from _games import assert_views_match_requests, load_error, play_replayed, sent
from sparring.data import build_dataset, load_rows
from sparring.protocols import Judge, episode_views, parse_protocol
from sparring.protocols._visibility import turn_context

COLUMNS = """
name: columns
roles:
  first:
    system: You play first. Name a column 1-7.
    prompt: Your move.
    valid: message | trim in ['1', '2', '3', '4', '5', '6', '7']
    invalid_prompt: "'{{ message }}' is not a legal move: answer with a column number 1-7."
    retries: 1
    on_invalid: {winner: second, reason: first made an invalid move}
  second:
    system: You play second. Name a column 1-7.
    prompt: "Your move; you saw [{{ messages | map(attribute='content') | join(',') }}]."
    valid: message | trim in ['1', '2', '3', '4', '5', '6', '7']
schedule:
  order: [first, second]
  max_turns: 4
judge:
  rules:
    - {roles: [first], when: message == "4", winner: first, reason: four}
"""

ERROR_8 = "'8' is not a legal move: answer with a column number 1-7."
FIRST = ("SystemMessage", "You play first. Name a column 1-7.", None)
SECOND = ("SystemMessage", "You play second. Name a column 1-7.", None)
INCLUDE_INVALID = "training: {include_invalid: true}\n"


async def _play(protocol, tmp_path, replies: dict[str, list[str]], seed: int = 0):
    """One episode (of seed ``seed``) on replay clients; the episode and each role's client."""
    episode, clients = await play_replayed(protocol, tmp_path, replies, seed=seed)
    assert_views_match_requests(protocol, episode, clients)
    return episode, clients


async def test_an_invalid_move_is_sent_back_and_retried(tmp_path):
    protocol = parse_protocol(COLUMNS)
    episode, clients = await _play(protocol, tmp_path, {"first": ["8", "3", "4"], "second": ["2"]})
    assert [(m.role, m.content, m.turn, m.invalid) for m in episode.messages] == [
        ("first", "3", 0, None), ("second", "2", 1, None), ("first", "4", 2, None)]
    (attempt,) = episode.messages[0].attempts
    assert (attempt.content, attempt.error) == ("8", ERROR_8)
    assert episode.messages[0].prompt == "Your move." and episode.messages[1].attempts is None
    assert (episode.outcome.winner, episode.outcome.reason) == ("first", "four")
    # the retry is asked in the same chat: the rejected reply, then the error
    assert sent(clients, "first", 1) == [FIRST, ("UserMessage", "Your move.", "user"),
                                          ("AssistantMessage", "8", "first"), ("UserMessage", ERROR_8, "user")]
    # the other role never sees the rejected reply, in its model context nor in its prompt's `messages`
    assert sent(clients, "second", 0) == [SECOND, ("UserMessage", "3", "first"),
                                           ("UserMessage", "Your move; you saw [3].", "user")]
    # nor does the role itself at a later turn: there only its accepted move is its own
    assert sent(clients, "first", 2) == [FIRST, ("UserMessage", "Your move.", "user"), ("AssistantMessage", "3", "first"),
                                          ("UserMessage", "2", "second"), ("UserMessage", "Your move.", "user")]
    logged = [m.model_dump(exclude_none=True) for m in episode.messages]
    assert "attempts" not in turn_context(protocol, {}, "first", 2, logged)["messages"][0]
    views = episode_views(protocol, episode)
    assert [(v.index, v.target, v.invalid) for v in views] == [(0, "3", False), (1, "2", False), (2, "4", False)]
    assert views[0].chat()[-3:] == [{"role": "assistant", "content": "8"}, {"role": "user", "content": ERROR_8},
                                    {"role": "assistant", "content": "3"}]


async def test_simultaneous_speakers_never_see_each_others_retries(tmp_path):
    text = COLUMNS.replace("  order: [first, second]\n  max_turns: 4", "  type: simultaneous\n  order: [first, second]\n"
                           "  rounds: 2")
    protocol = parse_protocol(text)
    episode, clients = await _play(protocol, tmp_path, {"first": ["8", "1", "2"], "second": ["5", "6"]})
    assert [(m.role, m.content, m.round, len(m.attempts or [])) for m in episode.messages] == [
        ("first", "1", 0, 1), ("second", "5", 0, 0), ("first", "2", 1, 0), ("second", "6", 1, 0)]
    assert sent(clients, "second", 1) == [SECOND, ("UserMessage", "Your move; you saw [].", "user"),
                                           ("AssistantMessage", "5", "second"), ("UserMessage", "1", "first"),
                                           ("UserMessage", "Your move; you saw [5,1].", "user")]


async def test_out_of_retries_the_on_invalid_outcome_decides(tmp_path):
    protocol = parse_protocol(COLUMNS)
    episode, clients = await _play(protocol, tmp_path, {"first": ["8", "nine"], "second": []})
    (message,) = episode.messages
    assert (message.role, message.content, message.invalid) == ("first", "nine", True)
    assert [(a.content, a.error) for a in message.attempts] == [("8", ERROR_8)]
    assert (episode.outcome.winner, episode.outcome.reason) == ("second", "first made an invalid move")
    assert episode.rewards == {"first": -1.0, "second": 1.0}
    assert len(clients["first"].create_calls) == 2 and clients["second"].create_calls == []
    assert episode_views(protocol, episode) == []  # the rejected replies are no rows by default
    assert [v.target for v in episode_views(protocol, episode, include_invalid=True)] == ["8", "nine"]
    outcome, index = Judge(protocol).judge(episode.variables, [m.model_dump() for m in episode.messages])
    assert (outcome.winner, outcome.reason, index) == ("second", "first made an invalid move", 0)  # as in play


async def test_the_default_is_two_retries_then_a_tie(tmp_path):
    text = COLUMNS.replace("    retries: 1\n    on_invalid: {winner: second, reason: first made an invalid move}\n", "")
    protocol = parse_protocol(text)
    episode, clients = await _play(protocol, tmp_path, {"first": ["x", "y", "z"], "second": []})
    (message,) = episode.messages
    assert [a.content for a in message.attempts] == ["x", "y"] and (message.content, message.invalid) == ("z", True)
    assert (episode.outcome.winner, episode.outcome.reason) == (None, "invalid move")
    assert episode.rewards == {"first": 0.0, "second": 0.0}
    assert sent(clients, "first", 2)[-2:] == [("AssistantMessage", "y", "first"),
                                               ("UserMessage", "'y' is not a legal move: answer with a column number 1-7.",
                                                "user")]


async def test_the_default_error_names_the_reply(tmp_path):
    protocol = parse_protocol(COLUMNS.replace("    invalid_prompt: \"'{{ message }}' is not a legal move: answer with a "
                                              "column number 1-7.\"\n", ""))
    episode, _ = await _play(protocol, tmp_path, {"first": ["8", "3", "4"], "second": ["2"]})
    assert episode.messages[0].attempts[0].error == "'8' is not a valid move. Try again."


async def test_rejected_replies_are_rows_only_when_asked(tmp_path):
    protocol = parse_protocol(COLUMNS)
    await _play(protocol, tmp_path / "won", {"first": ["8", "3", "4"], "second": ["2"]})
    await _play(protocol, tmp_path / "lost", {"first": ["8", "nine"], "second": []}, seed=1)
    paths = [tmp_path / "won" / "transcripts.jsonl", tmp_path / "lost" / "transcripts.jsonl"]
    asked = parse_protocol(COLUMNS + INCLUDE_INVALID)

    def targets(kind, protocol, out, **options):
        build_dataset(kind, paths, tmp_path / out, protocol=protocol, **options)
        return [(r["episode_id"].split("-")[1], r["role"], r["messages"][-1]["content"], round(r["reward"], 4))
                for r in load_rows(tmp_path / out)]

    both = {"roles": ["first", "second"]}
    # the lost game's only message was rejected: it gives no row unless asked; each row's reward is
    # its role's in the game (first won the first game)
    assert targets("imitation", protocol, "imitation", **both) == [
        ("0", "first", "3", 1.0), ("0", "second", "2", -1.0), ("0", "first", "4", 1.0)]
    assert [(r[1], r[2]) for r in targets("imitation", asked, "imitation_invalid", **both)] == [
        ("first", "8"), ("first", "3"), ("second", "2"), ("first", "4"), ("first", "8"), ("first", "nine")]
    # spag: the winner's turns 0 and 2 get 1.25 and 1.5625 normalised (0.4444, 0.5556); a rejected reply
    # included gets the reward of the turn it was an attempt of
    assert [(r[2], r[3]) for r in targets("spag", protocol, "spag", vary_prompts=False)] == [("3", 0.4444), ("4", 0.5556)]
    assert [(r[2], r[3]) for r in targets("spag", asked, "spag_invalid", vary_prompts=False)] == [
        ("8", 0.4444), ("3", 0.4444), ("4", 0.5556)]
    rows = load_rows(tmp_path / "spag_invalid")
    assert rows[0]["messages"] == [{"role": "system", "content": "You play first. Name a column 1-7."},
                                   {"role": "user", "content": "Your move."}, {"role": "assistant", "content": "8"}]
    assert rows[1]["messages"][-3:] == [{"role": "assistant", "content": "8"}, {"role": "user", "content": ERROR_8},
                                        {"role": "assistant", "content": "3"}]




@pytest.mark.parametrize("old, new, line, expected", [
    ("valid: message | trim in", "valid: message | trim inn", 7, "roles.first.valid: bad expression"),
    ("valid: message | trim in", "valid: mesage | trim in", 7, "roles.first.valid: undefined name 'mesage'"),
    ("valid: message | trim in", "valid: params.cols and message | trim in", 7,
     "roles.first.valid: params.cols: role 'first' has no such parameter"),
    ("invalid_prompt: \"'{{ message }}'", "invalid_prompt: \"'{{ messge }}'", 8,
     "roles.first.invalid_prompt: undefined name 'messge'"),
    ("retries: 1", "retries: -1", 9, "roles.first.retries: Input should be greater than or equal to 0"),
    ("{winner: second, reason", "{winner: third, reason", 10, "roles.first.on_invalid.winner: unknown role 'third'"),
    ("{winner: second, reason", "{loser: first, reason", 10, "roles.first.on_invalid.loser: unknown key 'loser'; the keys here are"),
    ("    valid: message | trim in ['1', '2', '3', '4', '5', '6', '7']\n    invalid_prompt", "    invalid_prompt", 7,
     "roles.first.invalid_prompt: invalid_prompt applies to invalid replies: give the role a `valid` expression too"),
])
def test_bad_invalid_move_settings_name_file_line_and_field(tmp_path, old, new, line, expected):
    assert old in COLUMNS
    message = load_error(COLUMNS.replace(old, new, 1), tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line}: "), message
    assert expected in message, message


def test_rewards_are_checked_for_the_on_invalid_outcome(tmp_path):
    text = COLUMNS + "rewards:\n  second: \"'lots' if reason == 'first made an invalid move' else 1\"\n"
    message = load_error(text, tmp_path)
    assert "rewards.second: gives 'lots' (str) for winner 'second', reason 'first made an invalid move'" in message
