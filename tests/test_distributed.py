"""torch.distributed data-parallel training (gloo, 127.0.0.1, free ports): every gradient model trains on two
ranks and the result loads and recommends; two ranks equal one rank with the same global batch; a 2-"node"
rendezvous completes; a rank whose data differs ends the job with its error instead of a hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embrec
from embrec.models.registry import create
from tests.distributed.fit_all import EQUAL, MODELS, balanced_ratings, tiny_log

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def env() -> dict[str, str]:
    e = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        EMBREC_DIST_TIMEOUT="30",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    e.pop("WORLD_SIZE", None)
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        torchrun(
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "tests/distributed/fit_all.py"),
            str(out),
        ),
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_two_ranks_train_every_gradient_model(fitted, name):
    model = embrec.load(fitted / name.replace(":", "-"))
    log = tiny_log()
    user = log.users.raw_ids[1]
    recs = model.recommend([user], k=5)
    assert len(recs.ids[0]) == 5
    assert model.fingerprint_ == log.fingerprint()  # trained on (its shard of) this very log


def test_recommend_all_splits_the_users_across_ranks(fitted):
    """Under torchrun every rank writes its blocks of users to part-<rank>.parquet: together exactly the
    model's own top 3 for every known user, each user once."""
    import pandas as pd

    parts = sorted(p.name for p in (fitted / "recs").iterdir())
    assert parts == ["part-0.parquet", "part-1.parquet"]
    recs = pd.read_parquet(fitted / "recs")
    model = embrec.load(fitted / "bpr")
    users = list(model.users_.raw_ids)
    assert sorted(recs["user"].unique()) == sorted(users) and len(recs) == 3 * len(users)
    expect = model.recommend(users, k=3)
    got = recs.sort_values(["user", "rank"]).groupby("user")["item"].apply(list)
    for u, items in zip(users, expect.ids):
        assert got[u] == list(items)


def test_two_ranks_equal_one_rank_with_the_same_global_batch(fitted):
    """Full-batch explicit MF (no sampling, no dropout): the mean of the two ranks' gradients over their
    halves of the users is the one-process gradient over all ratings, so the factors agree to float error."""
    data = balanced_ratings()
    one = create("explicit-mf", batch_size=len(data), **EQUAL).fit(data)
    two = embrec.load(fitted / "explicit-equal")
    start = create("explicit-mf", batch_size=len(data), **{**EQUAL, "epochs": 1}).fit(data)
    assert (
        np.abs(one.item_factors_ - start.item_factors_).max() > 1e-2
    )  # training moved the factors
    np.testing.assert_allclose(two.user_factors_, one.user_factors_, atol=2e-5)
    np.testing.assert_allclose(two.item_factors_, one.item_factors_, atol=2e-5)


def _data_file(tmp_path: Path, name: str, n: int) -> Path:
    path = tmp_path / name
    tiny_log().subset(np.arange(n)).to_frame().to_csv(path, index=False)
    return path


def _node(rank: int, port: int, data: Path, out: Path) -> subprocess.Popen:
    cmd = torchrun(
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--node-rank",
        str(rank),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "embrec-test",
        "-m",
        "embrec",
        "train",
        "bpr",
        "--data",
        str(data),
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--out",
        str(out),
        "-p",
        "epochs=2",
        "-p",
        "factors=4",
        "-p",
        "progress=false",
    )
    return subprocess.Popen(
        cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_node_rendezvous_trains_and_a_rank_with_other_data_fails_with_its_error(tmp_path):
    same = _data_file(tmp_path, "log.csv", 1500)
    port = free_port()
    nodes = [_node(r, port, same, tmp_path / "model") for r in (0, 1)]
    outs = [n.communicate(timeout=TIMEOUT) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "saved bpr" in outs[0][0] and outs[1][0].strip() == ""  # rank 0 reports and saves
    assert (
        len(embrec.load(tmp_path / "model").recommend([tiny_log().users.raw_ids[1]], k=3).ids[0])
        == 3
    )

    other = _data_file(tmp_path, "other.csv", 1400)  # the second node reads a different log
    port = free_port()
    nodes = [_node(0, port, same, tmp_path / "m2"), _node(1, port, other, tmp_path / "m2")]
    outs = [n.communicate(timeout=TIMEOUT) for n in nodes]
    assert all(n.returncode != 0 for n in nodes)
    assert "differs from rank 0's" in outs[1][1]
    assert not (tmp_path / "m2").exists()


def test_cli_nproc_starts_the_agent_and_checkpoints_resume(tmp_path):
    data = _data_file(tmp_path, "log.csv", 1500)
    ck = tmp_path / "ck"
    cmd = [
        sys.executable,
        "-m",
        "embrec",
        "train",
        "implicit-mf",
        "--data",
        str(data),
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--out",
        str(tmp_path / "m"),
        "-p",
        "epochs=2",
        "-p",
        "factors=4",
        "--nproc",
        "2",
        "--checkpoint",
        str(ck),
        "--json",
    ]
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        json.loads(proc.stdout)["world_size"] == 2
    )  # exactly one JSON document on stdout: rank 0's
    assert (ck / "ImplicitMF.epoch").read_text() == "2"
    assert sorted(p.name for p in ck.glob("*.pt")) == [
        "ImplicitMF-rank0-epoch2.pt",
        "ImplicitMF-rank1-epoch2.pt",
    ]
    first = embrec.load(tmp_path / "m")
    # a restart with 3 epochs resumes after epoch 2: one more epoch, not three
    cmd[cmd.index("epochs=2")] = "epochs=3"
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = embrec.load(tmp_path / "m")
    assert [h["epoch"] for h in again.history_] == [1, 2, 3]
    assert [h["loss"] for h in again.history_[:2]] == [h["loss"] for h in first.history_]
