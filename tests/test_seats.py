"""Seats and teams: roles drawn per episode onto seats, models that sit in seats, teams that win together.

A two-player game with seats `a` and `b`: a coin (`first`) draws which seat plays the opener,
who always speaks first; so who moves first follows the seat. Replayed episodes are compared
with hand-written transcripts (seat and role of each message, prompts naming the seat, what each
model was sent, rewards), fixed seatings, a seated win rate split by the roles each seat played,
teams with the default rewards, and each seat or team used wrongly failing at load.
"""

from __future__ import annotations

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from _games import assert_load_error, assert_views_match_requests, play_replayed, sent
from sparring.errors import ProtocolError
from sparring.evaluation import eval_winrate
from sparring.protocols import parse_protocol, rejudge, role_models
from sparring.protocols._variables import VariableSampler
from sparring.transcripts import read_transcripts

GAME = """\
name: first_to_claim
variables:
  first: {values: [a, b]}
seats:
  a: "{{ 'opener' if first == 'a' else 'closer' }}"
  b: "{{ 'closer' if first == 'a' else 'opener' }}"
roles:
  opener:
    system: "You are seat {{ seat }} and you open."
    prompt: "Say CLAIM to win."
  closer:
    system: "You are seat {{ seat }} and you answer."
    prompt: "Seats: {{ seats | dictsort | map('join', '=') | join(', ') }}. Say CLAIM to win."
schedule: {type: round_robin, order: [opener, closer], max_turns: 2}
judge:
  rules:
    - when: '"CLAIM" in message'
      winner: "{{ role }}"
      reason: "{{ seat }} claimed it"
rewards:
  opener: "1 if winner == 'opener' else 0"
  closer: "1 if winner == 'closer' else 0"
"""


def _game(text: str = GAME):
    return parse_protocol(text)


def test_the_seating_is_drawn_with_the_variables_and_recorded_among_them():
    protocol = _game()
    seatings = [VariableSampler(protocol).sample(i) for i in range(8)]
    assert {s["first"] for s in seatings} == {"a", "b"}
    for variables in seatings:
        opener = variables["first"]
        assert variables["seats"] == {opener: "opener", "ab".replace(opener, ""): "closer"}
    # --set fixes the seating itself (checked at once), or the variables it is drawn from
    assert VariableSampler(protocol, {"seats": {"a": "closer", "b": "opener"}}).sample(0)["seats"] == {
        "a": "closer", "b": "opener"}
    assert VariableSampler(protocol, {"first": "b"}).sample(3)["seats"] == {"a": "closer", "b": "opener"}
    with pytest.raises(ProtocolError, match=r"--set seats: give every seat, in order, its role: a mapping with keys "
                                            r"\['a', 'b'\]"):
        VariableSampler(protocol, {"seats": ["opener", "closer"]})
    with pytest.raises(ProtocolError, match=r"seats\.b: gave 'opener', as seat 'a' did"):
        VariableSampler(protocol, {"seats": {"a": "opener", "b": "opener"}})


async def test_a_replayed_episode_follows_the_seating(tmp_path):
    protocol = _game()
    replies = {"a": ["I pass."], "b": ["CLAIM!"]}  # models sit in seats: seat b claims
    episode, made = await play_replayed(protocol, tmp_path, replies, overrides={"first": "a"})
    assert episode.variables == {"first": "a", "seats": {"a": "opener", "b": "closer"}}
    assert [(m.role, m.seat, m.content, m.prompt) for m in episode.messages] == [
        ("opener", "a", "I pass.", "Say CLAIM to win."),
        ("closer", "b", "CLAIM!", "Seats: a=opener, b=closer. Say CLAIM to win.")]
    assert (episode.outcome.winner, episode.outcome.reason) == ("closer", "b claimed it")
    assert episode.rewards == {"opener": 0.0, "closer": 1.0}
    assert episode.models == {"opener": "replay", "closer": "replay"}  # recorded per role, as always
    # each prompt names the model's seat; the other's message comes under its seat's name
    assert sent(made, "a", 0) == [("SystemMessage", "You are seat a and you open.", None),
                                  ("UserMessage", "Say CLAIM to win.", "user")]
    assert sent(made, "b", 0) == [("SystemMessage", "You are seat b and you answer.", None),
                                  ("UserMessage", "I pass.", "a"),
                                  ("UserMessage", "Seats: a=opener, b=closer. Say CLAIM to win.", "user")]
    assert_views_match_requests(protocol, episode, {"opener": made["a"], "closer": made["b"]})
    summary = rejudge(protocol, tmp_path / "transcripts.jsonl", tmp_path / "again.jsonl")
    (again,) = read_transcripts(tmp_path / "again.jsonl", strict=True)
    assert summary.errors == 0 and again.outcome == episode.outcome and again.rewards == episode.rewards


async def test_the_other_seating_swaps_who_moves_first(tmp_path):
    replies = {"a": ["CLAIM."], "b": ["I pass."]}
    episode, made = await play_replayed(_game(), tmp_path, replies, overrides={"first": "b"})
    assert [(m.role, m.seat, m.content) for m in episode.messages] == [
        ("opener", "b", "I pass."), ("closer", "a", "CLAIM.")]
    assert (episode.outcome.winner, episode.outcome.reason, episode.rewards) == (
        "closer", "a claimed it", {"opener": 0.0, "closer": 1.0})
    assert sent(made, "a", 0)[0] == ("SystemMessage", "You are seat a and you answer.", None)


def test_models_are_given_per_seat():
    protocol = _game()
    assert role_models(protocol, "hf:base", {"b": "hf:other"}) == {"a": "hf:base", "b": "hf:other"}
    with pytest.raises(ProtocolError, match=r"--role opener=\.\.\.: in first_to_claim models sit in seats, and the "
                                            r"role each seat plays is drawn per episode; name a seat: \['a', 'b'\]"):
        role_models(protocol, "hf:base", {"opener": "hf:other"})
    with pytest.raises(ProtocolError, match=r"--role c=\.\.\.: first_to_claim has no such seat; its seats are"):
        role_models(protocol, "hf:base", {"c": "hf:other"})


async def test_a_seated_win_rate_puts_the_model_in_each_seat_and_splits_by_the_roles_played(tmp_path):
    # the model always claims, the opponent never: whichever role it plays, the model wins
    def clients(models):
        def make(name, spec):
            return ReplayChatCompletionClient(["CLAIM" if models[name] == "hf:model" else "pass"])
        return make

    result = await eval_winrate(_game(), "hf:model", "hf:opponent", games=8, out_dir=tmp_path, clients=clients)
    assert (result.games, result.wins, result.losses, result.errors) == (8, 8, 0, 0)
    assert sum(t.games for t in result.by_role.values()) == 8 and set(result.by_role) == {"opener", "closer"}
    assert all(t.wins == t.games for t in result.by_role.values())
    episodes = list(read_transcripts(tmp_path / "transcripts.jsonl", strict=True))
    for episode in episodes:  # the model's seat: a in the first half, b in the second
        seat = "a" if episode.id.startswith("first_to_claim-0-") else "b"
        assert episode.models[episode.variables["seats"][seat]] == "hf:model"
        assert episode.outcome.winner == episode.variables["seats"][seat]


TEAMS = """\
name: relay
teams: {blue: [b1, b2]}
roles:
  b1: {system: "Blue one."}
  b2: {system: "Blue two."}
  red: {system: "Red."}
schedule: {order: [b1, b2, red]}
judge:
  rules:
    - when: 'role == "b2" and "goal" in message'
      winner: blue
      reason: blue scored
"""


async def test_a_team_wins_together_with_the_default_rewards(tmp_path):
    protocol = parse_protocol(TEAMS)
    episode, _ = await play_replayed(protocol, tmp_path, {"b1": ["pass"], "b2": ["goal"], "red": ["?"]})
    assert (episode.outcome.winner, episode.outcome.winners, episode.outcome.winning_roles) == (
        "blue", ["b1", "b2"], ["b1", "b2"])
    assert episode.rewards == {"b1": 1.0, "b2": 1.0, "red": -1.0}
    assert len(episode.messages) == 2  # the goal decided it


@pytest.mark.parametrize("text, old, new, fragment, expected", [
    (GAME, "  b: \"{{ 'closer'", "  opener: \"{{ 'closer'", "opener: \"{{ 'closer'",
     "seats.opener: 'opener' is a role's name; seats and roles need different names"),
    (GAME, "  b: \"{{ 'closer' if first == 'a' else 'opener' }}\"\n", "", "  a: \"{{ 'opener'",
     "seats: 1 seat(s) for 2 role(s) played by a model ['opener', 'closer']; give one seat per role"),
    (GAME, "  b: \"{{ 'closer' if first == 'a' else 'opener' }}\"", "  b: judge", "b: judge",
     "seats.b: 'judge' is no role played by a model; give one of ['opener', 'closer']"),
    (GAME, "  b: \"{{ 'closer' if first == 'a' else 'opener' }}\"", "  b: \"{{ first }}-role\"", "b: \"{{ first }}",
     "seats.b: gave 'a-role', which is no role played by a model; give one of ['opener', 'closer'] (on a sample episode)"),
    (GAME, "  b: \"{{ 'closer' if first == 'a' else 'opener' }}\"", "  b: \"{{ turn }}\"", "b: \"{{ turn }}\"",
     "seats.b: undefined name 'turn'"),
    (GAME, "  opener:\n    system:", "  opener:\n    model: hf:big\n    system:", "model: hf:big",
     "roles.opener.model: in a protocol with seats, models sit in seats, not roles"),
    (GAME, "  first: {values: [a, b]}", "  first: {values: [a, b]}\n  seats: {values: [1]}", "  seats: {values",
     "variables: 'seats' is the seating of a protocol with `seats`"),
    (GAME, "schedule: {type: round_robin, order: [opener, closer]", "schedule: {type: round_robin, order: [opener, c]",
     "schedule:", "schedule.order.1: unknown role 'c'; roles are ['closer', 'opener'] (or a seat: ['a', 'b'])"),
    (TEAMS, "teams: {blue: [b1, b2]}", "teams: {red: [b1, b2]}", "teams:",
     "teams.red: 'red' is already the name of a role; give the team another name"),
    (TEAMS, "teams: {blue: [b1, b2]}", "teams: {blue: [b1, b3]}", "teams:", "teams.blue.1: unknown role 'b3'"),
    (TEAMS, "      winner: blue", "      winner: green", "winner: green",
     "judge.rules.0.winner: unknown role 'green'; roles are ['b1', 'b2', 'red'] (or a team: ['blue'])"),
])
def test_seats_and_teams_used_wrongly_are_reported_at_load(tmp_path, text, old, new, fragment, expected):
    assert_load_error(text, old, new, fragment, expected, tmp_path)
