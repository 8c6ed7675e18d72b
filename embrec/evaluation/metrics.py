"""Evaluation metrics as pure, vectorised functions (numpy in, float out).

Item ids are dense rows (``IdVocab``); row 0 is padding / "an item the model cannot know" and
never counts as a hit, on either side: a recommendation slot holding 0 is an empty slot, and a
relevant item 0 (an item unseen in training) still counts in the denominators but cannot be found.

Two families:

- **per event** (the retail chapter): ``transaction_precision`` (rows counted, one list of k per
  transaction) and ``top_k_accuracy`` (one list of k per event);
- **per user**, ranked lists ``(B, >=k)`` against relevant sets (a ``Ragged``, one row per user, binary
  relevance): ``precision_at_k``, ``recall_at_k``, ``ndcg_at_k``, ``average_precision_at_k`` (MAP),
  ``hit_rate_at_k``. Users with an empty relevant set are left out of the mean.

Every per-user metric has a ``*_per_user`` twin returning one value per ranked list (NaN for a user
with no relevant item), the input of the bootstrap intervals (``embrec.evaluation.bootstrap``); the
per-event ones have ``transaction_hits`` / ``top_k_hits``.

Plus ``rmse``, ``mae``, and two beyond-accuracy figures of the lists shown: ``catalogue_coverage``
(share of the catalogue recommended to at least one list) and ``mean_popularity_percentile`` (how
popular the recommended items are: 0 = the least bought item of training, 100 = the most bought).
"""

from __future__ import annotations

import numpy as np

from embrec.data.ragged import Ragged
from embrec.errors import DataError, InvalidParameterError, check_positive_int

PAD = 0


# per-event metrics (the retail chapter) ---------------------------------------------------------
def transaction_hits(offsets: np.ndarray, true_items: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(T,) hits per transaction: rows of transaction t whose item is among its predictions (see
    ``transaction_precision``, which is ``transaction_hits(...).sum() / (T * k)``)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    true_items = np.asarray(true_items, dtype=np.int64)
    predicted = _as_2d("predicted", predicted)
    n_groups = offsets.size - 1
    if predicted.shape[0] != n_groups:
        raise DataError(f"predicted must have one row per transaction ({n_groups}); received {predicted.shape[0]} rows.")
    if offsets[0] != 0 or offsets[-1] != true_items.size or np.any(np.diff(offsets) < 0):
        raise DataError(f"offsets must run from 0 to len(true_items) ({true_items.size}) without decreasing.")
    if n_groups == 0:
        raise DataError("transaction_precision needs at least one transaction; received none.")
    row_pred = np.repeat(predicted, np.diff(offsets), axis=0)  # (rows, k)
    hits = ((row_pred == true_items[:, None]) & (row_pred != PAD)).any(axis=1)  # (rows,)
    owner = np.repeat(np.arange(n_groups), np.diff(offsets))  # (rows,) the transaction of each row
    return np.bincount(owner, weights=hits, minlength=n_groups).astype(np.int64)


def transaction_precision(offsets: np.ndarray, true_items: np.ndarray, predicted: np.ndarray) -> float:
    """precision@k per transaction, as the retail chapter counts it.

    Transaction ``t`` is rows ``offsets[t]:offsets[t+1]`` of ``true_items`` and got the ``k``
    recommendations ``predicted[t]``. Every row whose item is among them counts once (an item bought on
    two rows of a transaction counts twice); the total is divided by ``transactions x k``::

        offsets = [0, 3, 4]; true = [5, 7, 5, 9]; predicted = [[5, 1], [2, 3]]
        -> rows 0 and 2 are hits: 2 / (2 * 2) = 0.5
    """
    hits = transaction_hits(offsets, true_items, predicted)
    return float(hits.sum() / (hits.size * np.asarray(predicted).shape[1]))


def top_k_hits(true_items: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(n,) bool: is event i's true item among its ``k`` predictions ``(n, k)`` (padding 0 never is)."""
    true_items = np.asarray(true_items, dtype=np.int64)
    predicted = _as_2d("predicted", predicted)
    if predicted.shape[0] != true_items.size:
        raise DataError(f"predicted must have one row per event ({true_items.size}); received {predicted.shape[0]}.")
    if true_items.size == 0:
        raise DataError("top_k_accuracy needs at least one event; received none.")
    return ((predicted == true_items[:, None]) & (predicted != PAD)).any(axis=1)


def top_k_accuracy(true_items: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of events whose true item is among that event's ``k`` predictions ``(n, k)``."""
    return float(top_k_hits(true_items, predicted).mean())


# ranking metrics over ranked lists vs relevant sets --------------------------------------------
def hits_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B, k) bool: is the item at rank j of row b in row b's relevant set (padding 0 never is)."""
    ranked = _check_ranked(ranked, relevant, k)[:, :k]
    n_cols = int(max(ranked.max(initial=0), relevant.values.max(initial=0))) + 1
    rel_keys = np.unique(relevant.row_ids * n_cols + relevant.values)
    keys = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * n_cols + ranked  # (B, k)
    pos = np.minimum(np.searchsorted(rel_keys, keys), max(rel_keys.size - 1, 0))
    found = rel_keys[pos] == keys if rel_keys.size else np.zeros_like(keys, dtype=bool)
    return found & (ranked != PAD)


def precision_per_user(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B,) (relevant items in the top k) / k; NaN for a user with no relevant item."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return np.where(keep, hits.sum(axis=1) / k, np.nan)


def recall_per_user(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B,) (relevant items in the top k) / (number of relevant items); NaN without relevant items."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return np.where(keep, hits.sum(axis=1) / np.maximum(relevant.lengths, 1), np.nan)


def hit_per_user(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B,) 1.0 when a relevant item is in the top k, else 0.0; NaN without relevant items."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return np.where(keep, hits.any(axis=1).astype(np.float64), np.nan)


def ndcg_per_user(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B,) binary-relevance NDCG@k: DCG = sum of 1/log2(rank + 1) over hits (rank from 1), divided by
    the DCG of an ideal list holding min(k, |relevant|) hits first; NaN without relevant items."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    dcg = hits.astype(np.float64) @ discount[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(relevant.lengths, k)]
    return np.where(keep, dcg / np.where(keep, ideal, 1.0), np.nan)


def average_precision_per_user(ranked: np.ndarray, relevant: Ragged, *, k: int) -> np.ndarray:
    """(B,) AP@k: sum_j precision@j * hit_j / min(k, |relevant|); NaN without relevant items."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    h = hits.astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    ap = (prec * h).sum(axis=1) / np.maximum(np.minimum(relevant.lengths, k), 1)
    return np.where(keep, ap, np.nan)


def precision_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean over users of (relevant items in the top k) / k."""
    return _mean(precision_per_user(ranked, relevant, k=k))


def recall_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean over users of (relevant items in the top k) / (number of relevant items)."""
    return _mean(recall_per_user(ranked, relevant, k=k))


def hit_rate_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Fraction of users with at least one relevant item in the top k."""
    return _mean(hit_per_user(ranked, relevant, k=k))


def ndcg_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean binary-relevance NDCG@k over users (``ndcg_per_user``)."""
    return _mean(ndcg_per_user(ranked, relevant, k=k))


def average_precision_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """MAP@k: mean over users of sum_j precision@j * hit_j / min(k, |relevant|)."""
    return _mean(average_precision_per_user(ranked, relevant, k=k))


# ratings and coverage ------------------------------------------------------------------------
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    err = _errors(y_true, y_pred)
    return float(np.sqrt(np.mean(err**2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(y_true, y_pred))))


def catalogue_coverage(recommended: np.ndarray, *, n_items: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one list (padding 0 ignored)."""
    n_items = check_positive_int("n_items", n_items)
    rec = np.asarray(recommended, dtype=np.int64).ravel()
    return float(np.unique(rec[rec != PAD]).size / n_items)


def popularity_percentiles(item_counts: np.ndarray) -> np.ndarray:
    """(len,) the popularity percentile of every item row from its training count: 100 x (mid-rank - 1)
    / (n - 1) among the n items of rows 1.. (ties share their mean rank), so the least bought item is
    0 and the most bought 100; a one-item catalogue gives 100. Row 0 (padding) is NaN.

        counts [pad, 5, 1, 5, 3] -> ranks 1 (count 1), 2 (3), 3.5 (5, 5) -> [nan, 83.3, 0, 83.3, 33.3]
    """
    counts = np.asarray(item_counts, dtype=np.float64).ravel()
    out = np.full(counts.size, np.nan)
    n = counts.size - 1
    if n <= 0:
        return out
    c = counts[1:]
    order = np.argsort(c, kind="stable")
    sorted_c = c[order]
    first = np.searchsorted(sorted_c, c, side="left")  # 0-based first rank of each value
    last = np.searchsorted(sorted_c, c, side="right") - 1
    mid = (first + last) / 2.0  # 0-based mid-rank
    out[1:] = 100.0 * mid / (n - 1) if n > 1 else 100.0
    return out


def mean_popularity_percentile(recommended: np.ndarray, percentiles: np.ndarray) -> float:
    """Mean ``percentiles`` (``popularity_percentiles``) of the recommended item rows over every filled
    slot of every list (padding 0 ignored); NaN when nothing was recommended."""
    rec = np.asarray(recommended, dtype=np.int64).ravel()
    rec = rec[rec != PAD]
    return float(np.asarray(percentiles)[rec].mean()) if rec.size else float("nan")


# helpers --------------------------------------------------------------------------------------
def _as_2d(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{name} must be a 2-D array (rows, k) with k >= 1; received shape {arr.shape}.")
    return arr


def _check_ranked(ranked: np.ndarray, relevant: Ragged, k: int) -> np.ndarray:
    check_positive_int("k", k)
    ranked = _as_2d("ranked", ranked)
    if ranked.shape[0] != len(relevant):
        raise DataError(f"ranked has {ranked.shape[0]} rows but relevant has {len(relevant)}; "
                        "expected one relevant set per ranked list.")
    if ranked.shape[1] < k:
        raise InvalidParameterError(f"k must be at most the list length ({ranked.shape[1]}); received {k}.")
    return ranked


def _hits_and_users(ranked: np.ndarray, relevant: Ragged, k: int) -> tuple[np.ndarray, np.ndarray]:
    hits = hits_at_k(ranked, relevant, k=k)
    return hits, relevant.lengths > 0


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise DataError("no user has a relevant item; a ranking metric needs at least one.")
    return float(np.mean(x))


def _errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise DataError(f"y_pred must have the shape of y_true {y_true.shape}; received {y_pred.shape}.")
    if y_true.size == 0:
        raise DataError("rating errors need at least one rating; received none.")
    if not np.isfinite(y_pred).all():
        raise DataError(f"y_pred must be finite; received {int((~np.isfinite(y_pred)).sum())} NaN or infinite values.")
    return y_pred - y_true
