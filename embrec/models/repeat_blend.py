"""Repeat blend: which items will a customer buy next, learned from the customer's own purchase history.

On shop logs most of what a customer buys next is something they bought before; ``repeat-frequency``
ranks those items by how often they were bought. This model learns how to weigh what else the log says
about each (customer, item) pair, with weights fitted on the training log itself::

    score(u, i) = x_item(i) . w_item  +  [i in u's history] x_pair(u, i) . w_pair  +  w_emb x_emb(u, i)

- ``x_pair`` (14, the customer's own history of the item): 1; log(1 + rows); log(1 + transactions holding
  it); that share of the customer's transactions; log(1 + days since the first purchase) / 6; the log of the
  item's repeat rate; exp(-days since the last purchase / tau) and log(1 + sum over its transactions of
  exp(-age / tau)) for tau = 7, 30, 90 and 365 days;
- ``x_item`` (6): log(1 + events) of the item over the whole log and exp(-age / tau)-weighted for the four
  tau; the log of its repeat rate ((customers who bought it in two or more transactions + 1) / (its
  customers + 2)).
- ``x_emb`` (1): the customer's implicit-feedback ALS score of the item (``embedding_factors`` factors,
  fitted on the same events as the counts), standardised over the items: what customers who buy what
  this one buys also buy. ``embedding_factors=0`` leaves it out.

Fitting (``embrec.models.blend_fit``): the last ``window`` of the training events by time is cut off; the
features are computed on the events before it; for each customer who bought in the window the candidates
are the items of their history, the ``n_popular`` most bought items and the ``n_embedding`` items the ALS
score ranks highest for them, and the weights maximise the
softmax likelihood of the rows bought in the window (each customer's rows normalised to sum to the
square root of their number: heavy buyers weigh more, without drowning everyone else) with an L2 penalty
``l2``; beyond ``max_users`` customers in the window, a sample of that many (drawn with ``seed``) is
used. The features are then computed again on the whole training log and the learned weights score
them. The ``valid`` set handed to ``fit`` is not used: every setting is learned from the training log.

Scoring: every item gets ``x_item . w_item + w_emb x_emb``; the candidates (a known customer's history,
the ``n_popular`` most bought items and the ALS score's top ``n_embedding``) rank before the other items,
which follow in that order. A history given by raw ids (``recommend(histories=...)``) has no times: each
occurrence counts as one transaction at the end of the training log, and ALS folds it in (its exact
least-squares step for a new user).

Measured on Online Retail (docs/benchmarks.md, "Retail: beating the strongest baseline on both
months"): the settings were compared on the weeks carved from the end of the training part
(``embrec.tuning.validation``); that section says which were chosen there and in what order.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import check_float, check_positive_int
from embrec.models.als import ALS
from embrec.models.base import Recommender
from embrec.models.blend_fit import age_days, basket_ids, carve_window, fit_log_linear
from embrec.models.search import FloatRange, IntRange, Param

TAUS = (7.0, 30.0, 90.0, 365.0)
N_PAIR, N_ITEM = 6 + 2 * len(TAUS), 2 + len(TAUS)
_BEHIND = 1e3  # how far below the candidates the other items rank
_BLOCK_CELLS = 2**22  # customers x items scored at once while fitting


class RepeatBlend(Recommender):
    """A learned log-linear ranking of a customer's own purchase history and the items' popularity."""

    needs: ClassVar[tuple[str, ...]] = ("timestamps",)
    #: what ``embrec tune`` searches (embrec.models.search)
    search_space: ClassVar[dict[str, Param]] = {
        "window": FloatRange(0.05, 0.3),
        "n_popular": IntRange(10, 200, log=True),
        "l2": FloatRange(1e-5, 0.1, log=True),
        "embedding_factors": IntRange(8, 256, log=True),
        "n_embedding": IntRange(5, 100, log=True),
    }

    def __init__(
        self,
        *,
        window: float = 0.15,
        n_popular: int = 50,
        l2: float = 1e-3,
        embedding_factors: int = 64,
        n_embedding: int = 20,
        max_users: int = 20_000,
        max_iter: int = 200,
        seed: int = 0,
    ) -> None:
        self.window = check_float("window", window, low=0.0, high=1.0, low_open=True)
        self.n_popular = check_positive_int("n_popular", n_popular)
        self.l2 = check_float("l2", l2, low=0.0, low_open=True)
        self.embedding_factors = check_positive_int(
            "embedding_factors", embedding_factors, minimum=0
        )
        self.n_embedding = check_positive_int("n_embedding", n_embedding, minimum=0)
        self.max_users = check_positive_int("max_users", max_users)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.seed = int(seed)

    # fitting ------------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        before = carve_window(train, self.window)
        sub, win = train.subset(before), train.subset(~before)
        x, owner, target = self._window_lists(sub, win)
        init = np.zeros(x.shape[1])
        init[1] = 1.0  # start from log(1 + rows): repeat-frequency
        self.weights_ = fit_log_linear(
            x, owner, target, l2=self.l2, init=init, max_iter=self.max_iter
        ).astype(np.float32)
        self.embedding_ = self._embedding().fit(train) if self.embedding_factors else None
        stats = _Stats(train)
        w_pair, w_item = self.weights_[:N_PAIR], self.weights_[N_PAIR : N_PAIR + N_ITEM]
        n_users, n_items = train.users.size, train.items.size
        self.pair_scores_ = sp.csr_matrix(
            (stats.pair_x @ w_pair, (stats.pair_user, stats.pair_item)),
            shape=(n_users, n_items),
            dtype=np.float32,
        )  # (U, I)
        self.item_scores_ = (stats.item_x @ w_item).astype(np.float32)  # (I,)
        self.repeat_rate_ = stats.rate.astype(np.float32)  # (I,)
        self.candidate_ = np.zeros(n_items, dtype=bool)  # (I,) the n_popular most bought items
        self.candidate_[stats.popular(self.n_popular)] = True

    def _window_lists(
        self, sub: Interactions, win: Interactions
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features (P, F), list (P,) and target (P,) of every candidate of every customer of the window."""
        stats = _Stats(sub)
        n_items = sub.items.size
        bought = (win.user > 0) & (win.item > 0)
        users = np.intersect1d(np.unique(win.user[bought]), np.unique(stats.pair_user))
        # beyond max_users customers, a seeded sample of them bounds the lists
        if users.size > self.max_users:
            rng = np.random.default_rng(self.seed)
            users = np.sort(rng.choice(users, size=self.max_users, replace=False))
        pos = np.full(sub.users.size, -1, dtype=np.int64)
        pos[users] = np.arange(users.size)
        mine = pos[stats.pair_user] >= 0
        own_u, own_i = pos[stats.pair_user[mine]], stats.pair_item[mine]
        popular = stats.popular(self.n_popular)
        pop_u = np.repeat(np.arange(users.size), popular.size)
        pop_i = np.tile(popular, users.size)
        extra = ~np.isin(pop_u * n_items + pop_i, own_u * n_items + own_i)
        lists = np.concatenate([own_u, pop_u[extra]])  # (P,)
        items = np.concatenate([own_i, pop_i[extra]])  # (P,)
        z = None
        if self.embedding_factors:  # the embedding's own top items join the candidates
            lists, items, z = self._embedding_candidates(sub, users, lists, items)
        x = np.zeros((lists.size, N_PAIR + N_ITEM + (z is not None)))
        x[: own_u.size, :N_PAIR] = stats.pair_x[mine]
        x[:, N_PAIR : N_PAIR + N_ITEM] = stats.item_x[items]
        if z is not None:
            x[:, -1] = z
        key = win.user[bought] * n_items + win.item[bought]
        cand_key = users[lists] * n_items + items
        uniq, counts = np.unique(key, return_counts=True)
        at = np.searchsorted(uniq, cand_key)
        at = np.minimum(at, max(uniq.size - 1, 0))
        # (P,) the rows of each candidate bought in the window
        target = np.where(uniq[at] == cand_key, counts[at], 0).astype(np.float64)
        per_list = np.bincount(lists, weights=target, minlength=users.size)  # (L,)
        scale = np.sqrt(per_list) / np.maximum(per_list, 1.0)
        return x, lists, target * scale[lists]

    def _embedding_candidates(
        self, sub: Interactions, users: np.ndarray, lists: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lists and items with each customer's ``n_embedding`` best ALS items added, and the
        standardised ALS score (P,) of every candidate; computed a block of customers at a time, so
        memory stays O(block x items) whatever the number of customers."""
        model = self._embedding().fit(sub)
        histories = sub.user_histories()
        z_old = np.zeros(lists.size)
        new_lists, new_items, z_new = [], [], []
        step = max(1, _BLOCK_CELLS // sub.items.size)
        for start in range(0, users.size, step):
            stop = min(start + step, users.size)
            block = _standardised(model, users[start:stop], histories.select(users[start:stop]))
            inside = (lists >= start) & (lists < stop)
            z_old[inside] = block[lists[inside] - start, items[inside]]
            top = _top_new(block, lists[inside] - start, items[inside], self.n_embedding)  # (b, n)
            new_lists.append(np.repeat(np.arange(start, stop), top.shape[1]))
            new_items.append(top.reshape(-1))
            z_new.append(np.take_along_axis(block, top, axis=1).reshape(-1))
        return (
            np.concatenate([lists, *new_lists]),
            np.concatenate([items, *new_items]),
            np.concatenate([z_old, *z_new]),
        )

    # scoring ------------------------------------------------------------------------------------
    def _scores(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        out = np.tile(self.item_scores_ - _BEHIND * ~self.candidate_, (len(user_rows), 1))  # (B, I)
        known = np.flatnonzero(user_rows > 0)
        if known.size:
            part = self.pair_scores_[user_rows[known]].tocoo()
            out[known[part.row], part.col] = self.item_scores_[part.col] + part.data
        given = np.flatnonzero(user_rows == 0)
        if given.size:
            hist = histories.select(given)
            keep = hist.values > 0
            rows, items = hist.row_ids[keep], hist.values[keep]
            n = self.item_scores_.size
            key, counts = np.unique(rows * n + items, return_counts=True)
            r, i = key // n, key % n
            length = np.bincount(rows, minlength=len(hist)).astype(np.float64)
            x = _pair_features(
                counts.astype(np.float64),
                counts.astype(np.float64),
                length[r],
                np.zeros(r.size),
                np.zeros(r.size),
                self.repeat_rate_[i],
                [counts.astype(np.float64)] * len(TAUS),
            )
            out[given[r], i] = self.item_scores_[i] + x @ self.weights_[:N_PAIR]
        if self.embedding_ is not None:
            z = _standardised(self.embedding_, user_rows, histories)  # (B, I)
            top = _top_new(
                z, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), self.n_embedding
            )
            rows = np.arange(len(user_rows))[:, None]
            behind = out[rows, top] < -_BEHIND / 2  # the embedding's top items are candidates too
            out[rows, top] += _BEHIND * behind
            out += self.weights_[-1] * z
        return out

    def _embedding(self) -> ALS:
        """The embedding whose standardised scores are a feature: implicit-feedback ALS (settings fixed
        here, so the blend does not change when ALS's own defaults do)."""
        return ALS(
            factors=self.embedding_factors,
            regularization=0.01,
            alpha=1.0,
            iterations=15,
            confidence="count",
            seed=self.seed,
        )

    # persistence --------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        p = self.pair_scores_
        state = {
            "weights": self.weights_,
            "item_scores": self.item_scores_,
            "repeat_rate": self.repeat_rate_,
            "candidate": self.candidate_.astype(np.uint8),
            "pair_scores.data": p.data,
            "pair_scores.indices": p.indices,
            "pair_scores.indptr": p.indptr,
        }
        if self.embedding_ is not None:
            state.update({f"embedding.{k}": v for k, v in self.embedding_._get_state().items()})
        return state

    def _set_state(self, state, extra) -> None:
        self.weights_ = state["weights"]
        self.item_scores_ = state["item_scores"]
        self.repeat_rate_ = state["repeat_rate"]
        self.candidate_ = state["candidate"].astype(bool)
        self.pair_scores_ = sp.csr_matrix(
            (state["pair_scores.data"], state["pair_scores.indices"], state["pair_scores.indptr"]),
            shape=(self.users_.size, self.items_.size),
        )
        self.embedding_ = None
        if self.embedding_factors:
            emb = self._embedding()
            emb.users_, emb.items_, emb.seen_ = self.users_, self.items_, self.seen_
            emb.item_counts_ = self.item_counts_
            emb._set_state(
                {k[len("embedding.") :]: v for k, v in state.items() if k.startswith("embedding.")},
                {},
            )
            self.embedding_ = emb


def _pair_features(
    n: np.ndarray,
    b: np.ndarray,
    baskets: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    rate: np.ndarray,
    decayed: list[np.ndarray],
) -> np.ndarray:
    """(P, N_PAIR) x_pair from rows ``n``, transactions ``b``, the customer's transactions, days since
    the first and the last purchase, the item's repeat rate and the tau-decayed transaction counts."""
    cols = [
        np.ones_like(n),
        np.log1p(n),
        np.log1p(b),
        b / np.maximum(baskets, 1.0),
        np.log1p(first) / 6.0,
        np.log(rate),
    ]
    cols += [np.exp(-last / tau) for tau in TAUS] + [np.log1p(d) for d in decayed]
    return np.stack(cols, axis=1)


def _standardised(model: ALS, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
    """(B, I) float64 the embedding's scores, standardised per user over the items (column 0 left 0)."""
    scores = np.asarray(
        model._scores(np.asarray(user_rows, dtype=np.int64), histories), dtype=np.float64
    )
    real = scores[:, 1:]
    z = np.zeros_like(scores)
    z[:, 1:] = (real - real.mean(axis=1, keepdims=True)) / (real.std(axis=1, keepdims=True) + 1e-9)
    return z


def _top_new(z: np.ndarray, lists: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
    """(L, n) per row of ``z`` its ``n`` best items that are not already (list, item) pairs, never row 0."""
    n = min(n, z.shape[1] - 1)
    if n <= 0:
        return np.zeros((z.shape[0], 0), dtype=np.int64)
    masked = z.copy()
    masked[:, 0] = -np.inf
    masked[lists, items] = -np.inf
    return np.argpartition(-masked, n - 1, axis=1)[:, :n]


class _Stats:
    """The features of a log at its last event: ``pair_user``, ``pair_item``, ``pair_x`` (P, N_PAIR) over
    every (customer, item) of the log, ``item_x`` (I, N_ITEM), ``rate`` (I,) and ``counts`` (I,)."""

    def __init__(self, log: Interactions) -> None:
        n_items, n_users = log.items.size, log.users.size
        age = age_days(log, log.timestamp.max())
        baskets = basket_ids(log)
        keep = (log.user > 0) & (log.item > 0)
        key = log.user[keep] * n_items + log.item[keep]
        a, g = age[keep], baskets[keep]
        pairs, inv = np.unique(key, return_inverse=True)
        n = np.bincount(inv, minlength=pairs.size).astype(np.float64)
        last = np.full(pairs.size, np.inf)
        np.minimum.at(last, inv, a)
        first = np.zeros(pairs.size)
        np.maximum.at(first, inv, a)
        n_baskets = int(g.max(initial=0)) + 1
        _, at = np.unique(inv * n_baskets + g, return_index=True)  # one row per (pair, transaction)
        b = np.bincount(inv[at], minlength=pairs.size).astype(np.float64)
        decayed = [
            np.bincount(inv[at], weights=np.exp(-a[at] / tau), minlength=pairs.size) for tau in TAUS
        ]
        self.pair_user, self.pair_item = pairs // n_items, pairs % n_items
        user_baskets = np.bincount(
            np.unique(log.user[keep] * n_baskets + g) // n_baskets, minlength=n_users
        ).astype(np.float64)
        buyers = np.bincount(self.pair_item, minlength=n_items).astype(np.float64)
        repeat = np.bincount(self.pair_item[b >= 2], minlength=n_items).astype(np.float64)
        self.rate = (repeat + 1.0) / (buyers + 2.0)
        known = log.item > 0
        items, item_age = log.item[known], age[known]
        self.counts = np.bincount(items, minlength=n_items).astype(np.float64)
        self.counts[0] = 0.0
        cols = [np.log1p(self.counts)]
        cols += [
            np.log1p(np.bincount(items, weights=np.exp(-item_age / tau), minlength=n_items))
            for tau in TAUS
        ]
        self.item_x = np.stack(cols + [np.log(self.rate)], axis=1)  # (I, N_ITEM)
        self.pair_x = _pair_features(
            n, b, user_baskets[self.pair_user], first, last, self.rate[self.pair_item], decayed
        )

    def popular(self, k: int) -> np.ndarray:
        """The ``k`` most bought item rows (ties: the lower row first), never row 0 or an unbought item."""
        top = np.argsort(-self.counts, kind="stable")[:k]
        return top[self.counts[top] > 0]
