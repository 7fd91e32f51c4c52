"""`EmbeddedChatCompletionClient`: the embedded engine as an AutoGen `ChatCompletionClient`."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping, Sequence

from autogen_core.models import ChatCompletionTokenLogprob, LLMMessage, RequestUsage

from ...errors import BackendError
from ..engine._base import BaseEngine, Completion, SamplingParams
from .._spec import DEFAULT_MODEL
from ._base import SparringClient
from ._component import ClientConfig
from ._messages import SparringCreateResult, to_chat_messages

SAMPLING_ARGS = ("temperature", "top_p", "max_tokens", "stop", "seed")


class EmbeddedChatCompletionClient(SparringClient):
    """Chat with an in-process transformers model; concurrent calls share one batched engine.

    An AutoGen component: ``dump_component()`` saves its spec and sampling settings, and
    ``ChatCompletionClient.load_component(...)`` rebuilds it on the shared engine of that spec.

    Args:
        model (`str`, defaults to ``"hf:smollm2-135m"``): an ``hf:`` model spec.
        temperature (`float`, defaults to 0.7), top_p (`float`, defaults to 1.0),
        max_tokens (`int`, defaults to 256), stop (`list[str] | None`), seed (`int | None`):
            default sampling settings; ``extra_create_args`` of one call override them.
        engine (`BaseEngine | None`): an engine to use instead of the shared one for ``model``.

    Example:
        ```python
        import asyncio
        from autogen_agentchat.agents import AssistantAgent
        from sparring.agents import EmbeddedChatCompletionClient

        async def main():
            client = EmbeddedChatCompletionClient("hf:smollm2-135m", max_tokens=32)
            agent = AssistantAgent("assistant", model_client=client)
            result = await agent.run(task="Name a colour.")
            print(result.messages[-1].content)

        asyncio.run(main())
        ```
    """

    component_provider_override = "sparring.agents.clients.EmbeddedChatCompletionClient"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: list[str] | None = None,
        seed: int | None = None,
        engine: BaseEngine | None = None,
    ):
        if engine is None:
            from ..engine._loading import get_engine

            engine = get_engine(model)
        self.engine = engine
        self._defaults = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                          "stop": tuple(stop or ()), "seed": seed}
        SamplingParams(**self._defaults)  # fail early on a bad setting
        self._start(ClientConfig(spec=engine.name, **self._defaults))

    def _params(self, extra: Mapping[str, Any]) -> SamplingParams:
        unknown = set(extra) - set(SAMPLING_ARGS)
        if unknown:
            raise BackendError(f"unsupported create args {sorted(unknown)}: the embedded engine takes {', '.join(SAMPLING_ARGS)}")
        settings = {**self._defaults, **extra}
        if isinstance(settings["stop"], str):
            settings["stop"] = (settings["stop"],)
        settings["stop"] = tuple(settings["stop"] or ())
        return SamplingParams(**settings)

    async def _complete(self, messages, extra_create_args, cancellation_token) -> SparringCreateResult:
        return self._result(await self._generate(messages, self._params(extra_create_args), cancellation_token))

    async def _stream(self, messages, extra_create_args, cancellation_token) -> AsyncIterator[str | SparringCreateResult]:
        prompt_ids = await self._encode(messages)
        async for item in self.engine.stream(prompt_ids, self._params(extra_create_args)):
            if cancellation_token is not None and cancellation_token.is_cancelled():
                raise asyncio.CancelledError()
            yield item if isinstance(item, str) else self._result(item)

    async def _encode(self, messages: Sequence[LLMMessage]) -> list[int]:
        return await self.engine.encode_chat_async(to_chat_messages(messages))

    async def _generate(self, messages, params, cancellation_token) -> Completion:
        prompt_ids = await self._encode(messages)
        future = asyncio.ensure_future(self.engine.generate(prompt_ids, params))
        if cancellation_token is not None:
            cancellation_token.link_future(future)
        return await future

    def _result(self, completion: Completion) -> SparringCreateResult:
        usage = self._count(RequestUsage(prompt_tokens=completion.prompt_tokens,
                                         completion_tokens=completion.completion_tokens))
        tokens = self.engine.tokenizer.convert_ids_to_tokens(completion.token_ids)
        self.last_result = SparringCreateResult(
            finish_reason=completion.finish_reason,
            content=completion.text,
            usage=usage,
            cached=False,
            logprobs=[ChatCompletionTokenLogprob(token=t, logprob=lp) for t, lp in zip(tokens, completion.logprobs)],
            token_ids=completion.token_ids,
        )
        return self.last_result

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence = []) -> int:
        return len(self.engine.encode_chat(to_chat_messages(messages)))

    def _context_length(self) -> int:
        return self.engine.max_positions
