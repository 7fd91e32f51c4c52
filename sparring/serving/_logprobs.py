"""Log-probabilities for `sparring serve`'s replies, in OpenAI's shapes, with readable token strings.

A token's string is the text it adds to the text before it, so a reply's token strings join to
its text exactly (not byte-level BPE pieces such as ``Ġthe``), and ``bytes`` is that string's
UTF-8. A token that ends inside a multi-byte character (an emoji, an accented letter split in
two) adds none of that character: the token that completes the character carries it whole, and
the tokens before it get what they complete (often ``""``). Where a reply stops inside a
character, its last token keeps the replacement character (U+FFFD) its text ends with. An
alternative's string is what it would add in the same place (U+FFFD for an unfinished character;
a special token the text leaves out, such as ``<|im_end|>``, by its name).

The chosen tokens' logprobs come from generation itself. Prompt logprobs (``echo``) and
alternatives (``top_logprobs``, a completion's ``logprobs`` above 0) come from a scoring pass of
the engine's model over the prompt and the reply (`BaseEngine.scorer`), and then every logprob of
that choice does, so an alternative and the chosen token compare exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Sequence

from ..agents.engine._base import BaseEngine
from ..agents.engine._scoring import TokenScore

CONTEXT_TOKENS = 4
"""Tokens decoded before a token to find the text it adds (a tokenizer may write a token differently at the start)."""
LOWEST_LOGPROB = -9999.0
"""What a logprob of minus infinity is sent as (JSON has no infinity; OpenAI's and vLLM's value)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One token of a reply (or of its prompt): its string, its logprob, and its alternatives.

    ``logprob`` and ``top`` are None for a prompt's first token, which nothing predicts.
    """

    text: str
    logprob: float | None
    top: list[tuple[str, float]] | None


def token_texts(decode: Callable[[list[int]], str], ids: list[int], start: int = 0,
                alternatives: Sequence[Sequence[int]] = ()) -> tuple[list[str], list[list[str]]]:
    """The text each of ``ids[start:]`` adds, under the rule of this module (see the module docstring).

    Args:
        decode (`Callable`): token ids to text.
        ids (`list[int]`): the sequence; ``ids[:start]`` is context, which must end at a character boundary.
        start (`int`, defaults to 0): the first token to give a text.
        alternatives (`Sequence[Sequence[int]]`, defaults to ()): other tokens at each position from
            ``start`` on, each given the text it would add there.

    Returns:
        The texts of ``ids[start:]`` (they join to what those tokens decode to after the context), and
        the texts of the alternatives, position by position.
    """
    texts: list[str] = []
    others: list[list[str]] = []
    base, emitted = start, 0  # the text before token `base` is all given out, and `emitted` characters after it
    for j in range(start, len(ids)):
        window = max(0, base - CONTEXT_TOKENS)
        head = len(decode(ids[window:base]))
        text = decode(ids[window:j + 1])[head:]
        given = text if j == len(ids) - 1 else text.rstrip("\ufffd")  # hold back an unfinished character
        texts.append(given[emitted:])
        if j - start < len(alternatives):
            others.append([texts[-1] if token == ids[j] else decode(ids[window:j] + [token])[head + emitted:]
                           for token in alternatives[j - start]])
        base, emitted = (j + 1, 0) if len(given) == len(text) else (base, len(given))
    return texts, others


class ChoiceLogprobs:
    """The logprobs of one choice's tokens, as the reply arrives in one piece or in many.

    Args:
        engine (`BaseEngine`): the engine that generates the reply.
        prompt_ids (`list[int]`): the prompt's tokens.
        top (`int`): alternatives per token.
        scored (`bool`): take every logprob from a scoring pass (needed for ``top > 0`` and for the prompt's).
    """

    def __init__(self, engine: BaseEngine, prompt_ids: list[int], top: int = 0, scored: bool = False):
        self.engine, self.prompt_ids, self.top = engine, prompt_ids, top
        self.scorer = engine.scorer() if scored or top else None
        self.generated: list[int] = []
        self._fed = False  # whether the scorer has seen the prompt

    async def prompt(self) -> list[TokenLogprob]:
        """The prompt's tokens, scored (call it before `reply`); the strings keep its special tokens."""
        scores = await self.scorer.extend_async(self.prompt_ids, self.top)
        self._fed = True
        tokenizer = self.engine.tokenizer
        return await asyncio.to_thread(self._entries, lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
                                       self.prompt_ids, 0, scores)

    async def reply(self, token_ids: list[int], logprobs: list[float]) -> list[TokenLogprob]:
        """The reply's next tokens, generated with ``logprobs``; their strings join to the text they add."""
        if self.scorer is None:
            scores: list[TokenScore | None] = [TokenScore(lp, []) for lp in logprobs]
        else:
            if not self._fed:
                await self.scorer.extend_async(self.prompt_ids, None)
                self._fed = True
            scores = await self.scorer.extend_async(token_ids, self.top)
        start = len(self.generated)
        self.generated += token_ids
        return await asyncio.to_thread(self._entries, self.engine.decode, self.generated, start, scores)

    def _entries(self, decode, ids: list[int], start: int, scores: list[TokenScore | None]) -> list[TokenLogprob]:
        """The entries of ``ids[start:]`` (called off the event loop: a long prompt takes many decodes)."""
        texts, others = token_texts(decode, ids, start, [[t for t, _ in s.top] if s else [] for s in scores])
        entries = []
        for chosen, text, names, score in zip(ids[start:], texts, others, scores):
            if score is None:
                entries.append(TokenLogprob(text, None, None))
                continue
            # an alternative with no text is a special token the text leaves out: named as the tokenizer names it
            top = [(name if name or token == chosen else self.engine.tokenizer.convert_ids_to_tokens(token),
                    max(lp, LOWEST_LOGPROB)) for name, (token, lp) in zip(names, score.top)]
            entries.append(TokenLogprob(text, max(score.logprob, LOWEST_LOGPROB), top))
        return entries


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    """A chat choice's ``logprobs``: ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]}``."""
    def item(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**item(e.text, e.logprob), "top_logprobs": [item(*alt) for alt in e.top or ()]}
                        for e in entries]}


def completion_logprobs(entries: list[TokenLogprob], offset: int = 0) -> dict:
    """A completion choice's ``logprobs``: ``tokens``, ``token_logprobs``, ``top_logprobs`` (each a dict of the
    alternatives and the chosen token, or None) and ``text_offset`` (where each token starts in the choice's
    text, the first at ``offset``)."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.text)
    return {"tokens": [e.text for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [None if e.top is None else _top(e) for e in entries], "text_offset": offsets}


def _top(entry: TokenLogprob) -> dict[str, float]:
    top: dict[str, float] = {}
    for text, logprob in entry.top:
        top.setdefault(text, logprob)  # two tokens may read the same: the likelier stays
    top.setdefault(entry.text, entry.logprob)  # OpenAI's legacy API always gives the chosen token's
    return top


__all__ = ["ChoiceLogprobs", "TokenLogprob", "chat_logprobs", "completion_logprobs", "token_texts"]
