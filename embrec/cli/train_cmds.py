"""Commands that fit models: train, evaluate, benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import fmt, note, run, table
from embrec.cli.data_cmds import DATA_DIR, JSON
from embrec.errors import InvalidParameterError, check_choice, describe
from embrec.models.distributed import init as init_distributed
from embrec.models.distributed import is_main

DATASET = typer.Option(None, "--dataset", help="A named dataset (see `embrec datasets`).")
DATA = typer.Option(None, "--data", help="An interaction log file: CSV, TSV, Parquet or xlsx.")
USER_COL = typer.Option(None, "--user-col", help="User id column of --data.")
ITEM_COL = typer.Option(None, "--item-col", help="Item id column of --data.")
RATING_COL = typer.Option(None, "--rating-col", help="Rating / quantity column of --data.")
TIME_COL = typer.Option(None, "--time-col", help="Timestamp column of --data (dates or unix seconds).")
GROUP_COL = typer.Option(None, "--group-col", help="Transaction / basket id column of --data.")
TIME_FORMAT = typer.Option(None, "--time-format", help="strptime format of --time-col, e.g. '%d/%m/%Y %H:%M' "
                           "(needed when dates could read day-first or month-first).")
RATING_KIND = typer.Option("auto", "--rating-kind", help="What --rating-col holds: rating, quantity (rating "
                           "models are then skipped), or auto (guessed from its name and values; see "
                           "docs/protocols.md).")
ITEM_FEATURES = typer.Option(None, "--item-features", help="Item attribute file (CSV/TSV/Parquet), one row per "
                             "item; its columns become features (typed automatically, see --feature-type). "
                             "Items with features but no event join the catalogue.")
ITEM_FEATURES_KEY = typer.Option(None, "--item-features-key", help="Id column of --item-features (default: "
                                 "the --item-col name).")
USER_FEATURES = typer.Option(None, "--user-features", help="User attribute file, one row per user (like "
                             "--item-features).")
USER_FEATURES_KEY = typer.Option(None, "--user-features-key", help="Id column of --user-features (default: "
                                 "the --user-col name).")
FEATURE_TYPE = typer.Option(None, "--feature-type", help="A feature column's type instead of the guessed one: "
                            "COL=categorical|multi|numeric|text|ignore (repeat).")
MULTI_SEP = typer.Option("|", "--multi-sep", help="Separator of multi-valued feature cells (A|B|C).")
ITEM_LABEL_COL = typer.Option(None, "--item-label-col", help="Column holding each item's title / description "
                              "(in --item-features, else in --data): shown beside ids, saved with the model.")
SEP = typer.Option(None, "--sep", help="Column separator of --data (e.g. ';' or tab); default: sniffed from the "
                   "header line among tab, ';', ',' and '|'.")
OPTION = typer.Option(None, "--option", "-o", help="A protocol option key=value, e.g. part=test (repeat).")
PROTOCOL = typer.Option(None, "--protocol", help="retail-precision, retail-next, ml100k-rmse, ml100k-top10, "
                        "leave-last-out or random-holdout.")


def train(
    model: str = typer.Argument(..., help="Model name from the registry (e.g. popularity, bpr, als).",
                                show_default=False),
    out: str = typer.Option(..., "--out", help="Model directory to write: new, empty, or an embrec model "
                            "directory (replaced atomically; anything else is refused before the fit).",
                            show_default=False),
    dataset: str | None = DATASET,
    data: Path | None = DATA,
    user_col: str | None = USER_COL,
    item_col: str | None = ITEM_COL,
    rating_col: str | None = RATING_COL,
    time_col: str | None = TIME_COL,
    group_col: str | None = GROUP_COL,
    sep: str | None = SEP,
    item_features: Path | None = ITEM_FEATURES,
    item_features_key: str | None = ITEM_FEATURES_KEY,
    user_features: Path | None = USER_FEATURES,
    user_features_key: str | None = USER_FEATURES_KEY,
    feature_type: list[str] | None = FEATURE_TYPE,
    multi_sep: str = MULTI_SEP,
    item_label_col: str | None = ITEM_LABEL_COL,
    time_format: str | None = TIME_FORMAT,
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
        name, source = data_source(dataset, data, user_col, item_col, rating_col, time_col, group_col,
                                   required=protocol is None, sep=sep, time_format=time_format,
                                **feature_options(item_features, item_features_key, user_features, user_features_key,
                                                  feature_type, multi_sep, item_label_col))
        note(f"training {model} on {name or protocol} ...")
        return api.train(model, dataset=dataset, data=source, protocol=protocol, out=out, params=param or [],
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


def evaluate(
    model_dir: Path = typer.Argument(..., help="A model directory.", show_default=False),
    protocol: str = typer.Option(..., "--protocol", help="The evaluation protocol.", show_default=False),
    dataset: str | None = DATASET,
    data: Path | None = DATA,
    user_col: str | None = USER_COL,
    item_col: str | None = ITEM_COL,
    rating_col: str | None = RATING_COL,
    time_col: str | None = TIME_COL,
    group_col: str | None = GROUP_COL,
    sep: str | None = SEP,
    item_features: Path | None = ITEM_FEATURES,
    item_features_key: str | None = ITEM_FEATURES_KEY,
    user_features: Path | None = USER_FEATURES,
    user_features_key: str | None = USER_FEATURES_KEY,
    feature_type: list[str] | None = FEATURE_TYPE,
    multi_sep: str = MULTI_SEP,
    item_label_col: str | None = ITEM_LABEL_COL,
    time_format: str | None = TIME_FORMAT,
    option: list[str] | None = OPTION,
    data_dir: Path | None = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Re-fit a saved model's configuration on a protocol's training split and report its metrics."""
    def compute() -> dict[str, Any]:
        _, source = data_source(dataset, data, user_col, item_col, rating_col, time_col, group_col,
                                required=False, sep=sep, time_format=time_format,
                                **feature_options(item_features, item_features_key, user_features, user_features_key,
                                                  feature_type, multi_sep, item_label_col))
        note(f"evaluating {model_dir} on {protocol} ...")
        return api.evaluate(model_dir, protocol=protocol, dataset=dataset, data=source, data_dir=data_dir,
                            options=option or [])

    def render(res: dict[str, Any]) -> None:
        typer.echo(protocol_table(res))
        if res["refitted"]:
            typer.echo(f"(the stored weights were not fitted on a {res['protocol']} training split, so the model's "
                       "configuration was re-fitted on it; the directory is unchanged)")

    run(as_json, compute, render)


def benchmark(
    protocol: str = typer.Option(..., "--protocol", help="The evaluation protocol.", show_default=False),
    models: str | None = typer.Option(None, "--models", help="Comma-separated model names (default: every "
                                      "registered model); the baselines are always included."),
    dataset: str | None = DATASET,
    data: Path | None = DATA,
    user_col: str | None = USER_COL,
    item_col: str | None = ITEM_COL,
    rating_col: str | None = RATING_COL,
    time_col: str | None = TIME_COL,
    group_col: str | None = GROUP_COL,
    time_format: str | None = TIME_FORMAT,
    rating_kind: str = RATING_KIND,
    sep: str | None = SEP,
    item_features: Path | None = ITEM_FEATURES,
    item_features_key: str | None = ITEM_FEATURES_KEY,
    user_features: Path | None = USER_FEATURES,
    user_features_key: str | None = USER_FEATURES_KEY,
    feature_type: list[str] | None = FEATURE_TYPE,
    multi_sep: str = MULTI_SEP,
    item_label_col: str | None = ITEM_LABEL_COL,
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
        _, source = data_source(dataset, data, user_col, item_col, rating_col, time_col, group_col,
                                required=False, rating_kind=rating_kind, sep=sep, time_format=time_format,
                                **feature_options(item_features, item_features_key, user_features, user_features_key,
                                                  feature_type, multi_sep, item_label_col))
        names = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
        if names is not None and not names:
            raise InvalidParameterError(f"--models must name at least one model; received {models!r}.")
        note(f"benchmark on {protocol} ...")
        return api.benchmark(protocol, models=names, dataset=dataset, data=source,
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
def data_source(dataset: str | None, data: Path | None, user_col: str | None, item_col: str | None,
                rating_col: str | None, time_col: str | None, group_col: str | None, *,
                required: bool, rating_kind: str = "auto", sep: str | None = None,
                time_format: str | None = None, **features: Any) -> tuple[str | None, api.FileSource | None]:
    """(label, FileSource or None) from the data options; checks they make sense together. ``features``
    are the attribute-file options (``feature_options``)."""
    cols = {"--user-col": user_col, "--item-col": item_col, "--rating-col": rating_col,
            "--time-col": time_col, "--group-col": group_col, "--sep": sep, "--time-format": time_format,
            **{FEATURE_FLAGS[k]: v for k, v in features.items() if k in FEATURE_FLAGS}}
    if dataset is not None and data is not None:
        raise InvalidParameterError("give one of --dataset or --data; received both.")
    check_choice("--rating-kind", rating_kind, ("auto", "rating", "quantity"))
    if rating_kind != "auto" and (data is None or rating_col is None):
        raise InvalidParameterError(f"--rating-kind {rating_kind} describes --rating-col of --data, which was "
                                    "not given (named datasets declare their own).")
    if data is None:
        given = [k for k, v in cols.items() if v is not None]
        if given:
            raise InvalidParameterError(f"{', '.join(given)} describe the columns of --data, which was not given.")
        if dataset is None and required:
            raise InvalidParameterError("give the data to train on: --dataset NAME, or --data PATH with "
                                        "--user-col and --item-col.")
        return dataset, None
    missing = [k for k in ("--user-col", "--item-col") if cols[k] is None]
    if missing:
        raise InvalidParameterError(f"--data needs {' and '.join(missing)} to name its id columns.")
    if time_format is not None and time_col is None:
        raise InvalidParameterError("--time-format describes --time-col, which was not given.")
    named = [(k, v) for k, v in cols.items() if v is not None and k.endswith("-col") and k != "--item-label-col"]
    for j, (option, col) in enumerate(named):
        first = next((k for k, v in named[:j] if v == col), None)
        if first is not None:
            raise InvalidParameterError(f"{first} and {option} must name different columns; received "
                                        f"{describe(col)} for both.")
    if features.get("feature_types") and not (features.get("item_features") or features.get("user_features")):
        raise InvalidParameterError("--feature-type describes a column of --item-features or --user-features, "
                                    "which were not given.")
    return Path(data).name, api.FileSource(data, user_col=str(user_col), item_col=str(item_col),
                                           rating_col=rating_col, time_col=time_col, group_col=group_col,
                                           rating_kind=rating_kind, sep=sep, time_format=time_format,
                                           **features)


FEATURE_FLAGS = {"item_features": "--item-features", "item_features_key": "--item-features-key",
                 "user_features": "--user-features", "user_features_key": "--user-features-key",
                 "feature_types": "--feature-type", "multi_sep": "--multi-sep",
                 "item_label_col": "--item-label-col"}


def feature_options(item_features: Path | None = None, item_features_key: str | None = None,
                    user_features: Path | None = None, user_features_key: str | None = None,
                    feature_type: list[str] | None = None, multi_sep: str = "|",
                    item_label_col: str | None = None) -> dict[str, Any]:
    """The attribute-file options as FileSource fields; only those given (``multi_sep`` when not "|")."""
    given = {"item_features": item_features, "item_features_key": item_features_key,
             "user_features": user_features, "user_features_key": user_features_key,
             "feature_types": tuple(feature_type) if feature_type else None,
             "multi_sep": multi_sep if multi_sep != "|" else None, "item_label_col": item_label_col}
    if item_features_key is not None and item_features is None:
        raise InvalidParameterError("--item-features-key names the id column of --item-features, which was not given.")
    if user_features_key is not None and user_features is None:
        raise InvalidParameterError("--user-features-key names the id column of --user-features, which was not given.")
    return {k: v for k, v in given.items() if v is not None}


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
