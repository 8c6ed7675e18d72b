"""Paired bootstrap between two rows of two `embrec benchmark --per-user` files (e.g. a model at its old
and at its new defaults, run in two benchmarks on the same split).

    .venv/bin/python benchmarks/paired_runs.py NEW.csv:softmax-dnn OLD.csv:softmax-dnn [--metric hit@10]

Each file holds one line per (model, fold, user) with the metric's per-user value and its weight (what
``benchmark --per-user`` writes); the two rows must cover the same users. Prints A's figure, B's figure
and the paired bootstrap of A - B (1,000 resamples of users, seed 0: the benchmark's own test,
``embrec.evaluation.bootstrap.paired_bootstrap``); ``*`` when its 95 % interval excludes 0.
"""

from __future__ import annotations

import argparse

import pandas as pd

from embrec.evaluation.bootstrap import UnitScores, paired_bootstrap, unit_scores


def row_scores(spec: str, metric: str) -> list[UnitScores]:
    """One UnitScores per fold of ``FILE:MODEL``."""
    path, _, model = spec.rpartition(":")
    frame = pd.read_csv(path, dtype={"user": str})
    frame = frame[frame["model"] == model]
    if frame.empty:
        raise SystemExit(f"{path} has no row of model {model!r}.")
    out = []
    for _, fold in frame.groupby("fold", sort=True):
        weight = fold["weight"].to_numpy(dtype=float)
        value = fold[metric].to_numpy(dtype=float)
        out.append(unit_scores(fold["user"].to_numpy(), {metric: value * weight}, {metric: weight}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help="FILE:MODEL")
    ap.add_argument("b", help="FILE:MODEL")
    ap.add_argument("--metric", default="hit@10")
    args = ap.parse_args()
    a, b = row_scores(args.a, args.metric), row_scores(args.b, args.metric)
    if [list(f.units) for f in a] != [list(f.units) for f in b]:
        raise SystemExit(
            "the two rows are not scored on the same users; pair runs of one split only."
        )
    test = paired_bootstrap(a, b, args.metric)
    fig = lambda s: sum(f.figure(args.metric) for f in s) / len(s)  # noqa: E731
    lo, hi = test["interval"]
    mark = " *" if test["significant"] else ""
    print(
        f"{args.metric}: A {fig(a):.4f}, B {fig(b):.4f}; A - B {test['diff']:+.4f} "
        f"[{lo:+.4f}, {hi:+.4f}]{mark} (p {test['p']:.3f})"
    )


if __name__ == "__main__":
    main()
