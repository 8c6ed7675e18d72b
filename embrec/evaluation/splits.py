"""Splits of an interaction log into disjoint parts: by time, at random, leave-last-out, official folds.

Every split returns ``Interactions`` that share the input's vocabularies (``compact()`` a training part
to get vocabularies of what it holds); each input event lands in exactly one part, and the parts keep
the log's row order. Time splits never put a later event in an earlier part.

    train, valid, test = split_by_time(log, ["2011-10-09", "2011-11-09"])   # [.., c1) [c1, c2) [c2, ..)
    train, test = random_split(log, fraction=0.2, by="user", seed=0)       # 20 % of each user's events
    train, test = leave_last_out(log)                                      # each user's last event
    train, test = official_fold("u1")                                      # ml-100k u1.base / u1.test
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from embrec.data.interactions import Interactions
from embrec.errors import DataError, InvalidParameterError, check_choice, check_float, describe


def time_masks(data: Interactions, cutoffs: Sequence[Any]) -> list[np.ndarray]:
    """Boolean masks of the ``len(cutoffs) + 1`` half-open time intervals
    ``[-inf, c1), [c1, c2), ..., [cn, +inf)``. Cut-offs must increase and lie strictly inside the data's
    time range (otherwise a part would be empty: a clear error, not a silent empty set)."""
    data._need("timestamp", "a time split")
    if isinstance(cutoffs, (str, bytes)) or not isinstance(cutoffs, Sequence) or len(cutoffs) == 0:
        raise InvalidParameterError(f"cutoffs must be a non-empty list of dates; received {describe(cutoffs)}.")
    ts = data.timestamp
    first, last = ts.min(), ts.max()
    points = []
    for c in cutoffs:
        try:
            point = pd.Timestamp(c).to_datetime64().astype("datetime64[ns]")
        except (ValueError, TypeError):
            raise InvalidParameterError(f"cutoffs must be dates like '2011-10-09'; received {describe(c)}.") from None
        if not first < point <= last:
            raise DataError(
                f"cut-off {pd.Timestamp(point)} lies outside the data's time range "
                f"({pd.Timestamp(first)} .. {pd.Timestamp(last)}); expected a date after the first event "
                "and not after the last."
            )
        if points and point <= points[-1]:
            raise InvalidParameterError(f"cutoffs must increase; received {describe(list(cutoffs))}.")
        points.append(point)
    part = np.searchsorted(np.asarray(points), ts, side="right")  # 0 .. len(points)
    return [part == p for p in range(len(points) + 1)]


def split_by_time(data: Interactions, cutoffs: Sequence[Any]) -> list[Interactions]:
    """The log cut at the given dates: ``len(cutoffs) + 1`` parts (see ``time_masks``)."""
    return [data.subset(m) for m in time_masks(data, cutoffs)]


def random_mask(data: Interactions, *, fraction: float = 0.2, by: Literal["row", "user"] = "user",
                seed: int = 0) -> np.ndarray:
    """Boolean test mask. ``by="row"``: ``round(fraction x rows)`` rows drawn uniformly. ``by="user"``:
    ``round(fraction x n_u)`` of each user's ``n_u`` events, always leaving at least one in training
    (unknown-user rows, user 0, always stay in training)."""
    fraction = check_float("fraction", fraction, low=0.0, high=1.0, low_open=True)
    check_choice("by", by, ("row", "user"))
    rng = np.random.default_rng(seed)
    n = len(data)
    test = np.zeros(n, dtype=bool)
    if by == "row":
        test[rng.permutation(n)[: int(round(fraction * n))]] = True
        return test
    known = np.flatnonzero(data.user > 0)
    users = data.user[known]
    order = np.lexsort((rng.random(known.size), users))  # users grouped, random order within
    counts = np.bincount(users, minlength=data.users.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(known.size) - starts[users[order]]  # position inside the user's shuffled events
    n_test = np.minimum(np.round(fraction * counts).astype(np.int64), counts - 1)
    test[known[order[rank < n_test[users[order]]]]] = True
    return test


def random_split(data: Interactions, *, fraction: float = 0.2, by: Literal["row", "user"] = "user",
                 seed: int = 0) -> tuple[Interactions, Interactions]:
    """(train, test) with a seeded random ``fraction`` held out, by rows or per user (``random_mask``)."""
    test = random_mask(data, fraction=fraction, by=by, seed=seed)
    return data.subset(~test), data.subset(test)


def last_event_mask(data: Interactions) -> np.ndarray:
    """Boolean mask of each user's last event by time (the last in log order among equal times; log
    order when there is no timestamp). Users with a single event, and unknown-user rows, get none."""
    known = np.flatnonzero(data.user > 0)
    if data.timestamp is not None:
        order = known[np.lexsort((known, data.timestamp[known].view(np.int64), data.user[known]))]
    else:
        order = known[np.argsort(data.user[known], kind="stable")]
    users = data.user[order]
    is_last = np.ones(order.size, dtype=bool)
    is_last[:-1] = users[1:] != users[:-1]
    counts = np.bincount(users, minlength=data.users.size)
    mask = np.zeros(len(data), dtype=bool)
    mask[order[is_last & (counts[users] > 1)]] = True
    return mask


def leave_last_out(data: Interactions) -> tuple[Interactions, Interactions]:
    """(train, test): the test holds each user's last event (``last_event_mask``)."""
    test = last_event_mask(data)
    if not test.any():
        raise DataError("leave-last-out needs users with at least two events; every user of this log has one.")
    return data.subset(~test), data.subset(test)


def official_fold(fold: str, *, data_dir: str | Path | None = None) -> tuple[Interactions, Interactions]:
    """(train, test) of an official ml-100k split: ``"u1".."u5"`` (five-fold) or ``"ua"`` / ``"ub"``."""
    from embrec.datasets import ml100k_fold

    return ml100k_fold(fold, data_dir=data_dir)
