"""Commands on a saved model directory: recommend, similar, info, inspect, serve."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import typer

from embrec import api
from embrec.cli._output import echo_items, note, run
from embrec.errors import DataError, InvalidParameterError, ModelFileError
from embrec.errors import describe as _show

MODEL_DIR = typer.Argument(..., help="A model directory written by `embrec train` (or model.save).",
                           show_default=False)
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout instead of a table.")
K = typer.Option(10, "-k", "--k", help="Number of items to return.")


def _allow_opt() -> Any:
    return typer.Option(None, "--items", help="Allow-list: only these raw item ids may be returned: A,B,C, a "
                        "JSON list, or repeated (--items A --items B).")


def _deny_opt() -> Any:
    return typer.Option(None, "--exclude-items", help="Deny-list: raw item ids never returned (A,B,C, a JSON "
                        "list, or repeated).")


def _id_opts(values: list[str] | None) -> list[str] | None:
    """Repeated --items / --exclude-items values, each A,B,C or a JSON list, as one list (None if absent)."""
    if not values:
        return None
    return [i for v in values for i in parse_ids(v)]


def recommend(
    model_dir: Path = MODEL_DIR,
    user: str | None = typer.Option(None, "--user", help="Raw id of a user known to the model."),
    history: str | None = typer.Option(None, "--history", help="Raw item ids (any user): A,B,C or a JSON "
                                       'list such as \'["A,1", "B"]\' for ids holding commas.'),
    item: list[str] | None = typer.Option(None, "--item", help="One raw item id of the history (repeat: "
                                          "--item A --item B); ids may hold commas."),
    k: int = K,
    exclude_seen: bool = typer.Option(True, "--exclude-seen/--include-seen",
                                      help="Leave out the items the user has already seen (default), or keep "
                                      "them (repeat purchases)."),
    allow: list[str] | None = _allow_opt(),
    deny: list[str] | None = _deny_opt(),
    as_json: bool = JSON,
) -> None:
    """Top-k items for a known user or for any history of items (already-seen items left out unless
    --include-seen)."""
    def compute() -> dict[str, Any]:
        items = [*(parse_ids(history) if history is not None else []), *(item or [])]
        if (user is None) == (not items):
            raise InvalidParameterError("give exactly one of --user or --history / --item; received "
                                        f"{'both' if user is not None else 'neither'}.")
        model = api.open_model(model_dir)
        return api.recommend(model, user=user, history=items or None, k=k, exclude_seen=exclude_seen,
                             items=_id_opts(allow), exclude_items=_id_opts(deny))

    def render(res: dict[str, Any]) -> None:
        who = f"user {res['user']!r}" if res["user"] is not None else f"history {res['history']}"
        typer.echo(f"{res['model']}: top {res['k']} for {who}"
                   + (" (seen items excluded)" if res["exclude_seen"] else " (seen items included)"))
        echo_items(res["items"])

    run(as_json, compute, render)


def similar(
    model_dir: Path = MODEL_DIR,
    item: str = typer.Option(..., "--item", help="Raw id of an item known to the model.", show_default=False),
    k: int = K,
    measure: str = typer.Option("cosine", "--measure", help="cosine or dot."),
    allow: list[str] | None = _allow_opt(),
    deny: list[str] | None = _deny_opt(),
    as_json: bool = JSON,
) -> None:
    """The k items nearest to an item in the model's embedding space."""
    def compute() -> dict[str, Any]:
        return api.similar(api.open_model(model_dir), item=item, k=k, measure=measure, items=_id_opts(allow),
                           exclude_items=_id_opts(deny))

    def render(res: dict[str, Any]) -> None:
        typer.echo(f"{res['model']}: {res['k']} items most similar to {res['item']!r} by {res['measure']}")
        echo_items(res["items"])

    run(as_json, compute, render)


def similar_users(
    model_dir: Path = MODEL_DIR,
    user: str = typer.Option(..., "--user", help="Raw id of a user known to the model.", show_default=False),
    k: int = K,
    measure: str = typer.Option("cosine", "--measure", help="cosine or dot."),
    as_json: bool = JSON,
) -> None:
    """The k known users nearest to a user in the model's embedding space."""
    def compute() -> dict[str, Any]:
        return api.similar_users(api.open_model(model_dir), user=user, k=k, measure=measure)

    def render(res: dict[str, Any]) -> None:
        typer.echo(f"{res['model']}: {res['k']} users most similar to {res['user']!r} by {res['measure']}")
        echo_items([{"item": u["user"], "score": u["score"]} for u in res["users"]], label="user")

    run(as_json, compute, render)


def info(model_dir: Path = MODEL_DIR, as_json: bool = JSON) -> None:
    """What a model directory holds: model, version, catalogue size, parameters, metrics."""
    def render(res: dict[str, Any]) -> None:
        typer.echo(f"model      {res['model']} ({res['class']}), embrec {res['embrec_version']}")
        typer.echo(f"catalogue  {res['n_items']} items, {res['n_users']} known users")
        if res["params"]:
            typer.echo("params     " + ", ".join(f"{k}={v}" for k, v in res["params"].items()))
        metrics = res["metrics"]
        if metrics:
            typer.echo("metrics    " + json.dumps(metrics))

    run(as_json, lambda: api.describe(api.open_model(model_dir)), render)


def inspect(
    model_dir: Path = MODEL_DIR,
    out: Path = typer.Option(..., "--out", help="Folder for the PNGs and report.html.", show_default=False),
    results: Path | None = typer.Option(None, "--results", help="A `benchmark --json` file to chart beside "
                                        "the model."),
) -> None:
    """Write the inspection report (norms vs popularity, 2-D map, training curves, neighbours) as HTML."""
    if not Path(model_dir).is_dir():
        raise ModelFileError(f"model directory {str(model_dir)!r} does not exist or is not a directory.")
    protocol_results = read_results(results) if results is not None else None
    write_report = backend("embrec.report", "write_report", "the inspection report")
    note(f"writing the report of {model_dir} to {out} ...")
    path = write_report(str(model_dir), str(out), protocol_results=protocol_results)
    typer.echo(str(path))


def export(
    model_dir: Path = MODEL_DIR,
    out: Path = typer.Option(..., "--out", help="embeddings.parquet or embeddings.jsonl: one row per item and "
                             "known user (id, kind, label, vector).", show_default=False),
    users: bool = typer.Option(True, "--users/--items-only", help="Also write the known users' embeddings."),
    as_json: bool = JSON,
) -> None:
    """Write the item (and known user) embeddings, keyed by raw id, for vector databases and notebooks."""
    def render(res: dict[str, Any]) -> None:
        typer.echo(f"wrote {res['n_items']} items and {res['n_users']} users ({res['dim']} dimensions) to "
                   f"{res['out']}")

    run(as_json, lambda: api.export(api.open_model(model_dir), out=out, users=users), render)


def serve(
    model_dir: Path = MODEL_DIR,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="Worker processes, each loading the model once."),
    access_log: bool = typer.Option(False, "--access-log", help="Log one line per request (off: faster)."),
) -> None:
    """Serve the model over HTTP (GET /healthz, POST /recommend, /recommend/batch, /similar, /embed; docs at
    /docs)."""
    if not 0 < port < 65536:
        raise InvalidParameterError(f"--port must be between 1 and 65535; received {port}.")
    if workers < 1:
        raise InvalidParameterError(f"--workers must be at least 1; received {workers}.")
    serve_fn = backend("embrec.serve", "serve", "the HTTP service")
    serve_fn(str(model_dir), host=host, port=port, workers=workers, access_log=access_log)


# helpers --------------------------------------------------------------------------------------
def parse_ids(text: str, option: str = "--history") -> list[Any]:
    """"a, b,c" -> ["a", "b", "c"]; '["a,1", "b"]' (a JSON list, for ids holding commas) -> ["a,1", "b"].
    An empty element is an error."""
    if text.lstrip().startswith("["):
        try:
            ids = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidParameterError(f"{option} starting with '[' must be a JSON list of item ids like "
                                        f'["A", "B"]; received {_show(text)}.') from None
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, (str, int)) and not isinstance(i, bool) and str(i).strip() for i in ids):
            raise InvalidParameterError(f"{option} must be a non-empty JSON list of item ids (strings or "
                                        f"integers); received {_show(text)}.")
        return [i.strip() if isinstance(i, str) else i for i in ids]
    ids = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not i for i in ids):
        raise InvalidParameterError(f"{option} must be comma-separated item ids like A,B,C (or a JSON list); "
                                    f"received {_show(text)}.")
    return ids


def read_results(path: Path) -> dict[str, Any]:
    """A protocol result ({"protocol", "dataset", "results": [...]}) from a JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"results file {str(path)!r} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"results file {str(path)!r} is not JSON ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise DataError(f"results file {str(path)!r} must hold a `embrec benchmark --json` document with a "
                        "'results' list.")
    return data


def backend(module: str, attr: str, what: str) -> Any:
    """``module.attr``, imported when the command runs; a clear error if this install lacks it."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            raise InvalidParameterError(f"{what} is not available in this embrec ({module} is missing).") from None
        raise
    if not hasattr(mod, attr):
        raise InvalidParameterError(f"{what} is not available in this embrec ({module}.{attr} is missing).")
    return getattr(mod, attr)


__all__ = ["export", "info", "inspect", "recommend", "serve", "similar"]
