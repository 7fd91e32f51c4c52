"""What every client shares and no backend needs torch for: the result type, and AutoGen messages as chat dicts."""

from __future__ import annotations

from typing import Sequence

from autogen_core.models import AssistantMessage, CreateResult, LLMMessage, SystemMessage, UserMessage

from ...errors import BackendError


class SparringCreateResult(CreateResult):
    """A `CreateResult` that also carries the completion's token ids (``logprobs`` holds their logprobs)."""

    token_ids: list[int] | None = None


def to_chat_messages(messages: Sequence[LLMMessage], backend: str = "the embedded engine") -> list[dict]:
    """AutoGen messages as OpenAI-style ``{"role", "content"}`` dicts (a chat template's or LiteLLM's input).

    Raises:
        `BackendError`: a message is not plain text (``backend`` names who refuses it).
    """
    chat = []
    for message in messages:
        if isinstance(message, SystemMessage):
            chat.append({"role": "system", "content": message.content})
        elif isinstance(message, UserMessage) and isinstance(message.content, str):
            chat.append({"role": "user", "content": message.content})
        elif isinstance(message, AssistantMessage) and isinstance(message.content, str):
            chat.append({"role": "assistant", "content": message.content})
        else:
            raise BackendError(f"{backend} takes text messages only, not {type(message).__name__} with "
                               f"{type(getattr(message, 'content', None)).__name__} content")
    return chat
