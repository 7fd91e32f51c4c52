"""AutoGen component serialization of sparring's clients: a client dumps its spec and sampling settings.

``client.dump_component()`` gives a `ComponentModel` whose config is a `ClientConfig`; AutoGen's
``ChatCompletionClient.load_component(...)`` rebuilds the client from it, so teams of agents on
sparring clients save and load with ``team.dump_component()``. A config never holds a key: specs
refuse them, and an ``extra`` setting that names one is refused when dumped.
"""

from __future__ import annotations

from typing import Any

from autogen_core import Component, ComponentBase
from pydantic import BaseModel

from ...errors import BackendError
from .._spec import is_secret_key, redacted


class ClientConfig(BaseModel):
    """What rebuilds a sparring client: its model spec and the sampling settings it was made with.

    ``None`` (left out of the dump) keeps the client's default; ``extra`` is for ``openai:`` and
    ``litellm:`` clients only.
    """

    spec: str
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | str | None = None
    seed: int | None = None
    extra: dict[str, Any] | None = None


class SpecComponent(ComponentBase[ClientConfig], Component[ClientConfig]):
    """A client that is an AutoGen ``"model"`` component; ``__init__(spec, **settings)`` rebuilds it.

    Subclasses set ``_config`` (a `ClientConfig`) in their constructor and
    ``component_provider_override`` to their public import path.
    """

    component_type = "model"
    component_config_schema = ClientConfig
    _config: ClientConfig

    def _to_config(self) -> ClientConfig:
        """The client's config.

        Raises:
            `BackendError`: ``extra`` carries a secret (keys come from the environment, never a config).
        """
        found = _secrets(self._config.extra or {})
        if found:
            raise BackendError(f"{self._config.spec}: will not save a client whose extra settings carry a secret "
                               f"({found[0]}); set the key in the environment instead")
        return self._config.model_copy(deep=True)

    @classmethod
    def _from_config(cls, config: ClientConfig) -> "SpecComponent":
        return cls(config.spec, **config.model_dump(exclude={"spec"}, exclude_none=True))


def _secrets(settings: dict[str, Any], where: str = "") -> list[str]:
    """The paths of secret-named keys and of URLs with credentials in ``settings``, nested dicts included."""
    found = []
    for key, value in settings.items():
        path = f"{where}{key}"
        if is_secret_key(str(key)) or isinstance(value, str) and redacted(value) != value:
            found.append(path)
        elif isinstance(value, dict):
            found += _secrets(value, f"{path}.")
    return found
