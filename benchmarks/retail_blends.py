"""The learned blends against the strongest retail baselines, on the weeks carved from train and both months.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/retail_blends.py repeat-blend \
        --parts carved,valid,test --candidate defaults: --candidate w0.1:window=0.1

For ``repeat-blend`` the protocol is ``retail-precision`` and the reference ``repeat-frequency``; for
``transition-blend`` (and any other model, with ``--protocol``) ``retail-next`` and ``item-transition``. Each
part is one fold: ``carved`` is the validation part carved from the validation month's TRAINING part by
the protocols' own rule (``embrec.tuning.validation``: the last 4 weeks of train), the one to choose
settings on; ``valid`` and ``test`` are the protocol's two scored months. Every candidate (``NAME:k=v;k=v``,
parsed like ``--param``) is fitted on the fold's training part and compared with the reference on the same
units by the benchmark's paired bootstrap (``embrec.evaluation.bootstrap.paired_bootstrap``, 1,000
resamples, seed 0): the same figures as ``embrec benchmark``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

from embrec.baselines import ItemTransition, RepeatFrequency
from embrec.evaluation.bootstrap import paired_bootstrap
from embrec.evaluation.retail import retail_folds, retail_next_scored, retail_precision_scored
from embrec.models.registry import create
from embrec.sources import model_params
from embrec.tuning.validation import validation_fold

PROTOCOLS = {
    "retail-precision": (retail_precision_scored, RepeatFrequency, "precision@5"),
    "retail-next": (retail_next_scored, ItemTransition, "top5_accuracy"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None)
    parser.add_argument("--parts", default="carved,valid,test")
    parser.add_argument(
        "--candidate",
        action="append",
        default=None,
        help="NAME:key=value;key=value (repeat); default: the model's defaults",
    )
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    protocol = args.protocol or (
        "retail-precision" if args.model == "repeat-blend" else "retail-next"
    )
    score, reference, metric = PROTOCOLS[protocol]
    candidates = []
    for text in args.candidate or ["defaults:"]:
        name, _, pairs = text.partition(":")
        candidates.append((name, model_params(args.model, [p for p in pairs.split(";") if p])))
    print(
        f"{args.model} on {protocol} ({metric}), against {reference.__name__} on the same units\n"
    )
    print(
        "| candidate | part | reference | model | difference [95 % paired interval] | p | fit (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for part in args.parts.split(","):
        _, (fold,) = retail_folds(
            data_dir=args.data_dir, part="test" if part == "test" else "valid"
        )
        if part == "carved":
            fold = validation_fold(protocol, fold)
        base = score(reference().fit(fold.train), fold)
        for name, params in candidates:
            start = time.perf_counter()
            model = create(args.model, **params).fit(fold.train)
            fit = time.perf_counter() - start
            scored = score(model, fold)
            test = paired_bootstrap([scored.units], [base.units], metric)
            low, high = test["interval"]
            mark = " *" if test["significant"] else ""
            print(
                f"| {name} | {part} | {base.metrics[metric]:.4f} | {scored.metrics[metric]:.4f} | "
                f"{test['diff']:+.4f} [{low:+.4f}, {high:+.4f}]{mark} | {test['p']:.3f} | {fit:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
