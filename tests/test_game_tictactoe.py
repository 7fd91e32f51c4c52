"""The built-in `tictactoe`: two model players, a scripted board drawn from the state, invalid moves.

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
from sparring.protocols import Judge, episode_views, load_protocol, parse_protocol, play, rejudge, role_models
from sparring.transcripts import read_transcripts

BUILTIN = Path(__file__).parent.parent / "sparring" / "protocols" / "builtin" / "tictactoe.yaml"
SYSTEM_X = ("You play tic-tac-toe as X. Your opponent plays O.\nThe cells are numbered 1 to 9, row by row.\n"
            "On your turn, reply with the number of one free cell and nothing else.\n"
            "Three of your marks in a row, a column or a diagonal win.\n")
PROMPT_X = "You are X. Which free cell do you take? Answer with a single number."

EMPTY = ". . .    1 2 3\n. . .    4 5 6\n. . .    7 8 9\nX to move. Free cells: 1, 2, 3, 4, 5, 6, 7, 8, 9."


def _state(cells: str, next_: str, last, winner=None) -> dict:
    """The state as the protocol keeps it, from the board written as 9 characters (row by row)."""
    return {"board": list(cells), "free": [i + 1 for i, c in enumerate(cells) if c == "."], "next": next_,
            "last": last, "winner": winner}


async def _play(tmp_path: Path, replies: dict[str, list[str]], protocol=None, seed: int = 0):
    """One episode (of seed ``seed``: its id) on replay clients: the episode and each model role's client."""
    protocol = protocol or load_protocol("tictactoe")
    episode, clients = await play_replayed(protocol, tmp_path, replies, seed=seed)
    return episode, clients


def _sent(client: ReplayChatCompletionClient, call: int) -> list[tuple[str, str]]:
    return [(type(m).__name__, m.content) for m in client.create_calls[call]["messages"]]


def test_the_builtin_is_listed_and_valid():
    runner = CliRunner()
    assert "tictactoe" in runner.invoke(app, ["protocols", "list"]).output
    result = runner.invoke(app, ["protocols", "validate", "tictactoe"])
    assert result.exit_code == 0 and "ok" in result.output, result.output
    assert role_models(load_protocol("tictactoe"), "replay", {}) == {"x": "replay", "o": "replay"}  # board: scripted


async def test_x_wins_with_three_in_a_column_after_rejected_moves(tmp_path):
    # X 5, O 2, X 1 (after "I take 5", taken), O 9 (after "ten"), X 7, O 3, X 4: X holds 1-4-7
    replies = {"x": ["5", "I take 5", "Cell 1", "7", "4"], "o": ["2", "ten", "9", "3"]}
    episode, clients = await _play(tmp_path, replies)
    boards = [
        EMPTY,
        ". . .    1 2 3\n. X .    4 5 6\n. . .    7 8 9\nO to move. Free cells: 1, 2, 3, 4, 6, 7, 8, 9.",
        ". O .    1 2 3\n. X .    4 5 6\n. . .    7 8 9\nX to move. Free cells: 1, 3, 4, 6, 7, 8, 9.",
        "X O .    1 2 3\n. X .    4 5 6\n. . .    7 8 9\nO to move. Free cells: 3, 4, 6, 7, 8, 9.",
        "X O .    1 2 3\n. X .    4 5 6\n. . O    7 8 9\nX to move. Free cells: 3, 4, 6, 7, 8.",
        "X O .    1 2 3\n. X .    4 5 6\nX . O    7 8 9\nO to move. Free cells: 3, 4, 6, 8.",
        "X O O    1 2 3\n. X .    4 5 6\nX . O    7 8 9\nX to move. Free cells: 4, 6, 8.",
        "X O O    1 2 3\nX X .    4 5 6\nX . O    7 8 9\nX has three in a row and wins.",
    ]
    states = [_state(".........", "x", None), _state("....X....", "o", 5), _state(".O..X....", "x", 2),
              _state("XO..X....", "o", 1), _state("XO..X...O", "x", 9), _state("XO..X.X.O", "o", 7),
              _state("XOO.X.X.O", "x", 3), _state("XOOXX.X.O", "o", 4, winner="x")]
    expected = []  # (role, content, state after it): the board before each move, then the move
    moves = [("x", "5"), ("o", "2"), ("x", "Cell 1"), ("o", "9"), ("x", "7"), ("o", "3"), ("x", "4")]
    for i, (role, move) in enumerate(moves):
        expected += [("board", boards[i], states[i]), (role, move, states[i + 1])]
    expected.append(("board", boards[7], states[7]))
    assert [(m.role, m.content, m.state) for m in episode.messages] == expected
    # the speakers: the board before every move, X and O in turn; the game ends on the board's drawing
    assert [m.role for m in episode.messages] == ["board", "x", "board", "o"] * 3 + ["board", "x", "board"]
    assert [m.turn for m in episode.messages] == list(range(15))
    assert all(m.scripted for m in episode.messages if m.role == "board")
    assert (episode.outcome.winner, episode.outcome.reason) == ("x", "three in a row")
    assert episode.rewards == {"x": 1.0, "o": -1.0, "board": 0.0}
    # each rejected reply was sent back with the board drawn from the state, then retried in the same chat
    (x_attempt,) = episode.messages[5].attempts
    error_x = ("'I take 5' is not a free cell. The board (X to move):\n"
               ". O .    1 2 3\n. X .    4 5 6\n. . .    7 8 9\nReply with one of the free cells: 1, 3, 4, 6, 7, 8, 9.")
    assert (x_attempt.content, x_attempt.error) == ("I take 5", error_x)
    (o_attempt,) = episode.messages[7].attempts
    assert o_attempt.content == "ten" and o_attempt.error.startswith("'ten' is not a free cell. The board (O to move):\n")
    assert _sent(clients["x"], 2) == [("SystemMessage", SYSTEM_X), ("UserMessage", boards[2]), ("UserMessage", PROMPT_X),
                                      ("AssistantMessage", "I take 5"), ("UserMessage", error_x)]
    # history: last_round, sees: [board]: a player's context is the latest board and the prompt
    assert _sent(clients["x"], 0) == [("SystemMessage", SYSTEM_X), ("UserMessage", EMPTY), ("UserMessage", PROMPT_X)]
    assert _sent(clients["x"], 3) == [("SystemMessage", SYSTEM_X), ("UserMessage", boards[4]), ("UserMessage", PROMPT_X)]
    assert _sent(clients["o"], 0)[0][1].startswith("You play tic-tac-toe as O. Your opponent plays X.")
    # a re-judge of the logged messages without their states recomputes them and decides the same
    bare = [m.model_dump(exclude={"state"}) for m in episode.messages]
    outcome, index = Judge(load_protocol("tictactoe")).judge(episode.variables, bare)
    assert (outcome.winner, outcome.reason, index) == ("x", "three in a row", 14)


async def test_a_full_board_without_a_line_is_a_draw(tmp_path):
    # X 5, O 1, X 9, O 3, X 2, O 8, X 4, O 6, X 7:  O X O / X X O / X O X
    episode, _ = await _play(tmp_path, {"x": ["5", "9", "2", "4", "7"], "o": ["1", "3", "8", "6"]})
    assert len(episode.messages) == 19  # the whole schedule: 10 drawings, 9 moves
    assert [m.role for m in episode.messages] == ["board", "x", "board", "o"] * 4 + ["board", "x", "board"]
    assert episode.messages[-1].content == "O X O    1 2 3\nX X O    4 5 6\nX O X    7 8 9\nThe board is full: a draw."
    assert episode.messages[-1].state == {"board": list("OXOXXOXOX"), "free": [], "next": "o", "last": 7, "winner": None}
    assert all(m.state["winner"] is None for m in episode.messages)
    assert (episode.outcome.winner, episode.outcome.reason) == (None, "draw")
    assert episode.rewards == {"x": 0.0, "o": 0.0, "board": 0.0}


async def test_three_invalid_replies_give_the_game_to_the_other_player(tmp_path):
    episode, clients = await _play(tmp_path, {"x": ["5"], "o": ["5", "the middle", "5 again"]})
    assert [(m.role, m.content, m.invalid) for m in episode.messages] == [
        ("board", EMPTY, None), ("x", "5", None),
        ("board", ". . .    1 2 3\n. X .    4 5 6\n. . .    7 8 9\nO to move. Free cells: 1, 2, 3, 4, 6, 7, 8, 9.", None),
        ("o", "5 again", True)]
    assert [a.content for a in episode.messages[3].attempts] == ["5", "the middle"]
    assert len(clients["o"].create_calls) == 3  # the reply and its 2 retries
    # the rejected reply runs no update: it is logged with no state, the board's is the last one
    assert episode.messages[3].state is None and episode.messages[2].state == _state("....X....", "o", 5)
    assert (episode.outcome.winner, episode.outcome.reason) == ("x", "invalid move")
    assert episode.rewards == {"x": 1.0, "o": -1.0, "board": 0.0}
    summary = rejudge(load_protocol("tictactoe"), tmp_path / "transcripts.jsonl", tmp_path / "again.jsonl")
    assert summary.errors == 0
    (again,) = read_transcripts(tmp_path / "again.jsonl", strict=True)
    assert again.outcome == episode.outcome and again.rewards == episode.rewards


async def test_replayed_games_become_training_rows_with_their_rewards(tmp_path):
    await _play(tmp_path / "win", {"x": ["5", "I take 5", "Cell 1", "7", "4"], "o": ["2", "ten", "9", "3"]})
    await _play(tmp_path / "draw", {"x": ["5", "9", "2", "4", "7"], "o": ["1", "3", "8", "6"]}, seed=1)
    paths = [tmp_path / "win" / "transcripts.jsonl", tmp_path / "draw" / "transcripts.jsonl"]
    protocol = load_protocol("tictactoe")
    # spag: the decisive game only (the draw is a tie); the winner's 4 moves, later moves weigh more
    spag = build_dataset("spag", paths, tmp_path / "spag", protocol=protocol, vary_prompts=False)
    assert spag.games_used == 1 and spag.role_rows == {"x": 4} and spag.dropped == {"tie": 1}
    rows = load_rows(tmp_path / "spag")
    assert [r["messages"][-1]["content"] for r in rows] == ["5", "Cell 1", "7", "4"]
    assert [r["reward"] for r in rows] == pytest.approx(turn_rewards(4))
    assert {r["weight"] for r in rows} == {0.5}  # 1 decisive game / (2 * 1 win of x)
    # the accepted move after a retry is trained with its turn's chat as sent: the rejected reply and its error
    assert [m["role"] for m in rows[1]["messages"]] == ["system", "user", "user", "assistant", "user", "assistant"]
    assert rows[1]["messages"][3]["content"] == "I take 5"
    # imitation of both players in every game: each accepted move a row, never the scripted board
    imitation = build_dataset("imitation", paths, tmp_path / "imitation", roles=["x", "o", "board"], protocol=protocol)
    assert imitation.role_rows == {"x": 4 + 5, "o": 3 + 4}
    # each row carries its role's reward in its game: the won game's x rows 1 and o rows -1, the draw's 0
    rows = load_rows(tmp_path / "imitation")
    won, drawn = "tictactoe-0-000000", "tictactoe-1-000000"
    assert [(r["episode_id"], r["role"], r["reward"]) for r in rows] == (
        [(won, "x", 1.0), (won, "o", -1.0)] * 3 + [(won, "x", 1.0)] + [(drawn, "x", 0.0), (drawn, "o", 0.0)] * 4
        + [(drawn, "x", 0.0)])
    # each row's context: the system prompt, the board drawn just before the move (a position with
    # that player to move), the prompt
    boards = {m.content for path in paths for e in read_transcripts(path) for m in e.messages if m.role == "board"}
    for row in load_rows(tmp_path / "imitation"):
        system, board, prompt = row["messages"][:3]
        assert board["content"] in boards and f"{row['role'].upper()} to move" in board["content"]
        assert prompt["content"] == f"You are {row['role'].upper()}. Which free cell do you take? Answer with a single number."


@pytest.mark.slow
async def test_real_model_games_end_are_valid_rejudge_and_build(tmp_path, engine):
    protocol = parse_protocol(BUILTIN.read_text().replace("max_tokens: 8", "max_tokens: 6"), BUILTIN)
    summary = await play(protocol, 2, tmp_path / "real", role_models(protocol, "hf:smollm2-135m", {}))
    episodes = list(read_transcripts(summary.path, strict=True))
    assert len(episodes) == 2
    for episode in episodes:
        assert episode.status == "ok", episode.error
        assert episode.outcome.reason in ("three in a row", "draw", "invalid move"), episode.outcome
        assert episode.models == {"x": "hf:smollm2-135m", "o": "hf:smollm2-135m"}
        roles = [m.role for m in episode.messages]
        assert roles == (["board", "x", "board", "o"] * 5)[:len(roles)]
        # every accepted move names a cell that was free; an invalid move ends the game at once
        for i, message in enumerate(episode.messages):
            if message.role in ("x", "o") and not message.invalid:
                free_before = episode.messages[i - 1].state["free"]
                assert message.state["last"] in free_before and message.state["last"] not in message.state["free"]
        assert episode.messages[-1].invalid or episode.messages[-1].role == "board"
        winner = episode.outcome.winner
        expected = {"x": 0.0, "o": 0.0, "board": 0.0} if winner is None else {
            winner: 1.0, ("o" if winner == "x" else "x"): -1.0, "board": 0.0}
        assert episode.rewards == expected
        # a view (a trainable turn) per accepted move: none for the board or a move rejected to the end
        assert len(episode_views(protocol, episode)) == sum(1 for m in episode.messages
                                                            if not m.scripted and not m.invalid)
    again = rejudge(protocol, summary.path, tmp_path / "again.jsonl")
    assert again.errors == 0
    judged = {e.id: e for e in read_transcripts(tmp_path / "again.jsonl", strict=True)}
    assert {i: (e.outcome, e.rewards) for i, e in judged.items()} == {e.id: (e.outcome, e.rewards) for e in episodes}
    data = build_dataset("imitation", [summary.path], tmp_path / "data", roles=["x", "o"], protocol=protocol)
    moves = sum(1 for e in episodes for m in e.messages if m.role in ("x", "o") and not m.invalid)
    rewards = {e.id: e.rewards for e in episodes}
    assert data.game_rows == moves
    assert all(r["reward"] == rewards[r["episode_id"]][r["role"]] for r in load_rows(tmp_path / "data"))
    spag = build_dataset("spag", [summary.path], tmp_path / "spag", protocol=protocol)
    # decisive games whose winner moved (X's 3 invalid first replies give O a game it never played)
    decisive = [e for e in episodes if any(m.role == e.outcome.winner for m in e.messages)]
    assert spag.games_used == len(decisive)


@pytest.mark.parametrize("old, new, field, expected", [
    ('      last: "number(message) | int"', '      last: "number(move) | int"', "update.0.set.last",
     "undefined name 'move'"),
    ("    valid: number(message) in state.free\n", "", "roles.x.invalid_prompt",
     "invalid_prompt applies to invalid replies: give the role a `valid` expression too"),
    ("    on_invalid: {winner: o, reason: invalid move}", "    on_invalid: {winner: O, reason: invalid move}",
     "roles.x.on_invalid.winner", "unknown role 'O'"),
    ('      winner: "{{ state.winner }}"', "      winner: X", "judge.rules.0.winner", "unknown role 'X'"),
    ("{% for r in [0, 3, 6] %}{{ state.board[r:r + 3]", "{% for r in [0, 3, 6] %}{{ board[r:r + 3]",
     "roles.x.invalid_prompt", "undefined name 'board'"),
    ("    valid: number(message) in state.free", "    valid: number(message) in state.fre", "roles.x.valid",
     "state.fre: the state has no such key"),
])
def test_misused_features_are_reported_with_file_line_and_field(tmp_path, old, new, field, expected):
    text = BUILTIN.read_text()
    assert old in text
    path = tmp_path / "tictactoe.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and f": {field}: " in message and expected in message, message
    line = int(message[len(str(path)) + 1:].split(":")[0])
    assert field.split(".")[-1] in path.read_text().splitlines()[line - 1], message
