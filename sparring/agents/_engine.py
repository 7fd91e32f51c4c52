"""The embedded generation engine: one model in process, continuous batching on a worker thread.

Requests from any thread or event loop are queued; the worker prefills each new request alone,
moves its keys and values into a row of a shared `SlotCache`, and advances every live row by one
token per forward pass. A finished row leaves at once and a waiting request takes its place, so
no slot waits for the longest reply of a batch (as a static `generate` call does) and no step
recomputes a history. Each request keeps its own sampling settings and random generator, so a
reply does not depend on what else is in the batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import random
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import torch

from ..errors import BackendError

from ._kv_slots import SlotCache
from ._prefix_cache import PrefixCache

NUCLEUS_CANDIDATES = 1024  # tokens among which a top-p nucleus is looked for before sorting a whole row
PREFILL_TOKENS = 1024  # prompt tokens packed into one prefill pass at most (one long prompt may exceed it)
ADMIT_TOGETHER = 4  # while rows run, prefill once this many requests wait ...
ADMIT_WAIT_STEPS = 4  # ... or once the first has waited this many decode steps


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

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    future: concurrent.futures.Future
    on_text: Callable[[str], None] | None = None
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    streamed: str = ""
    position: int = 0
    completion: Completion | None = None  # set when finished, handed to the caller after the row is freed

    def __post_init__(self):
        self.rng = random.Random(self.params.seed)


class Engine:
    """Serve one causal language model to many concurrent callers.

    Args:
        model: a transformers causal LM in eval mode.
        tokenizer: its tokenizer, with a chat template.
        name (`str`): the model spec, reported in results.
        max_batch (`int`, defaults to 64): live sequences per forward pass at most.
        prefix_cache_tokens (`int`, defaults to 32768): tokens of finished sequences kept to skip
            recomputing the start of later prompts (a game's history); 0 turns it off.

    Example:
        >>> engine = load_engine("hf:smollm2-135m")  # doctest: +SKIP
        >>> prompt = engine.encode_chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        >>> asyncio.run(engine.generate(prompt, SamplingParams(max_tokens=8))).text  # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, name: str, max_batch: int = 64, prefix_cache_tokens: int = 32768):
        if model.device.type == "cpu":
            # Decode steps attend with one query per row; on CPU, SDPA's native grouped-query path is
            # about twice as fast as transformers' default repacking of the query heads.
            os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        self.model, self.tokenizer, self.name, self.max_batch = model, tokenizer, name, max_batch
        config = model.config.get_text_config()
        self.max_positions = getattr(config, "max_position_embeddings", 8192)
        self.eos_ids = _end_token_ids(model, tokenizer)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self._kv_shape = (config.num_hidden_layers, config.num_key_value_heads, head_dim)
        self._slots = SlotCache(*self._kv_shape, model.dtype, model.device)
        self._rows: list[_Request] = []
        self._prefixes = PrefixCache(prefix_cache_tokens)
        self._waited = 0  # decode steps a waiting request has been held back
        self._inbox: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"sparring-engine:{name}", daemon=True)
        self._thread.start()

    # ----- public API -------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of ``messages`` under the model's chat template, ready for the assistant turn (see `encode_chat`)."""
        return encode_chat(self.tokenizer, messages)

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, on_text: Callable[[str], None] | None = None
    ) -> concurrent.futures.Future:
        """Queue a request; the future resolves to a `Completion`.

        ``on_text`` (called on the engine thread) receives the reply's text as it grows, in pieces.
        """
        if self._closed:
            raise BackendError(f"the engine for {self.name} is closed")
        if not prompt_ids:
            raise BackendError("the prompt is empty")
        if len(prompt_ids) >= self.max_positions:
            raise BackendError(f"the prompt has {len(prompt_ids)} tokens; {self.name} takes at most {self.max_positions - 1}")
        request = _Request(list(prompt_ids), params, concurrent.futures.Future(), on_text)
        self._inbox.put(request)
        return request.future

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        """Generate a reply to ``prompt_ids`` (awaitable from any event loop)."""
        future = self.submit(prompt_ids, params)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # the worker drops the row at its next step
            raise

    async def stream(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[str | Completion]:
        """Yield the reply's text in pieces as it is generated, then its `Completion`."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()
        future = self.submit(prompt_ids, params, on_text=lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece))
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

    def close(self) -> None:
        """Stop the worker; queued and running requests fail."""
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=30)

    # ----- worker ------------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._closed:
            try:
                self._admit(block=not self._rows)
                if self._rows:
                    self._decode_step()
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, not the engine
                for request in self._rows:
                    _fail(request, error)
                self._rows.clear()
                while self._slots.live:
                    self._slots.remove(self._slots.live - 1)
        closed = BackendError(f"the engine for {self.name} was closed")
        for request in self._rows:
            _fail(request, closed)
        while not self._inbox.empty():
            request = self._inbox.get()
            if request is not None:
                _fail(request, closed)

    def _admit(self, block: bool) -> None:
        """Prefill waiting requests into free rows (waiting for one when nothing is running).

        A prefill pass stalls every running row, so while rows are running a lone arrival waits
        a few steps for company (`ADMIT_TOGETHER`, `ADMIT_WAIT_STEPS`).
        """
        if self._rows and self._inbox.qsize() < ADMIT_TOGETHER and self._waited < ADMIT_WAIT_STEPS:
            self._waited += 1 if self._inbox.qsize() else 0
            return
        self._waited = 0
        waiting: list[_Request] = []
        tokens = 0
        while len(self._rows) + len(waiting) < self.max_batch and tokens < PREFILL_TOKENS:
            try:
                request = self._inbox.get(block=block and not self._rows and not waiting)
            except queue.Empty:
                break
            if request is None:
                self._closed = True
                break
            if request.future.set_running_or_notify_cancel():
                waiting.append(request)
                tokens += len(request.prompt_ids)
        if waiting:
            try:
                self._prefill(waiting)
            except Exception as error:  # noqa: BLE001 - reported to the callers
                for request in waiting:
                    _fail(request, error)

    def _prefill(self, requests: list[_Request]) -> None:
        """Compute the prompts of ``requests`` (reusing stored beginnings), then give each a row."""
        fresh, known = [], []
        for request in requests:
            hit = self._prefixes.longest(request.prompt_ids)
            if hit is None:
                fresh.append(request)
            else:
                known.append((request, *hit))
        if known:
            self._prefill_after(known)
        if fresh:
            self._prefill_packed(fresh)

    def _prefill_packed(self, requests: list[_Request]) -> None:
        """Run the prompts of ``requests`` packed into one sequence.

        Packing costs one forward pass for all waiting prompts, with no padding: positions restart
        at each prompt and a block-diagonal causal mask keeps the prompts apart.
        """
        device = self.model.device
        ids = torch.tensor([[t for r in requests for t in r.prompt_ids]], device=device)
        positions = torch.cat([torch.arange(len(r.prompt_ids), device=device) for r in requests])
        segment = torch.cat([torch.full((len(r.prompt_ids),), i, device=device) for i, r in enumerate(requests)])
        causal = positions[:, None] >= positions[None, :]
        mask = (segment[:, None] == segment[None, :]) & causal
        lengths = torch.tensor([len(r.prompt_ids) for r in requests], device=device)
        ends = lengths.cumsum(0)
        out = self.model(
            input_ids=ids,
            position_ids=positions[None],
            attention_mask=mask[None, None],
            use_cache=True,
            logits_to_keep=ends - 1,
        )
        layers = out.past_key_values.layers
        self._start(requests, out.logits[0], [
            ([l.keys[:, :, a:b] for l in layers], [l.values[:, :, a:b] for l in layers])
            for a, b in zip((ends - lengths).tolist(), ends.tolist())
        ])

    def _prefill_after(self, known: list[tuple[_Request, int, list, list]]) -> None:
        """Compute only the part of each prompt past its known beginning, all in one forward pass.

        The known keys and values go into the rows of a scratch `SlotCache`; the rest of each
        prompt is left-padded to one width and written after them, so every row's last column
        holds its last prompt token.
        """
        device = self.model.device
        suffixes = [request.prompt_ids[matched:] for request, matched, _, _ in known]
        width = max(len(suffix) for suffix in suffixes)
        scratch = SlotCache(*self._kv_shape, self.model.dtype, device, rows=len(known),
                            capacity=max(matched for _, matched, _, _ in known) + width)
        for _, _, keys, values in known:
            scratch.add(keys, values)
        pad = [0] * width
        ids = torch.tensor([pad[len(x):] + x for x in suffixes], device=device)
        real = torch.tensor([pad[len(x):] + [1] * len(x) for x in suffixes], device=device)
        positions = torch.tensor([pad[len(x):] + list(range(m, m + len(x))) for x, (_, m, _, _) in zip(suffixes, known)],
                                 device=device)
        cache = scratch.step_cache(real)
        out = self.model(input_ids=ids, position_ids=positions, attention_mask=scratch.attention_mask(width),
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        scratch.advance(width)
        self._start([request for request, *_ in known], out.logits[:, -1, :], [scratch.row(i) for i in range(len(known))])

    def _start(self, requests: list[_Request], logits: torch.Tensor, states: list[tuple[list, list]]) -> None:
        """Sample each prefilled request's first token; unless that ends it, move its keys and values into a row."""
        tokens, logprobs = self._sample(logits, requests)
        for request, token, logprob, (keys, values) in zip(requests, tokens, logprobs, states):
            request.position = len(request.prompt_ids)
            if self._accept(request, [token], [logprob]):
                _resolve(request)
            else:
                self._slots.add(keys, values)
                self._rows.append(request)

    def _remember(self, row: int, request: _Request) -> None:
        """Store the keys and values of ``row``'s tokens for later prompts that start the same way."""
        if not self._prefixes.max_tokens:
            return
        ids = (request.prompt_ids + request.generated)[: request.position]  # a stop string may have cut tokens
        keys, values = self._slots.row(row)
        self._prefixes.put(ids, [k[:, :, : len(ids)] for k in keys], [v[:, :, : len(ids)] for v in values])

    def _decode_step(self) -> None:
        rows = self._rows
        device = self.model.device
        input_ids = torch.tensor([[r.generated[-1]] for r in rows], device=device)
        positions = torch.tensor([[r.position] for r in rows], device=device)
        cache = self._slots.step_cache()
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=self._slots.attention_mask(),
            past_key_values=cache,
            use_cache=True,
        )
        self._slots.advance()
        tokens, logprobs = self._sample(out.logits[:, -1, :], rows)
        finished = []
        for index, request in enumerate(rows):
            request.position += 1
            if request.future.cancelled() or self._accept(request, [tokens[index]], [logprobs[index]]):
                finished.append(index)
        done = [rows[index] for index in finished]
        for index in reversed(finished):  # reversed: a removal moves the last row into `index`
            self._remember(index, rows[index])
            self._slots.remove(index)
            rows[index] = rows[-1]
            rows.pop()
        for request in done:  # only now: a caller's next prompt can reuse what was just stored
            _resolve(request)

    def _sample(self, logits: torch.Tensor, requests: list[_Request]) -> tuple[list[int], list[float]]:
        """Pick the next token of each row under its own settings; return tokens and their logprobs."""
        logits = logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        tokens = logprobs.argmax(dim=-1)
        sampled = [i for i, r in enumerate(requests) if r.params.temperature > 0]
        if sampled:
            index = torch.tensor(sampled, device=logits.device)
            temperature = torch.tensor([requests[i].params.temperature for i in sampled], device=logits.device)
            top_p = torch.tensor([requests[i].params.top_p for i in sampled], device=logits.device)
            probs = torch.softmax(logits[index] / temperature[:, None], dim=-1)
            draws = torch.tensor([requests[i].rng.random() for i in sampled], device=logits.device)
            tokens[index] = _draw(probs, top_p, draws)
        chosen = logprobs.gather(1, tokens[:, None])[:, 0]
        return tokens.tolist(), chosen.tolist()

    def _accept(self, request: _Request, tokens: list[int], logprobs: list[float]) -> bool:
        """Append a sampled token to ``request``; finish it and return True when it is done."""
        token = tokens[0]
        if token in self.eos_ids:
            return self._finish(request, "stop")
        request.generated.append(token)
        request.logprobs.append(logprobs[0])
        text = self._decode(request.generated)
        stops = request.params.stop
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            del request.generated[self._tokens_within(request.generated, cut) :]
            return self._finish(request, "stop")
        if len(request.generated) >= request.params.max_tokens or request.position + 1 >= self.max_positions:
            return self._finish(request, "length")
        if request.on_text is not None:
            self._stream(request, text)
        return False

    def _stream(self, request: _Request, text: str) -> None:
        """Send the part of ``text`` that no stop string or unfinished character can take back."""
        hold = max((k for s in request.params.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if text.endswith("\ufffd"):
            hold = max(hold, 1)
        limit = len(text) - hold
        if limit > len(request.streamed):
            safe = self._decode(request.generated[: self._tokens_within(request.generated, limit)])
            if len(safe) > len(request.streamed):
                request.on_text(safe[len(request.streamed) :])
                request.streamed = safe

    def _finish(self, request: _Request, reason: str) -> bool:
        text = self._decode(request.generated)
        del request.logprobs[len(request.generated) :]
        if request.on_text is not None and len(text) > len(request.streamed):
            request.on_text(text[len(request.streamed) :])
        request.completion = Completion(text, request.generated, request.logprobs, reason, len(request.prompt_ids))
        return True

    def _tokens_within(self, ids: list[int], chars: int) -> int:
        """The largest k such that the first k tokens decode to at most ``chars`` characters."""
        k = len(ids)
        while k and len(self._decode(ids[:k])) > chars:
            k -= 1
        return k

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


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


def _draw(probs: torch.Tensor, top_p: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Sample one token per row of ``probs`` with uniform ``draws``, within each row's top-``top_p`` nucleus.

    Sorting the whole vocabulary every step costs more than the model's forward pass, so the
    nucleus is looked for among the `NUCLEUS_CANDIDATES` most likely tokens; only a row whose
    nucleus may reach past them (a very flat distribution) is sorted in full.
    """
    tokens = _inverse_cdf(probs, draws)  # top_p == 1: the whole distribution, no sorting
    rows = (top_p < 1).nonzero()[:, 0]
    if len(rows):
        tokens[rows], overflow = _nucleus(probs[rows], top_p[rows], draws[rows], NUCLEUS_CANDIDATES)
        if overflow.any():
            wide = rows[overflow]
            tokens[wide], _ = _nucleus(probs[wide], top_p[wide], draws[wide], probs.shape[-1])
    return tokens


def _nucleus(probs, top_p, draws, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample within each row's nucleus among its ``k`` most likely tokens; also flag rows whose nucleus may reach past ``k``."""
    k = min(k, probs.shape[-1])
    top, order = probs.topk(k, dim=-1)
    before = top.cumsum(dim=-1) - top  # mass of the more likely tokens: the top token always stays
    picked = order.gather(1, _inverse_cdf(top * (before < top_p[:, None]), draws)[:, None])[:, 0]
    return picked, (before[:, -1] < top_p) & (k < probs.shape[-1])


def _inverse_cdf(probs: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None]).clamp(max=probs.shape[-1] - 1)[:, 0]


def _resolve(request: _Request) -> None:
    if request.completion is not None and not request.future.done():
        request.future.set_result(request.completion)


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)


def _end_token_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}
