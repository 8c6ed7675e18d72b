"""Explicit-rating models on ml-100k: ml100k-rmse, ml100k-top10 beside the implicit models, and whether
the item embeddings' nearest neighbours make sense (genre overlap vs random pairs).

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_explicit.py [--json] [--threads 1] \
        [--rmse-models rating-bias,explicit-mf,rating-dnn] [--top10-models popularity,als,implicit-mf,bpr,explicit-mf] \
        [--neighbour-models explicit-mf,rating-dnn]       (an empty list skips that part)

1. ``ml100k-rmse`` (u1..u5, mean of the folds): explicit MF and the rating DNN beside the
   ``rating-bias`` baseline (BaselineOnly-style) in the same run. The protocol hands no validation set
   to ``fit``; each model holds out its own seeded 5 % of uN.base for early stopping (never uN.test).
2. ``ml100k-top10`` (ua split): explicit MF beside popularity, ALS, implicit MF and BPR (their defaults).
3. Neighbour genre overlap: each model fitted on all 100,000 ratings; for every movie, its top-10
   cosine neighbours' genre Jaccard vs the mean over all pairs of movies (``genre_overlap``), for all
   movies and for movies with >= 20 ratings.

Prints Markdown tables (or one JSON document with --json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from embrec.datasets import load
from embrec.evaluation import run_protocol
from embrec.evaluation.neighbours import model_genre_overlap
from embrec.models.explicit_mf import ExplicitMF
from embrec.models.rating_dnn import RatingDNN


def explicit_mf() -> ExplicitMF:
    return ExplicitMF()


def rating_dnn() -> RatingDNN:
    return RatingDNN()


def rating_dnn_plain() -> RatingDNN:
    """The rating DNN without its observation head: the defaults before it (implicit=0, init_std=0.05,
    embedding_lr=1.0, batch_size=128)."""
    return RatingDNN(implicit=0.0, init_std=0.05, embedding_lr=1.0, batch_size=128)


def explicit_mf_colab() -> ExplicitMF:
    """The colab's regularized model: no biases, gravity on (its embeddings keep the most genre structure)."""
    return ExplicitMF(biases=False, gravity=1.0)


def rating_dnn_gravity() -> RatingDNN:
    """The colab's gravity on the whole network output (sampled over random pairs), no biases; the plain
    DNN's other settings (as measured before the observation head)."""
    return RatingDNN(biases=False, output_gravity=1.0, implicit=0.0, init_std=0.05, embedding_lr=1.0,
                     batch_size=128)


def factories() -> dict[str, Callable[[], Any]]:
    from embrec.baselines import Popularity, RatingBias
    from embrec.models.als import ALS
    from embrec.models.bpr import BPR
    from embrec.models.implicit_mf import ImplicitMF

    return {"rating-bias": RatingBias, "popularity": Popularity, "als": ALS, "implicit-mf": ImplicitMF,
            "bpr": BPR, "explicit-mf": explicit_mf, "rating-dnn": rating_dnn,
            "rating-dnn-plain": rating_dnn_plain,
            "explicit-mf-colab": explicit_mf_colab, "rating-dnn-gravity": rating_dnn_gravity}


def pick(names: str) -> dict[str, Callable[[], Any]]:
    known = factories()
    return {n: known[n] for n in names.split(",") if n}


def neighbours_table(models: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    data = load("ml-100k")
    rows = []
    for name, factory in models.items():
        start = time.perf_counter()
        model = factory().fit(data)
        seconds = time.perf_counter() - start
        for min_count in (1, 20):
            out = model_genre_overlap(model, data, column="genres", k=10, min_count=min_count)
            rows.append({"model": name, "min_count": min_count, "fit_seconds": seconds, **out})
    return {"dataset": "ml-100k (all 100,000 ratings)", "results": rows}


def markdown(report: dict[str, Any]) -> str:
    out = []
    for key in ("rmse", "top10"):
        if key not in report:
            continue
        table = report[key]
        metrics = list(table["results"][0]["metrics"])
        out.append(f"### {table['protocol']}\n\n| model | {' | '.join(metrics)} | fit s |\n"
                   f"|---|{'---|' * len(metrics)}---|")
        for r in table["results"]:
            vals = " | ".join(f"{r['metrics'][m]:.4f}" for m in metrics)
            out.append(f"| {r['model']} | {vals} | {r['fit_seconds']:.0f} |")
        for r in table["results"]:
            if "folds" in r:
                per = ", ".join(f"{f['fold']} {f['metrics']['rmse']:.4f}" for f in r["folds"])
                out.append(f"\n{r['model']} per fold: {per}")
        out.append("")
    if "neighbours" in report:
        out.append("### neighbour genre overlap (top-10 cosine, ml-100k)\n\n"
                   "| model | movies queried | neighbour Jaccard | random Jaccard | ratio | "
                   "share a genre (neighbours / random) |\n|---|---|---|---|---|---|")
        for r in report["neighbours"]["results"]:
            out.append(f"| {r['model']} | {r['n_queries']} (>= {r['min_count']} ratings) | "
                       f"{r['neighbour_jaccard']:.3f} | {r['random_jaccard']:.3f} | {r['ratio']:.2f} | "
                       f"{r['neighbour_share']:.3f} / {r['random_share']:.3f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rmse-models", default="rating-bias,explicit-mf,rating-dnn")
    parser.add_argument("--top10-models", default="popularity,als,implicit-mf,bpr,explicit-mf")
    parser.add_argument("--neighbour-models", default="explicit-mf,rating-dnn")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {}
    if args.rmse_models:
        report["rmse"] = run_protocol("ml100k-rmse", pick(args.rmse_models))
    if args.top10_models:
        report["top10"] = run_protocol("ml100k-top10", pick(args.top10_models))
    if args.neighbour_models:
        report["neighbours"] = neighbours_table(pick(args.neighbour_models))
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
