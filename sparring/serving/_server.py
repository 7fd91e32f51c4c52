"""An OpenAI-compatible HTTP server over the embedded engine (`sparring serve`).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and ``stream: true``), and
``GET /health``. Concurrent HTTP requests are batched together by the engine. Besides the OpenAI
fields, a choice carries ``token_ids`` when the request sets ``return_token_ids`` (as vLLM does),
and ``logprobs`` when it sets ``logprobs``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..agents.engine._base import BaseEngine, Completion, SamplingParams
from ..errors import BackendError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            if any(part.get("type") != "text" for part in self.content):
                raise BackendError("only text content parts are supported")
            return "".join(part.get("text", "") for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """The part of OpenAI's chat completion request the embedded engine serves."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool = False
    return_token_ids: bool = False
    tools: list[Any] | None = None

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        max_tokens = self.max_completion_tokens or self.max_tokens or default_max_tokens
        return SamplingParams(self.temperature, self.top_p, max_tokens, stop, self.seed)

    def chat(self) -> list[dict]:
        if self.tools:
            raise BackendError("tool calls are not supported by the embedded engine")
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


def create_app(engine: BaseEngine, served_name: str | None = None, default_max_tokens: int = 512):
    """Build the FastAPI application serving ``engine`` under the model name ``served_name``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse

    name = served_name or engine.name
    app = FastAPI(title="sparring", description=f"OpenAI-compatible server for {name}")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": status}}, status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        return error(400, fields)

    @app.exception_handler(BackendError)
    async def backend(_request: Request, exc: BackendError) -> JSONResponse:
        return error(400, str(exc))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "sparring"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if body.model != name:
            return error(404, f"model {body.model!r} is not served here; this server serves {name!r}")
        chat, params = body.chat(), body.sampling(default_max_tokens)
        prompt_ids = engine.encode_chat(chat)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.stream:
            completion = await engine.generate(prompt_ids, params)
            return _response(body, completion, request_id, created, name, engine)
        return StreamingResponse(
            _stream(body, engine, prompt_ids, params, request_id, created, name), media_type="text/event-stream"
        )

    return app


def _logprobs(engine: BaseEngine, completion: Completion) -> dict:
    tokens = engine.tokenizer.convert_ids_to_tokens(completion.token_ids)
    return {"content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                        for t, lp in zip(tokens, completion.logprobs)]}


def _usage(completion: Completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def _response(body: ChatRequest, completion: Completion, request_id: str, created: int, name: str, engine: BaseEngine) -> dict:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": completion.finish_reason,
        "logprobs": _logprobs(engine, completion) if body.logprobs else None,
    }
    if body.return_token_ids:
        choice["token_ids"] = completion.token_ids
    return {"id": request_id, "object": "chat.completion", "created": created, "model": name,
            "choices": [choice], "usage": _usage(completion)}


async def _stream(body: ChatRequest, engine: BaseEngine, prompt_ids, params, request_id, created, name):
    """Server-sent events: a role chunk, content chunks as text arrives, a final chunk, [DONE]."""

    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
        payload = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, **extra}]}
        return f"data: {json.dumps(payload)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for item in engine.stream(prompt_ids, params):
        if isinstance(item, str):
            yield chunk({"content": item})
            continue
        extra: dict[str, Any] = {"logprobs": _logprobs(engine, item) if body.logprobs else None}
        if body.return_token_ids:
            extra["token_ids"] = item.token_ids
        yield chunk({}, item.finish_reason, **extra)
        if (body.stream_options or {}).get("include_usage"):
            usage = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                     "choices": [], "usage": _usage(item)}
            yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"
