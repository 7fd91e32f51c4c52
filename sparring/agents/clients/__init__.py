"""The AutoGen `ChatCompletionClient`s a model spec names: the embedded engine's, and the HTTP ones
for OpenAI-compatible servers and LiteLLM (with the retries and fault policy they share)."""

from ._embedded import EmbeddedChatCompletionClient, SparringCreateResult, to_chat_messages
from ._factory import model_client
from ._litellm import LiteLLMChatCompletionClient
from ._openai import OpenAIServerClient
from ._remote import FaultPolicy

__all__ = ["EmbeddedChatCompletionClient", "FaultPolicy", "LiteLLMChatCompletionClient", "OpenAIServerClient",
           "SparringCreateResult", "model_client", "to_chat_messages"]
