"""Model clients ("backends") for sparring's agents: every one is an AutoGen `ChatCompletionClient`."""

from ._embedded_client import EmbeddedChatCompletionClient, SparringCreateResult
from ._engine import Engine
from ._engine_base import Completion, SamplingParams
from ._factory import model_client
from ._litellm_client import LiteLLMChatCompletionClient
from ._loading import best_dtype, get_engine, load_model
from ._openai_client import OpenAIServerClient
from ._remote import FaultPolicy
from ._spec import DEFAULT_MODEL, ModelSpec, sparring_home

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
