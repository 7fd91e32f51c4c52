"""`sparring data build`: SPAG's rewards, imitation/SPAG/SAIE datasets, SFT mixing, bad inputs, the CLI.

Episodes are made by hand so every number can be worked out in the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparring.cli import app
from sparring.data import build_dataset, load_rows, spag_rewards
from sparring.data._rewards import turn_rewards
from sparring.data._sft_data import gsm8k_solution, read_sft_data
from sparring.errors import ProtocolError, TrainingError, TranscriptError
from sparring.protocols import episode_views, load_protocol, parse_protocol
from sparring.protocols._visibility import system_prompt
from sparring.transcripts import Episode, Outcome, ProtocolRef, TranscriptMessage, TranscriptWriter

TABOO = "adversarial_taboo"
GSM8K = Path("/work/shared/datasets/gsm8k/train.jsonl")


def taboo(episode_id: str, turns: int, winner: str | None, reason: str, status: str = "ok") -> Episode:
    """An Adversarial Taboo episode of ``turns`` messages, attacker first; target "apple"."""
    messages = [TranscriptMessage(role="attacker" if i % 2 == 0 else "defender", content=f"{episode_id} message {i}",
                                  turn=i, round=i) for i in range(turns)]
    outcome = Outcome(winner=winner, reason=reason) if status == "ok" else None
    return Episode(id=episode_id, protocol=ProtocolRef(name=TABOO, hash=load_protocol(TABOO).hash),
                   variables={"target": "apple"}, messages=messages, outcome=outcome, status=status,
                   error="RuntimeError: boom" if status == "error" else None)


GAMES = [
    taboo("g1", 6, "attacker", "defender said the word"),  # attacker turns 0, 2, 4
    taboo("g2", 4, "defender", "defender guessed the word"),  # defender turns 1, 3
    taboo("g3", 2, "defender", "defender guessed the word"),  # defender turn 1
    taboo("g4", 8, "attacker", "defender guessed wrong"),  # attacker turns 0, 2, 4, 6
    taboo("g5", 4, None, "tie"),
    taboo("g6", 1, "defender", "attacker breaks the rules"),
    taboo("g7", 3, None, "", status="error"),
    taboo("g8", 10, None, "tie"),
    taboo("g9", 2, "attacker", "defender said the word"),  # attacker turn 0
]


def write(path: Path, episodes: list[Episode]) -> Path:
    with TranscriptWriter(path) as out:
        for episode in episodes:
            out.write(episode)
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- SPAG rewards -------------------------------------------------------------------------------


def test_spag_rewards_by_hand():
    result = spag_rewards(GAMES, drop_reasons=["attacker breaks the rules"])
    assert result.games_used == 5  # g1, g2, g3, g4, g9
    assert dict(result.dropped) == {"tie": 2, "attacker breaks the rules": 1, "error": 1}
    assert dict(result.wins) == {"attacker": 3, "defender": 2}
    # weight = n_decisive / (2 * n_role_wins): attacker 5 / 6, defender 5 / 4
    assert result.weights == pytest.approx({"attacker": 0.833333, "defender": 1.25}, abs=1e-6)
    got = {(s.episode_id, s.index): (s.role, s.reward, s.weight) for s in result.samples}
    # the k-th winner turn gets 1.25**k, normalised per game:
    # 3 turns: 1.25, 1.5625, 1.953125 (sum 4.765625); 4 turns: ... 2.44140625 (sum 7.20703125)
    expected = {
        ("g1", 0): ("attacker", 0.262295, 0.833333), ("g1", 2): ("attacker", 0.327869, 0.833333),
        ("g1", 4): ("attacker", 0.409836, 0.833333),
        ("g2", 1): ("defender", 0.444444, 1.25), ("g2", 3): ("defender", 0.555556, 1.25),
        ("g3", 1): ("defender", 1.0, 1.25),
        ("g4", 0): ("attacker", 0.173442, 0.833333), ("g4", 2): ("attacker", 0.216802, 0.833333),
        ("g4", 4): ("attacker", 0.271003, 0.833333), ("g4", 6): ("attacker", 0.338753, 0.833333),
        ("g9", 0): ("attacker", 1.0, 0.833333),
    }
    assert set(got) == set(expected)
    for key, (role, reward, weight) in expected.items():
        assert got[key][0] == role
        assert got[key][1:] == pytest.approx((reward, weight), abs=1e-6), key
    # each role carries half of the learning: sum of weight * reward over its samples = n_decisive / 2
    for role in ("attacker", "defender"):
        assert sum(s.weight * s.reward for s in result.samples if s.role == role) == pytest.approx(2.5)


def test_spag_rewards_keep_rule_breaks_unless_dropped():
    result = spag_rewards(GAMES)  # nothing listed: g6 is decisive, but its winner never spoke
    assert result.dropped["winner did not speak"] == 1 and "attacker breaks the rules" not in result.dropped
    assert spag_rewards([]).samples == [] and spag_rewards([]).weights == {}
    assert turn_rewards(3, decay=1.0) == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="decay"):
        turn_rewards(2, decay=0)


# --- building datasets --------------------------------------------------------------------------


def test_spag_dataset_end_to_end(tmp_path):
    path = write(tmp_path / "t.jsonl", GAMES)
    out = tmp_path / "data"
    summary = build_dataset("spag", [path], out, vary_prompts=False)
    counts = (summary.episodes, summary.games_used, summary.rows, summary.game_rows, summary.sft_rows)
    assert counts == (9, 5, 11, 11, 0)
    assert summary.dropped == {"tie": 2, "attacker breaks the rules": 1, "error": 1}
    assert summary.role_rows == {"attacker": 8, "defender": 3}
    assert json.loads((out / "summary.json").read_text()) == summary.to_dict()
    rows = jsonl(out / "data.jsonl")
    dataset = load_rows(out)
    assert dataset.column_names == ["messages", "role", "reward", "weight", "type", "episode_id"]
    assert dataset.to_list() == rows
    protocol = load_protocol(TABOO)
    first = rows[0]
    assert (first["role"], first["episode_id"], first["type"]) == ("attacker", "g1", "game")
    assert first["reward"] == pytest.approx(0.262295, abs=1e-6)
    assert first["messages"] == [
        {"role": "system", "content": system_prompt(protocol, {"target": "apple"}, "attacker")},
        {"role": "user", "content": "Start the game: write your first message to the other player."},
        {"role": "assistant", "content": "g1 message 0"},
    ]
    defender = next(r for r in rows if r["episode_id"] == "g2" and r["messages"][-1]["content"] == "g2 message 3")
    assert [m["role"] for m in defender["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert defender["messages"][1:3] == [{"role": "user", "content": "g2 message 0"},
                                         {"role": "assistant", "content": "g2 message 1"}]
    for game in ("g1", "g4"):
        assert sum(r["reward"] for r in rows if r["episode_id"] == game) == pytest.approx(1.0)


def test_spag_prompt_variation_is_seeded(tmp_path):
    path = write(tmp_path / "t.jsonl", GAMES)
    runs = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        build_dataset("spag", [path], tmp_path / name, seed=seed)
        runs[name] = (tmp_path / name / "data.jsonl").read_text()
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]
    protocol = load_protocol(TABOO)
    variants = protocol.spec.training.system_variants
    assert {role: len(v) for role, v in variants.items()} == {"attacker": 8, "defender": 8}
    allowed = {role: {system_prompt(protocol, {"target": "apple"}, role, t) for t in [protocol.spec.roles[role].system,
                                                                                      *variants[role]]}
               for role in variants}
    rows = jsonl(tmp_path / "a" / "data.jsonl")
    systems, formats = set(), set()
    for row in rows:
        system = row["messages"][0]
        assert system["role"] == "system" and system["content"] in allowed[row["role"]]
        systems.add(system["content"])
        assert row["messages"][-1] == {"role": "assistant", "content": row["messages"][-1]["content"]}
        flat = len(row["messages"]) == 3 and row["messages"][1]["content"].startswith("The dialogue so far:")
        formats.add("flat" if flat else "chat")
    assert len(systems) > 2 and formats == {"flat", "chat"}
    flat_row = next(r for r in rows if r["messages"][1]["content"].startswith("The dialogue so far:"))
    assert f"{flat_row['role']} (you):" in flat_row["messages"][1]["content"] or flat_row["role"] == "defender"
    unvaried = build_dataset("spag", [path], tmp_path / "d", seed=1, vary_prompts=False)
    assert unvaried.rows == len(rows)
    assert all(r["messages"][0]["content"] == system_prompt(protocol, {"target": "apple"}, r["role"])
               for r in jsonl(tmp_path / "d" / "data.jsonl"))


def test_imitation_winners_or_roles(tmp_path):
    path = write(tmp_path / "t.jsonl", GAMES)
    summary = build_dataset("imitation", [path], tmp_path / "w")
    rows = jsonl(tmp_path / "w" / "data.jsonl")
    assert summary.games_used == 5 and summary.rows == 11
    assert {(r["reward"], r["weight"], r["type"]) for r in rows} == {(1.0, 1.0, "game")}
    assert all(r["messages"][0]["role"] == "system" for r in rows)  # never varied
    summary = build_dataset("imitation", [path], tmp_path / "r", roles=["attacker"])
    # every attacker turn of every episode that did not fail and was not dropped (g6, g7)
    assert summary.rows == 3 + 2 + 1 + 4 + 2 + 5 + 1
    assert summary.dropped == {"attacker breaks the rules": 1, "error": 1}
    assert {r["role"] for r in jsonl(tmp_path / "r" / "data.jsonl")} == {"attacker"}
    with pytest.raises(TrainingError, match=r"--roles 'atacker': no episode has it \(did you mean 'attacker'\?\)"):
        build_dataset("imitation", [path], tmp_path / "typo", roles=["atacker"])
    with pytest.raises(TrainingError, match=r"--drop-reason 'tye': no episode has it \(did you mean 'tie'\?\)"):
        build_dataset("spag", [path], tmp_path / "typo", drop_reasons=["tye"])
    assert not (tmp_path / "typo").exists() or not any((tmp_path / "typo").iterdir())


def test_sft_rows_are_mixed_in(tmp_path):
    sft = tmp_path / "sft.jsonl"
    gsm8k_line = GSM8K.read_text().splitlines()[0]
    sft.write_text("\n".join([
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}),
        json.dumps({"prompt": "2+2?", "completion": "4"}),
        "",
        gsm8k_line,
    ]) + "\n")
    path = write(tmp_path / "t.jsonl", GAMES)
    summary = build_dataset("spag", [path], tmp_path / "d", sft_data=sft)
    assert (summary.sft_rows, summary.game_rows, summary.rows) == (3, 11, 14)
    rows = [r for r in jsonl(tmp_path / "d" / "data.jsonl") if r["type"] == "sft"]
    assert {(r["role"], r["reward"], r["weight"], r["episode_id"]) for r in rows} == {("sft", 0.0, 1.0, "")}
    assert rows[1]["messages"] == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    record = json.loads(gsm8k_line)
    gold = record["answer"].rpartition("####")[2].strip()
    assert rows[2]["messages"][0] == {"role": "user", "content": record["question"]}
    assert rows[2]["messages"][1]["content"].endswith(f"\nThe answer is {gold}.")
    assert "####" not in rows[2]["messages"][1]["content"]
    assert gsm8k_solution("x = 1.\n#### 1,000") == "x = 1.\nThe answer is 1,000."


def test_bad_sft_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"text": "no shape"}\n')
    with pytest.raises(TrainingError, match=rf"{bad}:2: .*`messages`"):
        read_sft_data(bad)
    bad.write_text('{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}\n')
    with pytest.raises(TrainingError, match=rf"{bad}:1: the last message must be the assistant"):
        read_sft_data(bad)
    bad.write_text("not json\n")
    with pytest.raises(TrainingError, match=rf"{bad}:1: not valid JSON"):
        read_sft_data(bad)
    with pytest.raises(TrainingError, match="no such file"):
        read_sft_data(tmp_path / "missing.jsonl")


def _saie_episode(episode_id, item, learner, partner="Check again.", winner=None, status="ok"):
    protocol = load_protocol("saie")
    contents = [("learner", learner[0]), ("partner", partner), ("learner", learner[1])]
    messages = [TranscriptMessage(role=r, content=c, turn=i, round=i) for i, (r, c) in enumerate(contents)]
    outcome = Outcome(winner=winner, reason="correct" if winner else "incorrect") if status == "ok" else None
    return Episode(id=episode_id, protocol=ProtocolRef(name="saie", hash=protocol.hash),
                   variables={"item": item, "stance": "adversarial"}, messages=messages, outcome=outcome,
                   status=status, error="boom" if status == "error" else None)


def test_saie_learner_turns_and_gold_fallback(tmp_path):
    q1 = {"question": "What is 2+3?", "answer": "5", "rationale": "2+3 = 5.", "choices": None, "id": "q1"}
    q2 = {"question": "What is 3+4?", "answer": "7", "rationale": "3+4 = 7.", "choices": None, "id": "q2"}
    q3 = {"question": "What is 1+1?", "answer": "2", "rationale": None, "choices": None, "id": "q3"}
    episodes = [
        _saie_episode("e1", q1, ["It is 6. The answer is 6.", "The answer is 5."], winner="learner"),
        _saie_episode("e2", q1, ["The answer is 4.", "The answer is 4."]),
        _saie_episode("e3", q2, ["The answer is 8.", "The answer is 9."]),
        _saie_episode("e4", q3, ["The answer is 3.", "The answer is 3."]),
        _saie_episode("e5", q1, ["x", "y"], status="error"),
        _saie_episode("e6", q1, ["2 + 3 = 5. The answer is 5.", "The answer is 5."], winner="learner"),
    ]
    path = write(tmp_path / "s.jsonl", episodes)
    summary = build_dataset("saie", [path], tmp_path / "d")
    assert (summary.games_used, summary.game_rows, summary.gold_rows) == (2, 4, 1)
    # e1's wrong first answer (6) is never trained, though the discussion corrected it
    assert summary.dropped == {"incorrect": 3, "error": 1, "no gold rationale": 1, "learner turn with a wrong answer": 1}
    rows = jsonl(tmp_path / "d" / "data.jsonl")
    protocol = load_protocol("saie")
    views = episode_views(protocol, episodes[0])
    assert rows[0]["messages"] == views[2].chat()  # the final answer, after the partner's remark
    assert rows[0]["messages"][-2]["content"].startswith("Consider your partner's remark")
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant", "user", "user", "assistant"]
    right = episode_views(protocol, episodes[5])
    assert [r["messages"] for r in rows[1:3]] == [right[0].chat(), right[2].chat()]  # both answers right: both rows
    gold = rows[3]
    assert (gold["role"], gold["episode_id"], gold["reward"]) == ("learner", "e3", 1.0)
    assert gold["messages"][:-1] == episode_views(protocol, episodes[2])[0].chat(with_target=False)
    assert gold["messages"][-1] == {"role": "assistant", "content": "3+4 = 7.\nThe answer is 7."}


# --- bad inputs ---------------------------------------------------------------------------------


def test_malformed_lines_are_counted_and_unreadable_files_named(tmp_path):
    good = write(tmp_path / "t.jsonl", GAMES[:3])
    with good.open("a") as f:
        f.write('{"not": "an episode"}\n')
        f.write("garbage\n")
    summary = build_dataset("spag", [good], tmp_path / "d")
    assert summary.dropped["malformed line"] == 2 and summary.episodes == 3
    junk = tmp_path / "junk.jsonl"
    junk.write_text("\n{oops\nnope\n")
    with pytest.raises(TranscriptError, match=rf"{junk}:2: no readable episode"):
        build_dataset("spag", [good, junk], tmp_path / "e")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TranscriptError, match=rf"{empty}: the transcript file is empty"):
        build_dataset("imitation", [empty], tmp_path / "e")
    with pytest.raises(TranscriptError, match="not found"):
        build_dataset("imitation", [tmp_path / "missing.jsonl"], tmp_path / "e")
    with pytest.raises(TrainingError, match="unknown dataset kind 'dpo'"):
        build_dataset("dpo", [good], tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_zero_rows_and_replayed_ids(tmp_path):
    path = write(tmp_path / "t.jsonl", [GAMES[4], GAMES[6], taboo("g7", 2, "defender", "defender guessed the word")])
    summary = build_dataset("spag", [path], tmp_path / "d")
    assert (summary.episodes, summary.rows) == (2, 1)  # g7's replay supersedes its failure
    only_ties = write(tmp_path / "ties.jsonl", [GAMES[4]])
    summary = build_dataset("spag", [only_ties], tmp_path / "z")
    assert summary.rows == 0 and load_rows(tmp_path / "z").num_rows == 0


def test_output_is_refused_replaced_and_written_atomically(tmp_path, monkeypatch):
    path = write(tmp_path / "t.jsonl", GAMES)
    out = tmp_path / "data"
    build_dataset("imitation", [path], out)
    with pytest.raises(TrainingError, match="not empty: pass --overwrite"):
        build_dataset("spag", [path], out)
    assert build_dataset("spag", [path], out, overwrite=True).kind == "spag"
    assert json.loads((out / "summary.json").read_text())["kind"] == "spag"

    import datasets

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        build_dataset("imitation", [path], out, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["kind"] == "spag"  # the old dataset stands
    with pytest.raises(OSError):
        build_dataset("imitation", [path], tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "t.jsonl"]  # no half-written directory
    with pytest.raises(TrainingError, match="no dataset in"):
        load_rows(tmp_path / "nowhere")


def test_no_row_comes_after_the_deciding_message(tmp_path):
    """A record that went on after its deciding message (re-judged from elsewhere) trains only up to it,
    as SPAG's data builder does; one whose recorded outcome the rules do not reach is used as recorded."""
    texts = ["A red fruit.", "I know the word: apple!", "Yes!", "Great game."]
    messages = [TranscriptMessage(role=("attacker", "defender")[i % 2], content=t, turn=i, round=i)
                for i, t in enumerate(texts)]
    ref = ProtocolRef(name=TABOO, hash=load_protocol(TABOO).hash)
    decided = Episode(id="d", protocol=ref, variables={"target": "apple"}, messages=messages,
                      outcome=Outcome(winner="defender", reason="defender guessed the word"))
    other = decided.model_copy(update={"id": "o", "outcome": Outcome(winner="defender", reason="judged by hand")})
    path = write(tmp_path / "t.jsonl", [decided, other])
    summary = build_dataset("imitation", [path], tmp_path / "d", roles=["attacker", "defender"])
    got = [(r["episode_id"], r["messages"][-1]["content"]) for r in jsonl(tmp_path / "d" / "data.jsonl")]
    assert got == [("d", texts[0]), ("d", texts[1])] + [("o", t) for t in texts] and not summary.warnings
    build_dataset("spag", [path], tmp_path / "s", vary_prompts=False)
    assert [(r["episode_id"], r["reward"]) for r in jsonl(tmp_path / "s" / "data.jsonl")] == [
        ("d", 1.0), ("o", pytest.approx(0.4444, abs=1e-4)), ("o", pytest.approx(0.5556, abs=1e-4))]


def test_foreign_records_get_a_plain_view_and_hash_changes_warn(tmp_path):
    foreign = {"id": "x1", "protocol": {"name": "their_taboo"}, "variables": {"target": "tree"},
               "messages": [{"role": "attacker", "content": "Leaves?"}, {"role": "defender", "content": "Bush?"}],
               "outcome": {"winner": "defender", "reason": "defender guessed the word"}}
    path = tmp_path / "foreign.jsonl"
    path.write_text(json.dumps(foreign) + "\n")
    summary = build_dataset("imitation", [path], tmp_path / "d")
    (row,) = jsonl(tmp_path / "d" / "data.jsonl")
    assert row["messages"] == [{"role": "user", "content": "Leaves?"}, {"role": "assistant", "content": "Bush?"}]
    assert any("plain view" in w for w in summary.warnings)
    # the same record under --protocol: the protocol's prompts, and a note that the hash differs (none logged: no note)
    summary = build_dataset("imitation", [path], tmp_path / "e", protocol=TABOO)
    assert jsonl(tmp_path / "e" / "data.jsonl")[0]["messages"][0]["role"] == "system" and not summary.warnings
    old = GAMES[1].model_copy(update={"protocol": ProtocolRef(name=TABOO, hash="0123456789abcdef")})
    summary = build_dataset("imitation", [write(tmp_path / "old.jsonl", [old])], tmp_path / "f")
    assert any("0123456789abcdef" in w for w in summary.warnings)


def test_training_section_is_checked():
    text = load_protocol(TABOO).text
    with pytest.raises(ProtocolError, match="training.surprise"):
        parse_protocol(text.replace("  drop_reasons:", "  surprise: 1\n  drop_reasons:"))
    with pytest.raises(ProtocolError, match="training.system_variants.spy: unknown role"):  # checked at load
        parse_protocol(text.replace("    attacker:\n      - |", "    spy:\n      - |"))
    with pytest.raises(ProtocolError, match=r"system_variants.attacker.0: undefined name 'secret'"):
        parse_protocol(text.replace('Your secret word is "{{ target }}"', "{{ secret }}"))


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_data_build(tmp_path):
    path = write(tmp_path / "t.jsonl", GAMES)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "spag", str(path), "-o", str(tmp_path / "d"), "--no-vary-prompts",
                                 "--drop-reason", "defender guessed wrong", "--drop-reason", "tie"])
    assert result.exit_code == 0, result.output
    assert "games used" in result.output and "defender guessed wrong" in result.output
    assert f"dataset: {tmp_path / 'd'}" in result.output.replace("\n", "")
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    # g4 dropped by the option; the protocol's own drop reason no longer applies: g6's winner never spoke
    assert summary["dropped"] == {"defender guessed wrong": 1, "tie": 2, "error": 1, "winner did not speak": 1}
    assert summary["games_used"] == 4 and summary["rows"] == 7
    again = runner.invoke(app, ["data", "build", "spag", str(path), "-o", str(tmp_path / "d")])
    assert again.exit_code == 1 and "not empty" in again.output
    assert runner.invoke(app, ["data", "build", "--help"]).exit_code == 0
    assert "build" in runner.invoke(app, ["data", "--help"]).output
    bad = runner.invoke(app, ["data", "build", "sft", str(path), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown dataset kind" in bad.output
