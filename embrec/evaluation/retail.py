"""The retail chapter's protocols on Online Retail: ``retail-precision`` and ``retail-next``.

Split by time (DESIGN §4): train ``InvoiceDate < 2011-10-09``; validation ``2011-10-09 <= date <
2011-11-09``; test ``date >= 2011-11-09``. ``part="valid"`` (default; for tuning and the figures) fits on
train, hands the validation month to ``fit`` as ``valid`` and evaluates on it. ``part="test"`` (the final
figure) fits on everything before 2011-11-09 without a ``valid`` set and evaluates on the test month.
(The chapter's validation filter is ``<= '2011-11-09'``; no event lies at exactly midnight that day, so
the half-open interval is the same month and no event lands in two parts.)

The training set keeps the rows without a customer (user row 0): they count in popularity, and sequence
models learn from their transactions; a model that learns one vector per user should skip row 0.
A transaction is an invoice's consecutive rows (``Interactions.group_offsets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, check_choice
from embrec.evaluation.bootstrap import unit_scores
from embrec.evaluation.folds import (
    Fold,
    Scored,
    in_model_vocab,
    make_fold,
    popular_items,
    resolve_data,
    unit_keys,
)
from embrec.evaluation.metrics import top_k_hits, transaction_hits, transaction_precision
from embrec.evaluation.splits import time_masks
from embrec.models.base import top_k_rows

TRAIN_END = "2011-10-09"
VALID_END = "2011-11-09"
K = 5


def retail_folds(*, data: Interactions | None = None, dataset: str | None = None,
                 data_dir: str | Path | None = None, part: str = "valid") -> tuple[str, list[Fold]]:
    """("online-retail", [the one Fold]) for ``part`` "valid" or "test" (see the module docstring)."""
    check_choice("part", part, ("valid", "test"))
    log = resolve_data("retail", data=data, dataset=dataset, data_dir=data_dir, default="online-retail")
    log._need("group", "the retail protocols")
    before, valid, test = time_masks(log, [TRAIN_END, VALID_END])
    if part == "valid":
        fold = make_fold("valid", log.subset(before), log.subset(valid), valid_is_test=True,
                         description=f"train < {TRAIN_END}, evaluated on the validation month {TRAIN_END} .. {VALID_END}")
    else:
        fold = make_fold("test", log.subset(before | valid), log.subset(test),
                         description=f"train < {VALID_END}, evaluated on the test month from {VALID_END}")
    return log.name or dataset or "online-retail", [fold]


def retail_precision(model: Any, fold: Fold, *, k: int = K) -> dict[str, float]:
    """precision@k (k = 5 by default) per transaction: known users get ``model.top_k`` of their training
    history (bought items NOT excluded), unknown users the training top-k; hits are rows whose item is
    among the transaction's k, divided by transactions x k."""
    return retail_precision_scored(model, fold, k=k).metrics


def retail_precision_scored(model: Any, fold: Fold, *, k: int = K) -> Scored:
    """``retail_precision`` with per-unit sums: a known customer's transactions make one unit (hits over
    them / (k x their transactions)); every transaction without a customer is a unit of its own."""
    events = in_model_vocab(model, fold.test)
    offsets = events.group_offsets()
    users = events.user[offsets[:-1]]  # (T,) the customer of each transaction
    predicted = np.tile(popular_items(model, fold.train, k), (users.size, 1))  # (T, k)
    known = users > 0
    if known.any():
        distinct, inverse = np.unique(users[known], return_inverse=True)
        rows, _ = model.top_k(distinct, model.seen_.select(distinct), min(k, model.items_.n_ids))
        predicted[known, : rows.shape[1]] = np.asarray(rows)[inverse]
        predicted[known, rows.shape[1]:] = 0
    hits = transaction_hits(offsets, events.item, predicted)  # (T,)
    name = f"precision@{k}"
    units = unit_scores(transaction_keys(model, users), {name: hits}, {name: np.full(hits.size, float(k))})
    return Scored({name: transaction_precision(offsets, events.item, predicted)}, units, predicted)


def retail_next(model: Any, fold: Fold, *, k: int = K, batch_size: int | None = None) -> dict[str, float]:
    """top-k accuracy (k = 5 by default) of next-item prediction inside each transaction: before each row,
    the model scores the next item from the transaction's earlier items (``model.next_item_scores``);
    those items are removed, the top k taken; a hit when the row's item is among them; hits / rows."""
    return retail_next_scored(model, fold, k=k, batch_size=batch_size).metrics


def retail_next_scored(model: Any, fold: Fold, *, k: int = K, batch_size: int | None = None) -> Scored:
    """``retail_next`` with per-unit sums (units as ``retail_precision_scored``: a customer, or one
    anonymous transaction)."""
    events = in_model_vocab(model, fold.test)
    predicted = next_item_predictions(model, events, k=k, batch_size=batch_size)
    hits = top_k_hits(events.item, predicted).astype(np.float64)  # (rows,)
    offsets = events.group_offsets()
    keys = np.repeat(transaction_keys(model, events.user[offsets[:-1]]), np.diff(offsets))
    name = f"top{k}_accuracy"
    units = unit_scores(keys, {name: hits}, {name: np.ones(hits.size)})
    return Scored({name: float(hits.mean())}, units, predicted)


def transaction_keys(model: Any, users: np.ndarray) -> np.ndarray:
    """(T,) the resampling unit of each transaction: its customer's raw id, or, without a customer,
    the transaction itself ("(anonymous transaction t)")."""
    keys = unit_keys(model, users)
    anonymous = np.flatnonzero(np.asarray(users) == 0)
    keys[anonymous] = [f"(anonymous transaction {t})" for t in anonymous]
    return keys


def transaction_prefixes(offsets: np.ndarray, items: np.ndarray, rows: np.ndarray) -> Ragged:
    """For each event row, the items of the rows before it in its transaction (offsets from group_offsets)."""
    group = np.searchsorted(offsets, rows, side="right") - 1
    starts = offsets[group]
    lengths = rows - starts
    out = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    within = np.arange(out[-1], dtype=np.int64) - np.repeat(out[:-1], lengths)
    return Ragged(items[np.repeat(starts, lengths) + within], out)


def next_item_predictions(model: Any, events: Interactions, *, k: int = K,
                          batch_size: int | None = None) -> np.ndarray:
    """(rows, k) next-item recommendations for every row of ``events`` (model vocabularies), the
    transaction's earlier items removed; 0 where fewer than k items were left."""
    offsets = events.group_offsets()
    n_items = model.items_.size
    batch = batch_size or max(1, min(2048, 2**24 // n_items))
    predicted = np.zeros((len(events), k), dtype=np.int64)
    for start in range(0, len(events), batch):
        rows = np.arange(start, min(start + batch, len(events)))
        prefixes = transaction_prefixes(offsets, events.item, rows)
        scores = np.array(model.next_item_scores(events.user[rows], prefixes), dtype=np.float32)  # (B, I)
        if scores.shape != (rows.size, n_items):
            raise DataError(f"{type(model).__name__}.next_item_scores must return shape ({rows.size}, {n_items}); "
                            f"received {scores.shape}.")
        scores[:, 0] = -np.inf
        scores[prefixes.row_ids, prefixes.values] = -np.inf  # already bought in this transaction
        top, vals = top_k_rows(scores, k)
        top[~np.isfinite(vals)] = 0
        predicted[rows, : top.shape[1]] = top
    return predicted
