"""Global popularity: every user gets the most-bought items of the training data."""

from __future__ import annotations

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.models.base import Recommender


class Popularity(Recommender):
    """Scores an item by its number of training events (users, histories and order ignored)."""

    def __init__(self) -> None:
        pass

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.counts_ = train.item_counts().astype(np.float32)

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(user_rows), self.counts_.size))

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _set_state(self, state, extra) -> None:
        self.counts_ = state["counts"]
