"""Core contracts: IdVocab, Ragged, Interactions, the exact index, the base class and model files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import embrec
from embrec import IdVocab, Interactions, Ragged
from embrec.baselines import Popularity
from embrec.errors import (
    DataError,
    InvalidParameterError,
    ModelFileError,
    NotFittedError,
    UnknownIdError,
)
from embrec.index import ExactIndex
from embrec.models.io import model_files
from tests.conftest import make_log


def test_vocab_roundtrip_and_padding():
    v = IdVocab.from_values(["u7", "u3", "u7"], name="user")
    assert v.n_ids == 2 and v.size == 3
    assert v.encode(["u3", "u7"]).tolist() == [1, 2]
    assert v.encode(["nope"], unknown="zero").tolist() == [0]
    assert v.decode([0, 1, 2]).tolist() == [None, "u3", "u7"]
    with pytest.raises(UnknownIdError, match="user id 'nope' is not known"):
        v.encode(["nope"])
    assert IdVocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_int_vocab_accepts_integral_floats_and_strings():
    v = IdVocab.from_values([17850, 12346])
    assert v.kind == "int"
    assert v.encode([17850.0, "12346"]).tolist() == [2, 1]


def test_ragged_layout_select_tail_pad():
    r = Ragged.from_lists([[7, 3], [5], [], [2, 9, 4]])
    assert r.values.tolist() == [7, 3, 5, 2, 9, 4] and r.offsets.tolist() == [0, 2, 3, 3, 6]
    assert r.select([3, 0, 2]).to_lists() == [[2, 9, 4], [7, 3], []]
    assert r.tail(2).to_lists() == [[7, 3], [5], [], [9, 4]]
    assert r.to_padded(max_len=2, align="right").tolist() == [[7, 3], [0, 5], [0, 0], [9, 4]]
    with pytest.raises(DataError):
        Ragged(np.array([1, 2]), np.array([0, 3]))


def test_interactions_views_and_unknown_users():
    frame = pd.DataFrame(
        {
            "u": [5, 3, 5, np.nan],
            "i": ["a", "b", "a", "c"],
            "t": ["2011-01-03", "2011-01-02", "2011-01-01", "2011-01-04"],
            "g": [1, 1, 2, 2],
        }
    )
    x = Interactions.from_frame(
        frame, user_col="u", item_col="i", time_col="t", group_col="g", missing_users="unknown"
    )
    assert x.user.tolist() == [2, 1, 2, 0]  # 3 -> 1, 5 -> 2, missing -> 0
    assert x.group_offsets().tolist() == [0, 2, 4]
    assert x.to_csr().toarray()[2].tolist() == [0, 2, 0, 0]
    assert x.user_histories().to_lists() == [[3], [2], [1, 1]]
    c = x.subset(x.item != 1).compact()
    assert c.items.raw_ids.tolist() == ["b", "c"] and c.users.raw_ids.tolist() == [3]
    assert c.user.tolist() == [1, 0] and c.item.tolist() == [1, 2]
    with pytest.raises(DataError, match="user_col='usr' is not a column"):
        Interactions.from_frame(frame, user_col="usr", item_col="i")
    with pytest.raises(DataError, match="missing ids"):
        Interactions.from_frame(frame, user_col="u", item_col="i")


def test_exact_index_equals_dense_argsort():
    rng = np.random.default_rng(1)
    items, queries = rng.normal(size=(503, 8)), rng.normal(size=(37, 8))
    excl = Ragged.from_lists([rng.choice(503, 5, replace=False) for _ in range(37)])
    for measure in ("dot", "cosine"):
        idx = ExactIndex(measure=measure, block_size=50, query_batch=16).index(
            items, np.arange(503) + 1
        )
        ids, scores = idx.search(queries, 10, exclude=Ragged(excl.values + 1, excl.offsets))
        a, b = items, queries
        if measure == "cosine":
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
        dense = b @ a.T
        dense[excl.row_ids, excl.values] = -np.inf
        expect = np.argsort(-dense, axis=1)[:, :10] + 1
        assert (ids == expect).all()
        np.testing.assert_allclose(scores, np.take_along_axis(dense, expect - 1, 1), rtol=1e-5)
    with pytest.raises(NotFittedError):
        ExactIndex().search(queries, 3)


def test_popularity_recommend_save_load(tmp_path):
    log = make_log([(1, "a"), (2, "a"), (2, "b"), (3, "a"), (3, "c"), (3, "b")])
    model = Popularity().fit(log)
    recs = model.recommend(users=[1], k=2)
    assert recs.ids.tolist() == [["a", "b"]]
    assert model.recommend(users=[1], k=2, exclude_seen=True).ids.tolist() == [["b", "c"]]
    assert model.recommend(histories=[["c"]], k=1).ids.tolist() == [["a"]]
    with pytest.raises(UnknownIdError):
        model.recommend(users=[99])
    with pytest.raises(InvalidParameterError, match="k must be"):
        model.recommend(users=[1], k=0)
    assert model.recommend(users=[1], k=4).ids.tolist() == [["a", "b", "c"]]  # clamped to the 3 items
    assert model.recommend(users=[1], k=4, exclude_seen=True).ids.tolist() == [["b", "c", None]]
    with pytest.raises(InvalidParameterError, match="empty history"):
        model.recommend(histories=[[]])
    out = model.save(tmp_path / "pop")
    again = embrec.load(out)
    assert (
        again.recommend(users=[3], k=3).ids.tolist() == model.recommend(users=[3], k=3).ids.tolist()
    )
    (model_files(out) / "config.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="config.json.* is damaged"):
        embrec.load(out)
    with pytest.raises(ModelFileError, match="does not exist"):
        embrec.load(tmp_path / "nothing")
    with pytest.raises(NotFittedError):
        Popularity().recommend(users=[1])


def test_model_saved_with_cuda_device_loads_without_cuda(tmp_path):
    """A model directory written on a GPU machine (params device="cuda") loads and scores on a CPU-only one."""
    import torch

    from embrec.models.registry import create

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    log = make_log([(u, i) for u in range(6) for i in range(u % 3, 6, 2)])
    model = create("rnn", epochs=1, device="cpu").fit(log)
    model.device = "cuda"  # what a GPU machine's save writes into config.json
    out = model.save(tmp_path / "m")
    model.device = "cpu"
    assert json.loads((model_files(out) / "config.json").read_text())["params"]["device"] == "cuda"
    again = embrec.load(out)
    assert again.device == "cpu"
    users = model.users_.raw_ids.tolist()
    np.testing.assert_allclose(
        again.recommend(users=users, k=3).scores, model.recommend(users=users, k=3).scores
    )


def test_user_histories_order_by_time_then_log_position_against_python_sort():
    rng = np.random.default_rng(3)
    n, n_users, n_items = 3000, 40, 25
    user = rng.integers(0, n_users + 1, n)  # row 0: events without a known user
    item = rng.integers(1, n_items + 1, n)
    ts = rng.integers(0, 50, n).astype("datetime64[D]").astype("datetime64[ns]")  # many equal times
    log = Interactions(
        user, item, IdVocab(np.arange(n_users)), IdVocab(np.arange(n_items)), timestamp=ts
    )
    by_time = log.user_histories().to_lists()
    by_log = log.user_histories(by_time=False).to_lists()
    for u in range(n_users + 1):
        rows = sorted(np.flatnonzero(user == u), key=lambda r: (ts[r], r))
        assert by_time[u] == item[rows].tolist()
        assert by_log[u] == item[user == u].tolist()
    assert len(by_time) == n_users + 1
