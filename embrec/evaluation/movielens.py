"""MovieLens 100K protocols on the official splits: ``ml100k-rmse`` and ``ml100k-top10``.

- ``ml100k-rmse``: for each of u1..u5, fit on ``uN.base`` and predict every rating of ``uN.test``
  (``model.predict(user_rows, item_rows)``; rows may be 0 for a user or movie absent from the base,
  which the model must answer with its fallback, e.g. the global mean). RMSE and MAE, mean of the folds.
- ``ml100k-top10``: fit on ``ua.base`` (every rating a positive interaction); for each test user rank
  all items not in the user's training data; Precision@10, Recall@10, NDCG@10 against the user's
  ``ua.test`` movies (binary relevance).

No ``valid`` set is handed to ``fit`` (the test ratings must not steer training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.errors import InvalidParameterError, check_choice
from embrec.evaluation.bootstrap import unit_scores
from embrec.evaluation.folds import Fold, Scored, in_model_vocab, make_fold, unit_keys
from embrec.evaluation.generic import ranking_scored
from embrec.evaluation.metrics import mae, rmse

RMSE_FOLDS = ("u1", "u2", "u3", "u4", "u5")
K = 10


def rmse_folds(*, data: Interactions | None = None, dataset: str | None = None,
               data_dir: str | Path | None = None,
               folds: Sequence[str] = RMSE_FOLDS) -> tuple[str, list[Fold]]:
    """("ml-100k", one Fold per official fold in ``folds``)."""
    _official_only("ml100k-rmse", data, dataset)
    if isinstance(folds, str) or not folds:
        raise InvalidParameterError(f"folds must be a non-empty list of u1..u5; received {folds!r}.")
    return "ml-100k", [_fold(check_choice("folds", f, RMSE_FOLDS), data_dir) for f in folds]


def top10_folds(*, data: Interactions | None = None, dataset: str | None = None,
                data_dir: str | Path | None = None, fold: str = "ua") -> tuple[str, list[Fold]]:
    """("ml-100k", [the ``ua`` (or ``ub``) Fold]); the test keeps only movies new to each user."""
    _official_only("ml100k-top10", data, dataset)
    check_choice("fold", fold, ("ua", "ub"))
    return "ml-100k", [_fold(fold, data_dir, ranking=True)]


def ml100k_rmse(model: Any, fold: Fold) -> dict[str, float]:
    """RMSE and MAE of ``model.predict`` on the fold's test ratings."""
    return ml100k_rmse_scored(model, fold).metrics


def ml100k_rmse_scored(model: Any, fold: Fold) -> Scored:
    """``ml100k_rmse`` with per-user sums (squared and absolute errors over the user's ratings)."""
    if not getattr(model, "predicts_ratings", False):
        raise InvalidParameterError(f"protocol ml100k-rmse needs a model that predicts ratings "
                                    f"(predicts_ratings=True); received {type(model).__name__}.")
    events = in_model_vocab(model, fold.test)
    predicted = np.asarray(model.predict(events.user, events.item), dtype=np.float64)
    metrics = {"rmse": rmse(events.rating, predicted), "mae": mae(events.rating, predicted)}
    err = predicted - events.rating
    ones = np.ones(err.size)
    units = unit_scores(unit_keys(model, events.user), {"rmse": err**2, "mae": np.abs(err)},
                        {"rmse": ones, "mae": ones}, root=("rmse",))
    return Scored(metrics, units)


def ml100k_top10(model: Any, fold: Fold, *, k: int = K) -> dict[str, float]:
    """Precision@k, Recall@k and NDCG@k (k = 10 by default) over all items the user has not rated in
    training."""
    return ml100k_top10_scored(model, fold, k=k).metrics


def ml100k_top10_scored(model: Any, fold: Fold, *, k: int = K) -> Scored:
    return ranking_scored(model, fold, k=k, metrics=("precision", "recall", "ndcg"))


def _fold(name: str, data_dir: str | Path | None, *, ranking: bool = False) -> Fold:
    from embrec.datasets import ml100k_fold
    from embrec.evaluation.folds import new_distinct_events

    base, test = ml100k_fold(name, data_dir=data_dir)
    if ranking:
        test = new_distinct_events(base, test)
    return make_fold(name, base, test, description=f"{name}.base -> {name}.test")


def _official_only(protocol: str, data: Any, dataset: str | None) -> None:
    if data is not None or dataset not in (None, "ml-100k"):
        raise InvalidParameterError(f"protocol {protocol} reads the official ml-100k folds; it takes no data= "
                                    f"or dataset= (received {'data' if data is not None else repr(dataset)}). "
                                    "Use leave-last-out or random-holdout for other logs.")
