"""Remote backends over real HTTP: `openai:` and `litellm:` specs against `sparring serve` on a
free port, mixed backends in one episode, requests spread over two URLs, and the vLLM launcher
(command line, missing-vLLM error, and its health wait and signal forwarding, with `sparring
serve` standing in for `vllm serve` as the child process)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import httpx
import pytest
from autogen_core.models import UserMessage
from typer.testing import CliRunner

from _servers import MODEL, FaultProxy, free_port, quick_protocol, sparring_serve
from sparring.agents import model_client
from sparring.serving._vllm import run_server, vllm_args
from sparring.cli import app
from sparring.errors import BackendError
from sparring.protocols import load_protocol, play, role_models
from sparring.transcripts import read_transcripts


@pytest.fixture(scope="module")
def server():
    """The root URL (no /v1) of a `sparring serve` of the embedded model."""
    with sparring_serve() as url:
        yield url


def _play(protocol_path, models, out, games=2, **kwargs):
    summary = asyncio.run(play(load_protocol(protocol_path), games, out, models, concurrency=games, **kwargs))
    return summary, list(read_transcripts(out / "transcripts.jsonl"))


def _assert_token_ids(episode, roles):
    for message in episode.messages:
        if message.role in roles:
            assert message.token_ids and len(message.token_ids) == len(message.logprobs), message
            assert all(lp <= 0 for lp in message.logprobs)


@pytest.mark.slow
def test_openai_spec_plays_a_protocol_with_token_ids(server, tmp_path):
    spec = f"openai:{MODEL}@{server}/v1"
    summary, episodes = _play(quick_protocol(tmp_path), {"asker": spec, "answerer": spec}, tmp_path / "run")
    assert summary.games == 2 and summary.errors == 0
    for episode in episodes:
        assert episode.status == "ok" and episode.models == {"asker": spec, "answerer": spec}
        assert [m.role for m in episode.messages] == ["asker", "answerer"]
        _assert_token_ids(episode, {"asker", "answerer"})
        assert episode.usage["completion_tokens"] == sum(len(m.token_ids) for m in episode.messages)


@pytest.mark.slow
def test_litellm_spec_plays_through_the_same_server(server, tmp_path):
    with FaultProxy(server) as proxy:
        spec = f"litellm:openai/{MODEL}?api_base={proxy.url}&logprobs=true&token_ids=true"
        protocol = quick_protocol(tmp_path, extra={"frequency_penalty": 0})
        summary, episodes = _play(protocol, {"asker": spec, "answerer": spec}, tmp_path / "run", games=1)
    assert summary.errors == 0, episodes[0].error
    _assert_token_ids(episodes[0], {"asker", "answerer"})
    assert proxy.requests == 2
    body = proxy.bodies[0]  # protocol extra and spec flags reach the server through litellm
    assert body["frequency_penalty"] == 0 and body["return_token_ids"] is True and body["logprobs"] is True
    assert body["max_tokens"] == 6


@pytest.mark.slow
def test_mixed_backends_in_one_episode(server, tmp_path):
    """The asker plays over HTTP (its `model:` in the YAML), the answerer in-process (the run's
    default); only the asker's turns reach the server."""
    with FaultProxy(server) as proxy, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        protocol = quick_protocol(tmp_path, turns=4, extra={"presence_penalty": 0}, models={"asker": f"openai:{MODEL}@{proxy.url}"})
        models = role_models(load_protocol(protocol), MODEL, {})
        assert models == {"asker": f"openai:{MODEL}@{proxy.url}", "answerer": MODEL}
        summary, episodes = _play(protocol, models, tmp_path / "run", games=1)
    assert summary.errors == 0, episodes[0].error
    episode = episodes[0]
    assert episode.models == models
    assert [m.role for m in episode.messages] == ["asker", "answerer", "asker", "answerer"]
    assert proxy.requests == 2  # the asker's two turns; the answerer never went over HTTP
    _assert_token_ids(episode, {"asker", "answerer"})
    assert all(body["presence_penalty"] == 0 and body["return_token_ids"] for body in proxy.bodies)  # extra -> extra_body
    assert any("ignores sampling.extra" in str(w.message) for w in caught)  # hf: says it ignores extra


@pytest.mark.slow
def test_two_urls_spread_the_requests(server):
    with FaultProxy(server) as first, FaultProxy(server) as second:
        client = model_client(f"openai:{MODEL}@{first.url},{second.url}", temperature=0, max_tokens=2)

        async def ask_all():
            prompts = [[UserMessage(content=f"Say {i}.", source="user")] for i in range(8)]
            return await asyncio.gather(*(client.create(p) for p in prompts))

        results = asyncio.run(ask_all())
        sequential = model_client(f"openai:{MODEL}@{first.url},{second.url}", temperature=0, max_tokens=2)

        async def one_by_one():
            for i in range(4):
                await sequential.create([UserMessage(content=f"Say {i}.", source="user")])

        asyncio.run(one_by_one())
    assert all(r.token_ids for r in results)
    assert (first.requests, second.requests) == (6, 6)  # 4 + 4 at once, then 2 + 2 in turn


@pytest.mark.slow
def test_spec_settings_reach_the_request(server):
    """Spec query: sampling defaults (here presence_penalty) go in the body; logprobs/token_ids can be turned off."""
    with FaultProxy(server) as proxy:
        client = model_client(f"openai:{MODEL}@{proxy.url}?presence_penalty=0&logprobs=false&token_ids=false", max_tokens=3)
        result = asyncio.run(client.create([UserMessage(content="Hi", source="user")]))
    body = proxy.bodies[0]
    assert body["presence_penalty"] == 0 and body["max_tokens"] == 3 and body["temperature"] == 0.7
    assert "logprobs" not in body and "return_token_ids" not in body
    assert result.content and result.token_ids is None and client.last_result is result


# --- the vLLM launcher -------------------------------------------------------------------------


def _adapter(path, rank):
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return str(path)


def test_vllm_command_line(tmp_path):
    loras = {"epoch1": _adapter(tmp_path / "a1", 16), "epoch2": _adapter(tmp_path / "a2", 64)}
    args = vllm_args("Qwen/Qwen2.5-0.5B-Instruct", host="0.0.0.0", port=8001, served_name="base", loras=loras,
                     tensor_parallel=2, extra=["--gpu-memory-utilization", "0.8"])
    assert args == ["serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "0.0.0.0", "--port", "8001",
                    "--served-model-name", "base", "--tensor-parallel-size", "2", "--enable-lora",
                    "--lora-modules", f"epoch1={tmp_path / 'a1'}", f"epoch2={tmp_path / 'a2'}",
                    "--max-lora-rank", "64", "--max-loras", "2", "--gpu-memory-utilization", "0.8"]
    plain = vllm_args("hf:smollm2-135m", host="127.0.0.1", port=8000, served_name="smollm2", enable_lora=True)
    assert plain[1].endswith("smollm2-135m") and plain[-1] == "--enable-lora"  # the converted directory
    with pytest.raises(BackendError, match="--lora NAME="):
        vllm_args(f"hf:smollm2-135m+{tmp_path / 'a1'}", host="h", port=1, served_name="x")
    with pytest.raises(BackendError, match="adapter_config.json"):
        vllm_args("base", host="h", port=1, served_name="x", loras={"bad": str(tmp_path)})


def test_serve_without_vllm_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    result = CliRunner().invoke(app, ["serve", "--engine", "vllm", "--model", "Qwen/Qwen2.5-0.5B-Instruct"],
                                env={"COLUMNS": "200"})
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "pip install 'sparring[vllm]'" in lines[0]
    refused = CliRunner().invoke(app, ["serve", "--lora", "a=b"], env={"COLUMNS": "200"})
    assert refused.exit_code == 1 and "--engine vllm" in refused.output


@pytest.mark.slow
def test_launcher_waits_for_health_and_forwards_ctrl_c(tmp_path):
    """`run_server` with `sparring serve` as the child: ready once /health answers; SIGINT stops both."""
    port = free_port()
    script = textwrap.dedent(f"""
        import sys
        from sparring.serving._vllm import run_server
        command = [sys.executable, "-m", "sparring.cli", "serve", "--port", "{port}"]
        code = run_server(command, "http://127.0.0.1:{port}/health", timeout=180,
                          on_ready=lambda: print("READY", flush=True))
        print("EXIT", code, flush=True)
    """)
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "SPARRING_DTYPE": "float32"})

    def next_mark() -> str:  # the child shares the launcher's stdout: skip its lines
        for line in launcher.stdout:
            if line.startswith(("READY", "EXIT")):
                return line.strip()
        return "closed"

    try:
        assert next_mark() == "READY"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        launcher.send_signal(signal.SIGINT)
        assert next_mark() == "EXIT 0"
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            launcher.terminate()  # forwarded: the launcher stops its child before it exits
            launcher.wait(timeout=60)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)  # the child went with it


def test_launcher_reports_a_child_that_dies_before_ready():
    with pytest.raises(BackendError, match="exited with code 3 before it was ready"):
        run_server([sys.executable, "-c", "import sys; sys.exit(3)"], f"http://127.0.0.1:{free_port()}/health",
                   timeout=60, on_ready=lambda: None)
