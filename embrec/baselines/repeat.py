"""Repeat frequency: recommend a user's own most-bought items again.

On shop logs repeat purchases are the rule: this baseline ranks the items of the user's history by how
many times they were bought, global popularity breaking ties and filling the list up. A user unknown
to training is ranked from the history given (``recommend(histories=...)``), else by popularity.
"""

from __future__ import annotations

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.models.base import Recommender


class RepeatFrequency(Recommender):
    """score(u, i) = times u bought i + popularity(i) / (max popularity + 1), a fraction below one."""

    def __init__(self) -> None:
        pass

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        counts = train.item_counts().astype(np.float64)
        counts[0] = 0.0
        self.popularity_ = (counts / (counts.max() + 1.0)).astype(np.float32)  # (I,) in [0, 1)

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        n = self.popularity_.size
        own = np.bincount(histories.row_ids * n + histories.values, minlength=len(histories) * n)
        return own.reshape(len(histories), n).astype(np.float64) + self.popularity_  # (B, I)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, state, extra) -> None:
        self.popularity_ = state["popularity"]
