"""What limits ``retail-next``? The validation month's rows sorted by what any model could know.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/retail_next_ceiling.py [--part valid]

For every row of the evaluated month (top-5 accuracy counts hits over all rows), this script measures

1. rows no model can hit: the item is unknown to training (outside every model's vocabulary);
2. the first row of a transaction (nothing bought yet: only the customer is known), and how often its item
   is in the customer's own training history;
3. for the other rows, how often the item has ever directly followed the transaction's last item in
   training, and the coverage of the item-transition ranking (the baseline's own next-item scores, the
   transaction's items removed as the protocol does) at depths 1, 5, 10, 20 and 50.

Prints a Markdown table (or JSON with --json).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from embrec.baselines.transition import ItemTransition, _last_known
from embrec.evaluation.folds import in_model_vocab
from embrec.evaluation.retail import next_item_predictions, retail_folds, transaction_prefixes

DEPTHS = (1, 5, 10, 20, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--part", default="valid", choices=["valid", "test"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    _, (fold,) = retail_folds(data_dir=args.data_dir, part=args.part)
    model = ItemTransition().fit(fold.train)
    events = in_model_vocab(model, fold.test)
    n = len(events)
    offsets = events.group_offsets()
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1]] = True
    unknown_item = events.item == 0
    prefixes = transaction_prefixes(offsets, events.item, np.arange(n))
    last = _last_known(prefixes)
    followed = np.asarray(model.transitions_[last, events.item]).ravel() > 0  # ever followed `last`
    own = np.zeros(n, dtype=bool)
    for u in np.unique(events.user[first & (events.user > 0)]):
        rows = np.flatnonzero(first & (events.user == u))
        own[rows] = np.isin(events.item[rows], model.seen_[u])
    ranked = next_item_predictions(model, events, k=max(DEPTHS))  # (rows, 50) the protocol's ranking
    hit_at = {k: (ranked[:, :k] == events.item[:, None]).any(axis=1) & ~unknown_item for k in DEPTHS}
    later = ~first & ~unknown_item
    out = {
        "part": args.part, "rows": n,
        "unknown item (no model can hit)": float(unknown_item.mean()),
        "first row of a transaction": float(first.mean()),
        "first rows whose item is in the customer's training history": float(own[first].mean()),
        "later rows whose item ever followed the last item in training": float(followed[later].mean()),
        "item-transition hit rate at depth (all rows)": {k: float(hit_at[k].mean()) for k in DEPTHS},
        "item-transition hit rate at depth (later rows)": {k: float(hit_at[k][later].mean()) for k in DEPTHS},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"| {args.part} month, {n:,} rows | share |\n|---|---|")
    for key in list(out)[2:6]:
        print(f"| {key} | {out[key]:.3f} |")
    for key in list(out)[6:]:
        print(f"| {key} | " + " / ".join(f"@{k} {v:.3f}" for k, v in out[key].items()) + " |")


if __name__ == "__main__":
    main()
