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

Plus ``rmse``, ``mae`` and ``catalogue_coverage``.
"""

from __future__ import annotations

import numpy as np

from embrec.data.ragged import Ragged
from embrec.errors import DataError, InvalidParameterError, check_positive_int

PAD = 0


# per-event metrics (the retail chapter) ---------------------------------------------------------
def transaction_precision(offsets: np.ndarray, true_items: np.ndarray, predicted: np.ndarray) -> float:
    """precision@k per transaction, as the retail chapter counts it.

    Transaction ``t`` is rows ``offsets[t]:offsets[t+1]`` of ``true_items`` and got the ``k``
    recommendations ``predicted[t]``. Every row whose item is among them counts once (an item bought on
    two rows of a transaction counts twice); the total is divided by ``transactions x k``::

        offsets = [0, 3, 4]; true = [5, 7, 5, 9]; predicted = [[5, 1], [2, 3]]
        -> rows 0 and 2 are hits: 2 / (2 * 2) = 0.5
    """
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
    hits = (row_pred == true_items[:, None]) & (row_pred != PAD)
    return float(hits.sum() / (n_groups * predicted.shape[1]))


def top_k_accuracy(true_items: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of events whose true item is among that event's ``k`` predictions ``(n, k)``."""
    true_items = np.asarray(true_items, dtype=np.int64)
    predicted = _as_2d("predicted", predicted)
    if predicted.shape[0] != true_items.size:
        raise DataError(f"predicted must have one row per event ({true_items.size}); received {predicted.shape[0]}.")
    if true_items.size == 0:
        raise DataError("top_k_accuracy needs at least one event; received none.")
    hit = ((predicted == true_items[:, None]) & (predicted != PAD)).any(axis=1)
    return float(hit.mean())


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


def precision_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean over users of (relevant items in the top k) / k."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return _mean(hits.sum(axis=1)[keep] / k)


def recall_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean over users of (relevant items in the top k) / (number of relevant items)."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return _mean(hits.sum(axis=1)[keep] / relevant.lengths[keep])


def hit_rate_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Fraction of users with at least one relevant item in the top k."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    return _mean(hits.any(axis=1)[keep].astype(np.float64))


def ndcg_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """Mean binary-relevance NDCG@k: DCG = sum of 1/log2(rank + 1) over hits (rank from 1), divided by
    the DCG of an ideal list holding min(k, |relevant|) hits first."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    dcg = hits.astype(np.float64) @ discount[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(relevant.lengths, k)]
    return _mean(dcg[keep] / ideal[keep])


def average_precision_at_k(ranked: np.ndarray, relevant: Ragged, *, k: int) -> float:
    """MAP@k: mean over users of sum_j precision@j * hit_j / min(k, |relevant|)."""
    hits, keep = _hits_and_users(ranked, relevant, k)
    h = hits.astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    ap = (prec * h).sum(axis=1) / np.maximum(np.minimum(relevant.lengths, k), 1)
    return _mean(ap[keep])


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
