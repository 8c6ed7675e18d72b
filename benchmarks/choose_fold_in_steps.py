"""Choose the default ``fold_in_steps`` of BPR and implicit MF by self-consistency on training users.

    EMBREC_DATA=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/choose_fold_in_steps.py \
        [--steps 1,2,3,4,5,8,20] [--datasets synthetic,ml-100k,online-retail]

For each model (at its defaults, seed 0) trained on each dataset (the full log: the procedure reads
training users only), fold 200 training users' own histories back in with each step cap and report the
mean top-10 overlap (unseen items) with their stored vectors' top 10, and the ms per one-history
recommend call at 50 items. The rule: the fewest steps whose overlap is within 0.01 of the 20-step
(converged) overlap on every dataset. The fold-in's prior weight stays at the one calibrated at fit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_foldin import overlap


def load(name: str):
    from embrec import datasets

    if name == "synthetic":
        return datasets.synthetic(n_users=3000, n_items=3000, n_interactions=60_000, seed=0)
    return datasets.load(name)


def ms_per_call(model, n: int = 50, reps: int = 20) -> float:
    rng = np.random.default_rng(0)
    rows = rng.choice(np.arange(1, model.items_.size), n, replace=False)
    raw = model.items_.decode(rows).tolist()
    model.recommend(histories=[raw], k=10)
    t = time.perf_counter()
    for _ in range(reps):
        model.recommend(histories=[raw], k=10)
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,2,3,4,5,8,20")
    ap.add_argument("--datasets", default="synthetic,ml-100k,online-retail")
    ap.add_argument("--models", default="bpr,implicit-mf")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from embrec.models.registry import create

    steps = [int(s) for s in args.steps.split(",")]
    print("| model | dataset | " + " | ".join(f"{s} steps" for s in steps) + " |")
    print("|---|---|" + "---|" * len(steps))
    for name in args.models.split(","):
        for ds in args.datasets.split(","):
            log = load(ds)
            model = create(name, seed=0)
            model.progress = False
            t = time.perf_counter()
            model.fit(log)
            fit_s = time.perf_counter() - t
            cells = []
            for s in steps:
                model.fold_in_steps = s
                cells.append(f"{overlap(model):.4f} ({ms_per_call(model):.1f} ms)")
            print(
                f"| {name} | {ds} (fit {fit_s:.0f} s, prior {model.fold_in_prior_}) | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
