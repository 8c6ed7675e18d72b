"""Time the dataset layer: Online Retail and ml-100k into Interactions, and the synthetic shop at 1M rows.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_datasets.py [--repeat 3]

Each row is beside a peer measured in the same run: for Online Retail, the retail chapter's own pandas
steps (read, drop "C" invoices, encode stock codes with a sorted dict) on the same file, which builds far
less (no user vocabulary, no transactions, no timestamps, no item features); for the synthetic shop, an
unstructured log of the same size drawn with NumPy alone (Zipf items, uniform users, no baskets). Prints a
markdown table (best and median of ``--repeat`` runs, seconds).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.datasets import load, synthetic
from embrec.datasets.registry import get_spec
from embrec.datasets.resolve import find
from embrec.datasets.retail import find_file


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def chapter_retail(path: Path) -> pd.DataFrame:
    """The retail chapter's preparation, as printed there (parquet instead of the pickled xlsx)."""
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    df.columns = df.columns.str.lower()
    df = df[~df.invoiceno.astype("str").str.startswith("C")].reset_index(drop=True)
    df.customerid = df.customerid.fillna(-1).astype("int32")
    stockcode_values = df.stockcode.astype("str")
    stockcodes = {c: i for (i, c) in enumerate(sorted(set(stockcode_values)))}
    df.stockcode = stockcode_values.map(stockcodes).astype("int32")
    return df


def numpy_log(n: int, n_users: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1)
    return rng.integers(0, n_users, size=n), rng.choice(n_items, size=n, p=w / w.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic interactions")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float, str, str]] = []

    retail_dir = find(get_spec("online-retail"))
    if retail_dir is not None:
        best, med, log = timed(lambda: load("online-retail", download=False), args.repeat)
        pbest, pmed, _ = timed(lambda: chapter_retail(find_file(retail_dir)), args.repeat)
        rows.append(("load('online-retail') -> Interactions", f"{len(log):,} rows", best, med, "< 5 s",
                     f"chapter's pandas steps: {pbest:.2f} / {pmed:.2f}"))
    else:
        print("online-retail not found (set EMBREC_DATA); skipped", file=sys.stderr)
    if find(get_spec("ml-100k")) is not None:
        best, med, log = timed(lambda: load("ml-100k", download=False), args.repeat)
        rows.append(("load('ml-100k') -> Interactions", f"{len(log):,} rows", best, med, "-", "-"))

    n = args.rows
    kw = {"n_users": max(1000, n // 10), "n_items": max(500, n // 50), "n_interactions": n}
    best, med, log = timed(lambda: synthetic(**kw, seed=0), args.repeat)
    pbest, pmed, _ = timed(lambda: numpy_log(n, kw["n_users"], kw["n_items"]), args.repeat)
    rows.append((f"synthetic({n:,} rows, {kw['n_users']:,} users, {kw['n_items']:,} items)",
                 f"{int(log.group.max()) + 1:,} baskets", best, med, "< 30 s",
                 f"NumPy-only unstructured log: {pbest:.2f} / {pmed:.2f}"))

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, NumPy {np.__version__}, pandas {pd.__version__}; "
          f"best / median of {args.repeat}\n")
    print("| task | size | best (s) | median (s) | target | peer, same run: best / median (s) |")
    print("|---|---|---|---|---|---|")
    for task, size, b, m, target, peer in rows:
        print(f"| {task} | {size} | {b:.2f} | {m:.2f} | {target} | {peer} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
