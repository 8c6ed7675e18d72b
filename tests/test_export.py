"""Embeddings keyed by raw id: item_embeddings(items=...), the id-indexed frames, and `embrec export`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from embrec import api
from embrec.cli import app
from embrec.data import Interactions, Ragged
from embrec.errors import InvalidParameterError
from embrec.models.base import EmbeddingModel
from tests.planted_model import PlantedVectors, registered


class IdVectors(EmbeddingModel):
    """Item X's vector is (X, 1): known from the raw id alone, whatever row the vocabulary gives X.
    A user is the mean of their items."""

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        vecs = np.zeros((train.items.size, 2), dtype=np.float32)
        vecs[1:, 0] = train.items.raw_ids.astype(np.float32)
        vecs[1:, 1] = 1.0
        self.vecs_ = vecs

    def _user_vectors(self, user_rows: np.ndarray, histories: Ragged) -> np.ndarray:
        sums = np.zeros((len(histories), 2), dtype=np.float32)
        np.add.at(sums, histories.row_ids, self.vecs_[histories.values])
        return sums / np.maximum(histories.lengths, 1)[:, None]

    def _item_vectors(self) -> np.ndarray:
        return self.vecs_


@pytest.fixture(scope="module")
def model():
    # raw ids out of row order on purpose: the vocabulary sorts them, the log does not
    frame = pd.DataFrame({"user": [7, 7, 3, 3, 3], "item": [40, 10, 30, 10, 20]})
    log = Interactions.from_frame(frame, user_col="user", item_col="item")
    log.item_labels = np.array(
        ["", "ten", "", "thirty", "forty"], dtype=object
    )  # rows: 10, 20, 30, 40
    return IdVectors().fit(log)


def test_item_embeddings_by_raw_id(model):
    np.testing.assert_array_equal(model.item_embeddings(items=[30, 10]), [[30, 1], [10, 1]])
    frame = model.item_embeddings_frame()
    assert list(frame.index) == [10, 20, 30, 40] and frame.index.name == "item"
    for x in (10, 20, 30, 40):
        np.testing.assert_array_equal(
            frame.loc[x].to_numpy(), [x, 1]
        )  # the row for X is X's vector
    # the pitfall the frame avoids: decode(arange(n)) starts at the padding row
    assert model.items_.decode(np.arange(4))[0] is None
    with pytest.raises(InvalidParameterError, match="list of raw item ids"):
        model.item_embeddings(items=10)


def test_user_frame_and_export(model, tmp_path):
    users = model.user_embeddings_frame()
    np.testing.assert_allclose(users.loc[7].to_numpy(), [25, 1])  # mean of items 40 and 10
    np.testing.assert_allclose(users.loc[3].to_numpy(), [20, 1])
    res = api.export(model, out=tmp_path / "emb.parquet")
    assert (res["n_items"], res["n_users"], res["dim"]) == (4, 2, 2)
    rows = pd.read_parquet(tmp_path / "emb.parquet")
    assert list(rows.columns) == ["id", "kind", "label", "vector"]
    by = {
        (r.kind, r.id): (None if pd.isna(r.label) else r.label, list(r.vector))
        for r in rows.itertuples()
    }
    assert by[("item", 30)] == ("thirty", [30.0, 1.0]) and by[("item", 20)] == (None, [20.0, 1.0])
    assert by[("user", 7)] == (None, [25.0, 1.0])
    api.export(model, out=tmp_path / "emb.jsonl", users=False)
    lines = [json.loads(x) for x in (tmp_path / "emb.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [10, 20, 30, 40] and lines[3]["vector"] == [40.0, 1.0]
    with pytest.raises(InvalidParameterError, match=r"out must end with \.parquet or \.jsonl"):
        api.export(model, out=tmp_path / "emb.txt")


def test_cli_export(tmp_path):
    from embrec.datasets import synthetic

    log = synthetic(n_users=30, n_items=20, n_interactions=300, seed=3)
    with registered():
        PlantedVectors().fit(log).save(tmp_path / "m")
        r = CliRunner().invoke(
            app, ["export", str(tmp_path / "m"), "--out", str(tmp_path / "e.parquet"), "--json"]
        )
        assert r.exit_code == 0, r.stderr
        loaded = api.open_model(tmp_path / "m")
    rows = pd.read_parquet(tmp_path / "e.parquet")
    items = rows[rows["kind"] == "item"].set_index("id")
    want = loaded.item_embeddings_frame()
    assert list(items.index) == list(want.index)
    x = want.index[5]
    np.testing.assert_allclose(
        items.loc[x, "vector"], loaded.item_embeddings(items=[x])[0], rtol=1e-6
    )
    assert items.loc[x, "label"] == loaded.item_label(x) and items.loc[x, "label"]
    assert (rows["kind"] == "user").sum() == loaded.users_.n_ids
    pop = tmp_path / "pop"
    from embrec.models.registry import create

    create("popularity").fit(log).save(pop)
    r = CliRunner().invoke(app, ["export", str(pop), "--out", str(tmp_path / "p.parquet")])
    assert r.exit_code == 1 and "needs a model with embeddings" in r.stderr
