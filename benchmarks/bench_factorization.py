"""Speed of the factorization models, side by side with the ``implicit`` library in the same run.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_factorization.py [--epochs 5]

1. BPR seconds per epoch on Online Retail (the retail-precision training set), embrec's BPR vs
   ``implicit.cpu.bpr.BayesianPersonalizedRanking`` at the same factors. An epoch is one pass worth of
   triples: implicit draws one per distinct (user, item) pair, embrec one per training event (more
   triples), so triples per second is printed too. Target: embrec within 3x of implicit.
2. Top-10 for every known user of Online Retail (``recommend(users=all, k=10)``, raw ids in and out)
   vs implicit's ``recommend`` on the same users. Target: under 2 s.
3. ``similar_items`` for every item of a 100,000-item synthetic catalogue at d=64 (k=10, cosine) with
   the peak resident memory (RSS sampled every 5 ms; the whole process: Python, torch, the data and
   the model included) vs implicit's ``similar_items`` over the same factors afterwards. This part runs
   in a fresh process. Target: peak RSS under 2 GB.

Prints a Markdown table (or JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from embrec.evaluation.retail import retail_folds
from embrec.models.bpr import BPR


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss(fn: Callable[[], Any]) -> tuple[Any, float, int, int]:
    """Run ``fn``; return (result, seconds, RSS before, peak RSS during), RSS sampled every 5 ms."""
    before, peak, done = rss_bytes(), [rss_bytes()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        thread.join()
    return out, seconds, before, max(peak[0], rss_bytes())


def implicit_bpr(factors: int, epochs: int, seed: int, threads: int):
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    return BayesianPersonalizedRanking(factors=factors, iterations=epochs, learning_rate=0.01,
                                       regularization=0.01, random_state=seed, num_threads=threads)


def bench_bpr(args) -> tuple[list[dict[str, Any]], BPR, Any, Any]:
    _, (fold,) = retail_folds(data_dir=args.data_dir, part="valid")
    train = fold.train
    known = train.user > 0
    csr = sp.csr_matrix((np.ones(int(known.sum()), dtype=np.float32), (train.user[known], train.item[known])),
                        shape=(train.users.size, train.items.size))
    csr.sum_duplicates()
    csr.data[:] = 1.0
    rows = []
    peer = implicit_bpr(args.factors, args.epochs, args.seed, args.threads or 0)
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        peer.fit(csr, show_progress=False)
        peer_s = (time.perf_counter() - t0) / args.epochs
    n_peer = int(csr.nnz)
    ours = None
    # "events": one triple per training event (embrec's default: repeats weigh in, 1.39x implicit's
    # triples on this log); "pairs": one per distinct (user, item) pair, the same epoch as implicit's
    for positives in ("events", "pairs"):
        model = BPR(factors=args.factors, epochs=args.epochs, batch_size=args.batch_size, lr=0.005,
                    positives=positives, seed=args.seed, progress=False)
        t0 = time.perf_counter()
        model.fit(train)
        total = time.perf_counter() - t0
        per_epoch = float(np.median([h["seconds"] for h in model.history_]))
        n_ours = int(known.sum()) if positives == "events" else n_peer
        rows.append({"task": f"BPR epoch, Online Retail, factors={args.factors}, positives={positives} "
                             f"({n_ours:,} triples an epoch; implicit {n_peer:,})",
                     "embrec": f"{per_epoch:.3f} s ({n_ours / per_epoch / 1e6:.2f} M triples/s; fit {total:.1f} s "
                               f"for {args.epochs} epochs)",
                     "implicit": f"{peer_s:.3f} s ({n_peer / peer_s / 1e6:.2f} M triples/s)",
                     "ratio": per_epoch / peer_s, "target": "within 3x of implicit",
                     "ok": per_epoch <= 3 * peer_s})
        if positives == "events":  # the default model goes on to the recommend benchmark
            ours = model
    return rows, ours, peer, csr


def bench_recommend(model: BPR, peer, csr) -> list[dict[str, Any]]:
    users = model.users_.raw_ids.tolist()
    model.recommend(users=users[:10], k=10)  # builds the index once, as a served model would have
    _, ours_s, _, _ = peak_rss(lambda: model.recommend(users=users, k=10))
    peer_rows = np.arange(1, model.users_.size)
    with threadpool_limits(1, "blas"):
        _, peer_s, _, _ = peak_rss(lambda: peer.recommend(peer_rows, csr[peer_rows], N=10,
                                                          filter_already_liked_items=False))
    return [{"task": f"top-10 for all {len(users):,} known users, Online Retail",
             "embrec": f"{ours_s:.3f} s", "implicit": f"{peer_s:.3f} s", "ratio": ours_s / peer_s,
             "target": "< 2 s", "ok": ours_s < 2.0}]


def bench_similar(args) -> list[dict[str, Any]]:
    from embrec.datasets import synthetic

    log = synthetic(n_users=20_000, n_items=args.n_items, n_interactions=args.n_items * 10, seed=args.seed)
    model = BPR(factors=64, epochs=1, batch_size=50_000, seed=args.seed, progress=False).fit(log)
    items = model.items_.raw_ids.tolist()
    (recs, ours_s, before, peak) = peak_rss(lambda: model.similar_items(items, k=10, measure="cosine"))
    assert recs.ids.shape == (len(items), 10)
    # the peer: implicit's similar_items over the very same (bias-less) item factors
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(factors=64)
    peer.item_factors = np.ascontiguousarray(model.item_factors_[1:])
    peer.user_factors = np.zeros((1, 64), dtype=np.float32)
    ids = np.arange(len(items))
    (_, peer_s, p_before, p_peak) = peak_rss(lambda: peer.similar_items(ids, N=11))
    return [{"task": f"similar_items for all {len(items):,} items, d=64, k=10, cosine",
             "embrec": f"{ours_s:.2f} s, peak RSS {peak / 2**30:.2f} GB (+{(peak - before) / 2**30:.2f} GB)",
             "implicit": f"{peer_s:.2f} s, peak RSS {p_peak / 2**30:.2f} GB (+{(p_peak - p_before) / 2**30:.2f} GB)",
             "ratio": ours_s / peer_s, "target": "peak RSS < 2 GB", "ok": peak < 2 * 2**30}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=15_000, help="BPR's default batch size")
    parser.add_argument("--n-items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (torch intra-op and implicit's num_threads); default: all")
    parser.add_argument("--skip-similar", action="store_true")
    parser.add_argument("--only-similar", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import implicit

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only_similar:
        print(json.dumps({"rows": bench_similar(args)}))
        return
    rows, model, peer, csr = bench_bpr(args)
    rows += bench_recommend(model, peer, csr)
    if not args.skip_similar:  # in a fresh process, so its peak RSS is that job's alone
        cmd = [sys.executable, __file__, "--only-similar", "--json", "--n-items", str(args.n_items),
               "--seed", str(args.seed)]
        rows += json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["rows"]
    env = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "implicit": implicit.__version__,
           "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2))
        return
    print(f"environment: {env}\n")
    print("| task | embrec | implicit (same run) | embrec / implicit | target | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['embrec']} | {r['implicit']} | {r['ratio']:.2f} | {r['target']} | "
              f"{'yes' if r['ok'] else 'NO'} |")


if __name__ == "__main__":
    main()
