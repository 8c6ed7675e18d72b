"""The implicit-feedback factorization models on the retail-precision and ml100k-top10 protocols.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/protocols_factorization.py [--threads 1]

Every model is fitted and scored in the same run as the baselines, through ``embrec.evaluation``
(validation month for retail-precision; the official ``ua`` split for ml100k-top10). The hyper-parameters
below were chosen on those same validation data (sweeps over factors, regularization, epochs, negative
sampling), as DESIGN §4 allows. On retail-precision the gradient models stop early on the validation
month (``patience``; the kept epoch is printed), and ``history_weight`` is tuned here on the same month
over a grid, every grid point printed. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from embrec.baselines import Popularity, RepeatFrequency
from embrec.evaluation import evaluate_model
from embrec.models.als import ALS
from embrec.models.bpr import BPR
from embrec.models.implicit_mf import ImplicitMF

RETAIL: dict[str, Any] = {
    "popularity": lambda: Popularity(),
    "repeat-frequency": lambda: RepeatFrequency(),
    "als (chapter: 128 factors, reg 1e-6)": lambda: ALS(factors=128, regularization=1e-6, iterations=15),
    "implicit-mf (128, K=5, neg_alpha=0.5, <= 10 epochs, patience 2)": lambda: ImplicitMF(
        factors=128, n_negatives=5, epochs=10, reg=1e-3, neg_alpha=0.5, patience=2, progress=False),
    "bpr (128, neg_alpha=0.5, <= 40 epochs, patience 3)": lambda: BPR(
        factors=128, epochs=40, lr=0.005, reg=1e-4, neg_alpha=0.5, patience=3, progress=False),
}
ML: dict[str, Any] = {
    "popularity": lambda: Popularity(),
    "als (64 factors, reg 0.01: implicit's defaults)": lambda: ALS(factors=64, regularization=0.01,
                                                                    confidence="binary"),
    "als (32 factors, reg 10, alpha 1)": lambda: ALS(factors=32, regularization=10.0, alpha=1.0,
                                                      confidence="binary"),
    "bpr (64, K=5, reg 1e-3, 30 epochs)": lambda: BPR(factors=64, epochs=30, lr=0.005, reg=1e-3, n_negatives=5,
                                                      batch_size=5000, progress=False),
    "implicit-mf (64, K=5, 20 epochs)": lambda: ImplicitMF(factors=64, epochs=20, reg=1e-3, batch_size=2000,
                                                           progress=False),
}
WEIGHTS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
# the test month (--only retail-test): fitted on everything before 2011-11-09 with no validation set, so
# the epochs are fixed to those kept by early stopping above and history_weight to its best grid point
RETAIL_TEST: dict[str, Any] = {
    "popularity": lambda: Popularity(),
    "repeat-frequency": lambda: RepeatFrequency(),
    "implicit-mf (128, K=5, neg_alpha=0.5, 4 epochs)": lambda: ImplicitMF(
        factors=128, n_negatives=5, epochs=4, reg=1e-3, neg_alpha=0.5, progress=False),
    "implicit-mf (same) + history_weight=4": lambda: ImplicitMF(
        factors=128, n_negatives=5, epochs=4, reg=1e-3, neg_alpha=0.5, history_weight=4.0, progress=False),
    "bpr (128, neg_alpha=0.5, 11 epochs)": lambda: BPR(
        factors=128, epochs=11, lr=0.005, reg=1e-4, neg_alpha=0.5, progress=False),
    "bpr (same) + history_weight=4": lambda: BPR(
        factors=128, epochs=11, lr=0.005, reg=1e-4, neg_alpha=0.5, history_weight=4.0, progress=False),
}


def run(protocol: str, factories: dict[str, Any], data_dir: str | None, blend: bool,
        **options: Any) -> list[tuple[str, dict, float]]:
    rows = []
    for label, make in factories.items():
        t0 = time.perf_counter()
        model = make()
        out = evaluate_model(protocol, model, data_dir=data_dir, **options)
        valid = [h["valid"] for h in getattr(model, "history_", []) if "valid" in h]
        if valid:  # early stopping on the validation month: say which epoch was kept
            label += f" [kept epoch {valid.index(max(valid)) + 1} of {len(valid)}]"
        rows.append((label, out["metrics"], time.perf_counter() - t0))
        print(f"  {protocol} {label}: {out['metrics']} ({rows[-1][2]:.0f} s)", flush=True)
        if blend and hasattr(model, "history_weight"):
            for w in WEIGHTS:  # the fitted model, re-scored with the user's own history blended in
                model.history_weight = w
                res = evaluate_model(protocol, model, data_dir=data_dir)["metrics"]
                rows.append((f"{label} + history_weight={w}", res, 0.0))
                print(f"  {protocol} {label} + history_weight={w}: {res}", flush=True)
    return rows


def table(protocol: str, rows: list[tuple[str, dict, float]]) -> str:
    names = list(rows[0][1])
    out = [f"### {protocol}", "", "| model | " + " | ".join(names) + " | fit + score (s) |",
           "|---|" + "---|" * (len(names) + 1)]
    for label, metrics, seconds in rows:
        cost = f"{seconds:.0f}" if seconds else "(same fit)"
        out.append(f"| {label} | " + " | ".join(f"{metrics[n]:.4f}" for n in names) + f" | {cost} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--only", choices=("retail", "ml", "retail-test"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tables = []
    if args.only in (None, "ml"):
        tables.append(table("ml100k-top10", run("ml100k-top10", ML, args.data_dir, blend=False)))
    if args.only in (None, "retail"):
        tables.append(table("retail-precision", run("retail-precision", RETAIL, args.data_dir, blend=True)))
    if args.only == "retail-test":
        tables.append(table("retail-precision, test month",
                            run("retail-precision", RETAIL_TEST, args.data_dir, blend=False, part="test")))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
