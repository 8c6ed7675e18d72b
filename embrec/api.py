"""The functions behind the ``embrec`` command and the HTTP service: plain arguments in, JSON-ready dicts out.

    model = api.open_model("runs/bpr")
    api.describe(model)                                   # {"model": "bpr", "n_items": ..., ...}
    api.recommend(model, user="12346", k=5)               # {"items": [{"item": "85123A", "score": 3.1}, ...]}
    api.recommend(model, history=["85123A", "71053"])     # any user, new ones included
    api.similar(model, item="85123A", k=10, measure="cosine")
    api.embed(model, history=["85123A", "71053"])         # {"dim": 64, "vector": [...]}

Every problem with the input raises an ``embrec.errors.EmbrecError`` subclass with one sentence; the CLI
prints it and exits 1, the service answers 4xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError, check_choice, check_positive_int
from embrec.errors import describe as _show

MEASURES = ("cosine", "dot")


def open_model(path: str | Path) -> Any:
    """Load a model directory (``embrec.load``); a missing or damaged one raises ModelFileError."""
    from embrec import load

    return load(path)


def model_name(model: Any) -> str:
    """The registry name of a model's class (e.g. ``"popularity"``), else the class name."""
    from embrec.models.registry import name_of

    try:
        return name_of(type(model))
    except InvalidParameterError:
        return type(model).__name__


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
        "params": _plain(model.get_params()),
        "can_similar": hasattr(model, "similar_items"),
        "can_embed": hasattr(model, "user_embedding"),
        "predicts_ratings": bool(getattr(model, "predicts_ratings", False)),
        "metrics": _plain(getattr(model, "metrics_", {}) or {}),
    }


def recommend(model: Any, *, user: Any = None, history: Sequence[Any] | None = None, k: int = 10,
              exclude_seen: bool = False) -> dict[str, Any]:
    """Top-``k`` items for a known ``user`` (raw id) or for a ``history`` of raw item ids (anyone)."""
    if (user is None) == (history is None):
        raise InvalidParameterError("give exactly one of user or history; received "
                                    f"{'both' if user is not None else 'neither'}.")
    k = check_positive_int("k", k)
    if history is not None:
        history = _id_list("history", history)
        recs = model.recommend(histories=[history], k=k, exclude_seen=bool(exclude_seen))
    else:
        recs = model.recommend([user], k=k, exclude_seen=bool(exclude_seen))
        user = model.users_.decode(model.users_.encode([user]))[0]  # the raw id as stored ("12" -> 12)
    return {
        "model": model_name(model),
        "user": _plain(user),
        "history": history,
        "k": k,
        "exclude_seen": bool(exclude_seen),
        "items": recs.to_records()[0],
    }


def similar(model: Any, *, item: Any, k: int = 10, measure: str = "cosine") -> dict[str, Any]:
    """The ``k`` items nearest to raw ``item`` in the model's item embedding space (itself excluded)."""
    if not hasattr(model, "similar_items"):
        raise InvalidParameterError(
            f"similar items need a model with item embeddings; received a {model_name(model)!r} model, "
            "which has none.")
    measure = check_choice("measure", measure, MEASURES)
    k = check_positive_int("k", k)
    if item is None or isinstance(item, (list, tuple, dict)):
        raise InvalidParameterError(f"item must be one raw item id; received {_show(item)}.")
    recs = model.similar_items([item], k=k, measure=measure)
    item = model.items_.decode(model.items_.encode([item]))[0]
    return {"model": model_name(model), "item": _plain(item), "k": k, "measure": measure,
            "items": recs.to_records()[0]}


def embed(model: Any, *, history: Sequence[Any]) -> dict[str, Any]:
    """The user embedding of anyone with this ``history`` of raw item ids."""
    if not hasattr(model, "user_embedding"):
        raise InvalidParameterError(
            f"embeddings need a model with a user tower; received a {model_name(model)!r} model, which has none.")
    history = _id_list("history", history)
    vec = np.asarray(model.user_embedding(history=history), dtype=np.float64).ravel()
    return {"model": model_name(model), "history": history, "dim": int(vec.size),
            "vector": [float(x) for x in vec]}


def _id_list(name: str, ids: Any) -> list[Any]:
    if isinstance(ids, (str, bytes, dict)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise InvalidParameterError(f"{name} must be a list of raw item ids; received {_show(ids)}.")
    ids = [_plain(x) for x in ids]
    if not ids:
        raise InvalidParameterError(f"{name} must hold at least one item id; received an empty list.")
    return ids


def _plain(x: Any) -> Any:
    """numpy scalars/arrays and nested containers -> plain JSON-able Python values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
