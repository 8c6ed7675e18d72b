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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embrec.data.interactions import Interactions
from embrec.errors import InvalidParameterError, ParameterWarning, check_positive_int
from embrec.evaluation import generic, movielens, retail
from embrec.evaluation.bootstrap import N_BOOT, bootstrap_intervals, paired_bootstrap
from embrec.evaluation.folds import Fold, Scored
from embrec.evaluation.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    popularity_percentiles,
)
from embrec.models.base import refuse_quantities, unmet_need

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """A named protocol: how to build its folds, how to score a fitted model on one, and a one-line summary."""

    name: str
    folds: Callable[..., tuple[str, list[Fold]]]
    evaluate: Callable[..., Scored]
    summary: str
    needs_ratings: bool = False
    #: the default list length of a top-k protocol (the option ``k``); None: not a top-k protocol
    k: int | None = None

    #: lower is better for these metrics (the paired test's "best baseline" is the lowest)
    lower_is_better: tuple[str, ...] = ()

    def score(self, model: Any, fold: Fold, *, k: int | None = None) -> Scored:
        """``evaluate(model, fold)`` with the list length ``k`` (the protocol's default when None):
        the metrics, their per-unit sums and the lists shown (``Scored``)."""
        if self.k is None:
            return self.evaluate(model, fold)
        return self.evaluate(model, fold, k=self.k if k is None else k)


PROTOCOLS: dict[str, Protocol] = {
    "retail-precision": Protocol(
        "retail-precision", retail.retail_folds, retail.retail_precision_scored,
        "Online Retail by time: train < 2011-10-09, validation month to 2011-11-09 (part='valid') "
        "or test month from 2011-11-09 (part='test')", k=retail.K),
    "retail-next": Protocol(
        "retail-next", retail.retail_folds, retail.retail_next_scored,
        "Online Retail by time, as retail-precision; next item inside each transaction", k=retail.K),
    "ml100k-rmse": Protocol(
        "ml100k-rmse", movielens.rmse_folds, movielens.ml100k_rmse_scored,
        "ml-100k official folds u1..u5 (base -> test), mean of the folds", needs_ratings=True,
        lower_is_better=("rmse", "mae")),
    "ml100k-top10": Protocol(
        "ml100k-top10", movielens.top10_folds, movielens.ml100k_top10_scored,
        "ml-100k official ua split (ua.base -> ua.test), all unrated items ranked", k=movielens.K),
    "leave-last-out": Protocol(
        "leave-last-out", generic.leave_last_out_folds, generic.leave_last_out_scored,
        "each user's last event by time held out, all items new to the user ranked", k=generic.K),
    "random-holdout": Protocol(
        "random-holdout", generic.random_holdout_folds, generic.random_holdout_scored,
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
                 baselines: Sequence[str] = (), n_boot: int = N_BOOT, boot_seed: int = 0,
                 **options: Any) -> dict[str, Any]:
    """Fit a fresh model from every factory on each fold of protocol ``name`` and score it, in one run.

    ``progress`` receives a line as each model starts (``"model 3/13: bpr"``; default: the log at INFO).

    Returns ``{"protocol", "dataset", "split", "results": [row], "skipped": [{"model", "reason"}],
    "errors": [{"model", "error"}], "best_baseline"}`` with rows in the order of ``factories``; a row is
    ``{"model", "metrics", "intervals", "fit_seconds"}`` (+ ``coverage`` and ``popularity_percentile``
    for top-k protocols, ``folds`` for multi-fold ones, and ``vs_best_baseline`` when ``baselines`` name
    some of the factories): see ``_summary`` and ``compare``. ``intervals`` are 95 % bootstrap
    intervals over ``n_boot`` resamples of users (0: none), seeded by ``boot_seed`` (protocol options
    such as random-holdout's ``seed`` go in ``options``). ``on_row(row)`` is called as each model is
    done with its row, its ``"status"`` ("ok", "skipped" or "error") and, under ``"_units"``, the
    per-unit scores of each fold (for per-user files).
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
    n_boot = int(n_boot)
    if n_boot < 0:
        raise InvalidParameterError(f"n_boot must be an integer >= 0; received {n_boot}.")
    k = list_length(protocol, options.pop("k", None))
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    out: dict[str, Any] = {"protocol": name, "dataset": ds_name, "split": _split(folds), "results": [],
                           "skipped": [], "errors": [], "best_baseline": None}
    units: dict[str, list[Any]] = {}
    pending = [b for b in baselines if b in factories]
    say = progress or logger.info
    for i, (label, factory) in enumerate(factories.items(), start=1):
        reason = unmet_need(classes[label], folds[0].train)
        if reason is not None:
            logger.warning("%s: skipping %s: it %s", name, label, reason)
            row, key = {"model": label, "reason": reason}, "skipped"
        else:
            say(f"model {i}/{len(factories)}: {label}")
            try:
                runs = [_fit_and_score(protocol, label, factory(), fold, k) for fold in folds]
                row, key = _summary(label, runs, n_boot=n_boot, seed=boot_seed), "results"
                units[label] = row.pop("_units")
            except Exception as exc:  # one model's failure (a diverging fit included) must not end the run
                logger.warning("%s: %s failed: %s: %s", name, label, type(exc).__name__, exc)
                logger.debug("%s traceback", label, exc_info=True)
                row, key = {"model": label, "error": f"{type(exc).__name__}: {exc}"[:300]}, "errors"
        out[key].append(row)
        if label in pending:
            pending.remove(label)
            if not pending:  # every baseline is done: the reference of the paired tests is known
                out["best_baseline"] = _best(protocol, out["results"], baselines)
        if key == "results" and out["best_baseline"] and label not in baselines and n_boot:
            row["vs_best_baseline"] = compare(protocol, units, label, out["best_baseline"], n_boot=n_boot,
                                              seed=boot_seed)
        if on_row is not None:
            status = {"results": "ok", "skipped": "skipped", "errors": "error"}[key]
            on_row({"status": status, **row, "_units": list(zip([f.name for f in folds], units.get(label, [])))})
    if out["best_baseline"] and n_boot:  # the baselines, and any model that finished before them
        for row in out["results"]:
            if row["model"] != out["best_baseline"] and "vs_best_baseline" not in row:
                row["vs_best_baseline"] = compare(protocol, units, row["model"], out["best_baseline"],
                                                  n_boot=n_boot, seed=boot_seed)
    return out


def compare(protocol: Protocol, units: Mapping[str, list[Any]], label: str, baseline: str, *,
            n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The paired bootstrap test of ``label`` against ``baseline`` on the protocol's first metric, on the
    same users: ``{"baseline", "metric", "diff" (label - baseline), "interval", "p", "significant"}``."""
    metric = units[label][0].metrics[0]
    res = paired_bootstrap(units[label], units[baseline], metric, n_boot=n_boot, seed=seed)
    better = res["diff"] < 0 if metric in protocol.lower_is_better else res["diff"] > 0
    return {"baseline": baseline, **res, "better": bool(res["significant"] and better)}


def _best(protocol: Protocol, results: list[dict[str, Any]], baselines: Sequence[str]) -> str | None:
    """The baseline row with the best first metric (None when no baseline produced a row)."""
    rows = [r for r in results if r["model"] in baselines]
    if not rows:
        return None
    metric = next(iter(rows[0]["metrics"]))
    sign = 1.0 if metric in protocol.lower_is_better else -1.0
    return min(rows, key=lambda r: sign * r["metrics"][metric])["model"]


def evaluate_model(name: str, model: Any, *, data_dir: str | Path | None = None,
                   data: Interactions | None = None, dataset: str | None = None, n_boot: int = N_BOOT,
                   boot_seed: int = 0, **options: Any) -> dict[str, Any]:
    """Score one model on protocol ``name``. An unfitted model is fitted on each fold's training set
    first (and ends fitted on the last fold); a fitted one is scored as it is, on the fold whose training
    set it was fitted on (a warning if it was fitted on other data: its figures may include seen events).

    Returns ``{"protocol", "dataset", "split", "model", "metrics", "intervals", "fit_seconds"}`` (+
    ``coverage`` and ``popularity_percentile`` for top-k protocols; ``fit_seconds`` is None for a model
    fitted elsewhere; ``folds`` is added for multi-fold protocols).
    """
    protocol = get_protocol(name)
    label = _model_label(model)
    _check_model(protocol, label, model)
    k = list_length(protocol, options.pop("k", None))
    ds_name, folds = load_folds(name, data_dir=data_dir, data=data, dataset=dataset, **options)
    if not hasattr(model, "items_"):
        refuse_quantities(model, folds[0].train)
        runs = [_fit_and_score(protocol, label, model, fold, k) for fold in folds]
    else:
        folds = [_fold_of(model, folds, name)]
        runs = [_scored_run(protocol, label, model, folds[0], k, None)]
    out = _summary(label, runs, n_boot=n_boot, seed=boot_seed)
    out.pop("_units")
    return {"protocol": name, "dataset": ds_name, "split": _split(folds), **out}


def score_fitted(name: str, model: Any, fold: Fold, *, k: int | None = None, n_boot: int = N_BOOT,
                 boot_seed: int = 0) -> dict[str, Any]:
    """A fitted model's row on one ``fold`` of protocol ``name``, scored as it is: ``{"model", "metrics",
    "intervals", ["coverage", "popularity_percentile"], "fit_seconds": None}``."""
    protocol = get_protocol(name)
    label = _model_label(model)
    _check_model(protocol, label, model)
    row = _summary(label, [_scored_run(protocol, label, model, fold, list_length(protocol, k), None)],
                   n_boot=n_boot, seed=boot_seed)
    row.pop("_units")
    return row


# helpers ------------------------------------------------------------------------------------------
def _split(folds: list[Fold]) -> str:
    return "; ".join(f.description for f in folds)


def _fit_and_score(protocol: Protocol, label: str, model: Any, fold: Fold, k: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    model.fit(fold.train, valid=fold.valid)
    fit_seconds = time.perf_counter() - start
    return _scored_run(protocol, label, model, fold, k, fit_seconds)


def _scored_run(protocol: Protocol, label: str, model: Any, fold: Fold, k: int | None,
                fit_seconds: float | None) -> dict[str, Any]:
    scored = protocol.score(model, fold, k=k)
    run: dict[str, Any] = {"fold": fold.name, "metrics": scored.metrics, "fit_seconds": fit_seconds,
                           "_units": scored.units}
    if scored.recommended is not None:
        run["coverage"] = catalogue_coverage(scored.recommended, n_items=model.items_.n_ids)
        run["popularity_percentile"] = mean_popularity_percentile(
            scored.recommended, popularity_percentiles(model.item_counts_))
    logger.info("%s [%s] %s: %s%s", protocol.name, fold.name, label,
                "" if fit_seconds is None else f"fitted in {fit_seconds:.1f} s, ",
                ", ".join(f"{m}={v:.4f}" for m, v in scored.metrics.items()))
    return run


def _summary(label: str, runs: list[dict[str, Any]], *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """One model's row: the mean of its folds' metrics, their bootstrap ``intervals`` ({metric: [low,
    high]}), ``coverage`` and ``popularity_percentile`` (means over folds) for top-k protocols, the fit
    seconds, each fold's own figures (``folds``, multi-fold only) and the per-unit scores (``_units``)."""
    keys = list(runs[0]["metrics"])
    metrics = {k: float(np.mean([r["metrics"][k] for r in runs])) for k in keys}
    times = [r["fit_seconds"] for r in runs]
    fit_seconds = None if any(t is None for t in times) else float(sum(times))
    units = [r["_units"] for r in runs]
    out: dict[str, Any] = {"model": label, "metrics": metrics}
    if n_boot:
        out["intervals"] = {m: list(v) for m, v in bootstrap_intervals(units, n_boot=n_boot, seed=seed).items()}
    for extra in ("coverage", "popularity_percentile"):
        if extra in runs[0]:
            out[extra] = float(np.mean([r[extra] for r in runs]))
    out["fit_seconds"] = fit_seconds
    if len(runs) > 1:
        out["folds"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
    out["_units"] = units
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
