"""Exact vs approximate retrieval on a synthetic catalogue: recall@k against exact, and query latency.

    .venv/bin/python benchmarks/bench_ann.py                       # 1M items, d=64 (the recorded run)
    .venv/bin/python benchmarks/bench_ann.py --items 100000 --queries 300   # a quick look

The catalogue imitates trained item embeddings: items in ``--clusters`` taste clusters, each vector a
cluster direction plus noise, with log-normal norms (popular items have longer vectors); a query is a
user vector folded in from 5-30 items, mostly of one cluster, plus noise. Compared in one run:

- ``ExactIndex``            embrec's exact blocked index (torch matmul + running top-k)
- ``faiss.IndexFlatIP``     FAISS's exact brute force: the peer for the exact side
- ``FaissIndex(hnsw)``      at several ef_search values, and ``FaissIndex(ivf)`` at several nprobe

Latency is per single query (batch of 1, one thread: the serving case, where concurrent requests run
on separate threads): p50 and p99 over ``--queries`` queries; throughput is for all queries in one
batch with all threads. Recall@k is |approx top-k ∩ exact top-k| / k, averaged, with
and without 50 excluded (seen) items per query. Prints a markdown table; ``--out`` writes JSON too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import faiss
import numpy as np
import torch

from embrec.data import Ragged
from embrec.index import ExactIndex, FaissIndex


def catalogue(n: int, d: int, clusters: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, Ragged]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, clusters, n)
    items = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 200_000):  # in chunks to bound memory
        e = min(s + 200_000, n)
        v = centres[cluster[s:e]] + rng.normal(0.0, 1.0 / np.sqrt(d), size=(e - s, d)).astype(np.float32)
        v *= rng.lognormal(0.0, 0.4, size=(e - s, 1)).astype(np.float32)
        items[s:e] = v
    by_cluster = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[by_cluster], np.arange(clusters + 1))
    queries = np.empty((n_queries, d), dtype=np.float32)
    histories = []
    for q in range(n_queries):
        c = rng.integers(clusters)
        size = int(rng.integers(5, 31))
        own = by_cluster[starts[c] + rng.integers(0, starts[c + 1] - starts[c], size)]
        other = rng.integers(0, n, max(1, size // 5))
        hist = np.concatenate([own, other])
        histories.append(hist)
        queries[q] = items[hist].mean(axis=0) + 0.1 * rng.normal(size=d)
    # 50 "seen" items per query: its history plus random others
    seen = Ragged.from_lists([np.unique(np.concatenate([h, rng.integers(0, n, 50)]))[:50] for h in histories])
    return items, queries, seen


def timed_single(search, queries: np.ndarray, exclude: Ragged | None = None) -> np.ndarray:
    times = np.empty(len(queries))
    for i in range(len(queries)):
        ex = None if exclude is None else exclude.select(np.array([i]))
        t0 = time.perf_counter()
        search(queries[i : i + 1], ex)
        times[i] = time.perf_counter() - t0
    return times * 1000.0


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="64,128,256", help="HNSW ef_search values")
    parser.add_argument("--nprobe", default="32,64,128", help="IVF nprobe values")
    parser.add_argument("--indexes", default="exact,flat,hnsw,ivf",
                        help="which to time (exact top-k is always computed as the truth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    k = args.k

    t0 = time.perf_counter()
    items, queries, seen = catalogue(args.items, args.dim, args.clusters, args.queries, args.seed)
    print(f"catalogue: {args.items:,} items x {args.dim}, {args.queries} queries "
          f"({time.perf_counter() - t0:.1f} s to generate)", flush=True)
    rows: list[dict] = []

    def record(name: str, build_s: float, search, truth, truth_ex) -> None:
        # one thread per single query (a server answers concurrent requests on separate threads);
        # all threads for the batch
        threads = torch.get_num_threads(), faiss.omp_get_max_threads()
        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
        lat = timed_single(lambda q, ex: search(q, None), queries)
        lat_ex = timed_single(lambda q, ex: search(q, ex), queries, seen)
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
        t = time.perf_counter()
        found = search(queries, None)
        batch_s = time.perf_counter() - t
        found_ex = search(queries, seen)
        row = {"index": name, "build_s": round(build_s, 1),
               "recall": None if truth is None else round(recall(found, truth), 4),
               "recall_excl": None if truth_ex is None else round(recall(found_ex, truth_ex), 4),
               "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
               "p50_excl_ms": round(float(np.percentile(lat_ex, 50)), 3),
               "p99_excl_ms": round(float(np.percentile(lat_ex, 99)), 3),
               "batch_qps": round(len(queries) / batch_s, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    t = time.perf_counter()
    exact = ExactIndex(measure="dot").index(items)
    build = time.perf_counter() - t
    truth, _ = exact.search(queries, k)
    truth_ex, _ = exact.search(queries, k, exclude=seen)
    todo = set(args.indexes.split(","))
    if "exact" in todo:
        record("embrec ExactIndex", build, lambda q, ex: exact.search(q, k, exclude=ex)[0], None, None)
    if "flat" in todo:
        flat_peer(args, items, k, record, truth, truth_ex)
    if "hnsw" in todo:
        t = time.perf_counter()
        hnsw = FaissIndex(measure="dot", kind="hnsw").index(items)
        build = time.perf_counter() - t
        for ef in [int(x) for x in args.ef.split(",")]:
            hnsw.ef_search = ef
            record(f"FaissIndex hnsw M=32 ef_search={ef}", build,
                   lambda q, ex: hnsw.search(q, k, exclude=ex)[0], truth, truth_ex)
            build = 0.0
    if "ivf" in todo:
        t = time.perf_counter()
        ivf = FaissIndex(measure="dot", kind="ivf").index(items)
        build = time.perf_counter() - t
        for nprobe in [int(x) for x in args.nprobe.split(",")]:
            ivf.nprobe = nprobe
            record(f"FaissIndex ivf nlist={ivf._index.nlist} nprobe={nprobe}", build,
                   lambda q, ex: ivf.search(q, k, exclude=ex)[0], truth, truth_ex)
            build = 0.0
    report(args, rows, k)


def flat_peer(args, items, k, record, truth, truth_ex) -> None:
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(items)
    build = time.perf_counter() - t

    def flat_search(q, ex):  # the peer has no exclusions: over-fetch 50 and drop, as a caller would
        _, ids = flat.search(q, k if ex is None else k + 50)
        if ex is None:
            return ids
        return np.array([[i for i in r if i not in set(ex[j])][:k] for j, r in enumerate(ids)])

    record("faiss IndexFlatIP (exact peer)", build, flat_search, truth, truth_ex)


def report(args, rows, k) -> None:
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch threads "
           f"{torch.get_num_threads()}, faiss {faiss.__version__} omp threads {faiss.omp_get_max_threads()}")
    print(f"\n{args.items:,} items, d={args.dim}, {args.queries} queries, k={k}; {env}\n")
    print("| index | build s | recall@10 | recall@10, 50 excluded | p50 ms | p99 ms | p50 / p99 ms, excluded | "
          "batch queries/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rec = "exact" if r["recall"] is None else f"{r['recall']:.3f}"
        rec_ex = "exact" if r["recall_excl"] is None else f"{r['recall_excl']:.3f}"
        print(f"| {r['index']} | {r['build_s'] or ''} | {rec} | {rec_ex} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['p50_excl_ms']:.2f} / {r['p99_excl_ms']:.2f} | {r['batch_qps']:,.0f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"items": args.items, "dim": args.dim, "queries": args.queries, "k": k, "env": env,
                       "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
