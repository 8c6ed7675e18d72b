"""EASE and item-KNN: EASE's closed form against numbers worked by hand and numpy, both on the planted
checkerboard, item-KNN against implicit's own recommend on the same matrix, save/load, the size refusal."""

from __future__ import annotations

import numpy as np
import pytest

import embrec
from embrec.baselines import EASE, ItemKNN
from embrec.baselines.ease import ease_weights
from embrec.baselines.item_item import user_item_matrix
from embrec.errors import DataError
from embrec.models.registry import create, name_of
from tests.conftest import make_log

FACTORIES = {
    "ease": lambda: EASE(regularization=1.0),
    "knn-cosine": lambda: ItemKNN(weighting="cosine", num_threads=1),
    "knn-bm25": lambda: ItemKNN(weighting="bm25", num_threads=1),
    "knn-tfidf": lambda: ItemKNN(weighting="tfidf", num_threads=1),
}


def random_log(seed: int = 0, n_users: int = 60, n_items: int = 40, n_events: int = 900):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    items = np.minimum(rng.zipf(1.3, n_events) - 1, n_items - 1) ^ (
        users % 3
    )  # some structure, some repeats
    return make_log(list(zip(users.tolist(), items.tolist())))


def test_ease_two_items_by_hand():
    # X = [[1, 1], [1, 0]], lambda = 1: G = [[3, 1], [1, 2]], P = [[2, -1], [-1, 3]] / 5,
    # B_12 = -P_12 / P_22 = 1/3, B_21 = -P_21 / P_11 = 1/2, diagonal 0
    b = ease_weights(np.array([[2.0, 1.0], [1.0, 1.0]]), 1.0)
    assert np.allclose(b, [[0.0, 1 / 3], [1 / 2, 0.0]])
    model = EASE(regularization=1.0).fit(make_log([("u", "a"), ("u", "b"), ("v", "a")]))
    a, bb = model.items_.encode(["a", "b"])
    assert model.weights_[a, bb] == pytest.approx(1 / 3) and model.weights_[bb, a] == pytest.approx(
        1 / 2
    )
    # the user v (history a) scores b with B_ab = 1/3, a itself with B_aa = 0
    assert np.allclose(model.scores(["v"])[0][[a - 1, bb - 1]], [0.0, 1 / 3])


def test_ease_equals_numpy_closed_form():
    log = random_log()
    model = EASE(regularization=7.0).fit(log)
    x = user_item_matrix(log.compact(), "binary").toarray()[
        1:, 1:
    ]  # drop the unknown row / padding column
    x = (x > 0).astype(np.float64)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(x.shape[1]))
    ref = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    assert np.allclose(model.weights_[1:, 1:], ref, atol=1e-5)
    assert np.allclose(
        model.scores(users=list(log.users.raw_ids)),
        (x @ ref)[[log.users.encode([u])[0] - 1 for u in log.users.raw_ids]],
        atol=1e-4,
    )


def test_ease_refuses_a_catalogue_too_large_and_says_its_size():
    log = random_log()
    n = int((log.item_counts()[1:] > 0).sum())
    with pytest.raises(DataError, match=f"{n} x {n}.*GiB.*max_gib"):
        EASE(max_gib=1e-6).fit(log)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_checkerboard_held_out_cell_ranked_first(name, checkerboard):
    train, held = checkerboard
    model = FACTORIES[name]().fit(train)
    recs = model.recommend(users=list(held), k=1, exclude_seen=True)
    assert recs.ids[:, 0].tolist() == list(held.values())
    # a new user's history folds in the same way: half of block 1 -> the rest of block 1 first
    top = model.recommend(histories=[[10, 11, 12, 13, 14]], k=5, exclude_seen=True).ids[0]
    assert sorted(top) == [15, 16, 17, 18, 19]
    sim = model.similar_items([3, 12], k=3)  # (EASE may weigh some of the block below zero)
    assert (
        all(i < 10 for i in sim.ids[0])
        and all(10 <= i < 20 for i in sim.ids[1])
        and 3 not in sim.ids[0]
    )
    assert (sim.scores > 0).all()


@pytest.mark.parametrize("weighting", ["cosine", "bm25", "tfidf"])
def test_item_knn_equals_implicits_own_recommend(weighting):
    log = random_log(seed=1)
    model = ItemKNN(weighting=weighting, neighbours=10, num_threads=1).fit(log)
    lib = model.library_model()
    matrix = user_item_matrix(log.compact(), "count")
    lib.fit(matrix, show_progress=False)
    users = list(log.users.raw_ids)
    rows = log.compact().users.encode(users)
    ids, scores = lib.recommend(rows, matrix[rows], N=5, filter_already_liked_items=True)
    ours = model.recommend(users=users, k=5, exclude_seen=True)
    hist = [log.items.decode(model.seen_[model.users_.encode([u])[0]]).tolist() for u in users]
    folded = model.recommend(histories=hist, k=5, exclude_seen=True)
    for b in range(len(users)):
        keep = np.isfinite(scores[b]) & (scores[b] > -1e30)
        n = int(keep.sum())
        assert np.allclose(ours.scores[b, :n], scores[b, :n], rtol=1e-5)
        assert np.allclose(folded.scores[b, :n], scores[b, :n], rtol=1e-5)
        distinct = (
            np.r_[np.diff(scores[b, :n]) != 0, True] & np.r_[True, np.diff(scores[b, :n]) != 0]
        )
        theirs = log.compact().items.decode(ids[b, :n])
        assert (ours.ids[b, :n][distinct] == theirs[distinct]).all()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_gives_identical_scores(tmp_path, name):
    log = random_log(seed=2)
    model = FACTORIES[name]().fit(log)
    loaded = embrec.load(model.save(tmp_path / name))
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    assert type(create(name_of(type(model)))) is type(model)
    users = list(log.users.raw_ids)
    assert np.array_equal(model.scores(users), loaded.scores(users))
    assert np.array_equal(
        model.similar_items([log.items.raw_ids[0]]).ids,
        loaded.similar_items([log.items.raw_ids[0]]).ids,
    )
