"""The served request path without torch dispatch (issue 12 item 3): each shortcut equals the reference it
replaces -- the NumPy user tower equals the torch module, one-row top-k equals a full sort, orjson responses
equal json.dumps' bytes -- and a non-finite embedding is refused, never sent as null."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from embrec import api
from embrec.data import Ragged
from embrec.datasets import synthetic
from embrec.errors import ModelStateError
from embrec.index.exact import ExactIndex
from embrec.index.topk import top_k_rows
from embrec.models.two_tower import TwoTower
from embrec.nn.inference import DenseStack
from embrec.nn.towers import mlp
from embrec.serve.app import encode_json


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_dense_stack_equals_the_torch_mlp_it_copies():
    torch.manual_seed(0)
    seq = mlp(
        [12, 32, 16, 8], dropout=0.3, final_activation=True
    ).eval()  # Linear, ReLU, Dropout x3
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    with torch.no_grad():
        ref = seq(torch.from_numpy(x)).numpy()
    got = DenseStack.from_sequential(seq)(x)
    assert got.dtype == np.float32 and got.shape == (5, 8)
    assert (ref == 0).any()  # the final ReLU clips something: the activation flags are exercised
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # the input is not modified in place
    x0 = x.copy()
    DenseStack.from_sequential(seq)(x)
    np.testing.assert_array_equal(x, x0)


def test_dense_stack_refuses_a_module_it_does_not_know():
    with pytest.raises(TypeError, match="LayerNorm"):
        DenseStack.from_sequential(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))


@pytest.fixture(scope="module")
def two_tower():
    log = synthetic(n_users=120, n_items=50, n_interactions=1500, n_categories=4, seed=2)
    return TwoTower(
        dim=8, feature_dim=4, item_hidden=(16,), user_hidden=(16,), epochs=2, seed=0
    ).fit(log)


def test_two_tower_user_vectors_equal_the_torch_towers_one_at_a_time_and_batched(two_tower):
    rows = np.arange(1, two_tower.users_.size)
    hist = two_tower.seen_.select(rows)
    with torch.no_grad():
        vecs = torch.from_numpy(two_tower._item_vectors())
        values, offsets = hist.to_torch()
        ref = two_tower.net_.user_ragged(vecs, values, offsets).numpy()  # the trained torch module
    batched = two_tower._user_vectors(rows, hist)
    single = np.concatenate(
        [two_tower._user_vectors(rows[i : i + 1], hist.select([i])) for i in range(rows.size)]
    )
    np.testing.assert_allclose(batched, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, ref, rtol=1e-5, atol=1e-6)
    # an empty history pools to zero in both, then goes through the MLP
    empty = Ragged.from_lists([[]])
    with torch.no_grad():
        zero = two_tower.net_.user_mlp(torch.zeros(1, 8)).numpy()
    np.testing.assert_allclose(
        two_tower._user_vectors(np.zeros(1, dtype=np.int64), empty), zero, rtol=1e-5, atol=1e-6
    )


def test_two_tower_weights_copy_follows_a_refit(two_tower):
    """The NumPy copy is tied to the item cache: after a refit (new weights) the user vectors are the new
    torch module's, not the old copy's."""
    log = synthetic(n_users=120, n_items=50, n_interactions=1500, n_categories=4, seed=2)
    model = TwoTower(
        dim=8, feature_dim=4, item_hidden=(16,), user_hidden=(16,), epochs=1, seed=0
    ).fit(log)
    hist = model.seen_.select(np.array([1]))
    before = model._user_vectors(np.array([1]), hist)
    model.seed = 7
    model.fit(log)
    with torch.no_grad():
        vecs = torch.from_numpy(model._item_vectors())
        values, offsets = hist.to_torch()
        ref = model.net_.user_ragged(vecs, values, offsets).numpy()
    after = model._user_vectors(np.array([1]), hist)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-6)


def test_one_row_top_k_equals_a_full_sort_with_ties_nan_and_inf():
    rng = np.random.default_rng(4)
    for trial in range(400):
        n = int(rng.integers(2, 80))
        s = (rng.integers(0, 3, size=(1, n)) if trial % 2 else rng.normal(size=(1, n))).astype(
            np.float32
        )
        if trial % 3 == 0:
            s[0, rng.integers(0, n, size=2)] = np.nan  # NaN counts as -inf
        if trial % 5 == 0:
            s[0, : n // 3] = -np.inf
        k = int(rng.integers(1, n + 1))
        ref_s = np.where(np.isnan(s), -np.inf, s)
        ref = np.lexsort((np.arange(n), -ref_s[0]))[:k]
        got, vals = top_k_rows(s, k)
        assert got.tolist() == [ref.tolist()], trial
        np.testing.assert_array_equal(vals[0], ref_s[0, ref])


def test_exact_index_one_query_equals_a_full_sort_of_the_products():
    rng = np.random.default_rng(5)
    items = rng.integers(-2, 3, size=(300, 6)).astype(np.float32)  # integer products: many ties
    ids = np.arange(1, 301)
    index = ExactIndex(measure="dot").index(items, ids)
    for _ in range(20):
        q = rng.integers(-1, 2, size=(1, 6)).astype(np.float32)
        deny = rng.choice(ids, 5, replace=False)
        found, scores = index.search(q, 9, exclude=Ragged.from_lists([deny.tolist()]))
        s = (items @ q[0]).astype(np.float64)
        s[deny - 1] = -np.inf
        ref = np.lexsort((ids, -s))[:9]
        assert found[0].tolist() == ids[ref].tolist()
        np.testing.assert_array_equal(scores[0], s[ref].astype(np.float32))


def test_responses_hold_the_values_json_dumps_would_write():
    content = {
        "model": "two-tower",
        "user": None,
        "history": ["I1", 7],
        "k": 2,
        "exclude_seen": True,
        "items": [
            {"item": "I9", "score": 0.1 + 0.2, "label": 'crème brûlée \u2028 "x"'},
            {"item": 12, "score": -3.0e-7, "label": None},
        ],
    }
    expected = json.dumps(
        content, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    body = encode_json(content)
    assert json.loads(body) == json.loads(expected) == content  # every float round-trips exactly
    assert "crème brûlée".encode() in body  # UTF-8, not \u escapes
    scores = [x["score"] for x in json.loads(body)["items"]]
    assert scores == [0.30000000000000004, -3.0e-7]
    assert json.loads(encode_json({"big": 2**70})) == {
        "big": 2**70
    }  # past orjson's 64 bits: json.dumps
    with pytest.raises(ValueError):
        encode_json({"big": 2**70, "x": float("nan")})  # json.dumps' rule holds on that path


def test_a_non_finite_embedding_is_refused_not_sent_as_null(two_tower):
    history = [two_tower.items_.raw_ids[0]]
    assert np.isfinite(api.embed(two_tower, history=history)["vector"]).all()
    vecs = two_tower._item_vectors()
    saved = vecs[1].copy()
    try:
        vecs[1] = np.nan
        with pytest.raises(ModelStateError, match="non-finite embedding"):
            api.embed(two_tower, history=history)
    finally:
        vecs[1] = saved


def test_without_orjson_responses_are_json_dumps_bytes(monkeypatch):
    """An environment installed before orjson was declared still serves (json.dumps, slower)."""
    import embrec.serve.app as app_module

    monkeypatch.setattr(app_module, "orjson", None)
    content = {"items": [{"item": "I9", "score": -3.0e-7, "label": "crème"}], "user": None}
    assert (
        encode_json(content)
        == json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    )
    with pytest.raises(ValueError):
        encode_json({"x": float("inf")})


def test_a_serving_process_freezes_what_the_model_load_left(two_tower, tmp_path):
    """serve() and every --workers process settle once after loading: the objects alive then (the model
    among them) leave the garbage collector's scans."""
    import gc

    from embrec.serve.app import _settled, create_app

    two_tower.save(tmp_path / "tt")
    app = create_app(tmp_path / "tt")
    before = gc.get_freeze_count()
    try:
        model = app.state.model
        assert gc.is_tracked(model) and any(o is model for o in gc.get_objects())
        assert _settled(app) is app
        assert gc.get_freeze_count() > before
        assert not any(
            o is model for o in gc.get_objects()
        )  # in the permanent generation: never scanned
    finally:
        gc.unfreeze()
