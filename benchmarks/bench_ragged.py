"""Ragged (values + offsets) vs padded history pooling: train the two-tower both ways on the same data.

A synthetic shop with heavy-tailed history lengths (log-normal user activity; the longest histories hold
thousands of items) is generated once; each layout then trains ``TwoTower`` for the same epochs in its
own fresh process (so peak RSS is that layout's own), with in-batch sampled softmax and every user's
whole history as input. ``ragged`` pools with ``embedding_bag`` over values + offsets; ``padded`` pads
each batch to its longest history, gathers (B, L, d) vectors and takes a masked mean — the answer the
YouTube-DNN question got. Reported: training examples per second (training time only) and the peak
resident memory of the process.

    .venv/bin/python benchmarks/bench_ragged.py                 # the figures in docs/benchmarks.md
    .venv/bin/python benchmarks/bench_ragged.py --users 500     # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def make_log(args: argparse.Namespace):
    from embrec.datasets import synthetic

    return synthetic(n_users=args.users, n_items=args.items, n_interactions=args.interactions,
                     activity_sigma=args.sigma, seed=args.seed)


def train_one(args: argparse.Namespace) -> dict:
    import torch

    from embrec.models.two_tower import TwoTower

    torch.set_num_threads(args.threads)
    log = make_log(args)
    model = TwoTower(dim=64, feature_dim=16, item_hidden=(64,), user_hidden=(64,), loss="sampled",
                     targets="holdout", holdout=0.1, pooling=args.layout, epochs=args.epochs,
                     batch_size=args.batch_size, item_ids=True, seed=0, progress=False)
    start = time.perf_counter()
    model.fit(log)
    wall = time.perf_counter() - start
    train_s = sum(h["seconds"] for h in model.history_)
    n_examples = int((log.user_histories().lengths > 1).sum()) * args.epochs
    return {"layout": args.layout, "examples": n_examples, "train_seconds": train_s, "fit_seconds": wall,
            "examples_per_s": n_examples / train_s, "final_loss": model.history_[-1]["loss"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--interactions", type=int, default=300_000)
    p.add_argument("--sigma", type=float, default=1.5, help="log-normal activity sigma (tail weight)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["ragged", "padded"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.layout:  # child process: one layout, JSON on stdout
        print(json.dumps(train_one(args)))
        return
    lengths = make_log(args).user_histories().lengths[1:]
    print(f"history lengths: users {lengths.size}, median {int(sorted(lengths)[lengths.size // 2])}, "
          f"mean {lengths.mean():.1f}, max {lengths.max()}, users with >= 1000 items {(lengths >= 1000).sum()}")
    rows = []
    for layout in ("ragged", "padded"):
        cmd = [sys.executable, __file__, "--layout", layout] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "layout"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| layout | examples/s | train (s) | peak RSS (MiB) | final loss |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['examples_per_s']:.0f} | {r['train_seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['final_loss']:.3f} |")
    print(f"ragged vs padded: {rows[0]['examples_per_s'] / rows[1]['examples_per_s']:.1f}x the examples/s, "
          f"{rows[1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.1f}x less peak RSS")


if __name__ == "__main__":
    main()
