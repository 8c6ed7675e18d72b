"""The quickstart saves one servable model: every command and endpoint it suggests answers on it. And the
module order: api at the bottom, report and quickstart above it, nothing below importing them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embrec.cli import app
from embrec.serve import create_app

ROOT = Path(__file__).resolve().parents[1] / "embrec"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from embrec.quickstart import quickstart

    out = tmp_path_factory.mktemp("qs")
    # the baselines have no embeddings: whichever wins, the servable model is ALS, the one embedding model
    res = quickstart(
        out=out,
        models=["als"],
        progress=lambda _: None,
        synthetic_params={"n_users": 150, "n_items": 60, "n_interactions": 2500},
    )
    return out, res


def test_the_saved_model_answers_every_endpoint(run):
    out, res = run
    assert res["model_dir"] == str(out / "model") and res["servable"]["model"] == "als"
    assert res["best"]["value"] >= res["servable"]["value"]
    assert res["best"]["model"] in {r["model"] for r in res["results"]}
    assert sorted(p.name for p in out.iterdir()) == ["model", "report"]
    client = TestClient(create_app(out / "model"))
    user, item = res["recommendations"]["user"], res["similar"]["item"]
    r = client.post("/recommend", json={"user": user, "k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    assert all(
        it["label"] for it in r.json()["items"]
    )  # the synthetic shop's labels travel with the model
    assert client.post("/similar", json={"item": item, "k": 5}).status_code == 200
    r = client.post("/embed", json={"history": [item]})
    assert r.status_code == 200 and r.json()["dim"] == 32


def test_the_suggested_commands_work(run):
    out, res = run
    runner = CliRunner()
    user, item = res["recommendations"]["user"], res["similar"]["item"]
    for args in (
        ["recommend", str(out / "model"), "--user", str(user), "-k", "5"],
        ["similar", str(out / "model"), "--item", str(item), "-k", "5"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.stderr


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, inside a function?) for every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                sub._in_function = True  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        local = getattr(node, "_in_function", False)
        if isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, local)] + [(f"{node.module}.{a.name}", local) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, local) for a in node.names]
    return out


def test_api_is_below_quickstart_and_report():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        mods = _imports(path)
        if not rel.startswith(("cli/", "quickstart")):
            assert not [m for m, _ in mods if m.startswith("embrec.quickstart")], (
                rel
            )  # nothing below imports it
        if rel == "api.py" or rel.startswith(
            ("models/", "evaluation/", "data/", "datasets/", "serve/")
        ):
            assert not [m for m, _ in mods if m.startswith("embrec.report")], rel
    for rel in ("quickstart.py", "report/page.py"):
        local = [
            m
            for m, inside in _imports(ROOT / rel)
            if inside and m.startswith(("embrec.api", "embrec.report"))
        ]
        assert not local, (rel, local)  # imported at the top: no function-local workaround


def test_sources_and_tuning_sit_below_the_api():
    for path in [ROOT / "sources.py", *(ROOT / "tuning").glob("*.py")]:
        above = [m for m, _ in _imports(path) if m.startswith(("embrec.api", "embrec.cli"))]
        assert not above, (path.name, above)
