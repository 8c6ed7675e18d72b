"""Paired bootstrap of every model against one reference model, from a benchmark's ``--per-user`` file.

    embrec benchmark --protocol leave-last-out --dataset ml-100k --per-user users.csv ...
    python benchmarks/paired_per_user.py users.csv [--against popularity] [--metric hit@10]
    python benchmarks/paired_per_user.py defaults.csv --tuned tuned.csv      # each model: tuned vs defaults

``benchmark`` prints each model's paired difference from the best baseline; issue 13's bar is beating
popularity beyond noise, which this prints from the same per-user lines with the same procedure
(``embrec.evaluation.bootstrap.paired_bootstrap``: users resampled together for both models, 1,000
resamples, seed 0, 95 % percentile interval; ``*`` when it excludes 0). ``--tuned`` pairs two runs instead
(``embrec benchmark --tune N --per-user`` against a run at the defaults, same protocol and users): every
model of the tuned file against the same model of the first file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from embrec.evaluation.bootstrap import UnitScores, bootstrap_intervals, paired_bootstrap


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


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, lines=True)


def figure_and_interval(scores: list[UnitScores], metric: str, n_boot: int, seed: int) -> str:
    """The model's figure and half its 95 % bootstrap interval (as ``benchmark`` prints them)."""
    figure = float(np.mean([s.figure(metric) for s in scores]))
    lo, hi = bootstrap_intervals(scores, n_boot=n_boot, seed=seed)[metric]
    return f"{figure:.4f} ±{(hi - lo) / 2:.4f}"


def tuned_vs_defaults(
    defaults: pd.DataFrame, tuned: pd.DataFrame, metric: str, n_boot: int, seed: int
) -> None:
    print(
        f"| model | defaults {metric} | tuned {metric} | tuned − defaults (95 % paired interval) |"
    )
    print("|---|---|---|---|")
    for model, lines in tuned.groupby("model", sort=False):
        base = defaults[defaults["model"] == model]
        if base.empty:
            continue
        t, d = unit_scores(lines, metric), unit_scores(base, metric)
        res = paired_bootstrap(t, d, metric, n_boot=n_boot, seed=seed)
        lo, hi = res["interval"]
        mark = " *" if res["significant"] else ""
        print(
            f"| {model} | {figure_and_interval(d, metric, n_boot, seed)} | "
            f"{figure_and_interval(t, metric, n_boot, seed)} | {res['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("per_user", type=Path)
    ap.add_argument("--against", default="popularity")
    ap.add_argument("--metric", default=None, help="default: the file's first metric column")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tuned", type=Path, default=None, help="a second per-user file: each model vs itself"
    )
    args = ap.parse_args()
    frame = read(args.per_user)
    metric = (
        args.metric or [c for c in frame.columns if c not in ("model", "fold", "user", "weight")][0]
    )
    if args.tuned is not None:
        tuned_vs_defaults(frame, read(args.tuned), metric, args.bootstrap, args.seed)
        return
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
