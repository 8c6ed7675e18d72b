"""All-users scoring (issue 14, part 5): ``embrec recommend-all`` beside a NumPy floor, same model, same run.

    python benchmarks/bench_batch_scoring.py --users 1000000 --items 100000 --dim 64 --runs 2

The model is built, not trained: a BPR model directory with seeded random factors of the asked shape
(``--users`` x ``--dim`` user factors, ``--items`` x ``--dim`` item factors and item biases, text ids
``U0000001``... / ``I000001``..., each user with ``--history`` random training items, the exact index),
saved once under ``--root``. Scoring time does not depend on what the factors learned.

Each run times, one after the other in fresh processes (the order alternates between runs):

- ``cli``: ``embrec recommend-all DIR --out recs.parquet -k K`` (``--exclude-seen`` with
  ``--exclude-seen``), the whole command: start, model load, scoring, the Parquet file;
- ``floor``: the same scores in NumPy, nothing else: the (users, d + 1) queries ``[p_u, 1]`` against the
  (items, d + 1) candidates ``[q_i, b_i]``, in blocks of ``--block`` users, ``np.argpartition`` for the
  k best of each row and a sort of those k; factors read from the model's weights file; no ids, no file.

Both use every core (BLAS and torch threads at their defaults). Prints one JSON line per measurement, with
the 1-minute load average before and after, CPU seconds beside wall seconds (the command's: its process and
children; the floor's: the scoring span), and the cli / floor ratios of each run.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build(path: Path, users: int, items: int, dim: int, history: int, seed: int) -> None:
    """A saved BPR model with random factors of the asked shape (see the module docstring)."""
    from embrec.data.ragged import Ragged
    from embrec.data.vocab import IdVocab
    from embrec.models.bpr import BPR

    rng = np.random.default_rng(seed)
    model = BPR(factors=dim, progress=False)
    model.users_ = IdVocab(
        np.array([f"U{u:07d}" for u in range(1, users + 1)], dtype=object), name="user"
    )
    model.items_ = IdVocab(
        np.array([f"I{i:06d}" for i in range(1, items + 1)], dtype=object), name="item"
    )
    model.seen_ = Ragged.from_lengths(
        rng.integers(1, items + 1, size=users * history),
        np.r_[0, np.full(users, history)],
    )
    model.item_counts_ = np.bincount(model.seen_.values, minlength=items + 1).astype(np.int64)
    model.fingerprint_ = f"random factors {users}x{items}x{dim} seed {seed}"
    model.history_, model.metrics_, model.item_labels_ = [], {}, None
    scale = np.float32(1 / np.sqrt(dim))
    model.user_factors_ = rng.standard_normal((users + 1, dim), dtype=np.float32) * scale
    model.item_factors_ = rng.standard_normal((items + 1, dim), dtype=np.float32) * scale
    model.user_bias_ = np.zeros(users + 1, dtype=np.float32)
    model.item_bias_ = rng.standard_normal(items + 1, dtype=np.float32) * np.float32(0.1)
    model.global_bias_ = 0.0
    model.fold_in_prior_ = 0.0
    model.set_index("exact")
    model.save(path)


def floor(path: Path, k: int, block: int, exclude_seen: bool) -> dict:
    """Top-k of every user by NumPy matmul + argpartition (in this process); seconds of the scoring."""
    from safetensors.numpy import load_file

    weights = load_file(str(path / "current" / "weights.safetensors"))
    p, q, b = weights["user_factors"], weights["item_factors"], weights["item_bias"]
    seen_v, seen_o = weights["_base.seen.values"], weights["_base.seen.offsets"]
    t0, c0 = time.perf_counter(), time.process_time()
    queries = np.hstack([p, np.ones((p.shape[0], 1), dtype=np.float32)])  # (U + 1, d + 1)
    cand = np.ascontiguousarray(np.hstack([q, b[:, None]])[1:].T)  # (d + 1, I)
    top = np.empty((p.shape[0] - 1, k), dtype=np.int64)
    for s in range(1, p.shape[0], block):
        e = min(s + block, p.shape[0])
        sc = queries[s:e] @ cand  # (B, I)
        if exclude_seen:
            lo, hi = seen_o[s], seen_o[e]
            rows = np.repeat(np.arange(e - s), np.diff(seen_o[s : e + 1]))
            sc[rows, seen_v[lo:hi] - 1] = -np.inf
        part = np.argpartition(sc, sc.shape[1] - k, axis=1)[:, -k:]  # (B, k) the k best, unordered
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1)
        top[s - 1 : e - 1] = np.take_along_axis(part, order, 1) + 1
    return {
        "floor_s": round(time.perf_counter() - t0, 2),
        "floor_cpu_s": round(time.process_time() - c0, 2),
        "checksum": int(top[:, 0].sum()),
    }


def run_cli(path: Path, out: Path, k: int, exclude_seen: bool) -> dict:
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "embrec",
        "recommend-all",
        str(path),
        "--out",
        str(out),
        "-k",
        str(k),
        "--json",
    ]
    if exclude_seen:
        cmd.append("--exclude-seen")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode:
        raise SystemExit(f"recommend-all failed: {proc.stderr.strip()[-400:]}")
    res = json.loads(proc.stdout)
    return {
        "cli_s": round(wall, 2),
        "cli_cpu_s": round(cpu, 2),
        "cli_scoring_s": res["seconds"],
        "rows": res["rows"],
    }


def timed(step: str, args: argparse.Namespace, path: Path) -> dict:
    """One measurement in a fresh process, with the load average around it."""
    load0 = os.getloadavg()[0]
    if step == "cli":
        row = run_cli(path, Path(args.root) / "recs.parquet", args.k, args.exclude_seen)
    else:
        cmd = [
            sys.executable,
            __file__,
            "--child-floor",
            "--root",
            args.root,
            "-k",
            str(args.k),
            "--block",
            str(args.block),
            *(["--exclude-seen"] if args.exclude_seen else []),
            "--users",
            str(args.users),
            "--items",
            str(args.items),
            "--dim",
            str(args.dim),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument(
        "--history", type=int, default=5, help="training items per user (for --exclude-seen)"
    )
    parser.add_argument("--exclude-seen", action="store_true")
    parser.add_argument(
        "--block",
        type=int,
        default=512,
        help="users per block of the floor (its scores and argpartition's indices: 12 bytes x block x items)",
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--root", default="/tmp/embrec-batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        default="cli,floor",
        help="cli, floor or both (the floor takes ~10 minutes at 1M x 100k on 2 cores)",
    )
    parser.add_argument("--child-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = Path(args.root) / f"bpr-{args.users}x{args.items}x{args.dim}"
    if args.child_floor:
        print(json.dumps(floor(path, args.k, args.block, args.exclude_seen)), flush=True)
        return
    if not path.exists():
        t0 = time.perf_counter()
        build(path, args.users, args.items, args.dim, args.history, args.seed)
        print(
            json.dumps({"built": str(path), "seconds": round(time.perf_counter() - t0, 1)}),
            flush=True,
        )
    for run in range(args.runs):
        order = ("cli", "floor") if run % 2 == 0 else ("floor", "cli")
        order = tuple(step for step in order if step in args.steps.split(","))
        rows = {step: timed(step, args, path) for step in order}
        for step in order:
            print(json.dumps({"run": run, "step": step, **rows[step]}), flush=True)
        if len(rows) < 2:
            continue
        print(
            json.dumps(
                {
                    "run": run,
                    "cli/floor": round(rows["cli"]["cli_s"] / rows["floor"]["floor_s"], 2),
                    "cli scoring/floor": round(
                        rows["cli"]["cli_scoring_s"] / rows["floor"]["floor_s"], 2
                    ),
                    "cli/floor, cpu": round(
                        rows["cli"]["cli_cpu_s"] / rows["floor"]["floor_cpu_s"], 2
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
