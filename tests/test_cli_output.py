"""What the command shows: flags, --version, `python -m embrec`, UTF-8 JSON, wide-character tables, id
lists holding commas, seen items left out by default, progress totals, offline /docs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from rich.cells import cell_len
from typer.testing import CliRunner

from embrec import __version__
from embrec.cli import app
from embrec.cli._output import table
from embrec.models.training import Batches, TrainConfig, train_loop
from embrec.serve import create_app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# "商品B" is bought 4 times, "a,1" 3 times, "café" twice, "d" once (ids with wide characters and commas)
SHOP = [
    ("u1", "a,1"),
    ("u1", "商品B"),
    ("u2", "商品B"),
    ("u2", "café"),
    ("u3", "商品B"),
    ("u3", "a,1"),
    ("u4", "商品B"),
    ("u4", "a,1"),
    ("u4", "café"),
    ("u5", "d"),
]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("out")
    pd.DataFrame(SHOP, columns=["customer", "sku"]).to_csv(d / "shop.csv", index=False)
    r = invoke(
        "train",
        "popularity",
        "--data",
        d / "shop.csv",
        "--user-col",
        "customer",
        "--item-col",
        "sku",
        "--out",
        d / "pop",
    )
    assert r.exit_code == 0, r.stderr
    return d / "pop"


def test_version_and_python_dash_m():
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"embrec {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "embrec", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"embrec {__version__}", done.stderr


def test_help_shows_flags_without_a_value_column():
    text = invoke("recommend", "--help").stdout
    flag_lines = [
        line for line in text.splitlines() if "--json" in line or "--include-seen" in line
    ]
    assert flag_lines and not any("<bool>" in line for line in flag_lines)
    assert "<int>" in text  # options that take a value still say which
    assert "<bool>" not in invoke("--help").stdout


def test_json_is_utf8_not_escaped(model_dir):
    r = invoke("recommend", model_dir, "--user", "u5", "-k", "3", "--json")
    assert r.exit_code == 0, r.stderr
    assert "商品B" in r.stdout and "café" in r.stdout and "\\u" not in r.stdout
    assert [it["item"] for it in json.loads(r.stdout)["items"]] == ["商品B", "a,1", "café"]


def test_tables_align_wide_characters():
    rows = [
        {"item": "商品B", "score": 4.0, "tag": "x"},
        {"item": "abc", "score": 12.5, "tag": "y"},
        {"item": "e\u0301", "score": 1.0, "tag": "z"},
    ]  # wide characters; e + a combining accent
    lines = table(rows, ["item", "score", "tag"]).splitlines()
    starts = {cell_len(line[: line.rindex(tag)]) for line, tag in zip(lines[2:], "xyz")}
    assert len(starts) == 1, lines  # the last column starts at the same terminal cell on every row
    score_ends = {
        cell_len(line[: line.index(s) + len(s)])
        for line, s in zip(lines[2:], ["4.0000", "12.5000", "1.0000"])
    }
    assert len(score_ends) == 1, lines  # numbers right-aligned in cells, not characters


def test_history_ids_holding_commas(model_dir):
    def items(*args: str) -> list:
        r = invoke("recommend", model_dir, *args, "-k", "2", "--json")
        assert r.exit_code == 0, r.stderr
        return [it["item"] for it in json.loads(r.stdout)["items"]]

    assert items("--item", "a,1", "--item", "商品B") == [
        "café",
        "d",
    ]  # seen items left out by default
    assert items("--history", '["a,1", "商品B"]') == ["café", "d"]
    assert items("--item", "a,1", "--include-seen") == ["商品B", "a,1"]
    r = invoke("recommend", model_dir, "--history", '["a,1", 3.5]')
    assert r.exit_code == 1 and "JSON list of item ids" in r.stderr
    r = invoke("recommend", model_dir, "--history", "a,1")  # the comma form splits: "a" is unknown
    assert r.exit_code == 1 and "'a'" in r.stderr


def test_recommend_leaves_out_seen_items_by_default(model_dir):
    r = json.loads(invoke("recommend", model_dir, "--user", "u4", "-k", "3", "--json").stdout)
    assert r["exclude_seen"] is True and [it["item"] for it in r["items"]] == [
        "d"
    ]  # u4 bought the others
    r = json.loads(
        invoke("recommend", model_dir, "--user", "u4", "-k", "3", "--include-seen", "--json").stdout
    )
    assert r["exclude_seen"] is False and [it["item"] for it in r["items"]] == [
        "商品B",
        "a,1",
        "café",
    ]


def test_benchmark_says_which_model_is_running(model_dir):
    r = invoke(
        "benchmark",
        "--protocol",
        "random-holdout",
        "--models",
        "popularity",
        "--data",
        model_dir.parent / "shop.csv",
        "--user-col",
        "customer",
        "--item-col",
        "sku",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    names = [row["model"] for row in json.loads(r.stdout)["results"]]
    assert names[0] == "popularity" and len(names) >= 3
    for i, name in enumerate(names, start=1):
        assert f"model {i}/{len(names)}: {name}\n" in r.stderr
    assert "model 1/" not in r.stdout


def test_progress_bars_have_totals(capsys):
    module = torch.nn.Linear(2, 1)

    def batches(rng, epoch):
        gen = (torch.ones(3, 2) for _ in range(4))
        return (
            Batches(gen, 4) if epoch == 1 else gen
        )  # a bare generator: the last epoch's count is the total

    train_loop(
        module,
        batches=batches,
        loss=lambda b: module(b).pow(2).mean(),
        config=TrainConfig(epochs=2, progress=True),
        rng=np.random.default_rng(0),
        desc="t",
    )
    first, second = capsys.readouterr().err.split("t epoch 2/2", 1)
    assert "t epoch 1/2" in first and "0/4 [" in first  # the epoch's own count
    assert "0/4 [" in second  # the previous epoch's count
    assert "0batch [" not in first + second  # tqdm's look without a total


def test_docs_work_offline(model_dir):
    client = TestClient(create_app(model_dir))
    page = client.get("/docs")
    assert page.status_code == 200
    assert (
        "/docs-assets/swagger-ui-bundle.js" in page.text
        and "/docs-assets/swagger-ui.css" in page.text
    )
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000 and "SwaggerUIBundle" in js.text
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").status_code == 200
