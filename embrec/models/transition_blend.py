"""Transition blend: the next item of a transaction, from item transitions, the basket so far and the
customer's own history, weighed by a log-linear model learned on the training log.

``item-transition`` ranks the next item ``b`` after the basket's last item ``a`` by the smoothed first-order
probability ``P(b | a, u)``. This model takes that ranking's top ``n_candidates`` items and re-ranks them by
``x(u, basket, b) . w``, with 11 features of each candidate:

    log P(b | a, u) (item-transition's own score)      log(1 + C[a, b])      log(1 + C[b, a])
    log(1 + C[a2, b])  (a2: the item before a)          log(1 + sum over the basket's items x of S[x, b])
    log(1 + times u bought b)      sum over u's purchases of b of exp(-age in days / 30)
    log(1 + events of b)   the two before, times [the basket is empty]     [u bought b before]

``C[a, b]`` counts ``b`` directly after ``a`` in a transaction, ``S[x, b]`` the transactions holding both
``x`` and ``b``. A transaction is a group of the log; without groups, a user's events of one day
(``embrec.models.blend_fit.basket_ids``).

Fitting (``embrec.models.blend_fit``): the last ``window`` of the training events by time is cut off and
the counts are computed on the events before it. At up to ``max_rows`` rows of the window's transactions
(drawn with ``seed``), the model ranks the next item from the rows before it in the transaction, as the
``retail-next`` protocol does; the weights maximise the softmax likelihood of the item bought among the
candidates (rows whose item is not among them teach nothing and are dropped), with an L2 penalty ``l2``.
The counts are then computed again on the whole training log. The ``valid`` set handed to ``fit`` is not
used. Items outside the candidates rank after them, in item-transition's order; items already in the
basket are the caller's to remove (the protocol does).

Memory: the counts are sparse (items x items for transitions and co-occurrence, users x items for the
history); a log whose transactions would make a co-occurrence past ``MAX_COOCCURRENCE_BYTES`` (2 GiB) is
refused with a DataError before anything is fitted. Scoring densifies a block of rows at a time.

``recommend`` / ``top_k`` (a user's next item after their whole history) take the history's last item as
the basket so far; a history given by raw ids counts as the user's purchases, with no recency.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from embrec.baselines.transition import ItemTransition
from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, check_float, check_positive_int
from embrec.models.base import Recommender
from embrec.models.blend_fit import age_days, basket_ids, carve_window, fit_log_linear
from embrec.models.search import FloatRange, IntRange, Param

N_FEATURES = 11
RECENCY_DAYS = 30.0
_BEHIND = 1e3  # how far below the candidates the other items rank
_FLOOR = 1e-12  # smallest probability inside the log
#: the basket co-occurrence (sparse, items x items) may take at most this many bytes
MAX_COOCCURRENCE_BYTES = 2**31
_PAIR_BYTES = 12  # a stored float32 value and its int64 column index
_SPARSE = ("transitions", "cooccurrence", "user_counts", "user_recency")


class TransitionBlend(Recommender):
    """item-transition's candidates re-ranked by a learned blend of transition, basket and history counts."""

    needs: ClassVar[tuple[str, ...]] = ("timestamps",)
    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "window": FloatRange(0.05, 0.3),
        "n_candidates": IntRange(20, 300, log=True),
        "l2": FloatRange(1e-6, 1e-1, log=True),
    }

    def __init__(
        self,
        *,
        window: float = 0.15,
        n_candidates: int = 100,
        max_rows: int = 20_000,
        l2: float = 1e-4,
        smoothing: float = 1.0,
        user_smoothing: float = 1.0,
        max_iter: int = 100,
        seed: int = 0,
    ) -> None:
        self.window = check_float("window", window, low=0.0, high=1.0, low_open=True)
        self.n_candidates = check_positive_int("n_candidates", n_candidates)
        self.max_rows = check_positive_int("max_rows", max_rows)
        self.l2 = check_float("l2", l2, low=0.0, low_open=True)
        self.smoothing = check_float("smoothing", smoothing, low=0.0, low_open=True)
        self.user_smoothing = check_float("user_smoothing", user_smoothing, low=0.0, low_open=True)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.seed = int(seed)

    # fitting ------------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        before = carve_window(train, self.window)
        _members(train)  # refuses a co-occurrence past its memory limit before any fitting
        sub, win = train.subset(before), train.subset(~before)
        self._count(sub)
        x, owner, target = self._window_lists(win)
        init = np.zeros(N_FEATURES)
        init[0] = 1.0  # start from item-transition's ranking
        self.weights_ = fit_log_linear(
            x, owner, target, l2=self.l2, init=init, max_iter=self.max_iter
        ).astype(np.float32)
        self._count(train)

    def _count(self, log: Interactions) -> None:
        """The counts behind the features, on ``log`` (the part before the window, then all of train)."""
        n_items, n_users = log.items.size, log.users.size
        self.transition_ = ItemTransition(
            smoothing=self.smoothing, user_smoothing=self.user_smoothing
        ).fit(log)
        self.transitions_ = self.transition_.transitions_.tocsr()  # (I, I) C[a, b]
        self.reverse_ = self.transitions_.T.tocsr()  # (I, I) C[b, a]
        member = _members(log)  # (T, I) which items each transaction holds
        known = log.item > 0
        co = (member.T @ member).tocsr()  # (I, I) transactions holding both
        co.setdiag(0.0)
        co.eliminate_zeros()
        self.cooccurrence_ = co
        mine = (log.user > 0) & known
        users, items = log.user[mine], log.item[mine]
        self.user_counts_ = sp.csr_matrix(
            (np.ones(users.size, dtype=np.float32), (users, items)), shape=(n_users, n_items)
        )  # (U, I)
        age = age_days(log, log.timestamp.max())[mine]
        self.user_recency_ = sp.csr_matrix(
            (np.exp(-age / RECENCY_DAYS).astype(np.float32), (users, items)),
            shape=(n_users, n_items),
        )  # (U, I)
        for m in (self.user_counts_, self.user_recency_):
            m.sum_duplicates()
        counts = log.item_counts().astype(np.float64)
        counts[0] = 0.0
        self.log_popularity_ = np.log1p(counts).astype(np.float32)  # (I,)

    def _window_lists(self, win: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features (P, F), list (P,) and target (P,) for the sampled rows of the window's transactions."""
        order = (
            np.argsort(basket_ids(win), kind="stable") if win.group is None else np.arange(len(win))
        )
        items, users, baskets = win.item[order], win.user[order], basket_ids(win)[order]
        offsets = np.concatenate([[0], np.flatnonzero(np.diff(baskets)) + 1, [len(win)]])
        rows = np.flatnonzero(items > 0)
        if rows.size > self.max_rows:
            rows = np.sort(
                np.random.default_rng(self.seed).choice(rows, size=self.max_rows, replace=False)
            )
        xs, targets = [], []
        for start in range(0, rows.size, 512):
            part = rows[start : start + 512]
            group = np.searchsorted(offsets, part, side="right") - 1
            lengths = part - offsets[group]
            within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            prefixes = Ragged.from_lengths(
                items[np.repeat(offsets[group], lengths) + within], lengths
            )
            base = np.asarray(self.transition_.next_item_scores(users[part], prefixes))
            cand, x = self._candidates(users[part], prefixes, base, self._user_rows(users[part]))
            hit = cand == items[part][:, None]  # (B, M)
            found = hit.any(axis=1)
            xs.append(x[found])
            targets.append(hit[found])
        x = np.concatenate(xs)  # (R, M, F)
        target = np.concatenate(targets)  # (R, M)
        owner = np.repeat(np.arange(x.shape[0]), x.shape[1])
        return x.reshape(-1, N_FEATURES), owner, target.reshape(-1).astype(np.float64)

    # scoring ------------------------------------------------------------------------------------
    def next_item_scores(self, user_rows: np.ndarray, prefixes: Ragged) -> np.ndarray:
        self._check_fitted()
        user_rows = np.asarray(user_rows, dtype=np.int64)
        base = np.asarray(self.transition_.next_item_scores(user_rows, prefixes))
        return self._blend(user_rows, prefixes, base, self._user_rows(user_rows))

    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        base = np.asarray(
            self.transition_._scores(user_rows, histories)
        )  # last item + the history's counts
        keep = histories.values > 0
        n_items = self.log_popularity_.size
        counts = sp.csr_matrix(
            (
                np.ones(int(keep.sum()), dtype=np.float32),
                (histories.row_ids[keep], histories.values[keep]),
            ),
            shape=(len(histories), n_items),
        )
        counts.sum_duplicates()
        recency = self.user_recency_[np.asarray(user_rows, dtype=np.int64)]  # row 0: no recency
        last = Ragged.from_lengths(*_last_items(histories))
        return self._blend(np.asarray(user_rows, dtype=np.int64), last, base, (counts, recency))

    def _user_rows(self, user_rows: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(B, I) the users' training counts and recency (row 0, an unknown user: none)."""
        return self.user_counts_[user_rows], self.user_recency_[user_rows]

    def _blend(
        self,
        user_rows: np.ndarray,
        prefixes: Ragged,
        base: np.ndarray,
        user: tuple[sp.csr_matrix, sp.csr_matrix],
    ) -> np.ndarray:
        cand, x = self._candidates(user_rows, prefixes, base, user)
        out = np.log(np.maximum(base, _FLOOR)) - _BEHIND  # (B, I)
        np.put_along_axis(out, cand, x @ self.weights_, axis=1)
        return out

    def _candidates(
        self,
        user_rows: np.ndarray,
        prefixes: Ragged,
        base: np.ndarray,
        user: tuple[sp.csr_matrix, sp.csr_matrix],
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, M) the top ``n_candidates`` of ``base`` not in the basket, and their features (B, M, F)."""
        n_rows, n_items = base.shape
        m = min(self.n_candidates, n_items - 1)
        masked = np.array(base, dtype=np.float64)
        masked[:, 0] = -np.inf
        masked[prefixes.row_ids, prefixes.values] = -np.inf
        cand = np.argpartition(-masked, m - 1, axis=1)[:, :m]  # (B, M)
        flat_rows = np.repeat(np.arange(n_rows), m)
        flat = cand.reshape(-1)
        keep = prefixes.values > 0
        lengths = np.bincount(prefixes.row_ids[keep], minlength=n_rows)
        values = prefixes.values[keep]
        ends = np.cumsum(lengths)
        last = np.where(lengths >= 1, values[np.maximum(ends - 1, 0)] if values.size else 0, 0)
        last2 = np.where(lengths >= 2, values[np.maximum(ends - 2, 0)] if values.size else 0, 0)
        # transactions shared with the basket's items: sum over (basket item, candidate) pairs
        owner = prefixes.row_ids[keep]  # (K,) the row of every known basket item
        pair = _gather(self.cooccurrence_, values, cand[owner])  # (K, M)
        slot = (owner[:, None] * m + np.arange(m)).reshape(-1)
        shared = np.bincount(slot, weights=pair.reshape(-1), minlength=n_rows * m)  # (B * M,)
        every = np.arange(n_rows)
        counts = _gather(user[0], every, cand).reshape(-1)
        x = np.empty((n_rows * m, N_FEATURES), dtype=np.float32)
        x[:, 0] = np.log(np.maximum(np.take_along_axis(base, cand, axis=1).reshape(-1), _FLOOR))
        x[:, 1] = np.log1p(_gather(self.transitions_, last, cand).reshape(-1))
        x[:, 2] = np.log1p(_gather(self.reverse_, last, cand).reshape(-1))
        x[:, 3] = np.log1p(_gather(self.transitions_, last2, cand).reshape(-1))
        x[:, 4] = np.log1p(shared)
        x[:, 5] = np.log1p(counts)
        x[:, 6] = _gather(user[1], every, cand).reshape(-1)
        x[:, 7] = self.log_popularity_[flat]
        empty = (lengths == 0)[flat_rows]
        x[:, 8] = empty * x[:, 5]
        x[:, 9] = empty * x[:, 7]
        x[:, 10] = counts > 0
        return cand, x.reshape(n_rows, m, N_FEATURES)

    # persistence --------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {
            "weights": self.weights_,
            "log_popularity": self.log_popularity_,
            "transition_popularity": self.transition_.popularity_,
        }
        for name in _SPARSE:
            mat = getattr(self, f"{name}_")
            state.update(
                {
                    f"{name}.data": mat.data,
                    f"{name}.indices": mat.indices,
                    f"{name}.indptr": mat.indptr,
                }
            )
        return state

    def _set_state(self, state, extra) -> None:
        self.weights_ = state["weights"]
        self.log_popularity_ = state["log_popularity"]
        shapes = {
            "transitions": (self.items_.size,) * 2,
            "cooccurrence": (self.items_.size,) * 2,
            "user_counts": (self.users_.size, self.items_.size),
            "user_recency": (self.users_.size, self.items_.size),
        }
        for name in _SPARSE:
            setattr(
                self,
                f"{name}_",
                sp.csr_matrix(
                    (state[f"{name}.data"], state[f"{name}.indices"], state[f"{name}.indptr"]),
                    shape=shapes[name],
                ),
            )
        it = ItemTransition(smoothing=self.smoothing, user_smoothing=self.user_smoothing)
        it.users_, it.items_, it.seen_, it.item_counts_ = (
            self.users_,
            self.items_,
            self.seen_,
            self.item_counts_,
        )
        it.transitions_, it.popularity_ = self.transitions_, state["transition_popularity"]
        self.reverse_ = self.transitions_.T.tocsr()
        self.transition_ = it


def _members(log: Interactions) -> sp.csr_matrix:
    """(transactions, I) binary: which items each transaction holds; DataError when the co-occurrence it
    makes (``members.T @ members``) could pass ``MAX_COOCCURRENCE_BYTES``."""
    baskets = basket_ids(log)
    known = log.item > 0
    n_items = log.items.size
    member = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (baskets[known], log.item[known])),
        shape=(int(baskets.max(initial=0)) + 1, n_items),
    )
    member.data[:] = 1.0  # a basket holds an item or not (duplicates were summed)
    sizes = np.diff(member.indptr).astype(np.float64)
    pairs = min(float(sizes @ sizes), float(n_items) ** 2)  # at most, before the product sums them
    if pairs * _PAIR_BYTES > MAX_COOCCURRENCE_BYTES:
        raise DataError(
            f"transition-blend's basket co-occurrence would hold up to {pairs:,.0f} item pairs "
            f"(about {pairs * _PAIR_BYTES / 2**30:.1f} GiB, the limit is "
            f"{MAX_COOCCURRENCE_BYTES / 2**30:.0f} GiB); this log's transactions are too large or "
            "its catalogue too wide for it: use item-transition, or give the log shorter transactions."
        )
    return member


def _gather(mat: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, m) float64 ``mat[rows[j], cols[j, c]]``: the distinct rows are made dense a block of at most
    2**22 entries at a time (scipy's pair indexing rescans the whole matrix on every call)."""
    out = np.zeros(cols.shape)
    if rows.size == 0:
        return out
    distinct, inverse = np.unique(rows, return_inverse=True)
    step = max(1, 2**22 // mat.shape[1])
    for start in range(0, distinct.size, step):
        dense = mat[distinct[start : start + step]].toarray()  # (d, I)
        sel = np.flatnonzero((inverse >= start) & (inverse < start + step))
        out[sel] = dense[(inverse[sel] - start)[:, None], cols[sel]]
    return out


def _last_items(histories: Ragged) -> tuple[np.ndarray, np.ndarray]:
    """The values and lengths of a Ragged holding each history's last known item (none for an empty one)."""
    keep = histories.values > 0
    lengths = np.bincount(histories.row_ids[keep], minlength=len(histories))
    values = histories.values[keep]
    ends = np.cumsum(lengths)
    has = lengths > 0
    return values[ends[has] - 1], has.astype(np.int64)
