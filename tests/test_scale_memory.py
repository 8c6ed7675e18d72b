"""Memory-bounded paths of large logs: the same results whatever the working chunk."""

from __future__ import annotations

import numpy as np

from embrec.data.ragged import Ragged
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
