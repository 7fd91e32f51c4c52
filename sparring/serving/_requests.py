"""The requests `sparring serve` answers: the parts of OpenAI's chat completion and (legacy) completion
requests the embedded engine implements, and nothing else.

Every model here refuses a field it does not declare (pydantic's ``extra="forbid"``, so the 400
names it), except a field in `NEUTRAL` at the value that asks for nothing, a field in `METADATA`,
and a null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..agents.engine._base import SamplingParams
from ..errors import BackendError

MAX_TEMPERATURE = 2.0
"""The highest temperature a request may ask for (OpenAI's range is 0 to 2)."""
MAX_CHOICES = 16
"""The most choices (``n``) one request may ask for."""
MAX_PROMPTS = 256
"""The most prompts one completion request may carry."""
MAX_TOP_LOGPROBS = 20
"""The most alternatives per token a chat request may ask for (``top_logprobs``, as OpenAI's)."""
MAX_COMPLETION_LOGPROBS = 5
"""The most alternatives per token a completion request may ask for (``logprobs``, as OpenAI's)."""
COMPLETION_MAX_TOKENS = 16
"""New tokens of a completion request that gives no ``max_tokens`` (OpenAI's default)."""
NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "response_format": {"type": "text"},
           "parallel_tool_calls": None, "tool_choice": "none", "best_of": 1}
"""Fields the server does not implement, accepted only at the value that asks for nothing."""
METADATA = frozenset({"user", "metadata", "store", "service_tier"})
"""Fields that change nothing in a reply: accepted and ignored."""


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"not valid Unicode: a lone surrogate {text[error.start]!r} at position {error.start}") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int and t >= 0 for t in value)


class _Strict(BaseModel):
    """A request part that refuses every field it does not implement (naming it), except `NEUTRAL` values."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_neutral(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items()
                if key in cls.model_fields or not (value is None or key in METADATA
                                                   or (key in NEUTRAL and NEUTRAL[key] == value))}


class _Generation(_Strict):
    """What chat and completion requests share: the model, sampling settings, ``n`` choices, streaming."""

    model: str
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Text | list[Text] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices, each its own generation (seed + i when seeded)")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    return_token_ids: bool = False

    def sampling(self, max_tokens: int) -> list[SamplingParams]:
        """The sampling settings of each of the `n` choices, with ``max_tokens`` new tokens at most."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return [SamplingParams(self.temperature, self.top_p, max_tokens, stop, None if self.seed is None else self.seed + i)
                for i in range(self.n)]

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool((self.stream_options or {}).get("include_usage"))


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: Text | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Generation):
    """The part of OpenAI's chat completion request the embedded engine serves; any other field is refused."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Any] | None = None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> "ChatRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def new_tokens(self, default: int) -> int:
        """The most new tokens of each choice: ``max_completion_tokens``, else ``max_tokens``, else ``default``."""
        return self.max_completion_tokens or self.max_tokens or default

    def chat(self) -> list[dict]:
        if self.tools:
            raise BackendError("tool calls are not supported by the embedded engine")
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


class CompletionRequest(_Generation):
    """The part of OpenAI's (legacy) completion request the embedded engine serves; any other field is refused.

    ``prompt`` is a text, a list of token ids, or a batch of either (a list of texts, a list of
    token id lists). ``logprobs`` (0 to 5) asks for the chosen tokens' logprobs and that many
    alternatives each; with ``echo`` the prompt's tokens come first (the first with no logprob).
    ``max_tokens: 0`` with ``echo`` generates nothing and only scores the prompt.
    """

    prompt: Text | list[int] | list[Text] | list[list[int]]
    max_tokens: int | None = Field(COMPLETION_MAX_TOKENS, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        batch = value if isinstance(value, list) and value and not _token_ids(value) else [value]
        for prompt in batch:
            if not (isinstance(prompt, str) or _token_ids(prompt)):
                raise ValueError("expected a text, a list of token ids (integers from 0), or a list of either")
            if prompt == "":
                raise ValueError("a prompt is empty")
            if isinstance(prompt, str):
                _valid_unicode(prompt)
        if len({type(prompt) for prompt in batch}) > 1:
            raise ValueError("a batch of prompts is all texts or all token id lists, not both")
        if len(batch) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts per request, not {len(batch)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "CompletionRequest":
        if self.max_tokens is None:
            self.max_tokens = COMPLETION_MAX_TOKENS
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 generates nothing; it needs echo: true (to score the prompt)")
        return self

    def prompts(self) -> list[str | list[int]]:
        """The batch of prompts, each a text or a list of token ids."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]
        return list(self.prompt)


__all__ = ["ChatRequest", "CompletionRequest", "MAX_CHOICES", "MAX_TEMPERATURE", "NEUTRAL", "METADATA"]
