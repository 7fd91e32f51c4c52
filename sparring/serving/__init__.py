"""Serving models over HTTP: ``sparring serve``'s OpenAI-compatible server on the embedded engine
(`create_app`), and the vLLM launcher it uses on GPUs (`vllm_args`, `run_server`)."""

from ._server import create_app
from ._vllm import INSTALL_VLLM, run_server, vllm_args, vllm_executable

__all__ = ["INSTALL_VLLM", "create_app", "run_server", "vllm_args", "vllm_executable"]
