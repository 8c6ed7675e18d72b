"""The protocol registry and the runner: fit models on a protocol's folds and score them.

    from embrec.evaluation import run_protocol, evaluate_model
    from embrec.baselines import Popularity
    run_protocol("retail-precision", {"popularity": Popularity})
    # {"protocol": "retail-precision", "dataset": "online-retail", "split": "...",
    #  "results": [{"model": "popularity", "metrics": {"precision@5": 0.064}, "fit_seconds": 0.01}]}
    evaluate_model("ml100k-top10", model)      # fits an unfitted model; scores a fitted one as it is

Multi-fold protocols (``ml100k-rmse``) fit once per fold; ``metrics`` is the mean over folds and
``folds`` lists each fold's own metrics and fit time.

``run_protocol`` never lets one model end the run: a model whose declared ``needs`` the data does not
meet (``embrec.models.base.unmet_need``: ratings, item features, timestamps, transactions) is listed
under ``"skipped"`` with the reason, and a model that raises while fitting or scoring (a diverging fit's
``FloatingPointError`` included) under ``"errors"`` with the exception; ``on_row`` sees every row
(``status`` "ok", "skipped" or "error") as soon as it is done. Every top-k protocol takes the option
``k`` (the list length; default 5 for the retail protocols, 10 for the others).
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
from embrec.errors import InvalidParameterError, ParameterWarning, check_positive_int
from embrec.evaluation import generic, movielens, retail
from embrec.evaluation.folds import Fold
from embrec.models.base import unmet_need

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """A named protocol: how to build its folds, how to score a fitted model on one, and a one-line summary."""

    name: str
    folds: Callable[..., tuple[str, list[Fold]]]
    evaluate: Callable[..., dict[str, float]]
    summary: str
    needs_ratings: bool = False
    #: the default list length of a top-k protocol (the option ``k``); None: not a top-k protocol
    k: int | None = None

    def score(self, model: Any, fold: Fold, *, k: int | None = None) -> dict[str, float]:
        """``evaluate(model, fold)`` with the list length ``k`` (the protocol's default when None)."""
        if self.k is None:
            return self.evaluate(model, fold)
        return self.evaluate(model, fold, k=self.k if k is None else k)


PROTOCOLS: dict[str, Protocol] = {
    "retail-precision": Protocol(
        "retail-precision", retail.retail_folds, retail.retail_precision,
        "Online Retail by time: train < 2011-10-09, validation month to 2011-11-09 (part='valid') "
        "or test month from 2011-11-09 (part='test')", k=retail.K),
    "retail-next": Protocol(
        "retail-next", retail.retail_folds, retail.retail_next,
        "Online Retail by time, as retail-precision; next item inside each transaction", k=retail.K),
    "ml100k-rmse": Protocol(
        "ml100k-rmse", movielens.rmse_folds, movielens.ml100k_rmse,
        "ml-100k official folds u1..u5 (base -> test), mean of the folds", needs_ratings=True),
    "ml100k-top10": Protocol(
        "ml100k-top10", movielens.top10_folds, movielens.ml100k_top10,
        "ml-100k official ua split (ua.base -> ua.test), all unrated items ranked", k=movielens.K),
    "leave-last-out": Protocol(
        "leave-last-out", generic.leave_last_out_folds, generic.leave_last_out_metrics,
        "each user's last event by time held out, all items new to the user ranked", k=generic.K),
    "random-holdout": Protocol(
        "random-holdout", generic.random_holdout_folds, generic.random_holdout_metrics,
        "a seeded 20% of each user's events held out, all items new to the user ranked", k=generic.K),
}


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise InvalidParameterError(f"protocol must be one of {', '.join(PROTOCOLS)}; received {name!r}.")
    return PROTOCOLS[name]


def load_folds(name: str, *, data_dir: str | Path | None = None, data: Interactions | None = None,
               dataset: str | None = None, **options: Any) -> tuple[str, list[Fold]]:
    """(dataset name, folds) of protocol ``name``: the exact training sets models are fitted on.
    (The option ``k`` of a top-k protocol is accepted and changes no fold.)"""
    protocol = get_protocol(name)
    options = dict(options)
    list_length(protocol, options.pop("k", None))
    allowed = fold_options(protocol)
    for key in options:
        if key not in allowed:
            valid = allowed + (["k"] if protocol.k is not None else [])
            raise InvalidParameterError(f"protocol {name} has no option {key!r}; its options: "
                                        f"{', '.join(valid) or 'none'}.")
    return protocol.folds(data=data, dataset=dataset, data_dir=data_dir, **options)


def fold_options(protocol: Protocol) -> list[str]:
    return [p for p in inspect.signature(protocol.folds).parameters if p not in ("data", "dataset", "data_dir")]


def list_length(protocol: Protocol, k: Any) -> int | None:
    """The checked option ``k`` (None: the protocol's default); an error for a protocol without lists."""
    if k is None:
        return None
    if protocol.k is None:
        raise InvalidParameterError(f"protocol {protocol.name} has no option 'k' (it ranks no lists); its options: "
                                    f"{', '.join(fold_options(protocol)) or 'none'}.")
    return check_positive_int("k", k)


def run_protocol(name: str, factories: Mapping[str, Callable[[], Any]], *,
                 data_dir: str | Path | None = None, data: Interactions | None = None,
                 dataset: str | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[str], None] | None = None,
                 **options: Any) -> dict[str, Any]:
    """Fit a fresh model from every factory on each fold of protocol ``name`` and score it, in one run.

    ``progress`` receives a line as each model starts (``"model 3/13: bpr"``; default: the log at INFO).

    Returns ``{"protocol", "dataset", "split", "results": [{"model", "metrics", "fit_seconds"
    (+ "folds" for multi-fold protocols)}], "skipped": [{"model", "reason"}], "errors": [{"model",
    "error"}]}`` with rows in the order of ``factories``. ``on_row(row)`` is called as each model is done
    with its row and ``"status"`` ("ok", "skipped" or "error"), e.g. to write it out at once.
    """
    protocol = get_protocol(name)
    if not isinstance(factories, Mapping) or not factories:
        raise InvalidParameterError("factories must be a non-empty dict of model name -> callable returning an "
                                    f"unfitted model; received {factories!r:.60}.")
    classes = {}
    for label, factory in factories.items():
        if not callable(factory):
            raise InvalidParameterError(f"factory {label!r} must be callable; received {type(factory).__name__}.")
        probe = factory()
        _check_model(protocol, label, probe)
        classes[label] = type(probe)
    k = list_length(protocol, options.pop("k", None))
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    out: dict[str, Any] = {"protocol": name, "dataset": ds_name, "split": _split(folds), "results": [],
                           "skipped": [], "errors": []}
    say = progress or logger.info
    for i, (label, factory) in enumerate(factories.items(), start=1):
        reason = unmet_need(classes[label], folds[0].train)
        if reason is not None:
            logger.warning("%s: skipping %s: it %s", name, label, reason)
            row, key = {"model": label, "reason": reason}, "skipped"
        else:
            say(f"model {i}/{len(factories)}: {label}")
            try:
                row = _summary(label, [_fit_and_score(protocol, label, factory(), fold, k) for fold in folds])
                key = "results"
            except Exception as exc:  # one model's failure (a diverging fit included) must not end the run
                logger.warning("%s: %s failed: %s: %s", name, label, type(exc).__name__, exc)
                logger.debug("%s traceback", label, exc_info=True)
                row, key = {"model": label, "error": f"{type(exc).__name__}: {exc}"[:300]}, "errors"
        out[key].append(row)
        if on_row is not None:
            on_row({"status": {"results": "ok", "skipped": "skipped", "errors": "error"}[key], **row})
    return out


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
    k = list_length(protocol, options.pop("k", None))
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    if not hasattr(model, "items_"):
        runs = [_fit_and_score(protocol, label, model, fold, k) for fold in folds]
    else:
        folds = [_fold_of(model, folds, name)]
        runs = [{"fold": folds[0].name, "metrics": protocol.score(model, folds[0], k=k), "fit_seconds": None}]
    out = _summary(label, runs)
    return {"protocol": name, "dataset": ds_name, "split": _split(folds), **out}


# helpers ------------------------------------------------------------------------------------------
def _split(folds: list[Fold]) -> str:
    return "; ".join(f.description for f in folds)


def _fit_and_score(protocol: Protocol, label: str, model: Any, fold: Fold, k: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    model.fit(fold.train, valid=fold.valid)
    fit_seconds = time.perf_counter() - start
    metrics = protocol.score(model, fold, k=k)
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
