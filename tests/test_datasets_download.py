"""Named datasets: resolution order, download from a local server, checksums, offline errors.

Nothing here touches the internet: every test runs with the cache in tmp_path, no $EMBREC_DATA, and
$EMBREC_DOWNLOAD_BASE pointing at 127.0.0.1 (a local http.server, or a closed port).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embrec.datasets import (
    DATASETS,
    ChecksumMismatchError,
    available,
    load,
    ml100k_fold,
)
from embrec.errors import DataError, DatasetNotFoundError, InvalidParameterError

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


def tiny_ml100k(n_extra: int = 0) -> dict[str, bytes]:
    """A 3-user, 3-movie ml-100k in the official formats (n_extra more ratings mark a copy)."""
    ratings = [(1, 1, 5, 874965758), (1, 2, 3, 876893171), (2, 1, 4, 878542960), (3, 3, 1, 886397596)]
    ratings += [(2, 2, 2, 880000000 + k) for k in range(n_extra)]
    rows = ["\t".join(map(str, r)) for r in ratings]
    return {
        "u.data": ("\n".join(rows) + "\n").encode(),
        "u.item": (f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Children' + chr(39) + 's', 'Comedy')}\n"
                   f"2|GoldenEye (1995)|01-Jan-1995||http://x|{_flags('Action', 'Adventure', 'Thriller')}\n"
                   f"3|Unknown (?)|||http://x|{_flags('unknown')}\n").encode("latin-1"),
        "u.genre": ("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n").encode(),
        "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
        "u1.base": ("\n".join(rows[:3]) + "\n").encode(),
        "u1.test": (rows[3] + "\n").encode(),
    }


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{prefix}{name}", data)
    return path


def sums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Cache in tmp_path, no $EMBREC_DATA, downloads aimed at a closed local port."""
    monkeypatch.setenv("EMBREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBREC_DATA", raising=False)
    monkeypatch.setenv("EMBREC_DOWNLOAD_BASE", f"http://127.0.0.1:{closed_port()}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return tmp_path


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local http.server over tmp_path/www; $EMBREC_DOWNLOAD_BASE points at it."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("EMBREC_DOWNLOAD_BASE", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield root
    httpd.shutdown()
    httpd.server_close()


def patch_checksums(monkeypatch, name: str, checksums: dict[str, str]) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], checksums=checksums))


# names and listing ---------------------------------------------------------------------------------
def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InvalidParameterError) as err:
        load("movielens")
    assert str(err.value) == "name must be one of 'ml-100k', 'online-retail', 'synthetic'; received 'movielens'."


def test_available_says_where_each_dataset_is(isolated):
    write_folder(isolated / "data" / "ml-100k", tiny_ml100k())
    rows = {r["name"]: r for r in available(isolated / "data")}
    assert set(rows) == set(DATASETS)
    assert rows["ml-100k"]["path"] == str(isolated / "data" / "ml-100k") and rows["ml-100k"]["available"]
    assert rows["online-retail"]["path"] is None and not rows["online-retail"]["available"]
    assert rows["online-retail"]["license"].startswith("CC BY 4.0")
    assert rows["synthetic"]["available"] and rows["synthetic"]["url"] is None


# resolution order --------------------------------------------------------------------------------
def test_resolution_order_data_dir_then_env_then_cache(isolated, monkeypatch):
    write_folder(isolated / "cache" / "ml-100k", tiny_ml100k(n_extra=3))
    assert len(load("ml-100k", download=False)) == 7  # only the cache
    write_folder(isolated / "env" / "ml-100k", tiny_ml100k(n_extra=2))
    monkeypatch.setenv("EMBREC_DATA", str(isolated / "env"))
    assert len(load("ml-100k", download=False)) == 6  # $EMBREC_DATA before the cache
    write_folder(isolated / "arg" / "ml-100k", tiny_ml100k(n_extra=1))
    assert len(load("ml-100k", data_dir=isolated / "arg", download=False)) == 5  # data_dir first
    assert len(load("ml-100k", data_dir=str(isolated / "arg" / "ml-100k"), download=False)) == 5  # the folder itself
    assert len(load("ml-100k", data_dir=isolated / "empty", download=False)) == 6  # falls through


def test_incomplete_folder_does_not_count(isolated):
    files = tiny_ml100k()
    del files["u.user"]
    write_folder(isolated / "cache" / "ml-100k", files)
    with pytest.raises(DatasetNotFoundError):
        load("ml-100k", download=False)


def test_not_found_without_download_names_the_files_and_folder(isolated):
    with pytest.raises(DatasetNotFoundError) as err:
        load("ml-100k", download=False)
    msg = str(err.value)
    folder = isolated / "cache" / "ml-100k"
    assert f"dataset 'ml-100k' was not found in {folder} and download is off" in msg
    assert f"unzip it so that u.data, u.item, u.user and u.genre lie in {folder}" in msg
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in msg


def test_offline_download_fails_with_one_sentence(isolated):
    with pytest.raises(DatasetNotFoundError) as err:
        load("online-retail")
    msg = str(err.value)
    assert "dataset 'online-retail' is not available locally and downloading http://127.0.0.1:" in msg
    assert f"put its 'Online Retail.xlsx' (or a CSV/Parquet copy named online_retail.csv / online_retail.parquet) in {isolated / 'cache' / 'online-retail'}" in msg
    assert msg.count(". ") == 0  # one sentence
    assert not (isolated / "cache" / "online-retail").exists()
    assert list((isolated / "cache").iterdir()) == []  # no temp file left


def test_missing_archive_on_server(server, isolated):
    with pytest.raises(DatasetNotFoundError, match=r"ml-100k.zip failed \(HTTP 404 "):
        load("ml-100k")
    assert list((isolated / "cache").iterdir()) == []


# download ----------------------------------------------------------------------------------------
def test_download_verifies_unpacks_and_then_reads_locally(server, isolated, monkeypatch):
    files = tiny_ml100k()
    write_zip(server / "ml-100k.zip", {**files, "allbut.pl": b"#!perl\n"}, prefix="ml-100k/")
    patch_checksums(monkeypatch, "ml-100k", sums(files))
    log = load("ml-100k")
    folder = isolated / "cache" / "ml-100k"
    assert len(log) == 4 and (folder / "u.data").read_bytes() == files["u.data"]
    assert sorted(p.name for p in (isolated / "cache").iterdir()) == ["ml-100k"]  # no .part, no staging
    (server / "ml-100k.zip").unlink()  # the second load must not need the server
    base, test = ml100k_fold("u1")
    assert (len(base), len(test)) == (3, 1)


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, isolated):
    files = tiny_ml100k()  # its u.data is not the official one
    write_zip(server / "ml-100k.zip", files, prefix="ml-100k/")
    with pytest.raises(ChecksumMismatchError) as err:
        load("ml-100k")
    msg = str(err.value)
    assert "sha256 of ml-100k/u.data downloaded from http://127.0.0.1:" in msg
    assert "must be 06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490; received" in msg
    assert "the download was discarded and nothing was written" in msg
    assert isinstance(err.value, DataError)
    assert list((isolated / "cache").iterdir()) == []


def test_archive_without_the_dataset_files(server, isolated):
    write_zip(server / "ml-100k.zip", {"README": b"hello"}, prefix="ml-100k/")
    with pytest.raises(DataError, match=r"does not hold the files of dataset 'ml-100k'; expected \['u.data'"):
        load("ml-100k")
    assert list((isolated / "cache").iterdir()) == []


def test_not_a_zip(server, isolated):
    (server / "ml-100k.zip").write_bytes(b"<html>maintenance</html>")
    with pytest.raises(DataError, match=r"is not a zip archive"):
        load("ml-100k")
    assert list((isolated / "cache").iterdir()) == []


def test_unsafe_member_path_is_refused(server, isolated):
    write_zip(server / "ml-100k.zip", {**tiny_ml100k(), "../../evil": b"x"}, prefix="ml-100k/")
    with pytest.raises(DataError, match=r"unsafe member path 'ml-100k/../../evil'"):
        load("ml-100k")
    assert not (isolated / "evil").exists() and list((isolated / "cache").iterdir()) == []


def test_online_retail_download_of_the_official_workbook(server, isolated, monkeypatch):
    frame = pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "C536379", "536366"],
        "StockCode": ["85123A", 71053, "D", "22633"],
        "Description": ["WHITE HANGING HEART", "WHITE METAL LANTERN", "Discount", "HAND WARMER"],
        "Quantity": [6, 6, -1, 6],
        "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2010-12-01 08:26", "2010-12-01 09:41",
                                       "2010-12-01 08:28"]),
        "UnitPrice": [2.55, 3.39, 27.5, 1.85],
        "CustomerID": [17850.0, 17850.0, 14527.0, np.nan],
        "Country": ["United Kingdom"] * 4,
    })
    xlsx = isolated / "Online Retail.xlsx"
    frame.to_excel(xlsx, index=False)
    data = xlsx.read_bytes()
    write_zip(server / "online+retail.zip", {"Online Retail.xlsx": data})
    patch_checksums(monkeypatch, "online-retail", sums({"Online Retail.xlsx": data}))
    log = load("online-retail")
    assert len(log) == 3 and log.users.raw_ids.tolist() == [17850]
    np.testing.assert_array_equal(log.user, [1, 1, 0])
    np.testing.assert_array_equal(log.items.decode(log.item), ["85123A", "71053", "22633"])
    converted = list((isolated / "cache" / "online-retail" / ".converted").glob("*.parquet"))
    assert len(converted) == 1  # the workbook is read once, then from Parquet
    again = load("online-retail")
    np.testing.assert_array_equal(again.item, log.item)


# folds -------------------------------------------------------------------------------------------
def test_folds_share_the_full_vocabularies_and_features(isolated):
    write_folder(isolated / "cache" / "ml-100k", tiny_ml100k())
    full = load("ml-100k", download=False)
    base, test = ml100k_fold("u1", download=False)
    assert base.users == full.users and test.items == full.items
    assert test.users.raw_ids.tolist() == [1, 2, 3]  # user 3 is only in the test part, yet has its row
    assert base.item_features is not None and test.user_features is not None
    np.testing.assert_array_equal(test.items.decode(test.item), [3])
    assert test.item_features.text["title"][test.item[0]] == "Unknown (?)"
    assert np.isnan(test.item_features.numeric["year"][test.item[0]])


def test_bad_fold_name_and_missing_fold_file(isolated):
    files = tiny_ml100k()
    del files["u1.test"]
    write_folder(isolated / "cache" / "ml-100k", files)
    with pytest.raises(InvalidParameterError, match=r"fold must be one of 'u1', 'u2', 'u3', 'u4', 'u5', 'ua', 'ub'; received 'u6'"):
        ml100k_fold("u6", download=False)
    with pytest.raises(DatasetNotFoundError, match=r"MovieLens fold file u1.test is missing; put the official ml-100k u1.test in"):
        ml100k_fold("u1", download=False)


def test_tiny_ml100k_features(isolated):
    write_folder(isolated / "cache" / "ml-100k", tiny_ml100k())
    log = load("ml-100k", download=False)
    ft, row = log.item_features, log.items.encode(1)[0]
    assert ft.vocabularies["genres"] == GENRES
    assert [GENRES[c - 1] for c in ft.multi_hot["genres"][row]] == ["Animation", "Children's", "Comedy"]
    assert ft.numeric["year"][row] == 1995 and ft.text["title"][row] == "Toy Story (1995)"
    uf, urow = log.user_features, log.users.encode(2)[0]
    assert uf.numeric["age"][urow] == 53
    assert uf.vocabularies["gender"][uf.categorical["gender"][urow] - 1] == "F"
    assert log.timestamp[0] == np.datetime64(874965758, "s")
