"""Item-KNN through the ``implicit`` library: cosine, BM25 or TF-IDF item neighbours, wrapped.

    model = ItemKNN(weighting="tfidf", neighbours=20).fit(train)
    model.recommend(histories=[["85123A", "71053"]], k=5)     # anyone: scores are x_u @ S

``weighting`` picks implicit's ``CosineRecommender``, ``BM25Recommender`` (``bm25_k1``, ``bm25_b``) or
``TFIDFRecommender``; each keeps the ``neighbours`` most similar items of every item (a sparse items x
items ``S``, the library's ``similarity``). The score of item ``i`` for a history ``x_u`` (its counts,
weighed by ``confidence``) is ``Σ_j x_uj S_ji``, the sum the library's own ``recommend`` computes, so a
user unknown to training is folded in by scoring their history the same way.

The default ``weighting="tfidf"`` was chosen by ``benchmarks/choose_defaults.py`` on validation parts
carved from the training parts of ml-100k leave-last-out, Online Retail leave-last-out and ml100k-top10:
the best worst case over the three (BM25 lost 10 % on ml-100k leave-last-out, cosine 41 % on Online
Retail); figures in docs/benchmarks.md ("Defaults chosen on validation parts").
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from embrec.baselines.item_item import CONFIDENCES, ItemItemModel, user_item_matrix
from embrec.data.interactions import Interactions
from embrec.errors import ModelFileError, check_choice, check_float, check_positive_int
from embrec.models.search import Choice, FloatRange, IntRange, Param

logger = logging.getLogger(__name__)

WEIGHTINGS = ("cosine", "bm25", "tfidf")


class ItemKNN(ItemItemModel):
    """Item-item nearest neighbours (``implicit.nearest_neighbours``) over the training matrix."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "weighting": Choice(("cosine", "bm25", "tfidf")),
        "neighbours": IntRange(5, 500, log=True),
        "bm25_k1": FloatRange(0.1, 10.0, log=True),
        "bm25_b": FloatRange(0.0, 1.0),
    }

    def __init__(
        self,
        *,
        weighting: str = "tfidf",
        neighbours: int = 20,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        confidence: str = "count",
        num_threads: int = 0,
    ) -> None:
        self.weighting = check_choice("weighting", weighting, WEIGHTINGS)
        self.neighbours = check_positive_int("neighbours", neighbours)
        self.bm25_k1 = check_float("bm25_k1", bm25_k1, low=0.0)
        self.bm25_b = check_float("bm25_b", bm25_b, low=0.0, high=1.0)
        self.confidence = check_choice("confidence", confidence, CONFIDENCES)
        self.num_threads = check_positive_int("num_threads", num_threads, minimum=0)

    def library_model(self):
        """An unfitted implicit recommender with these settings."""
        from implicit import nearest_neighbours as nn

        if self.weighting == "bm25":
            return nn.BM25Recommender(
                K=self.neighbours, K1=self.bm25_k1, B=self.bm25_b, num_threads=self.num_threads
            )
        cls = nn.CosineRecommender if self.weighting == "cosine" else nn.TFIDFRecommender
        return cls(K=self.neighbours, num_threads=self.num_threads)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        matrix = user_item_matrix(train, self.confidence)  # (U, I)
        knn = self.library_model()
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # the library's own weighting hands its fit a COO matrix and then warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            knn.fit(matrix, show_progress=False)
        sim = sp.csr_matrix(knn.similarity, dtype=np.float32)  # (I, I)
        sim.eliminate_zeros()
        self.similarity_ = sim

    def _weights(self) -> sp.csr_matrix:
        return self.similarity_

    def _get_state(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {
            "similarity.data": s.data,
            "similarity.indices": s.indices,
            "similarity.indptr": s.indptr,
        }

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        n = self.items_.size
        if state["similarity.indptr"].shape != (n + 1,):
            raise ModelFileError(
                f"similarity.indptr has shape {state['similarity.indptr'].shape}, "
                f"expected {(n + 1,)}."
            )
        self.similarity_ = sp.csr_matrix(
            (state["similarity.data"], state["similarity.indices"], state["similarity.indptr"]),
            shape=(n, n),
        )
