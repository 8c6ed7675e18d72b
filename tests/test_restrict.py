"""Candidate restriction at search time: an allow-list (``items``) and a deny-list (``exclude_items``)
applied inside the exact and FAISS indexes, so a restricted query still returns k items; through the
model, the API, the CLI and HTTP."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from embrec import api
from embrec.baselines import Popularity
from embrec.cli import app as cli_app
from embrec.data import Interactions, Ragged
from embrec.datasets import synthetic
from embrec.errors import UnknownIdError
from embrec.index import faiss_index
from embrec.index.exact import ExactIndex
from embrec.index.faiss_index import FaissIndex
from embrec.serve import create_app
from tests.planted_model import PlantedVectors, registered
from tests.test_serve import running

# item "i<c>" is bought c times: popularity order i6 > i5 > ... > i1
COUNTS = {"i1": 1, "i2": 2, "i3": 3, "i4": 4, "i5": 5, "i6": 6}


@pytest.fixture(scope="module")
def popular():
    pairs = [(f"u{n}", item) for item, c in COUNTS.items() for n in range(c)]
    log = Interactions.from_frame(
        pd.DataFrame(pairs, columns=["user", "item"]), user_col="user", item_col="item"
    )
    return Popularity().fit(log)


@pytest.fixture(scope="module")
def shop():
    return synthetic(n_users=120, n_items=200, n_interactions=3000, n_categories=5, seed=3)


@pytest.fixture(scope="module")
def planted(shop):
    with registered():
        return PlantedVectors().fit(shop)


def test_allow_list_of_three_returns_exactly_those_in_score_order(popular):
    recs = popular.recommend(histories=[["i1"]], k=3, items=["i2", "i5", "i3"])
    assert list(recs.ids[0]) == ["i5", "i3", "i2"]
    assert recs.scores[0].tolist() == [5.0, 3.0, 2.0]
    # k beyond the allow-list: the missing slots are empty, never an item outside the list
    recs = popular.recommend(histories=[["i1"]], k=5, items=["i2", "i5", "i3"])
    assert list(recs.ids[0][:3]) == ["i5", "i3", "i2"] and list(recs.rows[0][3:]) == [0, 0]


def test_deny_list_removes_the_top_item_and_returns_the_next_k(popular):
    recs = popular.recommend(histories=[["i1"]], k=3, exclude_items=["i6"])
    assert list(recs.ids[0]) == ["i5", "i4", "i3"]
    both = popular.recommend(
        histories=[["i1"]], k=2, items=["i6", "i4", "i2"], exclude_items=["i6"]
    )
    assert list(both.ids[0]) == ["i4", "i2"]


def test_unknown_or_malformed_ids_in_the_lists_are_errors(popular):
    with pytest.raises(UnknownIdError, match="nope"):
        popular.recommend(histories=[["i1"]], k=2, items=["i2", "nope"])
    with pytest.raises(UnknownIdError, match="nope"):
        api.recommend(popular, history=["i1"], k=2, exclude_items=["nope"])
    with pytest.raises(Exception, match="items must hold at least one"):
        api.recommend(popular, history=["i1"], k=2, items=[])


def _vectors(n: int = 600, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_exact_index_restricted_equals_brute_force_and_keeps_the_tie_rule():
    emb = _vectors()
    ids = np.arange(1, 601)
    q = _vectors(5, seed=1)
    allow = np.random.default_rng(2).choice(ids, 40, replace=False)
    exclude = Ragged.from_lists([[int(allow[0])], [], [int(allow[1]), int(allow[2])], [], []])
    index = ExactIndex(block_size=64).index(
        emb, ids
    )  # several blocks: the running top-k across them
    got_ids, got_s = index.search(q, 10, exclude=exclude, allow=allow)
    for b in range(5):
        ok = np.setdiff1d(allow, exclude.values[exclude.offsets[b] : exclude.offsets[b + 1]])
        s = emb[ok - 1] @ q[b]
        best = ok[np.argsort(-s, kind="stable")[:10]]
        assert got_ids[b].tolist() == best.tolist()
        np.testing.assert_allclose(got_s[b], np.sort(s)[::-1][:10], rtol=1e-5)
    # ties: four identical vectors, allowed out of order -> returned by the lower position first
    tie = np.ones((20, 3), dtype=np.float32)
    tie[:4] = 5.0
    got, _ = (
        ExactIndex(block_size=3)
        .index(tie, np.arange(20))
        .search(np.ones((1, 3), np.float32), 3, allow=np.array([3, 17, 1, 2, 0]))
    )
    assert got[0].tolist() == [0, 1, 2]
    # fewer allowed than k: the rest is -1, nothing outside the list
    got, s = index.search(q[:1], 5, allow=np.array([7, 9]))
    assert sorted(got[0][:2].tolist()) == [7, 9] and got[0][2:].tolist() == [-1, -1, -1]
    assert np.isneginf(s[0][2:]).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("small_allow", [True, False])
def test_faiss_restricted_query_returns_k_and_agrees_with_exact(kind, small_allow, monkeypatch):
    if not small_allow:  # force the IDSelector path of a long allow-list
        monkeypatch.setattr(faiss_index, "EXACT_ALLOW", 5)
    emb = _vectors(2000, 16)
    ids = np.arange(1, 2001)
    q = _vectors(20, 16, seed=4)
    allow = np.random.default_rng(5).choice(ids, 60, replace=False)
    exclude = Ragged.from_lists([[int(allow[i])] for i in range(20)])
    exact_ids, exact_s = ExactIndex().index(emb, ids).search(q, 10, exclude=exclude, allow=allow)
    opts = (
        {"nlist": 20, "nprobe": 20} if kind == "ivf" else {}
    )  # ivf visiting every cell: exhaustive
    approx_ids, approx_s = (
        FaissIndex(kind=kind, **opts).index(emb, ids).search(q, 10, exclude=exclude, allow=allow)
    )
    assert (
        approx_ids >= 0
    ).all()  # k results for every query although only 3 % of items are allowed
    assert np.isin(approx_ids, allow).all()
    for b in range(20):
        assert int(allow[b]) not in approx_ids[b]
    if kind == "ivf" or small_allow:
        assert (approx_ids == exact_ids).all()
        np.testing.assert_allclose(approx_s, exact_s, rtol=1e-5)
    else:  # a filtered graph walk: near-exact recall
        overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids)])
        assert overlap >= 0.9


def test_embedding_model_restricted_recommend_returns_k_with_exact_and_faiss(shop, planted):
    allow = list(shop.items.raw_ids[10:40])
    users = list(shop.users.raw_ids[:5])
    exact = planted.recommend(users, k=8, exclude_seen=True, items=allow, exclude_items=allow[:2])
    assert (exact.rows > 0).all() and all(set(r) <= set(allow[2:]) for r in exact.ids)
    # equal to a dense reference: scores masked outside the allow-list and on seen / denied items
    user_rows, hist = planted.queries(users)
    dense = np.asarray(planted._scores(user_rows, hist))
    keep = np.zeros(dense.shape[1], bool)
    keep[planted.items_.encode(allow[2:])] = True
    dense[:, ~keep] = -np.inf
    dense[hist.row_ids, hist.values] = -np.inf
    for b in range(5):
        want = np.argsort(-dense[b], kind="stable")[:8]
        assert exact.rows[b].tolist() == want.tolist()
    try:
        planted.set_index("ivf", nlist=4, nprobe=4)
        approx = planted.recommend(
            users, k=8, exclude_seen=True, items=allow, exclude_items=allow[:2]
        )
    finally:
        planted.set_index("exact")
    assert (approx.rows == exact.rows).all()
    near = planted.similar_items([allow[5]], k=4, candidates=allow[:10])
    assert set(near.ids[0]) <= set(allow[:10]) - {allow[5]} and len(near.ids[0]) == 4


def test_http_and_cli_round_trip(shop, planted, tmp_path):
    path = tmp_path / "planted"
    with registered():
        planted.save(path)
    allow = [to_plain(x) for x in shop.items.raw_ids[20:23]]
    user = to_plain(shop.users.raw_ids[0])
    want = api.recommend(planted, user=user, k=3, exclude_seen=False, items=allow)["items"]
    assert sorted(r["item"] for r in want) == sorted(allow)
    with (
        registered(),
        running(create_app(path)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        r = c.post("/recommend", json={"user": user, "k": 3, "exclude_seen": False, "items": allow})
        assert r.status_code == 200, r.text
        assert [x["item"] for x in r.json()["items"]] == [x["item"] for x in want]
        r = c.post(
            "/recommend",
            json={"user": user, "k": 3, "exclude_seen": False, "exclude_items": [want[0]["item"]]},
        )
        assert (
            want[0]["item"] not in [x["item"] for x in r.json()["items"]]
            and len(r.json()["items"]) == 3
        )
        r = c.post(
            "/recommend/batch",
            json={"users": [user, user], "k": 2, "exclude_seen": False, "items": allow},
        )
        assert [[x["item"] for x in row["items"]] for row in r.json()["results"]] == [
            [x["item"] for x in want[:2]]
        ] * 2
        r = c.post("/similar", json={"item": allow[0], "k": 2, "items": allow})
        assert r.status_code == 200 and sorted(x["item"] for x in r.json()["items"]) == sorted(
            allow[1:]
        )
        for body, status, says in [
            ({"user": user, "items": ["no-such-item"]}, 404, "no-such-item"),
            ({"user": user, "exclude_items": [True]}, 422, "boolean"),
            ({"user": user, "items": []}, 422, "items"),
        ]:
            r = c.post("/recommend", json=body)
            assert r.status_code == status and says in r.json()["detail"], r.text
            assert set(r.json()) == {"error", "detail"}
    with registered():
        res = CliRunner().invoke(
            cli_app,
            [
                "recommend",
                str(path),
                "--user",
                str(user),
                "-k",
                "3",
                "--include-seen",
                "--items",
                ",".join(map(str, allow[:2])),
                "--items",
                str(allow[2]),
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
        assert [x["item"] for x in json.loads(res.stdout)["items"]] == [x["item"] for x in want]
        res = CliRunner().invoke(
            cli_app, ["recommend", str(path), "--user", str(user), "--items", "nope"]
        )
        assert res.exit_code == 1 and "nope" in res.output


def to_plain(x):
    return x.item() if isinstance(x, np.generic) else x


def test_similar_users_matches_brute_force_cosine_and_serves(shop, planted, tmp_path):
    users = list(shop.users.raw_ids[:6])
    got = planted.similar_users(users, k=5)
    rows = np.arange(1, planted.users_.size)
    vecs = np.asarray(planted._user_vectors(rows, planted.seen_.select(rows)), dtype=np.float64)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    for b, r in enumerate(planted.users_.encode(users)):
        s = unit @ unit[r - 1]
        s[r - 1] = -np.inf  # itself excluded
        want = rows[np.argsort(-s, kind="stable")[:5]]
        assert got.rows[b].tolist() == want.tolist()
        np.testing.assert_allclose(got.scores[b], s[want - 1], rtol=1e-4)
    res = api.similar_users(planted, user=to_plain(users[0]), k=3, measure="dot")
    assert len(res["users"]) == 3 and res["user"] == to_plain(users[0])
    assert to_plain(users[0]) not in [u["user"] for u in res["users"]]
    with pytest.raises(UnknownIdError, match="nobody"):
        api.similar_users(planted, user="nobody", k=3)
    with pytest.raises(Exception, match="similar users need a model with user embeddings"):
        api.similar_users(Popularity().fit(shop), user=to_plain(users[0]), k=3)
    path = tmp_path / "planted"
    with registered():
        planted.save(path)
    want = [to_plain(u) for u in got.ids[0][:3]]
    with (
        registered(),
        running(create_app(path)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        r = c.post("/similar_users", json={"user": to_plain(users[0]), "k": 3})
        assert r.status_code == 200, r.text
        assert [u["user"] for u in r.json()["users"]] == want
        r = c.post("/similar_users", json={"user": True})
        assert r.status_code == 422 and set(r.json()) == {"error", "detail"}
        r = c.post("/similar_users", json={"user": "nobody"})
        assert r.status_code == 404 and "nobody" in r.json()["detail"]
    with registered():
        res = CliRunner().invoke(
            cli_app, ["similar-users", str(path), "--user", str(users[0]), "-k", "3", "--json"]
        )
        assert res.exit_code == 0, res.output
        assert [u["user"] for u in json.loads(res.stdout)["users"]] == want


def test_item_item_similar_takes_the_lists_too():
    from embrec.baselines import ItemKNN

    # "a" co-occurs with b (3 users), c (2), d (1)
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "b")]
    pairs += [("u4", "a"), ("u4", "c"), ("u5", "a"), ("u5", "c"), ("u6", "a"), ("u6", "d")]
    log = Interactions.from_frame(
        pd.DataFrame(pairs, columns=["user", "item"]), user_col="user", item_col="item"
    )
    model = ItemKNN().fit(log)
    full = [r["item"] for r in api.similar(model, item="a", k=3)["items"]]
    assert full[0] == "b"
    got = api.similar(model, item="a", k=2, exclude_items=["b"])["items"]
    assert [r["item"] for r in got] == [x for x in full if x != "b"][:2]
    got = api.similar(model, item="a", k=1, items=["d", "c"])["items"]
    assert [r["item"] for r in got] == [next(x for x in full if x in ("c", "d"))]
