"""`LiteLLMChatCompletionClient`: API models (and any LiteLLM provider) as an AutoGen `ChatCompletionClient`.

autogen-ext has no LiteLLM client; this is a thin adapter over ``litellm.acompletion`` with the
shared fault policy of `_remote` (LiteLLM's own retries are turned off). API keys come from the
environment only (LiteLLM reads ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ...); a spec that
carries one is refused, and error messages are scrubbed of every key in the environment.
"""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Mapping, Sequence

from autogen_core.models import ChatCompletionTokenLogprob, CreateResult, LLMMessage, RequestUsage

from ...errors import BackendError
from ._messages import SparringCreateResult, to_chat_messages
from ._remote import FaultPolicy, RemoteClient, api_errors, timed, with_retries
from .._spec import ModelSpec, key_variable

LITELLM_DEFAULTS = FaultPolicy(timeout=120.0, retries=4, backoff=1.0, max_concurrency=16)
"""Fault settings of ``litellm:`` specs unless the spec's query says otherwise (API rate limits: a lower cap)."""
FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter",
                  "tool_calls": "function_calls", "function_call": "function_calls"}


def import_litellm():
    """Import LiteLLM without its network fetch of the model price list (its bundled copy is used)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        raise BackendError("litellm is not installed: run `pip install litellm`") from None
    litellm.suppress_debug_info = True  # no "Give Feedback" banners on errors
    return litellm


class LiteLLMChatCompletionClient(RemoteClient):
    """Chat with a model through LiteLLM (``litellm:PROVIDER/MODEL``).

    Args:
        spec (`str | ModelSpec`): ``litellm:PROVIDER/MODEL[?key=value&...]``. Query keys: ``timeout``
            (120 s), ``retries`` (4), ``backoff`` (1 s), ``max_backoff`` (30 s), ``max_concurrency``
            (16 per provider or ``api_base``), ``logprobs`` and ``token_ids`` (false: set true where the
            server returns them, e.g. vLLM); any other key is passed to ``litellm.acompletion``, e.g.
            ``api_base=http://127.0.0.1:8000/v1`` or ``api_version=...``.
        temperature, top_p, max_tokens, stop, seed: default sampling settings (temperature 0.7 and
            max_tokens 256 unless given); ``None`` keeps the default.
        extra (`dict | None`): more keyword arguments for ``litellm.acompletion``.

    An AutoGen component: ``dump_component()`` saves the spec and sampling settings (never a key).

    Raises:
        `BackendError`: the spec is malformed or carries a key (set e.g. ``ANTHROPIC_API_KEY`` instead).

    Example:
        ```python
        import asyncio
        from autogen_agentchat.agents import AssistantAgent
        from sparring.agents import model_client

        async def main():  # with ANTHROPIC_API_KEY set in the environment
            teacher = model_client("litellm:anthropic/claude-3-5-haiku-latest", max_tokens=64)
            agent = AssistantAgent("attacker", model_client=teacher)
            print((await agent.run(task="Describe an apple without naming it.")).messages[-1].content)

        asyncio.run(main())
        ```
    """

    component_provider_override = "sparring.agents.clients.LiteLLMChatCompletionClient"

    _scheme, _takes, _fault_defaults, _flags_default = "litellm", "litellm:PROVIDER/MODEL", LITELLM_DEFAULTS, False
    _context_unknown = "LiteLLM does not know this model's context length"

    def _bind(self, parsed: ModelSpec) -> None:
        base = self.settings.sampling.get("api_base")
        self._where = f"{self.model}" + (f" at {base}" if base else "")
        self._endpoint_key = f"litellm:{base or parsed.provider}"

    def _request(self, messages: Sequence[LLMMessage], extra_create_args: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = {**self.settings.sampling, **extra_create_args}
        if self.settings.logprobs:
            kwargs["logprobs"] = True
        if self.settings.token_ids:
            kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "return_token_ids": True}
        if kwargs.get("api_base") and _needs_placeholder_key(self.model, kwargs["api_base"]):
            kwargs["api_key"] = "EMPTY"  # a local server needs no key, but LiteLLM's OpenAI path wants one
        kwargs.update(model=self.model, messages=to_chat_messages(messages, "litellm: specs"), timeout=self.settings.policy.timeout,
                      num_retries=0, max_retries=0)
        return kwargs

    async def _complete(self, messages, extra_create_args, cancellation_token) -> SparringCreateResult:
        """One reply, retrying on faults."""
        litellm = import_litellm()
        kwargs = self._request(messages, extra_create_args)
        gate = self._gate(self._endpoint_key)

        async def attempt():
            async with gate.slot():
                return await timed(litellm.acompletion(**kwargs), self.settings.policy)

        response = await with_retries(attempt, self.settings.policy, self._where, self._hint)
        choice = response.choices[0]
        self._count(_usage(getattr(response, "usage", None)))
        content = getattr(choice.logprobs, "content", None) if getattr(choice, "logprobs", None) else None
        return SparringCreateResult(
            finish_reason=FINISH_REASONS.get(choice.finish_reason or "", "unknown"),
            content=choice.message.content or "",
            usage=self._last,
            cached=False,
            logprobs=[ChatCompletionTokenLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in content]
            if content else None,
            token_ids=(getattr(choice, "provider_specific_fields", None) or {}).get("token_ids"),
        )

    async def _stream(self, messages, extra_create_args, cancellation_token) -> AsyncIterator[str | CreateResult]:
        """The reply's text in pieces, then a `CreateResult` (retries only until the stream opens)."""
        litellm = import_litellm()
        kwargs = {**self._request(messages, extra_create_args), "stream": True,
                  "stream_options": {"include_usage": True}}
        async with self._gate(self._endpoint_key).slot():
            stream = await with_retries(lambda: timed(litellm.acompletion(**kwargs), self.settings.policy),
                                        self.settings.policy, self._where, self._hint)
            pieces, finish, usage = [], None, None
            with api_errors(self._where, self._hint):
                async for chunk in stream:
                    usage = getattr(chunk, "usage", None) or usage
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        if choice.delta.content:
                            pieces.append(choice.delta.content)
                            yield choice.delta.content
        self._count(_usage(usage))
        yield CreateResult(finish_reason=FINISH_REASONS.get(finish or "", "unknown"), content="".join(pieces),
                           usage=self._last, cached=False)

    def _hint(self, error: BaseException) -> str:
        if getattr(error, "status_code", None) in (401, 403):
            return f"; set {key_variable('litellm', self.model)} in the environment"
        return ""

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence = []) -> int:
        """LiteLLM's count for this model (its tokenizer where it knows one, else an OpenAI encoding)."""
        return import_litellm().token_counter(model=self.model, messages=to_chat_messages(messages, "litellm: specs"))

    def _context_length(self) -> int | None:
        try:
            return import_litellm().get_max_tokens(self.model)
        except Exception:  # LiteLLM raises a bare Exception for models it does not list
            return None


def _usage(usage: Any) -> RequestUsage:
    """A LiteLLM reply's (or last chunk's) usage; 0 for what it leaves out."""
    return RequestUsage(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                        completion_tokens=getattr(usage, "completion_tokens", 0) or 0)


def _needs_placeholder_key(model: str, api_base: str) -> bool:
    """Whether LiteLLM finds no key for ``model`` in the environment (then a local server gets ``EMPTY``)."""
    return not import_litellm().validate_environment(model=model, api_base=api_base).get("keys_in_environment")
