"""Softmax DNN and two-tower: planted structure, Ψ(X) of any history, cold items, persistence, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import embrec
from embrec.data import Ragged
from embrec.datasets import synthetic, synthetic_truth
from embrec.errors import DataError, InvalidParameterError, UnknownIdError
from embrec.models.history_batches import ExampleMaker, history_batches
from embrec.models.softmax_dnn import SoftmaxDNN
from embrec.models.two_tower import TwoTower

SYN = dict(n_users=200, n_items=60, n_categories=4, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is many times faster than several on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def log():
    return synthetic(n_interactions=3000, **SYN)


@pytest.fixture(scope="module")
def category():
    return synthetic_truth(**SYN).item_category  # (items.size,) planted cluster per item row


@pytest.fixture(scope="module")
def two_tower(log):
    return TwoTower(dim=16, feature_dim=8, item_hidden=(32,), user_hidden=(32,), epochs=10, lr=1e-2,
                    min_epoch_examples=0, seed=0).fit(log)


@pytest.fixture(scope="module")
def softmax_dnn(log):
    return SoftmaxDNN(dim=16, feature_dim=8, hidden=(32,), epochs=30, lr=1e-2, batch_size=64, targets="holdout",
                      holdout=0.5, min_epoch_examples=0, seed=0).fit(log)


def _same_category(model, category) -> float:
    ids = list(model.items_.raw_ids)
    rec = model.similar_items(ids, k=10)
    rows = model.items_.encode(ids)
    return float((category[rec.rows] == category[rows][:, None]).mean())


@pytest.mark.parametrize(("name", "bar"), [("two_tower", 0.9), ("softmax_dnn", 0.6)])
def test_neighbours_recover_the_planted_categories(name, bar, request, category):
    model = request.getfixturevalue(name)
    # 4 balanced categories: a random neighbour shares the item's category 14/59 of the time (0.24);
    # the two-tower sees the category among the features, the softmax DNN's V only co-occurrence
    assert _same_category(model, category) >= bar


@pytest.mark.parametrize("name", ["two_tower", "softmax_dnn"])
def test_a_new_user_with_a_trained_users_history_gets_the_same_embedding(name, request, log):
    model = request.getfixturevalue(name)
    user = model.users_.raw_ids[5]
    history = list(model.items_.decode(model.seen_[model.users_.encode([user])[0]]))
    np.testing.assert_allclose(model.user_embedding(user), model.user_embedding(history=history), rtol=1e-6)
    a = model.recommend([user], k=5)
    b = model.recommend(histories=[history], k=5)
    assert a.ids.tolist() == b.ids.tolist()


def test_softmax_dnn_user_embedding_is_psi_of_the_history(softmax_dnn):
    ids = list(softmax_dnn.items_.raw_ids[:3])
    psi = softmax_dnn.user_embedding(history=ids)
    assert psi.shape == (16,)
    v = softmax_dnn.item_embeddings()
    # recommend() ranks by Ψ(X)·Vᵀ + b (no repeat term when repeat_bonus=False)
    plain = SoftmaxDNN(dim=16, hidden=(16,), epochs=1, repeat_bonus=False, min_epoch_examples=0, seed=1).fit(synthetic(n_interactions=600,
                                                                                                 **SYN))
    psi = plain.user_embedding(history=ids)
    scores = plain.item_embeddings() @ psi + plain.net_.bias.detach().numpy()[1:]
    top = plain.items_.raw_ids[np.argsort(-scores)[:5]]
    assert plain.recommend(histories=[ids], k=5).ids[0].tolist() == top.tolist()
    assert v.shape == (softmax_dnn.items_.n_ids, 16)


def _cold_frame(log, category_label: str, words: str, item: str = "NEW1", price: float = 4.0) -> pd.DataFrame:
    return pd.DataFrame({"item": [item], "category": [category_label], "price": [price], "description": [words]})


def test_a_cold_item_gets_its_embedding_from_its_features_only(two_tower, log, category):
    labels = log.item_features.vocabularies["category"]
    words = log.item_features.text["description"]
    frame = _cold_frame(log, labels[0], words[np.flatnonzero(category == 1)[0]])
    v1 = two_tower.embed_items(frame)
    v2 = two_tower.embed_items(frame.assign(category=labels[1]))
    v3 = two_tower.embed_items(frame.assign(item="OTHER"))
    assert v1.shape == (1, 16)
    assert not np.allclose(v1, v2)  # changes when its features change
    np.testing.assert_allclose(v1, v3)  # not when only its id does


def test_added_cold_items_are_recommended_and_have_neighbours(two_tower, log, category, tmp_path):
    model = embrec.load(two_tower.save(tmp_path / "copy"))  # a copy: add_items changes the model
    labels = log.item_features.vocabularies["category"]  # planted category c has label labels[c]
    words = log.item_features.text["description"]
    row = np.flatnonzero(category == 2)[0]
    frame = _cold_frame(log, labels[2], words[row], price=log.item_features.numeric["price"][row])  # row's content
    expected = model.embed_items(frame)[0]
    model.add_items(frame)
    assert model.items_.n_ids == log.n_items + 1
    np.testing.assert_allclose(model.item_embeddings()[-1], expected, rtol=1e-5)
    near = model.similar_items(["NEW1"], k=10)
    assert (category[near.rows[0]] == 2).mean() >= 0.6  # its neighbours share its category
    rec = model.recommend(histories=[["NEW1"]], k=10)  # a new user who bought only the cold item
    assert None not in rec.ids[0].tolist()

    def rank_of_new(cat: int) -> int:  # rank of the cold item for a user who bought category `cat`
        ids = model.recommend(histories=[list(log.items.raw_ids[category[1:] == cat])],
                              k=model.items_.n_ids).ids[0]
        return int(np.flatnonzero(ids == "NEW1")[0])

    assert rank_of_new(2) < min(rank_of_new(c) for c in (0, 1, 3))  # recommended to its category's fans
    with pytest.raises(InvalidParameterError, match="already in the catalogue"):
        model.add_items(frame)


@pytest.mark.parametrize("name", ["two_tower", "softmax_dnn"])
def test_save_load_gives_identical_scores(name, request, tmp_path):
    model = request.getfixturevalue(name)
    model.save(tmp_path / "m")
    loaded = embrec.load(tmp_path / "m")
    hist = [list(model.items_.raw_ids[[3, 7, 7, 20]])]
    np.testing.assert_array_equal(loaded.scores(histories=hist), model.scores(histories=hist))
    users = list(model.users_.raw_ids[:4])
    assert loaded.recommend(users, k=5).ids.tolist() == model.recommend(users, k=5).ids.tolist()
    np.testing.assert_array_equal(loaded.item_embeddings(), model.item_embeddings())


def test_a_loaded_two_tower_adds_cold_items_without_the_training_data(two_tower, log, tmp_path):
    two_tower.save(tmp_path / "tt")
    loaded = embrec.load(tmp_path / "tt")
    frame = _cold_frame(log, log.item_features.vocabularies["category"][0], "ceramic mug", item="COLD")
    np.testing.assert_allclose(loaded.embed_items(frame), two_tower.embed_items(frame), rtol=1e-6)
    loaded.add_items(frame).save(tmp_path / "tt2")
    again = embrec.load(tmp_path / "tt2")
    assert again.similar_items(["COLD"], k=3).ids.tolist() == loaded.similar_items(["COLD"], k=3).ids.tolist()


def test_clear_errors_for_bad_input(two_tower, softmax_dnn, log):
    with pytest.raises(DataError, match="description"):
        two_tower.add_items(pd.DataFrame({"item": ["X"], "category": ["a"], "price": [1.0]}))
    empty = pd.DataFrame({"item": ["X"], "category": [None], "price": [np.nan], "description": [""]})
    with pytest.raises(DataError, match="no value in any feature"):
        two_tower.embed_items(empty)
    for model in (two_tower, softmax_dnn):
        with pytest.raises(InvalidParameterError, match="empty history"):
            model.recommend(histories=[[]])
        everything = model.recommend(histories=[[model.items_.raw_ids[0]]], k=model.items_.n_ids + 1)
        assert sorted(everything.ids[0]) == sorted(model.items_.raw_ids)  # clamped: the whole catalogue
        with pytest.raises(UnknownIdError):
            model.user_embedding(history=["no-such-item"])
    bare = synthetic(n_interactions=500, **SYN)
    bare.item_features = None
    with pytest.raises(DataError, match="needs item features"):
        TwoTower(epochs=1).fit(bare)
    with pytest.raises(InvalidParameterError, match="loss"):
        TwoTower(loss="softmax")
    with pytest.raises(InvalidParameterError, match="pooling"):
        TwoTower(pooling="dense")


def test_sampled_softmax_and_padded_pooling_train_too(log, category):
    sampled = TwoTower(dim=16, feature_dim=8, item_hidden=(32,), user_hidden=(32,), loss="sampled",
                       num_negatives=16, epochs=10, lr=1e-2, min_epoch_examples=0, seed=0).fit(log)
    assert sampled.loss_ == "sampled"
    assert _same_category(sampled, category) >= 0.6
    net = sampled.net_
    vecs = torch.randn(log.items.size, 16)
    batch = next(history_batches(ExampleMaker(log, targets="auto", holdout=0.2, max_history=None)
                                 .draw(np.random.default_rng(0)), batch_size=32, rng=np.random.default_rng(0),
                                 padded=True))
    with torch.no_grad():
        ragged = net.user_ragged(vecs, batch.values, batch.offsets)
        padded = net.user_padded(vecs, batch.padded, batch.padded > 0)
    torch.testing.assert_close(ragged, padded)


def test_holdout_targets_never_appear_in_the_input(log):
    ex = ExampleMaker(log, targets="holdout", holdout=0.3, max_history=None).draw(np.random.default_rng(0))
    for inp, tgt in zip(ex.inputs, ex.targets):
        assert len(tgt) >= 1 and len(inp) >= 1 and not np.isin(tgt, inp).any()
    nb = ExampleMaker(log, targets="next-basket", holdout=0.3, max_history=None).draw(np.random.default_rng(0))
    assert len(nb) > len(ex)  # one example per later transaction
    assert any(np.isin(t, i).any() for i, t in zip(nb.inputs, nb.targets))  # repeats are allowed there


def test_next_period_targets_are_the_following_month_of_rows(log):
    ex = ExampleMaker(log, targets="next-period", holdout=0.2, max_history=None).draw(np.random.default_rng(0))
    order = np.lexsort((np.arange(len(log)), log.timestamp, log.user))
    user, item, t = log.user[order], log.item[order], log.timestamp[order]
    cut = t.min() + np.timedelta64(30, "D")
    month = (t >= cut) & (t < cut + np.timedelta64(30, "D"))
    users = [u for u in np.unique(user[user > 0]) if ((user == u) & (t < cut)).any() and ((user == u) & month).any()]
    assert users  # the log has users active both before and after the first cut-off
    for u in users[:5]:
        before, after = item[(user == u) & (t < cut)], item[(user == u) & month]
        pairs = {(tuple(i), tuple(g)) for i, g in zip(ex.inputs, ex.targets)}
        assert (tuple(before), tuple(after)) in pairs  # every row of the month, repeats included
    assert len(ex) > 0 and all(len(i) > 0 and len(g) > 0 for i, g in zip(ex.inputs, ex.targets))


def test_training_is_seeded_and_leaves_the_global_rng_alone(log):
    small = synthetic(n_interactions=600, **SYN)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = SoftmaxDNN(dim=8, hidden=(8,), epochs=1, min_epoch_examples=0, seed=4).fit(small)
    after = torch.rand(1)
    b = SoftmaxDNN(dim=8, hidden=(8,), epochs=1, min_epoch_examples=0, seed=4).fit(small)
    assert before == after
    hist = [list(log.items.raw_ids[:5])]
    np.testing.assert_array_equal(a.scores(histories=hist), b.scores(histories=hist))


def test_ragged_history_helpers():
    r = Ragged.from_lists([[1], list(range(1, 1001))])  # one user with 1 item, one with 1,000
    v, o = r.to_torch()
    table = torch.arange(1001, dtype=torch.float32)[:, None]
    from embrec.nn.towers import pool_vectors

    torch.testing.assert_close(pool_vectors(table, v, o), torch.tensor([[1.0], [500.5]]))


def test_softmax_dnn_sampled_softmax_recovers_the_categories_and_auto_switches_on_catalogue_size(log, category):
    """loss="sampled" (targets + sampled negatives with logQ) learns the planted co-occurrence like the full
    softmax (bar as the full model's above); loss="auto" takes the full softmax up to full_softmax_max_items."""
    kw = dict(dim=16, feature_dim=8, hidden=(32,), epochs=30, lr=1e-2, batch_size=64, targets="holdout",
              holdout=0.5, min_epoch_examples=0, seed=0)
    sampled = SoftmaxDNN(loss="sampled", num_negatives=16, **kw).fit(log)
    assert sampled.loss_ == "sampled" and sampled.sparse_  # item table, bias: sparse rows + RowAdam
    assert _same_category(sampled, category) >= 0.6
    # its recommendations follow each user's planted category; popularity's (chance: 1/4) do not
    from embrec.baselines.popularity import Popularity

    users = list(log.users.raw_ids[1:])
    taste = np.array([np.bincount(category[log.item[log.user == r]], minlength=5).argmax()
                      for r in log.users.encode(users)])
    def on_taste(model) -> float:  # noqa: E306
        rec = model.recommend(users, k=5, exclude_seen=True)
        return float((category[rec.rows] == taste[:, None]).mean())
    assert on_taste(sampled) >= 0.6 > 0.45 > on_taste(Popularity().fit(log))
    dense = SoftmaxDNN(loss="sampled", num_negatives=16, weight_decay=1e-6, **{**kw, "epochs": 2}).fit(log)
    assert not dense.sparse_  # Adam's weight decay is dense: dense tables
    auto = SoftmaxDNN(**{**kw, "epochs": 1})
    assert auto.fit(log).loss_ == "full"  # 60 items
    assert SoftmaxDNN(full_softmax_max_items=10, **{**kw, "epochs": 1}).fit(log).loss_ == "sampled"
    with pytest.raises(InvalidParameterError, match="loss"):
        SoftmaxDNN(loss="softmax")
