"""Sequence models: protocol figures and speed, beside the baselines in the same run.

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_sequence.py retail-next --save runs/seq
    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_sequence.py leave-last-out
    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/bench_sequence.py streaming --model runs/seq/gru-user-timeline

``retail-next`` runs popularity, item-transition and the sequence models through
``embrec.evaluation.run_protocol`` (validation month) and prints one JSON document: metrics, fit seconds
and each sequence model's seconds per training epoch; ``--save DIR`` keeps the fitted sequence models;
``--set key=value`` overrides a parameter of the RNN models (``--set patience=N`` adds the per-epoch
validation curve). ``gru-user-timeline-prior`` is the GRU + user on timelines with
``transition_prior="mixture"`` and dropout 0.4 (``embrec.models.transition_prior``; ``mask_bought=True``
measured the same, 0.2876 vs 0.2878, and costs about 20 % more per epoch).
``leave-last-out`` does the same on ml-100k with popularity, ALS and BPR beside them. ``streaming`` times
one streaming step (``session.add(item)`` + ``top_k(5)`` over the whole catalogue) of a saved model
on real validation transactions, beside re-scoring the whole prefix (``next_item_scores``) and the
item-transition baseline's step. Torch runs on ``--threads`` threads (default 1: on a shared 2-core
machine more threads only fight over the cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embrec.evaluation import run_protocol
from embrec.models import create

RNN_BIG = dict(embedding_dim=128, user_dim=64, hidden_dim=256, batch_size=256, lr=1e-2, device="cpu")


def sequence_factories(kept: dict[str, Any], *, epochs: int, batch_size: int,
                       overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Factories of the sequence models; each fitted model is kept in ``kept`` under its label;
    ``overrides`` (``--set``) replace parameters of the RNN models."""
    def keep(label: str, **params: Any):
        def factory():
            kept[label] = create("rnn", **{"epochs": epochs, **params, **RNN_BIG, "batch_size": batch_size,
                                           **(overrides or {})})
            return kept[label]
        return factory

    def sasrec():
        kept["sasrec"] = create("sasrec", epochs=epochs, dim=128, lr=3e-3, batch_size=batch_size, dropout=0.3,
                                device="cpu")
        return kept["sasrec"]

    return {
        "lstm": keep("lstm", cell="lstm"),
        "gru": keep("gru", cell="gru"),
        "lstm-user": keep("lstm-user", cell="lstm", use_user=True),
        "gru-user-timeline": keep("gru-user-timeline", cell="gru", use_user=True, sequences="timeline"),
        "gru-user-timeline-prior": keep("gru-user-timeline-prior", cell="gru", use_user=True, sequences="timeline",
                                        transition_prior="mixture", dropout=0.4),
        "sasrec": sasrec,
    }


def protocol(name: str, args: argparse.Namespace, baselines: list[str], **options: Any) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    if args.baselines is not None:
        baselines = [b for b in args.baselines.split(",") if b]
    factories: dict[str, Any] = {b: (lambda b=b: create(b)) for b in baselines}
    seq = sequence_factories(kept, epochs=args.epochs, batch_size=args.batch_size, overrides=parse_sets(args.set))
    if args.models:
        seq = {k: v for k, v in seq.items() if k in args.models.split(",")}
    factories.update(seq)
    result = run_protocol(name, factories, **options)
    for label, model in kept.items():
        epochs = [h["seconds"] for h in model.history_]
        for row in result["results"]:
            if row["model"] == label:
                row["seconds_per_epoch"] = round(statistics.mean(epochs), 1)
                if any("valid" in h for h in model.history_):  # --set patience=N: the per-epoch curve
                    row["valid_curve"] = [round(h["valid"], 4) for h in model.history_ if "valid" in h]
                row["params"] = {k: v for k, v in model.get_params().items() if k not in ("progress",)}
        if args.save:
            model.save(Path(args.save) / label)
    return result


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` options; a value is read as JSON when it parses (numbers, true, null)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value; received {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def streaming(args: argparse.Namespace) -> dict[str, Any]:
    import embrec
    from embrec import Ragged
    from embrec.evaluation.retail import retail_folds

    model = embrec.load(args.model)
    _, (fold,) = retail_folds(data_dir=None if args.data_dir is None else args.data_dir)
    transition = create("item-transition").fit(fold.train)
    events = fold.test.reencode(model.users_, model.items_)
    offsets = events.group_offsets()
    rng = np.random.default_rng(0)
    picks = rng.choice(offsets.size - 1, size=args.transactions, replace=False)
    step_ms, rerun_ms, trans_ms = [], [], []
    for g in picks:
        rows = np.arange(offsets[g], offsets[g + 1])
        items = [i for i in events.item[rows] if i > 0][: args.max_steps]
        user = events.user[rows[0]]
        session = model.session(user=model.users_.decode([user])[0] if user else None)
        for j, item in enumerate(items):
            t = time.perf_counter()
            session.add(model.items_.decode([item])[0])
            session.top_k(5)
            step_ms.append(1e3 * (time.perf_counter() - t))
            prefix = Ragged.from_lists([items[: j + 1]])
            t = time.perf_counter()
            sc = model.next_item_scores(np.array([user]), prefix)
            np.argpartition(-sc[0], 5)[:5]
            rerun_ms.append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            sc = transition.next_item_scores(np.array([user]), prefix)
            np.argpartition(-sc[0], 5)[:5]
            trans_ms.append(1e3 * (time.perf_counter() - t))

    def summary(ms: list[float]) -> dict[str, float]:
        return {"median_ms": round(statistics.median(ms), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
                "steps": len(ms)}
    return {"model": str(args.model), "items": model.items_.n_ids, "threads": torch.get_num_threads(),
            "streaming_step": summary(step_ms), "rerun_whole_prefix": summary(rerun_ms),
            "item_transition_step": summary(trans_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("retail-next", "leave-last-out", "streaming"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--baselines", default=None, help="comma-separated baselines (default: all of the protocol's)")
    parser.add_argument("--models", default="", help="comma-separated subset of the sequence models")
    parser.add_argument("--save", default=None, help="directory to keep the fitted sequence models in")
    parser.add_argument("--model", default=None, help="a saved sequence model (streaming)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of the RNN models (repeatable), e.g. --set transition_prior=scalar; "
                             "--set patience=N adds each epoch's validation top-5 accuracy (valid_curve) and keeps "
                             "the best epoch's weights")
    parser.add_argument("--transactions", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "retail-next":
        out = protocol("retail-next", args, ["popularity", "item-transition"], data_dir=args.data_dir)
    elif args.what == "leave-last-out":
        out = protocol("leave-last-out", args, ["popularity", "item-transition", "als", "bpr"],
                       dataset="ml-100k", data_dir=args.data_dir)
    else:
        out = streaming(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
