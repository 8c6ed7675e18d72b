"""benchmark on a user's own log: skipped models with reasons, error rows, rows written as they complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from embrec import api
from embrec.baselines import Popularity
from embrec.cli.main import app
from embrec.datasets import from_file, synthetic
from embrec.datasets.files import guess_rating_kind
from embrec.errors import InvalidParameterError
from embrec.evaluation import run_protocol


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    """The synthetic shop as a CSV with a stranger's column names (its quantity column is ``qty``)."""
    log = synthetic(n_users=80, n_items=40, n_interactions=900, seed=3)
    frame = (
        log.to_frame()
        .rename(
            columns={
                "user": "client_ref",
                "item": "product_code",
                "rating": "qty",
                "timestamp": "ts",
            }
        )
        .drop(columns=["group"])
    )
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path_factory.mktemp("bench") / "my_log.csv"
    frame.to_csv(path, index=False)
    return path


def source(path: Path, **extra) -> api.FileSource:
    return api.FileSource(
        path, user_col="client_ref", item_col="product_code", time_col="ts", **extra
    )


FAST = {"bpr": {"epochs": 1, "factors": 4}, "rating-bias": {"epochs": 2}}


def test_models_that_cannot_run_are_skipped_with_the_reason(shop_csv):
    res = api.benchmark(
        "leave-last-out",
        models=["rating-bias", "two-tower", "bpr"],
        data=source(shop_csv),
        params={"bpr": FAST["bpr"]},
    )
    assert [r["model"] for r in res["results"]] == [*api.BASELINES, "bpr"]
    skipped = {r["model"]: r["reason"] for r in res["skipped"]}
    assert skipped == {
        "rating-bias": "needs ratings (the data has no rating column)",
        "two-tower": "needs item features (the data has none; give them with --item-features)",
    }
    assert res["errors"] == []
    # the qty column is a quantity (by its name): rating models are skipped for that reason
    res = api.benchmark(
        "leave-last-out", models=["rating-bias"], data=source(shop_csv, rating_col="qty")
    )
    assert res["skipped"] == [
        {
            "model": "rating-bias",
            "reason": "needs ratings (the rating column holds quantities, not ratings)",
        }
    ]
    # declared a rating, it runs
    res = api.benchmark(
        "leave-last-out",
        models=["rating-bias"],
        params={"rating-bias": FAST["rating-bias"]},
        data=source(shop_csv, rating_col="qty", rating_kind="rating"),
    )
    assert "rating-bias" in [r["model"] for r in res["results"]] and res["skipped"] == []


def test_a_ranking_model_on_a_rating_protocol_is_skipped_not_fatal():
    with pytest.raises(
        InvalidParameterError, match="none of the models can be scored by ml100k-rmse"
    ):
        api.benchmark("ml100k-rmse", models=["bpr"], data_dir="/nonexistent")


class Diverging(Popularity):
    def _fit(self, train, valid):
        raise FloatingPointError("explicit-mf: the loss became inf in epoch 1")


class Interrupted(Popularity):
    def _fit(self, train, valid):
        raise KeyboardInterrupt


def test_a_failing_fit_is_an_error_row_and_rows_stream_out(shop_csv, tmp_path):
    log = from_file(shop_csv, user_col="client_ref", item_col="product_code", time_col="ts")
    seen = []
    res = run_protocol(
        "leave-last-out",
        {"popularity": Popularity, "diverging": Diverging, "popularity-again": Popularity},
        data=log,
        on_row=seen.append,
    )
    assert [r["model"] for r in res["results"]] == ["popularity", "popularity-again"]
    assert res["errors"] == [
        {
            "model": "diverging",
            "error": "FloatingPointError: explicit-mf: the loss became inf in epoch 1",
        }
    ]
    assert [(r["model"], r["status"]) for r in seen] == [
        ("popularity", "ok"),
        ("diverging", "error"),
        ("popularity-again", "ok"),
    ]
    assert res["results"][0]["metrics"] == res["results"][1]["metrics"]
    # Ctrl-C is not swallowed; the rows done before it are already on disk
    out = tmp_path / "rows.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(
            "leave-last-out",
            {"popularity": Popularity, "stop": Interrupted},
            data=log,
            on_row=api._RowWriter(out, "leave-last-out"),
        )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["model"], r["status"]) for r in lines] == [("popularity", "ok")]
    assert lines[0]["metrics"] == res["results"][0]["metrics"]


def test_cli_benchmark_appends_each_row_and_lists_skipped(shop_csv, tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text('{"model": "an earlier run"}\n')
    args = [
        "benchmark",
        "--protocol",
        "leave-last-out",
        "--data",
        str(shop_csv),
        "--user-col",
        "client_ref",
        "--item-col",
        "product_code",
        "--time-col",
        "ts",
        "--rating-col",
        "qty",
        "--models",
        "explicit-mf,two-tower",
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert "explicit-mf  skipped  needs ratings (the rating column holds quantities" in r.stdout
    assert "two-tower    skipped  needs item features" in r.stdout
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0] == {"model": "an earlier run"}  # appended, not replaced
    assert [(x["model"], x["status"]) for x in lines[1:]] == [
        *[(name, "ok") for name in api.BASELINES],
        ("explicit-mf", "skipped"),
        ("two-tower", "skipped"),
    ]
    assert all(x["protocol"] == "leave-last-out" for x in lines[1:])
    r = CliRunner().invoke(app, [*args[:-2], "--rating-kind", "stars"])
    assert r.exit_code == 1 and "--rating-kind must be one of" in r.stderr


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("qty", [1, 2, 3], "quantity"),  # by name
        ("Quantity", [1.5, 2.0], "quantity"),
        ("user_rating", [1, 200], "rating"),  # by name, whatever the values
        ("r", [1, 2, 3, 4, 5], "rating"),  # a 1-5 scale
        ("r", [0.5, 3.5, 5.0], "rating"),  # half stars
        ("r", [1, 2, 80995], "quantity"),  # whole numbers past 10: counts
        ("r", [-12, 3], "quantity"),  # returns in a purchase log
        ("r", [0.2, 37.5], "rating"),  # continuous scores
    ],
)
def test_guess_rating_kind(name, values, kind):
    assert guess_rating_kind(name, pd.Series(values))[0] == kind


def test_named_datasets_declare_their_rating_kind():
    assert (
        synthetic(n_users=5, n_items=20, n_categories=2, n_interactions=40).rating_kind
        == "quantity"
    )
    frame = pd.DataFrame({"u": [1, 2], "i": [1, 2], "r": [4.0, 5.0]})
    from embrec import Interactions

    assert (
        Interactions.from_frame(frame, user_col="u", item_col="i", rating_col="r").rating_kind
        == "rating"
    )
    assert Interactions.from_frame(frame, user_col="u", item_col="i").rating_kind is None


def tiny_last_out_log():
    from embrec import Interactions

    rows = [
        ("u1", "i1", "2020-01-01"),
        ("u1", "i2", "2020-01-02"),
        ("u1", "i3", "2020-01-03"),
        ("u2", "i2", "2020-01-01"),
        ("u2", "i1", "2020-01-05"),
        ("u3", "i4", "2020-01-01"),
        ("u4", "i1", "2020-01-01"),
        ("u4", "i1", "2020-01-02"),
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "time"])
    return Interactions.from_frame(
        frame, user_col="user", item_col="item", time_col="time", name="tiny"
    )


def test_rows_carry_intervals_coverage_and_popularity_by_hand():
    # training counts i1 2, i2 2, i4 1 (3 items). u1 gets [i4] (i1, i2 seen), u2 gets [i1, i4] (i2 seen):
    # coverage 2 / 3; percentiles i4 0, i1 = i2 75 (mid-rank 2.5 of 3) -> slots 0, 75, 0 -> 25.
    # hit@10: u1 0, u2 1 -> two users, the bootstrap interval spans 0..1
    res = run_protocol("leave-last-out", {"popularity": Popularity}, data=tiny_last_out_log())
    row = res["results"][0]
    assert row["metrics"] == {"hit@10": 0.5, "ndcg@10": 0.5}
    assert row["intervals"] == {"hit@10": [0.0, 1.0], "ndcg@10": [0.0, 1.0]}
    assert row["coverage"] == pytest.approx(2 / 3)
    assert row["popularity_percentile"] == pytest.approx(25.0)
    assert "_units" not in row
    assert (
        "intervals"
        not in run_protocol(
            "leave-last-out", {"popularity": Popularity}, data=tiny_last_out_log(), n_boot=0
        )["results"][0]
    )


def test_paired_test_marks_a_planted_winner_and_not_a_twin(shop_csv):
    from embrec.baselines import ItemTransition

    # the synthetic shop plants item -> successor sequences: item-transition beats popularity by far;
    # a second popularity scores the very same lists: difference 0, not beyond noise
    log = from_file(shop_csv, user_col="client_ref", item_col="product_code", time_col="ts")
    res = run_protocol(
        "leave-last-out",
        {"twin": Popularity, "popularity": Popularity, "item-transition": ItemTransition},
        data=log,
        baselines=("popularity",),
    )  # twin finishes before the baseline: it is compared at the end
    assert res["best_baseline"] == "popularity"
    rows = {r["model"]: r for r in res["results"]}
    assert "vs_best_baseline" not in rows["popularity"]
    twin, winner = rows["twin"]["vs_best_baseline"], rows["item-transition"]["vs_best_baseline"]
    assert twin["diff"] == 0.0 and twin["interval"] == [0.0, 0.0] and not twin["significant"]
    assert winner["baseline"] == "popularity" and winner["metric"] == "hit@10"
    assert winner["diff"] == pytest.approx(
        rows["item-transition"]["metrics"]["hit@10"] - rows["popularity"]["metrics"]["hit@10"]
    )
    assert winner["significant"] and winner["better"] and winner["interval"][0] > 0


def test_cli_per_user_file_reproduces_the_table(shop_csv, tmp_path):
    per_user = tmp_path / "users.csv"
    args = [
        "benchmark",
        "--protocol",
        "leave-last-out",
        "--data",
        str(shop_csv),
        "--user-col",
        "client_ref",
        "--item-col",
        "product_code",
        "--time-col",
        "ts",
        "--models",
        "popularity",
        "--per-user",
        str(per_user),
        "--bootstrap",
        "200",
        "--json",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    frame = pd.read_csv(per_user)
    assert list(frame.columns) == ["model", "fold", "user", "hit@10", "ndcg@10", "weight"]
    assert sorted(frame["model"].unique()) == sorted(api.BASELINES)
    for row in doc["results"]:
        mine = frame[frame["model"] == row["model"]]
        assert mine["hit@10"].mean() == pytest.approx(row["metrics"]["hit@10"])
        lo, hi = row["intervals"]["hit@10"]
        assert lo <= row["metrics"]["hit@10"] <= hi
        assert 0 < row["coverage"] <= 1 and 0 <= row["popularity_percentile"] <= 100
    best = doc["best_baseline"]
    assert best in api.BASELINES
    assert all("vs_best_baseline" in row for row in doc["results"] if row["model"] != best)
    # the table shows the intervals, the paired test column and its legend
    r = CliRunner().invoke(app, args[:-1])
    assert r.exit_code == 0, r.stderr
    assert "±" in r.stdout and "(best baseline)" in r.stdout and "paired bootstrap" in r.stdout


def test_evaluate_carries_intervals_and_k(tmp_path):
    log = tiny_last_out_log()
    api.train("popularity", data=log, protocol="leave-last-out", out=tmp_path / "m")
    res = api.evaluate(tmp_path / "m", protocol="leave-last-out", data=log)
    row = res["results"][0]
    assert not res["refitted"] and row["metrics"] == {"hit@10": 0.5, "ndcg@10": 0.5}
    assert row["intervals"] == {"hit@10": [0.0, 1.0], "ndcg@10": [0.0, 1.0]}
    assert row["coverage"] == pytest.approx(2 / 3)
    res = api.evaluate(tmp_path / "m", protocol="leave-last-out", data=log, options=["k=1"])
    assert res["results"][0]["metrics"] == {"hit@1": 0.5, "ndcg@1": 0.5}


def test_cli_option_k_for_a_top_k_protocol(shop_csv):
    args = [
        "benchmark",
        "--protocol",
        "leave-last-out",
        "--data",
        str(shop_csv),
        "--user-col",
        "client_ref",
        "--item-col",
        "product_code",
        "--time-col",
        "ts",
        "--models",
        "popularity",
        "-o",
        "k=3",
        "--bootstrap",
        "50",
        "--json",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)["results"]
    assert all(set(row["metrics"]) == {"hit@3", "ndcg@3"} for row in rows)
    assert all(set(row["intervals"]) == {"hit@3", "ndcg@3"} for row in rows)


def test_lower_is_better_metrics_pick_and_judge_the_lowest():
    from embrec.evaluation.bootstrap import unit_scores
    from embrec.evaluation.runner import _best, compare, get_protocol

    # RMSE per user from squared errors: model "good" errs 0.5 on every rating, "bad" 1.0 (200 users)
    keys = np.array([f"u{i}" for i in range(200)])
    ones = np.ones(200)

    def scores(err):
        return [unit_scores(keys, {"rmse": np.full(200, err**2)}, {"rmse": ones}, root=("rmse",))]

    protocol = get_protocol("ml100k-rmse")
    res = compare(protocol, {"good": scores(0.5), "bad": scores(1.0)}, "good", "bad", n_boot=100)
    assert res["diff"] == pytest.approx(-0.5) and res["significant"] and res["better"]
    rows = [{"model": "a", "metrics": {"rmse": 1.0}}, {"model": "b", "metrics": {"rmse": 0.9}}]
    assert _best(protocol, rows, ("a", "b")) == "b"
