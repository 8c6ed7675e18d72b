"""Splits: every event in exactly one part, no later event in an earlier part, seeded randomness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embrec import Interactions
from embrec.errors import DataError, InvalidParameterError
from embrec.evaluation import leave_last_out, official_fold, random_split, split_by_time


def event_log(n_users: int = 30, n_events: int = 600, seed: int = 0) -> Interactions:
    """A shuffled log whose rating column is the event id (0..n-1), to track events through splits."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user": rng.integers(0, n_users, n_events),
        "item": rng.integers(0, 40, n_events),
        "time": pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, n_events), unit="h"),
        "id": np.arange(n_events),
    })
    return Interactions.from_frame(frame, user_col="user", item_col="item", rating_col="id", time_col="time")


def ids(part: Interactions) -> np.ndarray:
    return part.rating.astype(np.int64)


def assert_partition(log: Interactions, parts: list[Interactions]) -> None:
    all_ids = np.concatenate([ids(p) for p in parts])
    assert all_ids.size == len(log)  # nothing lost, nothing duplicated
    assert np.array_equal(np.sort(all_ids), np.arange(len(log)))


def test_time_split_is_a_partition_in_time_order():
    log = event_log()
    parts = split_by_time(log, ["2011-06-01", "2011-09-15"])
    assert len(parts) == 3 and all(len(p) for p in parts)
    assert_partition(log, parts)
    for earlier, later in zip(parts, parts[1:]):
        assert earlier.timestamp.max() < later.timestamp.min()
    assert parts[0].timestamp.max() < np.datetime64("2011-06-01")
    assert parts[2].timestamp.min() >= np.datetime64("2011-09-15")


def test_time_split_errors():
    log = event_log()
    with pytest.raises(DataError, match=r"cut-off 2012-03-01 00:00:00 lies outside the data's time range"):
        split_by_time(log, ["2012-03-01"])
    with pytest.raises(DataError, match="outside the data's time range"):
        split_by_time(log, ["2010-12-31"])
    with pytest.raises(InvalidParameterError, match="cutoffs must increase"):
        split_by_time(log, ["2011-09-01", "2011-06-01"])
    with pytest.raises(InvalidParameterError, match="dates like"):
        split_by_time(log, ["not a date"])
    with pytest.raises(DataError, match="needs the timestamp column"):
        split_by_time(Interactions.from_frame(pd.DataFrame({"u": [1], "i": [2]}), user_col="u", item_col="i"),
                      ["2011-01-01"])


def test_random_split_by_row_and_by_user():
    log = event_log()
    train, test = random_split(log, fraction=0.2, by="row", seed=3)
    assert_partition(log, [train, test])
    assert len(test) == round(0.2 * len(log))

    train, test = random_split(log, fraction=0.2, by="user", seed=3)
    assert_partition(log, [train, test])
    per_user = np.bincount(log.user, minlength=log.users.size)
    held = np.bincount(test.user, minlength=log.users.size)
    expected = np.minimum(np.round(0.2 * per_user), per_user - 1).clip(0)
    assert np.array_equal(held, expected)
    assert (np.bincount(train.user, minlength=log.users.size)[per_user > 0] >= 1).all()


def test_random_split_is_seeded():
    log = event_log()
    a = ids(random_split(log, seed=1)[1])
    assert np.array_equal(a, ids(random_split(log, seed=1)[1]))
    assert not np.array_equal(a, ids(random_split(log, seed=2)[1]))
    with pytest.raises(InvalidParameterError, match="fraction must be > 0.0"):
        random_split(log, fraction=0.0)
    with pytest.raises(InvalidParameterError, match="by must be one of"):
        random_split(log, by="item")


def test_leave_last_out_takes_each_users_latest_event():
    log = event_log()
    train, test = leave_last_out(log)
    assert_partition(log, [train, test])
    users_with_two = np.flatnonzero(np.bincount(log.user, minlength=log.users.size) >= 2)
    assert sorted(test.user.tolist()) == users_with_two.tolist()
    for u, t in zip(test.user, test.timestamp):
        assert (train.timestamp[train.user == u] <= t).all()


def test_leave_last_out_by_hand_with_unknown_users_and_singletons():
    frame = pd.DataFrame({
        "user": ["a", "b", "a", "c", None, "a"],
        "item": [1, 2, 3, 4, 5, 6],
        "time": ["2011-01-03", "2011-01-01", "2011-01-05", "2011-01-02", "2011-01-09", "2011-01-04"],
    })
    log = Interactions.from_frame(frame, user_col="user", item_col="item", time_col="time",
                                  missing_users="unknown")
    train, test = leave_last_out(log)
    # a's latest event is item 3 (Jan 5) though item 6 comes later in the file; b and c have one event
    # each and the unknown user's row stays in training
    assert test.items.decode(test.item).tolist() == [3]
    assert sorted(train.items.decode(train.item).tolist()) == [1, 2, 4, 5, 6]


def test_official_fold_is_a_partition_of_ml100k(shared_data):
    base, test = official_fold("u1", data_dir=shared_data)
    assert (len(base), len(test)) == (80_000, 20_000)
    pairs = lambda x: set(zip(x.user.tolist(), x.item.tolist()))  # noqa: E731
    assert not pairs(base) & pairs(test)  # ml-100k holds one rating per (user, movie)


def test_leave_last_out_without_time_uses_file_order():
    log = Interactions.from_frame(pd.DataFrame({"u": [1, 2, 1, 1, 2], "i": [10, 11, 12, 13, 14]}),
                                  user_col="u", item_col="i")
    train, test = leave_last_out(log)
    assert test.items.decode(test.item).tolist() == [13, 14]
    assert train.items.decode(train.item).tolist() == [10, 11, 12]
