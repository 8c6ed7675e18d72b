"""Peak memory (RSS) of logs larger than memory (issue 14, part 2): the synthetic shop written to a Parquet
directory chunk by chunk, streamed back into ``Interactions``, and the steps run on it.

    python benchmarks/bench_memory.py --events 1e6,4e6,16e6 --root /tmp/embrec-mem
    python benchmarks/bench_memory.py --events 50e6 --steps write,load,bpr --root /tmp/embrec-mem

Synthetic shop (``embrec.datasets.synthetic(..., out=DIR)``, seed 0, users = events / 20, 50,000 items, as
benchmarks/bench_scale.py). Every step runs in a fresh child process (one at a time) that reports its own
peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``), its RSS after the imports (``base``) and its wall time:

- ``write``: ``synthetic(..., out=DIR)`` (skipped when DIR already holds the log);
- ``load``: ``from_file(DIR, ...)`` (user, item, quantity, timestamp, basket columns); the steps below load
  what their model reads: user, item and timestamp (the time orders each user's history);
- ``load-pandas`` (the peer): ``from_file`` of the same rows as one Parquet file (pandas, object ids);
- ``bpr``: load + ``BPR(epochs=1)`` fit (default ``positives="events"``: one triple per event);
- ``two-tower``: load (with ``_item_features.parquet``) + ``TwoTower(epochs=1)`` fit, on the whole log or the ``--tower-events`` first events
  (``Interactions.subset`` of a prefix; the table says which); ``--tower-batches N`` ends the epoch after
  its first N mini-batches (everything the fit builds before the epoch is built in full; a batch's memory
  does not depend on the log's size, so the peak is the whole epoch's, at a fraction of its hours here);
- ``evaluate``: load + leave-last-out (``evaluate_model``) of ``BPR(epochs=1)``, no bootstrap.

Prints one JSON line per step with ``peak_mb``, ``base_mb``, ``(peak - base) / million events`` and the
1-minute load average before and after; after the sizes, one line per step with the marginal MB per
million events between consecutive sizes (``slope``: what a step costs per event once its constant is
paid). ``--cap-gb`` limits each child's address space (``RLIMIT_AS``): a step that would need more fails
with MemoryError instead of pushing a shared machine into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLS = dict(
    user_col="user",
    item_col="item",
    rating_col="quantity",
    time_col="timestamp",
    group_col="basket",
)
#: what the models of the other steps read (a user training them names these columns only)
MODEL_COLS = dict(user_col="user", item_col="item", time_col="timestamp")
STEPS = ("write", "load", "load-pandas", "bpr", "two-tower", "evaluate")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shop_params(events: int) -> dict:
    return dict(n_users=events // 20, n_items=50_000, n_interactions=events, seed=0)


def cut_epochs(max_batches: int) -> None:
    """Make the two-tower's epochs end after ``max_batches`` mini-batches (0: leave them whole)."""
    import itertools

    from embrec.models import two_tower
    from embrec.models.training import Batches

    if not max_batches:
        return
    whole = two_tower.history_batches

    def first(*args, **kwargs):
        batches = whole(*args, **kwargs)
        return Batches(itertools.islice(batches, max_batches), min(len(batches), max_batches))

    two_tower.history_batches = first


def child(step: str, events: int, root: Path, tower_events: int, tower_batches: int) -> dict:
    """One step, in this (fresh) process."""
    import numpy as np
    import pyarrow.dataset  # noqa: F401  (imported before ``base``: the library, not the log)
    import torch

    from embrec.datasets import from_file, synthetic
    from embrec.evaluation import evaluate_model
    from embrec.models.bpr import BPR
    from embrec.models.two_tower import TwoTower

    torch.set_num_threads(1)
    cut_epochs(tower_batches)
    base = rss_mb()
    data = root / f"shop-{events}"
    out: dict = {}
    t0 = time.perf_counter()
    if step == "write":
        synthetic(**shop_params(events), out=data)
    elif step == "load-pandas":
        log = from_file(root / f"shop-{events}.parquet", **COLS)
    else:
        feats = {"item_features": data / "_item_features.parquet"} if step == "two-tower" else {}
        cols = COLS if step == "load" else MODEL_COLS
        log = from_file(data, **cols, **feats)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        if step == "bpr":
            t1 = time.perf_counter()
            m = BPR(epochs=1, progress=False).fit(log)
            out["fit_s"] = round(time.perf_counter() - t1, 2)
            out["epoch_s"] = round(m.history_[0]["seconds"], 2)
        elif step == "two-tower":
            if tower_events and tower_events < len(log):
                log = log.subset(np.arange(tower_events))
                out["fitted_events"] = tower_events
            t1 = time.perf_counter()
            m = TwoTower(epochs=1, patience=None, progress=False).fit(log)
            out["fit_s"] = round(time.perf_counter() - t1, 2)
            out["epoch_s"] = round(m.history_[0]["seconds"], 2)
            if tower_batches:
                out["epoch_cut_to_batches"] = tower_batches
        elif step == "evaluate":
            t1 = time.perf_counter()
            res = evaluate_model(
                "leave-last-out", BPR(epochs=1, progress=False), data=log, n_boot=0
            )
            out["evaluate_s"] = round(time.perf_counter() - t1, 2)
            out["of_which_fit_s"] = round(res["fit_seconds"], 2)
            out["ndcg@10"] = round(res["metrics"]["ndcg@10"], 4)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["cpu_s"] = round(
        time.process_time(), 2
    )  # of the whole process (a loaded machine inflates wall_s)
    out.update(base_mb=round(base), peak_mb=round(rss_mb()))
    return out


def run_step(step: str, events: int, root: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        step,
        "--events",
        str(events),
        "--root",
        str(root),
        "--tower-events",
        str(args.tower_events),
        "--tower-batches",
        str(args.tower_batches),
    ]
    cap = int(args.cap_gb * 2**30) if args.cap_gb else None
    load0 = os.getloadavg()[0]
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=None
        if cap is None
        else (lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))),
    )
    if proc.returncode != 0:
        return {
            "step": step,
            "events": events,
            "error": proc.stderr.strip().splitlines()[-1:],
            "returncode": proc.returncode,
        }
    row = {"step": step, "events": events, **json.loads(proc.stdout.strip().splitlines()[-1])}
    row["mb_per_M_events"] = round((row["peak_mb"] - row["base_mb"]) / (events / 1e6), 1)
    row["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return row


def single_file(events: int, root: Path) -> Path:
    """The same rows as one Parquet file (for the pandas peer)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    path = root / f"shop-{events}.parquet"
    if not path.exists():
        files = sorted(str(p) for p in (root / f"shop-{events}").glob("part-*.parquet"))
        pq.write_table(ds.dataset(files, format="parquet").to_table(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="1e6,4e6,16e6")
    parser.add_argument("--steps", default="write,load,load-pandas,bpr,two-tower,evaluate")
    parser.add_argument("--root", default="/tmp/embrec-mem")
    parser.add_argument(
        "--tower-events", type=int, default=0, help="fit the two-tower on this prefix (0: all)"
    )
    parser.add_argument(
        "--tower-batches",
        type=int,
        default=0,
        help="end the two-tower's epoch after this many mini-batches (0: the whole epoch)",
    )
    parser.add_argument(
        "--cap-gb", type=float, default=0.0, help="address-space limit of each child (0: none)"
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [int(float(e)) for e in args.events.split(",")]
    if args.child:
        row = child(args.child, sizes[0], root, args.tower_events, args.tower_batches)
        print(json.dumps(row), flush=True)
        return
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        parser.error(f"--steps must name steps among {', '.join(STEPS)}; received {bad[0]!r}")
    peaks: dict[str, list[tuple[int, float]]] = {}
    for n in sizes:
        for step in steps:
            if step == "write" and (root / f"shop-{n}").exists():
                continue
            if step == "load-pandas":
                single_file(n, root)
            row = run_step(step, n, root, args)
            print(json.dumps(row), flush=True)
            if "peak_mb" in row:
                peaks.setdefault(step, []).append((n, row["peak_mb"]))
    for step, points in peaks.items():
        slopes = {
            f"{a / 1e6:g}M-{b / 1e6:g}M": round((pb - pa) / ((b - a) / 1e6), 1)
            for (a, pa), (b, pb) in zip(points, points[1:])
        }
        if slopes:
            print(json.dumps({"step": step, "slope_mb_per_M_events": slopes}), flush=True)


if __name__ == "__main__":
    main()
