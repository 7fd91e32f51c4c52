"""Real HTTP servers for the backend tests: `sparring serve` as a child process, and a proxy
in front of it that counts requests and injects faults (HTTP 500/429/401, hangs, dropped
connections). Nothing here reaches the network: everything listens on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

MODEL = "hf:smollm2-135m"
TWENTY_QUESTIONS = Path(__file__).parent / "protocols" / "twenty_questions.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """`sparring serve` (embedded engine, float32) on ``port``; returns once /health answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sparring.cli", "serve", "--model", MODEL, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200", "SPARRING_DTYPE": "float32"},
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sparring serve exited: {process.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("sparring serve did not come up in 180 s")


@contextmanager
def sparring_serve():
    """A `sparring serve` for the duration of the block; yields its root URL (no /v1)."""
    port = free_port()
    process = start_server(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def quick_protocol(directory: Path, turns: int = 2, extra: dict | None = None, models: dict | None = None) -> Path:
    """twenty_questions cut to ``turns`` messages of a few tokens (fast on CPU), with ``extra``
    sampling settings and ``models`` (role -> spec) written into the YAML."""
    spec = yaml.safe_load(TWENTY_QUESTIONS.read_text())
    spec["schedule"]["max_turns"] = turns
    for name, role in spec["roles"].items():
        role["sampling"]["max_tokens"] = 6
        if extra:
            role["sampling"]["extra"] = extra
        if name in (models or {}):
            role["model"] = models[name]
    path = directory / "quick_twenty_questions.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class FaultProxy:
    """A real HTTP proxy to ``upstream`` that counts chat requests and injects faults into them.

    ``faults`` is consumed in order, one entry per chat completion request (then requests pass):
    ``"500"``, ``"429"`` (with Retry-After: 0), ``"401"`` (echoes the bearer key as OpenAI's
    API does), ``"hang"`` (hold the request ``hang_seconds``, then drop it), ``"drop"`` (close
    the connection with no answer), ``"truncate"`` (the upstream's 200 announced in full, half
    of its body sent, then the connection closed), ``"garbage"`` (a 200 whose JSON body is cut
    short, with a matching length), ``"ok"`` (pass it on).
    """

    def __init__(self, upstream: str, faults: list[str] | None = None, hang_seconds: float = 3.0):
        self.upstream, self.faults, self.hang_seconds = upstream, list(faults or []), hang_seconds
        self.requests = 0
        self.bodies: list[dict] = []
        self.keys: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._reply(httpx.get(proxy.upstream + self.path, timeout=30))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                    proxy.bodies.append(json.loads(body or b"{}"))
                    proxy.keys.append(self.headers.get("authorization", ""))
                    fault = proxy.faults.pop(0) if proxy.faults else "ok"
                try:
                    if fault in ("500", "429"):
                        self._json(int(fault), {"error": {"message": f"injected {fault}", "code": int(fault)}})
                    elif fault == "401":
                        key = self.headers.get("authorization", "").removeprefix("Bearer ")
                        self._json(401, {"error": {"message": f"Incorrect API key provided: {key}", "code": 401}})
                    elif fault in ("hang", "drop"):
                        if fault == "hang":
                            time.sleep(proxy.hang_seconds)
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    else:
                        response = httpx.post(proxy.upstream + self.path, content=body, timeout=120,
                                              headers={"content-type": "application/json"})
                        self._reply(response, cut=fault if fault in ("truncate", "garbage") else None)
                except OSError:
                    self.close_connection = True  # the client gave up first

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, response: httpx.Response, cut: str | None = None) -> None:
                content = response.content
                sent = content[: len(content) // 2] if cut else content
                self.send_response(response.status_code)
                self.send_header("content-type", response.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(content if cut == "truncate" else sent)))
                self.end_headers()
                self.wfile.write(sent)
                if cut == "truncate":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
