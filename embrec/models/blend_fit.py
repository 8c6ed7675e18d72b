"""What the learned blends share: a window carved from the end of the training log, transactions, and a
log-linear softmax over ragged candidate lists fitted by L-BFGS.

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
import torch

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
    candidate, ``owner`` (P,) its list (0 .. L-1), ``target`` (P,) its non-negative weight."""
    if target.sum() <= 0:
        raise DataError(
            "the window carved from the training log holds no event the blend can learn from; "
            "give it a longer log or a larger window."
        )
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))  # (P, F)
    own = torch.as_tensor(np.asarray(owner, dtype=np.int64))  # (P,)
    tgt = torch.as_tensor(np.asarray(target, dtype=np.float64) / float(np.sum(target)))  # (P,)
    n_lists = int(own.max()) + 1
    w = torch.zeros(x.shape[1], dtype=torch.float64)
    if init is not None:
        w += torch.as_tensor(np.asarray(init, dtype=np.float64))
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = xt @ w  # (P,)
        top = torch.full((n_lists,), -torch.inf, dtype=s.dtype).scatter_reduce(
            0, own, s.detach(), reduce="amax"
        )  # (L,) per-list max, for a stable log-sum-exp
        total = torch.zeros(n_lists, dtype=s.dtype).index_add(
            0, own, torch.exp(s - top[own])
        )  # (L,)
        log_p = s - top[own] - torch.log(total)[own]  # (P,)
        loss = -(tgt * log_p).sum() + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = w.detach().numpy()
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the blend's weights became non-finite while fitting; raise l2.")
    return out
