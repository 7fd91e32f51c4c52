"""`--report-to`: game metrics logged to the trackers, read back from TensorBoard's event files; a missing
tracker package is one line before anything runs."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sparring.cli import app
from sparring.errors import TrackingError, TrainingError
from sparring.tracking import (GAMES_RUN, TENSORBOARD_DIR, TRACKERS, open_tracker, tensorboard_logging_dir,
                               trackers)
from sparring.transcripts import read_transcripts

HERE = Path(__file__).parent
DECISIVE = HERE / "protocols" / "taboo_decisive.yaml"
TINY = ["--games", "4", "--eval-games", "2", "--max-steps", "2", "--batch-size", "2", "--lora-r", "4",
        "--lora-alpha", "8", "--concurrency", "4"]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``, as TensorBoard reads them: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert any(folder.glob("events.out.tfevents.*")), f"no event files in {folder}"
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _at(scalars: dict, tag: str, step: int) -> float:
    values = [value for at, value in scalars[tag] if at == step]
    assert len(values) == 1, f"{tag} at step {step}: {scalars.get(tag)}"
    return values[0]


@pytest.mark.slow
def test_play_report_to_tensorboard_writes_the_game_metrics(tmp_path):
    spec = yaml.safe_load(DECISIVE.read_text())
    counted = ["attacker breaks the rules", "defender never guessed"]  # two of its three reasons, counted as rule breaks
    spec["training"] = {"drop_reasons": counted}
    protocol = tmp_path / "taboo_decisive.yaml"
    protocol.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["play", str(protocol), "--games", "4", "--concurrency", "4", "--out", str(out),
                                      "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    episodes = list(read_transcripts(out / "transcripts.jsonl"))
    judged = [e for e in episodes if e.status == "ok" and e.outcome is not None]
    assert len(episodes) == 4 and judged
    scalars = _scalars(out / TENSORBOARD_DIR / GAMES_RUN)

    assert scalars["play/games"] == [(0, 4.0)]
    assert _at(scalars, "play/errors", 0) == len(episodes) - len(judged)
    decided = sum(e.outcome.winner is not None for e in judged)
    assert _at(scalars, "play/decisive_share", 0) == pytest.approx(decided / len(judged), abs=1e-4)
    assert f"{decided}/{len(judged)} decisive" in result.output  # the same run the summary printed
    broken = sum(e.outcome.reason in counted for e in judged)
    assert _at(scalars, "play/rule_break_share", 0) == pytest.approx(broken / len(judged), abs=1e-4)
    for reason, count in Counter(e.outcome.reason for e in judged).items():
        assert _at(scalars, f"play/outcome/{reason}", 0) == count
    wins = Counter(e.outcome.winner for e in judged if e.outcome.winner)
    for role in ("attacker", "defender"):  # a role that never won is logged too, as 0
        assert _at(scalars, f"play/wins/{role}", 0) == wins[role]
        assert _at(scalars, f"play/win_rate/{role}", 0) == pytest.approx(wins[role] / len(judged))
    tokens = sum(e.usage.get("completion_tokens", 0) for e in episodes)
    assert _at(scalars, "play/completion_tokens", 0) == tokens > 0
    assert _at(scalars, "play/tokens_per_second", 0) > 0


@pytest.mark.slow
def test_selfplay_logs_each_epochs_game_and_training_metrics(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["selfplay", "--protocol", str(DECISIVE), "--epochs", "2", "--out", str(out),
                                      *TINY, "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    games = _scalars(out / TENSORBOARD_DIR / GAMES_RUN)
    assert [step for step, _ in games["play/games"]] == [1, 2]  # step = the epoch
    for k in (1, 2):
        record = json.loads((out / f"epoch_{k}" / "epoch.json").read_text())
        play, evaluation = record["play"], record["eval"]
        assert _at(games, "play/games", k) == play["games"] == 4
        for key in ("decisive_share", "rule_break_share", "tokens_per_second"):
            assert _at(games, f"play/{key}", k) == pytest.approx(play[key], rel=1e-6)
        for reason, count in play["reasons"].items():
            assert _at(games, f"play/outcome/{reason}", k) == count
        assert _at(games, "eval/games", k) == evaluation["games"] == 2
        for outcome in ("win", "loss", "tie"):
            rate, (low, high) = evaluation[f"{outcome}_rate"], evaluation[f"{outcome}_ci"]
            assert _at(games, f"eval/{outcome}_rate", k) == pytest.approx(rate, abs=1e-6)
            assert _at(games, f"eval/{outcome}_rate_low", k) == pytest.approx(low, abs=1e-6)
            assert _at(games, f"eval/{outcome}_rate_high", k) == pytest.approx(high, abs=1e-6)
            assert low <= rate <= high
        assert _at(games, "selfplay/train_steps", k) == record["train"]["steps"] == 2

        # TRL's own metrics of the epoch's training, beside them (tensorboard --logdir OUT shows both)
        trained = _scalars(out / TENSORBOARD_DIR / "train" / f"epoch_{k}")
        log = json.loads((out / f"epoch_{k}" / "adapter" / "training_log.json").read_text())
        losses = [(entry["step"], entry["loss"]) for entry in log if "loss" in entry]
        assert len(losses) == 2
        assert trained["train/loss"] == [(step, pytest.approx(loss, rel=1e-5)) for step, loss in losses]
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ


@pytest.mark.slow
def test_eval_winrate_and_qa_log_their_rates_with_intervals(tmp_path):
    runner = CliRunner()
    winrate = tmp_path / "winrate"
    result = runner.invoke(app, ["eval", "winrate", "--protocol", str(DECISIVE), "--model", "hf:smollm2-135m",
                                 "--opponent", "hf:smollm2-135m", "--games", "2", "--out", str(winrate),
                                 "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    record = json.loads((winrate / "winrate.json").read_text())
    scalars = _scalars(winrate / TENSORBOARD_DIR / GAMES_RUN)
    assert _at(scalars, "eval/games", 0) == record["games"] == 2
    assert _at(scalars, "eval/wins", 0) == record["wins"]
    assert _at(scalars, "eval/win_rate", 0) == pytest.approx(record["win_rate"], abs=1e-6)
    assert _at(scalars, "eval/win_rate_low", 0) == pytest.approx(record["win_ci"][0], abs=1e-6)
    assert _at(scalars, "eval/win_rate_high", 0) == pytest.approx(record["win_ci"][1], abs=1e-6)
    for role, tally in record["by_role"].items():
        assert _at(scalars, f"eval/by_role/{role}/games", 0) == tally["games"]

    qa = tmp_path / "qa"
    result = runner.invoke(app, ["eval", "qa", "--questions", "arithmetic:1", "--model", "hf:smollm2-135m",
                                 "--out", str(qa), "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    score = json.loads((qa / "accuracy.json").read_text())["methods"]["single_agent"]
    scalars = _scalars(qa / TENSORBOARD_DIR / GAMES_RUN)
    assert _at(scalars, "eval/single_agent/total", 0) == score["total"] == 1
    assert _at(scalars, "eval/single_agent/accuracy", 0) == score["accuracy"]
    assert _at(scalars, "eval/single_agent/accuracy_high", 0) == pytest.approx(score["ci"][1], abs=1e-6)


COMMANDS = {
    "play": ["play", str(DECISIVE), "--games", "1"],
    "selfplay": ["selfplay", "--protocol", str(DECISIVE), "--epochs", "1", *TINY],
    "eval winrate": ["eval", "winrate", "--protocol", str(DECISIVE), "--model", "hf:smollm2-135m", "--opponent",
                     "hf:smollm2-135m", "--games", "2"],
    "eval qa": ["eval", "qa", "--questions", "arithmetic:1", "--model", "hf:smollm2-135m"],
}


def _hide(monkeypatch, tracker: str) -> None:
    """Make ``tracker``'s package unimportable, as if it were not installed."""
    for module in {"tensorboard": ("tensorboard", "tensorboardX")}.get(tracker, (tracker,)):
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_missing_tracker_package_is_one_line_before_anything_runs(tmp_path, monkeypatch, command, tracker):
    _hide(monkeypatch, tracker)
    out = tmp_path / "run"
    given = tracker if tracker == "tensorboard" else f"tensorboard,{tracker}"  # named among installed ones too
    result = CliRunner().invoke(app, [*COMMANDS[command], "--out", str(out), "--report-to", given])
    assert result.exit_code == 1, result.output
    assert result.output == f"error: --report-to {tracker} needs the {tracker} package: pip install 'sparring[{tracker}]'\n"
    assert not out.exists()  # nothing played, nothing written


def test_train_names_the_missing_package_too(tmp_path, monkeypatch):
    from sparring.trainer import TrainConfig

    _hide(monkeypatch, "wandb")
    config = TrainConfig(data=tmp_path / "d", model="hf:smollm2-135m", output=tmp_path / "o", report_to="wandb")
    with pytest.raises(TrainingError, match=r"^--report-to wandb needs the wandb package: pip install 'sparring\[wandb\]'$"):
        config.report_destinations()
    assert TrainConfig(data=tmp_path / "d", model="hf:smollm2-135m", output=tmp_path / "o",
                       report_to="tensorboard,mlflow").report_destinations() == ["tensorboard", "mlflow"]


def test_report_to_names_follow_transformers(monkeypatch, tmp_path):
    assert trackers("none") == []
    assert trackers(" tensorboard , tensorboard") == ["tensorboard"]
    with pytest.raises(TrackingError, match=r"--report-to mlflow: unknown \['mlflow'\]; expected none, all or "
                                            r"comma-separated names among tensorboard, trackio, wandb"):
        trackers("mlflow")  # sparring's own metrics go to these three; `train` takes every integration
    _hide(monkeypatch, "wandb")
    _hide(monkeypatch, "trackio")
    assert trackers("all") == ["tensorboard"]  # all: the ones installed

    with open_tracker("none", tmp_path / "quiet") as tracker:
        tracker.log({"play/games": 3}, step=0)
    assert tracker.names == [] and not (tmp_path / "quiet").exists()


def test_the_training_logging_dir_is_set_only_inside(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "/elsewhere")
    with tensorboard_logging_dir(tmp_path / "train" / "epoch_1"):
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "train" / "epoch_1")
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == "/elsewhere"
