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
