"""`--config run.yaml`: a command's options from a YAML file, flags winning over it, and the
effective config written to the run directory (`run_config.yaml`), which runs the same again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from _servers import quick_protocol
from sparring.cli import app
from sparring.config_files import EFFECTIVE_CONFIG
from sparring.transcripts import read_transcripts


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.slow
def test_play_from_a_config_file_on_the_embedded_model(tmp_path):
    """A real play run whose protocol, games and seed come from the file; --seed on the command line wins."""
    out = tmp_path / "run"
    config = _write(tmp_path / "run.yaml", {"protocol": str(quick_protocol(tmp_path)), "games": 2, "seed": 1,
                                            "out": str(out), "concurrency": 2, "max-error-share": 0.5})
    result = CliRunner().invoke(app, ["play", "--config", str(config), "--seed", "7"])
    assert result.exit_code == 0, result.output
    episodes = list(read_transcripts(out / "transcripts.jsonl"))
    assert len(episodes) == 2
    assert "2/2" in result.output  # progress as plain lines: the output is no terminal
    effective = yaml.safe_load((out / EFFECTIVE_CONFIG).read_text())
    assert effective["seed"] == 7 and effective["games"] == 2 and effective["max_error_share"] == 0.5
    assert effective["model"] == "hf:smollm2-135m"  # a default, written out too
    assert "config" not in effective


@pytest.fixture
def captured_selfplay(monkeypatch):
    """SelfPlay replaced by a recorder of the config it was given (the loop itself is tested elsewhere)."""
    import sparring.trainer as trainer

    seen: list = []

    class Recorder:
        def __init__(self, config, **_):
            seen.append(config)

        def run(self):
            return []

    monkeypatch.setattr(trainer, "SelfPlay", Recorder)
    return seen


def test_selfplay_round_trip_effective_config_is_file_plus_overrides(tmp_path, captured_selfplay):
    out = tmp_path / "spag"
    file = {"protocol": "adversarial_taboo_spag", "epochs": 2, "games": 16, "eval_games": 8, "out": str(out),
            "set": {"max_turns": 3}, "lr": 1e-5, "preset": "spag-lora", "holdout": ["target"]}
    config = _write(tmp_path / "run.yaml", file)
    result = CliRunner().invoke(app, ["selfplay", "--config", str(config), "--games", "32", "--lr-scheduler", "cosine"])
    assert result.exit_code == 0, result.output
    effective = yaml.safe_load((out / EFFECTIVE_CONFIG).read_text())
    expected = {k: v for k, v in file.items()} | {"games": 32, "lr_scheduler": "cosine", "set": ["max_turns=3"]}
    assert {k: effective[k] for k in expected} == expected
    first = captured_selfplay[0]
    assert first.games == 32 and first.epochs == 2 and first.overrides == {"max_turns": 3}
    assert first.train["lr"] == 1e-5 and first.train["lr_scheduler"] == "cosine"

    # the effective config alone runs the same again
    again = CliRunner().invoke(app, ["selfplay", "--config", str(out / EFFECTIVE_CONFIG)])
    assert again.exit_code == 0, again.output
    assert captured_selfplay[1] == first
    assert yaml.safe_load((out / EFFECTIVE_CONFIG).read_text()) == effective


def test_the_effective_config_runs_again_from_another_folder(tmp_path, monkeypatch, captured_selfplay):
    """Paths given relative to where the command ran (the protocol file, the out folder, an adapter
    in a spec) are written absolute; a built-in protocol's name stays a name."""
    (tmp_path / "work" / "adapter").mkdir(parents=True)
    (tmp_path / "work" / "game.yaml").write_text(quick_protocol(tmp_path).read_text())
    monkeypatch.chdir(tmp_path / "work")
    result = CliRunner().invoke(app, ["selfplay", "--protocol", "game.yaml", "--out", "runs/a",
                                      "--model", "hf:smollm2-135m+adapter", "--games", "4"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "work" / "runs" / "a" / EFFECTIVE_CONFIG).read_text()
    effective = yaml.safe_load(written)
    assert effective["protocol"] == str(tmp_path / "work" / "game.yaml")
    assert effective["out"] == str(tmp_path / "work" / "runs" / "a")
    assert effective["model"] == f"hf:smollm2-135m+{tmp_path / 'work' / 'adapter'}"
    assert f"--config {tmp_path / 'work' / 'runs' / 'a' / EFFECTIVE_CONFIG}" in written

    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(app, ["selfplay", "--config", str(tmp_path / "work" / "runs" / "a" / EFFECTIVE_CONFIG)])
    assert again.exit_code == 0, again.output
    first, second = captured_selfplay
    assert second.protocol == effective["protocol"] and Path(second.out) == tmp_path / "work" / "runs" / "a"
    assert second.model == effective["model"] and second.games == 4 and second.epochs == first.epochs
    builtin = CliRunner().invoke(app, ["selfplay", "--protocol", "saie", "--out", "runs/b"])
    assert builtin.exit_code == 0, builtin.output
    assert yaml.safe_load((tmp_path / "runs" / "b" / EFFECTIVE_CONFIG).read_text())["protocol"] == "saie"
    assert len(captured_selfplay) == 3


def test_train_takes_its_required_options_from_the_file(tmp_path, monkeypatch):
    import sparring.trainer as trainer

    given: list = []

    def fake_train(config):
        given.append(config)
        config.output.mkdir(parents=True)
        return SimpleNamespace(steps=1, seconds=1.0, final_loss=0.5, output=config.output, play_spec="hf:x+y")

    monkeypatch.setattr(trainer, "train", fake_train)
    (tmp_path / "data").mkdir()
    config = _write(tmp_path / "train.yaml", {"kind": "spag", "data": str(tmp_path / "data"),
                                              "output": str(tmp_path / "adapter"), "max_steps": 3, "lr": 3e-5})
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--lr", "1e-4"])
    assert result.exit_code == 0, result.output
    assert given[0].kind == "spag" and given[0].max_steps == 3 and given[0].lr == 1e-4
    effective = yaml.safe_load((tmp_path / "adapter" / EFFECTIVE_CONFIG).read_text())
    assert effective["lr"] == 1e-4 and effective["max_steps"] == 3 and effective["kind"] == "spag"


@pytest.mark.parametrize(("text", "message"), [
    ("games: 4\neval_gams: 3\n", "'eval_gams' is not an option of this command (did you mean 'eval_games'?)"),
    ("games: [1, 2\n", "line 2: not valid YAML"),
    ("games: many\n", "games: Input should be a valid integer"),
    ("- games\n", "a mapping of option names"),
    ("games: {a: 1}\n", "'games' takes one value"),
])
def test_a_bad_config_file_is_a_clear_error(tmp_path, captured_selfplay, text, message):
    config = _write(tmp_path / "bad.yaml", text)
    result = CliRunner().invoke(app, ["selfplay", "--config", str(config), "--out", str(tmp_path / "out")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())
    assert message in text and str(config.name) in text
    assert not captured_selfplay and not (tmp_path / "out").exists()


def test_a_refused_play_leaves_the_run_config_of_its_folder_alone(tmp_path):
    out = tmp_path / "run"
    typo = CliRunner().invoke(app, ["play", "adversarial_taboo", "--set", "tagret=cat", "--out", str(out)])
    assert typo.exit_code != 0 and "--set tagret: adversarial_taboo has no such variable (did you mean 'target'?)" \
        in typo.output, typo.output
    assert not out.exists()  # nothing written for a command that did not run

    out.mkdir()
    (out / "transcripts.jsonl").write_text('{"id": "x"}\n')
    (out / EFFECTIVE_CONFIG).write_text("games: 64\n")
    again = CliRunner().invoke(app, ["play", "adversarial_taboo", "--games", "2", "--out", str(out)])
    assert again.exit_code != 0 and "pass --resume" in again.output, again.output
    assert (out / EFFECTIVE_CONFIG).read_text() == "games: 64\n"  # the earlier run's settings are kept
