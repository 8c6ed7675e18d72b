"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

    model = EASE(regularization=100.0).fit(train)
    model.recommend(histories=[["85123A", "71053"]], k=5)     # anyone: scores are x_u @ B

With ``X`` the (users x items) training matrix (binary by default), EASE solves
``min_B ||X - X B||² + λ ||B||²`` subject to ``diag(B) = 0``; the solution is

    P = (XᵀX + λI)⁻¹          B = I − P · diag(1 / diag(P))      i.e. B_ij = −P_ij / P_jj,  B_jj = 0

The inverse is of a dense items x items matrix: the model refuses a catalogue whose matrices would take
more than ``max_gib`` GiB (about three float64 items x items arrays at the peak) with the size in the
message. Item rows of the padding (0) and items without training events get all-zero weights.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from embrec.baselines.item_item import CONFIDENCES, ItemItemModel, user_item_matrix
from embrec.data.interactions import Interactions
from embrec.errors import DataError, ModelFileError, check_choice, check_float, check_positive_int
from embrec.models.search import Choice, FloatRange, Param

logger = logging.getLogger(__name__)

#: float64 items x items arrays alive at once while fitting: the Gram matrix/its inverse, B, a temporary
PEAK_ARRAYS = 3


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """(n, n) float64 B from the (n, n) Gram matrix XᵀX: B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹."""
    g = np.array(gram, dtype=np.float64)
    g[np.diag_indices_from(g)] += regularization
    p = scipy.linalg.inv(
        g, overwrite_a=True, check_finite=False
    )  # (n, n) symmetric positive definite
    p /= (-np.diag(p))[None, :]  # in place: B_ij = -P_ij / P_jj
    p[np.diag_indices_from(p)] = 0.0
    return p


class EASE(ItemItemModel):
    """Embarrassingly shallow autoencoder: ridge regression of every item on all others, diagonal zero."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "regularization": FloatRange(1.0, 5000.0, log=True),
        "confidence": Choice(("binary", "log", "count")),
    }

    def __init__(
        self,
        *,
        regularization: float = 100.0,
        confidence: str = "binary",
        max_gib: float = 4.0,
        num_threads: int = 1,
    ) -> None:
        self.regularization = check_float("regularization", regularization, low=0.0, low_open=True)
        self.confidence = check_choice("confidence", confidence, CONFIDENCES)
        self.max_gib = check_float("max_gib", max_gib, low=0.0, low_open=True)
        self.num_threads = check_positive_int("num_threads", num_threads)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        active = np.flatnonzero(train.item_counts()[1:] > 0) + 1  # item rows with training events
        n = active.size
        need = PEAK_ARRAYS * 8 * n * n
        if need > self.max_gib * 2**30:
            raise DataError(
                f"EASE needs dense {n:,} x {n:,} item matrices ({need / 2**30:.1f} GiB while fitting), more than "
                f"max_gib={self.max_gib:g} GiB; use item-knn for a catalogue this large, or raise max_gib."
            )
        x = user_item_matrix(train, self.confidence)[:, active]  # (U, n)
        with threadpool_limits(self.num_threads, "blas"):
            b = ease_weights((x.T @ x).toarray(), self.regularization)  # (n, n)
        full = np.zeros((train.items.size, train.items.size), dtype=np.float32)
        full[np.ix_(active, active)] = b
        self.weights_ = full  # (I, I)
        logger.info("EASE: %d x %d item weights, lambda=%g", n, n, self.regularization)

    def _weights(self) -> np.ndarray:
        return self.weights_

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        n = self.items_.size
        if state["weights"].shape != (n, n):
            raise ModelFileError(f"weights has shape {state['weights'].shape}, expected {(n, n)}.")
        self.weights_ = state["weights"].astype(np.float32)
