"""What every protocol shares: the Fold a model is fitted and evaluated on, and small helpers.

A protocol turns a dataset into one or more ``Fold``s (``train`` compacted to the vocabularies of what
it holds; ``test`` = the events to evaluate, in the train vocabularies, unknown ids -> 0), fits each
model with ``model.fit(fold.train, valid=fold.valid)`` and scores it with its evaluation function.
Evaluation functions re-encode ``fold.test`` into the model's own vocabularies first, so an already
trained (or loaded) model is evaluated on the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.errors import InvalidParameterError
from embrec.evaluation.bootstrap import UnitScores


@dataclass
class Fold:
    """One train/evaluate pair: ``name`` ("valid", "test", "u1", "ua"...), ``train`` (compacted),
    ``valid`` (handed to ``fit`` for monitoring / early stopping; None when the protocol gives none) and
    ``test`` (the evaluated events, in ``train``'s vocabularies); ``description`` says it in words."""

    name: str
    train: Interactions
    valid: Interactions | None
    test: Interactions
    description: str = ""


@dataclass
class Scored:
    """What a protocol's scoring returns on one fold: the ``metrics`` (the protocol's figures), the
    per-unit sums behind them (``units``, for intervals, paired tests and per-user files), and the
    lists shown (``recommended`` (L, k) item rows of the model, 0 = empty slot; None for a rating
    protocol), for coverage and popularity."""

    metrics: dict[str, float]
    units: UnitScores
    recommended: np.ndarray | None = None


def unit_keys(model: Any, user_rows: np.ndarray) -> np.ndarray:
    """(n,) str: the raw id of each user row of the model (row 0: "(unknown user)")."""
    rows = np.asarray(user_rows, dtype=np.int64)
    keys = np.full(rows.size, "(unknown user)", dtype=object)
    known = rows > 0
    if known.any():
        keys[known] = [str(u) for u in model.users_.decode(rows[known])]
    return keys


def make_fold(name: str, train: Interactions, test: Interactions, *, valid_is_test: bool = False,
              description: str = "") -> Fold:
    """Compact ``train`` and re-encode ``test`` to its vocabularies."""
    train = train.compact()
    test = test.reencode(train.users, train.items)
    text = description or name
    return Fold(name, train, test if valid_is_test else None, test,
                f"{text} ({len(train)} training events, {len(test)} evaluated)")


def resolve_data(protocol: str, *, data: Interactions | None, dataset: str | None,
                 data_dir: str | Path | None, default: str | None) -> Interactions:
    """The log a protocol runs on: ``data`` if given, else the named ``dataset`` (else ``default``)."""
    if data is not None and dataset is not None:
        raise InvalidParameterError(f"protocol {protocol} takes data= or dataset=, not both; received both.")
    if data is not None:
        if not isinstance(data, Interactions):
            raise InvalidParameterError(f"data must be an Interactions (e.g. from embrec.datasets.from_file); "
                                        f"received {type(data).__name__}.")
        return data
    name = dataset or default
    if name is None:
        raise InvalidParameterError(f"protocol {protocol} runs on any log: give dataset= (a name) or data= "
                                    "(an Interactions); received neither.")
    from embrec import datasets

    return datasets.load(name, data_dir=data_dir)


def in_model_vocab(model: Any, events: Interactions) -> Interactions:
    """``events`` in the model's vocabularies (a no-op when they already share them)."""
    if events.users is model.users_ and events.items is model.items_:
        return events
    return events.reencode(model.users_, model.items_)


def popular_items(model: Any, train: Interactions, k: int) -> np.ndarray:
    """(k,) the ``k`` most frequent items of ``train`` (ties: lower row first), as rows of the model."""
    counts = train.item_counts().astype(np.float64)
    counts[0] = -1.0
    top = np.argsort(-counts, kind="stable")[:k]
    top = top[counts[top] > 0]
    rows = model.items_.encode(train.items.raw_ids[top - 1], unknown="zero") if top.size else top
    return np.pad(rows, (0, k - rows.size))


def new_distinct_events(train: Interactions, test: Interactions) -> Interactions:
    """The rows of ``test`` worth ranking for, in the shared (pre-compact) vocabularies: a known user,
    the first occurrence of each (user, item) pair, and items the user has no event with in ``train``
    (those are excluded from the ranking, so they could never be found). Items unknown to ``train``
    stay: they count in the denominators and are never hit."""
    n_items = np.int64(test.items.size)
    key = test.user * n_items + test.item
    seen = np.unique(train.user * n_items + train.item)
    first = np.zeros(len(test), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True
    known_user = np.isin(test.user, np.unique(train.user[train.user > 0]))
    return test.subset(first & known_user & ~np.isin(key, seen))
