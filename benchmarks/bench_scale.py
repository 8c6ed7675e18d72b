"""Scale table of issue 14: epoch times at 1M and 4M events (50k items), the 4M / 1M ratios, BPR beside the
``implicit`` library (one thread each, same run), and data-parallel BPR on 1 vs 2 ranks (torchrun, gloo).

    python benchmarks/bench_scale.py --events 1000000,4000000 --runs 3
    python benchmarks/bench_scale.py --events 1000000 --ranks 1,2 --skip-single

Synthetic shop (``embrec.datasets.synthetic``, seed 0, users = events / 20, 50,000 items). Per size and run:
one epoch (the median of ``--epochs``) of embrec BPR with ``positives="events"`` (one triple per event) and
``positives="pairs"`` (one per distinct pair: implicit's epoch), implicit's BPR (``num_threads=1``, factors
64) and embrec implicit-mf, each timed in this process one after the other. ``--ranks`` times one BPR epoch
under ``torchrun --standalone --nproc-per-node R`` (batch_size per rank = 15000 / R: the same global batch)
and a 2-"node" c10d rendezvous on 127.0.0.1. Prints one JSON line per measurement, with the load average;
``*_cpu_s`` are the same epochs in CPU seconds of this process (``time.process_time``), which a shared
machine's load inflates less than wall seconds. ``--no-calibration`` skips the fold-in calibration that
follows each fit (not part of an epoch), ``--bpr-only`` the implicit-mf row.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
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


def shop(events: int):
    return synthetic(n_users=events // 20, n_items=50_000, n_interactions=events, seed=0)


def median_epoch(model) -> float:
    return float(np.median([h["seconds"] for h in model.history_]))


def fit_timed(model, log) -> float:
    """Fit ``model``; the median CPU seconds of its epochs (time.process_time between epoch ends, the first
    from the start of the first epoch): on a shared machine less disturbed than wall time by waiting."""
    marks: list[float] = []
    with epoch_callback(lambda row, _: marks.append(time.process_time())):
        start = [0.0]
        orig = model._epoch_batches

        def batches(rng, epoch):
            if epoch == 1:
                start[0] = time.process_time()
            return orig(rng, epoch)

        model._epoch_batches = batches
        model.fit(log)
        del model._epoch_batches
    return float(np.median(np.diff([start[0], *marks])))


def single(events: int, epochs: int, peers: bool = True) -> dict:
    log = shop(events)
    row: dict = {"events": events, "users": log.users.n_ids, "items": log.items.n_ids}
    row["load_before"] = round(os.getloadavg()[0], 2)
    for positives in ("events", "pairs"):
        m = BPR(epochs=epochs, positives=positives, progress=False)
        row[f"bpr_{positives}_cpu_s"] = round(fit_timed(m, log), 3)
        row[f"bpr_{positives}_s"] = round(median_epoch(m), 3)
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    known = log.user > 0
    csr = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (log.user[known], log.item[known])),
        shape=(log.users.size, log.items.size),
    )
    csr.sum_duplicates()
    csr.data[:] = 1.0
    peer = BayesianPersonalizedRanking(factors=64, iterations=epochs, random_state=0, num_threads=1)
    with threadpool_limits(1, "blas"):
        t0, c0 = time.perf_counter(), time.process_time()
        peer.fit(csr, show_progress=False)
        row["implicit_bpr_s"] = round((time.perf_counter() - t0) / epochs, 3)
        row["implicit_bpr_cpu_s"] = round((time.process_time() - c0) / epochs, 3)
    row["triples_events"], row["triples_pairs"] = int(known.sum()), int(csr.nnz)
    row["bpr_pairs/implicit"] = round(row["bpr_pairs_s"] / row["implicit_bpr_s"], 2)
    row["bpr_events/implicit per triple"] = round(
        (row["bpr_events_s"] / row["triples_events"])
        / (row["implicit_bpr_s"] / row["triples_pairs"]),
        2,
    )
    row["bpr_events/implicit per triple, cpu"] = round(
        (row["bpr_events_cpu_s"] / row["triples_events"])
        / (row["implicit_bpr_cpu_s"] / row["triples_pairs"]),
        2,
    )
    if peers:
        m = ImplicitMF(epochs=epochs, progress=False).fit(log)
        row["implicit_mf_s"] = round(median_epoch(m), 3)
    row["load"] = round(os.getloadavg()[0], 2)
    return row


def worker(events: int, ranks: int) -> None:
    """Inside torchrun: one BPR epoch on this rank's shard (global batch 15000), and the seconds of it
    spent in the gradient exchange (``count_active`` + ``average_gradients``: the collectives, including
    the wait for the slower rank) and its CPU seconds there."""
    from embrec.models import distributed

    world = distributed.init()
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
    m = BPR(epochs=epochs, batch_size=15000 // world.size, progress=False).fit(shop(events))
    if world.main:
        total = sum(h["seconds"] for h in m.history_)
        row = {"ranks": world.size, "bpr_epoch_s": round(median_epoch(m), 3)}
        if world.size > 1:
            row["exchange_s_per_epoch"] = round(spent["wall"] / epochs, 3)
            row["exchange_cpu_s_per_epoch"] = round(spent["cpu"] / epochs, 3)
            row["exchange_share"] = round(spent["wall"] / total, 3)
        print(json.dumps(row), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranked(events: int, ranks: int) -> dict:
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
    ]
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
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ranks", default="")
    parser.add_argument("--skip-single", action="store_true")
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
        worker(sizes[0], 0)
        return
    if args.no_calibration:
        SampledFactorization.calibrate_fold_in = lambda self, *a, **k: 0.0
    for run in range(args.runs if not args.skip_single else 0):
        rows = [single(n, args.epochs, peers=not args.bpr_only) for n in sizes]
        for row in rows:
            print(json.dumps({"run": run, **row}), flush=True)
        if len(rows) >= 2:
            keys = (
                "bpr_events_s",
                "bpr_events_cpu_s",
                "bpr_pairs_s",
                "bpr_pairs_cpu_s",
                "implicit_bpr_s",
                "implicit_bpr_cpu_s",
                "implicit_mf_s",
            )
            ratio = {k: round(rows[-1][k] / rows[0][k], 2) for k in keys if k in rows[0]}
            print(json.dumps({"run": run, f"{sizes[-1]}/{sizes[0]}": ratio}), flush=True)
    for r in [int(x) for x in args.ranks.split(",") if x]:
        print(json.dumps(ranked(sizes[0], r)), flush=True)
    if args.ranks:
        print(json.dumps(rendezvous()), flush=True)


if __name__ == "__main__":
    main()
