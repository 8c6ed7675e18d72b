"""Online Retail cleaning on a small table written as CSV (Kaggle style), Parquet and xlsx."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embrec.datasets import load
from embrec.datasets.retail import item_table, price_buckets, read_online_retail
from embrec.errors import DataError, DatasetNotFoundError

RAW = pd.DataFrame({
    "InvoiceNo": ["536365", "536365", "536365", "C536379", "536366", "536366", "536367", "536365"],
    "StockCode": ["85123A", "71053", "71053", "D", "22633", "85123A", "22633", "71053"],
    "Description": ["WHITE HANGING HEART", "WHITE METAL LANTERN", "WHITE METAL LANTERN", "Discount",
                    "HAND WARMER UNION JACK", "Unknown", "HAND WARMER UNION JACK", "LANTERN, WHITE"],
    "Quantity": [6, 2, 2, -1, 6, 3, 1, 4],
    "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2010-12-01 08:26", "2010-12-01 08:26",
                                   "2010-12-01 09:41", "2010-12-01 08:28", "2010-12-01 08:28",
                                   "2010-12-02 10:00", "2010-12-03 11:00"]),
    "UnitPrice": [2.55, 3.39, 3.39, 27.5, 1.85, 2.95, 1.65, 3.75],
    "CustomerID": [17850.0, 17850.0, 17850.0, 14527.0, np.nan, np.nan, 13047.0, 17850.0],
    "Country": ["United Kingdom"] * 8,
})


def _write(folder, fmt: str):
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":  # the circulating Kaggle CSV: latin-1, dates as 12/1/2010 8:26
        frame = RAW.assign(InvoiceDate=RAW.InvoiceDate.dt.strftime("%-m/%-d/%Y %-H:%M"))
        frame.loc[0, "Description"] = "WHITE HANGING HEART £"
        frame.to_csv(folder / "online_retail.csv", index=False, encoding="latin-1")
    elif fmt == "parquet":
        RAW.to_parquet(folder / "online_retail.parquet", index=False)
    else:
        RAW.to_excel(folder / "Online Retail.xlsx", index=False)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBREC_DATA", raising=False)
    monkeypatch.setenv("EMBREC_DOWNLOAD_BASE", "http://127.0.0.1:9/")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_chapter_cleaning_in_every_format(tmp_path, fmt):
    _write(tmp_path / "data" / "online-retail", fmt)
    log = load("online-retail", data_dir=tmp_path / "data", download=False)
    assert len(log) == 7  # the "C" invoice is gone, the duplicate row (rows 2 and 3) is kept
    np.testing.assert_array_equal(log.items.decode(log.item),
                                  ["85123A", "71053", "71053", "22633", "85123A", "22633", "71053"])
    assert log.users.raw_ids.tolist() == [13047, 17850]  # 17850.0 -> 17850; 14527 only had a cancellation
    np.testing.assert_array_equal(log.user, [2, 2, 2, 0, 0, 1, 2])  # missing customer = unknown row 0
    np.testing.assert_array_equal(log.rating, [6, 2, 2, 6, 3, 1, 4])
    # consecutive rows of one invoice are one transaction; 536365 comes back later as a new one
    np.testing.assert_array_equal(log.group, [0, 0, 0, 1, 1, 2, 3])
    assert log.timestamp[0] == np.datetime64("2010-12-01T08:26")
    assert log.timestamp[-1] == np.datetime64("2010-12-03T11:00")


def test_item_features(tmp_path):
    _write(tmp_path / "data" / "online-retail", "parquet")
    log = load("online-retail", data_dir=tmp_path / "data", download=False)
    ft = log.item_features
    row = dict(zip(log.items.raw_ids.tolist(), range(1, log.items.size)))
    assert ft.text["description"][row["71053"]] == "WHITE METAL LANTERN"  # most frequent of its two
    assert ft.text["description"][row["85123A"]] == "WHITE HANGING HEART"  # "Unknown" is a missing value
    assert ft.numeric["unitprice"][row["85123A"]] == pytest.approx(2.75)  # median of 2.55 and 2.95
    assert ft.numeric["unitprice"][row["22633"]] == pytest.approx(1.75)
    bucket = {k: ft.vocabularies["price_bucket"][ft.categorical["price_bucket"][r] - 1] for k, r in row.items()}
    assert bucket["22633"] < bucket["85123A"] < bucket["71053"]  # cheapest .. dearest


def test_description_unknown_becomes_missing():
    table = item_table(pd.DataFrame({"stockcode": ["a", "a", "b"], "description": [None, "X", None],
                                     "unitprice": [1.0, 3.0, 2.0]}))
    assert table.set_index("stockcode")["description"].isna().tolist() == [False, True]


def test_price_buckets_keep_ties_together():
    labels = price_buckets(np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    assert len(set(labels[:4])) == 1 and labels[0] == "q1" and labels[-1] == "q5"


def test_missing_official_column(tmp_path):
    path = tmp_path / "online_retail.csv"
    RAW.drop(columns=["StockCode"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"Online Retail file online_retail.csv must have the columns .*missing \['stockcode'\]"):
        read_online_retail(path)


def test_no_file_in_the_folder(tmp_path):
    folder = tmp_path / "data" / "online-retail"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetNotFoundError, match=r"'online-retail' was not found in .* and download is off"):
        load("online-retail", data_dir=tmp_path / "data", download=False)


def test_corrupt_file(tmp_path):
    path = tmp_path / "online_retail.parquet"
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"Online Retail file .* could not be read as .parquet"):
        read_online_retail(path)
