"""The main job: train the model zoo, compare it with the baselines, show recommendations, save, report.

    result = embrec.api.quickstart()                          # offline: the seeded synthetic shop
    result = embrec.api.quickstart(dataset="ml-100k")         # ml100k-top10 instead

Every model in the registry is trained with the small hyper-parameters of ``ZOO`` (models not listed there
use their defaults) and evaluated side by side on the protocol that fits the data. The best model is then
fitted on the whole log and saved; recommendations for one user and similar items for one item are shown
with raw ids; the HTML report is written when ``embrec.report`` is installed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data import FeatureTable, Interactions
from embrec.errors import InvalidParameterError

logger = logging.getLogger(__name__)

#: The synthetic shop of the offline quickstart: small enough for a minute or two on 2 CPU cores.
SYNTHETIC = {"n_users": 1000, "n_items": 500, "n_interactions": 20_000, "n_categories": 10, "seed": 0}

#: Small hyper-parameters per model for the quickstart (keys are checked against each constructor).
ZOO: dict[str, dict[str, Any]] = {
    "popularity": {},
    "repeat-frequency": {},
    "item-transition": {},
    "rating-bias": {},
    "ease": {},
    "item-knn": {},
    "als": {"factors": 32, "iterations": 10},
    "bpr": {"factors": 32, "epochs": 10, "batch_size": 4096, "lr": 0.02},
    "implicit-mf": {"factors": 32, "epochs": 5, "n_negatives": 4, "lr": 0.02},
    "explicit-mf": {"factors": 32, "epochs": 20, "batch_size": 512},
    "rating-dnn": {"factors": 32, "hidden": (32,), "epochs": 10},
    "rnn": {"embedding_dim": 32, "hidden_dim": 64, "max_len": 20, "epochs": 3},
    "sasrec": {"dim": 32, "num_layers": 1, "max_len": 20, "epochs": 4},
    "softmax-dnn": {"dim": 32, "hidden": (64,), "epochs": 5},
    "two-tower": {"dim": 32, "item_hidden": (64,), "user_hidden": (64,), "epochs": 5},
}

#: Datasets whose rating column holds ratings; elsewhere (quantities) the rating models are skipped.
RATED = ("ml-100k",)

#: Which protocol each dataset is evaluated on, and the metric that picks the best model (higher is better
#: unless marked "min").
PROTOCOL_OF = {"synthetic": "leave-last-out", "ml-100k": "ml100k-top10", "online-retail": "retail-precision"}
PRIMARY = {
    "leave-last-out": ("ndcg@10", "max"),
    "random-holdout": ("ndcg@10", "max"),
    "ml100k-top10": ("precision@10", "max"),
    "ml100k-rmse": ("rmse", "min"),
    "retail-precision": ("precision@5", "max"),
    "retail-next": ("top5_accuracy", "max"),
}


def quickstart(*, dataset: str | None = None, out: str | Path = "runs/quickstart",
               data_dir: str | Path | None = None, models: list[str] | None = None,
               synthetic_params: dict[str, Any] | None = None,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole tour and return what it showed as a JSON-ready dict.

    ``dataset`` None = the synthetic shop (``SYNTHETIC``, overridable with ``synthetic_params``);
    ``models`` restricts the zoo (the baselines always run). Returns ``{"dataset", "protocol", "results",
    "best", "skipped", "model_dir", "similar_model_dir", "recommendations", "similar", "report", "seconds"}``.
    """
    from embrec import api
    from embrec.evaluation import run_protocol
    from embrec.models.outpath import check_out_path, is_run_dir
    from embrec.models.registry import create, model_class, model_names

    say = progress or logger.info
    start = time.perf_counter()
    name = dataset or "synthetic"
    if name not in PROTOCOL_OF:
        raise InvalidParameterError(f"dataset must be one of {', '.join(repr(d) for d in PROTOCOL_OF)}; "
                                    f"received {name!r}.")
    inputs = api.input_paths(dataset, None, data_dir) if dataset is not None else []
    out = check_out_path(out, inputs=inputs, name="out", accept=is_run_dir,  # before any fitting
                         what="a quickstart run directory (model/, embedding-model/, report/)")
    protocol = PROTOCOL_OF[name]
    log = _load(name, data_dir, synthetic_params)
    say(f"data: {log}")

    names = api.with_baselines(models, protocol) if models else api.fitting(protocol, model_names())
    skipped = [n for n in names if name not in RATED and getattr(model_class(n), "predicts_ratings", False)]
    if skipped:
        say(f"skipping rating models on {name} (its rating column is a quantity, not a rating): "
            f"{', '.join(skipped)}")
        names = [n for n in names if n not in skipped]
    params = {n: api.model_params(n, ZOO.get(n, {})) for n in names}
    factories = {n: functools.partial(create, n, **params[n]) for n in names}
    say(f"evaluating {len(names)} models on {protocol}: {', '.join(names)} ...")
    protocol_data = {"data": log} if name == "synthetic" else {}
    results = api.to_plain(run_protocol(protocol, factories, data_dir=data_dir, progress=say, **protocol_data))

    best = best_model(results)
    say(f"best on {protocol}: {best['model']} ({best['metric']} = {best['value']:.4f}); fitting it on all "
        f"{len(log)} events ...")
    model = create(best["model"], **params[best["model"]]).fit(log)
    model.metrics_ = {protocol: _metrics_of(results, best["model"])}
    model_dir = Path(model.save(out / "model"))

    user = example_user(log)
    recs = api.recommend(model, user=user, k=10, exclude_seen=True)
    seen = model.seen_.select(model.users_.encode([user])).values[-5:]
    history = [_plain_id(x) for x in model.items_.decode(seen)]
    recs["recent_history"] = [{"item": i, "label": _label(log, i)} for i in history]
    _add_labels(log, recs["items"])

    similar_model, similar_dir = _embedding_model(model, model_dir, results, params, log, out, say)
    similar = None
    if similar_model is not None:
        item = example_item(log)
        similar = api.similar(similar_model, item=item, k=10, measure="cosine")
        similar["label"] = _label(log, similar["item"])
        _add_labels(log, similar["items"])

    shown = similar_model if similar_model is not None else model
    features = log.reencode(shown.users_, shown.items_).item_features if log.item_features is not None else None
    report = _report(similar_dir or model_dir, out / "report", results, say, features)
    return api.to_plain({
        "dataset": name, "protocol": protocol, "results": results["results"], "best": best,
        "skipped": skipped, "model_dir": str(model_dir), "similar_model_dir": str(similar_dir) if similar_dir else None,
        "recommendations": recs, "similar": similar, "report": str(report) if report else None,
        "seconds": round(time.perf_counter() - start, 1),
    })


def best_model(results: dict[str, Any]) -> dict[str, Any]:
    """{"model", "metric", "value"} of the best result by the protocol's primary metric."""
    metric, sense = PRIMARY.get(results["protocol"], ("ndcg@10", "max"))
    scored = [(r["metrics"][metric], r["model"]) for r in results["results"]
              if isinstance(r.get("metrics", {}).get(metric), (int, float))]
    if not scored:
        raise InvalidParameterError(f"no model reported {metric!r} on {results['protocol']}; nothing to compare.")
    value, model = (min if sense == "min" else max)(scored, key=lambda s: s[0])
    return {"model": model, "metric": metric, "value": float(value)}


def example_user(log: Interactions) -> Any:
    """A user with a history worth showing: the first (in id order) with at least 5 events, else the
    most active one."""
    counts = np.bincount(log.user, minlength=log.users.size)
    counts[0] = 0
    rows = np.flatnonzero(counts >= 5)
    row = int(rows[0]) if rows.size else int(np.argmax(counts))
    return _plain_id(log.users.decode([row])[0])


def example_item(log: Interactions) -> Any:
    """The most bought item."""
    counts = log.item_counts()
    counts[0] = 0
    return _plain_id(log.items.decode([int(np.argmax(counts))])[0])


# helpers --------------------------------------------------------------------------------------
def _load(name: str, data_dir: str | Path | None, synthetic_params: dict[str, Any] | None) -> Interactions:
    from embrec import datasets

    if name == "synthetic":
        return datasets.synthetic(**{**SYNTHETIC, **(synthetic_params or {})})
    return datasets.load(name, data_dir=data_dir)


def _embedding_model(model: Any, model_dir: Path, results: dict[str, Any], params: dict[str, dict[str, Any]],
                     log: Interactions, out: Path, say: Callable[[str], None]) -> tuple[Any, Path | None]:
    """The model to show similar items with: the best model when it has item embeddings, else the best
    embedding model of the run (fitted on all events and saved too); (None, None) when there is none."""
    from embrec.models.registry import create, model_class

    if hasattr(model, "item_embeddings"):
        return model, model_dir
    metric, sense = PRIMARY.get(results["protocol"], ("ndcg@10", "max"))
    ranked = sorted((r for r in results["results"] if isinstance(r.get("metrics", {}).get(metric), (int, float))),
                    key=lambda r: r["metrics"][metric], reverse=sense == "max")
    for r in ranked:
        if hasattr(model_class(r["model"]), "item_embeddings"):
            say(f"similar items come from the best embedding model, {r['model']}; fitting it on all events ...")
            emb = create(r["model"], **params[r["model"]]).fit(log)
            emb.metrics_ = {results["protocol"]: r["metrics"]}
            return emb, Path(emb.save(out / "embedding-model"))
    say("no embedding model in the registry yet: similar items skipped")
    return None, None


def _report(model_dir: Path, out: Path, results: dict[str, Any], say: Callable[[str], None],
            item_features: FeatureTable | None = None) -> Path | None:
    try:
        from embrec.report import write_report
    except ImportError as exc:
        if exc.name and (exc.name == "embrec.report" or "embrec.report".startswith(exc.name)):
            say("embrec.report is not installed: report skipped")
            return None
        raise
    say(f"writing the report to {out} ...")
    return Path(write_report(str(model_dir), str(out), protocol_results=results, item_features=item_features))


def _metrics_of(results: dict[str, Any], name: str) -> dict[str, Any]:
    return next((r["metrics"] for r in results["results"] if r["model"] == name), {})


def _label(log: Interactions, raw: Any) -> str | None:
    """A short human label for an item: its title/description, plus its category when known."""
    ft = log.item_features
    if ft is None:
        return None
    row = int(log.items.encode([raw], unknown="zero")[0])
    if row == 0:
        return None
    parts = []
    for col in ("title", "description"):
        if col in ft.text and ft.text[col][row]:
            parts.append(str(ft.text[col][row]))
            break
    for col in ("category", "price_bucket"):
        if col in ft.categorical and ft.categorical[col][row] > 0:
            parts.append(f"[{ft.vocabularies[col][ft.categorical[col][row] - 1]}]")
            break
    if "genres" in ft.multi_hot:
        codes = ft.multi_hot["genres"].select(np.array([row])).values
        parts.append("[" + "|".join(ft.vocabularies["genres"][c - 1] for c in codes if c > 0) + "]")
    return " ".join(parts) or None


def _add_labels(log: Interactions, items: list[dict[str, Any]]) -> None:
    for it in items:
        it["label"] = _label(log, it["item"])


def _plain_id(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
