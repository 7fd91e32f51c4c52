"""`sparring import spag`: SPAG's released game files (Linear95/SPAG, e.g. gpt4_game_top30k_results.json)
as adversarial_taboo_spag transcripts judged by the official rules, and imitation data that stops at
each game's deciding message (as tools/assign_rewards.py slices ``history[:history_length]``).
Imitation from games of `openai:`/`litellm:` models too. Files are written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _games import A, BROKE, D, GUESSED, SAID, TIE, WRONG, ReplayClients
from sparring.cli import app
from sparring.data import build_dataset
from sparring.errors import TranscriptError
from sparring.importers import import_spag
from sparring.protocols import load_protocol, play
from sparring.transcripts import read_transcripts

SPAG = load_protocol("adversarial_taboo_spag")
NEUTRAL = [(A, "Tell me about your day."), (D, "It was fine, thanks.")] * 5


def record(messages: list[tuple[str, str]], target: str = "apple") -> dict:
    """A game as SPAG's files hold it (the fields tools/assign_rewards.py reads; GPT-4's file adds others)."""
    return {"target_word": target, "max_turns": 5, "history": [{"role": r, "content": c} for r, c in messages],
            "winner": "ignored"}


GAMES = [
    # attacker wins: the defender says the word in its second message
    record([(A, "I keep thinking of fruit."), (D, "Bananas are my favourite."),
            (A, "Which one keeps the doctor away?"), (D, "An apple a day!")]),
    # defender wins with a guess
    record([(A, "Think of a red fruit that grows on trees."), (D, "I know the word! It is `apple`!")]),
    # the attacker says the word first: a rule break, whatever follows
    record([(A, "Do you like apples?"), (D, "I know the word! It is `apple`!")]),
    # ten messages without the word: a tie
    record(NEUTRAL),
    # runs past the deciding message: the wrong guess decides (attacker wins), the rest is never trained
    record([(A, "Name a fruit."), (D, "I know the word! It is `pear`!"), (A, "Nope, think red."),
            (D, "I know the word! It is `apple`!")]),
    # longer than the schedule: only the first 10 messages are judged (the official max_turns * 2), a tie
    record(NEUTRAL + [(A, "Crunchy and red?"), (D, "An apple!")]),
]
OUTCOMES = [SAID, GUESSED, BROKE, TIE, WRONG, TIE]


def spag_file(tmp_path: Path, games: list = GAMES, name: str = "games.json") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(games, indent=2))
    else:
        path.write_text("".join(json.dumps(game) + "\n" for game in games))
    return path


def rows(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["games.json", "games.jsonl"])
def test_import_gives_judged_transcripts_with_every_message(tmp_path, name):
    summary = import_spag(spag_file(tmp_path, name=name), tmp_path / "t.jsonl")
    assert (summary.games, summary.errors, summary.capped) == (6, 0, 1)
    assert dict(summary.reasons) == {"tie": 2, "defender said the word": 1, "defender guessed the word": 1,
                                     "attacker breaks the rules": 1, "defender guessed wrong": 1}
    episodes = list(read_transcripts(tmp_path / "t.jsonl", strict=True))
    assert [e.id for e in episodes] == [f"games-{i:06d}" for i in range(6)]
    for episode, game, outcome in zip(episodes, GAMES, OUTCOMES):
        assert (episode.outcome.winner, episode.outcome.reason) == (outcome.winner, outcome.reason)
        assert (episode.protocol.name, episode.protocol.hash) == (SPAG.name, SPAG.hash)
        assert episode.variables == {"target": "apple"} and episode.models == {A: "gpt-4", D: "gpt-4"}
        assert [(m.role, m.content) for m in episode.messages] == [(m["role"], m["content"]) for m in game["history"]]
    assert episodes[4].rewards == {A: 1.0, D: -1.0}


def test_imitation_trains_the_winners_turns_up_to_the_deciding_message(tmp_path):
    import_spag(spag_file(tmp_path), tmp_path / "t.jsonl", model="gpt-4-0613")
    summary = build_dataset("imitation", [tmp_path / "t.jsonl"], tmp_path / "d", vary_prompts=False)
    assert summary.dropped == {"attacker breaks the rules": 1, "tie": 2} and summary.games_used == 3
    assert summary.role_rows == {A: 3, D: 1}
    got = [(r["episode_id"], r["role"], r["messages"][-1]["content"]) for r in rows(tmp_path / "d")]
    assert got == [("games-000000", A, "I keep thinking of fruit."), ("games-000000", A, "Which one keeps the doctor away?"),
                   ("games-000001", D, "I know the word! It is `apple`!"), ("games-000004", A, "Name a fruit.")]
    # SPAG's rewards cut there too: the attacker's one turn before the wrong guess carries the whole reward
    build_dataset("spag", [tmp_path / "t.jsonl"], tmp_path / "s", vary_prompts=False)
    assert [(r["episode_id"], r["reward"]) for r in rows(tmp_path / "s") if r["episode_id"] == "games-000004"] == [
        ("games-000004", 1.0)]
    # every turn of a role (--roles): still nothing after the deciding message or past the 10th message
    build_dataset("imitation", [tmp_path / "t.jsonl"], tmp_path / "r", roles=[A], vary_prompts=False)
    per_game = {}
    for row in rows(tmp_path / "r"):
        per_game[row["episode_id"]] = per_game.get(row["episode_id"], 0) + 1
    assert per_game == {"games-000000": 2, "games-000001": 1, "games-000003": 5, "games-000004": 1, "games-000005": 5}


def test_imported_rows_get_spags_query_by_default(tmp_path):
    import_spag(spag_file(tmp_path), tmp_path / "t.jsonl")
    build_dataset("imitation", [tmp_path / "t.jsonl"], tmp_path / "d")
    for row in rows(tmp_path / "d"):
        user, assistant = row["messages"]
        assert user["role"] == "user" and ("The target word is `apple`" in user["content"]) == (row["role"] == A)
        assert "Nope, think red." not in user["content"]


@pytest.mark.parametrize("content, where", [
    ('[{"history": [], "max_turns": 5}]', "games.json: record 0: no 'target_word'"),
    ('[{"history": [], "target_word": "a", "max_turns": 5}, {"history": "hi", "target_word": "b", "max_turns": 5}]',
     "games.json: record 1: 'history' is a string, not a list"),
    ('[{"history": [{"role": "judge", "content": "x"}], "target_word": "a", "max_turns": 5}]',
     "games.json: record 0: history[0] has role 'judge', not 'attacker' or 'defender'"),
    ('[{"history": ["hi"], "target_word": "a", "max_turns": 5}]', "games.json: record 0: history[0] is a string, not an object"),
    ('[{"history": [{"role": "attacker", "content": 3}], "target_word": "a", "max_turns": 5}]',
     "games.json: record 0: history[0] has no string 'content'"),
    ('[{"history": [], "target_word": "a", "max_turns": 4}]', "games.json: record 0: 'max_turns' is 4"),
    ('[{"history": [], "target_word": "a", "max_turns": "5"}]', "games.json: record 0: 'max_turns' is a string, not an integer"),
    ('[3]', "games.json: record 0: an integer, not an object"),
    ('[\n{"history": [],\n oops}]', "games.json:3: not valid JSON"),
    ('[]', "games.json: holds no games"),
])
def test_bad_files_name_the_place_and_write_nothing(tmp_path, content, where):
    path = tmp_path / "games.json"
    path.write_text(content)
    with pytest.raises(TranscriptError) as caught:
        import_spag(path, tmp_path / "t.jsonl")
    assert where in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.json"]


def test_bad_jsonl_lines_and_existing_output(tmp_path):
    good = json.dumps(GAMES[1])
    path = tmp_path / "games.jsonl"
    path.write_text(f"{good}\n\n{good}\n{{broken\n")
    with pytest.raises(TranscriptError, match=r"games.jsonl:4: not valid JSON"):
        import_spag(path, tmp_path / "t.jsonl")
    path.write_text(f"{good}\n\n{json.dumps({'history': []})}\n")
    with pytest.raises(TranscriptError, match=r"games.jsonl:3: record 1: no 'target_word'"):
        import_spag(path, tmp_path / "t.jsonl")
    with pytest.raises(TranscriptError, match="not found"):
        import_spag(tmp_path / "missing.json", tmp_path / "t.jsonl")
    out = tmp_path / "t.jsonl"
    out.write_text("kept\n")
    with pytest.raises(TranscriptError, match="already holds data"):
        import_spag(spag_file(tmp_path), out)
    assert out.read_text() == "kept\n"
    assert import_spag(spag_file(tmp_path), out, overwrite=True).games == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.json", "games.jsonl", "t.jsonl"]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TranscriptError, match="deep.json: nested too deeply to be a SPAG game file"):
        import_spag(deep, tmp_path / "d.jsonl")
    source = spag_file(tmp_path)
    with pytest.raises(TranscriptError, match="is the SPAG file being imported"):
        import_spag(source, tmp_path / "." / source.name, overwrite=True)
    assert json.loads(source.read_text())  # the source is still SPAG's file


def test_the_import_command(tmp_path):
    runner = CliRunner()
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["import", "spag", str(spag_file(tmp_path)), "--out", str(out), "--model", "gpt-4-0314"])
    assert result.exit_code == 0, result.output
    assert "imported 6 SPAG games" in result.output and "defender guessed wrong" in result.output
    assert str(out) in result.output.replace("\n", "")
    assert "judged their first 10" in result.output
    assert {e.models[A] for e in read_transcripts(out)} == {"gpt-4-0314"}
    bad = tmp_path / "bad.json"
    bad.write_text('[{"history": []}]')
    result = runner.invoke(app, ["import", "spag", str(bad), "--out", str(tmp_path / "u.jsonl")])
    assert result.exit_code == 1 and "bad.json: record 0: no 'target_word'" in result.output


async def test_imitation_from_games_of_api_models(tmp_path):
    """Transcripts of `sparring play` with openai:/litellm: specs train like any other (the spec is only logged)."""
    models = {A: "openai:gpt-4o@http://127.0.0.1:8000/v1", D: "litellm:anthropic/claude-3-5-haiku"}
    clients = ReplayClients({A: ["A red fruit from an orchard."], D: ["I know the word! It is `apple`!"]})
    summary = await play(SPAG, 1, tmp_path / "play", models, clients=clients, overrides={"target": "apple"})
    (episode,) = read_transcripts(summary.path, strict=True)
    assert episode.models == models and episode.outcome.reason == "defender guessed the word"
    data = build_dataset("imitation", [summary.path], tmp_path / "d", vary_prompts=False)
    assert data.role_rows == {D: 1}
    assert rows(tmp_path / "d")[0]["messages"][-1]["content"] == "I know the word! It is `apple`!"


def test_selfplay_imitation_imports_spag_files_and_keeps_transcripts(tmp_path):
    from sparring.trainer import SelfPlay, SelfPlayConfig

    games = spag_file(tmp_path)
    jsonl = spag_file(tmp_path, name="more.jsonl")
    ours = tmp_path / "ours.jsonl"
    import_spag(games, ours)  # already sparring transcripts: used as they are
    config = SelfPlayConfig(protocol="adversarial_taboo_spag", model="hf:smollm2-135m", out=tmp_path / "run",
                            imitation=[str(games), str(jsonl), str(ours)])
    folder = tmp_path / "run" / "epoch_0"
    paths = SelfPlay(config, report=lambda _: None)._imitation_transcripts(folder)
    assert paths == [folder / "imported" / "games.jsonl", folder / "imported" / "more.jsonl", ours]
    for path in paths:
        assert [(e.outcome.winner, e.outcome.reason) for e in read_transcripts(path)] == \
            [(o.winner, o.reason) for o in OUTCOMES]


def test_building_data_from_a_spag_file_says_to_import_it(tmp_path):
    with pytest.raises(TranscriptError, match="reads as a SPAG game file: import it first"):
        build_dataset("imitation", [spag_file(tmp_path)], tmp_path / "d")


def test_import_reports_progress(tmp_path):
    started, judged = [], []
    summary = import_spag(spag_file(tmp_path), tmp_path / "t.jsonl", on_start=started.append, on_episode=judged.append)
    assert started == [summary.games] and [e.id for e in judged] == [e.id for e in read_transcripts(tmp_path / "t.jsonl")]
