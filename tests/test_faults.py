"""Faults between sparring and a model server, over real HTTP: a proxy injects 500s, 429s,
hangs and dropped connections in front of `sparring serve`; a server is killed in the middle of
a run and restarted for `--resume`; a fake API key must not reach any file a run writes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
import typer
from typer.testing import CliRunner

from _servers import MODEL, FaultProxy, free_port, quick_protocol, sparring_serve, start_server
from sparring.cli import _check_errors, app
from sparring.protocols import load_protocol, play
from sparring.transcripts import latest_by_id, read_transcripts

FAST = "retries=8&backoff=0.01&timeout=4"  # a hang (6 s) times out; retries come at once
HANG = 6.0


@pytest.fixture(scope="module")
def server():
    with sparring_serve() as url:
        yield url


def _play(protocol_path, spec, out, games):
    summary = asyncio.run(play(load_protocol(protocol_path), games, out, {"asker": spec, "answerer": spec},
                               concurrency=1))
    return summary, list(read_transcripts(out / "transcripts.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["openai", "litellm"])
def test_injected_faults_are_retried_and_the_run_completes(server, tmp_path, scheme):
    faults = ["500", "429", "hang", "drop", "truncate", "garbage", "500"]
    with FaultProxy(server, faults, hang_seconds=HANG) as proxy:
        spec = (f"openai:{MODEL}@{proxy.url}?{FAST}" if scheme == "openai"
                else f"litellm:openai/{MODEL}?api_base={proxy.url}&{FAST}")
        summary, episodes = _play(quick_protocol(tmp_path), spec, tmp_path / "run", games=2)
    assert summary.errors == 0, [e.error for e in episodes]
    assert all(e.status == "ok" and len(e.messages) == 2 for e in episodes)
    assert not proxy.faults and proxy.requests >= 4 + len(faults)  # every fault was met, and retried


@pytest.mark.slow
def test_a_client_error_is_not_retried(server, tmp_path):
    """A 404 (wrong model name) fails the episode at once, with the fix in the message; the run goes on."""
    with FaultProxy(server) as proxy:
        summary, episodes = _play(quick_protocol(tmp_path), f"openai:no-such-model@{proxy.url}?{FAST}",
                                  tmp_path / "run", games=2)
    assert summary.errors == 2 and proxy.requests == 2
    assert all(e.status == "error" and "HTTP 404" in e.error and "GET URL/models" in e.error for e in episodes)


def test_error_share_sets_the_exit_code(capsys):
    backend = "fix the backend (the model or its server)"  # what `what_to_fix` says of backend errors
    _check_errors(1, 10, ["BackendError: boom"], 0.1, backend)  # 10%: a warning, exit code 0
    assert "warning: 1 of 10 episodes failed" in capsys.readouterr().err
    with pytest.raises(typer.Exit) as exit_:
        _check_errors(2, 10, ["BackendError: boom"], 0.1, backend)
    assert exit_.value.exit_code == 2
    assert "more than --max-error-share 10%" in capsys.readouterr().err
    with pytest.raises(typer.Exit):
        _check_errors(2, 2, ["g.yaml: judge: boom"], 0.1, "fix the protocol (g.yaml)")
    assert "Fix the protocol (g.yaml), then run again with --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_server_then_resume(tmp_path):
    """Kill the server after two episodes: those stay intact, the rest are errors (exit code 2);
    `--resume` against the restarted server replays only the failed ones."""
    port, games = free_port(), 5
    out = tmp_path / "run"
    transcripts = out / "transcripts.jsonl"
    spec = f"openai:{MODEL}@http://127.0.0.1:{port}/v1?retries=1&backoff=0.01&timeout=30"
    command = ["play", str(quick_protocol(tmp_path)), "-n", str(games), "--model", spec, "--out", str(out),
               "--concurrency", "1"]
    server = start_server(port)

    def kill_after_two() -> None:
        while not transcripts.exists() or transcripts.read_text().count("\n") < 2:
            time.sleep(0.05)
        server.kill()

    killer = threading.Thread(target=kill_after_two, daemon=True)
    killer.start()
    try:
        first = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    finally:
        server.kill()
        server.wait()
    assert first.exit_code == 2, first.output
    assert "more than --max-error-share" in first.output and "--resume" in first.output
    episodes = list(read_transcripts(transcripts))
    ok = [e for e in episodes if e.status == "ok"]
    failed = [e for e in episodes if e.status == "error"]
    assert len(episodes) == games and len(ok) >= 2 and len(failed) >= 2
    assert all(len(e.messages) == 2 and all(m.content is not None for m in e.messages) for e in ok)
    assert all("gave up after 2 attempt(s)" in e.error for e in failed)

    server = start_server(port)
    try:
        second = CliRunner().invoke(app, [*command, "--resume"], env={"COLUMNS": "200"})
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert second.exit_code == 0, second.output
    records = list(read_transcripts(transcripts))
    latest = latest_by_id(records)
    assert len(latest) == games and all(e.status == "ok" for e in latest.values())
    assert set(Counter(e.id for e in records if e.status == "ok").values()) == {1}  # nothing twice
    assert [e.model_dump() for e in records[:len(episodes)]] == [e.model_dump() for e in episodes]  # untouched
    assert {e.id for e in records[len(episodes):]} == {e.id for e in failed}  # only the failed replayed


SECRET = "sk-test-SECRET-0123456789abcdef"


@pytest.mark.slow
def test_api_key_appears_in_no_file_the_run_writes(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    protocol = str(quick_protocol(tmp_path))
    with FaultProxy(server, ["ok", "ok", "401"]) as proxy:  # the 401s echo the key back, as OpenAI does
        specs = [f"openai:{MODEL}@{proxy.url}?retries=0", f"litellm:openai/{MODEL}?api_base={proxy.url}&retries=0"]
        outputs = []
        for i, spec in enumerate(specs):
            result = CliRunner().invoke(app, ["play", protocol, "-n", "1", "--model", spec, "--out",
                                              str(tmp_path / f"run{i}"), "--max-error-share", "1"],
                                        env={"COLUMNS": "200"})
            assert result.exit_code == 0, result.output
            outputs.append(result.output)
    assert proxy.keys and all(key == f"Bearer {SECRET}" for key in proxy.keys)  # the key was used
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "transcripts.jsonl" for path in written)
    errors = [e.error for i in range(2) for e in read_transcripts(tmp_path / f"run{i}" / "transcripts.jsonl")
              if e.status == "error"]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "[$OPENAI_API_KEY]" in errors[0]
    for path in written:
        assert SECRET not in path.read_text(errors="replace"), path
    assert not any(SECRET in output for output in outputs)


def test_a_spec_carrying_a_key_is_refused_before_anything_is_written(tmp_path):
    spec = f"openai:{MODEL}@http://127.0.0.1:9/v1?api_key={SECRET}"
    result = CliRunner().invoke(app, ["play", str(quick_protocol(tmp_path)), "--role", f"asker={spec}",
                                      "--out", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "set OPENAI_API_KEY in the environment" in result.output
    assert SECRET not in result.output and not (tmp_path / "run").exists()


SECRET_FORMS = [f"openai:{MODEL}@http://127.0.0.1:9/v1?{key}={SECRET}" for key in (
    "api-key", "apikey", "API_KEY", "auth", "Authorization", "bearer", "x-api-key", "X_Api_Key", "pass", "passwd",
    "secret", "client.secret", "token", "access_token", "authToken")] + [
    f"openai:{MODEL}@http://user:{SECRET}@127.0.0.1:9/v1",
    f"openai:{MODEL}@http://{SECRET}@127.0.0.1:9/v1",
    f"litellm:openai/{MODEL}?api_base=http://user:{SECRET}@127.0.0.1:9/v1",
    f"litellm:openai/{MODEL}?api_base=http://127.0.0.1:9/v1?api_key={SECRET}",
    f"litellm:openai/{MODEL}?Api-Key={SECRET}",
]


@pytest.mark.parametrize("spec", [
    # a litellm spec's hint names its provider's key variable, which imports litellm (5 s)
    pytest.param(spec, marks=pytest.mark.slow) if spec.startswith("litellm:") else spec for spec in SECRET_FORMS])
def test_every_form_of_secret_in_a_spec_is_refused_and_never_repeated(spec, tmp_path):
    """Refused before anything is written, with a message that does not repeat it (nor in --help-like echoes)."""
    for flags in (["--model", spec], ["--role", f"asker={spec}"]):
        result = CliRunner().invoke(app, ["play", str(quick_protocol(tmp_path)), *flags, "--out", str(tmp_path / "run")],
                                    env={"COLUMNS": "300"})
        assert result.exit_code == 1, result.output
        assert "secret" in result.output.lower() or "credentials" in result.output
        assert SECRET not in result.output and not (tmp_path / "run").exists()
