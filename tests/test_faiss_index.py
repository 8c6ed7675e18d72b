"""FAISS index: recall against the exact index on planted clusters, exclusions, exact scores,
persistence with the model (save -> load -> same neighbours, no rebuild) and the automatic choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

import embrec
from embrec.data import Ragged
from embrec.datasets import synthetic
from embrec.errors import InvalidParameterError, ModelFileError, NotFittedError
from embrec.index import ExactIndex, FaissIndex
from embrec.models.io import model_files
from tests.conftest import rewrite_model_file
from tests.planted_model import PlantedVectors, registered


def planted(n: int = 10000, d: int = 32, n_queries: int = 300, seed: int = 0):
    """Items in 100 clusters with log-normal norms; queries drawn near the cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, d))
    items = centres[rng.integers(0, 100, n)] + 0.6 * rng.normal(size=(n, d))
    items *= rng.lognormal(0.0, 0.5, size=(n, 1))
    queries = centres[rng.integers(0, 100, n_queries)] + 0.6 * rng.normal(size=(n_queries, d))
    return items.astype(np.float32), queries.astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    items, queries = planted()
    ids = np.arange(1, len(items) + 1) * 3  # ids that are not positions
    return items, queries, ids


@pytest.fixture(scope="module")
def built(data):
    """Indexes over ``data`` with default parameters, built once per (measure, kind)."""
    items, _, ids = data
    cache: dict[tuple[str, str], FaissIndex] = {}

    def get(measure: str, kind: str) -> FaissIndex:
        if (measure, kind) not in cache:
            cache[measure, kind] = FaissIndex(measure=measure, kind=kind).index(items, ids)
        return cache[measure, kind]

    return get


@pytest.mark.parametrize("measure", ["dot", "cosine"])
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_against_exact(data, built, measure, kind):
    items, queries, ids = data
    truth, _ = ExactIndex(measure=measure).index(items, ids).search(queries, 10)
    index = built(measure, kind)
    found, scores = index.search(queries, 10)
    assert not index.is_exact() and len(index) == len(items)
    assert recall(found, truth) >= 0.95
    # scores are the exact scores of the ids returned, best first
    vec = {i: v for i, v in zip(ids, items)}
    for q, row, srow in zip(queries[:20], found[:20], scores[:20]):
        expect = [q @ vec[i] if measure == "dot" else
                  q @ vec[i] / np.linalg.norm(q) / np.linalg.norm(vec[i]) for i in row]
        np.testing.assert_allclose(srow, expect, rtol=1e-4, atol=1e-4)
        assert np.all(np.diff(srow) <= 1e-6)


def test_exclusions_are_never_returned_and_backfilled(data, built):
    items, queries, ids = data
    exact = ExactIndex(measure="dot").index(items, ids)
    top, _ = exact.search(queries, 20)
    rng = np.random.default_rng(1)
    # exclude the exact top-5 of each query, plus a long random list for one query
    lists = [list(t[:5]) for t in top]
    lists[0] = lists[0] + list(rng.choice(ids, 3000, replace=False))
    exclude = Ragged.from_lists(lists)
    truth, _ = exact.search(queries, 10, exclude=exclude)
    found, _ = built("dot", "hnsw").search(queries, 10, exclude=exclude)
    for row, banned in zip(found, lists):
        assert not set(row) & set(banned)
    assert (found >= 0).all()
    assert recall(found, truth) >= 0.95


def test_more_than_available_gives_minus_one():
    items = np.eye(4, dtype=np.float32)
    index = FaissIndex(measure="cosine").index(items, np.array([10, 11, 12, 13]))
    found, scores = index.search(items[:1], 6, exclude=Ragged.from_lists([[10]]))
    assert sorted(found[0, :3]) == [11, 12, 13]
    assert (found[0, 3:] == -1).all() and np.isinf(scores[0, 3:]).all()


def test_state_round_trip_same_neighbours(data, built):
    items, queries, ids = data
    for kind in ("hnsw", "ivf"):
        index = built("dot", kind)
        arrays, meta = index.to_state()
        assert arrays["faiss"].dtype == np.uint8
        again = FaissIndex.from_state(arrays, json.loads(json.dumps(meta)))
        a, sa = index.search(queries, 10)
        b, sb = again.search(queries, 10)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sa, sb)


def test_errors():
    with pytest.raises(NotFittedError):
        FaissIndex().search(np.zeros((1, 4), np.float32), 3)
    index = FaissIndex().index(np.eye(4, dtype=np.float32))
    with pytest.raises(InvalidParameterError, match=r"queries must have shape \(batch, 4\)"):
        index.search(np.zeros((1, 5), np.float32), 3)
    with pytest.raises(InvalidParameterError, match="kind must be one of"):
        FaissIndex(kind="lsh")
    with pytest.raises(InvalidParameterError, match="finite"):
        FaissIndex().index(np.full((3, 2), np.nan, np.float32))
    arrays, meta = index.to_state()
    with pytest.raises(ModelFileError, match="damaged"):
        FaissIndex.from_state({"faiss": arrays["faiss"][:50], "ids": arrays["ids"]}, meta)


# --- with a model -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop():
    return synthetic(n_users=300, n_items=400, n_interactions=6000, n_categories=8, seed=3)


def test_model_chooses_index_by_catalogue_size(shop):
    model = PlantedVectors().fit(shop)
    assert isinstance(model.index_for("dot"), ExactIndex)  # 400 items: below the default threshold
    model.set_index("auto", threshold=100)
    assert isinstance(model.index_for("dot"), FaissIndex)
    model.set_index("exact")
    assert isinstance(model.index_for("cosine", candidates=False), ExactIndex)
    with pytest.raises(InvalidParameterError, match="backend must be one of"):
        model.set_index("annoy")
    with pytest.raises(InvalidParameterError, match="unknown option"):
        model.set_index("hnsw", ef=3)


def test_model_recommendations_match_exact_and_survive_save_load(shop, tmp_path):
    exact = PlantedVectors().fit(shop)
    model = PlantedVectors().fit(shop).set_index("hnsw", ef_search=200)
    users = list(shop.users.raw_ids[:50])
    want = exact.recommend(users, k=10, exclude_seen=True)
    got = model.recommend(users, k=10, exclude_seen=True)
    assert recall(got.ids, want.ids) >= 0.95
    sim = model.similar_items(list(shop.items.raw_ids[:20]), k=5, measure="cosine")
    with registered():
        model.save(tmp_path / "m")
        meta = json.loads((model_files(tmp_path / "m") / "index.json").read_text())
        assert meta["config"]["backend"] == "hnsw" and "dot.candidates" in meta["built"]
        assert "cosine.items" in meta["built"]  # built by similar_items above, saved too
        loaded = embrec.load(tmp_path / "m")
    cached = loaded.__dict__["_indexes"]
    assert isinstance(cached[("dot", True)], FaissIndex)  # restored, not rebuilt
    again = loaded.recommend(users, k=10, exclude_seen=True)
    np.testing.assert_array_equal(again.ids, got.ids)
    np.testing.assert_allclose(again.scores, got.scores)
    sim2 = loaded.similar_items(list(shop.items.raw_ids[:20]), k=5, measure="cosine")
    np.testing.assert_array_equal(sim2.ids, sim.ids)


def test_damaged_index_in_model_directory(shop, tmp_path):
    model = PlantedVectors().fit(shop).set_index("hnsw")
    with registered():
        model.save(tmp_path / "m")
        rewrite_model_file(tmp_path / "m", "index.json", json.dumps({"config": {"backend": "hnsw"}, "built": {
            "dot.candidates": {"measure": "dot"}}}).encode())
        with pytest.raises(ModelFileError, match="FAISS index"):
            embrec.load(tmp_path / "m")
