"""softmax-dnn: full vs sampled softmax — epoch time by catalogue size (the ``loss="auto"`` threshold) and
leave-last-out quality on ml-100k, each pair measured side by side in one run (one thread).

    python benchmarks/bench_softmax_sampled.py speed --items 1000,5000,10000,20000,50000 --events 200000
    python benchmarks/bench_softmax_sampled.py speed --items 50000 --events 4000000 --losses sampled
    EMBREC_DATA=../shared/datasets python benchmarks/bench_softmax_sampled.py quality --epochs 10

``speed`` fits one epoch of each loss on a synthetic shop (users = events / 20) and prints the epoch seconds
and their ratio (and the fits' CPU seconds, which a shared machine's load inflates less; they include
the setup both losses share); ``quality`` runs the leave-last-out protocol on ml-100k for both losses.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from embrec.datasets import synthetic
from embrec.evaluation import run_protocol
from embrec.models.softmax_dnn import SoftmaxDNN


def speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n_items in map(int, args.items.split(",")):
        log = synthetic(
            n_users=max(args.events // 20, 10), n_items=n_items, n_interactions=args.events, seed=0
        )
        row: dict = {"items": n_items, "events": args.events}
        for loss in args.losses.split(","):
            model = SoftmaxDNN(epochs=1, loss=loss, patience=None, progress=False, seed=0)
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(log)
            row[f"{loss}_epoch_s"] = round(model.history_[0]["seconds"], 2)
            row[f"{loss}_fit_s"] = round(time.perf_counter() - t0, 2)
            row[f"{loss}_fit_cpu_s"] = round(time.process_time() - c0, 2)
        if "full_epoch_s" in row and "sampled_epoch_s" in row:
            row["full/sampled"] = round(row["full_epoch_s"] / row["sampled_epoch_s"], 2)
            row["full/sampled fit cpu"] = round(row["full_fit_cpu_s"] / row["sampled_fit_cpu_s"], 2)
        row["load"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def quality(args: argparse.Namespace) -> dict:
    factories = {
        f"softmax-dnn loss={loss}": (
            lambda loss=loss: SoftmaxDNN(
                epochs=args.epochs, loss=loss, patience=None, progress=False, seed=0
            )
        )
        for loss in args.losses.split(",")
    }
    res = run_protocol("leave-last-out", factories, dataset="ml-100k", data_dir=args.data_dir)
    for row in res["results"]:
        print(
            json.dumps(
                {"model": row["model"], "metrics": row["metrics"], "fit_s": row.get("fit_seconds")}
            ),
            flush=True,
        )
    return res


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("speed", "quality"))
    parser.add_argument("--items", default="1000,5000,10000,20000,50000")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--losses", default="full,sampled")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    speed(args) if args.what == "speed" else quality(args)


if __name__ == "__main__":
    main()
