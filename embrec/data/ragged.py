"""Ragged integer sequences stored as ``values + offsets``.

A batch of variable-length lists (user histories, transactions, genre sets) is two flat arrays::

    lists    = [[7, 3], [5], [], [2, 9, 4]]
    values   = [7, 3, 5, 2, 9, 4]          # every element, row after row
    offsets  = [0, 2, 3, 3, 6]             # len(lists) + 1; row i is values[offsets[i]:offsets[i+1]]

This is the layout of ``torch.nn.EmbeddingBag(..., include_last_offset=True)``: a row of 1,000 ids costs
1,000 ids, never batch x longest-row padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from embrec.errors import DataError


@dataclass(frozen=True)
class Ragged:
    """Variable-length integer rows: ``values`` (nnz,) int64 and ``offsets`` (n_rows + 1,) int64."""

    values: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        values = np.ascontiguousarray(self.values, dtype=np.int64)
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size == 0:
            raise DataError(
                f"offsets must be a 1-D array of length n_rows + 1; received shape {offsets.shape}."
            )
        if offsets[0] != 0 or offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
            raise DataError(
                "offsets must start at 0, never decrease and end at len(values) "
                f"({values.size}); received {offsets[:3].tolist()}...{offsets[-1:].tolist()}."
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "offsets", offsets)

    # construction ---------------------------------------------------------------------------
    @classmethod
    def _valid(cls, values: np.ndarray, offsets: np.ndarray) -> Ragged:
        """A Ragged from int64 arrays that are consistent by construction (no checks: the hot path)."""
        out = object.__new__(cls)
        object.__setattr__(out, "values", values)
        object.__setattr__(out, "offsets", offsets)
        return out

    @classmethod
    def from_lists(cls, rows: Iterable[Sequence[int]]) -> Ragged:
        rows = [np.asarray(r, dtype=np.int64).ravel() for r in rows]
        if len(rows) == 1:  # one row (a served request): its values and [0, n]
            return cls._valid(rows[0].copy(), np.array([0, rows[0].size], dtype=np.int64))
        lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return cls._valid(values, offsets)  # consistent by construction

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> Ragged:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(values, offsets)

    @classmethod
    def group(cls, row_of: np.ndarray, values: np.ndarray, n_rows: int) -> Ragged:
        """Group ``values`` by ``row_of`` (stable: keeps the input order inside each row)."""
        order = np.argsort(row_of, kind="stable")
        counts = np.bincount(row_of, minlength=n_rows)[:n_rows]
        return cls.from_lengths(np.asarray(values)[order], counts)

    # access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row_ids(self) -> np.ndarray:
        """(nnz,) the row of every value."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def to_lists(self) -> list[list[int]]:
        return [r.tolist() for r in self]

    def select(self, rows: np.ndarray) -> Ragged:
        """The ragged rows ``rows`` (any order, repeats allowed), vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 1:  # one row (a served request): a slice
            a, b = self.offsets[rows[0]], self.offsets[rows[0] + 1]
            return Ragged._valid(self.values[a:b], np.array([0, b - a], dtype=np.int64))
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        out_offsets = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        # position of each output value inside its source row
        within = np.arange(out_offsets[-1], dtype=np.int64) - np.repeat(out_offsets[:-1], lengths)
        values = self.values[np.repeat(starts, lengths) + within]
        return Ragged._valid(values, out_offsets)

    def tail(self, n: int) -> Ragged:
        """Keep at most the last ``n`` values of every row."""
        lengths = np.minimum(self.lengths, n)
        starts = self.offsets[1:] - lengths
        out_offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        within = np.arange(out_offsets[-1], dtype=np.int64) - np.repeat(out_offsets[:-1], lengths)
        return Ragged._valid(self.values[np.repeat(starts, lengths) + within], out_offsets)

    def to_torch(self, device=None):
        """(values, offsets) as torch int64 tensors, ready for ``EmbeddingBag(include_last_offset=True)``."""
        import torch

        return (
            torch.as_tensor(self.values, device=device),
            torch.as_tensor(self.offsets, device=device),
        )

    def to_padded(self, pad: int = 0, max_len: int | None = None, align: str = "left") -> np.ndarray:
        """(n_rows, max_len) dense matrix; rows longer than ``max_len`` keep their last values."""
        src = self if max_len is None else self.tail(max_len)
        width = int(src.lengths.max()) if len(src) and src.values.size else 0
        if max_len is not None:
            width = max_len
        out = np.full((len(src), width), pad, dtype=np.int64)
        lengths = src.lengths
        row = src.row_ids
        within = np.arange(src.values.size, dtype=np.int64) - np.repeat(src.offsets[:-1], lengths)
        if align == "right":
            within = within + (width - np.repeat(lengths, lengths))
        out[row, within] = src.values
        return out
