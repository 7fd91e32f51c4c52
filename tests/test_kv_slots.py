"""SlotCache bookkeeping on small tensors: rows stay right-aligned through adds, removals and growth."""

from __future__ import annotations

import torch

from sparring.agents.engine._kv_slots import SlotCache


def _sequence(tokens: int, value: float) -> list[torch.Tensor]:
    return [torch.full((1, 1, tokens, 2), value)]


def _row(cache: SlotCache, row: int) -> list[float]:
    used = cache.mask[row, : cache.length].bool()
    return cache.keys[0][row, 0, : cache.length][used][:, 0].tolist()


def test_add_remove_and_grow():
    cache = SlotCache(num_layers=1, kv_heads=1, head_dim=2, dtype=torch.float32, device="cpu", rows=2, capacity=4)
    cache.add(_sequence(2, 1.0), _sequence(2, 1.0))
    cache.add(_sequence(3, 2.0), _sequence(3, 2.0))  # longer than the cache: the first row shifts right
    assert cache.length == 3 and _row(cache, 0) == [1.0, 1.0] and _row(cache, 1) == [2.0] * 3
    cache.add(_sequence(1, 3.0), _sequence(1, 3.0))  # a third row: the buffers double
    assert cache.rows == 4 and _row(cache, 2) == [3.0]
    for step in range(3):  # write columns until the capacity of 4 is passed
        layer = cache.step_cache().layers[0]
        layer.update(torch.full((3, 1, 1, 2), 9.0), torch.full((3, 1, 1, 2), 9.0))
        cache.advance()
    assert cache.length == 6 and cache.capacity >= 6
    assert _row(cache, 0) == [1.0, 1.0, 9.0, 9.0, 9.0]
    cache.remove(0)  # the last row moves into row 0
    assert cache.live == 2 and _row(cache, 0) == [3.0, 9.0, 9.0, 9.0]
    assert cache.attention_mask().shape == (2, 7)
