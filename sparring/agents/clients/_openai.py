"""`OpenAIServerClient`: a model on OpenAI-compatible servers (vLLM, SGLang, `sparring serve`).

Built on AutoGen's `OpenAIChatCompletionClient`, one per server URL and model, shared by every
client of the same event loop (so connections are reused across episodes). On top it adds what
self-play needs: several URLs for one model (each request goes to the least busy one), the
shared fault policy of `_remote`, vLLM-only sampling options through ``extra_body``, and the
completion's token ids and logprobs (``return_token_ids``, as vLLM and `sparring serve` answer).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any, AsyncIterator, Mapping, Sequence

from autogen_core.models import CreateResult, LLMMessage

from ._base import MODEL_INFO
from ._messages import SparringCreateResult
from ._remote import FaultPolicy, RemoteClient, api_errors, least_busy, loop_registry, timed, with_retries
from .._spec import ModelSpec

OPENAI_DEFAULTS = FaultPolicy(timeout=300.0, retries=4, backoff=1.0, max_concurrency=64)
"""Fault settings of ``openai:`` specs unless the spec's query says otherwise."""
OPENAI_ARGS = frozenset({"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                         "presence_penalty", "frequency_penalty", "logit_bias", "top_logprobs", "user"})
"""Request fields of OpenAI's own API; any other sampling setting (top_k, min_p, ...) goes in ``extra_body``."""
_bodies: ContextVar[list | None] = ContextVar("sparring_openai_bodies", default=None)


class OpenAIServerClient(RemoteClient):
    """Chat with a model served over an OpenAI-compatible API, on one server or several.

    Args:
        spec (`str | ModelSpec`): ``openai:MODEL@URL[,URL2,...][?key=value&...]``. Query keys:
            ``timeout`` (300 s), ``retries`` (4), ``backoff`` (1 s), ``max_backoff`` (30 s),
            ``max_concurrency`` (64 per URL), ``logprobs`` and ``token_ids`` (true: ask the server
            for them; set false for servers that refuse the fields); any other key is a default
            sampling setting (e.g. ``top_k=20``).
        temperature, top_p, max_tokens, stop, seed: default sampling settings (temperature 0.7 and
            max_tokens 256 unless given, as for the embedded engine); ``None`` keeps the default.
        extra (`dict | None`): more request fields, e.g. vLLM's ``top_k``, ``min_p``,
            ``repetition_penalty``; sent through ``extra_body``.

    The API key comes from ``OPENAI_API_KEY`` (``"EMPTY"`` when unset, as local servers need none).
    After each `create`, ``last_result`` holds a `SparringCreateResult` with the token ids.
    An AutoGen component: ``dump_component()`` saves the spec and sampling settings (never the key).

    Example:
        ```python
        import asyncio
        from sparring.agents import OpenAIServerClient
        from autogen_core.models import UserMessage

        async def main():
            client = OpenAIServerClient("openai:Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000/v1,http://gpu2:8000/v1",
                                        max_tokens=64, extra={"top_k": 20})
            result = await client.create([UserMessage(content="Name a colour.", source="user")])
            print(result.content, result.token_ids)

        asyncio.run(main())
        ```
    """

    component_provider_override = "sparring.agents.clients.OpenAIServerClient"

    _scheme, _takes, _fault_defaults, _flags_default = "openai", "openai:MODEL@URL", OPENAI_DEFAULTS, True
    _context_unknown = "the server's context length is not known here"

    def _bind(self, parsed: ModelSpec) -> None:
        self.urls = parsed.urls

    def _request(self, extra_create_args: Mapping[str, Any]) -> dict[str, Any]:
        """The call's create args: OpenAI fields as they are, everything else in ``extra_body``."""
        settings = {**self.settings.sampling, **extra_create_args}
        body = dict(settings.pop("extra_body", None) or {})
        args = {k: v for k, v in settings.items() if k in OPENAI_ARGS}
        body.update({k: v for k, v in settings.items() if k not in OPENAI_ARGS})
        if isinstance(args.get("stop"), str):
            args["stop"] = [args["stop"]]
        if self.settings.logprobs:
            args["logprobs"] = True
        if self.settings.token_ids:
            body["return_token_ids"] = True
        args["timeout"] = self.settings.policy.timeout
        if body:
            args["extra_body"] = body
        return args

    def _inner(self, url: str):
        """The shared AutoGen client of ``url`` and this model on the running event loop."""
        clients = loop_registry("openai_clients")
        key = (url, self.model)
        if key not in clients:
            import httpx
            from autogen_ext.models.openai import OpenAIChatCompletionClient
            from openai import DefaultAsyncHttpxClient

            http = DefaultAsyncHttpxClient(event_hooks={"response": [_keep_body]},
                                           limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
            clients[key] = OpenAIChatCompletionClient(
                model=self.model, base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
                max_retries=0, http_client=http, model_info=MODEL_INFO, include_name_in_message=True)  # the author of each message
        return clients[key]

    async def _complete(self, messages, extra_create_args, cancellation_token) -> SparringCreateResult:
        """One reply, retrying on faults; the result keeps the server's token ids."""
        args = self._request(extra_create_args)
        endpoints = [self._gate(url) for url in self.urls]

        async def attempt() -> tuple[CreateResult, list]:
            chosen = least_busy(endpoints)
            async with chosen.slot():
                bodies: list = []
                token = _bodies.set(bodies)
                try:
                    inner = self._inner(chosen.key).create(messages, extra_create_args=args,
                                                           cancellation_token=cancellation_token)
                    return await timed(inner, self.settings.policy), bodies
                finally:
                    _bodies.reset(token)

        result, bodies = await with_retries(attempt, self.settings.policy, f"{self.model} at {','.join(self.urls)}",
                                            self._hint)
        choice = (bodies[-1].get("choices") or [{}])[0] if bodies else {}
        self._count(result.usage)
        return SparringCreateResult(**result.model_dump(), token_ids=choice.get("token_ids"))

    async def _stream(self, messages, extra_create_args, cancellation_token) -> AsyncIterator[str | CreateResult]:
        """The reply's text in pieces, then the `CreateResult` (no retries once text has arrived).

        Streamed results carry no token ids: use `create` where the transcript needs them.
        """
        args = {k: v for k, v in self._request(extra_create_args).items() if k != "timeout"}
        chosen = least_busy([self._gate(url) for url in self.urls])
        async with chosen.slot():
            stream = self._inner(chosen.key).create_stream(messages, extra_create_args=args,
                                                           cancellation_token=cancellation_token, include_usage=True)
            with api_errors(f"{self.model} at {chosen.key}", self._hint):
                async for item in stream:
                    if isinstance(item, CreateResult):
                        self._count(item.usage)
                    yield item

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence = []) -> int:
        """An estimate (4 characters a token, plus 4 a message): the server's tokenizer is not here."""
        return sum(len(str(getattr(m, "content", ""))) // 4 + 4 for m in messages)

    def _hint(self, error: BaseException) -> str:
        status = getattr(error, "status_code", None)
        if status in (401, 403):
            return "; set OPENAI_API_KEY in the environment to the server's key"
        if status == 404:
            return "; check the model name: GET URL/models lists what the server serves"
        return ""


async def _keep_body(response) -> None:
    """httpx response hook: keep a successful JSON reply's body for the request being made, if asked."""
    bodies = _bodies.get()
    if bodies is None or response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
        return
    await response.aread()
    bodies.append(response.json())

