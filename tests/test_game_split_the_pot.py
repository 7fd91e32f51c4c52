"""The built-in `split_the_pot`: alternating offers over a pot, the standing proposal kept in state.

Games on AutoGen's `ReplayChatCompletionClient` have every message, state, request, outcome and
reward worked out by hand; two games on the real embedded model check that whatever the tiny
model writes, an episode ends properly, is logged valid, re-judges to the same outcome and
builds training rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient
from typer.testing import CliRunner

from _games import play_replayed
from sparring.cli import app
from sparring.data import build_dataset, load_rows
from sparring.data._rewards import turn_rewards
from sparring.errors import ProtocolError
from sparring.protocols import Judge, load_protocol, parse_protocol, play, rejudge, role_models
from sparring.transcripts import read_transcripts

BUILTIN = Path(__file__).parent.parent / "sparring" / "protocols" / "builtin" / "split_the_pot.yaml"
SYSTEM = ("You and another player share a pot of 100 coins. You take turns; you speak\n{}. On your turn, write "
          "exactly one of:\nI propose X for me and Y for you\n(X and Y whole numbers that add up to 100), or\n"
          "I accept\nto accept the other player's last proposal. If no proposal is accepted after 6 messages\n"
          "in all, nobody gets anything. Keep your message to one sentence.\n")
OPEN = "Make your proposal, for example: I propose 60 for me and 40 for you."
ERROR_OPEN = ("That is not a valid move. Write a proposal whose two numbers add up to 100, such as: "
              "I propose 60 for me and 40 for you.")
ERROR_REPLY = ("That is not a valid move. Write a proposal whose two numbers add up to 100, such as: "
               "I propose 60 for me and 40 for you; or write: I accept.")


def _standing(yours: int, theirs: int) -> str:
    return (f"The other player proposes {yours} for you and {theirs} for them. Write I accept, or make a new "
            "proposal, for example: I propose 60 for me and 40 for you.")


def _offer(by: str, mine: int, yours: int) -> dict:
    return {"by": by, "mine": mine, "yours": yours}


async def _play(tmp_path: Path, replies: dict[str, list[str]], pot: int | None = 100, seed: int = 0):
    """One episode (of seed ``seed``: its id) on replay clients, the pot fixed unless ``None``."""
    protocol = load_protocol("split_the_pot")
    overrides = {} if pot is None else {"pot": pot}
    episode, clients = await play_replayed(protocol, tmp_path, replies, overrides=overrides, seed=seed)
    return episode, clients


def _sent(client: ReplayChatCompletionClient, call: int) -> list[tuple[str, str]]:
    return [(type(m).__name__, m.content) for m in client.create_calls[call]["messages"]]


def test_the_builtin_is_listed_and_valid():
    runner = CliRunner()
    assert "split_the_pot" in runner.invoke(app, ["protocols", "list"]).output
    result = runner.invoke(app, ["protocols", "validate", "split_the_pot"])
    assert result.exit_code == 0 and "ok" in result.output, result.output


async def test_the_pot_is_drawn_from_the_range_with_its_example(tmp_path):
    episode, clients = await _play(tmp_path, {"proposer": ["no"] * 3, "responder": []}, pot=None, seed=5)
    pot = episode.variables["pot"]
    assert pot in range(20, 101, 10) and episode.variables == {"pot": pot, "example": pot * 6 // 10}
    assert _sent(clients["proposer"], 0)[-1][1] == (
        f"Make your proposal, for example: I propose {pot * 6 // 10} for me and {pot - pot * 6 // 10} for you.")


async def test_a_deal_after_counter_proposals_and_rejected_moves(tmp_path):
    replies = {"proposer": ["I accept", "I propose 70 for me and 30 for you", "I propose 60 for me and 40 for you"],
               "responder": ["I propose 80 for me and 30 for you", "I propose 50 coins for me and 50 coins for you",
                             "I accept."]}
    episode, clients = await _play(tmp_path, replies)
    assert [(m.role, m.content, m.state) for m in episode.messages] == [
        ("proposer", "I propose 70 for me and 30 for you", {"offer": _offer("proposer", 70, 30), "deal": None}),
        ("responder", "I propose 50 coins for me and 50 coins for you",
         {"offer": _offer("responder", 50, 50), "deal": None}),
        ("proposer", "I propose 60 for me and 40 for you", {"offer": _offer("proposer", 60, 40), "deal": None}),
        ("responder", "I accept.", {"offer": _offer("proposer", 60, 40), "deal": {"proposer": 60, "responder": 40}})]
    # "I accept" with no proposal standing, and shares of 110, were rejected and asked again
    assert [(a.content, a.error) for a in episode.messages[0].attempts] == [("I accept", ERROR_OPEN)]
    assert [(a.content, a.error) for a in episode.messages[1].attempts] == [
        ("I propose 80 for me and 30 for you", ERROR_REPLY)]
    assert [m.prompt for m in episode.messages] == [OPEN, _standing(30, 70), _standing(50, 50), _standing(40, 60)]
    assert (episode.outcome.winner, episode.outcome.reason) == ("proposer", "deal")  # the larger share wins
    assert episode.rewards == {"proposer": 0.6, "responder": 0.4}  # each one's share of the pot
    # what the models were sent: the system prompt, the other's messages as written (no label), the prompt
    assert _sent(clients["proposer"], 1) == [("SystemMessage", SYSTEM.format("first")), ("UserMessage", OPEN),
                                             ("AssistantMessage", "I accept"), ("UserMessage", ERROR_OPEN)]
    assert _sent(clients["responder"], 2) == [
        ("SystemMessage", SYSTEM.format("second")), ("UserMessage", "I propose 70 for me and 30 for you"),
        ("UserMessage", _standing(30, 70)), ("AssistantMessage", "I propose 50 coins for me and 50 coins for you"),
        ("UserMessage", "I propose 60 for me and 40 for you"), ("UserMessage", _standing(40, 60))]
    bare = [m.model_dump(exclude={"state"}) for m in episode.messages]
    outcome, index = Judge(load_protocol("split_the_pot")).judge(episode.variables, bare)
    assert (outcome.winner, outcome.reason, index) == ("proposer", "deal", 3)


async def test_an_even_split_is_a_tie_with_half_each(tmp_path):
    episode, _ = await _play(tmp_path, {"proposer": ["I propose 50 for me and 50 for you."],
                                        "responder": ["  I ACCEPT your proposal"]})
    assert [m.state["deal"] for m in episode.messages] == [None, {"proposer": 50, "responder": 50}]
    assert (episode.outcome.winner, episode.outcome.reason) == (None, "deal")
    assert episode.rewards == {"proposer": 0.5, "responder": 0.5}


async def test_the_responder_wins_a_deal_on_its_own_proposal(tmp_path):
    episode, _ = await _play(tmp_path, {"proposer": ["I propose 50 for me and 50 for you", "I accept"],
                                        "responder": ["No: I propose 70 for me and 30 for you"]})
    assert episode.messages[-1].state == {"offer": _offer("responder", 70, 30),
                                          "deal": {"responder": 70, "proposer": 30}}
    assert (episode.outcome.winner, episode.outcome.reason) == ("responder", "deal")
    assert episode.rewards == {"proposer": 0.3, "responder": 0.7}


async def test_no_deal_after_six_messages_gives_nothing(tmp_path):
    replies = {"proposer": [f"I propose {n} for me and {30 - n} for you" for n in (25, 22, 20)],
               "responder": [f"I propose {n} for me and {30 - n} for you" for n in (25, 20, 18)]}
    episode, _ = await _play(tmp_path, replies, pot=30)
    assert [m.role for m in episode.messages] == ["proposer", "responder"] * 3
    assert episode.messages[-1].state == {"offer": _offer("responder", 18, 12), "deal": None}
    assert (episode.outcome.winner, episode.outcome.reason) == (None, "no deal")
    assert episode.rewards == {"proposer": 0.0, "responder": 0.0}


async def test_three_invalid_replies_end_the_game_and_cost_the_offender(tmp_path):
    replies = {"proposer": ["I propose 60 for me and 40 for you"],
               "responder": ["Deal!", "I propose all for me", "I propose 90 for me and 20 for you"]}
    episode, clients = await _play(tmp_path, replies)
    assert [(m.role, m.content, m.invalid) for m in episode.messages] == [
        ("proposer", "I propose 60 for me and 40 for you", None),
        ("responder", "I propose 90 for me and 20 for you", True)]
    assert [a.content for a in episode.messages[1].attempts] == ["Deal!", "I propose all for me"]
    assert len(clients["responder"].create_calls) == 3
    assert (episode.outcome.winner, episode.outcome.reason) == ("proposer", "invalid move")
    assert episode.rewards == {"proposer": 0.0, "responder": -1.0}
    summary = rejudge(load_protocol("split_the_pot"), tmp_path / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert summary.errors == 0
    (again,) = read_transcripts(tmp_path / "again.jsonl", strict=True)
    assert again.outcome == episode.outcome and again.rewards == episode.rewards


async def test_replayed_games_become_training_rows(tmp_path):
    games = [  # a proposer's deal, a tie, a responder's deal
        {"proposer": ["I propose 70 for me and 30 for you", "I propose 60 for me and 40 for you"],
         "responder": ["I propose 50 for me and 50 for you", "I accept"]},
        {"proposer": ["I propose 50 for me and 50 for you"], "responder": ["I accept"]},
        {"proposer": ["I propose 50 for me and 50 for you", "I accept"],
         "responder": ["I propose 70 for me and 30 for you"]},
    ]
    paths = []
    for seed, replies in enumerate(games):
        await _play(tmp_path / str(seed), replies, seed=seed)
        paths.append(tmp_path / str(seed) / "transcripts.jsonl")
    protocol = load_protocol("split_the_pot")
    spag = build_dataset("spag", paths, tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert (spag.games_used, spag.dropped, spag.role_rows) == (2, {"tie": 1}, {"proposer": 2, "responder": 1})
    assert spag.weights == {"proposer": 1.0, "responder": 1.0}  # 2 decisive games / (2 * 1 win each)
    rows = load_rows(tmp_path / "spag")
    assert [(r["role"], r["messages"][-1]["content"]) for r in rows] == [
        ("proposer", "I propose 70 for me and 30 for you"), ("proposer", "I propose 60 for me and 40 for you"),
        ("responder", "I propose 70 for me and 30 for you")]
    assert [r["reward"] for r in rows] == pytest.approx(turn_rewards(2) + [1.0])
    assert rows[1]["messages"][-2] == {"role": "user", "content": _standing(50, 50)}
    imitation = build_dataset("imitation", paths, tmp_path / "imitation", roles=["proposer", "responder"],
                              protocol=protocol)
    assert imitation.role_rows == {"proposer": 2 + 1 + 2, "responder": 2 + 1 + 1}
    # each row carries its role's reward in its game: its share of the deal
    assert [(r["episode_id"].removeprefix("split_the_pot"), r["role"], r["reward"]) for r in load_rows(tmp_path / "imitation")] == [
        ("-0-000000", "proposer", 0.6), ("-0-000000", "responder", 0.4), ("-0-000000", "proposer", 0.6),
        ("-0-000000", "responder", 0.4), ("-1-000000", "proposer", 0.5), ("-1-000000", "responder", 0.5),
        ("-2-000000", "proposer", 0.3), ("-2-000000", "responder", 0.7), ("-2-000000", "proposer", 0.3)]


@pytest.mark.slow
async def test_real_model_games_end_are_valid_rejudge_and_build(tmp_path, engine):
    protocol = parse_protocol(BUILTIN.read_text().replace("max_tokens: 24", "max_tokens: 20"), BUILTIN)
    summary = await play(protocol, 2, tmp_path / "real", role_models(protocol, "hf:smollm2-135m", {}))
    episodes = list(read_transcripts(summary.path, strict=True))
    assert len(episodes) == 2
    for episode in episodes:
        assert episode.status == "ok", episode.error
        pot = episode.variables["pot"]
        assert episode.outcome.reason in ("deal", "no deal", "invalid move"), episode.outcome
        roles = [m.role for m in episode.messages]
        assert roles == ["proposer", "responder", "proposer", "responder", "proposer", "responder"][:len(roles)]
        accepted = [m for m in episode.messages if not m.invalid]
        # every accepted proposal's shares add up to the pot
        assert all(sum(m.state["offer"][k] for k in ("mine", "yours")) == pot for m in accepted)
        deal = episode.messages[-1].state["deal"] if episode.messages[-1].state else None
        if episode.outcome.reason == "deal":
            assert episode.rewards == {role: deal[role] / pot for role in ("proposer", "responder")}
        elif episode.outcome.reason == "invalid move":
            assert episode.messages[-1].invalid and deal is None
            loser = episode.messages[-1].role
            assert episode.rewards == {loser: -1.0, ("responder" if loser == "proposer" else "proposer"): 0.0}
        else:
            assert len(episode.messages) == 6 and episode.rewards == {"proposer": 0.0, "responder": 0.0}
    again = rejudge(protocol, summary.path, tmp_path / "again.jsonl")
    assert again.errors == 0
    judged = {e.id: (e.outcome, e.rewards) for e in read_transcripts(tmp_path / "again.jsonl", strict=True)}
    assert judged == {e.id: (e.outcome, e.rewards) for e in episodes}
    data = build_dataset("imitation", [summary.path], tmp_path / "data", roles=["proposer", "responder"],
                         protocol=protocol)
    assert data.game_rows == sum(1 for e in episodes for m in e.messages if not m.invalid)
    rewards = {e.id: e.rewards for e in episodes}
    assert all(r["reward"] == rewards[r["episode_id"]][r["role"]] for r in load_rows(tmp_path / "data"))
    spag = build_dataset("spag", [summary.path], tmp_path / "spag", protocol=protocol)
    assert spag.games_used == sum(1 for e in episodes if any(m.role == e.outcome.winner for m in e.messages))


@pytest.mark.parametrize("old, new, field, expected", [
    ("      deal: \"{state.offer.by: state.offer.mine, role: state.offer.yours}\"",
     "      deal: \"{state.offer.by: state.offer.mine, role: offer.yours}\"", "update.1.set.deal", "undefined name 'offer'"),
    ("  pot: {range: [20, 100, 10]}", "  pot: {range: [100, 20, 10]}", "variables.pot.range",
     "min (100) is greater than max (20)"),
    ("      if regex(message, \"(?i)^[^a-z]*i accept\")", "      if regex(message, \"(?i)^[^a-z*i accept\")",
     "roles.proposer.valid", "does not compile"),
    ("(state.deal[role] / pot) if state.deal is not none else (-1 if",
     "(state.deal[role] / pot) if state.deal is not none else ('none' if", "rewards.proposer",
     "a reward must be a number"),
    ("      {%- else %}The other player proposes {{ state.offer.yours }}",
     "      {%- else %}The other player proposes {{ state.offers.yours }}", "roles.proposer.prompt",
     "state.offers: the state has no such key"),
])
def test_misused_features_are_reported_with_file_line_and_field(tmp_path, old, new, field, expected):
    text = BUILTIN.read_text()
    assert old in text
    path = tmp_path / "split_the_pot.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and f": {field}: " in message and expected in message, message
    line = int(message[len(str(path)) + 1:].split(":")[0])
    assert field.split(".")[-1] in path.read_text().splitlines()[line - 1], message
