"""Validation folds carved from a protocol's TRAINING part only, by the protocol's own rule.

    carved = validation_fold("leave-last-out", fold)     # a Fold inside fold.train; fold.test is never read

Tuning fits on ``carved.train`` and scores with the protocol's own evaluation function on
``carved.test``, so the protocol's scored part (``fold.test``, and ``fold.valid``, which is the scored
month of ``retail-precision --option part=valid``) plays no part in choosing hyper-parameters.

| protocol | the validation part carved from ``fold.train`` |
|---|---|
| leave-last-out | each user's last training event (leave-last-out again, inside train) |
| random-holdout | a seeded 20 % of each user's training events |
| ml100k-top10 | a seeded random 10 % of each user's ``ua.base`` ratings (``ua.test`` is about 10 %) |
| ml100k-rmse | a seeded random 20 % of the first fold's ``uN.base`` rows (``uN.test`` is 20 %) |
| retail-precision, retail-next | the last ``RETAIL_WEEKS`` weeks of train (the protocols validate on the month after train) |

The carved fold hands its validation part to ``fit`` as ``valid`` too (early stopping and the per-epoch
metric that prunes trials), exactly as ``retail-precision`` does with its validation month.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from embrec.data.interactions import Interactions
from embrec.errors import DataError, InvalidParameterError
from embrec.evaluation.folds import Fold, make_fold, new_distinct_events
from embrec.evaluation.splits import last_event_mask, random_mask

RETAIL_WEEKS = 4
TOP10_FRACTION = 0.1
RMSE_FRACTION = 0.2
HOLDOUT_FRACTION = 0.2


def validation_fold(protocol: str, fold: Fold, *, seed: int = 0) -> Fold:
    """The validation Fold of ``protocol`` inside ``fold.train`` (see the module table)."""
    if protocol not in CARVERS:
        raise InvalidParameterError(
            f"tuning knows no validation rule for protocol {protocol!r}; "
            f"known: {', '.join(CARVERS)}."
        )
    return CARVERS[protocol](fold.train, seed)


def _ranking(name: str, train: Interactions, held: np.ndarray, text: str) -> Fold:
    sub_train, part = train.subset(~held), train.subset(held)
    part = new_distinct_events(sub_train, part)
    if len(part) == 0:
        raise DataError(
            f"the training part leaves no validation event a model could rank ({text}); "
            "tuning needs more events per user."
        )
    return make_fold(
        name, sub_train, part, valid_is_test=True, description=f"tuning validation: {text}"
    )


def _leave_last_out(train: Interactions, seed: int) -> Fold:
    held = last_event_mask(train)
    if not held.any():
        raise DataError(
            "tuning on leave-last-out needs users with at least two training events; none has."
        )
    return _ranking("tune-last", train, held, "each user's last training event")


def _random_holdout(train: Interactions, seed: int) -> Fold:
    held = random_mask(train, fraction=HOLDOUT_FRACTION, by="user", seed=seed)
    return _ranking(
        "tune-holdout", train, held, f"{HOLDOUT_FRACTION:.0%} of each user's training events"
    )


def _top10(train: Interactions, seed: int) -> Fold:
    held = random_mask(train, fraction=TOP10_FRACTION, by="user", seed=seed)
    return _ranking(
        "tune-ua", train, held, f"a random {TOP10_FRACTION:.0%} of each user's training ratings"
    )


def _rmse(train: Interactions, seed: int) -> Fold:
    held = random_mask(train, fraction=RMSE_FRACTION, by="row", seed=seed)
    return make_fold(
        "tune-base",
        train.subset(~held),
        train.subset(held),
        valid_is_test=True,
        description=f"tuning validation: a random {RMSE_FRACTION:.0%} of the base ratings",
    )


def _retail(train: Interactions, seed: int) -> Fold:
    train._need("timestamp", "the retail tuning split")
    ts = train.timestamp
    cut = ts.max() - np.timedelta64(7 * RETAIL_WEEKS, "D")
    held = ts >= cut
    if held.all() or not held.any():
        raise DataError(
            f"the training part spans less than {RETAIL_WEEKS} weeks; no validation month to carve."
        )
    return make_fold(
        "tune-weeks",
        train.subset(~held),
        train.subset(held),
        valid_is_test=True,
        description=f"tuning validation: the last {RETAIL_WEEKS} weeks of train",
    )


CARVERS: dict[str, Callable[[Interactions, int], Fold]] = {
    "leave-last-out": _leave_last_out,
    "random-holdout": _random_holdout,
    "ml100k-top10": _top10,
    "ml100k-rmse": _rmse,
    "retail-precision": _retail,
    "retail-next": _retail,
}
