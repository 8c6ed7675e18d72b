"""recommend-all: every known user's top k, streamed in blocks to Parquet row groups."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from embrec.batch_scoring import recommend_all
from embrec.cli.main import app
from embrec.datasets import synthetic
from embrec.errors import InvalidParameterError
from embrec.models.bpr import BPR


@pytest.fixture(scope="module")
def model():
    return BPR(factors=8, epochs=2, batch_size=256, progress=False).fit(
        synthetic(n_users=50, n_items=20, n_interactions=800, seed=1)
    )


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_recommend_all_equals_recommend_for_every_user_in_row_groups_of_blocks(
    model, tmp_path, exclude_seen
):
    out = tmp_path / "recs.parquet"
    res = recommend_all(model, out, k=4, exclude_seen=exclude_seen, block=7)
    users = list(model.users_.raw_ids)
    assert res["users"] == len(users) == 50
    assert (
        pq.ParquetFile(out).metadata.num_row_groups == 8
    )  # ceil(50 / 7) blocks, one row group each
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    expect = model.recommend(users, k=4, exclude_seen=exclude_seen)
    for u, items, scores in zip(users, expect.ids, expect.scores):
        mine = recs[recs["user"] == u].sort_values("rank")
        assert list(mine["rank"]) == [1, 2, 3, 4]
        assert list(mine["item"]) == list(items)
        assert mine["score"].to_numpy() == pytest.approx(scores, rel=1e-5)
    seen = {
        (u, i)
        for u, row in zip(users, range(1, len(users) + 1))
        for i in model.items_.decode(model.seen_.select([row]).values)
    }
    overlap = sum((u, i) in seen for u, i in zip(recs["user"], recs["item"]))
    assert (overlap == 0) if exclude_seen else (overlap > 0)  # this BPR ranks bought items high


def test_recommend_all_cli_and_bad_input(model, tmp_path):
    model.save(tmp_path / "m")
    result = CliRunner().invoke(
        app, ["recommend-all", str(tmp_path / "m"), "--out", str(tmp_path / "r.parquet"), "-k", "3"]
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 150
    every = CliRunner().invoke(  # k past the 20-item catalogue: every item for every user
        app,
        ["recommend-all", str(tmp_path / "m"), "--out", str(tmp_path / "x.parquet"), "-k", "999"],
    )
    assert every.exit_code == 0, every.output
    assert len(pd.read_parquet(tmp_path / "x.parquet")) == 50 * 20
    bad = CliRunner().invoke(
        app,
        ["recommend-all", str(tmp_path / "m"), "--out", str(tmp_path / "x2.parquet"), "-k", "0"],
    )
    assert bad.exit_code == 1 and "k must be an integer >= 1; received 0" in bad.output
    with pytest.raises(InvalidParameterError, match="out must be a file path"):
        recommend_all(model, tmp_path, k=3)
