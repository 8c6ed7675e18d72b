"""/recommend/batch equals one /recommend per user; ``serve(workers=2)`` answers from two processes that
each loaded the model; the access log is off unless asked for."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from embrec import api
from embrec.baselines import Popularity
from embrec.datasets import synthetic
from embrec.serve import create_app
from tests.planted_model import PlantedVectors, registered
from tests.test_serve import running

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shop():
    return synthetic(n_users=120, n_items=200, n_interactions=3000, n_categories=5, seed=3)


@pytest.fixture(scope="module")
def model_dir(shop, tmp_path_factory):
    path = tmp_path_factory.mktemp("batch") / "planted"
    with registered():
        PlantedVectors().fit(shop).save(path)
    return path


def test_batch_equals_one_request_per_user(shop, model_dir):
    with (
        registered(),
        running(create_app(model_dir)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        users = list(shop.users.raw_ids[:7])
        r = c.post("/recommend/batch", json={"users": users, "k": 4})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["k"] == 4 and got["exclude_seen"] is True and len(got["results"]) == 7
        for u, row in zip(users, got["results"]):
            one = c.post("/recommend", json={"user": u, "k": 4}).json()
            assert row["user"] == u and _same(row["items"], one["items"])
        hists = [list(shop.items.raw_ids[:3]), list(shop.items.raw_ids[50:52])]
        got = c.post(
            "/recommend/batch", json={"histories": hists, "k": 3, "exclude_seen": False}
        ).json()
        for h, row in zip(hists, got["results"]):
            one = c.post("/recommend", json={"history": h, "k": 3, "exclude_seen": False}).json()
            assert row["history"] == h and _same(row["items"], one["items"])
        # one JSON error shape: both / neither, an unknown id, an empty history
        for body, status, says in [
            ({"users": users, "histories": hists}, 422, "exactly one of users or histories"),
            ({"k": 3}, 422, "exactly one of users or histories"),
            ({"users": ["no-such-user"]}, 404, "user id 'no-such-user' is not known"),
            ({"histories": [[]]}, 422, "each history must hold 1 to"),
        ]:
            r = c.post("/recommend/batch", json=body)
            assert r.status_code == status and says in r.json()["detail"], r.text
            assert set(r.json()) == {"error", "detail"}


def test_batch_body_is_guarded_like_the_other_endpoints(shop, model_dir):
    with (
        registered(),
        running(create_app(model_dir, max_body_bytes=2048)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        users = list(shop.users.raw_ids[:3])
        plain = c.post(
            "/recommend/batch", content=str(users).encode(), headers={"content-type": "text/plain"}
        )
        assert plain.status_code == 415 and plain.json()["error"] == "unsupported_media_type"
        big = c.post("/recommend/batch", json={"users": ["u" * 100] * 40, "k": 2})
        assert big.status_code == 413 and big.json()["error"] == "body_too_large"
        boolean = c.post("/recommend/batch", json={"users": [True], "k": 2})
        assert boolean.status_code == 422 and "detail" in boolean.json()


def _same(a: list[dict], b: list[dict]) -> bool:
    """The same items in the same order, scores equal up to float32 rounding (a batch is one matrix product)."""
    return [x["item"] for x in a] == [x["item"] for x in b] and all(
        abs(x["score"] - y["score"]) <= 1e-5 * max(1.0, abs(y["score"])) for x, y in zip(a, b)
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workers_each_load_the_model_and_access_log_is_opt_in(shop, tmp_path):
    """Two worker processes (uvicorn starts each after its app factory loaded the model) serve the same
    answers, and no request is logged."""
    model_dir = (
        Popularity().fit(shop).save(tmp_path / "popularity")
    )  # registered: workers can load it
    port = _free_port()
    code = (
        "import sys, logging; logging.basicConfig(level=logging.INFO, format='%(process)d %(message)s');"
        "from tests.planted_model import registered\n"
        "with registered():\n"
        "    from embrec.serve import serve; serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), workers=2)"
    )
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(model_dir), str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        model = api.open_model(model_dir)
        user = model.users_.raw_ids[0]
        want = api.recommend(model, user=user, k=3)["items"]
        for _ in range(6):
            assert (
                httpx.post(
                    f"http://127.0.0.1:{port}/recommend", json={"user": user, "k": 3}
                ).json()["items"]
                == want
            )
        deadline = time.monotonic() + 60
        while True:  # uvicorn names each worker process once its app (and so its model) is loaded
            text = log.read_text()
            pids = set(re.findall(r"Started server process \[(\d+)\]", text))
            if len(pids) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(pids) == 2, log.read_text()[-2000:]
        assert '"POST /recommend HTTP/1.1" 200' not in log.read_text()  # no access log by default
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
