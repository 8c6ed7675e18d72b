"""Memory-bounded paths of large logs: the same results whatever the working chunk."""

from __future__ import annotations

import numpy as np

from embrec.data.ragged import Ragged
from embrec.index.exact import ExactIndex, cannot_overflow
from embrec.nn import sampling
from embrec.nn.sampling import ItemSampler, SeenPairs, resample_seen, seen_keys


def test_resample_seen_in_chunks_equals_one_pass_and_removes_seen_items(monkeypatch):
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 40
    seen = Ragged.from_lists(
        [
            rng.choice(np.arange(1, n_items), size=rng.integers(0, 30), replace=False)
            for _ in range(n_users)
        ]
    )
    sampler = ItemSampler.popularity(np.bincount(seen.values, minlength=n_items) + 1, alpha=0.5)
    users = rng.integers(0, n_users, 5000)
    negatives = sampler.sample(rng, (5000, 2))
    for lookup in (SeenPairs(seen, n_items), seen_keys(seen, n_items)):
        results = []
        # one pass, then 7 pairs a lookup (chunk boundaries inside a user's negatives)
        for chunk in (1 << 20, 7):
            monkeypatch.setattr(sampling, "QUERY_CHUNK", chunk)
            results.append(
                resample_seen(
                    np.random.default_rng(5), sampler, users, negatives, lookup, rounds=50
                )
            )
        np.testing.assert_array_equal(results[0], results[1])
        mine = {(u, int(i)) for u in range(n_users) for i in seen[u]}
        drawn = {(int(u), int(i)) for u, row in zip(users, results[1]) for i in row}
        assert not drawn & mine  # 50 rounds: none of a user's own items is left
        assert (results[1] != negatives).any()


def test_exact_index_blocked_search_without_the_nan_scan_equals_a_full_sort_and_still_handles_nan():
    rng = np.random.default_rng(2)
    items = rng.normal(size=(301, 6)).astype(np.float32)
    queries = rng.normal(size=(45, 6)).astype(np.float32)
    index = ExactIndex(block_size=64, query_batch=8).index(items, np.arange(301) + 1)
    assert cannot_overflow(queries, index._bound)
    ids, scores = index.search(queries, 7)
    full = queries @ items.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ids, ref + 1)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, 1), rtol=1e-5)
    # entries large enough to overflow (inf - inf = NaN possible), or not finite: the scan stays on
    huge = np.zeros((1, 6), dtype=np.float32)
    huge[0, :2] = 3e38
    assert not cannot_overflow(huge, index._bound)
    assert not cannot_overflow(np.full((1, 6), np.nan, dtype=np.float32), index._bound)
    assert cannot_overflow(queries, 1e30) and not cannot_overflow(queries, 1e38)
    # a non-finite catalogue: the bound is inf and every search scans
    bad = items.copy()
    bad[3, 2] = np.nan
    nan_index = ExactIndex(block_size=64, query_batch=8).index(bad, np.arange(301) + 1)
    assert not cannot_overflow(queries, nan_index._bound)
    got, got_s = nan_index.search(queries, 301)
    assert (got[:, -1] == -1).all() and np.isneginf(got_s[:, -1]).all()  # NaN: last, an empty slot
    assert not (got[:, :-1] == 4).any()
    finite = np.delete(np.arange(301), 3)
    ref = finite[np.argsort(-(queries @ items[finite].T), axis=1, kind="stable")]
    np.testing.assert_array_equal(got[:, :-1], ref + 1)
