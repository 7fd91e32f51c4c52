"""Every command's --help works, and the model list shows the embedded default."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sparring.cli import app


@pytest.mark.parametrize("command", [[], ["models"], ["chat"], ["serve"], ["play"], ["judge"], ["debate"], ["protocols"],
                                     ["protocols", "list"], ["protocols", "show"], ["protocols", "validate"],
                                     ["data"], ["data", "build"], ["train"], ["selfplay"], ["eval"], ["eval", "winrate"],
                                     ["eval", "qa"], ["report"]])
def test_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_models_lists_the_default_as_available():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "hf:smollm2-135m" in line)
    assert "yes" in row


@pytest.mark.slow
def test_chat_prints_a_reply():
    result = CliRunner().invoke(app, ["chat", "--temperature", "0", "--max-tokens", "12", "What is 2+2?"])
    assert result.exit_code == 0, result.output
    assert result.output.strip()


@pytest.mark.parametrize("name", ["adversarial_taboo", "spyfall"])
def test_protocols_show_writes_the_file_unwrapped(name, monkeypatch):
    """`protocols show NAME > file.yaml` gives the protocol's own text, however narrow the terminal."""
    import yaml

    from sparring.protocols import load_protocol

    monkeypatch.setenv("COLUMNS", "30")
    result = CliRunner().invoke(app, ["protocols", "show", name])
    assert result.exit_code == 0
    text = load_protocol(name).text
    assert result.output == text and yaml.safe_load(result.output) == yaml.safe_load(text)
    assert max(len(line) for line in text.splitlines()) > 30  # a line a wrapping console would have broken


@pytest.mark.parametrize(("args", "says"), [
    (["selfplay", "--model", "hf:smollm2-135"], "model not found: 'smollm2-135' is neither"),
    (["selfplay", "--model", "hf:smollm2-135m+nowhere/adapter"], "adapter not found: nowhere/adapter"),
    (["selfplay", "--sft-data", "nowhere.jsonl"], "--sft-data nowhere.jsonl: no such file"),
    (["selfplay", "--holdout", "targt"], "--holdout targt: adversarial_taboo has no such variable (did you mean "
                                         "'target'?)"),
    (["eval", "winrate", "-p", "adversarial_taboo", "-m", "hf:smollm2-135", "--opponent", "hf:smollm2-135m"],
     "(did you mean 'smollm2-135m'?)"),
    (["eval", "qa", "-q", "arithmetic:2", "-m", "hf:smollm2-135m+nowhere/adapter"], "adapter not found"),
])
def test_a_bad_input_is_refused_before_anything_is_played_or_written(tmp_path, args, says):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code != 0 and says in result.output, result.output
    assert not out.exists()


def test_eval_winrate_fails_when_every_game_failed_and_names_the_first_error(tmp_path):
    from _servers import free_port

    dead = f"openai:m@http://127.0.0.1:{free_port()}/v1?retries=0&timeout=2"
    result = CliRunner().invoke(app, ["eval", "winrate", "-p", "adversarial_taboo", "-m", dead, "--opponent", dead,
                                      "--games", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "error: all 2 episodes failed; first error: " in result.output and "--resume" in result.output
