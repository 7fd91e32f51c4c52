"""Load the model an ``hf:`` spec names, once per process, and start its engine."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

from ..errors import BackendError
from ._engine import Engine
from ._spec import ModelSpec, check_adapter_dir, resolve_model_dir

_engines: dict[str, Engine] = {}
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.scheme != "hf":
        raise BackendError(f"{spec} is not an in-process model (expected an hf: spec)")
    adapter = check_adapter_dir(spec.adapter) if spec.adapter else None
    source = resolve_model_dir(spec.model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or best_dtype(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as error:
        raise BackendError(f"cannot load model {spec.model!r}: {str(error).splitlines()[0]}") from error
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except Exception as error:  # noqa: BLE001 - PEFT raises many types for a bad adapter
            raise BackendError(f"cannot load adapter {spec.adapter}: {error}") from error
    if tokenizer.chat_template is None:
        raise BackendError(f"model {spec.model!r} has no chat template; use an instruction-tuned model")
    return model.to(device).eval(), tokenizer


def get_engine(spec: str, max_batch: int = 64) -> Engine:
    """The shared engine of an ``hf:`` spec, loading the model on first use."""
    key = str(ModelSpec.parse(spec))
    with _lock:
        if key not in _engines:
            model, tokenizer = load_model(key)
            _engines[key] = Engine(model, tokenizer, name=key, max_batch=max_batch)
        return _engines[key]


@atexit.register
def _close_engines() -> None:
    # A worker thread still inside torch when the interpreter exits aborts the process.
    for engine in _engines.values():
        engine.close()
