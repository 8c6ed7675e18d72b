"""embrec.api: the dicts the CLI and the HTTP service print, on logs whose answers are known in advance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embrec import api
from embrec.baselines import Popularity
from embrec.errors import DataError, InvalidParameterError, ModelFileError, UnknownIdError
from embrec.models.io import model_files
from embrec.models.registry import create, model_names
from tests.conftest import make_log

# item "b" is bought 4 times, "a" 3 times, "c" twice, "d" once: popularity ranks b, a, c, d
SHOP = [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "b"), ("u3", "a"),
        ("u4", "b"), ("u4", "a"), ("u4", "c"), ("u5", "d")]


def blocks() -> list[tuple[int, int]]:
    """Users 0-9 buy items 0-9, users 10-19 buy items 10-19: two planted item clusters."""
    return [(u, i) for u in range(20) for i in (range(0, 10) if u < 10 else range(10, 20))]


@pytest.fixture(scope="module")
def popularity() -> Popularity:
    return Popularity().fit(make_log(SHOP))


@pytest.fixture(scope="module")
def als():
    return create("als", factors=4, iterations=10, seed=0).fit(make_log(blocks()))


# describe / recommend / similar / embed ----------------------------------------------------------
def test_describe_reports_catalogue_and_users(popularity):
    info = api.describe(popularity)
    assert info["model"] == "popularity"
    assert (info["n_items"], info["n_users"]) == (4, 5)
    assert info["can_similar"] is False and info["can_embed"] is False
    json.dumps(info)  # JSON-ready


def test_recommend_popularity_ranks_by_purchases(popularity):
    res = api.recommend(popularity, user="u5", k=4, exclude_seen=False)
    assert [it["item"] for it in res["items"]] == ["b", "a", "c", "d"]
    assert [it["score"] for it in res["items"]] == [4.0, 3.0, 2.0, 1.0]
    assert res["user"] == "u5" and res["history"] is None and res["k"] == 4
    more = api.recommend(popularity, user="u5", k=100, exclude_seen=False)  # more than the 4 items: all 4
    assert [it["item"] for it in more["items"]] == ["b", "a", "c", "d"]


def test_recommend_exclude_seen_and_history(popularity):
    res = api.recommend(popularity, user="u4", k=4, exclude_seen=True)
    assert [it["item"] for it in res["items"]] == ["d"]  # u4 bought a, b, c
    assert api.recommend(popularity, user="u4", k=4) == res  # excluding seen items is the default
    res = api.recommend(popularity, history=["b", "d"], k=2)
    assert [it["item"] for it in res["items"]] == ["a", "c"] and res["exclude_seen"] is True
    res = api.recommend(popularity, history=["b", "d"], k=2, exclude_seen=True)
    assert [it["item"] for it in res["items"]] == ["a", "c"]
    assert res["history"] == ["b", "d"] and res["user"] is None


def test_recommend_returns_the_stored_raw_id():
    model = Popularity().fit(make_log([(7, "x"), (8, "y"), (8, "x")]))
    assert api.recommend(model, user="8", k=1)["user"] == 8  # "8" from a command line is user 8


@pytest.mark.parametrize("kwargs, error, words", [
    ({"user": "u1", "history": ["a"]}, InvalidParameterError, "exactly one of user or history"),
    ({}, InvalidParameterError, "exactly one of user or history"),
    ({"user": "nobody"}, UnknownIdError, "'nobody' is not known"),
    ({"history": ["a", "zz"]}, UnknownIdError, "'zz' is not known"),
    ({"history": []}, InvalidParameterError, "at least one item"),
    ({"history": "a,b"}, InvalidParameterError, "list of raw item ids"),
    ({"user": "u1", "k": 0}, InvalidParameterError, "k must be an integer >= 1; received 0"),
    ({"user": "u1", "k": True}, InvalidParameterError, "k must be an integer"),
])
def test_recommend_bad_input_is_one_clear_sentence(popularity, kwargs, error, words):
    with pytest.raises(error) as info:
        api.recommend(popularity, **kwargs)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_similar_finds_the_planted_cluster(als):
    res = api.similar(als, item=3, k=9)
    assert res["measure"] == "cosine" and res["item"] == 3
    found = [it["item"] for it in res["items"]]
    assert sorted(found) == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # the rest of item 3's block, itself excluded
    res = api.similar(als, item="15", k=9, measure="dot")
    assert all(10 <= it["item"] < 20 for it in res["items"])


def test_similar_bad_input(als, popularity):
    with pytest.raises(InvalidParameterError, match="measure must be one of 'cosine', 'dot'"):
        api.similar(als, item=3, measure="euclid")
    with pytest.raises(InvalidParameterError, match="has none"):
        api.similar(popularity, item="a")
    with pytest.raises(UnknownIdError, match="item id 99"):
        api.similar(als, item=99)
    with pytest.raises(InvalidParameterError, match="one raw item id"):
        api.similar(als, item=[1, 2])


def test_embed_gives_the_model_dimension(als, popularity):
    res = api.embed(als, history=[1, 2, 3])
    assert res["dim"] == 4 and len(res["vector"]) == 4
    assert all(isinstance(x, float) for x in res["vector"])
    assert np.allclose(res["vector"], als.user_embedding(history=[1, 2, 3]))
    with pytest.raises(InvalidParameterError, match="has none"):
        api.embed(popularity, history=["a"])


# hyper-parameters --------------------------------------------------------------------------------
def test_model_params_reads_strings_by_the_defaults():
    params = api.model_params("bpr", ["factors=8", "lr=1", "verify_negatives=false", "patience=none"])
    assert params == {"factors": 8, "lr": 1.0, "verify_negatives": False, "patience": None}
    assert isinstance(params["lr"], float)
    assert api.model_params("rating-dnn", ["hidden=32,16"])["hidden"] == (32, 16)
    assert api.model_params("als", {"factors": 4}) == {"factors": 4}


def test_model_params_unknown_key_names_the_valid_ones():
    with pytest.raises(InvalidParameterError) as info:
        api.model_params("als", ["factor=4"])
    msg = str(info.value)
    assert "'factor'" in msg and "factors" in msg and "iterations" in msg
    with pytest.raises(InvalidParameterError, match="no hyper-parameter 'x'.*none"):
        api.model_params("popularity", ["x=1"])
    with pytest.raises(InvalidParameterError, match="key=value"):
        api.model_params("als", ["factors"])
    with pytest.raises(InvalidParameterError, match="true or false"):
        api.model_params("bpr", ["verify_negatives=maybe"])
    with pytest.raises(InvalidParameterError, match="model must be one of"):
        api.model_params("nosuch", [])


def test_protocol_options_parse_values():
    assert api.protocol_options(["part=test", "fraction=0.3", "folds=u1,u2"]) == \
        {"part": "test", "fraction": 0.3, "folds": ["u1", "u2"]}
    assert api.protocol_options(None) == {}


# train / evaluate / benchmark --------------------------------------------------------------------
def shop_csv(tmp_path) -> api.FileSource:
    frame = pd.DataFrame(SHOP, columns=["customer", "sku"])
    frame["ts"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    return api.FileSource(path, user_col="customer", item_col="sku", time_col="ts")


def test_train_saves_a_model_that_loads(tmp_path):
    res = api.train("popularity", data=shop_csv(tmp_path), out=tmp_path / "m")
    assert res["out"] == str(tmp_path / "m") and res["dataset"] == "shop.csv"
    assert (res["n_users"], res["n_items"]) == (5, 4)
    model = api.open_model(tmp_path / "m")
    assert api.recommend(model, user="u1", k=1, exclude_seen=False)["items"][0]["item"] == "b"


def test_train_needs_data_and_a_valid_dataset(tmp_path):
    with pytest.raises(InvalidParameterError, match="exactly one of dataset"):
        api.train("popularity", out=tmp_path / "m")
    with pytest.raises(InvalidParameterError, match="dataset must be one of 'ml-100k'"):
        api.train("popularity", dataset="ml-1m", out=tmp_path / "m")
    with pytest.raises(DataError, match="not a column"):
        api.train("popularity", data=api.FileSource(shop_csv(tmp_path).path, user_col="user", item_col="sku"),
                  out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_train_on_a_protocol_then_evaluate_scores_the_stored_weights(tmp_path):
    log = make_log(blocks(), time=np.arange(200))
    res = api.train("item-transition", data=log, protocol="leave-last-out", out=tmp_path / "m")
    assert set(res["metrics"]) == {"hit@10", "ndcg@10"}
    stored = json.loads((model_files(tmp_path / "m") / "metrics.json").read_text())
    assert stored == {"leave-last-out": res["metrics"]}

    ev = api.evaluate(tmp_path / "m", protocol="leave-last-out", data=log)
    assert ev["refitted"] is False and ev["results"][0]["fit_seconds"] is None
    assert ev["results"][0]["metrics"] == pytest.approx(res["metrics"])

    other = api.evaluate(tmp_path / "m", protocol="random-holdout", data=log)  # not fitted on that split
    assert other["refitted"] is True and other["results"][0]["fit_seconds"] >= 0
    assert set(json.loads((model_files(tmp_path / "m") / "metrics.json").read_text())) == {"leave-last-out"}


def test_evaluate_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        api.evaluate(tmp_path / "nothing", protocol="leave-last-out", dataset="synthetic")


def test_benchmark_shape_and_baselines_first():
    log = make_log(blocks(), time=np.arange(200))
    res = api.benchmark("leave-last-out", models=["als"], data=log, params={"als": {"factors": "4"}})
    assert set(res) >= {"protocol", "dataset", "results"} and res["protocol"] == "leave-last-out"
    names = [r["model"] for r in res["results"]]
    assert names[-1] == "als" and names[0] == "popularity"
    for r in res["results"]:
        assert set(r) >= {"model", "metrics", "fit_seconds"} and set(r["metrics"]) == {"hit@10", "ndcg@10"}
    with pytest.raises(InvalidParameterError, match="not among the benchmarked models"):
        api.benchmark("leave-last-out", models=["als"], data=log, params={"bpr": {"factors": 4}})


def test_rating_protocols_only_take_rating_models():
    assert api.fitting("ml100k-rmse", ["popularity", "explicit-mf", "bpr", "rating-bias"]) == \
        ["explicit-mf", "rating-bias"]
    assert api.fitting("leave-last-out", ["popularity", "bpr"]) == ["popularity", "bpr"]
    with pytest.raises(InvalidParameterError, match="protocol must be one of"):
        api.fitting("nope", ["bpr"])


def test_list_datasets_names_and_licences(tmp_path):
    rows = {r["name"]: r for r in api.list_datasets(tmp_path)}
    assert {"ml-100k", "online-retail", "synthetic"} <= set(rows)
    assert "CC BY 4.0" in rows["online-retail"]["license"]
    assert rows["synthetic"]["available"] is True


# quickstart --------------------------------------------------------------------------------------
def test_zoo_lists_every_registered_model_with_valid_parameters():
    from embrec.quickstart import ZOO

    missing = set(model_names()) - set(ZOO)
    assert not missing, f"give {sorted(missing)} small quickstart parameters in embrec.quickstart.ZOO"
    for name in model_names():
        assert api.model_params(name, ZOO[name]) == ZOO[name]


def test_best_model_by_the_primary_metric():
    from embrec.quickstart import best_model

    res = {"protocol": "ml100k-rmse", "results": [{"model": "a", "metrics": {"rmse": 0.95}},
                                                  {"model": "b", "metrics": {"rmse": 0.91}}]}
    assert best_model(res) == {"model": "b", "metric": "rmse", "value": 0.91}
    res = {"protocol": "leave-last-out", "results": [{"model": "a", "metrics": {"ndcg@10": 0.2}},
                                                     {"model": "b", "metrics": {"ndcg@10": 0.1}}]}
    assert best_model(res)["model"] == "a"


def test_quickstart_small_synthetic_end_to_end(tmp_path):
    from embrec.quickstart import quickstart

    res = quickstart(out=tmp_path, models=["als"], progress=lambda _: None,
                     synthetic_params={"n_users": 150, "n_items": 60, "n_interactions": 2500})
    assert res["protocol"] == "leave-last-out" and res["dataset"] == "synthetic"
    names = [r["model"] for r in res["results"]]
    assert names == ["popularity", "repeat-frequency", "item-transition", "ease", "item-knn", "als"]
    best = max(res["results"], key=lambda r: r["metrics"]["ndcg@10"])
    assert res["best"]["model"] == best["model"]
    assert res["servable"]["model"] == "als" and res["model_dir"] == str(tmp_path / "model")  # the embedding model
    als = next(r for r in res["results"] if r["model"] == "als")
    assert api.open_model(res["model_dir"]).metrics_ == {"leave-last-out": als["metrics"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "report"]
    recs = res["recommendations"]
    assert len(recs["items"]) == 10 and recs["items"][0]["label"]  # synthetic items carry descriptions
    seen = {it["item"] for it in recs["recent_history"]}
    assert len(recs["recent_history"]) == 5 and not seen & {it["item"] for it in recs["items"]}
    assert res["similar"]["model"] == "als" and len(res["similar"]["items"]) == 10
    assert res["report"] == str(tmp_path / "report" / "report.html")
    assert (tmp_path / "report" / "report.html").is_file()
    json.dumps(res)
