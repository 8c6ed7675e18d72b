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
