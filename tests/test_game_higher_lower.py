"""The built-in `higher_lower`: guess my number against a scripted oracle, with state, retries and computed outcomes.

Replay games have hand-computed transcripts (messages, the state after each, prompts, outcome,
rewards, speakers); two episodes on the real embedded model are checked for consistency with the
rules (the oracle's answers, the state, the outcome), re-judged, and turned into training rows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from _games import ReplayClients, assert_load_error, assert_rejudged_alike, line_of, load_error
from sparring.data import build_dataset, load_rows
from sparring.data._rewards import turn_rewards
from sparring.protocols import builtin_names, load_protocol, play, rejudge, role_models
from sparring.protocols._loader import BUILTIN_DIR
from sparring.protocols._parsing import number
from sparring.transcripts import read_transcripts

NAME = "higher_lower"
PATH = Path(str(BUILTIN_DIR / f"{NAME}.yaml"))
TEXT = PATH.read_text()
SYSTEM = ("We play a guessing game. I have picked a secret whole number from 1 to 20. Each turn you\n"
          "guess it: reply with one number and nothing else. I answer \"Higher\" when the secret\n"
          "number is bigger than your guess, \"Lower\" when it is smaller, and \"Correct\" when you\n"
          "found it. Find it in as few guesses as you can.\n")
HMM = '"hmm" is not a guess: reply with one whole number between 11 and 14, for example 12.'


def _prompt(low: int, high: int, left: int) -> str:
    guesses = "guess" if left == 1 else "guesses"
    return f"Guess a number between {low} and {high} ({left} {guesses} left). Write only the number."




async def _replay(out: Path, guesses: list[str], **overrides):
    protocol = load_protocol(NAME)
    clients = ReplayClients({"guesser": guesses})
    await play(protocol, 1, out, role_models(protocol, "replay", {}), clients=clients, overrides=overrides)
    (episode,) = read_transcripts(out / "transcripts.jsonl", strict=True)
    assert episode.status == "ok", episode.error
    return protocol, episode, clients.made["guesser"]


def _sent(client, call: int) -> list[tuple]:
    return [(type(m).__name__, m.content) for m in client.create_calls[call]["messages"]]


def test_the_built_in_is_listed_and_valid():
    assert NAME in builtin_names()
    protocol = load_protocol(NAME)
    assert list(protocol.spec.roles) == ["guesser", "oracle"]
    assert role_models(protocol, "hf:smollm2-135m", {}) == {"guesser": "hf:smollm2-135m"}  # the oracle has no model


async def test_a_replayed_game_found_in_three_guesses_with_one_retry(tmp_path):
    protocol, episode, client = await _replay(tmp_path / "play", ["10", "I guess 15", "hmm", "13"], secret=13)
    assert episode.variables == {"secret": 13, "max_guesses": 10}
    error = HMM
    after_10 = {"low": 11, "high": 20, "guesses": 1, "last": 10}
    after_15 = {"low": 11, "high": 14, "guesses": 2, "last": 15}
    after_13 = {"low": 11, "high": 14, "guesses": 3, "last": 13}
    assert [(m.role, m.content, m.turn, m.scripted, m.state) for m in episode.messages] == [
        ("guesser", "10", 0, None, after_10), ("oracle", "Higher than 10.", 1, True, after_10),
        ("guesser", "I guess 15", 2, None, after_15), ("oracle", "Lower than 15.", 3, True, after_15),
        ("guesser", "13", 4, None, after_13), ("oracle", "Correct! The number is 13.", 5, True, after_13)]
    # the rejected reply is kept in its turn's message, with the error it was sent back
    assert [(a.content, a.error) for a in episode.messages[4].attempts] == [("hmm", error)]
    assert [m.prompt for m in episode.messages if m.role == "guesser"] == [
        _prompt(1, 20, 10), _prompt(11, 20, 9), _prompt(11, 14, 8)]
    assert (episode.outcome.winner, episode.outcome.reason) == ("guesser", "found it in 3 guesses")
    assert episode.rewards == {"guesser": pytest.approx(0.8), "oracle": 0.0}  # 1 - (3 - 1) / 10
    assert episode.models == {"guesser": "replay"}
    # what the guesser's model was sent: the oracle's answers as user messages, the state in each prompt;
    # the retry's chat holds the rejected reply and its error, the next turn's does not
    assert _sent(client, 0) == [("SystemMessage", SYSTEM), ("UserMessage", _prompt(1, 20, 10))]
    assert _sent(client, 3) == [
        ("SystemMessage", SYSTEM), ("UserMessage", _prompt(1, 20, 10)), ("AssistantMessage", "10"),
        ("UserMessage", "Higher than 10."), ("UserMessage", _prompt(11, 20, 9)), ("AssistantMessage", "I guess 15"),
        ("UserMessage", "Lower than 15."), ("UserMessage", _prompt(11, 14, 8)), ("AssistantMessage", "hmm"),
        ("UserMessage", error)]
    assert len(client.create_calls) == 4

    again = rejudge(protocol, tmp_path / "play" / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert again.errors == 0
    record = json.loads((tmp_path / "again.jsonl").read_text())
    assert record["outcome"] == {"winner": "guesser", "reason": "found it in 3 guesses"}
    assert record["rewards"] == {"guesser": pytest.approx(0.8), "oracle": 0.0}
    assert [m["state"] for m in record["messages"]] == [m.state for m in episode.messages]


async def test_the_guess_budget_runs_out(tmp_path):
    protocol, episode, client = await _replay(tmp_path, ["5", "Is it 25?"], secret=13, max_guesses=2)
    assert [(m.role, m.content) for m in episode.messages] == [
        ("guesser", "5"), ("oracle", "Higher than 5."), ("guesser", "Is it 25?"), ("oracle", "Lower than 25.")]
    # a guess outside the range still open narrows nothing: 25 > 20 leaves high at 20
    assert [m.state for m in episode.messages][-1] == {"low": 6, "high": 20, "guesses": 2, "last": 25}
    assert [m.prompt for m in episode.messages if m.role == "guesser"] == [_prompt(1, 20, 2), _prompt(6, 20, 1)]
    assert (episode.outcome.winner, episode.outcome.reason) == ("oracle", "not found in 2 guesses")
    assert episode.rewards == {"guesser": 0.0, "oracle": 0.0}
    assert len(client.create_calls) == 2  # `until` ended the game after the oracle's second answer


async def test_a_first_guess_find_and_a_game_lost_for_no_number(tmp_path):
    _, first, _ = await _replay(tmp_path / "first", ["7"], secret=7)
    assert [m.content for m in first.messages] == ["7", "Correct! The number is 7."]
    assert (first.outcome.reason, first.rewards["guesser"]) == ("found it in 1 guess", 1.0)

    _, lost, client = await _replay(tmp_path / "lost", ["pass", "no idea"], secret=7)
    (message,) = lost.messages
    assert (message.role, message.content, message.invalid, message.state) == ("guesser", "no idea", True, None)
    assert [a.content for a in message.attempts] == ["pass"]
    assert (lost.outcome.winner, lost.outcome.reason) == ("oracle", "the guesser gave no number")
    assert lost.rewards == {"guesser": 0.0, "oracle": 0.0}
    assert len(client.create_calls) == 2


async def test_training_rows_from_a_replayed_game(tmp_path):
    protocol, episode, _ = await _replay(tmp_path / "play", ["10", "I guess 15", "hmm", "13"], secret=13)
    path = tmp_path / "play" / "transcripts.jsonl"
    imitation = build_dataset("imitation", [path], tmp_path / "imitation", roles=["guesser"], protocol=protocol)
    assert imitation.role_rows == {"guesser": 3}  # the oracle's scripted messages are context, never rows
    rows = load_rows(tmp_path / "imitation")
    assert [r["messages"][-1]["content"] for r in rows] == ["10", "I guess 15", "13"]
    assert rows[2]["messages"][-5:] == [
        {"role": "user", "content": "Lower than 15."}, {"role": "user", "content": _prompt(11, 14, 8)},
        {"role": "assistant", "content": "hmm"},
        {"role": "user", "content": HMM},
        {"role": "assistant", "content": "13"}]
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert (spag.games_used, spag.role_rows, spag.weights) == (1, {"guesser": 3}, {"guesser": 0.5})
    rows = load_rows(tmp_path / "spag")
    assert [r["reward"] for r in rows] == pytest.approx(turn_rewards(3))
    assert {r["episode_id"] for r in rows} == {episode.id}


def _check_real_episode(episode) -> None:
    """The messages, state and outcome of a real-model episode agree with the game's rules."""
    secret, budget = episode.variables["secret"], episode.variables["max_guesses"]
    assert [m.role for m in episode.messages] == ["guesser", "oracle"] * (len(episode.messages) // 2) + (
        ["guesser"] if len(episode.messages) % 2 else [])
    low, high, guesses = 1, 20, 0
    for message in episode.messages:
        if message.invalid:
            assert message is episode.messages[-1] and message.role == "guesser"
            assert (episode.outcome.winner, episode.outcome.reason) == ("oracle", "the guesser gave no number")
            assert episode.rewards == {"guesser": 0.0, "oracle": 0.0}
            return
        if message.role == "guesser":
            assert message.token_ids and len(message.logprobs) == len(message.token_ids)
            guess = _first_int(message.content)
            guesses += 1
            if guess < secret:
                low = max(low, guess + 1)
            elif guess > secret:
                high = min(high, guess - 1)
            assert message.state == {"low": low, "high": high, "guesses": guesses, "last": guess}
        else:
            expected = ("Higher than" if guess < secret else "Lower than" if guess > secret else "Correct!")
            assert message.scripted and message.content.startswith(expected)
    if episode.messages[-1].content.startswith("Correct!"):
        assert (episode.outcome.winner, episode.outcome.reason) == (
            "guesser", f"found it in {guesses} {'guess' if guesses == 1 else 'guesses'}")
        assert episode.rewards["guesser"] == pytest.approx(1 - (guesses - 1) / budget)
    else:
        assert guesses == budget and episode.messages[-1].role == "oracle"
        assert (episode.outcome.winner, episode.outcome.reason) == ("oracle", f"not found in {budget} guesses")
        assert episode.rewards == {"guesser": 0.0, "oracle": 0.0}


def _first_int(text: str) -> int:
    value = number(text)
    assert isinstance(value, int)
    return value


@pytest.mark.slow
def test_two_games_on_the_embedded_model(engine, tmp_path):
    protocol = load_protocol(NAME)
    models = role_models(protocol, "hf:smollm2-135m", {})
    summary = asyncio.run(play(protocol, 2, tmp_path / "real", models, overrides={"max_guesses": 4}))
    path = tmp_path / "real" / "transcripts.jsonl"
    episodes = list(read_transcripts(path, strict=True))
    assert len(episodes) == 2 and summary.path == path
    for episode in episodes:
        assert episode.status == "ok", episode.error
        assert episode.models == {"guesser": "hf:smollm2-135m"}
        _check_real_episode(episode)

    assert_rejudged_alike(protocol, path, episodes, tmp_path)

    data = build_dataset("imitation", [path], tmp_path / "data", roles=["guesser"], protocol=protocol)
    accepted = sum(1 for e in episodes for m in e.messages if m.role == "guesser" and not m.invalid)
    assert data.role_rows == ({"guesser": accepted} if accepted else {})
    rows = load_rows(tmp_path / "data")
    assert all(r["role"] == "guesser" and r["messages"][0]["content"] == SYSTEM for r in rows)
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    won = [e for e in episodes if e.outcome.winner == "guesser"]
    found = sum(1 for e in won for m in e.messages if m.role == "guesser")
    assert spag.role_rows == ({"guesser": found} if won else {})






@pytest.mark.parametrize("old, new, fragment, expected", [
    # the oracle is scripted: it cannot also have a model's settings
    ("  oracle:\n", "  oracle:\n    sampling: {temperature: 0}\n", "    sampling: {temperature: 0}",
     "roles.oracle.sampling: a scripted role (script)"),
    # a script is rendered at the oracle's turn: it has `messages`, but no `message` (that is a rule's name)
    ("{% set guess = number(messages[-1].content) %}", "{% set guess = number(message) %}",
     "    script: >-", "roles.oracle.script: undefined name 'message' (it is given to rules only"),
    # retries and on_invalid need the `valid` expression they act on
    ('    valid: "number(message) is integer"\n', "", "    invalid_prompt: >-",
     "roles.guesser.invalid_prompt: invalid_prompt applies to invalid replies: give the role a `valid` expression too"),
    # state updates may only name the protocol's roles
    ("  - roles: [guesser]\n    when: \"state.last < secret\"",
     "  - roles: [guesers]\n    when: \"state.last < secret\"",
     "  - roles: [guesers]", "update.1.roles.0: unknown role 'guesers'"),
])
def test_the_main_features_used_wrongly_are_reported_at_load(tmp_path, old, new, fragment, expected):
    assert_load_error(TEXT, old, new, fragment, expected, tmp_path)


def test_a_range_variable_with_min_above_max_is_reported_at_load(tmp_path):
    text = TEXT.replace("range: [1, 20]", "range: [20, 1]")
    message = load_error(text, tmp_path)
    line = line_of(text, "range: [20, 1]")
    assert message == f"{tmp_path / 'bad.yaml'}:{line}: variables.secret.range: min (20) is greater than max (1)"

