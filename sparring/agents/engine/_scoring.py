"""Scoring token sequences: each token's log-probability given the tokens before it, and the most likely
tokens at its place.

Generation hands back only the chosen tokens' log-probabilities (OpenVINO GenAI computes no more),
so the log-probabilities of a prompt and the alternatives at each position come from a scoring
pass: the engine's model runs over the sequence once (`BaseEngine._forward`, one method per
engine) and a full log-softmax is taken at every position. A `Scorer` keeps the model's keys and
values between calls, so a sequence that grows (a reply being streamed) costs one pass over each
new token, and it feeds long sequences in chunks of `SCORE_CHUNK` tokens, so it never holds more
than a chunk's logits.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch

SCORE_CHUNK = 256
"""Tokens fed to the model per forward pass while scoring (the logits of a chunk are held at once)."""


@dataclass(frozen=True)
class TokenScore:
    """A token's log-probability given the tokens before it, and the most likely tokens in its place.

    ``top`` holds ``(token id, logprob)`` pairs, the most likely first.
    """

    logprob: float
    top: list[tuple[int, float]]


class Scorer:
    """Log-probabilities of a growing token sequence under an engine's model (`BaseEngine.scorer`).

    Args:
        forward (`Callable`): the engine's `BaseEngine._forward`.
        lock (`threading.Lock`): held around each forward pass, so one pass runs at a time.

    Example:
        >>> scorer = engine.scorer()  # doctest: +SKIP
        >>> scorer.extend(prompt_ids, top=None)  # context only, nothing scored  # doctest: +SKIP
        >>> [s.logprob for s in scorer.extend(reply_ids, top=2)]  # doctest: +SKIP
    """

    def __init__(self, forward: Callable[[list[int], int, Any], tuple[torch.Tensor, Any]], lock: threading.Lock):
        self._forward, self._lock = forward, lock
        self._state: Any = None
        self._length = 0
        self._last: torch.Tensor | None = None  # the logits after the last token: the next token's distribution

    def extend(self, token_ids: list[int], top: int | None = 0) -> list[TokenScore | None]:
        """Append ``token_ids`` to the sequence and score each one given everything before it.

        Args:
            token_ids (`list[int]`): the tokens to append.
            top (`int | None`, defaults to 0): alternatives to give per token; None scores nothing
                (the tokens are context) and returns an empty list.

        Returns:
            One `TokenScore` per token; None for the first token of the sequence, which nothing predicts.
        """
        scores: list[TokenScore | None] = []
        for begin in range(0, len(token_ids), SCORE_CHUNK):
            chunk = token_ids[begin:begin + SCORE_CHUNK]
            with self._lock:
                logits, self._state = self._forward(chunk, self._length, self._state)
            self._length += len(chunk)
            if top is not None:
                if self._last is None:
                    scores.append(None)
                predictors = logits[:-1] if self._last is None else torch.cat([self._last[None], logits[:-1]])
                scores += _scores(predictors, chunk[len(chunk) - len(predictors):], top)
            self._last = logits[-1]
        return scores

    async def extend_async(self, token_ids: list[int], top: int | None = 0) -> list[TokenScore | None]:
        """`extend` for callers on an event loop, run on a thread of its own."""
        return await asyncio.to_thread(self.extend, token_ids, top)


def _scores(logits: torch.Tensor, tokens: list[int], top: int) -> list[TokenScore]:
    """The score of each of ``tokens`` under the logits row before it, with ``top`` alternatives."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=logits.device)[:, None])[:, 0].tolist()
    if not top:
        return [TokenScore(lp, []) for lp in chosen]
    values, indices = logprobs.topk(top, dim=-1)
    return [TokenScore(lp, list(zip(i, v))) for lp, i, v in zip(chosen, indices.tolist(), values.tolist())]


__all__ = ["SCORE_CHUNK", "Scorer", "TokenScore"]
