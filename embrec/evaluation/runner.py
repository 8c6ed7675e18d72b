"""The protocol registry and the runner: fit models on a protocol's folds and score them.

    from embrec.evaluation import run_protocol, evaluate_model
    from embrec.baselines import Popularity
    run_protocol("retail-precision", {"popularity": Popularity})
    # {"protocol": "retail-precision", "dataset": "online-retail", "split": "...",
    #  "results": [{"model": "popularity", "metrics": {"precision@5": 0.064}, "fit_seconds": 0.01}]}
    evaluate_model("ml100k-top10", model)      # fits an unfitted model; scores a fitted one as it is

Multi-fold protocols (``ml100k-rmse``) fit once per fold; ``metrics`` is the mean over folds and
``folds`` lists each fold's own metrics and fit time.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.errors import InvalidParameterError, ParameterWarning
from embrec.evaluation import generic, movielens, retail
from embrec.evaluation.folds import Fold

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """A named protocol: how to build its folds, how to score a fitted model on one, and a one-line summary."""

    name: str
    folds: Callable[..., tuple[str, list[Fold]]]
    evaluate: Callable[[Any, Fold], dict[str, float]]
    summary: str
    needs_ratings: bool = False


PROTOCOLS: dict[str, Protocol] = {
    "retail-precision": Protocol(
        "retail-precision", retail.retail_folds, retail.retail_precision,
        "Online Retail by time: train < 2011-10-09, validation month to 2011-11-09 (part='valid') "
        "or test month from 2011-11-09 (part='test')"),
    "retail-next": Protocol(
        "retail-next", retail.retail_folds, retail.retail_next,
        "Online Retail by time, as retail-precision; next item inside each transaction"),
    "ml100k-rmse": Protocol(
        "ml100k-rmse", movielens.rmse_folds, movielens.ml100k_rmse,
        "ml-100k official folds u1..u5 (base -> test), mean of the folds", needs_ratings=True),
    "ml100k-top10": Protocol(
        "ml100k-top10", movielens.top10_folds, movielens.ml100k_top10,
        "ml-100k official ua split (ua.base -> ua.test), all unrated items ranked"),
    "leave-last-out": Protocol(
        "leave-last-out", generic.leave_last_out_folds, generic.leave_last_out_metrics,
        "each user's last event by time held out, all items new to the user ranked"),
    "random-holdout": Protocol(
        "random-holdout", generic.random_holdout_folds, generic.random_holdout_metrics,
        "a seeded 20% of each user's events held out, all items new to the user ranked"),
}


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise InvalidParameterError(f"protocol must be one of {', '.join(PROTOCOLS)}; received {name!r}.")
    return PROTOCOLS[name]


def load_folds(name: str, *, data_dir: str | Path | None = None, data: Interactions | None = None,
               dataset: str | None = None, **options: Any) -> tuple[str, list[Fold]]:
    """(dataset name, folds) of protocol ``name``: the exact training sets models are fitted on."""
    protocol = get_protocol(name)
    allowed = [p for p in inspect.signature(protocol.folds).parameters if p not in ("data", "dataset", "data_dir")]
    for key in options:
        if key not in allowed:
            raise InvalidParameterError(f"protocol {name} has no option {key!r}; its options: "
                                        f"{', '.join(allowed) or 'none'}.")
    return protocol.folds(data=data, dataset=dataset, data_dir=data_dir, **options)


def run_protocol(name: str, factories: Mapping[str, Callable[[], Any]], *,
                 data_dir: str | Path | None = None, data: Interactions | None = None,
                 dataset: str | None = None, **options: Any) -> dict[str, Any]:
    """Fit a fresh model from every factory on each fold of protocol ``name`` and score it, in one run.

    Returns ``{"protocol", "dataset", "split", "results": [{"model", "metrics", "fit_seconds"
    (+ "folds" for multi-fold protocols)}]}`` with results in the order of ``factories``.
    """
    protocol = get_protocol(name)
    if not isinstance(factories, Mapping) or not factories:
        raise InvalidParameterError("factories must be a non-empty dict of model name -> callable returning an "
                                    f"unfitted model; received {factories!r:.60}.")
    for label, factory in factories.items():
        if not callable(factory):
            raise InvalidParameterError(f"factory {label!r} must be callable; received {type(factory).__name__}.")
        _check_model(protocol, label, factory())
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    per_model: dict[str, list[dict[str, Any]]] = {label: [] for label in factories}
    for fold in folds:
        for label, factory in factories.items():
            per_model[label].append(_fit_and_score(protocol, label, factory(), fold))
    results = [_summary(label, runs) for label, runs in per_model.items()]
    return {"protocol": name, "dataset": ds_name, "split": _split(folds), "results": results}


def evaluate_model(name: str, model: Any, *, data_dir: str | Path | None = None,
                   data: Interactions | None = None, dataset: str | None = None,
                   **options: Any) -> dict[str, Any]:
    """Score one model on protocol ``name``. An unfitted model is fitted on each fold's training set
    first (and ends fitted on the last fold); a fitted one is scored as it is, on the fold whose training
    set it was fitted on (a warning if it was fitted on other data: its figures may include seen events).

    Returns ``{"protocol", "dataset", "split", "model", "metrics", "fit_seconds"}`` (``fit_seconds`` is
    None for a model fitted elsewhere; ``folds`` is added for multi-fold protocols).
    """
    protocol = get_protocol(name)
    label = _model_label(model)
    _check_model(protocol, label, model)
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    if not hasattr(model, "items_"):
        runs = [_fit_and_score(protocol, label, model, fold) for fold in folds]
    else:
        folds = [_fold_of(model, folds, name)]
        runs = [{"fold": folds[0].name, "metrics": protocol.evaluate(model, folds[0]), "fit_seconds": None}]
    out = _summary(label, runs)
    return {"protocol": name, "dataset": ds_name, "split": _split(folds), **out}


# helpers ------------------------------------------------------------------------------------------
def _split(folds: list[Fold]) -> str:
    return "; ".join(f.description for f in folds)


def _fit_and_score(protocol: Protocol, label: str, model: Any, fold: Fold) -> dict[str, Any]:
    start = time.perf_counter()
    model.fit(fold.train, valid=fold.valid)
    fit_seconds = time.perf_counter() - start
    metrics = protocol.evaluate(model, fold)
    logger.info("%s [%s] %s: fitted in %.1f s, %s", protocol.name, fold.name, label, fit_seconds,
                ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return {"fold": fold.name, "metrics": metrics, "fit_seconds": fit_seconds}


def _summary(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = list(runs[0]["metrics"])
    metrics = {k: float(np.mean([r["metrics"][k] for r in runs])) for k in keys}
    times = [r["fit_seconds"] for r in runs]
    fit_seconds = None if any(t is None for t in times) else float(sum(times))
    out: dict[str, Any] = {"model": label, "metrics": metrics, "fit_seconds": fit_seconds}
    if len(runs) > 1:
        out["folds"] = runs
    return out


def _check_model(protocol: Protocol, label: str, model: Any) -> None:
    if protocol.needs_ratings and not getattr(model, "predicts_ratings", False):
        raise InvalidParameterError(f"protocol {protocol.name} needs models that predict ratings; model {label!r} "
                                    f"({type(model).__name__}) does not (predicts_ratings=False).")


def _fold_of(model: Any, folds: list[Fold], name: str) -> Fold:
    fingerprint = getattr(model, "fingerprint_", None)
    for fold in folds:
        if fold.train.fingerprint() == fingerprint:
            return fold
    if len(folds) > 1:
        raise InvalidParameterError(
            f"this fitted {type(model).__name__} was not trained on any {name} fold's training set; pass an "
            "unfitted model (it is then fitted on each fold) or choose the fold with the protocol's option.")
    warnings.warn(f"this {type(model).__name__} was fitted on other data than {name}'s training set, so its "
                  "figures may count events it was trained on; pass an unfitted model to fit it on the protocol.",
                  ParameterWarning, stacklevel=3)
    return folds[0]


def _model_label(model: Any) -> str:
    from embrec.models.registry import name_of

    try:
        return name_of(type(model))
    except InvalidParameterError:
        return type(model).__name__
