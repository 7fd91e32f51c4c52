"""The built-in `spyfall`: a three-player hidden-role game, a talk phase then a simultaneous vote.

A replayed game has a hand-computed transcript (messages, phases, the state after each, prompts,
what each model was sent, outcome, rewards); the other outcomes are replayed from their votes;
two episodes on the real embedded model are checked against the rules (each vote read again
here), re-judged, and turned into training rows; the main features used wrongly fail at load.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from _games import ReplayClients, assert_load_error, assert_rejudged_alike, assert_views_match_requests, sent
from sparring.data import build_dataset, load_rows
from sparring.data._rewards import turn_rewards
from sparring.errors import ProtocolError
from sparring.protocols import builtin_names, load_protocol, parse_protocol, play, rejudge, role_models
from sparring.protocols._loader import BUILTIN_DIR
from sparring.transcripts import read_transcripts

NAME = "spyfall"
PATH = Path(str(BUILTIN_DIR / f"{NAME}.yaml"))
TEXT = PATH.read_text()
SEATS = ["p1", "p2", "p3"]
ROLES = ["spy", "citizen_a", "citizen_b"]
DECK = ["beach", "airplane", "bank", "circus", "hospital", "library", "restaurant", "school"]
REASONS = {"the citizens caught the spy", "the caught spy named the location", "the citizens accused a citizen",
           "no majority"}
START = {"votes": {}, "accused": None, "guess": None}


def _citizen_system(seat: str, location: str) -> str:
    return (f"You are {seat}, one of three players (p1, p2 and p3) of the game Spyfall.\n"
            f"The location is: {location}. One of the other two players is a spy who does not know\n"
            "it. Ask and answer questions that show you know the place, but never name it (the spy\n"
            "would learn it), and watch for the player who seems lost.\n"
            "Keep each message to one short sentence.\n")


def _spy_system(seat: str) -> str:
    return (f"You are {seat}, one of three players (p1, p2 and p3) of the game Spyfall.\n"
            "You are the spy. You do not know the location: it is one of airplane, bank, beach, circus, "
            "hospital, library, restaurant, school.\n"
            "Blend in: ask and answer like someone who knows the place, and listen for clues to work\n"
            "out which one it is. Never say that you are the spy.\n"
            "Keep each message to one short sentence.\n")


def _ask(next_player: str) -> str:
    return f"Answer the last question, then ask {next_player} one question about the location."


def _vote(others: str, spy: bool = False) -> str:
    text = f"Time to vote. Who is the spy, {others}? Answer with the name only."
    return text + (' Then, as the spy, guess the location: write "Location:" and the place.' if spy else "")


def _rewards(winner: str) -> dict[str, float]:
    return {"spy": 2.0, "citizen_a": -1.0, "citizen_b": -1.0} if winner == "spy" else \
        {"spy": -2.0, "citizen_a": 1.0, "citizen_b": 1.0}


TALK = {"p1": ["p2, do you need sunscreen here?", "Yes, and a towel."],
        "p2": ["Sometimes. p3, is it crowded?", "Hard to say. p1, do you come here often?"],
        "p3": ["In summer, yes. p1, what do you wear?", "Every weekend."]}
CAST = ["citizen_a", "spy", "citizen_b"]  # p2 is the spy


async def _replay(out: Path, votes: dict[str, str], cast: list[str] = CAST, text: str = TEXT):
    protocol = parse_protocol(text, PATH)
    clients = ReplayClients({seat: [*TALK[seat], votes[seat]] for seat in SEATS})  # models sit in seats
    await play(protocol, 1, out, role_models(protocol, "replay", {}), clients=clients,
               overrides={"cast": cast, "deck": DECK})
    (episode,) = read_transcripts(out / "transcripts.jsonl", strict=True)
    assert episode.status == "ok", episode.error
    return protocol, episode, clients.made


def test_the_built_in_is_listed_and_valid():
    assert NAME in builtin_names()
    protocol = load_protocol(NAME)
    assert list(protocol.spec.roles) == ROLES and list(protocol.spec.seats) == SEATS
    assert protocol.spec.teams == {"citizens": ["citizen_a", "citizen_b"]}
    assert protocol.spec.schedule.type == "phases" and protocol.spec.schedule.max_messages() == 9
    assert [(p.name, p.type) for p in protocol.spec.schedule.phases] == [("talk", "round_robin"), ("vote", "simultaneous")]
    # models are given per seat
    assert role_models(protocol, "hf:smollm2-135m", {"p2": "hf:other"}) == {
        "p1": "hf:smollm2-135m", "p2": "hf:other", "p3": "hf:smollm2-135m"}
    with pytest.raises(ProtocolError, match=r"--role spy=\.\.\.: in spyfall models sit in seats.*\['p1', 'p2', 'p3'\]"):
        role_models(protocol, "hf:smollm2-135m", {"spy": "hf:other"})


async def test_a_replayed_game_the_citizens_win(tmp_path):
    votes = {"p1": "I vote p2.", "p2": "p3\nLocation: the bank", "p3": "I am p3, and Player 2 is the spy."}
    protocol, episode, made = await _replay(tmp_path / "play", votes)
    seats = dict(zip(SEATS, CAST))
    assert episode.variables == {"deck": DECK, "location": "beach", "cast": CAST, "seats": seats}
    after_1 = {"votes": {"p1": "p2"}, "accused": None, "guess": None}
    after_2 = {"votes": {"p1": "p2", "p2": "p3"}, "accused": None, "guess": "bank"}
    after_3 = {"votes": {"p1": "p2", "p2": "p3", "p3": "p2"}, "accused": "p2", "guess": "bank"}
    # who spoke (role and seat), in which phase, turn and round, and the state after each message:
    # the talk leaves it as it was; each vote reads the first OTHER seat named (p3's own is skipped)
    assert [(m.role, m.seat, m.phase, m.turn, m.round, m.content, m.state) for m in episode.messages] == [
        ("citizen_a", "p1", "talk", 0, 0, TALK["p1"][0], START), ("spy", "p2", "talk", 1, 1, TALK["p2"][0], START),
        ("citizen_b", "p3", "talk", 2, 2, TALK["p3"][0], START), ("citizen_a", "p1", "talk", 3, 3, TALK["p1"][1], START),
        ("spy", "p2", "talk", 4, 4, TALK["p2"][1], START), ("citizen_b", "p3", "talk", 5, 5, TALK["p3"][1], START),
        ("citizen_a", "p1", "vote", 6, 6, votes["p1"], after_1), ("spy", "p2", "vote", 6, 6, votes["p2"], after_2),
        ("citizen_b", "p3", "vote", 6, 6, votes["p3"], after_3)]
    assert [m.prompt for m in episode.messages] == [
        "Ask p2 one question about the location.", _ask("p3"), _ask("p1"), _ask("p2"), _ask("p3"),
        "Answer the last question in one sentence.", _vote("p2 or p3"), _vote("p1 or p3", spy=True),
        _vote("p1 or p2")]
    # the spy guessed "bank", not the beach: the citizens' team wins, and both its roles with it
    assert (episode.outcome.winner, episode.outcome.reason) == ("citizens", "the citizens caught the spy")
    assert episode.outcome.winning_roles == ["citizen_a", "citizen_b"]
    assert episode.rewards == _rewards("citizens")
    assert episode.models == dict.fromkeys(ROLES, "replay")

    # the hidden role: only the citizens' system prompts hold the location; each says its seat
    assert sent(made, "p1", 0) == [("SystemMessage", _citizen_system("p1", "beach"), None),
                                   ("UserMessage", "Ask p2 one question about the location.", "user")]
    assert sent(made, "p2", 0)[0] == ("SystemMessage", _spy_system("p2"), None)
    assert sent(made, "p3", 0)[0] == ("SystemMessage", _citizen_system("p3", "beach"), None)
    # p1's vote: its own turns after their prompts, the others' messages labelled (and named) by
    # their seat, never their role
    assert sent(made, "p1", 2) == [
        ("SystemMessage", _citizen_system("p1", "beach"), None),
        ("UserMessage", "Ask p2 one question about the location.", "user"),
        ("AssistantMessage", TALK["p1"][0], "citizen_a"),
        ("UserMessage", f"p2: {TALK['p2'][0]}", "p2"), ("UserMessage", f"p3: {TALK['p3'][0]}", "p3"),
        ("UserMessage", _ask("p2"), "user"), ("AssistantMessage", TALK["p1"][1], "citizen_a"),
        ("UserMessage", f"p2: {TALK['p2'][1]}", "p2"), ("UserMessage", f"p3: {TALK['p3'][1]}", "p3"),
        ("UserMessage", _vote("p2 or p3"), "user")]
    # the vote is simultaneous: no voter was sent another's vote
    for seat in SEATS:
        (vote_call,) = made[seat].create_calls[2:]
        contents = [m.content for m in vote_call["messages"]]
        assert len(contents) == 10 and not [f"{s}: {v}" for s, v in votes.items() if s != seat and f"{s}: {v}" in contents]
    assert_views_match_requests(protocol, episode, {seats[seat]: client for seat, client in made.items()})

    again = rejudge(protocol, tmp_path / "play" / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert again.errors == 0 and again.reasons == {"the citizens caught the spy": 1}
    record = json.loads((tmp_path / "again.jsonl").read_text())
    assert record["outcome"] == {"winner": "citizens", "reason": "the citizens caught the spy",
                                 "winners": ["citizen_a", "citizen_b"]}
    assert record["rewards"] == _rewards("citizens")
    assert [m["state"] for m in record["messages"]] == [m.state for m in episode.messages]


@pytest.mark.parametrize("cast, votes, state, winner, reason", [
    # caught, but the spy names the location: Spyfall's last chance wins it the game
    (CAST, {"p1": "p2", "p2": "P1. Location: The Beach.", "p3": "p2"},
     {"votes": {"p1": "p2", "p2": "p1", "p3": "p2"}, "accused": "p2", "guess": "Beach"},
     "spy", "the caught spy named the location"),
    # the citizens are split and the spy's vote makes a citizen the accused
    (["citizen_a", "citizen_b", "spy"], {"p1": "player 2", "p2": "I think p1 is lying.", "p3": "p1"},
     {"votes": {"p1": "p2", "p2": "p1", "p3": "p1"}, "accused": "p1", "guess": None},
     "spy", "the citizens accused a citizen"),
    # three different names: no majority
    (["spy", "citizen_a", "citizen_b"], {"p1": "p3", "p2": "p1", "p3": "p2"},
     {"votes": {"p1": "p3", "p2": "p1", "p3": "p2"}, "accused": None, "guess": None}, "spy", "no majority"),
    # unreadable votes and votes for oneself are read as no vote; the spy's guess without a vote still counts
    (["spy", "citizen_b", "citizen_a"], {"p1": "pN. Location: bank", "p2": "No idea, sorry.", "p3": "p3!"},
     {"votes": {"p1": None, "p2": None, "p3": None}, "accused": None, "guess": "bank"}, "spy", "no majority"),
    # p3 is the spy and is caught
    (["citizen_b", "citizen_a", "spy"], {"p1": "p3", "p2": "Player3", "p3": "p2\nLocation: library"},
     {"votes": {"p1": "p3", "p2": "p3", "p3": "p2"}, "accused": "p3", "guess": "library"},
     "citizens", "the citizens caught the spy"),
])
async def test_the_vote_decides(tmp_path, cast, votes, state, winner, reason):
    protocol, episode, _ = await _replay(tmp_path, votes, cast=cast)
    assert [m.role for m in episode.messages[:3]] == cast  # the seats p1, p2, p3 speak in order
    assert episode.messages[-1].state == state
    assert (episode.outcome.winner, episode.outcome.reason) == (winner, reason)
    assert episode.rewards == _rewards(winner) and sum(episode.rewards.values()) == 0


async def test_training_rows_from_a_replayed_game(tmp_path):
    votes = {"p1": "I vote p2.", "p2": "p3\nLocation: the bank", "p3": "Player 2."}
    protocol, episode, _ = await _replay(tmp_path / "play", votes)
    path = tmp_path / "play" / "transcripts.jsonl"
    imitation = build_dataset("imitation", [path], tmp_path / "imitation", roles=ROLES, protocol=protocol)
    assert imitation.role_rows == dict.fromkeys(ROLES, 3)
    rows = load_rows(tmp_path / "imitation")
    # each row's chat is what its player was sent: the spy's holds no location
    spy_rows = [r for r in rows if r["role"] == "spy"]
    assert [r["messages"][-1]["content"] for r in spy_rows] == [*TALK["p2"], votes["p2"]]
    assert all(r["messages"][0]["content"] == _spy_system("p2") for r in spy_rows)
    assert rows[-1]["messages"][-2:] == [{"role": "user", "content": _vote("p1 or p2")},
                                         {"role": "assistant", "content": "Player 2."}]
    # imitation of the winners: the team's two roles
    winners = build_dataset("imitation", [path], tmp_path / "winners", protocol=protocol)
    assert winners.role_rows == {"citizen_a": 3, "citizen_b": 3}
    # spag: each role of the winning team gets SPAG's turn rewards for its turns
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert (spag.games_used, spag.role_rows, spag.weights) == (1, {"citizen_a": 3, "citizen_b": 3},
                                                                {"citizen_a": 0.5, "citizen_b": 0.5})
    rows = load_rows(tmp_path / "spag")
    assert [r["reward"] for r in rows] == pytest.approx(turn_rewards(3) * 2)
    assert [r["messages"][-1]["content"] for r in rows] == [*TALK["p1"], votes["p1"], *TALK["p3"], votes["p3"]]


def _read_vote(voter: str, content: str) -> str | None:
    """The vote as the protocol reads it, written again in Python: the first other seat named."""
    others = "".join(p[1] for p in SEATS if p != voter)
    found = re.search(rf"(?i)\bp(?:layer)?\s*([{others}])\b", content)
    return f"p{found.group(1)}" if found else None


def _check_real_episode(episode) -> None:
    """The messages, state and outcome of a real-model episode agree with the rules."""
    seats, location = episode.variables["seats"], episode.variables["location"]
    assert sorted(episode.variables["deck"]) == sorted(DECK) and location == episode.variables["deck"][0]
    assert seats == dict(zip(SEATS, episode.variables["cast"])) and sorted(seats.values()) == sorted(ROLES)
    spy = next(seat for seat, role in seats.items() if role == "spy")
    assert [(m.seat, m.role, m.phase, m.round) for m in episode.messages] == [
        *[(SEATS[i % 3], seats[SEATS[i % 3]], "talk", i) for i in range(6)], *[(s, seats[s], "vote", 6) for s in SEATS]]
    assert all(m.token_ids and len(m.logprobs) == len(m.token_ids) for m in episode.messages)
    assert all(m.state == START for m in episode.messages[:6])
    votes = {m.seat: _read_vote(m.seat, m.content) for m in episode.messages[6:]}
    assert episode.messages[-1].state["votes"] == votes
    named = [v for v in votes.values() if v is not None]
    accused = next((p for p in SEATS if named.count(p) >= 2), None)
    assert episode.messages[-1].state["accused"] == accused
    assert episode.outcome.reason in REASONS
    if accused is None:
        assert (episode.outcome.winner, episode.outcome.reason) == ("spy", "no majority")
    elif accused != spy:
        assert (episode.outcome.winner, episode.outcome.reason) == ("spy", "the citizens accused a citizen")
    else:
        assert episode.outcome.winner in ("spy", "citizens")
    assert episode.rewards == _rewards(episode.outcome.winner)


@pytest.mark.slow
def test_two_games_on_the_embedded_model(engine, tmp_path):
    # short messages keep the test quick; the game is otherwise the built-in
    assert TEXT.count("max_tokens: 40") == 1
    protocol = parse_protocol(TEXT.replace("max_tokens: 40", "max_tokens: 12"), PATH)
    models = role_models(protocol, "hf:smollm2-135m", {})
    summary = asyncio.run(play(protocol, 2, tmp_path / "real", models))
    path = tmp_path / "real" / "transcripts.jsonl"
    episodes = list(read_transcripts(path, strict=True))
    assert len(episodes) == 2 and summary.path == path and summary.errors == 0
    for episode in episodes:
        assert episode.status == "ok", episode.error
        assert episode.models == dict.fromkeys(ROLES, "hf:smollm2-135m")
        _check_real_episode(episode)

    assert_rejudged_alike(protocol, path, episodes, tmp_path)

    data = build_dataset("imitation", [path], tmp_path / "data", roles=ROLES, protocol=protocol)
    assert data.role_rows == dict.fromkeys(ROLES, 6)  # three turns each, in two games
    rows = load_rows(tmp_path / "data")
    assert all(("The location is:" in r["messages"][0]["content"]) == (r["role"] != "spy") for r in rows)
    # every game is decisive (the spy wins when the vote fails): spag trains on each winning role's turns
    spag = build_dataset("spag", [path], tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert spag.games_used == 2
    wins: dict[str, int] = {}
    for episode in episodes:
        for role in episode.outcome.winning_roles:
            wins[role] = wins.get(role, 0) + 3
    assert spag.role_rows == wins


@pytest.mark.parametrize("old, new, fragment, expected", [
    # a phase may only order the protocol's roles or seats
    ("      type: simultaneous\n      order: [p1, p2, p3]", "      type: simultaneous\n      order: [p1, p2, p4]",
     "order: [p1, p2, p4]", "schedule.phases.1.order.2: unknown role 'p4'; roles are ['citizen_a', 'citizen_b', 'spy'] "
     "(or a seat: ['p1', 'p2', 'p3'])"),
    # `phase` is a name of prompts and rules, not of rewards (they see the whole episode)
    ("  citizen_b: *citizen_reward", "  citizen_b: \"1 if phase == 'vote' else 0\"", "  citizen_b: \"1 if phase",
     "rewards.citizen_b: undefined name 'phase'"),
    # a phase's `until` is checked after each round with the rule names: the outcome is not one of them
    ("      order: [p1, p2, p3]        # seats: whichever role sits in p1 opens\n      max_turns: 6",
     "      order: [p1, p2, p3]\n      until: winner == 'spy'\n      max_turns: 6",
     "until: winner == 'spy'", "schedule.phases.0.until: undefined name 'winner'"),
    # a seat names a role: each seat plays a different one
    ('  p3: "{{ cast[2] }}"', '  p3: "{{ cast[1] }}"', 'p3: "{{ cast[1] }}"',
     "seats.p3: gave 'citizen_a', as seat 'p2' did; each seat plays a different role"),
    # a team is made of roles, and a winner names a role or a team
    ("  citizens: [citizen_a, citizen_b]", "  citizens: [citizen_a, p2]", "citizens: [citizen_a, p2]",
     "teams.citizens.1: unknown role 'p2'"),
    ("      winner: citizens           # the team: both citizens win", "      winner: citizen", "winner: citizen",
     "judge.final.1.winner: unknown role 'citizen'; roles are ['citizen_a', 'citizen_b', 'spy'] (or a team: ['citizens'])"),
])
def test_the_main_features_used_wrongly_are_reported_at_load(tmp_path, old, new, fragment, expected):
    assert_load_error(TEXT, old, new, fragment, expected, tmp_path)
