"""An OpenAI-compatible HTTP server over the embedded engine (`sparring serve`).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and ``stream: true``, ``n``
choices), and ``GET /health``. A request field the server does not implement is refused with a
400 naming it. Concurrent HTTP requests are batched together by the engine. Besides the OpenAI
fields, a choice carries ``token_ids`` when the request sets ``return_token_ids`` (as vLLM does),
and ``logprobs`` when it sets ``logprobs``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any, AsyncIterator, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..agents.engine._base import BaseEngine, Completion, SamplingParams
from ..errors import BackendError


MAX_TEMPERATURE = 2.0
"""The highest temperature a request may ask for (OpenAI's range is 0 to 2)."""
MAX_CHOICES = 16
"""The most choices (``n``) one request may ask for."""
NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "response_format": {"type": "text"},
           "parallel_tool_calls": None, "tool_choice": "none"}
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


class ChatRequest(_Strict):
    """The part of OpenAI's chat completion request the embedded engine serves; any other field is refused."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: Text | list[Text] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices, each its own generation (seed + i when seeded)")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool = False
    return_token_ids: bool = False
    tools: list[Any] | None = None

    def sampling(self, default_max_tokens: int) -> list[SamplingParams]:
        """The sampling settings of each of the `n` choices."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        max_tokens = self.max_completion_tokens or self.max_tokens or default_max_tokens
        return [SamplingParams(self.temperature, self.top_p, max_tokens, stop, None if self.seed is None else self.seed + i)
                for i in range(self.n)]

    def chat(self) -> list[dict]:
        if self.tools:
            raise BackendError("tool calls are not supported by the embedded engine")
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


def _field_error(error: dict, fields: list[str]) -> str:
    where = ".".join(str(part) for part in error["loc"][1:]) or "body"
    if error["type"] == "extra_forbidden":
        return f"{where}: not supported by this server (request fields it implements: {', '.join(fields)})"
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    return f"{where}: {error['msg']}"


def create_app(engine: BaseEngine, served_name: str | None = None, default_max_tokens: int = 512):
    """Build the FastAPI application serving ``engine`` under the model name ``served_name``.

    Every error, whatever the path, method or body, is a 4xx with OpenAI's shape
    ``{"error": {"message", "type", "param", "code"}}`` and a string ``code``.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    name = served_name or engine.name
    app = FastAPI(title="sparring", description=f"OpenAI-compatible server for {name}")

    def error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else (
            "unsupported_field" if any(e["type"] == "extra_forbidden" for e in errors) else "invalid_value")
        return error(400, "; ".join(_field_error(e, list(ChatRequest.model_fields)) for e in errors), code)

    @app.exception_handler(HTTPException)
    async def http(_request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "invalid_body"}
        return error(exc.status_code, str(exc.detail), codes.get(exc.status_code, f"http_{exc.status_code}"))

    @app.exception_handler(BackendError)
    async def backend(_request: Request, exc: BackendError) -> JSONResponse:
        return error(400, str(exc), "invalid_request")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:  # a bug: still OpenAI-shaped
        return error(500, f"internal error: {type(exc).__name__}", "internal_error", "server_error")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "sparring"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if body.model != name:
            return error(404, f"model {body.model!r} is not served here; this server serves {name!r}", "model_not_found")
        chat, choices = body.chat(), body.sampling(default_max_tokens)
        prompt_ids = await engine.encode_chat_async(chat)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.stream:
            completions = await asyncio.gather(*(engine.generate(prompt_ids, params) for params in choices))
            return _response(body, completions, request_id, created, name, engine)
        return StreamingResponse(
            _stream(body, engine, prompt_ids, choices, request_id, created, name), media_type="text/event-stream"
        )

    return app


def _logprobs(engine: BaseEngine, completion: Completion) -> dict:
    tokens = engine.tokenizer.convert_ids_to_tokens(completion.token_ids)
    return {"content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                        for t, lp in zip(tokens, completion.logprobs)]}


def _usage(completions: list[Completion]) -> dict:
    prompt = completions[0].prompt_tokens  # one prompt, however many choices
    generated = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _response(body: ChatRequest, completions: list[Completion], request_id: str, created: int, name: str,
              engine: BaseEngine) -> dict:
    choices = []
    for index, completion in enumerate(completions):
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
            "logprobs": _logprobs(engine, completion) if body.logprobs else None,
        }
        if body.return_token_ids:
            choice["token_ids"] = completion.token_ids
        choices.append(choice)
    return {"id": request_id, "object": "chat.completion", "created": created, "model": name,
            "choices": choices, "usage": _usage(completions)}


async def _stream(body: ChatRequest, engine: BaseEngine, prompt_ids, choices, request_id, created, name):
    """Server-sent events: per choice a role chunk, content chunks as text arrives and a final chunk; then
    the usage chunk if asked for, and [DONE]. The choices' chunks interleave as they are generated."""

    def chunk(index: int, delta: dict, finish_reason: str | None = None, **extra) -> str:
        payload = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                   "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, **extra}]}
        return f"data: {json.dumps(payload)}\n\n"

    finished = []
    for index in range(len(choices)):
        yield chunk(index, {"role": "assistant", "content": ""})
    async for index, item in _merged([engine.stream(prompt_ids, params) for params in choices]):
        if isinstance(item, str):
            yield chunk(index, {"content": item})
            continue
        extra: dict[str, Any] = {"logprobs": _logprobs(engine, item) if body.logprobs else None}
        if body.return_token_ids:
            extra["token_ids"] = item.token_ids
        yield chunk(index, {}, item.finish_reason, **extra)
        finished.append(item)
    if (body.stream_options or {}).get("include_usage"):
        usage = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                 "choices": [], "usage": _usage(finished)}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


async def _merged(streams: list) -> AsyncIterator[tuple[int, Any]]:
    """The items of several async iterators as they come, each with its iterator's index; cancelling
    the consumer (a client that went away) cancels every stream."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, stream) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        finally:
            await queue.put((index, done))

    tasks = [asyncio.ensure_future(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            index, item = await queue.get()
            if item is done:
                left -= 1
                continue
            yield index, item
        for task in tasks:
            task.result()  # an engine error in any stream surfaces here
    finally:
        for task in tasks:
            task.cancel()
