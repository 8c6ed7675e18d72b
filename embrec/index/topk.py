"""Top-k by embrec's one tie rule, on numpy score matrices (the index layer's and every model's).

Equal scores are ordered by the lower column (item row, or index position) first, both for which items
enter the top k and for their order in it, so results never depend on argpartition's order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["top_k_rows"]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) column indices and values of each row's k largest scores, best first.

    The one tie rule of embrec: equal scores are ordered by the lower column (item row) first, both for
    which items enter the top k and for their order in it, so results never depend on argpartition's
    order. NaN scores count as -inf.
    """
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k <= 0 or scores.shape[0] == 0:
        empty = np.zeros((scores.shape[0], max(k, 0)), dtype=np.int64)
        return empty, np.zeros(empty.shape, dtype=scores.dtype)
    n = scores.shape[1]
    if k < n:  # fast path: the k + 1 best hold the top k unless a tie straddles the k-th place
        fast = _top_k_one(scores[0], k) if scores.shape[0] == 1 else _top_k_fast(scores, k)
        if fast is not None:
            return fast
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)  # the k-th best
    take = scores >= kth  # (B, n): exactly k per row unless ties straddle the k-th place
    for r in np.flatnonzero(take.sum(axis=1) > k):  # those rows: the lowest tied columns first
        tied = np.flatnonzero(scores[r] == kth[r, 0])
        take[r, tied[k - int((scores[r] > kth[r, 0]).sum()) :]] = False
    cols = np.nonzero(take)[1].reshape(scores.shape[0], k)  # ascending columns per row
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")  # stable: ties keep the lower column first
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _top_k_fast(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The top k of every row from its k + 1 largest, or None when a row needs the full rule (a tie
    straddling the k-th place, or a NaN, which argpartition ranks above everything)."""
    n = scores.shape[1]
    at = np.arange(scores.shape[0])[
        :, None
    ]  # plain fancy indexing (take_along_axis costs 10 µs a call)
    part = scores.argpartition(n - k - 1, axis=1)[:, n - k - 1 :]  # (B, k + 1) the k + 1 largest
    vals = scores[at, part]
    if vals.dtype.kind == "f" and np.isnan(vals).any():
        return None
    order = np.lexsort((part, -vals), axis=1)  # best first, equal values by the lower column
    part, vals = part[at, order], vals[at, order]
    if not bool((vals[:, k - 1] > vals[:, k]).all()):
        return None
    return part[:, :k], vals[:, :k]


def _top_k_one(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``_top_k_fast`` for one row (a served query) in 1-D: half the cost of the (1, n) path."""
    n = row.size
    part = row.argpartition(n - k - 1)[n - k - 1 :]  # (k + 1,) the k + 1 largest
    vals = row[part]
    if vals.dtype.kind == "f" and np.isnan(vals).any():
        return None
    order = np.lexsort((part, -vals))  # best first, equal values by the lower column
    part, vals = part[order], vals[order]
    if not vals[k - 1] > vals[k]:
        return None
    return part[None, :k], vals[None, :k]
