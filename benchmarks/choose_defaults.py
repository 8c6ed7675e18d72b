"""Choose a model's defaults on validation parts only, across datasets (docs/benchmarks.md, "Defaults").

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/choose_defaults.py MODEL \
        [--tune 8] [--candidate 'name:key=value;key=value'] [--protocols ml-llo,retail-llo,ml-top10] \
        [--no-valid] [--reference ease,item-knn] [--out runs/defaults/MODEL.json]

The procedure, for one model:
1. On every protocol listed, carve the validation part from the protocol's TRAINING part by its own rule
   (``embrec.tuning.validation_fold``); the scored part is never read. Besides the three protocols we
   score (``ml-llo``, ``retail-llo``, ``ml-top10``), two parts imitate the regime of a held-out
   MovieLens-format log we do not have (610 users, 9.7k items, 100k ratings: few users with long
   histories, a wide long-tailed catalogue), built from data we have by fixed rules:
   - ``ml-few``: ml-100k's users cut into ``FEW_GROUPS`` disjoint seeded groups (seed 0) of ~314 users;
     each group, all its events, is a log of its own (its own vocabularies, as a user's own file would
     give); leave-last-out on it, and the validation part carved inside its training part as above;
     every group is fitted on its own and the figure pools the groups' users (hits / users). About 33k
     events a group: a model whose training length is counted in passes over the data sees 1/3 of the
     optimizer steps it gets on ml-100k.
   - ``synth-wide``: ``embrec.datasets.synthetic`` shaped like the held-out log (``SYNTH_WIDE``: 610
     users, 9,700 items with a Zipf popularity, 100k events, no repeat purchases, as in a ratings log);
     leave-last-out, validation carved inside train. A wide catalogue: ~10 events an item, most items
     rare, so uniformly drawn negatives are mostly items nobody looks at. The log keeps the generator's
     basket column, so a sequence model trains on baskets there; the held-out log has none.
   Two more, as a ratings file would give them to a sequence model (no basket column, one timeline per
   user; used for rnn and sasrec):
   - ``ml-250``: leave-last-out on ``ML_250`` ml-100k users drawn by ``numpy.random.default_rng(0)``
     (uniform, without replacement, from user rows 1..943), all their events, the catalogue compacted
     (≈ 23.4k training events, 1,431 movies, ≈ 94 events a user); validation carved inside train.
   - ``synth-ratings``: ``embrec.datasets.synthetic(**SYNTH_RATINGS)`` (600 users, 10,000 items, 200,000
     draws, no planted rebuying, seed 1) kept as a ratings file is: each (user, item) pair's first event
     only, the basket column dropped (≈ 99k training events, ≈ 9.2k items with an event, ≈ 165 events a
     user); leave-last-out, validation carved inside train.
   These two are also how the held-out log reaches softmax-dnn and two-tower, which train on next baskets
   when a log has them (``synth-wide``) and on held-out subsets of a user's items when it has none. One
   more for the content models (the held-out log's two-tower row was measured with genres only):
   - ``ml-250-genres``: ``ml-250`` with the genres as the movies' only item feature.
2. Candidates: the current defaults, every ``--candidate``, and (``--tune N``) the best of N Optuna trials
   on each protocol's carved validation part (``embrec.tuning.search``).
3. Fit popularity and every candidate on each carved training part; score the validation part with the
   protocol's own metric (hit@10 for leave-last-out, precision@10 for ml100k-top10). By default the carved
   validation part is also handed to ``fit`` as ``valid`` (early stopping on it); ``--no-valid`` fits as
   the scored protocols do (leave-last-out and ml100k-top10 hand ``fit`` no ``valid``), so a model that
   early-stops does it on a slice of its own training part (``valid_users``) and the figure is what the
   benchmark will see.
4. A candidate's score on a protocol is its figure over the best candidate's figure there (1.0 = the best
   of the candidates on that protocol); the chosen default is, among the candidates above popularity on
   every part, the one with the best WORST score over the protocols (good on all, not best on one). Ties
   -> the current defaults. The ratio to popularity on the same part is printed beside each figure, and
   ``--reference`` models (e.g. EASE) are fitted at their defaults beside, to show what a part allows.

Prints a markdown table (candidate x protocol, ratio in brackets) and writes the JSON with ``--out``.
``--merge A.json B.json ...`` prints the table of several such runs of one model over different parts
(e.g. parts run in separate processes) and chooses over it; ``--out`` is rewritten after every finished
candidate row, so a stopped run keeps its rows.
One torch thread, one BLAS thread; the machine is shared, so fit seconds are only indicative.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from embrec import api, datasets  # noqa: E402
from embrec.data.interactions import Interactions  # noqa: E402
from embrec.evaluation import get_protocol, load_folds  # noqa: E402
from embrec.models.registry import create  # noqa: E402
from embrec.tuning import search, validation_fold  # noqa: E402

PROTOCOLS = {
    "ml-llo": ("leave-last-out", {"dataset": "ml-100k"}, "hit@10"),
    "retail-llo": ("leave-last-out", {"dataset": "online-retail"}, "hit@10"),
    "ml-top10": ("ml100k-top10", {}, "precision@10"),
    "ml-few": ("leave-last-out", {"few": "ml-100k"}, "hit@10"),
    "synth-wide": ("leave-last-out", {"synthetic": True}, "hit@10"),
    "ml-250": ("leave-last-out", {"log": "ml_250"}, "hit@10"),
    "synth-ratings": ("leave-last-out", {"log": "synth_ratings"}, "hit@10"),
    "ml-250-genres": ("leave-last-out", {"log": "ml_250_genres"}, "hit@10"),
}

#: ``ml-few``: how many disjoint user groups ml-100k is cut into (seed 0)
FEW_GROUPS = 3
#: ``synth-wide``: the shape of the held-out MovieLens-format log (ratings: no repeats)
SYNTH_WIDE = {
    "n_users": 610,
    "n_items": 9700,
    "n_interactions": 100_000,
    "repeat_probability": 0.0,
    "seed": 0,
}


#: ``ml-250``: how many ml-100k users are drawn (seed 0)
ML_250 = 250
#: ``synth-ratings``: the synthetic draws, of which each (user, item) pair's first is kept
SYNTH_RATINGS = {
    "n_users": 600,
    "n_items": 10_000,
    "n_interactions": 200_000,
    "repeat_probability": 0.0,
    "seed": 1,
}


def ml_250() -> Interactions:
    """``ml-250``'s log: ML_250 seeded ml-100k users with all their events, vocabularies compacted."""
    log = datasets.load("ml-100k")
    users = np.random.default_rng(0).choice(
        np.arange(1, log.users.size), size=ML_250, replace=False
    )
    return replace(log.subset(np.isin(log.user, users)).compact(), name="ml-100k-250-users")


def synth_ratings() -> Interactions:
    """``synth-ratings``' log: the synthetic shop kept as a ratings file is (see the module)."""
    log = datasets.synthetic(**SYNTH_RATINGS)
    key = log.user * np.int64(log.items.size) + log.item
    first = np.zeros(len(log), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True  # each (user, item) pair's first event
    return replace(log.subset(first), group=None, name="synthetic-ratings")


def ml_250_genres() -> Interactions:
    """``ml-250-genres``' log: ``ml-250`` with the genres as the movies' only feature."""
    log = ml_250()
    genres = replace(log.item_features, numeric={}, text={}, categorical={})
    return replace(log, item_features=genres, name="ml-100k-250-users-genres")


LOGS = {"ml_250": ml_250, "synth_ratings": synth_ratings, "ml_250_genres": ml_250_genres}


def user_groups(log: Interactions, groups: int, seed: int = 0) -> list[Interactions]:
    """``log`` cut into ``groups`` disjoint seeded groups of users, each with all its events and its own
    (compacted) vocabularies."""
    users = np.unique(log.user[log.user > 0])
    part = np.random.default_rng(seed).permutation(users.size) % groups
    owner = np.zeros(log.users.size, dtype=np.int64) - 1
    owner[users] = part
    return [log.subset(owner[log.user] == g).compact() for g in range(groups)]


def carve(key: str) -> tuple[str, list[Any], str, list[Any]]:
    """(protocol, the carved validation folds, metric, the protocol's folds): one fold, or one per
    ``ml-few`` group (tuning searches on the first)."""
    protocol, where, metric = PROTOCOLS[key]
    if where.get("few"):
        logs = user_groups(datasets.load(where["few"]), FEW_GROUPS)
    elif where.get("synthetic"):
        logs = [datasets.synthetic(**SYNTH_WIDE)]
    elif where.get("log"):
        logs = [LOGS[where["log"]]()]
    elif where.get("dataset"):
        logs = [datasets.load(where["dataset"])]
    else:
        logs = [None]
    carved, originals = [], []
    for log in logs:
        _, folds = load_folds(protocol, **({} if log is None else {"data": log}))
        carved.append(validation_fold(protocol, folds[0]))
        originals.append(folds[0])
    return protocol, carved, metric, originals


def score(
    name: str,
    params: dict[str, Any],
    protocol: str,
    folds: list[Any],
    metric: str,
    *,
    use_valid: bool = True,
) -> tuple[float, float, int]:
    """(the metric pooled over the folds' units, fit seconds summed, units): every fold fitted on its
    own."""
    num = den = seconds = 0.0
    n = 0
    for fold in folds:
        start = time.perf_counter()
        model = create(name, **params).fit(fold.train, valid=fold.valid if use_valid else None)
        seconds += time.perf_counter() - start
        units = get_protocol(protocol).score(model, fold).units
        num += float(units.num[metric].sum())
        den += float(units.den[metric].sum())
        n += int(units.units.size)
    return num / den, seconds, n


def parse_candidate(text: str, model: str) -> tuple[str, dict[str, Any]]:
    label, _, pairs = text.partition(":")
    return label, api.model_params(model, [p for p in pairs.split(";") if p])


def summarize(
    model: str,
    keys: list[str],
    pop: dict[str, float],
    users: dict[str, int],
    reference: dict[str, dict[str, float]],
    candidates: dict[str, dict[str, Any]],
    table: dict[str, dict[str, Any]],
) -> str:
    """Print the markdown table; return the chosen candidate (step 4 of the module's procedure). A
    candidate not measured on every part (``--merge`` of partial runs) shows a dash there and is not
    chosen."""
    for k in keys:
        top = max(table[c][k]["value"] for c in table if k in table[c])
        for c in table:
            if k in table[c]:
                table[c][k]["relative"] = table[c][k]["value"] / top if top else float("nan")
    for c in table:
        table[c]["worst"] = min(table[c][k]["relative"] for k in keys if k in table[c])
        table[c]["complete"] = all(k in table[c] for k in keys)
        table[c]["clears_popularity"] = all(
            table[c][k]["value"] > pop[k] for k in keys if k in table[c]
        )
    # the best worst case among the candidates above popularity on every part (all, if none is)
    complete = [c for c in table if table[c]["complete"]] or list(table)
    eligible = [c for c in complete if table[c]["clears_popularity"]] or complete
    best = max(eligible, key=lambda c: (round(table[c]["worst"], 4), c == "defaults"))
    print(
        f"\n{model}: validation parts (carved from each protocol's training part); popularity "
        + ", ".join(f"{k} {pop[k]:.4f}" for k in keys)
        + "; users "
        + ", ".join(f"{k} {users.get(k, '?')}" for k in keys)
    )
    for name, row in reference.items():
        print(
            f"{name} (reference, its defaults): "
            + ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
        )
    print("| candidate | params | " + " | ".join(keys) + " | worst of best |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    for label, row in table.items():
        mark = "**" if label == best else ""
        cells = " | ".join(
            f"{row[k]['value']:.4f} ({row[k]['ratio']:.2f}x)" if k in row else "—" for k in keys
        )
        flag = "" if row["clears_popularity"] else " (not above popularity everywhere)"
        flag += "" if row["complete"] else " (not every part)"
        print(
            f"| {mark}{label}{mark} | {candidates[label] or '(current)'} | {cells} | "
            f"{row['worst']:.2f}{flag} |"
        )
    return best


def merge(files: list[Path]) -> None:
    """Print the combined table of several ``--out`` files of one model (e.g. parts run in separate
    processes) and the choice over it; a candidate is one label with the same parameters in every file."""
    docs = [json.loads(f.read_text()) for f in files]
    models = {d["model"] for d in docs}
    if len(models) != 1:
        raise SystemExit(f"--merge takes files of one model; received {sorted(models)}.")
    keys: list[str] = []
    pop: dict[str, float] = {}
    users: dict[str, int] = {}
    reference: dict[str, dict[str, float]] = {}
    candidates: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, Any]] = {}
    for d in docs:
        for k, v in d["popularity"].items():
            if k in pop and abs(pop[k] - v) > 1e-12:
                raise SystemExit(f"popularity on {k} differs between files ({pop[k]} vs {v}).")
            keys += [] if k in pop else [k]
            pop[k] = v
        users.update(d.get("users", {}))
        for name, row in d.get("reference", {}).items():
            reference.setdefault(name, {}).update(row)
        for label, params in d["candidates"].items():
            if candidates.setdefault(label, params) != params:
                raise SystemExit(f"candidate {label!r} has different parameters in two files.")
            table.setdefault(label, {}).update({k: d["table"][label][k] for k in d["popularity"]})
    best = summarize(models.pop(), keys, pop, users, reference, candidates, table)
    print(f"\nchosen: {best} {candidates[best]}")


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
    ap.add_argument(
        "--no-defaults",
        action="store_true",
        help="leave out the current defaults (e.g. when a --candidate names them)",
    )
    ap.add_argument(
        "--reference",
        default="",
        help="models fitted at their defaults beside (e.g. ease,item-knn)",
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--merge", nargs="+", type=Path, help="combine earlier --out files of one model and choose"
    )
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    keys = [k for k in args.protocols.split(",") if k]
    carved = {k: carve(k) for k in keys}
    candidates: dict[str, dict[str, Any]] = {} if args.no_defaults else {"defaults": {}}
    for text in args.candidate:
        label, params = parse_candidate(text, args.model)
        candidates[label] = params
    tuned_info = {}
    if args.tune:
        for k in (args.tune_on or args.protocols).split(","):
            protocol, _, _, folds = carved[k]
            found = search(
                args.model, protocol, folds[:1], trials=args.tune, seed=0, progress=False
            )
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
    pop, users = {}, {}

    def save(best: str | None) -> None:
        if not args.out:
            return
        args.out.parent.mkdir(parents=True, exist_ok=True)
        done = {c: candidates[c] for c in table}
        doc = {
            "model": args.model,
            "popularity": pop,
            "users": users,
            "reference": reference,
            "candidates": done,
            "table": table,
            "tuned": tuned_info,
            "chosen": best,
            "valid": not args.no_valid,
        }
        args.out.write_text(json.dumps(doc, indent=1, default=str))

    for k in keys:
        protocol, folds, metric, _ = carved[k]
        pop[k], _, users[k] = score("popularity", {}, protocol, folds, metric)
    print(
        "# popularity: " + ", ".join(f"{k} {pop[k]:.4f} ({users[k]} users)" for k in keys),
        flush=True,
    )
    reference = {}
    for name in [m for m in args.reference.split(",") if m]:
        reference[name] = {}
        for k in keys:
            protocol, folds, metric, _ = carved[k]
            reference[name][k] = score(name, {}, protocol, folds, metric)[0]
        print(
            f"# {name} (reference): " + ", ".join(f"{k} {reference[name][k]:.4f}" for k in keys),
            flush=True,
        )
    for label, params in candidates.items():
        row = {}
        for k in keys:
            protocol, folds, metric, _ = carved[k]
            value, seconds, _ = score(
                args.model, params, protocol, folds, metric, use_valid=not args.no_valid
            )
            row[k] = {
                "value": value,
                "ratio": value / pop[k] if pop[k] else float("nan"),
                "seconds": seconds,
            }
        table[label] = row
        save(None)  # every finished row is kept if the run is stopped
        print(
            f"# {label}: "
            + ", ".join(
                f"{k} {row[k]['value']:.4f} ({row[k]['ratio']:.2f}x, {row[k]['seconds']:.0f} s)"
                for k in keys
            ),
            flush=True,
        )
    best = summarize(args.model, keys, pop, users, reference, candidates, table)
    print(f"\nchosen: {best} {candidates[best]}")
    save(best)


if __name__ == "__main__":
    main()
