"""A directory of Parquet files read in one streaming pass (embrec.datasets.parquet_stream) and the synthetic
shop written chunk by chunk (synthetic(..., out=DIR)): equal to the one-file and in-memory paths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from embrec.cli import app
from embrec.datasets import from_file, synthetic
from embrec.datasets.parquet_stream import read_parquet_dir
from embrec.errors import DataError, InvalidParameterError, OutputPathError

SHOP = dict(
    user_col="user",
    item_col="item",
    rating_col="quantity",
    time_col="timestamp",
    group_col="basket",
)


def same_log(a, b) -> None:
    assert a.users == b.users and a.items == b.items
    for col in ("user", "item", "rating", "timestamp", "group"):
        x, y = getattr(a, col), getattr(b, col)
        assert (x is None) == (y is None), col
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), col
    assert a.rating_kind == b.rating_kind


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The synthetic shop as one CSV and as a 3-partition hive directory holding the same rows in order."""
    d = tmp_path_factory.mktemp("pq")
    frame = synthetic(n_users=150, n_items=60, n_interactions=2500, seed=2).to_frame()
    frame = frame.rename(columns={"rating": "quantity", "group": "basket"})
    frame["timestamp"] = frame["timestamp"].astype("datetime64[s]")
    frame.to_csv(d / "shop.csv", index=False)
    for k, rows in enumerate(
        np.array_split(np.arange(len(frame)), 3)
    ):  # part=0 < part=1 < part=2: log order
        (d / "dir" / f"part={k}").mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pandas(frame.iloc[rows], preserve_index=False),
            d / "dir" / f"part={k}" / "x.parquet",
        )
    return d


def test_partitioned_dir_equals_the_same_rows_as_one_csv(shop):
    one = from_file(shop / "shop.csv", **SHOP)
    streamed = from_file(shop / "dir", **SHOP)
    same_log(one, streamed)
    assert streamed.rating_kind == "quantity" and len(streamed) == 2500
    # chunks of 97 rows: vocabularies grown over 26 chunks end in the same sorted order
    small, _ = read_parquet_dir(shop / "dir", SHOP, chunk_rows=97, progress=False)
    small.rating_kind = "quantity"
    same_log(one, small)


def test_vocab_order_is_sorted_ids_whatever_the_file_order(tmp_path):
    """Integer ids sorted numerically (4 < 30 < 100), text by code point; a group spans two files."""
    pq.write_table(pa.table({"u": [30, 4], "i": ["b", "a"], "g": [7, 8]}), tmp_path / "a.parquet")
    pq.write_table(
        pa.table({"u": [100, 30], "i": [" c ", "b"], "g": [8, 9]}), tmp_path / "b.parquet"
    )
    log = from_file(tmp_path, user_col="u", item_col="i", group_col="g")
    assert log.users.raw_ids.tolist() == [4, 30, 100] and log.users.kind == "int"
    assert log.items.raw_ids.tolist() == ["a", "b", "c"]  # " c " stripped, as a file's text ids are
    assert log.user.tolist() == [2, 1, 3, 2] and log.item.tolist() == [2, 1, 3, 2]
    assert log.group.tolist() == [
        0,
        1,
        1,
        2,
    ]  # 8 at the end of a.parquet and the start of b.parquet: one group


def test_a_partition_column_can_be_named(tmp_path):
    for shop_id in (1, 2):
        (tmp_path / f"shop={shop_id}").mkdir()
        pq.write_table(pa.table({"i": ["x", "y"]}), tmp_path / f"shop={shop_id}" / "p.parquet")
    log = from_file(tmp_path, user_col="shop", item_col="i")
    assert log.users.raw_ids.tolist() == [1, 2] and log.user.tolist() == [1, 1, 2, 2]


def test_synthetic_out_writes_the_in_memory_events(tmp_path):
    params = dict(n_users=120, n_items=50, n_interactions=4000, seed=5, mean_basket_size=5.0)
    out = synthetic(**params, out=tmp_path / "shop", chunk_rows=600)
    assert out == tmp_path / "shop" and len(list(out.glob("part-*.parquet"))) >= 6
    log = from_file(
        out, **SHOP, item_features=out / "_item_features.parquet", item_label_col="description"
    )
    written, in_memory = log.to_frame(), synthetic(**params)
    memory = in_memory.to_frame()
    assert np.array_equal(log.item_labels, in_memory.item_labels)  # the feature file beside the log
    for col in ("user", "item", "rating", "timestamp", "group"):
        assert np.array_equal(written[col].to_numpy(), memory[col].to_numpy()), col
    with pytest.raises(OutputPathError, match="not empty"):
        synthetic(**params, out=out)


def test_cli_trains_and_evaluates_on_a_parquet_directory(shop, tmp_path):
    """``--data DIR`` takes the same column options as a file and gives the file's metrics."""
    cols = ["--user-col", "user", "--item-col", "item", "--time-col", "timestamp"]
    model = str(tmp_path / "m")
    r = CliRunner().invoke(
        app, ["train", "popularity", "--data", str(shop / "dir"), *cols, "--out", model]
    )
    assert r.exit_code == 0, r.output
    metrics = []
    for data in (shop / "dir", shop / "shop.csv"):
        args = [
            "evaluate",
            model,
            "--protocol",
            "leave-last-out",
            "--data",
            str(data),
            *cols,
            "--json",
        ]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        metrics.append(json.loads(r.stdout)["results"][0]["metrics"])
    assert metrics[0] == metrics[1] and metrics[0]


def write(path, **cols) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


@pytest.mark.parametrize(
    "files, kwargs, error, words",
    [
        ({}, {}, DataError, "holds no .parquet"),
        (
            {"a.parquet": {"u": pa.array([], pa.int64()), "i": pa.array([], pa.int64())}},
            {},
            DataError,
            "hold no rows",
        ),
        (
            {"a.parquet": {"u": [1], "i": [2]}, "b.parquet": {"u": [1], "item": [2]}},
            {},
            DataError,
            "not of b.parquet",
        ),
        ({"a.parquet": {"uu": [1], "i": [2]}}, {}, DataError, "did you mean 'uu'"),
        (
            {"a.parquet": {"u": [1], "i": [2]}, "b.parquet": {"u": ["x"], "i": [2]}},
            {},
            DataError,
            "mixed types",
        ),
        (
            {"a.parquet": {"u": [1], "i": pa.array([None], pa.int64())}},
            {},
            DataError,
            "missing ids",
        ),
        ({"a.parquet": {"u": [-1], "i": [2]}}, {}, DataError, "non-negative"),
        ({"a.parquet": {"u": [1.5], "i": [2]}}, {}, DataError, "integers or text"),
        (
            {"a.parquet": {"u": [1], "i": [2], "r": [float("nan")]}},
            {"rating_col": "r"},
            DataError,
            "non-numeric",
        ),
        (
            {"a.parquet": {"u": [1], "i": [2]}},
            {"duplicates": "drop"},
            InvalidParameterError,
            "duplicates='drop'",
        ),
    ],
)
def test_bad_directories_are_refused_with_one_sentence(tmp_path, files, kwargs, error, words):
    for name, cols in files.items():
        write(tmp_path / name, **cols)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")) as info:
        from_file(tmp_path, user_col="u", item_col="i", **kwargs)
    assert str(info.value).count(". ") == 0  # one sentence


def test_stray_files_and_hidden_names_are_skipped(tmp_path):
    write(tmp_path / "a.parquet", u=[1], i=[2])
    (tmp_path / "README.txt").write_text("not data")
    (tmp_path / "_SUCCESS").write_text("")
    write(tmp_path / ".tmp" / "z.parquet", u=["x"], i=["y"])  # a half-written file of another job
    log = from_file(tmp_path, user_col="u", item_col="i")
    assert len(log) == 1 and log.users.raw_ids.tolist() == [1]
    assert isinstance(pd.Series(log.item).iloc[0], np.integer)
