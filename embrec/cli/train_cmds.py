"""Commands that fit models: train, evaluate, benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import fmt, note, run, table
from embrec.cli.data_cmds import DATA_DIR, JSON
from embrec.cli.data_options import DATA_SOURCE, DataSourceOptions, data_source_options
from embrec.errors import InvalidParameterError
from embrec.models.distributed import init as init_distributed
from embrec.models.distributed import is_main

OPTION = typer.Option(None, "--option", "-o", help="A protocol option key=value, e.g. part=test (repeat).")
PROTOCOL = typer.Option(None, "--protocol", help="retail-precision, retail-next, ml100k-rmse, ml100k-top10, "
                        "leave-last-out or random-holdout.")


@data_source_options
def train(
    model: str = typer.Argument(..., help="Model name from the registry (e.g. popularity, bpr, als).",
                                show_default=False),
    out: str = typer.Option(..., "--out", help="Model directory to write: new, empty, or an embrec model "
                            "directory (replaced atomically; anything else is refused before the fit).",
                            show_default=False),
    source: DataSourceOptions = DATA_SOURCE,
    protocol: str | None = PROTOCOL,
    param: list[str] | None = typer.Option(None, "--param", "-p", help="Hyper-parameter key=value (repeat)."),
    option: list[str] | None = OPTION,
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
    nproc: int | None = typer.Option(None, "--nproc", min=1, help="Train data-parallel in N local processes "
                                     "(starts torchrun's elastic agent; see docs/distributed.md)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Save a checkpoint after every epoch to "
                                           "this directory; a restarted job resumes from the last one."),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0, help="With --nproc: restarts of the job "
                                     "after a failure (resuming from --checkpoint)."),
) -> None:
    """Fit a model (on all the data, or on a protocol's training split) and save its directory."""
    if nproc is not None:
        from embrec.cli.launch import launch_local

        launch_local(nproc, max_restarts)
        return

    def compute() -> dict[str, Any]:
        name, data = source.resolve(required=protocol is None)
        note(f"training {model} on {name or protocol} ...")
        return api.train(model, dataset=source.dataset, data=data, protocol=protocol, out=out, params=param or [],
                         data_dir=data_dir, options=option or [], checkpoint=checkpoint)

    def render(res: dict[str, Any]) -> None:
        if not is_main():
            return
        typer.echo(f"saved {res['model']} to {res['out']} ({res['n_users']} users, {res['n_items']} items; "
                   f"fit in {res['fit_seconds']:.1f} s on {res['dataset']})")
        if res["metrics"]:
            keep = ("model", "metrics", "intervals", "coverage", "popularity_percentile", "fit_seconds")
            typer.echo(protocol_table({"results": [{key: res[key] for key in keep if key in res}]}))

    init_distributed()  # under torchrun: join the group first, so only rank 0 prints (JSON included)
    run(as_json and is_main(), compute, render)


@data_source_options
def evaluate(
    model_dir: Path = typer.Argument(..., help="A model directory.", show_default=False),
    protocol: str = typer.Option(..., "--protocol", help="The evaluation protocol.", show_default=False),
    source: DataSourceOptions = DATA_SOURCE,
    option: list[str] | None = OPTION,
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Re-fit a saved model's configuration on a protocol's training split and report its metrics."""
    def compute() -> dict[str, Any]:
        _, data = source.resolve(required=False)
        note(f"evaluating {model_dir} on {protocol} ...")
        return api.evaluate(model_dir, protocol=protocol, dataset=source.dataset, data=data, data_dir=data_dir,
                            options=option or [])

    def render(res: dict[str, Any]) -> None:
        typer.echo(protocol_table(res))
        if res["refitted"]:
            typer.echo(f"(the stored weights were not fitted on a {res['protocol']} training split, so the model's "
                       "configuration was re-fitted on it; the directory is unchanged)")

    run(as_json, compute, render)


@data_source_options
def benchmark(
    protocol: str = typer.Option(..., "--protocol", help="The evaluation protocol.", show_default=False),
    models: str | None = typer.Option(None, "--models", help="Comma-separated model names (default: every "
                                      "registered model); the baselines are always included."),
    source: DataSourceOptions = DATA_SOURCE,
    param: list[str] | None = typer.Option(None, "--param", "-p", help="MODEL.key=value for one model "
                                           "(repeat)."),
    option: list[str] | None = OPTION,
    out: Path | None = typer.Option(None, "--out", help="Append each model's row to this JSON-lines file as "
                                    "soon as it is done (kept if a later model fails or the run is stopped)."),
    tune: int | None = typer.Option(None, "--tune", help="First tune every model with a search space for this "
                                    "many Optuna trials on a validation part carved from the training data."),
    tune_seed: int = typer.Option(0, "--tune-seed", help="Seed of the tuning sampler and validation carve."),
    per_user: Path | None = typer.Option(None, "--per-user", help="Write each model's per-user results to "
                                         "this .csv, .jsonl or .parquet file (one line per model, fold, user)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples of users for the 95 % "
                                  "intervals and the paired tests (0: none)."),
    bootstrap_seed: int = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap resamples."),
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Every model that can run on the data and the baselines on one protocol, side by side; the others
    are listed as skipped (with the reason) or failed (with the error)."""
    def compute() -> dict[str, Any]:
        _, data = source.resolve(required=False)
        names = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
        if names is not None and not names:
            raise InvalidParameterError(f"--models must name at least one model; received {models!r}.")
        note(f"benchmark on {protocol} ...")
        return api.benchmark(protocol, models=names, dataset=source.dataset, data=data,
                             params=per_model_params(param or []), data_dir=data_dir, options=option or [],
                             out=out, tune=tune, tune_seed=tune_seed, progress=note, per_user=per_user,
                             bootstrap=bootstrap, bootstrap_seed=bootstrap_seed)

    def render(res: dict[str, Any]) -> None:
        typer.echo(protocol_table(res))
        for name, t in (res.get("tuned") or {}).items():
            if "error" in t:
                typer.echo(f"{name}: not tuned ({t['error']})")
                continue
            typer.echo(f"{name}: tuned in {t['trials']} trials ({t['seconds']:.0f} s; validation "
                       f"{t['metric']} {t['best']['value']:.4f}): {t['best']['params']}")

    run(as_json, compute, render)


# helpers --------------------------------------------------------------------------------------
def per_model_params(pairs: list[str]) -> dict[str, dict[str, str]]:
    """["bpr.factors=64", "als.iterations=5"] -> {"bpr": {"factors": "64"}, "als": {"iterations": "5"}}."""
    out: dict[str, dict[str, str]] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not model.strip() or not name.strip():
            raise InvalidParameterError(f"--param must be written MODEL.key=value (e.g. bpr.factors=64); "
                                        f"received {item!r}.")
        out.setdefault(model.strip(), {})[name.strip()] = value.strip()
    return out


def protocol_table(res: dict[str, Any]) -> str:
    """A protocol result as a table: one row per model, one column per metric (with ``±`` half the width of
    its 95 % interval), coverage and popularity percentile for top-k protocols, the paired test against
    the best baseline, then fit seconds; models that were skipped or failed follow, with the reason."""
    rows = res.get("results", [])
    metrics: list[str] = []
    for r in rows:
        metrics += [m for m in r.get("metrics", {}) if m not in metrics]
    extras = [c for c in ("coverage", "popularity_percentile") if any(c in r for r in rows)]
    best = res.get("best_baseline")
    compared = any("vs_best_baseline" in r for r in rows)
    flat = []
    for r in rows:
        line: dict[str, Any] = {"model": r["model"]}
        for m in metrics:
            line[m] = _with_interval(r.get("metrics", {}).get(m), r.get("intervals", {}).get(m))
        line.update({c: r.get(c) for c in extras})
        if compared:
            line["vs best baseline"] = _versus(r, best)
        line["fit s"] = r.get("fit_seconds")
        flat.append(line)
    columns = ["model", *metrics, *extras, *(["vs best baseline"] if compared else []), "fit s"]
    head = f"{res['protocol']} on {res['dataset']}\n" if "protocol" in res else ""
    text = head + table(flat, columns, titles={"popularity_percentile": "pop pct"})
    if any("intervals" in r for r in rows):
        text += "\n±: half the width of the 95 % bootstrap interval over users"
        if compared:
            text += (f"; vs best baseline: difference in {metrics[0]} from {best} on the same users, "
                     "* beyond noise (paired bootstrap, 95 %)")
    notes = [{"model": r["model"], "status": "skipped", "why": r["reason"]} for r in res.get("skipped", [])]
    notes += [{"model": r["model"], "status": "failed", "why": r["error"]} for r in res.get("errors", [])]
    if notes:
        text += "\n\n" + table(notes, ["model", "status", "why"])
    return text


def _with_interval(value: Any, interval: Any) -> Any:
    if value is None or not interval or any(v is None for v in interval):
        return value
    return f"{fmt(value)} ±{fmt((interval[1] - interval[0]) / 2)}"


def _versus(row: dict[str, Any], best: str | None) -> str:
    if row["model"] == best:
        return "(best baseline)"
    test = row.get("vs_best_baseline")
    if not test:
        return "-"
    return f"{test['diff']:+.4f}{' *' if test['significant'] else ''}"
