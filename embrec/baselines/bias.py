"""Rating baseline: global mean + user bias + item bias, fitted by alternating least squares.

    r(u, i) = mu + b_u + b_i

as Surprise's ``BaselineOnly`` (Koren 2010, §2.1): ``epochs`` rounds of, first for items, then for users,

    b_i = sum_u (r_ui - mu - b_u) / (item_reg + n_i)        b_u = sum_i (r_ui - mu - b_i) / (user_reg + n_u)

A user or item unknown to training (row 0) gets bias 0. Ranking uses the same score, so for a given
user the items come in the order of their biases.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, check_float, check_positive_int
from embrec.models.base import Recommender
from embrec.models.search import FloatRange, IntRange, Param


class RatingBias(Recommender):
    """mu + b_u + b_i with L2-damped biases (explicit ratings)."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "user_reg": FloatRange(0.1, 100.0, log=True),
        "item_reg": FloatRange(0.1, 100.0, log=True),
        "epochs": IntRange(1, 30),
    }

    predicts_ratings = True
    needs = ("ratings",)

    def __init__(self, *, epochs: int = 10, user_reg: float = 15.0, item_reg: float = 10.0) -> None:
        self.epochs = check_positive_int("epochs", epochs)
        self.user_reg = check_float("user_reg", user_reg, low=0.0)
        self.item_reg = check_float("item_reg", item_reg, low=0.0)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating is None:
            raise DataError("RatingBias needs ratings; the training table has no rating column.")
        known = (train.user > 0) & (train.item > 0)
        u, i, r = train.user[known], train.item[known], train.rating[known].astype(np.float64)
        self.mean_ = float(r.mean())
        n_u = np.bincount(u, minlength=train.users.size)
        n_i = np.bincount(i, minlength=train.items.size)
        b_u = np.zeros(train.users.size)
        b_i = np.zeros(train.items.size)
        for _ in range(self.epochs):
            b_i = np.bincount(i, r - self.mean_ - b_u[u], minlength=b_i.size) / np.maximum(self.item_reg + n_i, 1e-12)
            b_u = np.bincount(u, r - self.mean_ - b_i[i], minlength=b_u.size) / np.maximum(self.user_reg + n_u, 1e-12)
        b_u[0] = b_i[0] = 0.0
        self.user_bias_ = b_u.astype(np.float32)
        self.item_bias_ = b_i.astype(np.float32)

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """(n,) predicted ratings for dense (user row, item row) pairs; row 0 = unknown -> bias 0."""
        self._check_fitted()
        u = np.asarray(user_rows, dtype=np.int64)
        i = np.asarray(item_rows, dtype=np.int64)
        return self.mean_ + self.user_bias_[u] + self.item_bias_[i]

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self.mean_ + self.user_bias_[np.asarray(user_rows)][:, None] + self.item_bias_[None, :]  # (B, I)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "mean": np.asarray([self.mean_], dtype=np.float64)}

    def _set_state(self, state, extra) -> None:
        self.user_bias_, self.item_bias_ = state["user_bias"], state["item_bias"]
        self.mean_ = float(state["mean"][0])
