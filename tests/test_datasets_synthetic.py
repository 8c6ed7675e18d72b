"""The synthetic shop: deterministic, exact sizes, and the planted structure is really there."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embrec.datasets import load, synthetic, synthetic_truth
from embrec.errors import InvalidParameterError

PARAMS = {"n_users": 400, "n_items": 300, "n_interactions": 30_000, "n_categories": 10, "seed": 3}
TRUTH = {k: PARAMS[k] for k in ("n_users", "n_items", "n_categories", "seed")}


@pytest.fixture(scope="module")
def log():
    return synthetic(**PARAMS)


@pytest.fixture(scope="module")
def truth():
    return synthetic_truth(**TRUTH)


def test_same_seed_same_log_other_seed_other_log(log):
    again = synthetic(**PARAMS)
    for col in ("user", "item", "rating", "timestamp", "group"):
        np.testing.assert_array_equal(getattr(log, col), getattr(again, col))
    np.testing.assert_array_equal(log.item_features.text["description"], again.item_features.text["description"])
    np.testing.assert_array_equal(log.item_features.numeric["price"], again.item_features.numeric["price"])
    other = synthetic(**{**PARAMS, "seed": 4})
    assert not np.array_equal(log.item, other.item)


def test_truth_does_not_depend_on_simulation_parameters(truth):
    log_small = synthetic(**TRUTH, n_interactions=500, repeat_probability=0.0)
    np.testing.assert_array_equal(log_small.item_features.categorical["category"], truth.item_category + 1)
    np.testing.assert_array_equal(log_small.user_features.categorical["segment"], truth.user_segment + 1)


def test_sizes_ids_and_columns(log):
    assert len(log) == 30_000
    assert log.n_users == 400 and log.n_items == 300
    assert log.users.raw_ids[0] == "U001" and log.items.raw_ids[-1] == "I300"
    assert log.users.decode([5])[0] == "U005"  # row i is raw id i: zero-padded ids sort in number order
    assert log.user.min() >= 1 and log.item.min() >= 1  # no unknown rows
    assert np.bincount(log.user, minlength=log.users.size)[1:].min() >= 1  # every user bought something
    assert log.rating.min() >= 1 and np.all(log.rating == np.round(log.rating))  # quantities


def test_time_order_and_baskets(log):
    assert np.all(np.diff(log.timestamp.astype(np.int64)) >= 0)
    offsets = log.group_offsets()
    assert offsets.size - 1 == log.group.max() + 1  # groups are consecutive runs
    starts = offsets[:-1]
    np.testing.assert_array_equal(log.timestamp, np.repeat(log.timestamp[starts], np.diff(offsets)))
    np.testing.assert_array_equal(log.user, np.repeat(log.user[starts], np.diff(offsets)))
    assert abs(np.diff(offsets).mean() - 4.0) < 0.3  # mean_basket_size
    hours = (log.timestamp - log.timestamp.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    assert hours.min() >= 8 and hours.max() < 20


def test_items_of_one_category_co_occur_far_more_than_chance(log, truth):
    basket_item = sp.csr_matrix((np.ones(len(log)), (log.group, log.item)), dtype=np.float64)
    basket_item.data[:] = 1.0
    co = (basket_item.T @ basket_item).tocoo()
    off = co.row != co.col
    rows, cols, w = co.row[off], co.col[off], co.data[off]
    same = truth.item_category[rows] == truth.item_category[cols]
    share = w[same].sum() / w.sum()
    mass = np.bincount(truth.item_category[log.item], minlength=10) / len(log)
    chance = float((mass ** 2).sum())
    assert share > 0.6 and share > 5 * chance


def test_planted_successors(log, truth):
    same_basket = log.group[1:] == log.group[:-1]
    prev, nxt = log.item[:-1][same_basket], log.item[1:][same_basket]
    hit = np.mean(truth.successor[prev] == nxt)
    assert 0.35 < hit < 0.6  # successor_probability=0.4 plus what chance adds
    assert np.all(truth.item_category[truth.successor[1:]] == truth.item_category[1:])


def test_repeat_purchases_of_favourites(log, truth):
    in_favourites = (truth.favourites[log.user] == log.item[:, None]).any(axis=1)
    assert in_favourites.mean() > 0.25  # chance: about 5 / 300
    pairs = log.user.astype(np.int64) * log.items.size + log.item
    assert np.unique(pairs).size < 0.7 * len(log)  # users buy the same items again


def test_users_prefer_their_segment(log, truth):
    assert np.mean(truth.user_segment[log.user] == truth.item_category[log.item]) > 0.5


def test_heavy_tails(log):
    counts = np.sort(log.item_counts()[1:])[::-1]
    assert counts[: counts.size // 10].sum() > 0.4 * counts.sum()  # top 10% of items
    lengths = np.bincount(log.user, minlength=log.users.size)[1:]
    assert lengths.max() > 5 * np.median(lengths)


def test_item_content_follows_the_category(log, truth):
    ft = log.item_features
    assert ft.vocabularies["category"][:3] == ["kitchen", "garden", "toys"]
    assert np.isnan(ft.numeric["price"][0]) and np.nanmin(ft.numeric["price"]) > 0
    words: dict[int, set[str]] = {}
    for row in range(1, log.items.size):
        words.setdefault(int(truth.item_category[row]), set()).update(ft.text["description"][row].split()[1:])
    cats = sorted(words)
    for a in cats:
        for b in cats:
            if a < b:
                assert not words[a] & words[b]  # category words are never shared


def test_many_categories_get_generated_labels_and_words():
    big = synthetic(n_users=50, n_items=100, n_interactions=800, n_categories=15, seed=1)
    labels = big.item_features.vocabularies["category"]
    assert len(labels) == 15 and labels[12] == "category012"


def test_load_synthetic_by_name():
    log = load("synthetic")
    assert len(log) == 20_000 and log.name == "synthetic"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_users": 0}, "n_users must be an integer >= 1; received 0"),
        ({"n_interactions": 2.5}, "n_interactions must be an integer"),
        ({"repeat_probability": 1.5}, "repeat_probability must be <= 1.0; received 1.5"),
        ({"n_items": 5, "n_categories": 10}, "n_categories must be <= n_items (5)"),
        ({"seed": -1}, "seed must be a non-negative integer; received -1"),
        ({"start": "not a date"}, "start must be a date"),
        ({"mean_basket_size": 0.5}, "mean_basket_size must be >= 1.0"),
    ],
)
def test_bad_parameters(kwargs, needle):
    with pytest.raises(InvalidParameterError) as err:
        synthetic(**kwargs)
    assert needle in str(err.value)
