"""The `embrec` command: in-process through Typer's CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from embrec import api
from embrec.cli import app

runner = CliRunner()

# "b" is bought 4 times, "a" 3 times, "c" twice, "d" once
SHOP = [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "b"), ("u3", "a"),
        ("u4", "b"), ("u4", "a"), ("u4", "c"), ("u5", "d")]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_json(result) -> object:
    """stdout must be exactly one JSON document (json.loads refuses trailing text)."""
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_user_error(result, *words: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
    for w in words:
        assert w in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A shop CSV, a two-block CSV (users 0-9 buy items 0-9, users 10-19 items 10-19) and models on them."""
    d = tmp_path_factory.mktemp("cli")
    shop = pd.DataFrame(SHOP, columns=["customer", "sku"])
    shop["ts"] = pd.date_range("2024-01-01", periods=len(shop), freq="h")
    shop.to_csv(d / "shop.csv", index=False)
    pairs = [(u, i) for u in range(20) for i in (range(0, 10) if u < 10 else range(10, 20))]
    blocks = pd.DataFrame(pairs, columns=["user", "item"])
    blocks["t"] = range(len(blocks))
    blocks.to_csv(d / "blocks.csv", index=False)
    r = invoke("train", "popularity", "--data", d / "shop.csv", "--user-col", "customer", "--item-col", "sku",
               "--out", d / "pop")
    assert r.exit_code == 0, r.stderr
    r = invoke("train", "als", "--data", d / "blocks.csv", "--user-col", "user", "--item-col", "item",
               "--param", "factors=4", "-p", "iterations=10", "--out", d / "als", "--json")
    assert one_json(r)["params"] == {"factors": 4, "iterations": 10}
    return {"dir": d, "shop": d / "shop.csv", "blocks": d / "blocks.csv", "pop": d / "pop", "als": d / "als"}


def test_help_lists_every_command():
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("quickstart", "datasets", "train", "evaluate", "benchmark", "recommend", "similar", "inspect",
                "serve"):
        assert cmd in r.stdout


def test_recommend_round_trip_popularity(files):
    data = one_json(invoke("recommend", files["pop"], "--user", "u5", "-k", "3", "--json"))
    assert [it["item"] for it in data["items"]] == ["b", "a", "c"]  # most bought first
    assert set(data) >= {"model", "user", "history", "k", "exclude_seen", "items"}
    data = one_json(invoke("recommend", files["pop"], "--history", "b, a", "-k", "4", "--exclude-seen", "--json"))
    assert [it["item"] for it in data["items"]] == ["c", "d"] and data["history"] == ["b", "a"]
    table = invoke("recommend", files["pop"], "--user", "u1", "-k", "2", "--include-seen")
    assert table.exit_code == 0
    rows = [line.split() for line in table.stdout.splitlines()[3:]]
    assert [row[1] for row in rows] == ["b", "a"]
    table = invoke("recommend", files["pop"], "--user", "u1", "-k", "2")  # u1 bought a and b: left out by default
    rows = [line.split() for line in table.stdout.splitlines()[3:]]
    assert [row[1] for row in rows] == ["c", "d"] and "seen items excluded" in table.stdout


def test_similar_round_trip_als(files):
    data = one_json(invoke("similar", files["als"], "--item", "3", "-k", "9", "--json"))
    assert sorted(it["item"] for it in data["items"]) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert data["measure"] == "cosine" and data["item"] == 3
    data = one_json(invoke("similar", files["als"], "--item", "12", "-k", "5", "--measure", "dot", "--json"))
    assert all(10 <= it["item"] < 20 for it in data["items"])


def test_info_and_datasets_json(files):
    info = one_json(invoke("info", files["pop"], "--json"))
    assert (info["model"], info["n_items"], info["n_users"]) == ("popularity", 4, 5)
    rows = one_json(invoke("datasets", "--json", "--data-dir", files["dir"]))
    assert {r["name"] for r in rows} >= {"ml-100k", "online-retail", "synthetic"}
    assert all({"name", "license", "path", "available"} <= set(r) for r in rows)


def test_benchmark_json_shape(files):
    data = one_json(invoke("benchmark", "--protocol", "leave-last-out", "--models", "item-transition",
                           "--data", files["blocks"], "--user-col", "user", "--item-col", "item",
                           "--time-col", "t", "--json"))
    assert set(data) >= {"protocol", "dataset", "results"}
    assert data["protocol"] == "leave-last-out" and data["dataset"] == "blocks.csv"
    assert [r["model"] for r in data["results"]] == ["popularity", "repeat-frequency", "item-transition", "ease", "item-knn"]
    for r in data["results"]:
        assert set(r["metrics"]) == {"hit@10", "ndcg@10"} and isinstance(r["fit_seconds"], float)


def test_benchmark_protocol_options_change_the_split(files):
    cols = ["--data", files["blocks"], "--user-col", "user", "--item-col", "item", "--time-col", "t"]
    runs = [one_json(invoke("benchmark", "--protocol", "random-holdout", "--models", "popularity", *cols,
                            "-o", f"seed={seed}", "--json")) for seed in (0, 0, 1)]
    assert [r["model"] for r in runs[0]["results"]][0] == "popularity"  # baselines first, in their order
    assert runs[0]["results"][0]["metrics"] == runs[1]["results"][0]["metrics"]  # seeded: same split
    assert runs[0]["results"][0]["metrics"] != runs[2]["results"][0]["metrics"]  # another seed, another split


def test_train_on_protocol_then_evaluate(files, tmp_path):
    cols = ["--data", files["blocks"], "--user-col", "user", "--item-col", "item", "--time-col", "t"]
    trained = one_json(invoke("train", "item-transition", *cols, "--protocol", "leave-last-out",
                              "--out", tmp_path / "m", "--json"))
    data = one_json(invoke("evaluate", tmp_path / "m", "--protocol", "leave-last-out", *cols, "--json"))
    assert data["refitted"] is False
    assert data["results"][0]["metrics"] == pytest.approx(trained["metrics"])


def test_json_stdout_stays_one_document_when_a_library_prints(files, monkeypatch):
    real = api.recommend

    def noisy(*args, **kwargs):
        print("a library talking on stdout")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "recommend", noisy)
    r = invoke("recommend", files["pop"], "--user", "u1", "-k", "2", "--json")
    assert one_json(r)["user"] == "u1"
    assert "a library talking" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["recommend", "{pop}", "--user", "nobody"], ["user id 'nobody' is not known"]),
    (["recommend", "{pop}", "--user", "u1", "-k", "0"], ["k must be an integer >= 1; received 0"]),
    (["recommend", "{pop}", "--user", "u1", "--history", "a"], ["exactly one of --user or --history"]),
    (["recommend", "{pop}", "--history", "a,,b"], ["comma-separated"]),
    (["recommend", "{dir}/missing", "--user", "u1"], ["does not exist"]),
    (["similar", "{pop}", "--item", "a"], ["has none"]),
    (["similar", "{als}", "--item", "3", "--measure", "l2"], ["measure must be one of"]),
    (["train", "popularity", "--out", "{dir}/x"], ["--dataset NAME, or --data PATH"]),
    (["train", "als", "--dataset", "synthetic", "-p", "factor=4", "--out", "{dir}/x"],
     ["no hyper-parameter 'factor'", "factors"]),
    (["train", "nosuch", "--dataset", "synthetic", "--out", "{dir}/x"], ["model must be one of", "popularity"]),
    (["train", "popularity", "--dataset", "nosuch", "--out", "{dir}/x"], ["dataset must be one of"]),
    (["train", "popularity", "--data", "{dir}/none.csv", "--user-col", "a", "--item-col", "b", "--out", "{dir}/x"],
     ["does not exist"]),
    (["train", "popularity", "--data", "{shop}", "--out", "{dir}/x"], ["--data needs --user-col and --item-col"]),
    (["benchmark", "--protocol", "nope"], ["protocol must be one of"]),
    (["benchmark", "--protocol", "leave-last-out", "--models", "popularity", "-p", "bpr=1"],
     ["MODEL.key=value"]),
    (["benchmark", "--protocol", "random-holdout", "--dataset", "synthetic", "-o", "frac=0.3"],
     ["no option 'frac'", "fraction"]),
    (["train", "popularity", "--dataset", "synthetic", "-o", "part=test", "--out", "{dir}/x"],
     ["options were given without a protocol"]),
    (["evaluate", "{dir}/missing", "--protocol", "leave-last-out"], ["does not exist"]),
    (["quickstart", "--dataset", "ml-1m", "--out", "{dir}/x"], ["dataset must be one of", "'ml-100k'"]),
    (["inspect", "{dir}/missing", "--out", "{dir}/r"], ["does not exist"]),
    (["serve", "{pop}", "--port", "70000"], ["port must be between 1 and 65535"]),
])
def test_user_errors_exit_1_with_one_sentence(files, args, words):
    fill = {k: str(v) for k, v in files.items()}
    assert_user_error(invoke(*[a.format(**fill) for a in args]), *words)
    assert not (files["dir"] / "x").exists()


def test_real_subprocess_help_and_error(files):
    exe = Path(sys.executable).with_name("embrec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embrec.cli"]
    ok = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "quickstart" in ok.stdout
    missing = files["dir"] / "no-model"
    bad = subprocess.run([*cmd, "recommend", str(missing), "--user", "u1"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [f"Error: model directory {str(missing)!r} does not exist or is "
                                               "not a directory."]


def test_benchmark_retail_precision_on_the_real_data(shared_data):
    data = one_json(invoke("benchmark", "--protocol", "retail-precision", "--models", "popularity",
                           "--data-dir", shared_data, "--json"))
    assert data["dataset"] == "online-retail"
    by_model = {r["model"]: r["metrics"] for r in data["results"]}
    assert by_model["popularity"]["precision@5"] == pytest.approx(0.064, abs=0.001)  # the retail chapter's figure
    assert {"repeat-frequency", "item-transition"} <= set(by_model)
