"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the ``implicit`` library, wrapped.

    model = ALS(factors=64, regularization=10.0, alpha=4.0).fit(train)
    model.recommend(histories=[["85123A", "71053"]], k=5)     # a new user: the library's own fold-in

The training matrix is users x items of confidences: ``confidence`` chooses what an entry is (the
number of events, 1, or log1p of the count) and the library multiplies it by ``alpha``. Rows and
columns 0 (unknown users, padding) stay empty, so implicit's factor rows line up with our vocabulary
rows. A user never seen in training is folded in by the exact least-squares solution for that user
with the item factors fixed (``ALS.fold_in``; the same system as implicit's ``recalculate_user``,
solved here in float64 without a call into the library, so no per-call thread-pool scan).

The defaults (binary confidence, ``alpha`` 4, ``regularization`` 10; implicit's own are counts, 1 and
0.01) were chosen by ``benchmarks/choose_defaults.py`` on validation parts carved from training data
only (ml-100k and Online Retail leave-last-out, ml100k-top10, and two parts imitating a log with few
users and a wide catalogue): the best worst case over the five parts (docs/benchmarks.md, "Defaults
chosen on validation parts"): implicit's defaults reached 0.77 of the best candidate on their worst
part (ml100k-top10), these 0.82 (on Online Retail), at the same fit time.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import check_choice, check_float, check_positive_int
from embrec.memory import check_tables
from embrec.models.base import EmbeddingModel
from embrec.models.foldin import distinct_items, one_blas_thread, weighted_ridge
from embrec.models.search import Choice, FloatRange, IntRange, Param

logger = logging.getLogger(__name__)

CONFIDENCES = ("count", "binary", "log")


class ALS(EmbeddingModel):
    """Alternating least squares on confidence-weighted implicit feedback (``implicit.cpu.als``)."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "factors": IntRange(16, 256, log=True),
        "regularization": FloatRange(1e-3, 30.0, log=True),
        "alpha": FloatRange(0.1, 50.0, log=True),
        "iterations": IntRange(5, 30),
        "confidence": Choice(("count", "binary", "log")),
    }

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 4.0,
        iterations: int = 15,
        confidence: str = "binary",
        use_cg: bool = True,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.factors = check_positive_int("factors", factors)
        self.regularization = check_float("regularization", regularization, low=0.0)
        self.alpha = check_float("alpha", alpha, low=0.0, low_open=True)
        self.iterations = check_positive_int("iterations", iterations)
        self.confidence = check_choice("confidence", confidence, CONFIDENCES)
        self.use_cg = bool(use_cg)
        self.num_threads = check_positive_int("num_threads", num_threads, minimum=0)
        self.seed = int(seed)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        known = np.ones(train.users.size, dtype=np.float32)
        known[0] = 0.0  # unknown users (row 0) are nobody's history
        matrix = (sp.diags(known) @ self._confidences(train.to_csr("count"))).tocsr()
        matrix.eliminate_zeros()
        check_tables("factors", self.factors, {"user": train.users.size, "item": train.items.size})
        als = self._library_model()
        with threadpool_limits(1, "blas"):  # implicit's advice: BLAS threads fight its own
            als.fit(matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(als.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(als.item_factors, dtype=np.float32)
        self._als = als
        self.__dict__.pop("_gram", None)

    def _confidences(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        m = counts.astype(np.float32).tocsr(copy=True)
        if self.confidence == "binary":
            m.data[:] = 1.0
        elif self.confidence == "log":
            m.data = np.log1p(m.data)
        return m

    def _library_model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        with threadpool_limits(1, "blas"):  # implicit checks (and warns about) BLAS threads here
            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                use_cg=self.use_cg,
                num_threads=self.num_threads,
                random_state=self.seed,
            )

    # embeddings -------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        user_rows = np.asarray(user_rows, dtype=np.int64)
        out = self.user_factors_[user_rows].copy()  # (B, d)
        new = np.flatnonzero(user_rows == 0)
        if new.size:
            out[new] = self.fold_in(histories.select(new))
        return out

    @one_blas_thread
    def fold_in(self, histories: Ragged) -> np.ndarray:
        """(B, d) user factors for histories of item rows, item factors Y fixed: each user's exact
        least-squares solution, the step ALS training takes for every user (and what implicit's
        ``recalculate_user`` returns)::

            min_x  Σ_i c_i (p_i - x · y_i)² + λ |x|²   ⇔   (YᵀY + λI + Σ_h (c_h - 1) y_h y_hᵀ) x = Σ_h c_h y_h

        with p_i = 1 on the history's items (0 elsewhere) and confidence c_h = alpha · confidence(count)
        there (1 elsewhere). YᵀY + λI is built once per model; each user adds their own history rows."""
        base = self.__dict__.get("_gram")
        if base is None:
            y = self.item_factors_.astype(np.float64)
            base = self._gram = y.T @ y + self.regularization * np.eye(y.shape[1])
        users = []
        for items, counts in distinct_items(histories):
            conf = self.alpha * self._confidence_values(counts.astype(np.float64))
            users.append((items, conf - 1.0, conf))
        return weighted_ridge(self.item_factors_, base, users).astype(np.float32)

    def _confidence_values(self, counts: np.ndarray) -> np.ndarray:
        if self.confidence == "binary":
            return np.ones_like(counts)
        return np.log1p(counts) if self.confidence == "log" else counts

    # persistence ------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        for name, rows in (("user_factors", self.users_.size), ("item_factors", self.items_.size)):
            if state[name].shape != (rows, self.factors):
                raise ValueError(
                    f"{name} has shape {state[name].shape}, expected {(rows, self.factors)}"
                )
        self.user_factors_ = state["user_factors"].astype(np.float32)
        self.item_factors_ = state["item_factors"].astype(np.float32)
        self._als = None
        self.__dict__.pop("_gram", None)
