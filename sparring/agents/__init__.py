"""Models for sparring's agents: spec strings (`ModelSpec`), the embedded engine (`engine/`) and the
AutoGen `ChatCompletionClient` of every backend (`clients/`)."""

from ._spec import DEFAULT_MODEL, ModelSpec, sparring_home
from .clients import (EmbeddedChatCompletionClient, FaultPolicy, LiteLLMChatCompletionClient, OpenAIServerClient,
                      SparringCreateResult, model_client)
from .engine import Completion, Engine, SamplingParams, best_dtype, get_engine, load_model

__all__ = [
    "DEFAULT_MODEL",
    "Completion",
    "EmbeddedChatCompletionClient",
    "Engine",
    "FaultPolicy",
    "LiteLLMChatCompletionClient",
    "ModelSpec",
    "OpenAIServerClient",
    "SamplingParams",
    "SparringCreateResult",
    "best_dtype",
    "get_engine",
    "load_model",
    "model_client",
    "sparring_home",
]
