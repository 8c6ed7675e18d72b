"""What the learned blends share: a window carved from the end of the training log, transactions, and a
log-linear softmax over ragged candidate lists fitted by L-BFGS (scipy).

    before = carve_window(train, 0.15)           # False on the last 15 % of the events by time
    baskets = basket_ids(train)                  # (n,) a transaction id per event
    w = fit_log_linear(X, owner, target, l2=1e-3)

A blend (``RepeatBlend``, ``TransitionBlend``) is fitted like this: its count features are computed on the
events before the window, its weights are learned by predicting what happened in the window, and the
features are then computed again on the whole training log, to score the time after it. The window is
part of the training data: nothing after the training log is ever read.

The model behind every weight vector: for one list ``l`` of candidate items (a user's next purchases, the
next item of a transaction), ``P(p | l) = softmax over the list of X[p] . w``; the weights minimise

    - sum_p target[p] log P(p | owner[p]) / sum_p target[p]  +  l2 |w|^2

(``target`` holds how much each candidate was bought: 0 for most). The loss is convex in ``w`` and, with
``l2 > 0``, strictly so: L-BFGS finds the one minimiser whatever the start (no seed is involved).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from embrec.data.interactions import Interactions
from embrec.errors import DataError

DAY = np.timedelta64(1, "D")


def carve_window(train: Interactions, fraction: float) -> np.ndarray:
    """(n,) bool: True on the events before the window, the last ``fraction`` of the events by time
    (all events at the cut-off time fall in the window, so a transaction is never split)."""
    train._need("timestamp", "a learned blend (it learns from the last part of the log by time)")
    ts = train.timestamp
    cut = np.sort(ts)[min(len(ts) - 1, int(np.floor(len(ts) * (1.0 - fraction))))]
    before = ts < cut
    if not before.any() or before.all():
        raise DataError(
            f"the training log cannot be cut into a part before and a window of its last {fraction:.0%} "
            f"events by time (all {len(ts)} events share too few timestamps); a blend needs a log "
            "spanning more than one time."
        )
    return before


def basket_ids(log: Interactions) -> np.ndarray:
    """(n,) int64 transaction of every event: the group when the log has groups; otherwise a user's events
    of one calendar day (an unknown user's event, user row 0, is a transaction of its own)."""
    if log.group is not None:
        return np.asarray(log.group, dtype=np.int64)
    day = log.timestamp.astype("datetime64[D]").astype(np.int64)
    day = day - (day.min() if day.size else 0)
    key = log.user * (int(day.max(initial=0)) + 1) + day
    anonymous = log.user == 0
    key[anonymous] = -1 - np.flatnonzero(anonymous)
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def age_days(log: Interactions, now: np.datetime64) -> np.ndarray:
    """(n,) float64 days from each event to ``now``."""
    return (now - log.timestamp) / DAY


def fit_log_linear(
    x: np.ndarray,
    owner: np.ndarray,
    target: np.ndarray,
    *,
    l2: float,
    init: np.ndarray | None = None,
    max_iter: int = 200,
) -> np.ndarray:
    """(F,) weights of the softmax over ragged lists (module docstring): ``x`` (P, F) the features of each
    candidate, ``owner`` (P,) its list (0 .. L-1), ``target`` (P,) its non-negative weight. L-BFGS-B
    (scipy) on the exact gradient ``X^T (t_l p - t) + 2 l2 w`` (``t_l`` the list's total target)."""
    if np.sum(target) <= 0:
        raise DataError(
            "the window carved from the training log holds no event the blend can learn from; "
            "give it a longer log or a larger window."
        )
    order = np.argsort(owner, kind="stable")
    x = np.asarray(x, dtype=np.float64)[order]  # (P, F), each list's rows together
    own = np.asarray(owner)[order]
    tgt = np.asarray(target, dtype=np.float64)[order] / float(np.sum(target))  # (P,)
    starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])  # (L,)
    lengths = np.diff(np.r_[starts, own.size])
    list_tgt = np.repeat(np.add.reduceat(tgt, starts), lengths)  # (P,) the list's total target

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ w  # (P,)
        top = np.repeat(
            np.maximum.reduceat(s, starts), lengths
        )  # per-list max: a stable log-sum-exp
        e = np.exp(s - top)
        total = np.repeat(np.add.reduceat(e, starts), lengths)
        log_p = s - top - np.log(total)
        loss = -float(tgt @ log_p) + l2 * float(w @ w)
        grad = x.T @ (list_tgt * (e / total) - tgt) + 2.0 * l2 * w
        return loss, grad

    start = np.zeros(x.shape[1]) if init is None else np.asarray(init, dtype=np.float64)
    res = minimize(
        loss_grad,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-12},
    )
    if not np.all(np.isfinite(res.x)):
        raise FloatingPointError("the blend's weights became non-finite while fitting; raise l2.")
    return res.x
