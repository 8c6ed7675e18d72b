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

import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from embrec.errors import DataError, InvalidParameterError, UnknownIdError, describe

PAD = 0
#: sequences up to this long are encoded by dict lookups; longer ones by one vectorised pandas pass
_SMALL = 512
UnknownPolicy = Literal["error", "zero"]


class IdVocab:
    """Bijection between raw ids (ints or strings) and dense indices ``1..n_ids`` (0 = padding/unknown)."""

    def __init__(self, raw_ids: Iterable[Any] = (), *, name: str = "id") -> None:
        raw = pd.Index(list(raw_ids) if not isinstance(raw_ids, (np.ndarray, pd.Index)) else raw_ids)
        if raw.hasnans:
            raise DataError(f"{name} ids must not be missing (NaN); received a NaN among {raw.size} ids.")
        if not raw.is_unique:
            dup = raw[raw.duplicated()][0]
            raise DataError(f"{name} ids must be unique in a vocabulary; received {describe(_plain(dup))} twice.")
        self.name = name
        self._index = raw
        self.kind = "int" if pd.api.types.is_integer_dtype(raw.dtype) else "str"
        if self.kind == "str":
            self._index = pd.Index(raw.astype(str), dtype=object)
        self._n = len(self._index)  # a vocabulary never changes: its size is read on every request

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
        return self._n

    @property
    def size(self) -> int:
        """Rows an embedding table needs: known ids + the padding/unknown row 0."""
        return self._n + 1

    def __len__(self) -> int:
        return self.n_ids

    def __contains__(self, raw: Any) -> bool:
        value = self._coerce_one(raw)
        return value is not None and value in self._index

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
        if isinstance(raw, (list, tuple)) and len(raw) <= _SMALL:  # a request's ids: hash lookups
            get = self._lookup().get
            rows = [get(str(v), 0) for v in raw] if self.kind == "str" else [get(self._key(v), 0) for v in raw]
            if unknown == "error" and 0 in rows:
                self._raise_unknown(raw[rows.index(0)])
            return np.array(rows, dtype=np.int64)
        values = np.atleast_1d(np.asarray(raw, dtype=object if self.kind == "str" else None))
        given = values
        values, valid = self._coerce(values)
        idx = self._index.get_indexer(values).astype(np.int64) + 1
        if valid is not None:
            idx[~valid] = 0  # not an int64 at all: unknown, whatever the placeholder matched
        if unknown == "error" and (idx == 0).any():
            self._raise_unknown(given[idx == 0][0])  # as the caller wrote it, not the coerced value
        return idx

    def _raise_unknown(self, given: Any) -> None:
        missing = _plain(given)
        example = _plain(self._index[0]) if self.n_ids else None
        raise UnknownIdError(
            f"{self.name} id {describe(missing)} is not known to this model "
            f"({self.n_ids} known {self.name} ids, e.g. {describe(example)})."
        )

    def _lookup(self) -> dict[Any, int]:
        """raw id -> row, built once (a vocabulary never changes): encoding a few ids is a few hash lookups."""
        table = self.__dict__.get("_rows")
        if table is None:
            table = self._rows = {_plain(raw): row for row, raw in enumerate(self._index, start=1)}
        return table

    def _key(self, v: Any) -> Any:
        """One raw id as the lookup table spells it (the scalar form of ``_coerce``)."""
        if self.kind == "str":
            return str(v)
        return _as_int64(v)

    def decode(self, idx: Any) -> np.ndarray:
        """Raw ids of dense indices; index 0 (padding/unknown) decodes to None."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.size and int(idx.view(np.uint64).max()) > self.n_ids:  # as uint64, a negative index is huge
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

    def _coerce(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(values comparable with the index, mask of the valid ones or None when all are)."""
        if self.kind == "str":
            return np.array([str(v) for v in values], dtype=object), None
        if values.dtype.kind == "i":
            return values, None
        if values.dtype.kind == "u" and (not values.size or values.max() <= _INT64_MAX):
            return values.astype(np.int64), None
        out = np.zeros(values.size, dtype=np.int64)
        valid = np.zeros(values.size, dtype=bool)
        for j, v in enumerate(values.tolist()):  # "12", 12.0 or a huge int given for an int vocabulary
            iv = _as_int64(v)
            if iv is not None:
                out[j], valid[j] = iv, True
        return out, valid

    def _coerce_one(self, raw: Any) -> Any:
        values, valid = self._coerce(np.atleast_1d(np.asarray(raw, dtype=object)))
        return values[0] if valid is None or valid[0] else None

    # persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ids": [_plain(x) for x in self._index]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdVocab:
        if not isinstance(data, dict) or "kind" not in data or "ids" not in data:
            got = f"keys {describe(list(data))}" if isinstance(data, dict) else f"a {type(data).__name__}"
            raise DataError(f"a vocabulary must be an object with 'kind' and 'ids'; received {got}.")
        kind, ids, name = data["kind"], data["ids"], str(data.get("name", "id"))
        if kind not in ("int", "str") or not isinstance(ids, list):
            raise DataError(f"a vocabulary needs kind 'int' or 'str' and a list of ids; received kind "
                            f"{describe(kind)} and {type(ids).__name__} ids.")
        if kind == "int":
            bad = next((x for x in ids if isinstance(x, bool) or not isinstance(x, int)
                        or not -(2**63) <= x < 2**63), None)
            if bad is not None:
                raise DataError(f"the ids of an 'int' vocabulary must be 64-bit integers; received {describe(bad)}.")
            arr = np.asarray(ids, dtype=np.int64)
        else:
            bad = next((x for x in ids if not isinstance(x, str)), None)
            if bad is not None:
                raise DataError(f"the ids of a 'str' vocabulary must be strings; received {describe(bad)}.")
            arr = np.asarray(ids, dtype=object)
        return cls(arr, name=name)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT_TEXT = re.compile(r"[+-]?\d+")


def _as_int64(v: Any) -> int | None:
    """``v`` as an int64 id (an int, an integral float, or their text), else None (booleans included)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        iv = int(v)
    elif isinstance(v, (str, bytes)):
        text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip()
        if len(text) > 40:
            return None
        if _INT_TEXT.fullmatch(text):
            iv = int(text)  # exact: "9007199254740993" must not round through a float
        else:
            try:
                f = float(text)
            except ValueError:
                return None
            if not (f == f and f.is_integer() and abs(f) < 2**53):
                return None
            iv = int(f)
    elif isinstance(v, (float, np.floating)):
        f = float(v)
        if not (f == f and f.is_integer() and abs(f) < 2**53):
            return None
        iv = int(f)
    else:
        return None
    return iv if _INT64_MIN <= iv <= _INT64_MAX else None


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
