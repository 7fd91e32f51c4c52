"""`sparring serve --engine vllm`: launch `vllm serve`, wait until it is healthy, stop it cleanly.

vLLM runs as a child process in a session of its own; SIGINT and SIGTERM sent to sparring are
forwarded to the child's whole process group (vLLM's workers included; a second signal kills
them), and the child is terminated (then killed) when sparring exits for any reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BackendError
from ..agents._spec import ModelSpec, check_adapter_dir, resolve_model_dir

INSTALL_VLLM = "pip install 'sparring[vllm]'"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for --max-lora-rank (its default is 16)."""


def vllm_executable() -> list[str]:
    """The command that runs vLLM's CLI.

    Raises:
        `BackendError`: vLLM is not installed (the message says how to install it).
    """
    if importlib.util.find_spec("vllm") is None:
        raise BackendError(f"vLLM is not installed: run `{INSTALL_VLLM}` (on a machine with a CUDA GPU)")
    beside = Path(sys.executable).with_name("vllm")
    found = str(beside) if beside.is_file() else shutil.which("vllm")
    return [found] if found else [sys.executable, "-m", "vllm.entrypoints.cli.main"]


def vllm_model(model: str) -> str:
    """What to hand `vllm serve` for ``--model``: an ``hf:`` spec resolved to its directory, else as given.

    Raises:
        `BackendError`: the spec carries ``+ADAPTER`` (vLLM takes adapters through ``--lora``).
    """
    if not model.startswith("hf:"):
        return model
    spec = ModelSpec.parse(model)
    if spec.adapter:
        raise BackendError(f"--model {model}: vLLM serves adapters beside the base, not merged into it: "
                           f"use --model hf:{spec.model} --lora NAME={spec.adapter}")
    return resolve_model_dir(spec.model)


def vllm_args(model: str, *, host: str, port: int, served_name: str, loras: dict[str, str] | None = None,
              enable_lora: bool = False, tensor_parallel: int = 1, extra: Sequence[str] = ()) -> list[str]:
    """The arguments of ``vllm serve`` (after the executable) for a sparring serve command line.

    Args:
        model (`str`): an ``hf:`` spec (resolved to its directory), a hub id or a model directory.
        host (`str`), port (`int`): where vLLM listens.
        served_name (`str`): the model name clients send (the ``MODEL`` of ``openai:MODEL@URL``).
        loras (`dict[str, str]`): adapter name -> PEFT adapter directory, each served as a model of its own.
        enable_lora (`bool`, defaults to False): allow adapters even with none given now.
        tensor_parallel (`int`, defaults to 1): GPUs to shard the model over.
        extra (`Sequence[str]`): more ``vllm serve`` arguments, passed as they are.

    Raises:
        `BackendError`: an adapter directory is not a PEFT adapter, or its rank is above vLLM's limit.

    Example:
        >>> vllm_args("Qwen/Qwen2.5-0.5B-Instruct", host="127.0.0.1", port=8000, served_name="base",
        ...           tensor_parallel=2)[:6]
        ['serve', 'Qwen/Qwen2.5-0.5B-Instruct', '--host', '127.0.0.1', '--port', '8000']
    """
    args = ["serve", vllm_model(model), "--host", host, "--port", str(port), "--served-model-name", served_name]
    if tensor_parallel > 1:
        args += ["--tensor-parallel-size", str(tensor_parallel)]
    loras = loras or {}
    if loras or enable_lora:
        args.append("--enable-lora")
    if loras:
        args += ["--lora-modules", *(f"{name}={check_adapter_dir(path)}" for name, path in loras.items())]
        rank = max(_lora_rank(Path(path)) for path in loras.values())
        if rank > 16:
            fitting = [r for r in LORA_RANKS if r >= rank]
            if not fitting:
                raise BackendError(f"--lora: rank {rank} is above vLLM's largest --max-lora-rank {LORA_RANKS[-1]}")
            args += ["--max-lora-rank", str(fitting[0])]
        if len(loras) > 1:
            args += ["--max-loras", str(len(loras))]  # serve every adapter in one batch, not one at a time
    return args + list(extra)


def _lora_rank(adapter: Path) -> int:
    try:
        return int(json.loads((Path(adapter).expanduser() / "adapter_config.json").read_text()).get("r") or 0)
    except (OSError, ValueError) as error:
        raise BackendError(f"--lora: cannot read {adapter}/adapter_config.json: {error}") from None


def wait_healthy(process: subprocess.Popen, url: str, timeout: float, stopped: Callable[[], bool] = lambda: False,
                 poll: float = 0.5) -> bool:
    """Wait until ``url`` answers 200; return False if ``stopped()`` turned true first.

    Raises:
        `BackendError`: the process exited, or ``url`` did not answer within ``timeout`` seconds.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while not stopped():
        code = process.poll()
        if code is not None:
            raise BackendError(f"the server exited with code {code} before it was ready; its output above says why")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BackendError(f"the server did not answer {url} within {timeout:.0f} s; "
                               "raise --startup-timeout if it is still loading the model")
        time.sleep(poll)
    return False


def run_server(command: Sequence[str], health_url: str, *, timeout: float, on_ready: Callable[[], None]) -> int:
    """Run ``command`` as a server until it exits or sparring is told to stop; return the exit code.

    SIGINT and SIGTERM are forwarded to the server's process group (a second one kills it); the
    server is always stopped on the way out (SIGTERM, then SIGKILL after 30 s). Must run in the
    main thread.

    Args:
        command (`Sequence[str]`): the server's command line (e.g. `vllm_executable()` + `vllm_args(...)`).
        health_url (`str`): answers 200 once the server is ready, e.g. ``http://127.0.0.1:8000/health``.
        timeout (`float`): seconds to wait for readiness.
        on_ready: called once the server is healthy (prints the spec to use).

    Raises:
        `BackendError`: the server exited or stayed unhealthy before it was ready.
    """
    process = subprocess.Popen(list(command), start_new_session=True)
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        _signal_group(process, signum if len(received) == 1 else signal.SIGKILL)  # a second Ctrl-C kills

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if wait_healthy(process, health_url, timeout, stopped=lambda: bool(received)):
            on_ready()
        code = process.wait()
        return 0 if received else code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(process)


def stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop a server started by `run_server`: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the child leads its own session: this reaches vLLM's workers too
    except ProcessLookupError:
        pass
