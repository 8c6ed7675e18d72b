"""Towers: id lookup, ragged bag pooling, and a content item tower built from a FeatureTable.

Variable-length inputs (a user's history, an item's genres or description words) travel as
``values + offsets`` and are pooled with ``EmbeddingBag(mode="mean", include_last_offset=True)``::

    histories = [[7, 3], [5], [2, 9, 4]]
    values    = [7, 3, 5, 2, 9, 4]        # (nnz,)
    offsets   = [0, 2, 3, 6]              # (B + 1,): bag b is values[offsets[b]:offsets[b+1]]
    BagPool(n, d)(values, offsets)        # (B, d): mean of the rows of each bag, no padding

A user with 1,000 items costs 1,000 lookups, never batch x longest-history. ``pool_vectors`` does the
same over vectors computed on the fly (the content tower's output for the distinct items of a batch).

Item content: ``FeatureEncoder.fit(table)`` learns what is needed to turn a FeatureTable into model
inputs (category counts, numeric means / standard deviations / quantile edges, the text hashing), and
``encode(table)`` gives an ``ItemFeatures`` (a few arrays, one row per item row). ``FeatureEmbedder``
embeds those rows (categorical ids, multi-hot bags, standardised numerics + their quantile bucket,
hashed text tokens) and concatenates; ``ContentTower`` puts an MLP on top and optionally adds an id
embedding for items seen in training.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from embrec.data.features import FeatureTable
from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import DataError, InvalidParameterError
from embrec.memory import check_tables

_TOKEN = re.compile(r"[a-z0-9]+")


# ragged helpers -------------------------------------------------------------------------------
def ragged_select(values: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows`` of a (values, offsets) ragged tensor, on its device, without a Python loop."""
    starts = offsets[rows]  # (R,)
    lengths = offsets[rows + 1] - starts  # (R,)
    out_offsets = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=values.device)
    torch.cumsum(lengths, 0, out=out_offsets[1:])
    total = int(out_offsets[-1])
    within = torch.arange(total, device=values.device) - torch.repeat_interleave(out_offsets[:-1], lengths)
    return values[torch.repeat_interleave(starts, lengths) + within], out_offsets


def pool_vectors(vectors: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(B, d) mean of ``vectors[values]`` per bag (values + offsets, include_last_offset); empty bag -> 0.
    One bag without autograd (a served request) is a gather and a mean: embedding_bag's bookkeeping
    costs more than the sum there."""
    if offsets.numel() == 2 and not torch.is_grad_enabled():
        start, stop = offsets.tolist()
        if stop <= start:
            return vectors.new_zeros((1, vectors.shape[1]))
        return vectors[values[start:stop]].mean(0, keepdim=True)
    return F.embedding_bag(values, vectors, offsets, mode="mean", include_last_offset=True)


def pool_encoded(encode, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(B, d) mean over each bag of ``encode(rows)``, encoding every distinct row of the batch once."""
    uniq, inverse = torch.unique(values, return_inverse=True)  # (U,), (nnz,)
    vecs = encode(uniq)  # (U, d)
    return pool_vectors(vecs, inverse, offsets)


class BagPool(nn.Module):
    """Mean of embedding rows per bag: ``EmbeddingBag(mode="mean", include_last_offset=True)``.

    Row 0 is padding: it has no weight and is left out of the mean."""

    def __init__(self, num_embeddings: int, dim: int, *, init_std: float | None = None) -> None:
        super().__init__()
        check_tables("dim", dim, {"item": num_embeddings})
        self.bag = nn.EmbeddingBag(num_embeddings, dim, mode="mean", include_last_offset=True, padding_idx=0)
        nn.init.normal_(self.bag.weight, std=init_std if init_std is not None else dim ** -0.5)
        with torch.no_grad():
            self.bag.weight[0].zero_()

    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.bag(values, offsets)  # (B, d)


def mlp(sizes: list[int], *, dropout: float = 0.0, final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ReLU (and dropout) between them."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        check_tables("hidden/dim", sizes[i + 1], {"layer": sizes[i]}, kind="weight matrix")
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# item features --------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric words."""
    return _TOKEN.findall(str(text).lower())


def hash_tokens(texts: np.ndarray, n_buckets: int) -> Ragged:
    """Each text's distinct words hashed (crc32, stable across runs) into buckets 1..n_buckets."""
    rows = []
    for t in texts:
        words = sorted(set(tokenize(t)))
        rows.append([zlib.crc32(w.encode()) % n_buckets + 1 for w in words])
    return Ragged.from_lists(rows)


@dataclass
class ItemFeatures:
    """Encoded content of ``n`` item rows (row 0 = padding), as the towers consume it.

    ``categorical`` (n, C) codes (0 = missing) — categorical columns, then numeric quantile buckets;
    ``numeric`` (n, K) standardised values (missing -> 0) and ``missing`` (n, K) 1.0 where missing;
    ``bags`` one Ragged per multi-hot or text column (codes or hashed words, 1-based)."""

    categorical: np.ndarray
    numeric: np.ndarray
    missing: np.ndarray
    bags: list[Ragged] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.categorical.shape[0])

    def empty_rows(self) -> np.ndarray:
        """Rows with no feature value at all."""
        has = (self.categorical > 0).any(axis=1) | (self.missing < 1).any(axis=1)
        for b in self.bags:
            has |= b.lengths > 0
        return np.flatnonzero(~has)

    def concat(self, other: ItemFeatures) -> ItemFeatures:
        """These rows followed by ``other``'s (other's padding row 0 dropped)."""
        bags = [Ragged(np.concatenate([a.values, b.values[b.offsets[1]:]]),
                       np.concatenate([a.offsets, b.offsets[2:] - b.offsets[1] + a.offsets[-1]]))
                for a, b in zip(self.bags, other.bags)]
        return ItemFeatures(np.concatenate([self.categorical, other.categorical[1:]]),
                            np.concatenate([self.numeric, other.numeric[1:]]),
                            np.concatenate([self.missing, other.missing[1:]]), bags)

    def to_state(self, prefix: str) -> dict[str, np.ndarray]:
        state = {f"{prefix}.categorical": self.categorical, f"{prefix}.numeric": self.numeric,
                 f"{prefix}.missing": self.missing}
        for j, b in enumerate(self.bags):
            state[f"{prefix}.bag{j}.values"], state[f"{prefix}.bag{j}.offsets"] = b.values, b.offsets
        return state

    @classmethod
    def from_state(cls, prefix: str, state: dict[str, np.ndarray], n_bags: int) -> ItemFeatures:
        bags = [Ragged(state[f"{prefix}.bag{j}.values"], state[f"{prefix}.bag{j}.offsets"]) for j in range(n_bags)]
        return cls(np.asarray(state[f"{prefix}.categorical"]), np.asarray(state[f"{prefix}.numeric"]),
                   np.asarray(state[f"{prefix}.missing"]), bags)

    def to_torch(self, device: torch.device | str | None = None) -> TorchItemFeatures:
        return TorchItemFeatures(
            torch.as_tensor(self.categorical, device=device),
            torch.as_tensor(self.numeric, device=device),
            torch.as_tensor(self.missing, device=device),
            [b.to_torch(device) for b in self.bags],
        )


@dataclass
class TorchItemFeatures:
    """``ItemFeatures`` as tensors on one device; ``take(rows)`` gathers the rows a batch needs."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    missing: torch.Tensor
    bags: list[tuple[torch.Tensor, torch.Tensor]]

    def take(self, rows: torch.Tensor) -> TorchItemFeatures:
        return TorchItemFeatures(self.categorical[rows], self.numeric[rows], self.missing[rows],
                                 [ragged_select(v, o, rows) for v, o in self.bags])


class FeatureEncoder:
    """Learns, from the training items' FeatureTable, how to encode any table with the same columns.

    ``columns`` picks the columns to use (None: all). Numeric columns are standardised with the
    training mean / std and also bucketed by ``n_quantiles`` training quantiles; text columns become
    ``n_hash_buckets`` hashed word ids."""

    def __init__(self, *, columns: list[str] | None = None, n_quantiles: int = 10,
                 n_hash_buckets: int = 4096) -> None:
        self.columns = None if columns is None else list(columns)
        self.n_quantiles = n_quantiles
        self.n_hash_buckets = n_hash_buckets

    def fit(self, table: FeatureTable) -> FeatureEncoder:
        use = table.columns if self.columns is None else self.columns
        unknown = [c for c in use if c not in table.columns]
        if unknown:
            raise DataError(f"item feature columns {unknown} were asked for; the item features have {table.columns}.")
        self.categorical_ = [c for c in table.categorical if c in use]
        self.multi_hot_ = [c for c in table.multi_hot if c in use]
        self.numeric_ = [c for c in table.numeric if c in use]
        self.text_ = [c for c in table.text if c in use]
        self.vocab_sizes_ = {c: len(table.vocabularies.get(c, [])) + 1 for c in self.categorical_ + self.multi_hot_}
        for c in self.categorical_:  # codes beyond the vocabulary would index out of the embedding table
            self.vocab_sizes_[c] = max(self.vocab_sizes_[c], int(table.categorical[c].max()) + 1)
        for c in self.multi_hot_:
            vals = table.multi_hot[c].values
            self.vocab_sizes_[c] = max(self.vocab_sizes_[c], int(vals.max()) + 1 if vals.size else 1)
        self.vocabularies_ = {c: list(table.vocabularies.get(c, [])) for c in self.categorical_ + self.multi_hot_}
        self.stats_: dict[str, dict[str, Any]] = {}
        for c in self.numeric_:
            x = table.numeric[c][1:].astype(np.float64)
            x = x[np.isfinite(x)]
            mean = float(x.mean()) if x.size else 0.0
            std = float(x.std()) if x.size > 1 else 1.0
            edges = np.unique(np.quantile(x, np.linspace(0, 1, self.n_quantiles + 1)[1:-1])) if x.size else []
            self.stats_[c] = {"mean": mean, "std": std if std > 0 else 1.0, "edges": [float(e) for e in edges]}
        return self

    # sizes the embedders need -----------------------------------------------------------------
    @property
    def categorical_sizes(self) -> list[int]:
        """Table sizes of the columns of ``ItemFeatures.categorical`` (categorical, then numeric buckets)."""
        return [self.vocab_sizes_[c] for c in self.categorical_] + \
               [len(self.stats_[c]["edges"]) + 2 for c in self.numeric_]

    @property
    def bag_sizes(self) -> list[int]:
        return [self.vocab_sizes_[c] for c in self.multi_hot_] + [self.n_hash_buckets + 1] * len(self.text_)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_)

    @property
    def columns_used_(self) -> list[str]:
        return [*self.categorical_, *self.multi_hot_, *self.numeric_, *self.text_]

    @property
    def n_bags(self) -> int:
        return len(self.multi_hot_) + len(self.text_)

    def encode_frame(self, frame: pd.DataFrame, *, id_col: str, vocab: IdVocab) -> ItemFeatures:
        """Encode one row per id of ``vocab`` from a DataFrame holding the training feature columns
        (multi-hot cells as lists or "|"-joined strings): how new (cold) items get their features."""
        if id_col not in frame.columns:
            raise DataError(f"id_col={id_col!r} is not a column of the item frame; its columns are {list(frame.columns)}.")
        frame = frame.copy()
        for c in self.multi_hot_:
            if c in frame.columns:
                frame[c] = [list(x) if isinstance(x, (list, tuple, np.ndarray)) else
                            ([] if x is None or (isinstance(x, float) and np.isnan(x)) else
                             [t.strip() for t in str(x).split("|") if t.strip()]) for x in frame[c]]
        table = FeatureTable.from_frame(frame, id_col=id_col, vocab=vocab, categorical=self.categorical_,
                                        multi_hot={c: None for c in self.multi_hot_}, numeric=self.numeric_,
                                        text=self.text_, vocabularies=self.vocabularies_)
        return self.encode(table)

    def encode(self, table: FeatureTable) -> ItemFeatures:
        """One row per row of ``table`` (same vocabularies as the training table)."""
        missing = [c for c in self.categorical_ if c not in table.categorical] + \
                  [c for c in self.multi_hot_ if c not in table.multi_hot] + \
                  [c for c in self.numeric_ if c not in table.numeric] + [c for c in self.text_ if c not in table.text]
        if missing:
            raise DataError(f"the item features lack columns {missing} that this model was trained with; "
                            f"they have {table.columns}.")
        n = table.n_rows
        cats = [np.clip(table.categorical[c], 0, self.vocab_sizes_[c] - 1) for c in self.categorical_]
        nums = np.zeros((n, len(self.numeric_)), dtype=np.float32)
        miss = np.zeros((n, len(self.numeric_)), dtype=np.float32)
        for j, c in enumerate(self.numeric_):
            x = table.numeric[c].astype(np.float64)
            bad = ~np.isfinite(x)
            st = self.stats_[c]
            nums[:, j] = np.where(bad, 0.0, (x - st["mean"]) / st["std"])
            miss[:, j] = bad
            cats.append(np.where(bad, 0, np.searchsorted(np.asarray(st["edges"]), x, side="right") + 1))
        categorical = np.stack(cats, axis=1).astype(np.int64) if cats else np.zeros((n, 0), dtype=np.int64)
        categorical[0] = 0
        nums[0], miss[0] = 0.0, 1.0
        bags = []
        for c in self.multi_hot_:
            r = table.multi_hot[c]
            bags.append(Ragged(np.where(r.values < self.vocab_sizes_[c], r.values, 0), r.offsets))
        for c in self.text_:
            bags.append(hash_tokens(table.text[c], self.n_hash_buckets))
        return ItemFeatures(categorical, nums, miss, bags)

    # persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "n_quantiles": self.n_quantiles, "n_hash_buckets": self.n_hash_buckets,
                "categorical": self.categorical_, "multi_hot": self.multi_hot_, "numeric": self.numeric_,
                "text": self.text_, "vocab_sizes": self.vocab_sizes_, "vocabularies": self.vocabularies_,
                "stats": self.stats_}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureEncoder:
        enc = cls(columns=d["columns"], n_quantiles=d["n_quantiles"], n_hash_buckets=d["n_hash_buckets"])
        enc.categorical_, enc.multi_hot_ = list(d["categorical"]), list(d["multi_hot"])
        enc.numeric_, enc.text_ = list(d["numeric"]), list(d["text"])
        enc.vocab_sizes_ = {k: int(v) for k, v in d["vocab_sizes"].items()}
        enc.vocabularies_ = {k: list(v) for k, v in d["vocabularies"].items()}
        enc.stats_ = d["stats"]
        return enc


class FeatureEmbedder(nn.Module):
    """Item feature rows -> (n, out_dim): concatenated embeddings of every column (the input layer)."""

    def __init__(self, encoder: FeatureEncoder, *, dim: int) -> None:
        super().__init__()
        self.cat = nn.ModuleList(nn.Embedding(s, dim, padding_idx=0) for s in encoder.categorical_sizes)
        self.bags = nn.ModuleList(BagPool(s, dim) for s in encoder.bag_sizes)
        self.n_numeric = encoder.n_numeric
        self.out_dim = dim * (len(self.cat) + len(self.bags)) + 2 * self.n_numeric
        if self.out_dim == 0:
            raise InvalidParameterError("the item feature table has no usable column; expected at least one "
                                        "categorical, multi-hot, numeric or text column.")

    def forward(self, f: TorchItemFeatures) -> torch.Tensor:
        parts = [emb(f.categorical[:, j]) for j, emb in enumerate(self.cat)]  # each (n, dim)
        parts += [bag(v, o) for bag, (v, o) in zip(self.bags, f.bags)]  # each (n, dim)
        if self.n_numeric:
            parts += [f.numeric, f.missing]  # (n, K) each
        return torch.cat(parts, dim=1)  # (n, out_dim)


class ContentTower(nn.Module):
    """Item rows -> (n, out_dim) vectors from their features (+ an id embedding for training items).

    The features of every known item live in ``features`` (a TorchItemFeatures set by the model); a row
    beyond ``n_id_rows`` (an item added after training) gets no id part: its vector comes from its
    features alone. ``id_dropout`` zeroes the id part of random items while training, so the
    features-only vectors stay good for cold items."""

    def __init__(self, encoder: FeatureEncoder, *, feature_dim: int, hidden: list[int], out_dim: int,
                 n_id_rows: int = 0, id_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = FeatureEmbedder(encoder, dim=feature_dim)
        self.mlp = mlp([self.embed.out_dim, *hidden, out_dim], dropout=dropout)
        check_tables("dim", out_dim, {"item id": n_id_rows})
        self.ids = nn.Embedding(n_id_rows, out_dim, padding_idx=0) if n_id_rows else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.01)
            with torch.no_grad():
                self.ids.weight[0].zero_()
        self.id_dropout = id_dropout
        self.features: TorchItemFeatures | None = None

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            raise InvalidParameterError("ContentTower.features is not set; give it the encoded item features first.")
        out = self.mlp(self.embed(self.features.take(rows)))  # (n, out_dim)
        if self.ids is not None:
            id_rows = torch.where(rows < self.ids.num_embeddings, rows, torch.zeros_like(rows))  # (n,)
            if self.training and self.id_dropout > 0:
                keep = torch.rand(rows.shape, device=rows.device) >= self.id_dropout
                id_rows = torch.where(keep, id_rows, torch.zeros_like(id_rows))
            out = out + self.ids(id_rows) * (id_rows > 0).unsqueeze(1)  # (n, out_dim); cold rows: nothing
        return out
