"""Downloads are verified whole: nothing unverified is installed, and a downloaded folder's loader reads only
its verified files; a folder of one's own ($EMBREC_DATA, --data-dir, or put in the cache by hand) is read as
it is. A local http.server on 127.0.0.1 stands in for the publishers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest

import tests.test_datasets_download as dl
from embrec.datasets import DATASETS, ChecksumMismatchError, load
from embrec.datasets import resolve as resolve_mod
from embrec.errors import DataError
from tests.test_datasets_download import sums, tiny_ml100k, write_folder, write_zip

isolated = dl.isolated  # the autouse isolation (cache in tmp_path, no $EMBREC_DATA, no internet)
server = dl.server


def retail_frame(n_rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "InvoiceNo": ["536365"] * n_rows,
            "StockCode": [f"S{i}" for i in range(n_rows)],
            "Description": ["THING"] * n_rows,
            "Quantity": [1] * n_rows,
            "InvoiceDate": pd.to_datetime(["2010-12-01 08:26"] * n_rows),
            "UnitPrice": [1.0] * n_rows,
            "CustomerID": [17850.0] * n_rows,
            "Country": ["United Kingdom"] * n_rows,
        }
    )


def fake_csv(n_rows: int = 7) -> bytes:
    return retail_frame(n_rows).to_csv(index=False).encode()


@pytest.fixture()
def workbook(isolated, monkeypatch) -> bytes:
    """A 3-row 'Online Retail.xlsx' whose sha256 the spec is patched to expect."""
    path = isolated / "Online Retail.xlsx"
    retail_frame(3).to_excel(path, index=False)
    data = path.read_bytes()
    spec = DATASETS["online-retail"]
    monkeypatch.setitem(
        DATASETS,
        "online-retail",
        dataclasses.replace(spec, checksums=sums({"Online Retail.xlsx": data})),
    )
    monkeypatch.setattr(resolve_mod, "_CHECKED", set())
    return data


def test_an_archive_of_only_a_fake_csv_is_refused(server, isolated, workbook):
    write_zip(server / "online+retail.zip", {"online_retail.csv": fake_csv()})
    with pytest.raises(DataError) as err:
        load("online-retail")
    msg = str(err.value)
    assert "does not hold the files of dataset 'online-retail'" in msg
    assert "files no checksum covers are not installed: online_retail.csv" in msg
    assert list((isolated / "cache").iterdir()) == []  # nothing installed, no temp files


def test_a_fake_csv_beside_the_verified_workbook_is_not_installed(
    server, isolated, workbook, caplog
):
    write_zip(
        server / "online+retail.zip",
        {"Online Retail.xlsx": workbook, "online_retail.csv": fake_csv()},
    )
    with caplog.at_level(logging.WARNING):
        log = load("online-retail")
    assert len(log) == 3  # the workbook's 3 rows, not the csv's 7 (the loader prefers a csv)
    folder = isolated / "cache" / "online-retail"
    assert not (folder / "online_retail.csv").exists()
    assert (
        "not installing online_retail.csv" in caplog.text and "no checksum covers it" in caplog.text
    )
    manifest = json.loads((folder / ".embrec-download.json").read_text())
    assert manifest["files"] == {"Online Retail.xlsx": hashlib.sha256(workbook).hexdigest()}


def test_a_file_added_to_a_downloaded_folder_is_ignored(server, isolated, workbook, caplog):
    write_zip(server / "online+retail.zip", {"Online Retail.xlsx": workbook})
    assert len(load("online-retail")) == 3
    folder = isolated / "cache" / "online-retail"
    (folder / "online_retail.csv").write_bytes(fake_csv())  # preferred over the xlsx by the loader
    (server / "online+retail.zip").unlink()
    with caplog.at_level(logging.WARNING):
        assert len(load("online-retail")) == 3
    assert (
        "ignoring online_retail.csv" in caplog.text
        and "not part of the verified download" in caplog.text
    )


def test_a_downloaded_file_changed_afterwards_is_refused(server, isolated, workbook):
    write_zip(server / "online+retail.zip", {"Online Retail.xlsx": workbook})
    load("online-retail")
    folder = isolated / "cache" / "online-retail"
    (folder / "Online Retail.xlsx").write_bytes(workbook[:-10] + b"0123456789")
    resolve_mod._CHECKED.clear()  # a new process
    with pytest.raises(
        ChecksumMismatchError,
        match=r"^Online Retail.xlsx in the downloaded dataset folder .* "
        r"changed after it was verified .* delete the folder",
    ):
        load("online-retail")


def test_the_archive_checksum_covers_every_file(server, isolated, monkeypatch):
    files = {**tiny_ml100k(), "allbut.pl": b"#!perl\n"}
    zipped = write_zip(server / "ml-100k.zip", files, prefix="ml-100k/").read_bytes()
    spec = dataclasses.replace(
        DATASETS["ml-100k"], checksums={}, archive_sha256=hashlib.sha256(zipped).hexdigest()
    )
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    assert len(load("ml-100k")) == 4
    assert (isolated / "cache" / "ml-100k" / "allbut.pl").read_bytes() == b"#!perl\n"


def test_per_file_sums_leave_out_uncovered_files(server, isolated, monkeypatch):
    files = tiny_ml100k()
    write_zip(server / "ml-100k.zip", {**files, "allbut.pl": b"#!perl\n"}, prefix="ml-100k/")
    monkeypatch.setitem(
        DATASETS, "ml-100k", dataclasses.replace(DATASETS["ml-100k"], checksums=sums(files))
    )
    assert len(load("ml-100k")) == 4
    folder = isolated / "cache" / "ml-100k"
    assert not (folder / "allbut.pl").exists()
    assert sorted(json.loads((folder / ".embrec-download.json").read_text())["files"]) == sorted(
        files
    )


def test_ones_own_folder_is_read_as_it_is(isolated, monkeypatch):
    own = isolated / "mine" / "online-retail"
    write_folder(own, {"online_retail.csv": fake_csv(5)})
    monkeypatch.setenv("EMBREC_DATA", str(isolated / "mine"))
    log = load("online-retail", download=False)
    assert len(log) == 5
    np.testing.assert_array_equal(log.items.raw_ids, [f"S{i}" for i in range(5)])
