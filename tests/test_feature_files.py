"""Item / user features and labels from files: type inference, overrides, cold items, models using them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from embrec import api
from embrec.cli import app
from embrec.datasets import from_file
from embrec.datasets.feature_files import infer_types
from embrec.errors import DataError, InvalidParameterError
from embrec.models.registry import create
from embrec.models.store import resolve

runner = CliRunner()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, Path]:
    """Two worlds: users u0-u29 buy only 'toy' items t00-t19, users u30-u59 only 'tool' items k00-k19.
    The item file also lists 5 toys and 5 tools nobody bought (cold), with tags, a price and a title."""
    d = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        pool = [f"t{i:02d}" for i in range(20)] if u < 30 else [f"k{i:02d}" for i in range(20)]
        for j, it in enumerate(rng.choice(pool, size=8, replace=False)):
            rows.append((f"u{u}", it, f"2024-01-{1 + j:02d}"))
    pd.DataFrame(rows, columns=["client_ref", "product_code", "ts"]).to_csv(
        d / "log.csv", index=False
    )
    items = []
    for kind, prefix, n in (("toy", "t", 25), ("tool", "k", 25)):
        for i in range(n):
            tags = "kids|fun" if kind == "toy" else "diy|steel"
            items.append(
                (f"{prefix}{i:02d}", kind, tags, 5.0 + i, f"{kind} number {i} deluxe edition")
            )
    # another separator: sniffed
    pd.DataFrame(items, columns=["sku", "category", "tags", "price", "title"]).to_csv(
        d / "items.csv", sep=";", index=False
    )
    pd.DataFrame(
        {"client_ref": [f"u{u}" for u in range(60)], "age": np.arange(60) % 50 + 18}
    ).to_csv(d / "users.csv", index=False)
    return {"dir": d, "log": d / "log.csv", "items": d / "items.csv", "users": d / "users.csv"}


def load(planted, **extra):
    return from_file(
        planted["log"],
        user_col="client_ref",
        item_col="product_code",
        time_col="ts",
        item_features=planted["items"],
        item_features_key="sku",
        **extra,
    )


def test_types_are_inferred_by_the_documented_rules():
    frame = pd.DataFrame(
        {
            "id": range(10),
            "brand": ["a", "b"] * 5,
            "tags": ["x|y", "z"] * 5,
            "price": np.linspace(1, 2, 10),
            "year": [str(1990 + i) for i in range(10)],
            "title": [f"movie {i}" for i in range(10)],
            "flag": [True, False] * 5,
            "empty": [None] * 10,
        }
    )
    assert infer_types(frame, key="id") == {
        "brand": "categorical",
        "tags": "multi",
        "price": "numeric",
        "year": "numeric",
        "title": "text",
        "flag": "numeric",
    }
    assert (
        infer_types(frame, key="id", overrides={"year": "categorical", "title": "ignore"})["year"]
        == "categorical"
    )
    assert "title" not in infer_types(frame, key="id", overrides={"title": "ignore"})
    assert infer_types(frame, key="id", multi_sep=";")["tags"] == "categorical"


def test_features_labels_and_cold_items_from_a_file(planted):
    log = load(planted, item_label_col="title")
    ft = log.item_features
    assert (ft.categorical.keys(), ft.multi_hot.keys(), ft.numeric.keys(), ft.text.keys()) == (
        {"category"},
        {"tags"},
        {"price"},
        {"title"},
    )
    # 10 cold items joined
    assert log.n_items == 50 and log.item_counts()[1:].astype(bool).sum() == 40
    row = int(log.items.encode(["k22"])[0])  # a cold tool
    assert ft.vocabularies["category"][ft.categorical["category"][row] - 1] == "tool"
    assert [ft.vocabularies["tags"][c - 1] for c in ft.multi_hot["tags"][row]] == ["diy", "steel"]
    assert ft.numeric["price"][row] == pytest.approx(27.0)
    assert log.item_labels[row] == "tool number 22 deluxe edition" and log.item_labels[0] == ""


def test_overrides_multi_sep_and_user_features(planted):
    log = load(
        planted,
        feature_types=["price=categorical", "title=ignore"],
        multi_sep="#",
        user_features=planted["users"],
    )
    ft = log.item_features
    assert set(ft.categorical) == {"category", "price", "tags"} and not ft.text and not ft.multi_hot
    uf = log.user_features
    assert set(uf.numeric) == {"age"} and uf.numeric["age"][int(log.users.encode(["u7"])[0])] == 25
    with pytest.raises(InvalidParameterError, match="'colour', which is not a feature column"):
        load(planted, feature_types={"colour": "categorical"})
    with pytest.raises(InvalidParameterError, match="must be one of categorical, multi"):
        load(planted, feature_types={"price": "float"})
    with pytest.raises(DataError, match="no id column 'product_code'"):
        from_file(
            planted["log"],
            user_col="client_ref",
            item_col="product_code",
            item_features=planted["items"],
        )
    with pytest.raises(DataError, match="must hold numbers"):
        load(planted, feature_types={"title": "numeric"})


def test_two_tower_recommends_cold_items_by_their_features(planted):
    log = load(planted)
    model = create(
        "two-tower",
        dim=16,
        item_hidden=(32,),
        user_hidden=(32,),
        epochs=10,
        lr=0.01,
        patience=None,
        min_epoch_examples=0,
        seed=0,
    ).fit(log)
    assert model.encoder_.columns_used_ == ["category", "tags", "price", "title"]
    toy_history = ["t01", "t02", "t03", "t04"]
    scores = dict(zip(model.items_.raw_ids, model.scores(histories=[toy_history])[0]))
    cold_toys = [scores[f"t{i}"] for i in range(20, 25)]
    tools = [scores[f"k{i:02d}"] for i in range(25)]
    assert min(cold_toys) > max(tools)  # never bought, yet ranked above every tool for a toy buyer
    recs = api.recommend(model, history=toy_history, k=20)
    assert {it["item"] for it in recs["items"]} & {f"t{i}" for i in range(20, 25)}


def test_softmax_dnn_reads_the_file_features(planted):
    log = load(planted)
    with_f = create("softmax-dnn", dim=8, hidden=(16,), epochs=2, min_epoch_examples=0, seed=0).fit(
        log
    )
    without = create(
        "softmax-dnn", dim=8, hidden=(16,), epochs=2, min_epoch_examples=0, seed=0, features=()
    ).fit(log)
    assert with_f.encoder_.columns_used_ == ["category", "tags", "price", "title"]
    assert with_f.item_features_ is not None and without.item_features_ is None
    h = ["t01", "t02"]
    assert not np.allclose(with_f.user_embedding(history=h), without.user_embedding(history=h))


def test_labels_travel_with_the_model(planted, tmp_path):
    log = load(planted, item_label_col="title")
    path = create("popularity").fit(log).save(tmp_path / "pop")
    model = api.open_model(path)
    assert model.item_label("t03") == "toy number 3 deluxe edition"
    assert (
        json.loads((resolve(path) / "extra.json").read_text())["_base.item_labels"][0]
        == model.item_labels_[1]
    )
    res = api.recommend(model, history=["t01"], k=3)
    assert all(it["label"] == model.item_label(it["item"]) and it["label"] for it in res["items"])


def test_labels_from_the_log_itself(tmp_path):
    frame = pd.DataFrame(
        {
            "u": ["a", "a", "b", "b"],
            "i": ["x", "y", "x", "x"],
            "desc": ["Red mug", "Blue cup", "Red mug", "RED MUG (old)"],
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    log = from_file(tmp_path / "log.csv", user_col="u", item_col="i", item_label_col="desc")
    # each item's most frequent value
    assert dict(zip(log.items.raw_ids, log.item_labels[1:])) == {"x": "Red mug", "y": "Blue cup"}
    with pytest.raises(DataError, match="item_label_col='name' is not a column"):
        from_file(tmp_path / "log.csv", user_col="u", item_col="i", item_label_col="name")


def test_cli_train_with_item_features_and_labels(planted, tmp_path):
    r = runner.invoke(
        app,
        [
            "train",
            "two-tower",
            "--data",
            str(planted["log"]),
            "--user-col",
            "client_ref",
            "--item-col",
            "product_code",
            "--time-col",
            "ts",
            "--item-features",
            str(planted["items"]),
            "--item-features-key",
            "sku",
            "--item-label-col",
            "title",
            "--feature-type",
            "price=ignore",
            "-p",
            "epochs=2",
            "-p",
            "dim=8",
            "--out",
            str(tmp_path / "tt"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["n_items"] == 50
    model = api.open_model(tmp_path / "tt")
    assert model.encoder_.columns_used_ == ["category", "tags", "title"]
    table = runner.invoke(app, ["recommend", str(tmp_path / "tt"), "--item", "t01", "-k", "3"])
    assert table.exit_code == 0 and "label" in table.stdout and "deluxe edition" in table.stdout
    sim = json.loads(
        runner.invoke(app, ["similar", str(tmp_path / "tt"), "--item", "t01", "--json"]).stdout
    )
    assert sim["label"] == "toy number 1 deluxe edition" and all(it["label"] for it in sim["items"])
    bad = runner.invoke(
        app,
        [
            "train",
            "popularity",
            "--dataset",
            "synthetic",
            "--item-features",
            str(planted["items"]),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 1 and "--item-features" in bad.stderr
    bad = runner.invoke(
        app,
        [
            "train",
            "popularity",
            "--data",
            str(planted["log"]),
            "--user-col",
            "client_ref",
            "--item-col",
            "product_code",
            "--feature-type",
            "a=multi",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 1 and "--feature-type" in bad.stderr


def test_report_shows_the_labels(planted, tmp_path):
    from embrec.report import write_report
    from tests.planted_model import PlantedVectors, registered

    log = load(planted, item_label_col="title")
    with registered():
        model = PlantedVectors(dim=4).fit(log)
        page = write_report(model, tmp_path / "report").read_text(encoding="utf-8")
    top = model.items_.raw_ids[int(np.argmax(model.item_counts_[1:]))]
    assert f"{top} · {model.item_label(top)}" in page and "deluxe edition" in page
