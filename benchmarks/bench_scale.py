"""Scale table of issue 14: one-thread step times at 1M and 4M events (50k items), the 4M / 1M ratio of
each step, the peers in the same run, and data-parallel BPR on 1 vs 2 ranks (torchrun, gloo).

    python benchmarks/bench_scale.py --events 1000000,4000000 --runs 3            # the whole table
    python benchmarks/bench_scale.py --events 1000000,4000000 --steps bpr --bpr-only --no-calibration
    python benchmarks/bench_scale.py --events 1000000 --ranks 1,2 --skip-single
    python benchmarks/bench_scale.py --events 500000 --ranks 1,2 --skip-single --rank-model two-tower

Synthetic shop (``embrec.datasets.synthetic``, seed 0, users = events / 20, 50,000 items, item features).
One thread everywhere (``torch.set_num_threads(1)``, BLAS limited to 1, implicit ``num_threads=1``). Per
size and run, one after the other in this process (``--steps``, default all):

- ``als``: embrec ``ALS(factors=64, iterations=15)`` fit, beside implicit's ``AlternatingLeastSquares`` with
  the same settings on the same count matrix;
- ``bpr``: one epoch (the median of ``--epochs``) of embrec BPR with ``positives="events"`` (one triple per
  event) and ``positives="pairs"`` (one per distinct pair: implicit's epoch), implicit's BPR (factors 64),
  and embrec implicit-mf unless ``--bpr-only``;
- ``two-tower``: one epoch of ``TwoTower`` at its defaults (sampled softmax above 20,000 items);
- ``softmax-dnn``: one epoch of ``SoftmaxDNN(loss="sampled")``;
- ``top10``: top 10 of every user of the 1-epoch BPR model above through ``embrec.batch_scoring.recommend_all``
  (a Parquet file, raw ids), beside a NumPy floor on the same vectors (blocked matmul + argpartition, no
  ids, no file) and implicit's ``recommend`` of all users of its BPR model (``filter_already_liked_items``
  off, like ours);
- ``llo``: leave-last-out of ``BPR(epochs=1)`` (``evaluate_model``, no bootstrap), its time less the fit's:
  the split, the fold, the scoring of every test user and the metrics.

``*_s`` are wall seconds, ``*_cpu_s`` CPU seconds of this process over the same span
(``time.process_time``: a shared machine's load inflates them less). An epoch's span starts when the
training loop asks for its batches and ends with the epoch (``seconds`` of the model's history).
Prints one JSON line per size and run, with the load average, and per run the 4M / 1M ratio of every
step. ``--ranks`` times one BPR epoch under ``torchrun --standalone --nproc-per-node R`` (batch_size per
rank = 15000 / R: the same global batch) and a 2-"node" c10d rendezvous on 127.0.0.1.
``--no-calibration`` skips the fold-in calibration after each factorization fit (not part of an epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from embrec.datasets import synthetic
from embrec.models.bpr import BPR
from embrec.models.factor import SampledFactorization
from embrec.models.implicit_mf import ImplicitMF
from embrec.models.training import epoch_callback

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("als", "bpr", "two-tower", "softmax-dnn", "top10", "llo")


def shop(events: int):
    return synthetic(n_users=events // 20, n_items=50_000, n_interactions=events, seed=0)


def median_epoch(model) -> float:
    return float(np.median([h["seconds"] for h in model.history_]))


@contextlib.contextmanager
def epoch_cpu(modules: tuple) -> Iterator[list[float]]:
    """CPU seconds of each epoch of the ``train_loop`` calls made in ``modules`` inside the block (from
    the loop's request for the epoch's batches to the epoch's end)."""
    spans: list[float] = []
    start = [0.0]
    originals = [(m, m.train_loop) for m in modules]

    def loop(*args, batches, **kwargs):
        def timed(rng, epoch):
            start[0] = time.process_time()
            return batches(rng, epoch)

        return originals[0][1](*args, batches=timed, **kwargs)

    for m, _ in originals:
        m.train_loop = loop
    try:
        with epoch_callback(lambda row, _: spans.append(time.process_time() - start[0])):
            yield spans
    finally:
        for m, orig in originals:
            m.train_loop = orig


def fit_timed(model, log) -> float:
    """Fit a factorization model; the median CPU seconds of its epochs."""
    from embrec.models import factor

    with epoch_cpu((factor,)) as spans:
        model.fit(log)
    return float(np.median(spans))


def count_matrix(log) -> sp.csr_matrix:
    known = log.user > 0
    csr = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (log.user[known], log.item[known])),
        shape=(log.users.size, log.items.size),
    )
    csr.sum_duplicates()
    return csr


def step_als(log, row: dict) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    from embrec.models.als import ALS

    t0, c0 = time.perf_counter(), time.process_time()
    ALS(factors=64, iterations=15, num_threads=1).fit(log)
    row["als_s"] = round(time.perf_counter() - t0, 3)
    row["als_cpu_s"] = round(time.process_time() - c0, 3)
    csr = count_matrix(log)
    peer = AlternatingLeastSquares(
        factors=64, regularization=0.01, alpha=1.0, iterations=15, num_threads=1, random_state=0
    )
    with threadpool_limits(1, "blas"):
        t0, c0 = time.perf_counter(), time.process_time()
        peer.fit(csr, show_progress=False)
        row["implicit_als_s"] = round(time.perf_counter() - t0, 3)
        row["implicit_als_cpu_s"] = round(time.process_time() - c0, 3)
    row["als/implicit"] = round(row["als_s"] / row["implicit_als_s"], 2)


def step_bpr(log, row: dict, epochs: int, peers: bool, held: dict) -> None:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    for positives in ("events", "pairs"):
        m = BPR(epochs=epochs, positives=positives, progress=False)
        row[f"bpr_{positives}_cpu_s"] = round(fit_timed(m, log), 3)
        row[f"bpr_{positives}_s"] = round(median_epoch(m), 3)
        if positives == "events":
            held["bpr"] = m
    csr = count_matrix(log)
    triples_events = int(csr.sum())
    csr.data[:] = 1.0
    peer = BayesianPersonalizedRanking(factors=64, iterations=epochs, random_state=0, num_threads=1)
    with threadpool_limits(1, "blas"):
        t0, c0 = time.perf_counter(), time.process_time()
        peer.fit(csr, show_progress=False)
        row["implicit_bpr_s"] = round((time.perf_counter() - t0) / epochs, 3)
        row["implicit_bpr_cpu_s"] = round((time.process_time() - c0) / epochs, 3)
    held["implicit_bpr"], held["csr"] = peer, csr
    row["triples_events"], row["triples_pairs"] = triples_events, int(csr.nnz)
    row["bpr_pairs/implicit"] = round(row["bpr_pairs_s"] / row["implicit_bpr_s"], 2)
    for suffix in ("s", "cpu_s"):
        row[f"bpr_events/implicit per triple{', cpu' if suffix == 'cpu_s' else ''}"] = round(
            (row[f"bpr_events_{suffix}"] / row["triples_events"])
            / (row[f"implicit_bpr_{suffix}"] / row["triples_pairs"]),
            2,
        )
    if peers:
        m = ImplicitMF(epochs=epochs, progress=False).fit(log)
        row["implicit_mf_s"] = round(median_epoch(m), 3)


def step_deep(log, row: dict, name: str) -> None:
    from embrec.models import softmax_dnn, two_tower

    if name == "two-tower":
        model = two_tower.TwoTower(epochs=1, patience=None, progress=False)
    else:
        model = softmax_dnn.SoftmaxDNN(epochs=1, loss="sampled", patience=None, progress=False)
    with epoch_cpu((two_tower, softmax_dnn)) as spans:
        model.fit(log)
    key = name.replace("-", "_")
    row[f"{key}_s"] = round(median_epoch(model), 3)
    row[f"{key}_cpu_s"] = round(spans[0], 3)


def numpy_top_k(queries: np.ndarray, cand: np.ndarray, k: int, block: int = 512) -> np.ndarray:
    """(U, k) best candidate positions of every query row: blocked matmul + argpartition (the floor)."""
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    ct = np.ascontiguousarray(cand.T)  # (d, I)
    for s in range(0, queries.shape[0], block):
        sc = queries[s : s + block] @ ct  # (B, I)
        part = np.argpartition(sc, sc.shape[1] - k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1)
        out[s : s + block] = np.take_along_axis(part, order, 1)
    return out


def step_top10(row: dict, held: dict) -> None:
    from embrec.batch_scoring import recommend_all

    model = held["bpr"]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        recommend_all(model, Path(tmp) / "recs.parquet", k=10, progress=False)
        row["top10_s"] = round(time.perf_counter() - t0, 3)
        row["top10_cpu_s"] = round(time.process_time() - c0, 3)
    users = np.arange(1, model.users_.size)
    with threadpool_limits(1, "blas"):
        t0, c0 = time.perf_counter(), time.process_time()
        q = model._query_vectors(users, model.seen_.select(users))  # (U, d + 1)
        numpy_top_k(q, model._candidate_vectors()[1:], 10)
        row["top10_floor_s"] = round(time.perf_counter() - t0, 3)
        row["top10_floor_cpu_s"] = round(time.process_time() - c0, 3)
        peer, csr = held["implicit_bpr"], held["csr"]
        t0, c0 = time.perf_counter(), time.process_time()
        peer.recommend(users, csr[users], N=10, filter_already_liked_items=False)
        row["top10_implicit_s"] = round(time.perf_counter() - t0, 3)
        row["top10_implicit_cpu_s"] = round(time.process_time() - c0, 3)
    row["top10/floor"] = round(row["top10_s"] / row["top10_floor_s"], 2)


def step_llo(log, row: dict) -> None:
    from embrec.evaluation import evaluate_model

    t0, c0 = time.perf_counter(), time.process_time()
    with epoch_cpu_total() as fit_cpu:
        res = evaluate_model("leave-last-out", BPR(epochs=1, progress=False), data=log, n_boot=0)
    row["llo_s"] = round(time.perf_counter() - t0 - res["fit_seconds"], 3)
    row["llo_cpu_s"] = round(time.process_time() - c0 - fit_cpu[0], 3)
    row["llo_fit_s"] = round(res["fit_seconds"], 3)


@contextlib.contextmanager
def epoch_cpu_total():
    """CPU seconds spent inside ``Recommender.fit`` within the block (one-element list)."""
    from embrec.models.base import Recommender

    total = [0.0]
    orig = Recommender.fit

    def fit(self, *args, **kwargs):
        c0 = time.process_time()
        try:
            return orig(self, *args, **kwargs)
        finally:
            total[0] += time.process_time() - c0

    Recommender.fit = fit
    try:
        yield total
    finally:
        Recommender.fit = orig


def single(events: int, epochs: int, steps: list[str], peers: bool = True) -> dict:
    log = shop(events)
    row: dict = {"events": events, "users": log.users.n_ids, "items": log.items.n_ids}
    load0 = os.getloadavg()[0]
    held: dict = {}
    if "als" in steps:
        step_als(log, row)
    if "bpr" in steps or "top10" in steps:
        step_bpr(log, row, epochs, peers and "bpr" in steps, held)
    for name in ("two-tower", "softmax-dnn"):
        if name in steps:
            step_deep(log, row, name)
    if "top10" in steps:
        step_top10(row, held)
    if "llo" in steps:
        step_llo(log, row)
    row["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return row


def worker(events: int, model: str = "bpr", keep_batch: bool = False) -> None:
    """Inside torchrun: one epoch of ``model`` on this rank's shard (BPR: global batch 15000; two-tower:
    its defaults, global batch 128), and the seconds of it spent in the gradient exchange
    (``count_active`` + ``average_gradients``: the collectives, including the wait for the slower rank)
    and its CPU seconds there. ``keep_batch``: batch_size per rank stays the one-rank default (the
    global batch grows with the ranks: fewer steps an epoch, the way ``embrec train --nproc`` runs)."""
    from embrec.models import distributed

    world = distributed.init()
    split = 1 if keep_batch else world.size
    spent = {"wall": 0.0, "cpu": 0.0}

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["wall"] += time.perf_counter() - t0
                spent["cpu"] += time.process_time() - c0

        return wrapper

    distributed.average_gradients = timed(distributed.average_gradients)
    distributed.count_active = timed(distributed.count_active)
    epochs = 2
    if model == "two-tower":
        from embrec.models.two_tower import TwoTower

        m = TwoTower(epochs=epochs, batch_size=128 // split, patience=None, progress=False)
    else:
        m = BPR(epochs=epochs, batch_size=15000 // split, progress=False)
    m.fit(shop(events))
    if world.main:
        total = sum(h["seconds"] for h in m.history_)
        row = {"ranks": world.size, "model": model, "batch_per_rank": m.batch_size}
        row["epoch_s"] = round(median_epoch(m), 3)
        if world.size > 1:
            row["exchange_s_per_epoch"] = round(spent["wall"] / epochs, 3)
            row["exchange_cpu_s_per_epoch"] = round(spent["cpu"] / epochs, 3)
            row["exchange_share"] = round(spent["wall"] / total, 3)
        print(json.dumps(row), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranked(events: int, ranks: int, model: str = "bpr", keep_batch: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(ranks),
        __file__,
        "--worker",
        "--events",
        str(events),
        "--rank-model",
        model,
    ] + (["--keep-batch"] if keep_batch else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row.update(
        events=events, wall_s=round(time.perf_counter() - t0, 1), load=round(os.getloadavg()[0], 2)
    )
    return row


def rendezvous() -> dict:
    """Two torchrun agents (--nnodes 2, one process each) meet on 127.0.0.1 and run a tiny job."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(r),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "bench",
                __file__,
                "--worker",
                "--events",
                "20000",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for r in (0, 1)
    ]
    codes = [p.wait() for p in procs]
    return {
        "rendezvous": "2 nodes x 1 process, c10d on 127.0.0.1",
        "exit_codes": codes,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="1000000,4000000")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"any of {', '.join(STEPS)}")
    parser.add_argument("--epochs", type=int, default=3, help="BPR / implicit epochs (median)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ranks", default="")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument(
        "--rank-model",
        default="bpr",
        choices=("bpr", "two-tower"),
        help="the model --ranks trains (two-tower: its defaults, global batch 128)",
    )
    parser.add_argument(
        "--keep-batch",
        action="store_true",
        help="--ranks: batch_size per rank stays the one-rank default (global batch grows with the ranks)",
    )
    parser.add_argument("--bpr-only", action="store_true", help="skip implicit-mf")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the fold-in calibration after each fit (not part of an epoch; saves minutes)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [int(float(e)) for e in args.events.split(",")]
    if args.worker:
        worker(sizes[0], args.rank_model, args.keep_batch)
        return
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        parser.error(f"--steps must name steps among {', '.join(STEPS)}; received {bad[0]!r}")
    if args.no_calibration:
        SampledFactorization.calibrate_fold_in = lambda self, *a, **k: 0.0
    for run in range(args.runs if not args.skip_single else 0):
        rows = []
        for n in sizes:
            rows.append(single(n, args.epochs, steps, peers=not args.bpr_only))
            print(json.dumps({"run": run, **rows[-1]}), flush=True)
        if len(rows) >= 2:
            ratio = {
                k: round(rows[-1][k] / rows[0][k], 2)
                for k, v in rows[0].items()
                if k.endswith("_s") and isinstance(v, float) and v > 0 and k in rows[-1]
            }
            print(json.dumps({"run": run, f"{sizes[-1]}/{sizes[0]}": ratio}), flush=True)
    for r in [int(x) for x in args.ranks.split(",") if x]:
        print(json.dumps(ranked(sizes[0], r, args.rank_model, args.keep_batch)), flush=True)
    if args.ranks:
        print(json.dumps(rendezvous()), flush=True)


if __name__ == "__main__":
    main()
