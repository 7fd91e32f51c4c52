"""The AutoGen `ChatCompletionClient`s a model spec names: the embedded engine's, and the HTTP ones
for OpenAI-compatible servers and LiteLLM (with the retries and fault policy they share).

Names load on first use, so importing the package (or `to_chat_messages` alone) does not load torch.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _WHERE)
