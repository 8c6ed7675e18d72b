"""How high can ``retail-precision`` go? The validation month taken apart, with hindsight bounds.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/retail_precision_ceiling.py [--part valid]

The protocol fixes two things no model can change: a transaction of a customer unknown to training
(no CustomerID, or a customer first seen in the evaluated month) gets the training top-5, and every
transaction of a customer gets the same 5 items. This script measures

1. how the transactions split between known and unknown customers, and what precision@5 the
   ``repeat-frequency`` baseline (a customer's own most-bought items) and popularity get on each part;
2. the precision@5 the known customers would need for the whole month to reach a target (0.20);
3. two hindsight bounds, computed WITH the evaluated month's answers (no model can reach them): the
   best static 5 items per known customer, and the best 5 among the items of the customer's own
   training history (the part of the catalogue where ``repeat-frequency`` and its blends choose).

Prints a Markdown table (or JSON with --json).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from embrec.baselines.repeat import RepeatFrequency
from embrec.evaluation.folds import in_model_vocab, popular_items
from embrec.evaluation.metrics import transaction_precision
from embrec.evaluation.retail import K, retail_folds


def best_static(users: np.ndarray, offsets: np.ndarray, items: np.ndarray, fill: np.ndarray,
                allowed=None) -> np.ndarray:
    """(T, K) per customer, the K items on most of the customer's rows of the month (hindsight), from
    ``allowed(u)`` when given; ``fill`` (the model's own list) completes short lists."""
    predicted = fill.copy()
    tx_user = np.repeat(users, np.diff(offsets))  # (rows,) the customer of each row
    for u in np.unique(users[users > 0]):
        rows = items[(tx_user == u) & (items > 0)]
        if allowed is not None:
            rows = rows[np.isin(rows, allowed(u))]
        vals, counts = np.unique(rows, return_counts=True)
        top = vals[np.argsort(-counts, kind="stable")[:K]].tolist()
        txs = np.flatnonzero(users == u)
        top += [i for i in fill[txs[0]] if i not in top]
        predicted[txs] = top[:K]
    return predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--part", default="valid", choices=["valid", "test"])
    parser.add_argument("--target", type=float, default=0.20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    _, (fold,) = retail_folds(data_dir=args.data_dir, part=args.part)
    model = RepeatFrequency().fit(fold.train)
    events = in_model_vocab(model, fold.test)
    offsets = events.group_offsets()
    users = events.user[offsets[:-1]]  # (T,)
    known = users > 0
    pop = popular_items(model, fold.train, K)
    predicted = np.tile(pop, (users.size, 1))
    distinct, inverse = np.unique(users[known], return_inverse=True)
    rows, _ = model.top_k(distinct, model.seen_.select(distinct), K)
    predicted[known] = np.asarray(rows)[inverse]

    def part(mask: np.ndarray, pred: np.ndarray) -> float:
        sub = np.flatnonzero(mask)
        sizes = np.diff(offsets)[sub]
        off = np.concatenate([[0], np.cumsum(sizes)])
        take = np.concatenate([np.arange(offsets[t], offsets[t + 1]) for t in sub])
        return transaction_precision(off, events.item[take], pred[sub])

    n_tx, n_known = int(users.size), int(known.sum())
    p_known, p_unknown = part(known, predicted), part(~known, predicted)
    overall = transaction_precision(offsets, events.item, predicted)
    needed = (args.target * n_tx - p_unknown * (n_tx - n_known)) / n_known
    oracle = best_static(users, offsets, events.item, predicted)
    own = best_static(users, offsets, events.item, predicted, allowed=lambda u: model.seen_[u])
    out = {
        "part": args.part, "transactions": n_tx, "rows": len(events),
        "known_transactions": n_known, "unknown_transactions": n_tx - n_known,
        "repeat_frequency": {"all": overall, "known": p_known, "unknown (popularity)": p_unknown},
        f"known precision needed for {args.target}": needed,
        "hindsight best static 5 per customer": transaction_precision(offsets, events.item, oracle),
        "hindsight best 5 of the own training history": transaction_precision(offsets, events.item, own),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"| {args.part} month | value |\n|---|---|")
    print(f"| transactions (rows) | {n_tx:,} ({len(events):,}) |")
    print(f"| of customers known to training | {n_known:,} ({n_known / n_tx:.1%}) |")
    print(f"| repeat-frequency precision@5: all / known / unknown (popularity) | {overall:.4f} / {p_known:.4f} / {p_unknown:.4f} |")
    print(f"| known-customer precision@5 needed for {args.target:.2f} overall | {needed:.4f} ({needed / p_known - 1:+.1%} over repeat-frequency) |")
    print(f"| hindsight: best static 5 per customer | {out['hindsight best static 5 per customer']:.4f} |")
    print(f"| hindsight: best 5 of the own training history | {out['hindsight best 5 of the own training history']:.4f} |")


if __name__ == "__main__":
    main()
