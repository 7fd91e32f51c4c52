"""TextArena environments as protocols (``textarena:ENV_ID``): played with replay clients and with the
embedded model, their transcripts rebuilt into exactly the chats the models were sent, built into
datasets, evaluated; and the errors of a wrong environment, player count or field."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparring.cli import app
from sparring.data import build_dataset, load_rows
from sparring.errors import JudgeError, ProtocolError
from sparring.evaluation import eval_winrate
from sparring.protocols import episode_views, load_protocol, parse_protocol, play, rejudge
from sparring.transcripts import read_transcripts
from tests._games import ReplayClients, assert_views_match_requests

MODEL = "hf:smollm2-135m"
TICTACTOE = "textarena:TicTacToe-v0"
NEGOTIATION = "textarena:SimpleNegotiation-v0-short"  # 6 moves
P0, P1 = "player_0", "player_1"
# player 0 (O) takes the diagonal 4, 0, 8 while player 1 plays 1, 2
DIAGONAL = {P0: ["[4]", "I take the corner: [0]", "[8]"], P1: ["[1]", "2"]}  # "2": the action wrapper adds brackets


def _models(protocol) -> dict[str, str]:
    return {role: MODEL for role in protocol.spec.roles}


async def _replayed(source: str, replies: dict[str, list[str]], out, games: int = 2):
    protocol = load_protocol(source)
    clients = ReplayClients(replies)
    summary = await play(protocol, games, out, _models(protocol), clients=clients, concurrency=1)
    return protocol, clients, summary, list(read_transcripts(summary.path, strict=True))


@pytest.mark.slow
async def test_tictactoe_is_played_by_its_environment_and_each_turn_holds_only_what_was_new(tmp_path):
    protocol, clients, summary, episodes = await _replayed(TICTACTOE, DIAGONAL, tmp_path)
    assert protocol.name == "textarena.TicTacToe-v0" and list(protocol.spec.roles) == [P0, P1]
    assert summary.games == 2 and summary.errors == 0 and summary.wins == {P0: 2}
    for episode in episodes:
        assert episode.status == "ok" and episode.outcome.winner == P0
        assert episode.rewards == {P0: 1.0, P1: -1.0}  # the environment's rewards
        assert [m.role for m in episode.messages] == [P0, P1, P0, P1, P0]
        assert [m.content for m in episode.messages] == ["[4]", "[1]", "I take the corner: [0]", "2", "[8]"]
        prompts = [m.prompt for m in episode.messages]
        assert "You are Player 0 in Tic Tac Toe" in prompts[0] and "You are Player 1 in Tic Tac Toe" in prompts[1]
        # no observation is handed twice: the rules come once, a player's own move is not echoed back
        assert all("Your goal is" not in prompt for prompt in prompts[2:])
        assert "Player 0 placed their symbol (O) in cell 4." in prompts[1]
        assert "[Player 1] [1]" in prompts[2] and "[Player 0]" not in prompts[2]
        assert "cell 0" in prompts[3] and "[Player 1] [2]" in prompts[4]  # the wrapper's brackets, as played
        assert set(episode.variables) == {"env_seed"}
    assert episodes[0].variables != episodes[1].variables  # each episode its own seed, drawn from its id
    # what each model was sent is exactly what the transcript rebuilds: system prompt, its own
    # earlier observations and replies, then the new observation
    assert_views_match_requests(protocol, episodes[-1], clients.made)
    views = episode_views(protocol, episodes[-1])
    assert views[4].chat(with_target=False) == [
        {"role": "system", "content": protocol.spec.roles[P0].system.strip()},
        {"role": "user", "content": episodes[-1].messages[0].prompt}, {"role": "assistant", "content": "[4]"},
        {"role": "user", "content": episodes[-1].messages[2].prompt},
        {"role": "assistant", "content": "I take the corner: [0]"},
        {"role": "user", "content": episodes[-1].messages[4].prompt}]


async def test_an_invalid_move_is_sent_back_by_the_environment_and_a_second_one_loses(tmp_path):
    protocol, _, _, episodes = await _replayed(TICTACTOE, {P0: ["[4]", "[4]", "[9]"], P1: ["[0]"]}, tmp_path, 1)
    (episode,) = episodes
    assert [m.role for m in episode.messages] == [P0, P1, P0, P0]  # the same player is asked again
    assert "attempted an invalid move" in episode.messages[3].prompt
    assert episode.outcome.winner == P1 and episode.rewards == {P0: -1.0, P1: 1.0}


async def test_a_negotiation_is_decided_and_scored_by_its_environment(tmp_path):
    replies = {P0: ["[Offer: 2 Wheat -> 1 Wood]"] + ["[Deny]"] * 9, P1: ["[Accept]"] + ["[Deny]"] * 9}
    protocol, clients, summary, episodes = await _replayed(NEGOTIATION, replies, tmp_path)
    assert summary.errors == 0 and len(episodes) == 2
    for episode in episodes:
        assert "inventory value" in episode.outcome.reason  # its verdict on the trades, after its last turn
        assert "accepted" in episode.messages[2].prompt.lower()  # player 0 learns its offer was taken
        assert sorted(episode.rewards) == [P0, P1] and set(episode.rewards.values()) <= {-1.0, 0.0, 1.0}
        winner = episode.outcome.winner
        assert winner is None or episode.rewards[winner] == 1.0
    # the resources differ per seed: the two episodes' first observations differ
    assert episodes[0].messages[0].prompt != episodes[1].messages[0].prompt
    assert_views_match_requests(protocol, episodes[-1], clients.made)


def _short(source: str) -> object:
    """The environment's protocol, saved and edited as a user would: 12 new tokens a move."""
    text = load_protocol(source).text
    assert "max_tokens: 128" in text
    return parse_protocol(text.replace("max_tokens: 128", "max_tokens: 12"))


@pytest.mark.slow
@pytest.mark.parametrize("source", [TICTACTOE, NEGOTIATION])
async def test_the_embedded_model_plays_two_episodes_and_the_logged_prompts_are_the_views(source, tmp_path, engine):
    protocol = _short(source)
    summary = await play(protocol, 2, tmp_path, _models(protocol), seed=3)
    episodes = list(read_transcripts(summary.path, strict=True))
    assert [e.status for e in episodes] == ["ok", "ok"], [e.error for e in episodes]
    for episode in episodes:
        assert episode.outcome is not None and episode.messages
        views = episode_views(protocol, episode)
        assert len(views) == len(episode.messages)
        for view, message in zip(views, episode.messages):
            assert message.usage["prompt_tokens"] == len(engine.encode_chat(view.chat(with_target=False)))
            assert message.prompt.startswith("[")


async def test_data_build_and_the_win_rate_of_a_textarena_game(tmp_path):
    _, _, summary, episodes = await _replayed(TICTACTOE, DIAGONAL, tmp_path / "games")
    data = build_dataset("imitation", [summary.path], tmp_path / "data")  # the protocol found by its name
    rows = load_rows(tmp_path / "data")
    assert data.games_used == 2 and rows.num_rows == 6  # the winner's three moves of each game
    assert set(rows["role"]) == {P0} and set(rows["reward"]) == {1.0}
    first = rows[0]["messages"]
    assert first[0]["role"] == "system" and first[1]["content"] == episodes[0].messages[0].prompt
    assert first[-1] == {"role": "assistant", "content": "[4]"}
    spag = build_dataset("spag", [summary.path], tmp_path / "spag")
    assert spag.rows == 6

    def replay(models):  # the model in player 0's seat plays the diagonal, in player 1's it loses
        return ReplayClients(DIAGONAL)

    result = await eval_winrate(TICTACTOE, "hf:model", "hf:opponent", 4, tmp_path / "eval", clients=replay)
    assert (result.total.wins, result.total.losses, result.total.ties) == (2, 2, 0)
    assert json.loads((tmp_path / "eval" / "winrate.json").read_text())["protocol"] == "textarena.TicTacToe-v0"


@pytest.mark.slow
def test_the_cli_shows_plays_and_refuses_to_rejudge(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(app, ["protocols", "show", TICTACTOE])
    assert shown.exit_code == 0 and "environment:\n  textarena: TicTacToe-v0" in shown.output
    saved = tmp_path / "tictactoe.yaml"
    saved.write_text(shown.output)
    assert runner.invoke(app, ["protocols", "validate", str(saved)]).exit_code == 0
    with pytest.raises(JudgeError, match="decided each game"):
        rejudge(load_protocol(saved), tmp_path / "none.jsonl")
    listed = runner.invoke(app, ["protocols", "list"])
    assert "textarena:ENV_ID" in listed.output


def test_wrong_environments_player_counts_and_fields_are_clear_errors(tmp_path):
    with pytest.raises(ProtocolError, match=r"'TicTacToe-v9' is no TextArena environment \(did you mean TicTacToe-v0"):
        load_protocol("textarena:TicTacToe-v9")
    text = load_protocol(TICTACTOE).text
    three = text + "  player_2:\n    system: A third player.\n"
    path = tmp_path / "three.yaml"
    path.write_text(three)
    with pytest.raises(ProtocolError, match=r"three.yaml: roles: TicTacToe-v0 is played by 2 players, and the "
                                            r"protocol has 3 roles"):
        load_protocol(path)
    for field, value in [("judge", "{rules: []}"), ("variables", "{n: {values: [1]}}")]:
        path.write_text(text + f"{field}: {value}\n")
        with pytest.raises(ProtocolError, match=f"{field}: an environment protocol leaves it to its environment"):
            load_protocol(path)
    path.write_text(text.replace("    system:", "    prompt: Move!\n    system:", 1))
    with pytest.raises(ProtocolError, match=r"roles.player_0.prompt: not in an environment protocol"):
        load_protocol(path)
