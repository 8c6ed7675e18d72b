"""Negative sampling for implicit feedback: vectorised, seeded, never one item at a time in Python.

    sampler = ItemSampler.popularity(item_counts, alpha=0.75)   # or ItemSampler.uniform(n_rows)
    neg = sampler.sample(rng, (batch, 5))                        # (B, K) item rows in 1..n_items
    neg = resample_seen(rng, sampler, users, neg, seen)          # redraw negatives the user has bought

Item rows follow the IdVocab layout: row 0 is padding and is never drawn. A popularity sampler draws
item ``i`` with probability proportional to ``count_i ** alpha`` (alpha=0: uniform over items that
occur; alpha=1: proportional to popularity; word2vec uses 0.75). ``probabilities()`` gives the exact
distribution, which fold-in uses to take the expectation over negatives instead of sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embrec.data.ragged import Ragged
from embrec.errors import InvalidParameterError, check_float
from embrec.nn import compiled


@dataclass(frozen=True)
class ItemSampler:
    """Draws item rows from a fixed distribution over rows 1..size-1 (``weights[0]`` is ignored)."""

    weights: np.ndarray  # (size,) unnormalised, row 0 = padding
    uniform: bool = False

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64).copy()
        if w.ndim != 1 or w.size < 2:
            raise InvalidParameterError(
                f"weights must be 1-D with at least 2 rows (padding + one item); received shape {w.shape}."
            )
        w[0] = 0.0
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InvalidParameterError("weights must be finite, non-negative and not all zero.")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "_cdf", np.cumsum(w))

    @classmethod
    def uniform_over(cls, size: int) -> ItemSampler:
        """Uniform over item rows 1..size-1."""
        w = np.ones(size, dtype=np.float64)
        return cls(w, uniform=True)

    @classmethod
    def popularity(cls, counts: np.ndarray, *, alpha: float = 0.75) -> ItemSampler:
        """Proportional to ``counts ** alpha`` (items never seen are never drawn, unless alpha == 0 and
        all counts are zero). ``alpha=0`` gives the uniform sampler over all item rows."""
        alpha = check_float("alpha", alpha, low=0.0)
        counts = np.asarray(counts, dtype=np.float64)
        if alpha == 0.0:
            return cls.uniform_over(counts.size)
        return cls(np.power(np.maximum(counts, 0.0), alpha))

    @property
    def size(self) -> int:
        return int(self.weights.size)

    def probabilities(self) -> np.ndarray:
        """(size,) the exact sampling distribution (row 0 has probability 0)."""
        return self.weights / self._cdf[-1]

    def sample(self, rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
        """Item rows (int64) of the given shape."""
        if self.uniform:
            return rng.integers(1, self.size, size=shape, dtype=np.int64)
        u = rng.random(size=shape) * self._cdf[-1]
        rows = np.searchsorted(self._cdf, u, side="right")
        return np.minimum(rows, self.size - 1).astype(np.int64)


#: below this many (user, item) cells the seen-pair lookup is a dense boolean table (one byte a cell)
DENSE_LOOKUP_CELLS = 2**26
#: pairs ``resample_seen`` looks up at once (its working memory is O(this), not O(negatives))
QUERY_CHUNK = 1 << 20


class SeenPairs:
    """Membership of (user row, item row) pairs: a dense boolean table when users x items is small
    (a gather per query), else a hash set of int64 pair keys (``KeySet``: about one random memory
    access per query, where a binary search in all sorted keys takes ~log2(pairs), most of them cache
    misses once the keys outgrow the cache)."""

    def __init__(self, seen: Ragged, n_items: int) -> None:
        self.n_items = int(n_items)
        if len(seen) * self.n_items <= DENSE_LOOKUP_CELLS:
            self.table = np.zeros((len(seen), self.n_items), dtype=bool)
            self.table[seen.row_ids, seen.values] = True
            self.hashed = None
        else:
            self.table = None
            self.hashed = KeySet(pair_keys(seen.row_ids, seen.values, self.n_items))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.table is not None:  # a flat take is ~3x faster than 2-D fancy indexing
            return np.take(self.table.reshape(-1), pair_keys(users, items, self.n_items))
        return self.hashed.contains(pair_keys(users, items, self.n_items))


_FIBONACCI = np.uint64(
    0x9E3779B97F4A7C15
)  # 2^64 / golden ratio: multiplicative (Fibonacci) hashing
_EMPTY = -1


class KeySet:
    """A set of non-negative int64 keys in an open-addressing hash table (Fibonacci hashing, linear
    probing), built and queried by compiled loops (``embrec.nn.kernels.keyset_insert`` /
    ``keyset_contains``, which prefetches the home slots of the queries a few ahead), or without Numba
    by vectorised NumPy rounds (round r handles the keys whose first r slots were taken).

    The table has a power of two >= 2 x len(keys) slots (load <= 1/2: ~1.5 probes a hit, ~2.5 a miss;
    16-32 bytes a key). Repeated keys are stored once."""

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.int64).reshape(-1)
        if keys.size and int(keys.min()) < 0:
            raise InvalidParameterError(
                f"keys must be non-negative; received a minimum of {int(keys.min())}."
            )
        self.bits = max(int(2 * max(keys.size, 1) - 1).bit_length(), 4)
        self.slots = np.full(1 << self.bits, _EMPTY, dtype=np.int64)
        kernels = compiled.kernels()
        if kernels is not None:
            kernels.keyset_insert(self.slots, self.bits, keys)
            return
        mask, pos = len(self.slots) - 1, self._home(keys)
        while keys.size:
            free = self.slots[pos] == _EMPTY
            self.slots[pos[free]] = keys[free]  # several keys for one free slot: one of them wins
            left = self.slots[pos] != keys  # lost the slot, or it was taken before
            keys, pos = keys[left], (pos[left] + 1) & mask

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * _FIBONACCI) >> np.uint64(64 - self.bits)).astype(np.int64)

    def contains(self, query: np.ndarray) -> np.ndarray:
        """Boolean array of ``query``'s shape: which keys are in the set."""
        query = np.asarray(query, dtype=np.int64)
        q = np.ascontiguousarray(query).reshape(-1)
        out = np.zeros(q.size, dtype=bool)
        kernels = compiled.kernels()
        if kernels is not None:
            kernels.keyset_contains(self.slots, self.bits, q, out)
            return out.reshape(query.shape)
        mask, todo, pos = len(self.slots) - 1, np.arange(q.size), self._home(q)
        while todo.size:
            slot = self.slots[pos]
            hit = slot == q
            out[todo[hit]] = True
            go = ~hit & (slot != _EMPTY)  # probe on past taken slots; an empty slot ends the search
            todo, q, pos = todo[go], q[go], (pos[go] + 1) & mask
        return out.reshape(query.shape)


def pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 key per (user, item) pair."""
    return np.asarray(users, dtype=np.int64) * np.int64(n_items) + np.asarray(items, dtype=np.int64)


def seen_keys(seen: Ragged, n_items: int) -> np.ndarray:
    """Sorted unique keys of every (user row, item row) in ``seen`` (one row per user)."""
    return np.unique(pair_keys(seen.row_ids, seen.values, n_items))


def resample_seen(
    rng: np.random.Generator,
    sampler: ItemSampler,
    users: np.ndarray,
    negatives: np.ndarray,
    seen: SeenPairs | np.ndarray,
    *,
    rounds: int = 5,
) -> np.ndarray:
    """Redraw the negatives that the user has interacted with (``seen``: a SeenPairs, or sorted keys
    from ``seen_keys``), up to ``rounds`` times; a few may remain for users who bought most of the
    catalogue. ``users`` (B,) broadcasts against ``negatives`` (B,) or (B, K)."""
    neg = np.array(negatives, dtype=np.int64, copy=True)
    flat = neg.reshape(-1)  # a view: redraws land in neg
    u = np.broadcast_to(
        np.asarray(users, dtype=np.int64).reshape(neg.shape[:1] + (1,) * (neg.ndim - 1)), neg.shape
    ).reshape(-1)

    def hits(users_: np.ndarray, items_: np.ndarray) -> np.ndarray:
        # QUERY_CHUNK pairs at a time: the keys and the probe arrays of a lookup cost ~40 bytes a pair,
        # so an epoch's worth at once (BPR checks every event's negative) would hold 2 GB at 50M events
        out = np.empty(users_.size, dtype=bool)
        for s in range(0, users_.size, QUERY_CHUNK):
            e = s + QUERY_CHUNK
            if isinstance(seen, SeenPairs):
                out[s:e] = seen.contains(users_[s:e], items_[s:e])
            else:
                out[s:e] = _contains(seen, pair_keys(users_[s:e], items_[s:e], sampler.size))
        return out

    todo = np.flatnonzero(hits(u, flat))  # later rounds check only the redrawn positions
    for _ in range(rounds):
        if todo.size == 0:
            break
        flat[todo] = sampler.sample(rng, todo.size)
        todo = todo[hits(u[todo], flat[todo])]
    return neg


def _contains(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, query)
    return sorted_keys[np.minimum(pos, sorted_keys.size - 1)] == query
