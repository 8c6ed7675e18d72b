"""Baselines on hand-made logs whose answers are known: repeat-frequency, item-transition, rating-bias,
and the base class's default next_item_scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import embrec
from embrec import Interactions, Ragged
from embrec.baselines import ItemTransition, Popularity, RatingBias, RepeatFrequency
from embrec.errors import DataError, InvalidParameterError
from embrec.models.registry import create, name_of


def shop() -> Interactions:
    """Popularity: p (5) > q (4) > r (3) > a (2) > b (1). User u bought a twice and b once."""
    pairs = [("x", "p")] * 5 + [("x", "q")] * 4 + [("y", "r")] * 3 + [("u", "a"), ("u", "b"), ("u", "a")]
    return Interactions.from_frame(pd.DataFrame(pairs, columns=["user", "item"]), user_col="user", item_col="item")


def ranked(model, **query) -> list[str]:
    return model.recommend(k=5, **query).ids[0].tolist()


def test_repeat_frequency_ranks_own_purchases_then_popularity():
    model = RepeatFrequency().fit(shop())
    assert ranked(model, users=["u"]) == ["a", "b", "p", "q", "r"]
    assert ranked(model, users=["y"]) == ["r", "p", "q", "a", "b"]
    assert ranked(model, histories=[["b", "q", "b"]]) == ["b", "q", "p", "r", "a"]
    assert model.recommend(users=["u"], k=3, exclude_seen=True).ids[0].tolist() == ["p", "q", "r"]


def test_item_transition_follows_transactions():
    # transactions: a b c | a b | a c | d (a -> b twice, a -> c once, b -> c once)
    frame = pd.DataFrame({"user": ["u", "u", "u", "v", "v", "w", "w", "w"],
                          "item": ["a", "b", "c", "a", "b", "a", "c", "d"],
                          "group": [1, 1, 1, 2, 2, 3, 3, 4]})
    log = Interactions.from_frame(frame, user_col="user", item_col="item", group_col="group")
    model = ItemTransition(smoothing=0.1).fit(log)
    assert model.transitions_.sum() == 4
    rows = log.items.encode(["a", "b", "c", "d"])
    a, b, c, d = rows
    scores = model.next_item_scores(np.array([0, 0, 0, 0]), Ragged.from_lists([[a], [a, b], [c, 0], []]))
    assert scores.shape == (4, log.items.size)
    top = scores[:, 1:].argmax(axis=1) + 1
    assert top[0] == b  # after a: b (2) over c (1)
    assert top[1] == c  # the last item b is followed by c
    # after c (nothing ever follows it; the trailing unknown 0 is skipped): popularity, a first
    assert top[2] == a
    assert top[3] == a  # empty prefix, unknown user: popularity
    # the user's own history is the back-off: w bought d, so after c (no transitions) d beats b and c
    w = log.users.encode(["w"])
    back_off = model.next_item_scores(w, Ragged.from_lists([[c]]))[0]
    assert back_off[d] > back_off[b] and back_off[a] > back_off[b]
    # exact value: P(b | a) = (2 + 0.1 * P_pop(b)) / (3 + 0.1), P_pop(b) = 2 / 8 for an unknown user
    assert scores[0, b] == pytest.approx((2 + 0.1 * 2 / 8) / 3.1, rel=1e-6)


def test_item_transition_without_groups_uses_time_ordered_histories():
    frame = pd.DataFrame({"user": ["u", "u", "u", "v", "v"], "item": ["c", "a", "b", "a", "b"],
                          "time": ["2011-01-03", "2011-01-01", "2011-01-02", "2011-01-01", "2011-01-02"]})
    log = Interactions.from_frame(frame, user_col="user", item_col="item", time_col="time")
    model = ItemTransition().fit(log)
    a, b, c = log.items.encode(["a", "b", "c"])
    counts = model.transitions_.toarray()
    assert counts[a, b] == 2 and counts[b, c] == 1 and counts.sum() == 3  # u: a b c, v: a b


def test_rating_bias_one_epoch_by_hand():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [5.0, 3.0, 4.0]})
    log = Interactions.from_frame(frame, user_col="user", item_col="item", rating_col="rating")
    model = RatingBias(epochs=1, user_reg=0.0, item_reg=0.0).fit(log)
    # mean 4; items first: b_i1 = (1 + 0) / 2 = 0.5, b_i2 = -1; then users: b_u1 = (0.5 + 0) / 2 = 0.25,
    # b_u2 = (0 - 0.5) / 1 = -0.5
    assert model.predict(np.array([1, 2, 2, 0]), np.array([1, 1, 2, 2])) == pytest.approx(
        [4.75, 4.0, 2.5, 3.0])
    assert model.predicts_ratings
    with pytest.raises(DataError, match="needs ratings"):
        RatingBias().fit(shop())
    with pytest.raises(InvalidParameterError, match="epochs must be an integer >= 1"):
        RatingBias(epochs=0)


def test_default_next_item_scores_user_then_prefix_then_popularity():
    log = shop()
    model = RepeatFrequency().fit(log)
    u = log.users.encode(["u"])[0]
    a, b, q = log.items.encode(["a", "b", "q"])
    scores = model.next_item_scores(np.array([u, 0, 0]), Ragged.from_lists([[q], [q, 0], []]))
    full = model._scores(np.array([u]), model.seen_.select([u]))[0]
    assert np.allclose(scores[0], full)  # known user: the training history, not the prefix
    assert scores[1].argmax() == q  # unknown user: the prefix as a history (its 0 dropped)
    assert np.allclose(scores[2], log.item_counts())  # nothing known: popularity


@pytest.mark.parametrize("name,factory,data", [
    ("repeat-frequency", RepeatFrequency, shop),
    ("item-transition", lambda: ItemTransition(smoothing=0.5), shop),
    ("rating-bias", RatingBias,
     lambda: Interactions.from_frame(pd.DataFrame({"u": [1, 1, 2, 3], "i": [1, 2, 1, 3], "r": [5., 3., 4., 2.]}),
                                     user_col="u", item_col="i", rating_col="r")),
])
def test_save_load_gives_identical_scores(tmp_path, name, factory, data):
    log = data()
    model = factory().fit(log)
    assert name_of(type(model)) == name and type(create(name)) is type(model)
    loaded = embrec.load(model.save(tmp_path / name))
    users = np.arange(log.users.size)
    hist = model.seen_.select(users)
    assert np.array_equal(model._scores(users, hist), loaded._scores(users, hist))
    prefixes = Ragged.from_lists([[1]] * users.size)
    assert np.array_equal(model.next_item_scores(users, prefixes), loaded.next_item_scores(users, prefixes))
    assert loaded.get_params() == model.get_params()


def test_popularity_is_unchanged_by_the_new_method():
    model = Popularity().fit(shop())
    scores = model.next_item_scores(np.array([1, 0]), Ragged.from_lists([[1], []]))
    assert np.allclose(scores, model.counts_)
