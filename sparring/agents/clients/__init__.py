"""The AutoGen `ChatCompletionClient`s a model spec names: the embedded engine's, and the HTTP ones
for OpenAI-compatible servers and LiteLLM (with the retries and fault policy they share).

Names load on first use, so importing the package (or `to_chat_messages` alone) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EmbeddedChatCompletionClient": "._embedded",
    "FaultPolicy": "._remote",
    "LiteLLMChatCompletionClient": "._litellm",
    "OpenAIServerClient": "._openai",
    "SparringCreateResult": "._messages",
    "model_client": "._factory",
    "to_chat_messages": "._messages",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
