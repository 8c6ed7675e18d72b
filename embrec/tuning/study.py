"""Hyper-parameter search with Optuna on a validation part carved from a protocol's training data.

    from embrec.tuning import tune
    res = tune("als", "leave-last-out", dataset="ml-100k", trials=30, minutes=10, seed=0)
    res["best"]["params"]          # {"factors": 93, "regularization": 0.41, ...}
    res["results"]                 # [{"model": "als (defaults)", ...}, {"model": "als (tuned)", ...}]

Each trial draws parameters from the model's ``search_space`` (TPE, seeded), fits on the carved training
part (``embrec.tuning.validation``) and is scored by the protocol's own evaluation function on the carved
validation part, with the protocol's primary metric. Models whose training loop validates every epoch
report that figure to Optuna, and a ``MedianPruner`` stops trials running below the median of earlier
ones at the same epoch. ``trials`` and ``minutes`` bound the search (whichever ends first); ``storage``
(e.g. ``sqlite:///tune.db``) keeps the study so that a later call with the same study name resumes it.
Only when the search is over are the protocol's own folds fitted, with the defaults and with the best
parameters, and scored on its test part: the two rows come from the same run.

A new study's first trial is the model's defaults (every parameter of the space whose default lies in it;
``default_params``), so the best setting on the validation part is never one below the defaults: a short
search may find nothing better, and then it returns them.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from embrec.errors import DataError, EmbrecError, InvalidParameterError, check_positive_int
from embrec.models.search import Choice, FloatRange, IntRange, Param, label_of, search_space_of
from embrec.sources import input_paths
from embrec.tuning.validation import validation_fold

logger = logging.getLogger(__name__)

N_STARTUP_TRIALS = 5  # the pruner lets the first trials run whole, to learn what a median epoch is
N_WARMUP_EPOCHS = 1
FAILURES = (EmbrecError, FloatingPointError)


def suggest(trial: Any, space: Mapping[str, Param]) -> dict[str, Any]:
    """One draw of every parameter of ``space`` from an Optuna ``trial``."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, FloatRange):
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, IntRange):
            out[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
        elif isinstance(p, Choice):
            out[name] = p.value_of(trial.suggest_categorical(name, p.labels()))
        else:
            raise InvalidParameterError(
                f"search_space entry {name!r} must be a FloatRange, IntRange or Choice; "
                f"received {type(p).__name__}."
            )
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def default_params(cls: type, space: Mapping[str, Param]) -> dict[str, Any]:
    """The constructor defaults of ``cls`` as Optuna values (Choice labels), for the parameters of ``space``
    whose default lies inside it; a default outside its range is left to the sampler."""
    signature = inspect.signature(cls.__init__).parameters
    out: dict[str, Any] = {}
    for name, p in space.items():
        default = signature[name].default  # search_space_of checked that __init__ takes every name
        if default is inspect.Parameter.empty:
            continue
        if isinstance(p, Choice):
            if label_of(default) in p.labels():
                out[name] = label_of(default)
        elif isinstance(p, FloatRange) and _number(default) and p.low <= default <= p.high:
            out[name] = float(default)
        elif _number(default) and float(default).is_integer() and p.low <= default <= p.high:
            out[name] = int(default)  # an IntRange
    return out


def decode(space: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's stored params (Choice labels) back to model values."""
    return {
        k: space[k].value_of(v) if isinstance(space.get(k), Choice) else v
        for k, v in params.items()
    }


def primary_metric(protocol: str) -> tuple[str, str]:
    """(metric, "maximize" | "minimize") the protocol is tuned on."""
    from embrec.evaluation.primary import primary

    metric, sense = primary(protocol)
    return metric, "maximize" if sense == "max" else "minimize"


def search(
    name: str,
    protocol: str,
    folds: list[Any],
    *,
    trials: int | None = 20,
    minutes: float | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    fixed: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the study on the validation part carved from ``folds[0].train``; only the training part is read.

    Returns ``{"study", "metric", "direction", "validation", "trials": [...], "best": {...}, "seconds"}``.
    """
    import optuna

    from embrec.evaluation import get_protocol
    from embrec.models.registry import create, model_class
    from embrec.models.training import epoch_callback

    cls = model_class(name)
    space = search_space_of(cls, name)
    fixed = dict(fixed or {})
    space = {
        k: v for k, v in space.items() if k not in fixed
    }  # a parameter given by the user stays put
    if not space:
        raise InvalidParameterError(
            f"every parameter of {name}'s search space was fixed with --param; "
            "nothing is left to tune."
        )
    if trials is None and minutes is None:
        raise InvalidParameterError("give a budget: trials, minutes or both; received neither.")
    if trials is not None:
        trials = check_positive_int("trials", trials)
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
        raise InvalidParameterError(f"minutes must be a positive number; received {minutes!r}.")
    evaluate = protocol_metrics(get_protocol(protocol))
    metric, direction = primary_metric(protocol)
    carved = validation_fold(protocol, folds[0], seed=seed)
    logger.info("tuning %s on %s: %s", name, protocol, carved.description)

    def objective(trial: Any) -> float:
        params = {**fixed, **suggest(trial, space)}

        def report(row: dict[str, float], minimize_valid: bool) -> None:
            if "valid" not in row or minimize_valid != (direction == "minimize"):
                return  # no per-epoch figure, or one whose sense differs from the objective's
            trial.report(float(row["valid"]), int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"epoch {int(row['epoch'])}: below the median of earlier trials"
                )

        start = time.perf_counter()
        try:
            model = create(name, **params)
            with epoch_callback(report):
                model.fit(carved.train, valid=carved.valid)
            value = float(evaluate(model, carved)[metric])
        except FAILURES as exc:  # a combination the model refuses, or divergence: the trial fails, the study goes on
            trial.set_user_attr("error", str(exc)[:200])
            logger.warning("%s trial %d failed: %s", name, trial.number, exc)
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{metric} is {value}")
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction=direction,
        study_name=study_name or f"{name}:{protocol}",
        storage=storage,
        load_if_exists=storage is not None,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=N_STARTUP_TRIALS, n_warmup_steps=N_WARMUP_EPOCHS
        ),
    )
    if not study.trials:  # a new study starts from the defaults (module docstring)
        start_at = default_params(cls, space)
        if start_at:
            study.enqueue_trial(start_at, user_attrs={"defaults": True})
    show = progress if progress is not None else sys.stderr.isatty()
    before = len(study.trials)
    bar = tqdm(total=trials, desc=f"tune {name}", disable=not show, unit="trial")
    start = time.perf_counter()

    def tick(study: Any, trial: Any) -> None:
        bar.update(1)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = study.best_value if done else float("nan")
        bar.set_postfix(best=f"{best:.4f}")
        logger.info(
            "%s trial %d %s: %s=%s (best %.4f) %s",
            name,
            trial.number,
            trial.state.name,
            metric,
            "-" if trial.value is None else f"{trial.value:.4f}",
            best,
            trial.params,
        )

    try:
        study.optimize(
            objective,
            n_trials=trials,
            timeout=None if minutes is None else 60.0 * minutes,
            callbacks=[tick],
            catch=FAILURES,
        )
    finally:
        bar.close()
    rows = [_trial_row(t, space) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        errors = [r["error"] for r in rows if "error" in r]
        why = f"; the first error: {errors[0][:120]}" if errors else ""
        raise DataError(
            f"no {name} trial completed on {protocol}'s validation part ({len(rows)} pruned or "
            f"failed){why}; give more trials or minutes, or fix parameters with --param."
        )
    best = study.best_trial
    return {
        "study": study.study_name,
        "metric": metric,
        "direction": direction,
        "validation": carved.description,
        "trials": rows,
        "new_trials": len(study.trials) - before,
        "best": {
            "trial": best.number,
            "value": float(best.value),
            "params": {**fixed, **decode(space, best.params)},
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def _trial_row(t: Any, space: Mapping[str, Param]) -> dict[str, Any]:
    return {
        "trial": t.number,
        "state": t.state.name.lower(),
        "value": t.value,
        "epochs": len(t.intermediate_values) or None,
        "seconds": t.user_attrs.get("seconds"),
        "params": decode(space, t.params),
        **({"defaults": True} if t.user_attrs.get("defaults") else {}),
        **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
    }


def tune(
    name: str,
    protocol: str,
    *,
    trials: int | None = 20,
    minutes: float | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    fixed: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    final: bool = True,
    progress: bool | None = None,
    data_dir: str | Path | None = None,
    **where: Any,
) -> dict[str, Any]:
    """Search (``search``), then fit the defaults and the best parameters on the protocol's own folds and
    score both on its test part (skipped when ``final`` is False: then the test part is never read).
    ``out`` saves the tuned model (fitted on the last fold's training part) through ``save``.
    ``where`` holds ``data=`` / ``dataset=`` and the protocol's options."""
    from embrec.evaluation import get_protocol, load_folds
    from embrec.models.base import refuse_quantities
    from embrec.models.outpath import check_out_path
    from embrec.models.registry import create, model_class

    if out is not None:  # refused now, not after the whole search (embrec.models.outpath)
        out = check_out_path(
            out, inputs=input_paths(where.get("dataset"), where.get("data"), data_dir), name="out"
        )
    ds_name, folds = load_folds(protocol, data_dir=data_dir, **where)
    # refused before the search, as train and evaluate refuse it
    refuse_quantities(model_class(name), folds[0].train)
    found = search(
        name,
        protocol,
        folds,
        trials=trials,
        minutes=minutes,
        seed=seed,
        storage=storage,
        study_name=study_name,
        fixed=fixed,
        progress=progress,
    )
    result = {
        "model": name,
        "protocol": protocol,
        "dataset": ds_name,
        **found,
        "results": None,
        "out": None,
    }
    if not final:
        return result
    evaluate = protocol_metrics(get_protocol(protocol))
    factories: dict[str, Callable[[], Any]] = {
        f"{name} (defaults)": lambda: create(name, **dict(fixed or {})),
        f"{name} (tuned)": lambda: create(name, **found["best"]["params"]),
    }
    results, tuned = [], None
    for label, factory in factories.items():
        runs = []
        for fold in folds:
            model = factory()
            start = time.perf_counter()
            model.fit(fold.train, valid=fold.valid)
            seconds = time.perf_counter() - start
            runs.append(
                {"fold": fold.name, "metrics": evaluate(model, fold), "fit_seconds": seconds}
            )
            tuned = model
        keys = list(runs[0]["metrics"])
        row = {
            "model": label,
            "metrics": {k: float(np.mean([r["metrics"][k] for r in runs])) for k in keys},
            "fit_seconds": float(sum(r["fit_seconds"] for r in runs)),
        }
        if len(runs) > 1:
            row["folds"] = runs
        results.append(row)
    result["results"] = results
    if out is not None:
        tuned.metrics_ = {protocol: results[-1]["metrics"]}
        result["out"] = str(tuned.save(out))
    return result


def protocol_metrics(protocol: Any) -> Callable[[Any, Any], dict[str, float]]:
    """model, fold -> the protocol's metrics dict (``Protocol.score`` returns them with per-user sums)."""
    return lambda model, fold: protocol.score(model, fold).metrics
