"""What the item-item baselines (EASE, item-KNN) share: a user x item matrix and neighbour queries.

Both score a user by ``x_u @ W``, where ``x_u`` (1, I) is the user's history as a row of weights and
``W`` (I, I) an item-to-item weight matrix learned from training. The history is all they need, so a
user never seen in training is scored from the history given, exactly like a known one (no fold-in
step). Row 0 of the training matrix (every unknown user's events pooled) is left out of learning, and
column 0 (padding) stays empty.

``similar_items`` ranks the neighbours of item ``i`` by ``W[i, j]``: what a history of ``i`` alone gives
``j``. That weight already is the model's similarity (implicit's cosine / BM25 / TF-IDF neighbour
score; EASE's regression weight), so ``measure`` ("cosine" or "dot", for the common interface) does
not change the order for these models.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError, check_choice
from embrec.models.base import Recommendations, Recommender, top_k_rows

CONFIDENCES = ("count", "binary", "log")


def user_item_matrix(train: Interactions, confidence: str) -> sp.csr_matrix:
    """(users.size, items.size) float32 CSR of training events; row 0 (unknown users) emptied."""
    counts = train.to_csr("count").astype(np.float32).tocsr()
    known = np.ones(counts.shape[0], dtype=np.float32)
    known[0] = 0.0
    matrix = (sp.diags(known) @ counts).tocsr()
    matrix.eliminate_zeros()
    return weigh(matrix, confidence)


def weigh(counts: sp.csr_matrix, confidence: str) -> sp.csr_matrix:
    """Counts -> entries: the count itself, 1, or log1p(count)."""
    m = counts.astype(np.float32).tocsr(copy=True)
    if confidence == "binary":
        m.data[:] = 1.0
    elif confidence == "log":
        m.data = np.log1p(m.data)
    return m


def history_matrix(histories: Ragged, n_items: int, confidence: str) -> sp.csr_matrix:
    """(B, n_items) CSR of histories (item rows, repeats counted), weighed like the training matrix."""
    keep = histories.values > 0  # 0 = an item unknown to training
    counts = sp.csr_matrix(
        (
            np.ones(int(keep.sum()), dtype=np.float32),
            (histories.row_ids[keep], histories.values[keep]),
        ),
        shape=(len(histories), n_items),
    )
    counts.sum_duplicates()
    return weigh(counts, confidence)


class ItemItemModel(Recommender):
    """A model scoring ``x_u @ W`` with a learned item-to-item matrix ``W`` (dense or sparse)."""

    confidence: str

    @abstractmethod
    def _weights(self) -> np.ndarray | sp.csr_matrix:
        """(items.size, items.size) the learned item-to-item weights."""

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        x = history_matrix(histories, self.items_.size, self.confidence)  # (B, I)
        scores = x @ self._weights()  # (B, I)
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32)

    def similar_items(
        self,
        items: Sequence[Any],
        k: int = 10,
        *,
        measure: str = "cosine",
        candidates: Sequence[Any] | None = None,
        exclude_items: Sequence[Any] | None = None,
    ) -> Recommendations:
        """The ``k`` items with the largest weight ``W[i, j]`` from each raw item ``i`` (itself excluded);
        ``candidates`` / ``exclude_items`` (raw ids) an allow-list / deny-list as in ``recommend``."""
        self._check_fitted()
        check_choice("measure", measure, ("cosine", "dot"))
        if isinstance(items, (str, bytes)) or np.ndim(items) == 0:
            raise InvalidParameterError(
                f"items must be a list of raw item ids; received {items!r}."
            )
        k = self._check_k(k)
        k = min(k, self.items_.n_ids - 1) or 1
        rows = self.items_.encode(list(items), unknown="error")
        allow, deny = self.restriction(candidates, exclude_items)
        w = self._weights()[rows]  # (B, I)
        sims = np.array(w.toarray() if sp.issparse(w) else w, dtype=np.float32)
        sims[:, 0] = -np.inf
        sims[np.arange(len(rows)), rows] = -np.inf
        if deny is not None:
            sims[:, deny] = -np.inf
        if allow is not None:
            keep = np.zeros(sims.shape[1], dtype=bool)
            keep[allow] = True
            sims[:, ~keep] = -np.inf
        found, scores = top_k_rows(sims, k)
        found[~np.isfinite(scores)] = 0
        return Recommendations(self.items_.decode(found), scores, found)
