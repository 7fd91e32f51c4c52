"""What every embedded engine shares: requests, their sampling settings and results, and the
queue between callers and the engine's worker thread.

An engine serves one model to many concurrent callers. Callers on any thread or event loop
`submit` token ids with `SamplingParams`; the engine's worker thread generates and hands back a
`Completion`. A `Request` keeps one reply as its tokens arrive and applies the rules every
engine shares, so each engine (`sparring.agents.engine._transformers` on transformers,
`sparring.agents.engine._openvino` on OpenVINO GenAI) only produces tokens and their log-probabilities:
the end of sequence, stop strings (the reply is cut before the first one, and its tokens to
those within the cut), the token limit and streamed text that no stop string can take back.
An engine also scores token sequences (`BaseEngine.scorer`): every position's log-probabilities,
from one forward pass of its model over each token (see `sparring.agents.engine._scoring`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import random
import threading
from dataclasses import dataclass, field
from contextlib import aclosing
from typing import Any, AsyncIterator, Callable

from ...errors import BackendError
from ._scoring import Scorer


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request.

    Args:
        temperature (`float`, defaults to 0.7): 0 means greedy decoding.
        top_p (`float`, defaults to 1.0): nucleus sampling mass.
        max_tokens (`int`, defaults to 256): new tokens at most.
        stop (`tuple[str, ...]`, defaults to ()): strings that end the reply (not included in it).
        seed (`int | None`, defaults to None): makes sampling reproducible for this request alone.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise BackendError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BackendError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise BackendError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise BackendError("stop strings must not be empty")


@dataclass
class Completion:
    """One finished reply.

    ``token_ids`` decode to ``text``; ``logprobs`` are the model's own log-probabilities of those
    tokens (before temperature and top-p), one per token.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    prompt_tokens: int
    eos: tuple[int, float] | None = None  # the end-of-sequence token that ended the reply, and its logprob

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Piece:
    """A piece of a reply's text as it streams, with the tokens it is the text of and their logprobs."""

    text: str
    token_ids: list[int]
    logprobs: list[float]


class RequestFuture(concurrent.futures.Future):
    """A request's future; `cancel` also marks a running request ``abandoned``, so its engine stops it
    (a plain `Future` refuses to cancel once running)."""

    abandoned = False

    def cancel(self) -> bool:
        self.abandoned = True
        return super().cancel()


@dataclass(eq=False)
class Request:
    """One reply being generated: its tokens so far and what its caller waits on."""

    prompt_ids: list[int]
    params: SamplingParams
    future: concurrent.futures.Future
    on_piece: Callable[[Piece], None] | None = None
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    streamed: str = ""
    streamed_tokens: int = 0  # the tokens `streamed` is the text of
    eos: tuple[int, float] | None = None
    position: int = 0  # tokens the model has seen: the prompt, then each accepted token
    completion: Completion | None = None  # set when finished, handed to the caller by `resolve`

    def __post_init__(self):
        self.rng = random.Random(self.params.seed)  # this request's own draws: the batch does not change them

    @property
    def abandoned(self) -> bool:
        """Whether its caller went away (cancelled the future): the engine drops it at its next step."""
        return getattr(self.future, "abandoned", False) or self.future.cancelled()

    def accept(self, engine: "BaseEngine", token: int, logprob: float) -> bool:
        """Append one generated token; finish the reply and return True when it is done."""
        self.position += 1
        if token in engine.eos_ids:
            self.eos = (token, logprob)
            return self.finish(engine, "stop")
        self.generated.append(token)
        self.logprobs.append(logprob)
        text = engine.decode(self.generated)
        cut = min((i for i in (text.find(s) for s in self.params.stop) if i >= 0), default=-1)
        if cut >= 0:
            del self.generated[_tokens_within(engine, self.generated, cut):]
            return self.finish(engine, "stop")
        if len(self.generated) >= self.params.max_tokens or self.position >= engine.max_positions:
            return self.finish(engine, "length")
        if self.on_piece is not None:
            self._stream(engine, text)
        return False

    def _stream(self, engine: "BaseEngine", text: str) -> None:
        """Send the part of ``text`` that no stop string or unfinished character can take back."""
        hold = max((k for s in self.params.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if text.endswith("\ufffd"):
            hold = max(hold, 1)
        limit = len(text) - hold
        if limit > len(self.streamed):
            tokens = _tokens_within(engine, self.generated, limit)
            safe = engine.decode(self.generated[:tokens])
            if len(safe) > len(self.streamed):
                self._send(safe, tokens)

    def _send(self, text: str, tokens: int) -> None:
        """Stream the text of the first ``tokens`` generated tokens past what was sent, with those tokens."""
        start = self.streamed_tokens
        self.on_piece(Piece(text[len(self.streamed):], self.generated[start:tokens], self.logprobs[start:tokens]))
        self.streamed, self.streamed_tokens = text, tokens

    def finish(self, engine: "BaseEngine", reason: str) -> bool:
        """End the reply for ``reason`` (``"stop"`` or ``"length"``); always True."""
        text = engine.decode(self.generated)
        del self.logprobs[len(self.generated):]
        if self.on_piece is not None and (len(text) > len(self.streamed) or self.streamed_tokens < len(self.generated)):
            self._send(text, len(self.generated))
        self.completion = Completion(text, self.generated, self.logprobs, reason, len(self.prompt_ids), self.eos)
        return True

    def resolve(self) -> None:
        """Hand the finished reply to the caller."""
        if self.completion is not None and not self.future.done():
            self.future.set_result(self.completion)

    def fail(self, error: BaseException) -> None:
        """Hand ``error`` to the caller instead of a reply."""
        if not self.future.done():
            self.future.set_exception(error)


def _tokens_within(engine: "BaseEngine", ids: list[int], chars: int) -> int:
    """The largest k such that the first k tokens decode to at most ``chars`` characters."""
    k = len(ids)
    while k and len(engine.decode(ids[:k])) > chars:
        k -= 1
    return k


class BaseEngine:
    """The queue, the worker thread and the async API of an engine; a subclass implements `_work`.

    Args:
        tokenizer: the model's transformers tokenizer, with a chat template (prompts are encoded
            and replies decoded with it, whatever runs the model).
        name (`str`): the model spec, reported in results.
        max_positions (`int`): the model's context length.
        eos_ids (`set[int]`): tokens that end a reply.
    """

    def __init__(self, tokenizer, name: str, max_positions: int, eos_ids: set[int]):
        self.tokenizer, self.name, self.max_positions, self.eos_ids = tokenizer, name, max_positions, eos_ids
        self._inbox: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._scoring = threading.Lock()  # one scoring pass at a time: each holds a chunk of logits
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"sparring-engine:{name}", daemon=True)

    def _start_worker(self) -> None:
        """Start the worker thread (a subclass calls it once it is ready to serve)."""
        self._thread.start()

    # ----- public API -------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of ``messages`` under the model's chat template, ready for the assistant turn (see `encode_chat`)."""
        return encode_chat(self.tokenizer, messages)

    async def encode_chat_async(self, messages: list[dict]) -> list[int]:
        """`encode_chat` for callers on an event loop, run on a thread of its own.

        The tokenizer releases the GIL and the engine's thread takes it for a whole decode step
        (OpenVINO's step() holds it), so encoding on the loop would stall every request in flight.
        """
        return await asyncio.to_thread(encode_chat, self.tokenizer, messages)

    def decode(self, ids: list[int]) -> str:
        """The text of generated token ids (special tokens left out)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, on_piece: Callable[[Piece], None] | None = None
    ) -> concurrent.futures.Future:
        """Queue a request; the future resolves to a `Completion`; cancelling it stops the generation.

        ``on_piece`` (called on the engine thread) receives the reply's text as it grows, in `Piece` s.
        """
        if self._closed:
            raise BackendError(f"the engine for {self.name} is closed")
        if not prompt_ids:
            raise BackendError("the prompt is empty")
        if len(prompt_ids) >= self.max_positions:
            raise BackendError(f"the prompt has {len(prompt_ids)} tokens; {self.name} takes at most {self.max_positions - 1}")
        request = Request(list(prompt_ids), params, RequestFuture(), on_piece, position=len(prompt_ids))
        self._inbox.put(request)
        return request.future

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        """Generate a reply to ``prompt_ids`` (awaitable from any event loop)."""
        future = self.submit(prompt_ids, params)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # the worker drops the request at its next step
            raise

    async def stream(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[str | Completion]:
        """Yield the reply's text in pieces as it is generated, then its `Completion`."""
        async with aclosing(self.stream_pieces(prompt_ids, params)) as items:
            async for item in items:
                yield item.text if isinstance(item, Piece) else item

    async def stream_pieces(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[Piece | Completion]:
        """Yield the reply as it is generated, in `Piece` s (text with its tokens and their logprobs), then
        its `Completion`."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Piece] = asyncio.Queue()
        future = self.submit(prompt_ids, params, on_piece=lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece))
        done = asyncio.wrap_future(future)
        try:
            while True:
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                yield getter.result()
            # Pieces are queued on the loop before the result, so whatever is left is already here.
            while not pieces.empty():
                yield pieces.get_nowait()
            yield done.result()
        finally:
            future.cancel()

    def scorer(self) -> Scorer:
        """A `Scorer` of token sequences under this engine's model (prompt logprobs, alternatives)."""
        return Scorer(self._forward, self._scoring)

    def close(self) -> None:
        """Stop the worker; queued and running requests fail."""
        self._closed = True
        self._inbox.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    # ----- worker ------------------------------------------------------------------------------
    def _run(self) -> None:
        self._work()
        closed = BackendError(f"the engine for {self.name} was closed")
        for request in self._live():
            request.fail(closed)
        while not self._inbox.empty():
            request = self._inbox.get()
            if request is not None:
                request.fail(closed)

    def _work(self) -> None:
        """Serve requests from the inbox until the engine is closed (on the worker thread)."""
        raise NotImplementedError

    def _live(self) -> list[Request]:
        """The requests being generated (failed when the engine closes)."""
        raise NotImplementedError

    def _forward(self, token_ids: list[int], past: int, state: Any) -> tuple[Any, Any]:
        """Run the model over ``token_ids``, which follow ``past`` tokens whose keys and values ``state`` holds
        (None when ``past`` is 0), on the calling thread; return the logits after each of ``token_ids`` (a tensor,
        one row per token) and the state after them. Only one call runs at a time (`Scorer`)."""
        raise NotImplementedError

    def _next(self, block: bool) -> Request | None:
        """The next queued request that its caller still wants (None when there is none, or on close)."""
        while True:
            try:
                request = self._inbox.get(block=block)
            except queue.Empty:
                return None
            if request is None:
                self._closed = True
                return None
            if request.future.set_running_or_notify_cancel():
                return request


def encode_chat(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of ``messages`` under ``tokenizer``'s chat template, ready for the assistant turn.

    Only the markers the template writes itself become control tokens. Text inside a message that
    spells one of the tokenizer's special tokens (``<|im_start|>``, ``<|endoftext|>``, ...) or an
    added token the template uses is encoded as plain text, so a message cannot close its turn or
    open another (transformers' ``sanitize_control_tokens``). A chat without such text gets exactly
    the ids of ``apply_chat_template(..., tokenize=True)``.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        messages (`list[dict]`): ``{"role", "content"}`` dicts with text content.
    """
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              sanitize_control_tokens=True, return_dict=False))


def end_token_ids(tokenizer, generation_config) -> set[int]:
    """The tokens that end a reply: the tokenizer's end of sequence and the generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


__all__ = ["BaseEngine", "Completion", "Piece", "Request", "RequestFuture", "SamplingParams", "encode_chat",
           "end_token_ids"]
