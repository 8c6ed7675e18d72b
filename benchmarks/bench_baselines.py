"""The baselines on every protocol, and the speed of the per-event metrics on the retail validation month.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_baselines.py

Prints markdown tables for docs/benchmarks.md (## Baselines): one row per (protocol, part, model) through
``run_protocol``, then ``transaction_precision`` / ``top_k_accuracy`` timed on the 64k validation rows
beside the retail chapter's loops in plain Python (the chapter compiles them with numba, not installed
here) on the same arrays.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np

from embrec import datasets
from embrec.baselines import ItemTransition, Popularity, RatingBias, RepeatFrequency
from embrec.evaluation import load_folds, run_protocol, top_k_accuracy, transaction_precision

RANKERS = {"popularity": Popularity, "repeat-frequency": RepeatFrequency, "item-transition": ItemTransition}
RUNS = [
    ("retail-precision", {"part": "valid"}, RANKERS),
    ("retail-precision", {"part": "test"}, RANKERS),
    ("retail-next", {"part": "valid"}, RANKERS),
    ("retail-next", {"part": "test"}, RANKERS),
    ("ml100k-rmse", {}, {"rating-bias": RatingBias}),
    ("ml100k-top10", {}, {**RANKERS, "rating-bias": RatingBias}),
    ("leave-last-out", {"dataset": "ml-100k"}, {**RANKERS, "rating-bias": RatingBias}),
]


def protocol_table() -> None:
    retail = datasets.load("online-retail")
    print("| protocol | part | model | metrics | fit (s) | run (s) |")
    print("|---|---|---|---|---|---|")
    for name, options, models in RUNS:
        opts = dict(options)
        if name.startswith("retail"):
            opts["data"] = retail
        start = time.perf_counter()
        result = run_protocol(name, models, **opts)
        total = time.perf_counter() - start
        part = options.get("part") or options.get("dataset", "")
        for r in result["results"]:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
            print(f"| {name} | {part} | {r['model']} | {shown} | {r['fit_seconds']:.2f} | {total:.1f} |")


def chapter_precision(indptr: np.ndarray, true_items: np.ndarray, predicted: np.ndarray) -> float:
    tp = 0
    n, m = predicted.shape
    for i in range(n):
        for item in true_items[indptr[i]:indptr[i + 1]]:
            for j in range(m):
                if item == predicted[i, j]:
                    tp += 1
    return tp / (n * m)


def chapter_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    n, k = y_pred.shape
    acc = 0
    for i in range(n):
        for j in range(k):
            if y_pred[i, j] == y_true[i]:
                acc += 1
                break
    return acc / n


def best_median(fn, repeat: int = 5) -> tuple[float, float, float]:
    times, value = [], 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), value


def metric_speed() -> None:
    _, (fold,) = load_folds("retail-precision")
    events = fold.test
    offsets = events.group_offsets()
    rng = np.random.default_rng(0)
    per_tx = rng.integers(1, events.items.size, (offsets.size - 1, 5))
    per_row = rng.integers(1, events.items.size, (len(events), 5))
    per_row[::7, 2] = np.maximum(events.item[::7], 1)  # some hits (0, an unknown item, is never one)
    print(f"\n{len(events)} rows, {offsets.size - 1} transactions (validation month)\n")
    print("| metric | embrec best / median (s) | chapter loop, plain Python: best / median (s) | same value |")
    print("|---|---|---|---|")
    for label, ours, theirs in [
        ("transaction_precision (precision@5)", lambda: transaction_precision(offsets, events.item, per_tx),
         lambda: chapter_precision(offsets, events.item, per_tx)),
        ("top_k_accuracy (top-5)", lambda: top_k_accuracy(events.item, per_row),
         lambda: chapter_accuracy(events.item, per_row)),
    ]:
        b1, m1, v1 = best_median(ours)
        b2, m2, v2 = best_median(theirs, repeat=3)
        print(f"| {label} | {b1:.4f} / {m1:.4f} | {b2:.3f} / {m2:.3f} | {v1 == v2} |")


if __name__ == "__main__":
    print(f"{platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}\n")
    protocol_table()
    metric_speed()
