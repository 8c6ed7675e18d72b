"""Training examples for the history-based deep models (softmax DNN, two-tower): input history -> targets.

Two ways to cut a user's training history into (input items, target items), both leak-free:

- ``"holdout"``: a random ``holdout`` fraction of the user's distinct items are the targets and every
  occurrence of them is removed from the input, so a target is never an item the input already contains
  (MovieLens: a movie is rated once; the course colab's random label, minus its leak).
- ``"next-basket"``: the input is every transaction before transaction t, the targets are the items of
  transaction t (one example per transaction after the first). A target may be an item the user bought
  before: repeat purchases are learnt from the data (Online Retail). Needs ``group`` (transactions).

- ``"next-period"``: cut-offs every 30 days; the input is everything before a cut-off, the targets are
  every event of the 30 days after it, one per row (an item bought three times counts three times) —
  the shape of the retail protocol (a month of purchases from the history before it).

``"auto"`` picks next-basket when the log has transactions, else holdout. ``min_examples`` makes an epoch
at least that many examples: a log with few users (ml-100k: 943 holdout examples, 8 batches of 128) gets
several fresh holdout draws per epoch (the same examples repeated in the other modes), so the number of
optimizer steps an epoch takes does not shrink with the number of users. A batch keeps the inputs as
values + offsets (ragged, no padding) and the targets as (example, item) pairs::

    inputs  = [[4, 9, 9], [7]]     -> values [4, 9, 9, 7], offsets [0, 3, 4]
    targets = [[2], [5, 6]]        -> example [0, 1, 1], target [2, 5, 6]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from embrec.data.interactions import Interactions
from embrec.data.ragged import Ragged
from embrec.errors import DataError, check_choice
from embrec.evaluation.splits import last_event_mask
from embrec.models.base import top_k_rows
from embrec.models.training import Batches, n_batches

TARGETS = ("auto", "holdout", "next-basket", "next-period")
PERIOD_DAYS = 30
#: the default ``min_epoch_examples`` of softmax-dnn and two-tower: an epoch is at least this many examples
#: (chosen on validation parts only: docs/benchmarks.md, "softmax-dnn and two-tower: an epoch counted in
#: examples"); inert when one draw already has as many (Online Retail: 13.9k next baskets)
MIN_EPOCH_EXAMPLES = 5_000


@dataclass
class Examples:
    """``inputs`` and ``targets``: Ragged with one row per example (item rows)."""

    inputs: Ragged
    targets: Ragged

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class HistoryBatch:
    """One mini-batch: ragged input histories (B bags) and (T,) target pairs; ``padded`` (B, L) only
    when a padded layout was asked for (benchmarks)."""

    values: torch.Tensor  # (nnz,)
    offsets: torch.Tensor  # (B + 1,)
    example: torch.Tensor  # (T,)
    target: torch.Tensor  # (T,)
    padded: torch.Tensor | None = None  # (B, L), 0 = padding

    def to(self, device: torch.device) -> HistoryBatch:
        return HistoryBatch(self.values.to(device), self.offsets.to(device), self.example.to(device),
                            self.target.to(device), None if self.padded is None else self.padded.to(device))


def resolve_targets(targets: str, train: Interactions) -> str:
    check_choice("targets", targets, TARGETS)
    if targets == "auto":
        return "next-basket" if train.group is not None and _repeat_customers(train) else "holdout"
    if targets == "next-basket" and train.group is None:
        raise DataError("targets='next-basket' needs transactions (the group column); this log has none — "
                        "use targets='holdout'.")
    if targets == "next-period" and train.timestamp is None:
        raise DataError("targets='next-period' needs timestamps; this log has none — use targets='holdout'.")
    return targets


def _repeat_customers(train: Interactions) -> bool:
    """Whether some known user has at least two transactions."""
    known = train.user > 0
    pairs = np.unique(np.stack([train.user[known], train.group[known]]), axis=1)  # (2, distinct pairs)
    return bool(np.unique(pairs[0]).size < pairs.shape[1])


class ExampleMaker:
    """Draws a fresh set of examples each epoch from the training log."""

    def __init__(self, train: Interactions, *, targets: str, holdout: float, max_history: int | None,
                 min_examples: int = 0) -> None:
        self.mode = resolve_targets(targets, train)
        self.holdout = holdout
        self.max_history = max_history
        self.min_examples = int(min_examples)
        order = np.lexsort((np.arange(len(train)),
                            train.timestamp if train.timestamp is not None else np.zeros(len(train)), train.user))
        known = train.user[order] > 0
        order = order[known]
        self.history = Ragged.group(train.user[order], train.item[order], train.users.size)
        if self.mode == "next-basket":
            # transaction boundaries inside each user's (time-ordered) history
            grp = train.group[order]
            new = np.concatenate([[True], (grp[1:] != grp[:-1]) | (train.user[order][1:] != train.user[order][:-1])])
            self.starts = np.flatnonzero(new)  # (n_transactions,) positions in history.values
            user_of = train.user[order][self.starts]
            self.first = self.history.offsets[user_of]  # (n_tx,) start of the user's history
            self.ends = np.append(self.starts[1:], order.size)  # (n_tx,)
            self.later = np.flatnonzero(self.starts > self.first)  # transactions with something before them
            if self.later.size == 0:
                raise DataError("targets='next-basket' needs users with at least two transactions; "
                                "this log has none — use targets='holdout'.")
        elif self.mode == "next-period":
            self._periods(train.timestamp[order])
        else:
            lengths = np.array([np.unique(h).size for h in self.history])
            self.users = np.flatnonzero(lengths >= 2)
            if self.users.size == 0:
                raise DataError("targets='holdout' needs users with at least two distinct items; this log has none.")

    def draw(self, rng: np.random.Generator) -> Examples:
        """One epoch's examples: at least ``min_examples`` of them (fresh draws, or repeats; see the module)."""
        parts = [self._draw_once(rng)]
        while len(parts) * len(parts[0]) < self.min_examples:
            parts.append(self._draw_once(rng))
        return parts[0] if len(parts) == 1 else Examples(_concat([p.inputs for p in parts]),
                                                         _concat([p.targets for p in parts]))

    def _draw_once(self, rng: np.random.Generator) -> Examples:
        if self.mode == "next-basket":
            return self._next_basket()
        if self.mode == "next-period":
            return self.period_examples
        return self._holdout(rng)

    def _periods(self, times: np.ndarray) -> None:
        """Cut-offs every PERIOD_DAYS: input = a user's events before the cut-off, targets = every event
        (one per row, repeats included) in the PERIOD_DAYS after it."""
        step = np.timedelta64(PERIOD_DAYS, "D")
        cutoffs = np.arange(times.min() + step, times.max(), step)
        firsts, stops, ends = [], [], []
        offs = self.history.offsets
        for u in np.flatnonzero(self.history.lengths):
            t = times[offs[u]:offs[u + 1]]
            stop = offs[u] + np.searchsorted(t, cutoffs)
            end = offs[u] + np.searchsorted(t, cutoffs + step)
            keep = (stop > offs[u]) & (end > stop)
            firsts.append(np.full(int(keep.sum()), offs[u]))
            stops.append(stop[keep])
            ends.append(end[keep])
        first, stop, end = (np.concatenate(x).astype(np.int64) for x in (firsts, stops, ends))
        if first.size == 0:
            raise DataError(f"targets='next-period' found no user with events both before and within "
                            f"{PERIOD_DAYS} days after a cut-off; use targets='holdout'.")
        if self.max_history is not None:
            first = np.maximum(first, stop - self.max_history)
        self.period_examples = Examples(_slices(self.history.values, first, stop),
                                        _slices(self.history.values, stop, end))

    def _next_basket(self) -> Examples:
        tx = self.later
        first, start, end = self.first[tx], self.starts[tx], self.ends[tx]
        if self.max_history is not None:
            first = np.maximum(first, start - self.max_history)
        inputs = _slices(self.history.values, first, start)
        targets = Ragged.from_lists([np.unique(self.history.values[s:e]) for s, e in zip(start, end)])
        return Examples(inputs, targets)

    def _holdout(self, rng: np.random.Generator) -> Examples:
        ins, outs = [], []
        for u in self.users:
            h = self.history[u]
            items = np.unique(h)
            n_t = min(items.size - 1, max(1, int(round(self.holdout * items.size))))
            tgt = rng.choice(items, size=n_t, replace=False)
            inp = h[~np.isin(h, tgt)]
            if self.max_history is not None:
                inp = inp[-self.max_history:]
            ins.append(inp)
            outs.append(np.sort(tgt))
        return Examples(Ragged.from_lists(ins), Ragged.from_lists(outs))


def _concat(parts: list[Ragged]) -> Ragged:
    """The rows of every part, one after another."""
    return Ragged.from_lengths(np.concatenate([p.values for p in parts]),
                               np.concatenate([p.lengths for p in parts]))


def carve_valid(train: Interactions, *, max_users: int, seed: int) -> tuple[Interactions, Interactions | None]:
    """(train without the slice, the slice): the last event (by time) of up to ``max_users`` seeded random
    users with at least 3 events whose last item is new to them (no earlier event with it), for early
    stopping when ``fit`` is given no ``valid``; (train, None) when ``max_users`` is 0 or fewer than 20
    users qualify. Vocabularies are shared with ``train``. The slice is what the protocols that hand ``fit``
    no ``valid`` score (leave-last-out, ml100k-top10: new items, seen ones excluded), so score it with
    ``exclude_seen=True``."""
    if max_users <= 0:
        return train, None
    last = last_event_mask(train)
    counts = np.bincount(train.user[train.user > 0], minlength=train.users.size)
    pair_counts = np.unique(train.user * np.int64(train.items.size) + train.item, return_inverse=True,
                            return_counts=True)
    once = pair_counts[2][pair_counts[1]] == 1  # (events,) the user's only event with this item
    last &= (counts[train.user] >= 3) & once
    rows = np.flatnonzero(last)
    if rows.size < 20:
        return train, None
    if rows.size > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_users, replace=False))
    held = np.zeros(len(train), dtype=bool)
    held[rows] = True
    return train.subset(~held), train.subset(held)


def early_stopping_split(train: Interactions, valid: Interactions | None, seen: Ragged, *, max_users: int,
                         seed: int) -> tuple[Interactions, Interactions | None, Ragged, bool]:
    """(train, valid, the histories to score valid with, carved): ``valid`` as given, or else the slice of
    ``carve_valid`` (train then loses it, and the histories come from what is left); ``carved`` says the
    slice is one, to be scored with ``exclude_seen=True``."""
    if valid is not None:
        return train, valid, seen, False
    train, valid = carve_valid(train, max_users=max_users, seed=seed)
    if valid is None:
        return train, None, seen, False
    return train, valid, train.user_histories(), True


def _slices(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> Ragged:
    """Ragged whose row i is values[starts[i]:stops[i]], vectorised."""
    lengths = stops - starts
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return Ragged(values[np.repeat(starts, lengths) + within], offsets)


def history_batches(ex: Examples, *, batch_size: int, rng: np.random.Generator, length_buckets: bool = False,
                    padded: bool = False) -> Batches:
    """Shuffled mini-batches (see ``_history_batches``), sized for the progress bar."""
    return Batches(_history_batches(ex, batch_size=batch_size, rng=rng, length_buckets=length_buckets,
                                    padded=padded), n_batches(len(ex), batch_size))


def _history_batches(ex: Examples, *, batch_size: int, rng: np.random.Generator, length_buckets: bool,
                     padded: bool) -> Iterator[HistoryBatch]:
    """Shuffled mini-batches. ``length_buckets`` sorts examples by input length inside windows of 50
    batches (less variance of cost per batch) and then shuffles the batch order."""
    order = rng.permutation(len(ex))
    if length_buckets:
        window = 50 * batch_size
        lengths = ex.inputs.lengths
        order = np.concatenate([w[np.argsort(lengths[w], kind="stable")]
                                for w in np.array_split(order, max(1, -(-order.size // window)))])
    chunks = [order[s:s + batch_size] for s in range(0, order.size, batch_size)]
    if length_buckets:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for idx in chunks:
        inp, tgt = ex.inputs.select(idx), ex.targets.select(idx)
        values, offsets = inp.to_torch()
        pad = torch.as_tensor(inp.to_padded()) if padded else None
        yield HistoryBatch(values, offsets, torch.as_tensor(tgt.row_ids), torch.as_tensor(tgt.values), pad)


def valid_precision(scores_of, history: Ragged, valid: Interactions, *, k: int, exclude_seen: bool,
                    max_users: int = 2000, batch: int = 256) -> float:
    """Precision@k on ``valid`` of users with a training history: hits among the top k of
    ``scores_of(user_rows, histories) -> (B, items.size)`` / (users x k). Up to ``max_users`` users
    (the first ones by row, deterministic)."""
    keep = (valid.user > 0) & (valid.item > 0)
    users = np.unique(valid.user[keep])
    users = users[history.lengths[users] > 0][:max_users]
    if users.size == 0:
        return 0.0
    truth = Ragged.group(valid.user[keep], valid.item[keep], valid.users.size)
    hits = 0
    for s in range(0, users.size, batch):
        rows = users[s:s + batch]
        hist = history.select(rows)
        sc = np.array(scores_of(rows, hist), dtype=np.float32)  # (b, N)
        sc[:, 0] = -np.inf
        if exclude_seen:
            sc[hist.row_ids, hist.values] = -np.inf
        top, _ = top_k_rows(sc, k)  # (b, k), ties: lower row first
        for r, u in enumerate(rows):
            hits += np.isin(top[r], truth[u]).sum()
    return float(hits / (users.size * k))
