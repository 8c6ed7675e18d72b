"""Known counts of the real datasets; skipped when $EMBREC_DATA (or ../shared/datasets) is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embrec.datasets import ML100K_FOLDS, available, load, ml100k_fold
from embrec.datasets.retail import read_online_retail


@pytest.fixture(autouse=True)
def no_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBREC_DOWNLOAD_BASE", "http://127.0.0.1:9/")


@pytest.fixture(scope="module")
def ml(shared_data):
    if not (shared_data / "ml-100k" / "u.data").is_file():
        pytest.skip("ml-100k absent from the shared datasets")
    return load("ml-100k", data_dir=shared_data, download=False)


@pytest.fixture(scope="module")
def retail_path(shared_data):
    path = shared_data / "online-retail" / "online_retail.parquet"
    if not path.is_file():
        pytest.skip("online-retail absent from the shared datasets")
    return path


def test_ml100k_counts(ml):
    assert (len(ml), ml.n_users, ml.n_items) == (100_000, 943, 1_682)
    assert set(np.unique(ml.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ml.users.raw_ids[0] == 1 and ml.items.raw_ids[-1] == 1682  # raw ids are ints
    assert ml.timestamp.min() >= np.datetime64("1997-09-01") and ml.timestamp.max() < np.datetime64("1998-05-01")


def test_ml100k_features_of_toy_story(ml):
    ft, row = ml.item_features, ml.items.encode(1)[0]
    assert ft.text["title"][row] == "Toy Story (1995)"
    assert [ft.vocabularies["genres"][c - 1] for c in ft.multi_hot["genres"][row]] == ["Animation", "Children's", "Comedy"]
    assert ft.numeric["year"][row] == 1995
    assert len(ft.vocabularies["genres"]) == 19
    uf, urow = ml.user_features, ml.users.encode(1)[0]
    assert uf.numeric["age"][urow] == 24
    assert uf.vocabularies["occupation"][uf.categorical["occupation"][urow] - 1] == "technician"
    assert len(uf.vocabularies["occupation"]) == 21


@pytest.mark.parametrize("fold", ML100K_FOLDS)
def test_ml100k_folds(ml, shared_data, fold):
    base, test = ml100k_fold(fold, data_dir=shared_data, download=False)
    expected = (80_000, 20_000) if fold.startswith("u") and fold[1].isdigit() else (90_570, 9_430)
    assert (len(base), len(test)) == expected
    assert base.users == ml.users and test.items == ml.items  # ids align with the full data
    np.testing.assert_array_equal(test.item_features.text["title"], ml.item_features.text["title"])
    np.testing.assert_array_equal(base.user_features.numeric["age"], ml.user_features.numeric["age"])
    pairs = lambda log: set(zip(log.user.tolist(), log.item.tolist()))  # noqa: E731
    assert not pairs(base) & pairs(test) and len(pairs(base) | pairs(test)) == 100_000
    if fold == "ua":
        assert np.all(np.bincount(test.user, minlength=944)[1:] == 10)


def test_online_retail_counts_match_an_independent_pandas_reading(shared_data, retail_path):
    raw = read_online_retail(retail_path)
    assert len(raw) == 541_909
    log = load("online-retail", data_dir=shared_data, download=False)

    df = pd.read_parquet(retail_path)  # the chapter's steps, written out again
    df.columns = df.columns.str.lower()
    df = df[~df.invoiceno.astype(str).str.startswith("C")].reset_index(drop=True)
    assert len(log) == len(df) == 532_621
    assert int((log.user == 0).sum()) == int(df.customerid.isna().sum())
    assert log.n_users == df.customerid.nunique() and log.n_items == df.stockcode.astype(str).nunique()
    n_transactions = int((df.invoiceno != df.invoiceno.shift()).sum())
    assert log.group_offsets().size - 1 == n_transactions
    np.testing.assert_array_equal(log.items.decode(log.item[:1000]), df.stockcode.astype(str).to_numpy()[:1000])
    known = df.customerid.notna().to_numpy()
    np.testing.assert_array_equal(log.users.decode(log.user[known][:1000]),
                                  df.customerid[known].astype(int).to_numpy()[:1000])
    np.testing.assert_array_equal(log.rating, df.quantity.to_numpy(dtype=np.float32))
    row = log.items.encode("85123A")[0]
    assert log.item_features.text["description"][row] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert log.item_features.numeric["unitprice"][row] == pytest.approx(2.95)
    assert "Unknown" not in set(log.item_features.text["description"])  # the Parquet's fill is undone


def test_available_finds_the_shared_data(shared_data):
    where = {r["name"]: r["path"] for r in available(shared_data)}
    assert where["ml-100k"] == str(shared_data / "ml-100k")
    assert where["online-retail"] == str(shared_data / "online-retail")
