"""The transformers engine: one model in process, continuous batching over eager forward passes.

Requests are queued (`BaseEngine`); the worker prefills each new request alone,
moves its keys and values into a row of a shared `SlotCache`, and advances every live row by one
token per forward pass. A finished row leaves at once and a waiting request takes its place, so
no slot waits for the longest reply of a batch (as a static `generate` call does) and no step
recomputes a history. Each request keeps its own sampling settings and random generator, so a
reply does not depend on what else is in the batch.
"""

from __future__ import annotations

import os

import torch
from transformers import DynamicCache

from ._base import BaseEngine, Request, end_token_ids
from ._kv_slots import SlotCache
from ._prefix_cache import PrefixCache

NUCLEUS_CANDIDATES = 1024  # tokens among which a top-p nucleus is looked for before sorting a whole row
PREFILL_TOKENS = 1024  # prompt tokens packed into one prefill pass at most (one long prompt may exceed it)
ADMIT_TOGETHER = 4  # while rows run, prefill once this many requests wait ...
ADMIT_WAIT_STEPS = 4  # ... or once the first has waited this many decode steps


class Engine(BaseEngine):
    """Serve one transformers causal language model to many concurrent callers.

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
        config = model.config.get_text_config()
        super().__init__(tokenizer, name, getattr(config, "max_position_embeddings", 8192),
                         end_token_ids(tokenizer, model.generation_config))
        self.model, self.max_batch = model, max_batch
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self._kv_shape = (config.num_hidden_layers, config.num_key_value_heads, head_dim)
        self._slots = SlotCache(*self._kv_shape, model.dtype, model.device)
        self._rows: list[Request] = []
        self._prefixes = PrefixCache(prefix_cache_tokens)
        self._waited = 0  # decode steps a waiting request has been held back
        self._start_worker()

    # ----- worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        torch.set_grad_enabled(False)
        while not self._closed:
            try:
                self._admit(block=not self._rows)
                if self._rows:
                    self._decode_step()
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, not the engine
                for request in self._rows:
                    request.fail(error)
                self._rows.clear()
                while self._slots.live:
                    self._slots.remove(self._slots.live - 1)

    def _live(self) -> list[Request]:
        return self._rows

    def _forward(self, token_ids: list[int], past: int, state):
        device = self.model.device
        with torch.inference_mode():  # this runs beside the worker, whose no-grad setting is its thread's own
            out = self.model(input_ids=torch.tensor([token_ids], device=device),
                             position_ids=torch.arange(past, past + len(token_ids), device=device)[None],
                             cache=state if state is not None else DynamicCache(config=self.model.config),
                             use_cache=True)
        return out.logits[0], out.cache

    def _admit(self, block: bool) -> None:
        """Prefill waiting requests into free rows (waiting for one when nothing is running).

        A prefill pass stalls every running row, so while rows are running a lone arrival waits
        a few steps for company (`ADMIT_TOGETHER`, `ADMIT_WAIT_STEPS`).
        """
        if self._rows and self._inbox.qsize() < ADMIT_TOGETHER and self._waited < ADMIT_WAIT_STEPS:
            self._waited += 1 if self._inbox.qsize() else 0
            return
        self._waited = 0
        waiting: list[Request] = []
        tokens = 0
        while len(self._rows) + len(waiting) < self.max_batch and tokens < PREFILL_TOKENS:
            request = self._next(block=block and not self._rows and not waiting)
            if request is None:
                break
            waiting.append(request)
            tokens += len(request.prompt_ids)
        if waiting:
            try:
                self._prefill(waiting)
            except Exception as error:  # noqa: BLE001 - reported to the callers
                for request in waiting:
                    request.fail(error)

    def _prefill(self, requests: list[Request]) -> None:
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

    def _prefill_packed(self, requests: list[Request]) -> None:
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
        layers = out.cache.layers
        self._start(requests, out.logits[0], [
            ([l.keys[:, :, a:b] for l in layers], [l.values[:, :, a:b] for l in layers])
            for a, b in zip((ends - lengths).tolist(), ends.tolist())
        ])

    def _prefill_after(self, known: list[tuple[Request, int, list, list]]) -> None:
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
                         cache=cache, use_cache=True, logits_to_keep=1)
        scratch.advance(width)
        self._start([request for request, *_ in known], out.logits[:, -1, :], [scratch.row(i) for i in range(len(known))])

    def _start(self, requests: list[Request], logits: torch.Tensor, states: list[tuple[list, list]]) -> None:
        """Sample each prefilled request's first token; unless that ends it, move its keys and values into a row."""
        tokens, logprobs = self._sample(logits, requests)
        for request, token, logprob, (keys, values) in zip(requests, tokens, logprobs, states):
            if request.accept(self, token, logprob):
                request.resolve()
            else:
                self._slots.add(keys, values)
                self._rows.append(request)

    def _remember(self, row: int, request: Request) -> None:
        """Store the keys and values of ``row``'s tokens for later prompts that start the same way."""
        if not self._prefixes.max_tokens:
            return
        # the cache holds every token but the last accepted one (a stop string may have cut some)
        ids = (request.prompt_ids + request.generated)[: request.position - 1]
        keys, values = self._slots.row(row)
        self._prefixes.put(ids, [k[:, :, : len(ids)] for k in keys], [v[:, :, : len(ids)] for v in values])

    def _decode_step(self) -> None:
        rows = self._rows
        device = self.model.device
        input_ids = torch.tensor([[r.generated[-1]] for r in rows], device=device)
        positions = torch.tensor([[r.position - 1] for r in rows], device=device)  # of each row's last token
        cache = self._slots.step_cache()
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=self._slots.attention_mask(),
            cache=cache,
            use_cache=True,
        )
        self._slots.advance()
        tokens, logprobs = self._sample(out.logits[:, -1, :], rows)
        finished = []
        for index, request in enumerate(rows):
            if request.abandoned or request.accept(self, tokens[index], logprobs[index]):
                finished.append(index)
        done = [rows[index] for index in finished]
        for index in reversed(finished):  # reversed: a removal moves the last row into `index`
            self._remember(index, rows[index])
            self._slots.remove(index)
            rows[index] = rows[-1]
            rows.pop()
        for request in done:  # only now: a caller's next prompt can reuse what was just stored
            request.resolve()

    def _sample(self, logits: torch.Tensor, requests: list[Request]) -> tuple[list[int], list[float]]:
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


