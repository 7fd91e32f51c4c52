"""Model clients ("backends") for sparring's agents: every one is an AutoGen `ChatCompletionClient`."""

from ._embedded_client import EmbeddedChatCompletionClient, SparringCreateResult
from ._engine import Completion, Engine, SamplingParams
from ._factory import model_client
from ._loading import best_dtype, get_engine, load_model
from ._spec import DEFAULT_MODEL, ModelSpec, sparring_home

__all__ = [
    "DEFAULT_MODEL",
    "Completion",
    "EmbeddedChatCompletionClient",
    "Engine",
    "ModelSpec",
    "SamplingParams",
    "SparringCreateResult",
    "best_dtype",
    "get_engine",
    "load_model",
    "model_client",
    "sparring_home",
]
