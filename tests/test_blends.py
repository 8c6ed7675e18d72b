"""The learned blends (repeat-blend, transition-blend) on logs with planted structure, and their shared
fitting pieces against hand-computed values and a reference optimiser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import embrec
from embrec import Interactions, Ragged
from embrec.baselines import ItemTransition, RepeatFrequency
from embrec.errors import DataError, InvalidParameterError
from embrec.models.blend_fit import basket_ids, carve_window, fit_log_linear
from embrec.models.repeat_blend import N_PAIR, RepeatBlend, _pair_features, _standardised
from embrec.models.transition_blend import TransitionBlend

T0 = np.datetime64("2020-01-01T00:00")


def switched_shop() -> Interactions:
    """200 customers. Each bought an "old" item 8 times in days 0-140 and never again, and a "new" item
    every 40 days from day 240 (5 times up to day 400), plus 3 random other items: repeat counts rank
    the old item first, yet what a customer keeps buying is the new one."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        rows += [(u, f"old{u % 10}", d) for d in range(0, 141, 20)]
        rows += [(u, f"new{(u // 10) % 10}", d) for d in range(240, 401, 40)]
        rows += [(u, f"z{rng.integers(30)}", int(rng.integers(0, 400))) for _ in range(3)]
    frame = pd.DataFrame(rows, columns=["user", "item", "day"])
    frame["time"] = (
        T0
        + frame["day"].to_numpy() * np.timedelta64(1, "D")
        + frame["user"].to_numpy() * np.timedelta64(1, "m")
    )
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    frame["basket"] = np.arange(len(frame))
    return Interactions.from_frame(
        frame.astype({"user": str}),
        user_col="user",
        item_col="item",
        time_col="time",
        group_col="basket",
    )


def test_repeat_blend_learns_that_recent_repeats_beat_old_counts():
    log = switched_shop()
    users = [str(u) for u in range(200)]
    new = [f"new{(u // 10) % 10}" for u in range(200)]
    old = [f"old{u % 10}" for u in range(200)]
    counts = RepeatFrequency().fit(log).recommend(users=users, k=1).ids[:, 0]
    assert (counts == np.array(old)).all()  # the baseline is fooled by the old counts
    blend = RepeatBlend().fit(log).recommend(users=users, k=1).ids[:, 0]
    assert np.mean(blend == np.array(new)) >= 0.95


def test_repeat_blend_scores_a_raw_history_by_its_counts_and_saves(tmp_path):
    log = switched_shop()
    model = RepeatBlend().fit(log)
    rows = log.items.encode(["z3", "z7"])
    history = Ragged.from_lists([[rows[0], rows[1], rows[1]]])
    scores = model._scores(np.zeros(1, dtype=np.int64), history)[0]
    # hand-built features: z3 once, z7 twice, 3 transactions, bought "now", never before; plus the
    # weight of the ALS score (standardised over the items) of the folded-in history
    n = np.array([1.0, 2.0])
    x = _pair_features(
        n, n, np.full(2, 3.0), np.zeros(2), np.zeros(2), model.repeat_rate_[rows], [n] * 4
    )
    assert x.shape == (2, N_PAIR)
    z = _standardised(model.embedding_, np.zeros(1, dtype=np.int64), history)[0]
    assert z[1:].mean() == pytest.approx(0.0, abs=1e-9) and z[1:].std() == pytest.approx(
        1.0, rel=1e-6
    )
    expected = model.item_scores_[rows] + x @ model.weights_[:N_PAIR] + model.weights_[-1] * z[rows]
    np.testing.assert_allclose(scores[rows], expected, rtol=1e-5)
    model.save(tmp_path / "m")
    loaded = embrec.load(tmp_path / "m")
    a = model.recommend(users=["3", "17"], k=10)
    b = loaded.recommend(users=["3", "17"], k=10)
    assert (a.ids == b.ids).all()
    np.testing.assert_allclose(a.scores, b.scores)
    c = model.recommend(histories=[["z3", "z7", "z7"]], k=10)
    d = loaded.recommend(histories=[["z3", "z7", "z7"]], k=10)
    assert (c.ids == d.ids).all()


def test_repeat_blend_without_embedding_is_its_hand_built_formula():
    log = switched_shop()
    model = RepeatBlend(embedding_factors=0).fit(log)
    assert model.embedding_ is None and model.weights_.shape == (N_PAIR + 6,)
    rows = log.items.encode(["z3", "z7"])
    scores = model._scores(
        np.zeros(1, dtype=np.int64), Ragged.from_lists([[rows[0], rows[1], rows[1]]])
    )[0]
    n = np.array([1.0, 2.0])
    x = _pair_features(
        n, n, np.full(2, 3.0), np.zeros(2), np.zeros(2), model.repeat_rate_[rows], [n] * 4
    )
    np.testing.assert_allclose(
        scores[rows], model.item_scores_[rows] + x @ model.weights_[:N_PAIR], rtol=1e-5
    )
    other = np.setdiff1d(np.arange(1, log.items.size), rows)
    expected = (model.item_scores_ - 1e3 * ~model.candidate_)[other]
    np.testing.assert_allclose(scores[other], expected, rtol=1e-6)


def test_repeat_blend_bounds_its_lists_and_blocks_without_changing_them(monkeypatch):
    import embrec.models.repeat_blend as repeat_blend

    log = clustered_shop()
    before = carve_window(log, 0.15)
    sub, win = log.subset(before), log.subset(~before)
    model = RepeatBlend(embedding_factors=8)
    x, owner, target = model._window_lists(sub, win)
    monkeypatch.setattr(repeat_blend, "_BLOCK_CELLS", 3 * log.items.size)  # 3 customers a block
    x3, owner3, target3 = model._window_lists(sub, win)
    np.testing.assert_array_equal(owner3, owner)
    np.testing.assert_allclose(x3, x)
    np.testing.assert_allclose(target3, target)
    assert owner.max() + 1 > 40
    sampled = RepeatBlend(embedding_factors=8, max_users=40)._window_lists(sub, win)[1]
    assert sampled.max() + 1 == 40


def clustered_shop() -> Interactions:
    """200 customers in 4 planted groups; each buys 12 random items of its group's 15, one a day at random
    days: the items a customer will buy next that they never bought are their group's, and only the
    embedding (ALS on who bought what) knows the groups; popularity is the same for every group."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        group = u % 4
        for day in np.sort(rng.choice(300, size=12, replace=False)):
            rows.append((str(u), f"g{group}-{rng.integers(15)}", int(day)))
    frame = pd.DataFrame(rows, columns=["user", "item", "day"])
    frame["time"] = T0 + frame["day"].to_numpy() * np.timedelta64(1, "D")
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    frame["basket"] = np.arange(len(frame))
    return Interactions.from_frame(
        frame, user_col="user", item_col="item", time_col="time", group_col="basket"
    )


def test_repeat_blend_embedding_brings_the_customers_group_among_new_items():
    log = clustered_shop()
    users = [str(u) for u in range(200)]
    groups = np.array([f"g{u % 4}" for u in range(200)])

    def in_group(model) -> float:
        top = model.recommend(users=users, k=1, exclude_seen=True).ids[:, 0]
        return float(np.mean([t.split("-")[0] == g for t, g in zip(top, groups)]))

    assert in_group(RepeatBlend(embedding_factors=0).fit(log)) <= 0.45
    with_embedding = RepeatBlend(embedding_factors=8).fit(log)
    assert with_embedding.weights_[-1] > 0
    assert in_group(with_embedding) >= 0.9


def second_order_shop(n_baskets: int, seed: int) -> pd.DataFrame:
    """Baskets [anchor a, noise n, successor f(a)]: the third item follows from the FIRST one, which a
    first-order transition model (it reads the last item, the noise) cannot see."""
    rng = np.random.default_rng(seed)
    a, n = rng.integers(20, size=n_baskets), rng.integers(30, size=n_baskets)
    items = np.stack(
        [
            np.char.add("a", a.astype(str)),
            np.char.add("n", n.astype(str)),
            np.char.add("s", a.astype(str)),
        ],
        axis=1,
    ).reshape(-1)
    basket = np.repeat(np.arange(n_baskets), 3)
    user = np.repeat(rng.integers(40, size=n_baskets), 3).astype(str)
    time = T0 + basket * np.timedelta64(1, "h")
    return pd.DataFrame({"user": user, "item": items, "time": time, "basket": basket})


def second_order_log(n_baskets: int, seed: int = 0) -> Interactions:
    return Interactions.from_frame(
        second_order_shop(n_baskets, seed),
        user_col="user",
        item_col="item",
        time_col="time",
        group_col="basket",
    )


def third_item_accuracy(model, log: Interactions) -> float:
    """How often ``model`` ranks the planted third item first after the first two of 300 new baskets
    (items already in the basket and the unknown-item row left out)."""
    test = second_order_shop(300, 1)
    rows = log.items.encode(test["item"].tolist()).reshape(-1, 3)
    users = log.users.encode(test["user"].iloc[::3].tolist(), unknown="zero")
    prefixes = Ragged.from_lists(rows[:, :2].tolist())
    scores = np.array(model.next_item_scores(users, prefixes), dtype=np.float64)
    scores[:, 0] = -np.inf
    scores[prefixes.row_ids, prefixes.values] = -np.inf
    return float(np.mean(scores.argmax(axis=1) == rows[:, 2]))


def test_transition_blend_learns_what_the_basket_so_far_says():
    log = second_order_log(2000)
    assert third_item_accuracy(ItemTransition().fit(log), log) <= 0.3
    assert third_item_accuracy(TransitionBlend(max_rows=3000).fit(log), log) >= 0.9


def test_transition_blend_without_groups_takes_a_users_day_as_the_basket():
    # the same planted baskets, one a day and no group column: a user's events of a day are the basket
    frame = second_order_shop(1500, 0)
    frame["time"] = T0 + (
        frame["basket"].to_numpy() * 24 * 60 + np.tile([0, 1, 2], 1500)
    ) * np.timedelta64(1, "m")
    log = Interactions.from_frame(
        frame.drop(columns="basket"), user_col="user", item_col="item", time_col="time"
    )
    assert third_item_accuracy(TransitionBlend(max_rows=3000).fit(log), log) >= 0.9


def test_transition_blend_refuses_a_cooccurrence_past_its_memory_limit(monkeypatch):
    import embrec.models.transition_blend as transition_blend

    log = second_order_log(200)
    # 200 baskets of 3 distinct items: at most 1,800 pairs, 21,600 bytes
    monkeypatch.setattr(transition_blend, "MAX_COOCCURRENCE_BYTES", 20_000)
    with pytest.raises(DataError, match="up to 1,800 item pairs"):
        TransitionBlend().fit(log)


def test_transition_blend_saves_and_ranks_after_a_history(tmp_path):
    log = second_order_log(600)
    model = TransitionBlend(max_rows=1000).fit(log)
    model.save(tmp_path / "m")
    loaded = embrec.load(tmp_path / "m")
    users = log.users.encode(["1", "2", "3"])
    prefixes = Ragged.from_lists(
        [log.items.encode(["a1", "n4"]).tolist(), [], log.items.encode(["a5"]).tolist()]
    )
    np.testing.assert_allclose(
        loaded.next_item_scores(users, prefixes), model.next_item_scores(users, prefixes)
    )
    a = model.recommend(histories=[["a7", "n2", "s7", "a3"]], k=3)
    # the basket so far is the history's last item, a3: its successor s3 is near the top
    assert "s3" in a.ids[0].tolist()
    b = loaded.recommend(histories=[["a7", "n2", "s7", "a3"]], k=3)
    assert (a.ids == b.ids).all()


# shared pieces -----------------------------------------------------------------------------------
def tiny_log(times: list[int], users: list[str], groups: list[int] | None = None) -> Interactions:
    frame = pd.DataFrame(
        {
            "user": users,
            "item": [f"i{j % 3}" for j in range(len(times))],
            "time": T0 + np.array(times) * np.timedelta64(1, "h"),
        }
    )
    if groups is not None:
        frame["group"] = groups
    return Interactions.from_frame(
        frame,
        user_col="user",
        item_col="item",
        time_col="time",
        group_col=None if groups is None else "group",
    )


def test_carve_window_takes_the_last_events_and_never_splits_a_time():
    log = tiny_log(list(range(10)), ["u"] * 10)
    assert carve_window(log, 0.3).tolist() == [True] * 7 + [False] * 3
    tied = tiny_log([0, 1, 2, 3, 4, 5, 6, 6, 6, 9], ["u"] * 10)
    # the cut falls at time 6, so the window takes all three events at 6
    assert carve_window(tied, 0.3).tolist() == [True] * 6 + [False] * 4
    with pytest.raises(DataError, match="cannot be cut"):
        carve_window(tiny_log([5, 5, 5], ["u"] * 3), 0.5)
    no_time = Interactions.from_frame(
        pd.DataFrame({"user": ["u"], "item": ["a"]}), user_col="user", item_col="item"
    )
    with pytest.raises(DataError, match="timestamp column"):
        RepeatBlend().fit(no_time)


def test_basket_ids_are_groups_or_a_users_day():
    grouped = basket_ids(tiny_log([0, 1, 2], ["u", "u", "v"], groups=[7, 7, 9]))
    assert grouped[0] == grouped[1] != grouped[2]
    # hours 0, 1, 30 (next day), 2 of user u and hour 3 of v: u's day 0 twice, u's day 1, ...
    ids = basket_ids(tiny_log([0, 1, 30, 2, 3], ["u", "u", "u", "u", "v"]))
    assert ids[0] == ids[1] == ids[3] and len({ids[0], ids[2], ids[4]}) == 3


def test_fit_log_linear_matches_a_reference_optimiser():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    owner = np.repeat(np.arange(12), 5)
    target = rng.integers(0, 3, size=60).astype(float)
    l2 = 0.01

    def loss(w: np.ndarray) -> float:
        s = x @ w
        total = 0.0
        for lst in range(12):
            part = owner == lst
            log_p = s[part] - np.log(np.exp(s[part]).sum())
            total -= (target[part] * log_p).sum()
        return total / target.sum() + l2 * (w @ w)

    reference = minimize(loss, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(fit_log_linear(x, owner, target, l2=l2), reference, atol=1e-5)
    with pytest.raises(DataError, match="holds no event"):
        fit_log_linear(x, owner, np.zeros(60), l2=l2)


@pytest.mark.parametrize(
    "cls,params,match",
    [
        (RepeatBlend, {"window": 0.0}, "window must be > 0.0"),
        (RepeatBlend, {"window": 1.5}, "window must be <= 1.0"),
        (RepeatBlend, {"l2": 0}, "l2 must be > 0.0"),
        (TransitionBlend, {"n_candidates": 0}, "n_candidates must be an integer >= 1"),
        (TransitionBlend, {"max_rows": "all"}, "max_rows must be an integer"),
    ],
)
def test_bad_parameters_name_themselves(cls, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        cls(**params)
