"""Bootstrap intervals and the paired test on data whose answer is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from embrec.evaluation.bootstrap import bootstrap_intervals, paired_bootstrap, unit_scores


def hits(values, name="hit@10"):
    values = np.asarray(values, dtype=np.float64)
    keys = np.array([f"u{i:04d}" for i in range(values.size)])
    return unit_scores(keys, {name: values}, {name: np.ones(values.size)})


def test_constant_units_give_a_zero_width_interval():
    assert bootstrap_intervals([hits([0.25] * 30)]) == {"hit@10": (0.25, 0.25)}


def test_two_units_give_the_extremes():
    # resamples of {0, 1} of size 2: mean 0 (p 1/4), 0.5 (1/2), 1 (1/4): the 2.5 % and 97.5 % points are 0 and 1
    assert bootstrap_intervals([hits([0.0, 1.0])]) == {"hit@10": (0.0, 1.0)}


def test_interval_width_matches_the_binomial_standard_error():
    # 400 users, 100 hits: se = sqrt(0.25 * 0.75 / 400) = 0.02165; a 95 % interval spans about 2 x 1.96 se
    lo, hi = bootstrap_intervals([hits([1.0] * 100 + [0.0] * 300)], n_boot=2000)["hit@10"]
    assert lo < 0.25 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.25 * 0.75 / 400), rel=0.12)
    # seeded: the same call gives the same interval
    again = bootstrap_intervals([hits([1.0] * 100 + [0.0] * 300)], n_boot=2000)["hit@10"]
    assert again == (lo, hi)


def test_units_are_users_not_rows():
    # one user with 9 hit rows and one with 1 missed row (retail precision style: num = hits, den = k x T):
    # two units, so the interval spans from 0 (the second user twice) to 0.9 (the first user twice)
    keys = np.array(["a"] * 9 + ["b"])
    scores = unit_scores(keys, {"p": np.r_[np.ones(9), 0.0]}, {"p": np.ones(10)})
    assert scores.units.tolist() == ["a", "b"] and scores.figure("p") == 0.9
    assert bootstrap_intervals([scores]) == {"p": (0.0, 1.0)}


def test_root_metrics_and_folds():
    # RMSE from squared errors: user a errors (1, 1) and user b (3): sqrt((1 + 1 + 9) / 3)
    keys = np.array(["a", "a", "b"])
    err2 = np.array([1.0, 1.0, 9.0])
    scores = unit_scores(keys, {"rmse": err2}, {"rmse": np.ones(3)}, root=("rmse",))
    assert scores.figure("rmse") == pytest.approx(np.sqrt(11 / 3))
    lo, hi = bootstrap_intervals([scores, scores])[
        "rmse"
    ]  # two identical folds: their mean is one fold
    assert lo == pytest.approx(1.0) and hi == pytest.approx(3.0)  # only a twice, only b twice


def test_paired_test_sees_a_planted_difference():
    # 400 users; model a finds 30 users model b misses, and nothing else differs: diff 0.075, se ~0.0137
    base = np.zeros(400)
    base[:80] = 1.0
    better = base.copy()
    better[100:130] = 1.0
    res = paired_bootstrap([hits(better)], [hits(base)], "hit@10")
    assert res["diff"] == pytest.approx(0.075)
    assert res["significant"] and res["interval"][0] > 0.04 and res["p"] < 0.01


def test_paired_test_sees_no_difference_where_there_is_none():
    # the two models swap 10 users each way: diff exactly 0, yet the per-user differences are noisy
    a = np.zeros(400)
    b = np.zeros(400)
    a[:90] = 1.0
    b[:80] = 1.0
    b[90:100] = 1.0
    res = paired_bootstrap([hits(a)], [hits(b)], "hit@10")
    assert res["diff"] == 0.0
    assert not res["significant"] and res["interval"][0] < 0 < res["interval"][1] and res["p"] > 0.5
    # the same scores against themselves: a zero interval, no difference
    same = paired_bootstrap([hits(a)], [hits(a)], "hit@10")
    assert same["interval"] == [0.0, 0.0] and not same["significant"]


def test_paired_beats_unpaired_on_correlated_models():
    # b = a plus 12 extra hits among 400 users: unpaired intervals overlap, the paired test still sees it
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.3).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:12]] = 1.0
    ia, ib = bootstrap_intervals([hits(a)])["hit@10"], bootstrap_intervals([hits(b)])["hit@10"]
    assert ib[0] < ia[1]  # the two 95 % intervals overlap
    assert paired_bootstrap([hits(b)], [hits(a)], "hit@10")["significant"]
