"""Turn a model spec string into an AutoGen `ChatCompletionClient`."""

from __future__ import annotations

from autogen_core.models import ChatCompletionClient

from ..errors import BackendError
from ._spec import ModelSpec


def model_client(spec: str, **sampling) -> ChatCompletionClient:
    """The chat client a spec names, with default sampling settings.

    Args:
        spec (`str`): e.g. ``"hf:smollm2-135m"`` or ``"hf:/models/base+/runs/adapter"``.
        **sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``.

    Raises:
        `BackendError`: the spec is malformed or names something that is not here.

    Example:
        >>> client = model_client("hf:smollm2-135m", temperature=0, max_tokens=16)  # doctest: +SKIP
    """
    parsed = ModelSpec.parse(spec)
    if parsed.scheme == "hf":
        from ._embedded_client import EmbeddedChatCompletionClient

        return EmbeddedChatCompletionClient(str(parsed), **sampling)
    raise BackendError(f"no client for scheme {parsed.scheme!r}")  # pragma: no cover - parse() rejects it first
