"""Softmax DNN and two-tower: an epoch's floor of examples and early stopping on a slice carved from train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embrec.datasets import synthetic
from embrec.evaluation.splits import last_event_mask
from embrec.models.history_batches import ExampleMaker, carve_valid
from embrec.models.softmax_dnn import SoftmaxDNN
from embrec.models.two_tower import TwoTower

SYN = dict(n_users=200, n_items=60, n_categories=4, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def log():
    return synthetic(n_interactions=3000, **SYN)


def test_min_examples_gives_fresh_holdout_draws_and_repeats_next_baskets(log):
    one = ExampleMaker(log, targets="holdout", holdout=0.3, max_history=None).draw(np.random.default_rng(0))
    n = len(one)
    ex = ExampleMaker(log, targets="holdout", holdout=0.3, max_history=None,
                      min_examples=2 * n + 1).draw(np.random.default_rng(0))
    assert len(ex) == 3 * n  # whole draws until the floor is reached
    parts = [[tuple(ex.targets[k * n + i]) for i in range(n)] for k in range(3)]
    assert parts[0] == [tuple(t) for t in one.targets]  # the first draw is the draw without a floor
    assert parts[1] != parts[0] and parts[2] != parts[1]  # the others are fresh random target sets
    for k in range(3):  # every draw is still leak-free
        for i in range(n):
            assert not np.isin(ex.targets[k * n + i], ex.inputs[k * n + i]).any()
    nb = ExampleMaker(log, targets="next-basket", holdout=0.3, max_history=None)
    m = len(nb.draw(np.random.default_rng(0)))
    nb.min_examples = m + 1
    twice = nb.draw(np.random.default_rng(0))
    assert len(twice) == 2 * m
    assert [tuple(t) for t in twice.targets][:m] == [tuple(t) for t in twice.targets][m:]
    nb.min_examples = m  # a floor that one draw reaches changes nothing (Online Retail: 13.9k next baskets)
    assert [tuple(t) for t in nb.draw(np.random.default_rng(0)).targets] == [tuple(t) for t in twice.targets][:m]


def test_carve_valid_holds_out_the_last_event_of_seeded_users_with_three_events(log):
    train, valid = carve_valid(log, max_users=50, seed=0)
    assert len(valid) == 50 and len(train) + len(valid) == len(log)
    assert np.unique(valid.user).size == 50  # one event per user
    counts = np.bincount(log.user, minlength=log.users.size)
    assert (counts[valid.user] >= 3).all()
    last = last_event_mask(log)
    held = {(int(u), int(i), t) for u, i, t in zip(valid.user, valid.item, valid.timestamp)}
    lasts = {(int(u), int(i), t) for u, i, t in zip(log.user[last], log.item[last], log.timestamp[last])}
    assert held <= lasts  # each is its user's last event by time
    again = carve_valid(log, max_users=50, seed=0)[1]
    assert np.array_equal(again.user, valid.user)  # seeded
    assert valid.items is log.items and train.users is log.users  # the vocabularies are shared
    pairs = {(int(u), int(i)) for u, i in zip(valid.user, valid.item)}
    assert not pairs & {(int(u), int(i)) for u, i in zip(train.user, train.item)}  # held items are new to them
    everyone = carve_valid(log, max_users=10_000, seed=0)[1]
    new_last = [u for u, i in zip(log.user[last], log.item[last])
                if counts[u] >= 3 and ((log.user == u) & (log.item == i)).sum() == 1]
    assert sorted(everyone.user.tolist()) == sorted(int(u) for u in new_last)
    assert 0 < len(new_last) < int((counts[1:] >= 3).sum())  # the synthetic log has repeats to leave out
    assert carve_valid(log, max_users=0, seed=0) == (log, None)
    few = log.subset(log.user <= 10)  # 10 users: too few to early-stop on
    assert carve_valid(few, max_users=1000, seed=0)[1] is None


@pytest.mark.parametrize("make", [
    lambda **kw: SoftmaxDNN(dim=16, feature_dim=8, hidden=(32,), lr=1e-2, batch_size=64, targets="holdout",
                            seed=0, **kw),
    lambda **kw: TwoTower(dim=16, feature_dim=8, item_hidden=(32,), user_hidden=(32,), lr=1e-2, targets="holdout",
                          seed=0, **kw),
], ids=["softmax-dnn", "two-tower"])
def test_fit_without_valid_early_stops_on_a_carved_slice(make, log):
    plain = make(epochs=1, min_epoch_examples=0).fit(log)
    assert all("valid" not in row for row in plain.history_)  # valid_users=0: no slice, fixed epochs
    model = make(epochs=3, valid_users=150, min_epoch_examples=300).fit(log)
    assert all("valid" in row for row in model.history_)
    # the slice's events are out of the history it is scored with (else exclude_seen would hide every answer)
    assert max(row["valid"] for row in model.history_) > 0.0
    # the carved events are still the user's: seen by recommend, excluded at recommendation time
    assert model.seen_.to_lists() == log.user_histories().to_lists()
