"""A key/value cache with one row per live sequence, written in place.

transformers' `DynamicCache` concatenates a new column onto every layer's keys and values at each
step, copying the whole cache; with 32 sequences of a few hundred tokens that copy costs as much
as the model's matrix products. `SlotCache` keeps preallocated buffers instead: row ``i`` holds
sequence ``i`` right-aligned to column ``length`` (left padding, masked out), every decode step
writes one column in place, a finished row is replaced by the last live row, and a new sequence's
prefilled keys are copied into a free row. All rows share the write column, which is what
transformers' models expect of a batched cache.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class _SlotLayer(DynamicLayer):
    """One layer's view of the buffers for a forward pass over the first ``rows`` rows."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, rows: int, column: int):
        super().__init__()
        self._buffer_keys, self._buffer_values = keys, values
        self._rows, self._column = rows, column
        self.keys, self.values = keys[:rows, :, :column], values[:rows, :, :column]
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self._column + key_states.shape[-2]
        self._buffer_keys[: self._rows, :, self._column : end] = key_states
        self._buffer_values[: self._rows, :, self._column : end] = value_states
        self.keys = self._buffer_keys[: self._rows, :, :end]
        self.values = self._buffer_values[: self._rows, :, :end]
        return self.keys, self.values


class SlotCache:
    """Per-layer key/value buffers of shape ``[rows, kv_heads, capacity, head_dim]``.

    Args:
        num_layers, kv_heads, head_dim (`int`): the model's attention shape.
        dtype (`torch.dtype`), device (`torch.device`): where the buffers live.
        rows (`int`, defaults to 8), capacity (`int`, defaults to 512): initial sizes; both grow.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype, device, rows: int = 8, capacity: int = 512):
        self._shape = (kv_heads, head_dim)
        self.dtype, self.device = dtype, device
        self.keys = [self._empty(rows, capacity) for _ in range(num_layers)]
        self.values = [self._empty(rows, capacity) for _ in range(num_layers)]
        self.mask = torch.zeros(rows, capacity, dtype=torch.long, device=device)
        self.live = 0  # rows [0, live) hold sequences
        self.length = 0  # columns [0, length) are written; the next token goes to column `length`

    def _empty(self, rows: int, capacity: int) -> torch.Tensor:
        kv_heads, head_dim = self._shape
        return torch.zeros(rows, kv_heads, capacity, head_dim, dtype=self.dtype, device=self.device)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def capacity(self) -> int:
        return self.mask.shape[1]

    def add(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> int:
        """Copy one prefilled sequence (per layer ``[1, kv_heads, tokens, head_dim]``) into a free row.

        Returns the row index.
        """
        tokens = keys[0].shape[-2]
        if self.live == 0:
            self.length = 0
        if tokens > self.length:
            self._shift_right(tokens - self.length)
        if self.live == self.rows:
            self._resize(rows=self.rows * 2, capacity=self.capacity)
        row, start = self.live, self.length - tokens
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.keys[layer][row, :, start : self.length] = k[0]
            self.values[layer][row, :, start : self.length] = v[0]
        self.mask[row].zero_()
        self.mask[row, start : self.length] = 1
        self.live += 1
        return row

    def remove(self, row: int) -> None:
        """Free ``row``: the last live row moves into it (callers must move their own row state the same way)."""
        last = self.live - 1
        if row != last:
            for buffers in (self.keys, self.values):
                for buffer in buffers:
                    buffer[row, :, : self.length] = buffer[last, :, : self.length]
            self.mask[row] = self.mask[last]
        self.mask[last].zero_()
        self.live = last

    def step_cache(self, new: torch.Tensor | None = None) -> Cache:
        """A transformers `Cache` over the live rows that writes the next columns in place.

        Args:
            new (`torch.Tensor | None`): ``[live, columns]``, 1 where a row gets a real token
                (right-aligned suffixes); default one column of real tokens, a decode step.

        Call `advance` with the same number of columns after the forward pass.
        """
        columns = 1 if new is None else new.shape[1]
        if self.length + columns > self.capacity:
            self._make_room(columns)
        self.mask[: self.live, self.length : self.length + columns] = 1 if new is None else new
        layers = [_SlotLayer(k, v, self.live, self.length) for k, v in zip(self.keys, self.values)]
        return Cache(layers=layers)

    def attention_mask(self, columns: int = 1) -> torch.Tensor:
        """The 2-D attention mask of the live rows, including the columns being written."""
        return self.mask[: self.live, : self.length + columns]

    def advance(self, columns: int = 1) -> None:
        self.length += columns

    def row(self, row: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Copies of ``row``'s keys and values at its real tokens, per layer ``[1, kv_heads, tokens, head_dim]``."""
        used = self.mask[row, : self.length].nonzero()[:, 0]
        return ([k[row : row + 1, :, used] for k in self.keys], [v[row : row + 1, :, used] for v in self.values])

    def _make_room(self, columns: int) -> None:
        """Drop leading columns no live row uses, or grow the buffers, until ``columns`` more fit."""
        used = self.mask[: self.live, : self.length].any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.length
        if first > self.capacity // 4 and self.length - first + columns <= self.capacity:
            self._shift_left(first)
        while self.length + columns > self.capacity:
            self._resize(rows=self.rows, capacity=self.capacity * 2)

    def _shift_left(self, columns: int) -> None:
        kept = self.length - columns
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[: self.live, :, :kept] = buffer[: self.live, :, columns : self.length].clone()
        self.mask[:, :kept] = self.mask[:, columns : self.length].clone()
        self.mask[:, kept:] = 0
        self.length = kept

    def _shift_right(self, columns: int) -> None:
        while self.length + columns > self.capacity:
            self._resize(rows=self.rows, capacity=self.capacity * 2)
        end = self.length + columns
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[: self.live, :, columns:end] = buffer[: self.live, :, : self.length].clone()
        self.mask[:, columns:end] = self.mask[:, : self.length].clone()
        self.mask[:, :columns] = 0
        self.length = end

    def _resize(self, rows: int, capacity: int) -> None:
        for buffers in (self.keys, self.values):
            for index, old in enumerate(buffers):
                new = self._empty(rows, capacity)
                new[: self.live, :, : self.length] = old[: self.live, :, : self.length]
                buffers[index] = new
        mask = torch.zeros(rows, capacity, dtype=torch.long, device=self.device)
        mask[: self.live, : self.length] = self.mask[: self.live, : self.length]
        self.mask = mask
