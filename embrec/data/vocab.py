"""IdVocab: the one place where raw ids become dense row indices and back.

Row 0 is reserved for padding and unknown ids, so known ids occupy rows ``1 .. n_ids``::

    vocab = IdVocab.from_values(["u7", "u3", "u7"])   # raw ids sorted: u3 -> 1, u7 -> 2
    vocab.encode(["u7"])                              # array([2])
    vocab.encode(["zz"], unknown="zero")              # array([0])
    vocab.decode([1, 2])                              # array(['u3', 'u7'])

"Is user X the X-th row of the embedding matrix?" Never by assumption: always through its vocab,
which is saved next to every model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from embrec.errors import DataError, InvalidParameterError, UnknownIdError, describe

PAD = 0
UnknownPolicy = Literal["error", "zero"]


class IdVocab:
    """Bijection between raw ids (ints or strings) and dense indices ``1..n_ids`` (0 = padding/unknown)."""

    def __init__(self, raw_ids: Iterable[Any] = (), *, name: str = "id") -> None:
        raw = pd.Index(list(raw_ids) if not isinstance(raw_ids, (np.ndarray, pd.Index)) else raw_ids)
        if raw.hasnans:
            raise DataError(f"{name} ids must not be missing (NaN); received a NaN among {raw.size} ids.")
        if not raw.is_unique:
            dup = raw[raw.duplicated()][0]
            raise DataError(f"{name} ids must be unique in a vocabulary; received {dup!r} twice.")
        self.name = name
        self._index = raw
        self.kind = "int" if pd.api.types.is_integer_dtype(raw.dtype) else "str"
        if self.kind == "str":
            self._index = pd.Index(raw.astype(str), dtype=object)

    @classmethod
    def from_values(cls, values: Iterable[Any], *, name: str = "id") -> IdVocab:
        """Vocabulary of the distinct values, sorted (deterministic whatever the row order)."""
        arr = pd.Series(values if isinstance(values, (np.ndarray, pd.Series)) else list(values))
        if arr.isna().any():
            raise DataError(f"{name} ids must not be missing (NaN); received {int(arr.isna().sum())} missing values.")
        uniq = pd.unique(arr.to_numpy())
        if pd.api.types.is_integer_dtype(arr.dtype):
            uniq = np.sort(uniq)
        else:
            uniq = np.sort(uniq.astype(str).astype(object))
        return cls(uniq, name=name)

    # size -----------------------------------------------------------------------------------
    @property
    def n_ids(self) -> int:
        """Number of known ids."""
        return len(self._index)

    @property
    def size(self) -> int:
        """Rows an embedding table needs: known ids + the padding/unknown row 0."""
        return len(self._index) + 1

    def __len__(self) -> int:
        return self.n_ids

    def __contains__(self, raw: Any) -> bool:
        return self._coerce_one(raw) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdVocab) and self.kind == other.kind and self._index.equals(other._index)

    def __hash__(self) -> int:
        return hash((self.kind, self.n_ids))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._index[:3])
        return f"IdVocab(name={self.name!r}, n_ids={self.n_ids}, ids=[{head}{', ...' if self.n_ids > 3 else ''}])"

    @property
    def raw_ids(self) -> np.ndarray:
        """(n_ids,) raw ids in row order: ``raw_ids[i]`` is row ``i + 1``."""
        return self._index.to_numpy()

    # mapping --------------------------------------------------------------------------------
    def encode(self, raw: Any, *, unknown: UnknownPolicy = "error") -> np.ndarray:
        """Dense indices of ``raw`` (a scalar or sequence). Unknown ids raise, or map to 0 with unknown='zero'."""
        if unknown not in ("error", "zero"):
            raise InvalidParameterError(f"unknown must be 'error' or 'zero'; received {describe(unknown)}.")
        values = np.atleast_1d(np.asarray(raw, dtype=object if self.kind == "str" else None))
        given = values
        values = self._coerce(values)
        idx = self._index.get_indexer(values).astype(np.int64) + 1
        if unknown == "error" and (idx == 0).any():
            missing = _plain(given[idx == 0][0])  # as the caller wrote it, not the coerced value
            example = _plain(self._index[0]) if self.n_ids else None
            raise UnknownIdError(
                f"{self.name} id {missing!r} is not known to this model "
                f"({self.n_ids} known {self.name} ids, e.g. {example!r})."
            )
        return idx

    def decode(self, idx: Any) -> np.ndarray:
        """Raw ids of dense indices; index 0 (padding/unknown) decodes to None."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() > self.n_ids):
            raise InvalidParameterError(
                f"{self.name} indices must lie in 0..{self.n_ids}; received {int(idx.min())}..{int(idx.max())}."
            )
        return self._decode_table()[idx]

    def _decode_table(self) -> np.ndarray:
        """(size,) object array: None, then the raw ids; built once (a vocabulary never changes)."""
        table = self.__dict__.get("_table")
        if table is None:
            table = np.empty(self.size, dtype=object)
            table[0] = None
            table[1:] = self._index.to_numpy(dtype=object)
            self._table = table
        return table

    def _coerce(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "str":
            return np.array([str(v) for v in values], dtype=object)
        if values.dtype.kind in "iu":
            return values
        out = []
        for v in values:  # "12" or 12.0 given for an int vocabulary
            try:
                f = float(v)
                out.append(int(f) if f.is_integer() else -1)
            except (TypeError, ValueError):
                out.append(-1)
        return np.asarray(out, dtype=np.int64)

    def _coerce_one(self, raw: Any) -> Any:
        return self._coerce(np.atleast_1d(np.asarray(raw, dtype=object)))[0]

    # persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ids": [_plain(x) for x in self._index]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdVocab:
        try:
            kind, ids, name = data["kind"], data["ids"], data.get("name", "id")
        except (KeyError, TypeError):
            raise DataError(f"a vocabulary must have 'kind' and 'ids'; received keys {describe(list(data))}.") from None
        arr = np.asarray(ids, dtype=np.int64) if kind == "int" else np.asarray(ids, dtype=object)
        return cls(arr, name=name)


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
