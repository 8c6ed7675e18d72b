"""The softmax DNN and the two-tower on the protocols, beside baselines fitted in the same run.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_deep.py            # everything
    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_deep.py --only ml100k-top10

Prints markdown tables for docs/benchmarks.md (## Deep retrieval models): ``run_protocol`` rows for
``ml100k-top10`` (ua split) and ``retail-precision`` (validation month; then the test month, fitted on
everything before it for the epochs early stopping chose on validation), then the ml-100k genre overlap
of the two-tower's top-10 cosine neighbours against random pairs (fitted on ua.base,
``embrec.evaluation.neighbours.model_genre_overlap``). The hyper-parameters below were chosen on
validation data only (a random 10% of each user's ua.base ratings; the retail validation month).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from embrec.baselines import Popularity, RepeatFrequency
from embrec.models.softmax_dnn import SoftmaxDNN
from embrec.models.two_tower import TwoTower

ML100K = {
    "softmax-dnn": lambda: SoftmaxDNN(dim=128, hidden=(256,), dropout=0.5, holdout=0.3, epochs=160, batch_size=64,
                                      lr=1e-3, seed=0),
    "two-tower": lambda: TwoTower(holdout=0.3, epochs=30, batch_size=64, seed=0),
    "popularity": Popularity,
}
RETAIL = {  # part="valid": early stopping on the validation month
    "softmax-dnn": lambda: SoftmaxDNN(epochs=40, patience=5, seed=0),
    "two-tower": lambda: TwoTower(max_history=300, epochs=40, patience=5, seed=0),
    "repeat-frequency": RepeatFrequency,
    "popularity": Popularity,
}
RETAIL_TEST = {  # part="test": no validation set, the epochs early stopping picked on part="valid"
    "softmax-dnn": lambda: SoftmaxDNN(epochs=SDNN_RETAIL_EPOCHS, seed=0),
    "two-tower": lambda: TwoTower(max_history=300, epochs=TT_RETAIL_EPOCHS, seed=0),
    "repeat-frequency": RepeatFrequency,
    "popularity": Popularity,
}
SDNN_RETAIL_EPOCHS = 12
TT_RETAIL_EPOCHS = 40


def protocol_rows(name: str, factories: dict, **options) -> None:
    from embrec.evaluation import run_protocol

    start = time.perf_counter()
    res = run_protocol(name.split(" ")[0], factories, **options)
    run_s = time.perf_counter() - start
    for r in res["results"]:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        print(f"| {name} | {r['model']} | {metrics} | {r['fit_seconds']:.1f} | {run_s:.0f} |", flush=True)


def overlap_rows() -> None:
    from embrec.datasets import load, ml100k_fold
    from embrec.evaluation.neighbours import model_genre_overlap

    base, _ = ml100k_fold("ua")
    full = load("ml-100k")
    model = ML100K["two-tower"]().fit(base)
    for min_count in (1, 20):
        o = model_genre_overlap(model, full, column="genres", k=10, min_count=min_count)
        print(f"| two-tower | {min_count} | {o['n_queries']} | {o['neighbour_jaccard']:.3f} | "
              f"{o['random_jaccard']:.3f} | {o['ratio']:.2f} | {o['neighbour_share']:.3f} | "
              f"{o['random_share']:.3f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["ml100k-top10", "retail-precision", "retail-test", "overlap"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Python {platform.python_version()}, torch {torch.__version__}, {args.threads} torch thread(s)\n")
    if args.only in (None, "ml100k-top10", "retail-precision", "retail-test"):
        print("| protocol | model | metrics | fit (s) | run (s) |")
        print("|---|---|---|---|---|")
    if args.only in (None, "ml100k-top10"):
        protocol_rows("ml100k-top10", ML100K)
    if args.only in (None, "retail-precision"):
        protocol_rows("retail-precision", RETAIL, part="valid")
    if args.only in (None, "retail-test"):
        protocol_rows("retail-precision (test)", RETAIL_TEST, part="test")
    if args.only in (None, "overlap"):
        print("\n| model | min training events | queries | neighbour jaccard | random jaccard | ratio | "
              "neighbour share | random share |")
        print("|---|---|---|---|---|---|---|---|")
        overlap_rows()


if __name__ == "__main__":
    main()
