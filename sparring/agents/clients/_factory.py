"""Turn a model spec string into an AutoGen `ChatCompletionClient`."""

from __future__ import annotations

import warnings

from autogen_core.models import ChatCompletionClient

from ...errors import BackendError
from .._spec import ModelSpec


def model_client(spec: str, **sampling) -> ChatCompletionClient:
    """The chat client a spec names, with default sampling settings.

    Args:
        spec (`str`): ``"hf:smollm2-135m"``, ``"hf:/models/base+/runs/adapter"``,
            ``"openai:MODEL@http://127.0.0.1:8000/v1"`` or ``"litellm:anthropic/MODEL"``.
        **sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``, and ``extra``
            (a dict of backend-specific settings: ``extra_body`` fields for ``openai:``, keyword
            arguments of ``litellm.acompletion`` for ``litellm:``; the embedded ``hf:`` engine has
            none and ignores them with a warning, so one protocol plays on every backend).

    Raises:
        `BackendError`: the spec is malformed or names something that is not here.

    Example:
        >>> client = model_client("hf:smollm2-135m", temperature=0, max_tokens=16)  # doctest: +SKIP
        >>> client = model_client("openai:base@http://127.0.0.1:8000/v1", extra={"top_k": 20})  # doctest: +SKIP
    """
    parsed = ModelSpec.parse(spec)
    if parsed.scheme == "hf":
        from ._embedded import EmbeddedChatCompletionClient

        extra = sampling.pop("extra", None)
        if extra:
            warnings.warn(f"{spec}: the embedded engine ignores sampling.extra {sorted(extra)}; "
                          "those settings apply to openai: and litellm: backends", stacklevel=2)
        return EmbeddedChatCompletionClient(str(parsed), **sampling)
    if parsed.scheme == "openai":
        from ._openai import OpenAIServerClient

        return OpenAIServerClient(parsed, **sampling)
    if parsed.scheme == "litellm":
        from ._litellm import LiteLLMChatCompletionClient

        return LiteLLMChatCompletionClient(parsed, **sampling)
    raise BackendError(f"no client for scheme {parsed.scheme!r}")  # pragma: no cover - parse() rejects it first
