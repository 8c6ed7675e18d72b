"""The main job: train the model zoo, compare it with the baselines, show recommendations, save, report.

    from embrec.quickstart import quickstart
    result = quickstart()                                     # offline: the seeded synthetic shop
    result = quickstart(dataset="ml-100k")                    # ml100k-top10 instead

Every model in the registry is trained with the small hyper-parameters of ``ZOO`` (models not listed there
use their defaults) and evaluated side by side on the protocol that fits the data. The overall winner is
reported; the best **embedding** model (one with item and user embeddings, so that it answers
``recommend``, ``similar`` and ``/embed``) is fitted on the whole log and saved as ``OUT/model`` -- the
one servable model of the run. Recommendations for one user and similar items for one item come from it,
with raw ids and labels, and the HTML report describes it (``OUT/report``).

Import order: this module sits above ``embrec.api`` and ``embrec.report`` and imports them; neither
imports it back.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embrec import api, datasets
from embrec.data import Interactions
from embrec.errors import InvalidParameterError
from embrec.evaluation import run_protocol
from embrec.evaluation.primary import PRIMARY, primary
from embrec.models.base import EmbeddingModel
from embrec.models.outpath import check_out_path, is_run_dir
from embrec.models.registry import create, model_class, model_names
from embrec.models.store import is_model_dir
from embrec.report import write_report

logger = logging.getLogger(__name__)

__all__ = ["PRIMARY", "PROTOCOL_OF", "SYNTHETIC", "ZOO", "best_model", "example_item", "example_user", "quickstart"]

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
    "repeat-blend": {},
    "transition-blend": {"max_rows": 5000},
    "als": {"factors": 32, "iterations": 10},
    "bpr": {"factors": 32, "epochs": 10, "batch_size": 4096, "lr": 0.02},
    "implicit-mf": {"factors": 32, "epochs": 5, "n_negatives": 4, "lr": 0.02},
    "explicit-mf": {"factors": 32, "epochs": 20, "batch_size": 512},
    "rating-dnn": {"factors": 32, "hidden": (32,), "epochs": 10},
    "rnn": {"embedding_dim": 32, "hidden_dim": 64, "max_len": 20, "epochs": 3},
    "sasrec": {"dim": 32, "num_layers": 1, "max_len": 20, "epochs": 4},
    # epochs of one pass over the examples (no floor of min_epoch_examples): the tour stays quick
    "softmax-dnn": {"dim": 32, "hidden": (64,), "epochs": 5, "min_epoch_examples": 0},
    "two-tower": {"dim": 32, "item_hidden": (64,), "user_hidden": (64,), "epochs": 5, "min_epoch_examples": 0},
}

#: Datasets whose rating column holds ratings; elsewhere (quantities) the rating models are skipped.
RATED = ("ml-100k",)

#: Which protocol each dataset is evaluated on (its metric that picks the best model: ``PRIMARY``).
PROTOCOL_OF = {"synthetic": "leave-last-out", "ml-100k": "ml100k-top10", "online-retail": "retail-precision"}


def quickstart(*, dataset: str | None = None, out: str | Path = "runs/quickstart",
               data_dir: str | Path | None = None, models: list[str] | None = None,
               synthetic_params: dict[str, Any] | None = None,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole tour and return what it showed as a JSON-ready dict.

    ``dataset`` None = the synthetic shop (``SYNTHETIC``, overridable with ``synthetic_params``);
    ``models`` restricts the zoo (the baselines always run). Returns ``{"dataset", "protocol", "results",
    "best" (the overall winner), "servable" (the best embedding model, saved at ``model_dir``), "skipped",
    "model_dir", "recommendations", "similar", "report", "seconds"}``.
    """
    say = progress or logger.info
    start = time.perf_counter()
    name = dataset or "synthetic"
    if name not in PROTOCOL_OF:
        raise InvalidParameterError(f"dataset must be one of {', '.join(repr(d) for d in PROTOCOL_OF)}; "
                                    f"received {name!r}.")
    inputs = api.input_paths(dataset, None, data_dir) if dataset is not None else []
    out = check_out_path(out, inputs=inputs, name="out", accept=is_run_dir,  # before any fitting
                         what="a quickstart run directory (model/, report/)")
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
    served = best_model(results, embedding_only=True)
    if served is None:  # a zoo without embedding models (models= restricted to baselines)
        say(f"no embedding model ran; the winner {best['model']} is saved (it answers recommend only)")
        served = best
    elif served["model"] != best["model"]:
        say(f"best on {protocol}: {best['model']} ({best['metric']} = {best['value']:.4f}); it has no embeddings, "
            f"so the servable model is the best embedding model, {served['model']} ({served['value']:.4f})")
    say(f"fitting {served['model']} on all {len(log)} events; saving it to {out / 'model'} ...")
    model = create(served["model"], **params[served["model"]]).fit(log)
    model.metrics_ = {protocol: _metrics_of(results, served["model"])}
    model_dir = Path(model.save(out / "model"))
    _drop_stale(out / "embedding-model", say)

    user = example_user(log)
    recs = api.recommend(model, user=user, k=10, exclude_seen=True)
    seen = model.seen_.select(model.users_.encode([user])).values[-5:]
    history = [_plain_id(x) for x in model.items_.decode(seen)]
    recs["recent_history"] = [{"item": i, "label": _label(log, i)} for i in history]
    _add_labels(log, recs["items"])

    similar = None
    if hasattr(model, "similar_items"):
        similar = api.similar(model, item=example_item(log), k=10, measure="cosine")
        similar["label"] = _label(log, similar["item"])
        _add_labels(log, similar["items"])

    features = log.reencode(model.users_, model.items_).item_features if log.item_features is not None else None
    say(f"writing the report to {out / 'report'} ...")
    report = Path(write_report(str(model_dir), str(out / "report"), protocol_results=results,
                               item_features=features))
    return api.to_plain({
        "dataset": name, "protocol": protocol, "results": results["results"], "best": best, "servable": served,
        "skipped": skipped, "model_dir": str(model_dir), "recommendations": recs, "similar": similar,
        "report": str(report), "seconds": round(time.perf_counter() - start, 1),
    })


def best_model(results: dict[str, Any], *, embedding_only: bool = False) -> dict[str, Any] | None:
    """{"model", "metric", "value"} of the best result by the protocol's primary metric; with
    ``embedding_only`` among the embedding models only (None when none ran)."""
    metric, sense = primary(results["protocol"])
    scored = [(r["metrics"][metric], r["model"]) for r in results["results"]
              if isinstance(r.get("metrics", {}).get(metric), (int, float))
              and (not embedding_only or _is_embedding(r["model"]))]
    if not scored and embedding_only:
        return None
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
    if name == "synthetic":
        return datasets.synthetic(**{**SYNTHETIC, **(synthetic_params or {})})
    return datasets.load(name, data_dir=data_dir)


def _is_embedding(name: str) -> bool:
    try:
        return issubclass(model_class(name), EmbeddingModel)
    except InvalidParameterError:  # a label that is not a registry name
        return False


def _drop_stale(path: Path, say: Callable[[str], None]) -> None:
    """Earlier quickstarts saved a second model in embedding-model/; remove it so one model is documented."""
    if path.is_dir() and is_model_dir(path):
        shutil.rmtree(path)
        say(f"removed {path} (left by an earlier quickstart; the servable model is model/)")


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
