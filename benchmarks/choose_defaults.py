"""Choose a model's defaults on validation parts only, across datasets (docs/benchmarks.md, "Defaults").

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/choose_defaults.py MODEL \
        [--tune 8] [--candidate 'name:key=value;key=value'] [--protocols ml-llo,retail-llo,ml-top10] \
        [--no-valid] [--out runs/defaults/MODEL.json]

The procedure, for one model:
1. On every protocol listed, carve the validation part from the protocol's TRAINING part by its own rule
   (``embrec.tuning.validation_fold``); the scored part is never read.
2. Candidates: the current defaults, every ``--candidate``, and (``--tune N``) the best of N Optuna trials
   on each protocol's carved validation part (``embrec.tuning.search``).
3. Fit popularity and every candidate on each carved training part; score the validation part with the
   protocol's own metric (hit@10 for leave-last-out, precision@10 for ml100k-top10). By default the carved
   validation part is also handed to ``fit`` as ``valid`` (early stopping on it); ``--no-valid`` fits as
   the scored protocols do (leave-last-out and ml100k-top10 hand ``fit`` no ``valid``), so a model that
   early-stops does it on a slice of its own training part (``valid_users``) and the figure is what the
   benchmark will see.
4. A candidate's score on a protocol is its figure over the best candidate's figure there (1.0 = the best
   of the candidates on that protocol); the chosen default is the candidate with the best WORST score over
   the protocols (good on all, not best on one). Ties -> the current defaults. The ratio to popularity on
   the same part is printed beside each figure.

Prints a markdown table (candidate x protocol, ratio in brackets) and writes the JSON with ``--out``.
One torch thread, one BLAS thread; the machine is shared, so fit seconds are only indicative.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from embrec import api, datasets  # noqa: E402
from embrec.evaluation import get_protocol, load_folds  # noqa: E402
from embrec.models.registry import create  # noqa: E402
from embrec.tuning import search, validation_fold  # noqa: E402
from embrec.tuning.study import protocol_metrics  # noqa: E402

PROTOCOLS = {
    "ml-llo": ("leave-last-out", {"dataset": "ml-100k"}, "hit@10"),
    "retail-llo": ("leave-last-out", {"dataset": "online-retail"}, "hit@10"),
    "ml-top10": ("ml100k-top10", {}, "precision@10"),
}


def carve(key: str) -> tuple[str, Any, str, list[Any]]:
    protocol, where, metric = PROTOCOLS[key]
    if where.get("dataset"):
        where = {"data": datasets.load(where["dataset"])}
    _, folds = load_folds(protocol, **where)
    return protocol, validation_fold(protocol, folds[0]), metric, folds


def score(
    name: str,
    params: dict[str, Any],
    protocol: str,
    fold: Any,
    metric: str,
    *,
    use_valid: bool = True,
) -> tuple[float, float]:
    start = time.perf_counter()
    model = create(name, **params).fit(fold.train, valid=fold.valid if use_valid else None)
    seconds = time.perf_counter() - start
    return float(protocol_metrics(get_protocol(protocol))(model, fold)[metric]), seconds


def parse_candidate(text: str, model: str) -> tuple[str, dict[str, Any]]:
    label, _, pairs = text.partition(":")
    return label, api.model_params(model, [p for p in pairs.split(";") if p])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tune", type=int, default=0)
    ap.add_argument("--candidate", action="append", default=[], help="label:key=value;key=value")
    ap.add_argument("--protocols", default="ml-llo,retail-llo,ml-top10")
    ap.add_argument("--tune-on", default=None, help="protocols to tune on (default: all listed)")
    ap.add_argument(
        "--no-valid", action="store_true", help="fit without valid=, as the scored protocols do"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    keys = [k for k in args.protocols.split(",") if k]
    carved = {k: carve(k) for k in keys}
    candidates: dict[str, dict[str, Any]] = {"defaults": {}}
    for text in args.candidate:
        label, params = parse_candidate(text, args.model)
        candidates[label] = params
    tuned_info = {}
    if args.tune:
        for k in (args.tune_on or args.protocols).split(","):
            protocol, _, _, folds = carved[k]
            found = search(args.model, protocol, folds, trials=args.tune, seed=0, progress=False)
            candidates[f"tuned on {k}"] = found["best"]["params"]
            tuned_info[k] = {
                "trials": len(found["trials"]),
                "seconds": found["seconds"],
                "best": found["best"],
            }
            print(
                f"# tuned on {k}: {len(found['trials'])} trials, {found['seconds']:.0f} s, "
                f"validation {found['metric']} {found['best']['value']:.4f}: {found['best']['params']}",
                flush=True,
            )
    table: dict[str, dict[str, Any]] = {}
    pop = {}
    for k in keys:
        protocol, fold, metric, _ = carved[k]
        pop[k] = score("popularity", {}, protocol, fold, metric)[0]
    for label, params in candidates.items():
        row = {}
        for k in keys:
            protocol, fold, metric, _ = carved[k]
            value, seconds = score(
                args.model, params, protocol, fold, metric, use_valid=not args.no_valid
            )
            row[k] = {
                "value": value,
                "ratio": value / pop[k] if pop[k] else float("nan"),
                "seconds": seconds,
            }
        table[label] = row
        print(
            f"# {label}: "
            + ", ".join(
                f"{k} {row[k]['value']:.4f} ({row[k]['ratio']:.2f}x, {row[k]['seconds']:.0f} s)"
                for k in keys
            ),
            flush=True,
        )
    for k in keys:
        top = max(table[c][k]["value"] for c in table)
        for c in table:
            table[c][k]["relative"] = table[c][k]["value"] / top if top else float("nan")
    for c in table:
        table[c]["worst"] = min(table[c][k]["relative"] for k in keys)
    best = max(table, key=lambda c: (round(table[c]["worst"], 4), c == "defaults"))
    print(
        f"\n{args.model}: validation parts (carved from each protocol's training part); popularity "
        + ", ".join(f"{k} {pop[k]:.4f}" for k in keys)
    )
    print("| candidate | params | " + " | ".join(keys) + " | worst of best |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    for label, row in table.items():
        mark = "**" if label == best else ""
        cells = " | ".join(f"{row[k]['value']:.4f} ({row[k]['ratio']:.2f}x)" for k in keys)
        print(
            f"| {mark}{label}{mark} | {candidates[label] or '(current)'} | {cells} | {row['worst']:.2f} |"
        )
    print(f"\nchosen: {best} {candidates[best]}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "popularity": pop,
                    "candidates": candidates,
                    "table": table,
                    "tuned": tuned_info,
                    "chosen": best,
                    "valid": not args.no_valid,
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
