"""Fold-in speed and quality: recommendations for a user known only by a history, every model.

    OMP_NUM_THREADS=1 python benchmarks/bench_foldin.py [--items 3000] [--runs 3] [--cache DIR]

For each model (trained once on a seeded synthetic shop of ``--items`` items, d = 64, and kept in
``--cache`` so that two checkouts can time the very same models) it times one
``model.recommend(histories=[h], k=10)`` call for histories of 5, 50 and 500 random items, beside two
peers measured in the same process and the same run:

* the numpy floor: ridge least squares of the history against ALS's item table, then an argpartition
  top-10 — the least work any fold-in + retrieval can do;
* implicit's own ``AlternatingLeastSquares.recalculate_user`` on the same ALS model (fold-in only).

Each figure is the median over ``--reps`` calls; the whole table is measured ``--runs`` times and the
spread (min–max of the run medians) is printed. Beside the wall-clock ratio, the ratio of the median
process CPU time per call (``time.process_time``: time the process was not running is left out, which
makes it less sensitive to other jobs on a shared machine; cache contention still counts).
``--rounds R`` times the functions interleaved instead (for a loaded machine, where load that comes and
goes between one model's calls and the next's skews sequential medians): in each of R rounds every
function (floor, implicit, each model) gets ``--reps`` back-to-back calls, and a cell is the median over
the rounds of each round's median. The quality column is the mean top-10 overlap (unseen
items) between a training user's stored vector and that user's own history folded in, over 200 users.
One thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``); prints ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

MODELS = {
    "als": ("ALS", dict(factors=64, iterations=10, regularization=0.05, num_threads=1)),
    "bpr": ("BPR", dict(factors=64, epochs=10)),
    "implicit-mf": ("ImplicitMF", dict(factors=64, epochs=5)),
    "explicit-mf": ("ExplicitMF", dict(factors=64, epochs=8, batch_size=1024, valid_fraction=0.0)),
    "rating-dnn": ("RatingDNN", dict(factors=64, epochs=5, batch_size=1024, valid_fraction=0.0)),
    "two-tower": ("TwoTower", dict(dim=64, epochs=2)),
    "softmax-dnn": ("SoftmaxDNN", dict(dim=64, epochs=2)),
    "sasrec": ("SASRec", dict(dim=64, epochs=2)),
}
SIZES = (5, 50, 500)


def trained(name: str, cache: Path, n_items: int):
    import embrec
    from embrec.datasets import synthetic
    from embrec.models.registry import create

    path = cache / f"{name}-{n_items}"
    if (path / "current").exists() or (path / "config.json").exists():  # a saved model directory
        return embrec.load(path)
    log = synthetic(n_users=3000, n_items=n_items, n_interactions=60_000, seed=0)
    model = (
        create(name, **{**MODELS[name][1], "seed": 0})
        if name != "als"
        else create(name, **MODELS[name][1])
    )
    if hasattr(model, "progress"):
        model.progress = False
    model.fit(log)
    model.save(path)
    return model


def median_ms(fn, reps: int) -> tuple[float, float]:
    """Median wall-clock and median process-CPU milliseconds per call."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall) * 1e3), float(np.median(cpu) * 1e3)


def interleaved_ms(fns: dict, reps: int, rounds: int) -> dict:
    """{name: (wall ms, CPU ms)}: medians over ``rounds`` rounds of each round's median of ``reps``
    back-to-back calls, the functions taking turns round by round."""
    for fn in fns.values():
        fn()
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            w, c = [], []
            for _ in range(reps):
                t, p = time.perf_counter(), time.process_time()
                fn()
                w.append(time.perf_counter() - t)
                c.append(time.process_time() - p)
            wall[k].append(np.median(w))
            cpu[k].append(np.median(c))
    return {k: (float(np.median(wall[k]) * 1e3), float(np.median(cpu[k]) * 1e3)) for k in fns}


def floor_call(y: np.ndarray, rows: np.ndarray, reg: float = 0.05) -> np.ndarray:
    yh = y[rows]
    x = np.linalg.solve(yh.T @ yh + reg * np.eye(y.shape[1], dtype=y.dtype), yh.sum(0))
    s = y @ x
    s[0] = -np.inf
    return np.argpartition(-s, 9)[:10]


def overlap(model, n_users: int = 200) -> float | None:
    if not hasattr(model, "users_") or not hasattr(model, "seen_"):
        return None
    if type(model).__name__ in ("SASRec", "SoftmaxDNN", "TwoTower"):
        return None  # no stored user vector: the user IS their history
    users = [u for u in range(1, model.users_.size) if model.seen_[u].size][:n_users]
    raw = model.users_.decode(users).tolist()
    hist = [model.items_.decode(model.seen_[u]).tolist() for u in users]
    a = model.recommend(raw, k=10, exclude_seen=True).ids
    b = model.recommend(histories=hist, k=10, exclude_seen=True).ids
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/embrec-bench-foldin"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (0: sequential)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    names = args.models.split(",")
    models = {n: trained(n, args.cache, args.items) for n in names}
    als = models.get("als") or trained("als", args.cache, args.items)
    y = als.item_factors_.astype(np.float32)
    rng = np.random.default_rng(0)
    lib = als._library_model()
    lib.user_factors, lib.item_factors = als.user_factors_, als.item_factors_
    import scipy.sparse as sp

    runs: list[dict] = []
    for _ in range(args.runs):
        res: dict = {}
        for n in SIZES:
            rows = rng.choice(np.arange(1, als.items_.size), n, replace=False)
            raw = als.items_.decode(rows).tolist()
            reps = args.reps if n < 500 else max(5, args.reps // 3)
            csr = sp.csr_matrix(
                (np.ones(n, dtype=np.float32), (np.zeros(n, dtype=np.int64), rows)),
                shape=(1, als.items_.size),
            )
            fns = {
                "floor": lambda rows=rows: floor_call(y, rows),
                "implicit": lambda csr=csr: lib.recalculate_user(0, csr),
            }
            for name, model in models.items():
                fns[name] = lambda m=model, h=raw: m.recommend(histories=[h], k=10)
            if args.rounds:
                res.update({(k, n): v for k, v in interleaved_ms(fns, reps, args.rounds).items()})
            else:
                res.update({(k, n): median_ms(fn, reps) for k, fn in fns.items()})
        runs.append(res)
    quality = {name: overlap(model) for name, model in models.items()}
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    def cell(key) -> tuple[float, float, float]:
        vals = [r[key][0] for r in runs]
        return float(np.median(vals)), min(vals), max(vals)

    mode = (
        f"interleaved, {args.rounds} rounds of {args.reps} calls" if args.rounds else "sequential"
    )
    print(
        f"fold-in + top-10, ms per call (median of {args.runs} runs; min-max), {args.items} items, d=64"
        f" ({mode})"
    )
    print(f"load before: {load_before}\nload after:  {load_after}")
    print(
        "| model | 5 items | 50 items | 500 items | ratio to floor at 50 (min-max) "
        "| CPU-time ratio at 50 (min-max) | top-10 overlap |"
    )
    print("|---|---|---|---|---|---|---|")
    table = {}
    for name in ["floor", "implicit", *names]:
        cells = [cell((name, n)) for n in SIZES]
        ratios = [r[(name, 50)][0] / r[("floor", 50)][0] for r in runs]
        cpu = [r[(name, 50)][1] / max(r[("floor", 50)][1], 1e-9) for r in runs]
        q = quality.get(name)
        label = {
            "floor": "numpy floor",
            "implicit": "implicit recalculate_user (fold-in only)",
        }.get(name, name)
        print(
            f"| {label} | "
            + " | ".join(f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in cells)
            + f" | {np.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"
            + f" | {np.median(cpu):.1f}x ({min(cpu):.1f}-{max(cpu):.1f}) | "
            + ("" if q is None else f"{q:.3f}")
            + " |"
        )
        table[name] = {
            "ms": {n: c[0] for n, c in zip(SIZES, cells)},
            "ratio50": float(np.median(ratios)),
            "cpu_ratio50": float(np.median(cpu)),
            "overlap": q,
        }
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "table": table,
                    "load": [load_before, load_after],
                    "threads": os.environ.get("OMP_NUM_THREADS"),
                    "mode": mode,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
