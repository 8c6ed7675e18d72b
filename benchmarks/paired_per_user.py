"""Paired bootstrap of every model against one reference model, from a benchmark's ``--per-user`` file.

    embrec benchmark --protocol leave-last-out --dataset ml-100k --per-user users.csv ...
    python benchmarks/paired_per_user.py users.csv [--against popularity] [--metric hit@10]

``benchmark`` prints each model's paired difference from the best baseline; issue 13's bar is beating
popularity beyond noise, which this prints from the same per-user lines with the same procedure
(``embrec.evaluation.bootstrap.paired_bootstrap``: users resampled together for both models, 1,000
resamples, seed 0, 95 % percentile interval; ``*`` when it excludes 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.evaluation.bootstrap import UnitScores, paired_bootstrap


def unit_scores(lines: pd.DataFrame, metric: str) -> list[UnitScores]:
    """One ``UnitScores`` per fold of one model's per-user lines (value x weight / weight)."""
    out = []
    for _, part in lines.groupby("fold", sort=True):
        weight = part["weight"].to_numpy(dtype=np.float64)
        value = part[metric].to_numpy(dtype=np.float64)
        out.append(
            UnitScores(
                units=part["user"].astype(str).to_numpy(dtype=object),
                num={metric: value * weight},
                den={metric: weight},
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("per_user", type=Path)
    ap.add_argument("--against", default="popularity")
    ap.add_argument("--metric", default=None, help="default: the file's first metric column")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    frame = (
        pd.read_csv(args.per_user)
        if args.per_user.suffix == ".csv"
        else pd.read_json(args.per_user, lines=True)
    )
    metric = (
        args.metric or [c for c in frame.columns if c not in ("model", "fold", "user", "weight")][0]
    )
    ref = unit_scores(frame[frame["model"] == args.against], metric)
    print(f"| model | {metric} | vs {args.against} (95 % paired interval) |")
    print("|---|---|---|")
    for model, lines in frame.groupby("model", sort=False):
        scores = unit_scores(lines, metric)
        figure = float(np.mean([s.figure(metric) for s in scores]))
        if model == args.against:
            print(f"| {model} | {figure:.4f} | (reference) |")
            continue
        res = paired_bootstrap(scores, ref, metric, n_boot=args.bootstrap, seed=args.seed)
        lo, hi = res["interval"]
        mark = " *" if res["significant"] else ""
        print(f"| {model} | {figure:.4f} | {res['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark} |")


if __name__ == "__main__":
    main()
