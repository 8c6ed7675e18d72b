"""Metrics against hand-computed values (and NDCG against scikit-learn's on the same lists)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embrec import Ragged
from embrec.errors import DataError, InvalidParameterError
from embrec.evaluation import metrics as M


def test_transaction_precision_counts_rows_like_the_chapter():
    # transaction 0 = rows 0..2 (items 5, 7, 5), transaction 1 = row 3 (item 9)
    offsets, true = [0, 3, 4], [5, 7, 5, 9]
    # item 5 is bought on two rows of transaction 0: both rows count -> 2 hits / (2 transactions x 2)
    assert M.transaction_precision(offsets, true, [[5, 1], [2, 3]]) == 0.5
    assert M.transaction_precision(offsets, true, [[7, 5], [9, 3]]) == 1.0
    # an unknown item (0) never matches an empty slot (0)
    assert M.transaction_precision([0, 2], [0, 4], [[0, 4]]) == 0.5


def test_transaction_precision_rejects_misaligned_input():
    with pytest.raises(DataError, match="one row per transaction"):
        M.transaction_precision([0, 1, 2], [1, 2], [[1, 2]])
    with pytest.raises(DataError, match="offsets must run from 0"):
        M.transaction_precision([0, 3], [1, 2], [[1, 2]])


def test_top_k_accuracy():
    true = [1, 2, 3, 0]
    predicted = [[1, 9], [9, 8], [3, 1], [0, 0]]  # hits on rows 0 and 2; row 3 is unknown vs empty
    assert M.top_k_accuracy(true, predicted) == 0.5
    with pytest.raises(DataError, match="one row per event"):
        M.top_k_accuracy([1], predicted)


RANKED = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
RELEVANT = Ragged.from_lists([[2, 7], [9], []])  # user 2 has nothing relevant: left out of the means


def test_ranking_metrics_by_hand():
    # user 0: hit at rank 2 only; |rel| = 2. user 1: no hit.
    assert M.hits_at_k(RANKED, RELEVANT, k=3).tolist() == [[False, True, False], [False] * 3, [False] * 3]
    assert M.precision_at_k(RANKED, RELEVANT, k=3) == pytest.approx((1 / 3 + 0) / 2)
    assert M.recall_at_k(RANKED, RELEVANT, k=3) == pytest.approx((1 / 2 + 0) / 2)
    assert M.hit_rate_at_k(RANKED, RELEVANT, k=3) == pytest.approx(0.5)
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert M.ndcg_at_k(RANKED, RELEVANT, k=3) == pytest.approx(ndcg0 / 2)
    # AP@3 of user 0: precision@2 (1/2) at its one hit, over min(3, 2) relevant items
    assert M.average_precision_at_k(RANKED, RELEVANT, k=3) == pytest.approx((0.5 / 2) / 2)
    # a shorter cut-off: nothing in the top 1
    assert M.precision_at_k(RANKED, RELEVANT, k=1) == 0.0


def test_perfect_ranking_scores_one_and_unknown_relevant_items_count():
    ranked = np.array([[3, 1, 2]])
    assert M.ndcg_at_k(ranked, Ragged.from_lists([[3, 1]]), k=3) == pytest.approx(1.0)
    assert M.average_precision_at_k(ranked, Ragged.from_lists([[3, 1]]), k=3) == pytest.approx(1.0)
    # relevant item 0 (unknown to training) is never found, but counts in recall's denominator
    assert M.recall_at_k(np.array([[0, 3, 0]]), Ragged.from_lists([[0, 3]]), k=3) == pytest.approx(0.5)


def test_ndcg_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    n_items, k = 30, 10
    ranked, rel_lists, y_true, y_score = [], [], [], []
    for _ in range(20):
        order = rng.permutation(np.arange(1, n_items + 1))
        rel = rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 8), replace=False)
        ranked.append(order)
        rel_lists.append(rel)
        truth = np.zeros(n_items + 1)
        truth[rel] = 1
        score = np.zeros(n_items + 1)
        score[order] = np.arange(n_items, 0, -1)  # rank 1 gets the largest score
        y_true.append(truth[1:])
        y_score.append(score[1:])
    ours = M.ndcg_at_k(np.array(ranked), Ragged.from_lists(rel_lists), k=k)
    theirs = sklearn_metrics.ndcg_score(np.array(y_true), np.array(y_score), k=k)
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_ranking_metric_errors():
    with pytest.raises(DataError, match="ranked has 3 rows but relevant has 1"):
        M.precision_at_k(RANKED, Ragged.from_lists([[1]]), k=3)
    with pytest.raises(InvalidParameterError, match="k must be at most the list length"):
        M.ndcg_at_k(RANKED, RELEVANT, k=4)
    with pytest.raises(DataError, match="no user has a relevant item"):
        M.recall_at_k(RANKED, Ragged.from_lists([[], [], []]), k=2)


def test_rmse_mae_coverage():
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert M.catalogue_coverage(np.array([[1, 2], [2, 0]]), n_items=4) == 0.5
    with pytest.raises(DataError, match="must be finite"):
        M.rmse([1.0], [np.nan])
    with pytest.raises(DataError, match="shape"):
        M.mae([1, 2], [1])


# beyond accuracy and the per-user twins ---------------------------------------------------------
def test_catalogue_coverage_by_hand():
    from embrec.evaluation.metrics import catalogue_coverage

    # items 1, 2, 3 and 5 appear (0 is an empty slot) out of a catalogue of 8
    assert catalogue_coverage(np.array([[1, 2, 0], [2, 3, 5]]), n_items=8) == 0.5


def test_popularity_percentiles_by_hand():
    from embrec.evaluation.metrics import mean_popularity_percentile, popularity_percentiles

    # counts of rows 1..4: 5, 1, 5, 3 -> ascending ranks 1 (row 2), 2 (row 4), 3.5 (rows 1 and 3)
    pct = popularity_percentiles(np.array([0, 5, 1, 5, 3]))
    assert np.isnan(pct[0])
    np.testing.assert_allclose(pct[1:], [100 * 2.5 / 3, 0.0, 100 * 2.5 / 3, 100 / 3])
    # lists [1, 2] and [4, 0]: slots 83.33, 0, 33.33 (the empty slot is ignored) -> 38.89
    assert mean_popularity_percentile(np.array([[1, 2], [4, 0]]), pct) == pytest.approx((250 / 3 + 100 / 3) / 3)
    assert popularity_percentiles(np.array([0, 7]))[1] == 100.0


def test_per_user_twins_average_to_the_metrics():
    from embrec.evaluation import metrics as M

    ranked = np.array([[3, 1, 2], [4, 5, 6], [1, 2, 3]])
    relevant = Ragged.from_lists([[1, 9], [6], []])
    hit = M.hit_per_user(ranked, relevant, k=3)
    assert hit[:2].tolist() == [1.0, 1.0] and np.isnan(hit[2])
    np.testing.assert_allclose(M.recall_per_user(ranked, relevant, k=3)[:2], [0.5, 1.0])
    for per_user, mean in ((M.precision_per_user, M.precision_at_k), (M.ndcg_per_user, M.ndcg_at_k),
                           (M.average_precision_per_user, M.average_precision_at_k)):
        assert np.nanmean(per_user(ranked, relevant, k=3)) == pytest.approx(mean(ranked, relevant, k=3))


def test_transaction_hits_by_hand():
    from embrec.evaluation.metrics import top_k_hits, transaction_hits

    # the docstring's example: rows 0 and 2 are hits, both in transaction 0
    assert transaction_hits([0, 3, 4], [5, 7, 5, 9], [[5, 1], [2, 3]]).tolist() == [2, 0]
    assert top_k_hits([4, 2], [[1, 4], [0, 3]]).tolist() == [True, False]
