"""Protocols for any log (a named dataset or a file): ``leave-last-out`` and ``random-holdout``.

- ``leave-last-out``: each user's last event by time is the test (users with at least two events);
  full ranking of every item not in the user's training data; hit@10 and NDCG@10.
- ``random-holdout``: a seeded ``fraction`` (20 %) of each user's events is the test; same ranking;
  Precision@10, Recall@10, NDCG@10.

The relevant set of a user is their distinct test items that are new to them: an item the user already
has in training is excluded from the ranking, so it could never be found (a last event that repeats a
training purchase leaves that user out; ``retail-precision`` is the protocol for repeat purchases).
Items unknown to training stay relevant (they count, and are never hit). Rows of unknown users (user 0)
stay in training. No ``valid`` set is handed to ``fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, check_positive_int
from embrec.evaluation import metrics as M
from embrec.evaluation.bootstrap import unit_scores
from embrec.evaluation.folds import (
    Fold,
    Scored,
    in_model_vocab,
    make_fold,
    new_distinct_events,
    resolve_data,
    unit_keys,
)
from embrec.evaluation.splits import leave_last_out, random_split

K = 10
_PER_USER = {
    "precision": M.precision_per_user,
    "recall": M.recall_per_user,
    "ndcg": M.ndcg_per_user,
    "hit": M.hit_per_user,
    "map": M.average_precision_per_user,
}


def leave_last_out_folds(*, data: Interactions | None = None, dataset: str | None = None,
                         data_dir: str | Path | None = None) -> tuple[str, list[Fold]]:
    """(dataset name, [the Fold]): train = all but each user's last event, test = that event."""
    log = resolve_data("leave-last-out", data=data, dataset=dataset, data_dir=data_dir, default=None)
    train, test = leave_last_out(log)
    return _name(log, dataset), [_ranking_fold("last", train, test, "each user's last event held out")]


def random_holdout_folds(*, data: Interactions | None = None, dataset: str | None = None,
                         data_dir: str | Path | None = None, fraction: float = 0.2,
                         seed: int = 0) -> tuple[str, list[Fold]]:
    """(dataset name, [the Fold]): a seeded ``fraction`` of each user's events held out."""
    log = resolve_data("random-holdout", data=data, dataset=dataset, data_dir=data_dir, default=None)
    train, test = random_split(log, fraction=fraction, by="user", seed=seed)
    return _name(log, dataset), [_ranking_fold("holdout", train, test,
                                               f"{fraction:.0%} of each user's events held out (seed {seed})")]


def leave_last_out_metrics(model: Any, fold: Fold, *, k: int = K) -> dict[str, float]:
    """hit@k and NDCG@k (k = 10 by default) of the held-out last events."""
    return leave_last_out_scored(model, fold, k=k).metrics


def random_holdout_metrics(model: Any, fold: Fold, *, k: int = K) -> dict[str, float]:
    """Precision@k, Recall@k and NDCG@k (k = 10 by default) of the held-out events."""
    return random_holdout_scored(model, fold, k=k).metrics


def leave_last_out_scored(model: Any, fold: Fold, *, k: int = K) -> Scored:
    return ranking_scored(model, fold, k=k, metrics=("hit", "ndcg"))


def random_holdout_scored(model: Any, fold: Fold, *, k: int = K) -> Scored:
    return ranking_scored(model, fold, k=k, metrics=("precision", "recall", "ndcg"))


def ranking_metrics(model: Any, fold: Fold, *, k: int,
                    metrics: Sequence[str] = ("precision", "recall", "ndcg")) -> dict[str, float]:
    """Rank, for every user of ``fold.test``, the ``k`` best items outside their training history
    (``model.top_k(users, seen, k, exclude=seen)``) and score them against the user's test items:
    ``{"precision@k": ..., "recall@k": ..., "ndcg@k": ..., "hit@k": ..., "map@k": ...}`` as asked."""
    return ranking_scored(model, fold, k=k, metrics=metrics).metrics


def ranking_scored(model: Any, fold: Fold, *, k: int,
                   metrics: Sequence[str] = ("precision", "recall", "ndcg")) -> Scored:
    """``ranking_metrics`` with the per-user values behind them (each user one resampling unit, weight 1)
    and the ranked lists."""
    k = check_positive_int("k", k)
    events = in_model_vocab(model, fold.test)
    events = events.subset(events.user > 0)
    if len(events) == 0:
        raise DataError("no test event belongs to a user the model knows; nothing to rank.")
    users, row_of = np.unique(events.user, return_inverse=True)
    relevant = Ragged.group(row_of, events.item, users.size)
    history = model.seen_.select(users)
    k_eff = min(k, model.items_.n_ids)
    ranked, _ = model.top_k(users, history, k_eff, exclude=history)
    ranked = np.asarray(ranked, dtype=np.int64)
    if k_eff < k:
        ranked = np.pad(ranked, ((0, 0), (0, k - k_eff)))
    per_user = {f"{name}@{k}": _PER_USER[name](ranked, relevant, k=k) for name in metrics}
    ones = {m: np.ones(users.size) for m in per_user}
    units = unit_scores(unit_keys(model, users), per_user, ones)
    return Scored({m: units.figure(m) for m in per_user}, units, ranked)


def _ranking_fold(name: str, train: Interactions, test: Interactions, description: str) -> Fold:
    test = new_distinct_events(train, test)
    if len(test) == 0:
        raise DataError("the test part holds no event a model could rank (every held-out item is already in "
                        "its user's training data); this log suits retail-precision better.")
    return make_fold(name, train, test, description=description)


def _name(log: Interactions, dataset: str | None) -> str:
    return dataset or log.name or "data"
