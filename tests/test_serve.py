"""The HTTP service, tested over real HTTP: a uvicorn server on 127.0.0.1 (a free port, in a thread)
and httpx requests. Every endpoint, every error class, concurrent requests, bad model directories."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn

from embrec import api
from embrec.baselines import Popularity
from embrec.datasets import synthetic
from embrec.errors import ModelFileError
from embrec.models.io import model_files
from embrec.serve import create_app
from tests.planted_model import PlantedVectors, registered


@contextmanager
def running(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 at a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def shop():
    return synthetic(n_users=200, n_items=300, n_interactions=5000, n_categories=6, seed=5)


@pytest.fixture(scope="module")
def served(shop, tmp_path_factory):
    """(base URL, the model as loaded from its directory) for a planted embedding model."""
    path = tmp_path_factory.mktemp("serve") / "planted"
    with registered():
        PlantedVectors().fit(shop).save(path)
        model = api.open_model(path)
        with running(create_app(path)) as url:
            yield url, model


@pytest.fixture(scope="module")
def client(served):
    with httpx.Client(base_url=served[0], timeout=30) as c:
        yield c


def test_healthz(client, shop):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"] == "planted"
    assert body["n_items"] == shop.n_items == 300 and body["n_users"] == 200
    assert body["embrec_version"] and body["trained_with"] and body["index"] == "exact"
    assert body["can_similar"] and body["can_embed"]


def test_openapi_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/recommend", "/similar", "/embed"} <= set(spec["paths"])
    assert "RecommendRequest" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_recommend_user_and_history_match_the_library(client, served, shop):
    _, model = served
    user = shop.users.raw_ids[3]
    r = client.post("/recommend", json={"user": user, "k": 5, "exclude_seen": True})
    assert r.status_code == 200
    want = model.recommend([user], k=5, exclude_seen=True)
    assert [x["item"] for x in r.json()["items"]] == list(want.ids[0])
    np.testing.assert_allclose([x["score"] for x in r.json()["items"]], want.scores[0], rtol=1e-6)
    seen = set(model.items_.decode(model.seen_[model.users_.encode([user])[0]]))
    assert not seen & {x["item"] for x in r.json()["items"]}
    # more than the catalogue (300 items): every item the user has not bought, ranked, not an error
    r = client.post("/recommend", json={"user": user, "k": 301, "exclude_seen": True})
    assert r.status_code == 200 and len(r.json()["items"]) == 300 - len(seen)
    hist = list(shop.items.raw_ids[:3])
    r = client.post("/recommend", json={"history": hist, "k": 4})  # exclude_seen is on by default
    assert r.json()["exclude_seen"] is True and not set(hist) & {x["item"] for x in r.json()["items"]}
    assert [x["item"] for x in r.json()["items"]] == list(model.recommend(histories=[hist], k=4,
                                                                          exclude_seen=True).ids[0])
    r = client.post("/recommend", json={"history": hist, "k": 4, "exclude_seen": False})
    assert [x["item"] for x in r.json()["items"]] == list(model.recommend(histories=[hist], k=4).ids[0])


def test_similar_and_embed(client, served, shop):
    _, model = served
    item = shop.items.raw_ids[7]
    for measure in ("cosine", "dot"):
        r = client.post("/similar", json={"item": item, "k": 6, "measure": measure})
        assert r.status_code == 200
        got = [x["item"] for x in r.json()["items"]]
        assert got == list(model.similar_items([item], k=6, measure=measure).ids[0]) and item not in got
    # planted clusters: cosine neighbours share the item's category
    cat = model.cluster_[model.items_.encode([item])[0]]
    got = client.post("/similar", json={"item": item, "k": 5}).json()["items"]
    assert all(model.cluster_[model.items_.encode([x["item"]])[0]] == cat for x in got)
    hist = list(shop.items.raw_ids[10:13])
    body = client.post("/embed", json={"history": hist}).json()
    assert body["dim"] == 16 == len(body["vector"])
    np.testing.assert_allclose(body["vector"], model.user_embedding(history=hist), rtol=1e-6)


@pytest.mark.parametrize("path, body, status, kind, says", [
    ("/recommend", {"user": "no-such-user"}, 404, "unknown_id", "user id 'no-such-user' is not known"),
    ("/recommend", {"history": ["I001", "no-such-item"]}, 404, "unknown_id", "item id 'no-such-item'"),
    ("/similar", {"item": "no-such-item"}, 404, "unknown_id", "item id 'no-such-item'"),
    ("/embed", {"history": ["no-such-item"]}, 404, "unknown_id", "item id 'no-such-item'"),
    ("/recommend", {"user": "U001", "k": 0}, 422, "invalid_request", "k: Input should be greater than or equal to 1"),
    ("/recommend", {"user": "U001", "k": "ten"}, 422, "invalid_request", "k: Input should be a valid integer"),
    ("/recommend", {"user": "U001", "k": 5000}, 422, "invalid_request", "k: Input should be less than or equal to 1000"),
    ("/similar", {"item": "I001", "k": -1}, 422, "invalid_request", "k: Input should be greater than or equal to 1"),
    ("/recommend", {}, 422, "invalid_request", "give exactly one of user or history; received neither"),
    ("/recommend", {"user": "U001", "history": ["I001"]}, 422, "invalid_request", "received both"),
    ("/recommend", {"history": []}, 422, "invalid_request", "history: List should have at least 1 item"),
    ("/embed", {"history": []}, 422, "invalid_request", "history: List should have at least 1 item"),
    ("/embed", {}, 422, "invalid_request", "history: Field required"),
    ("/embed", {"history": ["I001"] * 10_001}, 422, "invalid_request", "history: List should have at most 10000"),
    ("/recommend", {"history": "I001"}, 422, "invalid_request", "history: Input should be a valid list"),
    ("/similar", {"item": "I001", "measure": "euclid"}, 422, "invalid_request", "measure: Input should be 'cosine' or 'dot'"),
    ("/similar", {"item": "I001", "kk": 3}, 422, "invalid_request", "kk: Extra inputs are not permitted"),
    ("/similar", [1, 2], 422, "invalid_request", "valid dictionary"),
])
def test_errors_are_4xx_json_naming_the_problem(client, path, body, status, kind, says):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == kind
    assert says in r.json()["detail"]


def test_malformed_json_and_wrong_method(client):
    r = client.post("/recommend", content=b'{"user": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "valid JSON" in r.json()["detail"]
    assert client.get("/recommend").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_concurrent_requests_all_answered_correctly(served, shop):
    url, model = served
    users = list(shop.users.raw_ids[:40])
    want = {u: list(model.recommend([u], k=5, exclude_seen=True).ids[0]) for u in users}

    def ask(u):
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post("/recommend", json={"user": u, "k": 5})
            bad = c.post("/similar", json={"item": "nope"})
            return u, r.status_code, [x["item"] for x in r.json()["items"]], bad.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(ask, users * 2))
    assert len(results) == 80
    for u, status, items, bad in results:
        assert status == 200 and items == want[u] and bad == 404


def test_model_without_embeddings(shop, tmp_path):
    Popularity().fit(shop).save(tmp_path / "pop")
    with running(create_app(tmp_path / "pop")) as url, httpx.Client(base_url=url) as c:
        health = c.get("/healthz").json()
        assert health["model"] == "popularity" and health["index"] == "scores" and not health["can_similar"]
        top = c.post("/recommend", json={"history": ["I001"], "k": 3}).json()["items"]
        assert [x["item"] for x in top] == list(shop.items.decode(np.argsort(-shop.item_counts())[:3]))
        r = c.post("/similar", json={"item": "I001"})
        assert r.status_code == 422 and "need a model with item embeddings" in r.json()["detail"]
        r = c.post("/embed", json={"history": ["I001"]})
        assert r.status_code == 422 and r.json()["error"] == "invalid_parameter"


def test_missing_or_damaged_model_directory_fails_at_start_up(shop, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        create_app(tmp_path / "nowhere")
    Popularity().fit(shop).save(tmp_path / "pop")
    weights = model_files(tmp_path / "pop") / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ModelFileError, match="weights.safetensors"):
        create_app(tmp_path / "pop")
    (tmp_path / "pop2").mkdir()  # another tool's folder with a config.json
    (tmp_path / "pop2" / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelFileError, match="not an embrec model directory"):
        create_app(tmp_path / "pop2")
