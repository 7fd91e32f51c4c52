"""An OpenAI-compatible HTTP server over the embedded engine (`sparring serve`).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both plain
and ``stream: true``, with ``n`` choices) and ``GET /health``. Concurrent HTTP requests are
batched together by the engine.

- ``/v1/chat/completions`` takes the fields of `ChatRequest`: ``logprobs: true`` gives each
  token's logprob, ``top_logprobs`` (0 to 20) that many alternatives per token.
- ``/v1/completions`` (OpenAI's legacy completions, as lm-evaluation-harness's
  ``local-completions`` uses them) takes the fields of `CompletionRequest`: ``prompt`` as a text,
  token ids, or a batch of either (choice ``p * n + i`` is prompt p's choice i); ``logprobs``
  (0 to 5) gives ``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``; ``echo`` puts
  the prompt before the reply, its tokens scored (the first has a null logprob), and with
  ``max_tokens: 0`` nothing is generated, so the prompt alone is scored. A reply that ended at
  the end-of-sequence token has that token last in its logprobs (its string is empty), as vLLM's.
- Logprob token strings join to the text exactly; the rule for characters split between tokens
  and where prompt logprobs and alternatives come from are in `sparring.serving._logprobs`.
- Streamed, every content chunk carries the logprobs of its own tokens.

A request field the server does not implement is refused with a 400 naming it; every error is a
4xx shaped as OpenAI's. Besides the OpenAI fields, a choice carries ``token_ids`` (and a
completion's ``prompt_token_ids``) when the request sets ``return_token_ids``, as vLLM's do.

lm-evaluation-harness scores tasks against it with its ``local-completions`` model, tokenizing
with the model's own files (``$SPARRING_HOME/models/NAME``)::

    sparring serve --port 8000 &
    lm-eval run --model local-completions --tasks arc_easy --batch_size 8 --model_args \
      model=hf:smollm2-135m,base_url=http://127.0.0.1:8000/v1/completions,tokenizer=MODEL_DIR,\
    tokenizer_backend=huggingface,tokenized_requests=True
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator, Callable

from ..agents.engine._base import BaseEngine, Completion, Piece, SamplingParams
from ..errors import BackendError
from ._logprobs import ChoiceLogprobs, chat_logprobs, completion_logprobs
from ._requests import ChatRequest, CompletionRequest

Head = Callable[..., dict]
"""Builds a response body: ``head(object, choices, **more)``, with the request's id, time and model."""


def _field_error(error: dict, fields: list[str]) -> str:
    where = ".".join(str(part) for part in error["loc"][1:]) or "body"
    if error["type"] == "extra_forbidden":
        return f"{where}: not supported by this server (request fields it implements: {', '.join(fields)})"
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if error["type"] == "value_error":  # our own validators' messages, without pydantic's "Value error, "
        return f"{where}: {error.get('ctx', {}).get('error', error['msg'])}"
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
    schemas = {"/v1/chat/completions": ChatRequest, "/v1/completions": CompletionRequest}

    def error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)

    def head_of(kind: str) -> Head:
        request_id, created = f"{kind}-{uuid.uuid4().hex}", int(time.time())
        return lambda obj, choices, **more: {"id": request_id, "object": obj, "created": created, "model": name,
                                             "choices": choices, **more}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else (
            "unsupported_field" if any(e["type"] == "extra_forbidden" for e in errors) else "invalid_value")
        fields = list(schemas.get(request.url.path, ChatRequest).model_fields)
        return error(400, "; ".join(_field_error(e, fields) for e in errors), code)

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

    def unknown(model: str) -> JSONResponse:
        return error(404, f"model {model!r} is not served here; this server serves {name!r}", "model_not_found")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if body.model != name:
            return unknown(body.model)
        chat, choices = body.chat(), body.sampling(body.new_tokens(default_max_tokens))
        prompt_ids = await engine.encode_chat_async(chat)
        head = head_of("chatcmpl")
        if body.stream:
            return StreamingResponse(_chat_stream(body, engine, prompt_ids, choices, head), media_type="text/event-stream")
        completions = await asyncio.gather(*(engine.generate(prompt_ids, params) for params in choices))
        return await _chat_response(body, engine, prompt_ids, completions, head)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        if body.model != name:
            return unknown(body.model)
        prompts = await asyncio.to_thread(_prompt_ids, engine, body.prompts())
        choices = body.sampling(body.max_tokens) if body.max_tokens else [None] * body.n
        head = head_of("cmpl")
        if body.stream:
            return StreamingResponse(_completion_stream(body, engine, prompts, choices, head),
                                     media_type="text/event-stream")
        replies = await asyncio.gather(*(_generate(engine, ids, params) for ids in prompts for params in choices))
        return await _completion_response(body, engine, prompts, replies, head)

    return app


def _prompt_ids(engine: BaseEngine, prompts: list[str | list[int]]) -> list[list[int]]:
    """Each prompt's token ids (texts encoded as vLLM does); refuses unknown ids and prompts too long."""
    vocabulary = len(engine.tokenizer)
    batch = [engine.tokenizer.encode(p) if isinstance(p, str) else p for p in prompts]
    for index, ids in enumerate(batch):
        where = f"prompt {index}" if len(batch) > 1 else "the prompt"
        if not ids:
            raise BackendError(f"{where} is empty")
        if max(ids) >= vocabulary:
            raise BackendError(f"{where}: token id {max(ids)} is not in the vocabulary (ids are 0 to {vocabulary - 1})")
        if len(ids) >= engine.max_positions:
            raise BackendError(f"{where} has {len(ids)} tokens; {engine.name} takes at most {engine.max_positions - 1}")
    return batch


async def _generate(engine: BaseEngine, prompt_ids: list[int], params: SamplingParams | None) -> Completion:
    """The reply to ``prompt_ids``; an empty one for None (``max_tokens: 0``)."""
    return await engine.generate(prompt_ids, params) if params is not None else _nothing(prompt_ids)


def _pieces(engine: BaseEngine, prompt_ids: list[int], params: SamplingParams | None) -> AsyncIterator[Piece | Completion]:
    """`BaseEngine.stream_pieces` of ``prompt_ids``; for None (``max_tokens: 0``) only an empty reply."""
    async def nothing() -> AsyncIterator[Completion]:
        yield _nothing(prompt_ids)

    return engine.stream_pieces(prompt_ids, params) if params is not None else nothing()


def _nothing(prompt_ids: list[int]) -> Completion:
    return Completion("", [], [], "length", len(prompt_ids))


def _usage(prompt_tokens: int, completions: list[Completion]) -> dict:
    generated = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _ids(body, completion: Completion, prompt_ids: list[int] | None = None) -> dict:
    """The token ids a choice carries when the request sets ``return_token_ids``."""
    if not body.return_token_ids:
        return {}
    return {"token_ids": completion.token_ids, **({"prompt_token_ids": prompt_ids} if prompt_ids is not None else {})}


# ----- chat ------------------------------------------------------------------------------------
async def _chat_response(body: ChatRequest, engine: BaseEngine, prompt_ids: list[int], completions: list[Completion],
                         head: Head) -> dict:
    choices = []
    for index, completion in enumerate(completions):
        logprobs = None
        if body.logprobs:
            scores = ChoiceLogprobs(engine, prompt_ids, body.top_logprobs or 0)
            logprobs = chat_logprobs(await scores.reply(completion.token_ids, completion.logprobs))
        choices.append({"index": index, "message": {"role": "assistant", "content": completion.text},
                        "finish_reason": completion.finish_reason, "logprobs": logprobs, **_ids(body, completion)})
    return head("chat.completion", choices, usage=_usage(len(prompt_ids), completions))


async def _chat_stream(body: ChatRequest, engine: BaseEngine, prompt_ids: list[int], choices: list[SamplingParams],
                       head: Head) -> AsyncIterator[str]:
    """Server-sent events: per choice a role chunk, content chunks (each with its tokens' logprobs) as text
    arrives and a final chunk; then the usage chunk if asked for, and [DONE]. The choices interleave."""
    def chunk(index: int, delta: dict, finish_reason: str | None = None, **extra) -> str:
        return _event(head("chat.completion.chunk", [{"index": index, "delta": delta, "finish_reason": finish_reason,
                                                       "logprobs": None, **extra}]))

    scores = [ChoiceLogprobs(engine, prompt_ids, body.top_logprobs or 0) for _ in choices]
    finished = []
    for index in range(len(choices)):
        yield chunk(index, {"role": "assistant", "content": ""})
    async for index, item in _merged([engine.stream_pieces(prompt_ids, params) for params in choices]):
        if isinstance(item, Piece):
            logprobs = chat_logprobs(await scores[index].reply(item.token_ids, item.logprobs)) if body.logprobs else None
            yield chunk(index, {"content": item.text}, logprobs=logprobs)
            continue
        yield chunk(index, {}, item.finish_reason, **_ids(body, item))
        finished.append(item)
    if body.include_usage:
        yield _event(head("chat.completion.chunk", [], usage=_usage(len(prompt_ids), finished)))
    yield "data: [DONE]\n\n"


# ----- completions -----------------------------------------------------------------------------
def _completion_scores(body: CompletionRequest, engine: BaseEngine, prompt_ids: list[int]) -> ChoiceLogprobs | None:
    if body.logprobs is None:
        return None
    return ChoiceLogprobs(engine, prompt_ids, body.logprobs, scored=body.echo)


def _echo(engine: BaseEngine, prompt_ids: list[int]) -> str:
    """The prompt's text, as its logprob tokens spell it (special tokens kept)."""
    return engine.tokenizer.decode(prompt_ids, skip_special_tokens=False)


def _eos(completion: Completion) -> Piece:
    """The end-of-sequence token that ended ``completion``, as a piece with no text (no tokens if none did)."""
    return Piece("", [completion.eos[0]], [completion.eos[1]]) if completion.eos else Piece("", [], [])


async def _completion_response(body: CompletionRequest, engine: BaseEngine, prompts: list[list[int]],
                               replies: list[Completion], head: Head) -> dict:
    choices = []
    for index, completion in enumerate(replies):
        prompt_ids = prompts[index // body.n]
        scores = _completion_scores(body, engine, prompt_ids)
        entries = await scores.prompt() if scores and body.echo else []
        if scores:
            eos = _eos(completion)
            entries += await scores.reply(completion.token_ids + eos.token_ids, completion.logprobs + eos.logprobs)
        text = (_echo(engine, prompt_ids) if body.echo else "") + completion.text
        choices.append({"index": index, "text": text, "logprobs": completion_logprobs(entries) if scores else None,
                        "finish_reason": completion.finish_reason, **_ids(body, completion, prompt_ids)})
    return head("text_completion", choices, usage=_usage(sum(map(len, prompts)), replies))


async def _completion_stream(body: CompletionRequest, engine: BaseEngine, prompts: list[list[int]],
                             choices: list[SamplingParams | None], head: Head) -> AsyncIterator[str]:
    """Server-sent events: per choice the prompt first with ``echo``, then text chunks (each with its tokens'
    logprobs) as they arrive and a final chunk; then the usage chunk if asked for, and [DONE]."""
    def chunk(index: int, text: str, logprobs: dict | None = None, finish_reason: str | None = None, **extra) -> str:
        return _event(head("text_completion", [{"index": index, "text": text, "logprobs": logprobs,
                                                "finish_reason": finish_reason, **extra}]))

    batch = [prompt_ids for prompt_ids in prompts for _ in choices]  # choice index -> its prompt
    scores = [_completion_scores(body, engine, prompt_ids) for prompt_ids in batch]
    offsets = [0] * len(batch)  # where each choice's next chunk starts in its text
    for index, prompt_ids in enumerate(batch):
        if body.echo:
            text = _echo(engine, prompt_ids)
            yield chunk(index, text, completion_logprobs(await scores[index].prompt()) if scores[index] else None)
            offsets[index] = len(text)
    finished = []
    streams = [_pieces(engine, prompt_ids, params) for prompt_ids in prompts for params in choices]
    async for index, item in _merged(streams):
        piece = item if isinstance(item, Piece) else _eos(item)
        logprobs = None
        if scores[index] and piece.token_ids:
            logprobs = completion_logprobs(await scores[index].reply(piece.token_ids, piece.logprobs), offsets[index])
        offsets[index] += len(piece.text)
        if isinstance(item, Piece):
            yield chunk(index, piece.text, logprobs)
            continue
        yield chunk(index, "", logprobs, item.finish_reason, **_ids(body, item, batch[index]))
        finished.append(item)
    if body.include_usage:
        yield _event(head("text_completion", [], usage=_usage(sum(map(len, prompts)), finished)))
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
