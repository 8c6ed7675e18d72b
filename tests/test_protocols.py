"""Protocols: hand-made logs with answers computed by hand; the chapter's figures on the shared data."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from embrec import Interactions
from embrec.baselines import Popularity, RatingBias, RepeatFrequency
from embrec.errors import DataError, InvalidParameterError, ParameterWarning
from embrec.evaluation import evaluate_model, load_folds, protocol_names, run_protocol
from embrec.evaluation.retail import retail_next, retail_precision

# (customer or None, date, items of the transaction)
RETAIL = [
    # training: before 2011-10-09. Counts: P1 6, P2 5, P3 4, P4 3, P5 3, A 2, B 1, C 1
    (None, "2011-09-01", ["P1"] * 6 + ["P2"] * 5 + ["P3"] * 4 + ["P4"] * 3 + ["P5"] * 3),
    ("u1", "2011-09-02", ["A", "B"]),
    ("u1", "2011-09-03", ["A"]),
    ("u2", "2011-09-04", ["C"]),
    # validation month
    ("u1", "2011-10-10", ["A", "P1", "Z"]),  # Z: an item never seen in training
    (None, "2011-10-11", ["P2", "B"]),
    ("u3", "2011-10-12", ["P3"]),  # u3: a customer new in October
    ("u2", "2011-10-13", ["C", "P1"]),
    # test month
    ("u1", "2011-11-15", ["B"]),
]


def retail_log() -> Interactions:
    rows = [(c, f"{d} 10:00", f"inv{g}", i) for g, (c, d, items) in enumerate(RETAIL) for i in items]
    frame = pd.DataFrame(rows, columns=["customer", "date", "invoice", "item"])
    return Interactions.from_frame(frame, user_col="customer", item_col="item", time_col="date",
                                   group_col="invoice", missing_users="unknown", name="tiny-retail")


def test_registry_lists_the_six_protocols():
    assert protocol_names() == ["retail-precision", "retail-next", "ml100k-rmse", "ml100k-top10",
                                "leave-last-out", "random-holdout"]


def test_retail_precision_by_hand():
    result = run_protocol("retail-precision", {"popularity": Popularity, "repeat": RepeatFrequency},
                          data=retail_log())
    assert result["protocol"] == "retail-precision" and result["dataset"] == "tiny-retail"
    got = {r["model"]: r["metrics"] for r in result["results"]}
    # popularity recommends P1..P5 to all 4 transactions: hits P1, P2, P3, P1 -> 4 / (4 x 5)
    assert got["popularity"] == {"precision@5": pytest.approx(0.2)}
    # repeat: u1 gets A B P1 P2 P3 (hits A, P1); the unknown customer and new u3 get P1..P5 (hits P2, P3);
    # u2 gets C P1 P2 P3 P4 (hits C, P1) -> 6 / 20
    assert got["repeat"] == {"precision@5": pytest.approx(0.3)}
    assert all(isinstance(r["fit_seconds"], float) for r in result["results"])


def test_retail_test_part_trains_on_the_validation_month_too():
    result = run_protocol("retail-precision", {"popularity": Popularity, "repeat": RepeatFrequency},
                          data=retail_log(), part="test")
    got = {r["model"]: r["metrics"]["precision@5"] for r in result["results"]}
    # u1's history now: A x3, B, P1, Z -> A, P1 (popular), B, Z, P2: B is a hit. Popularity's top 5
    # (P1 8, P2 6, P3 5, then counts of 3) has no B.
    assert got == {"popularity": 0.0, "repeat": pytest.approx(0.2)}
    _, (fold,) = load_folds("retail-precision", data=retail_log(), part="test")
    assert fold.valid is None and "Z" in fold.train.items and len(fold.test) == 1


def test_retail_next_popularity_with_removal_by_hand_and_as_the_chapter_counts():
    result = run_protocol("retail-next", {"popularity": Popularity}, data=retail_log())
    # rows: A miss, P1 hit, Z (unknown) miss | P2 hit, B miss (P2 removed: P1 P3 P4 P5 A) | P3 hit |
    # C miss, P1 hit -> 4 / 8
    assert result["results"][0]["metrics"] == {"top5_accuracy": pytest.approx(0.5)}
    assert chapter_baseline_accuracy(retail_log()) == pytest.approx(0.5)


def chapter_baseline_accuracy(log: Interactions) -> float:
    """The chapter's popularity-with-removal baseline and accuracy_k, transcribed (Counter based)."""
    items = log.items.decode(log.item)
    train = log.timestamp < np.datetime64("2011-10-09")
    valid = ~train & (log.timestamp < np.datetime64("2011-11-09"))
    top = Counter(items[train])
    val_items, groups = items[valid], log.group[valid]
    hits = 0
    for g in np.unique(groups):
        t = top.copy()
        for actual in val_items[groups == g]:
            hits += actual in [k for k, _ in t.most_common(5)]
            if actual in t:
                del t[actual]
    return hits / len(val_items)


def test_retail_cutoffs_outside_the_data_are_an_error():
    frame = pd.DataFrame({"c": [1, 2], "t": ["2010-01-01", "2010-02-01"], "g": [1, 2], "i": ["a", "b"]})
    log = Interactions.from_frame(frame, user_col="c", item_col="i", time_col="t", group_col="g")
    with pytest.raises(DataError, match="cut-off 2011-10-09 00:00:00 lies outside the data's time range"):
        run_protocol("retail-precision", {"popularity": Popularity}, data=log)


def test_evaluate_model_fits_or_scores_as_is():
    log = retail_log()
    fresh = evaluate_model("retail-precision", RepeatFrequency(), data=log)
    assert fresh["model"] == "repeat-frequency" and fresh["metrics"] == {"precision@5": pytest.approx(0.3)}
    assert isinstance(fresh["fit_seconds"], float)
    _, (fold,) = load_folds("retail-precision", data=log)
    fitted = RepeatFrequency().fit(fold.train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = evaluate_model("retail-precision", fitted, data=log)
    assert same["metrics"] == fresh["metrics"] and same["fit_seconds"] is None
    # fitted on the whole log (other vocabularies): still scored, after a warning about leakage
    with pytest.warns(ParameterWarning, match="fitted on other data"):
        other = evaluate_model("retail-next", RepeatFrequency().fit(log), data=log)
    assert 0.0 <= other["metrics"]["top5_accuracy"] <= 1.0


def test_bad_protocol_requests():
    with pytest.raises(InvalidParameterError, match="protocol must be one of retail-precision"):
        run_protocol("retail", {"popularity": Popularity})
    with pytest.raises(InvalidParameterError, match="has no option 'n'; its options: part, k"):
        run_protocol("retail-precision", {"popularity": Popularity}, data=retail_log(), n=3)
    with pytest.raises(InvalidParameterError, match="ml100k-rmse has no option 'k'"):
        run_protocol("ml100k-rmse", {"bias": RatingBias}, k=3)
    with pytest.raises(InvalidParameterError, match="k must be an integer >= 1; received 0"):
        run_protocol("leave-last-out", {"popularity": Popularity}, data=retail_log(), k=0)
    with pytest.raises(InvalidParameterError, match="part must be one of 'valid', 'test'"):
        run_protocol("retail-next", {"popularity": Popularity}, data=retail_log(), part="train")
    with pytest.raises(InvalidParameterError, match="needs models that predict ratings"):
        run_protocol("ml100k-rmse", {"popularity": Popularity})
    with pytest.raises(InvalidParameterError, match="takes no data= or dataset="):
        run_protocol("ml100k-top10", {"popularity": Popularity}, data=retail_log())
    with pytest.raises(InvalidParameterError, match="give dataset= .* or data="):
        run_protocol("leave-last-out", {"popularity": Popularity})
    with pytest.raises(InvalidParameterError, match="factories must be a non-empty dict"):
        run_protocol("leave-last-out", {}, data=retail_log())


def timed_log(rows: list[tuple[str, str, str]]) -> Interactions:
    frame = pd.DataFrame(rows, columns=["user", "item", "time"])
    return Interactions.from_frame(frame, user_col="user", item_col="item", time_col="time", name="tiny")


def test_leave_last_out_by_hand():
    log = timed_log([
        ("u1", "i1", "2020-01-01"), ("u1", "i2", "2020-01-02"), ("u1", "i3", "2020-01-03"),  # test: i3
        ("u2", "i2", "2020-01-01"), ("u2", "i1", "2020-01-05"),  # test: i1
        ("u3", "i4", "2020-01-01"),  # one event: no test
        ("u4", "i1", "2020-01-01"), ("u4", "i1", "2020-01-02"),  # last repeats a training item: left out
    ])
    result = run_protocol("leave-last-out", {"popularity": Popularity}, data=log)
    # training counts i1 2, i2 2, i4 1 (i3 only in the test: unknown). u1 ranks i4 (i1, i2 seen): its i3
    # cannot be found -> miss. u2 ranks i1 first (i2 seen) -> hit at rank 1.
    assert result["dataset"] == "tiny"
    assert result["results"][0]["metrics"] == {"hit@10": 0.5, "ndcg@10": 0.5}


def test_option_k_changes_the_list_length_of_every_top_k_protocol():
    # popularity's top 3 is P1, P2, P3 for all 4 validation transactions: hits P1, P2, P3, P1 -> 4 / (4 x 3)
    result = run_protocol("retail-precision", {"popularity": Popularity}, data=retail_log(), k=3)
    assert result["results"][0]["metrics"] == {"precision@3": pytest.approx(1 / 3)}
    result = run_protocol("retail-next", {"popularity": Popularity}, data=retail_log(), k=1)
    assert list(result["results"][0]["metrics"]) == ["top1_accuracy"]
    log = timed_log([("u1", "i1", "2020-01-01"), ("u1", "i2", "2020-01-02"), ("u1", "i3", "2020-01-03"),
                     ("u2", "i2", "2020-01-01"), ("u2", "i1", "2020-01-05"), ("u3", "i4", "2020-01-01"),
                     ("u4", "i1", "2020-01-01"), ("u4", "i1", "2020-01-02")])
    # as test_leave_last_out_by_hand, with one slot: u1 gets i4 (miss), u2 gets i1 (hit at rank 1)
    result = run_protocol("leave-last-out", {"popularity": Popularity}, data=log, k=1)
    assert result["results"][0]["metrics"] == {"hit@1": 0.5, "ndcg@1": 0.5}
    result = evaluate_model("random-holdout", Popularity(), data=log, k=2)
    assert set(result["metrics"]) == {"precision@2", "recall@2", "ndcg@2"}


def test_random_holdout_ranks_every_unseen_item():
    # every user bought all 12 items: 20 % -> 2 held out, and those 2 are the only items left to rank
    rows = [(f"u{u}", f"i{i}", f"2020-01-{i + 1:02d}") for u in range(6) for i in range(12)]
    result = run_protocol("random-holdout", {"popularity": Popularity}, data=timed_log(rows), seed=4)
    assert result["results"][0]["metrics"] == {
        "precision@10": pytest.approx(0.2), "recall@10": 1.0, "ndcg@10": pytest.approx(1.0)}


# the shared datasets: the chapter's and our measured figures ----------------------------------------
@pytest.fixture(scope="module")
def online_retail(shared_data):
    from embrec import datasets

    return datasets.load("online-retail", data_dir=shared_data)


def test_chapter_popularity_precision_at_5(online_retail):
    result = run_protocol("retail-precision", {"popularity": Popularity}, data=online_retail)
    assert result["results"][0]["metrics"]["precision@5"] == pytest.approx(0.064, abs=0.001)


def test_chapter_sequential_popularity_top5_accuracy(online_retail):
    _, (fold,) = load_folds("retail-next", data=online_retail)
    assert fold.test.group_offsets().size - 1 == 2435  # the validation month's invoices
    model = Popularity().fit(fold.train, valid=fold.valid)
    assert 0.012 <= retail_next(model, fold)["top5_accuracy"] <= 0.013
    assert retail_precision(model, fold)["precision@5"] == pytest.approx(0.064, abs=0.001)


def test_ml100k_top10_popularity(shared_data):
    result = run_protocol("ml100k-top10", {"popularity": Popularity}, data_dir=shared_data)
    assert result["results"][0]["metrics"]["precision@10"] == pytest.approx(0.122, abs=0.001)


def test_ml100k_rmse_bias_matches_surprise_baseline_only(shared_data):
    result = run_protocol("ml100k-rmse", {"bias": RatingBias}, data_dir=shared_data)
    res = result["results"][0]
    assert [f["fold"] for f in res["folds"]] == ["u1", "u2", "u3", "u4", "u5"]
    assert res["metrics"]["rmse"] == pytest.approx(np.mean([f["metrics"]["rmse"] for f in res["folds"]]))
    assert res["metrics"]["rmse"] == pytest.approx(0.946, abs=0.002)  # Surprise BaselineOnly, same folds


def test_evaluate_model_finds_the_fold_a_fitted_model_was_trained_on(shared_data):
    _, folds = load_folds("ml100k-rmse", data_dir=shared_data, folds=["u1", "u2"])
    model = RatingBias().fit(folds[1].train)
    result = evaluate_model("ml100k-rmse", model, data_dir=shared_data, folds=["u1", "u2"])
    assert result["split"].startswith("u2.base") and result["fit_seconds"] is None
    from embrec.evaluation.movielens import ml100k_rmse

    assert result["metrics"] == ml100k_rmse(model, folds[1])  # scored on u2, the fold it was fitted on
    with pytest.raises(InvalidParameterError, match="was not trained on any ml100k-rmse fold"):
        evaluate_model("ml100k-rmse", RatingBias().fit(folds[0].test), data_dir=shared_data,
                       folds=["u1", "u2"])
