"""The built-in `twenty_questions`: yes/no questions, a guess read with `match`, an answerer kept to yes/no.

Replay games have hand-computed transcripts (messages, the state after each, prompts, outcome,
rewards, speakers); two episodes on the real embedded model are checked for consistency with the
rules, re-judged, and turned into training rows.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from _games import ReplayClients, assert_load_error, assert_rejudged_alike
from sparring.data import build_dataset, load_rows
from sparring.data._rewards import turn_rewards
from sparring.protocols import builtin_names, load_protocol, parse_protocol, play, rejudge, role_models
from sparring.protocols._loader import BUILTIN_DIR
from sparring.protocols._taboo import is_correct_guess, mentions
from sparring.transcripts import read_transcripts

NAME = "twenty_questions"
PATH = Path(str(BUILTIN_DIR / f"{NAME}.yaml"))
TEXT = PATH.read_text()
PENGUIN = {"thing": "penguin", "category": "animal"}
BANANA = {"thing": "banana", "category": "fruit"}
ANSWER = "Answer with yes or no."
ASKER = ("We play twenty questions. The other player is thinking of an animal. Find out\n"
         "which animal it is by asking yes/no questions, one short question per message.\n"
         "You have 20 messages in all. When you know the answer, write\n"
         "\"My guess is ...\" with the animal in place of the dots.\n"
         "A wrong guess loses the game, and so does running out of questions.\n")
ANSWERER = ("We play twenty questions. You are thinking of this animal: penguin.\n"
            "The other player asks yes/no questions to find it. Answer each question truthfully\n"
            "with one word, yes or no. Never write the word \"penguin\".\n")


def _prompt(left: int, category: str = "animal") -> str:
    if left <= 1:
        return (f"This is your last message. Which {category} is it? "
                'Write "My guess is ..." with its name in place of the dots.')
    return (f'{left} messages left. Ask a yes/no question (for example: Is it big?), or write "My guess is ..." '
            f"with the {category}'s name.")


def _error(reply: str, category: str = "animal") -> str:
    return f'"{reply}" is not allowed: answer with yes or no only, and never name the {category}.'


def _state(questions: int, named=None, guess=None) -> dict:
    return {"questions": questions, "named": named, "guess": guess}




async def _replay(out: Path, asker: list[str], answerer: list[str], seed: int = 0, **overrides):
    protocol = load_protocol(NAME)
    clients = ReplayClients({"asker": asker, "answerer": answerer})
    await play(protocol, 1, out, role_models(protocol, "replay", {}), clients=clients, seed=seed, overrides=overrides)
    (episode,) = read_transcripts(out / "transcripts.jsonl", strict=True)
    assert episode.status == "ok", episode.error
    return protocol, episode, clients.made


def _sent(client, call: int) -> list[tuple]:
    return [(type(m).__name__, m.content) for m in client.create_calls[call]["messages"]]


WON = (["Is it a bird?", "Can it fly?", "Is it a **Penguin**?"], ["Yes.", "I think penguins can't.", "No."])


def test_the_built_in_is_listed_and_valid():
    assert NAME in builtin_names()
    protocol = load_protocol(NAME)
    assert list(protocol.spec.roles) == ["asker", "answerer"]
    assert role_models(protocol, "hf:smollm2-135m", {}) == {"asker": "hf:smollm2-135m", "answerer": "hf:smollm2-135m"}


async def test_a_replayed_game_found_in_three_questions_with_one_retry(tmp_path):
    protocol, episode, clients = await _replay(tmp_path / "play", *WON, item=PENGUIN)
    # the fixed item gives its two unpacked parts
    assert episode.variables == {"item": PENGUIN, **PENGUIN, "max_questions": 20}
    assert [(m.role, m.content, m.turn, m.state) for m in episode.messages] == [
        ("asker", "Is it a bird?", 0, _state(1, named="bird")), ("answerer", "Yes.", 1, _state(1, named="bird")),
        ("asker", "Can it fly?", 2, _state(2)), ("answerer", "No.", 3, _state(2)),
        ("asker", "Is it a **Penguin**?", 4, _state(3, named="Penguin"))]
    # the answer that named the thing was sent back once, and kept in its turn's message
    rejected = "I think penguins can't."
    assert [(a.content, a.error) for a in episode.messages[3].attempts] == [(rejected, _error(rejected))]
    assert [m.prompt for m in episode.messages] == [_prompt(20), ANSWER, _prompt(19), ANSWER, _prompt(18)]
    assert (episode.outcome.winner, episode.outcome.reason) == ("asker", "found it in 3 questions")
    assert episode.rewards == {"asker": pytest.approx(0.9), "answerer": 0.0}  # 1 - (3 - 1) / 20
    # each model hears the other's accepted messages only (one other role: no speaker label)
    assert _sent(clients["asker"], 0) == [("SystemMessage", ASKER), ("UserMessage", _prompt(20))]
    assert _sent(clients["asker"], 2)[-3:] == [("AssistantMessage", "Can it fly?"), ("UserMessage", "No."),
                                               ("UserMessage", _prompt(18))]
    assert _sent(clients["answerer"], 2) == [
        ("SystemMessage", ANSWERER), ("UserMessage", "Is it a bird?"), ("UserMessage", ANSWER),
        ("AssistantMessage", "Yes."), ("UserMessage", "Can it fly?"), ("UserMessage", ANSWER),
        ("AssistantMessage", "I think penguins can't."), ("UserMessage", _error("I think penguins can't."))]
    assert [len(c.create_calls) for c in clients.values()] == [3, 3]

    again = rejudge(protocol, tmp_path / "play" / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert again.errors == 0
    record = json.loads((tmp_path / "again.jsonl").read_text())
    assert record["outcome"] == {"winner": "asker", "reason": "found it in 3 questions"}
    assert record["rewards"] == {"asker": pytest.approx(0.9), "answerer": 0.0}
    assert [m["state"] for m in record["messages"]] == [m.state for m in episode.messages]


async def test_a_final_guess_that_is_wrong_loses_and_a_placeholder_is_no_guess(tmp_path):
    asker = ["My guess is ...", "Is it an apple?", "My guess is: an Apple!"]
    _, episode, _ = await _replay(tmp_path, asker, ["No", "no."], item=BANANA)
    assert [(m.role, m.content, m.state) for m in episode.messages] == [
        ("asker", "My guess is ...", _state(1)), ("answerer", "No", _state(1)),
        ("asker", "Is it an apple?", _state(2, named="apple")), ("answerer", "no.", _state(2, named="apple")),
        ("asker", "My guess is: an Apple!", _state(3, guess="Apple"))]
    assert (episode.outcome.winner, episode.outcome.reason) == ("answerer", "wrong guess")
    assert episode.rewards == {"asker": 0.0, "answerer": 1.0}


async def test_the_question_budget_runs_out_and_a_guess_wins_on_the_last_message(tmp_path):
    _, lost, _ = await _replay(tmp_path / "lost", ["Is it red?", "Is it round?"], ["**No.**"], item=BANANA,
                               max_questions=2)
    assert [(m.role, m.content) for m in lost.messages] == [
        ("asker", "Is it red?"), ("answerer", "**No.**"), ("asker", "Is it round?")]  # the last one goes unanswered
    assert [m.prompt for m in lost.messages if m.role == "asker"] == [_prompt(2, "fruit"), _prompt(1, "fruit")]
    assert (lost.outcome.winner, lost.outcome.reason) == ("answerer", "not found in 2 questions")
    assert lost.rewards == {"asker": 0.0, "answerer": 1.0}

    _, won, _ = await _replay(tmp_path / "won", ["Is it yellow?", "My final guess is the bananas."], ["Yes"],
                              item=BANANA, max_questions=2)
    assert won.messages[-1].state == _state(2, guess="bananas")  # an inflection counts
    assert (won.outcome.winner, won.outcome.reason) == ("asker", "found it in 2 questions")
    assert won.rewards == {"asker": pytest.approx(0.5), "answerer": 0.0}


async def test_an_answerer_out_of_retries_spoils_the_game(tmp_path):
    _, episode, clients = await _replay(tmp_path, ["Is it big?"], ["Maybe.", "It's a penguin, yes"], item=PENGUIN)
    assert [(m.role, m.content, m.invalid) for m in episode.messages] == [
        ("asker", "Is it big?", None), ("answerer", "It's a penguin, yes", True)]
    assert [(a.content, a.error) for a in episode.messages[1].attempts] == [("Maybe.", _error("Maybe."))]
    assert (episode.outcome.winner, episode.outcome.reason) == (None, "the answerer broke the rules")
    assert episode.rewards == {"asker": 0.0, "answerer": -1.0}
    assert len(clients["answerer"].create_calls) == 2


async def test_training_rows_from_replayed_games(tmp_path):
    protocol, won, _ = await _replay(tmp_path / "won", *WON, item=PENGUIN)
    _, lost, _ = await _replay(tmp_path / "lost", ["Is it red?", "Is it round?"], ["No"], seed=1, item=BANANA,
                               max_questions=2)
    assert lost.id != won.id  # another seed: another episode id (a dataset keeps one record per id)
    paths = [tmp_path / "won" / "transcripts.jsonl", tmp_path / "lost" / "transcripts.jsonl"]
    imitation = build_dataset("imitation", paths[:1], tmp_path / "imitation", roles=["asker", "answerer"],
                              protocol=protocol)
    assert imitation.role_rows == {"asker": 3, "answerer": 2}
    rows = load_rows(tmp_path / "imitation")
    assert [(r["role"], r["messages"][-1]["content"]) for r in rows] == [
        ("asker", "Is it a bird?"), ("answerer", "Yes."), ("asker", "Can it fly?"), ("answerer", "No."),
        ("asker", "Is it a **Penguin**?")]
    assert rows[3]["messages"][-3:] == [{"role": "assistant", "content": "I think penguins can't."},
                                        {"role": "user", "content": _error("I think penguins can't.")},
                                        {"role": "assistant", "content": "No."}]
    # spag: both games are decisive, each role won one: weight 2 / (2 * 1) = 1; the winners' turns get SPAG's rewards
    spag = build_dataset("spag", paths, tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert (spag.games_used, spag.role_rows) == (2, {"asker": 3, "answerer": 1})
    assert spag.weights == {"asker": 1.0, "answerer": 1.0}
    rows = load_rows(tmp_path / "spag")
    assert [(r["episode_id"], r["role"], r["messages"][-1]["content"]) for r in rows] == [
        (won.id, "asker", "Is it a bird?"), (won.id, "asker", "Can it fly?"), (won.id, "asker", "Is it a **Penguin**?"),
        (lost.id, "answerer", "No")]
    assert [r["reward"] for r in rows] == pytest.approx([*turn_rewards(3), 1.0])


def _check_real_episode(episode) -> None:
    """The messages, state and outcome of a real-model episode agree with the game's rules."""
    thing, budget = episode.variables["thing"], episode.variables["max_questions"]
    assert episode.variables["item"] == {"thing": thing, "category": episode.variables["category"]}
    roles = [m.role for m in episode.messages]
    assert roles == ["asker", "answerer"] * (len(roles) // 2) + (["asker"] if len(roles) % 2 else [])
    questions, before = 0, None
    for message in episode.messages:
        assert message.token_ids and len(message.logprobs) == len(message.token_ids)
        if message.invalid:
            assert message is episode.messages[-1] and message.role == "answerer"
            assert (episode.outcome.winner, episode.outcome.reason) == (None, "the answerer broke the rules")
            assert episode.rewards == {"asker": 0.0, "answerer": -1.0}
            return
        if message.role == "answerer":
            assert re.match(r"(?i)^[^a-z0-9]*(yes|no)\b", message.content) and not mentions(message.content, thing)
            assert message.state == before  # an answer changes nothing
            continue
        questions += 1
        assert message.state["questions"] == questions
        before = message.state
    last = episode.messages[-1].state
    named = [n for n in (last["named"], last["guess"]) if n is not None]
    if any(is_correct_guess(n, thing) for n in named):
        assert (episode.outcome.winner, episode.outcome.reason) == (
            "asker", f"found it in {questions} {'question' if questions == 1 else 'questions'}")
        assert episode.rewards["asker"] == pytest.approx(1 - (questions - 1) / budget)
    elif last["guess"] is not None:
        assert (episode.outcome.winner, episode.outcome.reason) == ("answerer", "wrong guess")
    else:
        assert questions == budget and episode.messages[-1].role == "asker"
        assert (episode.outcome.winner, episode.outcome.reason) == ("answerer", f"not found in {budget} questions")
    if episode.outcome.winner == "answerer":
        assert episode.rewards == {"asker": 0.0, "answerer": 1.0}


@pytest.mark.slow
def test_two_games_on_the_embedded_model(engine, tmp_path):
    text = TEXT.replace("sampling: {temperature: 0.7, max_tokens: 20}", "sampling: {temperature: 0.7, max_tokens: 14}")
    protocol = parse_protocol(text, PATH)
    models = role_models(protocol, "hf:smollm2-135m", {})
    asyncio.run(play(protocol, 2, tmp_path / "real", models, overrides={"max_questions": 3}))
    path = tmp_path / "real" / "transcripts.jsonl"
    episodes = list(read_transcripts(path, strict=True))
    assert len(episodes) == 2
    for episode in episodes:
        assert episode.status == "ok", episode.error
        assert episode.models == {"asker": "hf:smollm2-135m", "answerer": "hf:smollm2-135m"}
        _check_real_episode(episode)

    again = assert_rejudged_alike(protocol, path, episodes, tmp_path)
    for episode in episodes:
        assert [m.state for m in again[episode.id].messages] == [m.state for m in episode.messages]

    data = build_dataset("imitation", [path], tmp_path / "data", roles=["asker"], protocol=protocol)
    asked = sum(1 for e in episodes for m in e.messages if m.role == "asker")
    assert data.role_rows == {"asker": asked}
    rows = load_rows(tmp_path / "data")
    assert all(r["messages"][0]["role"] == "system" and r["messages"][-1]["role"] == "assistant" for r in rows)
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    # SPAG uses the games with a winner who spoke (a wrong first guess leaves the answerer silent)
    decisive = [e for e in episodes if any(m.role == e.outcome.winner for m in e.messages)]
    assert spag.games_used == len(decisive)
    assert sum(r["reward"] for r in load_rows(tmp_path / "spag")) == pytest.approx(len(decisive))  # 1 per game






@pytest.mark.parametrize("old, new, fragment, expected", [
    # every value of an unpacked list must have each part
    ("{thing: apple, category: fruit}", "{thing: apple, kind: fruit}", "    unpack: [thing, category]",
     "variables.item.unpack: value 4 has no key 'category': {'thing': 'apple', 'kind': 'fruit'}"),
    # an unpacked name may not be another variable's
    ("unpack: [thing, category]", "unpack: [thing, category, max_questions]", "    unpack: [thing",
     "variables.item.unpack: 'max_questions' is already a variable name; each name may be defined once"),
    # `valid` sees the reply and the template names, not the outcome
    ("and not mentions(message, thing)", "and winner != 'asker'", "    valid: >-",
     "roles.answerer.valid: undefined name 'winner'"),
    # on_invalid names a role of the protocol, or null
    ("on_invalid: {winner: null,", "on_invalid: {winner: questioner,", "    on_invalid:",
     "roles.answerer.on_invalid.winner: unknown role 'questioner'; roles are ['answerer', 'asker']"),
])
def test_the_main_features_used_wrongly_are_reported_at_load(tmp_path, old, new, fragment, expected):
    assert_load_error(TEXT, old, new, fragment, expected, tmp_path)
