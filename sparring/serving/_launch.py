"""`sparring serve`: serve a model on the embedded engine or through vLLM, until interrupted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import BackendError

ENGINES = ("embedded", "vllm")


@dataclass(frozen=True)
class Served:
    """What a started server serves: the model name clients send, and the spec of each served model to
    play against it (``openai:NAME@URL``; under vLLM also each LoRA adapter, by name)."""

    name: str
    url: str
    specs: dict[str, str] = field(default_factory=dict)


def reachable(host: str) -> str:
    """The host to put in a spec for a server bound to ``host`` (a wildcard address is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def served_spec(name: str, host: str, port: int) -> str:
    """The spec that plays against model ``name`` served at ``host:port``.

    Example:
        >>> served_spec("base", "0.0.0.0", 8000)
        'openai:base@http://127.0.0.1:8000/v1'
    """
    return f"openai:{name}@http://{reachable(host)}:{port}/v1"


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, *, name: str | None = None,
          engine: str = "embedded", loras: dict[str, str] | None = None, enable_lora: bool = False,
          tensor_parallel: int = 1, extra: Sequence[str] = (), startup_timeout: float = 1800,
          on_ready: Callable[[Served], None] = lambda served: None,
          on_command: Callable[[list[str]], None] = lambda command: None) -> int:
    """Serve ``model`` over the OpenAI-compatible API until interrupted; the exit code.

    Args:
        model (`str`): ``embedded``: an ``hf:`` spec (an adapter in it); ``vllm``: an ``hf:`` spec
            without adapter, a hub id or a model directory.
        engine (`str`): ``embedded`` (sparring's engine in this process) or ``vllm`` (launch ``vllm serve``).
        loras, enable_lora, tensor_parallel, extra, startup_timeout: vLLM's (``extra``: arguments
            passed to ``vllm serve`` as they are).
        on_ready: called with what is served once it accepts requests (vLLM: once healthy).
        on_command: vLLM: called with the command line before it starts.

    Raises:
        `BackendError`: an unknown engine, a vLLM-only setting with the embedded engine, or a model
            or vLLM that cannot start.
    """
    if engine not in ENGINES:
        raise BackendError(f"{engine!r} is not an engine: use embedded or vllm")
    loras = loras or {}
    if engine == "vllm":
        return _serve_vllm(model, host, port, name, loras, enable_lora, tensor_parallel, list(extra), startup_timeout,
                           on_ready, on_command)
    vllm_only = {"--lora": loras, "--enable-lora": enable_lora, "--tensor-parallel": tensor_parallel > 1,
                 " ".join(extra): extra}
    for given in (flag for flag, used in vllm_only.items() if used):
        raise BackendError(f"{given} is for --engine vllm only; the embedded engine takes an adapter in the spec: "
                           "--model hf:BASE+ADAPTER_DIR")
    import uvicorn

    from ..agents import get_engine
    from ._server import create_app

    loaded = get_engine(model)
    served = name or loaded.name
    on_ready(Served(served, f"http://{reachable(host)}:{port}/v1", {served: served_spec(served, host, port)}))
    uvicorn.run(create_app(loaded, served), host=host, port=port, log_level="warning")
    return 0


def _serve_vllm(model, host, port, name, loras, enable_lora, tensor_parallel, extra, startup_timeout, on_ready,
                on_command) -> int:
    from ._vllm import run_server, vllm_args, vllm_executable

    served = name or model.removeprefix("hf:")
    command = vllm_executable() + vllm_args(model, host=host, port=port, served_name=served, loras=loras,
                                            enable_lora=enable_lora, tensor_parallel=tensor_parallel, extra=extra)
    on_command(command)
    specs = {n: served_spec(n, host, port) for n in (served, *loras)}
    ready = Served(served, f"http://{reachable(host)}:{port}/v1", specs)
    return run_server(command, f"http://{reachable(host)}:{port}/health", timeout=startup_timeout,
                      on_ready=lambda: on_ready(ready))


__all__ = ["ENGINES", "Served", "reachable", "serve", "served_spec"]
