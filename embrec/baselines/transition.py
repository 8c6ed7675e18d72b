"""Item transition: first-order next-item counts within transactions, smoothed towards the user.

Fit counts ``C[a, b]``: how often item ``b`` directly follows item ``a`` inside a transaction (a group;
without groups, inside each user's time-ordered history). The next item after ``a`` for user ``u``::

    P(b | a, u) = (C[a, b] + smoothing * P_u(b)) / (sum_b C[a, b] + smoothing)
    P_u(b)      = (n_u(b) + user_smoothing * P_pop(b)) / (n_u + user_smoothing)

where ``n_u(b)`` counts ``b`` in the user's history and ``P_pop`` is training popularity: transitions
first, backing off to the user's own purchases and then to global popularity. ``next_item_scores``
takes ``a`` = the last known item of the transaction so far; ``_scores`` (whole-history ranking) the
last item of the history. An unknown user with no history falls back to popularity.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import check_float
from embrec.models.base import Recommender
from embrec.models.search import FloatRange, Param


class ItemTransition(Recommender):
    """First-order item -> next-item model with back-off to the user's and the global popularity."""

    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "smoothing": FloatRange(0.01, 100.0, log=True),
        "user_smoothing": FloatRange(0.01, 100.0, log=True),
    }

    def __init__(self, *, smoothing: float = 1.0, user_smoothing: float = 1.0) -> None:
        self.smoothing = check_float("smoothing", smoothing, low=0.0, low_open=True)
        self.user_smoothing = check_float("user_smoothing", user_smoothing, low=0.0, low_open=True)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        n = train.items.size
        if train.group is not None:
            item, same = train.item, train.group[1:] == train.group[:-1]
        else:  # no transactions: consecutive events of a user's time-ordered history
            hist = train.user_histories()
            item = hist.values
            same = hist.row_ids[1:] == hist.row_ids[:-1]
            same &= np.repeat(np.arange(len(hist)), hist.lengths)[1:] > 0  # not across unknown users
        src, dst = item[:-1][same], item[1:][same]
        keep = (src > 0) & (dst > 0)
        counts = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (src[keep], dst[keep])), shape=(n, n))
        counts.sum_duplicates()
        self.transitions_ = counts  # (I, I)
        pop = train.item_counts().astype(np.float64)
        pop[0] = 0.0
        self.popularity_ = (pop / pop.sum()).astype(np.float32)  # (I,)

    # scoring ------------------------------------------------------------------------------------
    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        return self._mix(_last_known(histories), self._user_dist(histories))

    def next_item_scores(self, user_rows: np.ndarray, prefixes: Ragged) -> np.ndarray:
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64)
        distinct, inverse = np.unique(user_rows, return_inverse=True)
        return self._mix(_last_known(prefixes), self._user_dist(_histories(self.seen_, distinct))[inverse])

    def _user_dist(self, histories: Ragged) -> np.ndarray:
        n = self.popularity_.size
        own = np.bincount(histories.row_ids * n + histories.values, minlength=len(histories) * n)
        own = own.reshape(len(histories), n).astype(np.float32)  # (B, I)
        own[:, 0] = 0.0
        total = own.sum(axis=1, keepdims=True)  # (B, 1)
        return (own + self.user_smoothing * self.popularity_) / (total + self.user_smoothing)

    def _mix(self, last: np.ndarray, user_dist: np.ndarray) -> np.ndarray:
        follow = self.transitions_[last].toarray()  # (B, I); row 0 (no last item) is empty
        total = follow.sum(axis=1, keepdims=True)  # (B, 1)
        return (follow + self.smoothing * user_dist) / (total + self.smoothing)

    # persistence --------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        t = self.transitions_
        return {"popularity": self.popularity_, "transitions.data": t.data, "transitions.indices": t.indices,
                "transitions.indptr": t.indptr}

    def _set_state(self, state, extra) -> None:
        self.popularity_ = state["popularity"]
        n = self.popularity_.size
        self.transitions_ = sp.csr_matrix(
            (state["transitions.data"], state["transitions.indices"], state["transitions.indptr"]), shape=(n, n))


def _histories(seen: Ragged, rows: np.ndarray) -> Ragged:
    """Training histories of user ``rows``; row 0 (every unknown user's events pooled) counts as empty."""
    known = seen.select(rows[rows > 0])
    lengths = np.zeros(rows.size, dtype=np.int64)
    lengths[rows > 0] = known.lengths
    return Ragged.from_lengths(known.values, lengths)


def _last_known(rows: Ragged) -> np.ndarray:
    """(B,) the last non-zero value of every row (0 when there is none)."""
    keep = rows.values > 0
    ends = np.zeros(len(rows), dtype=np.int64)
    row_of = rows.row_ids[keep]
    ends[row_of] = rows.values[keep]  # later positions overwrite earlier ones
    return ends
