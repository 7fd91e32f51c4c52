"""Load the model an ``hf:`` spec names, once per process, and start its engine."""

from __future__ import annotations

import atexit
import gc
import os
import threading
from pathlib import Path

from ...errors import BackendError
from ._transformers import Engine
from ._base import BaseEngine
from .._spec import ModelSpec, check_adapter_dir, resolve_model_dir

_engines: dict[str, BaseEngine] = {}
_lock = threading.Lock()


def best_dtype(device: str = "cpu"):
    """bfloat16 where the hardware computes it natively (CUDA, or a CPU with AVX512-BF16/AMX), else float32.

    ``$SPARRING_DTYPE`` (``float32``, ``bfloat16`` or ``float16``) overrides the choice.
    """
    import torch

    forced = os.environ.get("SPARRING_DTYPE")
    if forced:
        if forced not in ("float32", "bfloat16", "float16"):
            raise BackendError(f"SPARRING_DTYPE={forced!r}: expected float32, bfloat16 or float16")
        return getattr(torch, forced)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_model(spec: str | ModelSpec, dtype=None, device: str | None = None):
    """Load the model and tokenizer of an ``hf:`` spec, with its LoRA adapter merged in.

    Args:
        spec (`str | ModelSpec`): e.g. ``"hf:smollm2-135m+runs/adapter"``.
        dtype (`torch.dtype`, defaults to `best_dtype()`): the weights' dtype.
        device (`str`, defaults to ``"cuda"`` when available, else ``"cpu"``).

    Returns:
        `(model, tokenizer)`, the model in eval mode.

    Raises:
        `BackendError`: the model or the adapter cannot be found or loaded.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    adapter, source = _in_process(spec)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or best_dtype(device)
    tokenizer = load_tokenizer(spec.model, source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as error:
        raise BackendError(f"cannot load model {spec.model!r}: {str(error).splitlines()[0]}") from error
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except Exception as error:  # noqa: BLE001 - PEFT raises many types for a bad adapter
            raise BackendError(f"cannot load adapter {spec.adapter}: {error}") from error
    return model.to(device).eval(), tokenizer


ENGINES = ("openvino", "transformers")


def engine_kind() -> str:
    """Which engine runs ``hf:`` specs: ``$SPARRING_ENGINE`` (``openvino`` or ``transformers``), else
    OpenVINO GenAI where it is installed and no CUDA device is, else transformers.

    Raises:
        `BackendError`: ``$SPARRING_ENGINE`` names no engine, or names OpenVINO where it is not installed.
    """
    import importlib.util

    forced = os.environ.get("SPARRING_ENGINE")
    installed = importlib.util.find_spec("openvino_genai") is not None
    if forced:
        if forced not in ENGINES:
            raise BackendError(f"SPARRING_ENGINE={forced!r}: expected one of {', '.join(ENGINES)}")
        if forced == "openvino" and not installed:
            raise BackendError("SPARRING_ENGINE=openvino, but openvino-genai is not installed: pip install openvino-genai")
        return forced
    if not installed:
        return "transformers"
    import torch

    return "transformers" if torch.cuda.is_available() else "openvino"


def get_engine(spec: str, max_batch: int = 64) -> BaseEngine:
    """The shared engine of an ``hf:`` spec (`engine_kind`), loading the model on first use."""
    key = str(ModelSpec.parse(spec))
    with _lock:
        if key not in _engines:
            _engines[key] = _load_engine(ModelSpec.parse(key), max_batch)
        return _engines[key]


def release_engines() -> None:
    """Close every loaded engine, so that its memory can go; the next `get_engine` loads again.

    A long run (self-play) loads a new model every epoch; each engine holds its weights and a
    KV cache that grows up to its budget, so the models a run is done with must be let go.
    """
    with _lock:
        released = list(_engines.values())
        _engines.clear()
    for engine in released:
        engine.close()
    if released:
        gc.collect()


def _load_engine(spec: ModelSpec, max_batch: int) -> BaseEngine:
    if engine_kind() == "transformers":
        model, tokenizer = load_model(spec)
        return Engine(model, tokenizer, name=str(spec), max_batch=max_batch)
    from ._openvino import OpenVINOEngine
    from ._openvino_export import openvino_model_dir

    adapter, source = _in_process(spec)
    tokenizer = load_tokenizer(spec.model, source)
    return OpenVINOEngine(openvino_model_dir(source), tokenizer, name=str(spec), adapter=adapter, max_batch=max_batch)


def _in_process(spec: ModelSpec) -> tuple[Path | None, str]:
    """An ``hf:`` spec's adapter directory (None without one) and its model directory or hub id.

    Raises:
        `BackendError`: not an ``hf:`` spec, or the adapter or the model cannot be found.
    """
    if spec.scheme != "hf":
        raise BackendError(f"{spec} is not an in-process model (expected an hf: spec)")
    adapter = check_adapter_dir(spec.adapter) if spec.adapter else None
    return adapter, resolve_model_dir(spec.model)


def load_tokenizer(model: str, source: str):
    """The transformers tokenizer of a model directory (or hub id), which must have a chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise BackendError(f"cannot load model {model!r}: {str(error).splitlines()[0]}") from error
    if tokenizer.chat_template is None:
        raise BackendError(f"model {model!r} has no chat template; use an instruction-tuned model")
    return tokenizer


@atexit.register
def _close_engines() -> None:
    # A worker thread still inside torch when the interpreter exits aborts the process.
    for engine in _engines.values():
        engine.close()
