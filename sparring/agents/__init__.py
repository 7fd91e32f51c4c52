"""Models for sparring's agents: spec strings (`ModelSpec`), the embedded engine (`engine/`) and the
AutoGen `ChatCompletionClient` of every backend (`clients/`).

Names load on first use: a spec or a client of a remote backend never loads torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "DEFAULT_MODEL": "._spec",
    "ModelSpec": "._spec",
    "sparring_home": "._spec",
    "EmbeddedChatCompletionClient": ".clients",
    "FaultPolicy": ".clients",
    "LiteLLMChatCompletionClient": ".clients",
    "OpenAIServerClient": ".clients",
    "SparringCreateResult": ".clients",
    "model_client": ".clients",
    "Completion": ".engine",
    "Engine": ".engine",
    "SamplingParams": ".engine",
    "best_dtype": ".engine",
    "get_engine": ".engine",
    "load_model": ".engine",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
