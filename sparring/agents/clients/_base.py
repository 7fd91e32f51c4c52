"""`SparringClient`: the `ChatCompletionClient` bookkeeping every sparring client shares (no torch).

Usage accounting (``actual_usage``/``total_usage``), ``last_result``, the request checks (no tools,
no JSON or structured output), ``remaining_tokens`` from a context length, the model info, ``close``
and the AutoGen component dump. A client keeps only what is its own: how it calls its backend
(`_complete`, `_stream`), how it counts tokens, and how long its context is.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, AsyncGenerator, AsyncIterator, Mapping, Sequence

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelFamily,
    ModelInfo,
    RequestUsage,
)

from ...errors import BackendError
from ._component import ClientConfig, SpecComponent
from ._messages import SparringCreateResult

MODEL_INFO = ModelInfo(vision=False, function_calling=False, json_output=False, family=ModelFamily.UNKNOWN,
                       structured_output=False, multiple_system_messages=True)
"""What every sparring client offers: text chat, several system messages, no tools or JSON output."""


class SparringClient(ChatCompletionClient, SpecComponent):
    """The shared part of sparring's clients: an AutoGen ``"model"`` component built from a spec.

    A subclass calls `_start` in its constructor and implements `_complete`, `_stream` and
    ``count_tokens`` (and `_context_length` where it knows one); it sets
    ``component_provider_override`` to its public import path.

    Attributes:
        spec (`str`): the model spec the client was made from.
        last_result (`SparringCreateResult | None`): the latest `create` result, with its token ids
            where the backend gives them: what an agent's reply message does not keep.
    """

    _no_tools = "{spec} does not support tool calls; give the agent no tools"
    _no_json = "{spec} does not support JSON or structured output"
    _context_unknown = "the model's context length is not known here"
    spec: str
    last_result: SparringCreateResult | None

    def _start(self, config: ClientConfig) -> None:
        """Set the spec, the config ``dump_component`` saves, and zero usage."""
        self.spec, self._config = config.spec, config
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self.last_result = None

    def _check_request(self, tools: Sequence, json_output: Any) -> None:
        """Refuse what sparring's clients do not offer: tool calls and JSON or structured output."""
        if tools:
            raise BackendError(self._no_tools.format(spec=self.spec))
        if json_output:
            raise BackendError(self._no_json.format(spec=self.spec))

    def _count(self, usage: RequestUsage) -> RequestUsage:
        """Record one request's usage (the latest, and added to the total); return it."""
        self._last = usage
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + usage.prompt_tokens,
                                   completion_tokens=self._total.completion_tokens + usage.completion_tokens)
        return usage

    @abstractmethod
    async def _complete(self, messages: Sequence[LLMMessage], extra_create_args: Mapping[str, Any],
                        cancellation_token: CancellationToken | None) -> SparringCreateResult:
        """One reply from the backend, its usage counted with `_count`."""

    @abstractmethod
    def _stream(self, messages: Sequence[LLMMessage], extra_create_args: Mapping[str, Any],
                cancellation_token: CancellationToken | None) -> AsyncIterator[str | CreateResult]:
        """The reply's text in pieces from the backend, then its result, its usage counted with `_count`."""

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> SparringCreateResult:
        """Generate one reply to ``messages``; ``last_result`` keeps it, with the token ids."""
        self._check_request(tools, json_output)
        self.last_result = await self._complete(messages, extra_create_args, cancellation_token)
        return self.last_result

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
        include_usage: bool | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        """Yield the reply's text in pieces as it is generated, then its `CreateResult`."""
        self._check_request(tools, json_output)
        async for item in self._stream(messages, extra_create_args, cancellation_token):
            yield item

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def _context_length(self) -> int | None:
        """The model's context length in tokens, where the client knows it."""
        return None

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence = []) -> int:
        """The context length less ``count_tokens(messages)``.

        Raises:
            `BackendError`: the context length is not known here.
        """
        limit = self._context_length()
        if not limit:
            raise BackendError(f"{self.spec}: {self._context_unknown}; give AutoGen's "
                               "TokenLimitedChatCompletionContext an explicit token_limit")
        return limit - self.count_tokens(messages)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return self.model_info  # type: ignore[return-value]

    @property
    def model_info(self) -> ModelInfo:
        return MODEL_INFO

    async def close(self) -> None:
        """Nothing to release: engines and HTTP connections are shared, and live as long as the process or event loop."""
