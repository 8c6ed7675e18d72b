"""A tiny embedding model with planted item vectors, for testing retrieval, serving and reports
without training: items of one cluster share a direction, popular items get longer vectors, and a
user is the mean of their history's item vectors. Register it for a test with ``registered``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np

from embrec.data import FeatureTable, Interactions, Ragged
from embrec.models import registry
from embrec.models.base import EmbeddingModel


class PlantedVectors(EmbeddingModel):
    """Item vector = cluster centre + noise, scaled by 1 + log(1 + count). The cluster is the item's
    "category" feature when the data has one, else ``row % n_clusters``."""

    def __init__(self, *, dim: int = 16, n_clusters: int = 5, noise: float = 0.2, seed: int = 0) -> None:
        self.dim = dim
        self.n_clusters = n_clusters
        self.noise = noise
        self.seed = seed

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        rng = np.random.default_rng(self.seed)
        feats = train.item_features
        if feats is not None and "category" in feats.categorical:
            cluster = feats.categorical["category"] - 1  # (items.size,), -1 for padding
        else:
            cluster = np.arange(train.items.size) % self.n_clusters
        k = int(cluster.max()) + 1
        centres = rng.normal(size=(k, self.dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vecs = centres[np.maximum(cluster, 0)] + self.noise * rng.normal(size=(train.items.size, self.dim))
        vecs *= (1.0 + np.log1p(self.item_counts_))[:, None]
        vecs[0] = 0.0
        self.item_vectors_ = vecs.astype(np.float32)  # (items.size, dim)
        self.cluster_ = cluster.astype(np.int64)
        self.feature_table_ = feats
        self.history_ = [{"epoch": e, "loss": 1.0 / e, "valid": 0.1 * e, "seconds": 0.01} for e in (1, 2, 3)]

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        sums = np.zeros((len(histories), self.dim), dtype=np.float32)
        np.add.at(sums, histories.row_ids, self.item_vectors_[histories.values])
        return sums / np.maximum(histories.lengths, 1)[:, None]  # (B, dim)

    def _item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    def _get_state(self) -> dict[str, np.ndarray]:
        state = {"item_vectors": self.item_vectors_, "cluster": self.cluster_}
        if self.feature_table_ is not None:
            state.update(self.feature_table_.to_state("item_features")[0])
        return state

    def _get_extra(self) -> dict[str, Any]:
        if self.feature_table_ is None:
            return {}
        return {"item_features": self.feature_table_.to_state("item_features")[1]}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.item_vectors_ = state["item_vectors"]
        self.cluster_ = state["cluster"]
        self.feature_table_ = (FeatureTable.from_state("item_features", state, extra["item_features"])
                               if "item_features" in extra else None)


@contextmanager
def registered():
    """Make ``PlantedVectors`` known to the registry (as "planted") for the duration of a block."""
    original = registry._models

    def models() -> dict[str, type]:
        return {**original(), "planted": PlantedVectors}

    registry._models = models
    try:
        yield
    finally:
        registry._models = original
