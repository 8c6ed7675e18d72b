"""The functions behind the ``embrec`` command and the HTTP service: plain arguments in, JSON-ready dicts out.

    model = api.open_model("runs/bpr")
    api.describe(model)                                   # {"model": "bpr", "n_items": ..., ...}
    api.recommend(model, user="12346", k=5)               # {"items": [{"item": "85123A", "score": 3.1}, ...]}
    api.recommend(model, history=["85123A", "71053"])     # any user, new ones included
    api.similar(model, item="85123A", k=10, measure="cosine")
    api.embed(model, history=["85123A", "71053"])         # {"dim": 64, "vector": [...]}

    api.train("bpr", dataset="online-retail", out="runs/bpr", params=["factors=64"])
    api.evaluate("runs/bpr", protocol="retail-precision")
    api.benchmark("leave-last-out", models=["bpr", "als"], data=api.FileSource("log.csv", user_col="u", item_col="i"))
    api.list_datasets()

``embrec.quickstart`` (the main job) and ``embrec.report`` sit above this module and import it; nothing
here imports them. Data sources, hyper-parameters and protocol options are read by ``embrec.sources``
below it (re-exported here: ``api.FileSource``, ``api.load_data``, ``api.model_params``...).

Every problem with the input raises an ``embrec.errors.EmbrecError`` subclass with one sentence; the CLI
prints it and exits 1, the service answers 4xx.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embrec.errors import InvalidParameterError, ModelStateError, check_choice, check_positive_int
from embrec.errors import describe as _show
from embrec.models.base import label_of
from embrec.models.io import to_plain
from embrec.sources import (  # noqa: F401  (re-exported: api.FileSource, api.load_data, ...)
    Data,
    FileSource,
    data_label,
    input_paths,
    list_datasets,
    load_data,
    model_params,
    protocol_data,
    protocol_options,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

MEASURES = ("cosine", "dot")


def open_model(path: str | Path) -> Any:
    """Load a model directory (``embrec.load``); a missing or damaged one raises ModelFileError."""
    from embrec import load

    return load(path)


def model_name(model: Any) -> str:
    """The registry name of a model's class (e.g. ``"popularity"``), else the class name."""
    return _class_name(type(model))


@functools.cache
def _class_name(cls: type) -> str:
    """``model_name`` of a class, looked up once per class (the registry is fixed at import)."""
    from embrec.models.registry import name_of

    try:
        return name_of(cls)
    except InvalidParameterError:
        return cls.__name__


def describe(model: Any) -> dict[str, Any]:
    """What a fitted model is: name, library version, catalogue size, known users, capabilities."""
    from embrec import __version__

    model._check_fitted()
    return {
        "model": model_name(model),
        "class": type(model).__name__,
        "embrec_version": __version__,
        "n_items": int(model.items_.n_ids),
        "n_users": int(model.users_.n_ids),
        "params": to_plain(model.get_params()),
        "can_similar": hasattr(model, "similar_items"),
        "can_embed": hasattr(model, "user_embedding"),
        "predicts_ratings": bool(getattr(model, "predicts_ratings", False)),
        "metrics": to_plain(getattr(model, "metrics_", {}) or {}),
    }


def recommend(model: Any, *, user: Any = None, history: Sequence[Any] | None = None, k: int = 10,
              exclude_seen: bool = True, items: Sequence[Any] | None = None,
              exclude_items: Sequence[Any] | None = None) -> dict[str, Any]:
    """Top-``k`` items for a known ``user`` (raw id) or for a ``history`` of raw item ids (anyone).

    ``exclude_seen`` (default on, as users expect of a recommendation) leaves out the user's training
    items, or the items of ``history``; ``exclude_seen=False`` keeps them (repeat purchases). The
    evaluation protocols do not go through here: each keeps its own documented setting. Each item has
    its ``"label"`` (title / description) when the model carries labels, else None.

    ``items`` (raw item ids) is an allow-list: only those may be recommended (e.g. in stock);
    ``exclude_items`` a deny-list. Both are applied inside the top-k search, so ``k`` items come back
    whenever ``k`` allowed items remain. An id in either list that the model does not know is an error
    naming it (UnknownIdError; HTTP 404), never silently dropped."""
    if (user is None) == (history is None):
        raise InvalidParameterError("give exactly one of user or history; received "
                                    f"{'both' if user is not None else 'neither'}.")
    k = check_positive_int("k", k)
    only = _restriction(items, exclude_items)
    if history is not None:
        history = _id_list("history", history)
        recs = model.recommend(histories=[history], k=k, exclude_seen=bool(exclude_seen), **only)
    else:
        recs = model.recommend([user], k=k, exclude_seen=bool(exclude_seen), **only)
        user = model.users_.decode(model.users_.encode([user]))[0]  # the raw id as stored ("12" -> 12)
    return {
        "model": model_name(model),
        "user": to_plain(user),
        "history": history,
        "k": k,
        "exclude_seen": bool(exclude_seen),
        "items": recs.to_records(_labels(model))[0],
    }


def recommend_batch(model: Any, *, users: Sequence[Any] | None = None,
                    histories: Sequence[Sequence[Any]] | None = None, k: int = 10,
                    exclude_seen: bool = True, items: Sequence[Any] | None = None,
                    exclude_items: Sequence[Any] | None = None) -> dict[str, Any]:
    """``recommend`` for many known ``users`` or many ``histories`` in one vectorised call; ``items`` /
    ``exclude_items`` (one allow-list / deny-list for every query) as in ``recommend``."""
    if (users is None) == (histories is None):
        raise InvalidParameterError("give exactly one of users or histories; received "
                                    f"{'both' if users is not None else 'neither'}.")
    k = check_positive_int("k", k)
    only = _restriction(items, exclude_items)
    if histories is not None:
        histories = [_id_list("each history", h) for h in _id_list("histories", histories, "history")]
        recs = model.recommend(histories=histories, k=k, exclude_seen=bool(exclude_seen), **only)
        heads = [{"history": h} for h in histories]
    else:
        users = _id_list("users", users, "user id")
        recs = model.recommend(users, k=k, exclude_seen=bool(exclude_seen), **only)
        stored = model.users_.decode(model.users_.encode(users))  # the raw ids as stored ("12" -> 12)
        heads = [{"user": to_plain(u)} for u in stored]
    results = [{**head, "items": items} for head, items in zip(heads, recs.to_records())]
    return {"model": model_name(model), "k": k, "exclude_seen": bool(exclude_seen), "results": results}


def similar_users(model: Any, *, user: Any, k: int = 10, measure: str = "cosine") -> dict[str, Any]:
    """The ``k`` known users nearest to known raw ``user`` by their embeddings (itself excluded):
    ``{"model", "user", "k", "measure", "users": [{"user", "score"}, ...]}``."""
    if not hasattr(model, "similar_users"):
        raise InvalidParameterError(
            f"similar users need a model with user embeddings; received a {model_name(model)!r} model, "
            "which has none.")
    measure = check_choice("measure", measure, MEASURES)
    k = check_positive_int("k", k)
    if user is None or isinstance(user, (list, tuple, dict)):
        raise InvalidParameterError(f"user must be one raw user id; received {_show(user)}.")
    recs = model.similar_users([user], k=k, measure=measure)
    stored = model.users_.decode(model.users_.encode([user]))[0]
    found = [{"user": to_plain(u), "score": float(s)} for u, s in zip(recs.ids[0], recs.scores[0]) if u is not None]
    return {"model": model_name(model), "user": to_plain(stored), "k": k, "measure": measure, "users": found}


def _restriction(items: Sequence[Any] | None, exclude_items: Sequence[Any] | None) -> dict[str, Any]:
    """The allow-/deny-list keyword arguments given (validated as lists of raw ids)."""
    out: dict[str, Any] = {}
    if items is not None:
        out["items"] = _id_list("items", items, "item id")
    if exclude_items is not None:
        out["exclude_items"] = _id_list("exclude_items", exclude_items, "item id")
    return out


def similar(model: Any, *, item: Any, k: int = 10, measure: str = "cosine", items: Sequence[Any] | None = None,
            exclude_items: Sequence[Any] | None = None) -> dict[str, Any]:
    """The ``k`` items nearest to raw ``item`` in the model's item embedding space (itself excluded);
    ``items`` / ``exclude_items`` restrict the candidates as in ``recommend``."""
    if not hasattr(model, "similar_items"):
        raise InvalidParameterError(
            f"similar items need a model with item embeddings; received a {model_name(model)!r} model, "
            "which has none.")
    measure = check_choice("measure", measure, MEASURES)
    k = check_positive_int("k", k)
    if item is None or isinstance(item, (list, tuple, dict)):
        raise InvalidParameterError(f"item must be one raw item id; received {_show(item)}.")
    only = _restriction(items, exclude_items)
    if "items" in only:
        only["candidates"] = only.pop("items")
    recs = model.similar_items([item], k=k, measure=measure, **only)
    row = model.items_.encode([item])
    item = model.items_.decode(row)[0]
    return {"model": model_name(model), "item": to_plain(item), "label": label_of(_labels(model), int(row[0])),
            "k": k, "measure": measure, "items": recs.to_records(_labels(model))[0]}


_NO_LABELS = np.zeros(0, dtype=object)


def _labels(model: Any) -> np.ndarray:
    """The model's item labels by row (none: an empty array, so every "label" is None)."""
    labels = getattr(model, "item_labels_", None)
    return _NO_LABELS if labels is None else labels


def embed(model: Any, *, history: Sequence[Any]) -> dict[str, Any]:
    """The user embedding of anyone with this ``history`` of raw item ids."""
    if not hasattr(model, "user_embedding"):
        raise InvalidParameterError(
            f"embeddings need a model with a user tower; received a {model_name(model)!r} model, which has none.")
    history = _id_list("history", history)
    vec = np.asarray(model.user_embedding(history=history), dtype=np.float64).ravel()
    if not np.isfinite(vec).all():  # JSON has no NaN or infinity (orjson would write null)
        raise ModelStateError(f"the {model_name(model)!r} model gives this history a non-finite embedding "
                              f"({int((~np.isfinite(vec)).sum())} of {vec.size} values are NaN or infinite).")
    return {"model": model_name(model), "history": history, "dim": int(vec.size), "vector": vec.tolist()}


EXPORT_SUFFIXES = (".parquet", ".jsonl")


def export(model: Any, *, out: str | Path, users: bool = True) -> dict[str, Any]:
    """Write every item's (and, with ``users``, every known user's) embedding to ``out`` (``.parquet`` or
    ``.jsonl``): one row per id with ``id`` (the raw id), ``kind`` ("item" / "user"), ``label`` (the
    item's label, else None) and ``vector`` (a list of floats). Ids are integers when both vocabularies
    hold integers, else text. Returns ``{"out", "n_items", "n_users", "dim"}``."""
    import pandas as pd

    if not hasattr(model, "item_embeddings_frame"):
        raise InvalidParameterError(f"export needs a model with embeddings; received a {model_name(model)!r} "
                                    "model, which has none.")
    out = Path(out).expanduser()
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise InvalidParameterError(f"out must end with {' or '.join(EXPORT_SUFFIXES)}; received "
                                    f"{_show(out.name, 80)}.")
    items = model.item_embeddings_frame()
    frames = [("item", items, [label_of(_labels(model), r) for r in range(1, len(items) + 1)])]
    if users:
        known = model.user_embeddings_frame()
        frames.append(("user", known, [None] * len(known)))
    as_int = all(v.kind == "int" for v in (model.items_, model.users_ if users else model.items_))
    rows = pd.concat([pd.DataFrame({"id": [to_plain(x) if as_int else str(x) for x in f.index], "kind": kind,
                                    "label": labels, "vector": list(f.to_numpy(dtype=np.float32))})
                      for kind, f, labels in frames], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    if out.suffix.lower() == ".parquet":
        rows.to_parquet(tmp, index=False)
    else:
        rows.assign(vector=[v.tolist() for v in rows["vector"]]).to_json(tmp, orient="records", lines=True,
                                                                         force_ascii=False)
    tmp.replace(out)
    return {"out": str(out), "n_items": len(items), "n_users": len(frames[1][1]) if users else 0,
            "dim": int(items.shape[1])}


def _id_list(name: str, ids: Any, what: str = "item id") -> list[Any]:
    if type(ids) is list and ids and all(type(x) is int or type(x) is str for x in ids):
        return ids  # plain already (an HTTP request's ids): nothing to convert
    if isinstance(ids, (str, bytes, dict)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise InvalidParameterError(f"{name} must be a list of raw {what}s; received {_show(ids)}.")
    ids = [to_plain(x) for x in ids]
    if not ids:
        raise InvalidParameterError(f"{name} must hold at least one {what}; received an empty list.")
    return ids


# training and evaluation -----------------------------------------------------------------------
def train(model_name: str, *, dataset: str | None = None, data: Data | None = None,
          protocol: str | None = None, out: str | Path, params: Mapping[str, Any] | Sequence[str] | None = None,
          data_dir: str | Path | None = None,
          options: Mapping[str, Any] | Sequence[str] | None = None,
          checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Fit registry model ``model_name`` and save it to ``out``.

    Under ``torchrun`` (see ``embrec.models.distributed``) every rank runs this: the process group is
    joined first, each rank trains on its users' events, and rank 0 evaluates and writes ``out`` (the
    others wait for it). ``checkpoint`` is a directory for per-epoch checkpoints: a restarted job resumes.

    Without ``protocol`` the model is fitted on all of the data. With one, it is fitted on the protocol's
    training split (the protocol's own data for the named-dataset protocols; ``dataset``/``data`` for the
    generic ``leave-last-out`` / ``random-holdout``), evaluated, and saved with those metrics in metrics.json.
    ``options`` are the protocol's own (e.g. ``part="test"`` for the retail protocols).
    """
    from embrec.models import checkpoint as checkpoints
    from embrec.models import distributed
    from embrec.models.base import refuse_quantities
    from embrec.models.outpath import check_out_path
    from embrec.models.registry import create

    world = distributed.init()
    checked = model_params(model_name, params)
    if protocol is None and protocol_options(options):
        raise InvalidParameterError("protocol options were given without a protocol; add --protocol or drop them.")
    out = check_out_path(out, inputs=input_paths(dataset, data, data_dir), name="out")  # before any fitting
    model = create(model_name, **checked)
    result: dict[str, Any] = {"model": model_name, "params": checked, "protocol": protocol}
    if protocol is None:
        log = load_data(dataset=dataset, data=data, data_dir=data_dir)
        refuse_quantities(model, log)
        logger.info("fitting %s on %s", model_name, log)
        start = time.perf_counter()
        with checkpoints.directory(checkpoint):
            model.fit(log)
        result.update(dataset=data_label(dataset, data), metrics={},
                      fit_seconds=round(time.perf_counter() - start, 3))
    else:
        from embrec.evaluation import evaluate_model

        with checkpoints.directory(checkpoint):
            res = evaluate_model(protocol, model, data_dir=data_dir, **protocol_data(dataset, data),
                                 **protocol_options(options))
        model.metrics_ = {**(getattr(model, "metrics_", {}) or {}), protocol: res["metrics"]}
        result.update(dataset=res.get("dataset", data_label(dataset, data)), metrics=res["metrics"],
                      fit_seconds=res.get("fit_seconds"),
                      **{key: res[key] for key in ("intervals", "coverage", "popularity_percentile") if key in res})
    path = model.save(out) if world.main else out  # rank 0 writes; the others wait for it
    distributed.barrier()
    result.update(world_size=world.size, out=str(path), n_users=int(model.users_.n_ids),
                  n_items=int(model.items_.n_ids))
    return to_plain(result)


def evaluate(model_dir: str | Path, *, protocol: str, dataset: str | None = None, data: Data | None = None,
             data_dir: str | Path | None = None,
             options: Mapping[str, Any] | Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate a saved model on ``protocol``.

    When the stored weights were fitted on the training split of one of the protocol's folds
    (``train --protocol``; matched by the data fingerprint) they are scored as they are on that fold, and
    the metrics are added to the directory's metrics.json. Otherwise the stored weights may have seen the
    protocol's test events, so the model's configuration (class and hyper-parameters) is re-fitted on the
    protocol's training split(s) instead (``refitted``) and the directory is left unchanged.
    """
    from embrec.evaluation import evaluate_model, load_folds
    from embrec.evaluation.runner import score_fitted
    from embrec.models.registry import create

    stored = open_model(model_dir)
    name = model_name(stored)
    where = {**protocol_data(dataset, data), **protocol_options(options)}
    ds_name, folds = load_folds(protocol, data_dir=data_dir, **where)
    fold = next((f for f in folds if f.train.fingerprint() == stored.fingerprint_), None)
    if fold is not None:
        result = {**score_fitted(protocol, stored, fold, k=where.get("k")), "model": name, "fold": fold.name}
        stored.metrics_ = {**(stored.metrics_ or {}), protocol: result["metrics"]}
        stored.save(model_dir)  # a new whole version with the added metrics, published atomically
    else:
        logger.info("%s was not fitted on a %s training split; re-fitting its configuration", model_dir, protocol)
        res = evaluate_model(protocol, create(name, **stored.get_params()), data_dir=data_dir, **where)
        keep = ("metrics", "intervals", "coverage", "popularity_percentile", "fit_seconds", "folds")
        result = {"model": name, **{key: res[key] for key in keep if key in res}}
    return to_plain({"protocol": protocol, "dataset": ds_name, "model_dir": str(model_dir),
                     "refitted": fold is None, "results": [result]})


def benchmark(protocol: str, *, models: Sequence[str] | None = None, dataset: str | None = None,
              data: Data | None = None, params: Mapping[str, Mapping[str, Any]] | None = None,
              data_dir: str | Path | None = None,
              options: Mapping[str, Any] | Sequence[str] | None = None,
              out: str | Path | None = None, tune: int | None = None,
              tune_seed: int = 0, progress: Any = None, per_user: str | Path | None = None,
              bootstrap: int = 1000, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Every named model (default: the whole registry) plus the baselines on ``protocol``, in one run.

    ``params`` maps a model name to its hyper-parameters. Models that cannot run are not fitted: a model
    the protocol cannot score (a ranking model on ``ml100k-rmse``) or whose declared needs the data does
    not meet (ratings, item features, timestamps, transactions) is listed under ``"skipped"`` with the
    reason; a model that fails while fitting or scoring (e.g. a diverging loss) under ``"errors"``; the
    others under ``"results"``. With ``out`` (a ``.jsonl`` path) every row is appended to that file as
    soon as its model is done, flushed, so nothing computed is lost to a later failure or Ctrl-C;
    ``per_user`` (a ``.csv``, ``.jsonl`` or ``.parquet`` path) gets one line per model, fold and user.
    ``tune`` (a number of trials) first tunes every model that declares a search space on a validation part
    carved from the protocol's training data (``embrec.tuning``; parameters given in ``params`` stay fixed)
    and benchmarks the best settings; the result then has ``"tuned": {model: {"trials", "best",
    "validation", "metric", "seconds"} or {"error"}}``.
    ``progress`` (a callable taking a line) hears "model 3/13: bpr" as each model starts.

    Every row carries 95 % bootstrap ``intervals`` (``bootstrap`` resamples of users, 0: none, seeded by
    ``bootstrap_seed``), ``coverage`` and ``popularity_percentile`` (top-k protocols), and every model but
    the best baseline ``vs_best_baseline``: the paired bootstrap test of its first metric against the best
    baseline on the same users (docs/protocols.md). Returns ``{"protocol", "dataset", "split", "results":
    [{"model", "metrics", "intervals", "fit_seconds", ...}], "skipped": [{"model", "reason"}], "errors":
    [{"model", "error"}], "best_baseline"}``.
    """
    from embrec.evaluation import get_protocol, run_protocol
    from embrec.evaluation.per_user import PerUserWriter
    from embrec.models.registry import create, model_class, model_names

    names = (with_baselines(fitting(protocol, model_names()), protocol) if not models
             else with_baselines(list(models), protocol))  # baselines first: the paired tests stream out
    params = dict(params or {})
    for name in params:
        if name not in names:
            raise InvalidParameterError(f"hyper-parameters were given for {name!r}, which is not among the "
                                        f"benchmarked models ({', '.join(names)}).")
    checked = {name: model_params(name, params.get(name)) for name in names}
    proto = get_protocol(protocol)
    unfit = [] if not proto.needs_ratings else [
        {"model": n, "reason": f"cannot be scored by {protocol} (it predicts no ratings)"}
        for n in names if not getattr(model_class(n), "predicts_ratings", False)]
    if len(unfit) == len(names):
        raise InvalidParameterError(f"none of the models can be scored by {protocol}; it needs models that "
                                    "predict ratings (e.g. rating-bias, explicit-mf).")
    tuned = _tune_all(protocol, names, checked, tune, tune_seed, data_dir=data_dir,
                      **protocol_data(dataset, data), **protocol_options(options)) if tune is not None else {}
    factories = {}
    for name in names:
        best = tuned.get(name, {}).get("best", {}).get("params", checked[name])
        factories[name] = functools.partial(create, name, **best)
    for row in unfit:
        factories.pop(row["model"])
    writer = _RowWriter(out, protocol)
    users_out = PerUserWriter(per_user) if per_user is not None else None

    def on_row(row: dict[str, Any]) -> None:
        writer(row)
        if users_out is not None:
            users_out.write(row["model"], row.get("_units", []))

    try:
        for row in unfit:
            writer({"status": "skipped", **row})
        res = run_protocol(protocol, factories, data_dir=data_dir, on_row=on_row, progress=progress,
                           baselines=BASELINES, n_boot=bootstrap, boot_seed=bootstrap_seed,
                           **protocol_data(dataset, data), **protocol_options(options))
    finally:
        writer.close()
        if users_out is not None:
            users_out.close()
    res["skipped"] = unfit + res["skipped"]
    if tune is not None:
        res["tuned"] = tuned
    return to_plain(res)


class _RowWriter:
    """Appends each benchmark row to a JSON-lines file as it completes, flushed (``out``; None: nothing)."""

    def __init__(self, path: str | Path | None, protocol: str) -> None:
        self.protocol = protocol
        self.file = None
        if path is not None:
            path = Path(path).expanduser()
            if path.is_dir():
                raise InvalidParameterError(f"out must be a file to append JSON lines to; received the folder "
                                            f"{str(path)[:80]!r}.")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("a", encoding="utf-8")

    def __call__(self, row: dict[str, Any]) -> None:
        if self.file is None:
            return
        from embrec import __version__

        row = {k: v for k, v in row.items() if not k.startswith("_")}
        line = {"protocol": self.protocol, **to_plain(row), "embrec_version": __version__,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.file.write(json.dumps(_finite(line), ensure_ascii=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _finite(x: Any) -> Any:
    """JSON-safe: NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _tune_all(protocol: str, names: Sequence[str], fixed: Mapping[str, dict[str, Any]], trials: int, seed: int,
              **where: Any) -> dict[str, Any]:
    """``trials`` Optuna trials for each of ``names`` with a search space, on the carved validation part."""
    from embrec.errors import EmbrecError
    from embrec.evaluation import get_protocol, load_folds
    from embrec.models.registry import model_class
    from embrec.tuning import search

    trials = check_positive_int("tune", trials)
    ratings = get_protocol(protocol).needs_ratings
    _, folds = load_folds(protocol, **where)
    out: dict[str, Any] = {}
    for name in names:
        cls = model_class(name)
        if not getattr(cls, "search_space", None) or (ratings and not getattr(cls, "predicts_ratings", False)):
            continue
        try:
            found = search(name, protocol, folds, trials=trials, seed=seed, fixed=fixed[name])
        except EmbrecError as exc:  # e.g. the data lacks what the model needs: the benchmark says why
            logger.warning("tuning %s on %s failed: %s", name, protocol, exc)
            out[name] = {"error": str(exc)}
            continue
        out[name] = {"trials": len(found["trials"]), "best": found["best"], "validation": found["validation"],
                     "metric": found["metric"], "seconds": found["seconds"]}
    return out


BASELINES = ("popularity", "repeat-frequency", "item-transition", "ease", "item-knn")


def with_baselines(names: Sequence[str], protocol: str | None = None) -> list[str]:
    """The baselines of the registry that fit ``protocol``, then ``names`` (each checked to exist)."""
    from embrec.models.registry import model_class, model_names

    for n in names:
        model_class(n)  # an unknown name lists the known ones
    baselines = fitting(protocol, [b for b in BASELINES if b in model_names()])
    return baselines + [n for n in dict.fromkeys(names) if n not in baselines]


def fitting(protocol: str | None, names: Sequence[str]) -> list[str]:
    """The models of ``names`` that can run ``protocol`` (rating protocols need rating models)."""
    from embrec.evaluation import get_protocol
    from embrec.models.registry import model_class

    if protocol is None or not get_protocol(protocol).needs_ratings:
        return list(names)
    return [n for n in names if getattr(model_class(n), "predicts_ratings", False)]


def tune(model: str, protocol: str, *, trials: int | None = 20, minutes: float | None = None, seed: int = 0,
         storage: str | None = None, study_name: str | None = None, out: str | Path | None = None,
         dataset: str | None = None, data: Data | None = None, data_dir: str | Path | None = None,
         params: Mapping[str, Any] | Sequence[str] | None = None,
         options: Mapping[str, Any] | Sequence[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Tune ``model`` on ``protocol`` (``embrec.tuning.tune``): the trials, the best parameters, and the
    defaults' and the tuned model's figures on the protocol's test part from the same run; ``out`` saves the
    tuned model. ``params`` are fixed (not searched). ``storage`` (``sqlite:///FILE``) resumes a study."""
    from embrec.tuning import tune as run

    if storage is not None and not (isinstance(storage, str) and storage.startswith("sqlite:///")):
        raise InvalidParameterError(f"storage must be a SQLite URL like sqlite:///tune.db; received {_show(storage)}.")
    fixed = model_params(model, params)
    return to_plain(run(model, protocol, trials=trials, minutes=minutes, seed=seed, storage=storage,
                        study_name=study_name, fixed=fixed, out=out, progress=progress, data_dir=data_dir,
                        **protocol_data(dataset, data), **protocol_options(options)))
