"""Column separators of text logs: sniffed from the header line, or given with sep= / --sep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embrec.cli import app
from embrec.datasets import from_file
from embrec.datasets.files import sniff_sep
from embrec.errors import DataError, InvalidParameterError

ROWS = [("u1", "a;x", "1,5"), ("u1", "b", "2,0"), ("u2", "b", "3,5"), ("u3", "c", "1,0")]


def write(path: Path, sep: str, quote_semicolons: bool = True) -> Path:
    lines = [sep.join(["client_ref", "product_code", "qty"])]
    for u, i, q in ROWS:
        item = f'"{i}"' if quote_semicolons and (";" in i or sep in i) else i
        lines.append(sep.join([u, item, f'"{q}"' if sep == "," else q]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "sep, name",
    [(";", "log.csv"), ("\t", "log.csv"), (",", "log.csv"), ("|", "log.csv"), ("\t", "log.tsv")],
)
def test_separator_is_sniffed_from_the_header(tmp_path, sep, name):
    path = write(tmp_path / name, sep)
    assert sniff_sep(path) == sep
    log = from_file(path, user_col="client_ref", item_col="product_code")
    assert sorted(log.items.raw_ids) == ["a;x", "b", "c"] and log.n_users == 3


def test_separator_given_explicitly(tmp_path):
    path = write(tmp_path / "log.csv", ";")
    log = from_file(path, user_col="client_ref", item_col="product_code", sep="semicolon")
    assert log.n_items == 3
    with pytest.raises(InvalidParameterError, match="sep must be one character"):
        from_file(path, user_col="client_ref", item_col="product_code", sep=";;")
    # the wrong separator: the header is one column, so the id columns are missing, named clearly
    with pytest.raises(DataError, match="user_col='client_ref' is not a column"):
        from_file(path, user_col="client_ref", item_col="product_code", sep=",")


def test_ragged_rows_say_to_give_the_separator(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("u;i\nu1;a\nu2;b;extra;more\n", encoding="utf-8")
    with pytest.raises(DataError, match="separated by ';'.*--sep"):
        from_file(path, user_col="u", item_col="i")


def test_cli_sep(tmp_path):
    path = write(tmp_path / "log.txt.csv", ";")
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "train",
            "popularity",
            "--data",
            str(path),
            "--user-col",
            "client_ref",
            "--item-col",
            "product_code",
            "--sep",
            ";",
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["n_items"] == 3
    r = runner.invoke(
        app,
        [
            "train",
            "popularity",
            "--dataset",
            "synthetic",
            "--sep",
            ";",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code == 1 and "--sep" in r.stderr and "--data" in r.stderr


# text encodings ---------------------------------------------------------------------------------
def write_encoded(path: Path, encoding: str, bom: bool = False) -> Path:
    text = "client,product,label\nc1,café,crème brûlée\nc2,café,crème brûlée\nc2,thé,\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    log = from_file(
        write_encoded(tmp_path / "bom.csv", "utf-8", bom=True),
        user_col="client",
        item_col="product",
    )
    assert sorted(log.users.raw_ids) == ["c1", "c2"] and sorted(log.items.raw_ids) == [
        "café",
        "thé",
    ]


def test_a_latin1_file_is_refused_naming_the_byte_then_read_with_its_encoding(tmp_path):
    path = write_encoded(tmp_path / "old.csv", "cp1252")
    with pytest.raises(DataError) as info:
        from_file(path, user_col="client", item_col="product")
    assert "file old.csv is not UTF-8 text (byte 0xe9 at position 27)" in str(info.value)
    assert "--encoding" in str(info.value) and "\n" not in str(info.value)
    log = from_file(path, user_col="client", item_col="product", encoding="cp1252")
    assert sorted(log.items.raw_ids) == ["café", "thé"] and log.item_counts()[1:].tolist() == [2, 1]
    with pytest.raises(
        InvalidParameterError, match="encoding must be a text encoding .* received 'klingon'"
    ):
        from_file(path, user_col="client", item_col="product", encoding="klingon")


def test_cli_encoding(tmp_path):
    path = write_encoded(tmp_path / "old.csv", "latin-1")
    cols = ["--data", str(path), "--user-col", "client", "--item-col", "product"]
    bad = CliRunner().invoke(app, ["train", "popularity", *cols, "--out", str(tmp_path / "m")])
    assert bad.exit_code == 1 and "give its encoding with encoding= / --encoding" in bad.output
    good = CliRunner().invoke(
        app, ["train", "popularity", *cols, "--encoding", "latin-1", "--out", str(tmp_path / "m")]
    )
    assert good.exit_code == 0, good.output
    recs = CliRunner().invoke(
        app, ["recommend", str(tmp_path / "m"), "--user", "c1", "--include-seen", "--json"]
    )
    assert [r["item"] for r in json.loads(recs.output)["items"]] == ["café", "thé"]
