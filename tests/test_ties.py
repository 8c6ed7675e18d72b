"""The one tie rule of top-k (issue 13 item 4): equal scores -> the lower item row first, everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embrec.baselines import Popularity
from embrec.data import Interactions, Ragged
from embrec.index.exact import ExactIndex
from embrec.models.base import top_k_rows


def test_top_k_rows_all_equal_scores_give_the_first_columns():
    scores = np.ones((3, 50), dtype=np.float32)
    rows, vals = top_k_rows(scores, 5)
    assert rows.tolist() == [[0, 1, 2, 3, 4]] * 3
    assert np.all(vals == 1.0)


def test_top_k_rows_ties_at_the_boundary_and_inside():
    # column 7 is best; columns 2, 5, 9 tie for second; the top 3 must be 7, 2, 5 (not 9)
    scores = np.zeros((1, 12), dtype=np.float32)
    scores[0, 7] = 3.0
    scores[0, [9, 5, 2]] = 1.0
    rows, vals = top_k_rows(scores, 3)
    assert rows.tolist() == [[7, 2, 5]]
    assert vals.tolist() == [[3.0, 1.0, 1.0]]
    # NaN counts as -inf, and -inf ties are ordered by column too
    scores = np.array([[np.nan, -np.inf, 2.0, -np.inf]], dtype=np.float32)
    rows, _ = top_k_rows(scores, 3)
    assert rows.tolist() == [[2, 0, 1]]


def test_exact_index_ties_lower_position_first_across_blocks():
    vecs = np.ones((40, 2), dtype=np.float32)  # every item scores the same for any query
    ids = np.arange(1, 41)
    for block in (7, 32768):  # ties spanning several blocks and one block
        index = ExactIndex(measure="dot", block_size=block).index(vecs, ids)
        found, scores = index.search(np.ones((2, 2), dtype=np.float32), 6)
        assert found.tolist() == [[1, 2, 3, 4, 5, 6]] * 2
        assert np.all(scores == 2.0)
    # a better item late in the catalogue comes first, then the ties in row order
    vecs[30] = 2.0
    index = ExactIndex(measure="dot", block_size=7).index(vecs, ids)
    found, _ = index.search(np.ones((1, 2), dtype=np.float32), 4)
    assert found.tolist() == [[31, 1, 2, 3]]


def test_recommend_breaks_popularity_ties_by_item_row():
    # items a..f each bought exactly once: every score ties, so the top 3 are the first three rows
    frame = pd.DataFrame({"u": ["x", "y", "z", "x", "y", "z"], "i": list("fedcba")})
    log = Interactions.from_frame(frame, user_col="u", item_col="i")
    model = Popularity().fit(log)
    recs = model.recommend(["x"], k=3)
    assert recs.rows.tolist() == [[1, 2, 3]]
    assert list(recs.ids[0]) == list(log.items.raw_ids[:3])


def test_top_k_rows_and_exact_index_match_a_full_sort_on_heavy_ties():
    # small integer scores: ties everywhere, at the k-th place too; the reference sorts every row fully
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(60, 300)).astype(np.float32)
    cols = np.broadcast_to(np.arange(300), scores.shape)
    reference = np.lexsort((cols, -scores), axis=1)[:, :7]
    rows, _ = top_k_rows(scores, 7)
    assert np.array_equal(rows, reference)
    # the index: queries e_j against items whose vectors hold those integer scores, blocks of 64
    items = scores.T.copy()  # (300 items, 60 dims)
    index = ExactIndex(measure="dot", block_size=64).index(items)
    found, _ = index.search(np.eye(60, dtype=np.float32), 7)
    assert np.array_equal(found, reference)


def test_exact_index_one_block_numpy_path_equals_the_streamed_path():
    """A catalogue within one block is searched in numpy (the served path); with blocks of 16 the
    streamed torch path runs: both give the same ids and scores, with deny- and allow-lists too."""
    from embrec import Ragged

    rng = np.random.default_rng(1)
    items = rng.integers(0, 3, size=(200, 8)).astype(np.float32)  # integer scores: ties at every place
    ids = np.arange(1, 201)
    queries = rng.integers(0, 2, size=(5, 8)).astype(np.float32)
    deny = Ragged.from_lists([rng.choice(ids, n, replace=False).tolist() for n in (0, 3, 50, 1, 190)])
    allow = np.sort(rng.choice(ids, 40, replace=False))
    one = ExactIndex(measure="dot").index(items, ids)
    streamed = ExactIndex(measure="dot", block_size=16).index(items, ids)
    for kw in ({}, {"exclude": deny}, {"allow": allow}, {"exclude": deny, "allow": allow}):
        a_ids, a_s = one.search(queries, 12, **kw)
        b_ids, b_s = streamed.search(queries, 12, **kw)
        assert a_ids.tolist() == b_ids.tolist(), kw
        np.testing.assert_array_equal(a_s, b_s)
    # the user denied 190 of 200 items: 10 come back, then empty slots (-1, -inf)
    last, scores = one.search(queries, 12, exclude=deny)
    assert (last[4, :10] > 0).all() and (last[4, 10:] == -1).all() and np.isinf(scores[4, 10:]).all()


def test_top_k_rows_equals_a_full_sort_on_random_shapes_ties_nan_and_inf():
    """Both branches of top_k_rows (k + 1 candidates; ties straddling the k-th place) against a full
    lexicographic sort: score descending, then column ascending; NaN as -inf."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        b, n = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        if trial % 2:
            s = rng.integers(0, 4, size=(b, n)).astype(np.float32)
        else:
            s = rng.normal(size=(b, n)).astype(np.float32)
        if trial % 7 == 0:
            s[0, 0] = np.nan
        if trial % 5 == 0:
            s[:, : n // 2] = -np.inf
        k = int(rng.integers(1, n + 1))
        ref_s = np.where(np.isnan(s), -np.inf, s)
        ref = np.lexsort((np.broadcast_to(np.arange(n), s.shape), -ref_s), axis=1)[:, :k]
        got, vals = top_k_rows(s, k)
        assert np.array_equal(got, ref), trial
        np.testing.assert_array_equal(vals, np.take_along_axis(ref_s, ref, axis=1))


@pytest.mark.parametrize("restricted", [False, True])
def test_exact_index_compiled_top_k_equals_the_torch_path(monkeypatch, restricted):
    """CPU with Numba: the streamed search selects with the compiled running top k (tiles of the scores,
    no per-block sort); without Numba, PyTorch's topk and merge. Same ids and scores, best first,
    ties lower position first, on heavy ties, NaN and -inf scores, exclusions and an allow-list, across
    many blocks and query batches."""
    pytest.importorskip("numba")
    from embrec.index import exact
    from embrec.nn import compiled

    rng = np.random.default_rng(7)
    items = rng.integers(-2, 3, size=(300, 4)).astype(np.float32)  # few distinct scores: many ties
    items[5] = np.nan  # a NaN item scores NaN against every query
    items[9] = [-np.inf, 0, 0, 0]
    ids = np.arange(300, dtype=np.int64) * 3 + 1
    queries = rng.integers(-1, 2, size=(70, 4)).astype(np.float32)
    queries[3] = 0.0  # every score 0 (or NaN / -inf): the first positions
    exclude = Ragged.from_lists([list(ids[rng.choice(300, 4, replace=False)]) for _ in range(70)])
    allow = ids[rng.choice(300, 120, replace=False)] if restricted else None
    monkeypatch.setattr(exact, "TILE_QUERIES", 16)
    monkeypatch.setattr(exact, "TILE_ITEMS", 32)
    index = ExactIndex(measure="dot", block_size=64, query_batch=32).index(items, ids)
    fast = index.search(queries, 12, exclude=exclude, allow=allow)
    monkeypatch.setattr(compiled, "kernels", lambda: None)
    slow = index.search(queries, 12, exclude=exclude, allow=allow)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    assert not np.isin(ids[5], fast[0]).any()  # NaN never returned
    for row, banned in zip(fast[0], exclude):  # nor an excluded item (the PyTorch path's NaN clean-up
        assert not np.isin(row, banned).any()  # once turned their -inf into a finite -3.4e38)
