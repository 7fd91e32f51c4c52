"""Keys and values of finished sequences, kept to skip recomputing a prompt's known beginning.

In a game, each turn's prompt is the previous turn's prompt and reply plus a little more, so
most of it was already computed when that reply was generated. The engine stores each finished
sequence's keys and values here and prefills only the part of a new prompt past the longest
stored match. Least recently used entries go first when the token budget is full.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

MIN_REUSE = 16  # shorter matches are not worth a separate prefill pass


class PrefixCache:
    """A token-budgeted store of ``token ids -> per-layer keys and values``.

    Args:
        max_tokens (`int`): tokens kept over all entries; 0 disables the cache.
    """

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()
        self._tokens = 0

    def put(self, ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Keep a sequence's keys and values (per layer ``[1, kv_heads, len(ids), head_dim]``)."""
        if len(ids) < MIN_REUSE or len(ids) > self.max_tokens:
            return
        key = tuple(ids)
        for other in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            self._drop(other)  # a prefix of the new entry adds nothing
        self._entries[key] = (keys, values)
        self._tokens += len(key)
        while self._tokens > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def longest(self, ids: list[int]) -> tuple[int, list[torch.Tensor], list[torch.Tensor]] | None:
        """The longest stored match for the start of ``ids``, leaving at least one token to compute.

        Returns ``(matched, keys, values)`` with keys and values cut to ``matched`` tokens, or None.
        """
        best, best_key = 0, None
        limit = len(ids) - 1
        for key in self._entries:
            if len(key) <= best or key[0] != ids[0]:
                continue
            matched = _common_prefix(key, ids, limit)
            if matched > best:
                best, best_key = matched, key
        if best < MIN_REUSE:
            return None
        self._entries.move_to_end(best_key)
        keys, values = self._entries[best_key]
        return best, [k[:, :, :best] for k in keys], [v[:, :, :best] for v in values]

    def _drop(self, key: tuple[int, ...]) -> None:
        del self._entries[key]
        self._tokens -= len(key)


def _common_prefix(a: tuple[int, ...], b: list[int], limit: int) -> int:
    n = min(len(a), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
