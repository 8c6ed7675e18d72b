"""Feature tables for users or items, row-aligned with an IdVocab (row 0 = padding).

Four kinds of columns, each stored the way models consume it:

- ``categorical``: (n_rows,) int64 codes, 0 = missing; labels in ``vocabularies[col]`` (code c -> labels[c-1])
- ``multi_hot``:   a Ragged of codes per row (genres, tags); labels in ``vocabularies[col]``
- ``numeric``:     (n_rows,) float32, NaN = missing (price, year)
- ``text``:        (n_rows,) object array of strings (titles, descriptions), "" = missing
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import DataError


@dataclass
class FeatureTable:
    n_rows: int
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    multi_hot: dict[str, Ragged] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    text: dict[str, np.ndarray] = field(default_factory=dict)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.multi_hot, *self.numeric, *self.text]

    def __repr__(self) -> str:
        return (f"FeatureTable(n_rows={self.n_rows}, categorical={list(self.categorical)}, "
                f"multi_hot={list(self.multi_hot)}, numeric={list(self.numeric)}, text={list(self.text)})")

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        id_col: str,
        vocab: IdVocab,
        categorical: Iterable[str] = (),
        multi_hot: Mapping[str, str | None] | Iterable[str] = (),
        numeric: Iterable[str] = (),
        text: Iterable[str] = (),
        vocabularies: Mapping[str, list[str]] | None = None,
    ) -> FeatureTable:
        """Build a table from one row per id. ``multi_hot`` maps a column to its separator (None: the
        cells already hold lists). Ids absent from ``vocab`` are dropped; vocab ids without a row get
        missing values. Given ``vocabularies`` (from another table), categories are encoded with them
        and unseen labels become 0 — how features of new (cold) items are encoded."""
        multi_hot = dict(multi_hot) if isinstance(multi_hot, Mapping) else {c: None for c in multi_hot}
        wanted = [id_col, *categorical, *multi_hot, *numeric, *text]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(
                f"feature columns {missing} are missing; the table has columns {list(frame.columns)}."
            )
        frame = frame.drop_duplicates(subset=[id_col], keep="first")
        rows = vocab.encode(frame[id_col].to_numpy(), unknown="zero")
        keep = rows > 0
        frame, rows = frame.loc[keep], rows[keep]
        n = vocab.size
        given = dict(vocabularies or {})
        out = cls(n_rows=n)
        for col in categorical:
            labels = frame[col].astype("string")
            known = given.get(col) or sorted(labels.dropna().unique().tolist())
            lookup = pd.Index(known)
            codes = np.zeros(n, dtype=np.int64)
            codes[rows] = np.where(labels.isna(), -1, lookup.get_indexer(labels.fillna(""))) + 1
            out.categorical[col], out.vocabularies[col] = codes, list(known)
        for col, sep in multi_hot.items():
            cells = frame[col].tolist()
            lists = [_split(c, sep) for c in cells]
            known = given.get(col) or sorted({x for cell in lists for x in cell})
            lookup = {lab: i + 1 for i, lab in enumerate(known)}
            per_row: list[list[int]] = [[] for _ in range(n)]
            for r, cell in zip(rows, lists):
                per_row[r] = [lookup[x] for x in cell if x in lookup]
            out.multi_hot[col], out.vocabularies[col] = Ragged.from_lists(per_row), list(known)
        for col in numeric:
            vals = np.full(n, np.nan, dtype=np.float32)
            vals[rows] = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float32)
            out.numeric[col] = vals
        for col in text:
            vals = np.full(n, "", dtype=object)
            vals[rows] = frame[col].fillna("").astype(str).to_numpy(dtype=object)
            out.text[col] = vals
        return out

    def take(self, rows: np.ndarray) -> FeatureTable:
        """A table whose row i is row ``rows[i]`` of this one (rows[0] should be 0 to keep padding)."""
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureTable(
            n_rows=rows.size,
            categorical={k: v[rows] for k, v in self.categorical.items()},
            multi_hot={k: v.select(rows) for k, v in self.multi_hot.items()},
            numeric={k: v[rows] for k, v in self.numeric.items()},
            text={k: v[rows] for k, v in self.text.items()},
            vocabularies={k: list(v) for k, v in self.vocabularies.items()},
        )

    # persistence: arrays go to safetensors, the rest to JSON ---------------------------------
    def to_state(self, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        for k, v in self.categorical.items():
            arrays[f"{prefix}.categorical.{k}"] = v
        for k, v in self.multi_hot.items():
            arrays[f"{prefix}.multi_hot.{k}.values"] = v.values
            arrays[f"{prefix}.multi_hot.{k}.offsets"] = v.offsets
        for k, v in self.numeric.items():
            arrays[f"{prefix}.numeric.{k}"] = v
        meta = {
            "n_rows": self.n_rows,
            "categorical": list(self.categorical),
            "multi_hot": list(self.multi_hot),
            "numeric": list(self.numeric),
            "text": {k: v.tolist() for k, v in self.text.items()},
            "vocabularies": self.vocabularies,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, prefix: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> FeatureTable:
        return cls(
            n_rows=int(meta["n_rows"]),
            categorical={k: np.asarray(arrays[f"{prefix}.categorical.{k}"]) for k in meta["categorical"]},
            multi_hot={
                k: Ragged(arrays[f"{prefix}.multi_hot.{k}.values"], arrays[f"{prefix}.multi_hot.{k}.offsets"])
                for k in meta["multi_hot"]
            },
            numeric={k: np.asarray(arrays[f"{prefix}.numeric.{k}"]) for k in meta["numeric"]},
            text={k: np.asarray(v, dtype=object) for k, v in meta["text"].items()},
            vocabularies={k: list(v) for k, v in meta["vocabularies"].items()},
        )


def _split(cell: Any, sep: str | None) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if sep is None:
        return [str(x) for x in cell]
    return [x.strip() for x in str(cell).split(sep) if x.strip()]
